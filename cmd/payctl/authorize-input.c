/*
 * authorize-input: the request lines of payctl authorize -, checked
 * field by field.
 */
#include "diag.h"
#include "js.h"
#include "stream.h"
#include "valid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
sreq_free(struct sreq *r)
{
	json_decref(r->rid);
	free(r->body);
	free(r->hc.buf);
	free(r);
}

struct sreq *
sreq_parse(
    long lineno, const char *s, char *err, size_t errlen, json_t **rid_out)
{
	struct sreq *r = xcalloc(1, sizeof(*r));
	const char *merchant, *key, *currency = "KRW";
	json_error_t jerr;
	json_t *o, *rid, *cap;
	long long amount;

	r->line = lineno;
	o = json_loads(s, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(o)) {
		snprintf(err, errlen, "not a JSON object%s%s", o ? "" : ": ",
		    o ? "" : jerr.text);
		goto bad;
	}
	rid = json_object_get(o, "requestId");
	if (json_is_integer(rid) ||
	    (json_is_string(rid) && valid_id(json_string_value(rid), 64)))
		r->rid = json_incref(rid);
	else if (rid != NULL) {
		snprintf(err, errlen,
		    "'requestId' must be an integer or "
		    "1 to 64 printable characters");
		goto bad;
	}
	if (js_str(o, "merchantId", VALID_MERCHANT_MAX, true, &merchant, err,
	        errlen) < 0 ||
	    js_int(o, "amount", 1, VALID_AMOUNT_MAX, true, &amount, err,
	        errlen) < 0 ||
	    js_str(o, "currency", 3, false, &currency, err, errlen) < 0 ||
	    js_str(o, "idempotencyKey", VALID_KEY_MAX, true, &key, err,
	        errlen) < 0)
		goto bad;
	cap = json_object_get(o, "capture");
	if (cap != NULL && !json_is_boolean(cap)) {
		snprintf(err, errlen, "'capture' must be true or false");
		goto bad;
	}
	if (!valid_id(merchant, VALID_MERCHANT_MAX) ||
	    !valid_id(key, VALID_KEY_MAX)) {
		snprintf(err, errlen,
		    "'%s' must be printable characters "
		    "without spaces",
		    valid_id(merchant, VALID_MERCHANT_MAX) ? "idempotencyKey"
		                                           : "merchantId");
		goto bad;
	}
	if (!valid_currency(currency)) {
		snprintf(err, errlen,
		    "'currency' must be an ISO 4217 currency code");
		goto bad;
	}
	memcpy(r->merchant, merchant, strlen(merchant) + 1);
	memcpy(r->key, key, strlen(key) + 1);
	memcpy(r->currency, currency, 4);
	r->a.merchant = r->merchant;
	r->a.key = r->key;
	r->a.currency = r->currency;
	r->a.amount = amount;
	r->a.capture = cap == NULL || json_is_true(cap);
	json_decref(o);
	return r;
bad:
	json_decref(o);
	*rid_out = r->rid;
	r->rid = NULL;
	sreq_free(r);
	return NULL;
}
