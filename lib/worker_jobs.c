/*
 * worker: the gateway jobs of worker.h.  Threads:
 *
 *   claimer    claims due rows in batches on its own connection and
 *              queues them for the caller;
 *   caller     keeps their calls in flight with libcurl multi (the pg
 *              circuit breaker asked first), and hands each answer on; it
 *              never waits for the database, so an answer frees its slot
 *              the moment it arrives;
 *   recorders  (two, so the server works on two batches at once) write
 *              the answers in batches, one transaction each.
 *
 * At most concurrency calls are in flight.  No more rows are claimed than
 * there is room for calls plus half as many again (ahead) waiting for the
 * next free slot, so that a slot is filled as soon as it frees while the
 * next claim is made; a queued row waits for half a round of calls at
 * most, not for a whole call.  Answers waiting for their record are
 * bounded too (RECORD_ROOM), so a lease only has to outlast a call, that
 * wait and a batch's record.
 */
#include "breaker.h"
#include "conf.h"
#include "diag.h"
#include "http.h"
#include "js.h"
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <time.h>

#define RECORDERS 2
#define RECORD_BATCH 64 /* answers per recording transaction */
/*
 * While calls are in flight, a recorder with fewer answers than this
 * waits up to GATHER_MS for more: fewer, larger transactions, and the
 * wait holds no call's slot.
 */
#define RECORD_GATHER (RECORD_BATCH / 2)
#define GATHER_MS 10
#define CLAIM_BATCH 256 /* rows per claim */
/* Answers waiting for their record, beyond the calls in flight. */
#define RECORD_ROOM (2 * RECORDERS * RECORD_BATCH)
#define IDLE_MS 1000 /* how often an idle claimer looks for due rows */
#define WAIT_MS 100 /* the longest the caller waits, to see a stop */

/* A call in flight. */
struct worker_call {
	struct http_call hc;
	char *body;
	struct breaker_call bc;
};

static struct {
	const struct worker_jobs *d;
	long long max_retries, base_ms, cap_ms, lease_us;
	long concurrency;
	bool pass;
	char cutoff[32]; /* a pass: what was due at its start */
	char *url[3];
	struct http_multi *hm;
	struct db *claim_db, *rec_db[RECORDERS], *breaker_db;
	struct breaker *breaker;
	pthread_t claimer, caller, rec[RECORDERS];
	int nrec;
	bool started;
	long calls; /* in flight: the caller's own */
	long min_batch; /* the smallest claim while calls are in flight */
	long ahead; /* claimed beyond the room for calls */
	/* Under mu. */
	pthread_mutex_t mu;
	pthread_cond_t fin, claim_cv;
	struct worker_job *fin_head, *fin_tail;
	long nfin; /* answers waiting for a recorder */
	struct worker_job *call_head, **call_tail; /* claimed, to call */
	long unanswered; /* claimed, not yet answered */
	long outstanding; /* claimed, not yet recorded */
	bool kicked, stop, claimer_done, caller_done;
	int rc;
} J = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.fin = PTHREAD_COND_INITIALIZER,
	.claim_cv = PTHREAD_COND_INITIALIZER,
};

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The first error stops everything: the consumer loop exits with it. */
static void
fail(int rc)
{
	pthread_mutex_lock(&J.mu);
	if (J.rc == 0)
		J.rc = rc;
	pthread_cond_broadcast(&J.claim_cv);
	pthread_mutex_unlock(&J.mu);
	consumer_stop();
}

static void
free_jobs(struct worker_job *j)
{
	struct worker_job *next;

	for (; j != NULL; j = next) {
		next = j->next;
		free(j);
	}
}

/* Claiming. */

