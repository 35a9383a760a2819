/*
 * table: plain-text tables for terminals.  Cells are added row by row;
 * table_write pads every column but the last to its widest cell plus two
 * spaces, so each column starts at the same place on every line.  Widths
 * count characters, not bytes (UTF-8), and no line ends in a blank.
 */
#ifndef PAYKIT_TABLE_H
#define PAYKIT_TABLE_H

#include <stddef.h>
#include <stdio.h>

struct table;

struct table *table_new(void);
void table_free(struct table *t);

/* Add a cell to the current row; NULL or "" is written as "-". */
void table_cell(struct table *t, const char *text);
/* End the current row (an empty row is dropped). */
void table_end_row(struct table *t);
size_t table_rows(const struct table *t);

/* Write every row, each line starting with indent; 0, or -1 on error. */
int table_write(const struct table *t, FILE *fp, const char *indent);

/* The display width of a UTF-8 string: its characters. */
size_t table_width(const char *s);

#endif
