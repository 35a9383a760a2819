/*
 * conf: see conf.h.
 */
#include "conf.h"
#include "diag.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SYSTEM_CONF "/etc/paykit/paykit.conf"

enum type { T_STR, T_INT, T_DUR, T_BOOL, T_SECRET };

struct setting {
	const char *key;
	enum type type;
	const char *def;
	long long min, max; /* for T_INT, and T_DUR in ms */
	char *val;
	enum conf_source src;
	long long num;
};

#define DAY_MS (86400LL * 1000)
#define BREAKER(key, type, def, min, max)                                      \
	{ "breaker_" key, type, def, min, max },                               \
	    { "breaker_pg_" key, type, "", min, max },                         \
	{                                                                      \
		"breaker_kafka_" key, type, "", min, max                       \
	}

/* Every setting of every program; `man 7 paykit` documents them. */
static struct setting settings[] = {
	{ "db_host", T_STR, "127.0.0.1" },
	{ "db_port", T_INT, "13306", 1, 65535 },
	{ "db_socket", T_STR, "" },
	{ "db_name", T_STR, "paydb" },
	{ "db_user", T_STR, "payuser" },
	{ "db_password", T_SECRET, "" },
	{ "db_password_file", T_STR, "" },
	{ "db_connect_timeout", T_DUR, "5s", 1, DAY_MS },
	{ "db_ssl_ca", T_STR, "" },
	{ "db_ssl_cert", T_STR, "" },
	{ "db_ssl_key", T_STR, "" },
	{ "db_ssl_verify", T_BOOL, "false" },
	{ "kafka_brokers", T_STR, "127.0.0.1:9092" },
	{ "kafka_message_timeout", T_DUR, "5s", 1, DAY_MS },
	{ "topic_prefix", T_STR, "" },
	{ "pg_url", T_STR, "http://127.0.0.1:18080" },
	{ "pg_connect_timeout", T_DUR, "1s", 1, DAY_MS },
	{ "pg_timeout", T_DUR, "5s", 1, DAY_MS },
	{ "rate_limit_authorize", T_INT, "0", 0, 1000000000 },
	{ "rate_limit_capture", T_INT, "0", 0, 1000000000 },
	{ "rate_limit_refund", T_INT, "0", 0, 1000000000 },
	{ "rate_limit_window", T_DUR, "60s", 1000, DAY_MS },
	/*
	 * Circuit breakers: defaults for every breaker (those of the original
	 * kafka-publisher breaker), each overridable per breaker; an empty
	 * per-breaker value means "use the default".
	 */
	BREAKER("window", T_DUR, "10s", 1000, DAY_MS),
	BREAKER("min_calls", T_INT, "5", 1, 1000000),
	BREAKER("failure_rate", T_INT, "50", 1, 100),
	BREAKER("slow_call_duration", T_DUR, "2s", 1, DAY_MS),
	BREAKER("slow_call_rate", T_INT, "50", 1, 100),
	BREAKER("wait_open", T_DUR, "30s", 1, DAY_MS),
	BREAKER("wait_open_max", T_DUR, "", 1, DAY_MS),
	BREAKER("half_open_calls", T_INT, "3", 1, 1000),
	BREAKER("permit_ttl", T_DUR, "10s", 100, DAY_MS),
	{ "consumer_batch", T_INT, "100", 1, 10000 },
	{ "consumer_commit_interval", T_DUR, "1s", 1, DAY_MS },
	{ "consumer_join_timeout", T_DUR, "30s", 1, DAY_MS },
	{ "consumer_purge_batch", T_INT, "500", 1, 100000 },
	{ "settle_group", T_STR, "settle" },
	{ "settle_concurrency", T_INT, "512", 1, 4096 },
	{ "settle_max_retries", T_INT, "10", 0, 1000 },
	{ "settle_retry_base", T_DUR, "2s", 1, DAY_MS },
	{ "settle_retry_max", T_DUR, "10m", 1, DAY_MS },
	{ "refund_group", T_STR, "refund" },
	{ "refund_concurrency", T_INT, "256", 1, 4096 },
	{ "refund_max_retries", T_INT, "10", 0, 1000 },
	{ "refund_retry_base", T_DUR, "2s", 1, DAY_MS },
	{ "refund_retry_max", T_DUR, "10m", 1, DAY_MS },
	{ "ledger_group", T_STR, "ledger-apply" },
	{ "relay_batch", T_INT, "1000", 1, 10000 },
	{ "relay_jobs", T_INT, "2", 1, 16 },
	{ "relay_max_attempts", T_INT, "20", 1, 1000 },
	{ "relay_backoff", T_DUR, "1s", 1, DAY_MS },
	{ "relay_backoff_max", T_DUR, "5m", 1, DAY_MS },
	{ "relay_idle_sleep", T_DUR, "10ms", 0, 10000 },
	{ "relay_purge_batch", T_INT, "500", 1, 100000 },
	{ "relay_stats_interval", T_DUR, "10s", 100, DAY_MS },
	/* dbstat: thresholds of its checks, and what it looks at. */
	{ "dbstat_max_outbox_age", T_DUR, "5m", 0, DAY_MS },
	{ "dbstat_max_lag", T_INT, "-1", -1, 1000000000000000LL },
	{ "dbstat_kafka_groups", T_STR, "settle,refund,ledger-apply" },
	{ "dbstat_kafka_timeout", T_DUR, "2s", 1, DAY_MS },
	{ "dbstat_ledger_account", T_STR, "pg_receivable" },
	{ "dbstat_ledger_grace", T_DUR, "60s", 0, DAY_MS },
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static struct conf_kv *kprops;
static size_t nkprops;
static bool loaded;

static struct setting *
lookup(const char *key)
{
	size_t i;

	for (i = 0; i < NSETTINGS; i++)
		if (strcmp(settings[i].key, key) == 0)
			return &settings[i];
	return NULL;
}

static struct setting *
must(const char *key)
{
	struct setting *s = lookup(key);

	if (s == NULL)
		diag_die(EX_SOFTWARE, "unknown setting '%s'", key);
	if (!loaded)
		diag_die(
		    EX_SOFTWARE, "setting '%s' read before conf_load", key);
	return s;
}

static void
set(struct setting *s, const char *v, enum conf_source src)
{
	free(s->val);
	s->val = xstrdup(v);
	s->src = src;
}

void
conf_set_flag(const char *key, const char *value)
{
	struct setting *s = lookup(key);

	if (s == NULL)
		diag_die(EX_SOFTWARE, "unknown setting '%s'", key);
	set(s, value, CONF_FLAG);
}

static void
add_kprop(const char *k, size_t klen, const char *v)
{
	kprops = xrealloc(kprops, (nkprops + 1) * sizeof(*kprops));
	kprops[nkprops].key = strndup(k, klen);
	kprops[nkprops].value = xstrdup(v);
	if (kprops[nkprops].key == NULL)
		diag_die(EX_SOFTWARE, "out of memory");
	nkprops++;
}

int
conf_kafka_prop(const char *kv)
{
	const char *eq = strchr(kv, '=');

	if (eq == NULL || eq == kv)
		return -1;
	add_kprop(kv, (size_t)(eq - kv), eq + 1);
	return 0;
}

size_t
conf_kafka_props(const struct conf_kv **props)
{
	*props = kprops;
	return nkprops;
}

int
conf_parse_int(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int
conf_parse_duration(const char *s, long long *ms)
{
	static const struct {
		const char *unit;
		long long ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 }, { "", 1000 } };
	char *end;
	long long v;
	size_t i;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0)
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (v > LLONG_MAX / units[i].ms)
			return -1;
		*ms = v * units[i].ms;
		return 0;
	}
	return -1;
}

