/*
 * ledger-apply: the double-entry ledger.  Each payment.captured and
 * payment.refunded event becomes two ledger_entry rows of the same amount,
 * a DEBIT and a CREDIT, keyed by the event's eventId, so that a redelivered
 * event is a no-op twice over: processed_event, and the unique key
 * (event_key, side).
 *
 * Accounts, seen from the payment platform:
 *   captured: DEBIT pg_receivable     the gateway owes us the funds
 *             CREDIT merchant_payable we owe them to the merchant
 *   refunded: the reverse, for the refunded amount.
 * Per payment, merchant_payable's credits less its debits is what was
 * captured less what was refunded; pg_receivable mirrors it.
 *
 * A batch is applied as a set (on_batch): one query reads its payments, one
 * statement inserts its entries, and one per account, side and currency adds
 * them to the running balances (ledger_balance, migration 0010), in the same
 * transaction.  on_message applies one event; the loop falls back on it
 * when the database refuses a batch's statement, or when some of a batch's
 * entries were there already.  With --purge-older-than it prunes its
 * processed_event rows instead.
 */
#include "consumer.h"
#include "diag.h"
#include "js.h"
#include "topics.h"
#include "worker.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: ledger-apply [-hVv] [--once] [-g group] [-n count] [-P age] "
    "[-X key=value]\n";

/* processed_event.consumer, and the Kafka client.id. */
#define NAME "ledger-apply"
#define AMOUNT_MAX 1000000000000000LL
/* Messages per transaction unless consumer_batch is set. */
#define BATCH_DEFAULT 1000
#define RECEIVABLE "pg_receivable"
#define PAYABLE "merchant_payable"
/* The modulus of ledger_balance.checksum (migration 0010, dbstat(1)). */
#define BOOK_Q 2147483647ULL

static const char sel_payment[] =
    "SELECT payment_id, currency, captured_amount, refunded_amount"
    " FROM payment WHERE payment_id = ?";
static const char ins_entries[] =
    "INSERT INTO ledger_entry"
    " (event_key, payment_id, account, side, amount, currency, occurred_at)"
    " VALUES (?, ?, ?, 'DEBIT', ?, ?, IFNULL(?, NOW(6))),"
    " (?, ?, ?, 'CREDIT', ?, ?, IFNULL(?, NOW(6)))"
    " ON DUPLICATE KEY UPDATE entry_id = entry_id";
/*
 * A batch at once: the payments of a JSON array of ids; the entries, one
 * row of values each, in the server's bulk execution (db_bulk), which costs
 * the server about half of what unpacking them from JSON does.
 */
static const char sel_payments[] =
    "SELECT p.payment_id, p.currency, p.captured_amount, p.refunded_amount"
    " FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) AS j"
    " STRAIGHT_JOIN payment p FORCE INDEX (PRIMARY) ON p.payment_id = j.id";
static const char ins_entry_set[] =
    "INSERT INTO ledger_entry"
    " (event_key, payment_id, account, side, amount, currency, occurred_at)"
    " VALUES (?, ?, ?, ?, ?, ?, IFNULL(?, NOW(6)))"
    " ON DUPLICATE KEY UPDATE entry_id = entry_id";

/*
 * What entries add to the running balances: one row per account, side and
 * currency, in this connection's shard.
 */
static const char add_balance[] =
    "INSERT INTO ledger_balance"
    " (account, side, currency, shard, entries, amount, checksum)"
    " VALUES (?, ?, ?, CONNECTION_ID() % 16, ?, CAST(? AS DECIMAL(38, 0)), ?)"
    " ON DUPLICATE KEY UPDATE entries = entries + VALUES(entries),"
    " amount = amount + VALUES(amount),"
    " checksum = (checksum + VALUES(checksum)) % 2147483647";

/* What an event books: amount from debit to credit. */
struct booking {
	long long pid, amount;
	const char *cur, *debit, *credit;
	const char *at; /* NULL: when it is applied */
	bool refund;
	char when[27];
};

