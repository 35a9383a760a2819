/*
 * dbstat's ledger section.
 *
 * Two checks.  The books balance: per currency, total debits equal total
 * credits.  Every payment's net on the checked account (dbstat_ledger_account,
 * the one debited on capture) equals captured_amount - refunded_amount.
 * The second is answered without joining a million payments to their
 * entries: both sides are summed per currency and as a checksum weighted by
 * payment id (see BOOK_WEIGHT), the payments' side by the payments scan and
 * the ledger's from the running balances that ledger-apply keeps with the
 * entries (ledger_balance, migration 0010; payctl audit checks them against
 * the entries), each on its own connection.
 *
 * A payment whose PAYMENT_CAPTURED or PAYMENT_REFUNDED event is still in
 * the outbox, or was published after the cutoff (now less
 * dbstat_ledger_grace), is in flight: ledger-apply may not have booked it
 * yet, so both sides of it are taken out before comparing.  The set of
 * those payments only grows while the cutoff stays put, so when it is read
 * in the later of the two snapshots (the ledger's, begun after the
 * payments') it also holds every payment that changed between them, and the
 * rest look the same from both.  Only when the sums still differ does the
 * exact per-payment comparison run, in a snapshot of its own, to name the
 * payments that differ.
 */
#include "dbstat.h"
#include "diag.h"
#include "topics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MISMATCHES_SHOWN 10

#define SNAPSHOT "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"

/*
 * The statements are laid out by hand: clang-format cannot place string
 * literals joined with macros.
 */
/* clang-format off */
/* The running balances, summed over their shards. */
static const char q_ledger[] =
    "SELECT account, side, currency, SUM(entries), SUM(amount),"
    " MOD(SUM(checksum), 2147483647) FROM ledger_balance"
    " GROUP BY account, side, currency ORDER BY account, currency, side";

static const char q_cutoff[] = "SELECT NOW(6) - INTERVAL ? MICROSECOND";

/*
 * The payments in flight: an event the ledger books, not yet published or
 * published after the cutoff (one parameter).  A PUBLISHED row's
 * next_attempt_at is its published_at (migration 0009), a range of the
 * (status, next_attempt_at) index.
 */
#define INFLIGHT                                                               \
	"SELECT aggregate_id AS payment_id FROM outbox_event"                  \
	" WHERE status = 'PENDING'"                                            \
	" AND event_type IN ('" EV_CAPTURED "', '" EV_REFUNDED "')"           \
	" UNION SELECT aggregate_id FROM outbox_event"                         \
	" WHERE status = 'PUBLISHED' AND next_attempt_at >= ?"                 \
	" AND event_type IN ('" EV_CAPTURED "', '" EV_REFUNDED "')"

static const char q_inflight[] = "SELECT payment_id FROM (" INFLIGHT ") u";

/* The payments' side of the in-flight payments, ids given as JSON. */
static const char q_inflight_payments[] =
    "SELECT p.currency, SUM(p.captured_amount - p.refunded_amount), "
    BOOK_WEIGHT("p.payment_id", "p.captured_amount - p.refunded_amount")
    " FROM JSON_TABLE(?, '$[*]' COLUMNS (payment_id BIGINT PATH '$')) u"
    " JOIN payment p ON p.payment_id = u.payment_id GROUP BY p.currency";

/* The ledger's side of them: the same ids, so the same set. */
static const char q_inflight_ledger[] =
    "SELECT l.currency, l.side, SUM(l.amount), "
    BOOK_WEIGHT("l.payment_id", "l.amount")
    " FROM JSON_TABLE(?, '$[*]' COLUMNS (payment_id BIGINT PATH '$')) u"
    " JOIN ledger_entry l ON l.payment_id = u.payment_id AND l.account = ?"
    " GROUP BY l.currency, l.side";

/* The exact comparison, for when the sums differ: every payment's nets. */
static const char q_mismatches[] =
    "SELECT t.payment_id, t.currency, SUM(t.e), SUM(t.l) FROM ("
    " SELECT payment_id, currency, captured_amount - refunded_amount AS e,"
    " 0 AS l FROM payment WHERE captured_amount > 0"
    " UNION ALL SELECT payment_id, currency, 0,"
    " IF(side = 'DEBIT', amount, -amount) FROM ledger_entry"
    " WHERE account = ?) t"
    " LEFT JOIN (" INFLIGHT ") u ON u.payment_id = t.payment_id"
    " WHERE u.payment_id IS NULL"
    " GROUP BY t.payment_id, t.currency HAVING SUM(t.e) <> SUM(t.l)"
    " ORDER BY t.payment_id, t.currency";
/* clang-format on */

