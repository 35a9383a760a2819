/*
 * unit: a few macros for lib/'s unit tests, printing TAP ("ok N - name").
 */
#ifndef PAYKIT_UNIT_H
#define PAYKIT_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_count, unit_failures, unit_checks_failed;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "# %s:%d: check failed: %s\n",         \
			    __FILE__, __LINE__, #cond);                        \
			unit_checks_failed++;                                  \
		}                                                              \
	} while (0)

#define CHECK_STR(a, b)                                                        \
	do {                                                                   \
		const char *a_ = (a), *b_ = (b);                               \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {         \
			fprintf(stderr, "# %s:%d: '%s' != '%s'\n", __FILE__,   \
			    __LINE__, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
			unit_checks_failed++;                                  \
		}                                                              \
	} while (0)

#define RUN(fn)                                                                \
	do {                                                                   \
		int before_ = unit_checks_failed;                              \
		fn();                                                          \
		unit_count++;                                                  \
		if (unit_checks_failed != before_)                             \
			unit_failures++;                                       \
		printf("%sok %d - %s\n",                                       \
		    unit_checks_failed != before_ ? "not " : "", unit_count,   \
		    #fn);                                                      \
	} while (0)

#define UNIT_END()                                                             \
	do {                                                                   \
		printf("1..%d\n", unit_count);                                 \
		return unit_failures ? 1 : 0;                                  \
	} while (0)

#endif
