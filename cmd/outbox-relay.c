/*
 * outbox-relay: publish every outbox event to Kafka, in order per payment,
 * nothing lost (outbox-relay(8)).  It runs in the foreground until SIGTERM
 * or SIGINT, or drains what is due and exits with --once (cron); with
 * --purge-older-than it deletes old PUBLISHED rows instead.  The claiming,
 * ordering and marking are lib/relay.c's; this file holds the options, the
 * polling loop, the stats line and the purge.
 *
 * Lanes.  relay_jobs (-j) lanes claim at once, each with its own connection,
 * transaction and producer, as that many relays would (the claim's row
 * locks keep them apart, the ordering check keeps each payment in order):
 * while one lane waits for Kafka's acknowledgements, another has the
 * database.  Lane 0 is the relay of old.  The others claim only while a
 * backlog lasts, that is while the last claim of some lane came back full:
 * a trickle stays with lane 0, where two lanes would only split payments
 * between them and hold one of their events back.  A --once run ends when
 * lane 0's would; the other lanes then finish their batch, and lane 0 goes
 * over what is due again once the rows held behind an event in flight
 * elsewhere are due.
 */
#include "conf.h"
#include "db.h"
#include "diag.h"
#include "js.h"
#include "relay.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage_text[] =
    "usage: outbox-relay [-1ehVv] [-b count] [-j jobs] [-P age]"
    " [-X key=value] ...\n";

/* Pauses after a Kafka outage: doubled from the first up to the last. */
#define OUTAGE_PAUSE_MIN_MS 250
#define OUTAGE_PAUSE_MAX_MS 5000
/* After a deadlock or lock wait timeout, before the next claim. */
#define RETRY_PAUSE_MS 100
/*
 * A --once run's last passes, over rows it held back: at most this many,
 * each after the last hold is over (and a little more, for the database's
 * clock), unless that is further away than the longest wait.
 */
#define FINAL_PASSES 8
#define FINAL_WAIT_MAX_S 1.0
#define HOLD_SLACK_MS 5
/* Between attempts to reach a lost database: doubled up to the last. */
#define DB_PAUSE_MIN_MS 250
#define DB_PAUSE_MAX_MS 2000

static const char max_id_sql[] =
    "SELECT COALESCE(MAX(event_id), 0) FROM outbox_event";
static const char pending_sql[] =
    "SELECT COUNT(*), MIN(event_id) FROM outbox_event"
    " WHERE status = 'PENDING'";
static const char age_sql[] =
    "SELECT TIMESTAMPDIFF(MICROSECOND, created_at, NOW(6))"
    " FROM outbox_event WHERE event_id = ?";
static const char dead_sql[] =
    "SELECT COUNT(*) FROM outbox_event WHERE status = 'DEAD'";
/*
 * Purging picks ids with a plain read of the (status, next_attempt_at)
 * index, where a PUBLISHED row's next_attempt_at is its published_at
 * (migration 0009), then deletes them by primary key: no lock on any other
 * row.
 */
static const char purge_pick_sql[] =
    "SELECT event_id FROM outbox_event FORCE INDEX (ix_outbox_due)"
    " WHERE status = 'PUBLISHED'"
    " AND next_attempt_at < NOW(6) - INTERVAL ? MICROSECOND"
    " ORDER BY next_attempt_at LIMIT ?";
static const char purge_sql[] =
    "DELETE o FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) AS j"
    " STRAIGHT_JOIN outbox_event o FORCE INDEX (PRIMARY)"
    " ON o.event_id = j.id WHERE o.status = 'PUBLISHED'";

struct opts {
	bool once, exit_status;
	long long purge_ms; /* -1: not purging */
};

static volatile sig_atomic_t stopping;

static void
on_signal(int sig)
{
	stopping = sig;
}

static void
catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	/* Restarted: a signal must not break a read from the database. */
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

static double
now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Sleep ms, in slices, returning early once a signal asks to stop. */
static void
pause_ms(long long ms)
{
	struct timespec t;
	long long slice;

	while (ms > 0 && !stopping) {
		slice = ms > 100 ? 100 : ms;
		t.tv_sec = (time_t)(slice / 1000);
		t.tv_nsec = (long)(slice % 1000) * 1000000L;
		nanosleep(&t, NULL);
		ms -= slice;
	}
}

/*
 * One stats line from the counters and the table.
 * Counting PENDING scans the ix_outbox_due range: cheap at an interval.
 */
