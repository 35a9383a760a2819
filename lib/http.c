/*
 * http: see http.h.
 */
#include "http.h"
#include "clock.h"
#include "conf.h"
#include "diag.h"

#include <curl/curl.h>
#include <dlfcn.h>
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

/*
 * libcurl is loaded when a program makes its first client, not when it
 * starts.  With what it links (OpenSSL and GnuTLS, Kerberos, LDAP, SSH,
 * RTMP, ...) loading it is about half of a payctl process's start, and
 * only the commands that call the gateway need it.  "libcurl.so.4" is
 * libcurl's ABI; the functions below are looked up once, into cu.  Called
 * through cu, curl_easy_setopt() loses the header's compile-time check of
 * each option's argument type: pass longs as 1L or (long), as below.
 */
#define CURL_LIB "libcurl.so.4"
#define CURL_FUNCS                                                             \
	F(global_init)                                                         \
	F(easy_init)                                                           \
	F(easy_setopt)                                                         \
	F(easy_perform)                                                        \
	F(easy_getinfo)                                                        \
	F(easy_cleanup)                                                        \
	F(easy_strerror)                                                       \
	F(slist_append)                                                        \
	F(slist_free_all)                                                      \
	F(multi_init)                                                          \
	F(multi_setopt)                                                        \
	F(multi_add_handle)                                                    \
	F(multi_remove_handle)                                                 \
	F(multi_assign)                                                        \
	F(multi_info_read)                                                     \
	F(multi_socket_action)                                                 \
	F(multi_cleanup)

static struct {
#define F(name) __typeof__(curl_##name) *name;
	CURL_FUNCS
#undef F
} cu;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[512]; /* why libcurl is not there; "" when it is */

static void
load(void)
{
	void *lib;

	if ((lib = dlopen(CURL_LIB, RTLD_LAZY | RTLD_LOCAL)) == NULL) {
		snprintf(load_error, sizeof(load_error), "cannot load '%s': %s",
		    CURL_LIB, dlerror());
		return;
	}
#define F(name)                                                                \
	if ((*(void **)&cu.name = dlsym(lib, "curl_" #name)) == NULL) {        \
		snprintf(load_error, sizeof(load_error),                       \
		    "cannot load '%s': no curl_%s", CURL_LIB, #name);          \
		return;                                                        \
	}
	CURL_FUNCS
#undef F
	if (cu.global_init(CURL_GLOBAL_DEFAULT) != 0)
		snprintf(load_error, sizeof(load_error),
		    "cannot load '%s': curl_global_init failed", CURL_LIB);
}

/* Load libcurl once, or die saying why. */
static void
need_curl(void)
{
	pthread_once(&once, load);
	if (load_error[0] != '\0')
		diag_die(EX_UNAVAILABLE, "%s", load_error);
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

	l = cu.slist_append(NULL, "Content-Type: application/json");
	return cu.slist_append(l, "Expect:");
}

/* An easy handle with the settings every call has. */
static CURL *
new_easy(void)
{
	CURL *e = cu.easy_init();

	if (e == NULL)
		diag_die(EX_SOFTWARE, "curl_easy_init failed");
	cu.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	cu.easy_setopt(
	    e, CURLOPT_CONNECTTIMEOUT_MS, (long)conf_ms("pg_connect_timeout"));
	cu.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)conf_ms("pg_timeout"));
	cu.easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	return e;
}

struct http *
http_new(void)
{
	struct http *h;

	need_curl();
	h = xcalloc(1, sizeof(*h));
	h->curl = new_easy();
	h->headers = json_headers();
	cu.easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, collect);
	cu.easy_setopt(h->curl, CURLOPT_WRITEDATA, h);
	return h;
}

void
http_close(struct http *h)
{
	if (h == NULL)
		return;
	cu.slist_free_all(h->headers);
	cu.easy_cleanup(h->curl);
	free(h->buf);
	free(h);
}

