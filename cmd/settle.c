/*
 * settle: the settlement worker.  A payment.capture-requested event
 * becomes a settlement_request row (one per payment), due at once; a pool
 * of callers claims due rows, calls the gateway outside any transaction,
 * and applies the answer: SUCCESS (payment CAPTURED, PAYMENT_CAPTURED), or
 * FAILED with a backoff, or after the last retry DEAD (payment
 * CAPTURE_FAILED, SETTLEMENT_DEAD_LETTER).  First attempts and retries are
 * the same code path, so a first-time failure is retried like any other.
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

static const char usage_text[] = "usage: settle [-hVv] [--once | --retry-due] "
                                 "[-g group] [-n count] [-X key=value]\n";

#define AMOUNT_MAX 1000000000000000LL

static const char sel_payment[] =
    "SELECT status, amount, currency, merchant_id, transaction_id"
    " FROM payment WHERE payment_id = ? FOR UPDATE";
static const char ins_request[] =
    "INSERT INTO settlement_request"
    " (payment_id, event_key, amount, currency, status, next_retry_at)"
    " VALUES (?, ?, ?, ?, 'PENDING', NOW(6))"
    " ON DUPLICATE KEY UPDATE id = id";

static const char pick[] =
    "SELECT id FROM settlement_request"
    " WHERE status IN ('PENDING', 'FAILED')"
    " AND next_retry_at <= IFNULL(CAST(? AS DATETIME(6)), NOW(6))"
    " LIMIT 1 FOR UPDATE SKIP LOCKED";
/* The lease is next_retry_at: a caller that dies lets it come due again. */
static const char claim[] =
    "UPDATE settlement_request SET status = 'PENDING',"
    " last_retry_at = IF(retry_count > 0, NOW(6), last_retry_at),"
    " next_retry_at = NOW(6) + INTERVAL ? MICROSECOND WHERE id = ?";
static const char claimed[] =
    "SELECT s.payment_id, s.amount, s.currency, s.retry_count,"
    " s.next_retry_at, s.requested_at, s.last_retry_at, p.status,"
    " p.transaction_id, p.merchant_id, s.pg_response_code,"
    " s.pg_response_message"
    " FROM settlement_request s JOIN payment p USING (payment_id)"
    " WHERE s.id = ?";

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

struct settle {
	struct consumer_pool *pool;
	bool created; /* a message made a request due: wake the callers */
	long long max_retries, base_ms, cap_ms, lease_us;
};

/* A claimed settlement_request and what became of it. */
struct job {
	struct settle *s;
	const char *cutoff;
	bool found;
	int64_t id, payment_id, amount;
	long long failures; /* failed attempts before this one */
	char currency[4], token[32], requested[32], last_retry[32];
	char pstatus[24], txn[65], merchant[33], code[33], message[256];
	struct pg_result res;
	long long delay_ms;
	const char *outcome; /* for the log line */
	char why[320];
};

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

static void
copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* Statuses a payment has before its capture is requested. */
static bool
before_capture(const char *status)
{
	return strcmp(status, "PENDING") == 0 ||
	    strcmp(status, "AUTHORIZED") == 0 ||
	    strcmp(status, "AUTH_FAILED") == 0;
}

static int
on_message(
    struct db *db, struct consumer_msg *m, struct consumer_error *e, void *arg)
{
	struct settle *s = arg;
	long long pid, amount, pamount;
	const char *cur, *merchant;
	char status[24], pcur[4], pmerchant[33];
	bool txn;
	int rc;

