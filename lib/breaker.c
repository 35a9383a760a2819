/*
 * breaker: see breaker.h.
 */
#include "breaker.h"
#include "conf.h"
#include "diag.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SYNC_MS 100

static const char *const names[] = {
	[BREAKER_CLOSED] = "CLOSED",
	[BREAKER_OPEN] = "OPEN",
	[BREAKER_HALF_OPEN] = "HALF_OPEN",
	[BREAKER_FORCED_OPEN] = "FORCED_OPEN",
	[BREAKER_DISABLED] = "DISABLED",
};

static const char ensure_row[] =
    "INSERT IGNORE INTO breaker_state (name) VALUES (?)";
static const char read_state[] =
    "SELECT state, open_until IS NOT NULL AND open_until <= NOW(6)"
    " FROM breaker_state WHERE name = ?";
static const char lock_state[] =
    "SELECT state FROM breaker_state WHERE name = ? FOR UPDATE";
static const char add_bucket[] =
    "INSERT INTO breaker_bucket (name, bucket, successes, failures, slow)"
    " VALUES (?, NOW(), ?, ?, ?) ON DUPLICATE KEY UPDATE"
    " successes = successes + VALUES(successes),"
    " failures = failures + VALUES(failures), slow = slow + VALUES(slow)";
static const char add_denied[] =
    "UPDATE breaker_state SET not_permitted = not_permitted + ?"
    " WHERE name = ?";
static const char window_sums[] =
    "SELECT COALESCE(SUM(b.successes), 0), COALESCE(SUM(b.failures), 0),"
    " COALESCE(SUM(b.slow), 0) FROM breaker_bucket b"
    " JOIN breaker_state s ON s.name = b.name"
    " WHERE b.name = ? AND b.bucket > NOW() - INTERVAL ? SECOND"
    " AND (s.since IS NULL OR b.bucket + INTERVAL 1 SECOND > s.since)";
/*
 * The window with the state, read back after a bucket is written: one
 * statement for what window_sums and read_state would tell.
 */
static const char window_state[] =
    "SELECT s.state, s.open_until IS NOT NULL AND s.open_until <= NOW(6),"
    " COALESCE(SUM(b.successes), 0), COALESCE(SUM(b.failures), 0),"
    " COALESCE(SUM(b.slow), 0) FROM breaker_state s"
    " LEFT JOIN breaker_bucket b ON b.name = s.name"
    " AND b.bucket > NOW() - INTERVAL ? SECOND"
    " AND (s.since IS NULL OR b.bucket + INTERVAL 1 SECOND > s.since)"
    " WHERE s.name = ? GROUP BY s.name, s.state, s.open_until";
static const char purge_buckets[] =
    "DELETE FROM breaker_bucket WHERE name = ?"
    " AND bucket < NOW() - INTERVAL 1 HOUR LIMIT 1000";
static const char to_open[] =
    "UPDATE breaker_state SET state = 'OPEN', opened_at = NOW(6),"
    " open_until = NOW(6) + INTERVAL"
    " FLOOR(LEAST(? * POW(2, open_count), ?) * 1000) MICROSECOND,"
    " open_count = open_count + 1 WHERE name = ? AND state = ?";
static const char to_half_open[] =
    "UPDATE breaker_state SET state = 'HALF_OPEN'"
    " WHERE name = ? AND state = 'OPEN' AND open_until <= NOW(6)";
static const char to_closed[] =
    "UPDATE breaker_state SET state = 'CLOSED', since = NOW(6),"
    " open_count = 0, opened_at = NULL, open_until = NULL"
    " WHERE name = ? AND state = ?";
static const char to_operator[] =
    "UPDATE breaker_state SET state = ?, opened_at = NULL, open_until = NULL"
    " WHERE name = ?";
static const char reset_counts[] =
    "UPDATE breaker_state SET since = NOW(6), open_count = 0,"
    " not_permitted = 0 WHERE name = ?";
static const char log_event[] =
    "INSERT INTO breaker_event (name, from_state, to_state, reason)"
    " VALUES (?, ?, ?, ?)";
