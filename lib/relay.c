/*
 * relay: see relay.h.
 *
 * Claiming.  A batch is one READ COMMITTED transaction that starts with
 *   SELECT ... WHERE status = 'PENDING' AND next_attempt_at <= NOW(6)
 *   ORDER BY next_attempt_at LIMIT n FOR UPDATE SKIP LOCKED
 * (the ix_outbox_due index, read in order, stops after n rows).  The row
 * locks are the claim: other relays skip the rows, and if this process dies
 * the server rolls the transaction back and the rows are free at once.
 * Lease columns would cost two extra writes per row (take, release), a clock
 * to trust and a lease length to tune; the price of locks is a transaction
 * open while Kafka acknowledges, bounded by message.timeout.ms and, should
 * the relay hang or its host vanish, by idle_transaction_timeout.  READ
 * COMMITTED takes no gap locks, so writers' INSERTs never wait for a claim.
 * Nothing remembers an event_id watermark: a row that commits late is
 * simply due once it is visible, whatever its id.
 *
 * Ordering.  A second, non-locking SELECT reads every PENDING row of the
 * claimed payments below their highest claimed event_id.  One not claimed
 * here (in flight at another relay, backing off, or beyond the LIMIT) holds
 * back every later claimed row of its payment; the others go out in waves,
 * one row per payment per wave, and a wave is sent only after every
 * delivery report of the previous one came back, so an event is never sent
 * while an earlier one of its payment is unpublished or in flight.  A held
 * row's next_attempt_at moves to when its blocker is due (at least
 * HOLD_MIN_US), so held rows do not crowd out due ones.  A DEAD row no
 * longer holds its payment back: its dead-letter record stands in for it.
 *
 * Marking.  Rows are marked in the claiming transaction with one statement
 * per kind (PUBLISHED, retry, DEAD, held), each joining a JSON array of ids
 * passed as one parameter through JSON_TABLE (MariaDB 10.6+): one prepared
 * statement whatever the batch size, no statement per row.  A row is
 * PUBLISHED only after its delivery report says persisted; any error,
 * including a timeout that may have persisted it, leaves it PENDING to be
 * sent again (consumers drop repeats by eventId).  A crash before the
 * commit also means repeats, never losses.  A row leaving PENDING gets
 * next_attempt_at = NOW(6), the time it was published or dead-lettered
 * (migration 0009): ix_outbox_due then also orders published and dead rows
 * by when they left, for the purge and dbstat, and the move in that index
 * is the one a status change costs anyway.  published_at is a virtual
 * column, a PUBLISHED row's next_attempt_at; status is CHAR(10), the same
 * size whatever it says.  So the marking UPDATE keeps each row's size and
 * InnoDB changes it in place.
 *
 * Failures.  A failed delivery costs the row an attempt and a backoff.
 * But when every delivery of a batch failed for want of Kafka (unreachable,
 * timed out) and none succeeded, that is an outage, not the rows' fault:
 * the transaction is rolled back, nothing is charged, and the caller
 * pauses (the kafka breaker will take this over).
 *
 * Dead letters.  An unknown event type, a payload that is not a JSON
 * object, or a row whose attempts reached the maximum gets a
 * PAYMENT_DEAD_LETTER record on payment.dlq, produced here like any event;
 * the row turns DEAD only once that record's delivery report succeeds, else
 * it stays PENDING and is dead-lettered again later.
 */
#include "clock.h"
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "kq.h"
#include "relay_int.h"
#include "topics.h"

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define HOLD_MIN_US 20000
/* The longest a claim resumes before it reads from the start again. */
#define RESCAN_S 1.0

#define CLAIM_FROM                                                             \
	"SELECT event_id, event_key, aggregate_id, event_type, payload,"       \
	" attempts, COALESCE(last_error, ''),"                                 \
	" DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%s.%fZ'),"                   \
	" DATE_FORMAT(next_attempt_at, '%Y-%m-%d %H:%i:%s.%f')"                \
	" FROM outbox_event FORCE INDEX (ix_outbox_due)"                       \
	" WHERE status = 'PENDING' AND next_attempt_at <= NOW(6)"              \
	" AND event_id <= ?"
