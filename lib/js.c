/*
 * js: see js.h.
 */
#include "js.h"
#include "diag.h"

#include <errno.h>
#include <stdio.h>
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
