/*
 * dbstat's database sections but the ledger: payments, outbox, settlement
 * and refund requests, breakers, and the database probe.  Every statement
 * is an aggregate that an index answers (lib/migrations/0005 adds the
 * covering ones), a range over rows that are few by nature (pending and
 * dead outbox rows, the last minute of publishing, the last breaker
 * window), or a count its writer keeps (outbox_count).
 */
#include "dbstat.h"
#include "diag.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The breakers' default sliding window, for the rates shown here. */
#define BREAKER_WINDOW_S 10

/*
 * The statements are laid out by hand: clang-format cannot place string
 * literals joined with macros.
 */
/* clang-format off */
/* Each scan twice: with SQL_FSUM first, SQL_SUM when a sum is too big. */
#define Q_PAYMENTS(sum, more)                                                  \
	"SELECT status, currency, COUNT(*), " sum("amount") ", "               \
	sum("captured_amount") ", " sum("refunded_amount") more                \
	" FROM payment GROUP BY status, currency"
static const char q_payments_f[] = Q_PAYMENTS(SQL_FSUM, "");
static const char q_payments_x[] = Q_PAYMENTS(SQL_SUM, "");
/* The same, with the payments' side of the ledger checksum (ledger.c). */
static const char q_payments_sum_f[] = Q_PAYMENTS(SQL_FSUM, ", "
    SQL_FSUM(BOOK_FTERM("payment_id", "captured_amount - refunded_amount")));
static const char q_payments_sum_x[] = Q_PAYMENTS(SQL_SUM,
    ", " BOOK_WEIGHT("payment_id", "captured_amount - refunded_amount"));
static const char q_recent[] =
    "SELECT payment_id, merchant_id, amount, currency, status,"
    " captured_amount, refunded_amount, " SQL_TIME("created_at")
    " FROM payment ORDER BY payment_id DESC LIMIT ?";

/*
 * Published rows are most of the outbox and the only status not few by
 * nature: outbox-relay counts them in outbox_count (migration 0011) as it
 * marks and purges them, and the shards are summed here, in the snapshot
 * that counts the pending and dead rows.
 */
static const char q_outbox_published[] =
    "SELECT COALESCE(SUM(published), 0) FROM outbox_count";
static const char q_outbox[] =
    "SELECT status, COUNT(*) FROM outbox_event"
    " WHERE status IN ('PENDING', 'DEAD') GROUP BY status";
static const char q_outbox_types[] =
    "SELECT event_type, status, COUNT(*) FROM outbox_event"
    " WHERE status IN ('PENDING', 'DEAD') GROUP BY event_type, status"
    " ORDER BY event_type, status";
/*
 * The first pending row written: the lowest event_id, found in the status
 * index without reading the rows of a backlog.
 */
static const char q_outbox_oldest[] =
    "SELECT TIMESTAMPDIFF(MICROSECOND, created_at, NOW(6)), attempts"
    " FROM outbox_event WHERE event_id ="
    " (SELECT MIN(event_id) FROM outbox_event WHERE status = 'PENDING')";
/* A PUBLISHED row's next_attempt_at is its published_at (0009). */
static const char q_outbox_minute[] =
    "SELECT COUNT(*) FROM outbox_event WHERE status = 'PUBLISHED'"
    " AND next_attempt_at >= NOW(6) - INTERVAL 60 SECOND";

#define Q_REQUESTS(table, sum)                                                 \
	"SELECT status, currency, retry_count, pg_response_code, COUNT(*), "   \
	sum("amount") " FROM " table                                           \
	" GROUP BY status, currency, retry_count, pg_response_code"
#define Q_OPEN(table)                                                          \
	"SELECT TIMESTAMPDIFF(MICROSECOND, MIN(requested_at), NOW(6))"         \
	" FROM " table " WHERE status IN ('PENDING', 'FAILED')"
static const char q_settlements_f[] =
    Q_REQUESTS("settlement_request", SQL_FSUM);
static const char q_settlements_x[] =
    Q_REQUESTS("settlement_request", SQL_SUM);
