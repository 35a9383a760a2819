/*
 * worker: the skeleton of the workers (settle, refund, ledger-apply), so
 * that each program holds only what is its own: options and main, the
 * Kafka consumer loop of consumer.h, and for settle and refund the gateway
 * jobs.  -P/--purge-older-than age deletes the worker's processed_event
 * rows older than age (consumer_purge()), prints {"purged":n} and exits.
 *
 * A gateway job is a row of a request table (settlement_request,
 * refund_request) with a status and next_retry_at.  One thread claims due
 * rows in batches, in one transaction (FOR UPDATE SKIP LOCKED, then a
 * lease: next_retry_at moves past the longest call, and its new value is
 * the claim's token); another keeps up to --concurrency gateway calls in
 * flight with libcurl multi.  Two recorder threads write the outcomes in
 * batches, one transaction per batch, each outcome's change guarded by the
 * status and token it expects, its outbox event in the same transaction.
 * A process that dies leaves its claims to run out and come due again; the
 * call made again carries the same idempotency key.  No transaction is
 * open across a call.
 *
 * First attempts and retries take the same path.  A failed attempt waits
 * an exponential backoff; after the last retry the program gives the
 * request up; a call the pg circuit breaker refuses is deferred without
 * spending an attempt.
 */
#ifndef PAYKIT_WORKER_H
#define PAYKIT_WORKER_H

#include "consumer.h"
#include "db.h"
#include "pg.h"

#include <stdbool.h>
#include <stdint.h>

/* A record's answer: the claim was taken over, nothing was written. */
#define WORKER_LOST (-4)
/* A vet's answer: the job was settled without a call (and logged later). */
#define WORKER_RESOLVED (-5)

/*
 * A claimed job.  A program's own job struct begins with one; the worker
 * allocates job_size bytes, zeroed, for each.
 */
struct worker_job {
	struct worker_job *next;
	/* The claimed row: the claimed statement's first 13 columns. */
	int64_t id; /* the request row */
	int64_t payment_id, amount;
	char currency[4];
	long long failures; /* failed attempts before this one */
	char token[32]; /* next_retry_at as claimed */
	char requested[32], last_retry[32]; /* requested_at, last_retry_at */
	char pstatus[24], txn[65], merchant[33]; /* the payment's */
	char code[33], message[256]; /* the last pg_response_* */
	/* The call: op and req are the program's to fill. */
	enum pg_op op;
	struct pg_request req;
	char key[80]; /* room for req.key */
	struct pg_result res;
	/* What record decided, for the log. */
	const char *outcome;
	long long delay_ms;
	char why[320];
	bool lost; /* taken over by another caller */
	struct worker_call *call; /* the worker's, while in flight */
};

/* A claim being made: see worker_claim(). */
struct worker_claim {
	const char *cutoff; /* a timestamp, or NULL for now */
	long long max, picked;
	struct worker_job *jobs, **tail;
};

/* What a program that calls the gateway supplies. */
struct worker_jobs {
	size_t job_size;
	/* The request table's noun in log lines: "settlement", "refund". */
	const char *noun;
	/* Claim due rows in the open transaction: worker_claim(). */
	int (*claim)(struct db *db, struct worker_claim *c);
	/*
	 * Read what j needs beyond the common columns from the current row
	 * of worker_claim's claimed statement; may be NULL.
	 */
	void (*read)(struct db *db, struct worker_job *j);
	/*
	 * Before the call, in the claim's transaction: 0 to call, or
	 * WORKER_RESOLVED when j was given up (outcome set), or an exit code.
	 */
	int (*vet)(struct db *db, struct worker_job *j);
	/*
	 * Record j's answer in the open transaction: lock what it changes
	 * (the payment first, always), then record an approval, or hand a
	 * failure to worker_failed().  0, WORKER_LOST, or an exit code.  A
	 * batch may be rolled back and recorded again: act on the database
	 * and on j's outcome fields only.
	 */
	int (*record)(struct db *db, struct worker_job *j);
	/*
	 * Optional, set-based: record the batch v[0..n) (sorted by payment,
	 * then request) in the open transaction before record() sees it.
	 * It locks what the whole batch changes, payments first, in v's
	 * order, and records what it can at once: a job it records gets its
	 * outcome set, or lost when the claim was taken over; record() gets
	 * the others.  0 or an exit code.  NULL: record() gets every job.
	 */
	int (*record_batch)(struct db *db, struct worker_job **v, size_t n);
	/*
	 * Give the request up after inc more failed attempts: DEAD, the
	 * payment's failed status and the dead letter.  0, WORKER_LOST or an
	 * exit code.
	 */
	int (*give_up)(
	    struct db *db, struct worker_job *j, int inc, const char *type);
	/* One line for j's outcome, after it has committed. */
	void (*log)(const struct worker_job *j);
};

