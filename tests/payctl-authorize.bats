#!/usr/bin/env bats
# payctl authorize: validation, the gateway call, idempotency under races,
# declines and gateway faults, rate limits; then stream mode (-).
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

teardown() {
	pg_restore
}

# refused ARGS...: a usage error, exit 64, one line, nothing written.
refused() {
	local before
	before=$(rows "1 = 1")
	run -64 --separate-stderr payctl authorize "$@"
	assert_one_line_stderr "payctl authorize: *see 'payctl authorize -h')"
	[ -z "$output" ]
	[ "$(rows "1 = 1")" -eq "$before" ]
}

@test "-h prints the usage without a database" {
	PAY_DB_PORT=1 run -0 payctl authorize -h
	[[ ${lines[0]} == "usage: payctl authorize [-eh] -m merchant -a amount"* ]]
	[[ ${lines[1]} == *"payctl authorize [-eh] [-C n] -" ]]
}

@test "refuses missing required flags" {
	refused -a 100 -k k1
	[[ $stderr == *"option '--merchant' is required"* ]]
	refused -m M1 -k k1
	[[ $stderr == *"option '--amount' is required"* ]]
	refused -m M1 -a 100
	[[ $stderr == *"option '--idempotency-key' is required"* ]]
	refused -m M1 -a 100 --idempotency-key
	[[ $stderr == *"option '--idempotency-key' needs a value"* ]]
}

@test "refuses a bad merchant: empty, too long, with a space" {
	refused -m '' -a 100 -k k1
	[[ $stderr == *"option '--merchant': '' is not 1 to 32 printable"* ]]
	refused -m "$(printf 'M%.0s' $(seq 33))" -a 100 -k k1
	refused -m 'M 1' -a 100 -k k1
	run -0 payctl authorize -m "$(printf 'M%.0s' $(seq 32))" -a 100 -k "$(new_key max)"
}

@test "refuses a bad amount: zero, negative, not a number, over 10^15, overflow" {
	local a
	for a in 0 -5 abc '' 1.5 12abc ' 7' +7 1000000000000001 99999999999999999999999; do
		refused -m M1 -a "$a" -k k1
		[[ $stderr == *"option '--amount': '$a' is not a whole number from 1 to 10^15"* ]]
	done
	run -0 payctl authorize -m M1 -a 1000000000000000 -k "$(new_key max)"
	echo "$output" | jq -e '.amount == 1000000000000000'
}

@test "refuses an unknown currency" {
	local c
	for c in XYZ krw '' KRWX US XXX; do
		refused -m M1 -a 100 -c "$c" -k k1
		[[ $stderr == *"option '--currency': '$c' is not an ISO 4217 currency code"* ]]
	done
}

@test "refuses a bad idempotency key: empty, too long, with a space" {
	refused -m M1 -a 100 -k ''
	refused -m M1 -a 100 -k "$(printf 'k%.0s' $(seq 65))"
	[[ $stderr == *"option '--idempotency-key': 'kkk"*"' is not 1 to 64 printable"* ]]
	refused -m M1 -a 100 -k 'a key'
}

@test "refuses unknown options, extra arguments and mixed modes" {
	refused -m M1 -a 100 -k k1 --bogus
	[[ $stderr == *"unknown option '--bogus'"* ]]
	refused -x
	[[ $stderr == *"unknown option '-x'"* ]]
	refused -m M1 -a 100 -k k1 extra
	[[ $stderr == *"unexpected argument 'extra'"* ]]
	refused -m M1 -a 100 -k k1 --concurrency 4
	[[ $stderr == *"'--concurrency' is for '-' only"* ]]
	refused -m M1 -
	[[ $stderr == *"requests come from standard input with '-'"* ]]
	refused -C 0 -
	refused -C 4097 -
}

