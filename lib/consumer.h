/*
 * consumer: what the workers (settle, refund, ledger-apply) share.
 *
 * The Kafka consumer-group loop and its commit protocol: messages are
 * applied in batches, each batch in one database transaction that also
 * records every event in processed_event; offsets are committed to Kafka
 * only after that transaction has committed.  Delivery is at least once,
 * the effect exactly once: a redelivered event finds its processed_event
 * row and is skipped.  A message that cannot be applied is dead-lettered:
 * a record with the original message, its topic, partition and offset and
 * the error goes to the outbox, in a transaction that also marks the
 * message processed, and the loop moves on.
 *
 * Transactions retried over deadlocks and lost connections, for the
 * gateway jobs of worker.h.
 *
 * And the pure pieces around both: strict event field readers, retry
 * backoff, keys for messages without an eventId, timestamp formats.
 */
#ifndef PAYKIT_CONSUMER_H
#define PAYKIT_CONSUMER_H

#include "db.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A handler's answer for a message it will not apply: dead-letter it. */
#define CONSUMER_REJECT (-1)
/* A transaction body's answer for "nothing to do": roll back, no error. */
#define CONSUMER_ABANDON (-2)

/* Dead-letter errorType values. */
#define CE_NOT_JSON "NOT_JSON"
#define CE_MISSING_FIELD "MISSING_FIELD"
#define CE_BAD_FIELD "BAD_FIELD"
#define CE_WRONG_EVENT_TYPE "WRONG_EVENT_TYPE"
#define CE_UNKNOWN_PAYMENT "UNKNOWN_PAYMENT"
#define CE_UNKNOWN_REFUND "UNKNOWN_REFUND"
#define CE_AMOUNT_MISMATCH "AMOUNT_MISMATCH"
#define CE_CURRENCY_MISMATCH "CURRENCY_MISMATCH"
#define CE_INVALID_STATE "INVALID_STATE"
#define CE_PROCESSING_ERROR "PROCESSING_ERROR"
#define CE_RETRIES_EXHAUSTED "RETRIES_EXHAUSTED"

/* Why a message cannot be applied: errorType and errorMessage. */
struct consumer_error {
	char type[32];
	char message[480];
};

