/*
 * table: see table.h.
 */
#include "table.h"
#include "diag.h"

#include <stdlib.h>
#include <string.h>

struct row {
	char **cells;
	size_t n;
};

struct table {
	struct row *rows;
	size_t n;
	struct row cur;
};

struct table *
table_new(void)
{
	return xcalloc(1, sizeof(struct table));
}

static void
free_row(struct row *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		free(r->cells[i]);
	free(r->cells);
}

void
table_free(struct table *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++)
		free_row(&t->rows[i]);
	free_row(&t->cur);
	free(t->rows);
	free(t);
}

void
table_cell(struct table *t, const char *text)
{
	char *c;

	c = xstrdup(text == NULL || *text == '\0' ? "-" : text);
	/* A cell is one line: newlines and tabs would break the columns. */
	for (char *p = c; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	t->cur.cells = xrealloc(t->cur.cells, (t->cur.n + 1) * sizeof(char *));
	t->cur.cells[t->cur.n++] = c;
}

void
table_end_row(struct table *t)
{
	if (t->cur.n == 0)
		return;
	t->rows = xrealloc(t->rows, (t->n + 1) * sizeof(*t->rows));
	t->rows[t->n++] = t->cur;
	memset(&t->cur, 0, sizeof(t->cur));
}

size_t
table_rows(const struct table *t)
{
	return t->n;
}

size_t
table_width(const char *s)
{
	size_t n = 0;

	/* Count every byte that does not continue a UTF-8 sequence. */
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

int
table_write(const struct table *t, FILE *fp, const char *indent)
{
	size_t *width, ncols = 0, i, j, w;
	const struct row *r;

	for (i = 0; i < t->n; i++)
		if (t->rows[i].n > ncols)
			ncols = t->rows[i].n;
	width = xcalloc(ncols ? ncols : 1, sizeof(*width));
	for (i = 0; i < t->n; i++)
		for (j = 0; j < t->rows[i].n; j++) {
			w = table_width(t->rows[i].cells[j]);
			if (w > width[j])
				width[j] = w;
		}
	for (i = 0; i < t->n; i++) {
		r = &t->rows[i];
		fputs(indent ? indent : "", fp);
		for (j = 0; j < r->n; j++) {
			fputs(r->cells[j], fp);
			if (j + 1 < r->n)
				fprintf(fp, "%*s",
				    (int)(width[j] - table_width(r->cells[j]) +
				        2),
				    "");
		}
		fputc('\n', fp);
	}
	free(width);
	return ferror(fp) ? -1 : 0;
}
