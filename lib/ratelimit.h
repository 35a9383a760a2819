/*
 * ratelimit: fixed-window request limits per (action, merchant), counted in
 * the rate_limit table so that every process on every host shares them,
 * timed by the database clock.  One statement per check; a limit of 0 turns
 * the check off without touching the database.
 */
#ifndef PAYKIT_RATELIMIT_H
#define PAYKIT_RATELIMIT_H

#include "db.h"

#include <stdbool.h>

struct ratelimit {
	const char *action; /* "authorize", "capture", "refund" */
	long long limit; /* requests per window and merchant; 0 is off */
	long long window_ms;
};

/* The limit of an action from conf (rate_limit_ACTION, rate_limit_window). */
void ratelimit_conf(const char *action, struct ratelimit *rl);

/*
 * Count n requests of merchant in the current window and grant as many as
 * the limit leaves: *granted is 0 to n.  When it is less than n,
 * *retry_after_s is the whole seconds until the window ends, at least 1.
 * Refused requests count too, so a window lets exactly limit through.
 * Returns 0 or a db exit code.
 */
int ratelimit_take(struct db *db, const struct ratelimit *rl,
    const char *merchant, long long n, long long *granted,
    long long *retry_after_s);

/* How many of n requests fit when the window's count is now count. */
long long ratelimit_granted(long long count, long long n, long long limit);

/* Whole seconds, at least 1, for the milliseconds left of a window. */
long long ratelimit_retry_after(long long remaining_ms);

#endif