/* A worker program. */
struct worker_def {
	const char *usage; /* the -h text */
	/* Settings prefix: PREFIX_group, PREFIX_concurrency, ... */
	const char *prefix;
	/*
	 * The consumer loop's options: name, topics, ntopics, dlq_event,
	 * handle, handle_batch (and arg) are the program's, and batch, which
	 * a consumer_batch setting overrides; the worker sets group, once,
	 * max_messages and committed.
	 */
	struct consumer_opts consumer;
	/* NULL for a worker that does not call the gateway. */
	const struct worker_jobs *jobs;
};

/* Parse argv, load the settings, run until done: the exit code. */
int worker_main(int argc, char **argv, const struct worker_def *d);

/*
 * Claim, in the open transaction, up to c->max due rows: pick gives their
 * ids (FOR UPDATE SKIP LOCKED; parameters the cutoff and the limit), lease
 * claims the ids of a JSON array (parameters the array and the lease in
 * microseconds), claimed reads them back (parameter the array): id,
 * payment_id, amount, currency, retry_count, next_retry_at, requested_at,
 * last_retry_at, the payment's status, transaction_id and merchant_id,
 * pg_response_code, pg_response_message, then what read() takes.
 * Then each job is vetted.  0 or an exit code.
 */
int worker_claim(struct db *db, struct worker_claim *c, const char *pick,
    const char *lease, const char *claimed);

/*
 * Record a failed call in the open transaction: a refusal by the circuit
 * breaker is deferred (no attempt spent), a failure retried after a
 * backoff, the last one given up.  deferred and failed take code, message,
 * the delay in microseconds, id and token.  0, WORKER_LOST or an exit code.
 */
int worker_failed(struct db *db, struct worker_job *j, const char *deferred,
    const char *failed);

/*
 * For record_batch: run sql with the text of a, a JSON array of rows, as
 * its one parameter, when a has rows, and check that it changed expected
 * rows.  The batch's rows are locked, so a count that differs is a fault
 * of ours: one line and EX_SOFTWARE.  0 or an exit code.
 */
int worker_exec_rows(
    struct db *db, const char *sql, const json_t *a, size_t expected);

/*
 * For record_batch: run the query sql with one parameter, the jobs of v as
 * a JSON array of [payment id, request id, token] rows; its result is then
 * read with db_next().  0 or an exit code.
 */
int worker_query_jobs(
    struct db *db, const char *sql, struct worker_job **v, size_t n);

/* Copy src (NULL gives "") into dst of len bytes. */
void worker_copy(char *dst, size_t len, const char *src);

/*
 * Attach to the pg circuit breaker, on a connection of its own, before
 * the jobs start: 0 or an exit code after a message.  Close at the end.
 */
int worker_jobs_open(void);
void worker_jobs_close(void);

/*
 * The gateway jobs of d, with up to concurrency calls in flight: until
 * worker_jobs_wait(), or with pass once over what is due at the start,
 * each job at most once.  0, or an exit code after a message.
 */
int worker_jobs_start(const struct worker_jobs *d, const char *prefix,
    long concurrency, bool pass);
/* Wake the claimer: work was just made due. */
void worker_jobs_kick(void);
/*
 * Stop claiming (a pass stops by itself), finish the calls in flight,
 * record them and stop: 0 or the first exit code.
 */
int worker_jobs_wait(void);

#endif
