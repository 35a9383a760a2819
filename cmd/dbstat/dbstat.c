/*
 * dbstat: the operator's view of the pipeline, read-only, as one JSON
 * object, an aligned table or Prometheus metrics.  The sections run at
 * once, each job on its own database connection (the payments and ledger
 * jobs meet for the ledger check, see ledger.c), beside the Kafka and
 * gateway probes: with a core per job the answer takes about as long as the
 * slowest scan.  A section that fails carries an "error" and the rest is
 * still printed; the exit code says what went wrong.
 */
#include "conf.h"
#include "dbstat.h"
#include "diag.h"

#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: dbstat [-hkV] [-a max-outbox-age] [-f format] [-l max-lag] "
    "[-n count] [-s section[,section]] [-X key=value]\n";

const char *const dbstat_sections[SEC_COUNT] = { "payments", "outbox",
	"settlement", "refund", "ledger", "breakers", "kafka", "health" };
const char *const dbstat_checks[CHK_COUNT] = { "ledger_balance",
	"ledger_payments", "outbox_age", "kafka_lag" };

enum format { FMT_JSON, FMT_TABLE, FMT_PROM };

/* Health has one part per dependency. */
enum dep { DEP_DB, DEP_KAFKA, DEP_GATEWAY, DEP_COUNT };
static const char *const dep_names[DEP_COUNT] = { "db", "kafka", "gateway" };

static struct opts opts;
static struct result res[SEC_COUNT];
static struct result dep[DEP_COUNT];

double
dbstat_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

void
result_fail(struct result *r, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	r->code = code;
	memset(r->ran, 0, sizeof(r->ran));
	memset(r->failed, 0, sizeof(r->failed));
	json_decref(r->json);
	r->json = json_pack("{s:s}", "error", r->err);
}

void
result_down(struct result *r)
{
	json_t *o = json_pack(
	    "{s:b, s:O}", "up", 0, "error", json_object_get(r->json, "error"));

	json_decref(r->json);
	r->json = o;
}

void
result_check(struct result *r, enum check c, bool ok)
{
	r->ran[c] = true;
	r->failed[c] = !ok;
}

static bool
is_db_section(int s)
{
	return s != SEC_KAFKA && s != SEC_HEALTH;
}

/* A connection for a job, or NULL with its sections marked failed. */
static struct db *
job_connect(int s1, int s2, int s3)
{
	int sec[3] = { s1, s2, s3 }, code, i;
	char msg[400];
	struct db *db;

	if ((db = db_connect(NULL, &code, msg, sizeof(msg))) != NULL)
		return db;
	for (i = 0; i < 3; i++)
		if (sec[i] >= 0 && opts.want[sec[i]])
			result_fail(&res[sec[i]], code,
			    "connect to '%s:%lld': %s", conf_str("db_host"),
			    conf_int("db_port"), msg);
	return NULL;
}

static struct books *books;

static void *
job_payments(void *arg)
{
	struct db *db = arg;

	books_payments(db, &opts, &res[SEC_PAYMENTS], books);
	db_close(db);
	return NULL;
}

static void *
job_ledger(void *arg)
{
	struct db *db = job_connect(SEC_LEDGER, -1, -1);

	if (db != NULL) {
		books_ledger(db, &opts, &res[SEC_LEDGER], books);
		db_close(db);
	} else
		books_abort(books);
	return NULL;
}

static void *
job_outbox(void *arg)
{
	struct db *db = job_connect(SEC_OUTBOX, -1, -1);

	if (db != NULL) {
		sql_outbox(db, &opts, &res[SEC_OUTBOX]);
		db_close(db);
	}
	return NULL;
}

static void *
job_requests(void *arg)
{
	struct db *db = job_connect(SEC_SETTLEMENT, SEC_REFUND, SEC_BREAKERS);

	if (db != NULL) {
		sql_requests(db, &opts, &res[SEC_SETTLEMENT], &res[SEC_REFUND],
		    &res[SEC_BREAKERS]);
		db_close(db);
	}
	return NULL;
}

static void *
job_kafka(void *arg)
{
	net_kafka(
	    &opts, opts.want[SEC_KAFKA], &dep[DEP_KAFKA], &res[SEC_KAFKA]);
	return NULL;
}

static void *
job_gateway(void *arg)
{
	net_gateway(&opts, &dep[DEP_GATEWAY]);
	return NULL;
}

struct threads {
	pthread_t t[8];
	size_t n;
};

static void
start(struct threads *th, void *(*fn)(void *), void *arg)
{
	int e = pthread_create(&th->t[th->n], NULL, fn, arg);

	if (e != 0)
		diag_die(EX_OSERR, "start a thread: %s", strerror(e));
	th->n++;
}

