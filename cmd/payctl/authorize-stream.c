/*
 * payctl authorize -: authorize JSON Lines requests from standard input,
 * many at once.  Four threads, each with its own database connection
 * where it needs one, pass requests along queues:
 *
 *   reader     reads and checks lines, claims their keys in batches (one
 *              multi-row insert), replays keys already final, and hands
 *              the claimed requests to the gateway loop;
 *   gateway    (the main thread) keeps up to --concurrency calls in
 *              flight (lib/http's multi client) and classifies the
 *              answers;
 *   finisher   records the answers in batches, one transaction each, and
 *              prints the results;
 *   slow       takes the rare requests whose key is held by a PENDING row
 *              and runs the single-request logic for each (wait, replay,
 *              take over).
 *
 * At most twice --concurrency plus two batches of requests are claimed
 * and unfinished at a time, which bounds memory and how long a claim waits
 * for its call.  Results come out in
 * any order, each with its line number and requestId.
 */
#include "clock.h"
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "stream.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define FINISHERS 2 /* so the server works on two batches at once */
#define BATCH_WAIT_MS 2 /* the longest a request waits for its batch */

struct queue {
	struct sreq *head, *tail;
	size_t n;
};

static struct {
	pthread_mutex_t mu; /* everything below but the counters */
	pthread_cond_t room, fin, slow;
	struct queue gw_q, fin_q, slow_q;
	size_t inflight, max_inflight;
	bool reader_done, gw_done;
	int finishers; /* still running */
	struct http_multi *hm;
	long concurrency, running; /* running: the gateway thread's */
	struct ratelimit rl;
	char *url;
	struct lines in; /* the reader's */
} S = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.room = PTHREAD_COND_INITIALIZER,
	.fin = PTHREAD_COND_INITIALIZER,
	.slow = PTHREAD_COND_INITIALIZER,
};

static void
push(struct queue *q, struct sreq *r)
{
	r->next = NULL;
	if (q->tail != NULL)
		q->tail->next = r;
	else
		q->head = r;
	q->tail = r;
	q->n++;
}

static struct sreq *
pop(struct queue *q)
{
	struct sreq *r = q->head;

	if (r == NULL)
		return NULL;
	q->head = r->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->n--;
	return r;
}

static void
emit(long lineno, json_t *rid, json_t *line, int code, bool declined)
{
	lines_emit(lineno, rid, line, code, declined, false);
}

static void
flush_out(void)
{
	lines_flush();
}

static void __attribute__((format(printf, 4, 5)))
emit_error(struct sreq *r, int code, const char *error, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emit(r->line, r->rid,
	    json_pack("{s:s, s:s, s:s, s:s}", "error", error, "message", msg,
	        "merchant_id", r->merchant, "idempotency_key", r->key),
	    code, false);
}

/* A request is over: make room for another. */
static void
done(struct sreq *r)
{
	sreq_free(r);
	pthread_mutex_lock(&S.mu);
	S.inflight--;
	pthread_cond_signal(&S.room);
	pthread_mutex_unlock(&S.mu);
}

static void
db_errors(struct sreq **v, size_t n, struct conn *c, int rc, const char *what)
{
	size_t i;

	for (i = 0; i < n; i++) {
		/* Some may have their result already (a replay, a refusal). */
		if (v[i]->state != SR_DONE)
			emit_error(v[i], rc, "DATABASE_ERROR",
			    "%s of key '%s': %s", what, v[i]->key,
			    conn_error(c));
		done(v[i]);
	}
	conn_fail(c, rc);
}

/* Reader: lines to batches of claims. */

/* The outcome of a request whose key another row holds. */
static void
decide(struct sreq *r, const struct payment *p)
{
	char msg[512];
	json_t *o;

	if (p->id == 0 || strcmp(p->status, "PENDING") == 0) {
		r->state = SR_SLOW;
		return;
	}
	r->state = SR_DONE;
	if (p->amount != r->a.amount || strcmp(p->currency, r->currency) != 0 ||
	    p->auto_capture != r->a.capture) {
		snprintf(msg, sizeof(msg),
		    "idempotency key '%s': already used by payment %lld for "
		    "%lld %s%s",
		    r->key, (long long)p->id, (long long)p->amount, p->currency,
		    p->auto_capture ? "" : " without capture");
		emit(r->line, r->rid,
		    json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:s, s:b}",
		        "error", "IDEMPOTENCY_CONFLICT", "message", msg,
		        "payment_id", (json_int_t)p->id, "merchant_id",
		        p->merchant, "idempotency_key", p->key, "amount",
		        (json_int_t)p->amount, "currency", p->currency,
		        "capture", p->auto_capture),
		    EX_DATAERR, false);
		return;
	}
	o = payment_brief(p, true);
	emit(r->line, r->rid, o, 0, strcmp(p->status, "AUTH_FAILED") == 0);
}

