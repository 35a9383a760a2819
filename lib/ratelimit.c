/*
 * ratelimit: see ratelimit.h.
 */
#include "ratelimit.h"
#include "conf.h"

#include <stdio.h>

/*
 * LAST_INSERT_ID(expr) hands the new count back in the OK packet, so the
 * check is one round trip whether the row is new or not.
 */
static const char count_sql[] =
    "INSERT INTO rate_limit (action, merchant_id, window_start, count)"
    " VALUES (?, ?, FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000 / ?) * ?,"
    " LAST_INSERT_ID(?))"
    " ON DUPLICATE KEY UPDATE count = LAST_INSERT_ID(count + ?)";
static const char left_sql[] =
    "SELECT ? - MOD(FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000), ?)";
static const char expire_sql[] =
    "DELETE FROM rate_limit WHERE action = ? AND merchant_id = ?"
    " AND window_start < FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000 / ?) * ?";

void
ratelimit_conf(const char *action, struct ratelimit *rl)
{
	char key[64];

	snprintf(key, sizeof(key), "rate_limit_%s", action);
	rl->action = action;
	rl->limit = conf_int(key);
	rl->window_ms = conf_ms("rate_limit_window");
}

long long
ratelimit_granted(long long count, long long n, long long limit)
{
	long long before = count - n;

	if (before >= limit)
		return 0;
	return limit - before < n ? limit - before : n;
}

long long
ratelimit_retry_after(long long remaining_ms)
{
	long long s = (remaining_ms + 999) / 1000;

	return s < 1 ? 1 : s;
}

int
ratelimit_take(struct db *db, const struct ratelimit *rl, const char *merchant,
    long long n, long long *granted, long long *retry_after_s)
{
	int64_t w = rl->window_ms;
	long long count;
	int rc;

	*granted = n;
	*retry_after_s = 0;
	if (rl->limit <= 0 || n <= 0)
		return 0;
	if ((rc = db_exec(db, count_sql, "ssiiii", rl->action, merchant, w, w,
	         (int64_t)n, (int64_t)n)) != 0)
		return rc;
	count = (long long)db_insert_id(db);
	/* A new row: this merchant's previous windows are over. */
	if (db_affected(db) == 1 &&
	    (rc = db_exec(
	         db, expire_sql, "ssii", rl->action, merchant, w, w)) != 0)
		return rc;
	*granted = ratelimit_granted(count, n, rl->limit);
	if (*granted == n)
		return 0;
	if ((rc = db_query(db, left_sql, "ii", w, w)) != 0)
		return rc;
	if ((rc = db_next(db)) < 0)
		return -rc;
	*retry_after_s = ratelimit_retry_after(rc == 1 ? db_int(db, 0) : w);
	while (db_next(db) == 1)
		;
	return 0;
}
