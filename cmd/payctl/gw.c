/*
 * gw: the pg circuit breaker around gateway authorizations.  Stream mode
 * calls the gateway from several threads; the breaker has its own lock.
 */
#include "breaker.h"
#include "diag.h"
#include "payctl.h"

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
	breaker_detach(pg_breaker);
	pg_breaker = NULL;
}

bool
gw_permit(struct breaker_call *call, struct pg_result *res)
{
	call->permit = 0;
	if (pg_breaker == NULL || breaker_acquire(pg_breaker, call))
		return true;
	pg_refused(res, "pg");
	return false;
}

void
gw_record(const struct breaker_call *call, const struct pg_result *res)
{
	if (pg_breaker != NULL)
		breaker_record(pg_breaker, call, res->breaker_failure, res->ms);
}
