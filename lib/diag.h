/*
 * diag: the program's name, one-line diagnostics on stderr, the exit-code
 * table every paykit program shares, and allocation helpers that die.
 */
#ifndef PAYKIT_DIAG_H
#define PAYKIT_DIAG_H

#include <stdarg.h>
#include <stddef.h>
#include <sysexits.h>

/*
 * The exit-code table (see paykit(7) and every man page's EXIT STATUS):
 * 0 ok; 1 a check found a mismatch or an outcome was declined with -e;
 * 64 usage; 65 bad input data; 69 a dependency is unavailable; 70 internal
 * error; 74 I/O error; 75 temporary failure, safe to retry; 78 configuration.
 */
#define EX_MISMATCH 1

#define PAYKIT_VERSION "0.1.0"

void diag_init(const char *argv0);
const char *diag_prog(void);

/* "prog: message" on stderr. */
void diag_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void diag_vwarn(const char *fmt, va_list ap);
_Noreturn void diag_die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Printed only when the verbosity level is at least the message's level. */
extern int diag_verbose;
void diag_info(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Usage errors are one line, pointing at -h: "prog: why (see 'prog -h')".
 * diag_badopt() words getopt's '?' and ':' (optstring starting with ':')
 * from optopt and argv[optind - 1].  Both return EX_USAGE.
 */
int diag_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int diag_badopt(int c, char **argv);

/* Version line for -V. */
void diag_version(void);

/*
 * Flush and close stdout: 0, or EX_IOERR after a message.  A closed pipe
 * (EPIPE) is a quiet success, as with git and jq.
 */
int diag_close_stdout(void);

/* Ignore SIGPIPE so writes to a closed pipe fail with EPIPE instead. */
void diag_ignore_sigpipe(void);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
