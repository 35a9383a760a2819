/*
 * lg_metrics: see lg_metrics.h.
 */
#include "lg_metrics.h"
#include "diag.h"

#include <string.h>

const char *const lg_step_name[LG_ST_COUNT] = { "authorize", "capture",
	"capture_wait", "refund", "refund_wait" };
const char *const lg_scenario_name[3] = { "authorize-only", "authorize-capture",
	"full-flow" };

static const struct {
	const char *name;
	enum lg_kind kind;
	int scenarios;
} defs[M_COUNT] = {
	[M_ITERATIONS] = { "iterations", LG_COUNTER, LG_ALL },
	[M_DROPPED] = { "dropped_iterations", LG_COUNTER, LG_ALL },
	[M_INTERRUPTED] = { "interrupted_iterations", LG_COUNTER, LG_ALL },
	[M_ITERATION_DURATION] = { "iteration_duration", LG_TREND, LG_ALL },
	[M_SCHEDULE_LAG] = { "schedule_lag", LG_TREND, LG_ALL },
	[M_ERRORS] = { "errors", LG_RATE, LG_ALL },
	[M_DECLINED] = { "declined", LG_RATE, LG_ALL },
	[M_REQS] = { "reqs", LG_COUNTER, LG_ALL },
	[M_REQ_DURATION] = { "req_duration", LG_TREND, LG_ALL },
	[M_REQ_FAILED] = { "req_failed", LG_RATE, LG_ALL },
	[M_UNMATCHED] = { "unmatched_results", LG_COUNTER, LG_ALL },
	[M_INFLIGHT] = { "inflight", LG_GAUGE, LG_ALL },
	[M_AUTHORIZE_DURATION] = { "authorize_duration", LG_TREND, LG_ALL },
	[M_CAPTURE_DURATION] = { "capture_duration", LG_TREND,
	    LG_AUTHORIZE_CAPTURE },
	[M_REFUND_DURATION] = { "refund_duration", LG_TREND, LG_FULL_FLOW },
	[M_CAPTURE_WAIT] = { "capture_wait", LG_TREND, LG_FULL_FLOW },
	[M_REFUND_WAIT] = { "refund_wait", LG_TREND, LG_FULL_FLOW },
	[M_FLOW_DURATION] = { "flow_duration", LG_TREND, LG_FULL_FLOW },
};

/* The trend statistics of the summary, as k6's summaryTrendStats. */
static const struct {
	const char *name;
	enum lg_agg agg;
	double pct;
} trend_stats[] = {
	{ "avg", LG_AGG_AVG, 0 },
	{ "min", LG_AGG_MIN, 0 },
	{ "med", LG_AGG_MED, 0 },
	{ "max", LG_AGG_MAX, 0 },
	{ "p(90)", LG_AGG_PCT, 90 },
	{ "p(95)", LG_AGG_PCT, 95 },
	{ "p(99)", LG_AGG_PCT, 99 },
};
#define NTREND (sizeof(trend_stats) / sizeof(trend_stats[0]))

int
lg_scenario(const char *name)
{
	int i;

	for (i = 0; i < 3; i++)
		if (strcmp(name, lg_scenario_name[i]) == 0)
			return 1 << i;
	return 0;
}

const char *
lg_scenario_str(int scenario)
{
	int i;

	for (i = 0; i < 3; i++)
		if (scenario == 1 << i)
			return lg_scenario_name[i];
	return "?";
}

void
lg_metrics_init(struct lg_metrics *ms, int scenario)
{
	size_t i;

	memset(ms, 0, sizeof(*ms));
	ms->scenario = scenario;
	for (i = 0; i < M_COUNT; i++) {
		ms->m[i].name = defs[i].name;
		ms->m[i].kind = defs[i].kind;
		ms->m[i].scenarios = defs[i].scenarios;
		if (defs[i].kind == LG_TREND) {
			ms->m[i].hist = xmalloc(sizeof(struct lg_hist));
			lg_hist_init(ms->m[i].hist);
		}
	}
}

