/*
 * payctl recount: make the running counts again from the rows they count.
 *
 * Two counts are kept by their writers in the transactions that change
 * the rows, so that dbstat reads a few rows instead of whole tables:
 * outbox_count (outbox-relay: how many outbox rows are PUBLISHED,
 * migration 0011) and ledger_balance (ledger-apply: count, sum and
 * checksum of the entries per account, side and currency, migration
 * 0010).  payctl audit reports a count that is not what its rows say
 * (outbox_published_count, ledger_running_balance); this command puts it
 * right, with the relays and ledger-apply running.
 *
 * Writers change their rows and their count in one transaction, so what
 * a count is off by is the same in every snapshot until something else
 * changes the rows.  recount reads the rows and the count in one
 * consistent snapshot, without locks, and adds the difference to the
 * count (in shard 0) as a writer would: the writers never wait for it
 * beyond one row update, and the count is right whatever they committed
 * in between.  Two recounts take turns (a named lock), so that no
 * difference is added twice.  A deadlock, a lock wait or a lost connection
 * makes it try again; -w bounds both waits (a minute by default).
 */
#include "clock.h"
#include "diag.h"
#include "js.h"
#include "payctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] = "usage: payctl recount [-hn] [-w seconds]\n";

/* The modulus of ledger_balance.checksum (migration 0010). */
#define CHECKSUM_MOD "2147483647"

/* clang-format off */
static const char take_turn[] = "SELECT GET_LOCK('paykit.recount', ?)";
static const char end_turn[] = "SELECT RELEASE_ALL_LOCKS()";

static const char outbox_rows[] =
    "SELECT COUNT(*) FROM outbox_event WHERE status = 'PUBLISHED'";
static const char outbox_kept[] =
    "SELECT COALESCE(SUM(published), 0) FROM outbox_count";
static const char outbox_add[] =
    "INSERT INTO outbox_count (shard, published) VALUES (0, ?)"
    " ON DUPLICATE KEY UPDATE published = published + VALUES(published)";

static const char ledger_rows[] =
    "SELECT account, side, currency, COUNT(*), SUM(amount),"
    " MOD(SUM((payment_id % " CHECKSUM_MOD ") * (amount % " CHECKSUM_MOD
    ")), " CHECKSUM_MOD ") FROM ledger_entry"
    " GROUP BY account, side, currency";
static const char ledger_kept[] =
    "SELECT account, side, currency, SUM(entries), SUM(amount),"
    " MOD(SUM(checksum), " CHECKSUM_MOD ") FROM ledger_balance"
    " GROUP BY account, side, currency";
static const char ledger_add[] =
    "INSERT INTO ledger_balance"
    " (account, side, currency, shard, entries, amount, checksum)"
    " VALUES (?, ?, ?, 0, ?, ?, ?)"
    " ON DUPLICATE KEY UPDATE entries = entries + VALUES(entries),"
    " amount = amount + VALUES(amount),"
    " checksum = (checksum + VALUES(checksum)) % " CHECKSUM_MOD;
/* clang-format on */

/* One account, side and currency: what its entries say, what is kept. */
struct bal {
	char account[65], side[7], cur[4];
	int64_t n, amount, sum; /* from the entries */
	int64_t kn, kamount, ksum; /* kept */
};

struct recount {
	bool dry; /* write nothing */
	long long wait; /* seconds to wait for a turn and through refusals */
	int64_t published, kept;
	struct bal *v;
	size_t nv, cap;
	char what[64]; /* what failed, for the message */
};

static int
fail(struct db *db, struct recount *r, int rc, const char *what)
{
	snprintf(r->what, sizeof(r->what), "%s", what);
	db_rollback(db);
	return rc;
}

static int
one_int(struct db *db, const char *sql, const char *types, int64_t arg,
    int64_t *out)
{
	int rc;

	if ((rc = db_query(db, sql, types, arg)) != 0)
		return rc;
	if ((rc = db_next(db)) != 1)
		return rc < 0 ? -rc : EX_SOFTWARE;
	*out = db_null(db, 0) ? -1 : db_int(db, 0);
	while ((rc = db_next(db)) == 1)
		;
	return -rc;
}

