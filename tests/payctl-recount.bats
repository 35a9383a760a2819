#!/usr/bin/env bats
# payctl recount: the running counts (outbox_count, ledger_balance) made
# again from their rows, right even while the relay and ledger-apply write.
# shellcheck disable=SC2154 # bats' run sets output, stderr and status.

load test_helper
load consumer_helper

setup_file() {
	use_own_db
}

setup() {
	export PAY_TOPIC_PREFIX="t.recount.$BATS_TEST_NUMBER."
	sql "TRUNCATE outbox_event; TRUNCATE outbox_count;
		TRUNCATE ledger_entry; TRUNCATE ledger_balance"
	payctl breaker kafka reset >/dev/null
}

teardown() {
	stop_started
}

# rows N PUBLISHED: N outbox rows of payments 1.., the first PUBLISHED
# of them published, counted as a relay would (shard 3).
rows() {
	sql "INSERT INTO outbox_event (event_key, aggregate_id, event_type,
		payload, status) SELECT UUID(), seq, 'PAYMENT_AUTHORIZED', '{}',
		IF(seq <= $2, 'PUBLISHED', 'PENDING') FROM seq_1_to_$1;
		INSERT INTO outbox_count (shard, published) VALUES (3, $2)"
}

# entries N: N captures of 1000 (payments 1..N) with their running
# balances in two shards, as two ledger-apply processes keep them.
entries() {
	sql "INSERT INTO ledger_entry (event_key, payment_id, account, side,
		amount, currency, occurred_at) SELECT CONCAT('e', seq), seq, a, s,
		1000, 'KRW', NOW(6) FROM seq_1_to_$1,
		(SELECT 'pg_receivable' a, 'DEBIT' s UNION ALL
		SELECT 'merchant_payable', 'CREDIT') x;
		INSERT INTO ledger_balance (account, side, currency, shard, entries,
		amount, checksum) SELECT account, side, currency, payment_id % 2,
		COUNT(*), SUM(amount), MOD(SUM((payment_id % 2147483647) *
		(amount % 2147483647)), 2147483647) FROM ledger_entry
		GROUP BY account, side, currency, payment_id % 2"
}

# The counts as stored, one line per row, to tell whether they changed.
stored() {
	sql "SELECT shard, published FROM outbox_count ORDER BY shard;
		SELECT * FROM ledger_balance ORDER BY account, side, currency, shard"
}

# recount_during WORKER SQL LIMIT: payctl recount again and again while
# the started WORKER writes, until SQL counts LIMIT rows, none after (a
# later one would mend what an earlier one broke); then WORKER must still
# be running, and must exit 0.
recount_during() {
	local n=0
	while [ "$(sql "$2")" -lt "$3" ]; do
		run -0 --separate-stderr payctl recount
		n=$((n + 1))
	done
	kill -0 "$(pid_of "$1")"
	wait "$(pid_of "$1")"
	[ "$n" -ge 3 ]
}

@test "-h prints the usage without a database" {
	PAY_DB_PORT=1 run -0 payctl recount -h
	[ "$output" = "usage: payctl recount [-hn] [-w seconds]" ]
}

@test "refuses bad flags and operands with exit 64 and one line" {
	run -64 --separate-stderr payctl recount --bogus
	assert_one_line_stderr "payctl recount: *'--bogus'*"
	[ -z "$output" ]
	run -64 --separate-stderr payctl recount now
	assert_one_line_stderr "payctl recount: unexpected argument 'now'*"
	[ -z "$output" ]
	for w in '' abc -1 3601 1.5; do
		run -64 --separate-stderr payctl recount -w "$w"
		assert_one_line_stderr "payctl recount: option '--wait': '$w' is not 0 to 3600 seconds*"
		[ -z "$output" ]
	done
}

@test "an unreachable database is exit 69 with one line" {
	PAY_DB_PORT=1 run -69 --separate-stderr payctl recount
	assert_one_line_stderr "payctl recount: connect to *"
	[ -z "$output" ]
}

@test "right counts: -n exits 0 and every line is ok" {
	rows 30 20
	entries 10
	run -0 --separate-stderr payctl recount -n
	[ "$(jq -s length <<<"$output")" = 3 ]
	jq -e -s 'all(.[]; .ok)' <<<"$output"
	jq -e -s '.[0] == {count: "outbox_count", published: 20, was: 20, ok: true}' <<<"$output"
	jq -e -s '.[1] | .account == "merchant_payable" and .side == "CREDIT"
		and .currency == "KRW" and .entries == 10 and .amount == 10000
		and .was.entries == 10 and .was.amount == 10000
		and .was.checksum == .checksum' <<<"$output"
}

