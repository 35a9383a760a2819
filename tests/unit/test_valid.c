/*
 * valid (a payment's fields from outside) and ratelimit's arithmetic.
 */
#include "ratelimit.h"
#include "unit.h"
#include "valid.h"

#include <stdint.h>

static void
ids_are_printable_and_bounded(void)
{
	CHECK(valid_id("M1", 32));
	CHECK(valid_id("order-42/retry:1@x", 64));
	CHECK(valid_id("12345678901234567890123456789012", 32));
	CHECK(!valid_id("123456789012345678901234567890123", 32));
	CHECK(!valid_id("", 32));
	CHECK(!valid_id("a b", 32));
	CHECK(!valid_id("a\tb", 32));
	CHECK(!valid_id("caf\xc3\xa9", 32));
	CHECK(!valid_id("a\x7f", 32));
}

static void
amounts_are_whole_and_in_range(void)
{
	int64_t v = -1;

	CHECK(valid_amount("1", &v) && v == 1);
	CHECK(valid_amount("1000000000000000", &v) && v == 1000000000000000);
	CHECK(!valid_amount("1000000000000001", &v));
	CHECK(!valid_amount("99999999999999999999999", &v));
	CHECK(!valid_amount("0", &v));
	CHECK(!valid_amount("-5", &v));
	CHECK(!valid_amount("+5", &v));
	CHECK(!valid_amount(" 5", &v));
	CHECK(!valid_amount("5 ", &v));
	CHECK(!valid_amount("1.5", &v));
	CHECK(!valid_amount("1e3", &v));
	CHECK(!valid_amount("0x10", &v));
	CHECK(!valid_amount("", &v));
	CHECK(v == 1000000000000000);
}

static void
currencies_are_iso_4217(void)
{
	CHECK(valid_currency("KRW"));
	CHECK(valid_currency("USD"));
	CHECK(valid_currency("AED"));
	CHECK(valid_currency("ZWL"));
	CHECK(valid_currency("EUR"));
	CHECK(!valid_currency("krw"));
	CHECK(!valid_currency("XYZ"));
	CHECK(!valid_currency("XXX"));
	CHECK(!valid_currency("XAU"));
	CHECK(!valid_currency("KRWX"));
	CHECK(!valid_currency("KR"));
	CHECK(!valid_currency(""));
}

static void
statuses_are_the_schemas(void)
{
	CHECK(valid_status("PENDING"));
	CHECK(valid_status("PARTIALLY_REFUNDED"));
	CHECK(valid_status("REFUND_FAILED"));
	CHECK(!valid_status("pending"));
	CHECK(!valid_status("PARTIAL_REFUNDED"));
	CHECK(!valid_status(""));
}

static void
text_is_utf8_without_controls(void)
{
	char long_text[600];

	CHECK(valid_text("customer asked", 500));
	CHECK(valid_text(
	    "\xea\xb3\xa0\xea\xb0\x9d \xec\x9a\x94\xec\xb2\xad", 500));
	CHECK(valid_text("\xea\xb3\xa0\xea\xb0\x9d", 2));
	CHECK(!valid_text("\xea\xb3\xa0\xea\xb0\x9d!", 2));
	CHECK(!valid_text("", 500));
	CHECK(!valid_text("a\tb", 500));
	CHECK(!valid_text("a\nb", 500));
	CHECK(!valid_text("\xc3", 500));
	CHECK(!valid_text("\xc0\xaf", 500)); /* overlong '/' */
	CHECK(!valid_text("\xed\xa0\x80", 500)); /* surrogate */
	CHECK(!valid_text("\xf4\x90\x80\x80", 500)); /* beyond U+10FFFF */
	memset(long_text, 'x', 501);
	long_text[501] = '\0';
	CHECK(!valid_text(long_text, 500));
	long_text[500] = '\0';
	CHECK(valid_text(long_text, 500));
}