/* Refuse the owned requests over their merchant's rate limit. */
static int
limit(struct db *db, struct sreq **v, size_t n)
{
	long long want, granted, after;
	struct sreq *refused[BATCH];
	char msg[256];
	size_t i, j, nref = 0;
	int rc;

	for (i = 0; i < n; i++) {
		if (v[i]->state != SR_OWNED)
			continue;
		/* The first request of each merchant counts them all. */
		for (j = 0; j < i; j++)
			if (v[j]->state == SR_OWNED &&
			    strcmp(v[j]->merchant, v[i]->merchant) == 0)
				break;
		if (j < i)
			continue;
		for (want = 0, j = i; j < n; j++)
			want += v[j]->state == SR_OWNED &&
			    strcmp(v[j]->merchant, v[i]->merchant) == 0;
		if ((rc = ratelimit_take(db, &S.rl, v[i]->merchant, want,
		         &granted, &after)) != 0)
			return rc;
		for (j = i; j < n; j++) {
			if (v[j]->state != SR_OWNED ||
			    strcmp(v[j]->merchant, v[i]->merchant) != 0)
				continue;
			if (granted > 0) {
				granted--;
				continue;
			}
			v[j]->state = SR_DONE;
			v[j]->res.outcome = PG_ERROR;
			refused[nref++] = v[j];
			snprintf(msg, sizeof(msg),
			    "authorize rate limit of merchant '%s': %lld per %s "
			    "reached, retry in %llds",
			    v[j]->merchant, S.rl.limit,
			    conf_str("rate_limit_window"), after);
			emit(v[j]->line, v[j]->rid,
			    json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "error",
			        "RATE_LIMITED", "message", msg, "merchant_id",
			        v[j]->merchant, "idempotency_key", v[j]->key,
			        "limit", (json_int_t)S.rl.limit,
			        "retry_after_seconds", (json_int_t)after),
			    EX_TEMPFAIL, false);
		}
	}
	return nref ? batch_release(db, refused, nref) : 0;
}

static void
claim(struct conn *c, struct sreq **v, size_t n)
{
	int64_t lease_end;
	size_t i;
	int rc, tries;

	if ((rc = conn_use(c)) != 0) {
		db_errors(v, n, c, rc, "claim");
		return;
	}
	lease_end = clock_mono_ms() + auth_lease_us() / 1000;
	for (i = 0; i < n; i++)
		v[i]->a.lease_end = lease_end;
	for (tries = 0; tries < 3; tries++)
		if ((rc = batch_claim(c->db, v, n)) == 0 ||
		    !db_retryable(c->db))
			break;
	if (rc == 0 && S.rl.limit > 0)
		rc = limit(c->db, v, n);
	if (rc == 0)
		rc = batch_existing(c->db, v, n, decide);
	if (rc != 0) {
		/* Claims already made run out with their lease. */
		db_errors(v, n, c, rc, "claim");
		return;
	}
	pthread_mutex_lock(&S.mu);
	for (i = 0; i < n; i++) {
		if (v[i]->state == SR_OWNED)
			push(&S.gw_q, v[i]);
		else if (v[i]->state == SR_SLOW)
			push(&S.slow_q, v[i]);
	}
	pthread_cond_signal(&S.slow);
	pthread_mutex_unlock(&S.mu);
	http_multi_wakeup(S.hm);
	for (i = 0; i < n; i++)
		if (v[i]->state == SR_DONE)
			done(v[i]);
	flush_out();
}

static void *
reader(void *arg)
{
	struct conn *c = arg;
	struct lines *L = &S.in;
	char err[256];
	json_t *rid;
	struct sreq *v[BATCH], *r;
	size_t n = 0, room = 0;
	int64_t first = 0;
	char *line;
	int got;

	for (;;) {
		if (room == 0) {
			pthread_mutex_lock(&S.mu);
			while (S.inflight >= S.max_inflight)
				pthread_cond_wait(&S.room, &S.mu);
			room = S.max_inflight - S.inflight;
			if (room > BATCH)
				room = BATCH;
			S.inflight += room; /* reserved; returned below */
			pthread_mutex_unlock(&S.mu);
		}
		got = lines_out_failed() ? L_EOF : lines_next(L, n == 0, &line);
		if (got == L_LINE) {
			if (L->skipping) {
				L->skipping = false;
				emit(L->lineno, NULL,
				    json_pack("{s:s, s:s}", "error",
				        "BAD_REQUEST", "message",
				        "line longer than 65536 bytes"),
				    EX_DATAERR, false);
				continue;
			}
			if (L->nul) {
				emit(L->lineno, NULL,
				    json_pack("{s:s, s:s}", "error",
				        "BAD_REQUEST", "message",
				        "line holds a NUL byte"),
				    EX_DATAERR, false);
				continue;
			}
			if (line[strspn(line, " \t\r")] == '\0')
				continue;
			if ((r = sreq_parse(L->lineno, line, err, sizeof(err),
			         &rid)) != NULL)
				v[n++] = r;
			else {
				emit(L->lineno, rid,
				    json_pack("{s:s, s:s}", "error",
				        "BAD_REQUEST", "message", err),
				    EX_DATAERR, false);
				json_decref(rid);
			}
			if (n == 1)
				first = clock_mono_ms();
			if (n < room && clock_mono_ms() - first < BATCH_WAIT_MS)
				continue;
		}
		if (n == 0 && got != L_EOF)
			continue;
		pthread_mutex_lock(&S.mu);
		S.inflight -= room - n;
		pthread_mutex_unlock(&S.mu);
		room = 0;
		if (n > 0)
			claim(c, v, n);
		n = 0;
		flush_out();
		if (got == L_EOF)
			break;
	}
	free(L->buf);
	pthread_mutex_lock(&S.mu);
	S.reader_done = true;
	pthread_cond_broadcast(&S.slow);
	pthread_mutex_unlock(&S.mu);
	http_multi_wakeup(S.hm);
	return NULL;
}

