/*
 * http: JSON over HTTP with libcurl for calls to the payment gateway.  A
 * client keeps its connection alive between calls; every call has the
 * connect and total timeouts from conf (pg_connect_timeout, pg_timeout).
 * A multi client (libcurl multi) keeps many calls in flight from one
 * thread.
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

/*
 * libcurl is loaded by the first http_new() or http_multi_new(), not when
 * the program starts; they exit 69 when it cannot be loaded.
 */
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

/*
 * Many calls in flight from one thread.  http_multi_post() and
 * http_multi_run() are for that thread only; http_multi_wakeup() may be
 * called from any thread.
 */
struct http_multi;

/* A POST in flight: the caller's, untouched until done is called. */
struct http_call {
	const char *url;
	const char *body; /* JSON */
	/*
	 * Called once from http_multi_run() when the call is over, with
	 * http_post_json()'s answer and reply (the body is only valid
	 * during the call).
	 */
	void (*done)(struct http_call *c, int rc, const struct http_reply *r);
	void *arg;
	/* http's own. */
	void *easy;
	size_t slot;
	char *buf;
	size_t len, cap;
};

/*
 * A multi handle for up to conns calls at once: it keeps that many
 * connections open between calls, so a burst of calls that ends does not
 * close the connections the next burst will want.
 */
struct http_multi *http_multi_new(long conns);
/* Free; calls still in flight are dropped without their done. */
void http_multi_free(struct http_multi *m);
void http_multi_post(struct http_multi *m, struct http_call *c);
/*
 * Move the calls along, call done for each that is over, then wait up to
 * ms for one to make progress or for a wakeup.  Returns the calls still in
 * flight.
 */
long http_multi_run(struct http_multi *m, int ms);
/* End http_multi_run()'s wait early. */
void http_multi_wakeup(struct http_multi *m);

/* Whether an answer counts as a failure for circuit breakers: 5xx. */
int http_is_failure(const struct http_reply *r);

#endif
