/*
 * Fuzz what the workers do with a message consumed from Kafka before any
 * database is involved: read its fields strictly, parse its occurredAt,
 * and, when it cannot be applied, build its dead-letter record.  The
 * record must be JSON that carries the message exactly: as a string, or
 * when it is not UTF-8, as base64 that decodes to the same bytes.
 */
#include "consumer.h"
#include "diag.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
b64val(char c)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(tab, c) : NULL;

	return p ? (int)(p - tab) : -1;
}

/* Decode s into out (room for len bytes); the decoded length, or -1. */
static long
unbase64(const char *s, unsigned char *out, size_t len)
{
	size_t n = strlen(s), i, o = 0;
	int v[4], k;

	if (n % 4 != 0)
		return -1;
	for (i = 0; i < n; i += 4) {
		for (k = 0; k < 4; k++)
			v[k] = s[i + k] == '=' ? 0 : b64val(s[i + k]);
		if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0)
			return -1;
		if (o < len)
			out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (s[i + 2] != '=' && o < len)
			out[o++] =
			    (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (s[i + 3] != '=' && o < len)
			out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	return (long)o;
}

static void
check_time(const char *s)
{
	char sql[27], iso[32], again[27];

	if (consumer_sqltime(s, sql) != 0)
		return;
	if (strlen(sql) != 26 || sql[10] != ' ' || sql[19] != '.')
		abort();
	consumer_isotime(sql, iso);
	if (consumer_sqltime(iso, again) != 0 || strcmp(sql, again) != 0)
		abort();
}

static void
check_fields(json_t *o)
{
	struct consumer_error e;
	const char *s;
	long long n;

	if (consumer_int(o, "paymentId", 1, INT64_MAX, &n, &e) == 0 && n < 1)
		abort();
	if (consumer_int(o, "amount", 1, 1000000000000000LL, &n, &e) == 0 &&
	    (n < 1 || n > 1000000000000000LL))
		abort();
	if (consumer_str(o, "currency", 3, &s, &e) == 0 &&
	    (strlen(s) == 0 || strlen(s) > 3))
		abort();
	if (consumer_str(o, "eventId", 36, &s, &e) == 0)
		(void)consumer_uuid_ok(s);
	if (consumer_str(o, "occurredAt", 40, &s, &e) == 0)
		check_time(s);
}

static void
check_record(const uint8_t *data, size_t size)
{
	struct consumer_msg m = { .topic = "payment.captured",
		.partition = 3,
		.offset = 42,
		.key = (const char *)data,
		.keylen = size < 16 ? size : 16,
		.payload = (const char *)data,
		.len = size };
	struct consumer_error e;
	json_t *r, *back;
	const char *p, *b64;
	unsigned char *dec;
	char *text;

	consumer_reject(&e, CE_NOT_JSON, "fuzz");
	r = consumer_dlq_record(&m, "fuzz", "fuzz-group", &e);
	if (r == NULL || (text = json_dumps(r, JSON_COMPACT)) == NULL)
		abort();
	/* Valid JSON, \u0000 included (a key or payload may hold NULs). */
	if ((back = json_loads(text, JSON_ALLOW_NUL, NULL)) == NULL)
		abort();
	p = json_string_value(json_object_get(back, "payload"));
	b64 = json_string_value(json_object_get(back, "payloadBase64"));
	if (p != NULL) {
		if (json_string_length(json_object_get(back, "payload")) !=
		        size ||
		    memcmp(p, data, size) != 0)
			abort();
	} else {
		dec = xmalloc(size + 1);
		if (b64 == NULL || unbase64(b64, dec, size + 1) != (long)size ||
		    memcmp(dec, data, size) != 0)
			abort();
		free(dec);
	}
	free(text);
	json_decref(back);
	json_decref(r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *o;
	char *s;

	s = xmalloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	check_time(s);
	free(s);
	o = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	if (o != NULL && json_is_object(o))
		check_fields(o);
	json_decref(o);
	check_record(data, size);
	return 0;
}