#define CLAIM_ORDER                                                            \
	" ORDER BY next_attempt_at, event_id LIMIT ? FOR UPDATE SKIP LOCKED"
static const char claim_sql[] = CLAIM_FROM CLAIM_ORDER;
/*
 * The same, resumed after the last row of the previous batch: published
 * rows leave delete-marked entries at the start of the PENDING range until
 * InnoDB's purge removes them, and a claim from the start steps over all of
 * them (in a backlog, ever more per batch, about as many microseconds).
 * The time read back compares exactly: every session is in UTC (db.c).
 */
static const char claim_resume_sql[] =
    CLAIM_FROM " AND (next_attempt_at > ?"
               " OR (next_attempt_at = ? AND event_id > ?))" CLAIM_ORDER;

/*
 * Per claimed payment [agg, lo, hi]: its lowest and highest claimed ids.
 * The lowest is left out on the index (it is claimed, so it blocks
 * nothing), which spares a row lookup per payment: in a backlog most
 * payments have all their due events in one batch, and then nothing comes
 * back for them.
 */
static const char pending_sql[] =
    "SELECT p.aggregate_id, p.event_id,"
    " GREATEST(0, TIMESTAMPDIFF(MICROSECOND, NOW(6), p.next_attempt_at))"
    " FROM JSON_TABLE(?, '$[*]' COLUMNS (agg BIGINT PATH '$[0]',"
    " lo BIGINT PATH '$[1]', hi BIGINT PATH '$[2]')) AS j"
    " STRAIGHT_JOIN outbox_event p FORCE INDEX (ix_outbox_aggregate)"
    " ON p.aggregate_id = j.agg AND p.event_id < j.hi"
    " AND p.event_id <> j.lo"
    " WHERE p.status = 'PENDING'";

/*
 * The marking statements read the JSON array first and reach each row by
 * its primary key: a plan that scanned outbox_event instead (the optimizer
 * likes that for small tables) would wait on the lock of a row another
 * transaction is still inserting.
 */
static const char published_sql[] =
    "UPDATE JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) AS j"
    " STRAIGHT_JOIN outbox_event o FORCE INDEX (PRIMARY)"
    " ON o.event_id = j.id"
    " SET o.status = 'PUBLISHED', o.next_attempt_at = NOW(6)";

/* This connection's shard of the count of PUBLISHED rows. */
static const char count_sql[] =
    "INSERT INTO outbox_count (shard, published)"
    " VALUES (CONNECTION_ID() % 16, ?)"
    " ON DUPLICATE KEY UPDATE published = published + VALUES(published)";

/* A null error keeps last_error (a dead-letter record that failed). */
static const char retry_sql[] =
    "UPDATE JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$[0]',"
    " d BIGINT PATH '$[1]', e VARCHAR(1000) PATH '$[2]')) AS j"
    " STRAIGHT_JOIN outbox_event o FORCE INDEX (PRIMARY)"
    " ON o.event_id = j.id"
    " SET o.attempts = o.attempts + 1,"
    " o.next_attempt_at = NOW(6) + INTERVAL j.d MICROSECOND,"
    " o.last_error = COALESCE(j.e, o.last_error)";

static const char dead_sql[] =
    "UPDATE JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$[0]',"
    " e VARCHAR(1000) PATH '$[1]')) AS j"
    " STRAIGHT_JOIN outbox_event o FORCE INDEX (PRIMARY)"
    " ON o.event_id = j.id"
    " SET o.status = 'DEAD', o.last_error = j.e, o.next_attempt_at = NOW(6)";

