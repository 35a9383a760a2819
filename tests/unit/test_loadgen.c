/*
 * loadgen's pure parts: histogram percentiles against known
 * distributions, the threshold grammar, the timeline of constant and
 * ramping arrival rates, and how often a waited-on payment is looked at.
 */
#include "lg_hist.h"
#include "lg_metrics.h"
#include "lg_poll.h"
#include "lg_sched.h"
#include "lg_thresh.h"
#include "unit.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static struct lg_hist h;

/* Within rel (a fraction) of want. */
static int
near(double got, double want, double rel)
{
	if (fabs(got - want) <= rel * fabs(want))
		return 1;
	fprintf(
	    stderr, "# got %.3f, want %.3f (+-%.2f%%)\n", got, want, rel * 100);
	return 0;
}

static void
hist_small_values_are_exact(void)
{
	uint64_t v;

	lg_hist_init(&h);
	for (v = 1; v <= 100; v++)
		lg_hist_add(&h, v);
	CHECK(h.count == 100);
	CHECK(lg_hist_pct(&h, 50) == 50);
	CHECK(lg_hist_pct(&h, 90) == 90);
	CHECK(lg_hist_pct(&h, 95) == 95);
	CHECK(lg_hist_pct(&h, 99) == 99);
	CHECK(lg_hist_pct(&h, 100) == 100);
	CHECK(lg_hist_pct(&h, 0) == 1);
	CHECK(lg_hist_mean(&h) == 50.5);
}

static void
hist_uniform_within_one_percent(void)
{
	uint64_t v;

	lg_hist_init(&h);
	for (v = 1; v <= 1000000; v++)
		lg_hist_add(&h, v);
	CHECK(near(lg_hist_pct(&h, 50), 500000, 0.01));
	CHECK(near(lg_hist_pct(&h, 90), 900000, 0.01));
	CHECK(near(lg_hist_pct(&h, 95), 950000, 0.01));
	CHECK(near(lg_hist_pct(&h, 99), 990000, 0.01));
	CHECK(near(lg_hist_pct(&h, 99.9), 999000, 0.01));
	CHECK(lg_hist_pct(&h, 100) == 1000000);
	CHECK(h.min == 1 && h.max == 1000000);
	CHECK(lg_hist_mean(&h) == 500000.5);
}

static void
hist_exponential_within_one_percent(void)
{
	double mean = 20000, u;
	uint64_t x = 88172645463325252ULL;
	int i, n = 200000;

	/* Exponential: p-th percentile is -mean * ln(1 - p/100). */
	lg_hist_init(&h);
	for (i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		u = (double)(x >> 11) / 9007199254740992.0;
		lg_hist_add(&h, (uint64_t)llround(-mean * log(1 - u)));
	}
	CHECK(near(lg_hist_pct(&h, 50), -mean * log(0.5), 0.02));
	CHECK(near(lg_hist_pct(&h, 90), -mean * log(0.1), 0.02));
	CHECK(near(lg_hist_pct(&h, 99), -mean * log(0.01), 0.03));
	CHECK(near(lg_hist_mean(&h), mean, 0.02));
}

static void
hist_bimodal_tail(void)
{
	int i;

	/* 98 % at 2 ms, 2 % at 3 s: p(95) sees the body, p(99) the stall. */
	lg_hist_init(&h);
	for (i = 0; i < 9800; i++)
		lg_hist_add(&h, 2000);
	for (i = 0; i < 200; i++)
		lg_hist_add(&h, 3000000);
	CHECK(near(lg_hist_pct(&h, 95), 2000, 0.004));
	CHECK(near(lg_hist_pct(&h, 98), 2000, 0.004));
	CHECK(near(lg_hist_pct(&h, 99), 3000000, 0.004));
	CHECK(lg_hist_pct(&h, 100) == 3000000);
}

static void
hist_clamps_and_empty(void)
{
	lg_hist_init(&h);
	CHECK(lg_hist_pct(&h, 95) == 0);
	CHECK(lg_hist_mean(&h) == 0);
	lg_hist_add(&h, UINT64_MAX);
	lg_hist_add(&h, 0);
	CHECK(h.max == LG_HIST_MAX);
	CHECK(lg_hist_pct(&h, 100) == (double)LG_HIST_MAX);
	CHECK(lg_hist_pct(&h, 50) == 0);
}

