/*
 * lg_thresh: see lg_thresh.h.
 */
#include "lg_thresh.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	enum lg_agg agg;
} aggs[] = {
	{ "count", LG_AGG_COUNT },
	{ "rate", LG_AGG_RATE },
	{ "value", LG_AGG_VALUE },
	{ "avg", LG_AGG_AVG },
	{ "min", LG_AGG_MIN },
	{ "max", LG_AGG_MAX },
	{ "med", LG_AGG_MED },
};

/* Longest first, so "<=" is not read as "<" followed by "=". */
static const struct {
	const char *text;
	enum lg_op op;
} ops[] = {
	{ "===", LG_OP_EQ },
	{ "<=", LG_OP_LE },
	{ ">=", LG_OP_GE },
	{ "==", LG_OP_EQ },
	{ "!=", LG_OP_NE },
	{ "<", LG_OP_LT },
	{ ">", LG_OP_GT },
};

static const char *
skip(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* A decimal number filling [p, end) exactly; -1 if not. */
static int
number(const char *p, const char *end, double *v)
{
	char buf[64], *e;
	size_t n = (size_t)(end - p);

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, p, n);
	buf[n] = '\0';
	if (!isdigit((unsigned char)buf[0]) && buf[0] != '-' && buf[0] != '.')
		return -1;
	*v = strtod(buf, &e);
	return *e == '\0' && isfinite(*v) ? 0 : -1;
}

static int
parse_agg(const char **pp, struct lg_thresh *t, char *err, size_t errlen)
{
	const char *p = *pp, *q, *close;
	size_t i, n;

	for (q = p; isalpha((unsigned char)*q); q++)
		;
	n = (size_t)(q - p);
	if (n == 1 && *p == 'p' && *q == '(') {
		close = strchr(q, ')');
		if (close == NULL || number(q + 1, close, &t->pct) != 0 ||
		    t->pct <= 0 || t->pct > 100) {
			snprintf(err, errlen,
			    "'p(' must be followed by a percentile from 0 to "
			    "100 and ')'");
			return -1;
		}
		t->agg = LG_AGG_PCT;
		*pp = close + 1;
		return 0;
	}
	for (i = 0; i < sizeof(aggs) / sizeof(aggs[0]); i++)
		if (strlen(aggs[i].name) == n &&
		    strncmp(aggs[i].name, p, n) == 0) {
			t->agg = aggs[i].agg;
			*pp = q;
			return 0;
		}
	snprintf(err, errlen,
	    "unknown aggregation '%.*s' (count, rate, value, avg, min, max, "
	    "med or p(N))",
	    (int)(n ? n : strcspn(p, "<>=! ")), p);
	return -1;
}

int
lg_thresh_parse(const char *s, struct lg_thresh *t, char *err, size_t errlen)
{
	const char *colon = strchr(s, ':'), *p, *end;
	size_t i, n;

	memset(t, 0, sizeof(*t));
	n = colon ? (size_t)(colon - s) : 0;
	if (colon == NULL || n == 0 || n >= sizeof(t->metric)) {
		snprintf(err, errlen, "not metric:expression");
		return -1;
	}
	for (i = 0; i < n; i++)
		if (!islower((unsigned char)s[i]) &&
		    !isdigit((unsigned char)s[i]) && s[i] != '_') {
			snprintf(err, errlen, "'%.*s' is not a metric name",
			    (int)n, s);
			return -1;
		}
	memcpy(t->metric, s, n);
	p = skip(colon + 1);
	end = p + strlen(p);
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if ((size_t)(end - p) >= sizeof(t->expr) || end == p) {
		snprintf(err, errlen, "the expression is empty or too long");
		return -1;
	}
	memcpy(t->expr, p, (size_t)(end - p));
	if (parse_agg(&p, t, err, errlen) != 0)
		return -1;
	p = skip(p);
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strncmp(p, ops[i].text, strlen(ops[i].text)) == 0)
			break;
	if (i == sizeof(ops) / sizeof(ops[0])) {
		snprintf(err, errlen, "expected an operator (< <= > >= == !=)");
		return -1;
	}
	t->op = ops[i].op;
	p = skip(p + strlen(ops[i].text));
	if (p == end) {
		snprintf(err, errlen, "a number must follow the operator");
		return -1;
	}
	if (number(p, end, &t->value) != 0) {
		snprintf(
		    err, errlen, "'%.*s' is not a number", (int)(end - p), p);
		return -1;
	}
	return 0;
}

bool
lg_thresh_pass(const struct lg_thresh *t, double v)
{
	switch (t->op) {
	case LG_OP_LT:
		return v < t->value;
	case LG_OP_LE:
		return v <= t->value;
	case LG_OP_GT:
		return v > t->value;
	case LG_OP_GE:
		return v >= t->value;
	case LG_OP_EQ:
		return v == t->value;
	case LG_OP_NE:
		return v != t->value;
	}
	return false;
}

const char *
lg_agg_name(const struct lg_thresh *t, char *buf, size_t len)
{
	size_t i;

	if (t->agg == LG_AGG_PCT) {
		snprintf(buf, len, "p(%g)", t->pct);
		return buf;
	}
	for (i = 0; i < sizeof(aggs) / sizeof(aggs[0]); i++)
		if (aggs[i].agg == t->agg)
			return aggs[i].name;
	return "?";
}