static const char held_sql[] =
    "UPDATE JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$[0]',"
    " d BIGINT PATH '$[1]')) AS j"
    " STRAIGHT_JOIN outbox_event o FORCE INDEX (PRIMARY)"
    " ON o.event_id = j.id SET o.next_attempt_at ="
    " GREATEST(o.next_attempt_at, NOW(6) + INTERVAL j.d MICROSECOND)";

static const char idle_sql[] = "SET SESSION idle_transaction_timeout = ?";

/*
 * The kafka circuit breaker: kafka_permitted() is asked before each claim,
 * and while the breaker is OPEN nothing is claimed, so rows stay PENDING
 * and nothing is lost; kafka_outcome() reports each batch's deliveries to
 * it, each message a call.  A HALF_OPEN probe is a small batch.  Both are
 * called outside the claiming transaction, on the relay's connection.
 */
#define PROBE_BATCH 10

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Where a batch's time went, one line with -vv: what to tune first. */
enum phase { P_CLAIM, P_PLAN, P_SEND, P_MARK, P_COMMIT, NPHASES };

static void
timings(const struct relay *r, const double t[NPHASES + 1], int waves)
{
	diag_info(2,
	    "batch of %zu in %d waves: claim %.1f ms, plan %.1f ms, "
	    "send and await %.1f ms, mark %.1f ms, commit %.1f ms",
	    r->nrows, waves, (t[1] - t[0]) * 1e3, (t[2] - t[1]) * 1e3,
	    (t[3] - t[2]) * 1e3, (t[4] - t[3]) * 1e3, (t[5] - t[4]) * 1e3);
}

static bool
kafka_permitted(struct relay *r)
{
	r->t0 = clock_mono_ms();
	return breaker_acquire(r->breaker, &r->bc);
}

static void
kafka_outcome(struct relay *r, size_t delivered, size_t failed)
{
	if (delivered + failed == 0)
		breaker_release(r->breaker, &r->bc);
	else
		breaker_record_many(r->breaker, &r->bc, (long long)delivered,
		    (long long)failed, (double)(clock_mono_ms() - r->t0));
	r->bc.permit = 0;
}

int
relay_session(struct db *db)
{
	long long secs = (conf_ms("kafka_message_timeout") + 999) / 1000;
	int rc;

	if ((rc = db_run(db,
	         "SET SESSION TRANSACTION ISOLATION LEVEL "
	         "READ COMMITTED")) != 0)
		return rc;
	/* Long enough for the slowest batch: every report has come back. */
	return db_exec(db, idle_sql, "i", (int64_t)(2 * secs + 60));
}

struct relay *
relay_new(
    struct db *db, const struct relay_opts *o, int *code, char *err, size_t len)
{
	struct relay *r = xcalloc(1, sizeof(*r));

	r->db = db;
	r->o = *o;
	r->bufcap = 4096;
	r->buf = xmalloc(r->bufcap);
	if (getrandom(&r->rnd, sizeof(r->rnd), 0) != sizeof(r->rnd))
		r->rnd = (uint64_t)time(NULL) * 2654435761u;
	r->rnd |= 1;
	if ((*code = relay_session(db)) != 0) {
		snprintf(err, len, "set up the session on '%s': %s",
		    db_where(db), db_error(db));
		free(r->buf);
		free(r);
		return NULL;
	}
	if ((*code = breaker_attach(db, "kafka", &r->breaker)) != 0) {
		snprintf(err, len, "attach circuit breaker 'kafka' on '%s': %s",
		    db_where(db), db_error(db));
		free(r->buf);
		free(r);
		return NULL;
	}
	if ((*code = relay_producer_open(r, err, len)) != 0) {
		breaker_detach(r->breaker);
		free(r->buf);
		free(r);
		return NULL;
	}
	return r;
}

void
relay_free(struct relay *r)
{
	if (r == NULL)
		return;
	relay_producer_close(r);
	breaker_detach(r->breaker);
	free(r->rows);
	free(r->items);
	free(r->pend);
	free(r->buf);
	free(r);
}

const char *
relay_error(const struct relay *r)
{
	return r->error;
}

