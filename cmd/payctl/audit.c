/*
 * payctl audit: prove the pipeline's invariants from the database, in one
 * consistent snapshot, and print every violation as a JSON line.
 *
 * Each invariant is one set-based statement whose WHERE or HAVING clause is
 * its definition: it returns only the rows that break it.  Work still under
 * way (an outbox row not yet published, a published event its worker has
 * not yet recorded, an open settlement or refund request, an authorization
 * claim) is returned by the first statements with how long it has been
 * overdue: past --max-pending-age it is itself a violation, and either way
 * its payment is left out of the checks that compare a finished payment
 * with its events, requests and ledger rows, which would otherwise report
 * the consequences of the same unfinished step again.  A payment with no
 * work under way must be consistent however old it is.
 */
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "payctl.h"
#include "topics.h"
#include "valid.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: payctl audit [-h] [-p age] [-t since]\n";

#define ISO(col) "DATE_FORMAT(" col ", '%Y-%m-%dT%H:%i:%s.%fZ')"
#define OVERDUE(col) "TIMESTAMPDIFF(MICROSECOND, " col ", @audit_now) DIV 1000"
#define CAPTURED_STATES                                                        \
	"'CAPTURED', 'REFUND_REQUESTED', 'PARTIALLY_REFUNDED', 'REFUNDED',"    \
	" 'REFUND_FAILED'"

/*
 * The statements are laid out by hand: clang-format cannot place string
 * literals joined with macros.
 */
/* clang-format off */
static const char isolation_sql[] =
    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ";
static const char snapshot_sql[] =
    "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";
static const char now_sql[] = "SET @audit_now = NOW(6)";
/*
 * The first payment in scope: ids are handed out in creation order, so a
 * range of ids is what every table can be cut by through its index.
 */
static const char first_all_sql[] = "SET @audit_first = 0";
static const char first_since_sql[] =
    "SET @audit_first = COALESCE((SELECT MIN(payment_id) FROM payment"
    " WHERE created_at >= COALESCE(?, @audit_now - INTERVAL ? MICROSECOND)),"
    " (SELECT COALESCE(MAX(payment_id), 0) + 1 FROM payment))";
static const char scope_sql[] =
    "SELECT " ISO("@audit_now") ", @audit_first,"
    " (SELECT COALESCE(MAX(payment_id), 0) FROM payment),"
    " (SELECT COUNT(*) FROM payment WHERE payment_id >= @audit_first),"
    " (SELECT COUNT(*) FROM outbox_event WHERE aggregate_id >= @audit_first),"
    " (SELECT COUNT(*) FROM settlement_request"
    "  WHERE payment_id >= @audit_first),"
    " (SELECT COUNT(*) FROM refund_request WHERE payment_id >= @audit_first),"
    " (SELECT COUNT(*) FROM ledger_entry WHERE payment_id >= @audit_first)";
/* The range of payment ids of a chunk. */
static const char chunk_sql[] = "SET @audit_lo = ?, @audit_hi = ?";
#define CHUNK "BETWEEN @audit_lo AND @audit_hi"

/* Work under way.  The last column is how long it is overdue, in ms. */
static const char outbox_pending_sql[] =
    "SELECT aggregate_id, event_id, event_key, event_type, attempts,"
    " last_error, " ISO("created_at") ", " OVERDUE("created_at")
    " FROM outbox_event"
    " WHERE status = 'PENDING' AND aggregate_id >= @audit_first"
    " ORDER BY aggregate_id, event_id";

/* The worker that consumes an event type, its name in processed_event. */
#define CONSUMER(col)                                                          \
	"ELT(FIELD(" col ", '" EV_CAPTURE_REQUESTED "', '"                     \
	EV_REFUND_REQUESTED "', '" EV_CAPTURED "', '" EV_REFUNDED "'),"        \
	" 'settle', 'refund', 'ledger-apply', 'ledger-apply')"
