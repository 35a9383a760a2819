/*
 * dbceiling: the database's raw ceiling for what payctl authorize commits.
 * Each of the connections commits, as fast as it can, the transaction of an
 * approved authorization with auto-capture: one payment row and two outbox
 * rows, with the payloads payctl writes.  Nothing else runs: no claim, no
 * gateway, no JSON on the way.  Transactions finished during the warm-up do
 * not count.  One JSON line on stdout:
 *
 *   {"connections":64,"seconds":10.0,"transactions":85000,
 *    "tx_per_s":8500.0,"retries":0}
 */
#include "bench.h"
#include "db.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: dbceiling [-h] [-c connections] [-d duration] [-w warm-up]"
    " [-k key-prefix]\n";

static const char insert_payment[] =
    "INSERT INTO payment (merchant_id, idempotency_key, amount, currency,"
    " auto_capture, status, approval_number, transaction_id,"
    " pg_response_code, pg_response_message)"
    " VALUES (?, ?, ?, 'KRW', 1, 'CAPTURE_REQUESTED', ?, ?, '0000',"
    " 'approved')";
static const char insert_event[] =
    "INSERT INTO outbox_event (event_key, aggregate_id, event_type, payload)"
    " VALUES (?, ?, ?, ?)";

struct worker {
	pthread_t tid;
	struct db *db;
	int n;
	int code; /* exit code of a failure that stopped the worker */
	char msg[512];
};

static atomic_llong done, retries;
static atomic_bool stop;
static const char *prefix;

static int
one(struct worker *w, long long seq)
{
	char merchant[32], key[64], appr[16], txn[16], ev[37], payload[1024];
	int64_t id;
	int rc, i;

	snprintf(merchant, sizeof(merchant), "MERCHANT-%lld", seq % 1000 + 1);
	snprintf(key, sizeof(key), "%s-%d-%lld", prefix, w->n, seq);
	snprintf(appr, sizeof(appr), "APP%08llX", seq & 0xffffffffLL);
	snprintf(txn, sizeof(txn), "txn_%08llx", (seq * 7919) & 0xffffffffLL);
	if ((rc = db_begin(w->db)) != 0)
		return rc;
	rc = db_exec(w->db, insert_payment, "ssiss", merchant, key,
	    (int64_t)(seq % 50 + 1) * 1000, appr, txn);
	if (rc != 0)
		return rc;
	id = (int64_t)db_insert_id(w->db);
	for (i = 0; i < 2; i++) {
		outbox_uuid(ev);
		bench_payload(payload, sizeof(payload), id, i, ev);
		rc = db_exec(w->db, insert_event, "siss", ev, id,
		    bench_event_types[i], payload);
		if (rc != 0)
			return rc;
	}
	return db_commit(w->db);
}

static void *
run(void *arg)
{
	struct worker *w = arg;
	long long seq = 0;
	int rc;

	while (!atomic_load(&stop)) {
		rc = one(w, seq);
		if (rc != 0) {
			if (db_retryable(w->db)) {
				db_rollback(w->db);
				atomic_fetch_add(&retries, 1);
				continue;
			}
			w->code = rc;
			snprintf(w->msg, sizeof(w->msg), "%s", db_error(w->db));
			atomic_store(&stop, true);
			break;
		}
		seq++;
		atomic_fetch_add(&done, 1);
	}
	return NULL;
}

static void
nap(double s)
{
	struct timespec ts;

	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0)
		;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "connections", required_argument, NULL, 'c' },
		{ "duration", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "key-prefix", required_argument, NULL, 'k' },
		{ "warm-up", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	long long conns = 64, dur_ms = 10000, warm_ms = 1000, c0, c1;
	struct worker *w;
	char pfx[32], msg[512];
	double t0, t1;
	int c, i, rc = 0;

	diag_init(argv[0]);
	snprintf(pfx, sizeof(pfx), "dbc%ld-%lld", (long)getpid(),
	    (long long)time(NULL));
	prefix = pfx;
	while (
	    (c = getopt_long(argc, argv, ":c:d:hk:w:", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conns = bench_int("c", optarg, 1, 1000);
			break;
		case 'd':
			dur_ms = bench_ms("d", optarg, 100);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return diag_close_stdout();
		case 'k':
			if (*optarg == '\0' || strlen(optarg) > 40)
				return diag_usage("-k: 1 to 40 characters");
			prefix = optarg;
			break;
		case 'w':
			warm_ms = bench_ms("w", optarg, 0);
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind != argc)
		return diag_usage("no operands expected");
	if ((rc = conf_load()) != 0)
		return rc;

	/* Connect from one thread: the client library's set-up is not. */
	w = xcalloc((size_t)conns, sizeof(*w));
	for (i = 0; i < conns; i++) {
		w[i].n = i;
		w[i].db = db_connect(NULL, &rc, msg, sizeof(msg));
		if (w[i].db == NULL)
			diag_die(rc, "connect %d: %s", i, msg);
	}
	for (i = 0; i < conns; i++)
		if (pthread_create(&w[i].tid, NULL, run, &w[i]) != 0)
			diag_die(EX_OSERR, "cannot start a thread");
	nap((double)warm_ms / 1000);
	c0 = atomic_load(&done);
	t0 = bench_now();
	nap((double)dur_ms / 1000);
	c1 = atomic_load(&done);
	t1 = bench_now();
	atomic_store(&stop, true);
	for (i = 0; i < conns; i++) {
		pthread_join(w[i].tid, NULL);
		if (w[i].code != 0 && rc == 0) {
			diag_warn("connection %d: %s", i, w[i].msg);
			rc = w[i].code;
		}
		db_close(w[i].db);
	}
	free(w);
	if (rc != 0)
		return rc;
	printf("{\"connections\":%lld,\"seconds\":%.3f,\"transactions\":%lld,"
	       "\"tx_per_s\":%.1f,\"retries\":%lld}\n",
	    conns, t1 - t0, c1 - c0, (double)(c1 - c0) / (t1 - t0),
	    (long long)atomic_load(&retries));
	return diag_close_stdout();
}
