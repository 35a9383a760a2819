/*
 * http: see http.h.
 */
#include "http.h"
#include "clock.h"
#include "conf.h"
#include "diag.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
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

static struct curl_slist *
json_headers(void)
{
	struct curl_slist *l;

	l = curl_slist_append(NULL, "Content-Type: application/json");
	return curl_slist_append(l, "Expect:");
}

/* An easy handle with the settings every call has. */
static CURL *
new_easy(void)
{
	CURL *e = curl_easy_init();

	if (e == NULL)
		diag_die(EX_SOFTWARE, "curl_easy_init failed");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(
	    e, CURLOPT_CONNECTTIMEOUT_MS, (long)conf_ms("pg_connect_timeout"));
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)conf_ms("pg_timeout"));
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	return e;
}

struct http *
http_new(void)
{
	struct http *h;

	pthread_once(&once, global_init);
	h = xcalloc(1, sizeof(*h));
	h->curl = new_easy();
	h->headers = json_headers();
	curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, h);
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

/* The reply of a finished call but its body: 0, or 69 or 75 with err. */
static int
finished(CURL *e, CURLcode cc, struct http_reply *r)
{
	double secs = 0;

	memset(r, 0, sizeof(*r));
	curl_easy_getinfo(e, CURLINFO_TOTAL_TIME, &secs);
	r->ms = secs * 1000.0;
	if (cc != CURLE_OK) {
		snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(cc));
		r->timed_out = cc == CURLE_OPERATION_TIMEDOUT;
		return r->timed_out ? EX_TEMPFAIL : EX_UNAVAILABLE;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
	return 0;
}