/* Fill e; returns CONSUMER_REJECT. */
int consumer_reject(struct consumer_error *e, const char *type, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

/* A message being handled. */
struct consumer_msg {
	const char *topic; /* as consumed, prefix included */
	int32_t partition;
	int64_t offset;
	const char *key; /* NULL when the message has none */
	size_t keylen;
	const char *payload;
	size_t len;
	json_t *event; /* the payload, a JSON object */
	const char *event_id; /* eventId, a UUID */
	int64_t payment_id; /* set by the handler once known, for the DLQ */
};

/*
 * A message given to consumer_opts.handle_batch, which sets rc: 0 applied,
 * or CONSUMER_REJECT with *e filled (the loop dead-letters it in the same
 * transaction).  handle_batch returns 0 or an exit code; EX_SOFTWARE (the
 * database refused a statement) makes the loop roll back and redo the
 * batch a message at a time with handle, so that only the message at fault
 * is dead-lettered.  Like handle, it acts on the database only.
 */
struct consumer_item {
	struct consumer_msg *m;
	struct consumer_error *e;
	int rc;
};

/* A topic to consume and the eventType its messages must carry. */
struct consumer_topic {
	const char *topic; /* without the prefix */
	const char *event_type;
};

struct consumer_opts {
	const char *name; /* processed_event.consumer, client.id, logs */
	const char *group;
	const struct consumer_topic *topics;
	size_t ntopics;
	const char *dlq_event; /* event type of dead-letter records */
	bool once; /* stop when every assigned partition is at its end */
	long long max_messages; /* stop after this many; 0: no limit */
	/*
	 * Apply one message inside the open transaction: 0, CONSUMER_REJECT
	 * with e filled, or an exit code.  A batch may be rolled back and
	 * applied again, so a handler acts on the database only.
	 */
	int (*handle)(struct db *db, struct consumer_msg *m,
	    struct consumer_error *e, void *arg);
	/* Called after each batch has committed; may be NULL. */
	void (*committed)(void *arg);
	void *arg;
	/*
	 * Optional, set-based: apply the batch's new messages at once inside
	 * the open transaction (see consumer_item); NULL applies them one by
	 * one with handle.  The loop then marks the batch processed with one
	 * statement, and, without max_messages, reads the next batch while
	 * threads of its own apply up to two at once, each on a connection
	 * of its own: handle_batch and handle must then be safe to run on two
	 * threads at once.
	 */
	int (*handle_batch)(
	    struct db *db, struct consumer_item *items, size_t n, void *arg);
	/* Messages per transaction; 0: the consumer_batch setting. */
	long long batch;
};

/*
 * Install the SIGTERM and SIGINT handlers: a signal asks every loop to
 * finish what it is doing and return.
 */
void consumer_signals(void);
/* Ask every loop to stop, as a signal would. */
void consumer_stop(void);
bool consumer_stopping(void);
/* The signal that stopped us, or 0. */
int consumer_signal(void);
/* Sleep up to ms, less if a stop is asked for. */
void consumer_sleep(long long ms);

/*
 * Connect to the database for a worker (READ COMMITTED, so that claims
 * take no gap locks).  NULL after a message naming the server.
 */
struct db *consumer_connect(int *code);

/*
 * Run the consumer loop until a stop is asked for, --once is done, or
 * max_messages have been handled; commit the offsets of what was applied
 * and close.  *db may be replaced by a new connection after a lost one.
 * Returns 0 or an exit code, after a message.
 */
int consumer_run(const struct consumer_opts *o, struct db **db);

/*
 * Run body in a transaction on *db: begin, body, commit.  A deadlock or a
 * lost connection is retried a few times (reconnecting, which may replace
 * *db); body's other answers (an exit code, or any negative value such as
 * CONSUMER_ABANDON) roll back and are returned.
 */
int consumer_tx(
    struct db **db, int (*body)(struct db *db, void *arg), void *arg);

/* Pure helpers, unit-tested. */

/* Required fields, strictly typed: 0, or CONSUMER_REJECT with e filled. */
int consumer_int(const json_t *o, const char *key, long long min, long long max,
    long long *out, struct consumer_error *e);
int consumer_str(const json_t *o, const char *key, size_t maxlen,
    const char **out, struct consumer_error *e);

/* Whether s is a UUID in its 36-character text form. */
bool consumer_uuid_ok(const char *s);

/*
 * The dedup key of a message without a usable eventId, from where it was
 * read: UUID-shaped, the same for the same topic, partition and offset.
 */
void consumer_offset_key(
    const char *topic, int32_t partition, int64_t offset, char out[37]);

/*
 * Delay before the next attempt after failures failed attempts (>= 1):
 * base doubled per failure, at most cap, with "equal jitter" (half fixed,
 * half random from r in [0, 1)).  Milliseconds, at least 1.
 */
long long consumer_backoff(
    long long base, long long cap, long long failures, double r);

/*
 * ISO-8601 UTC ("2026-11-21T08:00:00.123456Z", fraction optional) to the
 * database's "2026-11-21 08:00:00.123456"; -1 if iso is not that form.
 */
int consumer_sqltime(const char *iso, char out[27]);
/* The database's timestamp text to ISO-8601 UTC; NULL gives "". */
void consumer_isotime(const char *sql, char out[32]);

/*
 * The dead-letter record of a message: originalTopic, partition, offset,
 * key, payload (the message as a string; payloadBase64 instead when it is
 * not UTF-8), errorType, errorMessage, consumer, group, timestamp, and
 * originalEventId and paymentId when known.
 */
json_t *consumer_dlq_record(const struct consumer_msg *m, const char *name,
    const char *group, const struct consumer_error *e);

/*
 * Retention (consumer_purge.c): delete name's processed_event rows older
 * than age_ms, consumer_purge_batch rows per autocommitted statement, until
 * none is left or a stop is asked for; *purged counts them.  0, or an exit
 * code after a message.  An event redelivered after its row is gone is
 * applied again, so age_ms must outlast any redelivery or replay.
 */
int consumer_purge(
    struct db *db, const char *name, long long age_ms, uint64_t *purged);

#endif
