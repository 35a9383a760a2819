/*
 * authorize-batch: the statements of payctl authorize - that handle many
 * requests at once.  A batch travels as one JSON array parameter that
 * JSON_TABLE turns into rows, so each statement is prepared once and one
 * round trip serves the whole batch whatever its size.  STRAIGHT_JOIN keeps
 * the JSON rows as the driving table, so every payment row is reached by
 * its primary or unique key.
 */
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "outbox.h"
#include "stream.h"
#include "topics.h"

#include <stdlib.h>
#include <string.h>

static const char claim_sql[] =
    "INSERT IGNORE INTO payment (merchant_id, idempotency_key, amount,"
    " currency, auto_capture, status, lease_until, claim_token)"
    " SELECT j.m, j.k, j.a, j.c, j.cap, 'PENDING',"
    " NOW(6) + INTERVAL ? MICROSECOND, ?"
    " FROM JSON_TABLE(?, '$[*]' COLUMNS (m VARCHAR(32) PATH '$.m',"
    " k VARCHAR(64) PATH '$.k', a BIGINT PATH '$.a', c CHAR(3) PATH '$.c',"
    " cap TINYINT PATH '$.cap')) j"
    " RETURNING payment_id, merchant_id, idempotency_key, amount, currency,"
    " auto_capture, DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%s.%fZ')";
static const char existing_sql[] =
    "SELECT STRAIGHT_JOIN j.i, " PAYMENT_COLUMNS
    " FROM JSON_TABLE(?, '$[*]' COLUMNS (i INT PATH '$.i',"
    " m VARCHAR(32) PATH '$.m', k VARCHAR(64) PATH '$.k')) j"
    " JOIN payment ON merchant_id = j.m AND idempotency_key = j.k";
#define IDS                                                                    \
	"JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$.id',"                 \
	" t CHAR(36) PATH '$.t')) j"
static const char held_sql[] =
    "SELECT STRAIGHT_JOIN p.payment_id FROM " IDS
    " JOIN payment p ON p.payment_id = j.id"
    " WHERE p.status = 'PENDING' AND p.claim_token = j.t FOR UPDATE";
static const char release_sql[] =
    "DELETE p FROM " IDS " STRAIGHT_JOIN payment p ON p.payment_id = j.id"
    " WHERE p.status = 'PENDING' AND p.claim_token = j.t";
/*
 * A finish batch is one JSON array, read by each statement for the fields
 * it needs: id, t (claim token), s (status), ap, tx, rc, rm (the gateway's
 * answer), m, a, c (the request), at (the time) and ev, the events to
 * write: k (eventId), t (eventType), s (the payload's status).
 */
static const char finish_sql[] =
    "UPDATE JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$.id',"
    " t CHAR(36) PATH '$.t', s VARCHAR(20) PATH '$.s',"
    " ap VARCHAR(32) PATH '$.ap', tx VARCHAR(64) PATH '$.tx',"
    " rc VARCHAR(32) PATH '$.rc', rm VARCHAR(255) PATH '$.rm')) j"
    " STRAIGHT_JOIN payment p ON p.payment_id = j.id"
    " SET p.status = j.s, p.approval_number = j.ap, p.transaction_id = j.tx,"
    " p.pg_response_code = j.rc, p.pg_response_message = j.rm,"
    " p.lease_until = NULL, p.claim_token = NULL"
    " WHERE p.status = 'PENDING' AND p.claim_token = j.t";
/*
 * The batched twin of outbox_insert(): the same row, and the payload with
 * the same fields and envelope (eventId, eventType, schemaVersion,
 * occurredAt), built by the server instead of jansson.  Each payment's
 * events come out in their order.
 */
static const char events_sql[] =
    "INSERT INTO outbox_event (event_key, aggregate_id, event_type, payload)"
    " SELECT j.k, j.id, j.t, JSON_OBJECT('paymentId', j.id, 'status', j.s,"
    " 'merchantId', j.m, 'amount', j.a, 'currency', j.c,"
    " 'approvalNumber', j.ap, 'transactionId', j.tx, 'eventId', j.k,"
    " 'eventType', j.t, 'schemaVersion', ?, 'occurredAt', j.at)"
    " FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$.id',"
    " m VARCHAR(32) PATH '$.m', a BIGINT PATH '$.a', c CHAR(3) PATH '$.c',"
    " ap VARCHAR(32) PATH '$.ap', tx VARCHAR(64) PATH '$.tx',"
    " at VARCHAR(32) PATH '$.at', NESTED PATH '$.ev[*]' COLUMNS ("
    " k CHAR(36) PATH '$.k', t VARCHAR(40) PATH '$.t',"
    " s VARCHAR(20) PATH '$.s'))) j WHERE j.k IS NOT NULL";