static const char *
type_want(enum type t)
{
	switch (t) {
	case T_INT:
		return "an integer";
	case T_DUR:
		return "a duration such as 500ms, 5s, 2m, 1h or 7d";
	case T_BOOL:
		return "true or false";
	default:
		return "a string";
	}
}

/* Parse s->val into s->num; -1 if it does not fit the setting's type. */
static int
validate(struct setting *s)
{
	const char *v = s->val ? s->val : s->def;

	/* A setting whose default is empty may stay unset: num is -1. */
	if (*v == '\0' && *s->def == '\0' && s->type != T_STR &&
	    s->type != T_SECRET) {
		s->num = -1;
		return 0;
	}
	switch (s->type) {
	case T_INT:
		return conf_parse_int(v, s->min, s->max, &s->num);
	case T_DUR:
		if (conf_parse_duration(v, &s->num) != 0)
			return -1;
		return s->num < s->min || s->num > s->max ? -1 : 0;
	case T_BOOL:
		if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
		    strcmp(v, "yes") == 0)
			s->num = 1;
		else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 ||
		    strcmp(v, "no") == 0)
			s->num = 0;
		else
			return -1;
		return 0;
	default:
		return strlen(v) > 4096 || strchr(v, '\n') ? -1 : 0;
	}
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	if (e - s >= 2 && *s == '"' && e[-1] == '"') {
		e[-1] = '\0';
		s++;
	}
	return s;
}

