/*
 * payctl refund: request a full or partial refund of a captured payment.
 * In one transaction, with the payment row locked: check that the refunds
 * requested so far plus this one stay within the captured amount, move the
 * payment to REFUND_REQUESTED (guarded by its status), and write the
 * refund_request row and its PAYMENT_REFUND_REQUESTED event.  The refund
 * worker does the rest.
 *
 * payctl refund - does the same for each request line of standard input
 * (stream-lines.c).
 */
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "outbox.h"
#include "stream-lines.h"
#include "topics.h"
#include "valid.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
    "usage: payctl refund [-h] [-a amount] -r reason id\n"
    "       payctl refund [-h] [-C n] -\n";

/*
 * Every refund not given up for good holds its amount: PENDING and SUCCESS
 * ones, and FAILED ones, which the refund worker retries.
 */
static const char reserved_sql[] =
    "SELECT COALESCE(SUM(amount), 0) FROM refund_request"
    " WHERE payment_id = ? AND status <> 'DEAD'";
static const char request_sql[] =
    "UPDATE payment SET status = 'REFUND_REQUESTED' WHERE payment_id = ?"
    " AND status IN ('CAPTURED', 'PARTIALLY_REFUNDED')";
static const char insert_sql[] =
    "INSERT INTO refund_request (payment_id, amount, currency, reason, status)"
    " VALUES (?, ?, ?, ?, 'PENDING')";

/*
 * The stream refunds up to BATCH payments in one transaction, with a
 * statement per step for the whole batch.
 */
#define BATCH 64
static const char batch_lock_sql[] =
    "SELECT STRAIGHT_JOIN j.i, " PAYMENT_COLUMNS " FROM " STREAM_IDS
    " JOIN payment ON payment_id = j.id FOR UPDATE";
static const char batch_reserved_sql[] =
    "SELECT j.i, COALESCE(SUM(r.amount), 0) FROM " STREAM_IDS
    " LEFT JOIN refund_request r ON r.payment_id = j.id"
    " AND r.status <> 'DEAD' GROUP BY j.i";
static const char batch_request_sql[] =
    "UPDATE " STREAM_IDS " STRAIGHT_JOIN payment p ON p.payment_id = j.id"
    " SET p.status = 'REFUND_REQUESTED'"
    " WHERE p.status IN ('CAPTURED', 'PARTIALLY_REFUNDED')";
static const char batch_insert_sql[] =
    "INSERT INTO refund_request (payment_id, amount, currency, reason, status)"
    " SELECT j.id, j.a, j.c, j.r, 'PENDING' FROM JSON_TABLE(?, '$[*]'"
    " COLUMNS (id BIGINT PATH '$.id', a BIGINT PATH '$.a',"
    " c CHAR(3) PATH '$.c', r VARCHAR(500) CHARACTER SET utf8mb4"
    " PATH '$.r')) j RETURNING id, payment_id";

static void
not_found(int64_t id, struct result *r)
{
	result_fail(r, EX_DATAERR, "NOT_FOUND",
	    json_pack("{s:I}", "payment_id", (json_int_t)id),
	    "payment '%lld': not found", (long long)id);
}

/* Refuse p unless it is CAPTURED or PARTIALLY_REFUNDED. */
static bool
refundable(const struct payment *p, struct result *r)
{
	if (strcmp(p->status, "CAPTURED") == 0 ||
	    strcmp(p->status, "PARTIALLY_REFUNDED") == 0)
		return true;
	result_fail(r, EX_DATAERR, "INVALID_STATE",
	    json_pack("{s:I, s:s}", "payment_id", (json_int_t)p->id, "status",
	        p->status),
	    "payment '%lld': status is %s, not CAPTURED or PARTIALLY_REFUNDED",
	    (long long)p->id, p->status);
	return false;
}

/*
 * The amount to refund, what the request asks or else all that is left;
 * 0 and r set when it is more than that.
 */
static int64_t
within(const struct payment *p, const struct preq *q, int64_t left,
    struct result *r)
{
	int64_t amount = q->amount ? q->amount : left;

