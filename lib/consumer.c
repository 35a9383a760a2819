/*
 * consumer: see consumer.h.  This file holds the Kafka loop, signals and
 * transactions; consumer_event.c the pure helpers.
 */
#include "clock.h"
#include "consumer.h"
#include "conf.h"
#include "diag.h"
#include "kq.h"
#include "outbox.h"
#include "topics.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often a lost database or a deadlock is retried before giving up. */
#define RETRIES 6
/* A retried batch: AGAIN means "an item was rejected, apply the rest". */
#define AGAIN (-3)

static const char mark_processed[] =
    "INSERT INTO processed_event (consumer, event_key) VALUES (?, ?)"
    " ON DUPLICATE KEY UPDATE event_key = event_key";

/* Claims by SKIP LOCKED take no gap locks that would stall inserts. */
static const char read_committed[] =
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";

static volatile sig_atomic_t stop_flag, stop_sig;

static void
on_signal(int sig)
{
	stop_sig = sig;
	stop_flag = 1;
}

void
consumer_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

void
consumer_stop(void)
{
	stop_flag = 1;
}

bool
consumer_stopping(void)
{
	return stop_flag != 0;
}

int
consumer_signal(void)
{
	return stop_sig;
}

void
consumer_sleep(long long ms)
{
	struct timespec ts;
	long long step;

	while (ms > 0 && !consumer_stopping()) {
		step = ms < 50 ? ms : 50;
		ts.tv_sec = 0;
		ts.tv_nsec = step * 1000000L;
		nanosleep(&ts, NULL);
		ms -= step;
	}
}

/* Connect and set the session up; NULL with code and msg set. */
static struct db *
connect_quiet(int *code, char *msg, size_t len)
{
	struct db *db = db_connect(NULL, code, msg, len);

	if (db == NULL)
		return NULL;
	if ((*code = db_run(db, read_committed)) != 0) {
		snprintf(msg, len, "%s", db_error(db));
		db_close(db);
		return NULL;
	}
	return db;
}

struct db *
consumer_connect(int *code)
{
	char msg[512];
	struct db *db = connect_quiet(code, msg, sizeof(msg));

	if (db == NULL)
		diag_warn("connect to '%s:%lld': %s", conf_str("db_host"),
		    conf_int("db_port"), msg);
	return db;
}

/*
 * After a failed transaction: whether to try again, having waited and, for
 * a lost connection, reconnected.  Prints nothing.
 */
static bool
recover(struct db **db, int rc, int attempt)
{
	char msg[512];
	int code;

	if (attempt >= RETRIES || consumer_stopping())
		return false;
	if (rc == EX_TEMPFAIL) {
		consumer_sleep(20LL << attempt);
		return true;
	}
	if (rc != EX_UNAVAILABLE)
		return false;
	consumer_sleep(250LL << attempt);
	db_close(*db);
	*db = connect_quiet(&code, msg, sizeof(msg));
	return true;
}

int
consumer_tx(struct db **db, int (*body)(struct db *db, void *arg), void *arg)
{
	int attempt, rc;

	for (attempt = 0;; attempt++) {
		if (*db == NULL) {
			rc = EX_UNAVAILABLE;
		} else if ((rc = db_begin(*db)) == 0 &&
		    (rc = body(*db, arg)) == 0 && (rc = db_commit(*db)) == 0) {
			return 0;
		}
		if (*db != NULL)
			db_rollback(*db);
		if (rc < 0)
			return rc;
		if (!recover(db, rc, attempt))
			break;
	}
	diag_warn("database '%s': %s", *db ? db_where(*db) : "(lost)",
	    *db ? db_error(*db) : "cannot reconnect");
	return rc;
}

/* The Kafka side. */

struct part {
	char *topic;
	int32_t partition;
	bool eof;
	int64_t next; /* offset to commit next, -1 none */
	int64_t committed;
};

struct item {
	rd_kafka_message_t *km;
	struct consumer_msg m;
	struct consumer_error e;
	char key[37]; /* eventId, or the offset key */
	bool rejected;
	enum { NEW, APPLIED, DUPLICATE, DEAD_LETTERED } outcome;
};

