/*
 * refund: the refund worker.  payctl refund writes a refund_request row
 * (PENDING, not yet due) and a payment.refund-requested event in one
 * transaction; this worker consumes the event and makes the row due.  The
 * gateway jobs of worker.h claim due rows in batches, call the gateway
 * outside any transaction, many calls at once, and record the answers:
 * SUCCESS (refunded_amount grows, the
 * payment becomes PARTIALLY_REFUNDED or REFUNDED, PAYMENT_REFUNDED), or
 * FAILED with a backoff, or after the last retry DEAD (REFUND_FAILED,
 * REFUND_DEAD_LETTER).  Retries emit PAYMENT_REFUNDED like first attempts.
 */
#include "diag.h"
#include "js.h"
#include "outbox.h"
#include "topics.h"
#include "worker.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: refund [-hVv] [--once | --retry-due] [-c concurrency] [-g group]"
    " [-n count] [-P age] [-X key=value]\n";

#define AMOUNT_MAX 1000000000000000LL

static const char sel_payment[] =
    "SELECT currency, merchant_id FROM payment WHERE payment_id = ?"
    " FOR UPDATE";
static const char sel_request[] =
    "SELECT payment_id, amount, currency, status, next_retry_at IS NULL"
    " FROM refund_request WHERE id = ? FOR UPDATE";
static const char make_due[] =
    "UPDATE refund_request SET next_retry_at = NOW(6)"
    " WHERE id = ? AND status = 'PENDING' AND next_retry_at IS NULL";
/*
 * The batch's payments and requests, locked in the array's order; its
 * rows are [payment id, refund id], and n says which row a result is of.
 */
static const char lock_batch_requests[] =
    "SELECT STRAIGHT_JOIN j.n, p.currency, p.merchant_id, r.payment_id,"
    " r.amount, r.currency, r.status, r.next_retry_at IS NULL"
    " FROM JSON_TABLE(?, '$[*]' COLUMNS (n FOR ORDINALITY,"
    " pid BIGINT PATH '$[0]', rid BIGINT PATH '$[1]')) j"
    " JOIN payment p FORCE INDEX (PRIMARY) ON p.payment_id = j.pid"
    " LEFT JOIN refund_request r FORCE INDEX (PRIMARY) ON r.id = j.rid"
    " FOR UPDATE";
static const char make_due_batch[] =
    "UPDATE JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) j"
    " STRAIGHT_JOIN refund_request r ON r.id = j.id"
    " SET r.next_retry_at = NOW(6)"
    " WHERE r.status = 'PENDING' AND r.next_retry_at IS NULL";

/* The claim: due rows, locked; their lease; what the calls need. */
static const char pick[] =
    "SELECT id FROM refund_request"
    " WHERE status IN ('PENDING', 'FAILED')"
    " AND next_retry_at <= IFNULL(CAST(? AS DATETIME(6)), NOW(6))"
    " LIMIT ? FOR UPDATE SKIP LOCKED";
#define IDS "JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) j"
/* The lease is next_retry_at: a caller that dies lets it come due again. */
static const char lease[] =
    "UPDATE " IDS " STRAIGHT_JOIN refund_request r ON r.id = j.id"
    " SET r.status = 'PENDING',"
    " r.last_retry_at = IF(r.retry_count > 0, NOW(6), r.last_retry_at),"
    " r.next_retry_at = NOW(6) + INTERVAL ? MICROSECOND";
static const char claimed[] =
    "SELECT STRAIGHT_JOIN r.id, r.payment_id, r.amount, r.currency,"
    " r.retry_count, r.next_retry_at, r.requested_at, r.last_retry_at,"
    " p.status, p.transaction_id, p.merchant_id, r.pg_response_code,"
    " r.pg_response_message, r.reason FROM " IDS
    " JOIN refund_request r ON r.id = j.id"
    " JOIN payment p ON p.payment_id = r.payment_id";

static const char lock_payment[] =
    "SELECT status, captured_amount, refunded_amount FROM payment"
    " WHERE payment_id = ? FOR UPDATE";
