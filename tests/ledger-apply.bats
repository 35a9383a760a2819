#!/usr/bin/env bats
# ledger-apply: payment.captured and payment.refunded -> two balanced
# ledger entries per event, exactly once, and payment.dlq for the rest.
# shellcheck disable=SC2154 # bats' run sets output and stderr.
# shellcheck disable=SC2016 # wait_until eval expands its test later.

load test_helper
load consumer_helper

setup_file() {
	use_own_db
}

setup() {
	ID=$((BATS_TEST_NUMBER * 1000))
}

teardown() {
	stop_started
}

# payment ID [CAPTURED [REFUNDED [CURRENCY]]]
payment() {
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key,
		amount, currency, status, transaction_id, captured_amount,
		refunded_amount) VALUES ($1, 'M1', 'k$1', ${2:-1000},
		'${4:-KRW}', 'CAPTURED', 'txn_$1', ${2:-1000}, ${3:-0})"
}

# captured ID AMOUNT [EVENT_ID]; refunded ID AMOUNT [EVENT_ID]
captured() {
	printf '%s:{"eventId":"%s","eventType":"PAYMENT_CAPTURED","schemaVersion":1,"occurredAt":"2026-11-21T08:00:00.123456Z","paymentId":%s,"status":"CAPTURED","merchantId":"M1","amount":%s,"currency":"KRW","settlementId":1,"pgTransactionId":"txn_x"}\n' \
		"$1" "${3:-$(uuid)}" "$1" "$2"
}
refunded() {
	printf '%s:{"eventId":"%s","eventType":"PAYMENT_REFUNDED","schemaVersion":1,"occurredAt":"2026-11-21T09:00:00Z","paymentId":%s,"status":"REFUNDED","merchantId":"M1","amount":%s,"currency":"KRW","refundId":1,"cancelTransactionId":"cancel_x"}\n' \
		"$1" "${3:-$(uuid)}" "$1" "$2"
}

entries() {
	sql "SELECT account, side, amount, currency FROM ledger_entry
		WHERE payment_id = $1 ORDER BY entry_id" | tr '\t' ' '
}
# The ledger balances overall, its running balances are the count, sum and
# checksum of its entries, and per payment of this test (ids $ID to
# $ID+999) merchant_payable's net is captured less refunded.
balanced() {
	[ "$(sql "SELECT COALESCE(SUM(IF(side = 'DEBIT', amount, -amount)), 0)
		FROM ledger_entry")" = 0 ] &&
		[ "$(sql "SELECT COUNT(*) FROM (SELECT account FROM (SELECT account,
		side, currency, entries AS n, amount AS a, checksum AS w
		FROM ledger_balance UNION ALL SELECT account, side, currency,
		-COUNT(*), -SUM(amount), -MOD(SUM((payment_id % 2147483647) *
		(amount % 2147483647)), 2147483647) FROM ledger_entry
		GROUP BY account, side, currency) t GROUP BY account, side, currency
		HAVING SUM(n) <> 0 OR SUM(a) <> 0
		OR MOD(SUM(w), 2147483647) <> 0) x")" = 0 ] &&
		[ "$(sql "SELECT COUNT(*) FROM payment p WHERE payment_id BETWEEN
		$ID AND $ID + 999 AND captured_amount - refunded_amount <>
		(SELECT COALESCE(SUM(IF(side = 'CREDIT', amount, -amount)), 0)
		FROM ledger_entry l WHERE l.payment_id = p.payment_id
		AND account = 'merchant_payable')")" = 0 ]
}

@test "a capture debits pg_receivable and credits merchant_payable" {
	payment "$ID"
	u=$(uuid)
	captured "$ID" 1000 "$u" | produce payment.captured
	run -0 --separate-stderr ledger-apply --once -g "$(group a)"
	[ -z "$output" ]
	[ "$(entries "$ID")" = "$(printf 'pg_receivable DEBIT 1000 KRW\nmerchant_payable CREDIT 1000 KRW')" ]
	[ "$(sql "SELECT DISTINCT event_key, occurred_at FROM ledger_entry
		WHERE payment_id = $ID" | tr '\t' ' ')" = "$u 2026-11-21 08:00:00.123456" ]
	balanced
}

