/*
 * devbroker: an in-memory Kafka cluster on loopback for the dev and test
 * stack, built on librdkafka's mock cluster.  It prints its bootstrap address
 * as one JSON line, then only answers signals: SIGUSR1 takes every broker
 * down, SIGUSR2 brings them back, SIGTERM and SIGINT stop it.  Production
 * runs a real Kafka cluster; nothing here is durable.
 */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "diag.h"

#define BROKERS_MAX 16
#define PARTITIONS_MAX 1000
/* Kafka's own limit on topic names. */
#define TOPIC_NAME_MAX 249

static const char usage_text[] =
    "usage: devbroker [-hV] [-b count] [-p partitions] "
    "[-t topic[:partitions]] ...\n";

struct topic {
	char *name;
	long long partitions; /* 0: take -p */
};

struct opts {
	long long brokers;
	long long partitions;
	struct topic *topics;
	size_t ntopics;
};

static _Noreturn void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static _Noreturn void
usage_error(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	exit(diag_usage("%s", buf));
}

/*
 * Digits only: strtoll alone would also take blanks and a sign, and
 * "-p ' 6'" is more likely a quoting slip than a partition count.
 */
static long long
parse_num(const char *what, const char *s, long long min, long long max)
{
	char *end;
	long long v;

	if (*s < '0' || *s > '9')
		usage_error("%s '%s': not a number", what, s);
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != '\0')
		usage_error("%s '%s': not a number", what, s);
	if (errno == ERANGE || v < min || v > max)
		usage_error(
		    "%s '%s': not between %lld and %lld", what, s, min, max);
	return v;
}

/*
 * Refused here rather than left to librdkafka: the mock accepts any name,
 * so a typo would only show up when a real Kafka rejects it.
 */
static void
check_topic_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > TOPIC_NAME_MAX)
		usage_error("topic '%s': name must have 1 to %d characters",
		    name, TOPIC_NAME_MAX);
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
	    strspn(name,
	        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	        "0123456789._-") != n)
		usage_error("topic '%s': not a valid Kafka topic name", name);
}

static void
add_topic(struct opts *o, const char *arg)
{
	struct topic t;
	const char *colon = strchr(arg, ':');
	size_t i;

	if (colon != NULL) {
		t.name = xasprintf("%.*s", (int)(colon - arg), arg);
		t.partitions =
		    parse_num("partitions", colon + 1, 1, PARTITIONS_MAX);
	} else {
		t.name = xstrdup(arg);
		t.partitions = 0;
	}
	check_topic_name(t.name);
	for (i = 0; i < o->ntopics; i++)
		if (strcmp(o->topics[i].name, t.name) == 0)
			usage_error("topic '%s': given twice", t.name);
	o->topics = xrealloc(o->topics, (o->ntopics + 1) * sizeof(*o->topics));
	o->topics[o->ntopics++] = t;
}

static void
parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "brokers", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ "partitions", required_argument, NULL, 'p' },
		{ "topic", required_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->brokers = 1;
	o->partitions = 6;
	o->topics = NULL;
	o->ntopics = 0;
	/* A leading ':' lets us word the missing-argument message ourselves. */
	while (
	    (c = getopt_long(argc, argv, ":b:hp:t:V", longopts, NULL)) != -1) {
		switch (c) {
		case 'b':
			o->brokers =
			    parse_num("brokers", optarg, 1, BROKERS_MAX);
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(diag_close_stdout());
		case 'p':
			o->partitions =
			    parse_num("partitions", optarg, 1, PARTITIONS_MAX);
			break;
		case 't':
			add_topic(o, optarg);
			break;
		case 'V':
			diag_version();
			exit(diag_close_stdout());
		default:
			exit(diag_badopt(c, argv));
		}
	}
	if (optind < argc)
		usage_error(
		    "argument '%s': devbroker takes no operands", argv[optind]);
}

/*
 * librdkafka logs from its own threads; one diag line each keeps stderr in
 * the one-line-per-event shape whatever thread speaks.
 */
static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	diag_warn("librdkafka %s: %s", fac, buf);
}

/*
 * The mock cluster needs an rd_kafka_t for its bookkeeping only; this one
 * has no bootstrap servers and never connects anywhere.
 */
static rd_kafka_t *
new_handle(void)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errstr[512];
	rd_kafka_t *rk;

	rd_kafka_conf_set_log_cb(conf, log_cb);
	/*
	 * Errors only: at warning level the handle complains that it has no
	 * bootstrap servers, which is the point of it.
	 */
	if (rd_kafka_conf_set(conf, "client.id", "devbroker", errstr,
	        sizeof(errstr)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) !=
	        RD_KAFKA_CONF_OK)
		diag_die(EX_SOFTWARE, "configure librdkafka: %s", errstr);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
		diag_die(EX_SOFTWARE, "create librdkafka handle: %s", errstr);
	return rk;
}

