#!/usr/bin/env bats
# payctl refund: full and partial refunds of captured payments, never more
# than was captured, each with its refund_request row and event.  The stream
# form (payctl refund -) runs the same refund per line.
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
	[ "$output" = "usage: payctl refund [-h] [-a amount] -r reason id
       payctl refund [-h] [-C n] -" ]
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

# many N MERCHANT: N payments of 1000 the settle worker has captured, made
# through the authorize stream; their ids one per line.
many() {
	local i key
	key=$(new_key m)
	for i in $(seq "$1"); do
		printf '{"merchantId":"%s","amount":1000,"idempotencyKey":"%s-%d"}\n' "$2" "$key" "$i"
	done | payctl authorize - | jq -s -r 'sort_by(.line) | .[] | .payment_id' |
		while read -r id; do
			sql "UPDATE payment SET status = 'CAPTURED', captured_amount = amount
				WHERE payment_id = $id"
			echo "$id"
		done
}

# result N: the result line of input line N.
result() {
	echo "$output" | jq -c --argjson n "$1" 'select(.line == $n)'
}

# req ID [AMOUNT] [REASON]: a request line.
req() {
	jq -cn --argjson id "$1" --arg a "${2:-}" --arg r "${3:-why}" \
		'{paymentId: $id, reason: $r} + (if $a == "" then {} else {amount: ($a | tonumber)} end)'
}

@test "the stream refunds every request once, each with its row and event" {
	local ids id rid
	mapfile -t ids < <(many 3 T1)
	{
		req "${ids[0]}" | jq -c '. + {requestId: "a"}'
		echo
		req "${ids[1]}" 400 "part of it" | jq -c '. + {requestId: 2}'
		req "${ids[2]}" "" "환불 요청"
	} >"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr payctl refund - <"$BATS_TEST_TMPDIR/in"
	[ -z "$stderr" ]
	[ "${#lines[@]}" -eq 3 ]
	result 1 | jq -e --argjson id "${ids[0]}" '.payment_id == $id and .request_id == "a" and
		.status == "REFUND_REQUESTED" and .refund_amount == 1000 and .refundable_amount == 0 and
		.captured_amount == 1000 and .reason == "why" and .merchant_id == "T1"'
	result 3 | jq -e --argjson id "${ids[1]}" '.payment_id == $id and .request_id == 2 and
		.refund_amount == 400 and .refundable_amount == 600 and .reason == "part of it"'
	result 4 | jq -e --argjson id "${ids[2]}" '.payment_id == $id and .reason == "환불 요청" and
		.refund_amount == 1000'
	for id in "${ids[@]}"; do
		[ "$(refunds "$id")" -eq 1 ]
		[ "$(sql "SELECT status FROM payment WHERE payment_id = $id")" = REFUND_REQUESTED ]
		[ "$(events "$id")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED,PAYMENT_REFUND_REQUESTED ]
	done
	rid=$(result 4 | jq .refund_id)
	[ "$(sql "SELECT payment_id, amount, currency, reason, status FROM refund_request WHERE id = $rid")" = \
		"$(printf '%s\t1000\tKRW\t환불 요청\tPENDING' "${ids[2]}")" ]
	sql "SELECT payload FROM outbox_event WHERE aggregate_id = ${ids[2]} AND event_type = 'PAYMENT_REFUND_REQUESTED'" |
		jq -e --argjson id "${ids[2]}" --argjson rid "$rid" '.paymentId == $id and .refundId == $rid and
			.status == "REFUND_REQUESTED" and .amount == 1000 and .currency == "KRW" and
			.merchantId == "T1" and .reason == "환불 요청" and (.transactionId | startswith("txn_")) and
			.eventType == "PAYMENT_REFUND_REQUESTED" and .schemaVersion == 1 and (.eventId | length == 36)'
}

@test "a malformed line gets BAD_REQUEST and the others go on" {
	local ids long
	mapfile -t ids < <(many 2 T2)
	long=$(printf 'x%.0s' $(seq 501))
	{
		req "${ids[0]}" 100
		echo 'not json'
		echo '{"reason":"no id","requestId":"r3"}'
		req "${ids[1]}" -5
		req "${ids[1]}" "" "$long"
		echo "{\"paymentId\":${ids[1]}}"
		req "${ids[1]}" "" "$(printf 'a\tb')"
		echo "{\"paymentId\":${ids[1]},\"reason\":7}"
		echo "{\"paymentId\":${ids[1]},\"reason\":\"x\",\"amount\":\"5\"}"
		req "${ids[1]}" 200 "$(printf '%.0s환' $(seq 500))"
	} >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr payctl refund - <"$BATS_TEST_TMPDIR/in"
	assert_one_line_stderr "payctl refund: 8 of 10 requests failed (8 bad)"
	[ "${#lines[@]}" -eq 10 ]
	result 1 | jq -e '.status == "REFUND_REQUESTED" and .refund_amount == 100'
	result 10 | jq -e '.status == "REFUND_REQUESTED" and .refund_amount == 200 and (.reason | length) == 500'
	result 2 | jq -e '.error == "BAD_REQUEST" and (.message | startswith("not a JSON object"))'
	result 3 | jq -e '.error == "BAD_REQUEST" and .request_id == "r3" and (.message | contains("paymentId"))'
	result 4 | jq -e '.error == "BAD_REQUEST" and (.message | startswith("'"'amount'"' must be between 1 and"))'
	result 5 | jq -e '.error == "BAD_REQUEST" and (.message | startswith("'"'reason'"' must be 1 to 500 characters"))'
	result 6 | jq -e '.error == "BAD_REQUEST" and .message == "'"'reason'"' is required"'
	result 7 | jq -e '.error == "BAD_REQUEST" and (.message | contains("control characters"))'
	result 8 | jq -e '.error == "BAD_REQUEST"'
	result 9 | jq -e '.error == "BAD_REQUEST" and (.message | contains("integer"))'
	[ "$(refunds "${ids[0]}")" -eq 1 ]
	[ "$(refunds "${ids[1]}")" -eq 1 ]
}

@test "the stream answers an unknown or unrefundable payment with its error" {
	local ids
	mapfile -t ids < <(many 2 T3)
	sql "UPDATE payment SET status = 'CAPTURE_REQUESTED' WHERE payment_id = ${ids[1]}"
	{
		req 999999999 | jq -c '. + {requestId: "x"}'
		req "${ids[0]}"
		req "${ids[1]}"
	} >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr payctl refund - <"$BATS_TEST_TMPDIR/in"
	assert_one_line_stderr "payctl refund: 2 of 3 requests failed (2 bad)"
	result 1 | jq -e '.error == "NOT_FOUND" and .payment_id == 999999999 and .request_id == "x"'
	result 2 | jq -e '.status == "REFUND_REQUESTED"'
	result 3 | jq -e '.error == "INVALID_STATE" and .status == "CAPTURE_REQUESTED"'
	[ "$(refunds "${ids[1]}")" -eq 0 ]
}

@test "the stream refuses an over-refund, counting earlier refunds" {
	local ids
	mapfile -t ids < <(many 3 T4)
	payctl refund -a 600 -r first "${ids[1]}" >/dev/null
	settled "${ids[1]}"
	{
		req "${ids[0]}" 1001
		req "${ids[1]}" 401
		req "${ids[1]}" 400
		req "${ids[2]}" 700
		req "${ids[2]}" 300
	} >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr payctl refund - <"$BATS_TEST_TMPDIR/in"
	assert_one_line_stderr "payctl refund: 3 of 5 requests failed (3 bad)"
	result 1 | jq -e '.error == "OVER_REFUND" and .refundable_amount == 1000 and .requested_amount == 1001'
	result 2 | jq -e '.error == "OVER_REFUND" and .refundable_amount == 400 and .requested_amount == 401'
	result 3 | jq -e '.status == "REFUND_REQUESTED" and .refund_amount == 400 and .refundable_amount == 0'
	# While the first refund of a payment is in progress a second is refused.
	result 4 | jq -e '.status == "REFUND_REQUESTED" and .refundable_amount == 300'
	result 5 | jq -e '.error == "INVALID_STATE" and .status == "REFUND_REQUESTED"'
	[ "$(refunds "${ids[0]}")" -eq 0 ]
	[ "$(sql "SELECT SUM(amount) FROM refund_request WHERE payment_id = ${ids[1]}")" -eq 1000 ]
	[ "$(sql "SELECT SUM(amount) FROM refund_request WHERE payment_id = ${ids[2]}")" -eq 700 ]
}

@test "a refund that fails leaves the others of its batch refunded" {
	local ids id
	mapfile -t ids < <(many 4 T6)
	# The event of ids[1] cannot be written: its batch fails as a whole.
	sql "DELIMITER //
		CREATE TRIGGER poison BEFORE INSERT ON outbox_event FOR EACH ROW
		IF NEW.aggregate_id = ${ids[1]} AND NEW.event_type = 'PAYMENT_REFUND_REQUESTED' THEN
			SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poisoned';
		END IF //"
	for id in "${ids[@]}"; do
		req "$id" 100
	done >"$BATS_TEST_TMPDIR/in"
	run -70 --separate-stderr payctl refund -C 1 - <"$BATS_TEST_TMPDIR/in"
	sql "DROP TRIGGER poison"
	assert_one_line_stderr "payctl refund: 1 of 4 requests failed (1 internal)"
	result 2 | jq -e '.error == "DATABASE_ERROR" and (.message | endswith(": poisoned"))'
	[ "$(refunds "${ids[1]}")" -eq 0 ]
	[ "$(sql "SELECT status FROM payment WHERE payment_id = ${ids[1]}")" = CAPTURED ]
	for id in "${ids[0]}" "${ids[2]}" "${ids[3]}"; do
		[ "$(refunds "$id")" -eq 1 ]
		[ "$(events "$id")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED,PAYMENT_REFUND_REQUESTED ]
	done
}

@test "concurrent streams never refund more than was captured" {
	local ids i rc
	mapfile -t ids < <(many 200 T5)
	for i in "${ids[@]}"; do
		req "$i" 700
	done >"$BATS_TEST_TMPDIR/in"
	for i in 1 2 3; do
		{
			rc=0
			payctl refund -C "$i" - <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/out.$i" 2>/dev/null || rc=$?
			echo $rc >"$BATS_TEST_TMPDIR/rc.$i"
		} &
	done
	wait
	cat "$BATS_TEST_TMPDIR"/out.* | jq -e -s '
		(map(select(.status == "REFUND_REQUESTED" and .error == null)) | length == 200) and
		(map(select(.error == "INVALID_STATE")) | length == 400) and length == 600'
	[ "$(sql "SELECT COUNT(*), COUNT(DISTINCT payment_id), SUM(amount) FROM refund_request
		WHERE payment_id BETWEEN ${ids[0]} AND ${ids[199]}")" = "$(printf '200\t200\t140000')" ]
	[ "$(sql "SELECT COUNT(*) FROM outbox_event WHERE event_type = 'PAYMENT_REFUND_REQUESTED'
		AND aggregate_id BETWEEN ${ids[0]} AND ${ids[199]}")" -eq 200 ]
}

@test "the stream counts the refund rate limit per merchant" {
	local ids i
	mapfile -t ids < <(many 3 TRL)
	export PAY_RATE_LIMIT_REFUND=2 PAY_RATE_LIMIT_WINDOW=1h
	for i in "${ids[@]}"; do
		req "$i"
	done >"$BATS_TEST_TMPDIR/in"
	run -75 --separate-stderr payctl refund -C 1 - <"$BATS_TEST_TMPDIR/in"
	assert_one_line_stderr "payctl refund: 1 of 3 requests failed (1 temporary)"
	result 3 | jq -e '.error == "RATE_LIMITED" and .action == "refund" and .limit == 2'
	[ "$(refunds "${ids[2]}")" -eq 0 ]
	[ "$(sql "SELECT status FROM payment WHERE payment_id = ${ids[2]}")" = CAPTURED ]
}

@test "the stream refuses misused flags with exit 64" {
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -r why -
	assert_one_line_stderr "*with '-': no -a or -r*"
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -a 5 -
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -C x -
	assert_one_line_stderr "payctl refund: option '--concurrency': 'x' is not a number from 1 to 64 *"
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund -C 2 -r why 1
	assert_one_line_stderr "*option '--concurrency' is for '-' only*"
	PAY_DB_PORT=1 run -64 --separate-stderr payctl refund - -
}

@test "the stream without a database exits 69 and prints nothing" {
	PAY_DB_PORT=1 run -69 --separate-stderr payctl refund - <<<'{"paymentId":1,"reason":"x"}'
	assert_one_line_stderr "payctl refund: connect to '*:1': *"
	[ -z "$output" ]
}