@test "authorizes, requests the capture and writes both events" {
	local k id
	k=$(new_key a)
	run -0 --separate-stderr payctl authorize -m M1 -a 50000 -k "$k"
	[ -z "$stderr" ]
	echo "$output" | jq -e --arg k "$k" '
		.status == "CAPTURE_REQUESTED" and .merchant_id == "M1" and
		.amount == 50000 and .currency == "KRW" and .idempotency_key == $k and
		(.approval_number | test("^APP[0-9A-F]{8}$")) and
		(.transaction_id | test("^txn_[0-9a-f]{8}$")) and
		(.created_at | test("^[0-9-]{10}T[0-9:.]{15}Z$")) and
		.replayed == false and (.payment_id | type == "number")'
	id=$(echo "$output" | jq .payment_id)
	[ "$(sql "SELECT status, lease_until IS NULL, claim_token IS NULL FROM payment WHERE payment_id = $id")" = "$(printf 'CAPTURE_REQUESTED\t1\t1')" ]
	[ "$(events "$id")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
	sql "SELECT payload FROM outbox_event WHERE aggregate_id = $id ORDER BY event_id" |
		jq -e -s --argjson id "$id" '
			.[0].status == "AUTHORIZED" and .[1].status == "CAPTURE_REQUESTED" and
			all(.paymentId == $id and .merchantId == "M1" and .amount == 50000 and
			    .currency == "KRW" and (.approvalNumber | startswith("APP")) and
			    (.transactionId | startswith("txn_")) and .schemaVersion == 1 and
			    (.eventId | length == 36) and (.occurredAt | endswith("Z")))'
	[ "$(pg_calls "$k")" -eq 1 ]
}

@test "--no-capture stops at AUTHORIZED with one event" {
	run -0 payctl authorize -m M1 -a 700 -c USD -k "$(new_key a)" --no-capture
	echo "$output" | jq -e '.status == "AUTHORIZED" and .currency == "USD"'
	[ "$(events "$(echo "$output" | jq .payment_id)")" = PAYMENT_AUTHORIZED ]
}

@test "the same request again replays the result without calling the gateway" {
	local k first
	k=$(new_key a)
	first=$(payctl authorize -m M1 -a 1200 -k "$k")
	run -0 --separate-stderr payctl authorize -m M1 -a 1200 -k "$k"
	[ -z "$stderr" ]
	echo "$output" | jq -e '.replayed == true'
	[ "$(echo "$output" | jq -c 'del(.replayed)')" = "$(echo "$first" | jq -c 'del(.replayed)')" ]
	[ "$(pg_calls "$k")" -eq 1 ]
	[ "$(rows "idempotency_key = '$k'")" -eq 1 ]
	[ "$(events "$(echo "$first" | jq .payment_id)")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
}

@test "the same key with other parameters is an idempotency conflict" {
	local k id
	k=$(new_key a)
	id=$(payctl authorize -m M1 -a 1200 -k "$k" | jq .payment_id)
	run -65 --separate-stderr payctl authorize -m M1 -a 1300 -k "$k"
	assert_one_line_stderr "payctl authorize: idempotency key '$k': already used by payment $id for 1200 KRW"
	echo "$output" | jq -e --argjson id "$id" '.error == "IDEMPOTENCY_CONFLICT" and .payment_id == $id and .amount == 1200'
	run -65 --separate-stderr payctl authorize -m M1 -a 1200 -c USD -k "$k"
	run -65 --separate-stderr payctl authorize -m M1 -a 1200 -k "$k" --no-capture
	[ "$(pg_calls "$k")" -eq 1 ]
	[ "$(rows "idempotency_key = '$k'")" -eq 1 ]
}

@test "keys belong to their merchant" {
	local k
	k=$(new_key a)
	payctl authorize -m M1 -a 100 -k "$k" >/dev/null
	run -0 payctl authorize -m M2 -a 999 -k "$k"
	echo "$output" | jq -e '.replayed == false and .merchant_id == "M2"'
	[ "$(rows "idempotency_key = '$k'")" -eq 2 ]
}

@test "twenty processes racing with one key make one payment and one gateway call" {
	local k i
	k=$(new_key race)
	# A slow gateway keeps the winner's claim PENDING while the others arrive.
	pg_control '{"endpoint":"authorize","delayMs":[300,300]}' >/dev/null
	for i in $(seq 20); do
		payctl authorize -m M1 -a 4242 -k "$k" >"$BATS_TEST_TMPDIR/out.$i" 2>"$BATS_TEST_TMPDIR/err.$i" &
	done
	wait
	cat "$BATS_TEST_TMPDIR"/err.*
	[ -z "$(cat "$BATS_TEST_TMPDIR"/err.*)" ]
	cat "$BATS_TEST_TMPDIR"/out.* | jq -e -s '
		length == 20 and (map(.payment_id) | unique | length == 1) and
		(map(select(.replayed == false)) | length == 1) and
		all(.status == "CAPTURE_REQUESTED")'
	[ "$(rows "idempotency_key = '$k'")" -eq 1 ]
	[ "$(pg_calls "$k")" -eq 1 ]
	[ "$(sql "SELECT COUNT(*) FROM outbox_event e JOIN payment p ON p.payment_id = e.aggregate_id WHERE p.idempotency_key = '$k'")" -eq 2 ]
}

@test "a decline is recorded, exit 0, and replayed; -e makes it exit 1" {
	local k id
	k=$(new_key decline)
	pg_control '{"endpoint":"authorize","fault":"fail"}' >/dev/null
	run -0 --separate-stderr payctl authorize -m M1 -a 800 -k "$k"
	[ -z "$stderr" ]
	echo "$output" | jq -e '.status == "AUTH_FAILED" and .response_code == "PG_TIMEOUT" and
		(.response_message | length > 0) and .approval_number == null and .replayed == false'
	id=$(echo "$output" | jq .payment_id)
	[ "$(sql "SELECT status, pg_response_code FROM payment WHERE payment_id = $id")" = "$(printf 'AUTH_FAILED\tPG_TIMEOUT')" ]
	[ "$(events "$id")" = "" ]
	pg_restore
	run -0 payctl authorize -m M1 -a 800 -k "$k"
	echo "$output" | jq -e '.status == "AUTH_FAILED" and .replayed == true'
	run -1 payctl authorize -e -m M1 -a 800 -k "$k"
	echo "$output" | jq -e '.status == "AUTH_FAILED"'
	[ "$(pg_calls "$k")" -eq 1 ]
	run -0 payctl authorize -e -m M1 -a 800 -k "$(new_key ok)"
}

# gateway_fails CODE: authorize once with the gateway as set; it fails with
# CODE, a GATEWAY_ERROR object and one line, and leaves nothing behind.
gateway_fails() {
	local k
	k=$(new_key fault)
	run "-$1" --separate-stderr payctl authorize -m M1 -a 900 -k "$k"
	assert_one_line_stderr "payctl authorize: gateway authorization of key '$k': *"
	echo "$output" | jq -e --arg k "$k" '.error == "GATEWAY_ERROR" and .idempotency_key == $k'
	[ "$(rows "idempotency_key = '$k'")" -eq 0 ]
	[ "$(rows "status = 'PENDING' AND merchant_id <> 'HELD'")" -eq 0 ]
	FAILED_KEY=$k
}

@test "a gateway answering 500 is exit 75 and nothing is recorded" {
	pg_control '{"endpoint":"authorize","fault":"http500"}' >/dev/null
	gateway_fails 75
	[[ $stderr == *"answered HTTP 500" ]]
	# The claim was released: a retry with the key goes through.
	pg_restore
	run -0 payctl authorize -m M1 -a 900 -k "$FAILED_KEY"
	echo "$output" | jq -e '.status == "CAPTURE_REQUESTED" and .replayed == false'
}

@test "a gateway answering garbage is exit 69" {
	pg_control '{"endpoint":"authorize","fault":"garbage"}' >/dev/null
	gateway_fails 69
	[[ $stderr == *"not JSON"* ]]
}

@test "a gateway closing the connection is exit 69" {
	pg_control '{"endpoint":"authorize","fault":"close"}' >/dev/null
	gateway_fails 69
}

@test "a hanging gateway times out: exit 75" {
	pg_control '{"endpoint":"authorize","fault":"hang"}' >/dev/null
	PAY_PG_TIMEOUT=500ms gateway_fails 75
	[[ $stderr == *"Timeout"* || $stderr == *"timed out"* ]]
}

@test "an unreachable gateway is exit 69" {
	PAY_PG_URL=http://127.0.0.1:1 gateway_fails 69
}

@test "libcurl is loaded to call the gateway only: without it, exit 69 and nothing written" {
	mkdir "$BATS_TEST_TMPDIR/lib"
	echo 'not a library' >"$BATS_TEST_TMPDIR/lib/libcurl.so.4"
	k=$(new_key nocurl)
	LD_LIBRARY_PATH=$BATS_TEST_TMPDIR/lib run -69 --separate-stderr \
		payctl authorize -m M1 -a 900 -k "$k"
	assert_one_line_stderr "payctl authorize: cannot load 'libcurl.so.4': *"
	[ -z "$output" ]
	[ "$(rows "idempotency_key = '$k'")" -eq 0 ]
	# What does not call the gateway does not need it.
	run -0 payctl authorize -m M1 -a 900 -k "$k"
	id=$(echo "$output" | jq -r .payment_id)
	LD_LIBRARY_PATH=$BATS_TEST_TMPDIR/lib run -0 payctl show "$id"
	echo "$output" | jq -e --arg k "$k" '.idempotency_key == $k'
}

@test "an unreachable database is exit 69 with one line and no output" {
	PAY_DB_PORT=1 run -69 --separate-stderr payctl authorize -m M1 -a 1 -k k1
	assert_one_line_stderr "payctl authorize: connect to '127.0.0.1:1': *"
	[ -z "$output" ]
}

@test "an expired claim is taken over and authorized with the same key" {
	local k id
	k=$(new_key lease)
	sql "INSERT INTO payment (merchant_id, idempotency_key, amount, currency,
		status, lease_until, claim_token) VALUES ('M1', '$k', 300, 'KRW',
		'PENDING', NOW(6) - INTERVAL 1 SECOND, 'dead-process')"
	id=$(sql "SELECT payment_id FROM payment WHERE idempotency_key = '$k'")
	run -0 payctl authorize -m M1 -a 300 -k "$k"
	echo "$output" | jq -e --argjson id "$id" '.payment_id == $id and
		.status == "CAPTURE_REQUESTED" and .replayed == false'
	[ "$(events "$id")" = PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
	[ "$(pg_calls "$k")" -eq 1 ]
}

@test "a claim in progress is waited for, then taken over when its lease ends" {
	local k
	k=$(new_key wait)
	sql "INSERT INTO payment (merchant_id, idempotency_key, amount, currency,
		status, lease_until, claim_token) VALUES ('M1', '$k', 300, 'KRW',
		'PENDING', NOW(6) + INTERVAL 1 SECOND, 'slow-process')"
	run -0 payctl authorize -m M1 -a 300 -k "$k"
	echo "$output" | jq -e '.status == "CAPTURE_REQUESTED"'
	[ "$(rows "idempotency_key = '$k'")" -eq 1 ]
}

@test "a claim in progress with other parameters is a conflict at once" {
	local k
	k=$(new_key wait)
	# HELD: a claim that stays PENDING for the rest of the file.
	sql "INSERT INTO payment (merchant_id, idempotency_key, amount, currency,
		status, lease_until, claim_token) VALUES ('HELD', '$k', 300, 'KRW',
		'PENDING', NOW(6) + INTERVAL 1 HOUR, 'slow-process')"
	run -65 --separate-stderr payctl authorize -m HELD -a 301 -k "$k"
	echo "$output" | jq -e '.error == "IDEMPOTENCY_CONFLICT"'
}