static int
read_file(const char *path, bool must_exist)
{
	char *line = NULL, *eq, *k, *v;
	size_t cap = 0;
	int lineno = 0, rc = 0;
	struct setting *s;
	FILE *fp;

	fp = fopen(path, "r");
	if (fp == NULL) {
		if (errno == ENOENT && !must_exist)
			return 0;
		diag_warn("config file '%s': %s", path, strerror(errno));
		return EX_CONFIG;
	}
	while (getline(&line, &cap, fp) != -1) {
		lineno++;
		k = trim(line);
		if (*k == '\0' || *k == '#')
			continue;
		eq = strchr(k, '=');
		if (eq == NULL) {
			diag_warn(
			    "%s:%d: expected 'key = value'", path, lineno);
			rc = EX_CONFIG;
			break;
		}
		*eq = '\0';
		v = trim(eq + 1);
		k = trim(k);
		if (strncmp(k, "kafka.", 6) == 0 && k[6] != '\0') {
			add_kprop(k + 6, strlen(k + 6), v);
			continue;
		}
		if ((s = lookup(k)) == NULL) {
			diag_warn(
			    "%s:%d: unknown setting '%s'", path, lineno, k);
			rc = EX_CONFIG;
			break;
		}
		if (s->src > CONF_FILE)
			continue;
		set(s, v, CONF_FILE);
		if (validate(s) != 0) {
			diag_warn("%s:%d: setting '%s': '%s' is not %s", path,
			    lineno, k, v, type_want(s->type));
			rc = EX_CONFIG;
			break;
		}
	}
	if (rc == 0 && ferror(fp)) {
		diag_warn("config file '%s': %s", path, strerror(errno));
		rc = EX_CONFIG;
	}
	free(line);
	fclose(fp);
	return rc;
}

static void
env_name(const struct setting *s, char *buf, size_t len)
{
	size_t i;

	snprintf(buf, len, "PAY_%s", s->key);
	for (i = 4; buf[i] != '\0'; i++)
		buf[i] = (char)toupper((unsigned char)buf[i]);
}

/* Secrets may come from a file that only its owner can read. */
static int
read_password_file(struct setting *pw, const char *path)
{
	char buf[1024];
	struct stat st;
	size_t n;
	FILE *fp;

	fp = fopen(path, "r");
	if (fp == NULL) {
		diag_warn("password file '%s': %s", path, strerror(errno));
		return EX_CONFIG;
	}
	if (fstat(fileno(fp), &st) == 0 && (st.st_mode & 077) != 0) {
		diag_warn("password file '%s': readable by group or others "
		          "(chmod 600 it)",
		    path);
		fclose(fp);
		return EX_CONFIG;
	}
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	set(pw, buf, CONF_FILE);
	return 0;
}

