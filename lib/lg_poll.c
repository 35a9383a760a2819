/*
 * lg_poll: see lg_poll.h.
 *
 * The ids go to the server as one JSON array bound to one placeholder and
 * unpacked by JSON_TABLE, so a poll of any size is a single prepared
 * statement and not SQL assembled from text.
 */
#include "lg_poll.h"
#include "clock.h"
#include "diag.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH 1000

/*
 * The ledger rows are counted only for a payment that is REFUNDED, the one
 * status whose wait needs them: the count is most of the query's work, and
 * the query is load on the database being measured.
 */
static const char poll_sql[] =
    "SELECT p.payment_id, p.status, IF(p.status = 'REFUNDED',"
    " (SELECT COUNT(*) FROM ledger_entry l WHERE l.payment_id = p.payment_id),"
    " 0)"
    " FROM JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) AS j"
    " JOIN payment p ON p.payment_id = j.id";

/*
 * A payment being waited on; tag is the caller's (slot, iteration); since
 * when, and when it is next looked at (monotonic ms).
 */
struct lg_wait {
	int64_t payment_id;
	uint64_t tag;
	int64_t since, next;
};

struct lg_poll {
	struct db *db;
	long interval_ms;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
	int wake[2];
	/* Guarded by mu: what is waited on, and what came back. */
	struct lg_wait *w;
	size_t nw, capw;
	struct lg_seen *seen;
	size_t nseen, capseen;
	int code;
	char msg[512];
};

static void
sleep_ms(struct lg_poll *p, long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&p->mu);
	if (!p->stopping)
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
	pthread_mutex_unlock(&p->mu);
}

static uint64_t
tag_of(const struct lg_wait *w, size_t n, int64_t id)
{
	size_t i;

	/* The batch is at most BATCH long and answers are rare per poll. */
	for (i = 0; i < n; i++)
		if (w[i].payment_id == id)
			return w[i].tag;
	return UINT64_MAX;
}

/* Query one batch; answers go to p->seen.  0 or the exit code. */
static int
query(struct lg_poll *p, const struct lg_wait *w, size_t n)
{
	struct lg_seen s;
	char *ids, *q;
	size_t i;
	int rc;

	ids = q = xmalloc(n * 21 + 3);
	*q++ = '[';
	for (i = 0; i < n; i++)
		q += snprintf(
		    q, 22, "%s%lld", i ? "," : "", (long long)w[i].payment_id);
	*q++ = ']';
	*q = '\0';
	rc = db_query(p->db, poll_sql, "s", ids);
	free(ids);
	if (rc != 0)
		return rc;
	while ((rc = db_next(p->db)) == 1) {
		memset(&s, 0, sizeof(s));
		s.payment_id = db_int(p->db, 0);
		snprintf(s.status, sizeof(s.status), "%s",
		    db_str(p->db, 1) ? db_str(p->db, 1) : "");
		s.ledger_rows = db_int(p->db, 2);
		s.tag = tag_of(w, n, s.payment_id);
		pthread_mutex_lock(&p->mu);
		if (p->nseen == p->capseen) {
			p->capseen = p->capseen ? p->capseen * 2 : 256;
			p->seen =
			    xrealloc(p->seen, p->capseen * sizeof(*p->seen));
		}
		p->seen[p->nseen++] = s;
		pthread_mutex_unlock(&p->mu);
	}
	return rc < 0 ? -rc : 0;
}

long
lg_poll_gap_ms(long interval_ms, int64_t age_ms)
{
	return age_ms / 16 > interval_ms ? (long)(age_ms / 16) : interval_ms;
}

/* The payments due a look, into w; each one's next look.  Under p->mu. */
static size_t
due(struct lg_poll *p, struct lg_wait *w)
{
	int64_t now = clock_mono_ms();
	size_t i, n = 0;

	for (i = 0; i < p->nw; i++) {
		if (p->w[i].next > now)
			continue;
		p->w[i].next =
		    now + lg_poll_gap_ms(p->interval_ms, now - p->w[i].since);
		w[n++] = p->w[i];
	}
	return n;
}

static void *
run(void *arg)
{
	struct lg_poll *p = arg;
	struct lg_wait *w = NULL;
	size_t n, i;
	int rc = 0;

	for (;;) {
		sleep_ms(p, p->interval_ms);
		pthread_mutex_lock(&p->mu);
		if (p->stopping) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		w = xrealloc(w, (p->nw ? p->nw : 1) * sizeof(*w));
		n = due(p, w);
		pthread_mutex_unlock(&p->mu);
		for (i = 0; i < n && rc == 0; i += BATCH)
			rc = query(p, w + i, n - i < BATCH ? n - i : BATCH);
		if (rc != 0 && db_retryable(p->db))
			rc = 0;
		pthread_mutex_lock(&p->mu);
		if (rc != 0) {
			p->code = rc;
			snprintf(p->msg, sizeof(p->msg), "%s", db_error(p->db));
		}
		pthread_mutex_unlock(&p->mu);
		if (n > 0 || rc != 0)
			(void)!write(p->wake[1], "", 1);
		if (rc != 0)
			break;
	}
	free(w);
	return NULL;
}

struct lg_poll *
lg_poll_start(struct db *db, long interval_ms)
{
	struct lg_poll *p = xcalloc(1, sizeof(*p));

	p->db = db;
	p->interval_ms = interval_ms;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		free(p);
		return NULL;
	}
	errno = pthread_create(&p->thread, NULL, run, p);
	if (errno != 0) {
		close(p->wake[0]);
		close(p->wake[1]);
		free(p);
		return NULL;
	}
	return p;
}

int
lg_poll_fd(const struct lg_poll *p)
{
	return p->wake[0];
}

void
lg_poll_add(struct lg_poll *p, int64_t payment_id, uint64_t tag)
{
	pthread_mutex_lock(&p->mu);
	if (p->nw == p->capw) {
		p->capw = p->capw ? p->capw * 2 : 256;
		p->w = xrealloc(p->w, p->capw * sizeof(*p->w));
	}
	p->w[p->nw] = (struct lg_wait){ payment_id, tag, clock_mono_ms(), 0 };
	p->nw++;
	pthread_mutex_unlock(&p->mu);
}

void
lg_poll_remove(struct lg_poll *p, int64_t payment_id, uint64_t tag)
{
	size_t i;

	pthread_mutex_lock(&p->mu);
	for (i = 0; i < p->nw; i++)
		if (p->w[i].payment_id == payment_id && p->w[i].tag == tag) {
			p->w[i] = p->w[--p->nw];
			break;
		}
	pthread_mutex_unlock(&p->mu);
}

long
lg_poll_take(
    struct lg_poll *p, struct lg_seen **seen, int *code, char *msg, size_t len)
{
	char buf[64];
	long n;

	while (read(p->wake[0], buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&p->mu);
	if (p->code != 0) {
		*code = p->code;
		snprintf(msg, len, "%s", p->msg);
		pthread_mutex_unlock(&p->mu);
		return -1;
	}
	*seen = p->seen;
	n = (long)p->nseen;
	p->seen = NULL;
	p->nseen = p->capseen = 0;
	pthread_mutex_unlock(&p->mu);
	return n;
}

void
lg_poll_stop(struct lg_poll *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	db_close(p->db);
	close(p->wake[0]);
	close(p->wake[1]);
	free(p->w);
	free(p->seen);
	free(p);
}
