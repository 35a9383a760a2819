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

static int
on_message(
    struct db *db, struct consumer_msg *m, struct consumer_error *e, void *arg)
{
	long long pid, amount, rid;
	const char *cur, *merchant;
	char pcur[4], pmerchant[33], rcur[4], rstatus[16];
	int64_t rpid, ramount;
	bool undue;
	int rc;

	if (consumer_int(m->event, "paymentId", 1, INT64_MAX, &pid, e) ||
	    consumer_int(m->event, "amount", 1, AMOUNT_MAX, &amount, e) ||
	    consumer_str(m->event, "currency", 3, &cur, e) ||
	    consumer_int(m->event, "refundId", 1, INT64_MAX, &rid, e))
		return CONSUMER_REJECT;
	m->payment_id = pid;
	if ((rc = db_query(db, sel_payment, "i", (int64_t)pid)) != 0)
		return rc;
	if ((rc = db_next(db)) <= 0) {
		if (rc < 0)
			return -rc;
		return consumer_reject(
		    e, CE_UNKNOWN_PAYMENT, "payment %lld does not exist", pid);
	}
	worker_copy(pcur, sizeof(pcur), db_str(db, 0));
	worker_copy(pmerchant, sizeof(pmerchant), db_str(db, 1));
	db_next(db);
	if (strcmp(cur, pcur) != 0)
		return consumer_reject(e, CE_CURRENCY_MISMATCH,
		    "'currency' is '%s', payment %lld is in %s", cur, pid,
		    pcur);
	merchant = js_getstr(m->event, "merchantId", NULL);
	if (merchant != NULL && strcmp(merchant, pmerchant) != 0)
		return consumer_reject(e, CE_BAD_FIELD,
		    "'merchantId' is '%.32s', payment %lld is of '%s'",
		    merchant, pid, pmerchant);
	if ((rc = db_query(db, sel_request, "i", (int64_t)rid)) != 0)
		return rc;
	if ((rc = db_next(db)) < 0)
		return -rc;
	rpid = rc ? db_int(db, 0) : 0;
	ramount = rc ? db_int(db, 1) : 0;
	worker_copy(rcur, sizeof(rcur), rc ? db_str(db, 2) : "");
	worker_copy(rstatus, sizeof(rstatus), rc ? db_str(db, 3) : "");
	undue = rc && db_int(db, 4) == 1;
	db_next(db);
	if (rpid != pid)
		return consumer_reject(e, CE_UNKNOWN_REFUND,
		    "refund %lld of payment %lld does not exist", rid, pid);
	if (ramount != amount || strcmp(rcur, cur) != 0)
		return consumer_reject(e, CE_AMOUNT_MISMATCH,
		    "'amount' is %lld %s, refund %lld is for %lld %s", amount,
		    cur, rid, (long long)ramount, rcur);
	if (strcmp(rstatus, "PENDING") != 0 || !undue) {
		/* Under way or finished: a late or replayed event. */
		diag_info(1, "refund %lld: is %s already", rid, rstatus);
		return 0;
	}
	return db_exec(db, make_due, "i", (int64_t)rid);
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
		},
		.jobs = &jobs,
	};

	return worker_main(argc, argv, &d);
}
