/*
 * prom: the Prometheus text exposition format (version 0.0.4), as read by
 * node_exporter's textfile collector.  Samples are added in any order and
 * written grouped by metric family, each family with one HELP and one TYPE
 * line before its samples; names are checked, label values and help texts
 * escaped, and a series added twice is refused rather than written twice.
 * Every family is a gauge: dbstat's figures are snapshots of tables.
 */
#ifndef PAYKIT_PROM_H
#define PAYKIT_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct prom;

struct prom *prom_new(void);
void prom_free(struct prom *p);

/*
 * Add one sample of family name, with labels given as name, value pairs
 * ended by NULL.  help is used for the family's HELP line (the first one
 * given wins).  Returns 0, or -1 for a bad metric or label name or a
 * series already added.  Integers are written exactly, not as doubles.
 */
int prom_int(struct prom *p, const char *name, const char *help, int64_t v, ...)
    __attribute__((sentinel));
int prom_real(struct prom *p, const char *name, const char *help, double v, ...)
    __attribute__((sentinel));

/* Write every family; 0, or -1 when fp reports an error. */
int prom_write(const struct prom *p, FILE *fp);

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
bool prom_name_ok(const char *s);
/* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved). */
bool prom_label_ok(const char *s);

/*
 * Escape s into out (always NUL-terminated, truncated to len): label
 * values escape backslash, double quote and newline; help texts backslash
 * and newline.  Returns the length the whole escaped text needs.
 */
size_t prom_escape_label(const char *s, char *out, size_t len);
size_t prom_escape_help(const char *s, char *out, size_t len);

/* A double as Prometheus reads it: NaN, +Inf, -Inf, or the shortest
 * decimal that reads back as the same double. */
void prom_format_real(double v, char *out, size_t len);

#endif