@test "the rate limit refuses new keys over the limit with exit 75, replays pass" {
	local k1 k2 k3
	k1=$(new_key rl) k2=$(new_key rl) k3=$(new_key rl)
	export PAY_RATE_LIMIT_AUTHORIZE=2 PAY_RATE_LIMIT_WINDOW=1h
	payctl authorize -m RL1 -a 100 -k "$k1" >/dev/null
	payctl authorize -m RL1 -a 100 -k "$k2" >/dev/null
	run -75 --separate-stderr payctl authorize -m RL1 -a 100 -k "$k3"
	assert_one_line_stderr "payctl authorize: authorize rate limit of merchant 'RL1': 2 per 1h reached, retry in *s"
	echo "$output" | jq -e '.error == "RATE_LIMITED" and .limit == 2 and
		.retry_after_seconds >= 1 and .retry_after_seconds <= 3600'
	[ "$(rows "idempotency_key = '$k3'")" -eq 0 ]
	[ "$(pg_calls "$k3")" -eq 0 ]
	# A replay does not count, and other merchants have their own limit.
	run -0 payctl authorize -m RL1 -a 100 -k "$k1"
	echo "$output" | jq -e '.replayed == true'
	run -0 payctl authorize -m RL2 -a 100 -k "$k3"
}