/* A payment as the checks need it. */
struct paid {
	int64_t id, captured, refunded;
	char cur[4];
};

/* The event's own fields: 0, or CONSUMER_REJECT with e filled. */
static int
read_event(struct consumer_msg *m, struct consumer_error *e, struct booking *b)
{
	const char *at = NULL;

	if (consumer_int(m->event, "paymentId", 1, INT64_MAX, &b->pid, e) ||
	    consumer_int(m->event, "amount", 1, AMOUNT_MAX, &b->amount, e) ||
	    consumer_str(m->event, "currency", 3, &b->cur, e))
		return CONSUMER_REJECT;
	m->payment_id = b->pid;
	if (json_object_get(m->event, "occurredAt") != NULL &&
	    (consumer_str(m->event, "occurredAt", 40, &at, e) ||
	        consumer_sqltime(at, b->when) != 0))
		return consumer_reject(e, CE_BAD_FIELD,
		    "'occurredAt' must be an ISO-8601 UTC time");
	b->at = at != NULL ? b->when : NULL;
	b->refund =
	    strcmp(js_getstr(m->event, "eventType", ""), EV_REFUNDED) == 0;
	b->debit = b->refund ? PAYABLE : RECEIVABLE;
	b->credit = b->refund ? RECEIVABLE : PAYABLE;
	return 0;
}

/* The event against its payment (NULL: none): 0 or CONSUMER_REJECT. */
static int
check(const struct booking *b, const struct paid *p, struct consumer_error *e)
{
	if (p == NULL)
		return consumer_reject(e, CE_UNKNOWN_PAYMENT,
		    "payment %lld does not exist", b->pid);
	if (strcmp(b->cur, p->cur) != 0)
		return consumer_reject(e, CE_CURRENCY_MISMATCH,
		    "'currency' is '%s', payment %lld is in %s", b->cur, b->pid,
		    p->cur);
	if (!b->refund && b->amount != p->captured)
		return consumer_reject(e, CE_AMOUNT_MISMATCH,
		    "'amount' is %lld, payment %lld captured %lld", b->amount,
		    b->pid, (long long)p->captured);
	if (b->refund && b->amount > p->refunded)
		return consumer_reject(e, CE_AMOUNT_MISMATCH,
		    "'amount' is %lld, payment %lld has %lld refunded",
		    b->amount, b->pid, (long long)p->refunded);
	return 0;
}

/* Entries summed by account, side and currency, for add_balance. */
struct tally {
	struct sum {
		const char *account, *side, *cur;
		int64_t entries;
		uint64_t amount, checksum; /* amounts are at most AMOUNT_MAX */
	} * v;
	size_t n;
};

static void
tally_add(struct tally *t, const char *account, const char *side,
    const struct booking *b)
{
	struct sum *s = NULL;
	size_t i;

	for (i = 0; i < t->n && s == NULL; i++)
		if (strcmp(t->v[i].account, account) == 0 &&
		    strcmp(t->v[i].side, side) == 0 &&
		    strcmp(t->v[i].cur, b->cur) == 0)
			s = &t->v[i];
	if (s == NULL) {
		t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
		s = &t->v[t->n++];
		*s = (struct sum){ account, side, b->cur, 0, 0, 0 };
	}
	s->entries++;
	s->amount += (uint64_t)b->amount;
	s->checksum =
	    (s->checksum +
	        (uint64_t)b->pid % BOOK_Q * ((uint64_t)b->amount % BOOK_Q)) %
	    BOOK_Q;
}

/* Both entries of a booking. */
static void
tally_booking(struct tally *t, const struct booking *b)
{
	tally_add(t, b->debit, "DEBIT", b);
	tally_add(t, b->credit, "CREDIT", b);
}

