/*
 * lg_sched: loadgen's arrival-rate timeline.  A schedule is a start rate
 * and stages (duration, target rate); the rate moves linearly from one
 * stage's start to its target, as in k6's ramping-arrival-rate, and a
 * constant rate is one stage from the rate to itself (k6's
 * constant-arrival-rate).  Iteration i (from 0) is due when the integral
 * of the rate reaches i, so when it starts depends on i alone, never on how
 * long earlier iterations took: an open model.
 */
#ifndef PAYKIT_LG_SCHED_H
#define PAYKIT_LG_SCHED_H

#include <stddef.h>
#include <stdint.h>

#define LG_SCHED_STAGES 64
#define LG_RATE_MAX 10000000.0

struct lg_stage {
	int64_t ms;
	double target; /* iterations per second at the stage's end */
};

struct lg_sched {
	double start_rate;
	size_t n;
	struct lg_stage stage[LG_SCHED_STAGES];
	/* Set by lg_sched_init: iterations due before, and start of, stage k. */
	double before[LG_SCHED_STAGES + 1];
	int64_t at_ns[LG_SCHED_STAGES + 1];
	uint64_t total;
};

/* A constant rate for ms milliseconds. */
void lg_sched_constant(struct lg_sched *s, double rate, int64_t ms);

/* Append a stage "duration:target" (k6's --stage); -1 with err if bad. */
int lg_sched_add_stage(
    struct lg_sched *s, const char *spec, char *err, size_t errlen);

/* A rate: a decimal number from 0 to LG_RATE_MAX; -1 if not. */
int lg_parse_rate(const char *s, double *rate);

/* Work out the totals once the stages are set. */
void lg_sched_init(struct lg_sched *s);

/* Iterations in the whole schedule. */
uint64_t lg_sched_total(const struct lg_sched *s);
int64_t lg_sched_length_ns(const struct lg_sched *s);

/*
 * When iteration i is due, in nanoseconds from the start; -1 when i is
 * past the end.  *hint (start at 0) remembers the stage, so walking i
 * upwards costs O(1) each.
 */
int64_t lg_sched_due(const struct lg_sched *s, uint64_t i, size_t *hint);

/* The rate at t nanoseconds from the start. */
double lg_sched_rate_at(const struct lg_sched *s, int64_t t);

#endif