static const char set_success[] =
    "UPDATE refund_request SET status = 'SUCCESS',"
    " pg_cancel_transaction_id = ?, pg_response_code = ?,"
    " pg_response_message = ?, next_retry_at = NULL,"
    " completed_at = NOW(6)"
    " WHERE id = ? AND status = 'PENDING' AND next_retry_at = ?";
static const char count_open[] =
    "SELECT COUNT(*) FROM refund_request"
    " WHERE payment_id = ? AND status IN ('PENDING', 'FAILED')";
static const char add_refunded[] =
    "UPDATE payment SET refunded_amount = refunded_amount + ?"
    " WHERE payment_id = ?";
static const char set_status[] =
    "UPDATE payment SET status = ?"
    " WHERE payment_id = ? AND status = 'REFUND_REQUESTED'";
/* The breaker refused the call: try again later, no attempt spent. */
static const char set_deferred[] =
    "UPDATE refund_request SET status = 'FAILED', pg_response_code = ?,"
    " pg_response_message = ?, next_retry_at = NOW(6) + INTERVAL ? MICROSECOND"
    " WHERE id = ? AND status = 'PENDING' AND next_retry_at = ?";
static const char set_failed[] =
    "UPDATE refund_request SET status = 'FAILED',"
    " retry_count = retry_count + 1, pg_response_code = ?,"
    " pg_response_message = ?,"
    " next_retry_at = NOW(6) + INTERVAL ? MICROSECOND"
    " WHERE id = ? AND status = 'PENDING' AND next_retry_at = ?";
static const char set_dead[] =
    "UPDATE refund_request SET status = 'DEAD',"
    " retry_count = retry_count + ?,"
    " pg_response_code = COALESCE(?, pg_response_code),"
    " pg_response_message = COALESCE(?, pg_response_message),"
    " next_retry_at = NULL, completed_at = NOW(6)"
    " WHERE id = ? AND status = 'PENDING' AND next_retry_at = ?";

/* A claimed refund_request and what became of it. */
struct job {
	struct worker_job w;
	int64_t captured, refunded;
	char reason[501], newstatus[24];
};

/* A refund request event: its fields, and its payment and row as read. */
struct request {
	long long pid, amount, rid;
	const char *cur, *merchant;
	bool paid, undue;
	char pcur[4], pmerchant[33], rcur[4], rstatus[16];
	int64_t rpid, ramount;
};

/* The event's own fields: 0, or CONSUMER_REJECT with e filled. */
static int
read_event(struct consumer_msg *m, struct consumer_error *e, struct request *r)
{
	if (consumer_int(m->event, "paymentId", 1, INT64_MAX, &r->pid, e) ||
	    consumer_int(m->event, "amount", 1, AMOUNT_MAX, &r->amount, e) ||
	    consumer_str(m->event, "currency", 3, &r->cur, e) ||
	    consumer_int(m->event, "refundId", 1, INT64_MAX, &r->rid, e))
		return CONSUMER_REJECT;
	m->payment_id = r->pid;
	r->merchant = js_getstr(m->event, "merchantId", NULL);
	return 0;
}

/* The refund_request of r from columns col.. of the current row, if any. */
static void
read_request(struct db *db, unsigned col, struct request *r)
{
	bool found = !db_null(db, col);

	r->rpid = found ? db_int(db, col) : 0;
	r->ramount = found ? db_int(db, col + 1) : 0;
	worker_copy(r->rcur, sizeof(r->rcur), found ? db_str(db, col + 2) : "");
	worker_copy(
	    r->rstatus, sizeof(r->rstatus), found ? db_str(db, col + 3) : "");
	r->undue = found && db_int(db, col + 4) == 1;
}

/*
 * The event against its payment and request: 0 to make the request due, 1
 * to skip it (under way or finished), or CONSUMER_REJECT with e filled.
 */