static const char q_settlement_open[] = Q_OPEN("settlement_request");
static const char q_refunds_f[] = Q_REQUESTS("refund_request", SQL_FSUM);
static const char q_refunds_x[] = Q_REQUESTS("refund_request", SQL_SUM);
static const char q_refund_open[] = Q_OPEN("refund_request");

static const char q_breakers[] =
    "SELECT s.name, s.state, s.open_count, s.not_permitted, "
    SQL_TIME("s.opened_at") ", " SQL_TIME("s.open_until") ","
    " COALESCE(SUM(b.successes), 0), COALESCE(SUM(b.failures), 0),"
    " COALESCE(SUM(b.slow), 0) FROM breaker_state s"
    " LEFT JOIN breaker_bucket b ON b.name = s.name"
    " AND b.bucket > NOW() - INTERVAL ? SECOND"
    " GROUP BY s.name, s.state, s.open_count, s.not_permitted,"
    " s.opened_at, s.open_until ORDER BY s.name";

static const char q_version[] = "SELECT VERSION()";
/* clang-format on */

void
sql_payments(
    struct db *db, const struct opts *o, struct result *r, struct side *ps)
{
	json_t *by = json_array(), *recent = json_array();
	int64_t count, n, v[4];
	bool bad = false, big = true;
	unsigned c, ncol = ps ? 4 : 3;
	int rc, pass;

	for (pass = 0; pass < 2 && big; pass++) {
		count = 0;
		big = false;
		json_array_clear(by);
		side_clear(ps);
		if (ps != NULL)
			rc = db_query(
			    db, pass ? q_payments_sum_x : q_payments_sum_f, "");
		else
			rc = db_query(
			    db, pass ? q_payments_x : q_payments_f, "");
		if (rc != 0)
			goto fail;
		while ((rc = db_next(db)) == 1) {
			n = sql_num(db, 2, &bad);
			count += n;
			for (c = 0; c < ncol; c++) {
				v[c] = sql_num(db, 3 + c, &bad);
				big = big || !SQL_FSUM_OK(v[c]);
			}
			if (ps != NULL)
				side_add(ps, db_str(db, 1), v[1] - v[2], v[3]);
			json_array_append_new(by,
			    json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}",
			        "status", db_str(db, 0), "currency",
			        db_str(db, 1), "count", (json_int_t)n, "amount",
			        (json_int_t)v[0], "captured_amount",
			        (json_int_t)v[1], "refunded_amount",
			        (json_int_t)v[2]));
		}
		if (rc < 0)
			goto fail_next;
	}
	if (o->recent > 0) {
		if ((rc = db_query(db, q_recent, "i", (int64_t)o->recent)) != 0)
			goto fail;
		while ((rc = db_next(db)) == 1)
			json_array_append_new(recent,
			    json_pack(
			        "{s:I, s:s, s:I, s:s, s:s, s:I, s:I, s:s}",
			        "payment_id", (json_int_t)sql_num(db, 0, &bad),
			        "merchant_id", db_str(db, 1), "amount",
			        (json_int_t)sql_num(db, 2, &bad), "currency",
			        db_str(db, 3), "status", db_str(db, 4),
			        "captured_amount",
			        (json_int_t)sql_num(db, 5, &bad),
			        "refunded_amount",
			        (json_int_t)sql_num(db, 6, &bad), "created_at",
			        db_str(db, 7)));
		if (rc < 0)
			goto fail_next;
	}
	if (bad) {
		json_decref(by);
		json_decref(recent);
		result_fail(r, EX_SOFTWARE,
		    "section 'payments': a sum is out of range");
		return;
	}
	r->json = json_pack("{s:I, s:o, s:o}", "count", (json_int_t)count,
	    "by_status", by, "recent", recent);
	return;
fail_next:
	rc = -rc;
fail:
	json_decref(by);
	json_decref(recent);
	result_fail(r, rc, "section 'payments': %s", db_error(db));
}

/* Seconds from a TIMESTAMPDIFF in microseconds, or null. */
static json_t *
age(struct db *db, unsigned col, bool *bad)
{
	if (db_null(db, col))
		return json_null();
	return json_real(sql_num(db, col, bad) / 1000 / 1000.0);
}

