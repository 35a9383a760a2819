/*
 * dbstat's two other views of the JSON report.  The table is generic: any
 * section prints as a block of key/value lines, one table per array of
 * objects, and one per object keyed by name (health, breakers, Kafka
 * topics and groups).  The Prometheus view is written out family by family,
 * because metric names are an interface: dbstat(1) lists them.
 */
#include "dbstat.h"
#include "diag.h"
#include "prom.h"
#include "table.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* A scalar (or an array of scalars) as table text; caller frees. */
static char *
cell(const json_t *v)
{
	char *out = NULL, *part;
	size_t len = 0, i;
	FILE *mem;

	if (v == NULL)
		return xstrdup("-");
	switch (json_typeof(v)) {
	case JSON_STRING:
		return xstrdup(json_string_value(v));
	case JSON_INTEGER:
		return xasprintf(
		    "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	case JSON_REAL:
		return xasprintf("%.6g", json_real_value(v));
	case JSON_TRUE:
		return xstrdup("true");
	case JSON_FALSE:
		return xstrdup("false");
	case JSON_ARRAY:
		if ((mem = open_memstream(&out, &len)) == NULL)
			return xstrdup("?");
		for (i = 0; i < json_array_size(v); i++) {
			part = cell(json_array_get(v, i));
			fprintf(mem, "%s%s", i ? "," : "", part);
			free(part);
		}
		fclose(mem);
		return out;
	default:
		return xstrdup("-");
	}
}

static bool
is_rows(const json_t *v)
{
	size_t i;

	if (!json_is_array(v) || json_array_size(v) == 0)
		return false;
	for (i = 0; i < json_array_size(v); i++)
		if (!json_is_object(json_array_get(v, i)))
			return false;
	return true;
}

/* An object whose every member is an object: rows keyed by name. */
static bool
is_keyed(const json_t *v)
{
	const char *k;
	json_t *m;

	if (!json_is_object(v) || json_object_size(v) == 0)
		return false;
	json_object_foreach((json_t *)v, k, m)
	{
		if (!json_is_object(m))
			return false;
	}
	return true;
}

static bool
is_scalar(const json_t *v)
{
	return !json_is_object(v) && !is_rows(v);
}

/* Column names: the scalar members of each object, first seen first. */
static void
add_cols(json_t *cols, const json_t *o)
{
	const char *k;
	json_t *m;
	size_t i;

	json_object_foreach((json_t *)o, k, m)
	{
		if (!is_scalar(m))
			continue;
		for (i = 0; i < json_array_size(cols); i++)
			if (strcmp(json_string_value(json_array_get(cols, i)),
			        k) == 0)
				break;
		if (i == json_array_size(cols))
			json_array_append_new(cols, json_string(k));
	}
}

static void
add_row(struct table *t, const json_t *cols, const char *name, const json_t *o)
{
	char *c;
	size_t i;

	if (name != NULL)
		table_cell(t, name);
	for (i = 0; i < json_array_size(cols); i++) {
		c = cell(json_object_get(
		    o, json_string_value(json_array_get(cols, i))));
		table_cell(t, c);
		free(c);
	}
	table_end_row(t);
}

static void
header(struct table *t, const json_t *cols, const char *first)
{
	size_t i;

	if (first != NULL)
		table_cell(t, first);
	for (i = 0; i < json_array_size(cols); i++)
		table_cell(t, json_string_value(json_array_get(cols, i)));
	table_end_row(t);
}

static void
emit(FILE *fp, const char *title, struct table *t)
{
	fprintf(fp, "%s\n", title);
	table_write(t, fp, "  ");
	fputc('\n', fp);
	table_free(t);
}

static bool
has(const json_t *arr, const char *name)
{
	size_t i;

	for (i = 0; i < json_array_size(arr); i++)
		if (strcmp(json_string_value(json_array_get(arr, i)), name) ==
		    0)
			return true;
	return false;
}

/* The rows of member kid of every keyed object, in one table. */
static void
child(FILE *fp, const char *title, const json_t *o, const char *kid)
{
	json_t *cols = json_array(), *m, *v;
	struct table *t = table_new();
	const char *k;
	char *sub;
	size_t j;

	json_object_foreach((json_t *)o, k, m)
	{
		v = json_object_get(m, kid);
		for (j = 0; is_rows(v) && j < json_array_size(v); j++)
			add_cols(cols, json_array_get(v, j));
	}
	header(t, cols, "name");
	json_object_foreach((json_t *)o, k, m)
	{
		v = json_object_get(m, kid);
		for (j = 0; is_rows(v) && j < json_array_size(v); j++)
			add_row(t, cols, k, json_array_get(v, j));
	}
	sub = xasprintf("%s.%s", title, kid);
	emit(fp, sub, t);
	free(sub);
	json_decref(cols);
}

/* A keyed object: one row per key; nested row arrays as child tables. */
static void
keyed(FILE *fp, const char *title, const json_t *o)
{
	json_t *cols = json_array(), *kids = json_array(), *m, *v;
	struct table *t = table_new();
	const char *k, *kk;
	size_t i;

	json_object_foreach((json_t *)o, k, m)
	{
		add_cols(cols, m);
		json_object_foreach(m, kk, v)
		{
			if (is_rows(v) && !has(kids, kk))
				json_array_append_new(kids, json_string(kk));
		}
	}
	header(t, cols, "name");
	json_object_foreach((json_t *)o, k, m)
	{
		add_row(t, cols, k, m);
	}
	emit(fp, title, t);
	for (i = 0; i < json_array_size(kids); i++)
		child(fp, title, o, json_string_value(json_array_get(kids, i)));
	json_decref(cols);
	json_decref(kids);
}

static void
rows(FILE *fp, const char *title, const json_t *arr)
{
	json_t *cols = json_array();
	struct table *t = table_new();
	size_t i;

	for (i = 0; i < json_array_size(arr); i++)
		add_cols(cols, json_array_get(arr, i));
	header(t, cols, NULL);
	for (i = 0; i < json_array_size(arr); i++)
		add_row(t, cols, NULL, json_array_get(arr, i));
	emit(fp, title, t);
	json_decref(cols);
}

static void
block(FILE *fp, const char *title, const json_t *o)
{
	struct table *t = table_new();
	const char *k;
	json_t *m;
	char *c, *sub;

	if (is_keyed(o)) {
		keyed(fp, title, o);
		table_free(t);
		return;
	}
	json_object_foreach((json_t *)o, k, m)
	{
		if (!is_scalar(m))
			continue;
		c = cell(m);
		table_cell(t, k);
		table_cell(t, c);
		table_end_row(t);
		free(c);
	}
	if (table_rows(t) > 0 || json_object_size(o) == 0)
		emit(fp, title, t);
	else
		table_free(t);
	json_object_foreach((json_t *)o, k, m)
	{
		if (is_scalar(m))
			continue;
		sub = xasprintf("%s.%s", title, k);
		if (is_rows(m))
			rows(fp, sub, m);
		else
			block(fp, sub, m);
		free(sub);
	}
}

int
render_table(const json_t *report, FILE *fp)
{
	json_t *top = json_object(), *m;
	const char *k;

	json_object_foreach((json_t *)report, k, m)
	{
		if (is_scalar(m))
			json_object_set(top, k, m);
	}
	block(fp, "dbstat", top);
	json_decref(top);
	json_object_foreach((json_t *)report, k, m)
	{
		if (!is_scalar(m))
			block(fp, k, m);
	}
	return ferror(fp) ? -1 : 0;
}

/* Prometheus: a member as a number, when it is one. */
static bool
num(const json_t *o, const char *key, double *v)
{
	const json_t *m = json_object_get(o, key);

	if (json_is_boolean(m))
		*v = json_is_true(m);
	else if (json_is_number(m))
		*v = json_number_value(m);
	else
		return false;
	return true;
}

static int64_t
inum(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static const char *
str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static bool
failed(const json_t *section)
{
	return section == NULL || !json_is_object(section) ||
	    json_object_get(section, "error") != NULL;
}

static void
p_payments(struct prom *p, const json_t *s)
{
	const json_t *r;
	size_t i;

	json_array_foreach(json_object_get(s, "by_status"), i, r)
	{
		prom_int(p, "paykit_payments",
		    "Payments by status and currency.", inum(r, "count"),
		    "status", str(r, "status"), "currency", str(r, "currency"),
		    NULL);
		prom_int(p, "paykit_payments_amount",
		    "Sum of payment amounts, in minor units.",
		    inum(r, "amount"), "status", str(r, "status"), "currency",
		    str(r, "currency"), NULL);
		prom_int(p, "paykit_payments_captured_amount",
		    "Sum of captured amounts, in minor units.",
		    inum(r, "captured_amount"), "status", str(r, "status"),
		    "currency", str(r, "currency"), NULL);
		prom_int(p, "paykit_payments_refunded_amount",
		    "Sum of refunded amounts, in minor units.",
		    inum(r, "refunded_amount"), "status", str(r, "status"),
		    "currency", str(r, "currency"), NULL);
	}
}

static void
p_outbox(struct prom *p, const json_t *s)
{
	static const char *const st[] = { "pending", "published", "dead" };
	const json_t *r;
	double v = 0;
	size_t i;

	for (i = 0; i < 3; i++)
		prom_int(p, "paykit_outbox_events", "Outbox rows by status.",
		    inum(s, st[i]), "status", st[i], NULL);
	num(s, "oldest_pending_age_s", &v);
	prom_real(p, "paykit_outbox_oldest_pending_age_seconds",
	    "Age of the oldest pending outbox row; 0 when none is pending.", v,
	    NULL);
	prom_int(p, "paykit_outbox_published_last_minute",
	    "Outbox rows published in the last 60 seconds.",
	    inum(s, "published_last_minute"), NULL);
	num(s, "published_per_second", &v);
	prom_real(p, "paykit_outbox_published_per_second",
	    "Publishing rate over the last 60 seconds.", v, NULL);
	json_array_foreach(json_object_get(s, "by_event_type"), i, r)
	{
		prom_int(p, "paykit_outbox_events_by_type",
		    "Pending and dead outbox rows by event type.",
		    inum(r, "pending"), "event_type", str(r, "event_type"),
		    "status", "pending", NULL);
		prom_int(p, "paykit_outbox_events_by_type", NULL,
		    inum(r, "dead"), "event_type", str(r, "event_type"),
		    "status", "dead", NULL);
	}
}

/* settlement_request and refund_request: paykit_settlement_*, _refund_*. */
static void
p_requests(struct prom *p, const char *what, const json_t *s)
{
	static const char *const st[] = { "pending", "success", "failed",
		"dead" };
	char name[64], help[128];
	const json_t *r;
	double v;
	size_t i;

#define NAME(suffix)                                                           \
	(snprintf(name, sizeof(name), "paykit_%s_%s", what, suffix), name)
#define HELP(text) (snprintf(help, sizeof(help), text, what), help)
	for (i = 0; i < 4; i++)
		prom_int(p, NAME("requests"), HELP("%s requests by status."),
		    inum(s, st[i]), "status", st[i], NULL);
	if (num(s, "completion_rate", &v))
		prom_real(p, NAME("completion_ratio"),
		    HELP("Share of %s requests that succeeded."), v, NULL);
	if (num(s, "failure_rate", &v))
		prom_real(p, NAME("failure_ratio"),
		    HELP("Share of %s requests failed or dead."), v, NULL);
	json_array_foreach(json_object_get(s, "completed_amount"), i, r)
	{
		prom_int(p, NAME("completed_amount"),
		    HELP("Amount of successful %s requests, in minor units."),
		    inum(r, "amount"), "currency", str(r, "currency"), NULL);
		prom_int(p, NAME("completed"),
		    HELP("Successful %s requests by currency."),
		    inum(r, "count"), "currency", str(r, "currency"), NULL);
	}
	json_array_foreach(json_object_get(s, "retry_counts"), i, r)
	{
		char n[24];

		snprintf(n, sizeof(n), "%" JSON_INTEGER_FORMAT,
		    json_integer_value(json_object_get(r, "retry_count")));
		prom_int(p, NAME("retries"),
		    HELP("%s requests by retry count."), inum(r, "count"),
		    "retry_count", n, NULL);
	}
	json_array_foreach(json_object_get(s, "errors_by_code"), i, r)
	{
		prom_int(p, NAME("errors"),
		    HELP("Failed and dead %s requests by gateway code."),
		    inum(r, "count"), "code", str(r, "code"), NULL);
	}
	v = 0;
	num(s, "oldest_open_age_s", &v);
	prom_real(p, NAME("oldest_open_age_seconds"),
	    HELP("Age of the oldest pending or failed %s request."), v, NULL);
#undef NAME
#undef HELP
}

static void
p_ledger(struct prom *p, const json_t *s)
{
	const json_t *r;
	size_t i;

	prom_int(p, "paykit_ledger_entries", "Ledger entries.",
	    inum(s, "entries"), NULL);
	json_array_foreach(json_object_get(s, "totals"), i, r)
	{
		prom_int(p, "paykit_ledger_debits",
		    "Sum of debits, in minor units.", inum(r, "debits"),
		    "currency", str(r, "currency"), NULL);
		prom_int(p, "paykit_ledger_credits",
		    "Sum of credits, in minor units.", inum(r, "credits"),
		    "currency", str(r, "currency"), NULL);
	}
	json_array_foreach(json_object_get(s, "accounts"), i, r)
	{
		prom_int(p, "paykit_ledger_balance",
		    "Debits less credits per account, in minor units.",
		    inum(r, "balance"), "account", str(r, "account"),
		    "currency", str(r, "currency"), NULL);
	}
	prom_int(p, "paykit_ledger_balanced",
	    "1 when debits equal credits in every currency.",
	    json_is_true(json_object_get(s, "balanced")), NULL);
	prom_int(p, "paykit_ledger_payments_match",
	    "1 when every settled payment's net matches the ledger.",
	    json_is_true(json_object_get(s, "payments_match")), NULL);
	prom_int(p, "paykit_ledger_mismatched_payments",
	    "Payments whose ledger net differs from captured less refunded.",
	    inum(s, "mismatched_payments"), NULL);
	prom_int(p, "paykit_ledger_in_flight_payments",
	    "Payments with an event the ledger may not have booked yet.",
	    inum(s, "in_flight_payments"), NULL);
}

static void
p_breakers(struct prom *p, const json_t *s)
{
	static const char *const states[] = { "CLOSED", "OPEN", "HALF_OPEN",
		"FORCED_OPEN", "DISABLED" };
	static const char *const counts[][2] = {
		{ "calls", "Calls recorded in the window." },
		{ "successes", "Successful calls in the window." },
		{ "failures", "Failed calls in the window." },
		{ "slow", "Slow calls in the window." },
		{ "not_permitted", "Calls refused while open, ever." },
		{ "open_count", "Times the breaker opened." },
	};
	char name[64];
	const char *k;
	json_t *b;
	double v;
	size_t i;

	json_object_foreach((json_t *)s, k, b)
	{
		for (i = 0; i < 5; i++)
			prom_int(p, "paykit_breaker_state",
			    "1 for the breaker's current state.",
			    strcmp(str(b, "state"), states[i]) == 0, "name", k,
			    "state", states[i], NULL);
		for (i = 0; i < 6; i++) {
			snprintf(name, sizeof(name), "paykit_breaker_%s",
			    counts[i][0]);
			prom_int(p, name, counts[i][1], inum(b, counts[i][0]),
			    "name", k, NULL);
		}
		if (num(b, "failure_rate", &v))
			prom_real(p, "paykit_breaker_failure_rate",
			    "Failed share of the window's calls.", v, "name", k,
			    NULL);
		if (num(b, "slow_call_rate", &v))
			prom_real(p, "paykit_breaker_slow_call_rate",
			    "Slow share of the window's calls.", v, "name", k,
			    NULL);
	}
}

static void
p_kafka(struct prom *p, const json_t *s)
{
	const json_t *t, *g, *r;
	const char *k;
	char part[16];
	size_t i;

	prom_int(p, "paykit_kafka_brokers", "Brokers in the cluster metadata.",
	    inum(s, "brokers"), NULL);
	json_object_foreach(json_object_get(s, "topics"), k, t)
	{
		prom_int(p, "paykit_kafka_topic_partitions",
		    "Partitions per pipeline topic.", inum(t, "partitions"),
		    "topic", str(t, "topic"), NULL);
		prom_int(p, "paykit_kafka_topic_messages",
		    "Messages per topic: end less start offsets.",
		    inum(t, "messages"), "topic", str(t, "topic"), NULL);
	}
	json_object_foreach(json_object_get(s, "dlq"), k, t)
	{
		prom_int(p, "paykit_kafka_dlq_messages",
		    "Messages in a dead-letter topic.", inum(t, "messages"),
		    "topic", str(t, "topic"), NULL);
	}
	json_object_foreach(json_object_get(s, "groups"), k, g)
	{
		if (json_object_get(g, "error") != NULL)
			continue;
		prom_int(p, "paykit_kafka_consumer_group_lag",
		    "A consumer group's lag over its partitions.",
		    inum(g, "lag"), "group", k, NULL);
		json_array_foreach(json_object_get(g, "partitions"), i, r)
		{
			snprintf(part, sizeof(part), "%" JSON_INTEGER_FORMAT,
			    json_integer_value(
			        json_object_get(r, "partition")));
			prom_int(p, "paykit_kafka_consumer_lag",
			    "End offset less the group's committed offset.",
			    inum(r, "lag"), "group", k, "topic",
			    str(r, "topic"), "partition", part, NULL);
		}
	}
}

static void
p_health(struct prom *p, const json_t *s)
{
	const char *k;
	json_t *d;
	double v;

	json_object_foreach((json_t *)s, k, d)
	{
		prom_int(p, "paykit_up", "1 when the dependency answered.",
		    json_is_true(json_object_get(d, "up")), "dependency", k,
		    NULL);
		if (num(d, "rtt_ms", &v))
			prom_real(p, "paykit_rtt_seconds",
			    "Round-trip time of the dependency's probe.",
			    v / 1000.0, "dependency", k, NULL);
	}
}

/* Which checks ran: those whose section answered and that were asked. */
static void
p_checks(struct prom *p, const json_t *report)
{
	const json_t *fc = json_object_get(report, "failed_checks");
	const json_t *led = json_object_get(report, "ledger");
	const json_t *out = json_object_get(report, "outbox");
	const json_t *kq = json_object_get(report, "kafka");
	bool ran[CHK_COUNT] = { !failed(led), !failed(led),
		!failed(out) &&
		    json_is_number(json_object_get(out, "max_age_s")),
		!failed(kq) &&
		    json_is_integer(json_object_get(kq, "max_lag")) };
	const json_t *c;
	bool bad;
	size_t i, j;

	for (i = 0; i < CHK_COUNT; i++) {
		if (!ran[i])
			continue;
		bad = false;
		json_array_foreach(fc, j, c)
		{
			if (strcmp(json_string_value(c), dbstat_checks[i]) == 0)
				bad = true;
		}
		prom_int(p, "paykit_dbstat_check_failed",
		    "1 when a dbstat check failed.", bad, "check",
		    dbstat_checks[i], NULL);
	}
}

int
render_prom(const json_t *report, FILE *fp)
{
	static void (*const fn[SEC_COUNT])(
	    struct prom *, const json_t *) = { p_payments, p_outbox, NULL, NULL,
		p_ledger, p_breakers, p_kafka, p_health };
	struct prom *p = prom_new();
	const json_t *s;
	double v = 0;
	int i, rc;

	prom_int(p, "paykit_dbstat_exit_code", "dbstat's exit status.",
	    inum(report, "exit_code"), NULL);
	num(report, "elapsed_ms", &v);
	prom_real(p, "paykit_dbstat_duration_seconds", "How long dbstat took.",
	    v / 1000.0, NULL);
	p_checks(p, report);
	for (i = 0; i < SEC_COUNT; i++) {
		s = json_object_get(report, dbstat_sections[i]);
		if (s == NULL)
			continue;
		prom_int(p, "paykit_dbstat_section_error",
		    "1 when a section could not be read.", failed(s), "section",
		    dbstat_sections[i], NULL);
		if (failed(s))
			continue;
		if (i == SEC_SETTLEMENT || i == SEC_REFUND)
			p_requests(p, dbstat_sections[i], s);
		else
			fn[i](p, s);
	}
	rc = prom_write(p, fp);
	prom_free(p);
	return rc;
}
