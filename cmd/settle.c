/*
 * settle: the settlement worker.  A payment.capture-requested event
 * becomes a settlement_request row (one per payment), due at once; the
 * gateway jobs of worker.h claim due rows in batches, call the gateway
 * outside any transaction, many calls at once, and record the answers:
 * SUCCESS (payment CAPTURED, PAYMENT_CAPTURED), or FAILED with a backoff,
 * or after the last retry DEAD (payment CAPTURE_FAILED,
 * SETTLEMENT_DEAD_LETTER).  This file holds what is settle's own: the
 * statements, the checks, the events and the log lines.
 *
 * Both hot paths are set-based, a few statements per batch whatever its
 * size: on_batch() applies a batch of messages, record_batch() the
 * approvals of a batch of answers.  on_message() and record() do the same
 * one at a time: the consumer falls back on on_message() when the database
 * refuses a batch's statement, and record() takes the failures.
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
    "usage: settle [-hVv] [--once | --retry-due] [-c concurrency] [-g group]"
    " [-n count] [-P age] [-X key=value]\n";

#define AMOUNT_MAX 1000000000000000LL

static const char sel_payment[] =
    "SELECT payment_id, status, amount, currency, merchant_id,"
    " transaction_id FROM payment WHERE payment_id = ? FOR UPDATE";
/* The payments of a JSON array of ids, locked in the array's order. */
static const char sel_payments[] =
    "SELECT STRAIGHT_JOIN p.payment_id, p.status, p.amount, p.currency,"
    " p.merchant_id, p.transaction_id"
    " FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) j"
    " JOIN payment p FORCE INDEX (PRIMARY) ON p.payment_id = j.id"
    " FOR UPDATE";
static const char ins_request[] =
    "INSERT INTO settlement_request"
    " (payment_id, event_key, amount, currency, status, next_retry_at)"
    " VALUES (?, ?, ?, ?, 'PENDING', NOW(6))"
    " ON DUPLICATE KEY UPDATE id = id";

/* The claim: due rows, locked; their lease; what the calls need. */
static const char pick[] =
    "SELECT id FROM settlement_request"
    " WHERE status IN ('PENDING', 'FAILED')"
    " AND next_retry_at <= IFNULL(CAST(? AS DATETIME(6)), NOW(6))"
    " LIMIT ? FOR UPDATE SKIP LOCKED";
#define IDS "JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) j"
/* The lease is next_retry_at: a caller that dies lets it come due again. */
static const char lease[] =
    "UPDATE " IDS " STRAIGHT_JOIN settlement_request s ON s.id = j.id"
    " SET s.status = 'PENDING',"
    " s.last_retry_at = IF(s.retry_count > 0, NOW(6), s.last_retry_at),"
    " s.next_retry_at = NOW(6) + INTERVAL ? MICROSECOND";
static const char claimed[] =
    "SELECT STRAIGHT_JOIN s.id, s.payment_id, s.amount, s.currency,"
    " s.retry_count, s.next_retry_at, s.requested_at, s.last_retry_at,"
    " p.status, p.transaction_id, p.merchant_id, s.pg_response_code,"
    " s.pg_response_message FROM " IDS
    " JOIN settlement_request s ON s.id = j.id"
    " JOIN payment p ON p.payment_id = s.payment_id";

static const char lock_payment[] =
    "SELECT status FROM payment WHERE payment_id = ? FOR UPDATE";
static const char set_success[] =
    "UPDATE settlement_request SET status = 'SUCCESS',"
    " pg_transaction_id = ?, pg_response_code = ?, pg_response_message = ?,"
    " next_retry_at = NULL, completed_at = NOW(6)"
    " WHERE id = ? AND status = 'PENDING' AND next_retry_at = ?";
static const char set_captured[] =
    "UPDATE payment SET status = 'CAPTURED', captured_amount = ?"
    " WHERE payment_id = ? AND status = 'CAPTURE_REQUESTED'";
/* The breaker refused the call: try again later, no attempt spent. */
static const char set_deferred[] =
    "UPDATE settlement_request SET status = 'FAILED', pg_response_code = ?,"
    " pg_response_message = ?, next_retry_at = NOW(6) + INTERVAL ? MICROSECOND"
    " WHERE id = ? AND status = 'PENDING' AND next_retry_at = ?";