/* The database: the probe on the first connection, then the jobs. */
static void
run_db(struct threads *th)
{
	double t0 = dbstat_now_ms(), connect_ms;
	char msg[400];
	struct db *db;
	int code, s;

	db = db_connect(NULL, &code, msg, sizeof(msg));
	connect_ms = dbstat_now_ms() - t0;
	if (db == NULL) {
		for (s = 0; s < SEC_COUNT; s++)
			if (is_db_section(s) && opts.want[s])
				result_fail(&res[s], code,
				    "connect to '%s:%lld': %s",
				    conf_str("db_host"), conf_int("db_port"),
				    msg);
		result_fail(&dep[DEP_DB], code, "connect to '%s:%lld': %s",
		    conf_str("db_host"), conf_int("db_port"), msg);
		result_down(&dep[DEP_DB]);
		return;
	}
	if (opts.want[SEC_HEALTH]) {
		dep[DEP_DB].json = sql_health(db, connect_ms);
		if (json_is_false(json_object_get(dep[DEP_DB].json, "up"))) {
			dep[DEP_DB].code = EX_UNAVAILABLE;
			snprintf(dep[DEP_DB].err, sizeof(dep[DEP_DB].err),
			    "database '%s': %s", db_where(db), db_error(db));
		}
	}
	if (opts.want[SEC_OUTBOX])
		start(th, job_outbox, NULL);
	if (opts.want[SEC_SETTLEMENT] || opts.want[SEC_REFUND] ||
	    opts.want[SEC_BREAKERS])
		start(th, job_requests, NULL);
	if (opts.want[SEC_PAYMENTS] || opts.want[SEC_LEDGER]) {
		books = books_new(opts.want[SEC_LEDGER]);
		if (opts.want[SEC_LEDGER])
			start(th, job_ledger, NULL);
		start(th, job_payments, db);
	} else
		db_close(db);
}

static json_t *
health_json(void)
{
	json_t *h = json_object();
	int d;

	for (d = 0; d < DEP_COUNT; d++)
		json_object_set_new(h, dep_names[d],
		    dep[d].json ? json_incref(dep[d].json) : json_null());
	return h;
}

/* The report, and the exit code it stands for. */
static json_t *
report(double elapsed_ms, int *code)
{
	json_t *r = json_object(), *failed = json_array();
	char when[40];
	struct tm tm;
	time_t now = time(NULL);
	int s, c;

	*code = 0;
	for (s = 0; s < SEC_COUNT; s++) {
		if (!opts.want[s])
			continue;
		if (res[s].code > *code)
			*code = res[s].code;
		for (c = 0; c < CHK_COUNT; c++)
			if (res[s].ran[c] && res[s].failed[c])
				json_array_append_new(
				    failed, json_string(dbstat_checks[c]));
	}
	for (s = 0; s < DEP_COUNT && opts.want[SEC_HEALTH]; s++)
		if (dep[s].code > *code)
			*code = dep[s].code;
	if (*code == 0 && json_array_size(failed) > 0)
		*code = EX_MISMATCH;
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(r, "generated_at", json_string(when));
	json_object_set_new(r, "elapsed_ms", sql_ms(elapsed_ms));
	json_object_set_new(r, "ok", json_boolean(*code == 0));
	json_object_set_new(r, "exit_code", json_integer(*code));
	json_object_set_new(r, "failed_checks", failed);
	for (s = 0; s < SEC_COUNT; s++) {
		if (!opts.want[s])
			continue;
		if (s == SEC_HEALTH)
			json_object_set_new(
			    r, dbstat_sections[s], health_json());
		else
			json_object_set_new(r, dbstat_sections[s],
			    res[s].json ? json_incref(res[s].json)
			                : json_null());
	}
	return r;
}

/* One line per distinct failure, in section order. */
static void
warn_once(const struct result *r, const char **seen, size_t *n)
{
	size_t i;

	if (r->code == 0)
		return;
	for (i = 0; i < *n; i++)
		if (strcmp(seen[i], r->err) == 0)
			return;
	seen[(*n)++] = r->err;
	diag_warn("%s", r->err);
}

static void
warnings(void)
{
	const char *seen[SEC_COUNT + DEP_COUNT];
	size_t n = 0;
	int s;

	if (opts.want[SEC_HEALTH])
		warn_once(&dep[DEP_DB], seen, &n);
	for (s = 0; s < SEC_COUNT; s++)
		if (opts.want[s] && s != SEC_HEALTH)
			warn_once(&res[s], seen, &n);
	if (opts.want[SEC_HEALTH]) {
		warn_once(&dep[DEP_KAFKA], seen, &n);
		warn_once(&dep[DEP_GATEWAY], seen, &n);
	}
}

static int
select_sections(const char *arg, bool *chosen)
{
	char *list = xstrdup(arg), *save = NULL, *name;
	int s;

	for (name = strtok_r(list, ",", &save); name != NULL;
	     name = strtok_r(NULL, ",", &save)) {
		for (s = 0; s < SEC_COUNT; s++)
			if (strcmp(name, dbstat_sections[s]) == 0)
				break;
		if (s == SEC_COUNT) {
			diag_usage("unknown section '%s'", name);
			free(list);
			return EX_USAGE;
		}
		opts.want[s] = true;
		*chosen = true;
	}
	free(list);
	if (!*chosen)
		return diag_usage("option '--section' needs a section name");
	return 0;
}