struct run {
	const struct consumer_opts *o;
	struct db **db;
	rd_kafka_t *rk;
	struct part *parts;
	size_t nparts;
	bool assigned;
	long long handled;
	struct item *batch;
	size_t nbatch, cap;
	rd_kafka_resp_err_t last_err;
	/* Errors logged since the last message, to log each once. */
	rd_kafka_resp_err_t seen[8];
	size_t nseen;
};

static void
logger(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (diag_verbose >= (level <= 4 ? 1 : 2))
		diag_warn("kafka: %s: %s", fac, buf);
}

/* Client errors (brokers down, ...): librdkafka retries on its own. */
static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct run *r = opaque;
	size_t i;

	r->last_err = (rd_kafka_resp_err_t)err;
	for (i = 0; i < r->nseen; i++)
		if (r->seen[i] == r->last_err)
			return;
	if (r->nseen < sizeof(r->seen) / sizeof(r->seen[0]))
		r->seen[r->nseen++] = r->last_err;
	diag_warn("kafka: %s", reason);
}

static void
commit_done(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	if (err != 0 && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		diag_info(1, "commit offsets: %s", rd_kafka_err2str(err));
}

static struct part *
find_part(struct run *r, const char *topic, int32_t partition)
{
	size_t i;

	for (i = 0; i < r->nparts; i++)
		if (r->parts[i].partition == partition &&
		    strcmp(r->parts[i].topic, topic) == 0)
			return &r->parts[i];
	return NULL;
}

/*
 * Commit the offsets of what was applied.  sync waits for the answer, and
 * sends every offset again in case an earlier asynchronous commit failed.
 */
static int
commit(struct run *r, bool sync)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	size_t i;

	l = rd_kafka_topic_partition_list_new((int)r->nparts + 1);
	for (i = 0; i < r->nparts; i++)
		if (r->parts[i].next > r->parts[i].committed ||
		    (sync && r->parts[i].next >= 0))
			rd_kafka_topic_partition_list_add(
			    l, r->parts[i].topic, r->parts[i].partition)
			    ->offset = r->parts[i].next;
	if (l->cnt == 0) {
		rd_kafka_topic_partition_list_destroy(l);
		return 0;
	}
	err = rd_kafka_commit(r->rk, l, sync ? 0 : 1);
	rd_kafka_topic_partition_list_destroy(l);
	if (err != 0 && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
		/* Harmless: what was applied is skipped when read again. */
		diag_warn("commit offsets: %s; applied messages will be read "
		          "again and skipped",
		    rd_kafka_err2str(err));
		return kq_classify(err) ? kq_classify(err) : EX_SOFTWARE;
	}
	for (i = 0; i < r->nparts; i++)
		r->parts[i].committed = r->parts[i].next;
	return 0;
}

static void
clear_parts(struct run *r)
{
	size_t i;

	for (i = 0; i < r->nparts; i++)
		free(r->parts[i].topic);
	free(r->parts);
	r->parts = NULL;
	r->nparts = 0;
}

static void
log_assignment(const rd_kafka_topic_partition_list_t *l)
{
	char buf[1024];
	size_t n = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < l->cnt && n < sizeof(buf) - 64; i++) {
		if (i == 0 || strcmp(l->elems[i].topic, l->elems[i - 1].topic))
			n += (size_t)snprintf(buf + n, sizeof(buf) - n,
			    "%s%s [", i ? "] " : "", l->elems[i].topic);
		else
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",");
		n += (size_t)snprintf(
		    buf + n, sizeof(buf) - n, "%d", l->elems[i].partition);
	}
	diag_warn(
	    "assigned %s%s", l->cnt ? buf : "no partitions", l->cnt ? "]" : "");
}

static void
rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *l, void *opaque)
{
	struct run *r = opaque;
	bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	rd_kafka_error_t *e = NULL;
	int i;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		if (!coop)
			clear_parts(r);
		for (i = 0; i < l->cnt; i++) {
			r->parts = xrealloc(
			    r->parts, (r->nparts + 1) * sizeof(*r->parts));
			r->parts[r->nparts++] =
			    (struct part){ xstrdup(l->elems[i].topic),
				    l->elems[i].partition, false, -1, -1 };
		}
		r->assigned = true;
		log_assignment(l);
		if (coop)
			e = rd_kafka_incremental_assign(rk, l);
		else
			rd_kafka_assign(rk, l);
	} else {
		/* Hand over what was applied before the partitions go. */
		commit(r, true);
		clear_parts(r);
		r->assigned = false;
		if (coop)
			e = rd_kafka_incremental_unassign(rk, l);
		else
			rd_kafka_assign(rk, NULL);
	}
	if (e != NULL) {
		diag_warn("rebalance: %s", rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	}
}