int
relay_outage_code(const struct relay *r)
{
	return kq_classify(r->kerr) == EX_UNAVAILABLE ? EX_UNAVAILABLE
	                                              : EX_TEMPFAIL;
}

static void buf_add(struct relay *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
buf_add(struct relay *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(
		    r->buf + r->buflen, r->bufcap - r->buflen, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < r->bufcap - r->buflen)
			break;
		r->bufcap = r->bufcap * 2 + (size_t)(n > 0 ? n : 0) + 256;
		r->buf = xrealloc(r->buf, r->bufcap);
	}
	r->buflen += (size_t)n;
}

static void
buf_reset(struct relay *r)
{
	r->buflen = 0;
	buf_add(r, "[");
}

static void
clear_rows(struct relay *r)
{
	size_t i;

	for (i = 0; i < r->nrows; i++) {
		free(r->rows[i].type);
		free(r->rows[i].payload);
		free(r->rows[i].last_error);
		free(r->rows[i].why);
	}
	r->nrows = 0;
}

/*
 * Claim from where the last batch ended, or from the start of the due rows
 * when the last claim was not a full batch, a batch was rolled back, or
 * RESCAN_S has passed since: so a row that committed late with an earlier
 * next_attempt_at, or that another relay let go of, waits at most that
 * long in a backlog, and no longer once the backlog is drained.
 */
static int
claim_query(struct relay *r, int64_t limit)
{
	if (r->from && now_s() - r->scanned_at < RESCAN_S)
		return db_query(r->db, claim_resume_sql, "issii", r->o.max_id,
		    r->from_at, r->from_at, r->from_id, limit);
	r->from = false;
	r->scanned_at = now_s();
	return db_query(r->db, claim_sql, "ii", r->o.max_id, limit);
}

static int
claim(struct relay *r)
{
	int64_t limit = r->bc.permit ? PROBE_BATCH : r->o.batch;
	bool resumed = r->from;
	struct db *db = r->db;
	struct row *w;
	int rc;

	if ((rc = claim_query(r, limit)) != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		if (r->nrows == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 64;
			r->rows = xrealloc(r->rows, r->cap * sizeof(*r->rows));
			r->items =
			    xrealloc(r->items, r->cap * sizeof(*r->items));
		}
		w = &r->rows[r->nrows++];
		memset(w, 0, sizeof(*w));
		w->id = db_int(db, 0);
		snprintf(w->key, sizeof(w->key), "%s", db_str(db, 1));
		w->agg = db_int(db, 2);
		snprintf(
		    w->aggkey, sizeof(w->aggkey), "%lld", (long long)w->agg);
		w->type = xstrdup(db_str(db, 3));
		w->len = db_len(db, 4);
		w->payload = xmalloc(w->len + 1);
		memcpy(w->payload, db_str(db, 4), w->len + 1);
		w->attempts = db_int(db, 5);
		w->last_error = xstrdup(db_str(db, 6));
		snprintf(w->occurred, sizeof(w->occurred), "%s", db_str(db, 7));
		snprintf(r->from_at, sizeof(r->from_at), "%s", db_str(db, 8));
		r->from_id = w->id;
	}
	if (rc < 0)
		return -rc;
	/* Resume next time only after a full batch (undone by a rollback). */
	r->from = (int64_t)r->nrows == limit;
	/* Nothing after the last batch: look from the start at once. */
	if (resumed && r->nrows == 0)
		return claim(r);
	return 0;
}

