/*
 * refund: the refund worker.  payctl refund writes a refund_request row
 * (PENDING, not yet due) and a payment.refund-requested event in one
 * transaction; this worker consumes the event and makes the row due.  A
 * pool of callers claims due rows, calls the gateway outside any
 * transaction and applies the answer: SUCCESS (refunded_amount grows, the
 * payment becomes PARTIALLY_REFUNDED or REFUNDED, PAYMENT_REFUNDED), or
 * FAILED with a backoff, or after the last retry DEAD (REFUND_FAILED,
 * REFUND_DEAD_LETTER).  Retries emit PAYMENT_REFUNDED like first attempts.
 */
#include "conf.h"
#include "consumer.h"
#include "diag.h"
#include "js.h"
#include "outbox.h"
#include "pg.h"
#include "topics.h"

#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] = "usage: refund [-hVv] [--once | --retry-due] "
                                 "[-g group] [-n count] [-X key=value]\n";

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

static const char pick[] =
    "SELECT id FROM refund_request"
    " WHERE status IN ('PENDING', 'FAILED')"
    " AND next_retry_at <= IFNULL(CAST(? AS DATETIME(6)), NOW(6))"
    " LIMIT 1 FOR UPDATE SKIP LOCKED";
/* The lease is next_retry_at: a caller that dies lets it come due again. */
static const char claim[] =
    "UPDATE refund_request SET status = 'PENDING',"
    " last_retry_at = IF(retry_count > 0, NOW(6), last_retry_at),"
    " next_retry_at = NOW(6) + INTERVAL ? MICROSECOND WHERE id = ?";
static const char claimed[] =
    "SELECT r.payment_id, r.amount, r.currency, r.retry_count,"
    " r.next_retry_at, r.requested_at, r.last_retry_at, p.status,"
    " p.transaction_id, p.merchant_id, r.pg_response_code,"
    " r.pg_response_message, r.reason"
    " FROM refund_request r JOIN payment p USING (payment_id)"
    " WHERE r.id = ?";

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

struct refund {
	struct consumer_pool *pool;
	bool created; /* a message made a request due: wake the callers */
	long long max_retries, base_ms, cap_ms, lease_us;
};

/* A claimed refund_request and what became of it. */
struct job {
	struct refund *s;
	const char *cutoff;
	bool found;
	int64_t id, payment_id, amount, captured, refunded;
	long long failures; /* failed attempts before this one */
	char currency[4], token[32], requested[32], last_retry[32];
	char pstatus[24], txn[65], merchant[33], code[33], message[256];
	char reason[501], newstatus[24];
	struct pg_result res;
	long long delay_ms;
	const char *outcome; /* for the log line */
	char why[320];
};

static void
copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

static int
on_message(
    struct db *db, struct consumer_msg *m, struct consumer_error *e, void *arg)
{
	struct refund *s = arg;
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
	copy(pcur, sizeof(pcur), db_str(db, 0));
	copy(pmerchant, sizeof(pmerchant), db_str(db, 1));
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
	copy(rcur, sizeof(rcur), rc ? db_str(db, 2) : "");
	copy(rstatus, sizeof(rstatus), rc ? db_str(db, 3) : "");
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
	if ((rc = db_exec(db, make_due, "i", (int64_t)rid)) != 0)
		return rc;
	if (db_affected(db) == 1)
		s->created = true;
	return 0;
}

static void
committed(void *arg)
{
	struct refund *s = arg;

	if (s->created && s->pool != NULL)
		consumer_pool_kick(s->pool);
	s->created = false;
}

