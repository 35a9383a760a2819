/*
 * payctl capture: request the capture of a payment authorized with
 * --no-capture.  AUTHORIZED becomes CAPTURE_REQUESTED with its outbox
 * event in one transaction; the update is guarded by the status, so of two
 * concurrent captures exactly one wins and the other is refused.
 *
 * payctl capture - does the same for each request line of standard input
 * (stream-lines.c).
 */
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "outbox.h"
#include "stream-lines.h"
#include "topics.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] = "usage: payctl capture [-h] id\n"
                                 "       payctl capture [-h] [-C n] -\n";

static const char capture_sql[] =
    "UPDATE payment SET status = 'CAPTURE_REQUESTED'"
    " WHERE payment_id = ? AND status = 'AUTHORIZED'";

/*
 * The stream captures up to BATCH payments in one transaction, with a
 * statement per step for the whole batch.
 */
#define BATCH 64
static const char batch_lock_sql[] =
    "SELECT STRAIGHT_JOIN j.i, " PAYMENT_COLUMNS " FROM " STREAM_IDS
    " JOIN payment ON payment_id = j.id FOR UPDATE";
static const char batch_read_sql[] =
    "SELECT STRAIGHT_JOIN j.i, " PAYMENT_COLUMNS " FROM " STREAM_IDS
    " JOIN payment ON payment_id = j.id";
static const char batch_capture_sql[] =
    "UPDATE " STREAM_IDS " STRAIGHT_JOIN payment p ON p.payment_id = j.id"
    " SET p.status = 'CAPTURE_REQUESTED' WHERE p.status = 'AUTHORIZED'";

static void
not_capturable(const struct payment *p, struct result *r)
{
	result_fail(r, EX_DATAERR, "INVALID_STATE",
	    json_pack("{s:I, s:s}", "payment_id", (json_int_t)p->id, "status",
	        p->status),
	    "payment '%lld': status is %s, not AUTHORIZED", (long long)p->id,
	    p->status);
}

static void
not_found(int64_t id, struct result *r)
{
	result_fail(r, EX_DATAERR, "NOT_FOUND",
	    json_pack("{s:I}", "payment_id", (json_int_t)id),
	    "payment '%lld': not found", (long long)id);
}

/* The payload of PAYMENT_CAPTURE_REQUESTED, without the envelope. */
static json_t *
event(const struct payment *p)
{
	return json_pack("{s:I, s:s, s:s, s:I, s:s, s:s, s:s}", "paymentId",
	    (json_int_t)p->id, "status", "CAPTURE_REQUESTED", "merchantId",
	    p->merchant, "amount", (json_int_t)p->amount, "currency",
	    p->currency, "approvalNumber", p->approval, "transactionId",
	    p->txn);
}

/* 0 and *won, or a db error; !*won when the status changed meanwhile. */
static int
capture(struct db *db, const struct payment *p, bool *won)
{
	json_t *ev;
	int rc;

	*won = false;
	if ((rc = db_begin(db)) != 0)
		return rc;
	if ((rc = db_exec(db, capture_sql, "i", p->id)) != 0)
		goto out;
	if (db_affected(db) != 1) {
		db_rollback(db);
		return 0;
	}
	ev = event(p);
	rc = outbox_insert(db, EV_CAPTURE_REQUESTED, p->id, ev, NULL);
	json_decref(ev);
	if (rc == 0 && (rc = db_commit(db)) == 0)
		*won = true;
out:
	if (rc != 0)
		db_rollback(db);
	return rc;
}

/* One capture, from the read of the payment to the result. */
static void
run(struct db *db, const struct ratelimit *rl, const struct preq *q,
    struct result *r)
{
	struct payment p;
	bool won = false;
	int rc, tries;

	if ((rc = payment_by_id(db, q->id, false, &p)) != 0) {
		result_dbfail(
		    r, db, rc, "read payment '%lld'", (long long)q->id);
		return;
	}
	if (p.id == 0) {
		not_found(q->id, r);
		return;
	}
	if (strcmp(p.status, "AUTHORIZED") != 0) {
		not_capturable(&p, r);
		return;
	}
	if (!result_ratelimit(db, rl, p.merchant, r))
		return;
	for (tries = 0; tries < 3; tries++)
		if ((rc = capture(db, &p, &won)) == 0 || !db_retryable(db))
			break;
	if (rc != 0) {
		result_dbfail(
		    r, db, rc, "capture payment '%lld'", (long long)q->id);
		return;
	}
	/* Show the row as it is now, whoever won. */
	if ((rc = payment_by_id(db, q->id, false, &p)) != 0) {
		result_dbfail(
		    r, db, rc, "read payment '%lld'", (long long)q->id);
		return;
	}
	if (!won) {
		not_capturable(&p, r);
		return;
	}
	r->code = 0;
	r->line = payment_json(&p);
}