/* What the two jobs hand each other; each field is set once, under mu. */
struct books {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool ledger; /* the ledger job runs */
	int begun; /* payments' snapshot: 0 not yet, 1 begun, -1 failed */
	int ids_state; /* in-flight ids: 0 not yet, 1 posted, -1 none */
	char *ids; /* JSON array of payment ids */
	int pay_state; /* payments' side: 0 not yet, 1 final, -1 failed */
	struct side pay;
	int code; /* why the payments job failed */
	char err[512];
};

struct books *
books_new(bool ledger)
{
	struct books *b = xcalloc(1, sizeof(*b));

	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	b->ledger = ledger;
	return b;
}

void
books_free(struct books *b)
{
	if (b == NULL)
		return;
	pthread_mutex_destroy(&b->mu);
	pthread_cond_destroy(&b->cv);
	free(b->ids);
	free(b->pay.cur);
	free(b);
}

static void
post(struct books *b, int *field, int value)
{
	pthread_mutex_lock(&b->mu);
	*field = value;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

static int
wait_for(struct books *b, const int *field)
{
	int v;

	pthread_mutex_lock(&b->mu);
	while ((v = *field) == 0)
		pthread_cond_wait(&b->cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
	return v;
}

void
side_clear(struct side *s)
{
	if (s == NULL)
		return;
	free(s->cur);
	s->cur = NULL;
	s->n = 0;
	s->w = 0;
}

void
side_add(struct side *s, const char *currency, int64_t net, int64_t w)
{
	struct side_cur *c = NULL;
	size_t i;

	for (i = 0; i < s->n && c == NULL; i++)
		if (strcmp(s->cur[i].currency, currency) == 0)
			c = &s->cur[i];
	if (c == NULL) {
		s->cur = xrealloc(s->cur, (s->n + 1) * sizeof(*s->cur));
		c = &s->cur[s->n++];
		snprintf(c->currency, sizeof(c->currency), "%s", currency);
		c->net = 0;
	}
	c->net += net;
	s->w = (s->w + w % BOOK_Q + BOOK_Q) % BOOK_Q;
}

static int64_t
net_of(const struct side *s, const char *currency)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->cur[i].currency, currency) == 0)
			return s->cur[i].net;
	return 0;
}

static bool
sides_equal(const struct side *a, const struct side *b)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		if (a->cur[i].net != net_of(b, a->cur[i].currency))
			return false;
	for (i = 0; i < b->n; i++)
		if (b->cur[i].net != net_of(a, b->cur[i].currency))
			return false;
	return a->w == b->w;
}

int
sql_snapshot(struct db *db)
{
	int rc;

	if ((rc = db_run(db,
	         "SET SESSION TRANSACTION ISOLATION LEVEL "
	         "REPEATABLE READ")) != 0)
		return rc;
	return db_run(db, SNAPSHOT);
}

/* Take the in-flight payments, named by ids, out of the payments' side. */
static int
payments_in_flight(struct db *db, const char *ids, struct side *ps, bool *bad)
{
	int rc;

	if ((rc = db_query(db, q_inflight_payments, "s", ids)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1)
		side_add(ps, db_str(db, 0), -sql_num(db, 1, bad),
		    -sql_num(db, 2, bad));
	return rc < 0 ? -rc : 0;
}

void
books_payments(
    struct db *db, const struct opts *o, struct result *r, struct books *b)
{
	struct side ps = { NULL, 0, 0 };
	bool bad = false;
	int rc;

	if ((rc = sql_snapshot(db)) != 0) {
		result_fail(r, rc, "snapshot: %s", db_error(db));
		b->code = rc;
		snprintf(b->err, sizeof(b->err), "%s", r->err);
		post(b, &b->begun, -1);
		return;
	}
	post(b, &b->begun, 1);
	sql_payments(db, o, r, b->ledger ? &ps : NULL);
	if (!b->ledger) {
		db_commit(db);
		return;
	}
	rc = r->code;
	if (rc == 0 && wait_for(b, &b->ids_state) == 1 &&
	    (rc = payments_in_flight(db, b->ids, &ps, &bad)) != 0)
		snprintf(b->err, sizeof(b->err), "section 'ledger': %s",
		    db_error(db));
	else if (rc != 0)
		snprintf(b->err, sizeof(b->err), "%s", r->err);
	else if (bad) {
		rc = EX_SOFTWARE;
		snprintf(b->err, sizeof(b->err),
		    "section 'ledger': a sum is out of range");
	}
	db_commit(db);
	b->code = rc;
	b->pay = ps;
	post(b, &b->pay_state, rc == 0 ? 1 : -1);
}

/* The in-flight payments' ids as a JSON array, and how many. */
static int
in_flight_ids(struct db *db, const char *cutoff, char **out, int64_t *n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem;
	int rc;

	if ((rc = db_query(db, q_inflight, "s", cutoff)) != 0)
		return rc;
	if ((mem = open_memstream(&buf, &len)) == NULL)
		diag_die(EX_SOFTWARE, "out of memory");
	fputc('[', mem);
	for (*n = 0; (rc = db_next(db)) == 1; (*n)++)
		fprintf(mem, "%s%s", *n ? "," : "", db_str(db, 0));
	fputc(']', mem);
	fclose(mem);
	*out = buf;
	return rc < 0 ? -rc : 0;
}

/* Accounts and per-currency totals from the running balances. */
struct acct {
	char *account, *currency;
	int64_t debits, credits;
};

struct scan {
	struct acct *a;
	size_t n;
	int64_t entries;
	struct side ls; /* the ledger's side of the check */
};

static struct acct *
acct(struct scan *s, const char *account, const char *currency)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->a[i].account, account) == 0 &&
		    strcmp(s->a[i].currency, currency) == 0)
			return &s->a[i];
	s->a = xrealloc(s->a, (s->n + 1) * sizeof(*s->a));
	memset(&s->a[s->n], 0, sizeof(s->a[s->n]));
	s->a[s->n].account = xstrdup(account);
	s->a[s->n].currency = xstrdup(currency);
	return &s->a[s->n++];
}

