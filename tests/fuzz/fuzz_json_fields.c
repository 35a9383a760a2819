/*
 * Fuzz the strict JSON field readers used on every outside input: a field
 * read successfully is within its declared limits.
 */
#include "diag.h"
#include "js.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *o =
	    json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	const char *s;
	long long n;
	char err[128];

	if (o == NULL)
		return 0;
	if (js_str(o, "merchantId", 32, true, &s, err, sizeof(err)) == 0 &&
	    (strlen(s) == 0 || strlen(s) > 32))
		abort();
	if (js_int(o, "amount", 1, 1000000000000000LL, true, &n, err,
	        sizeof(err)) == 0 &&
	    (n < 1 || n > 1000000000000000LL))
		abort();
	free(js_text(o));
	json_decref(o);
	return 0;
}
