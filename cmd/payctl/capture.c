/*
 * payctl capture: request the capture of a payment authorized with
 * --no-capture.  AUTHORIZED becomes CAPTURE_REQUESTED with its outbox
 * event in one transaction; the update is guarded by the status, so of two
 * concurrent captures exactly one wins and the other is refused.
 */
#include "diag.h"
#include "js.h"
#include "outbox.h"
#include "payctl.h"
#include "topics.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] = "usage: payctl capture [-h] id\n";

static const char capture_sql[] =
    "UPDATE payment SET status = 'CAPTURE_REQUESTED'"
    " WHERE payment_id = ? AND status = 'AUTHORIZED'";

static int
not_capturable(const struct payment *p)
{
	return payctl_fail(EX_DATAERR, "INVALID_STATE",
	    json_pack("{s:I, s:s}", "payment_id", (json_int_t)p->id, "status",
	        p->status),
	    "payment '%lld': status is %s, not AUTHORIZED", (long long)p->id,
	    p->status);
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
	ev = json_pack("{s:I, s:s, s:s, s:I, s:s, s:s, s:s}", "paymentId",
	    (json_int_t)p->id, "status", "CAPTURE_REQUESTED", "merchantId",
	    p->merchant, "amount", (json_int_t)p->amount, "currency",
	    p->currency, "approvalNumber", p->approval, "transactionId",
	    p->txn);
	rc = outbox_insert(db, EV_CAPTURE_REQUESTED, p->id, ev, NULL);
	json_decref(ev);
	if (rc == 0 && (rc = db_commit(db)) == 0)
		*won = true;
out:
	if (rc != 0)
		db_rollback(db);
	return rc;
}

int
cmd_capture(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct payment p;
	struct db *db;
	int64_t id;
	bool won = false;
	int c, rc, tries;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind >= argc)
		return diag_usage("a payment id is required");
	if (optind + 1 < argc)
		return diag_usage("unexpected argument '%s'", argv[optind + 1]);
	if ((rc = payctl_parse_id(argv[optind], &id)) != 0)
		return rc;
	if ((rc = payctl_connect(&db)) != 0)
		return rc;
	if ((rc = payment_by_id(db, id, false, &p)) != 0) {
		rc =
		    payctl_dbfail(db, rc, "read payment '%lld'", (long long)id);
		goto out;
	}
	if (p.id == 0) {
		rc = payctl_fail(EX_DATAERR, "NOT_FOUND",
		    json_pack("{s:I}", "payment_id", (json_int_t)id),
		    "payment '%lld': not found", (long long)id);
		goto out;
	}
	if (strcmp(p.status, "AUTHORIZED") != 0) {
		rc = not_capturable(&p);
		goto out;
	}
	if ((rc = payctl_ratelimit(db, "capture", p.merchant)) != 0)
		goto out;
	for (tries = 0; tries < 3; tries++)
		if ((rc = capture(db, &p, &won)) == 0 || !db_retryable(db))
			break;
	if (rc != 0) {
		rc = payctl_dbfail(
		    db, rc, "capture payment '%lld'", (long long)id);
		goto out;
	}
	/* Show the row as it is now, whoever won. */
	if ((rc = payment_by_id(db, id, false, &p)) != 0) {
		rc =
		    payctl_dbfail(db, rc, "read payment '%lld'", (long long)id);
		goto out;
	}
	if (!won)
		rc = not_capturable(&p);
	else
		rc = js_print(payment_json(&p));
out:
	db_close(db);
	return rc;
}