void
lg_metrics_free(struct lg_metrics *ms)
{
	size_t i;

	for (i = 0; i < M_COUNT; i++)
		free(ms->m[i].hist);
	free(ms->th);
	free(ms->out);
}

void
lg_count(struct lg_metrics *ms, enum lg_mid id, uint64_t n)
{
	ms->m[id].count += n;
}

void
lg_rate(struct lg_metrics *ms, enum lg_mid id, bool yes)
{
	ms->m[id].total++;
	if (yes)
		ms->m[id].count++;
}

void
lg_trend(struct lg_metrics *ms, enum lg_mid id, int64_t ns)
{
	lg_hist_add(ms->m[id].hist, ns > 0 ? (uint64_t)ns / 1000 : 0);
}

void
lg_gauge(struct lg_metrics *ms, enum lg_mid id, int64_t v)
{
	struct lg_metric *m = &ms->m[id];

	m->value = v;
	if (v < m->min)
		m->min = v;
	if (v > m->max)
		m->max = v;
}

void
lg_outcome(struct lg_metrics *ms, int step, bool error, const char *name)
{
	struct lg_outcome *o;
	size_t i;

	for (i = 0; i < ms->nout; i++) {
		o = &ms->out[i];
		if (o->step == step && o->error == error &&
		    strcmp(o->name, name) == 0) {
			o->n++;
			return;
		}
	}
	if (ms->nout == ms->capout) {
		ms->capout = ms->capout ? ms->capout * 2 : 16;
		ms->out = xrealloc(ms->out, ms->capout * sizeof(*ms->out));
	}
	o = &ms->out[ms->nout++];
	o->step = step;
	o->error = error;
	snprintf(o->name, sizeof(o->name), "%s", name);
	o->n = 1;
}

static bool
agg_fits(enum lg_kind kind, enum lg_agg agg)
{
	switch (kind) {
	case LG_COUNTER:
		return agg == LG_AGG_COUNT || agg == LG_AGG_RATE;
	case LG_RATE:
		return agg == LG_AGG_RATE;
	case LG_GAUGE:
		return agg == LG_AGG_VALUE || agg == LG_AGG_MIN ||
		    agg == LG_AGG_MAX;
	case LG_TREND:
		return agg >= LG_AGG_AVG;
	}
	return false;
}

static const char *const kind_aggs[] = {
	[LG_COUNTER] = "count or rate",
	[LG_RATE] = "rate",
	[LG_TREND] = "avg, min, max, med or p(N)",
	[LG_GAUGE] = "value, min or max",
};

int
lg_metrics_threshold(
    struct lg_metrics *ms, const char *spec, char *err, size_t errlen)
{
	struct lg_thresh t;
	char buf[32], why[200];
	size_t i;

	if (lg_thresh_parse(spec, &t, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "threshold '%s': %s", spec, why);
		return -1;
	}
	for (i = 0; i < M_COUNT; i++)
		if (strcmp(ms->m[i].name, t.metric) == 0)
			break;
	if (i == M_COUNT) {
		snprintf(err, errlen, "threshold '%s': unknown metric '%s'",
		    spec, t.metric);
		return -1;
	}
	if (!(ms->m[i].scenarios & ms->scenario)) {
		snprintf(err, errlen,
		    "threshold '%s': scenario '%s' does not measure '%s'", spec,
		    lg_scenario_str(ms->scenario), t.metric);
		return -1;
	}
	if (!agg_fits(ms->m[i].kind, t.agg)) {
		snprintf(err, errlen,
		    "threshold '%s': '%s' has no %s (it has %s)", spec,
		    t.metric, lg_agg_name(&t, buf, sizeof(buf)),
		    kind_aggs[ms->m[i].kind]);
		return -1;
	}
	ms->th = xrealloc(ms->th, (ms->nth + 1) * sizeof(*ms->th));
	ms->th[ms->nth++] = t;
	return 0;
}

static const struct lg_metric *
find(const struct lg_metrics *ms, const char *name)
{
	size_t i;

	for (i = 0; i < M_COUNT; i++)
		if (strcmp(ms->m[i].name, name) == 0)
			return &ms->m[i];
	return NULL;
}