static void
scan_free(struct scan *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		free(s->a[i].account);
		free(s->a[i].currency);
	}
	free(s->a);
	free(s->ls.cur);
}

/* Debits count up on the ledger's side, credits down. */
static void
ledger_side(struct side *ls, const char *currency, const char *side,
    int64_t sum, int64_t w, int sign)
{
	if (strcmp(side, "DEBIT") != 0)
		sign = -sign;
	side_add(ls, currency, sign * sum, sign * w);
}

static int
scan_ledger(struct db *db, const struct opts *o, struct scan *s, bool *bad)
{
	struct acct *a;
	int64_t sum, w;
	int rc;

	if ((rc = db_query(db, q_ledger, "")) != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		a = acct(s, db_str(db, 0), db_str(db, 2));
		sum = sql_num(db, 4, bad);
		w = sql_num(db, 5, bad);
		s->entries += sql_num(db, 3, bad);
		if (strcmp(db_str(db, 1), "DEBIT") == 0)
			a->debits += sum;
		else
			a->credits += sum;
		if (strcmp(db_str(db, 0), o->ledger_account) == 0)
			ledger_side(
			    &s->ls, db_str(db, 2), db_str(db, 1), sum, w, 1);
	}
	return rc < 0 ? -rc : 0;
}

static int
ledger_in_flight(struct db *db, const struct opts *o, const char *ids,
    struct side *ls, bool *bad)
{
	int rc;

