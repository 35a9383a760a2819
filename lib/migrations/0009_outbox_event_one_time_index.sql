-- 0009_outbox_event_one_time_index: outbox_event keeps one index on time,
-- ix_outbox_due (status, next_attempt_at), for every status.
-- next_attempt_at now means, by status:
--   PENDING    when the row is due (claimable) next;
--   PUBLISHED  when it was marked published: the relay sets it to the same
--              NOW(6) as published_at, in the same statement;
--   DEAD       when it was marked dead (the dead-letter record's delivery
--              was confirmed); rows dead before this migration keep the
--              due time of their last attempt, at most that much earlier.
-- So ('PUBLISHED', published_at) is a range of ix_outbox_due, which serves
-- what ix_outbox_published (status, published_at) served: outbox-relay's
-- purge of old published rows, dbstat's last minute of publishing and its
-- ledger in-flight check.  Marking a row published moved it in both
-- indexes; now in one.
-- uk_outbox_key (event_key) went too: event_key is a random UUID made by
-- the writer, nothing looks a row up by it (consumers dedup on their own
-- processed_event), and every insert paid a random unique-key lookup.
ALTER TABLE outbox_event DROP INDEX IF EXISTS ix_outbox_published,
	DROP INDEX IF EXISTS uk_outbox_key;
-- Rows published before this migration: their publish time, so that the
-- purge and dbstat count them by it.  Done after the drop, so that the
-- statement moves each row in one index only.
UPDATE outbox_event SET next_attempt_at = published_at
	WHERE status = 'PUBLISHED' AND published_at IS NOT NULL
	AND next_attempt_at <> published_at;