static int
check(const struct request *r, struct consumer_error *e)
{
	if (!r->paid)
		return consumer_reject(e, CE_UNKNOWN_PAYMENT,
		    "payment %lld does not exist", r->pid);
	if (strcmp(r->cur, r->pcur) != 0)
		return consumer_reject(e, CE_CURRENCY_MISMATCH,
		    "'currency' is '%s', payment %lld is in %s", r->cur, r->pid,
		    r->pcur);
	if (r->merchant != NULL && strcmp(r->merchant, r->pmerchant) != 0)
		return consumer_reject(e, CE_BAD_FIELD,
		    "'merchantId' is '%.32s', payment %lld is of '%s'",
		    r->merchant, r->pid, r->pmerchant);
	if (r->rpid != r->pid)
		return consumer_reject(e, CE_UNKNOWN_REFUND,
		    "refund %lld of payment %lld does not exist", r->rid,
		    r->pid);
	if (r->ramount != r->amount || strcmp(r->rcur, r->cur) != 0)
		return consumer_reject(e, CE_AMOUNT_MISMATCH,
		    "'amount' is %lld %s, refund %lld is for %lld %s",
		    r->amount, r->cur, r->rid, (long long)r->ramount, r->rcur);
	if (strcmp(r->rstatus, "PENDING") != 0 || !r->undue) {
		/* Under way or finished: a late or replayed event. */
		diag_info(1, "refund %lld: is %s already", r->rid, r->rstatus);
		return 1;
	}
	return 0;
}

static int
on_message(
    struct db *db, struct consumer_msg *m, struct consumer_error *e, void *arg)
{
	struct request r = { 0 };
	int rc;

	if (read_event(m, e, &r) != 0)
		return CONSUMER_REJECT;
	if ((rc = db_query(db, sel_payment, "i", (int64_t)r.pid)) != 0)
		return rc;
	if ((rc = db_next(db)) < 0)
		return -rc;
	if (rc == 1) {
		r.paid = true;
		worker_copy(r.pcur, sizeof(r.pcur), db_str(db, 0));
		worker_copy(r.pmerchant, sizeof(r.pmerchant), db_str(db, 1));
		db_next(db);
	}
	if (!r.paid)
		return check(&r, e);
	if ((rc = db_query(db, sel_request, "i", (int64_t)r.rid)) != 0)
		return rc;
	if ((rc = db_next(db)) < 0)
		return -rc;
	if (rc == 1) {
		read_request(db, 0, &r);
		db_next(db);
	}
	if ((rc = check(&r, e)) != 0)
		return rc == 1 ? 0 : rc;
	return db_exec(db, make_due, "i", (int64_t)r.rid);
}

/* By payment, then request: the order every transaction locks them in. */
static int
cmp_request(const void *a, const void *b)
{
	const struct request *x = *(struct request *const *)a;
	const struct request *y = *(struct request *const *)b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->rid < y->rid ? -1 : x->rid > y->rid;
}

/*
 * The batch at once (handle_batch): one query locks each message's payment
 * and then its request, in payment order, as on_message() locks them; one
 * statement makes the requests due.  Each message is checked as
 * on_message() checks it.
 */
static int
on_batch(struct db *db, struct consumer_item *items, size_t n, void *arg)
{
	struct request *r = xcalloc(n, sizeof(*r));
	struct request **order = xcalloc(n, sizeof(*order));
	char *pairs = xmalloc(n * 44 + 2), *due = xmalloc(n * 21 + 2);
	size_t i, k, nord = 0, len = 0, dlen = 0;
	long long row;
	int rc = 0;

	for (i = 0; i < n; i++) {
		items[i].rc = read_event(items[i].m, items[i].e, &r[i]);
		if (items[i].rc == 0)
			order[nord++] = &r[i];
	}
	qsort(order, nord, sizeof(*order), cmp_request);
	for (k = 0; k < nord; k++)
		len += (size_t)snprintf(pairs + len, 46, "%c[%lld,%lld]",
		    k ? ',' : '[', order[k]->pid, order[k]->rid);
	pairs[len++] = ']';
	if (nord > 0 &&
	    (rc = db_query(db, lock_batch_requests, "b", pairs, len)) != 0)
		goto out;
	while (nord > 0 && (rc = db_next(db)) == 1) {
		row = db_int(db, 0);
		if (row < 1 || (size_t)row > nord)
			continue;
		order[row - 1]->paid = true;
		worker_copy(order[row - 1]->pcur, sizeof(order[row - 1]->pcur),
		    db_str(db, 1));
		worker_copy(order[row - 1]->pmerchant,
		    sizeof(order[row - 1]->pmerchant), db_str(db, 2));
		read_request(db, 3, order[row - 1]);
	}
	if (rc < 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (items[i].rc != 0)
			continue;
		if ((rc = check(&r[i], items[i].e)) != 0) {
			items[i].rc = rc == 1 ? 0 : rc;
			continue;
		}
		dlen += (size_t)snprintf(
		    due + dlen, 22, "%c%lld", dlen ? ',' : '[', r[i].rid);
	}
	rc = 0;
	if (dlen > 0) {
		due[dlen++] = ']';
		rc = db_exec(db, make_due_batch, "b", due, dlen);
	}
out:
	free(due);
	free(pairs);
	free(order);
	free(r);
	return rc < 0 ? -rc : rc;
}