/* The batch. */

/* Insert the events of the payments order[0..n). */
static int
events(struct db *db, const struct payment *p, const size_t *order, size_t n)
{
	json_t *a = json_array();
	char key[37], *s;
	size_t i;

	for (i = 0; i < n; i++) {
		s = stream_event(
		    event(&p[order[i]]), EV_CAPTURE_REQUESTED, key);
		json_array_append_new(a,
		    json_pack("{s:s, s:I, s:s}", "k", key, "id",
		        (json_int_t)p[order[i]].id, "p", s));
		free(s);
	}
	return stream_events(db, EV_CAPTURE_REQUESTED, a);
}

/*
 * One transaction: lock the rows (in id order), refuse what cannot be
 * captured, and capture the rest with their events.  0 with every result
 * set, or nonzero with nothing written.
 */
static int
batch(struct db *db, const struct ratelimit *rl, const struct preq *const *q,
    struct result *r, struct payment *p, size_t n)
{
	size_t order[BATCH], i, nv = 0;
	char *s;
	int rc;

	stream_order(q, order, n);
	s = stream_ids(q, order, n);
	rc = stream_payments(db, batch_lock_sql, s, p, n);
	free(s);
	if (rc != 0)
		return rc;
	for (i = 0; i < n; i++) {
		if (p[i].id == 0)
			not_found(q[i]->id, &r[i]);
		else if (strcmp(p[i].status, "AUTHORIZED") != 0)
			not_capturable(&p[i], &r[i]);
	}
	if (rl->limit > 0 && (rc = stream_limit(db, rl, p, r, n)) != 0)
		return rc;
	for (i = 0; i < n; i++)
		if (r[order[i]].line == NULL)
			order[nv++] = order[i];
	if (nv == 0)
		return 0;
	s = stream_ids(q, order, nv);
	if ((rc = db_exec(db, batch_capture_sql, "s", s)) == 0 &&
	    db_affected(db) != nv)
		rc = EX_SOFTWARE; /* the rows are locked: cannot happen */
	if (rc == 0)
		rc = events(db, p, order, nv);
	/* The rows as they are now, with their updated_at. */
	if (rc == 0)
		rc = stream_payments(db, batch_read_sql, s, p, n);
	free(s);
	if (rc != 0)
		return rc;
	for (i = 0; i < nv; i++)
		r[order[i]].line = payment_json(&p[order[i]]);
	return 0;
}

/*
 * A batch that fails is rolled back and its requests run one by one, so
 * each gets its own outcome.
 */
static void
run_batch(struct db *db, const struct ratelimit *rl,
    const struct preq *const *q, struct result *r, size_t n)
{
	struct payment *p = xcalloc(n, sizeof(*p));
	size_t i;
	int rc;

	if ((rc = db_begin(db)) == 0 && (rc = batch(db, rl, q, r, p, n)) == 0)
		rc = db_commit(db);
	if (rc != 0) {
		db_rollback(db);
		for (i = 0; i < n; i++) {
			json_decref(r[i].line);
			memset(&r[i], 0, sizeof(r[i]));
			run(db, rl, q[i], &r[i]);
		}
	}
	free(p);
}

static int
parse(const json_t *o, struct preq *q, char *err, size_t errlen)
{
	long long id;

	if (js_int(o, "paymentId", 1, INT64_MAX, true, &id, err, errlen) < 0)
		return -1;
	q->id = id;
	return 0;
}

static const struct stream_cmd stream_capture = {
	.action = "capture",
	.parse = parse,
	.run = run,
	.run_batch = run_batch,
	.batch = BATCH,
};

int
cmd_capture(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "concurrency", required_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	struct preq q = { 0 };
	struct ratelimit rl;
	struct result r = { 0 };
	long workers = 0;
	struct db *db;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":hC:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'C':
			if ((rc = stream_workers(optarg, &workers)) != 0)
				return rc;
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc && strcmp(argv[optind], "-") == 0) {
		if (optind + 1 < argc)
			return diag_usage(
			    "unexpected argument '%s'", argv[optind + 1]);
		return stream_run(&stream_capture, workers);
	}
	if (workers != 0)
		return diag_usage("option '--concurrency' is for '-' only");
	if (optind >= argc)
		return diag_usage("a payment id is required");
	if (optind + 1 < argc)
		return diag_usage("unexpected argument '%s'", argv[optind + 1]);
	if ((rc = payctl_parse_id(argv[optind], &q.id)) != 0)
		return rc;
	if ((rc = payctl_connect(&db)) != 0)
		return rc;
	ratelimit_conf("capture", &rl);
	run(db, &rl, &q, &r);
	rc = result_print(&r);
	db_close(db);
	return rc;
}
