/*
 * payctl: the subcommands' entry points and what they share.
 */
#ifndef PAYCTL_H
#define PAYCTL_H

#include "breaker.h"
#include "db.h"
#include "outbox.h"
#include "pg.h"
#include "ratelimit.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

int cmd_migrate(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_authorize(int argc, char **argv);
int cmd_capture(int argc, char **argv);
int cmd_refund(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_breaker(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_recover(int argc, char **argv);
int cmd_recount(int argc, char **argv);

/*
 * Load the configuration and connect to the database, or print why not and
 * return the exit code.
 */
int payctl_connect(struct db **db);

/*
 * The -w/--wait seconds of migrate and recount (0 to 3600) into *secs: 0,
 * or the usage error's exit code, said.
 */
int payctl_parse_wait(const char *s, long long *secs);

/*
 * conn.c: a database connection that is made again after the server went
 * away.  shared is a connection someone else holds too (the breaker's):
 * conn_fail() lets go of it without closing it.
 */
struct conn {
	struct db *db;
	struct db *shared;
	int code; /* last connect failure */
	char msg[512];
};

/* Connect if not connected: 0, or the exit code with why in msg. */
int conn_use(struct conn *c);
/* After a failure with exit code rc: drop a connection that went away. */
void conn_fail(struct conn *c, int rc);
/* Why the last statement or connect failed. */
const char *conn_error(const struct conn *c);
/*
 * Run body on c until it succeeds or fails for good: while it fails
 * because the server went away (69) or for a moment (75), reconnect and
 * try again, pausing 20 ms doubling up to 1 s, until the monotonic clock
 * passes deadline (ms).  Returns body's last answer or the connect error.
 */
int conn_retry(struct conn *c, int64_t deadline,
    int (*body)(struct db *db, void *arg), void *arg);

/* payment.c: a payment row, read and printed the same way everywhere. */
struct payment {
	int64_t id; /* 0: no such payment */
	char merchant[33];
	char key[65];
	int64_t amount;
	char currency[4];
	bool auto_capture;
	char status[21];
	char approval[33];
	char txn[65];
	char code[33];
	char message[256];
	int64_t captured;
	int64_t refunded;
	char created_at[32];
	char updated_at[32];
	bool lease_expired; /* PENDING and its claim's lease is over */
};

/* The payment's columns, in the order payment_read() wants them. */
#define PAYMENT_COLUMNS                                                        \
	"payment_id, merchant_id, idempotency_key, amount, currency,"          \
	" auto_capture, status, approval_number, transaction_id,"              \
	" pg_response_code, pg_response_message, captured_amount,"             \
	" refunded_amount, DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%s.%fZ'),"  \
	" DATE_FORMAT(updated_at, '%Y-%m-%dT%H:%i:%s.%fZ'),"                   \
	" lease_until IS NOT NULL AND lease_until < NOW(6)"

/* Copy the current row of a PAYMENT_COLUMNS query, from column first. */
void payment_read(struct db *db, unsigned first, struct payment *p);

/* One payment by id (lock: FOR UPDATE) or by key; p->id is 0 if none. */
int payment_by_id(struct db *db, int64_t id, bool lock, struct payment *p);
int payment_by_key(
    struct db *db, const char *merchant, const char *key, struct payment *p);

/* Everything about a payment (show, list, capture). */
json_t *payment_json(const struct payment *p);
/* What authorize prints: the result of the authorization. */
json_t *payment_brief(const struct payment *p, bool replayed);

/* A payment id operand: 1 to 2^63-1; else a usage error. */
int payctl_parse_id(const char *s, int64_t *id);

/*
 * A failure of a request that was understood: the message on stderr as
 * "payctl cmd: message" and, on stdout, {"error":error,"message":message}
 * merged with the fields of extra (taken over; may be NULL).  Returns code.
 */
int payctl_fail(int code, const char *error, json_t *extra, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));
/* The same for a database error: DATABASE_ERROR, db_error() last. */
int payctl_dbfail(struct db *db, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Take one request of merchant from the action's rate limit.  0 when it
 * may go on; otherwise the failure is printed (75 RATE_LIMITED, or the
 * database error) and its exit code returned.
 */
int payctl_ratelimit(struct db *db, const char *action, const char *merchant);

/*
 * authorize.c: one authorization, shared by the single request and the
 * stream's slow path.
 */
struct auth {
	const char *merchant;
	const char *key;
	const char *currency;
	int64_t amount;
	bool capture;
	/* The claim: the PENDING row held while the gateway is asked. */
	int64_t payment_id;
	char token[37];
	char created_at[32];
	int64_t lease_end; /* monotonic ms; no sooner than the row's */
};

struct auth_out {
	int code; /* exit code of this request */
	bool declined; /* AUTH_FAILED, now or replayed */
	json_t *line; /* the result or error object */
	char msg[512]; /* for stderr when code != 0 */
};

/* How long a claim is held: twice pg_timeout plus 10 s, in microseconds. */
int64_t auth_lease_us(void);

/*
 * Claim the key, or replay, wait for or take over the existing claim.  c
 * is connected; a gateway answer is recorded across a database outage
 * for as long as the claim's lease lasts.
 */
void auth_run(struct conn *c, struct http *h, const struct ratelimit *rl,
    struct auth *a, struct auth_out *out);

/*
 * The outbox row of an approved authorization's event: PAYMENT_AUTHORIZED
 * with status AUTHORIZED, or PAYMENT_CAPTURE_REQUESTED with
 * CAPTURE_REQUESTED (see outbox.h).  The caller frees ev->text.
 */
void auth_event(struct outbox_event *ev, const struct auth *a, const char *type,
    const char *status, const struct pg_result *res);

/* The result object of a finished authorization held by a. */
json_t *auth_json(const struct auth *a, const char *status,
    const struct pg_result *res, bool replayed);

/*
 * gw.c: the pg circuit breaker around every gateway authorization.
 * gw_open() attaches it on db (used under gw's lock, never inside a
 * transaction); gw_permit() before a call, false with res filled as a
 * retryable PG_ERROR when the breaker is open; gw_record() with every
 * outcome of a permitted call; gw_close() writes what is counted.
 */
int gw_open(struct db *db);
void gw_close(void);
bool gw_permit(struct breaker_call *call, struct pg_result *res);
void gw_record(const struct breaker_call *call, const struct pg_result *res);

/* authorize-stream.c: payctl authorize - */
int auth_stream(bool exit_status, long concurrency);

#endif