/* Lock the payment (always first) and read its amounts. */
static int
lock(struct db *db, struct worker_job *w)
{
	struct job *j = (struct job *)w;
	int rc;

	if ((rc = db_query(db, lock_payment, "i", w->payment_id)) != 0)
		return rc;
	if ((rc = db_next(db)) <= 0)
		return rc < 0 ? -rc : EX_SOFTWARE;
	worker_copy(j->w.pstatus, sizeof(j->w.pstatus), db_str(db, 0));
	j->captured = db_int(db, 1);
	j->refunded = db_int(db, 2);
	db_next(db);
	return 0;
}

/* Refund requests of the payment still to be done: 0+, or -exit code. */
static int64_t
open_requests(struct db *db, int64_t payment_id)
{
	int64_t n;
	int rc;

	if ((rc = db_query(db, count_open, "i", payment_id)) != 0)
		return -rc;
	if ((rc = db_next(db)) <= 0)
		return rc < 0 ? rc : -EX_SOFTWARE;
	n = db_int(db, 0);
	db_next(db);
	return n;
}

static int
dead_letter(struct db *db, struct job *j, int inc, const char *type)
{
	char now[32], req[32], last[32];
	json_t *rec;
	int rc;

	consumer_isotime(j->w.requested, req);
	consumer_isotime(j->w.last_retry, last);
	outbox_now(now);
	rec = json_pack("{s:I, s:I, s:s, s:I, s:s, s:s, s:I, s:s, s:s?, s:s?,"
	                " s:s, s:s, s:s, s:s?, s:s}",
	    "refundRequestId", (json_int_t)j->w.id, "paymentId",
	    (json_int_t)j->w.payment_id, "merchantId", j->w.merchant,
	    "refundAmount", (json_int_t)j->w.amount, "currency", j->w.currency,
	    "refundReason", j->reason, "retryCount",
	    (json_int_t)(j->w.failures + inc), "status", "DEAD",
	    "pgResponseCode", j->w.code[0] ? j->w.code : NULL,
	    "pgResponseMessage", j->w.message[0] ? j->w.message : NULL,
	    "errorType", type, "errorMessage", j->w.why, "requestedAt", req,
	    "lastRetryAt", last[0] ? last : NULL, "timestamp", now);
	if (rec == NULL)
		diag_die(EX_SOFTWARE, "cannot build a dead-letter record");
	rc = outbox_insert(
	    db, EV_REFUND_DEAD_LETTER, j->w.payment_id, rec, NULL);
	json_decref(rec);
	return rc;
}

/*
 * Give the request up: DEAD, a DLQ record, and the payment REFUND_FAILED
 * if it is still REFUND_REQUESTED and no other refund of it is open.
 */