static const char event_unprocessed_sql[] =
    "SELECT o.aggregate_id, o.event_id, o.event_key, o.event_type, "
    CONSUMER("o.event_type") ", " ISO("o.published_at") ", "
    OVERDUE("o.published_at")
    " FROM outbox_event o"
    " WHERE o.status = 'PUBLISHED' AND o.aggregate_id >= @audit_first"
    " AND o.event_type IN ('" EV_CAPTURE_REQUESTED "', '"
    EV_REFUND_REQUESTED "', '" EV_CAPTURED "', '" EV_REFUNDED "')"
    " AND NOT EXISTS (SELECT 1 FROM processed_event e"
    "  WHERE e.consumer = " CONSUMER("o.event_type")
    "  AND e.event_key = o.event_key)"
    " ORDER BY o.aggregate_id, o.event_id";

/* Due at next_retry_at (a claim's lease end while a call is in flight). */
static const char settlement_overdue_sql[] =
    "SELECT payment_id, id, status, retry_count, pg_response_code,"
    " " ISO("next_retry_at") ", "
    OVERDUE("COALESCE(next_retry_at, requested_at)")
    " FROM settlement_request"
    " WHERE status IN ('PENDING', 'FAILED') AND payment_id >= @audit_first"
    " ORDER BY payment_id, id";

/* next_retry_at is NULL until refund(8) has read the request's event. */
static const char refund_overdue_sql[] =
    "SELECT payment_id, id, status, amount, retry_count, pg_response_code,"
    " " ISO("next_retry_at") ", "
    OVERDUE("COALESCE(next_retry_at, requested_at)")
    " FROM refund_request"
    " WHERE status IN ('PENDING', 'FAILED') AND payment_id >= @audit_first"
    " ORDER BY payment_id, id";

static const char claim_expired_sql[] =
    "SELECT payment_id, merchant_id, idempotency_key, amount,"
    " " ISO("lease_until") ", " OVERDUE("COALESCE(lease_until, created_at)")
    " FROM payment WHERE status = 'PENDING' AND payment_id >= @audit_first"
    " ORDER BY payment_id";

/* Never published: the relay gave up on it. */
static const char outbox_dead_sql[] =
    "SELECT aggregate_id, event_id, event_key, event_type, attempts,"
    " last_error FROM outbox_event"
    " WHERE status = 'DEAD' AND aggregate_id >= @audit_first"
    " ORDER BY aggregate_id, event_id";

/*
 * The checks below compare each payment with its rows in other tables, a
 * chunk of payment ids at a time: derived tables of a chunk stay small
 * enough for memory, where those of a whole large database would be
 * written to disk.  Counts of a payment's rows are correlated subqueries
 * on the payment_id indexes; a condition on the status is summed, not put
 * in the WHERE clause, lest the status index be chosen instead.
 */
#define COUNT_OF(table)                                                        \
	"(SELECT COUNT(*) FROM " table " x WHERE x.payment_id = p.payment_id)"
#define SUCCEEDED(table)                                                       \
	"(SELECT COALESCE(SUM(x.status = 'SUCCESS'), 0) FROM " table " x"      \
	" WHERE x.payment_id = p.payment_id)"

/*
 * Each payment has exactly the events its state implies: one
 * PAYMENT_AUTHORIZED once authorized, one PAYMENT_CAPTURE_REQUESTED once
 * capture was requested, one PAYMENT_CAPTURED per successful settlement,
 * one PAYMENT_REFUND_REQUESTED per refund request and one PAYMENT_REFUNDED
 * per successful refund.
 */
