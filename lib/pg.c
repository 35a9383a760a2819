/*
 * pg: see pg.h.
 */
#include "pg.h"
#include "conf.h"
#include "diag.h"
#include "js.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const paths[] = {
	[PG_AUTHORIZE] = "/v1/authorize",
	[PG_SETTLE] = "/v1/settle",
	[PG_REFUND] = "/v1/refund",
};

char *
pg_url(enum pg_op op)
{
	const char *base = conf_str("pg_url");
	size_t n = strlen(base);

	/* Tolerate a trailing slash in the setting. */
	while (n > 0 && base[n - 1] == '/')
		n--;
	return xasprintf("%.*s%s", (int)n, base, paths[op]);
}

char *
pg_body(enum pg_op op, const struct pg_request *q)
{
	json_t *o;
	char *s;

	if (op == PG_AUTHORIZE)
		o = json_pack("{s:s, s:I, s:s, s:s}", "merchantId", q->merchant,
		    "amount", (json_int_t)q->amount, "currency", q->currency,
		    "idempotencyKey", q->key);
	else
		o = json_pack("{s:I, s:s, s:I, s:s, s:s}", "paymentId",
		    (json_int_t)q->payment_id, "transactionId", q->txn,
		    "amount", (json_int_t)q->amount, "currency", q->currency,
		    "idempotencyKey", q->key);
	if (o != NULL && op == PG_REFUND)
		json_object_set_new(o, "reason", json_string(q->reason));
	if (o == NULL)
		diag_die(EX_SOFTWARE, "cannot build a gateway request");
	s = js_text(o);
	json_decref(o);
	return s;
}

static enum pg_outcome __attribute__((format(printf, 4, 5)))
error(struct pg_result *res, int code, bool failure, const char *fmt, ...)
{
	va_list ap;

	res->outcome = PG_ERROR;
	res->exit_code = code;
	res->breaker_failure = failure;
	va_start(ap, fmt);
	vsnprintf(res->message, sizeof(res->message), fmt, ap);
	va_end(ap);
	return PG_ERROR;
}

/* Copy field key of o into buf; false if absent, not a string or too long. */
static bool
field(const json_t *o, const char *key, char *buf, size_t len)
{
	const char *s = js_getstr(o, key, NULL);

	if (s == NULL || *s == '\0' || strlen(s) >= len)
		return false;
	memcpy(buf, s, strlen(s) + 1);
	return true;
}

enum pg_outcome
pg_classify(
    enum pg_op op, int rc, const struct http_reply *r, struct pg_result *res)
{
	json_t *o;
	const char *status;
	enum pg_outcome out;

	memset(res, 0, sizeof(*res));
	res->http_status = r->status;
	res->ms = r->ms;
	if (rc != 0)
		return error(res, rc, true, "no answer: %s", r->err);
	if (r->status >= 500)
		return error(
		    res, EX_TEMPFAIL, true, "answered HTTP %ld", r->status);
	o = json_loadb(
	    r->body ? r->body : "", r->len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return error(res, EX_UNAVAILABLE, true,
		    "answered something that is not JSON");
	}
	status = js_getstr(o, "status", "");
	field(o, "responseCode", res->code, sizeof(res->code));
	field(o, "message", res->message, sizeof(res->message));
	if (r->status != 200) {
		/* A 4xx is our request's fault, not the gateway's health. */
		out = error(res, EX_SOFTWARE, false, "refused the request: %s",
		    res->message[0] ? res->message : "no message");
	} else if (strcmp(status, "FAILED") == 0 && res->code[0] != '\0') {
		res->outcome = out = PG_DECLINED;
	} else if (strcmp(status, "SUCCESS") != 0) {
		out = error(res, EX_UNAVAILABLE, true,
		    "answered an unknown status '%.32s'", status);
	} else if (op == PG_AUTHORIZE &&
	    !(field(
	          o, "approvalNumber", res->approval, sizeof(res->approval)) &&
	        field(o, "transactionId", res->txn, sizeof(res->txn)))) {
		out = error(res, EX_UNAVAILABLE, true,
		    "approved without approvalNumber and transactionId");
	} else if (op == PG_SETTLE &&
	    !field(o, "transactionId", res->txn, sizeof(res->txn))) {
		out = error(res, EX_UNAVAILABLE, true,
		    "settled without a transactionId");
	} else if (op == PG_REFUND &&
	    !field(o, "cancelTransactionId", res->cancel_txn,
	        sizeof(res->cancel_txn))) {
		out = error(res, EX_UNAVAILABLE, true,
		    "refunded without a cancelTransactionId");
	} else {
		res->outcome = out = PG_APPROVED;
	}
	json_decref(o);
	return out;
}

void
pg_refused(struct pg_result *res, const char *breaker)
{
	memset(res, 0, sizeof(*res));
	res->outcome = PG_ERROR;
	res->exit_code = EX_TEMPFAIL;
	snprintf(res->code, sizeof(res->code), "CIRCUIT_OPEN");
	snprintf(res->message, sizeof(res->message),
	    "circuit breaker '%s' is open: the gateway was not called",
	    breaker);
}

enum pg_outcome
pg_call(struct http *h, enum pg_op op, const struct pg_request *req,
    struct pg_result *res)
{
	struct http_reply r;
	char *url = pg_url(op), *body = pg_body(op, req);
	enum pg_outcome out;
	int rc;

	rc = http_post_json(h, url, body, &r);
	out = pg_classify(op, rc, &r, res);
	http_free(&r);
	free(url);
	free(body);
	return out;
}
