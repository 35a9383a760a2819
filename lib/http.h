/*
 * http: JSON over HTTP with libcurl for calls to the payment gateway.  A
 * client keeps its connection alive between calls; every call has the
 * connect and total timeouts from conf (pg_connect_timeout, pg_timeout).
 */
#ifndef PAYKIT_HTTP_H
#define PAYKIT_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct http;

struct http_reply {
	long status; /* HTTP status, 0 when no answer came */
	char *body; /* NUL-terminated; the caller frees with http_free */
	size_t len;
	double ms; /* total time of the call */
	bool timed_out;
	char err[256]; /* why there was no answer */
};

struct http *http_new(void);
void http_close(struct http *h);

/*
 * POST body as application/json.  Returns 0 when the server answered
 * (whatever the status), else 69 (refused, unresolvable, garbage on the
 * wire) or 75 (timed out) with r->err set.
 */
int http_post_json(
    struct http *h, const char *url, const char *body, struct http_reply *r);
int http_get(struct http *h, const char *url, struct http_reply *r);
void http_free(struct http_reply *r);

/* Whether an answer counts as a failure for circuit breakers: 5xx. */
int http_is_failure(const struct http_reply *r);

#endif
