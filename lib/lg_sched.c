/*
 * lg_sched: see lg_sched.h.
 */
#include "lg_sched.h"
#include "conf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
lg_sched_constant(struct lg_sched *s, double rate, int64_t ms)
{
	memset(s, 0, sizeof(*s));
	s->start_rate = rate;
	s->n = 1;
	s->stage[0].ms = ms;
	s->stage[0].target = rate;
}

int
lg_parse_rate(const char *s, double *rate)
{
	char *end;
	double v;

	if (*s == '\0' || *s == ' ' || *s == '+' || *s == '-')
		return -1;
	v = strtod(s, &end);
	if (*end != '\0' || !isfinite(v) || v < 0 || v > LG_RATE_MAX)
		return -1;
	*rate = v;
	return 0;
}

int
lg_sched_add_stage(
    struct lg_sched *s, const char *spec, char *err, size_t errlen)
{
	const char *colon = strrchr(spec, ':');
	char dur[64];
	long long ms;
	size_t n;

	if (s->n == LG_SCHED_STAGES) {
		snprintf(err, errlen, "more than %d stages", LG_SCHED_STAGES);
		return -1;
	}
	n = colon ? (size_t)(colon - spec) : 0;
	if (colon == NULL || n == 0 || n >= sizeof(dur)) {
		snprintf(
		    err, errlen, "stage '%s' is not duration:target", spec);
		return -1;
	}
	memcpy(dur, spec, n);
	dur[n] = '\0';
	if (conf_parse_duration(dur, &ms) != 0 || ms <= 0) {
		snprintf(err, errlen,
		    "stage '%s': '%s' is not a duration such as 500ms, 30s or 2m",
		    spec, dur);
		return -1;
	}
	if (lg_parse_rate(colon + 1, &s->stage[s->n].target) != 0) {
		snprintf(err, errlen,
		    "stage '%s': '%s' is not a rate from 0 to %.0f", spec,
		    colon + 1, LG_RATE_MAX);
		return -1;
	}
	s->stage[s->n++].ms = ms;
	return 0;
}

static double
stage_from(const struct lg_sched *s, size_t k)
{
	return k == 0 ? s->start_rate : s->stage[k - 1].target;
}

void
lg_sched_init(struct lg_sched *s)
{
	double sum = 0;
	int64_t t = 0;
	size_t k;

	for (k = 0; k < s->n; k++) {
		s->before[k] = sum;
		s->at_ns[k] = t;
		sum += (stage_from(s, k) + s->stage[k].target) / 2 *
		    ((double)s->stage[k].ms / 1000);
		t += s->stage[k].ms * 1000000;
	}
	s->before[k] = sum;
	s->at_ns[k] = t;
	/*
	 * Iteration i exists when it is due before the end, i < sum; the
	 * epsilon keeps 200/s for 2 s at 400, not 401, after rounding.
	 */
	s->total = sum > 1e-9 ? (uint64_t)ceil(sum - 1e-9) : 0;
}

uint64_t
lg_sched_total(const struct lg_sched *s)
{
	return s->total;
}

int64_t
lg_sched_length_ns(const struct lg_sched *s)
{
	return s->at_ns[s->n];
}

int64_t
lg_sched_due(const struct lg_sched *s, uint64_t i, size_t *hint)
{
	double x, r0, a, sec, len;
	size_t k = *hint;

	if (i >= s->total)
		return -1;
	if (k >= s->n || s->before[k] > (double)i)
		k = 0;
	while (k + 1 < s->n && s->before[k + 1] <= (double)i)
		k++;
	*hint = k;
	x = (double)i - s->before[k];
	if (x <= 0)
		return s->at_ns[k];
	/*
	 * Solve r0 t + a t^2 = x for t, a = (r1 - r0) / 2T, in the form
	 * 2x / (r0 + sqrt(r0^2 + 4ax)): stable when a is 0 or tiny, and
	 * for ramps down as well as up.
	 */
	len = (double)s->stage[k].ms / 1000;
	r0 = stage_from(s, k);
	a = (s->stage[k].target - r0) / (2 * len);
	sec = r0 * r0 + 4 * a * x;
	sec = 2 * x / (r0 + sqrt(sec > 0 ? sec : 0));
	if (!isfinite(sec) || sec > len)
		sec = len;
	return s->at_ns[k] + (int64_t)llround(sec * 1e9);
}

double
lg_sched_rate_at(const struct lg_sched *s, int64_t t)
{
	double f, r0;
	size_t k;

	for (k = 0; k < s->n; k++)
		if (t < s->at_ns[k + 1])
			break;
	if (k == s->n)
		return 0;
	r0 = stage_from(s, k);
	f = (double)(t - s->at_ns[k]) / (double)(s->stage[k].ms * 1000000);
	return r0 + (s->stage[k].target - r0) * f;
}
