/*
 * lg_thresh: loadgen's thresholds in k6's grammar, "metric:aggregation
 * operator value", as in "req_failed:rate<0.05",
 * "authorize_duration:p(95)<1000" or "dropped_iterations:count==0".
 * This module parses and compares; which aggregations a metric has is
 * lg_metrics' business.
 */
#ifndef PAYKIT_LG_THRESH_H
#define PAYKIT_LG_THRESH_H

#include <stdbool.h>
#include <stddef.h>

enum lg_agg {
	LG_AGG_COUNT,
	LG_AGG_RATE,
	LG_AGG_VALUE,
	LG_AGG_AVG,
	LG_AGG_MIN,
	LG_AGG_MAX,
	LG_AGG_MED,
	LG_AGG_PCT
};

enum lg_op { LG_OP_LT, LG_OP_LE, LG_OP_GT, LG_OP_GE, LG_OP_EQ, LG_OP_NE };

struct lg_thresh {
	char metric[64];
	char expr
	    [128]; /* as written after the colon, trimmed: the summary key */
	enum lg_agg agg;
	double pct; /* for LG_AGG_PCT, 0 to 100 */
	enum lg_op op;
	double value;
	bool failed; /* failed when last checked */
	double seen; /* the aggregation's value when last checked */
};

/* Parse "metric:expr": 0, or -1 with the reason in err. */
int lg_thresh_parse(
    const char *s, struct lg_thresh *t, char *err, size_t errlen);

/* Does v pass the threshold's comparison? */
bool lg_thresh_pass(const struct lg_thresh *t, double v);

/* The aggregation's name: "count", "p(95)", ... (buf for p(N)). */
const char *lg_agg_name(const struct lg_thresh *t, char *buf, size_t len);

#endif
