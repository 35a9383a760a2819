/*
 * cbtest: the Kafka outage scenario, run against whatever stack is
 * configured.  Healthy authorizations are published; Kafka is stopped;
 * more authorizations must still succeed (the outbox holds their events)
 * while the relay's failures open the kafka breaker; Kafka is started; the
 * breaker must go HALF_OPEN and then CLOSED under recovery traffic; and
 * every event of every payment made meanwhile must be read back from
 * Kafka.  The breaker's transitions are read from its event log, so a
 * short HALF_OPEN is not missed between two polls.
 *
 * cbtest drives payctl authorize and observes; an outbox-relay must be
 * running against the same database and Kafka.
 */
#include "breaker.h"
#include "clock.h"
#include "conf.h"
#include "db.h"
#include "diag.h"
#include "js.h"
#include "kq.h"
#include "topics.h"

#include <errno.h>
#include <getopt.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char usage_text[] =
    "usage: cbtest [-hV] [-n healthy] [-m outage] [-b name] [-o file]\n"
    "              [--kafka-stop command] [--kafka-start command]\n"
    "              [--open-state-wait seconds] [--recovery-ready-checks n]\n"
    "              [--recovery-traffic-attempts n] [--recovery-wait seconds]\n"
    "              [--drain-wait seconds] [--reset] [-X key=value]\n";

struct opts {
	long long healthy, outage;
	const char *breaker, *report;
	const char *stop_cmd, *start_cmd;
	long long open_wait, ready_checks, traffic_attempts, recovery_wait;
	long long drain_wait;
	bool reset;
};

struct run {
	struct opts o;
	struct db *db;
	int64_t *payments;
	size_t npayments;
	long long t0;
	int64_t first_event; /* breaker_event id before the scenario */
	json_t *phases;
};

static const char read_state[] =
    "SELECT state FROM breaker_state WHERE name = ?";
static const char last_event[] =
    "SELECT COALESCE(MAX(id), 0) FROM breaker_event WHERE name = ?";
static const char events_since[] =
    "SELECT from_state, to_state, reason,"
    " DATE_FORMAT(at, '%Y-%m-%dT%H:%i:%s.%fZ'),"
    " TIMESTAMPDIFF(MICROSECOND, (SELECT MIN(at) FROM breaker_event"
    "  WHERE name = ? AND id > ?), at) DIV 1000"
    " FROM breaker_event WHERE name = ? AND id > ? ORDER BY id";
static const char db_now[] =
    "SELECT DATE_FORMAT(NOW(6), '%Y-%m-%d %H:%i:%s.%f')";
/* Milliseconds from a DB time to the first transition to a state after it. */
static const char transition_after[] =
    "SELECT TIMESTAMPDIFF(MICROSECOND, ?, MIN(at)) DIV 1000 FROM breaker_event"
    " WHERE name = ? AND id > ? AND to_state = ? AND at >= ?";
static const char pending_of[] =
    "SELECT COUNT(*) FROM outbox_event WHERE aggregate_id = ?"
    " AND status <> 'PUBLISHED'";
static const char events_of[] =
    "SELECT event_key, event_type FROM outbox_event WHERE aggregate_id = ?";

