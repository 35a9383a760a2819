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