static void
hist_every_value_within_precision(void)
{
	uint64_t v;
	int bad = 0;

	for (v = 1; v < (UINT64_C(1) << 36); v = v * 3 / 2 + 1) {
		lg_hist_init(&h);
		lg_hist_add(&h, v);
		lg_hist_add(&h, v + v / 300);
		/* The lower of two values 0.33 % apart reads back within 0.4 %. */
		if (fabs(lg_hist_pct(&h, 50) - (double)v) > (double)v / 256 + 1)
			bad++;
	}
	CHECK(bad == 0);
}

static int
parses(const char *s, struct lg_thresh *t)
{
	char err[256];

	if (lg_thresh_parse(s, t, err, sizeof(err)) == 0)
		return 1;
	fprintf(stderr, "# '%s': %s\n", s, err);
	return 0;
}

static void
thresh_grammar_valid(void)
{
	struct lg_thresh t;

	CHECK(parses("req_failed:rate<0.05", &t));
	CHECK_STR(t.metric, "req_failed");
	CHECK_STR(t.expr, "rate<0.05");
	CHECK(t.agg == LG_AGG_RATE && t.op == LG_OP_LT && t.value == 0.05);
	CHECK(parses("authorize_duration:p(95)<1000", &t));
	CHECK(t.agg == LG_AGG_PCT && t.pct == 95 && t.value == 1000);
	CHECK(parses("authorize_duration: p(99.9) <= 250.5 ", &t));
	CHECK_STR(t.expr, "p(99.9) <= 250.5");
	CHECK(t.pct == 99.9 && t.op == LG_OP_LE && t.value == 250.5);
	CHECK(parses("dropped_iterations:count==0", &t));
	CHECK(t.agg == LG_AGG_COUNT && t.op == LG_OP_EQ && t.value == 0);
	CHECK(parses("x:count===0", &t) && t.op == LG_OP_EQ);
	CHECK(parses("x:avg>=1e3", &t) && t.op == LG_OP_GE && t.value == 1000);
	CHECK(parses("x:min>-1", &t) && t.op == LG_OP_GT && t.value == -1);
	CHECK(parses("x:max!=7", &t) && t.op == LG_OP_NE);
	CHECK(parses("x:med<.5", &t) && t.agg == LG_AGG_MED);
	CHECK(parses("inflight:value<=100", &t) && t.agg == LG_AGG_VALUE);
	CHECK(parses("x:p(100)<1", &t) && t.pct == 100);
}

static void
thresh_grammar_invalid(void)
{
	static const char *const bad[] = { "", "rate<0.05", ":rate<1",
		"Bad-Name:rate<1", "x:", "x:rate", "x:rate<", "x:rate<abc",
		"x:rate<1x", "x:rate=1", "x:rate<>1", "x:p95<1", "x:p(0)<1",
		"x:p(101)<1", "x:p()<1", "x:p(95<1", "x:mean<1", "x:count<1 2",
		"x:rate<nan", "x:rate<inf", "x{tag:1}:rate<1" };
	struct lg_thresh t;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (lg_thresh_parse(bad[i], &t, err, sizeof(err)) == 0)
			fprintf(stderr, "# '%s' parsed\n", bad[i]);
		CHECK(lg_thresh_parse(bad[i], &t, err, sizeof(err)) == -1);
		CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
	}
}

static void
thresh_compares(void)
{
	struct lg_thresh t;

	CHECK(parses("x:p(95)<100", &t));
	CHECK(lg_thresh_pass(&t, 99.9) && !lg_thresh_pass(&t, 100));
	CHECK(parses("x:p(95)<=100", &t));
	CHECK(lg_thresh_pass(&t, 100) && !lg_thresh_pass(&t, 100.1));
	CHECK(parses("x:count>0", &t));
	CHECK(!lg_thresh_pass(&t, 0) && lg_thresh_pass(&t, 1));
	CHECK(parses("x:count>=1", &t));
	CHECK(lg_thresh_pass(&t, 1) && !lg_thresh_pass(&t, 0));
	CHECK(parses("x:count==0", &t));
	CHECK(lg_thresh_pass(&t, 0) && !lg_thresh_pass(&t, 1));
	CHECK(parses("x:count!=0", &t));
	CHECK(!lg_thresh_pass(&t, 0) && lg_thresh_pass(&t, 1));
}

