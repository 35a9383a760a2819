/*
 * stream-lines: see stream-lines.h.
 *
 * The stream: the main thread reads and checks the lines and queues each
 * request to a worker (payment id mod workers), so the requests of one
 * payment are run one after another in input order.  Each worker keeps
 * its database connection, and the statements prepared on it, for the
 * whole run.  It takes what waits in its queue, up to the command's batch
 * size and never two requests of one payment, and runs it: a lone request
 * as the single request does, more with the command's run_batch, in one
 * transaction.  So the batches grow with the load and a request never
 * waits for one to fill.  The results of a batch are printed, and flushed,
 * as soon as it is done.  The queues are bounded, so a slow consumer of
 * standard output slows the reading of standard input.
 */
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "outbox.h"
#include "stream-lines.h"
#include "stream.h"
#include "topics.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The batched twin of outbox_insert(), the payloads made by the caller. */
static const char events_sql[] =
    "INSERT INTO outbox_event (event_key, aggregate_id, event_type, payload)"
    " SELECT j.k, j.id, ?, j.p FROM JSON_TABLE(?, '$[*]' COLUMNS ("
    " k CHAR(36) PATH '$.k', id BIGINT PATH '$.id',"
    " p MEDIUMTEXT CHARACTER SET utf8mb4 PATH '$.p')) j";

#define WORKERS_DEFAULT 4
#define WORKERS_MAX 64
#define QUEUE_MAX 256 /* requests waiting per worker */

void
result_fail(struct result *r, int code, const char *error, json_t *extra,
    const char *fmt, ...)
{
	va_list ap;

	r->code = code;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	r->line = json_pack("{s:s, s:s}", "error", error, "message", r->msg);
	if (r->line == NULL)
		r->line = json_pack(
		    "{s:s, s:s}", "error", error, "message", "(not UTF-8)");
	if (extra != NULL) {
		json_object_update(r->line, extra);
		json_decref(extra);
	}
}

void
result_dbfail(struct result *r, struct db *db, int rc, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	result_fail(r, rc ? rc : EX_SOFTWARE, "DATABASE_ERROR", NULL, "%s: %s",
	    what, db_error(db));
}

bool
result_ratelimit(struct db *db, const struct ratelimit *rl,
    const char *merchant, struct result *r)
{
	long long granted, after;
	int rc;

	if (rl->limit <= 0)
		return true;
	if ((rc = ratelimit_take(db, rl, merchant, 1, &granted, &after)) != 0) {
		result_dbfail(r, db, rc, "%s rate limit of merchant '%s'",
		    rl->action, merchant);
		return false;
	}
	if (granted == 1)
		return true;
	result_ratelimited(r, rl, merchant, after);
	return false;
}

void
result_ratelimited(struct result *r, const struct ratelimit *rl,
    const char *merchant, long long after)
{
	result_fail(r, EX_TEMPFAIL, "RATE_LIMITED",
	    json_pack("{s:s, s:s, s:I, s:I}", "action", rl->action,
	        "merchant_id", merchant, "limit", (json_int_t)rl->limit,
	        "retry_after_seconds", (json_int_t)after),
	    "%s rate limit of merchant '%s': %lld per %s reached, retry in "
	    "%llds",
	    rl->action, merchant, rl->limit, conf_str("rate_limit_window"),
	    after);
}

int
result_print(struct result *r)
{
	int code = r->code;

	if (code != 0)
		diag_warn("%s", r->msg);
	if (js_print(r->line) != 0 && code == 0)
		code = EX_IOERR;
	r->line = NULL;
	return code;
}

/* Batches. */

struct id_ref {
	int64_t id;
	size_t i;
};

static int
by_id(const void *a, const void *b)
{
	const struct id_ref *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

void
stream_order(const struct preq *const *q, size_t *order, size_t n)
{
	struct id_ref *v = xcalloc(n, sizeof(*v));
	size_t i;

	for (i = 0; i < n; i++)
		v[i] = (struct id_ref){ q[i]->id, i };
	qsort(v, n, sizeof(*v), by_id);
	for (i = 0; i < n; i++)
		order[i] = v[i].i;
	free(v);
}

char *
stream_text(json_t *a)
{
	char *s = js_text(a);

	if (s == NULL)
		diag_die(EX_SOFTWARE, "cannot encode a batch");
	json_decref(a);
	return s;
}

char *
stream_ids(const struct preq *const *q, const size_t *order, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < n; i++)
		json_array_append_new(a,
		    json_pack("{s:I, s:I}", "i", (json_int_t)order[i], "id",
		        (json_int_t)q[order[i]]->id));
	return stream_text(a);
}

int
stream_payments(struct db *db, const char *sql, const char *ids,
    struct payment *p, size_t n)
{
	size_t i;
	int rc;