static const char event_count_sql[] =
    "SELECT c.payment_id, c.status, t.event_type,"
    " CASE t.event_type"
    "  WHEN '" EV_AUTHORIZED "' THEN"
    "   c.status NOT IN ('PENDING', 'AUTH_FAILED')"
    "  WHEN '" EV_CAPTURE_REQUESTED "' THEN"
    "   c.status NOT IN ('PENDING', 'AUTH_FAILED', 'AUTHORIZED')"
    "  WHEN '" EV_CAPTURED "' THEN c.settled"
    "  WHEN '" EV_REFUND_REQUESTED "' THEN c.refunds"
    "  ELSE c.refunded END AS expected,"
    " COALESCE(CASE t.event_type"
    "  WHEN '" EV_AUTHORIZED "' THEN c.authorized_events"
    "  WHEN '" EV_CAPTURE_REQUESTED "' THEN c.capture_requested_events"
    "  WHEN '" EV_CAPTURED "' THEN c.captured_events"
    "  WHEN '" EV_REFUND_REQUESTED "' THEN c.refund_requested_events"
    "  ELSE c.refunded_events END, 0) AS found"
    " FROM (SELECT p.payment_id, p.status,"
    "  " SUCCEEDED("settlement_request") " AS settled,"
    "  " COUNT_OF("refund_request") " AS refunds,"
    "  " SUCCEEDED("refund_request") " AS refunded,"
    "  SUM(o.event_type = '" EV_AUTHORIZED "') AS authorized_events,"
    "  SUM(o.event_type = '" EV_CAPTURE_REQUESTED "')"
    "   AS capture_requested_events,"
    "  SUM(o.event_type = '" EV_CAPTURED "') AS captured_events,"
    "  SUM(o.event_type = '" EV_REFUND_REQUESTED "')"
    "   AS refund_requested_events,"
    "  SUM(o.event_type = '" EV_REFUNDED "') AS refunded_events"
    "  FROM payment p LEFT JOIN outbox_event o"
    "  ON o.aggregate_id = p.payment_id"
    "  WHERE p.payment_id " CHUNK " GROUP BY p.payment_id) c"
    " CROSS JOIN (SELECT '" EV_AUTHORIZED "' AS event_type"
    "  UNION ALL SELECT '" EV_CAPTURE_REQUESTED "'"
    "  UNION ALL SELECT '" EV_CAPTURED "'"
    "  UNION ALL SELECT '" EV_REFUND_REQUESTED "'"
    "  UNION ALL SELECT '" EV_REFUNDED "') t"
    " HAVING expected <> found"
    " ORDER BY c.payment_id, t.event_type";

/*
 * Every capture ends CAPTURED or CAPTURE_FAILED with one settlement: a
 * payment is CAPTURED (or refunded since) exactly when its settlement
 * succeeded for its whole amount, CAPTURE_FAILED when it is DEAD,
 * CAPTURE_REQUESTED only while it is open, and has none before capture
 * was requested.
 */
static const char capture_outcome_sql[] =
    "SELECT p.payment_id, p.status, p.amount, p.captured_amount,"
    " p.currency, s.id, s.status, s.amount, s.currency"
    " FROM payment p LEFT JOIN settlement_request s"
    " ON s.payment_id = p.payment_id"
    " WHERE p.payment_id " CHUNK " AND NOT COALESCE(CASE"
    "  WHEN p.status IN ('PENDING', 'AUTHORIZED', 'AUTH_FAILED') THEN"
    "   s.id IS NULL AND p.captured_amount = 0"
    "  WHEN p.status = 'CAPTURE_REQUESTED' THEN"
    "   s.status IN ('PENDING', 'FAILED') AND p.captured_amount = 0"
    "  WHEN p.status = 'CAPTURE_FAILED' THEN"
    "   s.status = 'DEAD' AND p.captured_amount = 0"
    "  WHEN p.status IN (" CAPTURED_STATES ") THEN"
    "   s.status = 'SUCCESS' AND s.amount = p.amount"
    "   AND s.currency = p.currency AND p.captured_amount = p.amount"
    "  END, FALSE)"
    " ORDER BY p.payment_id, s.id";

/*
 * Every refund request ends with one outcome, and the payment agrees:
 * refunded_amount is the sum of the successful ones, the requests not
 * given up stay within the captured amount, and the status says where
 * they stand.
 */
