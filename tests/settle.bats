#!/usr/bin/env bats
# settle: payment.capture-requested -> gateway settlement -> CAPTURED, with
# retries that run, dead letters, and exactly-once effects.
# shellcheck disable=SC2154 # bats' run sets output and stderr.
# shellcheck disable=SC2016 # wait_until eval expands its test later.

load test_helper
load consumer_helper

setup_file() {
	use_own_db
	pg_reset
}

setup() {
	# Retries come due at once unless a test says otherwise.
	export PAY_SETTLE_RETRY_BASE=1ms PAY_SETTLE_RETRY_MAX=1ms
	ID=$((BATS_TEST_NUMBER * 100))
}

teardown() {
	stop_started
	pg_reset
	payctl breaker pg reset >/dev/null
}

# payment ID [STATUS [AMOUNT]]: a payment row as payctl capture leaves it.
payment() {
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key,
		amount, currency, status, transaction_id) VALUES ($1, 'M1', 'k$1',
		${3:-1000}, 'KRW', '${2:-CAPTURE_REQUESTED}', 'txn_$1')"
}

# event ID [AMOUNT [EVENT_ID [CURRENCY]]]: its capture-requested message.
event() {
	printf '%s:{"eventId":"%s","eventType":"PAYMENT_CAPTURE_REQUESTED","schemaVersion":1,"occurredAt":"2026-11-21T08:00:00.000001Z","paymentId":%s,"status":"CAPTURE_REQUESTED","merchantId":"M1","amount":%s,"currency":"%s","transactionId":"txn_%s"}\n' \
		"$1" "${3:-$(uuid)}" "$1" "${2:-1000}" "${4:-KRW}" "$1"
}

status_of() {
	sql "SELECT status FROM payment WHERE payment_id = $1"
}
request_of() {
	sql "SELECT status, retry_count FROM settlement_request WHERE payment_id = $1" |
		tr '\t' ' '
}
# How many of the payments ID+1 .. ID+N are CAPTURED.
n_captured() {
	count "payment WHERE payment_id > $ID AND payment_id <= $((ID + $1))
		AND status = 'CAPTURED'"
}
captured_events() {
	outbox PAYMENT_CAPTURED "aggregate_id = $1" | grep -c . || true
}
# many N: payments BASE+1 .. BASE+N as payctl capture leaves them, and
# their capture-requested messages.  BASE is far from the other tests' IDs.
many() {
	BASE=$((BATS_TEST_NUMBER * 100000))
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key,
		amount, currency, status, transaction_id) SELECT $BASE + seq, 'M1',
		CONCAT('k', $BASE + seq), 1000, 'KRW', 'CAPTURE_REQUESTED',
		CONCAT('txn_', $BASE + seq) FROM seq_1_to_$1"
	for i in $(seq 1 "$1"); do
		event $((BASE + i))
	done | produce payment.capture-requested
}
# How many of the payments BASE+1 .. BASE+N are CAPTURED.
many_captured() {
	count "payment WHERE payment_id > $BASE AND payment_id <= $((BASE + $1))
		AND status = 'CAPTURED'"
}
# The gateway's settle calls for each of the payments, one line each.
many_calls() {
	for i in $(seq 1 "$1"); do
		pg_calls settle "settle-txn_$((BASE + i))"
	done
}

@test "settles a capture request: payment CAPTURED and one PAYMENT_CAPTURED" {
	payment "$ID"
	event "$ID" | produce payment.capture-requested
	run -0 --separate-stderr settle --once -v -g "$(group a)"
	[ -z "$output" ]
	[[ $stderr == *"payment $ID: settled, transaction txn_"* ]]
	[ "$(status_of "$ID")" = CAPTURED ]
	[ "$(sql "SELECT captured_amount FROM payment WHERE payment_id = $ID")" = 1000 ]
	[ "$(request_of "$ID")" = "SUCCESS 0" ]
	outbox PAYMENT_CAPTURED "aggregate_id = $ID" | jq -e -s --argjson id "$ID" '
		length == 1 and .[0].paymentId == $id and .[0].amount == 1000 and
		.[0].currency == "KRW" and .[0].status == "CAPTURED" and
		(.[0].pgTransactionId | startswith("txn_")) and
		(.[0].eventId | test("^[0-9a-f-]{36}$"))'
	[ "$(pg_calls settle "settle-txn_$ID")" = 1 ]
}

