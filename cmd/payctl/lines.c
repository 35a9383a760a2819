#include "lines.h"

#include "diag.h"
#include "js.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The signal that stopped the reading, and the pipe that says so. */
static volatile sig_atomic_t caught;
static int stop_pipe[2] = { -1, -1 };

static void
on_signal(int sig)
{
	int saved = errno;

	if (caught != 0) {
		signal(sig, SIG_DFL);
		raise(sig);
	}
	caught = sig;
	if (write(stop_pipe[1], "", 1) < 0) {
		/* Full: the reader has been told already. */
	}
	errno = saved;
}

void
lines_catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		diag_die(EX_OSERR, "pipe: %s", strerror(errno));
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

int
lines_next(struct lines *L, bool block, char **out)
{
	struct pollfd pfd[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
		{ .fd = stop_pipe[0], .events = POLLIN } };
	char *nl;
	ssize_t n;

	/* memchr() and memmove() are not given a null buffer, even empty. */
	if (L->buf == NULL) {
		L->cap = LINE_MAX_BYTES + 1;
		L->buf = xmalloc(L->cap);
	}
	for (;;) {
		if (caught != 0) {
			/* What was read but not handed out is dropped. */
			L->off = L->len = 0;
			L->eof = true;
			return L_EOF;
		}
		nl = memchr(L->buf + L->off, '\n', L->len - L->off);
		if (nl == NULL && L->eof && L->off < L->len)
			nl = L->buf + L->len; /* last line, no newline */
		if (nl != NULL) {
			*nl = '\0';
			*out = L->buf + L->off;
			L->nul =
			    memchr(*out, '\0', (size_t)(nl - *out)) != NULL;
			L->off = (size_t)(nl - L->buf) + 1;
			if (L->off > L->len)
				L->off = L->len;
			L->lineno++;
			return L_LINE;
		}
		if (L->eof)
			return L_EOF;
		memmove(L->buf, L->buf + L->off, L->len - L->off);
		L->len -= L->off;
		L->off = 0;
		if (L->len >= LINE_MAX_BYTES) {
			/* Keep the start to say which line; drop the rest. */
			L->skipping = true;
			L->len = 1;
		}
		n = poll(pfd, stop_pipe[0] < 0 ? 1 : 2, block ? -1 : 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			return L_NONE;
		if (n > 0 &&
		    (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
			continue; /* the stop pipe: seen at the top */
		if (L->cap - L->len < 65536) {
			L->cap = L->len + 65536 + 1;
			L->buf = xrealloc(L->buf, L->cap);
		}
		n = read(STDIN_FILENO, L->buf + L->len, L->cap - L->len - 1);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			diag_warn("read standard input: %s", strerror(errno));
			L->eof = true;
		} else if (n == 0) {
			L->eof = true;
		} else {
			L->len += (size_t)n;
		}
	}
}

/* The output and the exit status's counters. */
static struct {
	pthread_mutex_t mu;
	bool failed;
	long total, bad, unavailable, temporary, internal, config, declined;
	char *config_msg; /* the first configuration error's message */
} O = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Under O.mu. */
static void
flush_locked(void)
{
	if (!O.failed && fflush(stdout) != 0) {
		if (errno != EPIPE)
			diag_warn(
			    "write to standard output: %s", strerror(errno));
		O.failed = true;
	}
}

void
lines_emit(
    long lineno, json_t *rid, json_t *line, int code, bool declined, bool flush)
{
	if (lineno > 0)
		json_object_set_new(line, "line", json_integer(lineno));
	if (rid != NULL)
		json_object_set(line, "request_id", rid);
	pthread_mutex_lock(&O.mu);
	O.total++;
	if (code == EX_DATAERR)
		O.bad++;
	else if (code == EX_UNAVAILABLE)
		O.unavailable++;
	else if (code == EX_TEMPFAIL)
		O.temporary++;
	else if (code == EX_CONFIG) {
		/* A missing grant or table: every request meets it. */
		if (O.config++ == 0)
			O.config_msg =
			    xstrdup(js_getstr(line, "message", "(no message)"));
	} else if (code != 0)
		O.internal++;
	else if (declined)
		O.declined++;
	if (O.failed)
		json_decref(line);
	else if (js_print(line) != 0)
		O.failed = true;
	if (flush)
		flush_locked();
	pthread_mutex_unlock(&O.mu);
}

void
lines_flush(void)
{
	pthread_mutex_lock(&O.mu);
	flush_locked();
	pthread_mutex_unlock(&O.mu);
}

bool
lines_out_failed(void)
{
	bool failed;

	pthread_mutex_lock(&O.mu);
	failed = O.failed;
	pthread_mutex_unlock(&O.mu);
	return failed;
}

int
lines_summary(const struct lines *L, bool exit_status)
{
	long failed =
	    O.bad + O.unavailable + O.temporary + O.internal + O.config;
	char why[128] = "";
	size_t n = 0;

	lines_flush();
#define WHY(count, what)                                                       \
	if (count > 0)                                                         \
	n += (size_t)snprintf(                                                 \
	    why + n, sizeof(why) - n, "%s%ld " what, n ? ", " : "", count)
	WHY(O.bad, "bad");
	WHY(O.unavailable, "unavailable");
	WHY(O.temporary, "temporary");
	WHY(O.internal, "internal");
	WHY(O.config, "configuration");
#undef WHY
	/* The configuration's fault first, said as a single request says it. */
	if (O.config > 0)
		diag_warn("%s", O.config_msg);
	free(O.config_msg);
	O.config_msg = NULL;
	if (failed > O.config)
		diag_warn(
		    "%ld of %ld requests failed (%s)", failed, O.total, why);
	if (caught != 0)
		diag_warn("stopped on %s after line %ld: the rest of the input "
		          "was not read",
		    caught == SIGTERM ? "SIGTERM" : "SIGINT", L->lineno);
	if (O.failed) {
		/* Said once; what is left in the buffer would only fail. */
		__fpurge(stdout);
		clearerr(stdout);
		return EX_IOERR;
	}
	if (O.config > 0)
		return EX_CONFIG;
	if (O.bad > 0)
		return EX_DATAERR;
	if (O.unavailable > 0)
		return EX_UNAVAILABLE;
	if (O.internal > 0)
		return EX_SOFTWARE;
	if (O.temporary > 0 || caught != 0)
		return EX_TEMPFAIL;
	return exit_status && O.declined > 0 ? EX_MISMATCH : 0;
}