@test "a refund is the reverse pair, for the refunded amount" {
	payment "$ID" 1000 300
	{ captured "$ID" 1000; refunded "$ID" 300; } | produce payment.captured
	run -0 ledger-apply --once -g "$(group a)"
	refunded "$ID" 300 | produce payment.refunded
	run -0 ledger-apply --once -g "$(group b)"
	# The refund on the captured topic was dead-lettered as the wrong type.
	[ "$(entries "$ID")" = "$(printf 'pg_receivable DEBIT 1000 KRW\nmerchant_payable CREDIT 1000 KRW\nmerchant_payable DEBIT 300 KRW\npg_receivable CREDIT 300 KRW')" ]
	balanced
}

@test "settle's and refund's events, relayed from the outbox, balance the ledger" {
	pg_control '{"fault":"none","failureRate":0}'
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key,
		amount, currency, status, transaction_id) VALUES ($ID, 'M1',
		'k$ID', 1000, 'KRW', 'CAPTURE_REQUESTED', 'txn_$ID')"
	printf '%s:{"eventId":"%s","eventType":"PAYMENT_CAPTURE_REQUESTED","paymentId":%s,"amount":1000,"currency":"KRW"}\n' \
		"$ID" "$(uuid)" "$ID" | produce payment.capture-requested
	run -0 settle --once -g "$(group s)"
	sql "UPDATE payment SET status = 'REFUND_REQUESTED' WHERE payment_id = $ID"
	r=$(sql "INSERT INTO refund_request (payment_id, amount, currency,
		reason, status) VALUES ($ID, 250, 'KRW', 'r', 'PENDING');
		SELECT LAST_INSERT_ID()")
	printf '%s:{"eventId":"%s","eventType":"PAYMENT_REFUND_REQUESTED","paymentId":%s,"amount":250,"currency":"KRW","refundId":%s}\n' \
		"$ID" "$(uuid)" "$ID" "$r" | produce payment.refund-requested
	run -0 refund --once -g "$(group r)"
	run -0 outbox-relay -1
	run -0 ledger-apply --once -g "$(group a)"
	# Two topics: the refund may be applied before the capture.
	[ "$(entries "$ID" | sort)" = "$(printf 'merchant_payable CREDIT 1000 KRW\nmerchant_payable DEBIT 250 KRW\npg_receivable CREDIT 250 KRW\npg_receivable DEBIT 1000 KRW')" ]
	[ "$(sql "SELECT status, refunded_amount FROM payment WHERE payment_id = $ID" |
		tr '\t' ' ')" = "PARTIALLY_REFUNDED 250" ]
	balanced
}

@test "the same event twice and a replay from offset 0 write two entries per event" {
	payment "$ID" 500 200
	c=$(captured "$ID" 500)
	r=$(refunded "$ID" 200)
	printf '%s\n%s\n' "$c" "$c" | produce payment.captured
	printf '%s\n%s\n' "$r" "$r" | produce payment.refunded
	run -0 ledger-apply --once -g "$(group a)"
	run -0 ledger-apply --once -g "$(group replay)"
	[ "$(count "ledger_entry WHERE payment_id = $ID")" = 4 ]
	[ "$(sql "SELECT COUNT(*) FROM (SELECT event_key FROM ledger_entry
		GROUP BY event_key HAVING COUNT(*) <> 2 OR
		SUM(side = 'DEBIT') <> 1) x")" = 0 ]
	balanced
}