	if (consumer_int(m->event, "paymentId", 1, INT64_MAX, &pid, e) ||
	    consumer_int(m->event, "amount", 1, AMOUNT_MAX, &amount, e) ||
	    consumer_str(m->event, "currency", 3, &cur, e))
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
	copy(status, sizeof(status), db_str(db, 0));
	pamount = db_int(db, 1);
	copy(pcur, sizeof(pcur), db_str(db, 2));
	copy(pmerchant, sizeof(pmerchant), db_str(db, 3));
	txn = !db_null(db, 4) && *db_str(db, 4) != '\0';
	db_next(db);
	if (amount != pamount)
		return consumer_reject(e, CE_AMOUNT_MISMATCH,
		    "'amount' is %lld, payment %lld is for %lld", amount, pid,
		    pamount);
	if (strcmp(cur, pcur) != 0)
		return consumer_reject(e, CE_CURRENCY_MISMATCH,
		    "'currency' is '%s', payment %lld is in %s", cur, pid,
		    pcur);
	merchant = js_getstr(m->event, "merchantId", NULL);
	if (merchant != NULL && strcmp(merchant, pmerchant) != 0)
		return consumer_reject(e, CE_BAD_FIELD,
		    "'merchantId' is '%.32s', payment %lld is of '%s'",
		    merchant, pid, pmerchant);
	if (before_capture(status) || !txn)
		return consumer_reject(e, CE_INVALID_STATE,
		    "payment %lld is %s%s, its capture cannot be requested",
		    pid, status, txn ? "" : " without a transactionId");
	if (strcmp(status, "CAPTURE_REQUESTED") != 0) {
		/* Settled or failed already: a late or replayed event. */
		diag_info(1, "payment %lld: is %s already", pid, status);
		return 0;
	}
	if ((rc = db_exec(db, ins_request, "isis", (int64_t)pid, m->event_id,
	         (int64_t)amount, cur)) != 0)
		return rc;
	if (db_affected(db) == 1)
		s->created = true;
	return 0;
}

static void
committed(void *arg)
{
	struct settle *s = arg;

	if (s->created && s->pool != NULL)
		consumer_pool_kick(s->pool);
	s->created = false;
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
	rec = json_pack("{s:I, s:I, s:s, s:I, s:s, s:I, s:s, s:s?, s:s?, s:s,"
	                " s:s, s:s, s:s?, s:s}",
	    "settlementRequestId", (json_int_t)j->id, "paymentId",
	    (json_int_t)j->payment_id, "merchantId", j->merchant,
	    "requestAmount", (json_int_t)j->amount, "currency", j->currency,
	    "retryCount", (json_int_t)j->failures, "status", "DEAD",
	    "pgResponseCode", j->code[0] ? j->code : NULL, "pgResponseMessage",
	    j->message[0] ? j->message : NULL, "errorType", type,
	    "errorMessage", j->why, "requestedAt", req, "lastRetryAt",
	    last[0] ? last : NULL, "timestamp", now);
	if (rec == NULL)
		diag_die(EX_SOFTWARE, "cannot build a dead-letter record");
	rc = outbox_insert(
	    db, EV_SETTLEMENT_DEAD_LETTER, j->payment_id, rec, NULL);
	json_decref(rec);
	return rc;
}

/* Give the request up: DEAD, payment CAPTURE_FAILED, a DLQ record. */
static int
give_up(struct db *db, struct job *j, int inc, const char *type)
{
	const char *code = j->res.code[0] ? j->res.code : NULL;
	const char *message = j->res.message[0] ? j->res.message : NULL;
	int rc;

	if ((rc = db_exec(db, set_dead, "issis", inc, code, message, j->id,
	         j->token)) != 0)
		return rc;
	if (db_affected(db) == 0)
		return CONSUMER_ABANDON;
	if ((rc = db_exec(db, set_capture_failed, "i", j->payment_id)) != 0)
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
	db_next(db);
	j->found = true;
	if (strcmp(j->pstatus, "CAPTURE_REQUESTED") == 0 && j->txn[0] != '\0')
		return 0;
	/* Changed behind our back: calling the gateway now would be wrong. */
	snprintf(j->why, sizeof(j->why),
	    "payment is %s, not CAPTURE_REQUESTED; not settled", j->pstatus);
	j->outcome = "given up";
	return give_up(db, j, 0, CE_INVALID_STATE);
}

static int
success_tx(struct db *db, void *arg)
{
	struct job *j = arg;
	json_t *ev;
	int rc;

	if ((rc = lock(db, lock_payment, j->payment_id)) != 0 ||
	    (rc = db_exec(db, set_success, "sssis", j->res.txn, j->res.code,
	         j->res.message, j->id, j->token)) != 0)
		return rc;
	if (db_affected(db) == 0)
		return CONSUMER_ABANDON;
	rc = db_exec(db, set_captured, "ii", j->amount, j->payment_id);
	if (rc != 0)
		return rc;
	j->outcome = db_affected(db) == 1 ? "settled" : "settled, status kept";
	ev = json_pack("{s:I, s:s, s:s, s:I, s:s, s:I, s:s}", "paymentId",
	    (json_int_t)j->payment_id, "status", "CAPTURED", "merchantId",
	    j->merchant, "amount", (json_int_t)j->amount, "currency",
	    j->currency, "settlementId", (json_int_t)j->id, "pgTransactionId",
	    j->res.txn);
	if (ev == NULL)
		diag_die(EX_SOFTWARE, "cannot build an event");
	rc = outbox_insert(db, EV_CAPTURED, j->payment_id, ev, NULL);
	json_decref(ev);
	return rc;
}

