-- 0010_ledger_balance: the ledger's running balances, per account, side
-- and currency, kept by ledger-apply in the transaction that inserts the
-- entries they count.  dbstat's ledger section reads these few rows instead
-- of summing every entry (on 2,000,000 entries about 0.6 s of server CPU
-- per call), and payctl audit checks them against the entries.
--
-- entries and amount are the count and sum of the entries; checksum is the
-- sum, mod 2147483647, of (payment_id mod 2147483647) * (amount mod
-- 2147483647) over them: the ledger's side of dbstat's per-payment check
-- (see dbstat(1)).  Each writer adds to the row of its own shard (its
-- connection id mod 16), so that two ledger-apply processes never wait for
-- each other's row; readers sum the shards.
--
-- The table is filled from the entries already there, in shard 0; a second
-- run fills it again from scratch.  Stop ledger-apply while this migration
-- runs: an entry inserted meanwhile, or by a ledger-apply older than this
-- migration, is not counted (payctl audit reports it as
-- ledger_running_balance).
--
-- ix_ledger_stats (account, side, currency, amount, payment_id) served only
-- dbstat's sums, and every entry paid for it.  dbstat's exact per-payment
-- comparison, run only when the sums differ, now reads the whole table.
CREATE TABLE IF NOT EXISTS ledger_balance (
	account VARCHAR(64) NOT NULL,
	side VARCHAR(6) NOT NULL,
	currency CHAR(3) NOT NULL,
	shard TINYINT UNSIGNED NOT NULL,
	entries BIGINT NOT NULL,
	amount DECIMAL(38, 0) NOT NULL,
	checksum BIGINT NOT NULL,
	PRIMARY KEY (account, side, currency, shard)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

DELETE FROM ledger_balance;

INSERT INTO ledger_balance
	(account, side, currency, shard, entries, amount, checksum)
SELECT account, side, currency, 0, COUNT(*), SUM(amount),
	MOD(SUM((payment_id % 2147483647) * (amount % 2147483647)), 2147483647)
FROM ledger_entry GROUP BY account, side, currency;

ALTER TABLE ledger_entry DROP INDEX IF EXISTS ix_ledger_stats;
