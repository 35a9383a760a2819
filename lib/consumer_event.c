/*
 * consumer: the pure helpers of consumer.h: event fields, keys, backoff,
 * timestamps and dead-letter records.
 */
#include "consumer.h"
#include "diag.h"
#include "outbox.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
consumer_reject(
    struct consumer_error *e, const char *type, const char *fmt, ...)
{
	va_list ap;

	snprintf(e->type, sizeof(e->type), "%s", type);
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return CONSUMER_REJECT;
}

static int
missing(const json_t *v, const char *key, struct consumer_error *e)
{
	if (v != NULL && !json_is_null(v))
		return 0;
	return consumer_reject(e, CE_MISSING_FIELD, "'%s' is missing", key);
}

int
consumer_int(const json_t *o, const char *key, long long min, long long max,
    long long *out, struct consumer_error *e)
{
	const json_t *v = json_object_get(o, key);
	long long n;

	if (missing(v, key, e) != 0)
		return CONSUMER_REJECT;
	if (!json_is_integer(v))
		return consumer_reject(
		    e, CE_BAD_FIELD, "'%s' must be an integer", key);
	n = json_integer_value(v);
	if (n < min || n > max)
		return consumer_reject(e, CE_BAD_FIELD,
		    "'%s' must be %lld to %lld, not %lld", key, min, max, n);
	*out = n;
	return 0;
}

int
consumer_str(const json_t *o, const char *key, size_t maxlen, const char **out,
    struct consumer_error *e)
{
	const json_t *v = json_object_get(o, key);
	size_t n;

	if (missing(v, key, e) != 0)
		return CONSUMER_REJECT;
	if (!json_is_string(v))
		return consumer_reject(
		    e, CE_BAD_FIELD, "'%s' must be a string", key);
	n = json_string_length(v);
	if (n == 0 || n > maxlen || strlen(json_string_value(v)) != n)
		return consumer_reject(e, CE_BAD_FIELD,
		    "'%s' must be 1 to %zu characters", key, maxlen);
	*out = json_string_value(v);
	return 0;
}

bool
consumer_uuid_ok(const char *s)
{
	size_t i;

	if (s == NULL || strlen(s) != 36)
		return false;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	while (n-- > 0)
		h = (h ^ *b++) * 1099511628211ULL;
	return h;
}

