/*
 * lg_run: one loadgen run.  Iterations start at the times lg_sched gives,
 * whatever happened to earlier ones; each takes a slot (at most
 * max_inflight at once) or, when none is free, is dropped and counted.
 * Requests go to the target processes as JSON lines, round-robin; results
 * come back in any order and are matched by requestId.  One thread does
 * the scheduling and the pipes with ppoll(2); lg_poll's thread asks the
 * database in the full-flow scenario.
 */
#ifndef PAYKIT_LG_RUN_H
#define PAYKIT_LG_RUN_H

#include "db.h"
#include "lg_metrics.h"
#include "lg_sched.h"

#include <stdbool.h>
#include <stdint.h>

#define LG_TARGETS_MAX 64
#define LG_INFLIGHT_MAX 1000000

struct lg_opts {
	int scenario;
	struct lg_sched sched;
	bool ramping;
	long max_inflight;
	long ntargets;
	const char *target, *capture_target, *refund_target;
	uint64_t seed;
	const char *key_prefix;
	long long timeout_ms, grace_ms, poll_ms;
	long ledger_rows;
	bool abort_on_fail;
	bool quiet;
};

struct lg_outcome_run {
	double elapsed_s; /* from the first scheduled start to the end */
	bool aborted; /* a threshold failed with abort_on_fail */
	bool stopped; /* a signal asked to stop early */
};

/*
 * Run the test: 0, or the exit code after a message (69 a target could not
 * start or died; the database's code when polling failed).  The metrics
 * are filled either way.  db (full-flow only) is taken over.
 */
int lg_run(const struct lg_opts *o, struct lg_metrics *ms, struct db *db,
    struct lg_outcome_run *out);

#endif
