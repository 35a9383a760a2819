#!/usr/bin/env bats
# payctl capture: AUTHORIZED -> CAPTURE_REQUESTED with its event, guarded so
# that of concurrent captures exactly one wins.
# The stream form (payctl capture -) runs the same capture per line.
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
	[ "$output" = "usage: payctl capture [-h] id
       payctl capture [-h] [-C n] -" ]
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

# many N MERCHANT: authorize N payments without capture through the stream,
# print their ids one per line.
many() {
	local i key
	key=$(new_key m)
	for i in $(seq "$1"); do
		printf '{"merchantId":"%s","amount":%d,"idempotencyKey":"%s-%d","capture":false}\n' \
			"$2" $((i * 10)) "$key" "$i"
	done | payctl authorize - | jq -s -r 'sort_by(.line) | .[] | .payment_id'
}

# result N: the result line of input line N.
result() {
	echo "$output" | jq -c --argjson n "$1" 'select(.line == $n)'
}

@test "the stream captures every request once, each with its event" {
	local ids id
	mapfile -t ids < <(many 3 S1)
	printf '%s\n' "{\"requestId\":\"a\",\"paymentId\":${ids[0]}}" '' \
		"{\"paymentId\":${ids[1]},\"requestId\":7,\"extra\":true}" \
		"{\"requestId\":{\"k\":[1]},\"paymentId\":${ids[2]}}" >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr payctl capture - <"$BATS_TEST_TMPDIR/in"
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 3 ]
	echo "$output" | jq -e -s 'all(.status == "CAPTURE_REQUESTED" and .error == null)'
	result 1 | jq -e --argjson id "${ids[0]}" '.payment_id == $id and .request_id == "a" and
		.amount == 10 and .capture == false and (.updated_at | type == "string")'
	result 3 | jq -e --argjson id "${ids[1]}" '.payment_id == $id and .request_id == 7'
	result 4 | jq -e --argjson id "${ids[2]}" '.payment_id == $id and .request_id == {"k":[1]}'
	for id in "${ids[@]}"; do
		[ "$(events "$id")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
		[ "$(sql "SELECT status FROM payment WHERE payment_id = $id")" = CAPTURE_REQUESTED ]
	done
	sql "SELECT payload FROM outbox_event WHERE aggregate_id = ${ids[2]} AND event_type = 'PAYMENT_CAPTURE_REQUESTED'" |
		jq -e --argjson id "${ids[2]}" '.paymentId == $id and .status == "CAPTURE_REQUESTED" and
			.amount == 30 and .merchantId == "S1" and (.approvalNumber | startswith("APP")) and
			(.eventId | length == 36) and .schemaVersion == 1 and (.occurredAt | endswith("Z"))'
}

@test "a malformed line gets BAD_REQUEST and the others go on" {
	local ids
	mapfile -t ids < <(many 2 S2)
	printf '%s\n' "{\"paymentId\":${ids[0]}}" 'not json' '{"requestId":"r3"}' \
		'{"paymentId":-1}' '{"paymentId":"12"}' '{"paymentId":1.5}' '[1]' \
		"{\"paymentId\":${ids[1]}}" >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr payctl capture - <"$BATS_TEST_TMPDIR/in"
	assert_one_line_stderr "payctl capture: 6 of 8 requests failed (6 bad)"
	[ "${#lines[@]}" -eq 8 ]
	echo "$output" | jq -e . >/dev/null
	result 1 | jq -e '.status == "CAPTURE_REQUESTED"'
	result 8 | jq -e '.status == "CAPTURE_REQUESTED"'
	result 2 | jq -e '.error == "BAD_REQUEST" and (.message | startswith("not a JSON object"))'
	result 3 | jq -e '.error == "BAD_REQUEST" and .message == "'"'paymentId' is required"'" and .request_id == "r3"'
	result 4 | jq -e '.error == "BAD_REQUEST" and (.message | contains("between 1 and"))'
	result 5 | jq -e '.error == "BAD_REQUEST" and (.message | contains("must be an integer"))'
	result 6 | jq -e '.error == "BAD_REQUEST"'
	result 7 | jq -e '.error == "BAD_REQUEST" and .message == "not a JSON object"'
	[ "$(events "${ids[1]}")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
}

@test "a line with a NUL byte is refused, not cut short" {
	local id
	id=$(many 1 S8)
	printf '{"paymentId":%s}\0junk\n' "$id" >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr payctl capture - <"$BATS_TEST_TMPDIR/in"
	result 1 | jq -e '.error == "BAD_REQUEST" and .message == "line holds a NUL byte"'
	[ "$(sql "SELECT status FROM payment WHERE payment_id = $id")" = AUTHORIZED ]
}

@test "the stream answers an unknown payment with NOT_FOUND" {
	local id
	id=$(many 1 S3)
	printf '{"paymentId":999999999,"requestId":"x"}\n{"paymentId":%s}\n' "$id" >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr payctl capture - <"$BATS_TEST_TMPDIR/in"
	assert_one_line_stderr "payctl capture: 1 of 2 requests failed (1 bad)"
	result 1 | jq -e '.error == "NOT_FOUND" and .payment_id == 999999999 and .request_id == "x" and
		.message == "payment '"'999999999'"': not found"'
	result 2 | jq -e '.status == "CAPTURE_REQUESTED"'
}

@test "of two captures of a payment in one stream the first wins" {
	local ids c id
	for c in 1 4; do
		mapfile -t ids < <(many 3 S4)
		printf '{"paymentId":%s}\n' "${ids[0]}" "${ids[1]}" "${ids[0]}" "${ids[2]}" "${ids[0]}" \
			>"$BATS_TEST_TMPDIR/in"
		run -65 --separate-stderr payctl capture -C "$c" - <"$BATS_TEST_TMPDIR/in"
		assert_one_line_stderr "payctl capture: 2 of 5 requests failed (2 bad)"
		result 1 | jq -e '.status == "CAPTURE_REQUESTED" and .error == null'
		result 3 | jq -e '.error == "INVALID_STATE" and .status == "CAPTURE_REQUESTED"'
		result 5 | jq -e '.error == "INVALID_STATE" and .status == "CAPTURE_REQUESTED"'
		result 2 | jq -e '.error == null'
		result 4 | jq -e '.error == null'
		for id in "${ids[@]}"; do
			[ "$(events "$id")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
		done
	done
}

@test "a capture that fails leaves the others of its batch captured" {
	local ids id
	mapfile -t ids < <(many 5 S7)
	# The event of ids[2] cannot be written: its batch fails as a whole.
	sql "DELIMITER //
		CREATE TRIGGER poison BEFORE INSERT ON outbox_event FOR EACH ROW
		IF NEW.aggregate_id = ${ids[2]} AND NEW.event_type = 'PAYMENT_CAPTURE_REQUESTED' THEN
			SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poisoned';
		END IF //"
	printf '{"paymentId":%s}\n' "${ids[@]}" >"$BATS_TEST_TMPDIR/in"
	run -70 --separate-stderr payctl capture -C 1 - <"$BATS_TEST_TMPDIR/in"
	sql "DROP TRIGGER poison"
	assert_one_line_stderr "payctl capture: 1 of 5 requests failed (1 internal)"
	result 3 | jq -e --arg id "${ids[2]}" '.error == "DATABASE_ERROR" and
		.message == "capture payment '"'"'\($id)'"'"': poisoned"'
	[ "$(sql "SELECT status FROM payment WHERE payment_id = ${ids[2]}")" = AUTHORIZED ]
	[ "$(events "${ids[2]}")" = PAYMENT_AUTHORIZED ]
	for id in "${ids[0]}" "${ids[1]}" "${ids[3]}" "${ids[4]}"; do
		[ "$(events "$id")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
	done
	echo "$output" | jq -e -s 'map(select(.status == "CAPTURE_REQUESTED")) | length == 4'
}

@test "two streams capturing the same payments capture each once" {
	local ids i rc
	mapfile -t ids < <(many 300 S5)
	printf '{"paymentId":%s}\n' "${ids[@]}" >"$BATS_TEST_TMPDIR/in"
	for i in 1 2 3; do
		{
			rc=0
			payctl capture -C "$i" - <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/out.$i" 2>/dev/null || rc=$?
			echo $rc >"$BATS_TEST_TMPDIR/rc.$i"
		} &
	done
	wait
	cat "$BATS_TEST_TMPDIR"/out.* | jq -e -s '
		(map(select(.error == null and .status == "CAPTURE_REQUESTED")) | length == 300) and
		(map(select(.error == "INVALID_STATE")) | length == 600) and length == 900'
	[ "$(sql "SELECT COUNT(*), COUNT(DISTINCT aggregate_id) FROM outbox_event
		WHERE event_type = 'PAYMENT_CAPTURE_REQUESTED' AND aggregate_id BETWEEN ${ids[0]} AND ${ids[299]}")" = "$(printf '300\t300')" ]
	[ "$(rows "payment_id BETWEEN ${ids[0]} AND ${ids[299]} AND status = 'CAPTURE_REQUESTED'")" -eq 300 ]
}

@test "the stream counts the capture rate limit per merchant" {
	local ids other
	mapfile -t ids < <(many 3 SRL)
	other=$(many 1 SRL2)
	export PAY_RATE_LIMIT_CAPTURE=2 PAY_RATE_LIMIT_WINDOW=1h
	printf '{"paymentId":%s}\n' "${ids[@]}" "$other" >"$BATS_TEST_TMPDIR/in"
	run -75 --separate-stderr payctl capture -C 1 - <"$BATS_TEST_TMPDIR/in"
	assert_one_line_stderr "payctl capture: 1 of 4 requests failed (1 temporary)"
	result 1 | jq -e '.status == "CAPTURE_REQUESTED"'
	result 2 | jq -e '.status == "CAPTURE_REQUESTED"'
	result 3 | jq -e '.error == "RATE_LIMITED" and .action == "capture" and .merchant_id == "SRL" and
		.limit == 2 and .retry_after_seconds >= 1'
	result 4 | jq -e '.status == "CAPTURE_REQUESTED"'
	[ "$(sql "SELECT status FROM payment WHERE payment_id = ${ids[2]}")" = AUTHORIZED ]
}

@test "the stream refuses misused flags with exit 64" {
	PAY_DB_PORT=1 run -64 --separate-stderr payctl capture -C 0 -
	assert_one_line_stderr "payctl capture: option '--concurrency': '0' is not a number from 1 to 64 *"
	PAY_DB_PORT=1 run -64 --separate-stderr payctl capture --concurrency 65 -
	PAY_DB_PORT=1 run -64 --separate-stderr payctl capture -C 2 1
	assert_one_line_stderr "*option '--concurrency' is for '-' only*"
	PAY_DB_PORT=1 run -64 --separate-stderr payctl capture - 1
	assert_one_line_stderr "*unexpected argument '1'*"
}

@test "the stream without a database exits 69 and prints nothing" {
	PAY_DB_PORT=1 run -69 --separate-stderr payctl capture - <<<'{"paymentId":1}'
	assert_one_line_stderr "payctl capture: connect to '*:1': *"
	[ -z "$output" ]
}

@test "an empty stream is a success" {
	run -0 --separate-stderr payctl capture - </dev/null
	[ -z "$output" ] && [ -z "$stderr" ]
}

@test "a stream whose output cannot be written exits 74" {
	local ids
	mapfile -t ids < <(many 2 S6)
	printf '{"paymentId":%s}\n' "${ids[@]}" >"$BATS_TEST_TMPDIR/in"
	run -74 --separate-stderr bash -c 'payctl capture - >/dev/full' <"$BATS_TEST_TMPDIR/in"
	assert_one_line_stderr "payctl capture: write to standard output: No space left on device"
}
