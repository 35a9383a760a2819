#!/usr/bin/env bats
# payctl capture: AUTHORIZED -> CAPTURE_REQUESTED with its event, guarded so
# that of concurrent captures exactly one wins.
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
	PAY_DB_PORT=1 run -0 payctl capture -h
	[ "$output" = "usage: payctl capture [-h] id" ]
}

@test "captures a payment authorized with --no-capture" {
	local id
	id=$(authorized M1 5000 --no-capture)
	run -0 --separate-stderr payctl capture "$id"
	[ -z "$stderr" ]
	echo "$output" | jq -e --argjson id "$id" '.payment_id == $id and
		.status == "CAPTURE_REQUESTED" and .amount == 5000 and .capture == false'
	[ "$(events "$id")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
	sql "SELECT payload FROM outbox_event WHERE aggregate_id = $id AND event_type = 'PAYMENT_CAPTURE_REQUESTED'" |
		jq -e --argjson id "$id" '.paymentId == $id and .status == "CAPTURE_REQUESTED" and
			.amount == 5000 and (.approvalNumber | startswith("APP")) and
			(.transactionId | startswith("txn_")) and .eventType == "PAYMENT_CAPTURE_REQUESTED"'
}

@test "refuses a payment that is not AUTHORIZED, writing nothing" {
	local id
	id=$(authorized M1 5000)
	run -65 --separate-stderr payctl capture "$id"
	assert_one_line_stderr "payctl capture: payment '$id': status is CAPTURE_REQUESTED, not AUTHORIZED"
	echo "$output" | jq -e '.error == "INVALID_STATE" and .status == "CAPTURE_REQUESTED"'
	[ "$(events "$id")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
}

@test "an unknown payment is exit 65" {
	run -65 --separate-stderr payctl capture 999999999
	assert_one_line_stderr "payctl capture: payment '999999999': not found"
	echo "$output" | jq -e '.error == "NOT_FOUND" and .payment_id == 999999999'
}

@test "refuses a malformed id with exit 64" {
	local id
	for id in abc 0 -1 1.5 '' 99999999999999999999; do
		run -64 --separate-stderr payctl capture -- "$id"
		assert_one_line_stderr "payctl capture: '$id' is not a payment id *"
	done
	run -64 --separate-stderr payctl capture
	assert_one_line_stderr "*a payment id is required*"
	run -64 --separate-stderr payctl capture 1 2
	assert_one_line_stderr "*unexpected argument '2'*"
	run -64 --separate-stderr payctl capture --bogus 1
	assert_one_line_stderr "*unknown option '--bogus'*"
	run -64 --separate-stderr payctl capture -1
	assert_one_line_stderr "*unknown option '-1'*"
}

@test "of ten concurrent captures exactly one wins" {
	local id i rc
	id=$(authorized M1 777 --no-capture)
	for i in $(seq 10); do
		{
			rc=0
			payctl capture "$id" >"$BATS_TEST_TMPDIR/out.$i" 2>/dev/null || rc=$?
			echo $rc >"$BATS_TEST_TMPDIR/rc.$i"
		} &
	done
	wait
	codes=$(cat "$BATS_TEST_TMPDIR"/rc.* | sort | uniq -c | tr -s ' ' | sed 's/^ //' | tr '\n' ,)
	[ "$codes" = "1 0,9 65," ] || {
		echo "exit codes: $codes" >&2
		cat "$BATS_TEST_TMPDIR"/out.* >&2
		return 1
	}
	cat "$BATS_TEST_TMPDIR"/out.* | jq -e -s '
		(map(select(.error == "INVALID_STATE")) | length == 9) and
		(map(select(.status == "CAPTURE_REQUESTED" and .error == null)) | length == 1)'
	[ "$(events "$id")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
}

@test "a newer status is never overwritten" {
	local id
	id=$(authorized M1 800 --no-capture)
	sql "UPDATE payment SET status = 'AUTH_FAILED' WHERE payment_id = $id"
	run -65 payctl capture "$id"
	[ "$(sql "SELECT status FROM payment WHERE payment_id = $id")" = AUTH_FAILED ]
}

@test "the capture rate limit counts per merchant" {
	local a b c
	a=$(authorized RC1 10 --no-capture)
	b=$(authorized RC1 10 --no-capture)
	c=$(authorized RC2 10 --no-capture)
	export PAY_RATE_LIMIT_CAPTURE=1 PAY_RATE_LIMIT_WINDOW=1h
	run -0 payctl capture "$a"
	run -75 --separate-stderr payctl capture "$b"
	assert_one_line_stderr "payctl capture: capture rate limit of merchant 'RC1': 1 per 1h reached, retry in *s"
	echo "$output" | jq -e '.error == "RATE_LIMITED" and .retry_after_seconds >= 1'
	[ "$(sql "SELECT status FROM payment WHERE payment_id = $b")" = AUTHORIZED ]
	run -0 payctl capture "$c"
}
