/*
 * loadgen: an open-model load generator for paykit.  It drives the real
 * operator path, payctl's stream modes run as child processes, at a
 * constant or ramping arrival rate scheduled from an absolute timeline,
 * records latency both as service time and from each iteration's intended
 * start (no coordinated omission), checks k6-style thresholds and writes a
 * k6-like end-of-test summary.  The run itself is lib/lg_run.c; this file
 * reads the options and reports.
 */
#include "conf.h"
#include "db.h"
#include "diag.h"
#include "lg_echo.h"
#include "lg_metrics.h"
#include "lg_run.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EX_THRESHOLD 99

static const char usage_text[] =
    "usage: loadgen [-hqV] [-S scenario] [-r rate] [-d duration]"
    " [-s duration:target]\n"
    "               [-R start-rate] [-c max-inflight] [-n targets]"
    " [-T command]\n"
    "               [--capture-target command] [--refund-target command]\n"
    "               [--seed n] [--key-prefix prefix] [--timeout duration]\n"
    "               [--grace duration] [--poll-interval duration]\n"
    "               [--ledger-rows n] [-t metric:expr] [--abort-on-fail]\n"
    "               [--dry-run] [-o file]\n"
    "       loadgen --echo-target [--delay-ms n] [--fail-every n]\n";

enum {
	O_CAPTURE_TARGET = 256,
	O_REFUND_TARGET,
	O_SEED,
	O_KEY_PREFIX,
	O_TIMEOUT,
	O_GRACE,
	O_POLL,
	O_LEDGER_ROWS,
	O_ABORT,
	O_ECHO,
	O_DELAY,
	O_FAIL_EVERY,
	O_DRY_RUN
};

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "scenario", required_argument, NULL, 'S' },
	{ "rate", required_argument, NULL, 'r' },
	{ "duration", required_argument, NULL, 'd' },
	{ "stage", required_argument, NULL, 's' },
	{ "start-rate", required_argument, NULL, 'R' },
	{ "max-inflight", required_argument, NULL, 'c' },
	{ "targets", required_argument, NULL, 'n' },
	{ "target", required_argument, NULL, 'T' },
	{ "capture-target", required_argument, NULL, O_CAPTURE_TARGET },
	{ "refund-target", required_argument, NULL, O_REFUND_TARGET },
	{ "seed", required_argument, NULL, O_SEED },
	{ "key-prefix", required_argument, NULL, O_KEY_PREFIX },
	{ "timeout", required_argument, NULL, O_TIMEOUT },
	{ "grace", required_argument, NULL, O_GRACE },
	{ "poll-interval", required_argument, NULL, O_POLL },
	{ "ledger-rows", required_argument, NULL, O_LEDGER_ROWS },
	{ "threshold", required_argument, NULL, 't' },
	{ "abort-on-fail", no_argument, NULL, O_ABORT },
	{ "summary-export", required_argument, NULL, 'o' },
	{ "dry-run", no_argument, NULL, O_DRY_RUN },
	{ "echo-target", no_argument, NULL, O_ECHO },
	{ "delay-ms", required_argument, NULL, O_DELAY },
	{ "fail-every", required_argument, NULL, O_FAIL_EVERY },
	{ NULL, 0, NULL, 0 },
};

struct args {
	struct lg_opts o;
	const char *summary_file;
	const char **thresholds;
	size_t nthresholds;
	double rate;
	long long duration_ms;
	bool have_rate, have_duration, have_start;
	bool echo, echo_opt, run_opt, dry_run;
	long long delay_ms, fail_every;
	char prefix[48];
};

static void
usage(FILE *fp)
{
	fputs(usage_text, fp);
}

static int
bad_value(const char *opt, const char *v, const char *what)
{
	return diag_usage("option '%s': '%s' is not %s", opt, v, what);
}

static int
int_opt(const char *opt, const char *v, long long min, long long max,
    long long *out)
{
	char what[96];

	if (conf_parse_int(v, min, max, out) == 0)
		return 0;
	snprintf(
	    what, sizeof(what), "a whole number from %lld to %lld", min, max);
	return bad_value(opt, v, what);
}

static int
dur_opt(const char *opt, const char *v, long long *ms)
{
	if (conf_parse_duration(v, ms) == 0 && *ms > 0)
		return 0;
	return bad_value(opt, v, "a duration such as 500ms, 30s or 2m");
}

static bool
prefix_ok(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= 40 &&
	    strspn(s,
	        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	        "0123456789_.-") == n;
}