@test "the rate limit is off by default" {
	local i
	for i in 1 2 3 4 5; do
		payctl authorize -m RL3 -a 100 -k "$(new_key off)" >/dev/null
	done
	[ "$(rows "merchant_id = 'RL3'")" -eq 5 ]
	[ "$(sql "SELECT COUNT(*) FROM rate_limit")" -eq "$(sql "SELECT COUNT(*) FROM rate_limit WHERE merchant_id LIKE 'RL_' AND merchant_id <> 'RL3'")" ]
}

@test "a bad rate limit setting is exit 78" {
	PAY_RATE_LIMIT_AUTHORIZE=-1 run -78 --separate-stderr payctl authorize -m M1 -a 1 -k "$(new_key x)"
	assert_one_line_stderr "*'PAY_RATE_LIMIT_AUTHORIZE': '-1' is not an integer"
}

# Stream mode.

# req MERCHANT AMOUNT KEY [EXTRA-JSON]: one request line.
req() {
	jq -cn --arg m "$1" --argjson a "$2" --arg k "$3" --argjson x "${4:-{\}}" \
		'{merchantId: $m, amount: $a, idempotencyKey: $k} + $x'
}

@test "stream: a malformed line gets an error line and the others go on" {
	local k1 k2 k3
	k1=$(new_key s) k2=$(new_key s) k3=$(new_key s)
	{
		req M1 100 "$k1"
		echo 'not json'
		req M1 200 "$k2" '{"requestId":"r-2"}'
		req M1 0 "$(new_key bad)" '{"requestId":7}'
		echo
		echo '{"merchantId":"M1","amount":"12","idempotencyKey":"x"}'
		echo '[1,2]'
		req M1 300 "$k3" '{"currency":"USD","capture":false,"requestId":9}'
		req M1 300 "$(new_key bad)" '{"currency":"XYZ"}'
		req 'M 1' 300 "$(new_key bad)"
	} >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr payctl authorize - <"$BATS_TEST_TMPDIR/in"
	assert_one_line_stderr "payctl authorize: 6 of 9 requests failed (6 bad)"
	echo "$output" | jq -e -s '
		length == 9 and (map(.line) | sort == [1,2,3,4,6,7,8,9,10]) and
		(map(select(.error == "BAD_REQUEST")) | map(.line) | sort == [2,4,6,7,9,10]) and
		(map(select(.line == 4))[0] | .request_id == 7 and (.message | contains("amount"))) and
		(map(select(.line == 3))[0] | .request_id == "r-2" and .status == "CAPTURE_REQUESTED") and
		(map(select(.line == 8))[0] | .request_id == 9 and .status == "AUTHORIZED" and .currency == "USD") and
		(map(select(.line == 9))[0].message | contains("currency"))'
	[ "$(rows "idempotency_key IN ('$k1', '$k2', '$k3')")" -eq 3 ]
	[ "$(rows "status = 'PENDING' AND merchant_id <> 'HELD'")" -eq 0 ]
}

