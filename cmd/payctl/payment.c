/*
 * payment: reading a payment row, the JSON every subcommand prints for it,
 * and the failures they share (error objects, database errors, the rate
 * limit).
 */
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "payctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char by_id[] =
    "SELECT " PAYMENT_COLUMNS " FROM payment WHERE payment_id = ?";
static const char by_id_lock[] =
    "SELECT " PAYMENT_COLUMNS " FROM payment WHERE payment_id = ? FOR UPDATE";
static const char by_key[] =
    "SELECT " PAYMENT_COLUMNS " FROM payment WHERE merchant_id = ?"
    " AND idempotency_key = ?";

static void
copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

void
payment_read(struct db *db, unsigned c, struct payment *p)
{
	memset(p, 0, sizeof(*p));
	p->id = db_int(db, c);
	copy(p->merchant, sizeof(p->merchant), db_str(db, c + 1));
	copy(p->key, sizeof(p->key), db_str(db, c + 2));
	p->amount = db_int(db, c + 3);
	copy(p->currency, sizeof(p->currency), db_str(db, c + 4));
	p->auto_capture = db_int(db, c + 5) != 0;
	copy(p->status, sizeof(p->status), db_str(db, c + 6));
	copy(p->approval, sizeof(p->approval), db_str(db, c + 7));
	copy(p->txn, sizeof(p->txn), db_str(db, c + 8));
	copy(p->code, sizeof(p->code), db_str(db, c + 9));
	copy(p->message, sizeof(p->message), db_str(db, c + 10));
	p->captured = db_int(db, c + 11);
	p->refunded = db_int(db, c + 12);
	copy(p->created_at, sizeof(p->created_at), db_str(db, c + 13));
	copy(p->updated_at, sizeof(p->updated_at), db_str(db, c + 14));
	p->lease_expired = db_int(db, c + 15) != 0;
}

/* The one row of a query run by the caller, or p->id == 0. */
static int
one(struct db *db, struct payment *p)
{
	int rc;

	memset(p, 0, sizeof(*p));
	if ((rc = db_next(db)) < 0)
		return -rc;
	if (rc == 1) {
		payment_read(db, 0, p);
		while (db_next(db) == 1)
			;
	}
	return 0;
}

int
payment_by_id(struct db *db, int64_t id, bool lock, struct payment *p)
{
	int rc;

	if ((rc = db_query(db, lock ? by_id_lock : by_id, "i", id)) != 0)
		return rc;
	return one(db, p);
}

int
payment_by_key(
    struct db *db, const char *merchant, const char *key, struct payment *p)
{
	int rc;

	if ((rc = db_query(db, by_key, "ss", merchant, key)) != 0)
		return rc;
	return one(db, p);
}

/* A string column as JSON: null when empty (not set). */
static json_t *
str_or_null(const char *s)
{
	return *s ? json_string(s) : json_null();
}

json_t *
payment_brief(const struct payment *p, bool replayed)
{
	json_t *o = json_object();

	json_object_set_new(o, "payment_id", json_integer(p->id));
	json_object_set_new(o, "status", json_string(p->status));
	json_object_set_new(o, "merchant_id", json_string(p->merchant));
	json_object_set_new(o, "idempotency_key", json_string(p->key));
	json_object_set_new(o, "amount", json_integer(p->amount));
	json_object_set_new(o, "currency", json_string(p->currency));
	json_object_set_new(o, "approval_number", str_or_null(p->approval));
	json_object_set_new(o, "transaction_id", str_or_null(p->txn));
	json_object_set_new(o, "response_code", str_or_null(p->code));
	json_object_set_new(o, "response_message", str_or_null(p->message));
	json_object_set_new(o, "created_at", json_string(p->created_at));
	json_object_set_new(o, "replayed", json_boolean(replayed));
	return o;
}

json_t *
payment_json(const struct payment *p)
{
	json_t *o = payment_brief(p, false);

	json_object_del(o, "replayed");
	json_object_set_new(o, "capture", json_boolean(p->auto_capture));
	json_object_set_new(o, "captured_amount", json_integer(p->captured));
	json_object_set_new(o, "refunded_amount", json_integer(p->refunded));
	json_object_set_new(o, "updated_at", json_string(p->updated_at));
	return o;
}

int
payctl_parse_id(const char *s, int64_t *id)
{
	long long v;

	if (conf_parse_int(s, 1, INT64_MAX, &v) != 0 || *s == '+')
		return diag_usage("'%s' is not a payment id (1 to %lld)", s,
		    (long long)INT64_MAX);
	*id = v;
	return 0;
}

int
payctl_fail(int code, const char *error, json_t *extra, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	diag_warn("%s", msg);
	o = json_pack("{s:s, s:s}", "error", error, "message", msg);
	if (o == NULL)
		o = json_pack(
		    "{s:s, s:s}", "error", error, "message", "(not UTF-8)");
	if (extra != NULL) {
		json_object_update(o, extra);
		json_decref(extra);
	}
	if (js_print(o) != 0 && code == 0)
		code = EX_IOERR;
	return code;
}

int
payctl_dbfail(struct db *db, int code, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return payctl_fail(code ? code : EX_SOFTWARE, "DATABASE_ERROR", NULL,
	    "%s: %s", what, db_error(db));
}

int
payctl_ratelimit(struct db *db, const char *action, const char *merchant)
{
	struct ratelimit rl;
	long long granted, after;
	int rc;

	ratelimit_conf(action, &rl);
	if (rl.limit <= 0)
		return 0;
	if ((rc = ratelimit_take(db, &rl, merchant, 1, &granted, &after)) != 0)
		return payctl_dbfail(
		    db, rc, "%s rate limit of merchant '%s'", action, merchant);
	if (granted == 1)
		return 0;
	return payctl_fail(EX_TEMPFAIL, "RATE_LIMITED",
	    json_pack("{s:s, s:s, s:I, s:I}", "action", action, "merchant_id",
	        merchant, "limit", (json_int_t)rl.limit, "retry_after_seconds",
	        (json_int_t)after),
	    "%s rate limit of merchant '%s': %lld per %s reached, retry in "
	    "%llds",
	    action, merchant, rl.limit, conf_str("rate_limit_window"), after);
}