static void
thresh_bound_to_metrics(void)
{
	struct lg_metrics ms;
	char err[256];

	lg_metrics_init(&ms, LG_AUTHORIZE_ONLY);
	CHECK(lg_metrics_threshold(
	          &ms, "dropped_iterations:count==0", err, sizeof(err)) == 0);
	CHECK(lg_metrics_threshold(
	          &ms, "errors:rate<0.0001", err, sizeof(err)) == 0);
	CHECK(lg_metrics_threshold(
	          &ms, "authorize_duration:p(99)<=100", err, sizeof(err)) == 0);
	CHECK(lg_metrics_threshold(
	          &ms, "iterations:rate>4900", err, sizeof(err)) == 0);
	CHECK(
	    lg_metrics_threshold(&ms, "nosuch:rate<1", err, sizeof(err)) == -1);
	CHECK(strstr(err, "unknown metric 'nosuch'") != NULL);
	CHECK(lg_metrics_threshold(
	          &ms, "flow_duration:p(99)<1000", err, sizeof(err)) == -1);
	CHECK(strstr(err, "does not measure") != NULL);
	CHECK(lg_metrics_threshold(&ms, "errors:p(95)<1", err, sizeof(err)) ==
	    -1);
	CHECK(lg_metrics_threshold(
	          &ms, "authorize_duration:count<1", err, sizeof(err)) == -1);
	CHECK(lg_metrics_threshold(&ms, "iterations:avg<1", err, sizeof(err)) ==
	    -1);
	CHECK(ms.nth == 4);
	lg_count(&ms, M_DROPPED, 1);
	lg_rate(&ms, M_ERRORS, false);
	lg_trend(&ms, M_AUTHORIZE_DURATION, 150 * 1000000LL);
	lg_count(&ms, M_ITERATIONS, 5000);
	CHECK(lg_metrics_check(&ms, 1.0) == 2);
	CHECK(ms.th[0].failed && !ms.th[1].failed && ms.th[2].failed &&
	    !ms.th[3].failed);
	CHECK(near(ms.th[2].seen, 150, 0.004));
	lg_metrics_free(&ms);

	lg_metrics_init(&ms, LG_FULL_FLOW);
	CHECK(lg_metrics_threshold(
	          &ms, "flow_duration:p(99)<1000", err, sizeof(err)) == 0);
	CHECK(lg_metrics_threshold(
	          &ms, "capture_duration:p(99)<1000", err, sizeof(err)) == -1);
	lg_metrics_free(&ms);
}

static void
sched_constant_is_exact(void)
{
	struct lg_sched s;
	size_t hint = 0;
	uint64_t i;
	int bad = 0;

	lg_sched_constant(&s, 200, 2000);
	lg_sched_init(&s);
	CHECK(lg_sched_total(&s) == 400);
	CHECK(lg_sched_length_ns(&s) == 2000000000LL);
	CHECK(lg_sched_due(&s, 0, &hint) == 0);
	CHECK(lg_sched_due(&s, 1, &hint) == 5000000);
	CHECK(lg_sched_due(&s, 399, &hint) == 1995000000LL);
	CHECK(lg_sched_due(&s, 400, &hint) == -1);
	for (i = 0; i < 400; i++)
		bad += lg_sched_due(&s, i, &hint) != (int64_t)i * 5000000;
	CHECK(bad == 0);

	/* A rate that does not divide the duration: 3/s for 1.5 s is 5. */
	lg_sched_constant(&s, 3, 1500);
	lg_sched_init(&s);
	CHECK(lg_sched_total(&s) == 5);
	hint = 0;
	CHECK(lg_sched_due(&s, 4, &hint) == 1333333333LL);
	lg_sched_constant(&s, 0, 1000);
	lg_sched_init(&s);
	CHECK(lg_sched_total(&s) == 0);
}

