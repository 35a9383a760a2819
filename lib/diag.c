/*
 * diag: see diag.h.
 */
#include "diag.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "paykit";
int diag_verbose;

void
diag_init(const char *argv0)
{
	const char *slash;

	if (argv0 == NULL || *argv0 == '\0')
		return;
	slash = strrchr(argv0, '/');
	prog = slash ? slash + 1 : argv0;
	/* Option errors are worded by diag_badopt(), on one line. */
	opterr = 0;
}

const char *
diag_prog(void)
{
	return prog;
}

void
diag_vwarn(const char *fmt, va_list ap)
{
	char buf[2048];
	size_t i;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One line per diagnostic, whatever a library put in its message. */
	for (i = 0; buf[i] != '\0'; i++)
		if (buf[i] == '\n' || buf[i] == '\r')
			buf[i] = ' ';
	while (i > 0 && buf[i - 1] == ' ')
		buf[--i] = '\0';
	fprintf(stderr, "%s: %s\n", prog, buf);
}

void
diag_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_vwarn(fmt, ap);
	va_end(ap);
}

void
diag_die(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_vwarn(fmt, ap);
	va_end(ap);
	exit(code);
}

void
diag_info(int level, const char *fmt, ...)
{
	va_list ap;

	if (diag_verbose < level)
		return;
	va_start(ap, fmt);
	diag_vwarn(fmt, ap);
	va_end(ap);
}

int
diag_usage(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	diag_warn("%s (see '%s -h')", buf, prog);
	return EX_USAGE;
}

int
diag_badopt(int c, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";

	if (c == ':') {
		if (optopt != 0 && arg[0] == '-' && arg[1] != '-')
			return diag_usage("option '-%c' needs a value", optopt);
		return diag_usage("option '%s' needs a value", arg);
	}
	if (optopt != 0)
		return diag_usage("unknown option '-%c'", optopt);
	return diag_usage("unknown option '%s'", arg);
}

void
diag_version(void)
{
	printf("%s (paykit) %s\n", prog, PAYKIT_VERSION);
}

int
diag_close_stdout(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (errno == EPIPE)
			return 0;
		diag_warn("write to standard output: %s", strerror(errno));
		return EX_IOERR;
	}
	if (fclose(stdout) != 0 && errno != EPIPE) {
		diag_warn("close standard output: %s", strerror(errno));
		return EX_IOERR;
	}
	return 0;
}

void
diag_ignore_sigpipe(void)
{
	signal(SIGPIPE, SIG_IGN);
}

static void
oom(void)
{
	diag_die(EX_SOFTWARE, "out of memory");
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom();
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		oom();
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		oom();
	return p;
}

char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		oom();
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom();
	return p;
}
