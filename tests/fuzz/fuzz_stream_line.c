/*
 * Fuzz the request lines of payctl authorize -: a line is either a
 * request within the flags' limits or refused with a reason, and a
 * refused line hands back its requestId only when it was a good one.
 */
#include "stream.h"
#include "valid.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1), err[256] = "";
	json_t *rid = NULL;
	struct sreq *r;
	int64_t amount;

	memcpy(line, data, size);
	line[size] = '\0';
	r = sreq_parse(7, line, err, sizeof(err), &rid);
	if (r == NULL) {
		if (err[0] == '\0')
			abort();
		if (rid != NULL && !json_is_integer(rid) &&
		    !(json_is_string(rid) &&
		        valid_id(json_string_value(rid), 64)))
			abort();
		json_decref(rid);
	} else {
		amount = r->a.amount;
		if (r->line != 7 || rid != NULL ||
		    !valid_id(r->a.merchant, VALID_MERCHANT_MAX) ||
		    !valid_id(r->a.key, VALID_KEY_MAX) ||
		    !valid_currency(r->a.currency) || amount < 1 ||
		    amount > VALID_AMOUNT_MAX)
			abort();
		sreq_free(r);
	}
	free(line);
	return 0;
}
