#!/usr/bin/env bats
# refund: payment.refund-requested -> gateway refund -> PARTIALLY_REFUNDED
# or REFUNDED and PAYMENT_REFUNDED, with retries, dead letters and
# exactly-once effects.
# shellcheck disable=SC2154 # bats' run sets output and stderr.
# shellcheck disable=SC2016 # wait_until eval expands its test later.

load test_helper
load consumer_helper

setup_file() {
	use_own_db
	pg_reset
}

setup() {
	export PAY_REFUND_RETRY_BASE=1ms PAY_REFUND_RETRY_MAX=1ms
	ID=$((BATS_TEST_NUMBER * 100))
}

teardown() {
	stop_started
	pg_reset
}

# payment ID [STATUS [CAPTURED [REFUNDED]]]: a captured payment.
payment() {
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key,
		amount, currency, status, transaction_id, captured_amount,
		refunded_amount) VALUES ($1, 'M1', 'k$1', ${3:-1000}, 'KRW',
		'${2:-REFUND_REQUESTED}', 'txn_$1', ${3:-1000}, ${4:-0})"
}

# request PAYMENT AMOUNT: a refund_request as payctl refund writes it;
# prints its id.
request() {
	sql "INSERT INTO refund_request (payment_id, amount, currency, reason,
		status) VALUES ($1, $2, 'KRW', 'customer request', 'PENDING');
		SELECT LAST_INSERT_ID()"
}

# event PAYMENT REFUND AMOUNT [EVENT_ID]: its refund-requested message.
event() {
	printf '%s:{"eventId":"%s","eventType":"PAYMENT_REFUND_REQUESTED","schemaVersion":1,"occurredAt":"2026-11-21T08:00:00Z","paymentId":%s,"status":"REFUND_REQUESTED","merchantId":"M1","amount":%s,"currency":"KRW","refundId":%s,"reason":"customer request","transactionId":"txn_%s"}\n' \
		"$1" "${4:-$(uuid)}" "$1" "$3" "$2" "$1"
}

payment_of() {
	sql "SELECT status, refunded_amount FROM payment WHERE payment_id = $1" |
		tr '\t' ' '
}
request_of() {
	sql "SELECT status, retry_count FROM refund_request WHERE id = $1" |
		tr '\t' ' '
}
refunded_events() {
	outbox PAYMENT_REFUNDED "aggregate_id = $1" | grep -c . || true
}

@test "a partial refund, then the rest: PARTIALLY_REFUNDED, REFUNDED, one event each" {
	payment "$ID"
	r1=$(request "$ID" 400)
	event "$ID" "$r1" 400 | produce payment.refund-requested
	run -0 --separate-stderr refund --once -g "$(group a)"
	[ -z "$output" ]
	[[ $stderr == *"payment $ID: refund $r1 refunded, transaction cancel_"* ]]
	[ "$(request_of "$r1")" = "SUCCESS 0" ]
	[ "$(payment_of "$ID")" = "PARTIALLY_REFUNDED 400" ]
	outbox PAYMENT_REFUNDED "aggregate_id = $ID" | jq -e -s --argjson id "$ID" --argjson r "$r1" '
		length == 1 and (.[0] | .paymentId == $id and .refundId == $r and
		.amount == 400 and .currency == "KRW" and .status == "REFUNDED" and
		.paymentStatus == "PARTIALLY_REFUNDED" and .refundedAmount == 400 and
		(.cancelTransactionId | startswith("cancel_")))'

	sql "UPDATE payment SET status = 'REFUND_REQUESTED' WHERE payment_id = $ID"
	r2=$(request "$ID" 600)
	event "$ID" "$r2" 600 | produce payment.refund-requested
	run -0 refund --once -g "$(group b)"
	[ "$(payment_of "$ID")" = "REFUNDED 1000" ]
	[ "$(refunded_events "$ID")" = 2 ]
	[ "$(pg_calls refund "refund-txn_$ID-$r1")" = 1 ]
	[ "$(pg_calls refund "refund-txn_$ID-$r2")" = 1 ]
}

