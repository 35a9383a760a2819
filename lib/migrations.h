/*
 * migrations: the schema's versioned SQL files (lib/migrations/NNNN_name.sql),
 * compiled into the programs by scripts/embed-sql.  payctl migrate applies
 * them; see payctl-migrate(1).
 */
#ifndef PAYKIT_MIGRATIONS_H
#define PAYKIT_MIGRATIONS_H

#include <stddef.h>

struct migration {
	const char *name; /* "0001_init" */
	const char *sql;
};

/* Sorted by name, ended by { NULL, NULL }. */
extern const struct migration migrations[];

#endif
