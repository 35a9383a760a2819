/*
 * conn: a database connection that is made again after the server went
 * away, and a retry of one piece of work across such outages.
 */
#include "clock.h"
#include "diag.h"
#include "payctl.h"

int
conn_use(struct conn *c)
{
	if (c->db != NULL)
		return 0;
	c->db = db_connect(NULL, &c->code, c->msg, sizeof(c->msg));
	return c->db == NULL ? c->code : 0;
}

void
conn_fail(struct conn *c, int rc)
{
	/* A connection that went away is made again for the next use. */
	if (rc != EX_UNAVAILABLE || c->db == NULL)
		return;
	if (c->db != c->shared)
		db_close(c->db);
	c->db = NULL;
}

const char *
conn_error(const struct conn *c)
{
	return c->db ? db_error(c->db) : c->msg;
}

int
conn_retry(struct conn *c, int64_t deadline,
    int (*body)(struct db *db, void *arg), void *arg)
{
	int64_t pause = 20;
	int rc;

	for (;;) {
		if ((rc = conn_use(c)) == 0 && (rc = body(c->db, arg)) == 0)
			return 0;
		if (rc != EX_UNAVAILABLE && rc != EX_TEMPFAIL)
			return rc;
		conn_fail(c, rc);
		if (clock_mono_ms() + pause > deadline)
			return rc;
		clock_sleep_ms(pause);
		pause = pause * 2 > 1000 ? 1000 : pause * 2;
	}
}