/* The text of a batch parameter; dies only when out of memory. */
static char *
text(json_t *a)
{
	char *s = js_text(a);

	if (s == NULL)
		diag_die(EX_SOFTWARE, "cannot encode a batch");
	json_decref(a);
	return s;
}

static int
run(struct db *db, const char *sql, json_t *batch)
{
	char *s = text(batch);
	int rc = db_exec(db, sql, "s", s);

	free(s);
	return rc;
}

const char *
batch_status(const struct sreq *r)
{
	if (r->res.outcome == PG_DECLINED)
		return "AUTH_FAILED";
	return r->a.capture ? "CAPTURE_REQUESTED" : "AUTHORIZED";
}

int
batch_claim(struct db *db, struct sreq **v, size_t n)
{
	json_t *a = json_array();
	char token[37], *s;
	struct sreq *r;
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		v[i]->state = SR_OTHER;
		json_array_append_new(a,
		    json_pack("{s:s, s:s, s:I, s:s, s:i}", "m", v[i]->merchant,
		        "k", v[i]->key, "a", (json_int_t)v[i]->a.amount, "c",
		        v[i]->currency, "cap", (int)v[i]->a.capture));
	}
	outbox_uuid(token);
	s = text(a);
	rc = db_query(db, claim_sql, "iss", auth_lease_us(), token, s);
	free(s);
	if (rc != 0)
		return rc;
	/*
	 * Rows come back in insert order; a key twice in the batch is
	 * inserted for its first request, so each row goes to the first
	 * unmatched request that asked for exactly what it holds.
	 */
	while ((rc = db_next(db)) == 1) {
		for (i = 0; i < n; i++) {
			r = v[i];
			if (r->state == SR_OTHER &&
			    strcmp(r->merchant, db_str(db, 1)) == 0 &&
			    strcmp(r->key, db_str(db, 2)) == 0 &&
			    r->a.amount == db_int(db, 3) &&
			    strcmp(r->currency, db_str(db, 4)) == 0 &&
			    r->a.capture == (db_int(db, 5) != 0))
				break;
		}
		if (i == n)
			continue;
		r->state = SR_OWNED;
		r->a.payment_id = db_int(db, 0);
		memcpy(r->a.token, token, sizeof(token));
		snprintf(r->a.created_at, sizeof(r->a.created_at), "%s",
		    db_str(db, 6));
	}
	return rc < 0 ? -rc : 0;
}

int
batch_existing(struct db *db, struct sreq **v, size_t n,
    void (*decide)(struct sreq *, const struct payment *))
{
	json_t *a = json_array();
	struct payment p;
	size_t i, others = 0;
	char *s;
	int rc;

	for (i = 0; i < n; i++) {
		if (v[i]->state != SR_OTHER)
			continue;
		others++;
		json_array_append_new(a,
		    json_pack("{s:I, s:s, s:s}", "i", (json_int_t)i, "m",
		        v[i]->merchant, "k", v[i]->key));
	}
	if (others == 0) {
		json_decref(a);
		return 0;
	}
	s = text(a);
	rc = db_query(db, existing_sql, "s", s);
	free(s);
	if (rc != 0)
		return rc;
	while ((rc = db_next(db)) == 1) {
		i = (size_t)db_int(db, 0);
		if (i >= n || v[i]->state != SR_OTHER)
			continue;
		payment_read(db, 1, &p);
		decide(v[i], &p);
	}
	if (rc < 0)
		return -rc;
	/* No row: released since; the slow path claims it again. */
	memset(&p, 0, sizeof(p));
	for (i = 0; i < n; i++)
		if (v[i]->state == SR_OTHER)
			decide(v[i], &p);
	return 0;
}

static json_t *
ids(struct sreq **v, size_t n, bool (*want)(const struct sreq *))
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < n; i++)
		if (want(v[i]))
			json_array_append_new(a,
			    json_pack("{s:I, s:s}", "id",
			        (json_int_t)v[i]->a.payment_id, "t",
			        v[i]->a.token));
	return a;
}

static bool
failed(const struct sreq *r)
{
	return r->res.outcome == PG_ERROR;
}

static bool
answered(const struct sreq *r)
{
	return r->res.outcome != PG_ERROR;
}

