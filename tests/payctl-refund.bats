#!/usr/bin/env bats
# payctl refund: full and partial refunds of captured payments, never more
# than was captured, each with its refund_request row and event.
# shellcheck disable=SC2154 # bats' run sets output and stderr.

load test_helper
load payctl_helper

setup_file() {
	use_own_db
	pg_save
}

teardown_file() {
	pg_leave
}

# settled ID: the refund worker finished the payment's refunds so far.
settled() {
	sql "UPDATE refund_request SET status = 'SUCCESS' WHERE payment_id = $1;
		UPDATE payment SET status = 'PARTIALLY_REFUNDED' WHERE payment_id = $1"
}

refunds() {
	sql "SELECT COUNT(*) FROM refund_request WHERE payment_id = $1"
}

@test "-h prints the usage without a database" {
	PAY_DB_PORT=1 run -0 payctl refund -h
	[ "$output" = "usage: payctl refund [-h] [-a amount] -r reason id" ]
}

@test "refunds the whole captured amount by default" {
	local id rid
	id=$(captured M1 10000)
	run -0 --separate-stderr payctl refund "$id" --reason "customer asked"
	[ -z "$stderr" ]
	echo "$output" | jq -e --argjson id "$id" '.payment_id == $id and
		.status == "REFUND_REQUESTED" and .refund_amount == 10000 and
		.refundable_amount == 0 and .captured_amount == 10000 and
		.reason == "customer asked" and (.refund_id | type == "number")'
	rid=$(echo "$output" | jq .refund_id)
	[ "$(sql "SELECT payment_id, amount, currency, reason, status FROM refund_request WHERE id = $rid")" = \
		"$(printf '%s\t10000\tKRW\tcustomer asked\tPENDING' "$id")" ]
	[ "$(sql "SELECT status FROM payment WHERE payment_id = $id")" = REFUND_REQUESTED ]
	[ "$(events "$id")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED,PAYMENT_REFUND_REQUESTED ]
	sql "SELECT payload FROM outbox_event WHERE aggregate_id = $id AND event_type = 'PAYMENT_REFUND_REQUESTED'" |
		jq -e --argjson id "$id" --argjson rid "$rid" '.paymentId == $id and .refundId == $rid and
			.status == "REFUND_REQUESTED" and .amount == 10000 and .currency == "KRW" and
			.merchantId == "M1" and .reason == "customer asked" and
			(.transactionId | startswith("txn_")) and .schemaVersion == 1'
}

@test "partial refunds are allowed while they stay within the captured amount" {
	local id
	id=$(captured M1 10000)
	run -0 payctl refund -a 3000 -r first "$id"
	echo "$output" | jq -e '.refund_amount == 3000 and .refundable_amount == 7000'
	settled "$id"
	run -0 payctl refund --amount 5000 --reason second "$id"
	echo "$output" | jq -e '.refundable_amount == 2000'
	settled "$id"
	run -65 --separate-stderr payctl refund -a 2001 -r third "$id"
	assert_one_line_stderr "payctl refund: payment '$id': refund of 2001 KRW exceeds the 2000 KRW left to refund"
	echo "$output" | jq -e '.error == "OVER_REFUND" and .refundable_amount == 2000 and .requested_amount == 2001'
	[ "$(refunds "$id")" -eq 2 ]
	[ "$(sql "SELECT status FROM payment WHERE payment_id = $id")" = PARTIALLY_REFUNDED ]
	run -0 payctl refund -r rest "$id"
	echo "$output" | jq -e '.refund_amount == 2000 and .refundable_amount == 0'
	settled "$id"
	run -65 --separate-stderr payctl refund -a 1 -r more "$id"
	echo "$output" | jq -e '.error == "OVER_REFUND" and .refundable_amount == 0'
	[ "$(refunds "$id")" -eq 3 ]
	[ "$(sql "SELECT COUNT(*) FROM outbox_event WHERE aggregate_id = $id AND event_type = 'PAYMENT_REFUND_REQUESTED'")" -eq 3 ]
}

@test "a failed refund still holds its amount; a dead one does not" {
	local id
	id=$(captured M1 1000)
	payctl refund -a 600 -r one "$id" >/dev/null
	sql "UPDATE refund_request SET status = 'FAILED' WHERE payment_id = $id;
		UPDATE payment SET status = 'CAPTURED' WHERE payment_id = $id"
	run -65 payctl refund -a 600 -r two "$id"
	sql "UPDATE refund_request SET status = 'DEAD' WHERE payment_id = $id"
	run -0 payctl refund -a 600 -r two "$id"
}

@test "refuses a payment that is not captured, writing nothing" {
	local id st
	id=$(authorized M1 1000)
	for st in CAPTURE_REQUESTED AUTHORIZED AUTH_FAILED REFUND_REQUESTED REFUNDED; do
		sql "UPDATE payment SET status = '$st', captured_amount = 1000 WHERE payment_id = $id"
		run -65 --separate-stderr payctl refund -r why "$id"
		assert_one_line_stderr "payctl refund: payment '$id': status is $st, not CAPTURED or PARTIALLY_REFUNDED"
		echo "$output" | jq -e --arg st "$st" '.error == "INVALID_STATE" and .status == $st'
	done
	[ "$(refunds "$id")" -eq 0 ]
	run -65 --separate-stderr payctl refund -r why 999999999
	echo "$output" | jq -e '.error == "NOT_FOUND"'
}

@test "refuses bad flags with exit 64 before touching the database" {
	local a
	for a in 0 -1 abc '' 1000000000000001; do
		PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -a "$a" -r why 1
		assert_one_line_stderr "payctl refund: option '--amount': '$a' is not a whole number *"
	done
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund 1
	assert_one_line_stderr "*option '--reason' is required*"
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -r '' 1
	assert_one_line_stderr "*option '--reason': must be 1 to 500 characters*"
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -r "$(printf 'x%.0s' $(seq 501))" 1
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -r "$(printf 'a\tb')" 1
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -r why abc
	assert_one_line_stderr "payctl refund: 'abc' is not a payment id *"
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -r why
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -r why 1 2
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -r why -x 1
	# 500 characters of UTF-8 are fine.
	run -0 payctl refund -r "$(printf '환%.0s' $(seq 500))" "$(captured M1 10)"
}

@test "concurrent refunds never exceed the captured amount" {
	local id i rc
	id=$(captured M1 1000)
	sql "UPDATE payment SET status = 'PARTIALLY_REFUNDED' WHERE payment_id = $id"
	for i in $(seq 8); do
		{
			rc=0
			payctl refund -a 300 -r "r$i" "$id" >/dev/null 2>&1 || rc=$?
			echo $rc >"$BATS_TEST_TMPDIR/rc.$i"
		} &
	done
	wait
	# The first moves the payment to REFUND_REQUESTED; the rest are refused.
	[ "$(grep -c '^0$' "$BATS_TEST_TMPDIR"/rc.*  | awk -F: '{s+=$2} END {print s}')" -eq 1 ]
	[ "$(refunds "$id")" -eq 1 ]
	[ "$(sql "SELECT SUM(amount) FROM refund_request WHERE payment_id = $id")" -eq 300 ]
}

@test "the refund rate limit counts per merchant" {
	local a b
	a=$(captured RR1 10)
	b=$(captured RR1 10)
	export PAY_RATE_LIMIT_REFUND=1 PAY_RATE_LIMIT_WINDOW=1h
	run -0 payctl refund -r x "$a"
	run -75 --separate-stderr payctl refund -r x "$b"
	assert_one_line_stderr "payctl refund: refund rate limit of merchant 'RR1': 1 per 1h reached, retry in *s"
	echo "$output" | jq -e '.error == "RATE_LIMITED" and .action == "refund"'
	[ "$(refunds "$b")" -eq 0 ]
	[ "$(sql "SELECT status FROM payment WHERE payment_id = $b")" = CAPTURED ]
}