@test "the same message twice and a replay of the whole topic settle once" {
	payment "$ID"
	e=$(event "$ID")
	printf '%s\n%s\n' "$e" "$e" | produce payment.capture-requested
	run -0 settle --once -g "$(group a)"
	# A new group reads the topic from offset 0: every earlier test again.
	run -0 --separate-stderr settle --once -v -g "$(group replay)"
	[[ $stderr == *"already processed"* ]]
	[ "$(captured_events "$ID")" = 1 ]
	[ "$(count "settlement_request WHERE payment_id = $ID")" = 1 ]
	[ "$(pg_calls settle "settle-txn_$ID")" = 1 ]
	[ "$(count "outbox_event WHERE event_type = 'PAYMENT_CAPTURED'")" = \
		"$(count "settlement_request WHERE status = 'SUCCESS'")" ]
}

@test "a second capture request for a payment makes no second settlement" {
	payment "$ID"
	{ event "$ID"; event "$ID"; } | produce payment.capture-requested
	run -0 settle --once -g "$(group a)"
	[ "$(count "processed_event WHERE consumer = 'settle'")" -ge 2 ]
	[ "$(count "settlement_request WHERE payment_id = $ID")" = 1 ]
	[ "$(captured_events "$ID")" = 1 ]
}

@test "a first-time failure is retried by --retry-due and emits PAYMENT_CAPTURED once" {
	payment "$ID"
	pg_control '{"fault":"fail","endpoint":"settle"}'
	event "$ID" | produce payment.capture-requested
	run -0 --separate-stderr settle --once -g "$(group a)"
	[[ $stderr == *"payment $ID: attempt 1 failed: PG_TIMEOUT"* ]]
	[ "$(request_of "$ID")" = "FAILED 1" ]
	[ "$(sql "SELECT pg_response_code, next_retry_at IS NOT NULL,
		last_retry_at IS NULL FROM settlement_request
		WHERE payment_id = $ID" | tr '\t' ' ')" = "PG_TIMEOUT 1 1" ]
	[ "$(status_of "$ID")" = CAPTURE_REQUESTED ]
	[ "$(captured_events "$ID")" = 0 ]

	pg_reset
	run -0 --separate-stderr settle --retry-due -v
	[[ $stderr == *"payment $ID: settled"*"(attempt 2)"* ]]
	[ "$(request_of "$ID")" = "SUCCESS 1" ]
	[ "$(sql "SELECT last_retry_at IS NOT NULL FROM settlement_request
		WHERE payment_id = $ID")" = 1 ]
	[ "$(status_of "$ID")" = CAPTURED ]
	[ "$(captured_events "$ID")" = 1 ]
	[ "$(pg_calls settle "settle-txn_$ID")" = 2 ]
	run -0 settle --retry-due
	[ "$(captured_events "$ID")" = 1 ]
}

@test "--retry-due leaves a retry that is not due yet" {
	payment "$ID"
	pg_control '{"fault":"fail","endpoint":"settle"}'
	event "$ID" | produce payment.capture-requested
	PAY_SETTLE_RETRY_BASE=1h PAY_SETTLE_RETRY_MAX=1h \
		run -0 settle --once -g "$(group a)"
	pg_reset
	run -0 settle --retry-due
	[ "$(request_of "$ID")" = "FAILED 1" ]
	[ "$(pg_calls settle "settle-txn_$ID")" = 1 ]
}

@test "a request left PENDING by a crash is settled by --retry-due" {
	payment "$ID"
	sql "INSERT INTO settlement_request (payment_id, event_key, amount,
		currency, status, next_retry_at) VALUES ($ID, '$(uuid)', 1000,
		'KRW', 'PENDING', NOW(6) - INTERVAL 1 MINUTE)"
	run -0 settle --retry-due
	[ "$(request_of "$ID")" = "SUCCESS 0" ]
	[ "$(status_of "$ID")" = CAPTURED ]
}