@test "wrong counts: -n reports them, exits 1 and writes nothing; without -n they are made right" {
	rows 30 20
	entries 10
	# A count too high, an entry not counted, a balance with no entries.
	sql "UPDATE outbox_count SET published = 25;
		UPDATE ledger_balance SET entries = entries - 1, amount = amount - 1000
		WHERE account = 'pg_receivable' AND shard = 1;
		INSERT INTO ledger_balance VALUES ('merchant_payable', 'DEBIT', 'USD',
		5, 1, 7, 7)"
	before=$(stored)
	run -1 --separate-stderr payctl recount -n
	[ -z "$stderr" ]
	[ "$(stored)" = "$before" ]
	jq -e -s '.[0] == {count: "outbox_count", published: 20, was: 25, ok: false}' <<<"$output"
	jq -e -s '[.[] | select(.ok | not) | [.count, .account, .side]] ==
		[["outbox_count", null, null], ["ledger_balance", "merchant_payable",
		"DEBIT"], ["ledger_balance", "pg_receivable", "DEBIT"]]' <<<"$output"
	jq -e -s '.[] | select(.currency == "USD") | .entries == 0 and .was.entries == 1' <<<"$output"
	run -0 --separate-stderr payctl recount
	[ -z "$stderr" ]
	jq -e -s '[.[] | select(.ok | not)] | length == 3' <<<"$output"
	run -0 --separate-stderr payctl recount -n
	jq -e -s 'all(.[]; .ok) and length == 3' <<<"$output"
	# The differences went to shard 0.
	[ "$(sql "SELECT shard, published FROM outbox_count ORDER BY shard")" = "$(printf '0\t-5\n3\t25')" ]
	[ "$(sql "SELECT entries, amount, checksum FROM ledger_balance
		WHERE currency = 'USD' AND shard = 5")" = "$(printf '1\t7\t7')" ]
	[ "$(sql "SELECT entries, amount, checksum FROM ledger_balance
		WHERE currency = 'USD' AND shard = 0")" = "$(printf -- '-1\t-7\t2147483640')" ]
	# The audit agrees (these rows break its other invariants).
	run payctl audit
	jq -e 'select(.audit) | .invariants.outbox_published_count == 0 and
		.invariants.ledger_running_balance == 0' <<<"${lines[-1]}"
}

@test "with outbox-relay publishing a backlog, recounts in the middle leave the count right" {
	sql "INSERT INTO outbox_event (event_key, aggregate_id, event_type,
		payload) SELECT UUID(), seq, 'PAYMENT_AUTHORIZED', '{}'
		FROM seq_1_to_30000"
	start relay outbox-relay --once -b 100
	recount_during relay "SELECT COUNT(*) FROM outbox_event
		WHERE status = 'PUBLISHED'" 20000
	[ "$(sql "SELECT COUNT(*) FROM outbox_event WHERE status = 'PUBLISHED'")" = 30000 ]
	run -0 --separate-stderr payctl recount -n
	jq -e -s '.[0] == {count: "outbox_count", published: 30000, was: 30000, ok: true}' <<<"$output"
}

@test "with ledger-apply booking, recounts in the middle leave the balances right" {
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key,
		amount, currency, status, captured_amount) SELECT seq, 'M1',
		CONCAT('k', seq), 1000, 'KRW', 'CAPTURED', 1000 FROM seq_1_to_3000"
	for i in $(seq 3000); do
		printf '%s:{"eventId":"%s","eventType":"PAYMENT_CAPTURED","schemaVersion":1,"occurredAt":"2026-11-21T08:00:00Z","paymentId":%s,"status":"CAPTURED","merchantId":"M1","amount":1000,"currency":"KRW","settlementId":1,"pgTransactionId":"txn_x"}\n' \
			"$i" "$(uuid)" "$i"
	done | produce payment.captured
	PAY_CONSUMER_BATCH=20 start ledger ledger-apply --once -g "$(group l)"
	recount_during ledger "SELECT COUNT(*) FROM ledger_entry" 4000
	[ "$(sql "SELECT COUNT(*) FROM ledger_entry")" = 6000 ]
	run -0 --separate-stderr payctl recount -n
	jq -e -s 'all(.[]; .ok) and length == 3' <<<"$output"
	jq -e -s '[.[1:][] | .entries] == [3000, 3000]' <<<"$output"
}

@test "a turn held longer than -w is exit 75 with one line, and nothing is written" {
	rows 30 20
	sql "UPDATE outbox_count SET published = 25"
	before=$(stored)
	# Another recount's turn, held until its session is killed.
	sql "SELECT GET_LOCK('paykit.recount', 0), SLEEP(60)" >/dev/null 2>&1 &
	holder=$!
	until [ "$(sql "SELECT COALESCE(IS_USED_LOCK('paykit.recount'), 0)")" != 0 ]; do
		kill -0 "$holder"
	done
	run -75 --separate-stderr payctl recount -w 1
	sql "KILL $(sql "SELECT IS_USED_LOCK('paykit.recount')")"
	wait "$holder" || true
	assert_one_line_stderr "payctl recount: wait for another payctl recount for 1s"
	[ -z "$output" ]
	[ "$(stored)" = "$before" ]
	# The turn is given once its holder is gone.
	run -0 --separate-stderr payctl recount -w 10
	jq -e -s '.[0].published == 20 and .[0].was == 25' <<<"$output"
}

@test "recounts at the same time take turns: a difference is added once" {
	rows 30 20
	entries 10
	sql "UPDATE outbox_count SET published = 25;
		UPDATE ledger_balance SET amount = amount + 3000"
	for i in 1 2 3 4 5 6; do
		payctl recount >"$BATS_TEST_TMPDIR/$i.out" &
	done
	wait
	run -0 --separate-stderr payctl recount -n
	jq -e -s 'all(.[]; .ok) and length == 3' <<<"$output"
}