@test "refunds of one payment in flight at once add up: REFUNDED, one event each" {
	payment "$ID"
	for a in 100 200 300 400; do
		r=$(request "$ID" "$a")
		echo "$r" >>"$BATS_TEST_TMPDIR/ids"
		event "$ID" "$r" "$a"
	done | produce payment.refund-requested
	run -0 --separate-stderr refund --once -v -g "$(group a)"
	[[ $stderr == *"refund: claimed 4 due refunds, 4 to call"* ]]
	[ "$(payment_of "$ID")" = "REFUNDED 1000" ]
	# Each saw the ones recorded before it: the running totals, and the
	# payment REFUNDED with the last.
	outbox PAYMENT_REFUNDED "aggregate_id = $ID" | jq -e -s '
		length == 4 and (map(.refundedAmount) | sort) ==
		(map(.refundedAmount) | unique) and
		(map(.refundedAmount) | max) == 1000 and
		(map(select(.paymentStatus == "REFUNDED")) | length) == 1 and
		(map(select(.paymentStatus == "REFUND_REQUESTED")) | length) == 3'
	while read -r r; do
		[ "$(request_of "$r")" = "SUCCESS 0" ]
		[ "$(pg_calls refund "refund-txn_$ID-$r")" = 1 ]
	done <"$BATS_TEST_TMPDIR/ids"
}

@test "the same message twice and a replay of the topic refund once" {
	payment "$ID"
	r=$(request "$ID" 1000)
	e=$(event "$ID" "$r" 1000)
	printf '%s\n%s\n' "$e" "$e" | produce payment.refund-requested
	run -0 refund --once -g "$(group a)"
	run -0 refund --once -g "$(group replay)"
	# A new event for the same, finished refund changes nothing either.
	event "$ID" "$r" 1000 | produce payment.refund-requested
	run -0 refund --once -g "$(group again)"
	[ "$(payment_of "$ID")" = "REFUNDED 1000" ]
	[ "$(refunded_events "$ID")" = 1 ]
	[ "$(pg_calls refund "refund-txn_$ID-$r")" = 1 ]
}

@test "a first-time failure is retried by --retry-due and emits PAYMENT_REFUNDED" {
	payment "$ID"
	r=$(request "$ID" 300)
	pg_control '{"fault":"fail","endpoint":"refund"}'
	event "$ID" "$r" 300 | produce payment.refund-requested
	run -0 --separate-stderr refund --once -g "$(group a)"
	[[ $stderr == *"refund $r attempt 1 failed: PG_TIMEOUT"* ]]
	[ "$(request_of "$r")" = "FAILED 1" ]
	[ "$(payment_of "$ID")" = "REFUND_REQUESTED 0" ]
	[ "$(refunded_events "$ID")" = 0 ]
	pg_reset
	run -0 refund --retry-due
	[ "$(request_of "$r")" = "SUCCESS 1" ]
	[ "$(payment_of "$ID")" = "PARTIALLY_REFUNDED 300" ]
	[ "$(refunded_events "$ID")" = 1 ]
}

@test "after the last retry: DEAD, REFUND_FAILED and a refund.dlq record" {
	export PAY_REFUND_MAX_RETRIES=1
	payment "$ID"
	r=$(request "$ID" 1000)
	pg_control '{"fault":"fail","endpoint":"refund"}'
	event "$ID" "$r" 1000 | produce payment.refund-requested
	run -0 refund --once -g "$(group a)"
	run -0 --separate-stderr refund --retry-due
	[[ $stderr == *"refund $r dead-lettered: gave up after 2 attempts"* ]]
	[ "$(request_of "$r")" = "DEAD 2" ]
	[ "$(payment_of "$ID")" = "REFUND_FAILED 0" ]
	[ "$(refunded_events "$ID")" = 0 ]
	outbox REFUND_DEAD_LETTER "aggregate_id = $ID" | jq -e -s --argjson id "$ID" --argjson r "$r" '
		length == 1 and (.[0] | .refundRequestId == $r and .paymentId == $id and
		.refundAmount == 1000 and .refundReason == "customer request" and
		.retryCount == 2 and .status == "DEAD" and
		.errorType == "RETRIES_EXHAUSTED" and .pgResponseCode == "PG_TIMEOUT" and
		(.requestedAt | test("Z$")) and (.timestamp | test("Z$")))'
}

@test "a dead refund leaves a payment that changed meanwhile alone" {
	export PAY_REFUND_MAX_RETRIES=0
	payment "$ID"
	r=$(request "$ID" 1000)
	sql "UPDATE refund_request SET next_retry_at = NOW(6) WHERE id = $r"
	pg_control '{"fault":"hang","endpoint":"refund"}'
	export PAY_PG_TIMEOUT=30s
	start refund refund --retry-due
	wait_until 20 eval '[ "$(pg_calls refund "refund-txn_$ID-$r")" = 1 ]'
	sql "UPDATE payment SET status = 'CAPTURED' WHERE payment_id = $ID"
	pg_control '{"fault":"fail","endpoint":"refund"}'
	wait_until 20 gone "$(pid_of refund)"
	[ "$(request_of "$r")" = "DEAD 1" ]
	[ "$(payment_of "$ID")" = "CAPTURED 0" ]
}