static void
stats(struct db *db, const struct relay_counts *c, struct relay_counts *last,
    double secs)
{
	long long pending = -1, dead = -1, age_us = 0;
	int64_t oldest = 0;

	if (db_query(db, pending_sql, "") == 0 && db_next(db) == 1) {
		pending = db_int(db, 0);
		oldest = db_int(db, 1);
		while (db_next(db) == 1)
			;
	}
	if (oldest > 0 && db_query(db, age_sql, "i", oldest) == 0 &&
	    db_next(db) == 1) {
		age_us = db_int(db, 0);
		while (db_next(db) == 1)
			;
	}
	if (db_query(db, dead_sql, "") == 0 && db_next(db) == 1) {
		dead = db_int(db, 0);
		while (db_next(db) == 1)
			;
	}
	diag_warn("%.1f published/s, %llu published, %llu dead-lettered, "
	          "%llu failed, %llu held; table: %lld pending, oldest "
	          "%.3fs, %lld dead",
	    secs > 0 ? (double)(c->published - last->published) / secs : 0.0,
	    (unsigned long long)c->published, (unsigned long long)c->dead,
	    (unsigned long long)c->failed, (unsigned long long)c->held, pending,
	    (double)age_us / 1e6, dead);
	*last = *c;
}

static int
summary(const struct relay_counts *c)
{
	return js_print(json_pack("{s:I, s:I, s:I, s:I, s:I}", "published",
	    (json_int_t)c->published, "dead_lettered", (json_int_t)c->dead,
	    "failed", (json_int_t)c->failed, "held", (json_int_t)c->held,
	    "batches", (json_int_t)c->batches));
}

/* The exit code of a run that ended without an error of its own. */
static int
run_code(const struct opts *o, const struct relay_counts *c)
{
	if (!o->once)
		return 0;
	if (c->failed > 0)
		return EX_TEMPFAIL;
	if (o->exit_status && c->dead > 0)
		return EX_MISMATCH;
	return 0;
}

/* Whether the last error means the connection to the database is gone. */
static bool
db_lost(struct db *db, int rc)
{
	return rc == EX_UNAVAILABLE &&
	    db_classify(db_errno(db)) == EX_UNAVAILABLE;
}

/*
 * Ride out a database outage: connect again, with pauses doubling up to
 * DB_PAUSE_MAX_MS, until it answers (0), SIGTERM (-1), or it answers
 * with something that waiting will not fix, such as a refused login (that
 * exit code).  The Kafka producer is untouched; the batch that was in
 * flight died with its transaction, so its rows are free and still
 * PENDING.
 */
static int
reconnect(struct db *db)
{
	long long pause = DB_PAUSE_MIN_MS;
	char msg[512];
	int rc;

	while (!stopping) {
		pause_ms(pause);
		if (stopping)
			break;
		if ((rc = db_reconnect(db, msg, sizeof(msg))) == 0 &&
		    (rc = relay_session(db)) == 0)
			return 0;
		if (rc != EX_UNAVAILABLE && rc != EX_TEMPFAIL) {
			diag_warn(
			    "connect to '%s': %s", db_where(db), db_error(db));
			return rc;
		}
		pause =
		    pause * 2 > DB_PAUSE_MAX_MS ? DB_PAUSE_MAX_MS : pause * 2;
	}
	return -1;
}

/* A claiming lane: its connection, its relay (and producer), its counts. */
struct lane {
	int no;
	struct db *db;
	struct relay *r;
	const struct opts *o;
	pthread_t thread;
	int rc;
	struct relay_counts c; /* under mu, a copy after each batch */
};

static struct {
	pthread_mutex_t mu;
	struct lane *v;
	int n;
	long long batch;
	bool backlog; /* the last claim of some lane came back full */
	bool done; /* lane 0 is done, or a lane failed: every lane stops */
} L = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Every lane's counts added up. */
static struct relay_counts
total(void)
{
	struct relay_counts t = { 0 };
	int i;

	pthread_mutex_lock(&L.mu);
	for (i = 0; i < L.n; i++) {
		t.batches += L.v[i].c.batches;
		t.claimed += L.v[i].c.claimed;
		t.published += L.v[i].c.published;
		t.failed += L.v[i].c.failed;
		t.dead += L.v[i].c.dead;
		t.held += L.v[i].c.held;
		t.held_until = fmax(t.held_until, L.v[i].c.held_until);
	}
	pthread_mutex_unlock(&L.mu);
	return t;
}

