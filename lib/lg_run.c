/*
 * lg_run: see lg_run.h.
 *
 * Every request carries requestId "iteration.slot.step", so a result is
 * matched to its slot without a lookup table, and one that comes back after
 * its slot gave up (a timeout) and moved on is recognised as stale.
 */
#include "lg_run.h"
#include "diag.h"
#include "js.h"
#include "lg_poll.h"
#include "lg_target.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000LL
#define MS 1000000LL
#define TICK_NS (50 * MS) /* timeouts and threshold checks */
#define BURST 4096 /* most iterations started in one pass */
#define LINE_ROOM 512
#define TAG_BITS 40

enum { K_AUTH, K_CAPTURE, K_REFUND, K_COUNT };

struct slot {
	uint64_t iter;
	int64_t intended; /* when it was due */
	int64_t since; /* when the current step began */
	int64_t payment_id;
	int32_t next_free;
	uint8_t step;
	bool busy;
};

struct pool {
	struct lg_target t[LG_TARGETS_MAX];
	long n;
	long next;
};

struct run {
	const struct lg_opts *o;
	struct lg_metrics *ms;
	struct slot *slot;
	int32_t free_head;
	long inflight;
	struct pool pool[K_COUNT];
	struct lg_poll *poll;
	int64_t start;
	int code;
	struct lg_target *reading; /* whose lines result_line() gets */
	uint64_t done_tick; /* iterations done, for the progress line */
};

static volatile sig_atomic_t stop_signal;