/* Find where each row goes, or why it is dead-lettered instead. */
static void
inspect(struct relay *r, struct row *w)
{
	const char *t = topics_for_event(w->type), *at;
	char fast[sizeof(w->occurred)];
	json_error_t jerr;
	json_t *v;

	if (t == NULL) {
		w->dead = RELAY_UNKNOWN_TYPE;
		w->why = xasprintf("unknown event type '%s'", w->type);
		return;
	}
	w->topic = topics_name(t);
	if (relay_json_object(w->payload, w->len, fast, sizeof(fast))) {
		if (*fast != '\0')
			memcpy(w->occurred, fast, sizeof(fast));
	} else {
		/* The fast check said no: jansson gives the verdict. */
		v = json_loadb(w->payload, w->len, 0, &jerr);
		if (v == NULL || !json_is_object(v)) {
			w->dead = RELAY_MALFORMED;
			w->why = v == NULL ? xasprintf("payload is not JSON: "
			                               "%s at offset %d",
			                         jerr.text, jerr.position)
			                   : xstrdup("payload is not a JSON "
			                             "object");
			json_decref(v);
			return;
		}
		at = js_getstr(v, "occurredAt", NULL);
		if (at != NULL && strlen(at) < sizeof(w->occurred))
			snprintf(w->occurred, sizeof(w->occurred), "%s", at);
		json_decref(v);
	}
	if (w->attempts >= r->o.max_attempts) {
		w->dead = RELAY_MAX_ATTEMPTS;
		w->why = xstrdup(w->last_error);
	}
}

