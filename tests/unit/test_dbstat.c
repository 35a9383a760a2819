/*
 * dbstat's pure logic in lib/: the Prometheus exposition (names, escaping,
 * numbers, grouping into families, refused series) and the aligned tables.
 */
#include "prom.h"
#include "table.h"
#include "unit.h"

#include <math.h>
#include <stdlib.h>

/* What a writer produced, as one string (caller frees). */
static char *
written(int (*fn)(const void *, FILE *), const void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);

	fn(arg, mem);
	fclose(mem);
	return buf;
}

static int
write_prom(const void *p, FILE *fp)
{
	return prom_write(p, fp);
}

static int
write_table(const void *t, FILE *fp)
{
	return table_write(t, fp, "  ");
}

static void
names(void)
{
	CHECK(prom_name_ok("paykit_up"));
	CHECK(prom_name_ok("a:b_c9"));
	CHECK(prom_name_ok("_x"));
	CHECK(!prom_name_ok(""));
	CHECK(!prom_name_ok("9lives"));
	CHECK(!prom_name_ok("a-b"));
	CHECK(!prom_name_ok("a b"));
	CHECK(!prom_name_ok("caf\xc3\xa9"));
	CHECK(prom_label_ok("currency"));
	CHECK(prom_label_ok("_x"));
	CHECK(!prom_label_ok("__name__"));
	CHECK(!prom_label_ok("a:b"));
	CHECK(!prom_label_ok("1a"));
}

static void
escaping(void)
{
	char out[64];

	prom_escape_label("a\\b\"c\nd", out, sizeof(out));
	CHECK_STR(out, "a\\\\b\\\"c\\nd");
	prom_escape_help("a\\b\"c\nd", out, sizeof(out));
	CHECK_STR(out, "a\\\\b\"c\\nd");
	/* Truncated output stays terminated; the length is the whole. */
	CHECK(prom_escape_label("\"\"\"\"", out, 4) == 8);
	CHECK_STR(out, "\\\"\\");
	CHECK(prom_escape_label("", out, sizeof(out)) == 0);
	CHECK_STR(out, "");
}

static void
reals(void)
{
	char out[40];

	prom_format_real(0.1, out, sizeof(out));
	CHECK_STR(out, "0.1");
	prom_format_real(1.0 / 3, out, sizeof(out));
	CHECK(strtod(out, NULL) == 1.0 / 3);
	prom_format_real(NAN, out, sizeof(out));
	CHECK_STR(out, "NaN");
	prom_format_real(INFINITY, out, sizeof(out));
	CHECK_STR(out, "+Inf");
	prom_format_real(-INFINITY, out, sizeof(out));
	CHECK_STR(out, "-Inf");
	prom_format_real(0, out, sizeof(out));
	CHECK_STR(out, "0");
	prom_format_real(1e21, out, sizeof(out));
	CHECK_STR(out, "1e+21");
	prom_format_real(-2.5, out, sizeof(out));
	CHECK_STR(out, "-2.5");
}

static void
families(void)
{
	struct prom *p = prom_new();
	char *s;

	/* Interleaved adds come out grouped, each family's HELP first. */
	CHECK(prom_int(p, "b", "B things.", 1, "k", "x", NULL) == 0);
	CHECK(prom_int(p, "a", "A.", 2, NULL) == 0);
	CHECK(prom_int(p, "b", "ignored", 3, "k", "y\"z", NULL) == 0);
	CHECK(prom_real(
	          p, "c", "Line\nbreak.", 0.5, "x", "1", "y", "2", NULL) == 0);
	s = written(write_prom, p);
	CHECK_STR(s,
	    "# HELP b B things.\n# TYPE b gauge\nb{k=\"x\"} 1\n"
	    "b{k=\"y\\\"z\"} 3\n"
	    "# HELP a A.\n# TYPE a gauge\na 2\n"
	    "# HELP c Line\\nbreak.\n# TYPE c gauge\nc{x=\"1\",y=\"2\"} 0.5\n");
	free(s);
	prom_free(p);
}

static void
refusals(void)
{
	struct prom *p = prom_new();
	char *s;

	CHECK(prom_int(p, "m", "h", 1, "a", "1", NULL) == 0);
	/* The same series twice, a bad name, a reserved or repeated label. */
	CHECK(prom_int(p, "m", "h", 2, "a", "1", NULL) == -1);
	CHECK(prom_int(p, "m-x", "h", 1, NULL) == -1);
	CHECK(prom_int(p, "m", "h", 1, "__a", "1", NULL) == -1);
	CHECK(prom_int(p, "m", "h", 1, "a", "1", "a", "2", NULL) == -1);
	CHECK(prom_int(p, "m", "h", 1, "b", NULL, NULL) == -1);
	/* Integers beyond 2^53 are written exactly. */
	CHECK(prom_int(p, "big", "h", 9007199254740993LL, NULL) == 0);
	s = written(write_prom, p);
	CHECK_STR(s,
	    "# HELP m h\n# TYPE m gauge\nm{a=\"1\"} 1\n"
	    "# HELP big h\n# TYPE big gauge\nbig 9007199254740993\n");
	free(s);
	prom_free(p);
}

static void
tables(void)
{
	struct table *t = table_new();
	char *s;

	table_cell(t, "name");
	table_cell(t, "count");
	table_cell(t, "note");
	table_end_row(t);
	table_cell(t, "caf\xc3\xa9");
	table_cell(t, "12345");
	table_cell(t, NULL);
	table_end_row(t);
	table_cell(t, "a");
	table_cell(t, "1");
	table_cell(t, "two\nlines");
	table_end_row(t);
	table_end_row(t); /* empty: dropped */
	CHECK(table_rows(t) == 3);
	s = written(write_table, t);
	CHECK_STR(s,
	    "  name  count  note\n"
	    "  caf\xc3\xa9  12345  -\n"
	    "  a     1      two lines\n");
	free(s);
	CHECK(table_width("caf\xc3\xa9") == 4);
	table_free(t);
}

int
main(void)
{
	RUN(names);
	RUN(escaping);
	RUN(reals);
	RUN(families);
	RUN(refusals);
	RUN(tables);
	UNIT_END();
}