/* Set a default property unless -X or the file gave one. */
static int
set_default(rd_kafka_conf_t *c, const char *key, const char *value, char *err,
    size_t len)
{
	const struct conf_kv *p;
	size_t i, n = conf_kafka_props(&p);

	for (i = 0; i < n; i++)
		if (strcmp(p[i].key, key) == 0)
			return 0;
	return kq_set(c, key, value, err, len);
}

static int
open_kafka(struct run *r)
{
	rd_kafka_topic_partition_list_t *subs;
	rd_kafka_conf_t *c;
	rd_kafka_resp_err_t err;
	char why[512];
	size_t i;

	if ((c = kq_conf(r->o->name, why, sizeof(why))) == NULL ||
	    set_default(c, "auto.offset.reset", "earliest", why, sizeof(why)) ||
	    /*
	     * A broker that holds an empty fetch for its whole wait (the dev
	     * broker does, librdkafka's default is 500 ms) would add that to
	     * every hop of the pipeline; Kafka answers as soon as data comes.
	     */
	    set_default(c, "fetch.wait.max.ms", "20", why, sizeof(why)) ||
	    kq_set(c, "group.id", r->o->group, why, sizeof(why)) ||
	    kq_set(c, "enable.auto.commit", "false", why, sizeof(why)) ||
	    kq_set(c, "enable.auto.offset.store", "false", why, sizeof(why)) ||
	    kq_set(c, "enable.partition.eof", "true", why, sizeof(why))) {
		if (c != NULL)
			rd_kafka_conf_destroy(c);
		diag_warn("%s", why);
		return EX_CONFIG;
	}
	rd_kafka_conf_set_log_cb(c, logger);
	rd_kafka_conf_set_rebalance_cb(c, rebalance);
	rd_kafka_conf_set_error_cb(c, on_error);
	rd_kafka_conf_set_offset_commit_cb(c, commit_done);
	rd_kafka_conf_set_opaque(c, r);
	r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, why, sizeof(why));
	if (r->rk == NULL) {
		rd_kafka_conf_destroy(c);
		diag_warn("kafka: %s", why);
		return EX_CONFIG;
	}
	rd_kafka_poll_set_consumer(r->rk);
	subs = rd_kafka_topic_partition_list_new((int)r->o->ntopics);
	for (i = 0; i < r->o->ntopics; i++)
		rd_kafka_topic_partition_list_add(subs,
		    topics_name(r->o->topics[i].topic), RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(r->rk, subs);
	rd_kafka_topic_partition_list_destroy(subs);
	if (err != 0) {
		diag_warn("subscribe: %s", rd_kafka_err2str(err));
		return kq_classify(err) ? kq_classify(err) : EX_SOFTWARE;
	}
	return 0;
}

/* The eventType a message of topic must carry. */
static const char *
want_type(const struct consumer_opts *o, const char *topic)
{
	size_t i;

	for (i = 0; i < o->ntopics; i++)
		if (strcmp(topics_name(o->topics[i].topic), topic) == 0)
			return o->topics[i].event_type;
	return NULL;
}

