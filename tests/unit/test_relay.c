/*
 * relay's pure parts: the ordering plan, the backoff, dead-letter records.
 */
#include "diag.h"
#include "relay.h"
#include "unit.h"

#include <jansson.h>
#include <stdlib.h>

static struct relay_item *
find(struct relay_item *it, size_t n, int64_t id)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (it[i].id == id)
			return &it[i];
	return NULL;
}

static void
sends_each_payment_in_waves_of_one_event(void)
{
	/* Claimed in next_attempt_at order, not id order. */
	struct relay_item it[] = { { 12, 2 }, { 10, 1 }, { 11, 1 }, { 13, 1 },
		{ 14, 3 } };
	struct relay_pending p[] = { { 1, 11, 0 }, { 1, 10, 0 } };

	CHECK(relay_plan(it, 5, p, 2) == 3);
	CHECK(find(it, 5, 10)->wave == 0);
	CHECK(find(it, 5, 11)->wave == 1);
	CHECK(find(it, 5, 13)->wave == 2);
	CHECK(find(it, 5, 12)->wave == 0);
	CHECK(find(it, 5, 14)->wave == 0);
}

static void
holds_rows_behind_an_unclaimed_earlier_event(void)
{
	/* Payment 1: 5 backs off for 2 s, so 7 and 9 wait for it. */
	struct relay_item it[] = { { 7, 1 }, { 9, 1 }, { 8, 2 } };
	struct relay_pending p[] = { { 1, 5, 2000000 }, { 1, 7, 0 } };

	CHECK(relay_plan(it, 3, p, 2) == 1);
	CHECK(it[0].wave == RELAY_HELD && it[0].hold_us == 2000000);
	CHECK(it[1].wave == RELAY_HELD && it[1].hold_us == 2000000);
	CHECK(it[2].wave == 0);
}

static void
holds_only_rows_after_a_gap(void)
{
	/* 4 is claimed, 5 is in flight elsewhere, 6 is claimed. */
	struct relay_item it[] = { { 4, 1 }, { 6, 1 } };
	struct relay_pending p[] = { { 1, 4, 0 }, { 1, 5, 0 } };

	CHECK(relay_plan(it, 2, p, 2) == 1);
	CHECK(it[0].wave == 0);
	CHECK(it[1].wave == RELAY_HELD && it[1].hold_us == 0);
}

static void
needs_only_the_unclaimed_pending_rows(void)
{
	/* As above, without the claimed rows the query leaves out. */
	struct relay_item it[] = { { 12, 2 }, { 10, 1 }, { 11, 1 }, { 13, 1 },
		{ 7, 4 }, { 9, 4 } };
	struct relay_pending p[] = { { 4, 5, 3000 } };

	CHECK(relay_plan(it, 6, NULL, 0) == 3);
	CHECK(find(it, 6, 10)->wave == 0 && find(it, 6, 11)->wave == 1 &&
	    find(it, 6, 13)->wave == 2 && find(it, 6, 12)->wave == 0);
	CHECK(relay_plan(it, 6, p, 1) == 3);
	CHECK(find(it, 6, 7)->wave == RELAY_HELD &&
	    find(it, 6, 7)->hold_us == 3000);
	CHECK(find(it, 6, 9)->wave == RELAY_HELD);
	CHECK(find(it, 6, 11)->wave == 1);
}

static void
plans_an_empty_batch(void)
{
	CHECK(relay_plan(NULL, 0, NULL, 0) == 0);
}

static void
backs_off_exponentially_with_jitter_and_a_cap(void)
{
	uint64_t rnd;
	long long d;
	int i;

	/* Equal jitter: between half and all of base * 2^(n-1). */
	CHECK(relay_backoff_us(1, 1000, 300000, 0) == 500000);
	CHECK(relay_backoff_us(1, 1000, 300000, 500000) == 1000000);
	CHECK(relay_backoff_us(3, 1000, 300000, 0) == 2000000);
	CHECK(relay_backoff_us(20, 1000, 300000, 0) == 150000000);
	CHECK(relay_backoff_us(1000, 1000, 300000, 150000000) == 300000000);
	CHECK(relay_backoff_us(5, 1000, 800, 0) == 400000);
	for (rnd = 1, i = 0; i < 1000; i++) {
		rnd = rnd * 6364136223846793005ULL + 1442695040888963407ULL;
		d = relay_backoff_us(4, 100, 60000, rnd);
		CHECK(d >= 400000 && d <= 800000);
	}
}

static void
derives_a_stable_dead_letter_id(void)
{
	char a[37], b[37], c[37];

	relay_dead_letter_id("6f1c1c4e-2f55-4a55-9a8e-5b1f3c2d0e01", a);
	relay_dead_letter_id("6f1c1c4e-2f55-4a55-9a8e-5b1f3c2d0e01", b);
	relay_dead_letter_id("6f1c1c4e-2f55-4a55-9a8e-5b1f3c2d0e02", c);
	CHECK_STR(a, b);
	CHECK(strcmp(a, c) != 0);
	CHECK(strlen(a) == 36 && a[8] == '-' && a[14] == '8');
	CHECK(strchr("89ab", a[19]) != NULL);
}

