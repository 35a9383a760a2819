/*
 * spawn: how long a command takes from start to exit, run runs times one
 * after another, after warm-up runs that are not counted.  Every "{}" in an
 * argument becomes the run's number (warm-up runs included, so each run
 * can use a key of its own).  The command's standard output goes to
 * /dev/null; a run that exits non-zero counts as a failure and is left
 * out of the figures.  One JSON line on stdout, times in milliseconds:
 *
 *   {"runs":50,"failures":0,"median_ms":18.2,"p90_ms":19.9,"min_ms":17.1,
 *    "max_ms":24.0,"mean_ms":18.5}
 */
#include "bench.h"

#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char usage_text[] =
    "usage: spawn [-h] [-n runs] [-w warm-up-runs] command [arg ...]\n";

/* arg with every "{}" replaced by n. */
static char *
subst(const char *arg, long long n)
{
	char num[24], *out, *o;
	size_t len = 0, k;
	const char *p;

	k = (size_t)snprintf(num, sizeof(num), "%lld", n);
	for (p = arg; *p != '\0'; p++)
		len += (p[0] == '{' && p[1] == '}') ? k : 1;
	out = o = xmalloc(len + 1);
	for (p = arg; *p != '\0'; p++) {
		if (p[0] == '{' && p[1] == '}') {
			memcpy(o, num, k);
			o += k;
			p++;
		} else
			*o++ = *p;
	}
	*o = '\0';
	return out;
}

/* Run argv once with "{}" as n: its time in ms, or -1 when it failed. */
static double
once(char **argv, int argc, long long n)
{
	posix_spawn_file_actions_t fa;
	char **av = xcalloc((size_t)argc + 1, sizeof(*av));
	double t0, t1;
	int i, st = 0, rc;
	pid_t pid;

	for (i = 0; i < argc; i++)
		av[i] = subst(argv[i], n);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	t0 = bench_now();
	rc = posix_spawnp(&pid, av[0], &fa, NULL, av, environ);
	if (rc == 0)
		while (waitpid(pid, &st, 0) < 0)
			;
	t1 = bench_now();
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		diag_die(
		    EX_UNAVAILABLE, "cannot run '%s': %s", av[0], strerror(rc));
	for (i = 0; i < argc; i++)
		free(av[i]);
	free(av);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	return (t1 - t0) * 1000;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of the sorted v[0..n-1]. */
static double
pct(const double *v, size_t n, double p)
{
	size_t r = (size_t)((p / 100) * (double)n + 0.999999);

	if (r < 1)
		r = 1;
	return v[(r > n ? n : r) - 1];
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "runs", required_argument, NULL, 'n' },
		{ "warm-up", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	long long runs = 20, warm = 2, i, failures = 0;
	double *v, t, sum = 0, median;
	size_t n = 0;
	int c;

	diag_init(argv[0]);
	/* "+": the command's own options are not spawn's. */
	while ((c = getopt_long(argc, argv, "+:hn:w:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return diag_close_stdout();
		case 'n':
			runs = bench_int("n", optarg, 1, 1000000);
			break;
		case 'w':
			warm = bench_int("w", optarg, 0, 1000000);
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind == argc)
		return diag_usage("a command is needed");
	argc -= optind;
	argv += optind;
	for (i = 0; i < warm; i++)
		once(argv, argc, i);
	v = xcalloc((size_t)runs, sizeof(*v));
	for (i = 0; i < runs; i++) {
		t = once(argv, argc, warm + i);
		if (t < 0) {
			failures++;
			continue;
		}
		v[n++] = t;
		sum += t;
	}
	if (n == 0) {
		diag_warn("every run of '%s' failed", argv[0]);
		return EX_UNAVAILABLE;
	}
	qsort(v, n, sizeof(*v), cmp);
	median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	printf("{\"runs\":%zu,\"failures\":%lld,\"median_ms\":%.3f,"
	       "\"p90_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f,"
	       "\"mean_ms\":%.3f}\n",
	    n, failures, median, pct(v, n, 90), v[0], v[n - 1],
	    sum / (double)n);
	free(v);
	return diag_close_stdout();
}
