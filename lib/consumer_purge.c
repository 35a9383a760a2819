/*
 * consumer: see consumer.h.  This file holds the retention of
 * processed_event, the same way outbox-relay --purge-older-than keeps
 * outbox_event small: small autocommitted batches, each picked with a plain
 * read of an index and deleted by primary key, so that no statement holds
 * a lock for long or on any row but the ones it deletes.
 */
#include "consumer.h"
#include "conf.h"
#include "diag.h"

#include <stdio.h>
#include <stdlib.h>

static const char purge_pick_sql[] =
    "SELECT event_key FROM processed_event FORCE INDEX (ix_processed_at)"
    " WHERE consumer = ? AND processed_at < NOW(6) - INTERVAL ? MICROSECOND"
    " ORDER BY processed_at LIMIT ?";
static const char purge_sql[] =
    "DELETE p FROM JSON_TABLE(?, '$[*]' COLUMNS (k CHAR(36) PATH '$')) AS j"
    " STRAIGHT_JOIN processed_event p FORCE INDEX (PRIMARY)"
    " ON p.consumer = ? AND p.event_key = j.k"
    " WHERE p.processed_at < NOW(6) - INTERVAL ? MICROSECOND";

/* The keys of up to batch purgeable rows as a JSON array; 0 or a db code. */
static int
pick(struct db *db, const char *name, long long age_ms, long long batch,
    char **keys, uint64_t *n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	int rc;

	if (mem == NULL)
		diag_die(EX_SOFTWARE, "out of memory");
	*n = 0;
	fputc('[', mem);
	rc = db_query(db, purge_pick_sql, "sii", name, (int64_t)age_ms * 1000,
	    (int64_t)batch);
	if (rc == 0) {
		/* Keys are UUID-shaped (consumer_offset_key() included). */
		while ((rc = db_next(db)) == 1)
			fprintf(
			    mem, "%s\"%s\"", (*n)++ ? "," : "", db_str(db, 0));
		rc = -rc;
	}
	fputc(']', mem);
	fclose(mem);
	*keys = buf;
	return rc;
}

int
consumer_purge(
    struct db *db, const char *name, long long age_ms, uint64_t *purged)
{
	long long batch = conf_int("consumer_purge_batch");
	uint64_t n;
	char *keys;
	int rc;

	*purged = 0;
	do {
		if ((rc = pick(db, name, age_ms, batch, &keys, &n)) == 0 &&
		    n > 0)
			rc = db_exec(db, purge_sql, "ssi", keys, name,
			    (int64_t)age_ms * 1000);
		free(keys);
		if (rc != 0) {
			diag_warn("purge processed_event on '%s': %s",
			    db_where(db), db_error(db));
			return rc;
		}
		if (n == 0)
			break;
		/* None deleted: picked again, they would be again and again. */
		if (db_affected(db) == 0)
			break;
		*purged += db_affected(db);
		diag_info(1, "purged %llu rows", (unsigned long long)*purged);
	} while (n == (uint64_t)batch && !consumer_stopping());
	return 0;
}
