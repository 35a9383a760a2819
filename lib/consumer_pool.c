/*
 * consumer: the pool of gateway callers of consumer.h.  Each thread has
 * its own database connection and HTTP client, so a slow gateway call
 * holds neither a transaction nor anybody else's connection.
 */
#include "breaker.h"
#include "conf.h"
#include "consumer.h"
#include "diag.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct consumer_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned long kicks;
	bool stop;
	int rc;
	long long done;
	consumer_work_fn fn;
	void *arg;
	long long idle_ms;
	char cutoff[32]; /* a pass: what was due at its start; "" daemon */
	int n;
	pthread_t *th;
	struct consumer_worker *w;
};

static void
idle(struct consumer_pool *p)
{
	unsigned long seen;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += p->idle_ms / 1000;
	ts.tv_nsec += (p->idle_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&p->mu);
	seen = p->kicks;
	/* The stop check is in the loop too: signals do not wake us. */
	while (!p->stop && p->kicks == seen && !consumer_stopping())
		if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&p->mu);
}

static void *
work(void *arg)
{
	struct consumer_worker *w = arg;
	struct consumer_pool *p = w->pool;
	const char *cutoff = p->cutoff[0] ? p->cutoff : NULL;
	int rc;

	for (;;) {
		if (consumer_stopping() || p->stop)
			break;
		rc = p->fn(w, cutoff, p->arg);
		if (rc == 1) {
			pthread_mutex_lock(&p->mu);
			p->done++;
			pthread_mutex_unlock(&p->mu);
			continue;
		}
		if (rc == 0) {
			if (cutoff != NULL)
				break;
			idle(p);
			continue;
		}
		pthread_mutex_lock(&p->mu);
		if (p->rc == 0)
			p->rc = rc;
		p->stop = true;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		/* The consumer loop stops too: exit with the code. */
		consumer_stop();
		break;
	}
	return NULL;
}

static void
destroy(struct consumer_pool *p)
{
	int i;

	for (i = 0; i < p->n; i++) {
		db_close(p->w[i].db);
		http_close(p->w[i].http);
	}
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->w);
	free(p->th);
	free(p);
}

static struct consumer_pool *
start(int n, consumer_work_fn fn, void *arg, long long idle_ms,
    const char *cutoff, int *code)
{
	struct consumer_pool *p = xcalloc(1, sizeof(*p));
	int i;

	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->fn = fn;
	p->arg = arg;
	p->idle_ms = idle_ms > 0 ? idle_ms : 1000;
	snprintf(p->cutoff, sizeof(p->cutoff), "%s", cutoff ? cutoff : "");
	/* Let jansson seed its hash tables before any thread does. */
	json_decref(json_object());
	p->w = xcalloc((size_t)n, sizeof(*p->w));
	p->th = xcalloc((size_t)n, sizeof(*p->th));
	/* Connect here, one at a time: the client library's set-up is not
	 * thread-safe. */
	for (i = 0; i < n; i++) {
		p->w[i].id = i;
		p->w[i].pool = p;
		if ((p->w[i].db = consumer_connect(code)) == NULL) {
			p->n = i;
			destroy(p);
			return NULL;
		}
		p->w[i].http = http_new();
	}
	p->n = 0;
	for (i = 0; i < n; i++) {
		if (pthread_create(&p->th[i], NULL, work, &p->w[i]) != 0) {
			diag_warn("cannot start a thread: %s", strerror(errno));
			p->stop = true;
			*code = EX_OSERR;
			break;
		}
		p->n++;
	}
	if (p->n < n) {
		for (i = 0; i < p->n; i++)
			pthread_join(p->th[i], NULL);
		p->n = n;
		destroy(p);
		return NULL;
	}
	return p;
}

struct consumer_pool *
consumer_pool_start(
    int n, consumer_work_fn fn, void *arg, long long idle_ms, int *code)
{
	return start(n, fn, arg, idle_ms, NULL, code);
}

void
consumer_pool_kick(struct consumer_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->kicks++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

static int
join(struct consumer_pool *p, long long *done)
{
	int i, rc;

	for (i = 0; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	rc = p->rc;
	if (done != NULL)
		*done = p->done;
	destroy(p);
	return rc;
}

int
consumer_pool_stop(struct consumer_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return join(p, NULL);
}

int
consumer_pool_pass(
    int n, consumer_work_fn fn, void *arg, struct db *db, long long *done)
{
	static const char now[] = "SELECT NOW(6)";
	struct consumer_pool *p;
	char cutoff[32];
	int rc;

	if ((rc = db_query(db, now, "")) != 0 || (rc = -db_next(db)) > 0) {
		diag_warn("database '%s': %s", db_where(db), db_error(db));
		return rc;
	}
	snprintf(cutoff, sizeof(cutoff), "%s", db_str(db, 0));
	db_next(db);
	if ((p = start(n, fn, arg, 0, cutoff, &rc)) == NULL)
		return rc;
	return join(p, done);
}

static struct db *pg_db;
static struct breaker *pg_breaker;

int
consumer_pg_open(void)
{
	char msg[512];
	int rc;

	pg_db = db_connect(NULL, &rc, msg, sizeof(msg));
	if (pg_db == NULL) {
		diag_warn("connect to '%s:%lld': %s", conf_str("db_host"),
		    conf_int("db_port"), msg);
		return rc;
	}
	if ((rc = breaker_attach(pg_db, "pg", &pg_breaker)) != 0) {
		diag_warn("attach circuit breaker 'pg': %s", db_error(pg_db));
		db_close(pg_db);
		pg_db = NULL;
	}
	return rc;
}

void
consumer_pg_close(void)
{
	breaker_detach(pg_breaker);
	pg_breaker = NULL;
	db_close(pg_db);
	pg_db = NULL;
}

enum pg_outcome
consumer_pg_call(struct http *h, enum pg_op op, const struct pg_request *q,
    struct pg_result *res)
{
	struct breaker_call bc = { 0 };

	if (pg_breaker != NULL && !breaker_acquire(pg_breaker, &bc)) {
		pg_refused(res, "pg");
		return PG_ERROR;
	}
	pg_call(h, op, q, res);
	if (pg_breaker != NULL)
		breaker_record(pg_breaker, &bc, res->breaker_failure, res->ms);
	return res->outcome;
}