@test "stream: a line over 64 KiB is refused and the next one goes on" {
	local k
	k=$(new_key s)
	{
		printf '{"merchantId":"M1","pad":"%070000d"}\n' 0
		req M1 100 "$k"
	} >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr payctl authorize - <"$BATS_TEST_TMPDIR/in"
	echo "$output" | jq -e -s '
		(map(select(.line == 1))[0] | .error == "BAD_REQUEST" and (.message | contains("65536"))) and
		(map(select(.line == 2))[0].status == "CAPTURE_REQUESTED")'
}

@test "stream: a key twice, or already used, is authorized once and replayed" {
	local k1 k2 old
	k1=$(new_key s) k2=$(new_key s) old=$(new_key s)
	payctl authorize -m M1 -a 500 -k "$old" >/dev/null
	{
		req M1 100 "$k1"
		req M1 100 "$k1"
		req M1 200 "$k2"
		req M1 500 "$old"
		req M1 100 "$k1"
		req M1 999 "$k1"
	} >"$BATS_TEST_TMPDIR/in"
	run -65 --separate-stderr payctl authorize - <"$BATS_TEST_TMPDIR/in"
	echo "$output" | jq -e -s --arg k1 "$k1" --arg old "$old" '
		length == 6 and
		(map(select(.idempotency_key == $k1 and .error == null)) |
		    length == 3 and (map(.payment_id) | unique | length == 1) and
		    (map(select(.replayed == false)) | length == 1)) and
		(map(select(.idempotency_key == $old))[0].replayed == true) and
		(map(select(.line == 6))[0].error == "IDEMPOTENCY_CONFLICT")'
	[ "$(pg_calls "$k1")" -eq 1 ]
	[ "$(pg_calls "$old")" -eq 1 ]
	[ "$(rows "idempotency_key IN ('$k1', '$k2')")" -eq 2 ]
}