static void
read_job(struct db *db, struct worker_job *j)
{
	j->id = db_int(db, 0);
	j->payment_id = db_int(db, 1);
	j->amount = db_int(db, 2);
	worker_copy(j->currency, sizeof(j->currency), db_str(db, 3));
	j->failures = db_int(db, 4);
	worker_copy(j->token, sizeof(j->token), db_str(db, 5));
	worker_copy(j->requested, sizeof(j->requested), db_str(db, 6));
	worker_copy(j->last_retry, sizeof(j->last_retry), db_str(db, 7));
	worker_copy(j->pstatus, sizeof(j->pstatus), db_str(db, 8));
	worker_copy(j->txn, sizeof(j->txn), db_str(db, 9));
	worker_copy(j->merchant, sizeof(j->merchant), db_str(db, 10));
	worker_copy(j->code, sizeof(j->code), db_str(db, 11));
	worker_copy(j->message, sizeof(j->message), db_str(db, 12));
}

int
worker_claim(struct db *db, struct worker_claim *c, const char *pick,
    const char *lease, const char *claimed)
{
	struct worker_job *j;
	json_t *ids = json_array();
	char *s;
	int rc;

	free_jobs(c->jobs);
	c->jobs = NULL;
	c->tail = &c->jobs;
	if ((rc = db_query(db, pick, "si", c->cutoff, (int64_t)c->max)) != 0) {
		json_decref(ids);
		return rc;
	}
	while ((rc = db_next(db)) == 1)
		json_array_append_new(ids, json_integer(db_int(db, 0)));
	c->picked = (long long)json_array_size(ids);
	if (rc < 0 || c->picked == 0) {
		json_decref(ids);
		return -rc;
	}
	if ((s = js_text(ids)) == NULL)
		diag_die(EX_SOFTWARE, "cannot encode a claim");
	json_decref(ids);
	if ((rc = db_exec(db, lease, "si", s, (int64_t)J.lease_us)) == 0)
		rc = db_query(db, claimed, "s", s);
	free(s);
	if (rc != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		j = xcalloc(1, J.d->job_size);
		read_job(db, j);
		if (J.d->read != NULL)
			J.d->read(db, j);
		*c->tail = j;
		c->tail = &j->next;
	}
	if (rc < 0)
		return -rc;
	for (j = c->jobs; j != NULL; j = j->next)
		if ((rc = J.d->vet(db, j)) != 0 && rc != WORKER_RESOLVED &&
		    rc != WORKER_LOST)
			return rc;
	return 0;
}

static int
claim_tx(struct db *db, void *arg)
{
	return J.d->claim(db, arg);
}

static void
to_recorders(struct worker_job *j)
{
	pthread_mutex_lock(&J.mu);
	j->next = NULL;
	if (J.fin_tail != NULL)
		J.fin_tail->next = j;
	else
		J.fin_head = j;
	J.fin_tail = j;
	J.nfin++;
	J.unanswered--;
	pthread_cond_signal(&J.fin);
	pthread_cond_signal(&J.claim_cv);
	pthread_mutex_unlock(&J.mu);
}

static void
answered(struct http_call *hc, int rc, const struct http_reply *r)
{
	struct worker_job *j = hc->arg;
	struct worker_call *c = j->call;

	pg_classify(j->op, rc, r, &j->res);
	if (J.breaker != NULL)
		breaker_record(
		    J.breaker, &c->bc, j->res.breaker_failure, j->res.ms);
	free(c->body);
	free(hc->buf);
	free(c);
	j->call = NULL;
	J.calls--;
	to_recorders(j);
}

static void
call(struct worker_job *j)
{
	struct worker_call *c = xcalloc(1, sizeof(*c));

	if (J.breaker != NULL && !breaker_acquire(J.breaker, &c->bc)) {
		/* Deferred by the recorder, no attempt spent. */
		pg_refused(&j->res, "pg");
		free(c);
		to_recorders(j);
		return;
	}
	c->body = pg_body(j->op, &j->req);
	c->hc.url = J.url[j->op];
	c->hc.body = c->body;
	c->hc.done = answered;
	c->hc.arg = j;
	j->call = c;
	J.calls++;
	http_multi_post(J.hm, &c->hc);
}