/* The reply of a finished call but its body: 0, or 69 or 75 with err. */
static int
finished(CURL *e, CURLcode cc, struct http_reply *r)
{
	double secs = 0;

	memset(r, 0, sizeof(*r));
	cu.easy_getinfo(e, CURLINFO_TOTAL_TIME, &secs);
	r->ms = secs * 1000.0;
	if (cc != CURLE_OK) {
		snprintf(r->err, sizeof(r->err), "%s", cu.easy_strerror(cc));
		r->timed_out = cc == CURLE_OPERATION_TIMEDOUT;
		return r->timed_out ? EX_TEMPFAIL : EX_UNAVAILABLE;
	}
	cu.easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
	return 0;
}

static int
perform(struct http *h, const char *url, struct http_reply *r)
{
	int rc;

	h->len = 0;
	cu.easy_setopt(h->curl, CURLOPT_URL, url);
	if ((rc = finished(h->curl, cu.easy_perform(h->curl), r)) != 0)
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
	cu.easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers);
	cu.easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
	cu.easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	return perform(h, url, r);
}

int
http_get(struct http *h, const char *url, struct http_reply *r)
{
	cu.easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
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
		cu.multi_assign(m->multi, s, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) |
	    (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	ev.data.fd = s;
	if (known == NULL) {
		if (epoll_ctl(m->ep, EPOLL_CTL_ADD, s, &ev) != 0 &&
		    errno == EEXIST)
			epoll_ctl(m->ep, EPOLL_CTL_MOD, s, &ev);
		cu.multi_assign(m->multi, s, m);
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

	need_curl();
	m = xcalloc(1, sizeof(*m));
	if ((m->multi = cu.multi_init()) == NULL)
		diag_die(EX_SOFTWARE, "curl_multi_init failed");
	if ((m->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (m->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		diag_die(
		    EX_OSERR, "cannot make an event loop: %s", strerror(errno));
	ev.data.fd = m->wake;
	if (epoll_ctl(m->ep, EPOLL_CTL_ADD, m->wake, &ev) != 0)
		diag_die(EX_OSERR, "epoll_ctl: %s", strerror(errno));
	m->deadline = -1;
	cu.multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	cu.multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	cu.multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	cu.multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	/*
	 * libcurl's default keeps four connections per call in flight at
	 * the moment one is given back: after a burst, as the last calls
	 * end, it closes the connections the next burst then opens again.
	 */
	cu.multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, conns > 0 ? conns : 1);
	m->headers = json_headers();
	return m;
}

void
http_multi_free(struct http_multi *m)
{
	if (m == NULL)
		return;
	while (m->nbusy > 0) {
		cu.multi_remove_handle(m->multi, m->busy[--m->nbusy]->easy);
		cu.easy_cleanup(m->busy[m->nbusy]->easy);
	}
	free(m->busy);
	while (m->nidle > 0)
		cu.easy_cleanup(m->idle[--m->nidle]);
	free(m->idle);
	cu.multi_cleanup(m->multi);
	cu.slist_free_all(m->headers);
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
	cu.easy_setopt(e, CURLOPT_URL, c->url);
	cu.easy_setopt(e, CURLOPT_HTTPHEADER, m->headers);
	cu.easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
	cu.easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
	cu.easy_setopt(e, CURLOPT_WRITEFUNCTION, collect_call);
	cu.easy_setopt(e, CURLOPT_WRITEDATA, c);
	cu.easy_setopt(e, CURLOPT_PRIVATE, c);
	if (m->nbusy == m->busycap) {
		m->busycap = m->busycap ? m->busycap * 2 : 64;
		m->busy = xrealloc(m->busy, m->busycap * sizeof(*m->busy));
	}
	c->slot = m->nbusy;
	m->busy[m->nbusy++] = c;
	/* Sets the timer to 0: the next http_multi_run() starts the call. */
	cu.multi_add_handle(m->multi, e);
}

static void
call_done(struct http_multi *m, CURL *e, CURLcode cc)
{
	struct http_reply r;
	struct http_call *c;
	int rc;

	cu.easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
	cu.multi_remove_handle(m->multi, e);
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

	while ((msg = cu.multi_info_read(m->multi, &left)) != NULL)
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
		cu.multi_socket_action(
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
		cu.multi_socket_action(m->multi, ev[i].data.fd, flags, &still);
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
