#!/usr/bin/env bats
# payctl recover: claims left behind are taken over, asked of the gateway
# again with their key, and recorded; claims still held are left alone.
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

setup() {
	# Each test sees only its own claims.
	sql "DELETE FROM payment WHERE status = 'PENDING'"
}

teardown() {
	pg_restore
}

# left MERCHANT KEY AMOUNT CURRENCY CAPTURE LEASE: a claim whose lease
# ends LEASE from now (an SQL interval, negative when over).
left() {
	sql "INSERT INTO payment (merchant_id, idempotency_key, amount, currency,
		auto_capture, status, lease_until, claim_token) VALUES ('$1', '$2',
		$3, '$4', $5, 'PENDING', NOW(6) + INTERVAL $6, 'dead-process')"
}

@test "-h prints the usage without a database" {
	PAY_DB_PORT=1 run -0 payctl recover -h
	[ "$output" = "usage: payctl recover [-h] [-n limit] [-o age]" ]
}

@test "refuses bad flags and operands with exit 64 and one line" {
	run -64 --separate-stderr payctl recover -n 0
	assert_one_line_stderr "payctl recover: option '--limit': '0' is not*"
	run -64 --separate-stderr payctl recover -n 100001
	run -64 --separate-stderr payctl recover --older-than soon
	assert_one_line_stderr "payctl recover: option '--older-than': 'soon'*"
	run -64 --separate-stderr payctl recover now
	assert_one_line_stderr "payctl recover: unexpected argument 'now'*"
	run -64 --separate-stderr payctl recover --bogus
	[ -z "$output" ]
}

@test "nothing left behind: no output, exit 0" {
	run -0 --separate-stderr payctl recover
	[ -z "$output" ] && [ -z "$stderr" ]
}

@test "a claim left behind is recorded with its events and one gateway call" {
	local k1 k2 id1 id2
	k1=$(new_key r) k2=$(new_key r)
	left M1 "$k1" 5000 KRW 1 "-1 SECOND"
	left M2 "$k2" 700 USD 0 "-2 SECOND"
	id1=$(sql "SELECT payment_id FROM payment WHERE idempotency_key = '$k1'")
	id2=$(sql "SELECT payment_id FROM payment WHERE idempotency_key = '$k2'")
	run -0 --separate-stderr payctl recover
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 2 ]
	# Oldest first; each as payctl authorize prints it.
	echo "${lines[0]}" | jq -e --argjson id "$id1" '.payment_id == $id and
		.status == "CAPTURE_REQUESTED" and .amount == 5000 and
		.replayed == false and (.approval_number | test("^APP"))'
	echo "${lines[1]}" | jq -e --argjson id "$id2" '.payment_id == $id and
		.status == "AUTHORIZED" and .currency == "USD"'
	[ "$(events "$id1")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
	[ "$(events "$id2")" = PAYMENT_AUTHORIZED ]
	[ "$(pg_calls "$k1")" -eq 1 ] && [ "$(pg_calls "$k2")" -eq 1 ]
	# Done: a second run finds nothing, and the client's retry replays.
	run -0 payctl recover
	[ -z "$output" ]
	run -0 payctl authorize -m M1 -a 5000 -k "$k1"
	echo "$output" | jq -e '.replayed and .status == "CAPTURE_REQUESTED"'
	[ "$(pg_calls "$k1")" -eq 1 ]
}

@test "claims still held, or over for less than -o, are left alone" {
	local k1 k2 k3
	k1=$(new_key r) k2=$(new_key r) k3=$(new_key r)
	left M1 "$k1" 100 KRW 1 "1 HOUR"
	left M1 "$k2" 100 KRW 1 "-10 SECOND"
	left M1 "$k3" 100 KRW 1 "-2 HOUR"
	run -0 payctl recover -o 1m
	[ "${#lines[@]}" -eq 1 ]
	echo "$output" | jq -e --arg k "$k3" '.idempotency_key == $k'
	[ "$(rows "status = 'PENDING'")" -eq 2 ]
	[ "$(pg_calls "$k1")" -eq 0 ] && [ "$(pg_calls "$k2")" -eq 0 ]
}

@test "-n bounds a run; the next run takes the rest" {
	local p i
	p=$(new_key n)
	for i in 1 2 3; do
		left M1 "$p-$i" 100 KRW 1 "-$((10 - i)) SECOND"
	done
	run -0 payctl recover -n 2
	[ "${#lines[@]}" -eq 2 ]
	[ "$(rows "status = 'PENDING'")" -eq 1 ]
	run -0 payctl recover -n 2
	[ "${#lines[@]}" -eq 1 ]
	echo "$output" | jq -e --arg k "$p-3" '.idempotency_key == $k'
}

@test "a decline is recorded as the authorization's outcome" {
	local k
	k=$(new_key d)
	left M1 "$k" 100 KRW 1 "-1 SECOND"
	pg_control '{"endpoint":"authorize","fault":"fail"}' >/dev/null
	run -0 payctl recover
	echo "$output" | jq -e '.status == "AUTH_FAILED"'
	[ "$(rows "idempotency_key = '$k' AND status = 'AUTH_FAILED'")" -eq 1 ]
}

@test "a gateway error deletes the claim: exit 75, the key starts afresh" {
	local k
	k=$(new_key e)
	left M1 "$k" 100 KRW 1 "-1 SECOND"
	pg_control '{"endpoint":"authorize","fault":"http500"}' >/dev/null
	run -75 --separate-stderr payctl recover
	echo "$output" | jq -e '.error == "GATEWAY_ERROR"'
	[[ $stderr == *"payctl recover: 1 of 1 requests failed (1 temporary)"* ]]
	[ "$(rows "idempotency_key = '$k'")" -eq 0 ]
}

@test "no database is exit 69 with one line" {
	PAY_DB_PORT=1 run -69 --separate-stderr payctl recover
	assert_one_line_stderr "payctl recover: connect to '127.0.0.1:1': *"
	[ -z "$output" ]
}