@test "keys are case-sensitive, in a stream and alone" {
	local k
	k=$(new_key case)
	{
		req M1 1 "$k"
		req M1 2 "${k^^}"
	} >"$BATS_TEST_TMPDIR/in"
	run -0 payctl authorize - <"$BATS_TEST_TMPDIR/in"
	echo "$output" | jq -e -s 'length == 2 and all(.replayed == false) and
		(map(.payment_id) | unique | length == 2)'
	run -0 payctl authorize -m M1 -a 3 -k "${k,,}-x"
	run -0 payctl authorize -m M1 -a 4 -k "${k^^}-X"
	[ "$(rows "idempotency_key IN ('${k,,}-x', '${k^^}-X')")" -eq 2 ]
}

@test "stream: hundreds of requests at a small concurrency all finish" {
	local p
	p=$(new_key many)
	seq 300 | jq -c --arg p "$p" \
		'{merchantId: "M\(. % 7)", amount: (1000 + .), idempotencyKey: "\($p)-\(.)", requestId: .}' \
		>"$BATS_TEST_TMPDIR/in"
	run -0 --separate-stderr payctl authorize --concurrency 8 - <"$BATS_TEST_TMPDIR/in"
	[ -z "$stderr" ]
	echo "$output" | jq -e -s '
		length == 300 and all(.status == "CAPTURE_REQUESTED" and .line == .request_id) and
		(map(.payment_id) | unique | length == 300)'
	[ "$(rows "idempotency_key LIKE '$p-%'")" -eq 300 ]
	[ "$(sql "SELECT COUNT(*) FROM outbox_event e JOIN payment p ON p.payment_id = e.aggregate_id WHERE p.idempotency_key LIKE '$p-%'")" -eq 600 ]
	sql "SELECT payload FROM outbox_event e JOIN payment p ON p.payment_id = e.aggregate_id
		WHERE p.idempotency_key = '$p-7' ORDER BY event_id" |
		jq -e -s '.[0].eventType == "PAYMENT_AUTHORIZED" and .[0].status == "AUTHORIZED" and
			.[1].eventType == "PAYMENT_CAPTURE_REQUESTED" and .[0].amount == 1007 and
			.[0].merchantId == "M0" and .[0].schemaVersion == 1 and (.[0].eventId | length == 36)'
}

@test "stream: the events are written as payctl authorize writes them alone" {
	local k p one many m=M\"1\\
	k=$(new_key alone)
	p=$(new_key stream)
	run -0 payctl authorize -m "$m" -a 4200 -k "$k"
	one=$(echo "$output" | jq .payment_id)
	jq -cn --arg m "$m" --arg p "$p" '{merchantId: $m, amount: 4200, idempotencyKey: $p}' >"$BATS_TEST_TMPDIR/in"
	run -0 payctl authorize - <"$BATS_TEST_TMPDIR/in"
	many=$(echo "$output" | jq .payment_id)
	# payloads SQL: sql's output with the backslashes its batch mode doubles
	# made single again (a payload holds no tab or newline).
	payloads() {
		sql "$1" | sed 's/\\\\/\\/g'
	}
	# shape ID: each event's type and payload, the fields in their order,
	# less what differs between two payments.
	shape() {
		payloads "SELECT event_key, event_type, payload FROM outbox_event WHERE aggregate_id = $1 ORDER BY event_id" |
			while IFS=$'\t' read -r key type payload; do
				echo "$payload" | jq -ce --arg key "$key" --arg type "$type" --argjson id "$1" '
					select(.eventId == $key and .eventType == $type and .paymentId == $id) |
					[keys_unsorted, del(.paymentId, .eventId, .occurredAt, .approvalNumber, .transactionId)]'
			done
	}
	[ "$(shape "$one" | wc -l)" -eq 2 ]
	[ "$(shape "$one")" = "$(shape "$many")" ]
	# The same text as jansson writes it: compact, in that order.
	[ "$(payloads "SELECT payload FROM outbox_event WHERE aggregate_id = $many" | jq -c .)" = \
		"$(payloads "SELECT payload FROM outbox_event WHERE aggregate_id = $many")" ]
}

