/*
 * db: MariaDB connections, prepared statements with typed parameters,
 * results read column by column, transactions, and the one place where a
 * database error is classified into an exit code.
 *
 * Parameters are described by a type string, one letter per '?':
 *   'i' int64_t, 'u' int (as int64), 's' const char * (NULL is SQL NULL),
 *   'b' const char * plus size_t length (binary-safe).
 * Statements are prepared once per connection and cached by their SQL text
 * pointer, so pass string literals or other stable pointers.
 */
#ifndef PAYKIT_DB_H
#define PAYKIT_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;

/*
 * Connect with the conf settings, optionally to another database than
 * db_name (NULL keeps it).  On failure returns NULL, prints nothing, and
 * sets *code to the exit code and msg to the client's message.
 */
struct db *db_connect(const char *dbname, int *code, char *msg, size_t len);
void db_close(struct db *db);
/*
 * Connect db again with the same settings, dropping its old connection and
 * prepared statements (a server restart loses both); session settings made
 * since db_connect() must be made again.  0, or the exit code with the
 * client's message in msg (and in db_error()).
 */
int db_reconnect(struct db *db, char *msg, size_t len);

/* Where the connection goes, "user@host:port/db", for messages. */
const char *db_where(const struct db *db);

/*
 * Execute a statement.  Returns 0 or an exit code (see db_classify); the
 * error text is then in db_error().  db_affected() tells the rows changed.
 */
int db_exec(struct db *db, const char *sql, const char *types, ...);
/* Execute and keep the result for db_next(); same return as db_exec. */
int db_query(struct db *db, const char *sql, const char *types, ...);
/*
 * Execute an INSERT, UPDATE or DELETE once for each of rows sets of
 * values in one round trip (the server's bulk execution).  types has one
 * letter per '?', each followed by an array of rows values: 'i' const
 * int64_t *, 's' const char *const * (a NULL element is SQL NULL).  Same
 * return as db_exec; db_affected() is the sum over the rows, and rows
 * coming back (RETURNING) are read with db_next().  rows 0 runs nothing.
 */
int db_bulk(
    struct db *db, const char *sql, size_t rows, const char *types, ...);
/* Next row: 1 a row, 0 no more rows, or an exit code (negated). */
int db_next(struct db *db);
/* Columns of the current row; db_str is NULL for SQL NULL. */
const char *db_str(struct db *db, unsigned col);
size_t db_len(struct db *db, unsigned col);
int64_t db_int(struct db *db, unsigned col);
bool db_null(struct db *db, unsigned col);
/* Run a statement without values (DDL, BEGIN): text protocol. */
int db_run(struct db *db, const char *sql);

uint64_t db_affected(const struct db *db);
uint64_t db_insert_id(const struct db *db);

int db_begin(struct db *db);
int db_commit(struct db *db);
int db_rollback(struct db *db);

const char *db_error(const struct db *db);
unsigned db_errno(const struct db *db);

/* Map a client or server error number to an exit code (69, 70, 75, 78). */
int db_classify(unsigned err);
/* A deadlock or lock wait timeout: redo the transaction. */
bool db_retryable(const struct db *db);

#define DB_ER_DUP_ENTRY 1062
#define DB_ER_NO_SUCH_TABLE 1146

#endif
