#!/usr/bin/env bats
# payctl show: one payment with its settlement, refunds and events.
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

@test "-h prints the usage without a database" {
	PAY_DB_PORT=1 run -0 payctl show -h
	[ "$output" = "usage: payctl show [-h] id" ]
}

@test "shows a payment, its refunds and the state of its events" {
	local id
	id=$(captured M1 2500)
	payctl refund -a 1000 -r "damaged" "$id" >/dev/null
	run -0 --separate-stderr payctl show "$id"
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 1 ]
	echo "$output" | jq -e --argjson id "$id" '
		.payment_id == $id and .status == "REFUND_REQUESTED" and
		.merchant_id == "M1" and .amount == 2500 and .currency == "KRW" and
		.captured_amount == 2500 and .refunded_amount == 0 and .capture == true and
		(.approval_number | startswith("APP")) and (.updated_at | endswith("Z")) and
		.settlement == null and
		(.refunds | length == 1 and .[0].amount == 1000 and .[0].status == "PENDING" and
		    .[0].reason == "damaged") and
		(.events | map(.event_type) == ["PAYMENT_AUTHORIZED", "PAYMENT_CAPTURE_REQUESTED",
		    "PAYMENT_REFUND_REQUESTED"]) and
		(.events | all(.status == "PENDING" and .attempts == 0 and (.event_key | length == 36)))'
}

@test "shows a settlement when there is one" {
	local id
	id=$(authorized M1 100)
	sql "INSERT INTO settlement_request (payment_id, event_key, amount, currency, status)
		VALUES ($id, UUID(), 100, 'KRW', 'PENDING')"
	run -0 payctl show "$id"
	echo "$output" | jq -e '.settlement.status == "PENDING" and .settlement.amount == 100'
}

@test "an unknown payment is exit 1 with one line and no output" {
	run -1 --separate-stderr payctl show 999999999
	assert_one_line_stderr "payctl show: payment '999999999': not found"
	[ -z "$output" ]
}

@test "refuses a malformed id with exit 64" {
	run -64 --separate-stderr payctl show abc
	assert_one_line_stderr "payctl show: 'abc' is not a payment id (1 to 9223372036854775807) (see 'payctl show -h')"
	run -64 --separate-stderr payctl show -- 0
	run -64 --separate-stderr payctl show
	run -64 --separate-stderr payctl show 1 2
}

@test "an unreachable database is exit 69" {
	PAY_DB_PORT=1 run -69 --separate-stderr payctl show 1
	assert_one_line_stderr "payctl show: connect to '127.0.0.1:1': *"
}