static const char refund_outcome_sql[] =
    "SELECT p.payment_id, p.status, p.captured_amount, p.refunded_amount,"
    " COALESCE(r.requested, 0), COALESCE(r.succeeded_amount, 0),"
    " COALESCE(r.reserved_amount, 0), COALESCE(r.open, 0),"
    " COALESCE(r.dead, 0)"
    " FROM payment p LEFT JOIN (SELECT payment_id, COUNT(*) AS requested,"
    "  SUM(IF(status = 'SUCCESS', amount, 0)) AS succeeded_amount,"
    "  SUM(IF(status <> 'DEAD', amount, 0)) AS reserved_amount,"
    "  SUM(status IN ('PENDING', 'FAILED')) AS open,"
    "  SUM(status = 'DEAD') AS dead"
    "  FROM refund_request WHERE payment_id " CHUNK
    "  GROUP BY payment_id) r ON r.payment_id = p.payment_id"
    " WHERE p.payment_id " CHUNK " AND NOT COALESCE("
    "  p.refunded_amount = COALESCE(r.succeeded_amount, 0)"
    "  AND COALESCE(r.reserved_amount, 0) <= p.captured_amount"
    "  AND CASE p.status"
    "   WHEN 'REFUND_REQUESTED' THEN r.open > 0"
    "   WHEN 'PARTIALLY_REFUNDED' THEN r.open = 0"
    "    AND p.refunded_amount > 0"
    "    AND p.refunded_amount < p.captured_amount"
    "   WHEN 'REFUNDED' THEN r.open = 0"
    "    AND p.refunded_amount = p.captured_amount"
    "   WHEN 'REFUND_FAILED' THEN r.open = 0 AND r.dead > 0"
    "    AND p.refunded_amount < p.captured_amount"
    "   ELSE r.payment_id IS NULL END, FALSE)"
    " ORDER BY p.payment_id";

/*
 * Each applied event is one DEBIT and one CREDIT of the same amount and
 * currency, for one payment, on the two accounts.  (No GROUP_CONCAT here
 * or below: its BLOB result would put the grouping in a temporary table
 * on disk.)
 */
#define CURRENCIES(col)                                                        \
	"CONCAT(MIN(" col "), IF(MIN(" col ") <> MAX(" col "),"                \
	" CONCAT(',', MAX(" col ")), ''))"
static const char ledger_pair_sql[] =
    "SELECT MIN(payment_id), event_key, COUNT(*),"
    " SUM(IF(side = 'DEBIT', amount, 0)), SUM(IF(side = 'CREDIT', amount, 0)),"
    " MAX(IF(side = 'DEBIT', account, NULL)),"
    " MAX(IF(side = 'CREDIT', account, NULL)), " CURRENCIES("currency")
    " FROM ledger_entry WHERE payment_id " CHUNK " GROUP BY event_key"
    " HAVING COUNT(*) <> 2 OR SUM(side = 'DEBIT') <> 1"
    " OR SUM(IF(side = 'DEBIT', amount, -amount)) <> 0"
    " OR MIN(payment_id) <> MAX(payment_id) OR MIN(currency) <> MAX(currency)"
    " OR MIN(account) = MAX(account)"
    " OR SUM(account NOT IN ('pg_receivable', 'merchant_payable')) > 0"
    " ORDER BY 1, 2";

/*
 * Nothing applied twice: two rows per successful settlement and per
 * successful refund, none for a payment that does not exist.
 */
static const char ledger_entries_sql[] =
    "SELECT c.payment_id, c.expected, c.found FROM (SELECT p.payment_id,"
    "  2 * (" SUCCEEDED("settlement_request") " + "
    SUCCEEDED("refund_request") ") AS expected, "
    COUNT_OF("ledger_entry") " AS found"
    "  FROM payment p WHERE p.payment_id " CHUNK ") c"
    " WHERE c.expected <> c.found"
    " UNION ALL SELECT l.payment_id, 0, COUNT(*) FROM ledger_entry l"
    " WHERE l.payment_id " CHUNK " AND NOT EXISTS"
    "  (SELECT 1 FROM payment p WHERE p.payment_id = l.payment_id)"
    " GROUP BY l.payment_id"
    " ORDER BY 1";

/*
 * Per payment, merchant_payable's credits less its debits, and
 * pg_receivable's debits less its credits, are what was captured less
 * what was refunded, in the payment's currency.
 */
