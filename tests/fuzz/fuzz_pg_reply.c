/*
 * Fuzz the gateway reply classification: whatever a gateway answers, the
 * outcome is one of three and an approval always carries its ids.
 */
#include "conf.h"
#include "diag.h"
#include "pg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 200, 200, 200, 400, 404, 500, 503, 0 };
	struct http_reply r;
	struct pg_result res;
	enum pg_op op;
	enum pg_outcome out;

	if (size < 1)
		return 0;
	op = (enum pg_op)(data[0] % 3);
	memset(&r, 0, sizeof(r));
	r.status = statuses[(data[0] >> 2) % 8];
	r.body = malloc(size);
	memcpy(r.body, data + 1, size - 1);
	r.body[size - 1] = '\0';
	r.len = size - 1;
	out = pg_classify(op, r.status == 0 ? EX_UNAVAILABLE : 0, &r, &res);
	if (out == PG_APPROVED) {
		if (op == PG_AUTHORIZE &&
		    (res.approval[0] == '\0' || res.txn[0] == '\0'))
			abort();
		if (op == PG_REFUND && res.cancel_txn[0] == '\0')
			abort();
		if (r.status != 200)
			abort();
	}
	if (out == PG_ERROR && res.exit_code != EX_UNAVAILABLE &&
	    res.exit_code != EX_TEMPFAIL && res.exit_code != EX_SOFTWARE)
		abort();
	if (strlen(res.message) >= sizeof(res.message) ||
	    strlen(res.code) >= sizeof(res.code))
		abort();
	free(r.body);
	return 0;
}
