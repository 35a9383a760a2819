/*
 * bench: what the benchmark programs under tests/bench share: a monotonic
 * clock, flag parsing with the usage exit code, and the payload of an
 * authorization's outbox event, so every benchmark moves the same bytes
 * that payctl authorize writes.  scripts/bench runs the programs.
 */
#ifndef PAYKIT_BENCH_H
#define PAYKIT_BENCH_H

#include "conf.h"
#include "diag.h"
#include "outbox.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A whole number flag in [min, max], or a usage error (exit 64). */
static inline long long
bench_int(const char *flag, const char *s, long long min, long long max)
{
	long long v;

	if (conf_parse_int(s, min, max, &v) != 0)
		exit(diag_usage("-%s: '%s' is not a number from %lld to %lld",
		    flag, s, min, max));
	return v;
}

/* A duration flag ("500ms", "10s", "2m") in milliseconds, at least min. */
static inline long long
bench_ms(const char *flag, const char *s, long long min)
{
	long long v;

	if (conf_parse_duration(s, &v) != 0 || v < min)
		exit(diag_usage(
		    "-%s: '%s' is not a duration such as 500ms or 10s", flag,
		    s));
	return v;
}

/* The event types of an approved authorization with auto-capture. */
static const char *const bench_event_types[2] = {
	"PAYMENT_AUTHORIZED",
	"PAYMENT_CAPTURE_REQUESTED",
};

/*
 * The payload payctl authorize writes for event ev (0 or 1) of payment id,
 * with the event id in key; its length is returned.  Merchant and amount
 * follow loadgen's draw: MERCHANT-1..1000, 1,000 to 50,000 in steps of
 * 1,000.
 */
static inline int
bench_payload(char *buf, size_t len, int64_t id, int ev, const char *key)
{
	char now[32];

	outbox_now(now);
	return snprintf(buf, len,
	    "{\"paymentId\":%lld,\"status\":\"%s\",\"merchantId\":"
	    "\"MERCHANT-%lld\",\"amount\":%lld,\"currency\":\"KRW\","
	    "\"approvalNumber\":\"APP%08llX\",\"transactionId\":"
	    "\"txn_%08llx\",\"eventId\":\"%s\",\"eventType\":\"%s\","
	    "\"schemaVersion\":1,\"occurredAt\":\"%s\"}",
	    (long long)id, ev == 0 ? "AUTHORIZED" : "CAPTURE_REQUESTED",
	    (long long)(id % 1000 + 1), (long long)(id % 50 + 1) * 1000,
	    (unsigned long long)id & 0xffffffffULL,
	    (unsigned long long)(id * 2654435761LL) & 0xffffffffULL, key,
	    bench_event_types[ev], now);
}

#endif
