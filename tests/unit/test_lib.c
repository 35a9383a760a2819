/*
 * topics, js and the error classifications of db and kq.
 */
#include "conf.h"
#include "db.h"
#include "diag.h"
#include "js.h"
#include "kq.h"
#include "outbox.h"
#include "topics.h"
#include "unit.h"

#include <mysqld_error.h>
#include <errmsg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void
maps_event_types_to_topics(void)
{
	CHECK_STR(topics_for_event(EV_AUTHORIZED), "payment.authorized");
	CHECK_STR(topics_for_event(EV_CAPTURE_REQUESTED),
	    "payment.capture-requested");
	CHECK_STR(topics_for_event(EV_CAPTURED), "payment.captured");
	CHECK_STR(
	    topics_for_event(EV_REFUND_REQUESTED), "payment.refund-requested");
	CHECK_STR(topics_for_event(EV_REFUNDED), "payment.refunded");
	CHECK_STR(
	    topics_for_event(EV_SETTLEMENT_DEAD_LETTER), "settlement.dlq");
	CHECK(topics_for_event("PAYMENT_FROBNICATED") == NULL);
}

static void
prefixes_topics(void)
{
	conf_reset();
	setenv("PAY_CONFIG", "/dev/null", 1);
	setenv("PAY_TOPIC_PREFIX", "t1.", 1);
	CHECK(conf_load() == 0);
	CHECK_STR(topics_name(TOPIC_CAPTURED), "t1.payment.captured");
	CHECK_STR(topics_name(TOPIC_CAPTURED), "t1.payment.captured");
	unsetenv("PAY_TOPIC_PREFIX");
}

static void
reads_json_fields_strictly(void)
{
	json_t *o = json_loads("{\"a\":\"x\",\"n\":5,\"s\":\"5\",\"big\":"
	                       "1000000000000001,\"z\":\"\"}",
	    0, NULL);
	const char *s = NULL;
	long long n = 0;
	char err[128];

	CHECK(js_str(o, "a", 32, true, &s, err, sizeof(err)) == 0);
	CHECK_STR(s, "x");
	CHECK(js_str(o, "n", 32, true, &s, err, sizeof(err)) == -1);
	CHECK_STR(err, "'n' must be a string");
	CHECK(js_str(o, "z", 32, true, &s, err, sizeof(err)) == -1);
	CHECK(js_str(o, "missing", 32, false, &s, err, sizeof(err)) == 1);
	CHECK(js_str(o, "missing", 32, true, &s, err, sizeof(err)) == -1);
	CHECK(js_int(o, "n", 1, 10, true, &n, err, sizeof(err)) == 0 && n == 5);
	CHECK(js_int(o, "s", 1, 10, true, &n, err, sizeof(err)) == -1);
	CHECK(js_int(o, "big", 1, 1000000000000000LL, true, &n, err,
	          sizeof(err)) == -1);
	json_decref(o);
}

static void
classifies_database_errors(void)
{
	CHECK(db_classify(ER_LOCK_DEADLOCK) == EX_TEMPFAIL);
	CHECK(db_classify(ER_LOCK_WAIT_TIMEOUT) == EX_TEMPFAIL);
	CHECK(db_classify(CR_CONN_HOST_ERROR) == EX_UNAVAILABLE);
	CHECK(db_classify(CR_SERVER_GONE_ERROR) == EX_UNAVAILABLE);
	CHECK(db_classify(ER_ACCESS_DENIED_ERROR) == EX_CONFIG);
	CHECK(db_classify(ER_BAD_DB_ERROR) == EX_CONFIG);
	CHECK(db_classify(ER_PARSE_ERROR) == EX_SOFTWARE);
}

static void
classifies_kafka_errors(void)
{
	CHECK(kq_classify(RD_KAFKA_RESP_ERR_NO_ERROR) == 0);
	CHECK(
	    kq_classify(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) == EX_UNAVAILABLE);
	CHECK(kq_classify(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) == EX_TEMPFAIL);
	CHECK(kq_classify(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) ==
	    EX_CONFIG);
}

static void
kafka_conf_refuses_bad_properties(void)
{
	rd_kafka_conf_t *c;
	char err[256];

	conf_reset();
	setenv("PAY_CONFIG", "/dev/null", 1);
	CHECK(conf_kafka_prop("no.such.property=1") == 0);
	CHECK(conf_load() == 0);
	c = kq_conf("unit", err, sizeof(err));
	CHECK(c == NULL);
	CHECK(strstr(err, "no.such.property") != NULL);
	conf_reset();
	CHECK(conf_kafka_prop("linger.ms=7") == 0);
	CHECK(conf_load() == 0);
	c = kq_conf("unit", err, sizeof(err));
	CHECK(c != NULL);
	if (c != NULL)
		rd_kafka_conf_destroy(c);
}

