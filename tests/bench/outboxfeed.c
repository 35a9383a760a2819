/*
 * outboxfeed: a steady stream of outbox events, as authorizations write
 * them, for measuring outbox-relay's commit-to-publish latency.  Payment
 * n's two events (PAYMENT_AUTHORIZED and PAYMENT_CAPTURE_REQUESTED, with
 * payctl's payloads) are committed in one statement at the instant
 * n / (rate / 2) seconds after the start, on an absolute timeline, so a
 * slow commit does not slow the schedule.  Payment ids start at first-id.  One JSON line on stdout:
 *
 *   {"events":20000,"seconds":10.0,"events_per_s":2000.0,
 *    "max_behind_ms":3.1}
 */
#include "bench.h"
#include "db.h"

#include <getopt.h>
#include <string.h>

static const char usage_text[] =
    "usage: outboxfeed [-h] -r rate -d duration [-i first-id]\n";

static const char insert_pair[] =
    "INSERT INTO outbox_event (event_key, aggregate_id, event_type, payload)"
    " VALUES (?, ?, ?, ?), (?, ?, ?, ?)";

static int
pair(struct db *db, int64_t id)
{
	char k0[37], k1[37], p0[1024], p1[1024];

	outbox_uuid(k0);
	outbox_uuid(k1);
	bench_payload(p0, sizeof(p0), id, 0, k0);
	bench_payload(p1, sizeof(p1), id, 1, k1);
	return db_exec(db, insert_pair, "sisssiss", k0, id,
	    bench_event_types[0], p0, k1, id, bench_event_types[1], p1);
}

static void
sleep_until(double t)
{
	struct timespec ts;

	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
		;
}

static int
fail(struct db *db, int rc)
{
	diag_warn("insert into outbox_event: %s", db_error(db));
	db_close(db);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "duration", required_argument, NULL, 'd' },
		{ "first-id", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ "rate", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	long long rate = 0, dur_ms = 0, first = 1, pairs, i;
	double t0, due, now, behind = 0;
	char msg[512];
	struct db *db;
	int c, rc;

	diag_init(argv[0]);
	while (
	    (c = getopt_long(argc, argv, ":d:hi:r:", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dur_ms = bench_ms("d", optarg, 1);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return diag_close_stdout();
		case 'i':
			first = bench_int("i", optarg, 1, 1000000000000LL);
			break;
		case 'r':
			rate = bench_int("r", optarg, 2, 1000000);
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind != argc)
		return diag_usage("no operands expected");
	if (rate == 0 || dur_ms == 0)
		return diag_usage("-r and -d are needed");
	if ((rc = conf_load()) != 0)
		return rc;
	if ((db = db_connect(NULL, &rc, msg, sizeof(msg))) == NULL)
		diag_die(rc, "connect: %s", msg);
	pairs = rate * dur_ms / 2000;
	t0 = bench_now();
	for (i = 0; i < pairs; i++) {
		due = t0 + (double)i * 2 / (double)rate;
		now = bench_now();
		if (now < due)
			sleep_until(due);
		else if (now - due > behind)
			behind = now - due;
		if ((rc = pair(db, first + i)) != 0)
			return fail(db, rc);
	}
	now = bench_now();
	db_close(db);
	printf("{\"events\":%lld,\"seconds\":%.3f,\"events_per_s\":%.1f,"
	       "\"max_behind_ms\":%.1f}\n",
	    pairs * 2, now - t0, (double)(pairs * 2) / (now - t0),
	    behind * 1000);
	return diag_close_stdout();
}