@test "every malformed message goes to payment.dlq and the worker carries on" {
	key="bad$ID"
	payment "$ID"
	payment $((ID + 1)) 1000 0 USD
	{
		echo "$key:"
		echo "$key:\"just a string\""
		echo "$key:{\"eventId\":\"$(uuid)\",\"eventType\":\"PAYMENT_CAPTURED\",\"amount\":1000,\"currency\":\"KRW\"}"
		echo "$key:{\"eventId\":\"$(uuid)\",\"eventType\":\"PAYMENT_CAPTURED\",\"paymentId\":$ID,\"amount\":-5,\"currency\":\"KRW\"}"
		echo "$key:{\"eventId\":\"$(uuid)\",\"eventType\":\"PAYMENT_CAPTURED\",\"paymentId\":$ID,\"amount\":1000,\"currency\":\"KRW\",\"occurredAt\":\"yesterday\"}"
		echo "$key:{\"eventId\":\"$(uuid)\",\"paymentId\":$ID}"
		captured 999999 1000 | sed "s/^[^:]*:/$key:/"
		captured "$ID" 999 | sed "s/^[^:]*:/$key:/"
		captured $((ID + 1)) 1000 | sed "s/^[^:]*:/$key:/"
		captured "$ID" 1000 | sed "s/^[^:]*:/$key:/"
	} | produce payment.captured
	run -0 --separate-stderr ledger-apply --once -g "$(group a)"
	[[ $stderr == *"dead-lettered: UNKNOWN_PAYMENT: payment 999999 does not exist"* ]]
	[ "$(count "ledger_entry WHERE payment_id = $ID")" = 2 ]
	outbox PAYMENT_DEAD_LETTER >"$BATS_TEST_TMPDIR/dlq"
	jq -e -s --arg key "$key" --arg topic "${PAY_TOPIC_PREFIX}payment.captured" '
		map(select(.key == $key)) |
		(map(.errorType) | sort) == ["AMOUNT_MISMATCH", "BAD_FIELD",
			"BAD_FIELD", "CURRENCY_MISMATCH", "MISSING_FIELD",
			"MISSING_FIELD", "NOT_JSON", "NOT_JSON", "UNKNOWN_PAYMENT"] and
		all(.originalTopic == $topic and (.partition | type == "number") and
			(.offset | type == "number") and (.payload | type == "string") and
			(.errorMessage | length > 0) and (.timestamp | test("Z$")) and
			.consumer == "ledger-apply" and .eventType == "PAYMENT_DEAD_LETTER")' \
		"$BATS_TEST_TMPDIR/dlq"
	jq -r -s --arg key "$key" 'map(select(.key == $key))[] |
		[.originalTopic, .partition, .offset, .payload] | @json' \
		"$BATS_TEST_TMPDIR/dlq" | while read -r rec; do
		[ "$(message_at "$(jq -r '.[0]' <<<"$rec")" "$(jq -r '.[1]' <<<"$rec")" \
			"$(jq -r '.[2]' <<<"$rec")")" = "$(jq -r '.[3]' <<<"$rec")" ]
	done
}

@test "killed with -9 mid-way and restarted: every event applied exactly once" {
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key,
		amount, currency, status, captured_amount)
		SELECT $ID + seq, 'M1', CONCAT('k', $ID + seq), 1000, 'KRW',
		'CAPTURED', 1000 FROM seq_1_to_300"
	for i in $(seq 1 300); do
		captured $((ID + i)) 1000
	done | produce payment.captured
	g=$(group a)
	export PAY_CONSUMER_BATCH=1
	start first ledger-apply -g "$g"
	wait_until 30 eval '[ "$(count "ledger_entry WHERE payment_id > $ID")" -ge 40 ]'
	stop_with 137 first KILL
	run -0 ledger-apply --once -g "$g"
	[ "$(count "ledger_entry WHERE payment_id > $ID AND payment_id <= $((ID + 300))")" = 600 ]
	[ "$(sql "SELECT COUNT(*) FROM processed_event WHERE consumer = 'ledger-apply'
		AND event_key IN (SELECT event_key FROM ledger_entry
		WHERE payment_id > $ID)")" = 300 ]
	balanced
}