/* Read the envelope: a JSON object with an eventId and the right type. */
static void
envelope(struct run *r, struct item *it)
{
	struct consumer_msg *m = &it->m;
	const char *type, *want;
	json_error_t je;

	consumer_offset_key(m->topic, m->partition, m->offset, it->key);
	if (m->len == 0) {
		consumer_reject(&it->e, CE_NOT_JSON, "empty message");
		goto rejected;
	}
	m->event = json_loadb(m->payload, m->len, JSON_REJECT_DUPLICATES, &je);
	if (m->event == NULL) {
		consumer_reject(&it->e, CE_NOT_JSON, "%s", je.text);
		goto rejected;
	}
	if (!json_is_object(m->event)) {
		consumer_reject(&it->e, CE_NOT_JSON, "not a JSON object");
		goto rejected;
	}
	/* For the dead-letter record's key, if it comes to that. */
	if (json_integer_value(json_object_get(m->event, "paymentId")) > 0)
		m->payment_id =
		    json_integer_value(json_object_get(m->event, "paymentId"));
	if (consumer_str(m->event, "eventId", 36, &m->event_id, &it->e) != 0)
		goto rejected;
	if (!consumer_uuid_ok(m->event_id)) {
		m->event_id = NULL;
		consumer_reject(
		    &it->e, CE_BAD_FIELD, "'eventId' must be a UUID");
		goto rejected;
	}
	snprintf(it->key, sizeof(it->key), "%s", m->event_id);
	if (consumer_str(m->event, "eventType", 64, &type, &it->e) != 0)
		goto rejected;
	want = want_type(r->o, m->topic);
	if (want != NULL && strcmp(type, want) != 0) {
		consumer_reject(&it->e, CE_WRONG_EVENT_TYPE,
		    "'eventType' is '%.64s', expected '%s'", type, want);
		goto rejected;
	}
	return;
rejected:
	it->rejected = true;
}

/* 0 new, 1 already processed, or an exit code. */
static int
processed(struct db *db, const char *name, const char *key)
{
	int rc = db_exec(db, mark_processed, "ss", name, key);

	if (rc != 0)
		return rc;
	return db_affected(db) == 0 ? 1 : 0;
}

static int
dead_letter(struct run *r, struct item *it)
{
	struct db *db = *r->db;
	json_t *rec;
	int rc;

	if ((rc = processed(db, r->o->name, it->key)) != 0) {
		if (rc == 1)
			it->outcome = DUPLICATE;
		return rc == 1 ? 0 : rc;
	}
	rec = consumer_dlq_record(&it->m, r->o->name, r->o->group, &it->e);
	rc = outbox_insert(db, r->o->dlq_event, it->m.payment_id, rec, NULL);
	json_decref(rec);
	if (rc == 0)
		it->outcome = DEAD_LETTERED;
	return rc;
}

static int
apply_one(struct run *r, struct item *it)
{
	struct db *db = *r->db;
	int rc;

	it->outcome = NEW;
	if (it->rejected)
		return dead_letter(r, it);
	if ((rc = processed(db, r->o->name, it->key)) != 0) {
		if (rc == 1)
			it->outcome = DUPLICATE;
		return rc == 1 ? 0 : rc;
	}
	rc = r->o->handle(db, &it->m, &it->e, r->o->arg);
	if (rc == 0) {
		it->outcome = APPLIED;
		return 0;
	}
	if (rc == EX_SOFTWARE) {
		/* Not transient, not the setup: this message cannot apply. */
		consumer_reject(&it->e, CE_PROCESSING_ERROR, "%s",
		    *db_error(db) ? db_error(db) : "internal error");
		rc = CONSUMER_REJECT;
	}
	if (rc == CONSUMER_REJECT) {
		it->rejected = true;
		return AGAIN;
	}
	return rc;
}

static int
apply_batch(struct run *r)
{
	size_t i;
	int attempt = 0, rc;

	for (;;) {
		rc = *r->db ? db_begin(*r->db) : EX_UNAVAILABLE;
		for (i = 0; rc == 0 && i < r->nbatch; i++)
			rc = apply_one(r, &r->batch[i]);
		if (rc == 0 && (rc = db_commit(*r->db)) == 0)
			break;
		if (*r->db != NULL)
			db_rollback(*r->db);
		if (rc == AGAIN)
			continue;
		if (!recover(r->db, rc, attempt++)) {
			diag_warn("database '%s': %s",
			    *r->db ? db_where(*r->db) : "(lost)",
			    *r->db ? db_error(*r->db) : "cannot reconnect");
			return rc;
		}
	}
	return 0;
}

/*
 * The set-based path, for a consumer with handle_batch: one statement marks
 * the batch's events processed (see mark_set() for the ones processed
 * before), and the handler applies the new ones together.  A statement the
 * database refuses is redone by apply_batch(), a message at a time, which
 * dead-letters the message at fault alone.
 */
static const char seen_sql[] =
    "SELECT p.event_key FROM JSON_TABLE(?, '$[*]' COLUMNS"
    " (k CHAR(36) PATH '$')) AS j STRAIGHT_JOIN processed_event p"
    " FORCE INDEX (PRIMARY) ON p.consumer = ? AND p.event_key = j.k";
