-- 0007_processed_event_purge: the index that the workers' retention
-- (ledger-apply --purge-older-than) reads to find a consumer's oldest
-- processed_event rows without scanning the table.  Rows are written in
-- processed_at order, so each insert appends to it: one more entry per
-- event, at the index's right edge.
ALTER TABLE processed_event ADD INDEX IF NOT EXISTS ix_processed_at
	(consumer, processed_at);