/* Gateway: calls in flight with lib/http's multi client. */

static void
to_finisher(struct sreq *r)
{
	pthread_mutex_lock(&S.mu);
	push(&S.fin_q, r);
	pthread_cond_signal(&S.fin);
	pthread_mutex_unlock(&S.mu);
}

/* A call is over: classify the answer and pass it on. */
static void
answered(struct http_call *c, int rc, const struct http_reply *hr)
{
	struct sreq *r = c->arg;

	pg_classify(PG_AUTHORIZE, rc, hr, &r->res);
	gw_record(&r->bc, &r->res);
	S.running--;
	to_finisher(r);
}

static void
gateway(void)
{
	struct pg_request q = { 0 };
	struct sreq *r;
	bool over;

	for (;;) {
		pthread_mutex_lock(&S.mu);
		while (
		    S.running < S.concurrency && (r = pop(&S.gw_q)) != NULL) {
			pthread_mutex_unlock(&S.mu);
			if (!gw_permit(&r->bc, &r->res)) {
				to_finisher(r);
			} else {
				q.merchant = r->merchant;
				q.amount = r->a.amount;
				q.currency = r->currency;
				q.key = r->key;
				r->body = pg_body(PG_AUTHORIZE, &q);
				r->hc.url = S.url;
				r->hc.body = r->body;
				r->hc.done = answered;
				r->hc.arg = r;
				S.running++;
				http_multi_post(S.hm, &r->hc);
			}
			pthread_mutex_lock(&S.mu);
		}
		over = S.reader_done && S.gw_q.n == 0 && S.running == 0;
		pthread_mutex_unlock(&S.mu);
		if (over)
			break;
		http_multi_run(S.hm, 1000);
	}
	pthread_mutex_lock(&S.mu);
	S.gw_done = true;
	pthread_cond_broadcast(&S.fin);
	pthread_mutex_unlock(&S.mu);
}

/* Finisher: the answers recorded in batches. */

static void
report(struct sreq *r)
{
	if (r->res.outcome == PG_ERROR) {
		emit_error(r, r->res.exit_code, "GATEWAY_ERROR",
		    "gateway authorization of key '%s': %s", r->key,
		    r->res.message);
		return;
	}
	emit(r->line, r->rid, auth_json(&r->a, batch_status(r), &r->res, false),
	    0, r->res.outcome == PG_DECLINED);
}

struct finish_batch {
	struct sreq **v;
	size_t n;
};

static int
finish_batch(struct db *db, void *arg)
{
	struct finish_batch *b = arg;

	return batch_finish(db, b->v, b->n);
}

static void *
finisher(void *arg)
{
	struct conn *c = arg;
	struct sreq *v[BATCH];
	struct finish_batch b = { v, 0 };
	int64_t deadline;
	size_t n, i, nslow;
	int rc;

	for (;;) {
		pthread_mutex_lock(&S.mu);
		while (S.fin_q.n == 0 && !S.gw_done)
			pthread_cond_wait(&S.fin, &S.mu);
		for (n = 0; n < BATCH && (v[n] = pop(&S.fin_q)) != NULL; n++)
			;
		pthread_mutex_unlock(&S.mu);
		if (n == 0)
			break;
		/*
		 * The gateway's answers are not given up while the claims
		 * are ours: a database that went away is waited for.
		 */
		for (i = 0, deadline = INT64_MAX; i < n; i++)
			if (v[i]->a.lease_end < deadline)
				deadline = v[i]->a.lease_end;
		b.n = n;
		if ((rc = conn_retry(c, deadline, finish_batch, &b)) != 0) {
			/* The claims stay PENDING: a retry takes them over. */
			db_errors(v, n, c, rc, "record the authorization");
			continue;
		}
		for (i = 0, nslow = 0; i < n; i++) {
			if (v[i]->state == SR_LOST) {
				/* Taken over: see what the new holder did. */
				nslow++;
				continue;
			}
			report(v[i]);
			done(v[i]);
		}
		flush_out();
		if (nslow == 0)
			continue;
		pthread_mutex_lock(&S.mu);
		for (i = 0; i < n; i++)
			if (v[i]->state == SR_LOST)
				push(&S.slow_q, v[i]);
		pthread_cond_signal(&S.slow);
		pthread_mutex_unlock(&S.mu);
	}
	pthread_mutex_lock(&S.mu);
	S.finishers--;
	pthread_cond_signal(&S.slow);
	pthread_mutex_unlock(&S.mu);
	return NULL;
}