/* Lock the payment (always first) and read its amounts. */
static int
lock(struct db *db, struct job *j)
{
	int rc;

	if ((rc = db_query(db, lock_payment, "i", j->payment_id)) != 0)
		return rc;
	if ((rc = db_next(db)) <= 0)
		return rc < 0 ? -rc : EX_SOFTWARE;
	copy(j->pstatus, sizeof(j->pstatus), db_str(db, 0));
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
dead_letter(struct db *db, struct job *j, const char *type)
{
	char now[32], req[32], last[32];
	json_t *rec;
	int rc;

	consumer_isotime(j->requested, req);
	consumer_isotime(j->last_retry, last);
	outbox_now(now);
	rec = json_pack("{s:I, s:I, s:s, s:I, s:s, s:s, s:I, s:s, s:s?, s:s?,"
	                " s:s, s:s, s:s, s:s?, s:s}",
	    "refundRequestId", (json_int_t)j->id, "paymentId",
	    (json_int_t)j->payment_id, "merchantId", j->merchant,
	    "refundAmount", (json_int_t)j->amount, "currency", j->currency,
	    "refundReason", j->reason, "retryCount", (json_int_t)j->failures,
	    "status", "DEAD", "pgResponseCode", j->code[0] ? j->code : NULL,
	    "pgResponseMessage", j->message[0] ? j->message : NULL, "errorType",
	    type, "errorMessage", j->why, "requestedAt", req, "lastRetryAt",
	    last[0] ? last : NULL, "timestamp", now);
	if (rec == NULL)
		diag_die(EX_SOFTWARE, "cannot build a dead-letter record");
	rc = outbox_insert(db, EV_REFUND_DEAD_LETTER, j->payment_id, rec, NULL);
	json_decref(rec);
	return rc;
}

/*
 * Give the request up: DEAD, a DLQ record, and the payment REFUND_FAILED
 * if it is still REFUND_REQUESTED and no other refund of it is open.
 */
static int
give_up(struct db *db, struct job *j, int inc, const char *type)
{
	const char *code = j->res.code[0] ? j->res.code : NULL;
	const char *message = j->res.message[0] ? j->res.message : NULL;
	int64_t open;
	int rc;

	if ((rc = lock(db, j)) != 0 ||
	    (rc = db_exec(db, set_dead, "issis", inc, code, message, j->id,
	         j->token)) != 0)
		return rc;
	if (db_affected(db) == 0)
		return CONSUMER_ABANDON;
	if ((open = open_requests(db, j->payment_id)) < 0)
		return (int)-open;
	if (open == 0 && strcmp(j->pstatus, "REFUND_REQUESTED") == 0 &&
	    (rc = db_exec(
	         db, set_status, "si", "REFUND_FAILED", j->payment_id)) != 0)
		return rc;
	j->failures += inc;
	if (j->res.code[0] != '\0') {
		copy(j->code, sizeof(j->code), j->res.code);
		copy(j->message, sizeof(j->message), j->res.message);
	}
	return dead_letter(db, j, type);
}

static int
claim_tx(struct db *db, void *arg)
{
	struct job *j = arg;
	int rc;

	j->found = false;
	if ((rc = db_query(db, pick, "s", j->cutoff)) != 0)
		return rc;
	if ((rc = db_next(db)) <= 0)
		return -rc;
	j->id = db_int(db, 0);
	db_next(db);
	if ((rc = db_exec(db, claim, "ii", (int64_t)j->s->lease_us, j->id)) !=
	        0 ||
	    (rc = db_query(db, claimed, "i", j->id)) != 0)
		return rc;
	if ((rc = db_next(db)) <= 0)
		return rc < 0 ? -rc : EX_SOFTWARE;
	j->payment_id = db_int(db, 0);
	j->amount = db_int(db, 1);
	copy(j->currency, sizeof(j->currency), db_str(db, 2));
	j->failures = db_int(db, 3);
	copy(j->token, sizeof(j->token), db_str(db, 4));
	copy(j->requested, sizeof(j->requested), db_str(db, 5));
	copy(j->last_retry, sizeof(j->last_retry), db_str(db, 6));
	copy(j->pstatus, sizeof(j->pstatus), db_str(db, 7));
	copy(j->txn, sizeof(j->txn), db_str(db, 8));
	copy(j->merchant, sizeof(j->merchant), db_str(db, 9));
	copy(j->code, sizeof(j->code), db_str(db, 10));
	copy(j->message, sizeof(j->message), db_str(db, 11));
	copy(j->reason, sizeof(j->reason), db_str(db, 12));
	db_next(db);
	j->found = true;
	if (strcmp(j->pstatus, "REFUND_REQUESTED") == 0 && j->txn[0] != '\0')
		return 0;
	/* Changed behind our back: calling the gateway now would be wrong. */
	snprintf(j->why, sizeof(j->why),
	    "payment is %s, not REFUND_REQUESTED; not refunded", j->pstatus);
	j->outcome = "given up";
	return give_up(db, j, 0, CE_INVALID_STATE);
}

/* The payment's status once this refund is in. */
static const char *
next_status(const struct job *j, int64_t open)
{
	if (j->refunded + j->amount >= j->captured)
		return "REFUNDED";
	return open > 0 ? "REFUND_REQUESTED" : "PARTIALLY_REFUNDED";
}

static int
success_tx(struct db *db, void *arg)
{
	struct job *j = arg;
	int64_t open;
	json_t *ev;
	int rc;

	if ((rc = lock(db, j)) != 0 ||
	    (rc = db_exec(db, set_success, "sssis", j->res.cancel_txn,
	         j->res.code, j->res.message, j->id, j->token)) != 0)
		return rc;
	if (db_affected(db) == 0)
		return CONSUMER_ABANDON;
	if ((open = open_requests(db, j->payment_id)) < 0)
		return (int)-open;
	j->outcome = "refunded";
	/* The money has moved: count it, unless that breaks the books. */
	if (j->refunded + j->amount <= j->captured) {
		if ((rc = db_exec(db, add_refunded, "ii", j->amount,
		         j->payment_id)) != 0)
			return rc;
	} else {
		j->outcome = "refunded beyond the captured amount";
	}
	copy(j->newstatus, sizeof(j->newstatus), j->pstatus);
	if (strcmp(j->pstatus, "REFUND_REQUESTED") != 0) {
		j->outcome = "refunded, status kept";
	} else if (strcmp(next_status(j, open), j->pstatus) != 0) {
		copy(j->newstatus, sizeof(j->newstatus), next_status(j, open));
		if ((rc = db_exec(db, set_status, "si", j->newstatus,
		         j->payment_id)) != 0)
			return rc;
	}
	ev = json_pack("{s:I, s:s, s:s, s:s, s:I, s:s, s:I, s:s, s:I, s:I}",
	    "paymentId", (json_int_t)j->payment_id, "status", "REFUNDED",
	    "paymentStatus", j->newstatus, "merchantId", j->merchant, "amount",
	    (json_int_t)j->amount, "currency", j->currency, "refundId",
	    (json_int_t)j->id, "cancelTransactionId", j->res.cancel_txn,
	    "refundedAmount", (json_int_t)(j->refunded + j->amount),
	    "capturedAmount", (json_int_t)j->captured);
	if (ev == NULL)
		diag_die(EX_SOFTWARE, "cannot build an event");
	rc = outbox_insert(db, EV_REFUNDED, j->payment_id, ev, NULL);
	json_decref(ev);
	return rc;
}

static int
failure_tx(struct db *db, void *arg)
{
	struct job *j = arg;
	const char *code = j->res.code[0] ? j->res.code : "PG_ERROR";
	int rc;

	if (strcmp(code, "CIRCUIT_OPEN") == 0) {
		j->delay_ms = consumer_backoff(j->s->base_ms, j->s->cap_ms, 1,
		    (double)random() / ((double)RAND_MAX + 1));
		if ((rc = db_exec(db, set_deferred, "ssiis", code,
		         j->res.message, (int64_t)(j->delay_ms * 1000), j->id,
		         j->token)) != 0)
			return rc;
		if (db_affected(db) == 0)
			return CONSUMER_ABANDON;
		j->outcome = "deferred";
		return 0;
	}
	if (j->failures + 1 > j->s->max_retries) {
		snprintf(j->why, sizeof(j->why),
		    "gave up after %lld attempts: %s", j->failures + 1,
		    j->res.message);
		if (j->res.code[0] == '\0')
			copy(j->res.code, sizeof(j->res.code), code);
		j->outcome = "dead";
		return give_up(db, j, 1, CE_RETRIES_EXHAUSTED);
	}
	if ((rc = lock(db, j)) != 0)
		return rc;
	j->delay_ms = consumer_backoff(j->s->base_ms, j->s->cap_ms,
	    j->failures + 1, (double)random() / ((double)RAND_MAX + 1));
	if ((rc = db_exec(db, set_failed, "ssiis", code, j->res.message,
	         (int64_t)(j->delay_ms * 1000), j->id, j->token)) != 0)
		return rc;
	if (db_affected(db) == 0)
		return CONSUMER_ABANDON;
	j->outcome = "failed";
	return 0;
}

/*
 * The gateway call, outside any transaction.  If the process dies after the
 * gateway refunded and before the result is committed, the lease runs out
 * and the call is made again with the same idempotency key: the gateway
 * must answer a repeated key with the first answer.
 */
static void
call_gateway(struct consumer_worker *w, struct job *j)
{
	struct pg_request q;
	char key[64];

	memset(&q, 0, sizeof(q));
	/* Unique wherever the gateway is shared, as settle's. */
	snprintf(
	    key, sizeof(key), "refund-%.36s-%lld", j->txn, (long long)j->id);
	q.payment_id = j->payment_id;
	q.txn = j->txn;
	q.amount = j->amount;
	q.currency = j->currency;
	q.reason = j->reason;
	q.key = key;
	consumer_pg_call(w->http, PG_REFUND, &q, &j->res);
}

static void
log_job(const struct job *j)
{
	if (strncmp(j->outcome, "refunded", 8) == 0)
		diag_warn("payment %lld: refund %lld %s, transaction %s "
		          "(attempt %lld); payment %s",
		    (long long)j->payment_id, (long long)j->id, j->outcome,
		    j->res.cancel_txn, j->failures + 1, j->newstatus);
	else if (strcmp(j->outcome, "deferred") == 0)
		diag_info(1, "refund %lld: %s; next in %lld.%03llds",
		    (long long)j->id, j->res.message, j->delay_ms / 1000,
		    j->delay_ms % 1000);
	else if (strcmp(j->outcome, "failed") == 0)
		diag_warn("payment %lld: refund %lld attempt %lld failed: %s "
		          "%s; next in %lld.%03llds",
		    (long long)j->payment_id, (long long)j->id, j->failures + 1,
		    j->res.code[0] ? j->res.code : "PG_ERROR", j->res.message,
		    j->delay_ms / 1000, j->delay_ms % 1000);
	else
		diag_warn("payment %lld: refund %lld dead-lettered: %s",
		    (long long)j->payment_id, (long long)j->id, j->why);
}

static int
due(struct consumer_worker *w, const char *cutoff, void *arg)
{
	struct job j;
	int rc;

	memset(&j, 0, sizeof(j));
	j.s = arg;
	j.cutoff = cutoff;
	rc = consumer_tx(w, claim_tx, &j);
	if (rc == CONSUMER_ABANDON)
		return 1;
	if (rc != 0 || !j.found)
		return rc;
	if (j.outcome == NULL) {
		call_gateway(w, &j);
		rc = consumer_tx(w,
		    j.res.outcome == PG_APPROVED ? success_tx : failure_tx, &j);
	}
	if (rc == CONSUMER_ABANDON) {
		/* Our lease ran out and another caller took the request. */
		diag_warn("payment %lld: refund %lld was taken over; result "
		          "dropped",
		    (long long)j.payment_id, (long long)j.id);
		return 1;
	}
	if (rc != 0)
		return rc;
	log_job(&j);
	return 1;
}

static int
finish(struct db *db, int rc)
{
	if (consumer_signal() != 0)
		diag_warn("stopped on %s",
		    consumer_signal() == SIGTERM ? "SIGTERM" : "SIGINT");
	consumer_pg_close();
	db_close(db);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "group", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ "max-messages", required_argument, NULL, 'n' },
		{ "once", no_argument, NULL, 'o' },
		{ "retry-due", no_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct consumer_topic topics[] = {
		{ TOPIC_REFUND_REQUESTED, EV_REFUND_REQUESTED },
	};
	struct consumer_opts o;
	struct refund s;
	struct db *db;
	bool retry_due = false;
	long long n;
	int c, rc, prc = 0;

	diag_init(argv[0]);
	diag_ignore_sigpipe();
	memset(&o, 0, sizeof(o));
	memset(&s, 0, sizeof(s));
	while ((c = getopt_long(argc, argv, ":g:hn:vVX:", opts, NULL)) != -1) {
		switch (c) {
		case 'g':
			if (*optarg == '\0')
				return diag_usage(
				    "option '--group': must not be empty");
			conf_set_flag("refund_group", optarg);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return diag_close_stdout();
		case 'n':
			if (conf_parse_int(optarg, 1, 1000000000000LL, &n) != 0)
				return diag_usage("option '--max-messages': "
				                  "'%s' is not a count",
				    optarg);
			o.max_messages = n;
			break;
		case 'o':
			o.once = true;
			break;
		case 'r':
			retry_due = true;
			break;
		case 'v':
			diag_verbose++;
			break;
		case 'V':
			diag_version();
			return diag_close_stdout();
		case 'X':
			if (conf_kafka_prop(optarg) != 0)
				return diag_usage("option '-X': '%s' is not "
				                  "key=value",
				    optarg);
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	if (retry_due && (o.once || o.max_messages > 0))
		return diag_usage("'--retry-due' cannot be combined with "
		                  "'--once' or '--max-messages'");
	if ((rc = conf_load()) != 0)
		return rc;
	if (*conf_str("refund_group") == '\0') {
		diag_warn("setting 'refund_group' must not be empty");
		return EX_CONFIG;
	}
	s.max_retries = conf_int("refund_max_retries");
	s.base_ms = conf_ms("refund_retry_base");
	s.cap_ms = conf_ms("refund_retry_max");
	s.lease_us =
	    (conf_ms("pg_connect_timeout") + conf_ms("pg_timeout") + 5000) *
	    1000;
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	/* Fill the topic-name cache before any thread reads it. */
	topics_name(TOPIC_REFUND_REQUESTED);
	consumer_signals();
	if ((db = consumer_connect(&rc)) == NULL)
		return rc;
	if ((rc = consumer_pg_open()) != 0) {
		db_close(db);
		return rc;
	}
	n = conf_int("refund_concurrency");
	if (retry_due) {
		rc = consumer_pool_pass((int)n, due, &s, db, NULL);
		return finish(db, rc);
	}
	o.name = "refund";
	o.group = conf_str("refund_group");
	o.topics = topics;
	o.ntopics = 1;
	o.dlq_event = EV_REFUND_DEAD_LETTER;
	o.handle = on_message;
	o.committed = committed;
	o.arg = &s;
	/* A daemon calls the gateway all along; --once and -n at the end. */
	if (!o.once && o.max_messages == 0) {
		s.pool = consumer_pool_start((int)n, due, &s, 1000, &rc);
		if (s.pool == NULL) {
			db_close(db);
			return rc;
		}
	}
	rc = consumer_run(&o, &db);
	if (s.pool != NULL)
		prc = consumer_pool_stop(s.pool);
	else if (rc == 0 && !consumer_stopping())
		prc = consumer_pool_pass((int)n, due, &s, db, NULL);
	return finish(db, rc ? rc : prc);
}
