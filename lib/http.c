/*
 * http: see http.h.
 */
#include "http.h"
#include "conf.h"
#include "diag.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct http {
	CURL *curl;
	struct curl_slist *headers;
	char *buf;
	size_t len, cap;
};

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void
global_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		diag_die(EX_SOFTWARE, "curl_global_init failed");
}

static size_t
collect(char *data, size_t size, size_t n, void *arg)
{
	struct http *h = arg;
	size_t len = size * n;

	/* A gateway reply is small; refuse to buffer a runaway one. */
	if (h->len + len > 1 << 20)
		return 0;
	if (h->len + len + 1 > h->cap) {
		h->cap = (h->len + len + 1) * 2;
		h->buf = xrealloc(h->buf, h->cap);
	}
	memcpy(h->buf + h->len, data, len);
	h->len += len;
	return len;
}

struct http *
http_new(void)
{
	struct http *h;

	pthread_once(&once, global_init);
	h = xcalloc(1, sizeof(*h));
	h->curl = curl_easy_init();
	if (h->curl == NULL)
		diag_die(EX_SOFTWARE, "curl_easy_init failed");
	h->headers = curl_slist_append(NULL, "Content-Type: application/json");
	h->headers = curl_slist_append(h->headers, "Expect:");
	curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)conf_ms("pg_connect_timeout"));
	curl_easy_setopt(
	    h->curl, CURLOPT_TIMEOUT_MS, (long)conf_ms("pg_timeout"));
	curl_easy_setopt(h->curl, CURLOPT_TCP_NODELAY, 1L);
	return h;
}

void
http_close(struct http *h)
{
	if (h == NULL)
		return;
	curl_slist_free_all(h->headers);
	curl_easy_cleanup(h->curl);
	free(h->buf);
	free(h);
}

static int
perform(struct http *h, const char *url, struct http_reply *r)
{
	CURLcode cc;
	double secs = 0;

	memset(r, 0, sizeof(*r));
	h->len = 0;
	curl_easy_setopt(h->curl, CURLOPT_URL, url);
	cc = curl_easy_perform(h->curl);
	curl_easy_getinfo(h->curl, CURLINFO_TOTAL_TIME, &secs);
	r->ms = secs * 1000.0;
	if (cc != CURLE_OK) {
		snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(cc));
		r->timed_out = cc == CURLE_OPERATION_TIMEDOUT;
		return r->timed_out ? EX_TEMPFAIL : EX_UNAVAILABLE;
	}
	curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &r->status);
	r->body = xmalloc(h->len + 1);
	memcpy(r->body, h->buf ? h->buf : "", h->len);
	r->body[h->len] = '\0';
	r->len = h->len;
	return 0;
}

int
http_post_json(
    struct http *h, const char *url, const char *body, struct http_reply *r)
{
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers);
	curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	return perform(h, url, r);
}

int
http_get(struct http *h, const char *url, struct http_reply *r)
{
	curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
	return perform(h, url, r);
}

void
http_free(struct http_reply *r)
{
	free(r->body);
	r->body = NULL;
}

int
http_is_failure(const struct http_reply *r)
{
	return r->status == 0 || r->status >= 500;
}
