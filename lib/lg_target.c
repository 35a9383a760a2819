/*
 * lg_target: see lg_target.h.
 */
#include "lg_target.h"
#include "diag.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PIPE_SIZE (1 << 20)
#define LINE_MAX_BYTES (1 << 20)

extern char **environ;

static void
nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl != -1)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int
lg_target_start(struct lg_target *t, const char *cmd, char *err, size_t errlen)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	int in[2], out[2], rc;

	memset(t, 0, sizeof(*t));
	t->cmd = cmd;
	t->in = t->out = -1;
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	/* Big pipes: fewer wake-ups at tens of thousands of lines a second. */
	fcntl(in[1], F_SETPIPE_SZ, PIPE_SIZE);
	fcntl(out[0], F_SETPIPE_SZ, PIPE_SIZE);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
	posix_spawnattr_setpgroup(&attr, 0);
	rc = posix_spawn(&t->pid, "/bin/sh", &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(in[0]);
	close(out[1]);
	if (rc != 0) {
		close(in[1]);
		close(out[0]);
		snprintf(err, errlen, "start /bin/sh: %s", strerror(rc));
		return -1;
	}
	t->in = in[1];
	t->out = out[0];
	nonblock(t->in);
	nonblock(t->out);
	return 0;
}

char *
lg_target_room(struct lg_target *t, size_t n)
{
	if (t->woff > 0 && t->woff == t->wlen)
		t->woff = t->wlen = 0;
	if (t->wlen + n > t->wcap) {
		if (t->woff > 0) {
			memmove(t->wbuf, t->wbuf + t->woff, t->wlen - t->woff);
			t->wlen -= t->woff;
			t->woff = 0;
		}
		while (t->wlen + n > t->wcap)
			t->wcap = t->wcap ? t->wcap * 2 : 65536;
		t->wbuf = xrealloc(t->wbuf, t->wcap);
	}
	return t->wbuf + t->wlen;
}

void
lg_target_commit(struct lg_target *t, size_t n)
{
	t->wlen += n;
}

void
lg_target_queue(struct lg_target *t, const char *s, size_t n)
{
	memcpy(lg_target_room(t, n), s, n);
	lg_target_commit(t, n);
}

bool
lg_target_pending(const struct lg_target *t)
{
	return t->woff < t->wlen;
}

int
lg_target_flush(struct lg_target *t)
{
	ssize_t n;

	while (t->woff < t->wlen) {
		n = write(t->in, t->wbuf + t->woff, t->wlen - t->woff);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -1;
		}
		t->woff += (size_t)n;
	}
	t->woff = t->wlen = 0;
	return 0;
}

static int
split(struct lg_target *t, void (*fn)(void *, char *, size_t), void *arg)
{
	char *p = t->rbuf, *end = t->rbuf + t->rlen, *nl;

	while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		*nl = '\0';
		fn(arg, p, (size_t)(nl - p));
		p = nl + 1;
	}
	t->rlen = (size_t)(end - p);
	memmove(t->rbuf, p, t->rlen);
	if (t->rlen >= LINE_MAX_BYTES) {
		/* One line longer than anything sensible: pass it on cut. */
		t->rbuf[t->rlen - 1] = '\0';
		fn(arg, t->rbuf, t->rlen - 1);
		t->rlen = 0;
	}
	return 0;
}

int
lg_target_read(
    struct lg_target *t, void (*fn)(void *, char *, size_t), void *arg)
{
	ssize_t n;
	int i;

	/* Bounded, so a target that never stops writing cannot starve the rest. */
	for (i = 0; i < 8; i++) {
		if (t->rcap - t->rlen < 65536) {
			t->rcap = t->rcap ? t->rcap * 2 : 262144;
			t->rbuf = xrealloc(t->rbuf, t->rcap);
		}
		n = read(t->out, t->rbuf + t->rlen, t->rcap - t->rlen - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		if (n == 0) {
			t->eof = true;
			if (t->rlen > 0) {
				t->rbuf[t->rlen] = '\0';
				fn(arg, t->rbuf, t->rlen);
				t->rlen = 0;
			}
			return 1;
		}
		t->rlen += (size_t)n;
		split(t, fn, arg);
		if ((size_t)n < 65536)
			return 0;
	}
	return 0;
}

static bool
reap(struct lg_target *t, int flags)
{
	pid_t r;

	if (t->reaped)
		return true;
	do
		r = waitpid(t->pid, &t->status, flags);
	while (r < 0 && errno == EINTR);
	if (r == t->pid || (r < 0 && errno == ECHILD))
		t->reaped = true;
	return t->reaped;
}

static void
nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static void
drain(struct lg_target *t)
{
	char buf[65536];
	int i;

	/* Bounded: a child that writes without end must not keep us here. */
	for (i = 0; i < 16 && t->out >= 0; i++)
		if (read(t->out, buf, sizeof(buf)) <= 0)
			break;
}

int
lg_target_stop(struct lg_target *t, long wait_ms)
{
	long waited;

	if (t->pid <= 0)
		return 0;
	if (t->in >= 0) {
		close(t->in);
		t->in = -1;
	}
	/* Keep reading, so a child still writing results is not stuck. */
	for (waited = 0; waited < wait_ms && !reap(t, WNOHANG); waited += 10) {
		drain(t);
		nap_ms(10);
	}
	if (!reap(t, WNOHANG)) {
		kill(-t->pid, SIGTERM);
		for (waited = 0; waited < 2000 && !reap(t, WNOHANG);
		     waited += 10)
			nap_ms(10);
	}
	if (!reap(t, WNOHANG)) {
		kill(-t->pid, SIGKILL);
		reap(t, 0);
	}
	if (t->out >= 0)
		close(t->out);
	t->out = -1;
	free(t->wbuf);
	free(t->rbuf);
	t->wbuf = t->rbuf = NULL;
	return t->status;
}

const char *
lg_target_how(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(
		    buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "stopped (status %d)", status);
	return buf;
}
