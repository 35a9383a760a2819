/*
 * payctl show: one payment as a JSON object, with its settlement, its
 * refund requests and the state of its outbox events, so an operator sees
 * at once how far it got.
 */
#include "diag.h"
#include "js.h"
#include "payctl.h"

#include <getopt.h>
#include <stdio.h>

static const char usage_text[] = "usage: payctl show [-h] id\n";

#define ISO(col) "DATE_FORMAT(" col ", '%Y-%m-%dT%H:%i:%s.%fZ')"

static const char settlement_sql[] =
    "SELECT id, amount, status, pg_transaction_id, pg_response_code,"
    " retry_count, " ISO("requested_at") ", " ISO(
        "completed_at") " FROM settlement_request WHERE payment_id = ?";
static const char refunds_sql[] =
    "SELECT id, amount, status, reason, pg_cancel_transaction_id,"
    " pg_response_code, retry_count, " ISO("requested_at") ", " ISO(
        "completed_at") " FROM refund_request WHERE payment_id = ?"
                        " ORDER BY id";
static const char events_sql[] =
    "SELECT event_id, event_key, event_type, status, attempts, last_error, " ISO(
        "created_at") ", " ISO("published_at") " FROM outbox_event WHERE aggregate_id = ? ORDER BY event_id";

static const char ledger_sql[] =
    "SELECT entry_id, event_key, account, side, amount, currency, " ISO(
        "occurred_at") " FROM ledger_entry WHERE payment_id = ? ORDER BY entry_id";

/* Column col of the current row as a JSON string, or null. */
static json_t *
col(struct db *db, unsigned c)
{
	const char *s = db_str(db, c);

	return s ? json_string(s) : json_null();
}

static json_t *
num(struct db *db, unsigned c)
{
	return db_null(db, c) ? json_null() : json_integer(db_int(db, c));
}

static int
settlement(struct db *db, int64_t id, json_t *o)
{
	json_t *s = json_null();
	int rc;

	if ((rc = db_query(db, settlement_sql, "i", id)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		json_decref(s);
		s = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id",
		    num(db, 0), "amount", num(db, 1), "status", col(db, 2),
		    "pg_transaction_id", col(db, 3), "response_code",
		    col(db, 4), "retry_count", num(db, 5), "requested_at",
		    col(db, 6), "completed_at", col(db, 7));
	}
	json_object_set_new(o, "settlement", s);
	return rc < 0 ? -rc : 0;
}

static int
refunds(struct db *db, int64_t id, json_t *o)
{
	json_t *a = json_array();
	int rc;

	json_object_set_new(o, "refunds", a);
	if ((rc = db_query(db, refunds_sql, "i", id)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1)
		json_array_append_new(a,
		    json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
		        "refund_id", num(db, 0), "amount", num(db, 1), "status",
		        col(db, 2), "reason", col(db, 3),
		        "pg_cancel_transaction_id", col(db, 4), "response_code",
		        col(db, 5), "retry_count", num(db, 6), "requested_at",
		        col(db, 7), "completed_at", col(db, 8)));
	return rc < 0 ? -rc : 0;
}

static int
events(struct db *db, int64_t id, json_t *o)
{
	json_t *a = json_array();
	int rc;

	json_object_set_new(o, "events", a);
	if ((rc = db_query(db, events_sql, "i", id)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1)
		json_array_append_new(a,
		    json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
		        "event_id", num(db, 0), "event_key", col(db, 1),
		        "event_type", col(db, 2), "status", col(db, 3),
		        "attempts", num(db, 4), "last_error", col(db, 5),
		        "created_at", col(db, 6), "published_at", col(db, 7)));
	return rc < 0 ? -rc : 0;
}

static int
ledger(struct db *db, int64_t id, json_t *o)
{
	json_t *a = json_array();
	int rc;

	json_object_set_new(o, "ledger", a);
	if ((rc = db_query(db, ledger_sql, "i", id)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1)
		json_array_append_new(a,
		    json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "entry_id",
		        num(db, 0), "event_key", col(db, 1), "account",
		        col(db, 2), "side", col(db, 3), "amount", num(db, 4),
		        "currency", col(db, 5), "occurred_at", col(db, 6)));
	return rc < 0 ? -rc : 0;
}

int
cmd_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct payment p;
	struct db *db;
	int64_t id;
	json_t *o;
	int c, rc;

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
	if ((rc = payment_by_id(db, id, false, &p)) != 0)
		goto fail;
	if (p.id == 0) {
		diag_warn("payment '%lld': not found", (long long)id);
		db_close(db);
		return EX_MISMATCH;
	}
	o = payment_json(&p);
	if ((rc = settlement(db, id, o)) != 0 ||
	    (rc = refunds(db, id, o)) != 0 || (rc = events(db, id, o)) != 0 ||
	    (rc = ledger(db, id, o)) != 0) {
		json_decref(o);
		goto fail;
	}
	db_close(db);
	return js_print(o);
fail:
	rc = payctl_dbfail(db, rc, "read payment '%lld'", (long long)id);
	db_close(db);
	return rc;
}