	if (amount > 0 && amount <= left)
		return amount;
	if (left < 0)
		left = 0;
	result_fail(r, EX_DATAERR, "OVER_REFUND",
	    json_pack("{s:I, s:I, s:I, s:I}", "payment_id", (json_int_t)p->id,
	        "captured_amount", (json_int_t)p->captured, "refundable_amount",
	        (json_int_t)left, "requested_amount", (json_int_t)amount),
	    "payment '%lld': refund of %lld %s exceeds the %lld %s left to "
	    "refund",
	    (long long)p->id, (long long)amount, p->currency, (long long)left,
	    p->currency);
	return 0;
}

/* The payload of PAYMENT_REFUND_REQUESTED, without the envelope. */
static json_t *
event(const struct payment *p, int64_t refund_id, int64_t amount,
    const char *reason)
{
	return json_pack("{s:I, s:s, s:s, s:I, s:s, s:I, s:s, s:s}",
	    "paymentId", (json_int_t)p->id, "status", "REFUND_REQUESTED",
	    "merchantId", p->merchant, "amount", (json_int_t)amount, "currency",
	    p->currency, "refundId", (json_int_t)refund_id, "reason", reason,
	    "transactionId", p->txn);
}

/* The result; left is what was left before this refund. */
static void
requested(const struct payment *p, int64_t refund_id, int64_t amount,
    int64_t left, const char *reason, struct result *r)
{
	r->code = 0;
	r->line = json_pack("{s:I, s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:s}",
	    "refund_id", (json_int_t)refund_id, "payment_id", (json_int_t)p->id,
	    "status", "REFUND_REQUESTED", "merchant_id", p->merchant,
	    "currency", p->currency, "refund_amount", (json_int_t)amount,
	    "captured_amount", (json_int_t)p->captured, "refundable_amount",
	    (json_int_t)(left - amount), "reason", reason);
}

/*
 * 0 with r set when the request is decided: committed when r->code is 0,
 * refused (for the caller to roll back) otherwise.  Else a db error,
 * nothing decided.
 */
static int
refund(struct db *db, const struct ratelimit *rl, const struct preq *q,
    struct result *r)
{
	struct payment p;
	int64_t left, amount, refund_id;
	json_t *ev;
	int rc;

	if ((rc = payment_by_id(db, q->id, true, &p)) != 0)
		return rc;
	if (p.id == 0) {
		not_found(q->id, r);
		return 0;
	}
	if (!refundable(&p, r))
		return 0;
	if ((rc = db_query(db, reserved_sql, "i", p.id)) != 0)
		return rc;
	if ((rc = db_next(db)) != 1)
		return rc < 0 ? -rc : EX_SOFTWARE;
	left = p.captured - db_int(db, 0);
	while (db_next(db) == 1)
		;
	if ((amount = within(&p, q, left, r)) == 0)
		return 0;
	if (!result_ratelimit(db, rl, p.merchant, r))
		return 0;
	if ((rc = db_exec(db, request_sql, "i", p.id)) != 0)
		return rc;
	if (db_affected(db) != 1) {
		/* Cannot happen while the row is locked. */
		result_fail(r, EX_TEMPFAIL, "CONCURRENT_CHANGE", NULL,
		    "payment '%lld': changed while locked; retry",
		    (long long)p.id);
		return 0;
	}
	if ((rc = db_exec(db, insert_sql, "iiss", p.id, amount, p.currency,
	         q->reason)) != 0)
		return rc;
	refund_id = (int64_t)db_insert_id(db);
	ev = event(&p, refund_id, amount, q->reason);
	rc = outbox_insert(db, EV_REFUND_REQUESTED, p.id, ev, NULL);
	json_decref(ev);
	if (rc != 0 || (rc = db_commit(db)) != 0)
		return rc;
	requested(&p, refund_id, amount, left, q->reason, r);
	return 0;
}

/* One refund in its transaction, tried again after a deadlock. */
static void
run(struct db *db, const struct ratelimit *rl, const struct preq *q,
    struct result *r)
{
	int rc, tries;

	for (tries = 0; tries < 3; tries++) {
		memset(r, 0, sizeof(*r));
		if ((rc = db_begin(db)) == 0)
			rc = refund(db, rl, q, r);
		if (rc != 0 || r->code != 0)
			db_rollback(db);
		if (rc == 0 || !db_retryable(db))
			break;
	}
	if (rc != 0)
		result_dbfail(
		    r, db, rc, "refund payment '%lld'", (long long)q->id);
}

