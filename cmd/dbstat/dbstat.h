/*
 * dbstat: what the files of cmd/dbstat/ share.  dbstat.c reads the options,
 * runs the jobs on threads and prints; sql.c holds the database sections,
 * net.c Kafka and the gateway, render.c the table and Prometheus views of
 * the JSON report.  Every section is built as a JSON object by exactly one
 * job; a section that failed is {"error": "..."} and carries an exit code.
 */
#ifndef PAYKIT_DBSTAT_H
#define PAYKIT_DBSTAT_H

#include "db.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

enum section {
	SEC_PAYMENTS,
	SEC_OUTBOX,
	SEC_SETTLEMENT,
	SEC_REFUND,
	SEC_LEDGER,
	SEC_BREAKERS,
	SEC_KAFKA,
	SEC_HEALTH,
	SEC_COUNT
};

/* Names in output order; also the --section names. */
extern const char *const dbstat_sections[SEC_COUNT];

/* The checks that turn into exit 1. */
enum check {
	CHK_LEDGER_BALANCE,
	CHK_LEDGER_PAYMENTS,
	CHK_OUTBOX_AGE,
	CHK_KAFKA_LAG,
	CHK_COUNT
};
extern const char *const dbstat_checks[CHK_COUNT];

struct opts {
	bool want[SEC_COUNT];
	long long recent; /* payments shown in payments.recent */
	long long max_outbox_age_ms; /* 0: not checked */
	long long max_lag; /* -1: not checked */
	long long grace_ms; /* ledger: events this recent are in flight */
	long long timeout_ms; /* Kafka and gateway probes */
	const char *ledger_account;
	const char *groups; /* consumer groups, comma separated */
};

/* What a job made of one section, or of one dependency's health. */
struct result {
	json_t *json; /* the section; NULL when not run */
	int code; /* 0, or the exit code of what failed */
	char err[512]; /* the diagnostic line, when code != 0 */
	bool ran[CHK_COUNT]; /* checks evaluated ... */
	bool failed[CHK_COUNT]; /* ... and those that failed */
};

/* Record a failure: r->json becomes {"error": msg}. */
void result_fail(struct result *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void result_check(struct result *r, enum check c, bool ok);
/* After result_fail, for a dependency: {"up": false, "error": ...}. */
void result_down(struct result *r);

/*
 * The ledger's per-payment check without a join over every payment: each
 * side is summed per currency and as a checksum weighted by payment id,
 * sum((payment_id mod Q) * (net mod Q)) mod Q with Q = 2^31 - 1, which an
 * entry booked to the wrong payment changes.  The payments' side comes from
 * the payments scan, the ledger's from the running balances (ledger.c).
 */
#define BOOK_Q 2147483647LL
#define BOOK_TERM(id, x) "(" id " % 2147483647) * ((" x ") % 2147483647)"
#define BOOK_WEIGHT(id, x) "MOD(SUM(" BOOK_TERM(id, x) "), 2147483647)"

/*
 * The big scans sum non-negative integers (the check constraints keep
 * amounts and nets from going below zero).  SUM() of integers is a DECIMAL
 * sum, a large part of the server's work on a million rows; a DOUBLE sum
 * costs much less and is exact while the result stays below 2^53, because
 * then every partial sum does too.  So each scan is first run with SQL_FSUM
 * and, when a sum comes back at SQL_FSUM_MAX or above (or below zero), run
 * again with SQL_SUM, whose sums are exact at any size.
 */
#define SQL_SUM(x) "SUM(" x ")"
#define SQL_FSUM(x) "CAST(SUM(CAST(" x " AS DOUBLE)) AS DECIMAL(65,0))"
#define SQL_FSUM_MAX 9007199254740992LL
/* The checksum term for SQL_FSUM, reduced mod BOOK_Q row by row. */
#define BOOK_FTERM(id, x) "(" BOOK_TERM(id, x) ") % 2147483647"
/* Whether a sum read back from a SQL_FSUM scan can be trusted. */
#define SQL_FSUM_OK(v) ((v) >= 0 && (v) < SQL_FSUM_MAX)

struct side_cur {
	char currency[8];
	int64_t net;
};
/* One side of the check: nets per currency, and the checksum mod BOOK_Q. */
struct side {
	struct side_cur *cur;
	size_t n;
	int64_t w;
};
void side_add(struct side *s, const char *currency, int64_t net, int64_t w);
/* Empty s again (NULL is let be). */
void side_clear(struct side *s);

/*
 * The payments job and the ledger job run at once, each in its own
 * snapshot, and meet through struct books (ledger.c).
 */
struct books;
struct books *books_new(bool ledger);
void books_free(struct books *b);
void books_payments(
    struct db *db, const struct opts *o, struct result *r, struct books *b);
void books_ledger(
    struct db *db, const struct opts *o, struct result *r, struct books *b);
/* The ledger job could not start: do not wait for it. */
void books_abort(struct books *b);

/* Timestamps as ISO-8601 UTC with microseconds (sessions run in UTC). */
#define SQL_TIME(col) "DATE_FORMAT(" col ", '%Y-%m-%dT%H:%i:%s.%fZ')"

/*
 * Begin a read-only transaction with a consistent snapshot, so that the
 * statements that follow see the same rows (ledger.c).
 */
int sql_snapshot(struct db *db);

/* Column col as an integer (NULL is 0); *bad is set when it does not fit. */
int64_t sql_num(struct db *db, unsigned col, bool *bad);
/* Column col as a JSON string, or null. */
json_t *sql_strornull(struct db *db, unsigned col);
/* Milliseconds, rounded to microseconds. */
json_t *sql_ms(double ms);

/*
 * Database jobs, each on its own connection.  sql_payments adds the
 * payments' side of the ledger check to ps when it is not NULL.
 */
void sql_payments(
    struct db *db, const struct opts *o, struct result *r, struct side *ps);
void sql_outbox(struct db *db, const struct opts *o, struct result *r);
void sql_requests(struct db *db, const struct opts *o,
    struct result *settlement, struct result *refund, struct result *breakers);

/* The database probe: connect time and one round trip (sql.c). */
json_t *sql_health(struct db *db, double connect_ms);

/*
 * Kafka (net.c): the broker probe for health, and with want the kafka
 * section; one client for both.
 */
void net_kafka(const struct opts *o, bool want, struct result *health,
    struct result *kafka);
/* The gateway probe: GET pg_url/health. */
void net_gateway(const struct opts *o, struct result *health);

/* Views of the report (render.c): 0, or -1 when writing failed. */
int render_table(const json_t *report, FILE *fp);
int render_prom(const json_t *report, FILE *fp);

/* Milliseconds on the monotonic clock. */
double dbstat_now_ms(void);

#endif
