/*
 * lg_echo: see lg_echo.h.  Requests are answered in arrival order, each
 * delay_ms after it was read; one thread, blocking writes (loadgen reads
 * its end without blocking, so this cannot deadlock).
 */
#include "lg_echo.h"
#include "diag.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ID_MAX 128

struct pending {
	int64_t due;
	char id[ID_MAX];
	long long payment;
	bool fail;
};

static struct pending *q;
static size_t qhead, qlen, qcap;
static char *obuf;
static size_t olen, ocap;
static long long next_payment = 1, nreq;

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The raw text of a string field (escapes kept, so it can be echoed). */
static bool
field(const char *line, const char *key, char *out, size_t len)
{
	const char *p = strstr(line, key), *e;

	if (p == NULL)
		return false;
	p += strlen(key);
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p++ != ':')
		return false;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '"') {
		for (e = ++p; *e != '\0' && *e != '"'; e++)
			if (*e == '\\' && e[1] != '\0')
				e++;
	} else {
		for (e = p; *e >= '0' && *e <= '9'; e++)
			;
	}
	if (e == p || (size_t)(e - p) >= len)
		return false;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return true;
}

static void
put(const char *s, size_t n)
{
	if (olen + n > ocap) {
		while (olen + n > ocap)
			ocap = ocap ? ocap * 2 : 65536;
		obuf = xrealloc(obuf, ocap);
	}
	memcpy(obuf + olen, s, n);
	olen += n;
}

static void
answer(const struct pending *p)
{
	char line[ID_MAX + 128];
	int n;

	if (p->id[0] == '\0')
		n = snprintf(line, sizeof(line),
		    "{\"error\":\"BAD_REQUEST\",\"message\":\"no requestId\"}\n");
	else if (p->fail)
		n = snprintf(line, sizeof(line),
		    "{\"requestId\":\"%s\",\"error\":\"ECHO_FAILURE\","
		    "\"message\":\"failed on purpose\"}\n",
		    p->id);
	else
		n = snprintf(line, sizeof(line),
		    "{\"requestId\":\"%s\",\"status\":\"OK\",\"paymentId\":%lld}"
		    "\n",
		    p->id, p->payment);
	put(line, (size_t)n);
}

static int
flush_out(void)
{
	size_t off = 0;
	ssize_t n;

	while (off < olen) {
		n = write(1, obuf + off, olen - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	olen = 0;
	return 0;
}

static void
request(char *line, long delay_ms, long fail_every)
{
	struct pending p = { 0 };
	char num[32];

	nreq++;
	if (!field(line, "\"requestId\"", p.id, sizeof(p.id)))
		p.id[0] = '\0';
	if (field(line, "\"paymentId\"", num, sizeof(num)))
		p.payment = strtoll(num, NULL, 10);
	else
		p.payment = next_payment++;
	p.fail = fail_every > 0 && nreq % fail_every == 0;
	if (delay_ms == 0) {
		answer(&p);
		return;
	}
	p.due = now_ms() + delay_ms;
	if (qhead + qlen == qcap) {
		if (qhead > 0) {
			memmove(q, q + qhead, qlen * sizeof(*q));
			qhead = 0;
		} else {
			qcap = qcap ? qcap * 2 : 1024;
			q = xrealloc(q, qcap * sizeof(*q));
		}
	}
	q[qhead + qlen++] = p;
}

static void
answer_due(void)
{
	int64_t now = now_ms();

	while (qlen > 0 && q[qhead].due <= now) {
		answer(&q[qhead++]);
		qlen--;
	}
	if (qlen == 0)
		qhead = 0;
}

/* Split what was read into lines; a line may span reads. */
static void
consume(const char *p, size_t n, long delay_ms, long fail_every)
{
	static char *line;
	static size_t llen, lcap;
	const char *nl;
	size_t k;

	while (n > 0) {
		nl = memchr(p, '\n', n);
		k = nl ? (size_t)(nl - p) : n;
		if (llen + k + 1 > lcap) {
			lcap = (llen + k + 1) * 2;
			line = xrealloc(line, lcap);
		}
		memcpy(line + llen, p, k);
		llen += k;
		if (nl == NULL)
			return;
		line[llen] = '\0';
		request(line, delay_ms, fail_every);
		llen = 0;
		n -= k + 1;
		p = nl + 1;
	}
}

int
lg_echo_main(long delay_ms, long fail_every)
{
	static char buf[1 << 16];
	struct pollfd pfd = { 0, POLLIN, 0 };
	bool eof = false;
	int64_t wait;
	int timeout, r;
	ssize_t n;

	diag_ignore_sigpipe();
	while (!eof || qlen > 0) {
		timeout = -1;
		if (qlen > 0) {
			wait = q[qhead].due - now_ms();
			timeout = wait > 0 ? (int)wait : 0;
		}
		if (eof) {
			poll(NULL, 0, timeout);
		} else {
			r = poll(&pfd, 1, timeout);
			if (r < 0 && errno != EINTR)
				return EX_OSERR;
			if (r > 0) {
				n = read(0, buf, sizeof(buf));
				if (n < 0 && errno != EINTR && errno != EAGAIN)
					return EX_IOERR;
				if (n == 0)
					eof = true;
				if (n > 0)
					consume(buf, (size_t)n, delay_ms,
					    fail_every);
			}
		}
		answer_due();
		/* Whoever reads the answers has gone: nothing left to do. */
		if (flush_out() != 0)
			return 0;
	}
	return 0;
}
