/*
 * db: see db.h.
 */
#include "db.h"
#include "conf.h"
#include "diag.h"

#include <mysql.h>
#include <mysqld_error.h>
#include <errmsg.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAXPARAMS 32

struct cached {
	const char *sql;
	MYSQL_STMT *st;
};

struct column {
	char *buf;
	unsigned long cap, len;
	my_bool isnull, error;
};

struct db {
	MYSQL *my;
	struct cached *cache;
	size_t ncache;
	/* The statement whose result db_next() is reading. */
	MYSQL_STMT *cur;
	MYSQL_BIND *rbind;
	struct column *cols;
	unsigned ncols, colcap;
	uint64_t affected, insert_id;
	/* db_bulk()'s per-value lengths and NULL indicators. */
	unsigned long *lens;
	char *inds;
	size_t bulkcap;
	unsigned err;
	char errmsg[512];
	char where[256];
	char *dbname;
};

int
db_classify(unsigned err)
{
	switch (err) {
	case ER_LOCK_DEADLOCK:
	case ER_LOCK_WAIT_TIMEOUT:
	case ER_CON_COUNT_ERROR:
	case ER_TOO_MANY_USER_CONNECTIONS:
	case ER_QUERY_INTERRUPTED:
		return EX_TEMPFAIL;
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_UNKNOWN_HOST:
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case CR_SSL_CONNECTION_ERROR:
	case ER_SERVER_SHUTDOWN:
	case ER_CONNECTION_KILLED:
		return EX_UNAVAILABLE;
	case ER_ACCESS_DENIED_ERROR:
	case ER_DBACCESS_DENIED_ERROR:
	case ER_BAD_DB_ERROR:
	case ER_NO_SUCH_TABLE:
	case ER_BAD_FIELD_ERROR:
	case ER_TABLEACCESS_DENIED_ERROR:
	case ER_COLUMNACCESS_DENIED_ERROR:
	case ER_SPECIFIC_ACCESS_DENIED_ERROR:
	case 1698: /* ER_ACCESS_DENIED_NO_PASSWORD_ERROR */
		return EX_CONFIG;
	default:
		return EX_SOFTWARE;
	}
}

bool
db_retryable(const struct db *db)
{
	return db->err == ER_LOCK_DEADLOCK || db->err == ER_LOCK_WAIT_TIMEOUT;
}

static int
fail(struct db *db, unsigned err, const char *msg)
{
	db->err = err;
	snprintf(db->errmsg, sizeof(db->errmsg), "%s", msg);
	return db_classify(err);
}

static int
fail_my(struct db *db)
{
	return fail(db, mysql_errno(db->my), mysql_error(db->my));
}

static int
fail_st(struct db *db, MYSQL_STMT *st)
{
	return fail(db, mysql_stmt_errno(st), mysql_stmt_error(st));
}