static const char set_failed[] =
    "UPDATE settlement_request SET status = 'FAILED',"
    " retry_count = retry_count + 1, pg_response_code = ?,"
    " pg_response_message = ?,"
    " next_retry_at = NOW(6) + INTERVAL ? MICROSECOND"
    " WHERE id = ? AND status = 'PENDING' AND next_retry_at = ?";
static const char set_dead[] =
    "UPDATE settlement_request SET status = 'DEAD',"
    " retry_count = retry_count + ?,"
    " pg_response_code = COALESCE(?, pg_response_code),"
    " pg_response_message = COALESCE(?, pg_response_message),"
    " next_retry_at = NULL, completed_at = NOW(6)"
    " WHERE id = ? AND status = 'PENDING' AND next_retry_at = ?";
static const char set_capture_failed[] =
    "UPDATE payment SET status = 'CAPTURE_FAILED'"
    " WHERE payment_id = ? AND status = 'CAPTURE_REQUESTED'";

/* Lock a row (payment first, always) and discard the result. */
static int
lock(struct db *db, const char *sql, int64_t id)
{
	int rc;

	if ((rc = db_query(db, sql, "i", id)) != 0)
		return rc;
	while ((rc = db_next(db)) > 0)
		;
	return -rc;
}

/* Statuses a payment has before its capture is requested. */
static bool
before_capture(const char *status)
{
	return strcmp(status, "PENDING") == 0 ||
	    strcmp(status, "AUTHORIZED") == 0 ||
	    strcmp(status, "AUTH_FAILED") == 0;
}

/* A capture request: the event's fields, and its payment as read. */
struct capture {
	long long pid, amount;
	const char *cur, *merchant;
	bool found, txn;
	char status[24], pcur[4], pmerchant[33];
	long long pamount;
};

/* The event's own fields: 0, or CONSUMER_REJECT with e filled. */
static int
read_event(struct consumer_msg *m, struct consumer_error *e, struct capture *c)
{
	if (consumer_int(m->event, "paymentId", 1, INT64_MAX, &c->pid, e) ||
	    consumer_int(m->event, "amount", 1, AMOUNT_MAX, &c->amount, e) ||
	    consumer_str(m->event, "currency", 3, &c->cur, e))
		return CONSUMER_REJECT;
	m->payment_id = c->pid;
	c->merchant = js_getstr(m->event, "merchantId", NULL);
	return 0;
}

/* The payment of c from the current row of sel_payment(s). */
static void
read_payment(struct db *db, struct capture *c)
{
	c->found = true;
	worker_copy(c->status, sizeof(c->status), db_str(db, 1));
	c->pamount = db_int(db, 2);
	worker_copy(c->pcur, sizeof(c->pcur), db_str(db, 3));
	worker_copy(c->pmerchant, sizeof(c->pmerchant), db_str(db, 4));
	c->txn = !db_null(db, 5) && *db_str(db, 5) != '\0';
}

/*
 * The event against its payment: 0 to create its request, 1 to skip it
 * (settled or failed already), or CONSUMER_REJECT with e filled.
 */
static int
check(const struct capture *c, struct consumer_error *e)
{
	long long pid = c->pid;

	if (!c->found)
		return consumer_reject(
		    e, CE_UNKNOWN_PAYMENT, "payment %lld does not exist", pid);
	if (c->amount != c->pamount)
		return consumer_reject(e, CE_AMOUNT_MISMATCH,
		    "'amount' is %lld, payment %lld is for %lld", c->amount,
		    pid, c->pamount);
	if (strcmp(c->cur, c->pcur) != 0)
		return consumer_reject(e, CE_CURRENCY_MISMATCH,
		    "'currency' is '%s', payment %lld is in %s", c->cur, pid,
		    c->pcur);
	if (c->merchant != NULL && strcmp(c->merchant, c->pmerchant) != 0)
		return consumer_reject(e, CE_BAD_FIELD,
		    "'merchantId' is '%.32s', payment %lld is of '%s'",
		    c->merchant, pid, c->pmerchant);
	if (before_capture(c->status) || !c->txn)
		return consumer_reject(e, CE_INVALID_STATE,
		    "payment %lld is %s%s, its capture cannot be requested",
		    pid, c->status, c->txn ? "" : " without a transactionId");
	if (strcmp(c->status, "CAPTURE_REQUESTED") != 0) {
		/* Settled or failed already: a late or replayed event. */
		diag_info(1, "payment %lld: is %s already", pid, c->status);
		return 1;
	}
	return 0;
}