@test "SIGTERM exits 0 and commits: a restart in the group reads nothing again" {
	payment "$ID"
	captured "$ID" 1000 | produce payment.captured
	g=$(group a)
	start la ledger-apply -g "$g"
	wait_until 20 eval '[ "$(count "ledger_entry WHERE payment_id = $ID")" = 2 ]'
	stop_with 0 la TERM
	log_has la "stopped on SIGTERM"
	run -0 --separate-stderr ledger-apply --once -v -g "$g"
	[[ $stderr != *"already processed"* ]]
	[[ $stderr != *" applied "* ]]
}

@test "two instances in one group share the partitions" {
	g=$(group a)
	start one ledger-apply -g "$g"
	wait_until 20 log_has one "assigned "
	start two ledger-apply -g "$g"
	wait_until 30 log_has two "assigned .*\["
	for i in $(seq 1 20); do
		payment $((ID + i))
		captured $((ID + i)) 1000
	done | produce payment.captured
	wait_until 30 eval '[ "$(count "ledger_entry WHERE payment_id > $ID")" = 40 ]'
	stop_with 0 two
	stop_with 0 one
	a=$(grep -h assigned "$BATS_TEST_TMPDIR/one.err" | tail -n 1)
	b=$(grep -h assigned "$BATS_TEST_TMPDIR/two.err" | tail -n 1)
	[[ $a == *"payment.captured ["* && $b == *"payment.captured ["* ]]
	[ "$a" != "$b" ]
}

@test "usage errors are exit 64 and bad settings 78, with one line" {
	run -64 --separate-stderr ledger-apply --retry-due
	assert_one_line_stderr "ledger-apply: unknown option '--retry-due' (see 'ledger-apply -h')"
	run -64 --separate-stderr ledger-apply -n -1
	assert_one_line_stderr "*'--max-messages': '-1' is not a count*"
	PAY_CONSUMER_BATCH=0 run -78 --separate-stderr ledger-apply --once
	assert_one_line_stderr "ledger-apply: setting 'PAY_CONSUMER_BATCH': '0' is not an integer"
	PAY_CONSUMER_COMMIT_INTERVAL=often run -78 --separate-stderr ledger-apply --once
	assert_one_line_stderr "*'PAY_CONSUMER_COMMIT_INTERVAL': 'often'*"
}

@test "an unreachable database is exit 69 with one line" {
	PAY_DB_PORT=1 run -69 --separate-stderr ledger-apply --once
	assert_one_line_stderr "ledger-apply: connect to '127.0.0.1:1': *"
}

@test "-h prints the usage on stdout" {
	run -0 --separate-stderr ledger-apply --help
	[[ $output == "usage: ledger-apply "* ]]
	[ -z "$stderr" ]
}

@test "the usage line is the man page SYNOPSIS" {
	usage_matches_synopsis ledger-apply
}

