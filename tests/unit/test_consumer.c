/*
 * consumer's pure helpers: event fields, keys, backoff, timestamps and
 * dead-letter records.
 */
#include "consumer.h"
#include "unit.h"

#include <stdlib.h>

static void
backoff_doubles_up_to_the_cap_with_jitter(void)
{
	CHECK(consumer_backoff(1000, 60000, 1, 0) == 500);
	CHECK(consumer_backoff(1000, 60000, 1, 0.999999) == 999);
	CHECK(consumer_backoff(1000, 60000, 2, 0) == 1000);
	CHECK(consumer_backoff(1000, 60000, 3, 0) == 2000);
	CHECK(consumer_backoff(1000, 60000, 6, 0) == 16000);
	CHECK(consumer_backoff(1000, 60000, 7, 0) == 30000);
	CHECK(consumer_backoff(1000, 60000, 8, 0) == 30000);
	CHECK(consumer_backoff(1000, 60000, 8, 0.5) == 45000);
	/* No overflow however many failures. */
	CHECK(consumer_backoff(1000, 600000, 1000000, 0) == 300000);
	CHECK(consumer_backoff(86400000LL * 365, 86400000LL * 365, 500, 0) ==
	    86400000LL * 365 / 2);
	/* Never zero, whatever the inputs. */
	CHECK(consumer_backoff(1, 1, 1, 0) == 1);
	CHECK(consumer_backoff(0, 0, 0, -1) == 1);
	CHECK(consumer_backoff(100, 10, 1, 2) == 50);
}

static void
recognises_uuids(void)
{
	CHECK(consumer_uuid_ok("1fc57bf7-c0e7-48b6-af7a-6d7cee4f8c50"));
	CHECK(consumer_uuid_ok("1FC57BF7-C0E7-48B6-AF7A-6D7CEE4F8C50"));
	CHECK(!consumer_uuid_ok("1fc57bf7-c0e7-48b6-af7a-6d7cee4f8c5"));
	CHECK(!consumer_uuid_ok("1fc57bf7-c0e7-48b6-af7a-6d7cee4f8c500"));
	CHECK(!consumer_uuid_ok("1fc57bf7xc0e7-48b6-af7a-6d7cee4f8c50"));
	CHECK(!consumer_uuid_ok("1fc57bf7-c0e7-48b6-af7a-6d7cee4f8c5g"));
	CHECK(!consumer_uuid_ok(""));
	CHECK(!consumer_uuid_ok(NULL));
}

static void
offset_keys_are_stable_uuids(void)
{
	char a[37], b[37], c[37], d[37];

	consumer_offset_key("payment.captured", 1, 42, a);
	consumer_offset_key("payment.captured", 1, 42, b);
	consumer_offset_key("payment.captured", 1, 43, c);
	consumer_offset_key("payment.captured", 2, 42, d);
	CHECK_STR(a, b);
	CHECK(strcmp(a, c) != 0);
	CHECK(strcmp(a, d) != 0);
	CHECK(consumer_uuid_ok(a));
	CHECK(a[14] == '8');
	CHECK(strchr("89ab", a[19]) != NULL);
	/* "topic1" partition 1 is not "topic" partition 11. */
	consumer_offset_key("t1", 1, 0, a);
	consumer_offset_key("t", 11, 0, b);
	CHECK(strcmp(a, b) != 0);
}

static void
converts_timestamps(void)
{
	char out[32];

	CHECK(consumer_sqltime("2026-11-21T08:00:00.123456Z", out) == 0);
	CHECK_STR(out, "2026-11-21 08:00:00.123456");
	CHECK(consumer_sqltime("2026-11-21T08:00:00Z", out) == 0);
	CHECK_STR(out, "2026-11-21 08:00:00.000000");
	CHECK(consumer_sqltime("2026-11-21T08:00:00.5+00:00", out) == 0);
	CHECK_STR(out, "2026-11-21 08:00:00.500000");
	CHECK(consumer_sqltime("2026-11-21T08:00:00.123456789Z", out) == 0);
	CHECK_STR(out, "2026-11-21 08:00:00.123456");
	CHECK(consumer_sqltime("2026-11-21T08:00:00", out) == -1);
	CHECK(consumer_sqltime("2026-11-21T08:00:00+01:00", out) == -1);
	CHECK(consumer_sqltime("2026-13-21T08:00:00Z", out) == -1);
	CHECK(consumer_sqltime("2026-11-21T24:00:00Z", out) == -1);
	CHECK(consumer_sqltime("2026-11-21 08:00:00Z", out) == -1);
	CHECK(consumer_sqltime("2026-11-21T08:00:00.Z", out) == -1);
	CHECK(consumer_sqltime("yesterday", out) == -1);
	CHECK(consumer_sqltime(NULL, out) == -1);
	consumer_isotime("2026-11-21 08:00:00.123456", out);
	CHECK_STR(out, "2026-11-21T08:00:00.123456Z");
	consumer_isotime("2026-11-21 08:00:00", out);
	CHECK_STR(out, "2026-11-21T08:00:00Z");
	consumer_isotime(NULL, out);
	CHECK_STR(out, "");
}