static const char drop_permits[] = "DELETE FROM breaker_permit WHERE name = ?";
/* A breaker that closes starts its window over. */
static const char drop_buckets[] = "DELETE FROM breaker_bucket WHERE name = ?";
static const char count_permits[] =
    "SELECT COUNT(*) FROM breaker_permit WHERE name = ?"
    " AND (outcome = 'ok' OR expires_at > NOW(6))";
static const char add_permit[] =
    "INSERT INTO breaker_permit (name, holder, expires_at)"
    " VALUES (?, ?, NOW(6) + INTERVAL ? MICROSECOND)";
static const char permit_ok[] =
    "UPDATE breaker_permit SET outcome = 'ok' WHERE id = ? AND outcome IS NULL";
static const char drop_permit[] = "DELETE FROM breaker_permit WHERE id = ?";
static const char count_ok[] =
    "SELECT COUNT(*) FROM breaker_permit WHERE name = ? AND outcome = 'ok'";

struct breaker {
	pthread_mutex_t mu;
	struct db *db;
	char name[33];
	char holder[64];
	struct breaker_conf c;
	enum breaker_state state;
	bool open_due;
	long long ok, fail, slow, denied;
	long long last_sync, last_purge; /* ms, monotonic */
	bool new_bucket; /* the last sync started this second's bucket */
	bool fresh; /* the last sync read the state with the window */
	long long half_open_full_until;
};

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *
breaker_state_name(enum breaker_state s)
{
	return names[s];
}

bool
breaker_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= 32 &&
	    strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-.") == n;
}

int
breaker_state_parse(const char *s, enum breaker_state *out)
{
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i], s) == 0) {
			*out = (enum breaker_state)i;
			return 0;
		}
	return -1;
}

static long long
setting(const char *name, const char *key, bool dur)
{
	char buf[96];
	long long v = -1;

	if (strcmp(name, "pg") == 0 || strcmp(name, "kafka") == 0) {
		snprintf(buf, sizeof(buf), "breaker_%s_%s", name, key);
		v = dur ? conf_ms(buf) : conf_int(buf);
	}
	if (v < 0) {
		snprintf(buf, sizeof(buf), "breaker_%s", key);
		v = dur ? conf_ms(buf) : conf_int(buf);
	}
	return v;
}

void
breaker_conf(const char *name, struct breaker_conf *c)
{
	c->window_ms = setting(name, "window", true);
	c->min_calls = setting(name, "min_calls", false);
	c->failure_rate = setting(name, "failure_rate", false);
	c->slow_ms = setting(name, "slow_call_duration", true);
	c->slow_rate = setting(name, "slow_call_rate", false);
	c->wait_ms = setting(name, "wait_open", true);
	c->wait_max_ms = setting(name, "wait_open_max", true);
	if (c->wait_max_ms < c->wait_ms)
		c->wait_max_ms = c->wait_ms;
	c->half_open_calls = setting(name, "half_open_calls", false);
	c->permit_ttl_ms = setting(name, "permit_ttl", true);
}

/* The state and whether an OPEN wait is over, from columns 0 and 1. */
static void
take_state(struct breaker *b)
{
	if (breaker_state_parse(db_str(b->db, 0), &b->state) != 0)
		b->state = BREAKER_CLOSED;
	b->open_due = db_int(b->db, 1) != 0;
}

/* Read the state; *found (if not NULL) tells whether the row exists. */
static int
read_row(struct breaker *b, bool *found)
{
	int rc;

	if ((rc = db_query(b->db, read_state, "s", b->name)) != 0)
		return rc;
	if ((rc = db_next(b->db)) < 0)
		return -rc;
	if (rc == 1)
		take_state(b);
	if (found != NULL)
		*found = rc == 1;
	while (db_next(b->db) > 0)
		;
	return 0;
}

static int
refresh(struct breaker *b)
{
	return read_row(b, NULL);
}

