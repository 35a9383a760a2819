/*
 * payctl recover: finish the authorizations whose claim was left behind.
 *
 * A claim (a PENDING payment row) is left behind when its process died,
 * or lost the database for longer than the lease, between asking the
 * gateway and recording the answer, and the client never asked for the
 * key again.  The gateway may have put a hold on the card.  recover does
 * what the client's retry would: it takes the claim over, asks the gateway
 * again with the same idempotency key (a gateway answers a repeated key
 * with its first answer, without a second hold) and records the answer
 * with its events, or deletes the claim when the gateway fails, so that
 * the key starts afresh.  One JSON line per claim, as payctl authorize -
 * prints them.
 */
#include "conf.h"
#include "diag.h"
#include "lines.h"
#include "payctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: payctl recover [-h] [-n limit] [-o age]\n";

/* Oldest first, by the (status, created_at) index. */
static const char expired_sql[] =
    "SELECT payment_id, merchant_id, idempotency_key, amount, currency,"
    " auto_capture FROM payment WHERE status = 'PENDING'"
    " AND lease_until < NOW(6) - INTERVAL ? MICROSECOND"
    " ORDER BY created_at, payment_id LIMIT ?";

struct claim {
	int64_t id;
	char merchant[33];
	char key[65];
	char currency[4];
	int64_t amount;
	bool capture;
};

static int
expired(struct db *db, int64_t age_us, long long limit, struct claim **out,
    size_t *n)
{
	struct claim *v;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = db_query(db, expired_sql, "ii", age_us, (int64_t)limit)) != 0)
		return rc;
	v = xcalloc((size_t)limit, sizeof(*v));
	while ((rc = db_next(db)) == 1) {
		v[*n].id = db_int(db, 0);
		snprintf(v[*n].merchant, sizeof(v[*n].merchant), "%s",
		    db_str(db, 1));
		snprintf(v[*n].key, sizeof(v[*n].key), "%s", db_str(db, 2));
		v[*n].amount = db_int(db, 3);
		snprintf(v[*n].currency, sizeof(v[*n].currency), "%s",
		    db_str(db, 4));
		v[*n].capture = db_int(db, 5) != 0;
		++*n;
	}
	*out = v;
	return rc < 0 ? -rc : 0;
}

int
cmd_recover(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "limit", required_argument, NULL, 'n' },
		{ "older-than", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	struct ratelimit rl = { 0 }; /* a recovered key is not new */
	struct lines none = { 0 };
	struct conn conn = { 0 };
	long long limit = 1000, age_ms = 0;
	struct auth_out out;
	struct claim *v;
	struct auth a;
	struct http *h;
	struct db *db;
	size_t i, n;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":hn:o:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'n':
			if (conf_parse_int(optarg, 1, 100000, &limit) != 0)
				return diag_usage(
				    "option '--limit': '%s' is "
				    "not a number from 1 to 100000",
				    optarg);
			break;
		case 'o':
			if (conf_parse_duration(optarg, &age_ms) != 0 ||
			    age_ms > 366LL * 86400 * 1000)
				return diag_usage(
				    "option '--older-than': '%s' is not a "
				    "duration of at most 366d (e.g. 90s, 5m)",
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
	if ((rc = expired(db, age_ms * 1000, limit, &v, &n)) != 0) {
		rc = payctl_dbfail(db, rc, "read the expired claims");
		free(v);
		db_close(db);
		return rc;
	}
	if (n > 0 && (rc = gw_open(db)) != 0) {
		free(v);
		db_close(db);
		return rc;
	}
	h = http_new();
	/* The breaker holds db too: a reconnect leaves it to gw_close(). */
	conn.db = conn.shared = db;
	for (i = 0; i < n; i++) {
		memset(&a, 0, sizeof(a));
		a.merchant = v[i].merchant;
		a.key = v[i].key;
		a.currency = v[i].currency;
		a.amount = v[i].amount;
		a.capture = v[i].capture;
		if (conn_use(&conn) != 0) {
			rc = conn.code;
			break;
		}
		auth_run(&conn, h, &rl, &a, &out);
		if (out.code != 0)
			diag_warn("%s", out.msg);
		lines_emit(0, NULL, out.line, out.code, out.declined, true);
	}
	http_close(h);
	if (n > 0)
		gw_close();
	if (conn.db != db)
		db_close(conn.db);
	db_close(db);
	free(v);
	if (rc != 0) {
		diag_warn("connect to '%s:%lld': %s", conf_str("db_host"),
		    conf_int("db_port"), conn.msg);
		return rc;
	}
	return lines_summary(&none, false);
}
