/*
 * js: see js.h.
 */
#include "js.h"
#include "diag.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
js_print(json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	int rc = 0;

	json_decref(v);
	if (s == NULL)
		diag_die(EX_SOFTWARE, "cannot encode JSON output");
	if (fputs(s, stdout) == EOF || putchar('\n') == EOF) {
		if (errno != EPIPE)
			diag_warn(
			    "write to standard output: %s", strerror(errno));
		rc = EX_IOERR;
	}
	free(s);
	return rc;
}

char *
js_text(const json_t *v)
{
	if (v == NULL)
		return NULL;
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void
out_bytes(struct js_out *o, const char *s, size_t n)
{
	if (o->len + n + 2 > o->cap) {
		o->cap = (o->len + n + 2) * 2;
		if (o->cap < 256)
			o->cap = 256;
		o->s = xrealloc(o->s, o->cap);
	}
	memcpy(o->s + o->len, s, n);
	o->len += n;
}

/* s as a JSON string, escaped as jansson's dump_string() escapes it. */
static void
out_string(struct js_out *o, const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *run = p;
	char seq[8];
	const char *esc;

	out_bytes(o, "\"", 1);
	for (;; p++) {
		if (*p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		out_bytes(o, (const char *)run, (size_t)(p - run));
		run = p + 1;
		if (*p == '\0')
			break;
		switch (*p) {
		case '"':
			esc = "\\\"";
			break;
		case '\\':
			esc = "\\\\";
			break;
		case '\b':
			esc = "\\b";
			break;
		case '\f':
			esc = "\\f";
			break;
		case '\n':
			esc = "\\n";
			break;
		case '\r':
			esc = "\\r";
			break;
		case '\t':
			esc = "\\t";
			break;
		default:
			snprintf(seq, sizeof(seq), "\\u%04X", (unsigned)*p);
			esc = seq;
		}
		out_bytes(o, esc, strlen(esc));
	}
	out_bytes(o, "\"", 1);
}

static void
out_key(struct js_out *o, const char *key)
{
	out_bytes(o, o->len == 0 ? "{" : ",", 1);
	out_string(o, key);
	out_bytes(o, ":", 1);
}

void
js_out_str(struct js_out *o, const char *key, const char *v)
{
	out_key(o, key);
	if (v == NULL)
		out_bytes(o, "null", 4);
	else
		out_string(o, v);
}

void
js_out_int(struct js_out *o, const char *key, long long v)
{
	char num[24];

	out_key(o, key);
	out_bytes(o, num, (size_t)snprintf(num, sizeof(num), "%lld", v));
}

char *
js_out_end(struct js_out *o)
{
	char *s;

	out_bytes(o, o->len == 0 ? "{}" : "}", o->len == 0 ? 2 : 1);
	o->s[o->len] = '\0';
	s = o->s;
	memset(o, 0, sizeof(*o));
	return s;
}

int
js_str(const json_t *o, const char *key, size_t maxlen, bool required,
    const char **out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(o, key);
	size_t n;

	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 1;
		snprintf(err, errlen, "'%s' is required", key);
		return -1;
	}
	if (!json_is_string(v)) {
		snprintf(err, errlen, "'%s' must be a string", key);
		return -1;
	}
	n = json_string_length(v);
	if (n == 0 || n > maxlen || strlen(json_string_value(v)) != n) {
		snprintf(err, errlen, "'%s' must be 1 to %zu characters", key,
		    maxlen);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int
js_int(const json_t *o, const char *key, long long min, long long max,
    bool required, long long *out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(o, key);
	long long n;

	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 1;
		snprintf(err, errlen, "'%s' is required", key);
		return -1;
	}
	if (!json_is_integer(v)) {
		snprintf(err, errlen, "'%s' must be an integer", key);
		return -1;
	}
	n = json_integer_value(v);
	if (n < min || n > max) {
		snprintf(err, errlen, "'%s' must be between %lld and %lld", key,
		    min, max);
		return -1;
	}
	*out = n;
	return 0;
}

const char *
js_getstr(const json_t *o, const char *key, const char *def)
{
	const json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : def;
}