/* Claim up to max rows and queue them: the rows picked, or -exit code. */
static long long
claim(long long max)
{
	struct worker_claim c = { .max = max };
	struct worker_job *j, *next, *head = NULL, **tail = &head;
	long long n = 0;
	int rc;

	c.cutoff = J.pass ? J.cutoff : NULL;
	if ((rc = consumer_tx(&J.claim_db, claim_tx, &c)) != 0) {
		free_jobs(c.jobs);
		return -rc;
	}
	for (j = c.jobs; j != NULL; j = j->next)
		n += j->outcome == NULL;
	if (c.picked > 0)
		diag_info(1, "claimed %lld due %ss, %lld to call", c.picked,
		    J.d->noun, n);
	for (j = c.jobs; j != NULL; j = next) {
		next = j->next;
		if (j->outcome == NULL) {
			j->next = NULL;
			*tail = j;
			tail = &j->next;
			continue;
		}
		/* Given up before its call. */
		J.d->log(j);
		free(j);
	}
	if (n > 0) {
		pthread_mutex_lock(&J.mu);
		J.outstanding += n;
		J.unanswered += n;
		*J.call_tail = head;
		J.call_tail = tail;
		pthread_mutex_unlock(&J.mu);
		http_multi_wakeup(J.hm);
	}
	return c.picked;
}