/* The batch. */

struct batch {
	struct payment p[BATCH];
	int64_t left[BATCH], amount[BATCH], refund_id[BATCH];
	size_t order[BATCH]; /* by payment id; then the ones to refund */
	size_t n, nv;
};

/* What is left to refund of each payment order[0..nv). */
static int
reserved(struct db *db, const struct preq *const *q, struct batch *b)
{
	char *s = stream_ids(q, b->order, b->nv);
	size_t i;
	int rc;

	rc = db_query(db, batch_reserved_sql, "s", s);
	free(s);
	if (rc != 0)
		return rc;
	while ((rc = db_next(db)) == 1)
		if ((i = (size_t)db_int(db, 0)) < b->n)
			b->left[i] = b->p[i].captured - db_int(db, 1);
	return rc < 0 ? -rc : 0;
}

/* Keep in order[0..nv) the requests without a result yet. */
static void
pending(struct batch *b, const struct result *r)
{
	size_t i, nv = 0;

	for (i = 0; i < b->nv; i++)
		if (r[b->order[i]].line == NULL)
			b->order[nv++] = b->order[i];
	b->nv = nv;
}

/* Insert the refund_request rows of order[0..nv) and their events. */
static int
insert(struct db *db, const struct preq *const *q, struct batch *b)
{
	json_t *a = json_array();
	char key[37], *s;
	size_t i, k;
	int64_t id;
	int rc;

	for (k = 0; k < b->nv; k++) {
		i = b->order[k];
		json_array_append_new(a,
		    json_pack("{s:I, s:I, s:s, s:s}", "id",
		        (json_int_t)b->p[i].id, "a", (json_int_t)b->amount[i],
		        "c", b->p[i].currency, "r", q[i]->reason));
	}
	s = stream_text(a);
	rc = db_query(db, batch_insert_sql, "s", s);
	free(s);
	if (rc != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		id = db_int(db, 1);
		for (k = 0; k < b->nv; k++)
			if (b->p[b->order[k]].id == id)
				b->refund_id[b->order[k]] = db_int(db, 0);
	}
	if (rc < 0)
		return -rc;
	a = json_array();
	for (k = 0; k < b->nv; k++) {
		i = b->order[k];
		if (b->refund_id[i] == 0) {
			json_decref(a);
			return EX_SOFTWARE;
		}
		s = stream_event(event(&b->p[i], b->refund_id[i], b->amount[i],
		                     q[i]->reason),
		    EV_REFUND_REQUESTED, key);
		json_array_append_new(a,
		    json_pack("{s:s, s:I, s:s}", "k", key, "id",
		        (json_int_t)b->p[i].id, "p", s));
		free(s);
	}
	return stream_events(db, EV_REFUND_REQUESTED, a);
}

/*
 * One transaction: lock the rows (in id order), refuse what cannot be
 * refunded, and refund the rest with their events.  0 with every result
 * set, or nonzero with nothing written.
 */
static int
batch(struct db *db, const struct ratelimit *rl, const struct preq *const *q,
    struct result *r, struct batch *b)
{
	size_t i, k;
	char *s;
	int rc;

	stream_order(q, b->order, b->n);
	b->nv = b->n;
	s = stream_ids(q, b->order, b->n);
	rc = stream_payments(db, batch_lock_sql, s, b->p, b->n);
	free(s);
	if (rc != 0)
		return rc;
	for (i = 0; i < b->n; i++) {
		if (b->p[i].id == 0)
			not_found(q[i]->id, &r[i]);
		else
			refundable(&b->p[i], &r[i]);
	}
	pending(b, r);
	if (b->nv > 0 && (rc = reserved(db, q, b)) != 0)
		return rc;
	for (k = 0; k < b->nv; k++) {
		i = b->order[k];
		b->amount[i] = within(&b->p[i], q[i], b->left[i], &r[i]);
	}
	if (rl->limit > 0 && (rc = stream_limit(db, rl, b->p, r, b->n)) != 0)
		return rc;
	pending(b, r);
	if (b->nv == 0)
		return 0;
	s = stream_ids(q, b->order, b->nv);
	if ((rc = db_exec(db, batch_request_sql, "s", s)) == 0 &&
	    db_affected(db) != b->nv)
		rc = EX_SOFTWARE; /* the rows are locked: cannot happen */
	free(s);
	if (rc != 0 || (rc = insert(db, q, b)) != 0)
		return rc;
	for (k = 0; k < b->nv; k++) {
		i = b->order[k];
		requested(&b->p[i], b->refund_id[i], b->amount[i], b->left[i],
		    q[i]->reason, &r[i]);
	}
	return 0;
}

