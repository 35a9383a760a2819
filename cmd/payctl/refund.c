/*
 * payctl refund: request a full or partial refund of a captured payment.
 * In one transaction, with the payment row locked: check that the refunds
 * requested so far plus this one stay within the captured amount, move the
 * payment to REFUND_REQUESTED (guarded by its status), and write the
 * refund_request row and its PAYMENT_REFUND_REQUESTED event.  The refund
 * worker does the rest.
 */
#include "diag.h"
#include "js.h"
#include "outbox.h"
#include "payctl.h"
#include "topics.h"
#include "valid.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
    "usage: payctl refund [-h] [-a amount] -r reason id\n";

/*
 * Every refund not given up for good holds its amount: PENDING and SUCCESS
 * ones, and FAILED ones, which the refund worker retries.
 */
static const char reserved_sql[] =
    "SELECT COALESCE(SUM(amount), 0) FROM refund_request"
    " WHERE payment_id = ? AND status <> 'DEAD'";
static const char request_sql[] =
    "UPDATE payment SET status = 'REFUND_REQUESTED' WHERE payment_id = ?"
    " AND status IN ('CAPTURED', 'PARTIALLY_REFUNDED')";
static const char insert_sql[] =
    "INSERT INTO refund_request (payment_id, amount, currency, reason, status)"
    " VALUES (?, ?, ?, ?, 'PENDING')";

struct req {
	int64_t id;
	int64_t amount; /* 0: what is left */
	const char *reason;
};

/* Refusals print their error; *printed tells the caller not to again. */
static int
refund(struct db *db, const struct req *q, bool *printed)
{
	struct payment p;
	int64_t reserved, left, amount, refund_id;
	json_t *ev;
	int rc;

	if ((rc = payment_by_id(db, q->id, true, &p)) != 0)
		return rc;
	*printed = true;
	if (p.id == 0)
		return payctl_fail(EX_DATAERR, "NOT_FOUND",
		    json_pack("{s:I}", "payment_id", (json_int_t)q->id),
		    "payment '%lld': not found", (long long)q->id);
	if (strcmp(p.status, "CAPTURED") != 0 &&
	    strcmp(p.status, "PARTIALLY_REFUNDED") != 0)
		return payctl_fail(EX_DATAERR, "INVALID_STATE",
		    json_pack("{s:I, s:s}", "payment_id", (json_int_t)p.id,
		        "status", p.status),
		    "payment '%lld': status is %s, not CAPTURED or "
		    "PARTIALLY_REFUNDED",
		    (long long)p.id, p.status);
	*printed = false;
	if ((rc = db_query(db, reserved_sql, "i", p.id)) != 0)
		return rc;
	if ((rc = db_next(db)) != 1)
		return rc < 0 ? -rc : EX_SOFTWARE;
	reserved = db_int(db, 0);
	while (db_next(db) == 1)
		;
	left = p.captured - reserved;
	amount = q->amount ? q->amount : left;
	*printed = true;
	if (amount <= 0 || amount > left)
		return payctl_fail(EX_DATAERR, "OVER_REFUND",
		    json_pack("{s:I, s:I, s:I, s:I}", "payment_id",
		        (json_int_t)p.id, "captured_amount",
		        (json_int_t)p.captured, "refundable_amount",
		        (json_int_t)(left > 0 ? left : 0), "requested_amount",
		        (json_int_t)amount),
		    "payment '%lld': refund of %lld %s exceeds the %lld %s "
		    "left to refund",
		    (long long)p.id, (long long)amount, p.currency,
		    (long long)(left > 0 ? left : 0), p.currency);
	if ((rc = payctl_ratelimit(db, "refund", p.merchant)) != 0)
		return rc;
	*printed = false;
	if ((rc = db_exec(db, request_sql, "i", p.id)) != 0)
		return rc;
	if (db_affected(db) != 1) {
		/* Cannot happen while the row is locked. */
		*printed = true;
		return payctl_fail(EX_TEMPFAIL, "CONCURRENT_CHANGE", NULL,
		    "payment '%lld': changed while locked; retry",
		    (long long)p.id);
	}
	if ((rc = db_exec(db, insert_sql, "iiss", p.id, amount, p.currency,
	         q->reason)) != 0)
		return rc;
	refund_id = (int64_t)db_insert_id(db);
	ev = json_pack("{s:I, s:s, s:s, s:I, s:s, s:I, s:s, s:s}", "paymentId",
	    (json_int_t)p.id, "status", "REFUND_REQUESTED", "merchantId",
	    p.merchant, "amount", (json_int_t)amount, "currency", p.currency,
	    "refundId", (json_int_t)refund_id, "reason", q->reason,
	    "transactionId", p.txn);
	rc = outbox_insert(db, EV_REFUND_REQUESTED, p.id, ev, NULL);
	json_decref(ev);
	if (rc != 0 || (rc = db_commit(db)) != 0)
		return rc;
	*printed = true;
	return js_print(json_pack(
	    "{s:I, s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "refund_id",
	    (json_int_t)refund_id, "payment_id", (json_int_t)p.id, "status",
	    "REFUND_REQUESTED", "merchant_id", p.merchant, "currency",
	    p.currency, "refund_amount", (json_int_t)amount, "captured_amount",
	    (json_int_t)p.captured, "refundable_amount",
	    (json_int_t)(left - amount), "reason", q->reason));
}

int
cmd_refund(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "amount", required_argument, NULL, 'a' },
		{ "reason", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	struct req q = { 0 };
	const char *amount = NULL;
	bool printed;
	struct db *db;
	int c, rc, tries;

	while ((c = getopt_long(argc, argv, ":ha:r:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'a':
			amount = optarg;
			break;
		case 'r':
			q.reason = optarg;
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind >= argc)
		return diag_usage("a payment id is required");
	if (optind + 1 < argc)
		return diag_usage("unexpected argument '%s'", argv[optind + 1]);
	if ((rc = payctl_parse_id(argv[optind], &q.id)) != 0)
		return rc;
	if (amount != NULL && !valid_amount(amount, &q.amount))
		return diag_usage("option '--amount': '%s' is not a whole "
		                  "number from 1 to 10^15",
		    amount);
	if (q.reason == NULL)
		return diag_usage("option '--reason' is required");
	if (!valid_text(q.reason, VALID_REASON_MAX))
		return diag_usage("option '--reason': must be 1 to %d "
		                  "characters of UTF-8 text without control "
		                  "characters",
		    VALID_REASON_MAX);
	if ((rc = payctl_connect(&db)) != 0)
		return rc;
	for (tries = 0; tries < 3; tries++) {
		printed = false;
		if ((rc = db_begin(db)) == 0)
			rc = refund(db, &q, &printed);
		if (rc != 0 || !printed)
			db_rollback(db);
		if (rc == 0 || printed || !db_retryable(db))
			break;
	}
	if (rc != 0 && !printed)
		rc = payctl_dbfail(
		    db, rc, "refund payment '%lld'", (long long)q.id);
	db_close(db);
	return rc;
}
