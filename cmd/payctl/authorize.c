/*
 * payctl authorize: authorize a payment with the gateway, once per
 * (merchant, idempotency key) however many processes ask at once.
 *
 * The key is claimed first: the payment row is inserted as PENDING with a
 * lease and a claim token, and only the process whose insert succeeded asks
 * the gateway.  The outcome is recorded in one transaction with the outbox
 * events, by an update guarded by the status and the token.  Everyone else
 * reads the row: the same request replays a final row, waits for a PENDING
 * one, or takes over a claim whose lease ran out (asking the gateway again
 * with the same key, which a real gateway answers without a second hold);
 * a different request with the same key is a conflict.  A gateway error
 * deletes the claim, so nothing is recorded and a retry starts afresh.
 *
 * Stream mode (payctl authorize -) is in authorize-stream.c.
 */
#include "clock.h"
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "outbox.h"
#include "payctl.h"
#include "topics.h"
#include "valid.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: payctl authorize [-eh] -m merchant -a amount [-c currency] -k key"
    " [--no-capture]\n"
    "       payctl authorize [-eh] [-C n] -\n";

static const char claim_sql[] =
    "INSERT INTO payment (merchant_id, idempotency_key, amount, currency,"
    " auto_capture, status, lease_until, claim_token)"
    " VALUES (?, ?, ?, ?, ?, 'PENDING', NOW(6) + INTERVAL ? MICROSECOND, ?)"
    " RETURNING payment_id, DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%s.%fZ')";
static const char takeover_sql[] =
    "UPDATE payment SET lease_until = NOW(6) + INTERVAL ? MICROSECOND,"
    " claim_token = ? WHERE payment_id = ? AND status = 'PENDING'"
    " AND lease_until < NOW(6)";
static const char release_sql[] =
    "DELETE FROM payment WHERE payment_id = ? AND status = 'PENDING'"
    " AND claim_token = ?";
static const char finish_sql[] =
    "UPDATE payment SET status = ?, approval_number = ?, transaction_id = ?,"
    " pg_response_code = ?, pg_response_message = ?, lease_until = NULL,"
    " claim_token = NULL"
    " WHERE payment_id = ? AND status = 'PENDING' AND claim_token = ?";

/* existing(): the row went away, claim again. */
#define AGAIN (-1)

int64_t
auth_lease_us(void)
{
	return (2 * conf_ms("pg_timeout") + 10000) * 1000;
}

static void __attribute__((format(printf, 5, 6))) fail(struct auth_out *out,
    int code, const char *error, json_t *extra, const char *fmt, ...)
{
	va_list ap;

	out->code = code;
	va_start(ap, fmt);
	vsnprintf(out->msg, sizeof(out->msg), fmt, ap);
	va_end(ap);
	out->line =
	    json_pack("{s:s, s:s}", "error", error, "message", out->msg);
	if (extra != NULL) {
		json_object_update(out->line, extra);
		json_decref(extra);
	}
}

static void
dbfail(struct auth_out *out, const struct conn *c, int rc, const struct auth *a,
    const char *what)
{
	fail(out, rc ? rc : EX_SOFTWARE, "DATABASE_ERROR",
	    json_pack("{s:s, s:s}", "merchant_id", a->merchant,
	        "idempotency_key", a->key),
	    "%s of key '%s': %s", what, a->key, conn_error(c));
}

json_t *
auth_json(const struct auth *a, const char *status, const struct pg_result *res,
    bool replayed)
{
	struct payment p = { 0 };

	p.id = a->payment_id;
	snprintf(p.merchant, sizeof(p.merchant), "%s", a->merchant);
	snprintf(p.key, sizeof(p.key), "%s", a->key);
	p.amount = a->amount;
	snprintf(p.currency, sizeof(p.currency), "%s", a->currency);
	snprintf(p.status, sizeof(p.status), "%s", status);
	if (res->outcome == PG_APPROVED) {
		snprintf(p.approval, sizeof(p.approval), "%s", res->approval);
		snprintf(p.txn, sizeof(p.txn), "%s", res->txn);
	}
	snprintf(p.code, sizeof(p.code), "%s", res->code);
	snprintf(p.message, sizeof(p.message), "%s", res->message);
	snprintf(p.created_at, sizeof(p.created_at), "%s", a->created_at);
	return payment_brief(&p, replayed);
}

void
auth_event(struct outbox_event *ev, const struct auth *a, const char *type,
    const char *status, const struct pg_result *res)
{
	struct js_out o = { 0 };

	js_out_int(&o, "paymentId", a->payment_id);
	js_out_str(&o, "status", status);
	js_out_str(&o, "merchantId", a->merchant);
	js_out_int(&o, "amount", a->amount);
	js_out_str(&o, "currency", a->currency);
	js_out_str(&o, "approvalNumber", res->approval);
	js_out_str(&o, "transactionId", res->txn);
	ev->type = type;
	ev->aggregate_id = a->payment_id;
	ev->text = outbox_seal(&o, type, ev->key);
}