	if ((rc = db_query(
	         db, q_inflight_ledger, "ss", ids, o->ledger_account)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1)
		ledger_side(ls, db_str(db, 0), db_str(db, 1),
		    sql_num(db, 2, bad), sql_num(db, 3, bad), -1);
	return rc < 0 ? -rc : 0;
}

static int
cutoff_of(struct db *db, const struct opts *o, char *out, size_t len)
{
	int rc;

	if ((rc = db_query(db, q_cutoff, "i", (int64_t)o->grace_ms * 1000)) !=
	    0)
		return rc;
	if ((rc = db_next(db)) != 1)
		return rc < 0 ? -rc : EX_SOFTWARE;
	snprintf(out, len, "%s", db_str(db, 0));
	db_next(db);
	return 0;
}

/* The payments that differ, in a snapshot of their own. */
static int
mismatches(struct db *db, const struct opts *o, json_t *list, int64_t *count,
    bool *bad)
{
	char cutoff[40];
	int rc;

	if ((rc = sql_snapshot(db)) != 0 ||
	    (rc = cutoff_of(db, o, cutoff, sizeof(cutoff))) != 0 ||
	    (rc = db_query(
	         db, q_mismatches, "ss", o->ledger_account, cutoff)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		if ((*count)++ >= MISMATCHES_SHOWN)
			continue;
		json_array_append_new(list,
		    json_pack("{s:I, s:s, s:I, s:I}", "payment_id",
		        (json_int_t)sql_num(db, 0, bad), "currency",
		        db_str(db, 1), "expected_net",
		        (json_int_t)sql_num(db, 2, bad), "ledger_net",
		        (json_int_t)sql_num(db, 3, bad)));
	}
	db_commit(db);
	return rc < 0 ? -rc : 0;
}

static json_t *
accounts_json(const struct scan *s)
{
	json_t *arr = json_array();
	size_t i;

	for (i = 0; i < s->n; i++)
		json_array_append_new(arr,
		    json_pack("{s:s, s:s, s:I, s:I, s:I}", "account",
		        s->a[i].account, "currency", s->a[i].currency, "debits",
		        (json_int_t)s->a[i].debits, "credits",
		        (json_int_t)s->a[i].credits, "balance",
		        (json_int_t)(s->a[i].debits - s->a[i].credits)));
	return arr;
}

/* Per currency, debits and credits over every account. */
static json_t *
totals_json(const struct scan *s, bool *balanced)
{
	struct side d = { NULL, 0, 0 }, c = { NULL, 0, 0 };
	json_t *arr = json_array();
	int64_t dn, cn;
	size_t i;

	for (i = 0; i < s->n; i++) {
		side_add(&d, s->a[i].currency, s->a[i].debits, 0);
		side_add(&c, s->a[i].currency, s->a[i].credits, 0);
	}
	*balanced = true;
	for (i = 0; i < d.n; i++) {
		dn = d.cur[i].net;
		cn = net_of(&c, d.cur[i].currency);
		json_array_append_new(arr,
		    json_pack("{s:s, s:I, s:I, s:b}", "currency",
		        d.cur[i].currency, "debits", (json_int_t)dn, "credits",
		        (json_int_t)cn, "balanced", dn == cn));
		if (dn != cn)
			*balanced = false;
	}
	free(d.cur);
	free(c.cur);
	return arr;
}

void
books_abort(struct books *b)
{
	pthread_mutex_lock(&b->mu);
	if (b->ids_state == 0) {
		b->ids_state = -1;
		pthread_cond_broadcast(&b->cv);
	}
	pthread_mutex_unlock(&b->mu);
}

static void
fail_ledger(struct result *r, struct books *b, int rc, const char *msg)
{
	result_fail(r, rc, "section 'ledger': %s", msg);
	books_abort(b);
}

void
books_ledger(
    struct db *db, const struct opts *o, struct result *r, struct books *b)
{
	struct scan s = { NULL, 0, 0, { NULL, 0, 0 } };
	json_t *list = json_array(), *totals;
	int64_t flying = 0, nbad = 0;
	bool bad = false, balanced, match;
	char cutoff[40], *ids = NULL;
	int rc;

	/* Begin after the payments' snapshot, so that this one is later. */
	if (wait_for(b, &b->begun) < 0) {
		result_fail(r, b->code, "%s", b->err);
		json_decref(list);
		return;
	}
	if ((rc = sql_snapshot(db)) != 0 ||
	    (rc = cutoff_of(db, o, cutoff, sizeof(cutoff))) != 0 ||
	    (rc = in_flight_ids(db, cutoff, &ids, &flying)) != 0) {
		free(ids);
		goto fail;
	}
	pthread_mutex_lock(&b->mu);
	b->ids = ids;
	b->ids_state = 1;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	if ((rc = scan_ledger(db, o, &s, &bad)) != 0 ||
	    (rc = ledger_in_flight(db, o, ids, &s.ls, &bad)) != 0)
		goto fail;
	db_commit(db);
	if (wait_for(b, &b->pay_state) < 0) {
		scan_free(&s);
		json_decref(list);
		result_fail(r, b->code, "%s", b->err);
		return;
	}
	match = sides_equal(&b->pay, &s.ls);
	if (!match && (rc = mismatches(db, o, list, &nbad, &bad)) != 0)
		goto fail;
	/* The exact comparison has the last word on which payments differ. */
	match = match || nbad == 0;
	totals = totals_json(&s, &balanced);
	r->json = json_pack("{s:I, s:b, s:o, s:o, s:s, s:b, s:I, s:f, s:I, "
	                    "s:o}",
	    "entries", (json_int_t)s.entries, "balanced", balanced, "totals",
	    totals, "accounts", accounts_json(&s), "account_checked",
	    o->ledger_account, "payments_match", match, "in_flight_payments",
	    (json_int_t)flying, "grace_s", o->grace_ms / 1000.0,
	    "mismatched_payments", (json_int_t)nbad, "mismatches", list);
	result_check(r, CHK_LEDGER_BALANCE, balanced);
	result_check(r, CHK_LEDGER_PAYMENTS, match);
	scan_free(&s);
	if (bad)
		result_fail(
		    r, EX_SOFTWARE, "section 'ledger': a sum is out of range");
	return;
fail:
	scan_free(&s);
	json_decref(list);
	fail_ledger(r, b, rc, db_error(db));
}