	if ((rc = db_query(db, sql, "s", ids)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1)
		if ((i = (size_t)db_int(db, 0)) < n)
			payment_read(db, 1, &p[i]);
	return rc < 0 ? -rc : 0;
}

struct merchant_ref {
	const char *merchant;
	size_t i;
};

static int
by_merchant(const void *a, const void *b)
{
	const struct merchant_ref *x = a, *y = b;
	int c = strcmp(x->merchant, y->merchant);

	return c ? c : (x->i > y->i) - (x->i < y->i);
}

int
stream_limit(struct db *db, const struct ratelimit *rl, const struct payment *p,
    struct result *r, size_t n)
{
	struct merchant_ref *v = xcalloc(n, sizeof(*v));
	long long granted, after;
	size_t i, j, k, nv = 0;
	int rc = 0;

	for (i = 0; i < n; i++)
		if (r[i].line == NULL)
			v[nv++] = (struct merchant_ref){ p[i].merchant, i };
	qsort(v, nv, sizeof(*v), by_merchant);
	for (i = 0; i < nv && rc == 0; i = j) {
		for (j = i; j < nv && strcmp(v[j].merchant, v[i].merchant) == 0;
		     j++)
			;
		if ((rc = ratelimit_take(db, rl, v[i].merchant,
		         (long long)(j - i), &granted, &after)) != 0)
			break;
		/* The first requests in input order are the ones let through. */
		for (k = i + (size_t)granted; k < j; k++)
			result_ratelimited(
			    &r[v[k].i], rl, v[k].merchant, after);
	}
	free(v);
	return rc;
}

char *
stream_event(json_t *ev, const char *type, char key[37])
{
	char now[32];

	outbox_uuid(key);
	outbox_now(now);
	json_object_set_new(ev, "eventId", json_string(key));
	json_object_set_new(ev, "eventType", json_string(type));
	json_object_set_new(
	    ev, "schemaVersion", json_integer(EVENT_SCHEMA_VERSION));
	json_object_set_new(ev, "occurredAt", json_string(now));
	return stream_text(ev);
}

int
stream_events(struct db *db, const char *type, json_t *a)
{
	char *s = stream_text(a);
	int rc;

	rc = db_exec(db, events_sql, "ss", type, s);
	free(s);
	return rc;
}

/* The stream. */

struct node {
	struct node *next;
	long line;
	json_t *rid; /* requestId as given, or NULL */
	struct preq q;
	char *reason; /* q.reason's copy */
};

struct worker {
	pthread_t thread;
	pthread_cond_t work;
	struct node *head, *tail;
	size_t n;
	struct conn c;
};

static struct {
	const struct stream_cmd *cmd;
	struct ratelimit rl;
	pthread_mutex_t mu; /* the queues and eof */
	pthread_cond_t room;
	struct worker *w;
	long nw;
	bool eof;
	struct lines in;
} S = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.room = PTHREAD_COND_INITIALIZER,
};

/* Print one result line (taking line), count its outcome, maybe flush. */
static void
emit(long lineno, json_t *rid, json_t *line, int code, bool flush)
{
	lines_emit(lineno, rid, line, code, false, flush);
}

static void
bad_request(long lineno, json_t *rid, const char *msg)
{
	emit(lineno, rid,
	    json_pack("{s:s, s:s}", "error", "BAD_REQUEST", "message", msg),
	    EX_DATAERR, false);
}

static void
node_free(struct node *n)
{
	json_decref(n->rid);
	free(n->reason);
	free(n);
}

/*
 * Take up to max requests off w's queue, under S.mu; a second request of
 * a payment waits for the next batch.
 */
static size_t
take(struct worker *w, struct node **v, size_t max)
{
	struct node *x;
	size_t n = 0, i;

	while (n < max && (x = w->head) != NULL) {
		for (i = 0; i < n && v[i]->q.id != x->q.id; i++)
			;
		if (i < n)
			break;
		if ((w->head = x->next) == NULL)
			w->tail = NULL;
		w->n--;
		v[n++] = x;
	}
	return n;
}

static void
run(struct worker *w, const struct preq **q, struct result *r, size_t n)
{
	size_t i;
	int rc;

	if ((rc = conn_use(&w->c)) != 0) {
		for (i = 0; i < n; i++)
			result_fail(&r[i], rc, "DATABASE_ERROR", NULL,
			    "connect to '%s:%lld': %s", conf_str("db_host"),
			    conf_int("db_port"), w->c.msg);
		return;
	}
	if (n > 1)
		S.cmd->run_batch(w->c.db, &S.rl, q, r, n);
	else
		S.cmd->run(w->c.db, &S.rl, q[0], &r[0]);
	/* A connection that went away is made again next time. */
	for (i = 0; i < n; i++)
		if (r[i].code == EX_UNAVAILABLE) {
			conn_fail(&w->c, EX_UNAVAILABLE);
			break;
		}
}

