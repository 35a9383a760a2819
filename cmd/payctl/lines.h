/*
 * lines: the JSON Lines plumbing of the stream forms (payctl authorize -,
 * capture -, refund -): request lines read from standard input without
 * stdio, so a reader can tell whether more input is ready; reading that
 * stops at SIGTERM or SIGINT while the requests already read finish; and
 * the result lines, counted for the exit status that sums them up.
 */
#ifndef PAYCTL_LINES_H
#define PAYCTL_LINES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define LINE_MAX_BYTES 65536

struct lines {
	char *buf;
	size_t len, off, cap;
	long lineno;
	bool eof;
	bool skipping; /* the line was longer than LINE_MAX_BYTES */
	bool nul; /* the line holds a NUL byte, which no JSON text has */
};

enum { L_LINE, L_NONE, L_EOF };

/*
 * The next line of standard input in *out.  L_NONE when none is complete
 * and (without block) no more input is ready; L_EOF at the end, or at once
 * after a signal caught by lines_catch_signals().
 */
int lines_next(struct lines *L, bool block, char **out);

/*
 * From now on SIGTERM and SIGINT stop the reading (lines_next() says
 * L_EOF) and the requests already read run to their end; a second signal
 * ends the process at once.
 */
void lines_catch_signals(void);

/*
 * Print one result line (taking line), with "line": lineno when lineno is
 * positive, and count its outcome.
 */
void lines_emit(long lineno, json_t *rid, json_t *line, int code, bool declined,
    bool flush);
void lines_flush(void);
/* Standard output failed (a closed pipe): nothing more is printed. */
bool lines_out_failed(void);

/*
 * The exit status of the stream, L the lines read: the worst of 74
 * (output failed), 78 (a request met a missing grant or table, which
 * every request would), 65 (a bad line), 69, 70, 75 (requests that failed),
 * then 75 when a signal stopped the reading, then with exit_status 1 for a
 * declined request, else 0; what failed and where a signal stopped are
 * said on standard error.
 */
int lines_summary(const struct lines *L, bool exit_status);

#endif
