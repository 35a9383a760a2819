/*
 * stream-lines: what payctl capture and payctl refund share.  A request's
 * outcome is a result (the object to print and its exit code), printed
 * alone by the single request and as one JSON line per request by the
 * stream form ('-'), which reads request lines from standard input, hands
 * them to a pool of workers with a database connection each, and sums the
 * results up in its exit status.
 */
#ifndef PAYCTL_STREAM_LINES_H
#define PAYCTL_STREAM_LINES_H

#include "payctl.h"

#include <stddef.h>
#include <stdint.h>

/* One request of a payment. */
struct preq {
	int64_t id;
	int64_t amount; /* refund: 0 for what is left */
	const char *reason; /* refund */
};

/* Its outcome. */
struct result {
	int code; /* exit code of the request */
	json_t *line; /* the result or error object */
	char msg[1024]; /* for standard error when code != 0 */
};

/* A refusal or failure: {"error":error,"message":...} plus extra's fields. */
void result_fail(struct result *r, int code, const char *error, json_t *extra,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* RATE_LIMITED: the request of merchant is over rl, retry after seconds. */
void result_ratelimited(struct result *r, const struct ratelimit *rl,
    const char *merchant, long long after);
/* A DATABASE_ERROR, "what: db_error()"; rc 0 counts as internal. */
void result_dbfail(struct result *r, struct db *db, int rc, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));

/*
 * Take one request of merchant from rl.  True when it may go on; otherwise
 * r holds RATE_LIMITED or the database error.
 */
bool result_ratelimit(struct db *db, const struct ratelimit *rl,
    const char *merchant, struct result *r);

/* The single request's output: r->msg on stderr, r->line on stdout. */
int result_print(struct result *r);

struct stream_cmd {
	const char *action; /* its rate limit: "capture", "refund" */
	/* The request of a line's object; -1 with why in err. */
	int (*parse)(const json_t *o, struct preq *q, char *err, size_t errlen);
	void (*run)(struct db *db, const struct ratelimit *rl,
	    const struct preq *q, struct result *r);
	/*
	 * Optional: run q[0..n), 2 to batch requests of as many payments,
	 * at once, the results in r[0..n).
	 */
	void (*run_batch)(struct db *db, const struct ratelimit *rl,
	    const struct preq *const *q, struct result *r, size_t n);
	size_t batch;
};

/*
 * The stream form: the requests of standard input run by workers threads
 * (0: the default, 4), in input order per payment; returns the exit
 * status.
 */
int stream_run(const struct stream_cmd *cmd, long workers);

/*
 * For run_batch: a batch travels as one JSON array parameter that
 * JSON_TABLE turns into rows, as in authorize-batch.c, so each statement
 * is prepared once and takes one round trip whatever the batch's size.
 * STREAM_IDS reads [{"i":index,"id":payment_id},...] made by stream_ids().
 */
#define STREAM_IDS                                                             \
	"JSON_TABLE(?, '$[*]' COLUMNS (i INT PATH '$.i',"                      \
	" id BIGINT PATH '$.id')) j"

/* The indices of q[0..n) in payment id order, the order rows are locked. */
void stream_order(const struct preq *const *q, size_t *order, size_t n);
/* The ids parameter of the requests order[0..n) (for free()). */
char *stream_ids(const struct preq *const *q, const size_t *order, size_t n);
/* The compact text of a (taken) for a parameter (for free()). */
char *stream_text(json_t *a);
/*
 * Run sql, "SELECT j.i, " PAYMENT_COLUMNS ..., with the ids parameter and
 * copy row j.i to p[j.i].  Returns 0 or a db error.
 */
int stream_payments(struct db *db, const char *sql, const char *ids,
    struct payment *p, size_t n);
/*
 * Take the rate limit of the requests that have no result yet, for each
 * merchant at once and in merchant order: those over it get RATE_LIMITED.
 */
int stream_limit(struct db *db, const struct ratelimit *rl,
    const struct payment *p, struct result *r, size_t n);
/*
 * The text of an event payload ev (taken) with the envelope that
 * outbox_insert() adds; its eventId in key.
 */
char *stream_event(json_t *ev, const char *type, char key[37]);
/*
 * Insert the events of a, [{"k":eventId,"id":payment_id,"p":payload},...]
 * (taken), all of type.
 */
int stream_events(struct db *db, const char *type, json_t *a);

/* The -C/--concurrency value, 1 to 64; else a usage error. */
int stream_workers(const char *arg, long *workers);

#endif