static void *
work(void *arg)
{
	struct worker *w = arg;
	size_t max = S.cmd->run_batch ? S.cmd->batch : 1;
	struct node **v = xcalloc(max, sizeof(*v));
	const struct preq **q = xcalloc(max, sizeof(*q));
	struct result *r = xcalloc(max, sizeof(*r));
	size_t n, i;

	for (;;) {
		pthread_mutex_lock(&S.mu);
		while (w->n == 0 && !S.eof)
			pthread_cond_wait(&w->work, &S.mu);
		if ((n = take(w, v, max)) > 0)
			pthread_cond_signal(&S.room);
		pthread_mutex_unlock(&S.mu);
		if (n == 0)
			break;
		memset(r, 0, n * sizeof(*r));
		for (i = 0; i < n; i++)
			q[i] = &v[i]->q;
		/* Nobody would see the results. */
		if (!lines_out_failed())
			run(w, q, r, n);
		for (i = 0; i < n; i++) {
			if (r[i].line != NULL)
				emit(v[i]->line, v[i]->rid, r[i].line,
				    r[i].code, i == n - 1);
			node_free(v[i]);
		}
	}
	free(v);
	free(q);
	free(r);
	return NULL;
}

/* Check one line and queue its request to its payment's worker. */
static void
dispatch(long lineno, const char *s)
{
	char err[256];
	json_error_t jerr;
	struct worker *w;
	struct node *n;
	json_t *o, *rid;
	struct preq q = { 0 };

	o = json_loads(s, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(o)) {
		snprintf(err, sizeof(err), "not a JSON object%s%s",
		    o ? "" : ": ", o ? "" : jerr.text);
		bad_request(lineno, NULL, err);
		json_decref(o);
		return;
	}
	rid = json_object_get(o, "requestId");
	if (S.cmd->parse(o, &q, err, sizeof(err)) < 0) {
		bad_request(lineno, rid, err);
		json_decref(o);
		return;
	}
	n = xcalloc(1, sizeof(*n));
	n->line = lineno;
	n->rid = json_incref(rid);
	n->q = q;
	if (q.reason != NULL)
		n->q.reason = n->reason = xstrdup(q.reason);
	json_decref(o);
	w = &S.w[q.id % S.nw];
	pthread_mutex_lock(&S.mu);
	while (w->n >= QUEUE_MAX)
		pthread_cond_wait(&S.room, &S.mu);
	if (w->tail != NULL)
		w->tail->next = n;
	else
		w->head = n;
	w->tail = n;
	w->n++;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&S.mu);
}

static void
read_lines(void)
{
	struct lines *L = &S.in;
	char *line;
	int got;

	for (;;) {
		if (lines_out_failed())
			break;
		/* Nothing more to read yet: let the results out first. */
		if ((got = lines_next(L, false, &line)) == L_NONE) {
			lines_flush();
			got = lines_next(L, true, &line);
		}
		if (got == L_EOF)
			break;
		if (L->skipping) {
			L->skipping = false;
			bad_request(
			    L->lineno, NULL, "line longer than 65536 bytes");
			continue;
		}
		if (L->nul) {
			bad_request(L->lineno, NULL, "line holds a NUL byte");
			continue;
		}
		if (line[strspn(line, " \t\r")] != '\0')
			dispatch(L->lineno, line);
	}
	free(L->buf);
}

int
stream_workers(const char *arg, long *workers)
{
	long long n;

	if (conf_parse_int(arg, 1, WORKERS_MAX, &n) != 0)
		return diag_usage("option '--concurrency': '%s' is not a "
		                  "number from 1 to %d",
		    arg, WORKERS_MAX);
	*workers = (long)n;
	return 0;
}

int
stream_run(const struct stream_cmd *cmd, long workers)
{
	long i;
	int rc;

	if ((rc = conf_load()) != 0)
		return rc;
	if (workers == 0)
		workers = WORKERS_DEFAULT;
	S.cmd = cmd;
	S.nw = workers;
	S.w = xcalloc((size_t)workers, sizeof(*S.w));
	ratelimit_conf(cmd->action, &S.rl);
	/* Connect them all before any thread starts. */
	for (i = 0; i < workers && rc == 0; i++)
		if ((rc = conn_use(&S.w[i].c)) != 0)
			diag_warn("connect to '%s:%lld': %s",
			    conf_str("db_host"), conf_int("db_port"),
			    S.w[i].c.msg);
	json_object_seed(0);
	for (i = 0; i < workers && rc == 0; i++) {
		pthread_cond_init(&S.w[i].work, NULL);
		if (pthread_create(&S.w[i].thread, NULL, work, &S.w[i]) != 0)
			diag_die(EX_SOFTWARE, "cannot start a thread");
	}
	if (rc == 0) {
		lines_catch_signals();
		read_lines();
		pthread_mutex_lock(&S.mu);
		S.eof = true;
		for (i = 0; i < workers; i++)
			pthread_cond_signal(&S.w[i].work);
		pthread_mutex_unlock(&S.mu);
		for (i = 0; i < workers; i++)
			pthread_join(S.w[i].thread, NULL);
		lines_flush();
		rc = lines_summary(&S.in, false);
	}
	for (i = 0; i < workers; i++)
		db_close(S.w[i].c.db);
	free(S.w);
	return rc;
}
