/*
 * authorize-batch: the statements of payctl authorize - that handle many
 * requests at once, each in one round trip whatever the batch's size.
 * The inserts (the claims, the outbox events) are the server's bulk
 * execution of a one-row statement with arrays of bound values.  The
 * others take the batch as one JSON array parameter that JSON_TABLE turns
 * into rows: a bulk UPDATE would run the whole statement once per row,
 * which costs the server more than reading the JSON.  STRAIGHT_JOIN keeps
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
    " VALUES (?, ?, ?, ?, ?, 'PENDING', NOW(6) + INTERVAL ? MICROSECOND, ?)"
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
 * A finish batch is an array of arrays, one per answered request: payment
 * id, claim token, status, approval number, transaction id, response code
 * and message.  Positions rather than names, so the server finds each
 * value without comparing keys.
 */
static const char finish_sql[] =
    "UPDATE JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$[0]',"
    " t CHAR(36) PATH '$[1]', s VARCHAR(20) PATH '$[2]',"
    " ap VARCHAR(32) PATH '$[3]', tx VARCHAR(64) PATH '$[4]',"
    " rc VARCHAR(32) PATH '$[5]', rm VARCHAR(255) PATH '$[6]')) j"
    " STRAIGHT_JOIN payment p ON p.payment_id = j.id"
    " SET p.status = j.s, p.approval_number = j.ap, p.transaction_id = j.tx,"
    " p.pg_response_code = j.rc, p.pg_response_message = j.rm,"
    " p.lease_until = NULL, p.claim_token = NULL"
    " WHERE p.status = 'PENDING' AND p.claim_token = j.t";

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
	const char *merchants[BATCH], *keys[BATCH], *currencies[BATCH];
	const char *tokens[BATCH];
	int64_t amounts[BATCH], captures[BATCH], leases[BATCH];
	int64_t lease = auth_lease_us();
	char token[37];
	struct sreq *r;
	size_t i;
	int rc;

	if (n > BATCH)
		diag_die(EX_SOFTWARE, "a claim batch of %zu requests", n);
	outbox_uuid(token);
	for (i = 0; i < n; i++) {
		v[i]->state = SR_OTHER;
		merchants[i] = v[i]->merchant;
		keys[i] = v[i]->key;
		amounts[i] = v[i]->a.amount;
		currencies[i] = v[i]->currency;
		captures[i] = v[i]->a.capture;
		leases[i] = lease;
		tokens[i] = token;
	}
	if ((rc = db_bulk(db, claim_sql, n, "ssisiis", merchants, keys, amounts,
	         currencies, captures, leases, tokens)) != 0)
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

/* The update rows of the answered requests of v that still hold a claim. */
static json_t *
rows(struct sreq **v, size_t n, size_t *count)
{
	json_t *a = json_array();
	const struct pg_result *res;
	bool ok;
	size_t i;

	*count = 0;
	for (i = 0; i < n; i++) {
		res = &v[i]->res;
		if (res->outcome == PG_ERROR || v[i]->state == SR_LOST)
			continue;
		ok = res->outcome == PG_APPROVED;
		json_array_append_new(a,
		    json_pack("[I, s, s, s?, s?, s, s]",
		        (json_int_t)v[i]->a.payment_id, v[i]->a.token,
		        batch_status(v[i]), ok ? res->approval : NULL,
		        ok ? res->txn : NULL, res->code, res->message));
		++*count;
	}
	return a;
}

/*
 * The outbox events of the approved requests of v that still hold a claim,
 * as payctl authorize writes them one by one.
 */
static int
events(struct db *db, struct sreq **v, size_t n)
{
	struct outbox_event *ev = xcalloc(2 * n + 1, sizeof(*ev));
	size_t i, nev = 0;
	int rc;

	for (i = 0; i < n; i++) {
		if (v[i]->res.outcome != PG_APPROVED || v[i]->state == SR_LOST)
			continue;
		auth_event(&ev[nev++], &v[i]->a, EV_AUTHORIZED, "AUTHORIZED",
		    &v[i]->res);
		if (v[i]->a.capture)
			auth_event(&ev[nev++], &v[i]->a, EV_CAPTURE_REQUESTED,
			    "CAPTURE_REQUESTED", &v[i]->res);
	}
	rc = outbox_insert_many(db, ev, nev);
	for (i = 0; i < nev; i++)
		free(ev[i].text);
	free(ev);
	return rc;
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
	size_t i, count, nfailed = 0;
	char *s;
	int rc;

	*retry = false;
	if (careful && (rc = lock_held(db, v, n)) != 0)
		return rc;
	s = text(rows(v, n, &count));
	rc = 0;
	if (count > 0 && (rc = db_exec(db, finish_sql, "s", s)) == 0 &&
	    db_affected(db) != count) {
		/* A claim was taken over: redo, checking each. */
		*retry = true;
		free(s);
		return 0;
	}
	free(s);
	if (rc == 0)
		rc = events(db, v, n);
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
