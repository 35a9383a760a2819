/*
 * breaker: circuit breakers shared by every process through MariaDB.
 *
 * One row of breaker_state per name holds the state (CLOSED, OPEN,
 * HALF_OPEN, FORCED_OPEN, DISABLED); outcomes are counted in one-second
 * buckets (breaker_bucket) and the failure and slow-call rates are taken
 * over a sliding time window; every transition is logged in breaker_event.
 * All times are the database's clock, never a process's.  HALF_OPEN probes
 * hold leases (breaker_permit) that expire, so a process that dies holding
 * one cannot wedge the breaker.  A process attaching to a breaker inserts
 * its row if missing and never resets shared state.
 *
 * Hot paths do not write the database per call: outcomes are counted in
 * the process and breaker_sync() writes them at most every 100 ms (or when
 * forced, e.g. once per batch), evaluates the window and refreshes the
 * state.  Call the breaker's functions outside the caller's transactions.
 * A breaker may be shared by threads: it has a lock of its own, and writes
 * on its connection only under it, so give it a connection that no other
 * thread uses at the same time.
 *
 * Settings (paykit(7)): breaker_window, breaker_min_calls,
 * breaker_failure_rate, breaker_slow_call_duration, breaker_slow_call_rate,
 * breaker_wait_open, breaker_wait_open_max (doubling up to it after each
 * reopening; unset: no growth), breaker_half_open_calls, breaker_permit_ttl;
 * each may be set per breaker as breaker_NAME_... for pg and kafka.
 */
#ifndef PAYKIT_BREAKER_H
#define PAYKIT_BREAKER_H

#include "db.h"

#include <stdbool.h>
#include <stdint.h>

enum breaker_state {
	BREAKER_CLOSED,
	BREAKER_OPEN,
	BREAKER_HALF_OPEN,
	BREAKER_FORCED_OPEN,
	BREAKER_DISABLED,
};

struct breaker;

/* A call the breaker let through; pass it back to breaker_record(). */
struct breaker_call {
	int64_t permit; /* HALF_OPEN lease id, 0 otherwise */
};

struct breaker_conf {
	long long window_ms, min_calls, failure_rate, slow_ms, slow_rate;
	long long wait_ms, wait_max_ms, half_open_calls, permit_ttl_ms;
};

/* The settings of breaker name (per-breaker values over the defaults). */
void breaker_conf(const char *name, struct breaker_conf *c);

/*
 * Attach to breaker name on db (which the breaker shares with its caller).
 * Returns 0 or a db exit code with the message in db_error(db).
 */
int breaker_attach(struct db *db, const char *name, struct breaker **out);
/* Write what is counted, then free. */
void breaker_detach(struct breaker *b);

/*
 * May a call go ahead?  true: make it and report it with breaker_record.
 * false: the breaker is open (counted as not permitted).  A database error
 * lets the call through: the breaker protects the dependency, it must not
 * become one.
 */
bool breaker_acquire(struct breaker *b, struct breaker_call *call);

/* The outcome of a permitted call and how long it took. */
void breaker_record(struct breaker *b, const struct breaker_call *call,
    bool failure, double ms);

/*
 * The outcomes of a permitted batch of calls (e.g. a batch of Kafka
 * deliveries): each counts as a call; a HALF_OPEN probe fails if any did.
 */
void breaker_record_many(struct breaker *b, const struct breaker_call *call,
    long long ok, long long failed, double ms);

/* A permitted call that was not made: give its HALF_OPEN lease back. */
void breaker_release(struct breaker *b, const struct breaker_call *call);

/*
 * Write the counts, evaluate the window, refresh the state.  Without
 * force, does nothing if the last sync was less than 100 ms ago.  Returns 0
 * or a db exit code.
 */
int breaker_sync(struct breaker *b, bool force);

/*
 * The outcomes counted in the breaker's window now (since it last closed):
 * 0 or a db exit code.
 */
int breaker_window(struct db *db, const char *name,
    const struct breaker_conf *c, long long *ok, long long *fail,
    long long *slow);

enum breaker_state breaker_state(const struct breaker *b);
const char *breaker_state_name(enum breaker_state s);
int breaker_state_parse(const char *s, enum breaker_state *out);
/* A breaker's name: 1 to 32 of a-z, 0-9, '_', '-' and '.'. */
bool breaker_name_ok(const char *name);

/*
 * Operators: move breaker name to state to (FORCED_OPEN, DISABLED, or
 * CLOSED for a reset) whatever its state, logging reason.  0 or an exit
 * code.
 */
int breaker_set(
    struct db *db, const char *name, enum breaker_state to, const char *reason);

#endif