static const char ledger_net_sql[] =
    "SELECT p.payment_id, p.currency,"
    " p.captured_amount - p.refunded_amount,"
    " COALESCE(l.payable, 0), COALESCE(l.receivable, 0), l.currencies"
    " FROM payment p LEFT JOIN (SELECT payment_id,"
    "  SUM(IF(account = 'merchant_payable',"
    "   IF(side = 'CREDIT', amount, -amount), 0)) AS payable,"
    "  SUM(IF(account = 'pg_receivable',"
    "   IF(side = 'DEBIT', amount, -amount), 0)) AS receivable,"
    "  " CURRENCIES("currency") " AS currencies"
    "  FROM ledger_entry WHERE payment_id " CHUNK
    "  GROUP BY payment_id) l ON l.payment_id = p.payment_id"
    " WHERE p.payment_id " CHUNK
    " AND (COALESCE(l.payable, 0) <> p.captured_amount - p.refunded_amount"
    "  OR COALESCE(l.receivable, 0) <> p.captured_amount - p.refunded_amount"
    "  OR COALESCE(l.currencies, p.currency) <> p.currency)"
    " ORDER BY p.payment_id";

/* The books balance: per currency, total debits equal total credits. */
static const char ledger_balance_sql[] =
    "SELECT currency, SUM(IF(side = 'DEBIT', amount, 0)),"
    " SUM(IF(side = 'CREDIT', amount, 0))"
    " FROM ledger_entry WHERE payment_id >= @audit_first GROUP BY currency"
    " HAVING SUM(IF(side = 'DEBIT', amount, -amount)) <> 0"
    " ORDER BY currency";

/*
 * The count of PUBLISHED rows that outbox-relay keeps (outbox_count,
 * migration 0011) is the number of those rows.  It covers every payment,
 * so it is checked only when the audit does (F_WHOLE).
 */
static const char outbox_count_sql[] =
    "SELECT c.n, r.n FROM"
    " (SELECT COALESCE(SUM(published), 0) AS n FROM outbox_count) c,"
    " (SELECT COUNT(*) AS n FROM outbox_event WHERE status = 'PUBLISHED') r"
    " WHERE c.n <> r.n";

/*
 * The running balances that ledger-apply keeps with the entries
 * (ledger_balance, migration 0010) are the entries' count, sum and checksum
 * per account, side and currency.  They cover every payment, so they are
 * checked only when the audit does (F_WHOLE).
 */
static const char ledger_running_sql[] =
    "SELECT account, side, currency, SUM(n), SUM(ln), SUM(a), SUM(la)"
    " FROM (SELECT account, side, currency, entries AS n, 0 AS ln,"
    "  amount AS a, 0 AS la, checksum AS w FROM ledger_balance"
    "  UNION ALL SELECT account, side, currency, 0, COUNT(*), 0, SUM(amount),"
    "  -MOD(SUM((payment_id % 2147483647) * (amount % 2147483647)),"
    "  2147483647) FROM ledger_entry GROUP BY account, side, currency) t"
    " GROUP BY account, side, currency"
    " HAVING SUM(n) <> SUM(ln) OR SUM(a) <> SUM(la)"
    " OR MOD(SUM(w), 2147483647) <> 0"
    " ORDER BY account, side, currency";

/* clang-format on */

/* How a check's rows are judged. */
enum {
	/* The last column is overdue_ms: a violation past the bound. */
	F_AGE = 1,
	/* The row's payment (column 0) has work under way or lost. */
	F_BUSY = 2,
	/* Not a violation when the row's payment is busy. */
	F_SETTLED = 4,
	/* Checked only when the audit covers every payment. */
	F_WHOLE = 8,
};

/*
 * When a check runs: once over the whole scope before the others (those
 * that find the busy payments), once per chunk of payment ids, or once
 * over the whole scope at the end.
 */
enum stage { S_FIRST, S_CHUNK, S_LAST };

/* Payment ids per chunk. */
#define CHUNK_IDS 20000

/*
 * cols names the columns in order, each "name:t" with t one of i
 * (integer) or s (string); either may be NULL.
 */