void
sql_outbox(struct db *db, const struct opts *o, struct result *r)
{
	int64_t pending = 0, published = 0, dead = 0, total, minute = 0;
	json_t *types = json_array(), *oldest = json_null(), *t = NULL;
	const char *prev = NULL;
	long long attempts = 0;
	bool bad = false;
	int rc;

	if ((rc = sql_snapshot(db)) != 0 ||
	    (rc = db_query(db, q_outbox_published, "")) != 0)
		goto fail;
	if ((rc = db_next(db)) == 1) {
		published = sql_num(db, 0, &bad);
		db_next(db);
	} else if (rc < 0)
		goto fail_next;
	if ((rc = db_query(db, q_outbox, "")) != 0)
		goto fail;
	while ((rc = db_next(db)) == 1) {
		if (strcmp(db_str(db, 0), "DEAD") == 0)
			dead = sql_num(db, 1, &bad);
		else
			pending = sql_num(db, 1, &bad);
	}
	if (rc < 0)
		goto fail_next;
	/* The status check constraint allows no fourth status. */
	total = published + pending + dead;
	if ((rc = db_query(db, q_outbox_types, "")) != 0)
		goto fail;
	while ((rc = db_next(db)) == 1) {
		if (prev == NULL || t == NULL ||
		    strcmp(prev, db_str(db, 0)) != 0) {
			t = json_pack("{s:s, s:i, s:i}", "event_type",
			    db_str(db, 0), "pending", 0, "dead", 0);
			json_array_append_new(types, t);
			prev =
			    json_string_value(json_object_get(t, "event_type"));
		}
		json_object_set_new(t,
		    strcmp(db_str(db, 1), "DEAD") == 0 ? "dead" : "pending",
		    json_integer(sql_num(db, 2, &bad)));
	}
	if (rc < 0)
		goto fail_next;
	if ((rc = db_query(db, q_outbox_oldest, "")) != 0)
		goto fail;
	if ((rc = db_next(db)) == 1) {
		json_decref(oldest);
		oldest = age(db, 0, &bad);
		attempts = sql_num(db, 1, &bad);
		db_next(db);
	} else if (rc < 0)
		goto fail_next;
	if ((rc = db_query(db, q_outbox_minute, "")) != 0)
		goto fail;
	if ((rc = db_next(db)) == 1) {
		minute = sql_num(db, 0, &bad);
		db_next(db);
	} else if (rc < 0)
		goto fail_next;
	db_commit(db);
	r->json = json_pack("{s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:f, s:o}",
	    "pending", (json_int_t)pending, "published", (json_int_t)published,
	    "dead", (json_int_t)dead, "total", (json_int_t)total,
	    "oldest_pending_age_s", oldest, "oldest_pending_attempts",
	    (json_int_t)attempts, "published_last_minute", (json_int_t)minute,
	    "published_per_second", minute / 60.0, "by_event_type", types);
	if (o->max_outbox_age_ms > 0) {
		json_object_set_new(r->json, "max_age_s",
		    json_real(o->max_outbox_age_ms / 1000.0));
		result_check(r, CHK_OUTBOX_AGE,
		    !json_is_real(oldest) ||
		        json_real_value(oldest) * 1000 <= o->max_outbox_age_ms);
	} else
		json_object_set_new(r->json, "max_age_s", json_null());
	if (bad)
		result_fail(r, EX_SOFTWARE,
		    "section 'outbox': a count is out of range");
	return;
fail_next:
	rc = -rc;
fail:
	json_decref(types);
	json_decref(oldest);
	result_fail(r, rc, "section 'outbox': %s", db_error(db));
}

static json_t *
ratio(int64_t part, int64_t whole)
{
	return whole > 0 ? json_real((double)part / (double)whole)
	                 : json_null();
}

/* Find or add the array element whose key is val. */
static json_t *
entry(json_t *arr, const char *key, json_t *val)
{
	size_t i;
	json_t *e;

	json_array_foreach(arr, i, e)
	{
		if (json_equal(json_object_get(e, key), val)) {
			json_decref(val);
			return e;
		}
	}
	e = json_object();
	json_object_set_new(e, key, val);
	json_array_append_new(arr, e);
	return e;
}

static void
bump(json_t *o, const char *key, int64_t by)
{
	json_t *v = json_object_get(o, key);

	json_object_set_new(
	    o, key, json_integer((v ? json_integer_value(v) : 0) + by));
}

