/*
 * gw: the pg circuit breaker around gateway authorizations.  Stream mode
 * calls the gateway from several threads, so the breaker (and the database
 * connection it writes on) is used under one lock; the breaker counts in
 * memory and writes at most every 100 ms, so the lock is held briefly.
 */
#include "breaker.h"
#include "diag.h"
#include "payctl.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct breaker *pg_breaker;

int
gw_open(struct db *db)
{
	int rc;

	if ((rc = breaker_attach(db, "pg", &pg_breaker)) != 0)
		diag_warn("attach circuit breaker 'pg': %s", db_error(db));
	return rc;
}

void
gw_close(void)
{
	pthread_mutex_lock(&mu);
	breaker_detach(pg_breaker);
	pg_breaker = NULL;
	pthread_mutex_unlock(&mu);
}

bool
gw_permit(struct breaker_call *call, struct pg_result *res)
{
	bool ok;

	call->permit = 0;
	pthread_mutex_lock(&mu);
	ok = pg_breaker == NULL || breaker_acquire(pg_breaker, call);
	pthread_mutex_unlock(&mu);
	if (!ok) {
		memset(res, 0, sizeof(*res));
		res->outcome = PG_ERROR;
		res->exit_code = EX_TEMPFAIL;
		snprintf(res->message, sizeof(res->message),
		    "circuit breaker 'pg' is open: the gateway was not called");
	}
	return ok;
}

void
gw_record(const struct breaker_call *call, const struct pg_result *res)
{
	pthread_mutex_lock(&mu);
	if (pg_breaker != NULL)
		breaker_record(pg_breaker, call, res->breaker_failure, res->ms);
	pthread_mutex_unlock(&mu);
}