static int
failure_tx(struct db *db, void *arg)
{
	struct job *j = arg;
	const char *code = j->res.code[0] ? j->res.code : "PG_ERROR";
	int rc;

	if ((rc = lock(db, lock_payment, j->payment_id)) != 0)
		return rc;
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
 * gateway settled and before the result is committed, the lease runs out
 * and the call is made again with the same idempotency key: the gateway
 * must answer a repeated key with the first answer.
 */
static void
call_gateway(struct consumer_worker *w, struct job *j)
{
	struct pg_request q;
	char key[64];

	memset(&q, 0, sizeof(q));
	/*
	 * The gateway dedupes by this key, so it must be unique wherever
	 * the gateway is shared: the authorization's transaction id is.
	 */
	snprintf(key, sizeof(key), "settle-%.56s", j->txn);
	q.payment_id = j->payment_id;
	q.txn = j->txn;
	q.amount = j->amount;
	q.currency = j->currency;
	q.key = key;
	consumer_pg_call(w->http, PG_SETTLE, &q, &j->res);
}

static void
log_job(const struct job *j)
{
	if (strcmp(j->outcome, "settled") == 0)
		diag_warn(
		    "payment %lld: settled, transaction %s (attempt %lld)",
		    (long long)j->payment_id, j->res.txn, j->failures + 1);
	else if (strcmp(j->outcome, "deferred") == 0)
		diag_info(1, "payment %lld: %s; next in %lld.%03llds",
		    (long long)j->payment_id, j->res.message,
		    j->delay_ms / 1000, j->delay_ms % 1000);
	else if (strcmp(j->outcome, "failed") == 0)
		diag_warn("payment %lld: attempt %lld failed: %s %s; next in "
		          "%lld.%03llds",
		    (long long)j->payment_id, j->failures + 1,
		    j->res.code[0] ? j->res.code : "PG_ERROR", j->res.message,
		    j->delay_ms / 1000, j->delay_ms % 1000);
	else if (strcmp(j->outcome, "settled, status kept") == 0)
		diag_warn("payment %lld: settled, transaction %s, but it is no "
		          "longer CAPTURE_REQUESTED: status left as it is",
		    (long long)j->payment_id, j->res.txn);
	else
		diag_warn("payment %lld: settlement %lld dead-lettered: %s",
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
		diag_warn("payment %lld: settlement %lld was taken over; "
		          "result dropped",
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
		{ TOPIC_CAPTURE_REQUESTED, EV_CAPTURE_REQUESTED },
	};
	struct consumer_opts o;
	struct settle s;
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
			conf_set_flag("settle_group", optarg);
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
	if (*conf_str("settle_group") == '\0') {
		diag_warn("setting 'settle_group' must not be empty");
		return EX_CONFIG;
	}
	s.max_retries = conf_int("settle_max_retries");
	s.base_ms = conf_ms("settle_retry_base");
	s.cap_ms = conf_ms("settle_retry_max");
	s.lease_us =
	    (conf_ms("pg_connect_timeout") + conf_ms("pg_timeout") + 5000) *
	    1000;
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	/* Fill the topic-name cache before any thread reads it. */
	topics_name(TOPIC_CAPTURE_REQUESTED);
	consumer_signals();
	if ((db = consumer_connect(&rc)) == NULL)
		return rc;
	if ((rc = consumer_pg_open()) != 0) {
		db_close(db);
		return rc;
	}
	n = conf_int("settle_concurrency");
	if (retry_due) {
		rc = consumer_pool_pass((int)n, due, &s, db, NULL);
		return finish(db, rc);
	}
	o.name = "settle";
	o.group = conf_str("settle_group");
	o.topics = topics;
	o.ntopics = 1;
	o.dlq_event = EV_SETTLEMENT_DEAD_LETTER;
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