@test "stream: declines are results; -e makes the run exit 1" {
	pg_control '{"endpoint":"authorize","fault":"fail"}' >/dev/null
	req M1 100 "$(new_key d)" >"$BATS_TEST_TMPDIR/in"
	req M1 100 "$(new_key d)" >>"$BATS_TEST_TMPDIR/in"
	run -0 payctl authorize - <"$BATS_TEST_TMPDIR/in"
	echo "$output" | jq -e -s 'length == 2 and all(.status == "AUTH_FAILED")'
	run -1 payctl authorize -e - <"$BATS_TEST_TMPDIR/in"
	echo "$output" | jq -e -s 'length == 2 and all(.replayed)'
}

@test "stream: gateway errors are error lines, exit 75, nothing recorded" {
	local k
	k=$(new_key f)
	pg_control '{"endpoint":"authorize","fault":"http500"}' >/dev/null
	{
		req M1 100 "$k"
		req M1 100 "$(new_key f)"
	} >"$BATS_TEST_TMPDIR/in"
	run -75 --separate-stderr payctl authorize - <"$BATS_TEST_TMPDIR/in"
	assert_one_line_stderr "payctl authorize: 2 of 2 requests failed (2 temporary)"
	echo "$output" | jq -e -s 'length == 2 and all(.error == "GATEWAY_ERROR")'
	[ "$(rows "idempotency_key = '$k'")" -eq 0 ]
	[ "$(rows "status = 'PENDING' AND merchant_id <> 'HELD'")" -eq 0 ]
	PAY_PG_URL=http://127.0.0.1:1 run -69 --separate-stderr payctl authorize - <"$BATS_TEST_TMPDIR/in"
	[ "$(rows "idempotency_key = '$k'")" -eq 0 ]
}

@test "stream: an expired claim is taken over" {
	local k
	k=$(new_key lease)
	sql "INSERT INTO payment (merchant_id, idempotency_key, amount, currency,
		status, lease_until, claim_token) VALUES ('M1', '$k', 300, 'KRW',
		'PENDING', NOW(6) - INTERVAL 1 SECOND, 'dead-process')"
	req M1 300 "$k" >"$BATS_TEST_TMPDIR/in"
	run -0 payctl authorize - <"$BATS_TEST_TMPDIR/in"
	echo "$output" | jq -e '.status == "CAPTURE_REQUESTED" and .line == 1'
}

@test "stream: the rate limit refuses new keys over it" {
	local p
	p=$(new_key rl)
	seq 5 | jq -c --arg p "$p" '{merchantId: "RLS", amount: 10, idempotencyKey: "\($p)-\(.)"}' \
		>"$BATS_TEST_TMPDIR/in"
	PAY_RATE_LIMIT_AUTHORIZE=3 PAY_RATE_LIMIT_WINDOW=1h \
		run -75 --separate-stderr payctl authorize - <"$BATS_TEST_TMPDIR/in"
	assert_one_line_stderr "payctl authorize: 2 of 5 requests failed (2 temporary)"
	echo "$output" | jq -e -s '
		(map(select(.status == "CAPTURE_REQUESTED")) | length == 3) and
		(map(select(.error == "RATE_LIMITED")) | length == 2 and
		    all(.retry_after_seconds >= 1))'
	[ "$(rows "idempotency_key LIKE '$p-%'")" -eq 3 ]
}

@test "stream: empty input is a quiet success; no database is exit 69" {
	run -0 --separate-stderr payctl authorize - </dev/null
	[ -z "$output" ] && [ -z "$stderr" ]
	PAY_DB_PORT=1 run -69 --separate-stderr payctl authorize - </dev/null
	assert_one_line_stderr "payctl authorize: connect to '127.0.0.1:1': *"
}