static int
give_up(struct db *db, struct worker_job *w, int inc, const char *type)
{
	struct job *j = (struct job *)w;
	const char *code = w->res.code[0] ? w->res.code : NULL;
	const char *message = w->res.message[0] ? w->res.message : NULL;
	int64_t open;
	int rc;

	if ((rc = lock(db, w)) != 0 ||
	    (rc = db_exec(db, set_dead, "issis", inc, code, message, w->id,
	         w->token)) != 0)
		return rc;
	if (db_affected(db) == 0)
		return WORKER_LOST;
	if ((open = open_requests(db, w->payment_id)) < 0)
		return (int)-open;
	if (open == 0 && strcmp(j->w.pstatus, "REFUND_REQUESTED") == 0 &&
	    (rc = db_exec(
	         db, set_status, "si", "REFUND_FAILED", w->payment_id)) != 0)
		return rc;
	if (code != NULL) {
		worker_copy(j->w.code, sizeof(j->w.code), w->res.code);
		worker_copy(j->w.message, sizeof(j->w.message), w->res.message);
	}
	return dead_letter(db, j, inc, type);
}

static void
read_reason(struct db *db, struct worker_job *w)
{
	struct job *j = (struct job *)w;

	worker_copy(j->reason, sizeof(j->reason), db_str(db, 13));
}

/*
 * The call, made outside any transaction.  If the process dies after the
 * gateway refunded and before the result is committed, the lease runs out
 * and the call is made again with the same idempotency key: the gateway
 * must answer a repeated key with the first answer.
 */
static int
vet(struct db *db, struct worker_job *w)
{
	struct job *j = (struct job *)w;
	int rc;

	if (strcmp(j->w.pstatus, "REFUND_REQUESTED") == 0 &&
	    j->w.txn[0] != '\0') {
		/* Unique wherever the gateway is shared, as settle's. */
		snprintf(w->key, sizeof(w->key), "refund-%.36s-%lld", j->w.txn,
		    (long long)w->id);
		w->op = PG_REFUND;
		w->req.payment_id = w->payment_id;
		w->req.txn = j->w.txn;
		w->req.amount = j->w.amount;
		w->req.currency = j->w.currency;
		w->req.reason = j->reason;
		w->req.key = w->key;
		return 0;
	}
	/* Changed behind our back: calling the gateway now would be wrong. */
	snprintf(w->why, sizeof(w->why),
	    "payment is %s, not REFUND_REQUESTED; not refunded", j->w.pstatus);
	w->outcome = "given up";
	rc = give_up(db, w, 0, CE_INVALID_STATE);
	return rc != 0 ? rc : WORKER_RESOLVED;
}

/* The payment's status once this refund is in. */
static const char *
next_status(const struct job *j, int64_t open)
{
	if (j->refunded + j->w.amount >= j->captured)
		return "REFUNDED";
	return open > 0 ? "REFUND_REQUESTED" : "PARTIALLY_REFUNDED";
}

/* After lock(), which read the payment as this transaction sees it. */
static int
approved(struct db *db, struct worker_job *w)
{
	struct job *j = (struct job *)w;
	int64_t open;
	json_t *ev;
	int rc;

	if ((rc = db_exec(db, set_success, "sssis", w->res.cancel_txn,
	         w->res.code, w->res.message, w->id, w->token)) != 0)
		return rc;
	if (db_affected(db) == 0)
		return WORKER_LOST;
	if ((open = open_requests(db, w->payment_id)) < 0)
		return (int)-open;
	w->outcome = "refunded";
	/* The money has moved: count it, unless that breaks the books. */
	if (j->refunded + j->w.amount <= j->captured) {
		if ((rc = db_exec(db, add_refunded, "ii", j->w.amount,
		         w->payment_id)) != 0)
			return rc;
	} else {
		w->outcome = "refunded beyond the captured amount";
	}
	worker_copy(j->newstatus, sizeof(j->newstatus), j->w.pstatus);
	if (strcmp(j->w.pstatus, "REFUND_REQUESTED") != 0) {
		w->outcome = "refunded, status kept";
	} else if (strcmp(next_status(j, open), j->w.pstatus) != 0) {
		worker_copy(
		    j->newstatus, sizeof(j->newstatus), next_status(j, open));
		if ((rc = db_exec(db, set_status, "si", j->newstatus,
		         w->payment_id)) != 0)
			return rc;
	}
	ev = json_pack("{s:I, s:s, s:s, s:s, s:I, s:s, s:I, s:s, s:I, s:I}",
	    "paymentId", (json_int_t)w->payment_id, "status", "REFUNDED",
	    "paymentStatus", j->newstatus, "merchantId", j->w.merchant,
	    "amount", (json_int_t)j->w.amount, "currency", j->w.currency,
	    "refundId", (json_int_t)w->id, "cancelTransactionId",
	    w->res.cancel_txn, "refundedAmount",
	    (json_int_t)(j->refunded + j->w.amount), "capturedAmount",
	    (json_int_t)j->captured);
	if (ev == NULL)
		diag_die(EX_SOFTWARE, "cannot build an event");
	rc = outbox_insert(db, EV_REFUNDED, w->payment_id, ev, NULL);
	json_decref(ev);
	return rc;
}