/* Wait for another recount to finish: 0, or an exit code. */
static int
turn(struct db *db, struct recount *r)
{
	char what[64];
	int64_t got;
	int rc;

	if ((rc = one_int(db, take_turn, "i", r->wait, &got)) != 0)
		return fail(db, r, rc, "wait for another payctl recount");
	if (got != 1) {
		snprintf(what, sizeof(what),
		    "wait for another payctl recount for %llds", r->wait);
		return fail(db, r, EX_TEMPFAIL, what);
	}
	return 0;
}

/* Let the next recount go: 0, or an exit code. */
static int
end(struct db *db, struct recount *r, int rc)
{
	int64_t n;
	int e;

	if ((e = one_int(db, end_turn, "", 0, &n)) != 0 && rc == 0)
		return fail(db, r, e, "let another payctl recount go");
	return rc;
}

/* A transaction whose reads are one consistent snapshot. */
static int
snapshot(struct db *db)
{
	return db_run(db, "START TRANSACTION WITH CONSISTENT SNAPSHOT");
}

static int
outbox(struct db *db, void *arg)
{
	struct recount *r = arg;
	int rc;

	if ((rc = turn(db, r)) != 0)
		return rc;
	if ((rc = snapshot(db)) != 0)
		return end(db, r, fail(db, r, rc, "begin"));
	if ((rc = one_int(db, outbox_rows, "", 0, &r->published)) != 0)
		return end(
		    db, r, fail(db, r, rc, "count the published outbox rows"));
	if ((rc = one_int(db, outbox_kept, "", 0, &r->kept)) != 0)
		return end(db, r, fail(db, r, rc, "read outbox_count"));
	if ((rc = db_rollback(db)) != 0)
		return end(db, r, fail(db, r, rc, "end the snapshot"));
	if (!r->dry && r->published != r->kept &&
	    (rc = db_exec(db, outbox_add, "i", r->published - r->kept)) != 0)
		return end(db, r, fail(db, r, rc, "write outbox_count"));
	return end(db, r, 0);
}

static int
cmp_bal(
    const struct bal *b, const char *account, const char *side, const char *cur)
{
	int c = strcmp(b->account, account);

	if (c == 0)
		c = strcmp(b->side, side);
	return c != 0 ? c : strcmp(b->cur, cur);
}

/* The entry of account, side and currency, added if missing. */
static struct bal *
bal_get(
    struct recount *r, const char *account, const char *side, const char *cur)
{
	struct bal *b;
	size_t i;

	for (i = 0; i < r->nv; i++)
		if (cmp_bal(&r->v[i], account, side, cur) == 0)
			return &r->v[i];
	if (r->nv == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 16;
		r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
	}
	b = &r->v[r->nv++];
	memset(b, 0, sizeof(*b));
	snprintf(b->account, sizeof(b->account), "%s", account);
	snprintf(b->side, sizeof(b->side), "%s", side);
	snprintf(b->cur, sizeof(b->cur), "%s", cur);
	return b;
}

/* Read sums by account, side and currency, into the entries' or kept. */
static int
read_sums(struct db *db, struct recount *r, const char *sql, bool kept)
{
	struct bal *b;
	int rc;

	if ((rc = db_query(db, sql, "")) != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		b = bal_get(r, db_str(db, 0), db_str(db, 1), db_str(db, 2));
		if (kept) {
			b->kn = db_int(db, 3);
			b->kamount = db_int(db, 4);
			b->ksum = db_int(db, 5);
		} else {
			b->n = db_int(db, 3);
			b->amount = db_int(db, 4);
			b->sum = db_int(db, 5);
		}
	}
	return -rc;
}

static bool
bal_ok(const struct bal *b)
{
	return b->n == b->kn && b->amount == b->kamount && b->sum == b->ksum;
}

