/*
 * conf: parsing, precedence, validation and secret masking.
 */
#include "conf.h"
#include "diag.h"
#include "unit.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/paykit-unit-XXXXXX";

static const char *
write_file(const char *name, const char *text, mode_t mode)
{
	static char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	fputs(text, fp);
	fclose(fp);
	chmod(path, mode);
	return path;
}

static void
fresh(void)
{
	conf_reset();
	unsetenv("PAY_CONFIG");
	unsetenv("PAY_DB_PORT");
	unsetenv("PAY_DB_HOST");
	unsetenv("PAY_DB_PASSWORD");
	unsetenv("PAY_PG_TIMEOUT");
	/* No system file may leak into the tests. */
	setenv("PAY_CONFIG", write_file("empty.conf", "", 0600), 1);
}

static void
parses_integers_strictly(void)
{
	long long v;

	CHECK(conf_parse_int("42", 0, 100, &v) == 0 && v == 42);
	CHECK(conf_parse_int("-1", 0, 100, &v) == -1);
	CHECK(conf_parse_int("101", 0, 100, &v) == -1);
	CHECK(conf_parse_int("abc", 0, 100, &v) == -1);
	CHECK(conf_parse_int("12abc", 0, 100, &v) == -1);
	CHECK(conf_parse_int("", 0, 100, &v) == -1);
	CHECK(conf_parse_int(" 1", 0, 100, &v) == -1);
	CHECK(conf_parse_int("99999999999999999999", 0, 100, &v) == -1);
}

static void
parses_durations(void)
{
	long long ms;

	CHECK(conf_parse_duration("250ms", &ms) == 0 && ms == 250);
	CHECK(conf_parse_duration("5s", &ms) == 0 && ms == 5000);
	CHECK(conf_parse_duration("2m", &ms) == 0 && ms == 120000);
	CHECK(conf_parse_duration("1h", &ms) == 0 && ms == 3600000);
	CHECK(conf_parse_duration("7d", &ms) == 0 && ms == 604800000);
	CHECK(conf_parse_duration("3", &ms) == 0 && ms == 3000);
	CHECK(conf_parse_duration("-5s", &ms) == -1);
	CHECK(conf_parse_duration("5x", &ms) == -1);
	CHECK(conf_parse_duration("s", &ms) == -1);
	CHECK(conf_parse_duration("99999999999999999d", &ms) == -1);
}

static void
defaults_apply(void)
{
	fresh();
	CHECK(conf_load() == 0);
	CHECK_STR(conf_str("db_host"), "127.0.0.1");
	CHECK(conf_int("db_port") == 13306);
	CHECK(conf_source("db_port") == CONF_DEFAULT);
}

static void
flag_beats_env_beats_file(void)
{
	fresh();
	setenv("PAY_CONFIG",
	    write_file("a.conf",
	        "# c\ndb_port = 1000\ndb_host=filehost\n"
	        "db_name = \"quoted\"\n",
	        0600),
	    1);
	setenv("PAY_DB_HOST", "envhost", 1);
	conf_set_flag("db_port", "2000");
	CHECK(conf_load() == 0);
	CHECK(conf_int("db_port") == 2000);
	CHECK(conf_source("db_port") == CONF_FLAG);
	CHECK_STR(conf_str("db_host"), "envhost");
	CHECK_STR(conf_str("db_name"), "quoted");
	CHECK(conf_source("db_name") == CONF_FILE);
}

static void
empty_env_means_unset(void)
{
	fresh();
	setenv("PAY_DB_HOST", "", 1);
	CHECK(conf_load() == 0);
	CHECK_STR(conf_str("db_host"), "127.0.0.1");
}

static void
bad_values_are_config_errors(void)
{
	fresh();
	setenv("PAY_DB_PORT", "abc", 1);
	CHECK(conf_load() == EX_CONFIG);
	fresh();
	setenv("PAY_DB_PORT", "70000", 1);
	CHECK(conf_load() == EX_CONFIG);
	fresh();
	setenv("PAY_PG_TIMEOUT", "-1s", 1);
	CHECK(conf_load() == EX_CONFIG);
	fresh();
	conf_set_flag("db_port", "x");
	CHECK(conf_load() == EX_USAGE);
}

static void
bad_files_are_config_errors(void)
{
	fresh();
	setenv("PAY_CONFIG", write_file("b.conf", "nonsense\n", 0600), 1);
	CHECK(conf_load() == EX_CONFIG);
	fresh();
	setenv("PAY_CONFIG", write_file("c.conf", "no_such = 1\n", 0600), 1);
	CHECK(conf_load() == EX_CONFIG);
	fresh();
	setenv("PAY_CONFIG", write_file("d.conf", "db_port = x\n", 0600), 1);
	CHECK(conf_load() == EX_CONFIG);
	fresh();
	setenv("PAY_CONFIG", "/nonexistent/paykit.conf", 1);
	CHECK(conf_load() == EX_CONFIG);
}

static void
password_file_must_be_private(void)
{
	char line[64];

	fresh();
	setenv("PAY_CONFIG",
	    write_file("e.conf", "db_password_file = /tmp/none\n", 0600), 1);
	CHECK(conf_load() == EX_CONFIG);
	fresh();
	snprintf(line, sizeof(line), "db_password_file = %s/pw\n", dir);
	write_file("pw", "s3cret\n", 0644);
	setenv("PAY_CONFIG", write_file("f.conf", line, 0600), 1);
	CHECK(conf_load() == EX_CONFIG);
	fresh();
	write_file("pw", "s3cret\n", 0600);
	setenv("PAY_CONFIG", write_file("f.conf", line, 0600), 1);
	CHECK(conf_load() == 0);
	CHECK_STR(conf_str("db_password"), "s3cret");
}

static void
dump_masks_secrets(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem;

	fresh();
	setenv("PAY_DB_PASSWORD", "hunter2", 1);
	CHECK(conf_kafka_prop("sasl.password=topsecret") == 0);
	CHECK(conf_kafka_prop("linger.ms=5") == 0);
	CHECK(conf_kafka_prop("novalue") == -1);
	CHECK(conf_load() == 0);
	mem = open_memstream(&buf, &len);
	conf_dump(mem);
	fclose(mem);
	CHECK(strstr(buf, "hunter2") == NULL);
	CHECK(strstr(buf, "topsecret") == NULL);
	CHECK(strstr(buf, "\"linger.ms\":\"5\"") != NULL);
	free(buf);
}

int
main(void)
{
	if (mkdtemp(dir) == NULL)
		return 2;
	diag_init("test_conf");
	/* The library's one-line messages are expected here; keep them out. */
	freopen("/dev/null", "w", stderr);
	RUN(parses_integers_strictly);
	RUN(parses_durations);
	RUN(defaults_apply);
	RUN(flag_beats_env_beats_file);
	RUN(empty_env_means_unset);
	RUN(bad_values_are_config_errors);
	RUN(bad_files_are_config_errors);
	RUN(password_file_must_be_private);
	RUN(dump_masks_secrets);
	UNIT_END();
}
