/*
 * payctl breaker: show the shared circuit breakers, or move one by hand
 * (force-open, disable, reset).
 */
#include "breaker.h"
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "payctl.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
    "usage: payctl breaker [-h] [-n count] [name [force-open | disable | "
    "reset]]\n";

#define ISO(col) "DATE_FORMAT(" col ", '%Y-%m-%dT%H:%i:%s.%fZ')"

static const char list_names[] = "SELECT name FROM breaker_state ORDER BY name";
static const char read_one[] = "SELECT state, not_permitted, " ISO(
    "opened_at") ", " ISO("open_until") " FROM breaker_state WHERE name = ?";
static const char recent[] = "SELECT from_state, to_state, reason, " ISO(
    "at") " FROM breaker_event WHERE name = ? ORDER BY id DESC LIMIT ?";

static json_t *
str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* The breaker's report, or NULL with rc set. */
static json_t *
report(struct db *db, const char *name, long long count, int *rc)
{
	struct breaker_conf c;
	json_t *o, *tr;
	long long ok, fail, slow, calls;

	breaker_conf(name, &c);
	if ((*rc = db_query(db, read_one, "s", name)) != 0)
		return NULL;
	if ((*rc = db_next(db)) != 1) {
		*rc = *rc < 0 ? -*rc : 0;
		return json_pack(
		    "{s:s, s:s}", "name", name, "state", "UNKNOWN");
	}
	o = json_pack("{s:s, s:s}", "name", name, "state", db_str(db, 0));
	json_object_set_new(o, "not_permitted", json_integer(db_int(db, 1)));
	json_object_set_new(o, "opened_at", str_or_null(db_str(db, 2)));
	json_object_set_new(o, "open_until", str_or_null(db_str(db, 3)));
	while (db_next(db) > 0)
		;
	if ((*rc = breaker_window(db, name, &c, &ok, &fail, &slow)) != 0) {
		json_decref(o);
		return NULL;
	}
	calls = ok + fail;
	json_object_set_new(o, "successful", json_integer(ok));
	json_object_set_new(o, "failed", json_integer(fail));
	json_object_set_new(o, "slow", json_integer(slow));
	json_object_set_new(o, "buffered_calls", json_integer(calls));
	/* Like resilience4j, no rate until the minimum number of calls. */
	json_object_set_new(o, "failure_rate",
	    calls >= c.min_calls
	        ? json_real(100.0 * (double)fail / (double)calls)
	        : json_null());
	json_object_set_new(o, "slow_call_rate",
	    calls >= c.min_calls
	        ? json_real(100.0 * (double)slow / (double)calls)
	        : json_null());
	json_object_set_new(o, "config",
	    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "window_ms",
	        (json_int_t)c.window_ms, "min_calls", (json_int_t)c.min_calls,
	        "failure_rate", (json_int_t)c.failure_rate, "slow_call_ms",
	        (json_int_t)c.slow_ms, "slow_call_rate",
	        (json_int_t)c.slow_rate, "wait_open_ms", (json_int_t)c.wait_ms,
	        "wait_open_max_ms", (json_int_t)c.wait_max_ms,
	        "half_open_calls", (json_int_t)c.half_open_calls));
	if ((*rc = db_query(db, recent, "si", name, (int64_t)count)) != 0) {
		json_decref(o);
		return NULL;
	}
	tr = json_array();
	while ((*rc = db_next(db)) == 1)
		json_array_insert_new(tr, 0,
		    json_pack("{s:s, s:s, s:s, s:s}", "from", db_str(db, 0),
		        "to", db_str(db, 1), "reason", db_str(db, 2), "at",
		        db_str(db, 3)));
	json_object_set_new(o, "transitions", tr);
	*rc = *rc < 0 ? -*rc : 0;
	return o;
}

static int
show(struct db *db, const char *name, long long count)
{
	json_t *o;
	char **all = NULL;
	size_t n = 0, i;
	int rc = 0;

	if (name != NULL) {
		if ((o = report(db, name, count, &rc)) == NULL) {
			diag_warn("read breaker '%s': %s", name, db_error(db));
			return rc;
		}
		return js_print(o);
	}
	if ((rc = db_query(db, list_names, "")) != 0) {
		diag_warn("read breakers: %s", db_error(db));
		return rc;
	}
	while (db_next(db) == 1) {
		all = xrealloc(all, (n + 1) * sizeof(*all));
		all[n++] = xstrdup(db_str(db, 0));
	}
	for (i = 0; i < n && rc == 0; i++) {
		if ((o = report(db, all[i], count, &rc)) == NULL)
			diag_warn(
			    "read breaker '%s': %s", all[i], db_error(db));
		else
			rc = js_print(o);
	}
	for (i = 0; i < n; i++)
		free(all[i]);
	free(all);
	return rc;
}

int
cmd_breaker(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "count", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct {
		const char *verb;
		enum breaker_state to;
	} verbs[] = {
		{ "force-open", BREAKER_FORCED_OPEN },
		{ "disable", BREAKER_DISABLED },
		{ "reset", BREAKER_CLOSED },
	};
	const char *name = NULL, *verb = NULL;
	long long count = 10;
	struct db *db;
	size_t i;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":hn:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'n':
			if (conf_parse_int(optarg, 0, 1000, &count) != 0)
				return diag_usage(
				    "option '--count': '%s' is not "
				    "0 to 1000",
				    optarg);
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc)
		name = argv[optind++];
	if (optind < argc)
		verb = argv[optind++];
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	if (name != NULL && !breaker_name_ok(name))
		return diag_usage(
		    "breaker name '%s': 1 to 32 of a-z 0-9 _ - .", name);
	for (i = 0; verb != NULL && i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strcmp(verbs[i].verb, verb) == 0)
			break;
	if (verb != NULL && i == sizeof(verbs) / sizeof(verbs[0]))
		return diag_usage(
		    "'%s' is not force-open, disable or reset", verb);
	if ((rc = payctl_connect(&db)) != 0)
		return rc;
	if (verb != NULL) {
		char reason[64];

		snprintf(reason, sizeof(reason), "operator: %s", verb);
		if ((rc = breaker_set(db, name, verbs[i].to, reason)) != 0) {
			diag_warn(
			    "%s breaker '%s': %s", verb, name, db_error(db));
			db_close(db);
			return rc;
		}
	}
	rc = show(db, name, count);
	db_close(db);
	return rc;
}
