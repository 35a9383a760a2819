/*
 * outbox: see outbox.h.
 */
#include "outbox.h"
#include "diag.h"
#include "js.h"
#include "topics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char insert_event[] =
    "INSERT INTO outbox_event (event_key, aggregate_id, event_type, payload)"
    " VALUES (?, ?, ?, ?)";

/*
 * Random bytes come from getrandom() a pool at a time: one system call per
 * sixteen UUIDs instead of one each.  A forked child refills before it
 * hands out a byte, so parent and child never share a key.
 */
static unsigned long fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void
forked(void)
{
	fork_gen++;
}

static void
on_fork(void)
{
	pthread_atfork(NULL, NULL, forked);
}

static void
random_bytes(unsigned char *out, size_t len)
{
	static _Thread_local unsigned char pool[256];
	static _Thread_local size_t left;
	static _Thread_local unsigned long gen;
	size_t got;
	ssize_t n;

	pthread_once(&fork_once, on_fork);
	if (gen != fork_gen) {
		gen = fork_gen;
		left = 0;
	}
	if (left < len) {
		for (got = 0; got < sizeof(pool); got += (size_t)n)
			if ((n = getrandom(pool + got, sizeof(pool) - got, 0)) <
			    0)
				diag_die(EX_SOFTWARE, "getrandom failed");
		left = sizeof(pool);
	}
	memcpy(out, pool + sizeof(pool) - left, len);
	/* Handed out once: wipe them, as a core dump must not show them. */
	memset(pool + sizeof(pool) - left, 0, len);
	left -= len;
}

void
outbox_uuid(char out[37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	size_t i;
	char *o;

	random_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	/* 8-4-4-4-12 hex digits; by hand, as snprintf() took longer. */
	for (i = 0, o = out; i < sizeof(b); i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 0x0f];
	}
	*o = '\0';
}

void
outbox_now(char out[32])
{
	struct timespec ts;
	struct tm tm;
	char buf[24];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(
	    out, 32, "%.19s.%06dZ", buf, (int)(ts.tv_nsec / 1000) % 1000000);
}

char *
outbox_text(const char *event_type, json_t *payload, char key_out[37])
{
	char key[37], now[32];
	const char *k;
	char *text;

	k = js_getstr(payload, "eventId", NULL);
	if (k == NULL) {
		outbox_uuid(key);
		json_object_set_new(payload, "eventId", json_string(key));
		k = key;
	}
	if (json_object_get(payload, "eventType") == NULL)
		json_object_set_new(
		    payload, "eventType", json_string(event_type));
	if (json_object_get(payload, "schemaVersion") == NULL)
		json_object_set_new(payload, "schemaVersion",
		    json_integer(EVENT_SCHEMA_VERSION));
	if (json_object_get(payload, "occurredAt") == NULL) {
		outbox_now(now);
		json_object_set_new(payload, "occurredAt", json_string(now));
	}
	snprintf(key_out, 37, "%s", k);
	text = js_text(payload);
	if (text == NULL)
		diag_die(EX_SOFTWARE, "cannot encode an event payload");
	return text;
}

char *
outbox_seal(struct js_out *payload, const char *event_type, char key_out[37])
{
	char now[32];

	outbox_uuid(key_out);
	outbox_now(now);
	js_out_str(payload, "eventId", key_out);
	js_out_str(payload, "eventType", event_type);
	js_out_int(payload, "schemaVersion", EVENT_SCHEMA_VERSION);
	js_out_str(payload, "occurredAt", now);
	return js_out_end(payload);
}

int
outbox_insert(struct db *db, const char *event_type, int64_t aggregate_id,
    json_t *payload, char key_out[37])
{
	char key[37];
	char *text;
	int rc;

	text = outbox_text(event_type, payload, key);
	if (key_out != NULL)
		memcpy(key_out, key, sizeof(key));
	rc = db_exec(
	    db, insert_event, "siss", key, aggregate_id, event_type, text);
	free(text);
	return rc;
}

int
outbox_insert_many(struct db *db, const struct outbox_event *ev, size_t n)
{
	const char **keys = xcalloc(n + 1, sizeof(*keys));
	const char **types = xcalloc(n + 1, sizeof(*types));
	const char **texts = xcalloc(n + 1, sizeof(*texts));
	int64_t *ids = xcalloc(n + 1, sizeof(*ids));
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		keys[i] = ev[i].key;
		types[i] = ev[i].type;
		texts[i] = ev[i].text;
		ids[i] = ev[i].aggregate_id;
	}
	rc = db_bulk(db, insert_event, n, "siss", keys, ids, types, texts);
	free(keys);
	free(types);
	free(texts);
	free(ids);
	return rc;
}