/*
 * A batch that fails is rolled back and its requests run one by one, so
 * each gets its own outcome.
 */
static void
run_batch(struct db *db, const struct ratelimit *rl,
    const struct preq *const *q, struct result *r, size_t n)
{
	struct batch *b = xcalloc(1, sizeof(*b));
	size_t i;
	int rc;

	b->n = n;
	if ((rc = db_begin(db)) == 0 && (rc = batch(db, rl, q, r, b)) == 0)
		rc = db_commit(db);
	if (rc != 0) {
		db_rollback(db);
		for (i = 0; i < n; i++) {
			json_decref(r[i].line);
			run(db, rl, q[i], &r[i]);
		}
	}
	free(b);
}

static int
parse(const json_t *o, struct preq *q, char *err, size_t errlen)
{
	const json_t *reason = json_object_get(o, "reason");
	long long id, amount = 0;

	if (js_int(o, "paymentId", 1, INT64_MAX, true, &id, err, errlen) < 0 ||
	    js_int(o, "amount", 1, VALID_AMOUNT_MAX, false, &amount, err,
	        errlen) < 0)
		return -1;
	if (reason == NULL || json_is_null(reason)) {
		snprintf(err, errlen, "'reason' is required");
		return -1;
	}
	if (!json_is_string(reason) ||
	    strlen(json_string_value(reason)) != json_string_length(reason) ||
	    !valid_text(json_string_value(reason), VALID_REASON_MAX)) {
		snprintf(err, errlen,
		    "'reason' must be 1 to %d characters of UTF-8 text without "
		    "control characters",
		    VALID_REASON_MAX);
		return -1;
	}
	q->id = id;
	q->amount = amount;
	q->reason = json_string_value(reason);
	return 0;
}

static const struct stream_cmd stream_refund = {
	.action = "refund",
	.parse = parse,
	.run = run,
	.run_batch = run_batch,
	.batch = BATCH,
};

int
cmd_refund(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "amount", required_argument, NULL, 'a' },
		{ "reason", required_argument, NULL, 'r' },
		{ "concurrency", required_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	struct preq q = { 0 };
	struct ratelimit rl;
	struct result r = { 0 };
	const char *amount = NULL;
	long workers = 0;
	struct db *db;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":ha:r:C:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'a':
			amount = optarg;
			break;
		case 'r':
			q.reason = optarg;
			break;
		case 'C':
			if ((rc = stream_workers(optarg, &workers)) != 0)
				return rc;
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc && strcmp(argv[optind], "-") == 0) {
		if (optind + 1 < argc)
			return diag_usage(
			    "unexpected argument '%s'", argv[optind + 1]);
		if (amount != NULL || q.reason != NULL)
			return diag_usage("requests come from standard input "
			                  "with '-': no -a or -r");
		return stream_run(&stream_refund, workers);
	}
	if (workers != 0)
		return diag_usage("option '--concurrency' is for '-' only");
	if (optind >= argc)
		return diag_usage("a payment id is required");
	if (optind + 1 < argc)
		return diag_usage("unexpected argument '%s'", argv[optind + 1]);
	if ((rc = payctl_parse_id(argv[optind], &q.id)) != 0)
		return rc;
	if (amount != NULL && !valid_amount(amount, &q.amount))
		return diag_usage("option '--amount': '%s' is not a whole "
		                  "number from 1 to 10^15",
		    amount);
	if (q.reason == NULL)
		return diag_usage("option '--reason' is required");
	if (!valid_text(q.reason, VALID_REASON_MAX))
		return diag_usage("option '--reason': must be 1 to %d "
		                  "characters of UTF-8 text without control "
		                  "characters",
		    VALID_REASON_MAX);
	if ((rc = payctl_connect(&db)) != 0)
		return rc;
	ratelimit_conf("refund", &rl);
	run(db, &rl, &q, &r);
	rc = result_print(&r);
	db_close(db);
	return rc;
}
