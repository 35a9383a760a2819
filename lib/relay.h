/*
 * relay: the engine of outbox-relay(8).  One relay_batch() claims the due
 * outbox rows, publishes them to Kafka in per-payment order with an
 * idempotent producer, and marks them PUBLISHED, retried later or DEAD,
 * all in one database transaction whose row locks are the claim.
 * relay.c claims, plans and marks (MariaDB), relay_kafka.c produces and
 * awaits the waves (librdkafka), relay_plan.c holds the pure parts
 * (ordering plan, backoff, dead-letter records, the JSON check) that the
 * unit tests cover.
 */
#ifndef PAYKIT_RELAY_H
#define PAYKIT_RELAY_H

#include "db.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct relay_opts {
	long long batch; /* rows claimed at once */
	long long max_attempts; /* failed deliveries before DEAD */
	long long backoff_ms; /* first retry delay, doubled per attempt */
	long long backoff_max_ms;
	int64_t max_id; /* claim only event_id <= max_id (--once) */
};

/* What batches did, added up by relay_batch(). */
struct relay_counts {
	uint64_t batches, claimed, published, failed, dead, held;
	/* When the last row held back is due again (CLOCK_MONOTONIC, s). */
	double held_until;
};

enum relay_outcome {
	RELAY_DONE, /* rows were claimed and marked (maybe none) */
	RELAY_OUTAGE, /* every send failed on Kafka's side: nothing marked */
	RELAY_PAUSED, /* the kafka breaker refused: nothing claimed */
};

struct relay;

/*
 * Set the session up for claiming (READ COMMITTED, a bound on idle
 * transactions): 0 or a db exit code.  relay_new() does it; purge calls it.
 */
int relay_session(struct db *db);

/*
 * Add n (negative: take) to the count of PUBLISHED rows (outbox_count,
 * migration 0011), in the caller's transaction, which marks or deletes
 * those rows: 0 or a db exit code.  Nothing to do when n is 0.
 */
int relay_count_published(struct db *db, int64_t n);

/*
 * A relay on db with its own Kafka producer.  NULL with the exit code in
 * *code and one line in err when the producer or the session cannot be set
 * up.
 */
struct relay *relay_new(struct db *db, const struct relay_opts *o, int *code,
    char *err, size_t len);

/*
 * One claim, publish and mark cycle.  Returns 0 with *out set, or an exit
 * code with the reason in relay_error() (the transaction is rolled back
 * and the rows stay as they were).
 */
int relay_batch(
    struct relay *r, struct relay_counts *c, enum relay_outcome *out);

/* Why the last batch failed or met an outage. */
const char *relay_error(const struct relay *r);

/*
 * The exit code an outage stands for: 69 when Kafka reported itself
 * unreachable, else 75.
 */
int relay_outage_code(const struct relay *r);

/* Wait for anything still queued, destroy the producer, free r. */
void relay_free(struct relay *r);

/*
 * Pure parts (relay_plan.c).
 *
 * The ordering plan.  items are the claimed rows; pending are every
 * PENDING row, claimed or not, of the items' aggregates with an event_id
 * below the aggregate's highest claimed one (claimed rows may be left out:
 * only the unclaimed ones block), and due_us says in how many
 * microseconds each is due (0 when it is).  Per aggregate, the claimed rows
 * before the first unclaimed pending one go out in waves 0, 1, 2, ... (one
 * row of each aggregate per wave, lowest event_id first); the rest are held
 * (wave RELAY_HELD) until the blocking row is due, hold_us.  Returns the
 * number of waves.
 */
#define RELAY_HELD (-1)

struct relay_item {
	int64_t id, agg;
	int wave; /* out */
	long long hold_us; /* out, for held items */
};

struct relay_pending {
	int64_t agg, id;
	long long due_us;
};

int relay_plan(struct relay_item *items, size_t n,
    struct relay_pending *pending, size_t npending);

/*
 * Delay before the next attempt after `attempts` failed ones, in
 * microseconds: base * 2^(attempts - 1) capped at max, then "equal jitter"
 * (half of it fixed, half drawn from rnd) so that rows failed together do
 * not come back together.
 */
long long relay_backoff_us(
    long long attempts, long long base_ms, long long max_ms, uint64_t rnd);

/*
 * The eventId of the dead-letter record for an event: a UUID (version 8)
 * derived from the event's own id, so that a record written twice (a crash
 * between its delivery and the DEAD mark) is a repeat consumers can drop.
 */
void relay_dead_letter_id(const char *event_key, char out[37]);

/* What a dead-letter record says about its event. */
struct relay_dead {
	const char *event_key, *event_type, *topic; /* topic may be NULL */
	int64_t outbox_id, aggregate_id;
	long long attempts;
	const char *error_type, *error_message;
	const char *payload; /* the row's payload as stored, maybe not JSON */
	size_t payload_len;
	const char *occurred_at; /* now, ISO-8601 UTC */
};

/*
 * The PAYMENT_DEAD_LETTER record for payment.dlq as JSON text (caller
 * frees); without_payload leaves the payload out and says so, for an event
 * too large to fit in a record.
 */
char *relay_dead_letter(const struct relay_dead *d, bool without_payload);

/*
 * 1 when text is one JSON object (RFC 8259), with its top-level
 * "occurredAt" copied to at when that is a string without escapes shorter
 * than atlen (else at is empty); 0 when it is not, or when the fast check
 * cannot tell (too deep, say): ask a real parser then.
 */
int relay_json_object(const char *text, size_t len, char *at, size_t atlen);

/* Error types of dead-letter records. */
#define RELAY_UNKNOWN_TYPE "UNKNOWN_EVENT_TYPE"
#define RELAY_MALFORMED "MALFORMED_PAYLOAD"
#define RELAY_MAX_ATTEMPTS "MAX_ATTEMPTS"

#endif
