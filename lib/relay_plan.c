/*
 * relay: the pure parts, see relay.h.
 */
#include "diag.h"
#include "relay.h"
#include "topics.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sort order of items and pending rows: aggregate, then event id. */
static int
cmp_ids(int64_t agg_a, int64_t id_a, int64_t agg_b, int64_t id_b)
{
	if (agg_a != agg_b)
		return agg_a < agg_b ? -1 : 1;
	if (id_a != id_b)
		return id_a < id_b ? -1 : 1;
	return 0;
}

static int
cmp_item(const void *a, const void *b)
{
	const struct relay_item *x = *(struct relay_item *const *)a;
	const struct relay_item *y = *(struct relay_item *const *)b;

	return cmp_ids(x->agg, x->id, y->agg, y->id);
}

static int
cmp_pending(const void *a, const void *b)
{
	const struct relay_pending *x = a, *y = b;

	return cmp_ids(x->agg, x->id, y->agg, y->id);
}

/* First pending row of aggregate agg, or npending. */
static size_t
first_pending(const struct relay_pending *p, size_t npending, int64_t agg)
{
	size_t lo = 0, hi = npending, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (p[mid].agg < agg)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * One aggregate's claimed rows g[0..n), sorted by id: number them until the
 * first pending row that is not among them, hold the rest.  Returns the
 * number of rows that go out.
 */
static size_t
plan_aggregate(
    struct relay_item **g, size_t n, const struct relay_pending *p, size_t np)
{
	size_t i = 0, j = first_pending(p, np, g[0]->agg);
	long long hold = -1;

	while (i < n) {
		if (hold < 0 && j < np && p[j].agg == g[0]->agg &&
		    p[j].id <= g[i]->id) {
			if (p[j].id == g[i]->id) {
				j++;
				continue;
			}
			/* An earlier event we did not claim blocks the rest. */
			hold = p[j].due_us;
			continue;
		}
		if (hold >= 0) {
			g[i]->wave = RELAY_HELD;
			g[i]->hold_us = hold;
		} else {
			g[i]->wave = (int)i;
			g[i]->hold_us = 0;
		}
		i++;
	}
	for (i = 0; i < n && g[i]->wave != RELAY_HELD; i++)
		;
	return i;
}

int
relay_plan(struct relay_item *items, size_t n, struct relay_pending *pending,
    size_t npending)
{
	struct relay_item **v;
	size_t i, start, sent;
	int waves = 0;

	if (n == 0)
		return 0;
	v = xcalloc(n, sizeof(*v));
	for (i = 0; i < n; i++)
		v[i] = &items[i];
	qsort(v, n, sizeof(*v), cmp_item);
	/* pending is NULL when there is none: qsort() must not see it. */
	if (npending > 0)
		qsort(pending, npending, sizeof(*pending), cmp_pending);
	for (start = 0; start < n; start = i) {
		for (i = start + 1; i < n && v[i]->agg == v[start]->agg; i++)
			;
		sent = plan_aggregate(v + start, i - start, pending, npending);
		if ((int)sent > waves)
			waves = (int)sent;
	}
	free(v);
	return waves;
}

long long
relay_backoff_us(
    long long attempts, long long base_ms, long long max_ms, uint64_t rnd)
{
	long long d = base_ms * 1000, cap = max_ms * 1000, half;

	if (d > cap)
		d = cap;
	while (--attempts > 0 && d < cap)
		d = d > cap / 2 ? cap : d * 2;
	half = d / 2;
	return d - half + (long long)(rnd % (uint64_t)(half + 1));
}

static uint64_t
fnv1a(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

void
relay_dead_letter_id(const char *event_key, char out[37])
{
	uint64_t h[2];
	unsigned char b[16];
	int i;

	h[0] = fnv1a(
	    fnv1a(14695981039346656037ULL, "paykit.dead-letter:"), event_key);
	h[1] = fnv1a(fnv1a(h[0] ^ 0x9e3779b97f4a7c15ULL, event_key), "#2");
	for (i = 0; i < 16; i++)
		b[i] = (unsigned char)(h[i / 8] >> (8 * (i % 8)));
	/* RFC 9562: version 8 (custom), variant 10. */
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x80);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x",
	    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
	    b[11], b[12], b[13], b[14], b[15]);
}

/*
 * A JSON string of text read from the table, which MariaDB should have kept
 * to UTF-8; any byte that is not becomes '?' rather than failing the record.
 */
static json_t *
text_value(const char *s, size_t len)
{
	json_t *v = json_stringn(s, len);
	char *copy;
	size_t i;

	if (v != NULL)
		return v;
	copy = xmalloc(len + 1);
	for (i = 0; i < len; i++)
		copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
	v = json_stringn(copy, len);
	free(copy);
	return v;
}

