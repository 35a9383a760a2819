/*
 * lg_target: the processes loadgen drives.  Each runs "sh -c command" in
 * its own process group (so a terminal's ^C reaches loadgen alone), reads
 * request lines on its standard input and writes result lines on its
 * standard output; loadgen's ends of both pipes are non-blocking, writes
 * are queued and sent when the pipe has room.
 */
#ifndef PAYKIT_LG_TARGET_H
#define PAYKIT_LG_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct lg_target {
	const char *cmd;
	pid_t pid;
	int in, out; /* our ends: the child's stdin and stdout */
	char *wbuf;
	size_t woff, wlen, wcap;
	char *rbuf;
	size_t rlen, rcap;
	bool eof;
	int status; /* from waitpid, once reaped */
	bool reaped;
};

/* Start cmd: 0, or -1 with the reason in err. */
int lg_target_start(
    struct lg_target *t, const char *cmd, char *err, size_t errlen);

/* Queue n bytes for the child's stdin; lg_target_flush sends them. */
void lg_target_queue(struct lg_target *t, const char *s, size_t n);
/* Room left to format straight into the queue (at least n bytes). */
char *lg_target_room(struct lg_target *t, size_t n);
void lg_target_commit(struct lg_target *t, size_t n);
bool lg_target_pending(const struct lg_target *t);

/* Write what the pipe takes: 0, or -1 with errno (EPIPE: child gone). */
int lg_target_flush(struct lg_target *t);

/*
 * Read what is there and call fn for each complete line (without its
 * newline, NUL-terminated).  0 more may come, 1 end of file, -1 errno.
 */
int lg_target_read(
    struct lg_target *t, void (*fn)(void *, char *, size_t), void *arg);

/*
 * Close the child's stdin and wait up to wait_ms for it to exit, then
 * SIGTERM, then SIGKILL.  Returns what waitpid reported.
 */
int lg_target_stop(struct lg_target *t, long wait_ms);

/* "exited with status 3", "was killed by signal 9", for messages. */
const char *lg_target_how(int status, char *buf, size_t len);

#endif