static void
pause_ms(long long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Run a shell command; its exit status, or -1 when it could not run. */
static int
shell(const char *cmd)
{
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	pid_t pid;
	int st;

	if (posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ) != 0)
		return -1;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * One authorization through payctl, as an operator would make it.  Returns
 * the payment id, or 0 (with the reason printed) when it did not succeed.
 */
static int64_t
authorize(struct run *r, const char *phase, long long i)
{
	char key[96], cmd[256], line[4096];
	int64_t id = 0;
	json_t *o;
	FILE *fp;
	int st;

	snprintf(key, sizeof(key), "cbtest-%s-%lld-%ld-%lld", phase,
	    (long long)time(NULL), (long)getpid(), i);
	snprintf(cmd, sizeof(cmd),
	    "payctl authorize --merchant CBTEST_%s_%lld --amount 50000 "
	    "--currency KRW --idempotency-key %s",
	    phase, i + 1, key);
	if ((fp = popen(cmd, "r")) == NULL)
		return 0;
	if (fgets(line, sizeof(line), fp) != NULL &&
	    (o = json_loads(line, 0, NULL)) != NULL) {
		if (json_is_integer(json_object_get(o, "payment_id")) &&
		    json_object_get(o, "error") == NULL)
			id = json_integer_value(
			    json_object_get(o, "payment_id"));
		json_decref(o);
	}
	st = pclose(fp);
	if (st != 0 || id == 0) {
		diag_warn("authorization '%s' failed (payctl exit %d)", key,
		    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		return 0;
	}
	r->payments =
	    xrealloc(r->payments, (r->npayments + 1) * sizeof(*r->payments));
	r->payments[r->npayments++] = id;
	return id;
}

static const char *
state(struct run *r)
{
	static char buf[16];

	snprintf(buf, sizeof(buf), "%s", "UNKNOWN");
	if (db_query(r->db, read_state, "s", r->o.breaker) == 0 &&
	    db_next(r->db) == 1)
		snprintf(buf, sizeof(buf), "%s", db_str(r->db, 0));
	while (db_next(r->db) > 0)
		;
	return buf;
}

/* Poll the breaker's state until it is one of want; ms taken or -1. */
static long long
wait_state(
    struct run *r, const char *want1, const char *want2, long long timeout_ms)
{
	long long start = clock_mono_ms();
	const char *s;

	for (;;) {
		s = state(r);
		if (strcmp(s, want1) == 0 || (want2 && strcmp(s, want2) == 0))
			return clock_mono_ms() - start;
		if (clock_mono_ms() - start > timeout_ms)
			return -1;
		pause_ms(100);
	}
}

/* The database's clock now, for timings that processes' clocks would skew. */
static void
db_clock(struct run *r, char out[32])
{
	out[0] = '\0';
	if (db_query(r->db, db_now, "") == 0 && db_next(r->db) == 1)
		snprintf(out, 32, "%s", db_str(r->db, 0));
	while (db_next(r->db) > 0)
		;
}

/* ms from since (a DB time) to the breaker's first move to state, or -1. */
static long long
took(struct run *r, const char *since, const char *state)
{
	long long ms = -1;

	if (db_query(r->db, transition_after, "ssiss", since, r->o.breaker,
	        r->first_event, state, since) == 0 &&
	    db_next(r->db) == 1 && !db_null(r->db, 0))
		ms = db_int(r->db, 0);
	while (db_next(r->db) > 0)
		;
	return ms;
}

static long long
pending(struct run *r)
{
	long long n = 0;
	size_t i;

	for (i = 0; i < r->npayments; i++) {
		if (db_query(r->db, pending_of, "i", r->payments[i]) == 0 &&
		    db_next(r->db) == 1)
			n += db_int(r->db, 0);
		while (db_next(r->db) > 0)
			;
	}
	return n;
}

static void
phase(struct run *r, const char *name, long long start, long long ok,
    long long tried)
{
	json_array_append_new(r->phases,
	    json_pack("{s:s, s:I, s:I, s:I, s:s}", "name", name, "ms",
	        (json_int_t)(clock_mono_ms() - start), "authorizations",
	        (json_int_t)tried, "succeeded", (json_int_t)ok, "breaker",
	        state(r)));
	diag_info(0, "%s: %lld of %lld authorizations, breaker %s", name, ok,
	    tried, state(r));
}

/* The transitions since the scenario began, oldest first. */
static json_t *
transitions(struct run *r, bool *cycle)
{
	static const char *const want[] = { "OPEN", "HALF_OPEN", "CLOSED" };
	json_t *a = json_array();
	size_t seen = 0;

	*cycle = false;
	if (db_query(r->db, events_since, "sisi", r->o.breaker, r->first_event,
	        r->o.breaker, r->first_event) != 0)
		return a;
	while (db_next(r->db) == 1) {
		json_array_append_new(a,
		    json_pack("{s:s, s:s, s:s, s:s, s:I}", "from",
		        db_str(r->db, 0), "to", db_str(r->db, 1), "reason",
		        db_str(r->db, 2), "at", db_str(r->db, 3), "after_ms",
		        (json_int_t)db_int(r->db, 4)));
		if (seen < 3 && strcmp(db_str(r->db, 1), want[seen]) == 0)
			seen++;
	}
	*cycle = seen == 3;
	return a;
}

/*
 * Read every partition of the topics the test's events went to, from the
 * start, and count the test's eventIds found.  Returns the number of
 * expected events not seen, or -1 when Kafka could not be read.
 */
static long long
lost_events(struct run *r, long long *expected)
{
	char err[512], group[64], **keys = NULL;
	const char **topics = NULL;
	rd_kafka_topic_partition_list_t *parts;
	const struct rd_kafka_metadata *md;
	rd_kafka_conf_t *conf;
	rd_kafka_message_t *m;
	rd_kafka_t *rk;
	size_t nkeys = 0, ntopics = 0, i, j, k;
	bool *seen;
	long long lost = 0, deadline;
	int64_t lo, hi;
	const void *v;
	size_t vlen;

	for (i = 0; i < r->npayments; i++) {
		if (db_query(r->db, events_of, "i", r->payments[i]) != 0)
			return -1;
		while (db_next(r->db) == 1) {
			const char *t = topics_for_event(db_str(r->db, 1));

			keys = xrealloc(keys, (nkeys + 1) * sizeof(*keys));
			keys[nkeys++] = xstrdup(db_str(r->db, 0));
			for (j = 0; t && j < ntopics; j++)
				if (strcmp(topics[j], t) == 0)
					break;
			if (t && j == ntopics) {
				topics = xrealloc(
				    topics, (ntopics + 1) * sizeof(*topics));
				topics[ntopics++] = t;
			}
		}
	}
	*expected = (long long)nkeys;
	seen = xcalloc(nkeys + 1, sizeof(*seen));
	snprintf(group, sizeof(group), "cbtest-verify-%ld", (long)getpid());
	if ((conf = kq_conf("cbtest", err, sizeof(err))) == NULL ||
	    kq_set(conf, "group.id", group, err, sizeof(err)) ||
	    kq_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ||
	    (rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) ==
	        NULL) {
		diag_warn("kafka consumer: %s", err);
		return -1;
	}
	parts = rd_kafka_topic_partition_list_new(16);
	for (i = 0; i < ntopics; i++) {
		rd_kafka_topic_t *t =
		    rd_kafka_topic_new(rk, topics_name(topics[i]), NULL);

		if (rd_kafka_metadata(rk, 0, t, &md, 10000) != 0) {
			rd_kafka_topic_destroy(t);
			continue;
		}
		for (k = 0; md->topic_cnt == 1 &&
		     k < (size_t)md->topics[0].partition_cnt;
		     k++)
			rd_kafka_topic_partition_list_add(parts,
			    topics_name(topics[i]),
			    md->topics[0].partitions[k].id)
			    ->offset = RD_KAFKA_OFFSET_BEGINNING;
		rd_kafka_metadata_destroy(md);
		rd_kafka_topic_destroy(t);
	}
	/* Read each partition up to its end as it is now. */
	int left = 0;
	int64_t *ends = xcalloc((size_t)parts->cnt + 1, sizeof(*ends));

	for (k = 0; k < (size_t)parts->cnt; k++) {
		if (rd_kafka_query_watermark_offsets(rk, parts->elems[k].topic,
		        parts->elems[k].partition, &lo, &hi, 10000) != 0)
			hi = 0;
		ends[k] = hi;
		if (hi > lo)
			left++;
	}
	rd_kafka_assign(rk, parts);
	deadline = clock_mono_ms() + 60000;
	while (left > 0 && clock_mono_ms() < deadline) {
		if ((m = rd_kafka_consumer_poll(rk, 500)) == NULL)
			continue;
		if (m->err == 0) {
			rd_kafka_headers_t *h = NULL;

			if (rd_kafka_message_headers(m, &h) == 0 &&
			    rd_kafka_header_get_last(h, "eventId", &v, &vlen) ==
			        0)
				for (i = 0; i < nkeys; i++)
					if (!seen[i] &&
					    strlen(keys[i]) == vlen &&
					    memcmp(keys[i], v, vlen) == 0)
						seen[i] = true;
			for (k = 0; k < (size_t)parts->cnt; k++)
				if (strcmp(parts->elems[k].topic,
				        rd_kafka_topic_name(m->rkt)) == 0 &&
				    parts->elems[k].partition == m->partition &&
				    m->offset + 1 == ends[k])
					left--;
		}
		rd_kafka_message_destroy(m);
	}
	for (i = 0; i < nkeys; i++) {
		lost += !seen[i];
		free(keys[i]);
	}
	free(ends);
	free(keys);
	free(topics);
	free(seen);
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return lost;
}

static int
scenario(struct run *r)
{
	long long i, ok, start, t_open = -1, t_closed = -1, expected = 0, lost;
	long long recovery_ok = 0, recovery_tried = 0;
	bool cycle, recovered = false;
	char stopped_at[32], started_at[32];
	const char *final;
	json_t *rep;
	int rc;

	/* 1. healthy traffic, each event published. */
	start = clock_mono_ms();
	for (i = ok = 0; i < r->o.healthy; i++)
		ok += authorize(r, "NORMAL_TEST", i) != 0;
	while (
	    pending(r) > 0 && clock_mono_ms() - start < r->o.drain_wait * 1000)
		pause_ms(100);
	phase(r, "healthy", start, ok, r->o.healthy);
	if (ok != r->o.healthy || pending(r) > 0) {
		diag_warn("healthy phase: %lld of %lld authorized, %lld events "
		          "unpublished",
		    ok, r->o.healthy, pending(r));
		return EX_MISMATCH;
	}

	/* 2-3. Kafka down: authorizations go on, the breaker opens. */
	start = clock_mono_ms();
	db_clock(r, stopped_at);
	if ((rc = shell(r->o.stop_cmd)) != 0) {
		diag_warn("kafka stop command '%s' failed (exit %d)",
		    r->o.stop_cmd, rc);
		return EX_UNAVAILABLE;
	}
	for (i = ok = 0; i < r->o.outage; i++)
		ok += authorize(r, "SLOW_TEST", i) != 0;
	if (wait_state(r, "OPEN", NULL,
	        r->o.open_wait * 1000 - (clock_mono_ms() - start)) >= 0)
		t_open = took(r, stopped_at, "OPEN");
	phase(r, "outage", start, ok, r->o.outage);

	/* 4-5. Kafka back: HALF_OPEN, then CLOSED under recovery traffic. */
	start = clock_mono_ms();
	db_clock(r, started_at);
	if ((rc = shell(r->o.start_cmd)) != 0) {
		diag_warn("kafka start command '%s' failed (exit %d)",
		    r->o.start_cmd, rc);
		return EX_UNAVAILABLE;
	}
	wait_state(r, "HALF_OPEN", "CLOSED",
	    r->o.ready_checks * r->o.recovery_wait * 1000);
	for (i = 0; i < r->o.traffic_attempts; i++) {
		recovery_tried++;
		recovery_ok += authorize(r, "RECOVERY_TEST", i) != 0;
		if (wait_state(r, "CLOSED", NULL, r->o.recovery_wait * 1000) >=
		    0) {
			recovered = true;
			break;
		}
	}
	if (recovered)
		t_closed = took(r, started_at, "CLOSED");
	phase(r, "recovery", start, recovery_ok, recovery_tried);

	/* 6. nothing lost. */
	start = clock_mono_ms();
	while (
	    pending(r) > 0 && clock_mono_ms() - start < r->o.drain_wait * 1000)
		pause_ms(100);
	lost = lost_events(r, &expected);
	final = state(r);
	rep = json_pack("{s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:s}",
	    "breaker", r->o.breaker, "phases", r->phases, "transitions",
	    transitions(r, &cycle), "time_to_open_ms", (json_int_t)t_open,
	    "time_to_closed_ms", (json_int_t)t_closed, "payments",
	    (json_int_t)r->npayments, "events_expected", (json_int_t)expected,
	    "events_lost", (json_int_t)(lost < 0 ? expected : lost),
	    "outbox_pending", (json_int_t)pending(r), "final_state", final);
	r->phases = NULL;
	json_object_set_new(
	    rep, "outage_authorizations_ok", json_boolean(ok == r->o.outage));
	json_object_set_new(rep, "recovery_ok",
	    json_boolean(recovered && recovery_ok == recovery_tried));
	json_object_set_new(rep, "cycle_seen", json_boolean(cycle));
	json_object_set_new(
	    rep, "total_ms", json_integer(clock_mono_ms() - r->t0));
	bool pass = strcmp(final, "CLOSED") == 0 && recovered &&
	    recovery_ok == recovery_tried && cycle && lost == 0 &&
	    ok == r->o.outage &&
	    json_integer_value(json_object_get(rep, "outbox_pending")) == 0;
	json_object_set_new(rep, "pass", json_boolean(pass));
	if (r->o.report != NULL && json_dump_file(rep, r->o.report, 0) != 0)
		diag_warn(
		    "write report '%s': %s", r->o.report, strerror(errno));
	if ((rc = js_print(rep)) != 0)
		return rc;
	return pass ? 0 : EX_MISMATCH;
}

static long long
num_opt(const char *name, const char *v, long long min, long long max)
{
	long long n;

	if (conf_parse_int(v, min, max, &n) != 0)
		exit(diag_usage("%s '%s': not a number from %lld to %lld", name,
		    v, min, max));
	return n;
}

/* Environment (the original script's names), then the default. */
static long long
num_env(const char *env, long long def, long long max)
{
	const char *v = getenv(env);
	long long n;

	if (v == NULL || *v == '\0')
		return def;
	if (conf_parse_int(v, 0, max, &n) != 0)
		diag_die(EX_CONFIG,
		    "setting '%s': '%s' is not a number from 0 "
		    "to %lld",
		    env, v, max);
	return n;
}

/* A command or a file name: not empty. */
static const char *
text_opt(const char *opt, const char *v)
{
	if (*v == '\0')
		exit(diag_usage("option '%s': must not be empty", opt));
	return v;
}

static const char *
str_env(const char *env, const char *def)
{
	const char *v = getenv(env);

	return v && *v ? v : def;
}

static void
parse(int argc, char **argv, struct opts *o)
{
	enum { STOP = 256, START, OPEN, READY, ATTEMPTS, WAIT, DRAIN, RESET };
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "healthy", required_argument, NULL, 'n' },
		{ "outage", required_argument, NULL, 'm' },
		{ "breaker", required_argument, NULL, 'b' },
		{ "report", required_argument, NULL, 'o' },
		{ "property", required_argument, NULL, 'X' },
		{ "kafka-stop", required_argument, NULL, STOP },
		{ "kafka-start", required_argument, NULL, START },
		{ "open-state-wait", required_argument, NULL, OPEN },
		{ "recovery-ready-checks", required_argument, NULL, READY },
		{ "recovery-traffic-attempts", required_argument, NULL,
		    ATTEMPTS },
		{ "recovery-wait", required_argument, NULL, WAIT },
		{ "drain-wait", required_argument, NULL, DRAIN },
		{ "reset", no_argument, NULL, RESET },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->healthy = 5;
	o->outage = 15;
	o->breaker = "kafka";
	o->stop_cmd = str_env("PAY_CBTEST_KAFKA_STOP", "devstack kafka-down");
	o->start_cmd = str_env("PAY_CBTEST_KAFKA_START", "devstack kafka-up");
	o->open_wait = num_env("OPEN_STATE_WAIT_SECONDS", 20, 3600);
	o->ready_checks = num_env("RECOVERY_READY_CHECKS", 20, 1000);
	o->traffic_attempts = num_env("RECOVERY_TRAFFIC_ATTEMPTS", 12, 1000);
	o->recovery_wait = num_env("RECOVERY_WAIT_SECONDS", 2, 3600);
	o->drain_wait = 30;
	while ((c = getopt_long(argc, argv, ":hVn:m:b:o:X:", longopts, NULL)) !=
	    -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			exit(diag_close_stdout());
		case 'V':
			diag_version();
			exit(diag_close_stdout());
		case 'n':
			o->healthy = num_opt("--healthy", optarg, 1, 10000);
			break;
		case 'm':
			o->outage = num_opt("--outage", optarg, 1, 10000);
			break;
		case 'b':
			if (!breaker_name_ok(optarg))
				exit(diag_usage(
				    "option '--breaker': '%s' is not "
				    "1 to 32 of a-z 0-9 _ - .",
				    optarg));
			o->breaker = optarg;
			break;
		case 'o':
			o->report = text_opt("--report", optarg);
			break;
		case 'X':
			if (conf_kafka_prop(optarg) != 0)
				exit(diag_usage("option '-X': '%s' is not "
				                "key=value",
				    optarg));
			break;
		case STOP:
			o->stop_cmd = text_opt("--kafka-stop", optarg);
			break;
		case START:
			o->start_cmd = text_opt("--kafka-start", optarg);
			break;
		case OPEN:
			o->open_wait =
			    num_opt("--open-state-wait", optarg, 1, 3600);
			break;
		case READY:
			o->ready_checks =
			    num_opt("--recovery-ready-checks", optarg, 1, 1000);
			break;
		case ATTEMPTS:
			o->traffic_attempts = num_opt(
			    "--recovery-traffic-attempts", optarg, 1, 1000);
			break;
		case WAIT:
			o->recovery_wait =
			    num_opt("--recovery-wait", optarg, 1, 3600);
			break;
		case DRAIN:
			o->drain_wait =
			    num_opt("--drain-wait", optarg, 1, 3600);
			break;
		case RESET:
			o->reset = true;
			break;
		default:
			exit(diag_badopt(c, argv));
		}
	}
	if (optind < argc)
		exit(diag_usage("unexpected argument '%s'", argv[optind]));
}

