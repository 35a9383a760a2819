/*
 * topics, js and the error classifications of db and kq.
 */
#include "conf.h"
#include "db.h"
#include "diag.h"
#include "js.h"
#include "kq.h"
#include "topics.h"
#include "unit.h"

#include <mysqld_error.h>
#include <errmsg.h>
#include <stdlib.h>

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
	conf_reset();
	UNIT_END();
}
