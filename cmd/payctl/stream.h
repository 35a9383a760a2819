/*
 * stream: what the two halves of payctl authorize - share: a request on
 * its way through the pipeline (authorize-stream.c runs the threads and the
 * gateway calls, authorize-batch.c the batched statements).
 */
#ifndef PAYCTL_STREAM_H
#define PAYCTL_STREAM_H

#include "http.h"
#include "lines.h"
#include "payctl.h"

#include <stddef.h>

#define BATCH 256 /* requests per statement */

struct sreq {
	struct sreq *next;
	struct auth a; /* points into the buffers below */
	long line;
	json_t *rid; /* requestId as given, or NULL */
	char merchant[33];
	char key[65];
	char currency[4];
	/* Gateway call. */
	char *body;
	struct http_call hc;
	struct pg_result res;
	struct breaker_call bc;
	/* Batch bookkeeping. */
	int state;
};

/* sreq.state after a batch statement. */
enum { SR_NEW, SR_OWNED, SR_OTHER, SR_DONE, SR_SLOW, SR_LOST };

/* authorize-input.c */
/*
 * The request of one line, or NULL with why in err and the line's
 * requestId, when it had a good one, in *rid (the caller's).
 */
struct sreq *sreq_parse(
    long lineno, const char *s, char *err, size_t errlen, json_t **rid);
void sreq_free(struct sreq *r);

/*
 * Claim the keys of v[0..n) with one multi-row insert: requests whose row
 * was inserted become SR_OWNED (payment_id, token, created_at set); the
 * others SR_OTHER.  Returns 0 or a db exit code.
 */
int batch_claim(struct db *db, struct sreq **v, size_t n);

/*
 * Look up the rows holding the keys of the SR_OTHER requests of v.  Each
 * gets its outcome from decide(): replay, conflict, or SR_SLOW for a row
 * still PENDING or gone.
 */
int batch_existing(struct db *db, struct sreq **v, size_t n,
    void (*decide)(struct sreq *, const struct payment *));

/* Delete the PENDING claims of v (their gateway call failed or was refused). */
int batch_release(struct db *db, struct sreq **v, size_t n);

/*
 * Record the gateway's outcomes of v in one transaction: the guarded
 * updates, the outbox events of the approved ones, and the release of the
 * failed ones.  A request whose claim was taken over meanwhile becomes
 * SR_LOST and is left alone.  Returns 0 or a db exit code (nothing
 * written).
 */
int batch_finish(struct db *db, struct sreq **v, size_t n);

/* The status an outcome records. */
const char *batch_status(const struct sreq *r);

#endif