double
lg_metric_agg(
    const struct lg_metric *m, enum lg_agg agg, double pct, double elapsed_s)
{
	switch (m->kind) {
	case LG_COUNTER:
		if (agg == LG_AGG_RATE)
			return elapsed_s > 0 ? (double)m->count / elapsed_s : 0;
		return (double)m->count;
	case LG_RATE:
		return m->total ? (double)m->count / (double)m->total : 0;
	case LG_GAUGE:
		if (agg == LG_AGG_MIN)
			return (double)m->min;
		return (double)(agg == LG_AGG_MAX ? m->max : m->value);
	case LG_TREND:
		break;
	}
	switch (agg) {
	case LG_AGG_AVG:
		return lg_hist_mean(m->hist) / 1000;
	case LG_AGG_MIN:
		return lg_hist_pct(m->hist, 0) / 1000;
	case LG_AGG_MAX:
		return lg_hist_pct(m->hist, 100) / 1000;
	case LG_AGG_MED:
		return lg_hist_pct(m->hist, 50) / 1000;
	case LG_AGG_PCT:
		return lg_hist_pct(m->hist, pct) / 1000;
	default:
		return 0;
	}
}

size_t
lg_metrics_check(struct lg_metrics *ms, double elapsed_s)
{
	struct lg_thresh *t;
	size_t i, failed = 0;

	for (i = 0; i < ms->nth; i++) {
		t = &ms->th[i];
		t->seen = lg_metric_agg(
		    find(ms, t->metric), t->agg, t->pct, elapsed_s);
		t->failed = !lg_thresh_pass(t, t->seen);
		failed += t->failed;
	}
	return failed;
}

static json_t *
metric_json(
    const struct lg_metrics *ms, const struct lg_metric *m, double elapsed_s)
{
	json_t *o = json_object(), *th = NULL;
	double r;
	size_t i;

	switch (m->kind) {
	case LG_COUNTER:
		json_object_set_new(
		    o, "count", json_integer((json_int_t)m->count));
		json_object_set_new(o, "rate",
		    json_real(lg_metric_agg(m, LG_AGG_RATE, 0, elapsed_s)));
		break;
	case LG_RATE:
		r = lg_metric_agg(m, LG_AGG_RATE, 0, elapsed_s);
		json_object_set_new(o, "rate", json_real(r));
		json_object_set_new(o, "value", json_real(r));
		json_object_set_new(
		    o, "passes", json_integer((json_int_t)m->count));
		json_object_set_new(o, "fails",
		    json_integer((json_int_t)(m->total - m->count)));
		break;
	case LG_GAUGE:
		json_object_set_new(o, "value", json_integer(m->value));
		json_object_set_new(o, "min", json_integer(m->min));
		json_object_set_new(o, "max", json_integer(m->max));
		break;
	case LG_TREND:
		for (i = 0; i < NTREND; i++)
			json_object_set_new(o, trend_stats[i].name,
			    json_real(lg_metric_agg(m, trend_stats[i].agg,
			        trend_stats[i].pct, elapsed_s)));
		break;
	}
	for (i = 0; i < ms->nth; i++) {
		if (strcmp(ms->th[i].metric, m->name) != 0)
			continue;
		if (th == NULL)
			th = json_object();
		json_object_set_new(th, ms->th[i].expr,
		    json_pack("{s:b}", "ok", !ms->th[i].failed));
	}
	if (th != NULL)
		json_object_set_new(o, "thresholds", th);
	return o;
}

json_t *
lg_metrics_json(const struct lg_metrics *ms, double elapsed_s)
{
	json_t *o = json_object();
	size_t i;

	for (i = 0; i < M_COUNT; i++)
		if (ms->m[i].scenarios & ms->scenario)
			json_object_set_new(o, ms->m[i].name,
			    metric_json(ms, &ms->m[i], elapsed_s));
	return o;
}