@test "a request whose payment is no longer REFUND_REQUESTED is dead-lettered, not sent" {
	payment "$ID" CAPTURED
	r=$(request "$ID" 500)
	event "$ID" "$r" 500 | produce payment.refund-requested
	run -0 refund --once -g "$(group a)"
	[ "$(request_of "$r")" = "DEAD 0" ]
	[ "$(payment_of "$ID")" = "CAPTURED 0" ]
	[ "$(pg_calls refund "refund-txn_$ID-$r")" = 0 ]
	outbox REFUND_DEAD_LETTER "aggregate_id = $ID" |
		jq -e -s 'length == 1 and .[0].errorType == "INVALID_STATE"'
}

@test "every malformed message goes to refund.dlq and the worker carries on" {
	key="bad$ID"
	payment "$ID"
	r=$(request "$ID" 100)
	payment $((ID + 1))
	other=$(request $((ID + 1)) 100)
	{
		echo "$key:{oops"
		event "$ID" "$r" 100 | sed 's/"refundId":[0-9]*,//; s/^[^:]*:/'"$key"':/'
		event "$ID" "$r" 100 | sed 's/"amount":100/"amount":"100"/; s/^[^:]*:/'"$key"':/'
		event 999999 "$r" 100 | sed "s/^[^:]*:/$key:/"
		event "$ID" 999999 100 | sed "s/^[^:]*:/$key:/"
		event "$ID" "$other" 100 | sed "s/^[^:]*:/$key:/"
		event "$ID" "$r" 150 | sed "s/^[^:]*:/$key:/"
		event "$ID" "$r" 100 | sed "s/^[^:]*:/$key:/"
	} | produce payment.refund-requested
	run -0 refund --once -g "$(group a)"
	[ "$(payment_of "$ID")" = "PARTIALLY_REFUNDED 100" ]
	[ "$(request_of "$other")" = "PENDING 0" ]
	outbox REFUND_DEAD_LETTER | jq -e -s --arg key "$key" --arg topic "${PAY_TOPIC_PREFIX}payment.refund-requested" '
		map(select(.key == $key)) |
		(map(.errorType) | sort) == ["AMOUNT_MISMATCH", "BAD_FIELD",
			"MISSING_FIELD", "NOT_JSON", "UNKNOWN_PAYMENT",
			"UNKNOWN_REFUND", "UNKNOWN_REFUND"] and
		all(.originalTopic == $topic and (.offset | type == "number") and
			(.payload | length > 0) and .consumer == "refund")'
}

@test "SIGTERM exits 0 and commits what was applied" {
	payment "$ID"
	r=$(request "$ID" 1000)
	event "$ID" "$r" 1000 | produce payment.refund-requested
	g=$(group a)
	start refund refund -g "$g"
	wait_until 20 eval '[ "$(request_of "$r")" = "SUCCESS 0" ]'
	stop_with 0 refund TERM
	log_has refund "stopped on SIGTERM"
	run -0 --separate-stderr refund --once -v -g "$g"
	[[ $stderr != *"already processed"* ]]
	[ "$(refunded_events "$ID")" = 1 ]
}

@test "usage errors are exit 64 and bad settings 78, with one line" {
	run -64 --separate-stderr refund --retry-due -n 5
	assert_one_line_stderr "refund: '--retry-due' cannot be combined with '--once' or '--max-messages' (see 'refund -h')"
	run -64 --separate-stderr refund --max-messages abc
	assert_one_line_stderr "*'--max-messages': 'abc' is not a count*"
	run -64 --separate-stderr refund --frobnicate
	assert_one_line_stderr "refund: unknown option '--frobnicate' (see 'refund -h')"
	run -64 --separate-stderr refund --concurrency abc
	assert_one_line_stderr "refund: option '--concurrency': 'abc' is not a count from 1 to 4096 (see 'refund -h')"
	PAY_REFUND_CONCURRENCY=0 run -78 --separate-stderr refund --once
	assert_one_line_stderr "refund: setting 'PAY_REFUND_CONCURRENCY': '0' is not an integer"
}

@test "an unreachable database is exit 69 with one line" {
	PAY_DB_PORT=1 run -69 --separate-stderr refund --retry-due
	assert_one_line_stderr "refund: connect to '127.0.0.1:1': *"
}

@test "-h prints the usage on stdout" {
	run -0 --separate-stderr refund -h
	[[ $output == "usage: refund "* ]]
	[ -z "$stderr" ]
}

@test "the usage line is the man page SYNOPSIS" {
	usage_matches_synopsis refund
}