/*
 * A batch's approvals at once (record_batch), each statement one round
 * trip whatever the batch's size: the parameters are JSON arrays that
 * JSON_TABLE turns into rows, STRAIGHT_JOIN keeping them the driving
 * table.  The lock reads each job's payment, then its request if the
 * claim is still ours, in the batch's order; its rows are [payment id,
 * request id, token].
 */
#define JT "JSON_TABLE(?, '$[*]' COLUMNS ("
static const char lock_batch[] =
    "SELECT STRAIGHT_JOIN j.n, p.status, p.captured_amount,"
    " p.refunded_amount, r.id IS NOT NULL FROM " JT
    "n FOR ORDINALITY, pid BIGINT PATH '$[0]', id BIGINT PATH '$[1]',"
    " t VARCHAR(32) PATH '$[2]')) j"
    " JOIN payment p FORCE INDEX (PRIMARY) ON p.payment_id = j.pid"
    " LEFT JOIN refund_request r FORCE INDEX (PRIMARY) ON r.id = j.id"
    " AND r.status = 'PENDING' AND r.next_retry_at = j.t FOR UPDATE";
/* Rows [request id, token, cancel transaction id, code, message]. */
static const char set_success_batch[] =
    "UPDATE " JT "id BIGINT PATH '$[0]', t VARCHAR(32) PATH '$[1]',"
    " tx VARCHAR(64) PATH '$[2]', rc VARCHAR(32) PATH '$[3]',"
    " rm VARCHAR(255) PATH '$[4]')) j"
    " STRAIGHT_JOIN refund_request r ON r.id = j.id"
    " SET r.status = 'SUCCESS', r.pg_cancel_transaction_id = j.tx,"
    " r.pg_response_code = j.rc, r.pg_response_message = j.rm,"
    " r.next_retry_at = NULL, r.completed_at = NOW(6)"
    " WHERE r.status = 'PENDING' AND r.next_retry_at = j.t";
/* Per payment id of the array, its requests still to be done. */
static const char count_open_batch[] =
    "SELECT STRAIGHT_JOIN j.pid, COUNT(r.id) FROM " JT "pid BIGINT PATH '$')) j"
    " LEFT JOIN refund_request r FORCE INDEX (ix_refund_payment)"
    " ON r.payment_id = j.pid AND r.status IN ('PENDING', 'FAILED')"
    " GROUP BY j.pid";
/* Rows [payment id, amount to add, new status or '' to keep it]. */
static const char set_refunded_batch[] =
    "UPDATE " JT "pid BIGINT PATH '$[0]', amount BIGINT PATH '$[1]',"
    " st VARCHAR(24) PATH '$[2]')) j"
    " STRAIGHT_JOIN payment p ON p.payment_id = j.pid"
    " SET p.refunded_amount = p.refunded_amount + j.amount,"
    " p.status = IF(j.st = '', p.status, j.st)";

/*
 * Lock the batch: every job's payment, read into the job as lock() reads
 * it, and its request when the claim is still ours (held[i]).
 */