int
breaker_attach(struct db *db, const char *name, struct breaker **out)
{
	struct breaker *b = xcalloc(1, sizeof(*b));
	char host[32] = "";
	bool found;
	int rc;

	pthread_mutex_init(&b->mu, NULL);
	b->db = db;
	snprintf(b->name, sizeof(b->name), "%s", name);
	gethostname(host, sizeof(host) - 1);
	snprintf(
	    b->holder, sizeof(b->holder), "%.31s:%ld", host, (long)getpid());
	breaker_conf(name, &b->c);
	/* The row is there but for a breaker's first process: read first. */
	if ((rc = read_row(b, &found)) != 0 ||
	    (!found &&
	        ((rc = db_exec(db, ensure_row, "s", b->name)) != 0 ||
	            (rc = refresh(b)) != 0))) {
		free(b);
		return rc;
	}
	b->last_sync = now_ms();
	*out = b;
	return 0;
}

void
breaker_detach(struct breaker *b)
{
	if (b == NULL)
		return;
	breaker_sync(b, true);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

enum breaker_state
breaker_state(const struct breaker *b)
{
	return b->state;
}

/*
 * Move from one state to another if the breaker is still in from, logging
 * the transition in the same transaction.  Returns 0 (moved or lost the
 * race: the state is refreshed either way) or a db exit code.
 */
static int
transition(struct breaker *b, enum breaker_state from, enum breaker_state to,
    const char *reason)
{
	struct db *db = b->db;
	int rc;

	if ((rc = db_begin(db)) != 0)
		return rc;
	switch (to) {
	case BREAKER_OPEN:
		rc = db_exec(db, to_open, "iiss", (int64_t)b->c.wait_ms,
		    (int64_t)b->c.wait_max_ms, b->name, names[from]);
		break;
	case BREAKER_HALF_OPEN:
		rc = db_exec(db, to_half_open, "s", b->name);
		break;
	default:
		rc = db_exec(db, to_closed, "ss", b->name, names[from]);
		break;
	}
	if (rc == 0 && db_affected(db) == 1) {
		rc = db_exec(db, log_event, "ssss", b->name, names[from],
		    names[to], reason);
		if (rc == 0)
			rc = db_exec(db, drop_permits, "s", b->name);
		if (rc == 0 && to == BREAKER_CLOSED)
			rc = db_exec(db, drop_buckets, "s", b->name);
		if (rc == 0)
			diag_info(0, "breaker '%s': %s -> %s: %s", b->name,
			    names[from], names[to], reason);
	}
	if (rc != 0) {
		db_rollback(db);
		return rc;
	}
	if ((rc = db_commit(db)) != 0)
		return rc;
	return refresh(b);
}

int
breaker_window(struct db *db, const char *name, const struct breaker_conf *c,
    long long *ok, long long *fail, long long *slow)
{
	int rc;

	rc = db_query(db, window_sums, "si", name,
	    (int64_t)((c->window_ms + 999) / 1000));
	if (rc != 0 || (rc = -db_next(db)) > 0)
		return rc;
	*ok = db_int(db, 0);
	*fail = db_int(db, 1);
	*slow = db_int(db, 2);
	while (db_next(db) > 0)
		;
	return 0;
}

/* The window with the state after a bucket was written, for evaluate(). */
static int
window_now(struct breaker *b, long long *ok, long long *fail, long long *slow)
{
	int rc;

	rc = db_query(b->db, window_state, "is",
	    (int64_t)((b->c.window_ms + 999) / 1000), b->name);
	if (rc != 0 || (rc = db_next(b->db)) < 0)
		return rc < 0 ? -rc : rc;
	*ok = *fail = *slow = 0;
	if (rc == 1) {
		take_state(b);
		b->fresh = true;
		*ok = db_int(b->db, 2);
		*fail = db_int(b->db, 3);
		*slow = db_int(b->db, 4);
	}
	while (db_next(b->db) > 0)
		;
	return 0;
}

/* Push the counted outcomes and decide whether the window trips. */
static int
evaluate(struct breaker *b)
{
	long long calls, ok, fail, slow;
	char reason[128];
	int rc;

	b->new_bucket = b->fresh = false;
	if (b->ok + b->fail > 0) {
		rc = db_exec(b->db, add_bucket, "siii", b->name, (int64_t)b->ok,
		    (int64_t)b->fail, (int64_t)b->slow);
		if (rc != 0)
			return rc;
		/* 1 a new row, 2 one added to (ON DUPLICATE KEY UPDATE). */
		b->new_bucket = db_affected(b->db) == 1;
		b->ok = b->fail = b->slow = 0;
		if (b->state != BREAKER_CLOSED)
			return 0;
		if ((rc = window_now(b, &ok, &fail, &slow)) != 0)
			return rc;
		/* Opened, disabled... meanwhile: not ours to judge. */
		if (b->state != BREAKER_CLOSED)
			return 0;
		calls = ok + fail;
		if (calls >= b->c.min_calls &&
		    (fail * 100 >= b->c.failure_rate * calls ||
		        slow * 100 >= b->c.slow_rate * calls)) {
			snprintf(reason, sizeof(reason),
			    "%lld of %lld calls failed, %lld slow", fail, calls,
			    slow);
			return transition(
			    b, BREAKER_CLOSED, BREAKER_OPEN, reason);
		}
	}
	return 0;
}

static int
sync_locked(struct breaker *b, bool force)
{
	long long now = now_ms();
	int rc;

	if (!force && now - b->last_sync < SYNC_MS)
		return 0;
	b->last_sync = now;
	if (b->denied > 0) {
		rc = db_exec(
		    b->db, add_denied, "is", (int64_t)b->denied, b->name);
		if (rc != 0)
			return rc;
		b->denied = 0;
	}
	if ((rc = evaluate(b)) != 0)
		return rc;
	/*
	 * Old buckets go once per new bucket at most, so many short-lived
	 * processes purge about once a second between them, not each once.
	 */
	if (b->new_bucket && now - b->last_purge > 60000) {
		b->last_purge = now;
		if ((rc = db_exec(b->db, purge_buckets, "s", b->name)) != 0)
			return rc;
	}
	if (!b->fresh && (rc = refresh(b)) != 0)
		return rc;
	if (b->state == BREAKER_OPEN && b->open_due)
		return transition(
		    b, BREAKER_OPEN, BREAKER_HALF_OPEN, "wait in OPEN is over");
	return 0;
}

/* Lease one of the HALF_OPEN probes, if one is free. */
static bool
lease(struct breaker *b, struct breaker_call *call)
{
	struct db *db = b->db;
	bool got = false;
	int rc;

	if (now_ms() < b->half_open_full_until)
		return false;
	if ((rc = db_begin(db)) != 0)
		return true;
	if ((rc = db_query(db, lock_state, "s", b->name)) != 0 ||
	    (rc = -db_next(db)) > 0)
		goto out;
	rc = 0;
	if (db_str(db, 0) == NULL || strcmp(db_str(db, 0), "HALF_OPEN") != 0) {
		while (db_next(db) > 0)
			;
		db_rollback(db);
		refresh(b);
		return b->state == BREAKER_CLOSED ||
		    b->state == BREAKER_DISABLED;
	}
	while (db_next(db) > 0)
		;
	if ((rc = db_query(db, count_permits, "s", b->name)) != 0 ||
	    (rc = -db_next(db)) > 0)
		goto out;
	rc = 0; /* db_next gave a row */
	if (db_int(db, 0) < b->c.half_open_calls) {
		while (db_next(db) > 0)
			;
		rc = db_exec(db, add_permit, "ssi", b->name, b->holder,
		    (int64_t)b->c.permit_ttl_ms * 1000);
		if (rc == 0) {
			call->permit = (int64_t)db_insert_id(db);
			got = true;
		}
	} else {
		while (db_next(db) > 0)
			;
		/* Every probe is out: ask again a little later. */
		b->half_open_full_until = now_ms() + SYNC_MS;
	}
out:
	if (rc != 0) {
		db_rollback(db);
		/* A breaker that cannot reach its table lets calls through. */
		return true;
	}
	if (db_commit(db) != 0)
		return true;
	return got;
}

int
breaker_sync(struct breaker *b, bool force)
{
	int rc;

	pthread_mutex_lock(&b->mu);
	rc = sync_locked(b, force);
	pthread_mutex_unlock(&b->mu);
	return rc;
}

static bool
acquire_locked(struct breaker *b, struct breaker_call *call)
{
	/* An OPEN breaker whose wait is over moves on now, not at the next sync. */
	if (sync_locked(b, b->state == BREAKER_OPEN && b->open_due) != 0)
		return true;
	switch (b->state) {
	case BREAKER_CLOSED:
	case BREAKER_DISABLED:
		return true;
	case BREAKER_HALF_OPEN:
		if (lease(b, call))
			return true;
		break;
	default:
		break;
	}
	b->denied++;
	return false;
}

bool
breaker_acquire(struct breaker *b, struct breaker_call *call)
{
	bool ok;

	call->permit = 0;
	pthread_mutex_lock(&b->mu);
	ok = acquire_locked(b, call);
	pthread_mutex_unlock(&b->mu);
	return ok;
}

/* A HALF_OPEN probe came back: close on enough successes, reopen on a failure. */
static void
probe_done(
    struct breaker *b, const struct breaker_call *call, bool failure, bool slow)
{
	int rc;

	if (failure || slow) {
		transition(b, BREAKER_HALF_OPEN, BREAKER_OPEN,
		    failure ? "a probe failed" : "a probe was slow");
		return;
	}
	if (db_exec(b->db, permit_ok, "i", call->permit) != 0 ||
	    db_affected(b->db) != 1)
		return;
	if ((rc = db_query(b->db, count_ok, "s", b->name)) != 0 ||
	    db_next(b->db) != 1)
		return;
	rc = db_int(b->db, 0) >= b->c.half_open_calls;
	while (db_next(b->db) > 0)
		;
	if (rc)
		transition(
		    b, BREAKER_HALF_OPEN, BREAKER_CLOSED, "probes succeeded");
}

void
breaker_record_many(struct breaker *b, const struct breaker_call *call,
    long long ok, long long failed, double ms)
{
	bool slow = ms >= (double)b->c.slow_ms;

	pthread_mutex_lock(&b->mu);
	if (call->permit > 0) {
		probe_done(b, call, failed > 0, slow);
	} else {
		b->ok += ok;
		b->fail += failed;
		if (slow)
			b->slow += ok + failed;
	}
	pthread_mutex_unlock(&b->mu);
}

void
breaker_record(
    struct breaker *b, const struct breaker_call *call, bool failure, double ms)
{
	breaker_record_many(b, call, failure ? 0 : 1, failure ? 1 : 0, ms);
}

void
breaker_release(struct breaker *b, const struct breaker_call *call)
{
	if (call->permit <= 0)
		return;
	pthread_mutex_lock(&b->mu);
	db_exec(b->db, drop_permit, "i", call->permit);
	pthread_mutex_unlock(&b->mu);
}

int
breaker_set(
    struct db *db, const char *name, enum breaker_state to, const char *reason)
{
	enum breaker_state from = BREAKER_CLOSED;
	int rc;

	if ((rc = db_exec(db, ensure_row, "s", name)) != 0 ||
	    (rc = db_begin(db)) != 0)
		return rc;
	if ((rc = db_query(db, lock_state, "s", name)) != 0 ||
	    (rc = -db_next(db)) > 0)
		goto fail;
	breaker_state_parse(db_str(db, 0), &from);
	while (db_next(db) > 0)
		;
	if ((rc = db_exec(db, to_operator, "ss", names[to], name)) != 0 ||
	    (to == BREAKER_CLOSED &&
	        ((rc = db_exec(db, reset_counts, "s", name)) != 0 ||
	            (rc = db_exec(db, drop_buckets, "s", name)) != 0)) ||
	    (rc = db_exec(db, drop_permits, "s", name)) != 0 ||
	    (rc = db_exec(db, log_event, "ssss", name, names[from], names[to],
	         reason)) != 0)
		goto fail;
	return db_commit(db);
fail:
	db_rollback(db);
	return rc;
}