int
conf_load(void)
{
	const char *path, *v;
	char name[128];
	struct setting *s, *pw;
	size_t i;
	int rc;

	loaded = true;
	path = getenv("PAY_CONFIG");
	if (path != NULL && *path != '\0')
		rc = read_file(path, true);
	else
		rc = read_file(SYSTEM_CONF, false);
	if (rc != 0)
		return rc;
	for (i = 0; i < NSETTINGS; i++) {
		s = &settings[i];
		env_name(s, name, sizeof(name));
		v = getenv(name);
		if (v != NULL && *v != '\0' && s->src < CONF_ENV)
			set(s, v, CONF_ENV);
		if (validate(s) != 0) {
			if (s->src == CONF_FLAG) {
				diag_warn("setting '%s': '%s' is not %s",
				    s->key, s->val, type_want(s->type));
				return EX_USAGE;
			}
			if (s->src == CONF_ENV) {
				diag_warn("setting '%s': '%s' is not %s", name,
				    s->val, type_want(s->type));
				return EX_CONFIG;
			}
			diag_warn("setting '%s': '%s' is not %s", s->key,
			    s->val ? s->val : s->def, type_want(s->type));
			return EX_CONFIG;
		}
	}
	pw = lookup("db_password");
	s = lookup("db_password_file");
	if (s->val != NULL && *s->val != '\0' && pw->src == CONF_DEFAULT)
		return read_password_file(pw, s->val);
	return 0;
}

const char *
conf_str(const char *key)
{
	struct setting *s = must(key);

	return s->val ? s->val : s->def;
}

long long
conf_int(const char *key)
{
	return must(key)->num;
}

long long
conf_ms(const char *key)
{
	return must(key)->num;
}

bool
conf_bool(const char *key)
{
	return must(key)->num != 0;
}

enum conf_source
conf_source(const char *key)
{
	return must(key)->src;
}

static bool
secret_key(const char *k)
{
	return strstr(k, "password") != NULL || strstr(k, "secret") != NULL ||
	    strstr(k, "sasl.") != NULL || strstr(k, ".key") != NULL;
}

static void
dump_str(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(fp, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(fp, "\\u%04x", *s);
		else
			fputc(*s, fp);
	}
	fputc('"', fp);
}

void
conf_dump(FILE *fp)
{
	static const char *srcname[] = { "default", "file", "env", "flag" };
	const char *v;
	size_t i;

	fputc('{', fp);
	for (i = 0; i < NSETTINGS; i++) {
		v = settings[i].val ? settings[i].val : settings[i].def;
		if (settings[i].type == T_SECRET && *v != '\0')
			v = "********";
		fprintf(
		    fp, "%s\"%s\":{\"value\":", i ? "," : "", settings[i].key);
		dump_str(fp, v);
		fprintf(fp, ",\"source\":\"%s\"}", srcname[settings[i].src]);
	}
	fputs(",\"kafka\":{", fp);
	for (i = 0; i < nkprops; i++) {
		fprintf(fp, "%s", i ? "," : "");
		dump_str(fp, kprops[i].key);
		fputc(':', fp);
		dump_str(fp,
		    secret_key(kprops[i].key) ? "********" : kprops[i].value);
	}
	fputs("}}\n", fp);
}

void
conf_reset(void)
{
	size_t i;

	for (i = 0; i < NSETTINGS; i++) {
		free(settings[i].val);
		settings[i].val = NULL;
		settings[i].src = CONF_DEFAULT;
	}
	for (i = 0; i < nkprops; i++) {
		free((char *)kprops[i].key);
		free((char *)kprops[i].value);
	}
	free(kprops);
	kprops = NULL;
	nkprops = 0;
	loaded = false;
}