/* The time ms from now, for pthread_cond_timedwait(). */
static struct timespec
deadline(long long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

/* Wait on claim_cv, under mu, for up to ms. */
static void
claim_wait(long long ms)
{
	struct timespec ts = deadline(ms);

	pthread_cond_timedwait(&J.claim_cv, &J.mu, &ts);
}

static void *
claimer(void *arg)
{
	long long next_look = 0, got, want, wait;
	bool due = true, over = false;
	long room;

	pthread_mutex_lock(&J.mu);
	while (!over && !J.stop && J.rc == 0 && !consumer_stopping()) {
		due = due || J.kicked || now_ms() >= next_look;
		J.kicked = false;
		room = J.concurrency + J.ahead - J.unanswered;
		if (room >
		    J.concurrency + J.ahead + RECORD_ROOM - J.outstanding)
			room = J.concurrency + J.ahead + RECORD_ROOM -
			    J.outstanding;
		if (due && room > 0 &&
		    (room >= J.min_batch || J.outstanding == 0)) {
			pthread_mutex_unlock(&J.mu);
			want = room < CLAIM_BATCH ? room : CLAIM_BATCH;
			if ((got = claim(want)) < 0) {
				fail((int)-got);
			} else if (got < want) {
				/* Nothing more is due now. */
				due = false;
				over = J.pass;
				next_look = now_ms() + IDLE_MS;
			}
			pthread_mutex_lock(&J.mu);
			continue;
		}
		wait = WAIT_MS;
		if (!due && next_look - now_ms() < wait)
			wait = next_look - now_ms();
		if (wait > 0)
			claim_wait(wait);
	}
	J.claimer_done = true;
	pthread_mutex_unlock(&J.mu);
	http_multi_wakeup(J.hm);
	return NULL;
}

/*
 * Call what is queued while there is room, until the claimer is done and
 * every claim is recorded.  After an error the queue is dropped: its
 * claims run out.
 */
static void *
caller(void *arg)
{
	struct worker_job *q, *j, **tail;
	long n;
	bool done;

	for (;;) {
		pthread_mutex_lock(&J.mu);
		q = J.call_head;
		tail = &q;
		for (n = 0; *tail != NULL &&
		     (J.rc != 0 || J.calls + n < J.concurrency);
		     n++)
			tail = &(*tail)->next;
		J.call_head = *tail;
		if (J.call_head == NULL)
			J.call_tail = &J.call_head;
		*tail = NULL;
		if (J.rc != 0) {
			J.outstanding -= n;
			J.unanswered -= n;
			free_jobs(q);
			q = NULL;
		}
		done = J.claimer_done && J.outstanding == 0;
		pthread_mutex_unlock(&J.mu);
		while ((j = q) != NULL) {
			q = j->next;
			call(j);
		}
		if (done)
			break;
		http_multi_run(J.hm, WAIT_MS);
	}
	pthread_mutex_lock(&J.mu);
	J.caller_done = true;
	pthread_cond_broadcast(&J.fin);
	pthread_mutex_unlock(&J.mu);
	return NULL;
}

/* Recording. */

static int
retry(struct db *db, struct worker_job *j, const char *sql, long long failures,
    const char *outcome)
{
	int rc;

	j->delay_ms = consumer_backoff(J.base_ms, J.cap_ms, failures,
	    (double)random() / ((double)RAND_MAX + 1));
	if ((rc = db_exec(db, sql, "ssiis", j->res.code, j->res.message,
	         (int64_t)(j->delay_ms * 1000), j->id, j->token)) != 0)
		return rc;
	if (db_affected(db) == 0)
		return WORKER_LOST;
	j->outcome = outcome;
	return 0;
}

int
worker_failed(struct db *db, struct worker_job *j, const char *deferred,
    const char *failed)
{
	if (j->res.code[0] == '\0')
		worker_copy(j->res.code, sizeof(j->res.code), "PG_ERROR");
	if (strcmp(j->res.code, "CIRCUIT_OPEN") == 0)
		return retry(db, j, deferred, 1, "deferred");
	if (j->failures + 1 > J.max_retries) {
		snprintf(j->why, sizeof(j->why),
		    "gave up after %lld attempts: %s", j->failures + 1,
		    j->res.message);
		j->outcome = "dead";
		return J.d->give_up(db, j, 1, CE_RETRIES_EXHAUSTED);
	}
	return retry(db, j, failed, j->failures + 1, "failed");
}

int
worker_exec_rows(
    struct db *db, const char *sql, const json_t *a, size_t expected)
{
	uint64_t changed;
	char *text;
	int rc;

	if (json_array_size(a) == 0)
		return 0;
	if ((text = js_text(a)) == NULL)
		diag_die(EX_SOFTWARE, "cannot encode a batch");
	rc = db_exec(db, sql, "s", text);
	free(text);
	if (rc != 0)
		return rc;
	if ((changed = db_affected(db)) == expected)
		return 0;
	diag_warn("record %ss: %llu rows changed, %zu expected", J.d->noun,
	    (unsigned long long)changed, expected);
	return EX_SOFTWARE;
}

int
worker_query_jobs(
    struct db *db, const char *sql, struct worker_job **v, size_t n)
{
	json_t *a = json_array();
	char *text;
	size_t i;
	int rc;

	for (i = 0; i < n; i++)
		json_array_append_new(a,
		    json_pack("[I, I, s]", (json_int_t)v[i]->payment_id,
		        (json_int_t)v[i]->id, v[i]->token));
	if ((text = js_text(a)) == NULL)
		diag_die(EX_SOFTWARE, "cannot encode a batch");
	json_decref(a);
	rc = db_query(db, sql, "s", text);
	free(text);
	return rc;
}

struct batch {
	struct worker_job **v;
	size_t n;
};

static int
record_tx(struct db *db, void *arg)
{
	struct batch *b = arg;
	size_t i;
	int rc;

	for (i = 0; i < b->n; i++) {
		b->v[i]->outcome = NULL;
		b->v[i]->lost = false;
	}
	if (J.d->record_batch != NULL &&
	    (rc = J.d->record_batch(db, b->v, b->n)) != 0)
		return rc;
	for (i = 0; i < b->n; i++) {
		if (b->v[i]->outcome != NULL || b->v[i]->lost)
			continue;
		rc = J.d->record(db, b->v[i]);
		if (rc == WORKER_LOST)
			b->v[i]->lost = true;
		else if (rc != 0)
			return rc;
	}
	return 0;
}

/* Lock order: payments, then requests, the same in every batch. */
static int
by_payment(const void *a, const void *b)
{
	const struct worker_job *x = *(struct worker_job *const *)a;
	const struct worker_job *y = *(struct worker_job *const *)b;

	if (x->payment_id != y->payment_id)
		return x->payment_id < y->payment_id ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static void
log_job(const struct worker_job *j)
{
	if (j->lost)
		/* Our lease ran out and another caller took the request. */
		diag_warn("payment %lld: %s %lld was taken over; result "
		          "dropped",
		    (long long)j->payment_id, J.d->noun, (long long)j->id);
	else
		J.d->log(j);
}

static void *
recorder(void *arg)
{
	struct db **db = arg;
	struct worker_job *v[RECORD_BATCH];
	struct batch b = { v, 0 };
	struct timespec until;
	size_t i;
	int rc;

	for (;;) {
		pthread_mutex_lock(&J.mu);
		do {
			while (J.fin_head == NULL && !J.caller_done)
				pthread_cond_wait(&J.fin, &J.mu);
			until = deadline(GATHER_MS);
			while (J.nfin < RECORD_GATHER && J.unanswered > 0 &&
			    !J.caller_done && J.rc == 0 &&
			    pthread_cond_timedwait(&J.fin, &J.mu, &until) == 0)
				;
			/* The other recorder may have taken them meanwhile. */
		} while (J.fin_head == NULL && !J.caller_done);
		for (b.n = 0; b.n < RECORD_BATCH && J.fin_head != NULL; b.n++) {
			v[b.n] = J.fin_head;
			J.fin_head = J.fin_head->next;
			J.nfin--;
		}
		if (J.fin_head == NULL)
			J.fin_tail = NULL;
		rc = J.rc;
		pthread_mutex_unlock(&J.mu);
		if (b.n == 0)
			break;
		qsort(v, b.n, sizeof(v[0]), by_payment);
		/* After an error, the claims are left to run out. */
		if (rc == 0 && (rc = consumer_tx(db, record_tx, &b)) != 0)
			fail(rc);
		for (i = 0; i < b.n; i++) {
			if (rc == 0)
				log_job(v[i]);
			free(v[i]);
		}
		pthread_mutex_lock(&J.mu);
		J.outstanding -= (long)b.n;
		pthread_cond_signal(&J.claim_cv);
		pthread_mutex_unlock(&J.mu);
		http_multi_wakeup(J.hm);
	}
	return NULL;
}

/* Setting up and down. */

static long long
setting(const char *prefix, const char *name, bool ms)
{
	char key[64];

	snprintf(key, sizeof(key), "%s_%s", prefix, name);
	return ms ? conf_ms(key) : conf_int(key);
}

int
worker_jobs_open(void)
{
	char msg[512];
	int rc;

	J.breaker_db = db_connect(NULL, &rc, msg, sizeof(msg));
	if (J.breaker_db == NULL) {
		diag_warn("connect to '%s:%lld': %s", conf_str("db_host"),
		    conf_int("db_port"), msg);
		return rc;
	}
	if ((rc = breaker_attach(J.breaker_db, "pg", &J.breaker)) != 0) {
		diag_warn(
		    "attach circuit breaker 'pg': %s", db_error(J.breaker_db));
		worker_jobs_close();
	}
	return rc;
}

void
worker_jobs_close(void)
{
	breaker_detach(J.breaker);
	J.breaker = NULL;
	db_close(J.breaker_db);
	J.breaker_db = NULL;
}

static int
cutoff(void)
{
	static const char now[] = "SELECT NOW(6)";
	struct db *db = J.claim_db;
	int rc;

	if ((rc = db_query(db, now, "")) != 0 || (rc = -db_next(db)) > 0) {
		diag_warn("database '%s': %s", db_where(db), db_error(db));
		return rc;
	}
	worker_copy(J.cutoff, sizeof(J.cutoff), db_str(db, 0));
	db_next(db);
	return 0;
}

static void
close_all(void)
{
	int i;

	db_close(J.claim_db);
	for (i = 0; i < RECORDERS; i++)
		db_close(J.rec_db[i]);
	http_multi_free(J.hm);
	for (i = 0; i < 3; i++)
		free(J.url[i]);
	J.claim_db = NULL;
	memset(J.rec_db, 0, sizeof(J.rec_db));
	memset(J.url, 0, sizeof(J.url));
	J.hm = NULL;
}

static int
connect_all(void)
{
	int i, rc;

	if ((J.claim_db = consumer_connect(&rc)) == NULL)
		return rc;
	for (i = 0; i < RECORDERS; i++)
		if ((J.rec_db[i] = consumer_connect(&rc)) == NULL)
			return rc;
	return J.pass ? cutoff() : 0;
}

/* Each call in flight holds a connection to the gateway. */
static void
raise_nofile(void)
{
	struct rlimit nofile;

	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
	    nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
}

int
worker_jobs_start(const struct worker_jobs *d, const char *prefix,
    long concurrency, bool pass)
{
	int i, rc;

	J.d = d;
	J.pass = pass;
	J.concurrency = concurrency;
	J.max_retries = setting(prefix, "max_retries", false);
	J.base_ms = setting(prefix, "retry_base", true);
	J.cap_ms = setting(prefix, "retry_max", true);
	J.lease_us =
	    (conf_ms("pg_connect_timeout") + conf_ms("pg_timeout") + 5000) *
	    1000;
	/*
	 * Under a backlog, claim in batches rather than row by row, and
	 * keep enough claimed ahead to fill the slots that free up while
	 * the next claim is made (a claim takes a few round trips; on a
	 * busy server tens of milliseconds, when hundreds of calls end).
	 */
	J.min_batch = concurrency / 8 > 0 ? concurrency / 8 : 1;
	J.ahead = concurrency / 2 > 0 ? concurrency / 2 : 1;
	J.outstanding = J.unanswered = J.calls = 0;
	J.call_head = NULL;
	J.call_tail = &J.call_head;
	J.nfin = 0;
	J.kicked = J.stop = J.claimer_done = J.caller_done = false;
	J.rc = 0;
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	if ((rc = connect_all()) != 0) {
		close_all();
		return rc;
	}
	raise_nofile();
	J.hm = http_multi_new(concurrency);
	for (i = 0; i < 3; i++)
		J.url[i] = pg_url((enum pg_op)i);
	/* Let jansson seed its hash tables before any thread does. */
	json_object_seed(0);
	if ((errno = pthread_create(&J.caller, NULL, caller, NULL)) != 0 ||
	    (errno = pthread_create(&J.claimer, NULL, claimer, NULL)) != 0)
		diag_die(
		    EX_OSERR, "cannot start a thread: %s", strerror(errno));
	for (J.nrec = 0; J.nrec < RECORDERS; J.nrec++)
		if ((errno = pthread_create(&J.rec[J.nrec], NULL, recorder,
		         &J.rec_db[J.nrec])) != 0)
			diag_die(EX_OSERR, "cannot start a thread: %s",
			    strerror(errno));
	J.started = true;
	return 0;
}

void
worker_jobs_kick(void)
{
	if (!J.started)
		return;
	pthread_mutex_lock(&J.mu);
	J.kicked = true;
	pthread_cond_signal(&J.claim_cv);
	pthread_mutex_unlock(&J.mu);
}

int
worker_jobs_wait(void)
{
	int i;

	if (!J.started)
		return 0;
	pthread_mutex_lock(&J.mu);
	J.stop = J.stop || !J.pass;
	pthread_cond_broadcast(&J.claim_cv);
	pthread_mutex_unlock(&J.mu);
	http_multi_wakeup(J.hm);
	pthread_join(J.claimer, NULL);
	pthread_join(J.caller, NULL);
	for (i = 0; i < J.nrec; i++)
		pthread_join(J.rec[i], NULL);
	J.started = false;
	close_all();
	return J.rc;
}