/* One of L's flags, read under its lock. */
static bool
flag(const bool *f)
{
	bool v;

	pthread_mutex_lock(&L.mu);
	v = *f;
	pthread_mutex_unlock(&L.mu);
	return v;
}

/* After a batch: publish the lane's counts and what its claim said. */
static void
batch_done(struct lane *l, const struct relay_counts *c,
    const struct relay_counts *before)
{
	pthread_mutex_lock(&L.mu);
	l->c = *c;
	L.backlog = c->claimed - before->claimed >= (uint64_t)L.batch;
	pthread_mutex_unlock(&L.mu);
}

/*
 * Claim, publish and mark until SIGTERM, or for lane 0 with --once until
 * nothing is due; lanes other than 0 stop when lane 0 is done and claim
 * only during a backlog.  0 or an exit code.
 */
static int
lane_run(struct lane *l)
{
	const struct opts *o = l->o;
	long long idle = conf_ms("relay_idle_sleep"), outage = 0;
	double interval = (double)conf_ms("relay_stats_interval") / 1000;
	struct relay_counts c = l->c, last = l->c, before, sum;
	enum relay_outcome out;
	double tick = now_s(), lost;
	bool helper = l->no > 0, gone;
	int rc = 0;

	while (!stopping && !flag(&L.done)) {
		if (helper && !flag(&L.backlog)) {
			pause_ms(idle > 0 ? idle : 1);
			continue;
		}
		if (!helper && diag_verbose > 0 && now_s() - tick >= interval) {
			sum = total();
			stats(l->db, &sum, &last, now_s() - tick);
			tick = now_s();
		}
		before = c;
		rc = relay_batch(l->r, &c, &out);
		batch_done(l, &c, &before);
		if (rc != 0) {
			gone = db_lost(l->db, rc);
			/*
			 * A lost database is lane 0's to report (it claims
			 * all the time, so it meets the outage too): one
			 * line per outage, whatever the lanes.  The others
			 * connect again quietly, or with --once stop.
			 */
			if (!helper || !gone)
				diag_warn("%s%s", relay_error(l->r),
				    gone && !o->once ? ": connecting again"
				                     : "");
			if (rc == EX_TEMPFAIL && !o->once) {
				pause_ms(RETRY_PAUSE_MS);
				continue;
			}
			if (gone && helper && o->once)
				rc = 0;
			if (!gone || o->once)
				break;
			lost = now_s();
			if ((rc = reconnect(l->db)) != 0) {
				rc = rc < 0 ? 0 : rc;
				break;
			}
			if (!helper)
				diag_warn("database '%s': connected again "
				          "after %.1fs",
				    db_where(l->db), now_s() - lost);
			continue;
		}
		if (out == RELAY_OUTAGE) {
			diag_warn("kafka '%s': %s", conf_str("kafka_brokers"),
			    relay_error(l->r));
			if (o->once) {
				rc = relay_outage_code(l->r);
				break;
			}
			outage = outage ? outage * 2 : OUTAGE_PAUSE_MIN_MS;
			if (outage > OUTAGE_PAUSE_MAX_MS)
				outage = OUTAGE_PAUSE_MAX_MS;
			pause_ms(outage);
			continue;
		}
		if (out == RELAY_PAUSED) {
			pause_ms(OUTAGE_PAUSE_MIN_MS);
			continue;
		}
		if (outage > 0)
			diag_warn("kafka '%s': delivering again",
			    conf_str("kafka_brokers"));
		outage = 0;
		if (o->once) {
			/*
			 * Done when nothing is due, or nothing moved and
			 * nothing waited for an earlier event (held rows
			 * were pushed back, so the next claim sees others).
			 */
			if (!helper &&
			    (c.claimed == before.claimed ||
			        (c.published + c.dead ==
			                before.published + before.dead &&
			            c.held == before.held)))
				break;
			continue;
		}
		/*
		 * Rows came in: more may have come since, claim again at
		 * once.  Only an empty claim sleeps, so a steady trickle is
		 * picked up within one batch's time, not a sleep's.
		 */
		if (c.claimed == before.claimed)
			pause_ms(idle);
	}
	if (!helper && diag_verbose > 0) {
		sum = total();
		stats(l->db, &sum, &last, now_s() - tick);
	}
	return rc;
}

static void *
lane_main(void *arg)
{
	struct lane *l = arg;

	l->rc = lane_run(l);
	if (l->rc != 0) {
		pthread_mutex_lock(&L.mu);
		L.done = true;
		pthread_mutex_unlock(&L.mu);
	}
	return NULL;
}