int
main(int argc, char **argv)
{
	struct run r = { 0 };
	char msg[512];
	int rc;

	diag_init(argv[0]);
	diag_ignore_sigpipe();
	parse(argc, argv, &r.o);
	if ((rc = conf_load()) != 0)
		return rc;
	r.db = db_connect(NULL, &rc, msg, sizeof(msg));
	if (r.db == NULL) {
		diag_warn("connect to '%s:%lld': %s", conf_str("db_host"),
		    conf_int("db_port"), msg);
		return rc;
	}
	if (r.o.reset &&
	    (rc = breaker_set(r.db, r.o.breaker, BREAKER_CLOSED,
	         "operator: cbtest --reset")) != 0) {
		diag_warn(
		    "reset breaker '%s': %s", r.o.breaker, db_error(r.db));
		db_close(r.db);
		return rc;
	}
	if (strcmp(state(&r), "CLOSED") != 0) {
		diag_warn("breaker '%s' is %s, not CLOSED: run 'payctl breaker "
		          "%s reset' or pass --reset",
		    r.o.breaker, state(&r), r.o.breaker);
		db_close(r.db);
		return EX_MISMATCH;
	}
	if (db_query(r.db, last_event, "s", r.o.breaker) == 0 &&
	    db_next(r.db) == 1)
		r.first_event = db_int(r.db, 0);
	while (db_next(r.db) > 0)
		;
	r.t0 = clock_mono_ms();
	r.phases = json_array();
	rc = scenario(&r);
	json_decref(r.phases);
	free(r.payments);
	db_close(r.db);
	if (diag_close_stdout() != 0 && rc == 0)
		rc = EX_IOERR;
	return rc;
}