static void
makes_version_4_uuids(void)
{
	char u[37], prev[37] = "";
	int i, j;

	for (i = 0; i < 1000; i++) {
		outbox_uuid(u);
		CHECK(strlen(u) == 36);
		for (j = 0; j < 36; j++)
			CHECK(j == 8 || j == 13 || j == 18 || j == 23
			        ? u[j] == '-'
			        : strchr("0123456789abcdef", u[j]) != NULL);
		CHECK(u[14] == '4');
		CHECK(strchr("89ab", u[19]) != NULL);
		CHECK(strcmp(u, prev) != 0);
		memcpy(prev, u, sizeof(u));
	}
}

/* The pool of random bytes is not shared with a forked child. */
static void
forked_children_make_their_own_uuids(void)
{
	char mine[37], theirs[37] = "";
	int fd[2], status;
	pid_t pid;

	outbox_uuid(mine); /* the pool is filled before the fork */
	CHECK(pipe(fd) == 0);
	if ((pid = fork()) == 0) {
		outbox_uuid(mine);
		_exit(write(fd[1], mine, 36) == 36 ? 0 : 1);
	}
	CHECK(pid > 0);
	close(fd[1]);
	CHECK(read(fd[0], theirs, 36) == 36);
	close(fd[0]);
	CHECK(waitpid(pid, &status, 0) == pid && status == 0);
	outbox_uuid(mine);
	CHECK(strcmp(mine, theirs) != 0);
}

/* Strings jansson escapes, or might be thought to. */
static const char *const awkward[] = { "", "plain", "q\"uote", "back\\slash",
	"/slash", "\b\f\n\r\t", "\x01\x1f\x7f",
	"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xb3", "\\u0041", "APP1A2B3C4D" };

static void
writes_objects_as_jansson_dumps_them(void)
{
	struct js_out o = { 0 };
	json_t *j = json_object();
	char key[8], *a, *b;
	size_t i;

	a = js_out_end(&o);
	b = js_text(j);
	CHECK_STR(a, b);
	free(a);
	free(b);
	for (i = 0; i < sizeof(awkward) / sizeof(*awkward); i++) {
		snprintf(key, sizeof(key), "k%zu", i);
		js_out_str(&o, key, awkward[i]);
		json_object_set_new(j, key, json_string(awkward[i]));
		js_out_int(&o, awkward[i], (long long)i * -1000000007LL);
		json_object_set_new(
		    j, awkward[i], json_integer((json_int_t)i * -1000000007LL));
	}
	js_out_str(&o, "none", NULL);
	json_object_set_new(j, "none", json_null());
	js_out_int(&o, "min", INT64_MIN);
	json_object_set_new(j, "min", json_integer(INT64_MIN));
	a = js_out_end(&o);
	b = js_text(j);
	CHECK_STR(a, b);
	CHECK(o.s == NULL && o.len == 0);
	free(a);
	free(b);
	json_decref(j);
}

/* outbox_seal() adds to a js_out payload what outbox_text() adds. */
static void
seals_payloads_as_outbox_text_does(void)
{
	struct js_out o = { 0 };
	char key[37], key2[37], *a, *b;
	json_t *sealed, *p;

	js_out_int(&o, "paymentId", 42);
	js_out_str(&o, "merchantId", awkward[3]);
	a = outbox_seal(&o, EV_AUTHORIZED, key);
	sealed = json_loads(a, 0, NULL);
	CHECK(sealed != NULL);
	CHECK_STR(js_getstr(sealed, "eventId", NULL), key);
	/* The same payload through jansson, with the same id and time. */
	p = json_pack("{s:i, s:s, s:s}", "paymentId", 42, "merchantId",
	    awkward[3], "eventId", key);
	json_object_set_new(p, "eventType", json_string(EV_AUTHORIZED));
	json_object_set_new(
	    p, "schemaVersion", json_integer(EVENT_SCHEMA_VERSION));
	json_object_set(p, "occurredAt", json_object_get(sealed, "occurredAt"));
	b = outbox_text(EV_AUTHORIZED, p, key2);
	CHECK_STR(a, b);
	CHECK_STR(key2, key);
	free(a);
	free(b);
	json_decref(p);
	json_decref(sealed);
}

int
main(void)
{
	diag_init("test_lib");
	RUN(maps_event_types_to_topics);
	RUN(prefixes_topics);
	RUN(reads_json_fields_strictly);
	RUN(classifies_database_errors);
	RUN(classifies_kafka_errors);
	RUN(kafka_conf_refuses_bad_properties);
	RUN(makes_version_4_uuids);
	RUN(forked_children_make_their_own_uuids);
	RUN(writes_objects_as_jansson_dumps_them);
	RUN(seals_payloads_as_outbox_text_does);
	conf_reset();
	UNIT_END();
}