static int
ledger(struct db *db, void *arg)
{
	struct recount *r = arg;
	const struct bal *b;
	size_t i;
	int rc;

	r->nv = 0;
	if ((rc = turn(db, r)) != 0)
		return rc;
	if ((rc = snapshot(db)) != 0)
		return end(db, r, fail(db, r, rc, "begin"));
	if ((rc = read_sums(db, r, ledger_rows, false)) != 0)
		return end(db, r, fail(db, r, rc, "sum the ledger entries"));
	if ((rc = read_sums(db, r, ledger_kept, true)) != 0)
		return end(db, r, fail(db, r, rc, "read ledger_balance"));
	if ((rc = db_rollback(db)) != 0)
		return end(db, r, fail(db, r, rc, "end the snapshot"));
	if (r->dry)
		return end(db, r, 0);
	/* One transaction, so that a retry never adds a difference twice. */
	if ((rc = db_begin(db)) != 0)
		return end(db, r, fail(db, r, rc, "begin"));
	for (i = 0; i < r->nv; i++) {
		b = &r->v[i];
		if (bal_ok(b))
			continue;
		rc = db_exec(db, ledger_add, "sssiii", b->account, b->side,
		    b->cur, b->n - b->kn, b->amount - b->kamount,
		    ((b->sum - b->ksum) % 2147483647 + 2147483647) %
		        2147483647);
		if (rc != 0)
			return end(
			    db, r, fail(db, r, rc, "write ledger_balance"));
	}
	if ((rc = db_commit(db)) != 0)
		return end(db, r, fail(db, r, rc, "commit ledger_balance"));
	return end(db, r, 0);
}

static int
cmp_sorted(const void *a, const void *b)
{
	const struct bal *y = b;

	return cmp_bal(a, y->account, y->side, y->cur);
}

/* Print what was found: 0, or EX_IOERR; *wrong counts the wrong ones. */
static int
report(struct recount *r, long long *wrong)
{
	json_t *o;
	bool bad;
	size_t i;
	int rc;

	bad = r->published != r->kept;
	*wrong += bad;
	rc = js_print(json_pack("{s:s, s:I, s:I, s:b}", "count", "outbox_count",
	    "published", (json_int_t)r->published, "was", (json_int_t)r->kept,
	    "ok", !bad));
	qsort(r->v, r->nv, sizeof(*r->v), cmp_sorted);
	for (i = 0; i < r->nv && rc == 0; i++) {
		const struct bal *b = &r->v[i];

		/* Brought to zero by an earlier recount: nothing to say. */
		if (b->n == 0 && b->amount == 0 && b->sum == 0 && bal_ok(b))
			continue;
		bad = !bal_ok(b);
		*wrong += bad;
		o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:b}",
		    "count", "ledger_balance", "account", b->account, "side",
		    b->side, "currency", b->cur, "entries", (json_int_t)b->n,
		    "amount", (json_int_t)b->amount, "checksum",
		    (json_int_t)b->sum, "ok", !bad);
		json_object_set_new(o, "was",
		    json_pack("{s:I, s:I, s:I}", "entries", (json_int_t)b->kn,
		        "amount", (json_int_t)b->kamount, "checksum",
		        (json_int_t)b->ksum));
		rc = js_print(o);
	}
	return rc;
}

int
cmd_recount(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "wait", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	struct recount r = { .wait = 60 };
	struct conn conn = { 0 };
	long long wrong = 0;
	const char *why;
	int64_t deadline;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":hnw:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'n':
			r.dry = true;
			break;
		case 'w':
			if ((rc = payctl_parse_wait(optarg, &r.wait)) != 0)
				return rc;
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	if ((rc = payctl_connect(&conn.db)) != 0)
		return rc;
	deadline = clock_mono_ms() + r.wait * 1000;
	if ((rc = conn_retry(&conn, deadline, outbox, &r)) == 0)
		rc = conn_retry(&conn, deadline, ledger, &r);
	if (rc != 0) {
		why = conn_error(&conn);
		if (why == NULL || why[0] == '\0')
			diag_warn("%s", r.what); /* a turn not given */
		else
			diag_warn(
			    "%s: %s", r.what[0] ? r.what : "connect", why);
	} else if ((rc = report(&r, &wrong)) == 0 && r.dry && wrong > 0) {
		rc = EX_MISMATCH;
	}
	if (conn.db != NULL)
		db_close(conn.db);
	free(r.v);
	return rc;
}