static void
since_is_a_time_or_a_duration(void)
{
	char ts[27] = "";
	long long ms = 0;

	CHECK(valid_since("2026-11-21", ts, &ms) == 0);
	CHECK_STR(ts, "2026-11-21 00:00:00.000000");
	CHECK(valid_since("2026-11-21T08:30:05Z", ts, &ms) == 0);
	CHECK_STR(ts, "2026-11-21 08:30:05.000000");
	CHECK(valid_since("2026-11-21T08:30:05.25Z", ts, &ms) == 0);
	CHECK_STR(ts, "2026-11-21 08:30:05.250000");
	CHECK(valid_since("2026-11-21 08:30:05.123456Z", ts, &ms) == 0);
	CHECK_STR(ts, "2026-11-21 08:30:05.123456");
	CHECK(valid_since("2026-11-21T08:30:05+09:00", ts, &ms) == 0);
	CHECK_STR(ts, "2026-11-20 23:30:05.000000");
	CHECK(valid_since("2026-01-01T00:30:00-01:00", ts, &ms) == 0);
	CHECK_STR(ts, "2026-01-01 01:30:00.000000");
	CHECK(valid_since("2024-02-29", ts, &ms) == 0);
	CHECK(valid_since("2026-02-29", ts, &ms) < 0);
	CHECK(valid_since("2026-13-01", ts, &ms) < 0);
	CHECK(valid_since("2026-11-21T24:00:00Z", ts, &ms) < 0);
	CHECK(valid_since("2026-11-21T08:30:05", ts, &ms) < 0);
	CHECK(valid_since("2026-11-21T08:30:05.1234567Z", ts, &ms) < 0);
	CHECK(valid_since("2026-11-21T08:30:05Zjunk", ts, &ms) < 0);
	CHECK(valid_since("1969-12-31", ts, &ms) < 0);
	CHECK(valid_since("1h", ts, &ms) == 1 && ms == 3600000);
	CHECK(valid_since("15m", ts, &ms) == 1 && ms == 900000);
	CHECK(valid_since("7d", ts, &ms) == 1 && ms == 7 * 86400000LL);
	CHECK(valid_since("90", ts, &ms) == 1 && ms == 90000);
	CHECK(valid_since("0s", ts, &ms) < 0);
	CHECK(valid_since("-1h", ts, &ms) < 0);
	CHECK(valid_since("1y", ts, &ms) < 0);
	CHECK(valid_since("36601d", ts, &ms) < 0);
	CHECK(valid_since("yesterday", ts, &ms) < 0);
	CHECK(valid_since("", ts, &ms) < 0);
}

static void
rate_limit_grants_up_to_the_limit(void)
{
	/* count is the window's count after adding n. */
	CHECK(ratelimit_granted(1, 1, 5) == 1);
	CHECK(ratelimit_granted(5, 1, 5) == 1);
	CHECK(ratelimit_granted(6, 1, 5) == 0);
	CHECK(ratelimit_granted(10, 10, 5) == 5);
	CHECK(ratelimit_granted(12, 10, 5) == 3);
	CHECK(ratelimit_granted(20, 10, 5) == 0);
	CHECK(ratelimit_granted(3, 3, 5) == 3);
	CHECK(ratelimit_retry_after(1) == 1);
	CHECK(ratelimit_retry_after(0) == 1);
	CHECK(ratelimit_retry_after(1000) == 1);
	CHECK(ratelimit_retry_after(1001) == 2);
	CHECK(ratelimit_retry_after(59999) == 60);
}

int
main(void)
{
	RUN(ids_are_printable_and_bounded);
	RUN(amounts_are_whole_and_in_range);
	RUN(currencies_are_iso_4217);
	RUN(statuses_are_the_schemas);
	RUN(text_is_utf8_without_controls);
	RUN(since_is_a_time_or_a_duration);
	RUN(rate_limit_grants_up_to_the_limit);
	UNIT_END();
}