static int
perform(struct http *h, const char *url, struct http_reply *r)
{
	int rc;

	h->len = 0;
	curl_easy_setopt(h->curl, CURLOPT_URL, url);
	if ((rc = finished(h->curl, curl_easy_perform(h->curl), r)) != 0)
		return rc;
	/* A copy: the buffer is the client's, and used again. */
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

/*
 * The multi client, driven by libcurl's socket interface: epoll says which
 * connections are ready and only those are moved along.  curl_multi_perform()
 * would look at every call in flight each time round, one poll() each.
 */

struct http_multi {
	CURLM *multi;
	struct curl_slist *headers;
	int ep; /* epoll: the calls' sockets and the wakeup */
	int wake; /* eventfd */
	int64_t deadline; /* libcurl's timer, CLOCK_MONOTONIC ms; -1 none */
	CURL **idle; /* easy handles done with, kept for their connections */
	size_t nidle, cap;
	struct http_call **busy; /* the calls in flight */
	size_t nbusy, busycap;
};

static size_t
collect_call(char *data, size_t size, size_t n, void *arg)
{
	struct http_call *c = arg;
	size_t len = size * n;

	if (c->len + len > 1 << 20)
		return 0;
	if (c->len + len + 1 > c->cap) {
		c->cap = (c->len + len + 1) * 2;
		c->buf = xrealloc(c->buf, c->cap);
	}
	memcpy(c->buf + c->len, data, len);
	c->len += len;
	c->buf[c->len] = '\0';
	return len;
}

/* libcurl: watch s for what, or stop watching it. */
static int
on_socket(CURL *e, curl_socket_t s, int what, void *arg, void *known)
{
	struct http_multi *m = arg;
	struct epoll_event ev = { 0 };

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(m->ep, EPOLL_CTL_DEL, s, NULL);
		curl_multi_assign(m->multi, s, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) |
	    (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	ev.data.fd = s;
	if (known == NULL) {
		if (epoll_ctl(m->ep, EPOLL_CTL_ADD, s, &ev) != 0 &&
		    errno == EEXIST)
			epoll_ctl(m->ep, EPOLL_CTL_MOD, s, &ev);
		curl_multi_assign(m->multi, s, m);
	} else {
		epoll_ctl(m->ep, EPOLL_CTL_MOD, s, &ev);
	}
	return 0;
}

/* libcurl: call back in ms (0 at once), or never (-1). */
static int
on_timer(CURLM *multi, long ms, void *arg)
{
	struct http_multi *m = arg;

	(void)multi;
	m->deadline = ms < 0 ? -1 : clock_mono_ms() + ms;
	return 0;
}

struct http_multi *
http_multi_new(long conns)
{
	struct http_multi *m;
	struct epoll_event ev = { .events = EPOLLIN };

	pthread_once(&once, global_init);
	m = xcalloc(1, sizeof(*m));
	if ((m->multi = curl_multi_init()) == NULL)
		diag_die(EX_SOFTWARE, "curl_multi_init failed");
	if ((m->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (m->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		diag_die(
		    EX_OSERR, "cannot make an event loop: %s", strerror(errno));
	ev.data.fd = m->wake;
	if (epoll_ctl(m->ep, EPOLL_CTL_ADD, m->wake, &ev) != 0)
		diag_die(EX_OSERR, "epoll_ctl: %s", strerror(errno));
	m->deadline = -1;
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	/*
	 * libcurl's default keeps four connections per call in flight at
	 * the moment one is given back: after a burst, as the last calls
	 * end, it closes the connections the next burst then opens again.
	 */
	curl_multi_setopt(
	    m->multi, CURLMOPT_MAXCONNECTS, conns > 0 ? conns : 1);
	m->headers = json_headers();
	return m;
}

void
http_multi_free(struct http_multi *m)
{
	if (m == NULL)
		return;
	while (m->nbusy > 0) {
		curl_multi_remove_handle(m->multi, m->busy[--m->nbusy]->easy);
		curl_easy_cleanup(m->busy[m->nbusy]->easy);
	}
	free(m->busy);
	while (m->nidle > 0)
		curl_easy_cleanup(m->idle[--m->nidle]);
	free(m->idle);
	curl_multi_cleanup(m->multi);
	curl_slist_free_all(m->headers);
	close(m->ep);
	close(m->wake);
	free(m);
}

void
http_multi_post(struct http_multi *m, struct http_call *c)
{
	CURL *e = m->nidle > 0 ? m->idle[--m->nidle] : new_easy();

	c->easy = e;
	c->len = 0;
	curl_easy_setopt(e, CURLOPT_URL, c->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, m->headers);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect_call);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_PRIVATE, c);
	if (m->nbusy == m->busycap) {
		m->busycap = m->busycap ? m->busycap * 2 : 64;
		m->busy = xrealloc(m->busy, m->busycap * sizeof(*m->busy));
	}
	c->slot = m->nbusy;
	m->busy[m->nbusy++] = c;
	/* Sets the timer to 0: the next http_multi_run() starts the call. */
	curl_multi_add_handle(m->multi, e);
}

static void
call_done(struct http_multi *m, CURL *e, CURLcode cc)
{
	struct http_reply r;
	struct http_call *c;
	int rc;

	curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
	curl_multi_remove_handle(m->multi, e);
	rc = finished(e, cc, &r);
	if (rc == 0) {
		r.body = c->buf ? c->buf : "";
		r.len = c->len;
	}
	if (m->nidle == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->idle = xrealloc(m->idle, m->cap * sizeof(*m->idle));
	}
	m->idle[m->nidle++] = e;
	m->busy[c->slot] = m->busy[--m->nbusy];
	m->busy[c->slot]->slot = c->slot;
	c->easy = NULL;
	c->done(c, rc, &r);
}

static void
reap(struct http_multi *m)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(m->multi, &left)) != NULL)
		if (msg->msg == CURLMSG_DONE)
			call_done(m, msg->easy_handle, msg->data.result);
}

/* libcurl's timer, if it has run out. */
static void
timer_due(struct http_multi *m)
{
	int still;

	if (m->deadline >= 0 && clock_mono_ms() >= m->deadline) {
		m->deadline = -1;
		curl_multi_socket_action(
		    m->multi, CURL_SOCKET_TIMEOUT, 0, &still);
	}
}

long
http_multi_run(struct http_multi *m, int ms)
{
	struct epoll_event ev[64];
	int64_t wait = ms < 0 ? 0 : ms, now;
	uint64_t junk;
	int i, n, flags, still;

	timer_due(m);
	reap(m);
	if (m->deadline >= 0 && (now = clock_mono_ms()) + wait > m->deadline)
		wait = m->deadline > now ? m->deadline - now : 0;
	n = epoll_wait(m->ep, ev, 64, (int)wait);
	for (i = 0; i < n; i++) {
		if (ev[i].data.fd == m->wake) {
			if (read(m->wake, &junk, sizeof(junk)) < 0 &&
			    errno != EAGAIN)
				diag_warn("eventfd: %s", strerror(errno));
			continue;
		}
		flags = (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
		    (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
		    (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR
		                                          : 0);
		curl_multi_socket_action(
		    m->multi, ev[i].data.fd, flags, &still);
	}
	timer_due(m);
	reap(m);
	return (long)m->nbusy;
}

void
http_multi_wakeup(struct http_multi *m)
{
	uint64_t one = 1;

	if (write(m->wake, &one, sizeof(one)) < 0 && errno != EAGAIN)
		diag_warn("eventfd: %s", strerror(errno));
}