@test "after the last retry: DEAD, CAPTURE_FAILED and a settlement.dlq record" {
	export PAY_SETTLE_MAX_RETRIES=2
	payment "$ID"
	pg_control '{"fault":"fail","endpoint":"settle"}'
	event "$ID" | produce payment.capture-requested
	run -0 settle --once -g "$(group a)"
	run -0 settle --retry-due
	[ "$(request_of "$ID")" = "FAILED 2" ]
	[ "$(status_of "$ID")" = CAPTURE_REQUESTED ]
	run -0 --separate-stderr settle --retry-due
	[[ $stderr == *"payment $ID: settlement "*" dead-lettered: gave up after 3 attempts"* ]]
	[ "$(request_of "$ID")" = "DEAD 3" ]
	[ "$(status_of "$ID")" = CAPTURE_FAILED ]
	[ "$(captured_events "$ID")" = 0 ]
	outbox SETTLEMENT_DEAD_LETTER "aggregate_id = $ID" | jq -e -s --argjson id "$ID" '
		length == 1 and (.[0] | .paymentId == $id and
		.requestAmount == 1000 and .currency == "KRW" and
		.retryCount == 3 and .status == "DEAD" and
		.errorType == "RETRIES_EXHAUSTED" and
		.pgResponseCode == "PG_TIMEOUT" and (.pgResponseMessage | length > 0) and
		(.errorMessage | startswith("gave up after 3 attempts")) and
		(.settlementRequestId | type == "number") and
		(.requestedAt | test("^[0-9-]{10}T[0-9:.]{15}Z$")) and
		(.lastRetryAt | test("Z$")) and (.timestamp | test("Z$")) and
		.eventType == "SETTLEMENT_DEAD_LETTER")'
	# Dead is final: nothing is retried any more.
	pg_reset
	run -0 settle --retry-due
	[ "$(pg_calls settle "settle-txn_$ID")" = 3 ]
	# outbox-relay publishes the record; read it back from settlement.dlq.
	run -0 outbox-relay -1
	timeout 20 kcat -C -b "$PAY_KAFKA_BROKERS" -t "${PAY_TOPIC_PREFIX}settlement.dlq" \
		-e -q | jq -e -s --argjson id "$ID" 'map(select(.paymentId == $id)) |
		length == 1 and .[0].errorType == "RETRIES_EXHAUSTED" and
		.[0].retryCount == 3 and .[0].requestAmount == 1000'
}

@test "every malformed message goes to settlement.dlq and the worker carries on" {
	key="bad$ID"
	payment "$ID"
	payment $((ID + 1)) AUTHORIZED
	payment $((ID + 2))
	u=$(uuid)
	{
		echo "$key:not json"
		echo "$key:[1,2]"
		printf '%s:\xff\xfe{}\n' "$key"
		echo "$key:{\"eventType\":\"PAYMENT_CAPTURE_REQUESTED\",\"paymentId\":$ID}"
		echo "$key:{\"eventId\":\"nope\",\"eventType\":\"PAYMENT_CAPTURE_REQUESTED\"}"
		echo "$key:{\"eventId\":\"$(uuid)\",\"eventType\":\"PAYMENT_CAPTURED\",\"paymentId\":$ID}"
		echo "$key:{\"eventId\":\"$(uuid)\",\"eventType\":\"PAYMENT_CAPTURE_REQUESTED\",\"amount\":1000,\"currency\":\"KRW\"}"
		echo "$key:{\"eventId\":\"$(uuid)\",\"eventType\":\"PAYMENT_CAPTURE_REQUESTED\",\"paymentId\":\"$ID\",\"amount\":1000,\"currency\":\"KRW\"}"
		event 999999 | sed "s/^[^:]*:/$key:/"
		event "$ID" 999 | sed "s/^[^:]*:/$key:/"
		event "$ID" 1000 "$(uuid)" USD | sed "s/^[^:]*:/$key:/"
		event $((ID + 1)) | sed "s/^[^:]*:/$key:/"
		event $((ID + 2)) 1000 "$u" | sed "s/^[^:]*:/$key:/"
	} | produce payment.capture-requested
	run -0 --separate-stderr settle --once -g "$(group a)"
	[[ $stderr == *"dead-lettered: NOT_JSON"* ]]
	# The good message after the bad ones was applied.
	[ "$(status_of $((ID + 2)))" = CAPTURED ]
	[ "$(status_of "$ID")" = CAPTURE_REQUESTED ]
	[ "$(status_of $((ID + 1)))" = AUTHORIZED ]
	outbox SETTLEMENT_DEAD_LETTER >"$BATS_TEST_TMPDIR/dlq"
	jq -e -s --arg key "$key" --arg topic "${PAY_TOPIC_PREFIX}payment.capture-requested" '
		map(select(.key == $key)) |
		(map(.errorType) | sort) == ["AMOUNT_MISMATCH", "BAD_FIELD",
			"BAD_FIELD", "CURRENCY_MISMATCH", "INVALID_STATE",
			"MISSING_FIELD", "MISSING_FIELD", "NOT_JSON", "NOT_JSON",
			"NOT_JSON", "UNKNOWN_PAYMENT", "WRONG_EVENT_TYPE"] and
		all(.originalTopic == $topic and (.partition | type == "number") and
			(.offset | type == "number") and (.errorMessage | length > 0) and
			.consumer == "settle" and (.timestamp | test("Z$")) and
			.eventType == "SETTLEMENT_DEAD_LETTER")' "$BATS_TEST_TMPDIR/dlq"
	jq -e -s --arg key "$key" 'map(select(.key == $key and .payload == null)) |
		length == 1 and .[0].payloadBase64 == "//57fQ=="' "$BATS_TEST_TMPDIR/dlq"
	# Each record carries the original message, where it was read.
	jq -r -s --arg key "$key" 'map(select(.key == $key and .payload != null))[] |
		[.originalTopic, .partition, .offset, .payload] | @json' \
		"$BATS_TEST_TMPDIR/dlq" | while read -r rec; do
		t=$(jq -r '.[0]' <<<"$rec")
		p=$(jq -r '.[1]' <<<"$rec")
		o=$(jq -r '.[2]' <<<"$rec")
		[ "$(message_at "$t" "$p" "$o")" = "$(jq -r '.[3]' <<<"$rec")" ]
	done
	# A replay dead-letters nothing twice.
	n=$(wc -l <"$BATS_TEST_TMPDIR/dlq")
	run -0 settle --once -g "$(group replay)"
	[ "$(outbox SETTLEMENT_DEAD_LETTER | wc -l)" = "$n" ]
}