static const struct check {
	const char *invariant;
	const char *sql;
	const char *cols;
	int flags;
	enum stage stage;
} checks[] = {
	{ "outbox_pending", outbox_pending_sql,
	    "payment_id:i event_id:i event_key:s event_type:s attempts:i "
	    "last_error:s created_at:s overdue_ms:i",
	    F_AGE | F_BUSY, S_FIRST },
	{ "event_unprocessed", event_unprocessed_sql,
	    "payment_id:i event_id:i event_key:s event_type:s consumer:s "
	    "published_at:s overdue_ms:i",
	    F_AGE | F_BUSY, S_FIRST },
	{ "settlement_overdue", settlement_overdue_sql,
	    "payment_id:i settlement_id:i status:s retry_count:i "
	    "response_code:s next_retry_at:s overdue_ms:i",
	    F_AGE | F_BUSY, S_FIRST },
	{ "refund_overdue", refund_overdue_sql,
	    "payment_id:i refund_id:i status:s amount:i retry_count:i "
	    "response_code:s next_retry_at:s overdue_ms:i",
	    F_AGE | F_BUSY, S_FIRST },
	{ "claim_expired", claim_expired_sql,
	    "payment_id:i merchant_id:s idempotency_key:s amount:i "
	    "lease_until:s overdue_ms:i",
	    F_AGE | F_BUSY, S_FIRST },
	{ "outbox_dead", outbox_dead_sql,
	    "payment_id:i event_id:i event_key:s event_type:s attempts:i "
	    "last_error:s",
	    F_BUSY, S_FIRST },
	{ "outbox_published_count", outbox_count_sql, "counted:i published:i",
	    F_WHOLE, S_LAST },
	{ "event_count", event_count_sql,
	    "payment_id:i status:s event_type:s expected:i found:i", F_SETTLED,
	    S_CHUNK },
	{ "capture_outcome", capture_outcome_sql,
	    "payment_id:i status:s amount:i captured_amount:i currency:s "
	    "settlement_id:i settlement_status:s settlement_amount:i "
	    "settlement_currency:s",
	    F_SETTLED, S_CHUNK },
	{ "refund_outcome", refund_outcome_sql,
	    "payment_id:i status:s captured_amount:i refunded_amount:i "
	    "refunds:i refunds_succeeded_amount:i refunds_reserved_amount:i "
	    "refunds_open:i refunds_dead:i",
	    F_SETTLED, S_CHUNK },
	{ "ledger_pair", ledger_pair_sql,
	    "payment_id:i event_key:s rows:i debits:i credits:i "
	    "debit_account:s credit_account:s currencies:s",
	    0, S_CHUNK },
	{ "ledger_entries", ledger_entries_sql,
	    "payment_id:i expected:i found:i", F_SETTLED, S_CHUNK },
	{ "ledger_net", ledger_net_sql,
	    "payment_id:i currency:s expected:i merchant_payable:i "
	    "pg_receivable:i ledger_currencies:s",
	    F_SETTLED, S_CHUNK },
	{ "ledger_balance", ledger_balance_sql, "currency:s debits:i credits:i",
	    0, S_LAST },
	{ "ledger_running_balance", ledger_running_sql,
	    "account:s side:s currency:s entries:i ledger_entries:i amount:i "
	    "ledger_amount:i",
	    F_WHOLE, S_LAST },
};
#define NCHECKS (sizeof(checks) / sizeof(checks[0]))

/* A set of payment ids: appended, then sorted once for lookups. */
struct idset {
	int64_t *v;
	size_t n, cap;
};

struct audit {
	struct db *db;
	long long bound_ms;
	struct idset busy; /* payments with work under way or lost */
	struct idset young; /* ... with work under way within the bound */
	long long found[NCHECKS];
	long long violations;
	bool whole; /* the scope is every payment */
	bool output_failed;
};

static void
idset_add(struct idset *s, int64_t id)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 256;
		s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
	}
	s->v[s->n++] = id;
}

static int
cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Sort and drop repeats. */
static void
idset_seal(struct idset *s)
{
	size_t i, n = 0;

	if (s->n == 0)
		return;
	qsort(s->v, s->n, sizeof(*s->v), cmp_id);
	for (i = 1; i < s->n; i++)
		if (s->v[i] != s->v[n])
			s->v[++n] = s->v[i];
	s->n = n + 1;
}

