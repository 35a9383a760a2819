/*
 * clock: the monotonic clock in milliseconds, for deadlines and pauses
 * that a change of the wall clock must not stretch or cut short.
 */
#ifndef PAYKIT_CLOCK_H
#define PAYKIT_CLOCK_H

#include <stdint.h>

int64_t clock_mono_ms(void);
/* Sleep ms milliseconds (a signal may cut it short). */
void clock_sleep_ms(int64_t ms);

#endif