@test "a large batch with repeats inside it and across batches books one pair per event" {
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key,
		amount, currency, status, captured_amount)
		SELECT $ID + seq, 'M1', CONCAT('k', $ID + seq), 1000, 'KRW',
		'CAPTURED', 1000 FROM seq_1_to_400"
	# 400 events; each fifth is sent twice in a row (same batch), and the
	# first hundred come again at the end (later batches).
	for i in $(seq 1 400); do
		u=$(uuid)
		echo "$u" >>"$BATS_TEST_TMPDIR/ids"
		captured $((ID + i)) 1000 "$u"
		[ $((i % 5)) -ne 0 ] || captured $((ID + i)) 1000 "$u"
		[ "$i" -gt 100 ] || captured $((ID + i)) 1000 "$u" >>"$BATS_TEST_TMPDIR/again"
	done >"$BATS_TEST_TMPDIR/first"
	cat "$BATS_TEST_TMPDIR/first" "$BATS_TEST_TMPDIR/again" | produce payment.captured
	# The topic holds the earlier tests' messages too: count this one's.
	PAY_CONSUMER_BATCH=250 run -0 --separate-stderr ledger-apply --once -v -g "$(group a)"
	[ "$(grep ' applied ' <<<"$stderr" | grep -c -F -f "$BATS_TEST_TMPDIR/ids")" = 400 ]
	[ "$(grep 'already processed' <<<"$stderr" | grep -c -F -f "$BATS_TEST_TMPDIR/ids")" = 180 ]
	[ "$(count "ledger_entry WHERE payment_id > $ID AND payment_id <= $ID + 400")" = 800 ]
	[ "$(sql "SELECT COUNT(*) FROM (SELECT event_key FROM ledger_entry
		WHERE payment_id > $ID AND payment_id <= $ID + 400 GROUP BY event_key
		HAVING COUNT(*) <> 2 OR SUM(side = 'DEBIT') <> 1) x")" = 0 ]
	[ "$(sql "SELECT COUNT(*) FROM processed_event WHERE consumer = 'ledger-apply'
		AND event_key IN (SELECT event_key FROM ledger_entry
		WHERE payment_id > $ID AND payment_id <= $ID + 400)")" = 400 ]
	[ "$(outbox PAYMENT_DEAD_LETTER "aggregate_id > $ID AND aggregate_id <= $ID + 400" | wc -l)" = 0 ]
	# A replay in a new group finds every batch processed before.
	PAY_CONSUMER_BATCH=250 run -0 --separate-stderr ledger-apply --once -v -g "$(group replay)"
	[ "$(grep 'already processed' <<<"$stderr" | grep -c -F -f "$BATS_TEST_TMPDIR/ids")" = 580 ]
	[ "$(count "ledger_entry WHERE payment_id > $ID AND payment_id <= $ID + 400")" = 800 ]
	balanced
}

@test "events read again after their records were purged add nothing, in a batch or alone" {
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key,
		amount, currency, status, captured_amount)
		SELECT $ID + seq, 'M1', CONCAT('k', $ID + seq), 1000, 'KRW',
		'CAPTURED', 1000 FROM seq_1_to_3"
	for i in 1 2 3; do
		captured $((ID + i)) 1000
	done >"$BATS_TEST_TMPDIR/events"
	produce payment.captured <"$BATS_TEST_TMPDIR/events"
	g=$(group a)
	run -0 ledger-apply --once -g "$g"
	[ "$(count "ledger_entry WHERE payment_id > $ID AND payment_id <= $ID + 3")" = 6 ]
	before=$(sql "SELECT SUM(entries) FROM ledger_balance")
	# Their records gone, the events come again in one batch, with a new
	# one: the batch's entries are partly there already.
	sql "DELETE FROM processed_event WHERE event_key IN (SELECT event_key
		FROM ledger_entry WHERE payment_id > $ID AND payment_id <= $ID + 3)"
	payment $((ID + 4))
	{
		cat "$BATS_TEST_TMPDIR/events"
		captured $((ID + 4)) 1000
	} | produce payment.captured
	run -0 ledger-apply --once -g "$(group b)"
	[ "$(count "ledger_entry WHERE payment_id > $ID AND payment_id <= $ID + 4")" = 8 ]
	[ "$(sql "SELECT SUM(entries) FROM ledger_balance")" = $((before + 2)) ]
	balanced
}

@test "an event the database refuses in a batch is dead-lettered alone, the rest applied" {
	for i in 1 2 3 4; do
		payment $((ID + i))
	done
	{
		captured $((ID + 1)) 1000
		captured $((ID + 2)) 1000
		# A well-formed time that TIMESTAMP cannot hold.
		captured $((ID + 3)) 1000 | sed 's/2026-11-21T08/2040-11-21T08/'
		captured $((ID + 4)) 1000
	} | sed "s/^[^:]*:/k$ID:/" | produce payment.captured
	run -0 --separate-stderr ledger-apply --once -g "$(group a)"
	[[ $stderr == *"dead-lettered: PROCESSING_ERROR: "*"2040-11-21"* ]]
	[ "$(count "ledger_entry WHERE payment_id IN ($ID + 1, $ID + 2, $ID + 4)")" = 6 ]
	[ "$(count "ledger_entry WHERE payment_id = $ID + 3")" = 0 ]
	outbox PAYMENT_DEAD_LETTER "aggregate_id = $ID + 3" |
		jq -e -s 'length == 1 and .[0].errorType == "PROCESSING_ERROR"'
	[ "$(sql "SELECT SUM(IF(side = 'DEBIT', amount, -amount)) FROM ledger_entry")" = 0 ]
}