/* Options that take a number or duration. */
static int
numeric(struct args *a, int c, const char *v)
{
	struct lg_opts *o = &a->o;
	long long n;
	int rc = 0;

	switch (c) {
	case 'c':
		rc = int_opt("-c", v, 1, LG_INFLIGHT_MAX, &n);
		o->max_inflight = (long)n;
		break;
	case 'n':
		rc = int_opt("-n", v, 1, LG_TARGETS_MAX, &n);
		o->ntargets = (long)n;
		break;
	case O_SEED:
		rc = int_opt("--seed", v, 0, INT64_MAX, &n);
		o->seed = (uint64_t)n;
		break;
	case O_TIMEOUT:
		rc = dur_opt("--timeout", v, &o->timeout_ms);
		break;
	case O_GRACE:
		rc = conf_parse_duration(v, &o->grace_ms) == 0
		    ? 0
		    : bad_value("--grace", v, "a duration such as 0s or 30s");
		break;
	case O_POLL:
		rc = dur_opt("--poll-interval", v, &o->poll_ms);
		break;
	case O_LEDGER_ROWS:
		rc = int_opt("--ledger-rows", v, 0, 1000, &n);
		o->ledger_rows = (long)n;
		break;
	case O_DELAY:
		rc = int_opt("--delay-ms", v, 0, 3600000, &a->delay_ms);
		break;
	case O_FAIL_EVERY:
		rc = int_opt("--fail-every", v, 0, INT64_MAX, &a->fail_every);
		break;
	}
	return rc;
}

static int
option(struct args *a, int c, const char *v)
{
	struct lg_opts *o = &a->o;
	char err[256];

	a->run_opt |= c != O_ECHO && c != O_DELAY && c != O_FAIL_EVERY;
	a->echo_opt |= c == O_DELAY || c == O_FAIL_EVERY;
	switch (c) {
	case 'q':
		o->quiet = true;
		return 0;
	case 'S':
		if ((o->scenario = lg_scenario(v)) == 0)
			return diag_usage(
			    "unknown scenario '%s' (authorize-only,"
			    " authorize-capture or full-flow)",
			    v);
		return 0;
	case 'r':
	case 'R':
		if (lg_parse_rate(
		        v, c == 'r' ? &a->rate : &o->sched.start_rate) != 0)
			return bad_value(c == 'r' ? "-r" : "-R", v,
			    "a rate from 0 to 10000000 per second");
		a->have_rate |= c == 'r';
		a->have_start |= c == 'R';
		return 0;
	case 'd':
		a->have_duration = true;
		return dur_opt("-d", v, &a->duration_ms);
	case 's':
		if (lg_sched_add_stage(&o->sched, v, err, sizeof(err)) != 0)
			return diag_usage("%s", err);
		o->ramping = true;
		return 0;
	case 'T':
		if (*v == '\0')
			return bad_value("-T", v, "a command");
		o->target = v;
		return 0;
	case O_CAPTURE_TARGET:
		if (*v == '\0')
			return bad_value("--capture-target", v, "a command");
		o->capture_target = v;
		return 0;
	case O_REFUND_TARGET:
		if (*v == '\0')
			return bad_value("--refund-target", v, "a command");
		o->refund_target = v;
		return 0;
	case O_KEY_PREFIX:
		if (!prefix_ok(v))
			return bad_value("--key-prefix", v,
			    "1 to 40 letters, digits, '_', '.' or '-'");
		o->key_prefix = v;
		return 0;
	case 't':
		a->thresholds = xrealloc(a->thresholds,
		    (a->nthresholds + 1) * sizeof(*a->thresholds));
		a->thresholds[a->nthresholds++] = v;
		return 0;
	case O_ABORT:
		o->abort_on_fail = true;
		return 0;
	case 'o':
		if (*v == '\0')
			return bad_value("-o", v, "a file name");
		a->summary_file = v;
		return 0;
	case O_ECHO:
		a->echo = true;
		return 0;
	case O_DRY_RUN:
		a->dry_run = true;
		return 0;
	default:
		return numeric(a, c, v);
	}
}

static void
defaults(struct args *a)
{
	struct lg_opts *o = &a->o;

	memset(a, 0, sizeof(*a));
	o->scenario = LG_AUTHORIZE_ONLY;
	o->max_inflight = 1000;
	o->ntargets = 1;
	o->target = "payctl authorize -";
	o->capture_target = "payctl capture -";
	o->refund_target = "payctl refund -";
	o->seed = 1;
	o->timeout_ms = 30000;
	o->grace_ms = 30000;
	o->poll_ms = 50;
	o->ledger_rows = 4;
	a->rate = 100;
	a->duration_ms = 10000;
}