/* No IGNORE: a key processed before fails it (see mark_set()). */
static const char mark_set_sql[] =
    "INSERT INTO processed_event (consumer, event_key)"
    " SELECT ?, k FROM JSON_TABLE(?, '$[*]' COLUMNS"
    " (k CHAR(36) PATH '$')) AS j";

static int
cmp_key(const void *a, const void *b)
{
	const struct item *x = *(const struct item *const *)a;
	const struct item *y = *(const struct item *const *)b;
	int c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	return x < y ? -1 : x > y;
}

/*
 * Sort the batch by key into v, every item NEW but the later ones of a key
 * that the batch holds more than once: those are DUPLICATE.
 */
static void
sort_keys(struct run *r, struct item **v)
{
	size_t i;

	for (i = 0; i < r->nbatch; i++) {
		v[i] = &r->batch[i];
		v[i]->outcome = NEW;
	}
	qsort(v, r->nbatch, sizeof(*v), cmp_key);
	for (i = 1; i < r->nbatch; i++)
		if (strcmp(v[i]->key, v[i - 1]->key) == 0)
			v[i]->outcome = DUPLICATE;
}

/* Mark every item of key in v (sorted) DUPLICATE. */
static void
seen(struct item **v, size_t n, const char *key)
{
	size_t lo = 0, hi = n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (strcmp(v[mid]->key, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < n && strcmp(v[lo]->key, key) == 0; lo++)
		v[lo]->outcome = DUPLICATE;
}

/*
 * The keys of the NEW items as a JSON array, into buf (room for n keys);
 * its length, 0 when there are none.  Keys are UUID-shaped: nothing to
 * escape.
 */
static size_t
new_keys(struct item **v, size_t n, char *buf)
{
	size_t i, len = 0;

	for (i = 0; i < n; i++) {
		if (v[i]->outcome != NEW)
			continue;
		buf[len] = len == 0 ? '[' : ',';
		buf[len + 1] = '"';
		len += 2;
		memcpy(buf + len, v[i]->key, 36);
		len += 36;
		buf[len++] = '"';
	}
	if (len > 0)
		buf[len++] = ']';
	return len;
}

/* The dead-letter record of a message already marked processed. */
static int
dead_letter_marked(struct run *r, struct item *it)
{
	json_t *rec;
	int rc;

	rec = consumer_dlq_record(&it->m, r->o->name, r->o->group, &it->e);
	rc =
	    outbox_insert(*r->db, r->o->dlq_event, it->m.payment_id, rec, NULL);
	json_decref(rec);
	if (rc == 0)
		it->outcome = DEAD_LETTERED;
	return rc;
}

/*
 * Mark the batch's NEW keys processed.  Most batches are new: one INSERT.
 * When it meets a key processed before, the statement is undone, and one
 * query finds those keys before the others are marked.
 */
static int
mark_set(struct run *r, struct item **v, char *keys)
{
	struct db *db = *r->db;
	size_t len;
	int rc;

	if ((len = new_keys(v, r->nbatch, keys)) == 0)
		return 0;
	rc = db_exec(db, mark_set_sql, "sb", r->o->name, keys, len);
	if (rc == 0 || db_errno(db) != DB_ER_DUP_ENTRY)
		return rc;
	if ((rc = db_query(db, seen_sql, "bs", keys, len, r->o->name)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1)
		seen(v, r->nbatch, db_str(db, 0));
	if (rc < 0)
		return -rc;
	if ((len = new_keys(v, r->nbatch, keys)) == 0)
		return 0;
	rc = db_exec(db, mark_set_sql, "sb", r->o->name, keys, len);
	/* Another instance marked one meanwhile: redo the batch. */
	return rc != 0 && db_errno(db) == DB_ER_DUP_ENTRY ? EX_TEMPFAIL : rc;
}

/* One try of the set-based path, in a transaction left open. */
static int
apply_set_once(
    struct run *r, struct item **v, struct consumer_item *ci, char *keys)
{
	struct db *db = *r->db;
	size_t i, n = 0;
	int rc;

	if ((rc = db_begin(db)) != 0)
		return rc;
	sort_keys(r, v);
	if ((rc = mark_set(r, v, keys)) != 0)
		return rc;
	for (i = 0; i < r->nbatch; i++)
		if (r->batch[i].outcome == NEW && !r->batch[i].rejected)
			ci[n++] = (struct consumer_item){ &r->batch[i].m,
				&r->batch[i].e, 0 };
	if (n > 0 && (rc = r->o->handle_batch(db, ci, n, r->o->arg)) != 0)
		return rc;
	for (i = 0, n = 0; i < r->nbatch; i++) {
		if (r->batch[i].outcome != NEW || r->batch[i].rejected)
			continue;
		if (ci[n++].rc == 0)
			r->batch[i].outcome = APPLIED;
		else
			r->batch[i].rejected = true;
	}
	for (i = 0; i < r->nbatch; i++)
		if (r->batch[i].outcome == NEW &&
		    (rc = dead_letter_marked(r, &r->batch[i])) != 0)
			return rc;
	return db_commit(db);
}

static int
apply_set(struct run *r)
{
	struct item **v = xcalloc(r->nbatch, sizeof(*v));
	struct consumer_item *ci = xcalloc(r->nbatch, sizeof(*ci));
	char *keys = xmalloc(r->nbatch * 39 + 2);
	int attempt = 0, rc;

	for (;;) {
		rc = *r->db ? apply_set_once(r, v, ci, keys) : EX_UNAVAILABLE;
		if (rc == 0)
			break;
		if (*r->db != NULL)
			db_rollback(*r->db);
		if (rc == EX_SOFTWARE) {
			rc = apply_batch(r);
			break;
		}
		if (!recover(r->db, rc, attempt++)) {
			diag_warn("database '%s': %s",
			    *r->db ? db_where(*r->db) : "(lost)",
			    *r->db ? db_error(*r->db) : "cannot reconnect");
			break;
		}
	}
	free(keys);
	free(ci);
	free(v);
	return rc;
}

static void
note(struct run *r, struct item *it)
{
	struct consumer_msg *m = &it->m;
	struct part *p = find_part(r, m->topic, m->partition);

	if (p != NULL && m->offset + 1 > p->next)
		p->next = m->offset + 1;
	r->handled++;
	if (it->outcome == DEAD_LETTERED)
		diag_warn("%s [%d] at %lld: dead-lettered: %s: %s", m->topic,
		    (int)m->partition, (long long)m->offset, it->e.type,
		    it->e.message);
	else
		diag_info(1, "%s [%d] at %lld: %s %s", m->topic,
		    (int)m->partition, (long long)m->offset,
		    it->outcome == APPLIED ? "applied" : "already processed",
		    it->key);
}

static void
free_batch(struct run *r)
{
	size_t i;

	for (i = 0; i < r->nbatch; i++) {
		json_decref(r->batch[i].m.event);
		rd_kafka_message_destroy(r->batch[i].km);
	}
	r->nbatch = 0;
}

static void
add_item(struct run *r, rd_kafka_message_t *km)
{
	struct item *it;
	struct part *p;

	if (r->nbatch == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->batch = xrealloc(r->batch, r->cap * sizeof(*r->batch));
	}
	it = &r->batch[r->nbatch++];
	memset(it, 0, sizeof(*it));
	it->km = km;
	it->m.topic = rd_kafka_topic_name(km->rkt);
	it->m.partition = km->partition;
	it->m.offset = km->offset;
	it->m.key = km->key;
	it->m.keylen = km->key_len;
	it->m.payload = km->payload;
	it->m.len = km->payload ? km->len : 0;
	if ((p = find_part(r, it->m.topic, km->partition)) != NULL)
		p->eof = false;
	envelope(r, it);
}

/* A consumer event (not a message): 0, or an exit code when fatal. */
static int
event(struct run *r, rd_kafka_message_t *km)
{
	struct part *p;
	char why[512];
	rd_kafka_resp_err_t err = km->err;

	if (err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		if (km->rkt != NULL &&
		    (p = find_part(r, rd_kafka_topic_name(km->rkt),
		         km->partition)) != NULL)
			p->eof = true;
		return 0;
	}
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(r->rk, why, sizeof(why));
		diag_warn("kafka: %s", why);
		return EX_SOFTWARE;
	}
	on_error(r->rk, err, rd_kafka_message_errstr(km), r);
	return 0;
}

/* Fill the batch: wait up to ms for the first message, not for more. */
static int
collect(struct run *r, int ms)
{
	long long limit =
	    r->o->batch > 0 ? r->o->batch : conf_int("consumer_batch");
	rd_kafka_message_t *km;
	int rc;

	if (r->o->max_messages > 0 && r->o->max_messages - r->handled < limit)
		limit = r->o->max_messages - r->handled;
	while ((long long)r->nbatch < limit) {
		km = rd_kafka_consumer_poll(r->rk, r->nbatch ? 0 : ms);
		if (km == NULL)
			break;
		if (km->err == 0) {
			r->last_err = 0;
			r->nseen = 0;
			add_item(r, km);
			continue;
		}
		rc = event(r, km);
		rd_kafka_message_destroy(km);
		if (rc != 0)
			return rc;
		if (r->nbatch == 0)
			break;
	}
	return 0;
}

static bool
done(const struct run *r)
{
	size_t i;

	if (r->o->max_messages > 0 && r->handled >= r->o->max_messages)
		return true;
	if (!r->o->once || !r->assigned)
		return false;
	for (i = 0; i < r->nparts; i++)
		if (!r->parts[i].eof)
			return false;
	return true;
}

static int
loop(struct run *r)
{
	long long start = clock_mono_ms(), last_commit = start;
	long long join = conf_ms("consumer_join_timeout");
	long long every = conf_ms("consumer_commit_interval");
	bool joined = false;
	int rc;

	while (!consumer_stopping() && !done(r)) {
		if ((rc = collect(r, 100)) != 0)
			return rc;
		joined = joined || r->assigned;
		if (r->nbatch > 0) {
			rc = r->o->handle_batch ? apply_set(r) : apply_batch(r);
			if (rc != 0)
				return rc;
			for (size_t i = 0; i < r->nbatch; i++)
				note(r, &r->batch[i]);
			free_batch(r);
			if (r->o->committed != NULL)
				r->o->committed(r->o->arg);
		}
		if (clock_mono_ms() - last_commit >= every) {
			commit(r, false);
			last_commit = clock_mono_ms();
		}
		if (r->o->once && !joined && clock_mono_ms() - start > join) {
			diag_warn("no partitions assigned in group '%s' within "
			          "%llds%s%s",
			    r->o->group, join / 1000, r->last_err ? ": " : "",
			    r->last_err ? rd_kafka_err2str(r->last_err) : "");
			return kq_classify(r->last_err) == EX_UNAVAILABLE
			    ? EX_UNAVAILABLE
			    : EX_TEMPFAIL;
		}
	}
	return 0;
}

/*
 * A consumer with handle_batch and no max_messages overlaps its work: while
 * threads apply batches in the database, each on a connection of its own,
 * the loop reads and parses the next.  Up to FLIGHTS batches are in flight;
 * they may commit in any order (a message in two of them is applied once,
 * as on redelivery), but a batch's offsets are noted, to be committed, only
 * once it and every batch read before it have committed.
 */
#define FLIGHTS 2

struct flight {
	struct run run; /* the loop's, holding the batch being applied */
	struct db *own; /* the connection of every flight but the first */
	pthread_t thread;
	bool threaded;
	atomic_bool done;
	int rc;
	struct item *spare; /* the buffer the loop gets back at launch */
	size_t spare_cap;
};

/* The flights in the order their batches were read: oldest, n of size. */
struct fleet {
	struct flight f[FLIGHTS];
	size_t oldest, n, size;
};

static void *
fly(void *arg)
{
	struct flight *f = arg;

	f->rc = apply_set(&f->run);
	atomic_store(&f->done, true);
	return NULL;
}

/* Hand the batch collected to a thread; r collects into the spare buffer. */
static void
launch(struct run *r, struct flight *f)
{
	f->run = *r;
	if (f->own != NULL)
		f->run.db = &f->own;
	r->batch = f->spare;
	r->cap = f->spare_cap;
	r->nbatch = 0;
	atomic_store(&f->done, false);
	f->threaded = pthread_create(&f->thread, NULL, fly, f) == 0;
	if (!f->threaded)
		fly(f);
}

/*
 * Wait for a batch in flight; note it if it committed and keep says so (no
 * batch read after one that failed may be).  Its code.
 */
static int
land(struct run *r, struct flight *f, bool keep)
{
	size_t i;

	if (f->threaded)
		pthread_join(f->thread, NULL);
	if (f->rc == 0 && keep) {
		for (i = 0; i < f->run.nbatch; i++)
			note(r, &f->run.batch[i]);
		if (r->o->committed != NULL)
			r->o->committed(r->o->arg);
	}
	free_batch(&f->run);
	f->spare = f->run.batch;
	f->spare_cap = f->run.cap;
	return f->rc;
}

/*
 * Land, oldest first, the batches that are done; all of them with all, and
 * the oldest anyway when every flight is busy and another batch waits
 * (need).  0 or the first code; after a failure the rest land unnoted.
 */
static int
land_due(struct run *r, struct fleet *fl, bool need, bool all)
{
	struct flight *f;
	int rc = 0, code;

	while (fl->n > 0) {
		f = &fl->f[fl->oldest];
		if (rc == 0 && !all && !atomic_load(&f->done) &&
		    !(need && fl->n == fl->size))
			break;
		code = land(r, f, rc == 0);
		if (rc == 0)
			rc = code;
		fl->oldest = (fl->oldest + 1) % fl->size;
		fl->n--;
	}
	return rc;
}

/* The fleet: its first flight on the loop's connection, others on theirs. */
static void
fleet_open(struct fleet *fl)
{
	char msg[512];
	int code;

	memset(fl, 0, sizeof(*fl));
	for (fl->size = 1; fl->size < FLIGHTS; fl->size++)
		if ((fl->f[fl->size].own =
		            connect_quiet(&code, msg, sizeof(msg))) == NULL)
			break;
}

static void
fleet_close(struct fleet *fl)
{
	size_t i;

	for (i = 0; i < FLIGHTS; i++) {
		free(fl->f[i].spare);
		db_close(fl->f[i].own);
	}
}

static int
loop_overlapped(struct run *r)
{
	long long start = clock_mono_ms(), last_commit = start;
	long long join = conf_ms("consumer_join_timeout");
	long long every = conf_ms("consumer_commit_interval");
	struct fleet fl;
	bool joined = false;
	int rc = 0, landed;

	fleet_open(&fl);
	while (!consumer_stopping() && !done(r)) {
		if ((rc = collect(r, 100)) != 0)
			break;
		joined = joined || r->assigned;
		if ((rc = land_due(r, &fl, r->nbatch > 0, false)) != 0)
			break;
		if (r->nbatch > 0)
			launch(r, &fl.f[(fl.oldest + fl.n++) % fl.size]);
		if (clock_mono_ms() - last_commit >= every) {
			commit(r, false);
			last_commit = clock_mono_ms();
		}
		if (r->o->once && !joined && clock_mono_ms() - start > join) {
			diag_warn("no partitions assigned in group '%s' within "
			          "%llds%s%s",
			    r->o->group, join / 1000, r->last_err ? ": " : "",
			    r->last_err ? rd_kafka_err2str(r->last_err) : "");
			rc = kq_classify(r->last_err) == EX_UNAVAILABLE
			    ? EX_UNAVAILABLE
			    : EX_TEMPFAIL;
			break;
		}
	}
	landed = land_due(r, &fl, false, true);
	fleet_close(&fl);
	return rc != 0 ? rc : landed;
}

int
consumer_run(const struct consumer_opts *o, struct db **db)
{
	struct run r;
	int rc;

	memset(&r, 0, sizeof(r));
	r.o = o;
	r.db = db;
	if ((rc = open_kafka(&r)) != 0) {
		if (r.rk != NULL)
			rd_kafka_destroy(r.rk);
		return rc;
	}
	if (o->handle_batch != NULL && o->max_messages == 0)
		rc = loop_overlapped(&r);
	else
		rc = loop(&r);
	free_batch(&r);
	free(r.batch);
	/*
	 * What was applied is committed whatever stopped the loop.  A failed
	 * commit is only logged: the messages will be skipped when read again.
	 */
	commit(&r, true);
	rd_kafka_consumer_close(r.rk);
	rd_kafka_destroy(r.rk);
	clear_parts(&r);
	return rc;
}