char *
relay_dead_letter(const struct relay_dead *d, bool without_payload)
{
	char id[37];
	json_t *o;
	char *text;

	relay_dead_letter_id(d->event_key, id);
	o = json_object();
	json_object_set_new(o, "eventId", json_string(id));
	json_object_set_new(
	    o, "eventType", json_string(EV_PAYMENT_DEAD_LETTER));
	json_object_set_new(
	    o, "schemaVersion", json_integer(EVENT_SCHEMA_VERSION));
	json_object_set_new(o, "occurredAt", json_string(d->occurred_at));
	json_object_set_new(o, "source", json_string("outbox-relay"));
	json_object_set_new(o, "originalEventId",
	    text_value(d->event_key, strlen(d->event_key)));
	json_object_set_new(o, "originalEventType",
	    text_value(d->event_type, strlen(d->event_type)));
	json_object_set_new(
	    o, "originalTopic", d->topic ? json_string(d->topic) : json_null());
	json_object_set_new(o, "outboxEventId", json_integer(d->outbox_id));
	json_object_set_new(o, "paymentId", json_integer(d->aggregate_id));
	json_object_set_new(o, "attempts", json_integer(d->attempts));
	json_object_set_new(o, "errorType", json_string(d->error_type));
	json_object_set_new(o, "errorMessage",
	    text_value(d->error_message, strlen(d->error_message)));
	if (without_payload) {
		json_object_set_new(o, "payload", json_null());
		json_object_set_new(o, "payloadOmitted", json_true());
	} else {
		json_object_set_new(
		    o, "payload", text_value(d->payload, d->payload_len));
	}
	text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	if (text == NULL)
		diag_die(EX_SOFTWARE, "cannot encode a dead-letter record");
	return text;
}

/*
 * A JSON scanner that checks syntax without building anything: parsing
 * every payload with jansson costs about 10 us, the bulk of a batch's
 * time in the relay.  It only ever says yes for valid JSON; anything it
 * does not accept goes to jansson for the verdict.
 */
struct scan {
	const char *p, *end;
	int depth;
};

#define SCAN_DEPTH 256

static void
scan_ws(struct scan *s)
{
	while (s->p < s->end &&
	    (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static bool
scan_digits(struct scan *s)
{
	const char *start = s->p;

	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > start;
}

static bool
scan_number(struct scan *s)
{
	if (s->p < s->end && *s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0')
		s->p++;
	else if (!scan_digits(s))
		return false;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (!scan_digits(s))
			return false;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!scan_digits(s))
			return false;
	}
	return true;
}

/* A string; *plain tells whether it had no escapes. */
static bool
scan_string(struct scan *s, bool *plain)
{
	int i;

	*plain = true;
	if (s->p >= s->end || *s->p++ != '"')
		return false;
	while (s->p < s->end) {
		unsigned char c = (unsigned char)*s->p++;

		if (c == '"')
			return true;
		if (c < 0x20)
			return false;
		if (c != '\\')
			continue;
		*plain = false;
		if (s->p >= s->end)
			return false;
		c = (unsigned char)*s->p++;
		if (c == 'u') {
			for (i = 0; i < 4; i++, s->p++)
				if (s->p >= s->end ||
				    strchr("0123456789abcdefABCDEF", *s->p) ==
				        NULL ||
				    *s->p == '\0')
					return false;
		} else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
			return false;
		}
	}
	return false;
}

static bool
scan_literal(struct scan *s, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
		return false;
	s->p += n;
	return true;
}

static bool scan_value(struct scan *s, char *at, size_t atlen);

/* An object or array after its opening bracket; at is for the top level. */
static bool
scan_members(struct scan *s, char close, char *at, size_t atlen)
{
	const char *key;
	bool plain, want_at;

	scan_ws(s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
		return true;
	}
	for (;;) {
		want_at = false;
		if (close == '}') {
			key = s->p;
			if (!scan_string(s, &plain))
				return false;
			want_at = at != NULL && plain && s->p - key == 12 &&
			    memcmp(key, "\"occurredAt\"", 12) == 0;
			scan_ws(s);
			if (s->p >= s->end || *s->p++ != ':')
				return false;
		}
		scan_ws(s);
		key = s->p;
		if (!scan_value(s, NULL, 0))
			return false;
		if (want_at && *key == '"' && s->p - key - 2 < (long)atlen &&
		    memchr(key + 1, '\\', (size_t)(s->p - key - 2)) == NULL) {
			memcpy(at, key + 1, (size_t)(s->p - key - 2));
			at[s->p - key - 2] = '\0';
		}
		scan_ws(s);
		if (s->p >= s->end)
			return false;
		if (*s->p == close) {
			s->p++;
			return true;
		}
		if (*s->p++ != ',')
			return false;
		scan_ws(s);
	}
}

static bool
scan_value(struct scan *s, char *at, size_t atlen)
{
	bool plain, ok;

	if (s->p >= s->end)
		return false;
	switch (*s->p) {
	case '{':
	case '[':
		if (++s->depth > SCAN_DEPTH)
			return false;
		s->p++;
		ok = scan_members(s, s->p[-1] == '{' ? '}' : ']', at, atlen);
		s->depth--;
		return ok;
	case '"':
		return scan_string(s, &plain);
	case 't':
		return scan_literal(s, "true");
	case 'f':
		return scan_literal(s, "false");
	case 'n':
		return scan_literal(s, "null");
	default:
		return scan_number(s);
	}
}

int
relay_json_object(const char *text, size_t len, char *at, size_t atlen)
{
	struct scan s = { text, text + len, 0 };

	*at = '\0';
	scan_ws(&s);
	if (s.p >= s.end || *s.p != '{' || !scan_value(&s, at, atlen))
		return 0;
	scan_ws(&s);
	return s.p == s.end;
}