static void
sched_ramping_follows_the_integral(void)
{
	struct lg_sched s = { 0 };
	char err[128];
	size_t hint = 0;
	int64_t t, prev = -1;
	uint64_t i;
	int bad = 0;

	/* 0 -> 100/s over 10 s, 100/s for 5 s, 100 -> 0 over 10 s. */
	s.start_rate = 0;
	CHECK(lg_sched_add_stage(&s, "10s:100", err, sizeof(err)) == 0);
	CHECK(lg_sched_add_stage(&s, "5s:100", err, sizeof(err)) == 0);
	CHECK(lg_sched_add_stage(&s, "10s:0", err, sizeof(err)) == 0);
	lg_sched_init(&s);
	CHECK(lg_sched_total(&s) == 500 + 500 + 500);
	CHECK(lg_sched_length_ns(&s) == 25000000000LL);
	/* Ramp up: N(t) = 5 t^2, so iteration 125 is due at 5 s. */
	CHECK(lg_sched_due(&s, 0, &hint) == 0);
	CHECK(lg_sched_due(&s, 125, &hint) == 5000000000LL);
	CHECK(lg_sched_due(&s, 500, &hint) == 10000000000LL);
	CHECK(lg_sched_due(&s, 750, &hint) == 12500000000LL);
	/* Ramp down: N = 1000 + 100 t - 5 t^2; 1375 at t = 5 s. */
	CHECK(lg_sched_due(&s, 1375, &hint) == 20000000000LL);
	CHECK(lg_sched_due(&s, 1499, &hint) < 25000000000LL);
	CHECK(lg_sched_due(&s, 1500, &hint) == -1);
	hint = 0;
	for (i = 0; i < 1500; i++) {
		t = lg_sched_due(&s, i, &hint);
		bad += t <= prev && i > 0;
		prev = t;
	}
	CHECK(bad == 0);
	CHECK(near(lg_sched_rate_at(&s, 5000000000LL), 50, 1e-9));
	CHECK(near(lg_sched_rate_at(&s, 12000000000LL), 100, 1e-9));
	CHECK(lg_sched_rate_at(&s, 26000000000LL) == 0);
}

static void
sched_stage_syntax(void)
{
	struct lg_sched s = { 0 };
	char err[128];
	double r;

	CHECK(lg_sched_add_stage(&s, "30s:100", err, sizeof(err)) == 0);
	CHECK(lg_sched_add_stage(&s, "1m:0.5", err, sizeof(err)) == 0);
	CHECK(lg_sched_add_stage(&s, "30s", err, sizeof(err)) == -1);
	CHECK(lg_sched_add_stage(&s, ":100", err, sizeof(err)) == -1);
	CHECK(lg_sched_add_stage(&s, "0s:100", err, sizeof(err)) == -1);
	CHECK(lg_sched_add_stage(&s, "10x:100", err, sizeof(err)) == -1);
	CHECK(lg_sched_add_stage(&s, "10s:-1", err, sizeof(err)) == -1);
	CHECK(lg_sched_add_stage(&s, "10s:fast", err, sizeof(err)) == -1);
	CHECK(s.n == 2 && s.stage[1].ms == 60000 && s.stage[1].target == 0.5);
	CHECK(lg_parse_rate("5000", &r) == 0 && r == 5000);
	CHECK(lg_parse_rate("0.5", &r) == 0 && r == 0.5);
	CHECK(lg_parse_rate("", &r) == -1);
	CHECK(lg_parse_rate("-1", &r) == -1);
	CHECK(lg_parse_rate("1e99", &r) == -1);
	CHECK(lg_parse_rate("10/s", &r) == -1);
}

static void
poll_gap_grows_with_the_wait(void)
{
	/* The interval until a sixteenth of the age is longer. */
	CHECK(lg_poll_gap_ms(50, 0) == 50);
	CHECK(lg_poll_gap_ms(50, 800) == 50);
	CHECK(lg_poll_gap_ms(50, 1600) == 100);
	CHECK(lg_poll_gap_ms(50, 30000) == 1875);
	CHECK(lg_poll_gap_ms(1000, 15000) == 1000);
}

int
main(void)
{
	RUN(hist_small_values_are_exact);
	RUN(hist_uniform_within_one_percent);
	RUN(hist_exponential_within_one_percent);
	RUN(hist_bimodal_tail);
	RUN(hist_clamps_and_empty);
	RUN(hist_every_value_within_precision);
	RUN(thresh_grammar_valid);
	RUN(thresh_grammar_invalid);
	RUN(thresh_compares);
	RUN(thresh_bound_to_metrics);
	RUN(sched_constant_is_exact);
	RUN(sched_ramping_follows_the_integral);
	RUN(sched_stage_syntax);
	RUN(poll_gap_grows_with_the_wait);
	UNIT_END();
}