/* The events of an approval, in one round trip. */
static int
emit(struct db *db, const struct auth *a, const struct pg_result *res)
{
	struct outbox_event ev[2];
	size_t i, n = 0;
	int rc;

	auth_event(&ev[n++], a, EV_AUTHORIZED, "AUTHORIZED", res);
	if (a->capture)
		auth_event(&ev[n++], a, EV_CAPTURE_REQUESTED,
		    "CAPTURE_REQUESTED", res);
	rc = outbox_insert_many(db, ev, n);
	for (i = 0; i < n; i++)
		free(ev[i].text);
	return rc;
}

/* Insert the PENDING row; 0, or the db error (DB_ER_DUP_ENTRY: taken). */
static int
claim(struct db *db, struct auth *a)
{
	int rc;

	outbox_uuid(a->token);
	a->lease_end = clock_mono_ms() + auth_lease_us() / 1000;
	if ((rc = db_query(db, claim_sql, "ssisuis", a->merchant, a->key,
	         a->amount, a->currency, (int)a->capture, auth_lease_us(),
	         a->token)) != 0)
		return rc;
	if ((rc = db_next(db)) != 1)
		return rc < 0 ? -rc : EX_SOFTWARE;
	a->payment_id = db_int(db, 0);
	snprintf(a->created_at, sizeof(a->created_at), "%s", db_str(db, 1));
	while (db_next(db) == 1)
		;
	return 0;
}

static void
release(struct db *db, struct auth *a)
{
	/* If this fails the lease runs out and a retry takes the key over. */
	db_exec(db, release_sql, "is", a->payment_id, a->token);
}

/* What finish() records. */
struct outcome {
	const struct auth *a;
	const char *status;
	const struct pg_result *res;
	bool lost; /* the claim was taken over meanwhile: nothing written */
};

/*
 * Record the outcome with its events in one transaction.  Guarded by the
 * claim token, so trying again after a commit whose answer was lost finds
 * the claim gone and writes nothing twice.
 */
static int
finish(struct db *db, void *arg)
{
	struct outcome *o = arg;
	const struct auth *a = o->a;
	const struct pg_result *res = o->res;
	bool ok = res->outcome == PG_APPROVED;
	int rc, tries;

	for (tries = 0; tries < 3; tries++) {
		o->lost = false;
		if ((rc = db_begin(db)) != 0)
			return rc;
		rc = db_exec(db, finish_sql, "sssssis", o->status,
		    ok ? res->approval : NULL, ok ? res->txn : NULL, res->code,
		    res->message, a->payment_id, a->token);
		if (rc == 0 && db_affected(db) != 1) {
			o->lost = true;
			db_rollback(db);
			return 0;
		}
		if (rc == 0 && ok)
			rc = emit(db, a, res);
		if (rc == 0 && (rc = db_commit(db)) == 0)
			return 0;
		db_rollback(db);
		if (!db_retryable(db))
			break;
	}
	return rc;
}

static int existing(
    struct conn *c, struct http *h, struct auth *a, struct auth_out *out);

/*
 * Ask the gateway for the claimed key and record what it said.  The
 * answer is not given up while the claim is ours: a database that went
 * away is waited for until the lease runs out.
 */
static void
call(struct conn *c, struct http *h, struct auth *a, struct auth_out *out)
{
	struct pg_request q = { .merchant = a->merchant,
		.amount = a->amount,
		.currency = a->currency,
		.key = a->key };
	struct outcome o = { .a = a };
	struct breaker_call bc;
	struct pg_result res;
	const char *status;
	int rc;

	if (gw_permit(&bc, &res)) {
		pg_call(h, PG_AUTHORIZE, &q, &res);
		gw_record(&bc, &res);
	}
	if (res.outcome == PG_ERROR) {
		release(c->db, a);
		fail(out, res.exit_code, "GATEWAY_ERROR",
		    json_pack("{s:s, s:s, s:I}", "merchant_id", a->merchant,
		        "idempotency_key", a->key, "http_status",
		        (json_int_t)res.http_status),
		    "gateway authorization of key '%s': %s", a->key,
		    res.message);
		return;
	}
	if (res.outcome == PG_DECLINED)
		status = "AUTH_FAILED";
	else
		status = a->capture ? "CAPTURE_REQUESTED" : "AUTHORIZED";
	o.status = status;
	o.res = &res;
	if ((rc = conn_retry(c, a->lease_end, finish, &o)) != 0) {
		/* The claim stays PENDING: a retry of the key takes it over. */
		dbfail(out, c, rc, a, "record the authorization");
		return;
	}
	if (o.lost) {
		/* Taken over: show what the new holder records. */
		if (existing(c, h, a, out) == AGAIN)
			fail(out, EX_TEMPFAIL, "IN_PROGRESS", NULL,
			    "authorization of key '%s': the claim was taken "
			    "over and then released; retry",
			    a->key);
		return;
	}
	out->code = 0;
	out->declined = res.outcome == PG_DECLINED;
	out->line = auth_json(a, status, &res, false);
}