# kill_connections: end every connection of this file's database but the
# caller's own, as a database restart would, from the server's side.
kill_connections() {
	local id
	for id in $(sql "SELECT id FROM information_schema.processlist
		WHERE db = '$PAY_DB_NAME' AND id <> CONNECTION_ID()"); do
		sql "KILL CONNECTION $id" 2>/dev/null || true
	done
}

# called N PREFIX: the gateway got the keys PREFIX-1..N, once each.
called() {
	local i
	for ((i = 1; i <= $1; i++)); do
		[ "$(pg_calls "$2-$i")" = 1 ] || return 1
	done
}

@test "the gateway's answer is recorded across a lost database connection" {
	local k pid rc=0
	k=$(new_key lost)
	pg_control '{"endpoint":"authorize","delayMs":[1500,1500]}' >/dev/null
	payctl authorize -m M1 -a 300 -k "$k-1" >"$BATS_TEST_TMPDIR/out" \
		2>"$BATS_TEST_TMPDIR/err" 3>&- &
	pid=$!
	wait_until 10 called 1 "$k"
	kill_connections
	wait "$pid" || rc=$?
	cat "$BATS_TEST_TMPDIR/err" >&2
	[ "$rc" -eq 0 ]
	[ ! -s "$BATS_TEST_TMPDIR/err" ]
	jq -e '.status == "CAPTURE_REQUESTED" and .replayed == false' \
		"$BATS_TEST_TMPDIR/out"
	[ "$(rows "idempotency_key = '$k-1' AND status = 'CAPTURE_REQUESTED'")" -eq 1 ]
	[ "$(events "$(jq .payment_id "$BATS_TEST_TMPDIR/out")")" = \
		PAYMENT_AUTHORIZED,PAYMENT_CAPTURE_REQUESTED ]
}

@test "stream: the gateway's answers are recorded across lost database connections" {
	local k pid rc=0
	k=$(new_key lost)
	pg_control '{"endpoint":"authorize","delayMs":[1500,1500]}' >/dev/null
	seq 20 | jq -c --arg k "$k" '{merchantId: "M1", amount: 10, idempotencyKey: "\($k)-\(.)"}' \
		>"$BATS_TEST_TMPDIR/in"
	payctl authorize - <"$BATS_TEST_TMPDIR/in" >"$BATS_TEST_TMPDIR/out" \
		2>"$BATS_TEST_TMPDIR/err" 3>&- &
	pid=$!
	wait_until 10 called 20 "$k"
	kill_connections
	wait "$pid" || rc=$?
	cat "$BATS_TEST_TMPDIR/err" >&2
	[ "$rc" -eq 0 ]
	jq -e -s 'length == 20 and all(.status == "CAPTURE_REQUESTED")' \
		"$BATS_TEST_TMPDIR/out"
	[ "$(rows "idempotency_key LIKE '$k-%' AND status = 'CAPTURE_REQUESTED'")" -eq 20 ]
	[ "$(rows "idempotency_key LIKE '$k-%' AND status = 'PENDING'")" -eq 0 ]
	called 20 "$k"
}

@test "stream: SIGTERM stops the reading, and what was read finishes" {
	local k pid rc=0
	k=$(new_key term)
	pg_control '{"endpoint":"authorize","delayMs":[1000,1000]}' >/dev/null
	seq 8 | jq -c --arg k "$k" '{merchantId: "M1", amount: 10, idempotencyKey: "\($k)-\(.)"}' \
		>"$BATS_TEST_TMPDIR/in"
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	payctl authorize - <"$BATS_TEST_TMPDIR/fifo" >"$BATS_TEST_TMPDIR/out" \
		2>"$BATS_TEST_TMPDIR/err" 3>&- &
	pid=$!
	# The writer stays open: only the signal can end the reading.
	exec 4>"$BATS_TEST_TMPDIR/fifo"
	head -n 5 "$BATS_TEST_TMPDIR/in" >&4
	wait_until 10 called 5 "$k"
	kill -TERM "$pid"
	wait "$pid" || rc=$?
	exec 4>&-
	cat "$BATS_TEST_TMPDIR/err" >&2
	[ "$rc" -eq 75 ]
	[ "$(cat "$BATS_TEST_TMPDIR/err")" = \
		"payctl authorize: stopped on SIGTERM after line 5: the rest of the input was not read" ]
	jq -e -s 'length == 5 and all(.status == "CAPTURE_REQUESTED")' \
		"$BATS_TEST_TMPDIR/out"
	[ "$(rows "idempotency_key LIKE '$k-%' AND status = 'CAPTURE_REQUESTED'")" -eq 5 ]
	[ "$(rows "idempotency_key LIKE '$k-%' AND status = 'PENDING'")" -eq 0 ]
}