static int
create_topics(rd_kafka_mock_cluster_t *mc, const struct opts *o)
{
	/* What the mock gives topics it creates on its own. */
	int rf = o->brokers < 3 ? (int)o->brokers : 3;
	rd_kafka_resp_err_t err;
	size_t i;

	for (i = 0; i < o->ntopics; i++) {
		const struct topic *t = &o->topics[i];

		err = rd_kafka_mock_topic_create(mc, t->name,
		    (int)(t->partitions ? t->partitions : o->partitions), rf);
		if (err) {
			diag_warn("create topic '%s': %s", t->name,
			    rd_kafka_err2str(err));
			return -1;
		}
	}
	return 0;
}

/*
 * The mock cluster's sockets leave Nagle's algorithm on, which stalls every
 * produce round that touches several partitions by ~40 ms; a real broker
 * sets TCP_NODELAY.  Set it on our listening sockets, and the connections
 * they accept inherit it.
 */
static void
set_nodelay(void)
{
	struct dirent *de;
	int fd, one = 1, listening;
	socklen_t len;
	DIR *d;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		fd = (int)strtol(de->d_name, NULL, 10);
		len = sizeof(listening);
		if (fd == dirfd(d) ||
		    getsockopt(
		        fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
		    !listening)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	closedir(d);
}

/* -1 is every broker: librdkafka 2.0.2 applies it to each in turn. */
static void
set_brokers(rd_kafka_mock_cluster_t *mc, int up)
{
	rd_kafka_resp_err_t err;

	err = up ? rd_kafka_mock_broker_set_up(mc, -1)
	         : rd_kafka_mock_broker_set_down(mc, -1);
	if (err)
		diag_warn("set brokers %s: %s", up ? "up" : "down",
		    rd_kafka_err2str(err));
	else
		diag_warn("brokers %s", up ? "up" : "down");
	/* In case the listeners were made anew. */
	if (up)
		set_nodelay();
}

/*
 * The mock-cluster calls queue an operation and wait for the cluster thread
 * to reply, which no signal handler may do; sigwait brings each signal here
 * as an ordinary event instead.
 */
static int
serve(rd_kafka_mock_cluster_t *mc, const sigset_t *sigs)
{
	int sig, err;

	for (;;) {
		if ((err = sigwait(sigs, &sig)) != 0) {
			diag_warn("wait for signals: %s", strerror(err));
			return EX_SOFTWARE;
		}
		switch (sig) {
		case SIGUSR1:
			set_brokers(mc, 0);
			break;
		case SIGUSR2:
			set_brokers(mc, 1);
			break;
		default:
			diag_warn("stopping on %s",
			    sig == SIGTERM ? "SIGTERM" : "SIGINT");
			return 0;
		}
	}
}

int
main(int argc, char **argv)
{
	static const int handled[] = { SIGUSR1, SIGUSR2, SIGTERM, SIGINT };
	struct opts o;
	sigset_t sigs;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	int code, err;
	size_t i;

	diag_init(argv[0]);
	parse_args(argc, argv, &o);
	diag_ignore_sigpipe();

	/*
	 * Blocked before librdkafka starts its threads, which inherit the
	 * mask, so every one of these signals waits for sigwait in serve().
	 * An ignored signal is discarded even when blocked, and a shell
	 * starts background jobs with SIGINT ignored, hence SIG_DFL first.
	 */
	sigemptyset(&sigs);
	for (i = 0; i < sizeof(handled) / sizeof(handled[0]); i++) {
		signal(handled[i], SIG_DFL);
		sigaddset(&sigs, handled[i]);
	}
	if ((err = pthread_sigmask(SIG_BLOCK, &sigs, NULL)) != 0)
		diag_die(EX_SOFTWARE, "block signals: %s", strerror(err));

	rk = new_handle();
	mc = rd_kafka_mock_cluster_new(rk, (int)o.brokers);
	if (mc == NULL) {
		rd_kafka_destroy(rk);
		diag_die(EX_UNAVAILABLE,
		    "start mock cluster on 127.0.0.1: cannot listen");
	}

	set_nodelay();
	code = 0;
	if (create_topics(mc, &o) == -1)
		code = EX_SOFTWARE;
	else if (printf("{\"bootstrap\":\"%s\",\"brokers\":%lld}\n",
	             rd_kafka_mock_cluster_bootstraps(mc), o.brokers) < 0 ||
	    fflush(stdout) == EOF) {
		/* A supervisor that cannot read the address cannot use us. */
		diag_warn("write to standard output: %s", strerror(errno));
		code = EX_IOERR;
	}
	if (code == 0)
		code = serve(mc, &sigs);

	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	for (i = 0; i < o.ntopics; i++)
		free(o.topics[i].name);
	free(o.topics);
	if (code == 0)
		code = diag_close_stdout();
	return code;
}