static int
relay_loop(struct db *db, const struct opts *o)
{
	struct relay_opts ro = { .batch = conf_int("relay_batch"),
		.max_attempts = conf_int("relay_max_attempts"),
		.backoff_ms = conf_ms("relay_backoff"),
		.backoff_max_ms = conf_ms("relay_backoff_max"),
		.max_id = INT64_MAX };
	int i, n = (int)conf_int("relay_jobs"), rc = 0, started = 0, pass;
	struct relay_counts c;
	double wait, until;
	char err[1024], msg[512];

	/* Bounded, so that cron runs end; late rows below it still count. */
	if (o->once) {
		if ((rc = db_query(db, max_id_sql, "")) != 0 ||
		    (rc = -db_next(db)) > 0) {
			diag_warn("read outbox_event on '%s': %s", db_where(db),
			    db_error(db));
			return rc;
		}
		ro.max_id = db_int(db, 0);
		while (db_next(db) == 1)
			;
		rc = 0;
	}
	L.v = xcalloc((size_t)n, sizeof(*L.v));
	L.n = n;
	L.batch = ro.batch;
	for (i = 0; i < n && rc == 0; i++) {
		L.v[i].no = i;
		L.v[i].o = o;
		L.v[i].db =
		    i == 0 ? db : db_connect(NULL, &rc, msg, sizeof(msg));
		if (L.v[i].db == NULL) {
			diag_warn("connect to '%s:%lld': %s",
			    conf_str("db_host"), conf_int("db_port"), msg);
			break;
		}
		L.v[i].r = relay_new(L.v[i].db, &ro, &rc, err, sizeof(err));
		if (L.v[i].r == NULL)
			diag_warn("%s", err);
	}
	if (rc == 0) {
		diag_info(1,
		    "publishing from '%s' to '%s', batches of %lld, %d lanes",
		    db_where(db), conf_str("kafka_brokers"), ro.batch, n);
		for (i = 1; i < n; i++) {
			if ((errno = pthread_create(&L.v[i].thread, NULL,
			         lane_main, &L.v[i])) != 0)
				diag_die(EX_OSERR, "cannot start a thread: %s",
				    strerror(errno));
			started = i;
		}
		rc = lane_run(&L.v[0]);
		pthread_mutex_lock(&L.mu);
		L.done = true;
		pthread_mutex_unlock(&L.mu);
		for (i = 1; i <= started; i++) {
			pthread_join(L.v[i].thread, NULL);
			if (rc == 0)
				rc = L.v[i].rc;
		}
		/*
		 * Rows held back (an earlier event of their payment was in
		 * another lane's batch, or another relay's) are due again
		 * soon: wait for them and go over what is due once more, as
		 * long as the last pass held rows back for a short while.
		 */
		c = total();
		for (pass = 0, until = 0; rc == 0 && o->once && !stopping &&
		     c.held_until > until && pass < FINAL_PASSES;
		     pass++) {
			wait = c.held_until - now_s();
			if (wait > FINAL_WAIT_MAX_S)
				break;
			pause_ms((long long)(wait * 1000) + HOLD_SLACK_MS);
			until = c.held_until;
			pthread_mutex_lock(&L.mu);
			L.n = 1;
			L.v[0].c = c;
			L.done = false;
			pthread_mutex_unlock(&L.mu);
			rc = lane_run(&L.v[0]);
			c = total();
		}
	}
	c = total();
	for (i = 0; i < n; i++) {
		relay_free(L.v[i].r);
		if (i > 0)
			db_close(L.v[i].db);
	}
	free(L.v);
	if (o->once && summary(&c) != 0 && rc == 0)
		rc = EX_IOERR;
	return rc != 0 ? rc : run_code(o, &c);
}

/* The ids of up to batch purgeable rows as a JSON array; 0 or a db code. */
static int
purge_pick(
    struct db *db, long long age_ms, long long batch, char **ids, uint64_t *n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	int rc;

	*n = 0;
	fputc('[', mem);
	rc = db_query(
	    db, purge_pick_sql, "ii", (int64_t)age_ms * 1000, (int64_t)batch);
	if (rc == 0) {
		while ((rc = db_next(db)) == 1)
			fprintf(mem, "%s%s", (*n)++ ? "," : "", db_str(db, 0));
		rc = -rc;
	}
	fputc(']', mem);
	fclose(mem);
	*ids = buf;
	return rc;
}

