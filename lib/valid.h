/*
 * valid: the rules for a payment's fields as they come from outside (flags,
 * request lines): merchant ids and idempotency keys, amounts, ISO 4217
 * currencies, statuses, refund reasons and --since times.  Pure functions,
 * no I/O; the callers word the messages.
 */
#ifndef PAYKIT_VALID_H
#define PAYKIT_VALID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VALID_MERCHANT_MAX 32
#define VALID_KEY_MAX 64
#define VALID_REASON_MAX 500
#define VALID_AMOUNT_MAX 1000000000000000LL /* 10^15 minor units */

/*
 * An id (merchant, idempotency key): 1 to max printable ASCII characters,
 * no spaces, so it prints and greps unquoted.
 */
bool valid_id(const char *s, size_t max);

/* An amount: decimal digits, 1 to VALID_AMOUNT_MAX. */
bool valid_amount(const char *s, int64_t *out);

/* A currency: an active ISO 4217 alpha-3 code, upper case. */
bool valid_currency(const char *s);

/* A payment status of schema 0001. */
bool valid_status(const char *s);

/*
 * Free text (a refund reason): well-formed UTF-8, 1 to max characters, no
 * control characters.
 */
bool valid_text(const char *s, size_t max);

/*
 * A --since value: a timestamp (2026-11-21, 2026-11-21T08:00:00Z, with
 * optional fraction and a Z or +hh:mm offset), written to ts as
 * "YYYY-MM-DD HH:MM:SS.ffffff" in UTC, returns 0; or a duration back from
 * now (90s, 15m, 1h, 7d), in *ms, returns 1; -1 when it is neither.
 */
int valid_since(const char *s, char ts[27], long long *ms);

#endif