@test "a payment no longer CAPTURE_REQUESTED when the event comes is left alone" {
	payment "$ID" REFUND_REQUESTED
	sql "UPDATE payment SET captured_amount = 1000 WHERE payment_id = $ID"
	event "$ID" | produce payment.capture-requested
	run -0 settle --once -g "$(group a)"
	[ "$(status_of "$ID")" = REFUND_REQUESTED ]
	[ "$(count "settlement_request WHERE payment_id = $ID")" = 0 ]
	[ "$(pg_calls settle "settle-txn_$ID")" = 0 ]
}

@test "a status changed during the gateway call is not overwritten" {
	export PAY_PG_TIMEOUT=30s
	payment "$ID"
	pg_control '{"fault":"hang","endpoint":"settle"}'
	event "$ID" | produce payment.capture-requested
	start settle settle -g "$(group a)"
	wait_until 20 eval '[ "$(pg_calls settle "settle-txn_$ID")" = 1 ]'
	sql "UPDATE payment SET status = 'REFUND_REQUESTED' WHERE payment_id = $ID"
	pg_reset
	wait_until 20 eval '[ "$(request_of "$ID")" = "SUCCESS 0" ]'
	stop_with 0 settle
	[ "$(status_of "$ID")" = REFUND_REQUESTED ]
	log_has settle "payment $ID: settled, transaction .*, but it is no longer CAPTURE_REQUESTED"
}

@test "a claim taken over during the gateway call: its answer is dropped, the others recorded" {
	export PAY_PG_TIMEOUT=30s
	payment "$ID"
	payment "$((ID + 1))"
	pg_control '{"fault":"hang","endpoint":"settle"}'
	{ event "$ID" && event "$((ID + 1))"; } | produce payment.capture-requested
	start settle settle -g "$(group a)"
	wait_until 20 eval '[ "$(pg_calls settle "settle-txn_$ID")" = 1 ] &&
		[ "$(pg_calls settle "settle-txn_$((ID + 1))")" = 1 ]'
	# Another caller's lease: a new next_retry_at.
	sql "UPDATE settlement_request SET next_retry_at = NOW(6) + INTERVAL 1 HOUR
		WHERE payment_id = $ID"
	pg_reset
	wait_until 20 eval '[ "$(request_of "$((ID + 1))")" = "SUCCESS 0" ] &&
		log_has settle "payment $ID: settlement [0-9]* was taken over; result dropped"'
	stop_with 0 settle
	[ "$(request_of "$ID")" = "PENDING 0" ]
	[ "$(status_of "$ID")" = CAPTURE_REQUESTED ]
	[ "$(captured_events "$ID")" = 0 ]
	[ "$(status_of "$((ID + 1))")" = CAPTURED ]
	[ "$(captured_events "$((ID + 1))")" = 1 ]
}

