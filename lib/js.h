/*
 * js: JSON in and out with jansson.  Output is one compact object per line
 * on stdout; input from outside (Kafka payloads, gateway replies, request
 * lines) is read field by field with strict types and limits.
 */
#ifndef PAYKIT_JS_H
#define PAYKIT_JS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Print v as one line on stdout and release it: 0, or EX_IOERR. */
int js_print(json_t *v);

/* Compact text of v (caller frees), or NULL when v is NULL. */
char *js_text(const json_t *v);

/*
 * A flat object written field by field, for hot paths where building it
 * with jansson costs more than the rest of the work: the text is byte for
 * byte what js_text() makes of the same fields set in the same order on a
 * json_object() (compact, strings escaped as jansson escapes them).
 * Strings are UTF-8 (jansson would refuse others); NULL writes null.
 * js_out_end() closes the object and hands its text to the caller.
 */
struct js_out {
	char *s;
	size_t len, cap;
};
void js_out_str(struct js_out *o, const char *key, const char *v);
void js_out_int(struct js_out *o, const char *key, long long v);
char *js_out_end(struct js_out *o);

/*
 * Read field key of object o.  Missing and !required: returns 1 and leaves
 * *out alone.  Wrong type, out of range, too long: returns -1 with a
 * message in err ("'amount' must be an integer").  Found: returns 0.
 */
int js_str(const json_t *o, const char *key, size_t maxlen, bool required,
    const char **out, char *err, size_t errlen);
int js_int(const json_t *o, const char *key, long long min, long long max,
    bool required, long long *out, char *err, size_t errlen);

/* The value at key as a string or integer, or a default when absent. */
const char *js_getstr(const json_t *o, const char *key, const char *def);

#endif