static void
on_signal(int sig)
{
	stop_signal = stop_signal ? -1 : sig;
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void fatal(struct run *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fatal(struct run *r, int code, const char *fmt, ...)
{
	va_list ap;

	if (r->code != 0)
		return;
	r->code = code;
	va_start(ap, fmt);
	diag_vwarn(fmt, ap);
	va_end(ap);
}

/* The target died or its pipe broke: say how it ended. */
static void
target_gone(struct run *r, struct lg_target *t)
{
	char how[64];
	int st;

	if (r->code != 0)
		return;
	st = lg_target_stop(t, 1000);
	fatal(r, EX_UNAVAILABLE, "target '%s' %s during the run", t->cmd,
	    lg_target_how(st, how, sizeof(how)));
}

static struct lg_target *
pick(struct run *r, int kind)
{
	struct pool *p = &r->pool[kind];

	return &p->t[p->next++ % p->n];
}

static void send_line(struct run *r, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
send_line(struct run *r, int kind, const char *fmt, ...)
{
	struct lg_target *t = pick(r, kind);
	char *room = lg_target_room(t, LINE_ROOM);
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(room, LINE_ROOM, fmt, ap);
	va_end(ap);
	if (n > 0 && n < LINE_ROOM)
		lg_target_commit(t, (size_t)n);
	lg_count(r->ms, M_REQS, 1);
}

static void
send_step(struct run *r, struct slot *s, int step, int64_t now)
{
	unsigned idx = (unsigned)(s - r->slot);
	unsigned long long it = (unsigned long long)s->iter;
	uint64_t x;

	s->step = (uint8_t)step;
	s->since = now;
	switch (step) {
	case LG_ST_AUTHORIZE:
		x = mix64(r->o->seed * 0x9e3779b97f4a7c15ULL + s->iter);
		send_line(r, K_AUTH,
		    "{\"requestId\":\"%llu.%u.%d\",\"merchantId\":"
		    "\"MERCHANT-%u\",\"amount\":%u,\"currency\":\"KRW\","
		    "\"idempotencyKey\":\"%s-%llu\"%s}\n",
		    it, idx, step, (unsigned)(1 + x % 1000),
		    (unsigned)(1 + (x >> 32) % 50) * 1000, r->o->key_prefix, it,
		    r->o->scenario == LG_AUTHORIZE_CAPTURE
		        ? ",\"capture\":false"
		        : "");
		break;
	case LG_ST_CAPTURE:
		send_line(r, K_CAPTURE,
		    "{\"requestId\":\"%llu.%u.%d\",\"paymentId\":%lld}\n", it,
		    idx, step, (long long)s->payment_id);
		break;
	case LG_ST_REFUND:
		send_line(r, K_REFUND,
		    "{\"requestId\":\"%llu.%u.%d\",\"paymentId\":%lld,"
		    "\"reason\":\"loadgen full flow\"}\n",
		    it, idx, step, (long long)s->payment_id);
		break;
	default:
		lg_poll_add(r->poll, s->payment_id,
		    (uint64_t)idx << TAG_BITS |
		        (s->iter & ((UINT64_C(1) << TAG_BITS) - 1)));
		break;
	}
}

static bool
waiting(int step)
{
	return step == LG_ST_CAPTURE_WAIT || step == LG_ST_REFUND_WAIT;
}

enum { END_OK, END_DECLINED, END_FAILED };

static void
finish(struct run *r, struct slot *s, int how, int64_t now)
{
	int32_t idx = (int32_t)(s - r->slot);

	if (waiting(s->step))
		lg_poll_remove(r->poll, s->payment_id,
		    (uint64_t)idx << TAG_BITS |
		        (s->iter & ((UINT64_C(1) << TAG_BITS) - 1)));
	lg_count(r->ms, M_ITERATIONS, 1);
	lg_rate(r->ms, M_ERRORS, how == END_FAILED);
	lg_rate(r->ms, M_DECLINED, how == END_DECLINED);
	lg_trend(r->ms, M_ITERATION_DURATION, now - s->intended);
	s->busy = false;
	s->next_free = r->free_head;
	r->free_head = idx;
	r->inflight--;
	r->done_tick++;
	lg_gauge(r->ms, M_INFLIGHT, r->inflight);
}

static void
start_iteration(struct run *r, uint64_t i, int64_t due, int64_t now)
{
	struct slot *s;

	if (r->free_head < 0) {
		lg_count(r->ms, M_DROPPED, 1);
		return;
	}
	s = &r->slot[r->free_head];
	r->free_head = s->next_free;
	s->busy = true;
	s->iter = i;
	s->intended = due;
	s->payment_id = 0;
	r->inflight++;
	lg_gauge(r->ms, M_INFLIGHT, r->inflight);
	lg_trend(r->ms, M_SCHEDULE_LAG, now - due);
	send_step(r, s, LG_ST_AUTHORIZE, now);
}

static const enum lg_mid step_metric[] = {
	[LG_ST_AUTHORIZE] = M_AUTHORIZE_DURATION,
	[LG_ST_CAPTURE] = M_CAPTURE_DURATION,
	[LG_ST_CAPTURE_WAIT] = M_CAPTURE_WAIT,
	[LG_ST_REFUND] = M_REFUND_DURATION,
	[LG_ST_REFUND_WAIT] = M_REFUND_WAIT,
};

static int64_t
payment_of(json_t *o)
{
	json_t *v = json_object_get(o, "paymentId");

	if (v == NULL)
		v = json_object_get(o, "payment_id");
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* A request step answered successfully: go on to the next step. */
static void
advance(
    struct run *r, struct slot *s, const char *status, json_t *o, int64_t now)
{
	int sc = r->o->scenario;

	if (s->step == LG_ST_AUTHORIZE && strcmp(status, "AUTH_FAILED") == 0) {
		finish(r, s, END_DECLINED, now);
		return;
	}
	if (s->step != LG_ST_AUTHORIZE || sc == LG_AUTHORIZE_ONLY) {
		if (s->step == LG_ST_REFUND)
			send_step(r, s, LG_ST_REFUND_WAIT, now);
		else
			finish(r, s, END_OK, now);
		return;
	}
	if ((s->payment_id = payment_of(o)) <= 0) {
		lg_outcome(r->ms, LG_ST_AUTHORIZE, true, "NO_PAYMENT_ID");
		finish(r, s, END_FAILED, now);
		return;
	}
	send_step(r, s,
	    sc == LG_AUTHORIZE_CAPTURE ? LG_ST_CAPTURE : LG_ST_CAPTURE_WAIT,
	    now);
}

static struct slot *
slot_of_id(struct run *r, const char *id)
{
	unsigned long long it, idx;
	struct slot *s;
	char *e;
	long step;

	it = strtoull(id, &e, 10);
	if (*e != '.')
		return NULL;
	idx = strtoull(e + 1, &e, 10);
	if (*e != '.' || idx >= (unsigned long long)r->o->max_inflight)
		return NULL;
	step = strtol(e + 1, &e, 10);
	s = &r->slot[idx];
	if (*e != '\0' || !s->busy || s->iter != it || s->step != step ||
	    waiting(s->step))
		return NULL;
	return s;
}

static void
result_line(void *arg, char *line, size_t len)
{
	struct run *r = arg;
	const char *id, *status, *error;
	struct slot *s = NULL;
	int64_t now = now_ns();
	json_t *o;

	if (r->code != 0)
		return;
	o = json_loadb(line, len, 0, NULL);
	id = js_getstr(o, "requestId", js_getstr(o, "request_id", NULL));
	if (id != NULL)
		s = slot_of_id(r, id);
	if (o == NULL || !json_is_object(o)) {
		/* Not the protocol at all: a wrong --target, not a slow one. */
		fatal(r, EX_DATAERR,
		    "target '%s': result is not a JSON object: '%.80s'",
		    r->reading->cmd, line);
		json_decref(o);
		return;
	}
	if (s == NULL) {
		lg_count(r->ms, M_UNMATCHED, 1);
		json_decref(o);
		return;
	}
	error = js_getstr(o, "error", NULL);
	status = js_getstr(o, "status", NULL);
	if (error == NULL && status == NULL)
		error = "NO_STATUS";
	lg_rate(r->ms, M_REQ_FAILED, error != NULL);
	lg_outcome(r->ms, s->step, error != NULL, error ? error : status);
	if (error != NULL) {
		finish(r, s, END_FAILED, now);
	} else {
		lg_trend(r->ms, step_metric[s->step], now - s->since);
		lg_trend(r->ms, M_REQ_DURATION, now - s->since);
		advance(r, s, status, o, now);
	}
	json_decref(o);
}

static bool
captured(const char *st)
{
	static const char *const later[] = { "CAPTURED", "REFUND_REQUESTED",
		"PARTIALLY_REFUNDED", "REFUNDED", "REFUND_FAILED" };
	size_t i;

	for (i = 0; i < sizeof(later) / sizeof(later[0]); i++)
		if (strcmp(st, later[i]) == 0)
			return true;
	return false;
}

static void
seen_one(struct run *r, const struct lg_seen *v, int64_t now)
{
	uint64_t idx = v->tag >> TAG_BITS;
	struct slot *s;
	bool bad;

	if (idx >= (uint64_t)r->o->max_inflight)
		return;
	s = &r->slot[idx];
	if (!s->busy || !waiting(s->step) || s->payment_id != v->payment_id ||
	    (s->iter & ((UINT64_C(1) << TAG_BITS) - 1)) !=
	        (v->tag & ((UINT64_C(1) << TAG_BITS) - 1)))
		return;
	if (s->step == LG_ST_CAPTURE_WAIT) {
		bad = strcmp(v->status, "CAPTURE_FAILED") == 0 ||
		    strcmp(v->status, "AUTH_FAILED") == 0;
		if (!bad && !captured(v->status))
			return;
	} else {
		bad = strcmp(v->status, "REFUND_FAILED") == 0;
		if (!bad &&
		    (strcmp(v->status, "REFUNDED") != 0 ||
		        v->ledger_rows < r->o->ledger_rows))
			return;
	}
	lg_outcome(r->ms, s->step, bad, v->status);
	if (bad) {
		finish(r, s, END_FAILED, now);
		return;
	}
	lg_trend(r->ms, step_metric[s->step], now - s->since);
	if (s->step == LG_ST_CAPTURE_WAIT) {
		lg_poll_remove(r->poll, s->payment_id,
		    idx << TAG_BITS |
		        (s->iter & ((UINT64_C(1) << TAG_BITS) - 1)));
		send_step(r, s, LG_ST_REFUND, now);
		return;
	}
	lg_trend(r->ms, M_FLOW_DURATION, now - s->intended);
	finish(r, s, END_OK, now);
}

static void
take_seen(struct run *r)
{
	struct lg_seen *seen = NULL;
	char msg[512];
	int64_t now = now_ns();
	long i, n;
	int code;

	n = lg_poll_take(r->poll, &seen, &code, msg, sizeof(msg));
	if (n < 0) {
		fatal(r, code, "poll payments: %s", msg);
		return;
	}
	for (i = 0; i < n; i++)
		seen_one(r, &seen[i], now);
	free(seen);
}

/* Fail the steps that have waited longer than the timeout. */
static void
expire(struct run *r, int64_t now)
{
	int64_t limit = r->o->timeout_ms * MS;
	struct slot *s;
	long i;

	for (i = 0; i < r->o->max_inflight; i++) {
		s = &r->slot[i];
		if (!s->busy || now - s->since < limit)
			continue;
		if (!waiting(s->step))
			lg_rate(r->ms, M_REQ_FAILED, true);
		lg_outcome(r->ms, s->step, true, "TIMEOUT");
		finish(r, s, END_FAILED, now);
	}
}

/* Give up on what is still in flight after the graceful stop. */
static void
interrupt_all(struct run *r)
{
	struct slot *s;
	long i;

	for (i = 0; i < r->o->max_inflight; i++) {
		s = &r->slot[i];
		if (!s->busy)
			continue;
		s->busy = false;
		lg_count(r->ms, M_INTERRUPTED, 1);
	}
	r->inflight = 0;
	lg_gauge(r->ms, M_INFLIGHT, 0);
}

static void
progress(struct run *r, int64_t now, int64_t *last)
{
	double dt = (double)(now - *last) / NS;
	const struct lg_metric *m = r->ms->m;

	if (!r->o->quiet)
		fprintf(stderr,
		    "%s: %.0fs %.1f/s p95=%.2fms errors=%llu dropped=%llu "
		    "inflight=%ld\n",
		    diag_prog(), (double)(now - r->start) / NS,
		    dt > 0 ? (double)r->done_tick / dt : 0,
		    lg_metric_agg(&m[M_ITERATION_DURATION], LG_AGG_PCT, 95, 0),
		    (unsigned long long)m[M_ERRORS].count,
		    (unsigned long long)m[M_DROPPED].count, r->inflight);
	r->done_tick = 0;
	*last = now;
}

static int
start_targets(struct run *r)
{
	const char *cmd[K_COUNT] = { r->o->target, r->o->capture_target,
		r->o->refund_target };
	bool need[K_COUNT] = { true, r->o->scenario == LG_AUTHORIZE_CAPTURE,
		r->o->scenario == LG_FULL_FLOW };
	char err[256];
	int k;
	long i;

	for (k = 0; k < K_COUNT; k++) {
		if (!need[k])
			continue;
		for (i = 0; i < r->o->ntargets; i++) {
			if (lg_target_start(&r->pool[k].t[i], cmd[k], err,
			        sizeof(err)) != 0) {
				fatal(r, EX_UNAVAILABLE, "target '%s': %s",
				    cmd[k], err);
				return -1;
			}
			r->pool[k].n++;
		}
	}
	return 0;
}

static void
stop_targets(struct run *r)
{
	struct lg_target *t;
	char how[64];
	int k, st;
	long i;

	for (k = 0; k < K_COUNT; k++)
		for (i = 0; i < r->pool[k].n; i++) {
			t = &r->pool[k].t[i];
			if (t->reaped)
				continue;
			/* After a failure there is nothing to wait for. */
			st = lg_target_stop(t, r->code ? 500 : 5000);
			if (st != 0 && r->code == 0)
				diag_warn("target '%s' %s", t->cmd,
				    lg_target_how(st, how, sizeof(how)));
		}
}

/* Read results and send what is queued, as ppoll(2) said. */
static void
io(struct run *r, struct pollfd *pfd, struct lg_target **who, size_t n)
{
	size_t i;
	int rc;

	for (i = 0; i < n && r->code == 0; i++) {
		if (who[i] == NULL) {
			if (pfd[i].revents & POLLIN)
				take_seen(r);
			continue;
		}
		if (pfd[i].fd == who[i]->out &&
		    (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
			r->reading = who[i];
			rc = lg_target_read(who[i], result_line, r);
			if (rc != 0 && r->code == 0)
				target_gone(r, who[i]);
		} else if (pfd[i].fd == who[i]->in && pfd[i].revents) {
			if (lg_target_flush(who[i]) != 0)
				target_gone(r, who[i]);
		}
	}
}

static void
flush_all(struct run *r)
{
	int k;
	long i;

	for (k = 0; k < K_COUNT && r->code == 0; k++)
		for (i = 0; i < r->pool[k].n; i++)
			if (lg_target_pending(&r->pool[k].t[i]) &&
			    lg_target_flush(&r->pool[k].t[i]) != 0)
				target_gone(r, &r->pool[k].t[i]);
}

static size_t
fill_pollfds(struct run *r, struct pollfd *pfd, struct lg_target **who)
{
	struct lg_target *t;
	size_t n = 0;
	int k;
	long i;

	for (k = 0; k < K_COUNT; k++)
		for (i = 0; i < r->pool[k].n; i++) {
			t = &r->pool[k].t[i];
			pfd[n] = (struct pollfd){ t->out, POLLIN, 0 };
			who[n++] = t;
			if (lg_target_pending(t)) {
				pfd[n] = (struct pollfd){ t->in, POLLOUT, 0 };
				who[n++] = t;
			}
		}
	if (r->poll != NULL) {
		pfd[n] = (struct pollfd){ lg_poll_fd(r->poll), POLLIN, 0 };
		who[n++] = NULL;
	}
	return n;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	diag_ignore_sigpipe();
}

static void
loop(struct run *r, struct lg_outcome_run *out)
{
	struct pollfd pfd[3 * 2 * LG_TARGETS_MAX + 1];
	struct lg_target *who[3 * 2 * LG_TARGETS_MAX + 1];
	int64_t now, due, wake, tick, sec, length, end = -1;
	size_t hint = 0, n, burst;
	struct timespec ts;
	uint64_t i = 0;
	double el;

	now = r->start = now_ns();
	length = r->start + lg_sched_length_ns(&r->o->sched);
	tick = now + TICK_NS;
	sec = now;
	due = lg_sched_due(&r->o->sched, 0, &hint);
	due = due < 0 ? -1 : r->start + due;
	while (r->code == 0) {
		now = now_ns();
		for (burst = 0; due >= 0 && due <= now && burst < BURST;
		     burst++) {
			start_iteration(r, i, due, now);
			due = lg_sched_due(&r->o->sched, ++i, &hint);
			due = due < 0 ? -1 : r->start + due;
		}
		if (stop_signal != 0 && due >= 0) {
			out->stopped = true;
			due = -1;
		}
		if (due < 0 && end < 0)
			end = (out->stopped || now > length ? now : length) +
			    r->o->grace_ms * MS;
		flush_all(r);
		if (now >= tick) {
			expire(r, now);
			tick = now + TICK_NS;
			el = (double)(now - r->start) / NS;
			if (r->o->abort_on_fail && el >= 1 &&
			    lg_metrics_check(r->ms, el) > 0) {
				out->aborted = true;
				break;
			}
			if (now - sec >= NS)
				progress(r, now, &sec);
		}
		/* A constant rate runs its whole duration, as in k6. */
		if (due < 0 &&
		    ((r->inflight == 0 && (now >= length || out->stopped)) ||
		        now >= end || stop_signal < 0))
			break;
		wake = tick;
		if (due < 0 && r->inflight == 0 && length < wake)
			wake = length;
		if (due >= 0 && due < wake)
			wake = due;
		if (end >= 0 && end < wake)
			wake = end;
		wake = wake > now ? wake - now : 0;
		ts.tv_sec = wake / NS;
		ts.tv_nsec = wake % NS;
		n = fill_pollfds(r, pfd, who);
		if (ppoll(pfd, n, &ts, NULL) > 0)
			io(r, pfd, who, n);
	}
	out->elapsed_s = (double)(now_ns() - r->start) / NS;
	if (r->inflight > 0)
		interrupt_all(r);
}

int
lg_run(const struct lg_opts *o, struct lg_metrics *ms, struct db *db,
    struct lg_outcome_run *out)
{
	struct run r;
	long i;

	memset(&r, 0, sizeof(r));
	memset(out, 0, sizeof(*out));
	r.o = o;
	r.ms = ms;
	r.slot = xcalloc((size_t)o->max_inflight, sizeof(*r.slot));
	for (i = 0; i < o->max_inflight; i++)
		r.slot[i].next_free =
		    (int32_t)(i + 1 < o->max_inflight ? i + 1 : -1);
	r.free_head = 0;
	install_signals();
	if (db != NULL && (r.poll = lg_poll_start(db, o->poll_ms)) == NULL) {
		fatal(&r, EX_OSERR, "start the poller: %s", strerror(errno));
		db_close(db);
	}
	if (r.code == 0 && start_targets(&r) == 0)
		loop(&r, out);
	lg_poll_stop(r.poll);
	stop_targets(&r);
	free(r.slot);
	return r.code;
}