static int
parse(int argc, char **argv, enum format *fmt)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "kafka", no_argument, NULL, 'k' },
		{ "max-lag", required_argument, NULL, 'l' },
		{ "max-outbox-age", required_argument, NULL, 'a' },
		{ "recent", required_argument, NULL, 'n' },
		{ "section", required_argument, NULL, 's' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const formats[] = { "json", "table", "prom" };
	bool chosen = false, kafka = false, fmt_given = false;
	long long v;
	int c, rc, s, f;

	*fmt = isatty(STDOUT_FILENO) ? FMT_TABLE : FMT_JSON;
	opts.recent = 10;
	while (
	    (c = getopt_long(argc, argv, ":a:f:hkl:n:s:VX:", lo, NULL)) != -1) {
		switch (c) {
		case 'a':
			if (conf_parse_duration(optarg, &v) != 0)
				return diag_usage("option '--max-outbox-age': "
				                  "'%s' is not a duration such "
				                  "as 90s or 5m",
				    optarg);
			conf_set_flag("dbstat_max_outbox_age", optarg);
			break;
		case 'f':
			for (f = 0; f < 3 && strcmp(optarg, formats[f]) != 0;
			     f++)
				;
			if (f == 3)
				return diag_usage("option '--format': '%s' is "
				                  "not json, table or prom",
				    optarg);
			/* Two formats is a mistake, not "last one wins". */
			if (fmt_given && *fmt != (enum format)f)
				return diag_usage(
				    "option '--format' given twice");
			*fmt = (enum format)f;
			fmt_given = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(diag_close_stdout());
		case 'k':
			kafka = true;
			break;
		case 'l':
			if (conf_parse_int(optarg, 0, 1000000000000000LL, &v) !=
			    0)
				return diag_usage("option '--max-lag': '%s' is "
				                  "not a message count",
				    optarg);
			conf_set_flag("dbstat_max_lag", optarg);
			break;
		case 'n':
			if (conf_parse_int(optarg, 0, 1000, &opts.recent) != 0)
				return diag_usage("option '--recent': '%s' is "
				                  "not 0 to 1000",
				    optarg);
			break;
		case 's':
			if ((rc = select_sections(optarg, &chosen)) != 0)
				return rc;
			break;
		case 'V':
			diag_version();
			exit(diag_close_stdout());
		case 'X':
			if (conf_kafka_prop(optarg) != 0)
				return diag_usage(
				    "option '-X': '%s' is not key=value",
				    optarg);
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	for (s = 0; s < SEC_COUNT && !chosen; s++)
		opts.want[s] = s != SEC_KAFKA;
	if (kafka)
		opts.want[SEC_KAFKA] = true;
	return 0;
}

int
main(int argc, char **argv)
{
	struct threads th = { .n = 0 };
	double t0 = dbstat_now_ms();
	enum format fmt;
	json_t *r;
	size_t i;
	int rc, code, s;

	diag_init(argv[0]);
	diag_ignore_sigpipe();
	if ((rc = parse(argc, argv, &fmt)) != 0 || (rc = conf_load()) != 0)
		return rc;
	opts.max_outbox_age_ms = conf_ms("dbstat_max_outbox_age");
	opts.max_lag = conf_int("dbstat_max_lag");
	opts.grace_ms = conf_ms("dbstat_ledger_grace");
	opts.timeout_ms = conf_ms("dbstat_kafka_timeout");
	opts.ledger_account = conf_str("dbstat_ledger_account");
	opts.groups = conf_str("dbstat_kafka_groups");
	/* jansson's hash seed, before any thread makes an object. */
	json_object_seed(0);
	if (opts.want[SEC_HEALTH] || opts.want[SEC_KAFKA])
		start(&th, job_kafka, NULL);
	if (opts.want[SEC_HEALTH])
		start(&th, job_gateway, NULL);
	for (s = 0; s < SEC_COUNT; s++)
		if (opts.want[s] && (is_db_section(s) || s == SEC_HEALTH)) {
			run_db(&th);
			break;
		}
	for (i = 0; i < th.n; i++)
		pthread_join(th.t[i], NULL);
	warnings();
	r = report(dbstat_now_ms() - t0, &code);
	/*
	 * Reals with 15 digits read back as written (1.1, not
	 * 1.1000000000000001).  Write errors are found and reported once, by
	 * diag_close_stdout.
	 */
	if (fmt == FMT_JSON) {
		json_dumpf(r, stdout, JSON_COMPACT | JSON_REAL_PRECISION(15));
		putchar('\n');
	} else if (fmt == FMT_TABLE)
		render_table(r, stdout);
	else
		render_prom(r, stdout);
	json_decref(r);
	if (diag_close_stdout() != 0)
		return EX_IOERR;
	for (s = 0; s < SEC_COUNT; s++)
		json_decref(res[s].json);
	for (s = 0; s < DEP_COUNT; s++)
		json_decref(dep[s].json);
	books_free(books);
	return code;
}