static int
by_retry(const void *a, const void *b)
{
	json_int_t x = json_integer_value(
	    json_object_get(*(json_t *const *)a, "retry_count"));
	json_int_t y = json_integer_value(
	    json_object_get(*(json_t *const *)b, "retry_count"));

	return (x > y) - (x < y);
}

static int
by_count(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t cx = json_integer_value(json_object_get(x, "count"));
	json_int_t cy = json_integer_value(json_object_get(y, "count"));

	if (cx != cy)
		return (cx < cy) - (cx > cy);
	return strcmp(json_string_value(json_object_get(x, "code")),
	    json_string_value(json_object_get(y, "code")));
}

/* Sort a JSON array in place. */
static void
sort(json_t *arr, int (*cmp)(const void *, const void *))
{
	size_t n = json_array_size(arr), i;
	json_t **v = xcalloc(n ? n : 1, sizeof(*v));

	for (i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(arr, i));
	qsort(v, n, sizeof(*v), cmp);
	json_array_clear(arr);
	for (i = 0; i < n; i++)
		json_array_append_new(arr, v[i]);
	free(v);
}

/* The figures of requests(), reset for each pass. */
struct reqs {
	int64_t st[4], total;
	json_t *amounts, *retries, *errors;
};

/* One pass of requests(): 0, or an exit code (negated for db_next's). */
static int
requests_scan(
    struct db *db, const char *q, struct reqs *t, bool *big, bool *bad)
{
	static const char *const names[] = { "PENDING", "SUCCESS", "FAILED",
		"DEAD" };
	const char *s, *code;
	int64_t n, sum;
	json_t *e;
	size_t i;
	int rc;

	memset(t->st, 0, sizeof(t->st));
	t->total = 0;
	json_array_clear(t->amounts);
	json_array_clear(t->retries);
	json_array_clear(t->errors);
	*big = false;
	if ((rc = db_query(db, q, "")) != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		s = db_str(db, 0);
		n = sql_num(db, 4, bad);
		sum = sql_num(db, 5, bad);
		*big = *big || !SQL_FSUM_OK(sum);
		t->total += n;
		for (i = 0; i < 4 && strcmp(s, names[i]) != 0; i++)
			;
		if (i < 4)
			t->st[i] += n;
		e = entry(t->retries, "retry_count",
		    json_integer(sql_num(db, 2, bad)));
		bump(e, "count", n);
		if (i == 1) {
			e = entry(
			    t->amounts, "currency", json_string(db_str(db, 1)));
			bump(e, "count", n);
			bump(e, "amount", sum);
		} else if (i == 2 || i == 3) {
			code = db_str(db, 3);
			e = entry(t->errors, "code",
			    json_string(code && *code ? code : "unknown"));
			bump(e, "count", n);
		}
	}
	return rc < 0 ? rc : 0;
}

/* settlement_request or refund_request: the same columns, the same view. */
static void
requests(struct db *db, const char *name, const char *q_fast,
    const char *q_exact, const char *q_open, struct result *r)
{
	struct reqs t = { .amounts = json_array(),
		.retries = json_array(),
		.errors = json_array() };
	json_t *open = json_null();
	bool bad = false, big;
	int rc;

	if ((rc = requests_scan(db, q_fast, &t, &big, &bad)) == 0 && big)
		rc = requests_scan(db, q_exact, &t, &big, &bad);
	if (rc > 0)
		goto fail;
	if (rc < 0)
		goto fail_next;
	if ((rc = db_query(db, q_open, "")) != 0)
		goto fail;
	if ((rc = db_next(db)) == 1) {
		json_decref(open);
		open = age(db, 0, &bad);
		db_next(db);
	} else if (rc < 0)
		goto fail_next;
	sort(t.retries, by_retry);
	sort(t.errors, by_count);
	r->json = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, "
	                    "s:o, s:o, s:o}",
	    "total", (json_int_t)t.total, "pending", (json_int_t)t.st[0],
	    "success", (json_int_t)t.st[1], "failed", (json_int_t)t.st[2],
	    "dead", (json_int_t)t.st[3], "failures",
	    (json_int_t)(t.st[2] + t.st[3]), "completion_rate",
	    ratio(t.st[1], t.total), "failure_rate",
	    ratio(t.st[2] + t.st[3], t.total), "completed_amount", t.amounts,
	    "retry_counts", t.retries, "errors_by_code", t.errors,
	    "oldest_open_age_s", open);
	if (bad)
		result_fail(r, EX_SOFTWARE,
		    "section '%s': a sum is out of range", name);
	return;
