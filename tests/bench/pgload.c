/*
 * pgload: the mock gateway's ceiling in requests per second.  connections
 * kept-alive HTTP connections (libcurl multi, one thread) each send
 * authorizations to $PAY_PG_URL/v1/authorize back to back, each with a
 * new idempotency key, for the duration after a warm-up; the gateway's
 * own delay is whatever it is set to (scripts/bench sets it to 0 for the
 * ceiling).  An answer that is not HTTP 200 counts as an error.  One JSON
 * line on stdout:
 *
 *   {"connections":64,"seconds":5.0,"requests":100000,"req_per_s":20000.0,
 *    "errors":0}
 */
#include "bench.h"

#include <curl/curl.h>
#include <getopt.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: pgload [-h] [-c connections] [-d duration] [-w warm-up]"
    " [-u url]\n";

struct conn {
	CURL *h;
	char body[256];
};

static long long seq, ok, errors;
static char prefix[32];

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
	return size * n;
}

static void
next(CURLM *m, struct conn *c)
{
	long long i = seq++;

	snprintf(c->body, sizeof(c->body),
	    "{\"merchantId\":\"MERCHANT-%lld\",\"amount\":%lld,"
	    "\"currency\":\"KRW\",\"idempotencyKey\":\"%s-%lld\"}",
	    i % 1000 + 1, (i % 50 + 1) * 1000, prefix, i);
	curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, c->body);
	curl_multi_add_handle(m, c->h);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "connections", required_argument, NULL, 'c' },
		{ "duration", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "url", required_argument, NULL, 'u' },
		{ "warm-up", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	long long conns = 64, dur_ms = 5000, warm_ms = 1000, ok0 = 0, err0 = 0;
	const char *base = NULL;
	struct curl_slist *hdr;
	struct conn *cs, *c;
	char url[1024];
	double t0 = 0, t1, end, warm_end;
	int n, running, ch, i, rc;
	bool counting = false;
	CURLMsg *msg;
	CURLM *m;
	long status;

	diag_init(argv[0]);
	while ((ch = getopt_long(argc, argv, ":c:d:hu:w:", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'c':
			conns = bench_int("c", optarg, 1, 10000);
			break;
		case 'd':
			dur_ms = bench_ms("d", optarg, 100);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return diag_close_stdout();
		case 'u':
			base = optarg;
			break;
		case 'w':
			warm_ms = bench_ms("w", optarg, 0);
			break;
		default:
			return diag_badopt(ch, argv);
		}
	}
	if (optind != argc)
		return diag_usage("no operands expected");
	if ((rc = conf_load()) != 0)
		return rc;
	if (base == NULL)
		base = conf_str("pg_url");
	snprintf(url, sizeof(url), "%s/v1/authorize", base);
	snprintf(prefix, sizeof(prefix), "pgl%ld-%lld", (long)getpid(),
	    (long long)time(NULL));
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		diag_die(EX_SOFTWARE, "curl_global_init failed");
	m = curl_multi_init();
	curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)conns);
	hdr = curl_slist_append(NULL, "Content-Type: application/json");
	cs = xcalloc((size_t)conns, sizeof(*cs));
	for (i = 0; i < conns; i++) {
		c = &cs[i];
		c->h = curl_easy_init();
		curl_easy_setopt(c->h, CURLOPT_URL, url);
		curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, 10000L);
		curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
		next(m, c);
	}
	warm_end = bench_now() + (double)warm_ms / 1000;
	end = warm_end + (double)dur_ms / 1000;
	for (;;) {
		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &n)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(
			    msg->easy_handle, CURLINFO_PRIVATE, &c);
			status = 0;
			curl_easy_getinfo(
			    c->h, CURLINFO_RESPONSE_CODE, &status);
			if (msg->data.result == CURLE_OK && status == 200)
				ok++;
			else
				errors++;
			curl_multi_remove_handle(m, c->h);
			if (bench_now() < end)
				next(m, c);
		}
		t1 = bench_now();
		if (!counting && t1 >= warm_end) {
			counting = true;
			t0 = t1;
			ok0 = ok;
			err0 = errors;
		}
		if (t1 >= end)
			break;
		curl_multi_poll(m, NULL, 0, 100, NULL);
	}
	for (i = 0; i < conns; i++) {
		curl_multi_remove_handle(m, cs[i].h);
		curl_easy_cleanup(cs[i].h);
	}
	curl_multi_cleanup(m);
	curl_slist_free_all(hdr);
	free(cs);
	curl_global_cleanup();
	if (ok - ok0 == 0) {
		diag_warn("no request to '%s' succeeded", url);
		return EX_UNAVAILABLE;
	}
	printf("{\"connections\":%lld,\"seconds\":%.3f,\"requests\":%lld,"
	       "\"req_per_s\":%.1f,\"errors\":%lld}\n",
	    conns, t1 - t0, ok - ok0, (double)(ok - ok0) / (t1 - t0),
	    errors - err0);
	return diag_close_stdout();
}