static int
cmp_sum(const void *a, const void *b)
{
	const struct sum *x = a, *y = b;
	int c = strcmp(x->account, y->account);

	if (c == 0)
		c = strcmp(x->side, y->side);
	return c != 0 ? c : strcmp(x->cur, y->cur);
}

/*
 * Add the tally to the running balances, in key order so that two
 * transactions on one shard lock its rows in the same order: 0 or a db
 * code.
 */
static int
tally_apply(struct db *db, struct tally *t)
{
	char amount[24];
	size_t i;
	int rc = 0;

	qsort(t->v, t->n, sizeof(*t->v), cmp_sum);
	for (i = 0; i < t->n && rc == 0; i++) {
		snprintf(amount, sizeof(amount), "%llu",
		    (unsigned long long)t->v[i].amount);
		rc = db_exec(db, add_balance, "sssisi", t->v[i].account,
		    t->v[i].side, t->v[i].cur, t->v[i].entries, amount,
		    (int64_t)t->v[i].checksum);
	}
	free(t->v);
	t->v = NULL;
	t->n = 0;
	return rc;
}

/* The current row of a payments query. */
static void
read_paid(struct db *db, struct paid *p)
{
	p->id = db_int(db, 0);
	snprintf(p->cur, sizeof(p->cur), "%s", db_str(db, 1));
	p->captured = db_int(db, 2);
	p->refunded = db_int(db, 3);
}

static int
on_message(
    struct db *db, struct consumer_msg *m, struct consumer_error *e, void *arg)
{
	struct tally t = { NULL, 0 };
	struct booking b;
	struct paid p;
	int rc;

	if (read_event(m, e, &b) != 0)
		return CONSUMER_REJECT;
	if ((rc = db_query(db, sel_payment, "i", (int64_t)b.pid)) != 0)
		return rc;
	if ((rc = db_next(db)) < 0)
		return -rc;
	if (rc == 1) {
		read_paid(db, &p);
		db_next(db);
	}
	if (check(&b, rc == 1 ? &p : NULL, e) != 0)
		return CONSUMER_REJECT;
	if ((rc = db_exec(db, ins_entries, "sisisssisiss", m->event_id,
	         (int64_t)b.pid, b.debit, (int64_t)b.amount, b.cur, b.at,
	         m->event_id, (int64_t)b.pid, b.credit, (int64_t)b.amount,
	         b.cur, b.at)) != 0)
		return rc;
	/* Both entries, or neither: the event was booked before. */
	if (db_affected(db) == 0)
		return 0;
	tally_booking(&t, &b);
	return tally_apply(db, &t);
}