static int
on_message(
    struct db *db, struct consumer_msg *m, struct consumer_error *e, void *arg)
{
	struct capture c = { 0 };
	int rc;

	if (read_event(m, e, &c) != 0)
		return CONSUMER_REJECT;
	if ((rc = db_query(db, sel_payment, "i", (int64_t)c.pid)) != 0)
		return rc;
	if ((rc = db_next(db)) < 0)
		return -rc;
	if (rc == 1) {
		read_payment(db, &c);
		db_next(db);
	}
	if ((rc = check(&c, e)) != 0)
		return rc == 1 ? 0 : rc;
	return db_exec(db, ins_request, "isis", (int64_t)c.pid, m->event_id,
	    (int64_t)c.amount, c.cur);
}

static int
cmp_int64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* By payment id, for bsearch on the locked payments. */
static int
cmp_capture(const void *a, const void *b)
{
	const struct capture *x = a, *y = b;

	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/*
 * Lock the payments of c[i] where ok[i], in id order, into *paid (sorted
 * by id, *npaid of them): 0 or a db code.
 */
static int
lock_payments(struct db *db, const struct capture *c, const bool *ok, size_t n,
    struct capture **paid, size_t *npaid)
{
	int64_t *ids = xcalloc(n + 1, sizeof(*ids));
	char *buf = xmalloc(n * 21 + 2);
	size_t i, nids = 0, len = 0;
	int rc = 0;

	for (i = 0; i < n; i++)
		if (ok[i])
			ids[nids++] = c[i].pid;
	qsort(ids, nids, sizeof(*ids), cmp_int64);
	for (i = 0; i < nids; i++)
		if (i == 0 || ids[i] != ids[i - 1])
			len += (size_t)snprintf(buf + len, 22, "%c%lld",
			    len ? ',' : '[', (long long)ids[i]);
	buf[len++] = ']';
	*paid = xcalloc(nids + 1, sizeof(**paid));
	*npaid = 0;
	if (nids > 0)
		rc = db_query(db, sel_payments, "b", buf, len);
	free(buf);
	free(ids);
	if (rc != 0 || nids == 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		(*paid)[*npaid].pid = db_int(db, 0);
		read_payment(db, &(*paid)[(*npaid)++]);
	}
	return -rc;
}

/*
 * The batch at once (handle_batch): one query locks its payments, in id
 * order, one bulk insert creates its requests; each message is checked as
 * on_message() checks it.
 */
static int
on_batch(struct db *db, struct consumer_item *items, size_t n, void *arg)
{
	struct capture *c = xcalloc(n, sizeof(*c)), *paid = NULL, *p;
	bool *ok = xcalloc(n, sizeof(*ok));
	int64_t *pids = xcalloc(n, sizeof(*pids));
	int64_t *amounts = xcalloc(n, sizeof(*amounts));
	const char **keys = xcalloc(n, sizeof(*keys));
	const char **curs = xcalloc(n, sizeof(*curs));
	size_t i, npaid, rows = 0;
	int rc;

	for (i = 0; i < n; i++) {
		items[i].rc = read_event(items[i].m, items[i].e, &c[i]);
		ok[i] = items[i].rc == 0;
	}
	if ((rc = lock_payments(db, c, ok, n, &paid, &npaid)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (!ok[i])
			continue;
		p = bsearch(&c[i], paid, npaid, sizeof(*paid), cmp_capture);
		if (p != NULL) {
			memcpy(c[i].status, p->status, sizeof(c[i].status));
			memcpy(c[i].pcur, p->pcur, sizeof(c[i].pcur));
			memcpy(c[i].pmerchant, p->pmerchant,
			    sizeof(c[i].pmerchant));
			c[i].pamount = p->pamount;
			c[i].txn = p->txn;
			c[i].found = true;
		}
		if ((rc = check(&c[i], items[i].e)) != 0) {
			items[i].rc = rc == 1 ? 0 : rc;
			continue;
		}
		pids[rows] = c[i].pid;
		keys[rows] = items[i].m->event_id;
		amounts[rows] = c[i].amount;
		curs[rows++] = c[i].cur;
	}
	rc = db_bulk(db, ins_request, rows, "isis", pids, keys, amounts, curs);
out:
	free(curs);
	free(keys);
	free(amounts);
	free(pids);
	free(paid);
	free(ok);
	free(c);
	return rc;
}

static int
dead_letter(struct db *db, struct worker_job *w, int inc, const char *type)
{
	char now[32], req[32], last[32];
	json_t *rec;
	int rc;

	consumer_isotime(w->requested, req);
	consumer_isotime(w->last_retry, last);
	outbox_now(now);
	rec = json_pack("{s:I, s:I, s:s, s:I, s:s, s:I, s:s, s:s?, s:s?, s:s,"
	                " s:s, s:s, s:s?, s:s}",
	    "settlementRequestId", (json_int_t)w->id, "paymentId",
	    (json_int_t)w->payment_id, "merchantId", w->merchant,
	    "requestAmount", (json_int_t)w->amount, "currency", w->currency,
	    "retryCount", (json_int_t)(w->failures + inc), "status", "DEAD",
	    "pgResponseCode", w->code[0] ? w->code : NULL, "pgResponseMessage",
	    w->message[0] ? w->message : NULL, "errorType", type,
	    "errorMessage", w->why, "requestedAt", req, "lastRetryAt",
	    last[0] ? last : NULL, "timestamp", now);
	if (rec == NULL)
		diag_die(EX_SOFTWARE, "cannot build a dead-letter record");
	rc = outbox_insert(
	    db, EV_SETTLEMENT_DEAD_LETTER, w->payment_id, rec, NULL);
	json_decref(rec);
	return rc;
}

/* Give the request up: DEAD, payment CAPTURE_FAILED, a DLQ record. */
static int
give_up(struct db *db, struct worker_job *w, int inc, const char *type)
{
	const char *code = w->res.code[0] ? w->res.code : NULL;
	const char *message = w->res.message[0] ? w->res.message : NULL;
	int rc;

	if ((rc = db_exec(db, set_dead, "issis", inc, code, message, w->id,
	         w->token)) != 0)
		return rc;
	if (db_affected(db) == 0)
		return WORKER_LOST;
	if ((rc = db_exec(db, set_capture_failed, "i", w->payment_id)) != 0)
		return rc;
	if (code != NULL) {
		worker_copy(w->code, sizeof(w->code), w->res.code);
		worker_copy(w->message, sizeof(w->message), w->res.message);
	}
	return dead_letter(db, w, inc, type);
}

/*
 * The call, made outside any transaction.  If the process dies after the
 * gateway settled and before the result is committed, the lease runs out
 * and the call is made again with the same idempotency key: the gateway
 * must answer a repeated key with the first answer.
 */
static int
vet(struct db *db, struct worker_job *w)
{
	int rc;

	if (strcmp(w->pstatus, "CAPTURE_REQUESTED") == 0 && w->txn[0] != '\0') {
		/*
		 * The gateway dedupes by this key, so it must be unique
		 * wherever the gateway is shared: the authorization's
		 * transaction id is.
		 */
		snprintf(w->key, sizeof(w->key), "settle-%.56s", w->txn);
		w->op = PG_SETTLE;
		w->req.payment_id = w->payment_id;
		w->req.txn = w->txn;
		w->req.amount = w->amount;
		w->req.currency = w->currency;
		w->req.key = w->key;
		return 0;
	}
	/* Changed behind our back: calling the gateway now would be wrong. */
	snprintf(w->why, sizeof(w->why),
	    "payment is %s, not CAPTURE_REQUESTED; not settled", w->pstatus);
	w->outcome = "given up";
	rc = give_up(db, w, 0, CE_INVALID_STATE);
	return rc != 0 ? rc : WORKER_RESOLVED;
}

static int
approved(struct db *db, struct worker_job *w)
{
	json_t *ev;
	int rc;

	if ((rc = db_exec(db, set_success, "sssis", w->res.txn, w->res.code,
	         w->res.message, w->id, w->token)) != 0)
		return rc;
	if (db_affected(db) == 0)
		return WORKER_LOST;
	rc = db_exec(db, set_captured, "ii", w->amount, w->payment_id);
	if (rc != 0)
		return rc;
	w->outcome = db_affected(db) == 1 ? "settled" : "settled, status kept";
	ev = json_pack("{s:I, s:s, s:s, s:I, s:s, s:I, s:s}", "paymentId",
	    (json_int_t)w->payment_id, "status", "CAPTURED", "merchantId",
	    w->merchant, "amount", (json_int_t)w->amount, "currency",
	    w->currency, "settlementId", (json_int_t)w->id, "pgTransactionId",
	    w->res.txn);
	if (ev == NULL)
		diag_die(EX_SOFTWARE, "cannot build an event");
	rc = outbox_insert(db, EV_CAPTURED, w->payment_id, ev, NULL);
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
    "SELECT STRAIGHT_JOIN j.n, p.status, s.id IS NOT NULL FROM " JT
    "n FOR ORDINALITY, pid BIGINT PATH '$[0]', id BIGINT PATH '$[1]',"
    " t VARCHAR(32) PATH '$[2]')) j"
    " JOIN payment p FORCE INDEX (PRIMARY) ON p.payment_id = j.pid"
    " LEFT JOIN settlement_request s FORCE INDEX (PRIMARY) ON s.id = j.id"
    " AND s.status = 'PENDING' AND s.next_retry_at = j.t FOR UPDATE";
/* Rows [request id, token, transaction id, code, message]. */
static const char set_success_batch[] =
    "UPDATE " JT "id BIGINT PATH '$[0]', t VARCHAR(32) PATH '$[1]',"
    " tx VARCHAR(64) PATH '$[2]', rc VARCHAR(32) PATH '$[3]',"
    " rm VARCHAR(255) PATH '$[4]')) j"
    " STRAIGHT_JOIN settlement_request s ON s.id = j.id"
    " SET s.status = 'SUCCESS', s.pg_transaction_id = j.tx,"
    " s.pg_response_code = j.rc, s.pg_response_message = j.rm,"
    " s.next_retry_at = NULL, s.completed_at = NOW(6)"
    " WHERE s.status = 'PENDING' AND s.next_retry_at = j.t";
/* Rows [payment id, amount]. */
static const char set_captured_batch[] =
    "UPDATE " JT "id BIGINT PATH '$[0]', amount BIGINT PATH '$[1]')) j"
    " STRAIGHT_JOIN payment p ON p.payment_id = j.id"
    " SET p.status = 'CAPTURED', p.captured_amount = j.amount"
    " WHERE p.status = 'CAPTURE_REQUESTED'";

/*
 * Lock the batch: every job's payment, and its request when the claim is
 * still ours; held[i] says so, captureable[i] that the payment is still
 * CAPTURE_REQUESTED.  0 or a db code.
 */
static int
lock_all(struct db *db, struct worker_job **v, size_t n, bool *held,
    bool *captureable)
{
	long long k;
	int rc;

	if ((rc = worker_query_jobs(db, lock_batch, v, n)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		k = db_int(db, 0);
		if (k < 1 || (size_t)k > n)
			continue;
		captureable[k - 1] =
		    strcmp(db_str(db, 1), "CAPTURE_REQUESTED") == 0;
		held[k - 1] = db_int(db, 2) != 0;
	}
	return -rc;
}

/* The PAYMENT_CAPTURED event of w into ev, as approved() writes it. */
static void
captured_event(struct outbox_event *ev, const struct worker_job *w)
{
	struct js_out o = { 0 };

	js_out_int(&o, "paymentId", w->payment_id);
	js_out_str(&o, "status", "CAPTURED");
	js_out_str(&o, "merchantId", w->merchant);
	js_out_int(&o, "amount", w->amount);
	js_out_str(&o, "currency", w->currency);
	js_out_int(&o, "settlementId", w->id);
	js_out_str(&o, "pgTransactionId", w->res.txn);
	ev->type = EV_CAPTURED;
	ev->aggregate_id = w->payment_id;
	ev->text = outbox_seal(&o, EV_CAPTURED, ev->key);
}

/*
 * Record the approvals of v[0..n) whose claim still holds, four statements
 * for the lot, with the guards of approved(): the request goes SUCCESS
 * only while PENDING with our token, the payment CAPTURED only from
 * CAPTURE_REQUESTED, one PAYMENT_CAPTURED each.  An approval whose claim
 * was taken over is lost, as approved() would find it; the failures are
 * left to record().  The payments (then the requests) are locked first,
 * all of the batch, in its order.
 */
static int
record_batch(struct db *db, struct worker_job **v, size_t n)
{
	bool *held = xcalloc(n, sizeof(*held));
	bool *captureable = xcalloc(n, sizeof(*captureable));
	struct outbox_event *ev = xcalloc(n, sizeof(*ev));
	json_t *reqs = NULL, *pays = NULL, *row;
	size_t i, nreq = 0, npay = 0, nev = 0;
	int rc;

	if ((rc = lock_all(db, v, n, held, captureable)) != 0)
		goto out;
	reqs = json_array();
	pays = json_array();
	for (i = 0; i < n; i++) {
		if (v[i]->res.outcome != PG_APPROVED)
			continue;
		if (!held[i]) {
			v[i]->lost = true;
			continue;
		}
		row = json_pack("[I, s, s, s, s]", (json_int_t)v[i]->id,
		    v[i]->token, v[i]->res.txn, v[i]->res.code,
		    v[i]->res.message);
		/* Text jansson refuses is left to record(), as before. */
		if (row == NULL)
			continue;
		json_array_append_new(reqs, row);
		nreq++;
		if (captureable[i]) {
			json_array_append_new(pays,
			    json_pack("[I, I]", (json_int_t)v[i]->payment_id,
			        (json_int_t)v[i]->amount));
			npay++;
		}
		v[i]->outcome =
		    captureable[i] ? "settled" : "settled, status kept";
		captured_event(&ev[nev++], v[i]);
	}
	if ((rc = worker_exec_rows(db, set_success_batch, reqs, nreq)) != 0 ||
	    (rc = worker_exec_rows(db, set_captured_batch, pays, npay)) != 0)
		goto out;
	rc = outbox_insert_many(db, ev, nev);
out:
	json_decref(pays);
	json_decref(reqs);
	for (i = 0; i < nev; i++)
		free(ev[i].text);
	free(ev);
	free(captureable);
	free(held);
	return rc;
}

static int
record(struct db *db, struct worker_job *w)
{
	int rc;

	if ((rc = lock(db, lock_payment, w->payment_id)) != 0)
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
	long long pid = (long long)w->payment_id;

	if (strcmp(w->outcome, "settled") == 0)
		diag_info(1,
		    "payment %lld: settled, transaction %s (attempt %lld)", pid,
		    w->res.txn, w->failures + 1);
	else if (strcmp(w->outcome, "deferred") == 0)
		diag_info(1, "payment %lld: %s; next in %lld.%03llds", pid,
		    w->res.message, w->delay_ms / 1000, w->delay_ms % 1000);
	else if (strcmp(w->outcome, "failed") == 0)
		diag_warn("payment %lld: attempt %lld failed: %s %s; next in "
		          "%lld.%03llds",
		    pid, w->failures + 1, w->res.code, w->res.message,
		    w->delay_ms / 1000, w->delay_ms % 1000);
	else if (strcmp(w->outcome, "settled, status kept") == 0)
		diag_warn("payment %lld: settled, transaction %s, but it is no "
		          "longer CAPTURE_REQUESTED: status left as it is",
		    pid, w->res.txn);
	else
		diag_warn("payment %lld: settlement %lld dead-lettered: %s",
		    pid, (long long)w->id, w->why);
}

int
main(int argc, char **argv)
{
	static const struct consumer_topic topics[] = {
		{ TOPIC_CAPTURE_REQUESTED, EV_CAPTURE_REQUESTED },
	};
	static const struct worker_jobs jobs = {
		.job_size = sizeof(struct worker_job),
		.noun = "settlement",
		.claim = claim,
		.vet = vet,
		.record = record,
		.record_batch = record_batch,
		.give_up = give_up,
		.log = log_job,
	};
	static const struct worker_def d = {
		.usage = usage_text,
		.prefix = "settle",
		.consumer = {
		    .name = "settle",
		    .topics = topics,
		    .ntopics = 1,
		    .dlq_event = EV_SETTLEMENT_DEAD_LETTER,
		    .handle = on_message,
		    .handle_batch = on_batch,
		},
		.jobs = &jobs,
	};

	return worker_main(argc, argv, &d);
}