@test "a request whose payment changed before its call is dead-lettered, not sent" {
	payment "$ID"
	sql "INSERT INTO settlement_request (payment_id, event_key, amount,
		currency, status, next_retry_at) VALUES ($ID, '$(uuid)', 1000,
		'KRW', 'FAILED', NOW(6))"
	sql "UPDATE payment SET status = 'CAPTURE_FAILED' WHERE payment_id = $ID"
	run -0 settle --retry-due
	[ "$(request_of "$ID")" = "DEAD 0" ]
	[ "$(status_of "$ID")" = CAPTURE_FAILED ]
	[ "$(pg_calls settle "settle-txn_$ID")" = 0 ]
	outbox SETTLEMENT_DEAD_LETTER "aggregate_id = $ID" |
		jq -e -s 'length == 1 and .[0].errorType == "INVALID_STATE"'
}

@test "SIGTERM finishes the call in flight, commits and exits 0" {
	export PAY_PG_TIMEOUT=2s
	payment "$ID"
	pg_control '{"fault":"hang","endpoint":"settle"}'
	event "$ID" | produce payment.capture-requested
	g=$(group a)
	start settle settle -g "$g"
	wait_until 20 eval '[ "$(pg_calls settle "settle-txn_$ID")" = 1 ]'
	stop_with 0 settle TERM
	log_has settle "stopped on SIGTERM"
	# The call in flight timed out and was recorded as a failure.
	[ "$(request_of "$ID")" = "FAILED 1" ]
	# Its offset was committed: the group does not read it again.
	pg_reset
	run -0 --separate-stderr settle --once -v -g "$g"
	[[ $stderr != *"already processed"* ]]
	[[ $stderr != *"applied"* ]]
	[ "$(request_of "$ID")" = "SUCCESS 1" ]
}

@test "killed with -9 mid-way and restarted: everything settled exactly once" {
	export PAY_SETTLE_CONCURRENCY=2 PAY_PG_TIMEOUT=1s
	for i in $(seq 1 20); do
		payment $((ID + i))
		event $((ID + i))
	done | produce payment.capture-requested
	g=$(group a)
	start first settle -g "$g"
	wait_until 30 eval '[ "$(n_captured 20)" -ge 5 ]'
	stop_with 137 first KILL
	start second settle -g "$g"
	wait_until 60 eval '[ "$(n_captured 20)" = 20 ]'
	stop_with 0 second
	[ "$(count "settlement_request WHERE payment_id > $ID AND
		payment_id <= $((ID + 20)) AND status = 'SUCCESS'")" = 20 ]
	[ "$(sql "SELECT COUNT(*), COUNT(DISTINCT aggregate_id) FROM outbox_event
		WHERE event_type = 'PAYMENT_CAPTURED' AND aggregate_id > $ID AND
		aggregate_id <= $((ID + 20))" | tr '\t' ' ')" = "20 20" ]
}

@test "many settlements in flight at once: one gateway call and one event per payment" {
	# Generous timeouts: 256 calls at once on a loaded machine must not
	# time out, which would leave them for the next pass.
	export PAY_PG_CONNECT_TIMEOUT=10s PAY_PG_TIMEOUT=30s
	many 300
	run -0 --separate-stderr settle --once -v -c 256 -g "$(group a)"
	# Shown if the test fails: what did not settle, and why.
	grep -v ' applied\| settled ' <<<"$stderr" | tail -n 20 >&2
	# The pass claimed every call it was allowed at once.
	[[ $stderr == *"settle: claimed 256 due settlements, 256 to call"* ]]
	[ "$(many_captured 300)" = 300 ]
	[ "$(sql "SELECT COUNT(*), COUNT(DISTINCT aggregate_id) FROM outbox_event
		WHERE event_type = 'PAYMENT_CAPTURED' AND aggregate_id > $BASE AND
		aggregate_id <= $((BASE + 300))" | tr '\t' ' ')" = "300 300" ]
	[ "$(many_calls 300 | sort | uniq -c | sed 's/^ *//')" = "300 1" ]
}