static int
lock_all(struct db *db, struct worker_job **v, size_t n, bool *held)
{
	struct job *j;
	long long k;
	int rc;

	if ((rc = worker_query_jobs(db, lock_batch, v, n)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		k = db_int(db, 0);
		if (k < 1 || (size_t)k > n)
			continue;
		j = (struct job *)v[k - 1];
		worker_copy(j->w.pstatus, sizeof(j->w.pstatus), db_str(db, 1));
		j->captured = db_int(db, 2);
		j->refunded = db_int(db, 3);
		held[k - 1] = db_int(db, 4) != 0;
	}
	return -rc;
}

/* The open requests of the payments in pids, into the jobs that need them. */
static int
count_all(struct db *db, json_t *pids, struct worker_job **v, size_t n,
    const bool *need, int64_t *open)
{
	int64_t pid;
	char *text;
	size_t i;
	int rc;

	if (json_array_size(pids) == 0)
		return 0;
	if ((text = js_text(pids)) == NULL)
		diag_die(EX_SOFTWARE, "cannot encode a batch");
	rc = db_query(db, count_open_batch, "s", text);
	free(text);
	if (rc != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		pid = db_int(db, 0);
		for (i = 0; i < n; i++)
			if (need[i] && v[i]->payment_id == pid)
				open[i] = db_int(db, 1);
	}
	return -rc;
}

/* The PAYMENT_REFUNDED event of j into ev, as approved() writes it. */
static void
refunded_event(struct outbox_event *ev, const struct job *j)
{
	struct js_out o = { 0 };

	js_out_int(&o, "paymentId", j->w.payment_id);
	js_out_str(&o, "status", "REFUNDED");
	js_out_str(&o, "paymentStatus", j->newstatus);
	js_out_str(&o, "merchantId", j->w.merchant);
	js_out_int(&o, "amount", j->w.amount);
	js_out_str(&o, "currency", j->w.currency);
	js_out_int(&o, "refundId", j->w.id);
	js_out_str(&o, "cancelTransactionId", j->w.res.cancel_txn);
	js_out_int(&o, "refundedAmount", j->refunded + j->w.amount);
	js_out_int(&o, "capturedAmount", j->captured);
	ev->type = EV_REFUNDED;
	ev->aggregate_id = j->w.payment_id;
	ev->text = outbox_seal(&o, EV_REFUNDED, ev->key);
}

/*
 * Record the approvals of v[0..n) whose claim still holds, five statements
 * for the lot at most, with the guards and the arithmetic of approved():
 * the request goes SUCCESS only while PENDING with our token, the amount
 * is added unless that breaks the books, the status moves only from
 * REFUND_REQUESTED, one PAYMENT_REFUNDED each.  Only a payment's first job
 * in the batch is taken here (v is in payment order): its other jobs, and
 * every failure, are left to record(), which runs after this in the same
 * transaction and sees what it changed, as one job after another would.
 * An approval whose claim was taken over is lost, as approved() would
 * find it.
 */
static int
record_batch(struct db *db, struct worker_job **v, size_t n)
{
	bool *held = xcalloc(n, sizeof(*held));
	bool *take = xcalloc(n, sizeof(*take));
	bool *need = xcalloc(n, sizeof(*need));
	int64_t *open = xcalloc(n, sizeof(*open));
	struct outbox_event *ev = xcalloc(n, sizeof(*ev));
	json_t *reqs = json_array(), *pids = json_array(), *pays = NULL;
	json_t *row;
	size_t i, nreq = 0, npay = 0, nev = 0;
	struct job *j;
	int64_t add;
	int rc;

	if ((rc = lock_all(db, v, n, held)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		j = (struct job *)v[i];
		if (v[i]->res.outcome != PG_APPROVED ||
		    (i > 0 && v[i - 1]->payment_id == v[i]->payment_id))
			continue;
		if (!held[i]) {
			v[i]->lost = true;
			continue;
		}
		row = json_pack("[I, s, s, s, s]", (json_int_t)v[i]->id,
		    v[i]->token, v[i]->res.cancel_txn, v[i]->res.code,
		    v[i]->res.message);
		/* Text jansson refuses is left to record(). */
		if (row == NULL)
			continue;
		json_array_append_new(reqs, row);
		nreq++;
		take[i] = true;
		/* Whether the next status depends on the other requests. */
		need[i] = strcmp(j->w.pstatus, "REFUND_REQUESTED") == 0 &&
		    j->refunded + j->w.amount < j->captured;
		if (need[i])
			json_array_append_new(
			    pids, json_integer(v[i]->payment_id));
	}
	if ((rc = worker_exec_rows(db, set_success_batch, reqs, nreq)) != 0 ||
	    (rc = count_all(db, pids, v, n, need, open)) != 0)
		goto out;
	pays = json_array();
	for (i = 0; i < n; i++) {
		if (!take[i])
			continue;
		j = (struct job *)v[i];
		v[i]->outcome = "refunded";
		add = j->w.amount;
		if (j->refunded + j->w.amount > j->captured) {
			add = 0;
			v[i]->outcome = "refunded beyond the captured amount";
		}
		worker_copy(j->newstatus, sizeof(j->newstatus), j->w.pstatus);
		if (strcmp(j->w.pstatus, "REFUND_REQUESTED") != 0)
			v[i]->outcome = "refunded, status kept";
		else
			worker_copy(j->newstatus, sizeof(j->newstatus),
			    next_status(j, open[i]));
		if (add > 0 || strcmp(j->newstatus, j->w.pstatus) != 0) {
			json_array_append_new(pays,
			    json_pack("[I, I, s]", (json_int_t)v[i]->payment_id,
			        (json_int_t)add,
			        strcmp(j->newstatus, j->w.pstatus) != 0
			            ? j->newstatus
			            : ""));
			npay++;
		}
		refunded_event(&ev[nev++], j);
	}
	if ((rc = worker_exec_rows(db, set_refunded_batch, pays, npay)) != 0)
		goto out;
	rc = outbox_insert_many(db, ev, nev);
out:
	json_decref(pays);
	json_decref(pids);
	json_decref(reqs);
	for (i = 0; i < nev; i++)
		free(ev[i].text);
	free(ev);
	free(open);
	free(need);
	free(take);
	free(held);
	return rc;
}

static int
record(struct db *db, struct worker_job *w)
{
	int rc;

	if ((rc = lock(db, w)) != 0)
		return rc;
	if (w->res.outcome == PG_APPROVED)
		return approved(db, w);
	return worker_failed(db, w, set_deferred, set_failed);
}

static int
claim(struct db *db, struct worker_claim *c)
{
	return worker_claim(db, c, pick, lease, claimed);
}

static void
log_job(const struct worker_job *w)
{
	const struct job *j = (const struct job *)w;
	long long pid = (long long)w->payment_id, id = (long long)w->id;

	if (strncmp(w->outcome, "refunded", 8) == 0)
		diag_warn("payment %lld: refund %lld %s, transaction %s "
		          "(attempt %lld); payment %s",
		    pid, id, w->outcome, w->res.cancel_txn, w->failures + 1,
		    j->newstatus);
	else if (strcmp(w->outcome, "deferred") == 0)
		diag_info(1, "refund %lld: %s; next in %lld.%03llds", id,
		    w->res.message, w->delay_ms / 1000, w->delay_ms % 1000);
	else if (strcmp(w->outcome, "failed") == 0)
		diag_warn("payment %lld: refund %lld attempt %lld failed: %s "
		          "%s; next in %lld.%03llds",
		    pid, id, w->failures + 1, w->res.code, w->res.message,
		    w->delay_ms / 1000, w->delay_ms % 1000);
	else
		diag_warn("payment %lld: refund %lld dead-lettered: %s", pid,
		    id, w->why);
}

int
main(int argc, char **argv)
{
	static const struct consumer_topic topics[] = {
		{ TOPIC_REFUND_REQUESTED, EV_REFUND_REQUESTED },
	};
	static const struct worker_jobs jobs = {
		.job_size = sizeof(struct job),
		.noun = "refund",
		.claim = claim,
		.read = read_reason,
		.vet = vet,
		.record = record,
		.record_batch = record_batch,
		.give_up = give_up,
		.log = log_job,
	};
	static const struct worker_def d = {
		.usage = usage_text,
		.prefix = "refund",
		.consumer = {
		    .name = "refund",
		    .topics = topics,
		    .ntopics = 1,
		    .dlq_event = EV_REFUND_DEAD_LETTER,
		    .handle = on_message,
		    .handle_batch = on_batch,
		},
		.jobs = &jobs,
	};

	return worker_main(argc, argv, &d);
}