int
batch_release(struct db *db, struct sreq **v, size_t n)
{
	return run(db, release_sql, ids(v, n, failed));
}

static json_t *
event(const char *type, const char *status)
{
	char key[37];

	outbox_uuid(key);
	return json_pack("{s:s, s:s, s:s}", "k", key, "t", type, "s", status);
}

/* The finish batch of the answered requests of v. */
static json_t *
rows(struct sreq **v, size_t n, size_t *count, size_t *events)
{
	json_t *a = json_array(), *ev;
	const struct pg_result *res;
	char now[32];
	bool ok;
	size_t i;

	*count = *events = 0;
	for (i = 0; i < n; i++) {
		res = &v[i]->res;
		if (res->outcome == PG_ERROR || v[i]->state == SR_LOST)
			continue;
		ok = res->outcome == PG_APPROVED;
		ev = json_array();
		if (ok)
			json_array_append_new(
			    ev, event(EV_AUTHORIZED, "AUTHORIZED"));
		if (ok && v[i]->a.capture)
			json_array_append_new(ev,
			    event(EV_CAPTURE_REQUESTED, "CAPTURE_REQUESTED"));
		*events += json_array_size(ev);
		outbox_now(now);
		json_array_append_new(a,
		    json_pack("{s:I, s:s, s:s, s:s?, s:s?, s:s, s:s, s:s, s:I, "
		              "s:s, s:s, s:o}",
		        "id", (json_int_t)v[i]->a.payment_id, "t",
		        v[i]->a.token, "s", batch_status(v[i]), "ap",
		        ok ? res->approval : NULL, "tx", ok ? res->txn : NULL,
		        "rc", res->code, "rm", res->message, "m",
		        v[i]->merchant, "a", (json_int_t)v[i]->a.amount, "c",
		        v[i]->currency, "at", now, "ev", ev));
		++*count;
	}
	return a;
}

/*
 * Mark as lost the answered requests whose claim is no longer theirs,
 * locking the rows of the others.
 */
static int
lock_held(struct db *db, struct sreq **v, size_t n)
{
	char *s = text(ids(v, n, answered));
	int64_t id;
	size_t i;
	int rc;

	rc = db_query(db, held_sql, "s", s);
	free(s);
	if (rc != 0)
		return rc;
	for (i = 0; i < n; i++)
		if (answered(v[i]))
			v[i]->state = SR_LOST;
	while ((rc = db_next(db)) == 1) {
		id = db_int(db, 0);
		for (i = 0; i < n; i++)
			if (v[i]->a.payment_id == id && answered(v[i]))
				v[i]->state = SR_DONE;
	}
	return rc < 0 ? -rc : 0;
}

/*
 * careful: the claims were checked and locked by lock_held() first.  The
 * common case updates straight away and finds every claim still held.
 */
static int
finish(struct db *db, struct sreq **v, size_t n, bool careful, bool *retry)
{
	size_t i, count, events, nfailed = 0;
	json_t *a;
	char *s;
	int rc;

	*retry = false;
	if (careful && (rc = lock_held(db, v, n)) != 0)
		return rc;
	a = rows(v, n, &count, &events);
	s = text(a);
	rc = 0;
	if (count > 0 && (rc = db_exec(db, finish_sql, "s", s)) == 0 &&
	    db_affected(db) != count) {
		/* A claim was taken over: redo, checking each. */
		*retry = true;
		free(s);
		return 0;
	}
	if (rc == 0 && events > 0)
		rc = db_exec(
		    db, events_sql, "is", (int64_t)EVENT_SCHEMA_VERSION, s);
	free(s);
	for (i = 0; i < n; i++) {
		nfailed += v[i]->res.outcome == PG_ERROR;
		if (!careful && answered(v[i]))
			v[i]->state = SR_DONE;
	}
	if (rc == 0 && nfailed > 0)
		rc = batch_release(db, v, n);
	return rc;
}

int
batch_finish(struct db *db, struct sreq **v, size_t n)
{
	bool careful = false, retry = false;
	size_t i;
	int rc, tries;

	for (tries = 0; tries < 4; tries++) {
		if ((rc = db_begin(db)) == 0 &&
		    (rc = finish(db, v, n, careful, &retry)) == 0 && !retry &&
		    (rc = db_commit(db)) == 0)
			return 0;
		db_rollback(db);
		if (retry)
			careful = true;
		else if (!db_retryable(db))
			break;
	}
	for (i = 0; i < n; i++)
		v[i]->state = SR_OWNED;
	return rc != 0 ? rc : EX_TEMPFAIL;
}