@test "killed with -9 while a batch of calls is in flight: restarted, each payment settled once" {
	export PAY_PG_TIMEOUT=2s
	pg_control '{"endpoint":"settle","delayMs":[300,600]}'
	many 200
	g=$(group a)
	start first settle -c 16 -g "$g"
	wait_until 60 eval '[ "$(many_captured 200)" -ge 20 ]'
	stop_with 137 first KILL
	# Its claims were left in flight: leased, not recorded.
	[ "$(count "settlement_request WHERE payment_id > $BASE AND
		payment_id <= $((BASE + 200)) AND status = 'PENDING' AND
		next_retry_at > NOW(6)")" -ge 1 ]
	[ "$(many_captured 200)" -lt 200 ]
	pg_control '{"endpoint":"settle","delayMs":[50,150]}'
	start second settle -c 64 -g "$g"
	wait_until 120 eval '[ "$(many_captured 200)" = 200 ]'
	stop_with 0 second
	[ "$(count "settlement_request WHERE payment_id > $BASE AND
		payment_id <= $((BASE + 200)) AND status = 'SUCCESS'")" = 200 ]
	[ "$(sql "SELECT COUNT(*), COUNT(DISTINCT aggregate_id) FROM outbox_event
		WHERE event_type = 'PAYMENT_CAPTURED' AND aggregate_id > $BASE AND
		aggregate_id <= $((BASE + 200))" | tr '\t' ' ')" = "200 200" ]
	# A call cut short by the kill was made again, with the same key.
	many_calls 200 >"$BATS_TEST_TMPDIR/calls"
	run -1 grep -vx '[12]' "$BATS_TEST_TMPDIR/calls"
	grep -qx 2 "$BATS_TEST_TMPDIR/calls"
}

@test "a call the pg circuit breaker refuses is deferred without spending an attempt" {
	payment "$ID"
	payctl breaker pg force-open >/dev/null
	event "$ID" | produce payment.capture-requested
	run -0 settle --once -g "$(group a)"
	payctl breaker pg reset >/dev/null
	[ "$(sql "SELECT status, retry_count, pg_response_code FROM
		settlement_request WHERE payment_id = $ID" | tr '\t' ' ')" = "FAILED 0 CIRCUIT_OPEN" ]
	[ "$(status_of "$ID")" = CAPTURE_REQUESTED ]
	[ "$(pg_calls settle "settle-txn_$ID")" = 0 ]
	run -0 settle --retry-due
	[ "$(request_of "$ID")" = "SUCCESS 0" ]
	[ "$(captured_events "$ID")" = 1 ]
}

@test "two instances in one group share the partitions" {
	g=$(group a)
	start one settle -g "$g"
	wait_until 20 log_has one "assigned .*\[0,1,2,3\]"
	start two settle -g "$g"
	wait_until 30 log_has two "assigned ${PAY_TOPIC_PREFIX}payment.capture-requested \["
	wait_until 30 eval '[ "$(grep -h "assigned" "$BATS_TEST_TMPDIR"/one.err |
		tail -n 1)" != "$(grep -h "assigned" "$BATS_TEST_TMPDIR"/one.err | head -n 1)" ]'
	for i in $(seq 1 12); do
		payment $((ID + i))
		event $((ID + i))
	done | produce payment.capture-requested
	wait_until 30 eval '[ "$(n_captured 12)" = 12 ]'
	stop_with 0 one
	stop_with 0 two
	a=$(grep -h assigned "$BATS_TEST_TMPDIR/one.err" | tail -n 1 | sed 's/.*\[\(.*\)\]/\1/')
	b=$(grep -h assigned "$BATS_TEST_TMPDIR/two.err" | head -n 1 | sed 's/.*\[\(.*\)\]/\1/')
	[ -n "$a" ] && [ -n "$b" ]
	[ "$(echo "$a,$b" | tr , '\n' | sort -n | tr '\n' ' ')" = "0 1 2 3 " ]
}