/* Open db->my on dbname: 0, or an exit code with the message in msg. */
static int
open_conn(struct db *db, int *code, char *msg, size_t len)
{
	unsigned int timeout =
	    (unsigned)((conf_ms("db_connect_timeout") + 999) / 1000);
	const char *sock = conf_str("db_socket");
	my_bool verify = conf_bool("db_ssl_verify");

	db->my = mysql_init(NULL);
	if (db->my == NULL)
		diag_die(EX_SOFTWARE, "out of memory");
	mysql_options(db->my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(db->my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	/* Timestamps cross the wire in UTC whatever the server's zone. */
	mysql_options(db->my, MYSQL_INIT_COMMAND, "SET time_zone = '+00:00'");
	if (*conf_str("db_ssl_ca") != '\0')
		mysql_options(db->my, MYSQL_OPT_SSL_CA, conf_str("db_ssl_ca"));
	if (*conf_str("db_ssl_cert") != '\0')
		mysql_options(
		    db->my, MYSQL_OPT_SSL_CERT, conf_str("db_ssl_cert"));
	if (*conf_str("db_ssl_key") != '\0')
		mysql_options(
		    db->my, MYSQL_OPT_SSL_KEY, conf_str("db_ssl_key"));
	if (verify)
		mysql_options(
		    db->my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
	snprintf(db->where, sizeof(db->where), "%s@%s:%lld/%s",
	    conf_str("db_user"), *sock ? sock : conf_str("db_host"),
	    *sock ? 0LL : conf_int("db_port"), db->dbname);
	if (mysql_real_connect(db->my, conf_str("db_host"), conf_str("db_user"),
	        conf_str("db_password"), db->dbname,
	        (unsigned)conf_int("db_port"), *sock ? sock : NULL,
	        0) == NULL) {
		*code = db_classify(mysql_errno(db->my));
		snprintf(msg, len, "%s", mysql_error(db->my));
		return *code;
	}
	return 0;
}

struct db *
db_connect(const char *dbname, int *code, char *msg, size_t len)
{
	struct db *db;

	db = xcalloc(1, sizeof(*db));
	db->dbname = xstrdup(dbname != NULL ? dbname : conf_str("db_name"));
	if (open_conn(db, code, msg, len) != 0) {
		db_close(db);
		return NULL;
	}
	return db;
}

/*
 * Drop the connection and its statements, keep the rest of db.  The
 * connection goes first: mysql_close() detaches the statements from it, so
 * mysql_stmt_close() then only frees them, with no COM_STMT_CLOSE each for
 * a server that drops them with the connection anyway.
 */
static void
close_conn(struct db *db)
{
	size_t i;

	db->cur = NULL;
	if (db->my != NULL)
		mysql_close(db->my);
	db->my = NULL;
	for (i = 0; i < db->ncache; i++)
		mysql_stmt_close(db->cache[i].st);
	db->ncache = 0;
}

int
db_reconnect(struct db *db, char *msg, size_t len)
{
	int code = 0;

	close_conn(db);
	if (open_conn(db, &code, msg, len) != 0) {
		db->err = CR_CONNECTION_ERROR;
		snprintf(db->errmsg, sizeof(db->errmsg), "%s", msg);
	}
	return code;
}

void
db_close(struct db *db)
{
	size_t i;

	if (db == NULL)
		return;
	close_conn(db);
	for (i = 0; i < db->colcap; i++)
		free(db->cols[i].buf);
	free(db->cols);
	free(db->rbind);
	free(db->lens);
	free(db->inds);
	free(db->cache);
	free(db->dbname);
	free(db);
}

const char *
db_where(const struct db *db)
{
	return db->where;
}

/* The statement prepared for sql on this connection, or NULL. */
static MYSQL_STMT *
cached(struct db *db, const char *sql)
{
	size_t i;

	for (i = 0; i < db->ncache; i++)
		if (db->cache[i].sql == sql)
			return db->cache[i].st;
	return NULL;
}

static void
keep(struct db *db, const char *sql, MYSQL_STMT *st)
{
	db->cache = xrealloc(db->cache, (db->ncache + 1) * sizeof(*db->cache));
	db->cache[db->ncache].sql = sql;
	db->cache[db->ncache].st = st;
	db->ncache++;
}

static MYSQL_STMT *
prepare(struct db *db, const char *sql)
{
	MYSQL_STMT *st;

	if ((st = cached(db, sql)) != NULL)
		return st;
	st = mysql_stmt_init(db->my);
	if (st == NULL) {
		fail_my(db);
		return NULL;
	}
	if (mysql_stmt_prepare(st, sql, strlen(sql)) != 0) {
		fail_st(db, st);
		mysql_stmt_close(st);
		return NULL;
	}
	keep(db, sql, st);
	return st;
}

static void
check_params(MYSQL_STMT *st, size_t n, const char *sql)
{
	if (n != mysql_stmt_param_count(st))
		diag_die(EX_SOFTWARE,
		    "statement wants %lu parameters, got %zu: %s",
		    mysql_stmt_param_count(st), n, sql);
}

/*
 * A statement's first execution on a connection sends the prepare and the
 * execute together (MariaDB's execute-direct) and reads both answers: one
 * round trip instead of two.  A single-shot payctl runs most statements
 * once, so this is most of its statements.  The statement stays prepared
 * for later executions, even when the execution failed (a duplicate key,
 * say); one that did not prepare (a missing table) is dropped.
 */
static int
execute_new(struct db *db, const char *sql, MYSQL_BIND *bind, size_t n)
{
	unsigned int count = (unsigned int)n;
	MYSQL_STMT *st;
	int rc = 0;

	if ((st = mysql_stmt_init(db->my)) == NULL)
		return fail_my(db);
	mysql_stmt_attr_set(st, STMT_ATTR_PREBIND_PARAMS, &count);
	if ((n > 0 && mysql_stmt_bind_param(st, bind) != 0) ||
	    mariadb_stmt_execute_direct(st, sql, strlen(sql)) != 0)
		rc = fail_st(db, st);
	if (st->state < MYSQL_STMT_PREPARED) {
		mysql_stmt_close(st);
		return rc;
	}
	check_params(st, n, sql);
	keep(db, sql, st);
	if (rc != 0)
		return rc;
	db->affected = mysql_stmt_affected_rows(st);
	db->insert_id = mysql_stmt_insert_id(st);
	return 0;
}

/* Finish reading a previous result so the connection is free again. */
static void
end_result(struct db *db)
{
	if (db->cur != NULL) {
		mysql_stmt_free_result(db->cur);
		db->cur = NULL;
	}
}

static int
execute(struct db *db, const char *sql, const char *types, va_list ap)
{
	MYSQL_BIND bind[MAXPARAMS];
	long long ints[MAXPARAMS];
	unsigned long lens[MAXPARAMS];
	my_bool nulls[MAXPARAMS];
	MYSQL_STMT *st;
	size_t n, i;
	const char *s;

	db->err = 0;
	db->errmsg[0] = '\0';
	st = cached(db, sql);
	if (st != NULL && st == db->cur)
		end_result(db);
	n = strlen(types);
	if (n > MAXPARAMS)
		diag_die(
		    EX_SOFTWARE, "statement wants %zu parameters: %s", n, sql);
	if (st != NULL)
		check_params(st, n, sql);
	memset(bind, 0, sizeof(bind));
	for (i = 0; i < n; i++) {
		nulls[i] = 0;
		bind[i].is_null = &nulls[i];
		switch (types[i]) {
		case 'i':
			ints[i] = va_arg(ap, int64_t);
			goto integer;
		case 'u':
			ints[i] = va_arg(ap, int);
		integer:
			bind[i].buffer_type = MYSQL_TYPE_LONGLONG;
			bind[i].buffer = &ints[i];
			break;
		case 's':
		case 'b':
			s = va_arg(ap, const char *);
			lens[i] = types[i] == 'b'
			    ? (unsigned long)va_arg(ap, size_t)
			    : (s ? strlen(s) : 0);
			bind[i].buffer_type = MYSQL_TYPE_STRING;
			bind[i].buffer = (void *)s;
			bind[i].buffer_length = lens[i];
			bind[i].length = &lens[i];
			nulls[i] = s == NULL;
			break;
		default:
			diag_die(
			    EX_SOFTWARE, "bad parameter type '%c'", types[i]);
		}
	}
	if (st == NULL)
		return execute_new(db, sql, bind, n);
	if (n > 0 && mysql_stmt_bind_param(st, bind) != 0)
		return fail_st(db, st);
	if (mysql_stmt_execute(st) != 0)
		return fail_st(db, st);
	db->affected = mysql_stmt_affected_rows(st);
	db->insert_id = mysql_stmt_insert_id(st);
	return 0;
}

int
db_exec(struct db *db, const char *sql, const char *types, ...)
{
	va_list ap;
	int rc;

	va_start(ap, types);
	rc = execute(db, sql, types, ap);
	va_end(ap);
	return rc;
}

static int
bind_result(struct db *db, MYSQL_STMT *st)
{
	unsigned i, n = mysql_stmt_field_count(st);

	if (n > db->colcap) {
		db->cols = xrealloc(db->cols, n * sizeof(*db->cols));
		db->rbind = xrealloc(db->rbind, n * sizeof(*db->rbind));
		for (i = db->colcap; i < n; i++) {
			db->cols[i].cap = 64;
			db->cols[i].buf = xmalloc(64);
		}
		db->colcap = n;
	}
	db->ncols = n;
	memset(db->rbind, 0, n * sizeof(*db->rbind));
	for (i = 0; i < n; i++) {
		db->rbind[i].buffer_type = MYSQL_TYPE_STRING;
		db->rbind[i].buffer = db->cols[i].buf;
		db->rbind[i].buffer_length = db->cols[i].cap - 1;
		db->rbind[i].length = &db->cols[i].len;
		db->rbind[i].is_null = &db->cols[i].isnull;
		db->rbind[i].error = &db->cols[i].error;
	}
	if (mysql_stmt_bind_result(st, db->rbind) != 0)
		return fail_st(db, st);
	return 0;
}

int
db_query(struct db *db, const char *sql, const char *types, ...)
{
	MYSQL_STMT *st;
	va_list ap;
	int rc;

	end_result(db);
	va_start(ap, types);
	rc = execute(db, sql, types, ap);
	va_end(ap);
	if (rc != 0)
		return rc;
	st = cached(db, sql);
	/* Buffer the whole result so other statements may run meanwhile. */
	if (mysql_stmt_store_result(st) != 0)
		return fail_st(db, st);
	if ((rc = bind_result(db, st)) != 0)
		return rc;
	db->cur = st;
	return 0;
}

/* Store the result of st, if it has one, for db_next(). */
static int
keep_result(struct db *db, MYSQL_STMT *st)
{
	int rc;

	if (mysql_stmt_field_count(st) == 0)
		return 0;
	/* Buffer the whole result so other statements may run meanwhile. */
	if (mysql_stmt_store_result(st) != 0)
		return fail_st(db, st);
	if ((rc = bind_result(db, st)) != 0)
		return rc;
	db->cur = st;
	return 0;
}

int
db_bulk(struct db *db, const char *sql, size_t rows, const char *types, ...)
{
	MYSQL_BIND bind[MAXPARAMS];
	unsigned int size;
	const char *const *s;
	MYSQL_STMT *st;
	size_t n, i, r, k;
	va_list ap;
	int rc = 0;

	end_result(db);
	db->err = 0;
	db->errmsg[0] = '\0';
	db->affected = db->insert_id = 0;
	if (rows == 0)
		return 0;
	if ((st = prepare(db, sql)) == NULL)
		return db_classify(db->err);
	n = strlen(types);
	if (n > MAXPARAMS || n != mysql_stmt_param_count(st) ||
	    rows > UINT_MAX / MAXPARAMS)
		diag_die(EX_SOFTWARE,
		    "statement wants %lu parameters, got %zu in %zu rows: %s",
		    mysql_stmt_param_count(st), n, rows, sql);
	if (n * rows > db->bulkcap) {
		db->bulkcap = n * rows;
		db->lens = xrealloc(db->lens, db->bulkcap * sizeof(*db->lens));
		db->inds = xrealloc(db->inds, db->bulkcap);
	}
	memset(bind, 0, sizeof(bind));
	va_start(ap, types);
	for (i = 0; i < n; i++) {
		switch (types[i]) {
		case 'i':
			bind[i].buffer_type = MYSQL_TYPE_LONGLONG;
			bind[i].buffer = (void *)va_arg(ap, const int64_t *);
			break;
		case 's':
			/* Column-wise: an array of pointers, and their lengths. */
			s = va_arg(ap, const char *const *);
			bind[i].buffer_type = MYSQL_TYPE_STRING;
			bind[i].buffer = (void *)s;
			bind[i].length = db->lens + i * rows;
			bind[i].u.indicator = db->inds + i * rows;
			for (r = 0; r < rows; r++) {
				k = i * rows + r;
				db->inds[k] = s[r] != NULL
				    ? STMT_INDICATOR_NONE
				    : STMT_INDICATOR_NULL;
				db->lens[k] = s[r] != NULL ? strlen(s[r]) : 0;
			}
			break;
		default:
			diag_die(
			    EX_SOFTWARE, "bad parameter type '%c'", types[i]);
		}
	}
	va_end(ap);
	size = (unsigned int)rows;
	mysql_stmt_attr_set(st, STMT_ATTR_ARRAY_SIZE, &size);
	if (mysql_stmt_bind_param(st, bind) != 0 || mysql_stmt_execute(st) != 0)
		rc = fail_st(db, st);
	/* The statement is a plain one again for its next use. */
	size = 0;
	mysql_stmt_attr_set(st, STMT_ATTR_ARRAY_SIZE, &size);
	if (rc != 0)
		return rc;
	db->affected = mysql_stmt_affected_rows(st);
	db->insert_id = mysql_stmt_insert_id(st);
	return keep_result(db, st);
}

int
db_next(struct db *db)
{
	struct column *c;
	unsigned i;
	int rc;

	if (db->cur == NULL)
		return 0;
	rc = mysql_stmt_fetch(db->cur);
	if (rc == MYSQL_NO_DATA) {
		end_result(db);
		return 0;
	}
	if (rc == 1) {
		rc = fail_st(db, db->cur);
		end_result(db);
		return -rc;
	}
	for (i = 0; i < db->ncols; i++) {
		c = &db->cols[i];
		if (c->isnull)
			continue;
		if (c->len >= c->cap) {
			/* Grow to the real length and read the column again. */
			c->cap = c->len + 1;
			c->buf = xrealloc(c->buf, c->cap);
			db->rbind[i].buffer = c->buf;
			db->rbind[i].buffer_length = c->cap - 1;
			if (mysql_stmt_fetch_column(
			        db->cur, &db->rbind[i], i, 0)) {
				rc = fail_st(db, db->cur);
				end_result(db);
				return -rc;
			}
		}
		c->buf[c->len] = '\0';
	}
	/* The grown buffers must be bound again for the next row. */
	mysql_stmt_bind_result(db->cur, db->rbind);
	return 1;
}

const char *
db_str(struct db *db, unsigned col)
{
	if (col >= db->ncols || db->cols[col].isnull)
		return NULL;
	return db->cols[col].buf;
}

size_t
db_len(struct db *db, unsigned col)
{
	if (col >= db->ncols || db->cols[col].isnull)
		return 0;
	return db->cols[col].len;
}

int64_t
db_int(struct db *db, unsigned col)
{
	const char *s = db_str(db, col);

	return s ? strtoll(s, NULL, 10) : 0;
}

bool
db_null(struct db *db, unsigned col)
{
	return col >= db->ncols || db->cols[col].isnull;
}

int
db_run(struct db *db, const char *sql)
{
	MYSQL_RES *res;

	if (mysql_query(db->my, sql) != 0)
		return fail_my(db);
	/* Drain any result so the connection stays usable. */
	do {
		res = mysql_store_result(db->my);
		mysql_free_result(res);
	} while (mysql_next_result(db->my) == 0);
	if (mysql_errno(db->my) != 0)
		return fail_my(db);
	db->affected = mysql_affected_rows(db->my);
	return 0;
}

uint64_t
db_affected(const struct db *db)
{
	return db->affected;
}

uint64_t
db_insert_id(const struct db *db)
{
	return db->insert_id;
}

int
db_begin(struct db *db)
{
	return db_run(db, "START TRANSACTION");
}

int
db_commit(struct db *db)
{
	if (mysql_commit(db->my) != 0)
		return fail_my(db);
	return 0;
}

int
db_rollback(struct db *db)
{
	if (mysql_rollback(db->my) != 0)
		return fail_my(db);
	return 0;
}

const char *
db_error(const struct db *db)
{
	return db->errmsg;
}

unsigned
db_errno(const struct db *db)
{
	return db->err;
}
