/*
 * payctl: the subcommands' entry points and what they share.
 */
#ifndef PAYCTL_H
#define PAYCTL_H

#include "db.h"

int cmd_migrate(int argc, char **argv);
int cmd_config(int argc, char **argv);

/*
 * Load the configuration and connect to the database, or print why not and
 * return the exit code.
 */
int payctl_connect(struct db **db);

#endif