@test "usage errors are exit 64 with one line" {
	run -64 --separate-stderr settle --bogus
	assert_one_line_stderr "settle: unknown option '--bogus' (see 'settle -h')"
	run -64 --separate-stderr settle -n 0
	assert_one_line_stderr "settle: option '--max-messages': '0' is not a count (see 'settle -h')"
	run -64 --separate-stderr settle --once --retry-due
	assert_one_line_stderr "settle: '--retry-due' cannot be combined with '--once' or '--max-messages' (see 'settle -h')"
	run -64 --separate-stderr settle -X nokey
	assert_one_line_stderr "*'-X': 'nokey' is not key=value*"
	run -64 --separate-stderr settle -g
	assert_one_line_stderr "*option '-g' needs a value*"
	run -64 --separate-stderr settle extra
	assert_one_line_stderr "*unexpected argument 'extra'*"
	run -64 --separate-stderr settle --retry-due -c 0
	assert_one_line_stderr "settle: option '--concurrency': '0' is not a count from 1 to 4096 (see 'settle -h')"
	run -64 --separate-stderr settle --retry-due --concurrency=4097
	assert_one_line_stderr "*'--concurrency': '4097' is not a count*"
}

@test "bad settings are exit 78 with one line" {
	PAY_SETTLE_MAX_RETRIES=many run -78 --separate-stderr settle --once
	assert_one_line_stderr "settle: setting 'PAY_SETTLE_MAX_RETRIES': 'many' is not an integer"
	PAY_SETTLE_RETRY_BASE=soon run -78 --separate-stderr settle --once
	assert_one_line_stderr "*'PAY_SETTLE_RETRY_BASE': 'soon' is not a duration*"
	printf 'settle_group = ""\n' >"$BATS_TEST_TMPDIR/c.conf"
	PAY_CONFIG="$BATS_TEST_TMPDIR/c.conf" run -78 --separate-stderr settle --once
	assert_one_line_stderr "settle: setting 'settle_group' must not be empty"
	run -78 --separate-stderr settle --once -X no.such.property=1 -g "$(group a)"
	assert_one_line_stderr "*'no.such.property'*"
}

@test "an unreachable database is exit 69 with one line" {
	PAY_DB_PORT=1 run -69 --separate-stderr settle --once
	assert_one_line_stderr "settle: connect to '127.0.0.1:1': *"
}

@test "an unreachable broker with --once is exit 69" {
	PAY_KAFKA_BROKERS=127.0.0.1:1 PAY_CONSUMER_JOIN_TIMEOUT=2s \
		run -69 --separate-stderr settle --once
	[[ $stderr == *"no partitions assigned in group 'settle' within 2s"* ]]
}

@test "-h prints the usage on stdout; -V the version" {
	run -0 --separate-stderr settle -h
	[[ $output == "usage: settle "* ]]
	[ -z "$stderr" ]
	run -0 settle --version
	[[ $output == "settle (paykit) "* ]]
}

@test "the usage line is the man page SYNOPSIS" {
	usage_matches_synopsis settle
}

@test "--purge-older-than deletes settle's own old records, and refuses to mix" {
	sql "INSERT INTO processed_event (consumer, event_key, processed_at)
		SELECT 'settle', UUID(), NOW(6) - INTERVAL 40 DAY FROM seq_1_to_3;
		INSERT INTO processed_event (consumer, event_key, processed_at)
		SELECT 'refund', UUID(), NOW(6) - INTERVAL 40 DAY FROM seq_1_to_2"
	old="processed_event WHERE processed_at < NOW(6) - INTERVAL 30 DAY"
	run -0 --separate-stderr settle --purge-older-than 30d
	[ -z "$stderr" ]
	[ "$output" = '{"purged":3}' ]
	[ "$(sql "SELECT COUNT(*) FROM $old AND consumer = 'settle'")" = 0 ]
	[ "$(sql "SELECT COUNT(*) FROM $old AND consumer = 'refund'")" = 2 ]
	run -0 --separate-stderr refund -P 30d
	[ "$output" = '{"purged":2}' ]
	run -64 --separate-stderr settle -P 30d --retry-due
	assert_one_line_stderr "settle: option '--purge-older-than' does not go with '--retry-due' (see 'settle -h')"
}