static void
reads_event_fields_strictly(void)
{
	json_t *o = json_loads("{\"n\":5,\"s\":\"KRW\",\"ns\":\"5\",\"z\":\"\","
	                       "\"nul\":null,\"f\":5.0}",
	    0, NULL);
	struct consumer_error e;
	const char *s = NULL;
	long long n = 0;

	CHECK(consumer_int(o, "n", 1, 10, &n, &e) == 0 && n == 5);
	CHECK(consumer_int(o, "n", 6, 10, &n, &e) == CONSUMER_REJECT);
	CHECK_STR(e.type, CE_BAD_FIELD);
	CHECK_STR(e.message, "'n' must be 6 to 10, not 5");
	CHECK(consumer_int(o, "ns", 1, 10, &n, &e) == CONSUMER_REJECT);
	CHECK_STR(e.type, CE_BAD_FIELD);
	CHECK_STR(e.message, "'ns' must be an integer");
	CHECK(consumer_int(o, "f", 1, 10, &n, &e) == CONSUMER_REJECT);
	CHECK(consumer_int(o, "gone", 1, 10, &n, &e) == CONSUMER_REJECT);
	CHECK_STR(e.type, CE_MISSING_FIELD);
	CHECK_STR(e.message, "'gone' is missing");
	CHECK(consumer_int(o, "nul", 1, 10, &n, &e) == CONSUMER_REJECT);
	CHECK_STR(e.type, CE_MISSING_FIELD);
	CHECK(consumer_str(o, "s", 3, &s, &e) == 0);
	CHECK_STR(s, "KRW");
	CHECK(consumer_str(o, "s", 2, &s, &e) == CONSUMER_REJECT);
	CHECK_STR(e.type, CE_BAD_FIELD);
	CHECK(consumer_str(o, "z", 3, &s, &e) == CONSUMER_REJECT);
	CHECK(consumer_str(o, "n", 3, &s, &e) == CONSUMER_REJECT);
	CHECK_STR(e.message, "'n' must be a string");
	CHECK(consumer_str(o, "gone", 3, &s, &e) == CONSUMER_REJECT);
	CHECK_STR(e.type, CE_MISSING_FIELD);
	json_decref(o);
}

static void
builds_dead_letter_records(void)
{
	static const char bad[] = "\xff\xfe{}";
	struct consumer_msg m;
	struct consumer_error e;
	json_t *r;

	memset(&m, 0, sizeof(m));
	m.topic = "t.payment.captured";
	m.partition = 3;
	m.offset = 17;
	m.key = "42";
	m.keylen = 2;
	m.payload = "{\"a\":1}";
	m.len = 7;
	m.event_id = "1fc57bf7-c0e7-48b6-af7a-6d7cee4f8c50";
	m.payment_id = 42;
	consumer_reject(
	    &e, CE_UNKNOWN_PAYMENT, "payment %d does not exist", 42);
	r = consumer_dlq_record(&m, "ledger-apply", "g1", &e);
	CHECK_STR(json_string_value(json_object_get(r, "originalTopic")),
	    "t.payment.captured");
	CHECK(json_integer_value(json_object_get(r, "partition")) == 3);
	CHECK(json_integer_value(json_object_get(r, "offset")) == 17);
	CHECK_STR(json_string_value(json_object_get(r, "key")), "42");
	CHECK_STR(
	    json_string_value(json_object_get(r, "payload")), "{\"a\":1}");
	CHECK(json_object_get(r, "payloadBase64") == NULL);
	CHECK_STR(json_string_value(json_object_get(r, "errorType")),
	    "UNKNOWN_PAYMENT");
	CHECK_STR(json_string_value(json_object_get(r, "errorMessage")),
	    "payment 42 does not exist");
	CHECK_STR(
	    json_string_value(json_object_get(r, "consumer")), "ledger-apply");
	CHECK_STR(json_string_value(json_object_get(r, "group")), "g1");
	CHECK_STR(json_string_value(json_object_get(r, "originalEventId")),
	    m.event_id);
	CHECK(json_integer_value(json_object_get(r, "paymentId")) == 42);
	CHECK(json_string_length(json_object_get(r, "timestamp")) == 27);
	json_decref(r);

	m.key = NULL;
	m.payload = bad;
	m.len = 4;
	m.event_id = NULL;
	m.payment_id = 0;
	consumer_reject(&e, CE_NOT_JSON, "bad \xff byte");
	r = consumer_dlq_record(&m, "settle", "settle", &e);
	CHECK(json_is_null(json_object_get(r, "key")));
	CHECK(json_is_null(json_object_get(r, "payload")));
	CHECK_STR(
	    json_string_value(json_object_get(r, "payloadBase64")), "//57fQ==");
	CHECK_STR(json_string_value(json_object_get(r, "errorMessage")),
	    "bad ? byte");
	CHECK(json_object_get(r, "originalEventId") == NULL);
	CHECK(json_object_get(r, "paymentId") == NULL);
	json_decref(r);

	m.payload = NULL;
	m.len = 0;
	r = consumer_dlq_record(&m, "settle", "settle", &e);
	CHECK_STR(json_string_value(json_object_get(r, "payload")), "");
	json_decref(r);
}

int
main(void)
{
	RUN(backoff_doubles_up_to_the_cap_with_jitter);
	RUN(recognises_uuids);
	RUN(offset_keys_are_stable_uuids);
	RUN(converts_timestamps);
	RUN(reads_event_fields_strictly);
	RUN(builds_dead_letter_records);
	UNIT_END();
}
