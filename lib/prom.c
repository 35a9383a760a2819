/*
 * prom: see prom.h.
 */
#include "prom.h"
#include "diag.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct sample {
	char *labels; /* "" or {a="x",b="y"}, escaped */
	char value[40];
};

struct family {
	char *name;
	char *help;
	struct sample *samples;
	size_t n;
};

struct prom {
	struct family *fams;
	size_t n;
};

struct prom *
prom_new(void)
{
	return xcalloc(1, sizeof(struct prom));
}

void
prom_free(struct prom *p)
{
	size_t i, j;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++) {
		for (j = 0; j < p->fams[i].n; j++)
			free(p->fams[i].samples[j].labels);
		free(p->fams[i].samples);
		free(p->fams[i].name);
		free(p->fams[i].help);
	}
	free(p->fams);
	free(p);
}

bool
prom_name_ok(const char *s)
{
	const char *c;

	if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
		return false;
	for (c = s; *c; c++)
		if (!(*c == '_' || *c == ':' || (*c >= 'a' && *c <= 'z') ||
		        (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
			return false;
	return true;
}

bool
prom_label_ok(const char *s)
{
	return prom_name_ok(s) && strchr(s, ':') == NULL &&
	    strncmp(s, "__", 2) != 0;
}

static size_t
escape(const char *s, char *out, size_t len, bool quote)
{
	size_t n = 0;
	const char *add;
	char one[2] = { 0, 0 };

	for (; *s; s++) {
		if (*s == '\\')
			add = "\\\\";
		else if (*s == '\n')
			add = "\\n";
		else if (quote && *s == '"')
			add = "\\\"";
		else {
			one[0] = *s;
			add = one;
		}
		for (; *add; add++, n++)
			if (n + 1 < len)
				out[n] = *add;
	}
	if (len > 0)
		out[n < len ? n : len - 1] = '\0';
	return n;
}

size_t
prom_escape_label(const char *s, char *out, size_t len)
{
	return escape(s, out, len, true);
}

size_t
prom_escape_help(const char *s, char *out, size_t len)
{
	return escape(s, out, len, false);
}

void
prom_format_real(double v, char *out, size_t len)
{
	int prec;

	if (isnan(v)) {
		snprintf(out, len, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(out, len, "%sInf", v > 0 ? "+" : "-");
		return;
	}
	/* The shortest %g that reads back as the same double. */
	for (prec = 1; prec < 17; prec++) {
		snprintf(out, len, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
	snprintf(out, len, "%.17g", v);
}

static char *
escaped(const char *s, bool quote)
{
	size_t n = escape(s, NULL, 0, quote);
	char *out = xmalloc(n + 1);

	escape(s, out, n + 1, quote);
	return out;
}

#define LABELS_MAX 16

/*
 * The label set as {a="x",b="y"}, or NULL when a name is bad or repeats
 * or there are more than LABELS_MAX labels.
 */
static char *
label_text(va_list ap)
{
	const char *k, *v, *seen[LABELS_MAX];
	char *buf = NULL, *val;
	size_t len = 0, n = 0, i;
	FILE *mem = open_memstream(&buf, &len);

	if (mem == NULL)
		diag_die(EX_SOFTWARE, "out of memory");
	while ((k = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		for (i = 0; i < n && strcmp(seen[i], k) != 0; i++)
			;
		if (!prom_label_ok(k) || v == NULL || i < n ||
		    n == LABELS_MAX) {
			fclose(mem);
			free(buf);
			return NULL;
		}
		seen[n] = k;
		val = escaped(v, true);
		fprintf(mem, "%s%s=\"%s\"", n ? "," : "{", k, val);
		free(val);
		n++;
	}
	if (n > 0)
		fputc('}', mem);
	fclose(mem);
	return buf;
}

static int
add(struct prom *p, const char *name, const char *help, const char *value,
    va_list ap)
{
	struct family *f = NULL;
	char *labels;
	size_t i;

	if (!prom_name_ok(name) || (labels = label_text(ap)) == NULL)
		return -1;
	for (i = 0; i < p->n; i++)
		if (strcmp(p->fams[i].name, name) == 0)
			f = &p->fams[i];
	if (f == NULL) {
		p->fams = xrealloc(p->fams, (p->n + 1) * sizeof(*p->fams));
		f = &p->fams[p->n++];
		memset(f, 0, sizeof(*f));
		f->name = xstrdup(name);
		f->help = escaped(help ? help : name, false);
	}
	for (i = 0; i < f->n; i++)
		if (strcmp(f->samples[i].labels, labels) == 0) {
			free(labels);
			return -1;
		}
	f->samples = xrealloc(f->samples, (f->n + 1) * sizeof(*f->samples));
	f->samples[f->n].labels = labels;
	snprintf(f->samples[f->n].value, sizeof(f->samples[f->n].value), "%s",
	    value);
	f->n++;
	return 0;
}

int
prom_int(struct prom *p, const char *name, const char *help, int64_t v, ...)
{
	char buf[32];
	va_list ap;
	int rc;

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	va_start(ap, v);
	rc = add(p, name, help, buf, ap);
	va_end(ap);
	return rc;
}

int
prom_real(struct prom *p, const char *name, const char *help, double v, ...)
{
	char buf[40];
	va_list ap;
	int rc;

	prom_format_real(v, buf, sizeof(buf));
	va_start(ap, v);
	rc = add(p, name, help, buf, ap);
	va_end(ap);
	return rc;
}

int
prom_write(const struct prom *p, FILE *fp)
{
	const struct family *f;
	size_t i, j;

	for (i = 0; i < p->n; i++) {
		f = &p->fams[i];
		fprintf(fp, "# HELP %s %s\n# TYPE %s gauge\n", f->name, f->help,
		    f->name);
		for (j = 0; j < f->n; j++)
			fprintf(fp, "%s%s %s\n", f->name, f->samples[j].labels,
			    f->samples[j].value);
	}
	return ferror(fp) ? -1 : 0;
}
