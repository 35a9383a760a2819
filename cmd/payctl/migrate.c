/*
 * payctl migrate: apply the schema migrations in order, each recorded in
 * schema_version, under a database lock so that concurrent runs are safe.
 * MariaDB cannot roll DDL back, so a migration that fails halfway is
 * recorded as 'failed' (never as applied) and every statement is written to
 * be re-runnable: fix the cause and run migrate again.
 */
#include "conf.h"
#include "diag.h"
#include "js.h"
#include "migrations.h"
#include "payctl.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: payctl migrate [-hs] [-d dir] [-w seconds]\n";

static const char create_version[] =
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INT NOT NULL PRIMARY KEY,"
    " name VARCHAR(128) NOT NULL,"
    " checksum CHAR(16) NOT NULL,"
    " state VARCHAR(8) NOT NULL,"
    " error VARCHAR(1000) NULL,"
    " applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

static const char select_version[] =
    "SELECT checksum, state FROM schema_version WHERE version = ?";
static const char record_version[] =
    "REPLACE INTO schema_version (version, name, checksum, state, error)"
    " VALUES (?, ?, ?, ?, ?)";
static const char get_lock[] = "SELECT GET_LOCK('paykit.migrate', ?)";
static const char release_lock[] = "SELECT RELEASE_LOCK('paykit.migrate')";

struct mig {
	char *name;
	char *sql;
	int version;
};

/* FNV-1a, enough to notice an applied migration that was edited. */
static void
checksum(const char *s, char out[17])
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static int
version_of(const char *name)
{
	long long v;
	char buf[16];
	size_t n = strspn(name, "0123456789");

	if (n == 0 || n >= sizeof(buf) || name[n] != '_')
		return -1;
	memcpy(buf, name, n);
	buf[n] = '\0';
	if (conf_parse_int(buf, 1, 999999, &v) != 0)
		return -1;
	return (int)v;
}

static int
cmp_name(const void *a, const void *b)
{
	return strcmp(
	    ((const struct mig *)a)->name, ((const struct mig *)b)->name);
}

static char *
slurp(const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = fopen(path, "r");
	FILE *mem;
	char chunk[8192];
	size_t n;

	if (fp == NULL)
		return NULL;
	mem = open_memstream(&buf, &len);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		fwrite(chunk, 1, n, mem);
	if (ferror(fp)) {
		fclose(fp);
		fclose(mem);
		free(buf);
		return NULL;
	}
	fclose(fp);
	fclose(mem);
	return buf;
}

/* The migrations from dir, or the compiled-in ones when dir is NULL. */
static int
load(const char *dir, struct mig **out, size_t *count)
{
	struct mig *m = NULL;
	struct dirent *de;
	size_t n = 0, len;
	char *path;
	DIR *d;

	if (dir == NULL) {
		for (n = 0; migrations[n].name != NULL; n++)
			;
		m = xcalloc(n, sizeof(*m));
		for (size_t i = 0; i < n; i++) {
			m[i].name = xstrdup(migrations[i].name);
			m[i].sql = xstrdup(migrations[i].sql);
		}
	} else {
		if ((d = opendir(dir)) == NULL) {
			diag_warn("migration directory '%s': %s", dir,
			    strerror(errno));
			return EX_CONFIG;
		}
		while ((de = readdir(d)) != NULL) {
			len = strlen(de->d_name);
			if (len < 5 ||
			    strcmp(de->d_name + len - 4, ".sql") != 0)
				continue;
			m = xrealloc(m, (n + 1) * sizeof(*m));
			m[n].name = strndup(de->d_name, len - 4);
			path = xasprintf("%s/%s", dir, de->d_name);
			m[n].sql = slurp(path);
			if (m[n].sql == NULL) {
				diag_warn("migration '%s': %s", path,
				    strerror(errno));
				free(path);
				closedir(d);
				return EX_CONFIG;
			}
			free(path);
			n++;
		}
		closedir(d);
		qsort(m, n, sizeof(*m), cmp_name);
	}
	for (size_t i = 0; i < n; i++) {
		m[i].version = version_of(m[i].name);
		if (m[i].version < 0 ||
		    (i > 0 && m[i].version == m[i - 1].version)) {
			diag_warn("migration '%s': name must be NNNN_name.sql "
			          "with a unique number",
			    m[i].name);
			return EX_CONFIG;
		}
	}
	*out = m;
	*count = n;
	return 0;
}

/*
 * Split on ';' at the end of a line, skipping "--" comment lines: enough
 * for migration files, which hold no procedures.
 */