static bool
step_used(int scenario, int step)
{
	switch (step) {
	case LG_ST_CAPTURE:
		return scenario == LG_AUTHORIZE_CAPTURE;
	case LG_ST_CAPTURE_WAIT:
	case LG_ST_REFUND:
	case LG_ST_REFUND_WAIT:
		return scenario == LG_FULL_FLOW;
	default:
		return true;
	}
}

json_t *
lg_outcomes_json(const struct lg_metrics *ms)
{
	json_t *o = json_object(), *s;
	const struct lg_outcome *oc;
	int step;
	size_t i;

	for (step = 0; step < LG_ST_COUNT; step++) {
		if (!step_used(ms->scenario, step))
			continue;
		s = json_pack("{s:{}, s:{}}", "statuses", "errors");
		for (i = 0; i < ms->nout; i++) {
			oc = &ms->out[i];
			if (oc->step == step)
				json_object_set_new(
				    json_object_get(
				        s, oc->error ? "errors" : "statuses"),
				    oc->name, json_integer((json_int_t)oc->n));
		}
		json_object_set_new(o, lg_step_name[step], s);
	}
	return o;
}

json_t *
lg_root_group_json(const struct lg_metrics *ms)
{
	json_t *checks = json_object();
	uint64_t pass, fail;
	char name[64];
	int step;
	size_t i;

	for (step = 0; step < LG_ST_COUNT; step++) {
		if (!step_used(ms->scenario, step))
			continue;
		pass = fail = 0;
		for (i = 0; i < ms->nout; i++)
			if (ms->out[i].step == step) {
				if (ms->out[i].error)
					fail += ms->out[i].n;
				else
					pass += ms->out[i].n;
			}
		snprintf(name, sizeof(name), "%s ok", lg_step_name[step]);
		json_object_set_new(checks, name,
		    json_pack("{s:s, s:s+, s:I, s:I}", "name", name, "path",
		        "::", name, "passes", (json_int_t)pass, "fails",
		        (json_int_t)fail));
	}
	return json_pack("{s:s, s:s, s:{}, s:o}", "name", "", "path", "",
	    "groups", "checks", checks);
}

static void
print_metric(FILE *fp, const struct lg_metric *m, double elapsed_s)
{
	char dots[40];
	size_t i, n = strlen(m->name);

	memset(dots, '.', sizeof(dots));
	dots[n < 26 ? 26 - n : 1] = '\0';
	fprintf(fp, "  %s%s: ", m->name, dots);
	switch (m->kind) {
	case LG_COUNTER:
		fprintf(fp, "%-10llu %.2f/s\n", (unsigned long long)m->count,
		    lg_metric_agg(m, LG_AGG_RATE, 0, elapsed_s));
		break;
	case LG_RATE:
		fprintf(fp, "%.4f%%  %llu of %llu\n",
		    100 * lg_metric_agg(m, LG_AGG_RATE, 0, elapsed_s),
		    (unsigned long long)m->count, (unsigned long long)m->total);
		break;
	case LG_GAUGE:
		fprintf(fp, "%-10lld min=%lld max=%lld\n", (long long)m->value,
		    (long long)m->min, (long long)m->max);
		break;
	case LG_TREND:
		for (i = 0; i < NTREND; i++)
			fprintf(fp, "%s%s=%.2fms", i ? " " : "",
			    trend_stats[i].name,
			    lg_metric_agg(m, trend_stats[i].agg,
			        trend_stats[i].pct, elapsed_s));
		fputc('\n', fp);
		break;
	}
}

void
lg_metrics_print(FILE *fp, const struct lg_metrics *ms, double elapsed_s)
{
	const struct lg_thresh *t;
	size_t i, j;

	for (i = 0; i < M_COUNT; i++) {
		if (!(ms->m[i].scenarios & ms->scenario))
			continue;
		print_metric(fp, &ms->m[i], elapsed_s);
		for (j = 0; j < ms->nth; j++) {
			t = &ms->th[j];
			if (strcmp(t->metric, ms->m[i].name) == 0)
				fprintf(fp, "    %s %s (was %g)\n",
				    t->failed ? "FAIL" : "ok  ", t->expr,
				    t->seen);
		}
	}
}