/*
 * Delete one batch of picked rows, and take them from the count of
 * PUBLISHED rows, in a transaction: 0 or a db code, the transaction then
 * left for the caller to roll back; *gone, how many.
 */
static int
purge_batch(struct db *db, const char *ids, uint64_t *gone)
{
	int rc;

	*gone = 0;
	if ((rc = db_begin(db)) != 0 ||
	    (rc = db_exec(db, purge_sql, "s", ids)) != 0)
		return rc;
	*gone = db_affected(db);
	if ((rc = relay_count_published(db, -(int64_t)*gone)) != 0 ||
	    (rc = db_commit(db)) != 0)
		*gone = 0;
	return rc;
}

/* Delete old PUBLISHED rows in small batches, each its own transaction. */
static int
purge(struct db *db, long long age_ms)
{
	long long batch = conf_int("relay_purge_batch");
	uint64_t total = 0, n, gone = 0;
	char *ids;
	int rc;

	if ((rc = relay_session(db)) != 0) {
		diag_warn("set up the session on '%s': %s", db_where(db),
		    db_error(db));
		return rc;
	}
	do {
		if ((rc = purge_pick(db, age_ms, batch, &ids, &n)) == 0 &&
		    n > 0)
			rc = purge_batch(db, ids, &gone);
		free(ids);
		if (rc != 0) {
			diag_warn("purge outbox_event on '%s': %s",
			    db_where(db), db_error(db));
			db_rollback(db);
			break;
		}
		if (n == 0)
			break;
		total += gone;
		diag_info(1, "purged %llu rows", (unsigned long long)total);
	} while (n == (uint64_t)batch && !stopping);
	if (js_print(json_pack("{s:I}", "purged", (json_int_t)total)) != 0 &&
	    rc == 0)
		rc = EX_IOERR;
	return rc;
}

static int
parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "once", no_argument, NULL, '1' },
		{ "batch", required_argument, NULL, 'b' },
		{ "exit-status", no_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "purge-older-than", required_argument, NULL, 'P' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *batch = NULL, *jobs = NULL;
	int c;

	o->purge_ms = -1;
	while ((c = getopt_long(
	            argc, argv, ":1b:ehj:P:vVX:", longopts, NULL)) != -1) {
		switch (c) {
		case '1':
			o->once = true;
			break;
		case 'b':
			batch = optarg;
			break;
		case 'e':
			o->exit_status = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(diag_close_stdout());
		case 'j':
			jobs = optarg;
			break;
		case 'P':
			if (conf_parse_duration(optarg, &o->purge_ms) != 0 ||
			    o->purge_ms > 36500 * 86400000LL)
				return diag_usage(
				    "option '--purge-older-than':"
				    " '%s' is not a duration such "
				    "as 7d",
				    optarg);
			break;
		case 'v':
			diag_verbose++;
			break;
		case 'V':
			diag_version();
			exit(diag_close_stdout());
		case 'X':
			if (conf_kafka_prop(optarg) != 0)
				return diag_usage("option '-X': '%s' is not "
				                  "key=value",
				    optarg);
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	if (o->purge_ms >= 0 && (o->once || o->exit_status))
		return diag_usage("option '--purge-older-than' does not go "
		                  "with '--%s'",
		    o->once ? "once" : "exit-status");
	if (o->exit_status && !o->once)
		return diag_usage("option '--exit-status' needs '--once'");
	if (jobs != NULL && o->purge_ms >= 0)
		return diag_usage("option '--jobs' does not go with "
		                  "'--purge-older-than'");
	if (jobs != NULL)
		conf_set_flag("relay_jobs", jobs);
	if (batch != NULL)
		conf_set_flag(
		    o->purge_ms >= 0 ? "relay_purge_batch" : "relay_batch",
		    batch);
	return 0;
}

int
main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct db *db;
	char msg[512];
	int rc;

	diag_init(argv[0]);
	diag_ignore_sigpipe();
	if ((rc = parse_args(argc, argv, &o)) != 0)
		return rc;
	if ((rc = conf_load()) != 0)
		return rc;
	if ((db = db_connect(NULL, &rc, msg, sizeof(msg))) == NULL) {
		diag_warn("connect to '%s:%lld': %s", conf_str("db_host"),
		    conf_int("db_port"), msg);
		return rc;
	}
	catch_signals();
	if (o.purge_ms >= 0)
		rc = purge(db, o.purge_ms);
	else
		rc = relay_loop(db, &o);
	db_close(db);
	if (diag_close_stdout() != 0 && rc == 0)
		rc = EX_IOERR;
	return rc;
}