static bool
idset_has(const struct idset *s, int64_t id)
{
	return s->n > 0 &&
	    bsearch(&id, s->v, s->n, sizeof(*s->v), cmp_id) != NULL;
}

/* Column c of the current row as JSON, by its type letter. */
static json_t *
column(struct db *db, unsigned c, char type)
{
	const char *s;
	json_t *v;

	if (db_null(db, c))
		return json_null();
	if (type == 'i')
		return json_integer(db_int(db, c));
	s = db_str(db, c);
	if ((v = json_stringn(s, db_len(db, c))) == NULL)
		v = json_string("(not UTF-8)");
	return v;
}

/* The violation line of the current row: invariant, then the columns. */
static json_t *
violation(struct db *db, const struct check *k)
{
	const char *p = k->cols, *colon, *end;
	json_t *o = json_pack("{s:s}", "invariant", k->invariant);
	char name[64];
	unsigned c = 0;

	while (*p != '\0') {
		colon = strchr(p, ':');
		end = colon + 2;
		snprintf(name, sizeof(name), "%.*s", (int)(colon - p), p);
		json_object_set_new(o, name, column(db, c++, colon[1]));
		p = *end == ' ' ? end + 1 : end;
	}
	return o;
}

static unsigned
ncols(const struct check *k)
{
	const char *p;
	unsigned n = 0;

	for (p = k->cols; (p = strchr(p, ':')) != NULL; p++)
		n++;
	return n;
}

static bool
by_payment(const struct check *k)
{
	return strncmp(k->cols, "payment_id:", 11) == 0;
}

/* Run one check; 0 or a db exit code. */
static int
run_check(struct audit *a, size_t i)
{
	const struct check *k = &checks[i];
	unsigned last = ncols(k) - 1;
	int64_t id;
	int rc;

	if ((rc = db_query(a->db, k->sql, "")) != 0)
		return rc;
	while ((rc = db_next(a->db)) == 1) {
		id = by_payment(k) ? db_int(a->db, 0) : 0;
		if ((k->flags & F_SETTLED) && idset_has(&a->busy, id))
			continue;
		if (k->flags & F_BUSY)
			idset_add(&a->busy, id);
		if ((k->flags & F_AGE) && db_int(a->db, last) <= a->bound_ms) {
			idset_add(&a->young, id);
			continue;
		}
		a->found[i]++;
		a->violations++;
		if (!a->output_failed && js_print(violation(a->db, k)) != 0)
			a->output_failed = true;
	}
	return rc < 0 ? -rc : 0;
}

/* Open the snapshot and fix the scope; 0 or a db exit code. */
static int
begin(struct audit *a, const char *since_ts, long long since_ms)
{
	int rc;

	if ((rc = db_run(a->db, isolation_sql)) != 0 ||
	    (rc = db_run(a->db, snapshot_sql)) != 0 ||
	    (rc = db_exec(a->db, now_sql, "")) != 0)
		return rc;
	if (since_ts == NULL && since_ms == 0)
		return db_exec(a->db, first_all_sql, "");
	return db_exec(
	    a->db, first_since_sql, "si", since_ts, (int64_t)(since_ms * 1000));
}

/* The last line: the verdict, the scope and the counts per invariant. */
static json_t *
summary(struct audit *a, json_t *checked, const char *as_of, int64_t first)
{
	json_t *by = json_object();
	size_t i;

	for (i = 0; i < NCHECKS; i++)
		json_object_set_new(
		    by, checks[i].invariant, json_integer(a->found[i]));
	return json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:o, s:o}", "audit",
	    a->violations ? "failed" : "ok", "violations",
	    (json_int_t)a->violations, "in_flight", (json_int_t)a->young.n,
	    "as_of", as_of, "first_payment_id", (json_int_t)first,
	    "max_pending_age_ms", (json_int_t)a->bound_ms, "checked", checked,
	    "invariants", by);
}