@test "a dead letter that cannot be written stops it non-zero, and nothing of its batch is committed" {
	payment "$ID"
	payment $((ID + 1))
	u1=$(uuid) u2=$(uuid)
	{
		echo "k$ID:not json"
		captured "$ID" 1000 "$u1"
		captured $((ID + 1)) 1000 "$u2"
	} | sed "s/^[^:]*:/k$ID:/" | produce payment.captured
	sql "CREATE TRIGGER no_dlq_$ID BEFORE INSERT ON outbox_event FOR EACH ROW
		SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'outbox closed'"
	g=$(group a)
	run -70 --separate-stderr ledger-apply --once -g "$g"
	sql "DROP TRIGGER no_dlq_$ID"
	[[ $stderr == *"outbox closed"* ]]
	[ "$(count "ledger_entry WHERE payment_id IN ($ID, $ID + 1)")" = 0 ]
	[ "$(count "processed_event WHERE event_key IN ('$u1', '$u2')")" = 0 ]
	# Its offsets were not committed: the group reads the messages again.
	run -0 --separate-stderr ledger-apply --once -g "$g"
	[[ $stderr == *"dead-lettered: NOT_JSON"* ]]
	[ "$(count "ledger_entry WHERE payment_id IN ($ID, $ID + 1)")" = 4 ]
	[ "$(count "processed_event WHERE event_key IN ('$u1', '$u2')")" = 2 ]
	balanced
}

@test "--purge-older-than deletes its own records older than the bound, and only those" {
	sql "INSERT INTO processed_event (consumer, event_key, processed_at)
		SELECT 'ledger-apply', UUID(), NOW(6) - INTERVAL 8 DAY FROM seq_1_to_5;
		INSERT INTO processed_event (consumer, event_key, processed_at)
		SELECT 'ledger-apply', UUID(), NOW(6) - INTERVAL 6 DAY FROM seq_1_to_3;
		INSERT INTO processed_event (consumer, event_key, processed_at)
		SELECT 'settle', UUID(), NOW(6) - INTERVAL 30 DAY FROM seq_1_to_2"
	old="processed_event WHERE processed_at < NOW(6) - INTERVAL 7 DAY"
	[ "$(count "$old AND consumer = 'ledger-apply'")" = 5 ]
	before=$(count "processed_event WHERE processed_at >= NOW(6) - INTERVAL 7 DAY")
	PAY_CONSUMER_PURGE_BATCH=2 run -0 --separate-stderr ledger-apply --purge-older-than 7d
	[ -z "$stderr" ]
	[ "$output" = '{"purged":5}' ]
	[ "$(count "$old AND consumer = 'ledger-apply'")" = 0 ]
	[ "$(count "$old AND consumer = 'settle'")" = 2 ]
	[ "$(count "processed_event WHERE processed_at >= NOW(6) - INTERVAL 7 DAY")" = "$before" ]
	# Nothing left to purge: 0.
	run -0 --separate-stderr ledger-apply -P 7d
	[ "$output" = '{"purged":0}' ]
}

@test "--purge-older-than refuses a bad age and --once" {
	run -64 --separate-stderr ledger-apply --purge-older-than soon
	assert_one_line_stderr "ledger-apply: option '--purge-older-than': 'soon' is not a duration such as 7d (see 'ledger-apply -h')"
	run -64 --separate-stderr ledger-apply -P 7d --once
	assert_one_line_stderr "ledger-apply: option '--purge-older-than' does not go with '--once' (see 'ledger-apply -h')"
	PAY_DB_PORT=1 run -69 --separate-stderr ledger-apply -P 7d
	assert_one_line_stderr "ledger-apply: connect to '127.0.0.1:1': *"
}