/* Conflicts and the schedule, once every option is read. */
static int
settle_schedule(struct args *a)
{
	struct lg_opts *o = &a->o;
	static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	struct timespec ts;
	unsigned long long ms;
	char tmp[16];
	size_t n = 0, j;

	if (a->echo && a->run_opt)
		return diag_usage(
		    "--echo-target takes only --delay-ms and --fail-every");
	if (!a->echo && a->echo_opt)
		return diag_usage(
		    "--delay-ms and --fail-every need --echo-target");
	if (o->ramping && (a->have_rate || a->have_duration))
		return diag_usage("-s stages and -r/-d are two different "
		                  "executors: give one or the other");
	if (!o->ramping && a->have_start)
		return diag_usage("-R (start rate) needs -s stages");
	if (!o->ramping)
		lg_sched_constant(&o->sched, a->rate, a->duration_ms);
	lg_sched_init(&o->sched);
	if (o->key_prefix == NULL) {
		/* Unique per run, so a second run is not a replay of the first. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ms = (unsigned long long)ts.tv_sec * 1000 +
		    (unsigned long long)ts.tv_nsec / 1000000;
		do
			tmp[n++] = digits[ms % 36];
		while ((ms /= 36) > 0 && n < sizeof(tmp));
		memcpy(a->prefix, "lg-", 3);
		for (j = 0; j < n; j++)
			a->prefix[3 + j] = tmp[n - 1 - j];
		a->prefix[3 + n] = '\0';
		o->key_prefix = a->prefix;
	}
	return 0;
}

/* --dry-run: when each iteration is due, as JSON lines. */
static int
dry_run(const struct lg_sched *s)
{
	size_t hint = 0;
	uint64_t i;
	int64_t t;

	for (i = 0; (t = lg_sched_due(s, i, &hint)) >= 0; i++)
		if (printf("{\"iteration\":%llu,\"due_ms\":%.6f}\n",
		        (unsigned long long)i, (double)t / 1e6) < 0)
			break;
	return diag_close_stdout();
}

static json_t *
options_json(const struct args *a)
{
	const struct lg_opts *o = &a->o;
	json_t *j, *stages;
	size_t i;

	j = json_pack("{s:s, s:s, s:I, s:I, s:s, s:I, s:s, s:I, s:I, s:I}",
	    "scenario", lg_scenario_str(o->scenario), "executor",
	    o->ramping ? "ramping-arrival-rate" : "constant-arrival-rate",
	    "max_inflight", (json_int_t)o->max_inflight, "targets",
	    (json_int_t)o->ntargets, "target", o->target, "seed",
	    (json_int_t)o->seed, "key_prefix", o->key_prefix, "timeout_ms",
	    (json_int_t)o->timeout_ms, "grace_ms", (json_int_t)o->grace_ms,
	    "scheduled_iterations", (json_int_t)lg_sched_total(&o->sched));
	if (o->ramping) {
		stages = json_array();
		for (i = 0; i < o->sched.n; i++)
			json_array_append_new(stages,
			    json_pack("{s:I, s:f}", "duration_ms",
			        (json_int_t)o->sched.stage[i].ms, "target",
			        o->sched.stage[i].target));
		json_object_set_new(
		    j, "start_rate", json_real(o->sched.start_rate));
		json_object_set_new(j, "stages", stages);
	} else {
		json_object_set_new(j, "rate", json_real(a->rate));
		json_object_set_new(
		    j, "duration_ms", json_integer(a->duration_ms));
	}
	if (o->scenario == LG_AUTHORIZE_CAPTURE)
		json_object_set_new(
		    j, "capture_target", json_string(o->capture_target));
	if (o->scenario == LG_FULL_FLOW) {
		json_object_set_new(
		    j, "refund_target", json_string(o->refund_target));
		json_object_set_new(
		    j, "poll_interval_ms", json_integer(o->poll_ms));
		json_object_set_new(
		    j, "ledger_rows", json_integer(o->ledger_rows));
	}
	json_object_set_new(j, "summary_trend_stats",
	    json_pack("[s,s,s,s,s,s,s]", "avg", "min", "med", "max", "p(90)",
	        "p(95)", "p(99)"));
	return j;
}

static json_t *
summary_json(const struct args *a, const struct lg_metrics *ms,
    const struct lg_outcome_run *run)
{
	return json_pack("{s:o, s:o, s:o, s:{s:f, s:b, s:b}, s:o}", "metrics",
	    lg_metrics_json(ms, run->elapsed_s), "root_group",
	    lg_root_group_json(ms), "options", options_json(a), "state",
	    "testRunDurationMs", run->elapsed_s * 1000, "aborted", run->aborted,
	    "stopped", run->stopped, "outcomes", lg_outcomes_json(ms));
}

static int export(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	if (fp == NULL) {
		diag_warn("summary '%s': %m", path);
		return EX_IOERR;
	}
	if (fputs(text, fp) == EOF || fputc('\n', fp) == EOF ||
	    fclose(fp) != 0) {
		diag_warn("summary '%s': %m", path);
		return EX_IOERR;
	}
	return 0;
}

static void
describe(FILE *fp, const struct args *a)
{
	const struct lg_opts *o = &a->o;

	fprintf(fp, "%s: %s, ", diag_prog(), lg_scenario_str(o->scenario));
	if (o->ramping)
		fprintf(fp, "ramping-arrival-rate from %g/s in %zu stages",
		    o->sched.start_rate, o->sched.n);
	else
		fprintf(fp, "constant-arrival-rate %g/s for %.3gs", a->rate,
		    (double)a->duration_ms / 1000);
	fprintf(fp, ", %llu iterations, at most %ld in flight, %ld x '%s'\n",
	    (unsigned long long)lg_sched_total(&o->sched), o->max_inflight,
	    o->ntargets, o->target);
}

/* After the run: summary out, thresholds decide the exit code. */
static int
report(const struct args *a, struct lg_metrics *ms,
    const struct lg_outcome_run *run)
{
	size_t failed = lg_metrics_check(ms, run->elapsed_s);
	json_t *sum;
	char *text;
	int rc = 0;

	if (!a->o.quiet) {
		fprintf(stderr, "%s: done in %.2fs%s\n", diag_prog(),
		    run->elapsed_s,
		    run->aborted       ? " (aborted: a threshold failed)"
		        : run->stopped ? " (stopped by a signal)"
		                       : "");
		lg_metrics_print(stderr, ms, run->elapsed_s);
	}
	sum = summary_json(a, ms, run);
	text = json_dumps(sum, JSON_COMPACT | JSON_REAL_PRECISION(10));
	json_decref(sum);
	if (text == NULL)
		diag_die(EX_SOFTWARE, "cannot encode the summary");
	if (a->summary_file != NULL)
		rc = export(a->summary_file, text);
	if (puts(text) == EOF && rc == 0)
		rc = EX_IOERR;
	free(text);
	if (diag_close_stdout() != 0 && rc == 0)
		rc = EX_IOERR;
	if (rc == 0 && (failed > 0 || run->aborted)) {
		diag_warn("%zu of %zu thresholds failed", failed, ms->nth);
		rc = EX_THRESHOLD;
	}
	return rc;
}

static int
connect_db(struct db **db)
{
	char msg[512];
	int rc;

	if ((rc = conf_load()) != 0)
		return rc;
	*db = db_connect(NULL, &rc, msg, sizeof(msg));
	if (*db == NULL) {
		diag_warn("connect to '%s:%lld': %s", conf_str("db_host"),
		    conf_int("db_port"), msg);
		return rc;
	}
	return 0;
}

/* Everything after the options, so main frees the metrics on every path. */
static int
test(const struct args *a, struct lg_metrics *ms)
{
	struct lg_outcome_run run;
	struct db *db = NULL;
	char err[512];
	size_t i;
	int rc;

	for (i = 0; i < a->nthresholds; i++)
		if (lg_metrics_threshold(
		        ms, a->thresholds[i], err, sizeof(err)) != 0)
			return diag_usage("%s", err);
	if (lg_sched_total(&a->o.sched) == 0)
		return diag_usage("the schedule has no iterations (rate 0?)");
	if (a->dry_run)
		return dry_run(&a->o.sched);
	if (a->o.scenario == LG_FULL_FLOW && (rc = connect_db(&db)) != 0)
		return rc;
	if (!a->o.quiet)
		describe(stderr, a);
	if ((rc = lg_run(&a->o, ms, db, &run)) != 0)
		return rc;
	return report(a, ms, &run);
}

int
main(int argc, char **argv)
{
	static struct args a;
	struct lg_metrics ms;
	int c, rc;

	diag_init(argv[0]);
	defaults(&a);
	while ((c = getopt_long(argc, argv,
	            ":hqVS:r:d:s:R:c:n:T:t:o:", longopts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return diag_close_stdout();
		}
		if (c == 'V') {
			diag_version();
			return diag_close_stdout();
		}
		if (c == '?' || c == ':')
			return diag_badopt(c, argv);
		if ((rc = option(&a, c, optarg)) != 0)
			return rc;
	}
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	if ((rc = settle_schedule(&a)) != 0)
		return rc;
	if (a.echo)
		return lg_echo_main((long)a.delay_ms, (long)a.fail_every);
	lg_metrics_init(&ms, a.o.scenario);
	rc = test(&a, &ms);
	lg_metrics_free(&ms);
	free(a.thresholds);
	return rc;
}
