/*
 * pg: the payment gateway's API (authorize, settle, refund) over http:
 * request bodies, reply parsing, and the one classification of outcomes.
 * A decline is an answer (PG_DECLINED), not an error; no answer, a 5xx, or
 * a reply that is not the gateway's JSON is PG_ERROR with an exit code.
 * Requests and replies are split from the transport so that stream mode can
 * drive many calls at once with libcurl multi.
 */
#ifndef PAYKIT_PG_H
#define PAYKIT_PG_H

#include "http.h"

#include <stdbool.h>
#include <stdint.h>

enum pg_op { PG_AUTHORIZE, PG_SETTLE, PG_REFUND };
enum pg_outcome { PG_APPROVED, PG_DECLINED, PG_ERROR };

struct pg_result {
	enum pg_outcome outcome;
	int exit_code; /* PG_ERROR: 69, or 75 when a retry is safe */
	bool breaker_failure; /* counts as a failure for the pg breaker */
	long http_status;
	double ms;
	char code[33]; /* responseCode, e.g. "0000", "PG_TIMEOUT" */
	char message[256]; /* the gateway's message, or why no answer */
	char approval[33]; /* authorize: approvalNumber */
	char txn[65]; /* authorize, settle: transactionId */
	char cancel_txn[65]; /* refund: cancelTransactionId */
};

struct pg_request {
	const char *merchant; /* authorize */
	int64_t payment_id; /* settle, refund */
	const char *txn; /* settle, refund: the authorization's id */
	int64_t amount;
	const char *currency;
	const char *reason; /* refund */
	const char *key; /* idempotency key, always */
};

/* The endpoint URL (pg_url + path) and the JSON body; caller frees both. */
char *pg_url(enum pg_op op);
char *pg_body(enum pg_op op, const struct pg_request *req);

/*
 * Classify a finished call: rc is http_*'s return, r its reply.  Always
 * fills res; returns res->outcome.
 */
enum pg_outcome pg_classify(
    enum pg_op op, int rc, const struct http_reply *r, struct pg_result *res);

/*
 * The result of a call a circuit breaker refused: PG_ERROR, retryable (75),
 * code CIRCUIT_OPEN, not itself a failure of the gateway.
 */
void pg_refused(struct pg_result *res, const char *breaker);

/* One blocking call: body, POST, classify. */
enum pg_outcome pg_call(struct http *h, enum pg_op op,
    const struct pg_request *req, struct pg_result *res);

#endif