static int
cmp_agg_id(const void *a, const void *b)
{
	const struct relay_item *x = a, *y = b;

	if (x->agg != y->agg)
		return x->agg < y->agg ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int
cmp_row_index(const void *a, const void *b, void *ctx)
{
	const struct row *rows = ctx;
	const struct row *x = &rows[*(const size_t *)a];
	const struct row *y = &rows[*(const size_t *)b];

	if (x->agg != y->agg)
		return x->agg < y->agg ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Link each row to the one before it of its payment. */
static void
link_payments(struct relay *r)
{
	size_t *ix = xcalloc(r->nrows, sizeof(*ix)), i;

	for (i = 0; i < r->nrows; i++)
		ix[i] = i;
	qsort_r(ix, r->nrows, sizeof(*ix), cmp_row_index, r->rows);
	for (i = 0; i < r->nrows; i++)
		r->rows[ix[i]].prev =
		    i > 0 && r->rows[ix[i - 1]].agg == r->rows[ix[i]].agg
		    ? &r->rows[ix[i - 1]]
		    : NULL;
	free(ix);
}

/* Read the pending rows of the claimed payments and plan the waves. */
static int
plan(struct relay *r, int *waves)
{
	struct relay_item *s;
	struct relay_pending *p;
	struct db *db = r->db;
	size_t i, lo;
	int rc;

	s = xcalloc(r->nrows, sizeof(*s));
	for (i = 0; i < r->nrows; i++) {
		s[i].agg = r->rows[i].agg;
		s[i].id = r->rows[i].id;
	}
	qsort(s, r->nrows, sizeof(*s), cmp_agg_id);
	buf_reset(r);
	for (i = 0, lo = 0; i < r->nrows; i++) {
		if (i > 0 && s[i - 1].agg != s[i].agg)
			lo = i;
		if (i + 1 == r->nrows || s[i + 1].agg != s[i].agg)
			buf_add(r, "%s[%lld,%lld,%lld]",
			    r->buflen > 1 ? "," : "", (long long)s[i].agg,
			    (long long)s[lo].id, (long long)s[i].id);
	}
	buf_add(r, "]");
	free(s);
	if ((rc = db_query(db, pending_sql, "b", r->buf, r->buflen)) != 0)
		return rc;
	r->npend = 0;
	while ((rc = db_next(db)) == 1) {
		if (r->npend == r->pendcap) {
			r->pendcap = r->pendcap ? r->pendcap * 2 : 256;
			r->pend = xrealloc(r->pend, r->pendcap * sizeof(*p));
		}
		p = &r->pend[r->npend++];
		p->agg = db_int(db, 0);
		p->id = db_int(db, 1);
		p->due_us = db_int(db, 2);
	}
	if (rc < 0)
		return -rc;
	for (i = 0; i < r->nrows; i++) {
		r->items[i].id = r->rows[i].id;
		r->items[i].agg = r->rows[i].agg;
	}
	*waves = relay_plan(r->items, r->nrows, r->pend, r->npend);
	for (i = 0; i < r->nrows; i++) {
		r->rows[i].wave = r->items[i].wave;
		if (r->items[i].wave == RELAY_HELD) {
			r->rows[i].state = S_HELD;
			r->rows[i].delay_us = r->items[i].hold_us;
			r->rows[i].brief = r->items[i].hold_us <= HOLD_MIN_US;
		}
	}
	link_payments(r);
	return 0;
}

/* A JSON string of a message that may quote bytes from the table. */
static json_t *
jstr(const char *s)
{
	char buf[1001];
	size_t i, n = strlen(s);
	json_t *v;

	if (n > 1000)
		n = 1000;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if ((v = json_string(buf)) != NULL)
		return v;
	for (i = 0; i < n; i++)
		if ((unsigned char)buf[i] >= 0x80)
			buf[i] = '?';
	return json_string(buf);
}

/*
 * Run one marking statement over a JSON array, unless an earlier one
 * failed (rc) or the array is empty; returns the new rc.
 */
static int
mark_json(struct relay *r, int rc, const char *sql, json_t *a)
{
	char *text;

	if (rc != 0 || json_array_size(a) == 0) {
		json_decref(a);
		return rc;
	}
	text = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	if (text == NULL)
		diag_die(EX_SOFTWARE, "cannot encode a JSON array");
	rc = db_exec(r->db, sql, "s", text);
	free(text);
	return rc;
}

/* How long a held row waits: until its earlier event is due, or a little. */
static int64_t
held_us(const struct row *w)
{
	return w->delay_us > HOLD_MIN_US ? w->delay_us : HOLD_MIN_US;
}

static int
mark(struct relay *r)
{
	json_t *dead = json_array(), *retry = json_array(),
	       *held = json_array();
	struct row *w;
	size_t i, n = 0;
	int rc = 0;

	buf_reset(r);
	for (i = 0; i < r->nrows; i++) {
		w = &r->rows[i];
		switch (w->state) {
		case S_OK:
			buf_add(r, "%s%lld", n++ ? "," : "", (long long)w->id);
			break;
		case S_GONE:
			json_array_append_new(dead,
			    json_pack(
			        "[I,o]", (json_int_t)w->id, jstr(w->why)));
			break;
		case S_FAIL:
			json_array_append_new(retry,
			    json_pack("[I,I,o]", (json_int_t)w->id,
			        (json_int_t)w->delay_us,
			        w->dlq ? json_null() : jstr(w->errmsg)));
			break;
		default:
			json_array_append_new(held,
			    json_pack("[I,I]", (json_int_t)w->id,
			        (json_int_t)held_us(w)));
			break;
		}
	}
	buf_add(r, "]");
	if (n > 0 &&
	    (rc = db_exec(r->db, published_sql, "b", r->buf, r->buflen)) == 0)
		rc = relay_count_published(r->db, (int64_t)db_affected(r->db));
	rc = mark_json(r, rc, dead_sql, dead);
	rc = mark_json(r, rc, retry_sql, retry);
	return mark_json(r, rc, held_sql, held);
}

int
relay_count_published(struct db *db, int64_t n)
{
	return n != 0 ? db_exec(db, count_sql, "i", n) : 0;
}

static int
db_failed(struct relay *r, const char *what, int rc)
{
	snprintf(r->error, sizeof(r->error), "%s on '%s': %s", what,
	    db_where(r->db), db_error(r->db));
	/* Rows rolled back are behind where the next claim would resume. */
	r->from = false;
	db_rollback(r->db);
	clear_rows(r);
	return rc;
}

static void
report(struct relay *r, size_t failed)
{
	const char *dlq = topics_name(topics_for_event(EV_PAYMENT_DEAD_LETTER));
	struct row *w, *first = NULL;
	size_t i;

	for (i = 0; i < r->nrows; i++) {
		w = &r->rows[i];
		if (w->state == S_GONE)
			diag_warn("event '%s' (%s, payment %lld) dead-lettered "
			          "to '%s': %s",
			    w->key, w->type, (long long)w->agg, dlq, w->why);
		if (w->state == S_FAIL && first == NULL)
			first = w;
	}
	if (first != NULL)
		diag_warn("%zu events not delivered, retried later: "
		          "event '%s' to '%s': %s",
		    failed, first->key, first->dlq ? dlq : first->topic,
		    first->errmsg);
}

int
relay_batch(struct relay *r, struct relay_counts *c, enum relay_outcome *out)
{
	size_t i, n[S_HELD + 1] = { 0 }, lasting = 0;
	double t[NPHASES + 1];
	int rc, waves = 0;
	struct row *w;

	*out = RELAY_DONE;
	r->error[0] = '\0';
	if (r->fatal && (rc = relay_reopen(r)) != 0)
		return rc;
	r->kerr = RD_KAFKA_RESP_ERR_NO_ERROR;
	r->kmsg[0] = '\0';
	rd_kafka_poll(r->rk, 0);
	if (!kafka_permitted(r)) {
		*out = RELAY_PAUSED;
		return 0;
	}
	t[P_CLAIM] = now_s();
	if ((rc = db_begin(r->db)) != 0)
		return db_failed(r, "begin a claim", rc);
	if ((rc = claim(r)) != 0)
		return db_failed(r, "claim", rc);
	if (r->nrows == 0) {
		kafka_outcome(r, 0, 0);
		return (rc = db_commit(r->db)) ? db_failed(r, "commit", rc) : 0;
	}
	for (i = 0; i < r->nrows; i++)
		inspect(r, &r->rows[i]);
	t[P_PLAN] = now_s();
	if ((rc = plan(r, &waves)) != 0)
		return db_failed(r, "read pending events", rc);
	t[P_SEND] = now_s();
	relay_send_waves(r, waves);
	t[P_MARK] = now_s();
	for (i = 0; i < r->nrows; i++) {
		w = &r->rows[i];
		n[w->state]++;
		if (w->state == S_FAIL && !relay_transient(w->err))
			lasting++;
	}
	c->batches++;
	c->claimed += r->nrows;
	c->failed += n[S_FAIL];
	if (n[S_FAIL] > 0 && lasting == 0 && n[S_OK] + n[S_GONE] == 0) {
		/* An outage is not the rows' fault: they are not charged. */
		for (i = 0; i < r->nrows && r->rows[i].state != S_FAIL; i++)
			;
		snprintf(r->error, sizeof(r->error),
		    "%zu events not sent: %s%s%s%s", n[S_FAIL],
		    r->rows[i].errmsg, *r->kmsg ? " (" : "", r->kmsg,
		    *r->kmsg ? ")" : "");
		r->from = false;
		db_rollback(r->db);
		clear_rows(r);
		kafka_outcome(r, 0, n[S_FAIL]);
		*out = RELAY_OUTAGE;
		return 0;
	}
	if ((rc = mark(r)) != 0)
		return db_failed(r, "mark events", rc);
	t[P_COMMIT] = now_s();
	if ((rc = db_commit(r->db)) != 0)
		return db_failed(r, "commit", rc);
	t[NPHASES] = now_s();
	if (diag_verbose >= 2)
		timings(r, t, waves);
	kafka_outcome(r, n[S_OK] + n[S_GONE], n[S_FAIL]);
	report(r, n[S_FAIL]);
	c->published += n[S_OK];
	c->dead += n[S_GONE];
	c->held += n[S_HELD] + n[S_NEW];
	/* Not rows behind a failure: they wait for its retry. */
	for (i = 0; i < r->nrows; i++)
		if (r->rows[i].state == S_HELD && r->rows[i].brief)
			c->held_until = fmax(c->held_until,
			    t[NPHASES] + held_us(&r->rows[i]) / 1e6);
	clear_rows(r);
	return 0;
}