static bool
same_request(const struct auth *a, const struct payment *p)
{
	return a->amount == p->amount &&
	    strcmp(a->currency, p->currency) == 0 &&
	    a->capture == p->auto_capture;
}

static int
take_over(struct db *db, struct auth *a, const struct payment *p, bool *took)
{
	int rc;

	outbox_uuid(a->token);
	a->lease_end = clock_mono_ms() + auth_lease_us() / 1000;
	if ((rc = db_exec(db, takeover_sql, "isi", auth_lease_us(), a->token,
	         p->id)) != 0)
		return rc;
	*took = db_affected(db) == 1;
	a->payment_id = p->id;
	snprintf(a->created_at, sizeof(a->created_at), "%s", p->created_at);
	return 0;
}

/*
 * The key is held by a row: replay it, refuse a different request, wait
 * while it is PENDING, take it over when its lease is over.  AGAIN when
 * the row went away (a gateway error released it).
 */
static int
existing(struct conn *c, struct http *h, struct auth *a, struct auth_out *out)
{
	int64_t deadline = clock_mono_ms() + auth_lease_us() / 1000 + 5000;
	struct db *db = c->db;
	int64_t pause = 5;
	struct payment p;
	bool took;
	int rc;

	for (;;) {
		if ((rc = payment_by_key(db, a->merchant, a->key, &p)) != 0) {
			dbfail(out, c, rc, a, "read the payment");
			return 0;
		}
		if (p.id == 0)
			return AGAIN;
		if (!same_request(a, &p)) {
			fail(out, EX_DATAERR, "IDEMPOTENCY_CONFLICT",
			    json_pack("{s:I, s:s, s:s, s:I, s:s, s:b}",
			        "payment_id", (json_int_t)p.id, "merchant_id",
			        p.merchant, "idempotency_key", p.key, "amount",
			        (json_int_t)p.amount, "currency", p.currency,
			        "capture", p.auto_capture),
			    "idempotency key '%s': already used by payment "
			    "%lld for %lld %s%s",
			    a->key, (long long)p.id, (long long)p.amount,
			    p.currency,
			    p.auto_capture ? "" : " without capture");
			return 0;
		}
		if (strcmp(p.status, "PENDING") != 0) {
			out->code = 0;
			out->declined = strcmp(p.status, "AUTH_FAILED") == 0;
			out->line = payment_brief(&p, true);
			return 0;
		}
		if (p.lease_expired) {
			if ((rc = take_over(db, a, &p, &took)) != 0) {
				dbfail(out, c, rc, a, "take over the claim");
				return 0;
			}
			if (took) {
				call(c, h, a, out);
				return 0;
			}
			continue;
		}
		if (clock_mono_ms() > deadline) {
			fail(out, EX_TEMPFAIL, "IN_PROGRESS",
			    json_pack("{s:I}", "payment_id", (json_int_t)p.id),
			    "authorization of key '%s': still in progress in "
			    "another process",
			    a->key);
			return 0;
		}
		clock_sleep_ms(pause);
		pause = pause * 2 > 100 ? 100 : pause * 2;
	}
}

static void
limit(struct conn *c, struct http *h, const struct ratelimit *rl,
    struct auth *a, struct auth_out *out)
{
	long long granted, after;
	int rc;

	if ((rc = ratelimit_take(
	         c->db, rl, a->merchant, 1, &granted, &after)) != 0) {
		release(c->db, a);
		dbfail(out, c, rc, a, "rate limit");
		return;
	}
	if (granted == 1) {
		call(c, h, a, out);
		return;
	}
	release(c->db, a);
	fail(out, EX_TEMPFAIL, "RATE_LIMITED",
	    json_pack("{s:s, s:s, s:s, s:I, s:I}", "action", "authorize",
	        "merchant_id", a->merchant, "idempotency_key", a->key, "limit",
	        (json_int_t)rl->limit, "retry_after_seconds",
	        (json_int_t)after),
	    "authorize rate limit of merchant '%s': %lld per %s reached, "
	    "retry in %llds",
	    a->merchant, rl->limit, conf_str("rate_limit_window"), after);
}

