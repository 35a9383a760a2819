/*
 * worker: see worker.h.  This file holds the options and main;
 * worker_jobs.c the gateway jobs.
 */
#include "worker.h"
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "topics.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONCURRENCY_MAX 4096

void
worker_copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* What the command line asks for. */
struct args {
	bool retry_due;
	long long purge_ms; /* -1: no purge */
	char *group_key, *concurrency_key;
};

/* The options of d: those about gateway jobs only when it has some. */
static void
options(const struct worker_def *d, struct option *out, char *optstring)
{
	static const struct option all[] = {
		{ "concurrency", required_argument, NULL, 'c' },
		{ "group", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ "max-messages", required_argument, NULL, 'n' },
		{ "once", no_argument, NULL, 'o' },
		{ "purge-older-than", required_argument, NULL, 'P' },
		{ "retry-due", no_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	size_t i, n = 0;

	for (i = 0; all[i].name != NULL; i++)
		if (d->jobs != NULL || (all[i].val != 'c' && all[i].val != 'r'))
			out[n++] = all[i];
	memset(&out[n], 0, sizeof(out[n]));
	snprintf(optstring, 16, "%s",
	    d->jobs != NULL ? ":c:g:hn:P:vVX:" : ":g:hn:P:vVX:");
}

/* -1 to go on, or the exit code. */
static int
parse(int argc, char **argv, const struct worker_def *d, struct args *a,
    struct consumer_opts *o)
{
	struct option opts[12];
	char optstring[16];
	long long n;
	int c;

	options(d, opts, optstring);
	while ((c = getopt_long(argc, argv, optstring, opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (conf_parse_int(optarg, 1, CONCURRENCY_MAX, &n) != 0)
				return diag_usage(
				    "option '--concurrency': '%s' "
				    "is not a count from 1 to %d",
				    optarg, CONCURRENCY_MAX);
			conf_set_flag(a->concurrency_key, optarg);
			break;
		case 'g':
			if (*optarg == '\0')
				return diag_usage(
				    "option '--group': must not be empty");
			conf_set_flag(a->group_key, optarg);
			break;
		case 'h':
			fputs(d->usage, stdout);
			return diag_close_stdout();
		case 'n':
			if (conf_parse_int(optarg, 1, 1000000000000LL, &n) != 0)
				return diag_usage("option '--max-messages': "
				                  "'%s' is not a count",
				    optarg);
			o->max_messages = n;
			break;
		case 'o':
			o->once = true;
			break;
		case 'P':
			if (conf_parse_duration(optarg, &a->purge_ms) != 0 ||
			    a->purge_ms > 36500 * 86400000LL)
				return diag_usage(
				    "option '--purge-older-than': "
				    "'%s' is not a duration such "
				    "as 7d",
				    optarg);
			break;
		case 'r':
			a->retry_due = true;
			break;
		case 'v':
			diag_verbose++;
			break;
		case 'V':
			diag_version();
			return diag_close_stdout();
		case 'X':
			if (conf_kafka_prop(optarg) != 0)
				return diag_usage("option '-X': '%s' is not "
				                  "key=value",
				    optarg);
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	if (a->retry_due && (o->once || o->max_messages > 0))
		return diag_usage("'--retry-due' cannot be combined with "
		                  "'--once' or '--max-messages'");
	if (a->purge_ms >= 0 &&
	    (o->once || o->max_messages > 0 || a->retry_due))
		return diag_usage("option '--purge-older-than' does not go "
		                  "with '--%s'",
		    o->once            ? "once"
		        : a->retry_due ? "retry-due"
		                       : "max-messages");
	return -1;
}

/* --purge-older-than: the retention of processed_event. */
static int
purge(struct db *db, const char *name, long long age_ms)
{
	uint64_t n;
	int rc = consumer_purge(db, name, age_ms, &n);

	if (js_print(json_pack("{s:I}", "purged", (json_int_t)n)) != 0 &&
	    rc == 0)
		rc = EX_IOERR;
	if (diag_close_stdout() != 0 && rc == 0)
		rc = EX_IOERR;
	return rc;
}

static void
committed(void *arg)
{
	worker_jobs_kick();
}

/* The consumer loop, with the gateway jobs around it when d has some. */
static int
run(const struct worker_def *d, struct consumer_opts *o, long concurrency,
    struct db **db)
{
	bool daemon = d->jobs != NULL && !o->once && o->max_messages == 0;
	int rc, prc = 0;

	/* A daemon calls the gateway all along; --once and -n at the end. */
	if (daemon &&
	    (rc = worker_jobs_start(d->jobs, d->prefix, concurrency, false)) !=
	        0)
		return rc;
	rc = consumer_run(o, db);
	if (daemon)
		prc = worker_jobs_wait();
	else if (d->jobs != NULL && rc == 0 && !consumer_stopping() &&
	    (prc = worker_jobs_start(d->jobs, d->prefix, concurrency, true)) ==
	        0)
		prc = worker_jobs_wait();
	return rc ? rc : prc;
}

static int
main_loaded(
    const struct worker_def *d, const struct args *a, struct consumer_opts *o)
{
	long concurrency = 0;
	struct db *db;
	size_t i;
	int rc;

	if (*conf_str(a->group_key) == '\0') {
		diag_warn("setting '%s' must not be empty", a->group_key);
		return EX_CONFIG;
	}
	o->group = conf_str(a->group_key);
	if (d->jobs != NULL)
		concurrency = (long)conf_int(a->concurrency_key);
	/* A consumer_batch setting beats the program's own batch size. */
	if (conf_source("consumer_batch") != CONF_DEFAULT)
		o->batch = 0;
	/* Fill the topic-name cache before any thread reads it. */
	for (i = 0; i < o->ntopics; i++)
		topics_name(o->topics[i].topic);
	consumer_signals();
	if ((db = consumer_connect(&rc)) == NULL)
		return rc;
	if (a->purge_ms >= 0) {
		rc = purge(db, o->name, a->purge_ms);
		db_close(db);
		return rc;
	}
	if (d->jobs != NULL && (rc = worker_jobs_open()) != 0) {
		db_close(db);
		return rc;
	}
	if (a->retry_due) {
		if ((rc = worker_jobs_start(
		         d->jobs, d->prefix, concurrency, true)) == 0)
			rc = worker_jobs_wait();
	} else {
		rc = run(d, o, concurrency, &db);
	}
	if (consumer_signal() != 0)
		diag_warn("stopped on %s",
		    consumer_signal() == SIGTERM ? "SIGTERM" : "SIGINT");
	if (d->jobs != NULL)
		worker_jobs_close();
	db_close(db);
	return rc;
}

int
worker_main(int argc, char **argv, const struct worker_def *d)
{
	struct consumer_opts o = d->consumer;
	struct args a = { .purge_ms = -1 };
	int rc;

	diag_init(argv[0]);
	diag_ignore_sigpipe();
	a.group_key = xasprintf("%s_group", d->prefix);
	a.concurrency_key = xasprintf("%s_concurrency", d->prefix);
	if (d->jobs != NULL)
		o.committed = committed;
	if ((rc = parse(argc, argv, d, &a, &o)) < 0 && (rc = conf_load()) == 0)
		rc = main_loaded(d, &a, &o);
	free(a.group_key);
	free(a.concurrency_key);
	return rc;
}