/* Run the checks of one stage; 0 or an exit code, already reported. */
static int
run_stage(struct audit *a, enum stage st)
{
	size_t i;
	int rc;

	for (i = 0; i < NCHECKS; i++) {
		if (checks[i].stage != st ||
		    ((checks[i].flags & F_WHOLE) && !a->whole))
			continue;
		if ((rc = run_check(a, i)) != 0)
			return payctl_dbfail(
			    a->db, rc, "check '%s'", checks[i].invariant);
	}
	return 0;
}

/* The chunked checks over first..last, the last chunk open-ended. */
static int
run_chunks(struct audit *a, int64_t first, int64_t last)
{
	int64_t lo, hi;
	int rc;

	for (lo = first;; lo = hi + 1) {
		hi = last - lo < CHUNK_IDS ? INT64_MAX : lo + CHUNK_IDS - 1;
		if ((rc = db_exec(a->db, chunk_sql, "ii", lo, hi)) != 0)
			return payctl_dbfail(a->db, rc, "select a chunk");
		if ((rc = run_stage(a, S_CHUNK)) != 0 || hi == INT64_MAX)
			return rc;
	}
}

static int
audit(struct audit *a, const char *since_ts, long long since_ms)
{
	char as_of[32];
	json_t *checked;
	int64_t first, last;
	int rc;

	if ((rc = begin(a, since_ts, since_ms)) != 0 ||
	    (rc = db_query(a->db, scope_sql, "")) != 0)
		return payctl_dbfail(a->db, rc, "open the audit's snapshot");
	if ((rc = db_next(a->db)) != 1)
		return payctl_dbfail(a->db, rc < 0 ? -rc : EX_SOFTWARE,
		    "read the audit's scope");
	snprintf(as_of, sizeof(as_of), "%s", db_str(a->db, 0));
	first = db_int(a->db, 1);
	last = db_int(a->db, 2);
	a->whole = first == 0;
	checked = json_pack("{s:I, s:I, s:I, s:I, s:I}", "payments",
	    (json_int_t)db_int(a->db, 3), "events",
	    (json_int_t)db_int(a->db, 4), "settlements",
	    (json_int_t)db_int(a->db, 5), "refunds",
	    (json_int_t)db_int(a->db, 6), "ledger_entries",
	    (json_int_t)db_int(a->db, 7));
	while (db_next(a->db) == 1)
		;
	if ((rc = run_stage(a, S_FIRST)) == 0) {
		/* The busy set is complete before the first F_SETTLED. */
		idset_seal(&a->busy);
		idset_seal(&a->young);
		if ((rc = run_chunks(a, first, last)) == 0)
			rc = run_stage(a, S_LAST);
	}
	if (rc != 0) {
		json_decref(checked);
		return rc;
	}
	db_rollback(a->db);
	if (a->output_failed ||
	    js_print(summary(a, checked, as_of, first)) != 0)
		return EX_IOERR;
	return a->violations ? EX_MISMATCH : 0;
}

int
cmd_audit(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "max-pending-age", required_argument, NULL, 'p' },
		{ "since", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct audit a = { .bound_ms = 300000 };
	char ts[27];
	long long since_ms = 0;
	const char *since_ts = NULL;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":hp:t:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'p':
			if (conf_parse_duration(optarg, &a.bound_ms) != 0)
				return diag_usage("option '--max-pending-age': "
				                  "'%s' is not a duration "
				                  "(0, 500ms, 30s, 5m, 1h)",
				    optarg);
			break;
		case 't':
			switch (valid_since(optarg, ts, &since_ms)) {
			case 0:
				since_ts = ts;
				since_ms = 0;
				break;
			case 1:
				since_ts = NULL;
				break;
			default:
				return diag_usage(
				    "option '--since': '%s' is "
				    "not a time (2026-11-21T08:00:00Z) "
				    "or a duration (15m, 1h, 7d)",
				    optarg);
			}
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	if ((rc = payctl_connect(&a.db)) != 0)
		return rc;
	rc = audit(&a, since_ts, since_ms);
	db_close(a.db);
	free(a.busy.v);
	free(a.young.v);
	return rc;
}