void
auth_run(struct conn *c, struct http *h, const struct ratelimit *rl,
    struct auth *a, struct auth_out *out)
{
	int rc, tries;

	memset(out, 0, sizeof(*out));
	for (tries = 0; tries < 5; tries++) {
		if ((rc = claim(c->db, a)) == 0) {
			/* Only a new key counts against the limit. */
			if (rl->limit > 0)
				limit(c, h, rl, a, out);
			else
				call(c, h, a, out);
			return;
		}
		if (db_retryable(c->db))
			continue;
		if (db_errno(c->db) != DB_ER_DUP_ENTRY) {
			dbfail(out, c, rc, a, "claim");
			return;
		}
		if (existing(c, h, a, out) != AGAIN)
			return;
	}
	fail(out, EX_TEMPFAIL, "IN_PROGRESS", NULL,
	    "authorization of key '%s': the claim keeps changing hands; retry",
	    a->key);
}

static int
bad(const char *opt, const char *val, const char *want)
{
	return diag_usage("option '%s': '%s' is not %s", opt, val, want);
}

int
cmd_authorize(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "exit-status", no_argument, NULL, 'e' },
		{ "merchant", required_argument, NULL, 'm' },
		{ "amount", required_argument, NULL, 'a' },
		{ "currency", required_argument, NULL, 'c' },
		{ "idempotency-key", required_argument, NULL, 'k' },
		{ "no-capture", no_argument, NULL, 'N' },
		{ "concurrency", required_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	struct auth a = { .currency = "KRW", .capture = true };
	const char *amount = NULL, *currency = NULL;
	long long concurrency = 0;
	bool exit_status = false, no_capture = false;
	struct auth_out out;
	struct ratelimit rl;
	struct conn conn = { 0 };
	struct http *h;
	struct db *db;
	int c, rc;

	while (
	    (c = getopt_long(argc, argv, ":hem:a:c:k:C:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'e':
			exit_status = true;
			break;
		case 'm':
			a.merchant = optarg;
			break;
		case 'a':
			amount = optarg;
			break;
		case 'c':
			currency = optarg;
			break;
		case 'k':
			a.key = optarg;
			break;
		case 'N':
			no_capture = true;
			break;
		case 'C':
			if (conf_parse_int(optarg, 1, 4096, &concurrency) != 0)
				return bad("--concurrency", optarg,
				    "a number from 1 to 4096");
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc && strcmp(argv[optind], "-") == 0) {
		if (optind + 1 < argc)
			return diag_usage(
			    "unexpected argument '%s'", argv[optind + 1]);
		if (a.merchant || amount || currency || a.key || no_capture)
			return diag_usage("requests come from standard input "
			                  "with '-': no -m, -a, -c, -k or "
			                  "--no-capture");
		return auth_stream(
		    exit_status, concurrency ? concurrency : 128);
	}
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	if (concurrency != 0)
		return diag_usage("option '--concurrency' is for '-' only");
	if (a.merchant == NULL)
		return diag_usage("option '--merchant' is required");
	if (amount == NULL)
		return diag_usage("option '--amount' is required");
	if (a.key == NULL)
		return diag_usage("option '--idempotency-key' is required");
	if (!valid_id(a.merchant, VALID_MERCHANT_MAX))
		return bad("--merchant", a.merchant,
		    "1 to 32 printable characters without spaces");
	if (!valid_amount(amount, &a.amount))
		return bad(
		    "--amount", amount, "a whole number from 1 to 10^15");
	if (currency != NULL && !valid_currency(currency))
		return bad("--currency", currency, "an ISO 4217 currency code");
	if (!valid_id(a.key, VALID_KEY_MAX))
		return bad("--idempotency-key", a.key,
		    "1 to 64 printable characters without spaces");
	if (currency != NULL)
		a.currency = currency;
	a.capture = !no_capture;

	if ((rc = payctl_connect(&db)) != 0)
		return rc;
	if ((rc = gw_open(db)) != 0) {
		db_close(db);
		return rc;
	}
	ratelimit_conf("authorize", &rl);
	h = http_new();
	/* The breaker holds db too: a reconnect leaves it to gw_close(). */
	conn.db = conn.shared = db;
	auth_run(&conn, h, &rl, &a, &out);
	http_close(h);
	gw_close();
	if (conn.db != db)
		db_close(conn.db);
	db_close(db);
	if (out.code != 0)
		diag_warn("%s", out.msg);
	if (js_print(out.line) != 0 && out.code == 0)
		return EX_IOERR;
	if (out.code == 0 && out.declined && exit_status)
		return EX_MISMATCH;
	return out.code;
}
