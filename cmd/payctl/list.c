/*
 * payctl list: payments as JSON Lines, newest first, filtered by status,
 * merchant and creation time.  Each combination of filters has its own
 * statement so that the optimizer can use the matching index
 * ((status, created_at), (merchant_id, created_at) or (created_at)).
 */
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "payctl.h"
#include "valid.h"

#include <getopt.h>
#include <stdio.h>

static const char usage_text[] = "usage: payctl list [-h] [-m merchant] "
                                 "[-n limit] [-s status] [-t since]\n";

#define SINCE " created_at >= COALESCE(?, NOW(6) - INTERVAL ? MICROSECOND)"
#define ORDER " ORDER BY created_at DESC, payment_id DESC LIMIT ?"

static const char all_sql[] =
    "SELECT " PAYMENT_COLUMNS " FROM payment WHERE" SINCE ORDER;
static const char status_sql[] =
    "SELECT " PAYMENT_COLUMNS " FROM payment WHERE status = ? AND" SINCE ORDER;
static const char merchant_sql[] =
    "SELECT " PAYMENT_COLUMNS
    " FROM payment WHERE merchant_id = ? AND" SINCE ORDER;
static const char both_sql[] =
    "SELECT " PAYMENT_COLUMNS " FROM payment WHERE merchant_id = ?"
    " AND status = ? AND" SINCE ORDER;

int
cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "merchant", required_argument, NULL, 'm' },
		{ "limit", required_argument, NULL, 'n' },
		{ "status", required_argument, NULL, 's' },
		{ "since", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *status = NULL, *merchant = NULL, *since = NULL;
	char ts[27] = "1970-01-01 00:00:00.000000";
	long long limit = 100, ago_ms = 0;
	const char *t;
	int64_t us, n;
	struct payment p;
	struct db *db;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":hm:n:s:t:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'm':
			merchant = optarg;
			if (!valid_id(merchant, VALID_MERCHANT_MAX))
				return diag_usage("option '--merchant': '%s' "
				                  "is not 1 to 32 printable "
				                  "characters without spaces",
				    optarg);
			break;
		case 'n':
			if (conf_parse_int(optarg, 1, 100000, &limit) != 0)
				return diag_usage(
				    "option '--limit': '%s' is "
				    "not a number from 1 to 100000",
				    optarg);
			break;
		case 's':
			status = optarg;
			if (!valid_status(status))
				return diag_usage("option '--status': '%s' is "
				                  "not a payment status",
				    optarg);
			break;
		case 't':
			since = optarg;
			if (valid_since(since, ts, &ago_ms) < 0)
				return diag_usage(
				    "option '--since': '%s' is "
				    "not a time (2026-11-21T08:00:00Z) "
				    "or a duration (15m, 1h, 7d)",
				    optarg);
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	if ((rc = payctl_connect(&db)) != 0)
		return rc;
	/* A duration leaves ts NULL so the database clock decides. */
	t = ago_ms > 0 ? NULL : ts;
	us = ago_ms * 1000;
	n = limit;
	if (status && merchant)
		rc =
		    db_query(db, both_sql, "sssii", merchant, status, t, us, n);
	else if (status)
		rc = db_query(db, status_sql, "ssii", status, t, us, n);
	else if (merchant)
		rc = db_query(db, merchant_sql, "ssii", merchant, t, us, n);
	else
		rc = db_query(db, all_sql, "sii", t, us, n);
	while (rc == 0 && (rc = db_next(db)) == 1) {
		payment_read(db, 0, &p);
		if ((rc = js_print(payment_json(&p))) != 0)
			break;
	}
	if (rc < 0)
		rc = -rc;
	if (rc != 0 && rc != EX_IOERR)
		rc = payctl_dbfail(db, rc, "list payments");
	db_close(db);
	return rc;
}