static void
writes_a_dead_letter_record(void)
{
	struct relay_dead d = { .event_key = "k-1",
		.event_type = "PAYMENT_FROBNICATED",
		.topic = NULL,
		.outbox_id = 7,
		.aggregate_id = 42,
		.attempts = 0,
		.error_type = RELAY_UNKNOWN_TYPE,
		.error_message = "unknown event type 'PAYMENT_FROBNICATED'",
		.payload = "not \xff json",
		.payload_len = 10,
		.occurred_at = "2026-11-21T10:00:00.000000Z" };
	json_t *o;
	char *text;

	text = relay_dead_letter(&d, false);
	o = json_loads(text, 0, NULL);
	CHECK(o != NULL);
	CHECK_STR(json_string_value(json_object_get(o, "eventType")),
	    "PAYMENT_DEAD_LETTER");
	CHECK_STR(
	    json_string_value(json_object_get(o, "originalEventId")), "k-1");
	CHECK_STR(json_string_value(json_object_get(o, "errorType")),
	    "UNKNOWN_EVENT_TYPE");
	CHECK(json_is_null(json_object_get(o, "originalTopic")));
	CHECK(json_integer_value(json_object_get(o, "paymentId")) == 42);
	CHECK_STR(
	    json_string_value(json_object_get(o, "payload")), "not ? json");
	json_decref(o);
	free(text);
	text = relay_dead_letter(&d, true);
	o = json_loads(text, 0, NULL);
	CHECK(json_is_null(json_object_get(o, "payload")));
	CHECK(json_is_true(json_object_get(o, "payloadOmitted")));
	json_decref(o);
	free(text);
}

static void
checks_json_objects_as_jansson_does(void)
{
	static const char *const cases[] = { "{}", " {\"a\":1}\n",
		"{\"a\":[1,2,{\"b\":null}],\"c\":true,\"d\":false,\"e\":[]}",
		"{\"n\":-0.5e+10,\"m\":0,\"k\":1E-2,\"j\":[-1.25]}",
		"{\"s\":\"\\u00e9\\n\\\"\\\\\\/\\b\\f\\r\\t\"}",
		"{\"caf\xc3\xa9\":\"\xe2\x82\xac\"}", "{\"a\":01}",
		"{\"a\":1,}", "{,}", "[1]", "\"x\"", "1", "{\"a\":1}x",
		"{\"a\" 1}", "{\"a\":tru}", "{\"a\":\"\x01\"}",
		"{\"a\":\"\\x\"}", "{\"a\":-}", "{\"a\":1.}", "{\"a\":.5}",
		"{\"a\":1e}", "", "   ", "{", "{\"a\":\"", "{'a':1}",
		"{\"a\":[1,]}", "{\"a\":[}", "{\"a\":\"\\u12g4\"}",
		"{\"a\":NaN}", "{\"a\":1}{}", "{1:2}", "{\"a\":nulls}",
		"{\"a\":+1}", "{\"a\":[1 2]}", "{\"a\"::1}" };
	json_t *v;
	char at[40];
	size_t i;
	int want, got;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		v = json_loads(cases[i], 0, NULL);
		want = v != NULL && json_is_object(v);
		json_decref(v);
		got = relay_json_object(
		    cases[i], strlen(cases[i]), at, sizeof(at));
		if (got != want)
			fprintf(stderr, "# case %zu '%s': %d, jansson %d\n", i,
			    cases[i], got, want);
		CHECK(got == want);
	}
	/* An embedded NUL ends nothing: the length counts. */
	CHECK(relay_json_object("{}\0x", 4, at, sizeof(at)) == 0);
	CHECK(relay_json_object("{\"a\":\"\0\"}", 8, at, sizeof(at)) == 0);
}

/* relay_json_object() of a C string. */
static int
scan(const char *s, char *at, size_t atlen)
{
	return relay_json_object(s, strlen(s), at, atlen);
}

static void
finds_the_top_level_occurred_at(void)
{
	char at[40], deep[600];
	size_t i;

	CHECK(scan("{\"x\":{\"occurredAt\":\"no\"},"
	           "\"occurredAt\":\"2026-11-21T10:00:00.000001Z\"}",
	          at, sizeof(at)) == 1);
	CHECK_STR(at, "2026-11-21T10:00:00.000001Z");
	CHECK(scan("{\"occurredAt\":\"a\\u0062\"}", at, sizeof(at)) == 1);
	CHECK_STR(at, "");
	CHECK(scan("{\"occurredAt\":5}", at, sizeof(at)) == 1);
	CHECK_STR(at, "");
	CHECK(scan("{\"occurredAt\":\"0123456789\"}", at, 10) == 1);
	CHECK_STR(at, "");
	/* Too deep to be sure: 0, for jansson to decide. */
	memcpy(deep, "{\"a\":", 5);
	for (i = 5; i < 300; i++)
		deep[i] = '[';
	for (i = 300; i < 595; i++)
		deep[i] = ']';
	deep[595] = '}';
	CHECK(relay_json_object(deep, 596, at, sizeof(at)) == 0);
}

int
main(void)
{
	diag_init("test_relay");
	RUN(sends_each_payment_in_waves_of_one_event);
	RUN(holds_rows_behind_an_unclaimed_earlier_event);
	RUN(holds_only_rows_after_a_gap);
	RUN(needs_only_the_unclaimed_pending_rows);
	RUN(plans_an_empty_batch);
	RUN(backs_off_exponentially_with_jitter_and_a_cap);
	RUN(derives_a_stable_dead_letter_id);
	RUN(writes_a_dead_letter_record);
	RUN(checks_json_objects_as_jansson_does);
	RUN(finds_the_top_level_occurred_at);
	UNIT_END();
}