void
consumer_offset_key(
    const char *topic, int32_t partition, int64_t offset, char out[37])
{
	char where[64];
	uint64_t a = 14695981039346656037ULL, b = 0x6a09e667f3bcc908ULL;
	int n = snprintf(where, sizeof(where), "/%d/%lld", (int)partition,
	    (long long)offset);

	a = fnv(fnv(a, topic, strlen(topic)), where, (size_t)n);
	b = fnv(fnv(b, where, (size_t)n), topic, strlen(topic));
	/* Version 8 (custom) and the RFC 4122 variant, to look like one. */
	snprintf(out, 37, "%08x-%04x-8%03x-%04x-%012llx", (unsigned)(a >> 32),
	    (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
	    (unsigned)((b >> 48) & 0x3fff) | 0x8000,
	    (unsigned long long)(b & 0xffffffffffffULL));
}

long long
consumer_backoff(long long base, long long cap, long long failures, double r)
{
	long long d, half, i;

	if (base < 1)
		base = 1;
	if (cap < base)
		cap = base;
	d = base;
	for (i = 1; i < failures && d < cap; i++)
		d = d > cap / 2 ? cap : d * 2;
	if (r < 0 || r >= 1)
		r = 0;
	half = d / 2;
	d = d - half + (long long)(r * (double)half);
	return d < 1 ? 1 : d;
}

static bool
digits(const char *s, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

static int
num(const char *s, int n)
{
	int v = 0;

	while (n-- > 0)
		v = v * 10 + (*s++ - '0');
	return v;
}

int
consumer_sqltime(const char *iso, char out[27])
{
	char frac[7] = "000000";
	const char *p;
	int n = 0;

	/* 0123456789012345678 */
	/* 2026-11-21T08:00:00 */
	if (iso == NULL || strlen(iso) < 20 || !digits(iso, 4) ||
	    iso[4] != '-' || !digits(iso + 5, 2) || iso[7] != '-' ||
	    !digits(iso + 8, 2) || iso[10] != 'T' || !digits(iso + 11, 2) ||
	    iso[13] != ':' || !digits(iso + 14, 2) || iso[16] != ':' ||
	    !digits(iso + 17, 2))
		return -1;
	if (num(iso + 5, 2) < 1 || num(iso + 5, 2) > 12 ||
	    num(iso + 8, 2) < 1 || num(iso + 8, 2) > 31 ||
	    num(iso + 11, 2) > 23 || num(iso + 14, 2) > 59 ||
	    num(iso + 17, 2) > 59)
		return -1;
	p = iso + 19;
	if (*p == '.') {
		for (p++; isdigit((unsigned char)*p); p++, n++)
			if (n < 6)
				frac[n] = *p;
		if (n == 0 || n > 9)
			return -1;
	}
	if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
		return -1;
	snprintf(out, 27, "%.10s %.8s.%s", iso, iso + 11, frac);
	return 0;
}

void
consumer_isotime(const char *sql, char out[32])
{
	if (sql == NULL || strlen(sql) < 19) {
		out[0] = '\0';
		return;
	}
	snprintf(out, 32, "%.10sT%.15sZ", sql, sql + 11);
}

static char *
base64(const char *s, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *b = (const unsigned char *)s;
	char *out = xmalloc((n + 2) / 3 * 4 + 1), *o = out;
	unsigned long v;
	size_t i;

	for (i = 0; i < n; i += 3) {
		v = (unsigned long)b[i] << 16;
		if (i + 1 < n)
			v |= (unsigned long)b[i + 1] << 8;
		if (i + 2 < n)
			v |= b[i + 2];
		*o++ = tab[(v >> 18) & 63];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? tab[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/* s as a JSON string, bytes that are not UTF-8 replaced by '?'. */
static json_t *
text(const char *s)
{
	json_t *v = json_string(s);
	char *copy, *p;

	if (v != NULL)
		return v;
	copy = xstrdup(s);
	for (p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	v = json_string(copy);
	free(copy);
	return v;
}

json_t *
consumer_dlq_record(const struct consumer_msg *m, const char *name,
    const char *group, const struct consumer_error *e)
{
	json_t *r = json_object(), *payload, *key = NULL;
	char now[32];
	char *b64;

	outbox_now(now);
	payload = json_stringn(m->payload ? m->payload : "", m->len);
	if (m->key != NULL)
		key = json_stringn(m->key, m->keylen);
	json_object_set_new(r, "originalTopic", text(m->topic));
	json_object_set_new(r, "partition", json_integer(m->partition));
	json_object_set_new(r, "offset", json_integer(m->offset));
	json_object_set_new(r, "key", key ? key : json_null());
	json_object_set_new(r, "payload", payload ? payload : json_null());
	if (payload == NULL) {
		/* Not UTF-8: JSON cannot carry it as a string. */
		b64 = base64(m->payload, m->len);
		json_object_set_new(r, "payloadBase64", json_string(b64));
		free(b64);
	}
	json_object_set_new(r, "errorType", text(e->type));
	json_object_set_new(r, "errorMessage", text(e->message));
	json_object_set_new(r, "consumer", json_string(name));
	json_object_set_new(r, "group", json_string(group));
	if (m->event_id != NULL)
		json_object_set_new(
		    r, "originalEventId", json_string(m->event_id));
	if (m->payment_id > 0)
		json_object_set_new(
		    r, "paymentId", json_integer(m->payment_id));
	json_object_set_new(r, "timestamp", json_string(now));
	return r;
}