static char *
next_statement(char **cursor)
{
	char *s = *cursor, *start, *line, *nl;
	size_t len;
	FILE *mem;
	char *buf = NULL;
	bool any = false;

	mem = open_memstream(&buf, &len);
	while (*s != '\0') {
		line = s;
		nl = strchr(s, '\n');
		s = nl ? nl + 1 : s + strlen(s);
		start = line + strspn(line, " \t");
		if (strncmp(start, "--", 2) == 0 || *start == '\n' ||
		    *start == '\0')
			continue;
		fwrite(line, 1, (size_t)(s - line), mem);
		any = true;
		len = (size_t)(s - line);
		while (len > 0 && strchr(" \t\r\n", line[len - 1]))
			len--;
		if (len > 0 && line[len - 1] == ';')
			break;
	}
	fclose(mem);
	*cursor = s;
	if (!any) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Exit code for a failed migration: a dead server stays 69/75, else 78. */
static int
mig_code(int rc)
{
	return rc == EX_UNAVAILABLE || rc == EX_TEMPFAIL ? rc : EX_CONFIG;
}

static int
apply(struct db *db, const struct mig *m, const char *sum)
{
	char *cursor = m->sql, *stmt;
	int n = 0, rc;
	char err[1000];

	while ((stmt = next_statement(&cursor)) != NULL) {
		n++;
		rc = db_run(db, stmt);
		free(stmt);
		if (rc == 0)
			continue;
		snprintf(err, sizeof(err), "statement %d: %s", n, db_error(db));
		diag_warn("migration '%s' %s", m->name, err);
		/* Marked failed, never applied; a dead connection records nothing. */
		db_exec(db, record_version, "ussss", m->version, m->name, sum,
		    "failed", err);
		return mig_code(rc);
	}
	if ((rc = db_exec(db, record_version, "ussss", m->version, m->name, sum,
	         "applied", NULL)) != 0) {
		diag_warn("record migration '%s': %s", m->name, db_error(db));
		return mig_code(rc);
	}
	return 0;
}

static int
run(struct db *db, struct mig *m, size_t n, bool status_only)
{
	char sum[17];
	const char *state;
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		checksum(m[i].sql, sum);
		rc = db_query(db, select_version, "u", m[i].version);
		/* --status creates nothing: no table yet, nothing applied. */
		if (rc != 0 &&
		    !(status_only && db_errno(db) == DB_ER_NO_SUCH_TABLE)) {
			diag_warn("read schema_version: %s", db_error(db));
			return rc;
		}
		state = NULL;
		if (rc == 0 && db_next(db) == 1) {
			state = db_str(db, 1);
			if (strcmp(state, "applied") == 0 &&
			    strcmp(db_str(db, 0), sum) != 0) {
				diag_warn(
				    "migration '%s': changed since it was "
				    "applied; add a new migration instead",
				    m[i].name);
				return EX_CONFIG;
			}
			state = strcmp(state, "applied") == 0 ? "present"
			                                      : "failed";
		}
		if (state != NULL && strcmp(state, "present") == 0) {
			js_print(json_pack("{s:s, s:s}", "migration", m[i].name,
			    "status", "present"));
			continue;
		}
		if (status_only) {
			js_print(json_pack("{s:s, s:s}", "migration", m[i].name,
			    "status", state ? state : "pending"));
			continue;
		}
		if ((rc = apply(db, &m[i], sum)) != 0)
			return rc;
		js_print(json_pack(
		    "{s:s, s:s}", "migration", m[i].name, "status", "applied"));
	}
	return 0;
}

int
cmd_migrate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "dir", required_argument, NULL, 'd' },
		{ "status", no_argument, NULL, 's' },
		{ "wait", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	bool status_only = false;
	long long wait = 60;
	struct mig *m = NULL;
	struct db *db;
	size_t n = 0, i;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":hd:sw:", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'd':
			if (*optarg == '\0')
				return diag_usage(
				    "option '--dir': must not be empty");
			dir = optarg;
			break;
		case 's':
			status_only = true;
			break;
		case 'w':
			if ((rc = payctl_parse_wait(optarg, &wait)) != 0)
				return rc;
			break;
		default:
			return diag_badopt(c, argv);
		}
	}
	if (optind < argc)
		return diag_usage("unexpected argument '%s'", argv[optind]);
	if ((rc = load(dir, &m, &n)) != 0)
		return rc;
	if ((rc = payctl_connect(&db)) != 0)
		return rc;
	if ((rc = db_query(db, get_lock, "i", (int64_t)wait)) != 0 ||
	    (rc = -db_next(db)) > 0) {
		diag_warn("take migration lock: %s", db_error(db));
	} else if (db_int(db, 0) != 1) {
		diag_warn(
		    "take migration lock: another migrate held it for %llds",
		    wait);
		rc = EX_TEMPFAIL;
	} else if (!status_only && (rc = db_run(db, create_version)) != 0) {
		diag_warn("create schema_version: %s", db_error(db));
	} else {
		rc = run(db, m, n, status_only);
		db_query(db, release_lock, "");
	}
	db_close(db);
	for (i = 0; i < n; i++) {
		free(m[i].name);
		free(m[i].sql);
	}
	free(m);
	return rc;
}