/* int64_t ids, and struct paid by its first member, the id. */
static int
cmp_id(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The payments of the bookings (ok[i] marks the ones to look up) into
 * *paid, sorted by id: 0 or a db code.
 */
static int
load_payments(struct db *db, const struct booking *b, const bool *ok, size_t n,
    struct paid **paid, size_t *npaid)
{
	int64_t *ids = xcalloc(n, sizeof(*ids));
	size_t i, nids = 0, len = 0;
	char *buf = xmalloc(n * 21 + 2);
	int rc;

	for (i = 0; i < n; i++)
		if (ok[i])
			ids[nids++] = b[i].pid;
	qsort(ids, nids, sizeof(*ids), cmp_id);
	for (i = 0; i < nids; i++)
		if (i == 0 || ids[i] != ids[i - 1])
			len += (size_t)snprintf(buf + len, 22, "%c%lld",
			    len ? ',' : '[', (long long)ids[i]);
	buf[len++] = ']';
	free(ids);
	*paid = xcalloc(nids ? nids : 1, sizeof(**paid));
	*npaid = 0;
	rc = nids ? db_query(db, sel_payments, "b", buf, len) : 0;
	free(buf);
	if (rc != 0 || nids == 0)
		return rc;
	while ((rc = db_next(db)) == 1)
		read_paid(db, &(*paid)[(*npaid)++]);
	if (rc < 0)
		return -rc;
	qsort(*paid, *npaid, sizeof(**paid), cmp_id);
	return 0;
}

/* The entries of a batch, column by column, for db_bulk. */
struct entries {
	const char **key, **account, **side, **cur, **at;
	int64_t *pid, *amount;
	size_t n;
};

static void
entries_alloc(struct entries *e, size_t max)
{
	e->key = xcalloc(max, sizeof(*e->key));
	e->account = xcalloc(max, sizeof(*e->account));
	e->side = xcalloc(max, sizeof(*e->side));
	e->cur = xcalloc(max, sizeof(*e->cur));
	e->at = xcalloc(max, sizeof(*e->at));
	e->pid = xcalloc(max, sizeof(*e->pid));
	e->amount = xcalloc(max, sizeof(*e->amount));
	e->n = 0;
}

static void
entries_free(struct entries *e)
{
	free(e->key);
	free(e->account);
	free(e->side);
	free(e->cur);
	free(e->at);
	free(e->pid);
	free(e->amount);
}

static void
entries_add(struct entries *e, const char *key, const struct booking *b,
    const char *account, const char *side)
{
	e->key[e->n] = key;
	e->pid[e->n] = b->pid;
	e->account[e->n] = account;
	e->side[e->n] = side;
	e->amount[e->n] = b->amount;
	e->cur[e->n] = b->cur;
	e->at[e->n++] = b->at;
}

static int
on_batch(struct db *db, struct consumer_item *items, size_t n, void *arg)
{
	struct booking *b = xcalloc(n, sizeof(*b));
	bool *ok = xcalloc(n, sizeof(*ok));
	struct tally t = { NULL, 0 };
	struct paid *paid = NULL, key;
	struct entries e;
	size_t i, npaid;
	int rc;

	entries_alloc(&e, 2 * n);
	for (i = 0; i < n; i++) {
		items[i].rc = read_event(items[i].m, items[i].e, &b[i]);
		ok[i] = items[i].rc == 0;
	}
	if ((rc = load_payments(db, b, ok, n, &paid, &npaid)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (!ok[i])
			continue;
		key.id = b[i].pid;
		items[i].rc = check(&b[i],
		    bsearch(&key, paid, npaid, sizeof(*paid), cmp_id),
		    items[i].e);
		if (items[i].rc != 0)
			continue;
		entries_add(
		    &e, items[i].m->event_id, &b[i], b[i].debit, "DEBIT");
		entries_add(
		    &e, items[i].m->event_id, &b[i], b[i].credit, "CREDIT");
		tally_booking(&t, &b[i]);
	}
	if (e.n > 0) {
		rc = db_bulk(db, ins_entry_set, e.n, "sississ", e.key, e.pid,
		    e.account, e.side, e.amount, e.cur, e.at);
		/*
		 * Entries already there (an event redelivered after its
		 * processed_event row was purged) count once: redo the batch
		 * a message at a time, which tells them apart.
		 */
		if (rc == 0 && db_affected(db) != e.n)
			rc = EX_SOFTWARE;
		if (rc == 0)
			rc = tally_apply(db, &t);
	}
out:
	free(t.v);
	entries_free(&e);
	free(paid);
	free(ok);
	free(b);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct consumer_topic topics[] = {
		{ TOPIC_CAPTURED, EV_CAPTURED },
		{ TOPIC_REFUNDED, EV_REFUNDED },
	};
	static const struct worker_def d = {
		.usage = usage_text,
		.prefix = "ledger",
		.consumer = {
		    .name = NAME,
		    .topics = topics,
		    .ntopics = 2,
		    .dlq_event = EV_PAYMENT_DEAD_LETTER,
		    .handle = on_message,
		    .handle_batch = on_batch,
		    /* Set-based batches cost a few statements at any size. */
		    .batch = BATCH_DEFAULT,
		},
	};

	return worker_main(argc, argv, &d);
}