/* Slow path: one request at a time, as payctl authorize does it. */

struct slow_arg {
	struct conn c;
	struct http *h;
};

static void *
slow(void *arg)
{
	struct slow_arg *s = arg;
	struct auth_out out;
	struct sreq *r;
	int rc;

	for (;;) {
		pthread_mutex_lock(&S.mu);
		while (S.slow_q.n == 0 && !(S.reader_done && S.finishers == 0))
			pthread_cond_wait(&S.slow, &S.mu);
		r = pop(&S.slow_q);
		pthread_mutex_unlock(&S.mu);
		if (r == NULL)
			break;
		if ((rc = conn_use(&s->c)) != 0) {
			db_errors(&r, 1, &s->c, rc, "claim");
			continue;
		}
		auth_run(&s->c, s->h, &S.rl, &r->a, &out);
		if (strcmp(js_getstr(out.line, "error", ""),
		        "DATABASE_ERROR") == 0)
			conn_fail(&s->c, out.code);
		emit(r->line, r->rid, out.line, out.code, out.declined);
		flush_out();
		done(r);
	}
	return NULL;
}

int
auth_stream(bool exit_status, long concurrency)
{
	struct conn cr = { 0 }, cb = { 0 }, cf[FINISHERS] = { 0 };
	struct slow_arg sa = { 0 };
	pthread_t tr, tf[FINISHERS], ts;
	struct rlimit nofile;
	int i, rc;

	if ((rc = conf_load()) != 0)
		return rc;
	for (i = 0; i < FINISHERS && rc == 0; i++)
		rc = conn_use(&cf[i]);
	if (rc != 0 || (rc = conn_use(&cr)) != 0 ||
	    (rc = conn_use(&sa.c)) != 0 || (rc = conn_use(&cb)) != 0) {
		diag_warn("connect to '%s:%lld': %s", conf_str("db_host"),
		    conf_int("db_port"), cf[0].db == NULL ? cf[0].msg : cr.msg);
		for (i = 0; i < FINISHERS; i++)
			db_close(cf[i].db);
		db_close(cr.db);
		db_close(sa.c.db);
		return rc;
	}
	if ((rc = gw_open(cb.db)) != 0) {
		for (i = 0; i < FINISHERS; i++)
			db_close(cf[i].db);
		db_close(cr.db);
		db_close(sa.c.db);
		db_close(cb.db);
		return rc;
	}
	/* Each call in flight holds a connection to the gateway. */
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
	    nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	/* http_new() initialises libcurl once, before any thread starts. */
	sa.h = http_new();
	json_object_seed(0);
	S.hm = http_multi_new(concurrency);
	S.concurrency = concurrency;
	/* Enough to keep the gateway busy while batches are recorded. */
	S.max_inflight = 2 * (size_t)concurrency + 2 * BATCH;
	S.url = pg_url(PG_AUTHORIZE);
	S.finishers = FINISHERS;
	ratelimit_conf("authorize", &S.rl);
	lines_catch_signals();
	if (pthread_create(&tr, NULL, reader, &cr) != 0 ||
	    pthread_create(&ts, NULL, slow, &sa) != 0)
		diag_die(EX_SOFTWARE, "cannot start a thread");
	for (i = 0; i < FINISHERS; i++)
		if (pthread_create(&tf[i], NULL, finisher, &cf[i]) != 0)
			diag_die(EX_SOFTWARE, "cannot start a thread");
	gateway();
	pthread_join(tr, NULL);
	for (i = 0; i < FINISHERS; i++) {
		pthread_join(tf[i], NULL);
		db_close(cf[i].db);
	}
	pthread_join(ts, NULL);
	gw_close();
	db_close(cb.db);
	http_multi_free(S.hm);
	http_close(sa.h);
	db_close(cr.db);
	db_close(sa.c.db);
	free(S.url);
	return lines_summary(&S.in, exit_status);
}
