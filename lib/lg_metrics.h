/*
 * lg_metrics: loadgen's metrics (their names, kinds and the scenarios that
 * measure them), thresholds bound to them, and the end-of-test summary as
 * JSON (k6's --summary-export shape) and as text for stderr.  Durations
 * are recorded in microseconds and reported in milliseconds.
 */
#ifndef PAYKIT_LG_METRICS_H
#define PAYKIT_LG_METRICS_H

#include "lg_hist.h"
#include "lg_thresh.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Scenarios, as bits so a metric can say which measure it. */
enum {
	LG_AUTHORIZE_ONLY = 1,
	LG_AUTHORIZE_CAPTURE = 2,
	LG_FULL_FLOW = 4,
	LG_ALL = 7
};

enum lg_kind { LG_COUNTER, LG_RATE, LG_TREND, LG_GAUGE };

enum lg_mid {
	M_ITERATIONS,
	M_DROPPED,
	M_INTERRUPTED,
	M_ITERATION_DURATION,
	M_SCHEDULE_LAG,
	M_ERRORS,
	M_DECLINED,
	M_REQS,
	M_REQ_DURATION,
	M_REQ_FAILED,
	M_UNMATCHED,
	M_INFLIGHT,
	M_AUTHORIZE_DURATION,
	M_CAPTURE_DURATION,
	M_REFUND_DURATION,
	M_CAPTURE_WAIT,
	M_REFUND_WAIT,
	M_FLOW_DURATION,
	M_COUNT
};

struct lg_metric {
	const char *name;
	enum lg_kind kind;
	int scenarios;
	uint64_t count; /* counter; rate: true samples */
	uint64_t total; /* rate: all samples */
	int64_t value, min, max; /* gauge */
	struct lg_hist *hist; /* trend */
};

/* Steps an iteration goes through, for outcome counts. */
enum lg_step {
	LG_ST_AUTHORIZE,
	LG_ST_CAPTURE,
	LG_ST_CAPTURE_WAIT,
	LG_ST_REFUND,
	LG_ST_REFUND_WAIT,
	LG_ST_COUNT
};

extern const char *const lg_step_name[LG_ST_COUNT];
extern const char *const lg_scenario_name[3];

/* Scenario bit from its name, or 0. */
int lg_scenario(const char *name);
const char *lg_scenario_str(int scenario);

struct lg_metrics {
	int scenario;
	struct lg_metric m[M_COUNT];
	struct lg_thresh *th;
	size_t nth;
	/* Outcomes per step: statuses and error classes, by name. */
	struct lg_outcome {
		int step;
		bool error;
		char name[40];
		uint64_t n;
	} * out;
	size_t nout, capout;
};

void lg_metrics_init(struct lg_metrics *ms, int scenario);
void lg_metrics_free(struct lg_metrics *ms);

void lg_count(struct lg_metrics *ms, enum lg_mid id, uint64_t n);
void lg_rate(struct lg_metrics *ms, enum lg_mid id, bool yes);
void lg_trend(struct lg_metrics *ms, enum lg_mid id, int64_t ns);
void lg_gauge(struct lg_metrics *ms, enum lg_mid id, int64_t v);
void lg_outcome(struct lg_metrics *ms, int step, bool error, const char *name);

/*
 * Add a threshold "metric:expr": 0, or -1 with the reason in err (unknown
 * metric, not measured by the scenario, aggregation the metric lacks).
 */
int lg_metrics_threshold(
    struct lg_metrics *ms, const char *spec, char *err, size_t errlen);

/* The value of an aggregation, durations in ms; elapsed for rates. */
double lg_metric_agg(
    const struct lg_metric *m, enum lg_agg agg, double pct, double elapsed_s);

/* Check every threshold now: the number failing. */
size_t lg_metrics_check(struct lg_metrics *ms, double elapsed_s);

/* The "metrics" object of the summary, thresholds included. */
json_t *lg_metrics_json(const struct lg_metrics *ms, double elapsed_s);
/* {"authorize": {"statuses": {...}, "errors": {...}}, ...} */
json_t *lg_outcomes_json(const struct lg_metrics *ms);
/* k6's root_group, with one check per step: answered without error. */
json_t *lg_root_group_json(const struct lg_metrics *ms);

/* The end-of-test text, k6-like, one metric per line. */
void lg_metrics_print(FILE *fp, const struct lg_metrics *ms, double elapsed_s);

#endif
