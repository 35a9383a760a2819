/*
 * lg_hist: loadgen's latency histogram, log-linear like HdrHistogram.
 * Fixed memory (30 KB), values in microseconds from 0 to 2^36 - 1 (about
 * 19 hours; larger values are counted as the largest), every value read
 * back within 0.4 % of a recorded one: values below 256 exactly, above in
 * 128 linear steps per power of two, reported at the middle of their step.
 * The count, min, max and mean are exact.
 */
#ifndef PAYKIT_LG_HIST_H
#define PAYKIT_LG_HIST_H

#include <stdint.h>

#define LG_HIST_MAX ((UINT64_C(1) << 36) - 1)
#define LG_HIST_SLOTS (30 * 128)

struct lg_hist {
	uint64_t count;
	uint64_t min, max;
	double sum;
	uint64_t slot[LG_HIST_SLOTS];
};

void lg_hist_init(struct lg_hist *h);
void lg_hist_add(struct lg_hist *h, uint64_t us);

/*
 * The value at percentile p (0 to 100) by nearest rank: the smallest
 * recorded value with at least p % of the values at or below it.  0 when
 * the histogram is empty.
 */
double lg_hist_pct(const struct lg_hist *h, double p);
double lg_hist_mean(const struct lg_hist *h);

#endif
