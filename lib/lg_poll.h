/*
 * lg_poll: loadgen's read-only view of the payments it started, for the
 * full-flow scenario.  A thread asks MariaDB, once per interval and with
 * one query per 1,000 payments, for the status and ledger row count of
 * the payments loadgen is waiting on that are due a look, and hands the
 * answers back through a pipe the event loop polls, so a slow query never
 * delays the schedule.  A payment waited on for a while is looked at less
 * often (lg_poll_gap_ms), so that a backlog of slow flows does not load
 * the database it measures with ever more polling.
 */
#ifndef PAYKIT_LG_POLL_H
#define PAYKIT_LG_POLL_H

#include "db.h"

#include <stdint.h>

struct lg_seen {
	int64_t payment_id;
	uint64_t tag;
	char status[24];
	int64_t ledger_rows; /* counted only when status is REFUNDED, else 0 */
};

struct lg_poll;

/* Start the thread on db (taken over); NULL with errno if it cannot. */
struct lg_poll *lg_poll_start(struct db *db, long interval_ms);

/* The fd that becomes readable when answers are there. */
int lg_poll_fd(const struct lg_poll *p);

/* Wait on a payment, or stop waiting on it. */
void lg_poll_add(struct lg_poll *p, int64_t payment_id, uint64_t tag);
void lg_poll_remove(struct lg_poll *p, int64_t payment_id, uint64_t tag);

/*
 * Take the answers that came in (the array is the caller's to free):
 * their number, or -1 after a database error (code and message then tell
 * what; polling has stopped).
 */
long lg_poll_take(
    struct lg_poll *p, struct lg_seen **seen, int *code, char *msg, size_t len);

void lg_poll_stop(struct lg_poll *p);

/*
 * How long after a look at a payment waited on for age_ms the next look
 * comes: the interval, or a sixteenth of the age when that is longer, so
 * a wait is measured to within about 6 % of its length.
 */
long lg_poll_gap_ms(long interval_ms, int64_t age_ms);

#endif