fail_next:
	rc = -rc;
fail:
	json_decref(t.amounts);
	json_decref(t.retries);
	json_decref(t.errors);
	json_decref(open);
	result_fail(r, rc, "section '%s': %s", name, db_error(db));
}

static void
breakers(struct db *db, struct result *r)
{
	int64_t ok, failed, slow;
	bool bad = false;
	json_t *b;
	int rc;

	if ((rc = db_query(db, q_breakers, "i", (int64_t)BREAKER_WINDOW_S)) !=
	    0) {
		result_fail(r, rc, "section 'breakers': %s", db_error(db));
		return;
	}
	r->json = json_object();
	while ((rc = db_next(db)) == 1) {
		ok = sql_num(db, 6, &bad);
		failed = sql_num(db, 7, &bad);
		slow = sql_num(db, 8, &bad);
		b = json_pack("{s:s, s:i, s:I, s:I, s:I, s:I, s:o, s:o, s:I, "
		              "s:I, s:o, s:o}",
		    "state", db_str(db, 1), "window_s", BREAKER_WINDOW_S,
		    "calls", (json_int_t)(ok + failed), "successes",
		    (json_int_t)ok, "failures", (json_int_t)failed, "slow",
		    (json_int_t)slow, "failure_rate",
		    ratio(failed, ok + failed), "slow_call_rate",
		    ratio(slow, ok + failed), "not_permitted",
		    (json_int_t)sql_num(db, 3, &bad), "open_count",
		    (json_int_t)sql_num(db, 2, &bad), "opened_at",
		    sql_strornull(db, 4), "open_until", sql_strornull(db, 5));
		json_object_set_new(r->json, db_str(db, 0), b);
	}
	if (rc < 0)
		result_fail(r, -rc, "section 'breakers': %s", db_error(db));
	else if (bad)
		result_fail(r, EX_SOFTWARE,
		    "section 'breakers': a count is out of range");
}

void
sql_requests(struct db *db, const struct opts *o, struct result *settlement,
    struct result *refund, struct result *brk)
{
	if (o->want[SEC_SETTLEMENT])
		requests(db, "settlement", q_settlements_f, q_settlements_x,
		    q_settlement_open, settlement);
	if (o->want[SEC_REFUND])
		requests(db, "refund", q_refunds_f, q_refunds_x, q_refund_open,
		    refund);
	if (o->want[SEC_BREAKERS])
		breakers(db, brk);
}

json_t *
sql_health(struct db *db, double connect_ms)
{
	double t0 = dbstat_now_ms(), rtt;
	json_t *h;
	int rc;

	if ((rc = db_query(db, q_version, "")) != 0 || (rc = -db_next(db)) > 0)
		return json_pack("{s:b, s:s}", "up", 0, "error", db_error(db));
	rtt = dbstat_now_ms() - t0;
	h = json_pack("{s:b, s:o, s:o, s:s?}", "up", 1, "connect_ms",
	    sql_ms(connect_ms), "rtt_ms", sql_ms(rtt), "version",
	    db_str(db, 0));
	db_next(db);
	return h;
}

int64_t
sql_num(struct db *db, unsigned col, bool *bad)
{
	const char *s = db_str(db, col);
	char *end;
	long long v;

	if (s == NULL)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	/* Sums are DECIMAL: an integral one may still read "12.0000". */
	if (errno != 0 || end == s ||
	    (*end != '\0' && strspn(end, ".0") != strlen(end)))
		*bad = true;
	return v;
}

json_t *
sql_strornull(struct db *db, unsigned col)
{
	const char *s = db_str(db, col);

	return s ? json_string(s) : json_null();
}

json_t *
sql_ms(double ms)
{
	return json_real(round(ms * 1000.0) / 1000.0);
}
