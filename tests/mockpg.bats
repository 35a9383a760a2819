#!/usr/bin/env bats
# mockpg, the mock payment gateway.  Most tests share one private instance on
# a free port and set what they need through /control (setup resets it);
# tests of start-up settings, seeds and signals run their own.
# shellcheck disable=SC2154 # bats' run sets stderr_lines.

load test_helper

A='{"merchantId":"M1","amount":1000,"currency":"KRW","idempotencyKey":"k1"}'
S='{"paymentId":7,"transactionId":"txn_0000abcd","amount":1000,"currency":"KRW","idempotencyKey":"s1"}'
R='{"paymentId":7,"transactionId":"txn_0000abcd","amount":1000,"currency":"KRW","reason":"customer","idempotencyKey":"r1"}'

# start_pg DIR ARGS...: run mockpg on a free port in the background, logs in
# DIR.out and DIR.err; sets PG_PID and PG_URL.
start_pg() {
	local dir=$1
	shift
	mockpg -l 127.0.0.1:0 "$@" >"$dir.out" 2>"$dir.err" 3>&- &
	PG_PID=$!
	OWN_PIDS="${OWN_PIDS:-} $PG_PID"
	wait_until 5 grep -q listen "$dir.out"
	PG_URL=$(jq -r .listen "$dir.out")
}

setup_file() {
	start_pg "$BATS_FILE_TMPDIR/main"
	export URL=$PG_URL MAIN_PID=$PG_PID
}

teardown_file() {
	kill "$MAIN_PID" 2>/dev/null || true
}

# Everything off: no fault, no decline, no delay, no counts.
setup() {
	OWN_PIDS=
	BODY=$BATS_TEST_TMPDIR/body
	post /control '{"fault":"none","failureRate":0,"delayMs":[0,0]}' >/dev/null
	curl -sf -X POST "$URL/stats/reset" >/dev/null
}

teardown() {
	local p
	for p in $OWN_PIDS; do
		kill "$p" 2>/dev/null || true
	done
}

post() {
	curl -s --max-time 10 -H 'Content-Type: application/json' -d "$2" "$URL$1"
}

# status METHOD PATH [DATA]: print the HTTP status; the body goes to $BODY.
status() {
	curl -s --max-time 10 -o "$BODY" -w '%{http_code}' -X "$1" \
		${3+-H 'Content-Type: application/json' -d "$3"} "$URL$2"
}

# calls_are URL ENDPOINT N: the endpoint has counted N calls.
calls_are() {
	[ "$(curl -s "$1/stats" | jq ".calls.$2")" -eq "$3" ]
}

# The process has exited (a zombie until its parent waits for it).
gone() {
	[ ! -e "/proc/$1" ] || grep -q '^[0-9]* (.*) Z' "/proc/$1/stat"
}

bad_request() {
	[ "$1" = 400 ]
	jq -e '.status == "ERROR" and .responseCode == "BAD_REQUEST" and
		(.message | length > 0)' "$BODY"
}

@test "prints one JSON line with the port it got" {
	[ "$(grep -c '' "$BATS_FILE_TMPDIR/main.out")" -eq 1 ]
	[[ $URL =~ ^http://127\.0\.0\.1:[0-9]+$ ]]
	[ "${URL##*:}" -ne 0 ]
}

@test "health answers UP" {
	run -0 curl -sf "$URL/health"
	jq -e '. == {"status":"UP"}' <<<"$output"
}

@test "authorize succeeds with an APP approval number and a txn_ id" {
	run -0 post /v1/authorize "$A"
	jq -e '.status == "SUCCESS" and .responseCode == "0000" and
		.message == "approved" and
		(.approvalNumber | test("^APP[0-9A-F]{8}$")) and
		(.transactionId | test("^txn_[0-9a-f]{8}$"))' <<<"$output"
}

@test "authorize declines every call with fault fail" {
	post /control '{"fault":"fail","endpoint":"authorize"}' >/dev/null
	run -0 post /v1/authorize "$A"
	jq -e '. == {"status":"FAILED","responseCode":"PG_TIMEOUT",
		"message":"authorization API timeout"}' <<<"$output"
}

@test "a failure rate of 1 declines every call" {
	post /control '{"failureRate":1}' >/dev/null
	for _ in 1 2 3; do
		post /v1/authorize "$A" | jq -e '.status == "FAILED"'
	done
}

@test "settle answers in the processor's shapes" {
	run -0 post /v1/settle "$S"
	jq -e '.status == "SUCCESS" and .responseCode == "0000" and
		.message == "settled" and
		(.transactionId | test("^txn_[0-9a-f]{8}$"))' <<<"$output"
	post /control '{"fault":"fail","endpoint":"settle"}' >/dev/null
	run -0 post /v1/settle "$S"
	jq -e '. == {"status":"FAILED","responseCode":"PG_TIMEOUT",
		"message":"settlement API timeout"}' <<<"$output"
}

@test "refund answers in the processor's shapes" {
	run -0 post /v1/refund "$R"
	jq -e '.status == "SUCCESS" and .responseCode == "0000" and
		.message == "refunded" and
		(.cancelTransactionId | test("^cancel_[0-9a-f]{8}$"))' <<<"$output"
	post /control '{"fault":"fail","endpoint":"refund"}' >/dev/null
	run -0 post /v1/refund "$R"
	jq -e '. == {"status":"FAILED","responseCode":"PG_TIMEOUT",
		"message":"refund API timeout"}' <<<"$output"
}

@test "refuses a body that is not JSON" {
	bad_request "$(status POST /v1/authorize '{"merchantId":')"
	bad_request "$(status POST /v1/authorize '[1,2]')"
	bad_request "$(status POST /v1/authorize '')"
}

@test "refuses a missing field" {
	bad_request "$(status POST /v1/authorize \
		'{"merchantId":"M1","amount":1000,"currency":"KRW"}')"
	jq -e '.message == "missing field '\''idempotencyKey'\''"' "$BODY"
	bad_request "$(status POST /v1/refund "$S")"
	jq -e '.message | test("reason")' "$BODY"
}

@test "refuses a negative, zero, fractional or string amount" {
	local a
	for a in -5 0 10.5 '"1000"' null; do
		bad_request "$(status POST /v1/authorize \
			"{\"merchantId\":\"M1\",\"amount\":$a,\"currency\":\"KRW\",\"idempotencyKey\":\"k\"}")"
		jq -e '.message == "'\''amount'\'' must be a positive integer"' "$BODY"
	done
}

@test "refuses an empty string and a key over 64 bytes" {
	bad_request "$(status POST /v1/authorize \
		'{"merchantId":"","amount":1,"currency":"KRW","idempotencyKey":"k"}')"
	long=$(printf 'k%.0s' {1..65})
	bad_request "$(status POST /v1/authorize \
		"{\"merchantId\":\"M1\",\"amount\":1,\"currency\":\"KRW\",\"idempotencyKey\":\"$long\"}")"
	curl -s "$URL/stats" | jq -e '.calls.authorize == 0'
}

@test "refuses a body over 64 KiB with 413" {
	head -c 70000 /dev/zero | tr '\0' ' ' >"$BATS_TEST_TMPDIR/big"
	run -0 curl -s -o "$BATS_TEST_TMPDIR/body" -w '%{http_code}' \
		--data-binary @"$BATS_TEST_TMPDIR/big" "$URL/v1/authorize"
	[ "$output" = 413 ]
	jq -e '.responseCode == "PAYLOAD_TOO_LARGE"' "$BATS_TEST_TMPDIR/body"
	# Without a length, the body is read and then refused.
	run -0 curl -s -o /dev/null -w '%{http_code}' \
		-H 'Transfer-Encoding: chunked' \
		--data-binary @"$BATS_TEST_TMPDIR/big" "$URL/v1/authorize"
	[ "$output" = 413 ]
}

@test "answers 404 for an unknown path and 405 for a wrong method" {
	[ "$(status GET /v1/capture)" = 404 ]
	jq -e '.responseCode == "NOT_FOUND"' "$BODY"
	[ "$(status GET /v1/authorize)" = 405 ]
	jq -e '.responseCode == "METHOD_NOT_ALLOWED"' "$BODY"
	[ "$(status POST /health '{}')" = 405 ]
	[ "$(status DELETE /control)" = 405 ]
	curl -si -X PUT "$URL/stats" | grep -qi '^Allow: GET'
}

@test "counts calls per idempotency key exactly, and resets" {
	for _ in 1 2 3 4 5; do
		post /v1/authorize "$A" >/dev/null
	done
	post /v1/authorize "${A/k1/k2}" >/dev/null
	status POST /v1/authorize '{"amount":1}' >/dev/null
	run -0 curl -s "$URL/stats?endpoint=authorize&key=k1"
	jq -e '. == {"endpoint":"authorize","key":"k1","calls":5}' <<<"$output"
	curl -s "$URL/stats?endpoint=authorize&key=nope" | jq -e '.calls == 0'
	curl -s "$URL/stats?endpoint=settle&key=k1" | jq -e '.calls == 0'
	run -0 curl -s "$URL/stats"
	jq -e '. == {"calls":{"authorize":6,"settle":0,"refund":0},
		"keys":{"authorize":2,"settle":0,"refund":0}}' <<<"$output"
	curl -s -X POST "$URL/stats/reset" | jq -e '.calls.authorize == 0'
	curl -s "$URL/stats?endpoint=authorize&key=k1" | jq -e '.calls == 0'
	[ "$(status GET '/stats?endpoint=capture&key=k1')" = 400 ]
}

@test "a repeated key gets its first approval again, as from a real gateway" {
	local first
	first=$(post /v1/authorize "$A")
	jq -e '.status == "SUCCESS"' <<<"$first"
	# Random declines are drawn for new keys only; an injected decline
	# and the transport faults still apply to every call.
	post /control '{"failureRate":1}' >/dev/null
	[ "$(post /v1/authorize "$A")" = "$first" ]
	jq -e '.status == "FAILED"' <<<"$(post /v1/authorize "${A/k1/k2}")"
	post /control '{"failureRate":0}' >/dev/null
	[ "$(post /v1/authorize "${A/k1/k3}")" != "$first" ]
	post /control '{"fault":"fail"}' >/dev/null
	jq -e '.status == "FAILED"' <<<"$(post /v1/authorize "$A")"
	post /control '{"fault":"none"}' >/dev/null
	[ "$(post /v1/authorize "$A")" = "$first" ]
	run -0 curl -s "$URL/stats?endpoint=authorize&key=k1"
	jq -e '.calls == 4' <<<"$output"
	# Settlements and refunds alike; a reset forgets the answers.
	first=$(post /v1/settle "$S")
	[ "$(post /v1/settle "$S")" = "$first" ]
	curl -sf -X POST "$URL/stats/reset" >/dev/null
	[ "$(post /v1/settle "$S")" != "$first" ]
}

@test "counts faulted calls too" {
	post /control '{"fault":"http500"}' >/dev/null
	post /v1/settle "$S" >/dev/null
	curl -s "$URL/stats?endpoint=settle&key=s1" | jq -e '.calls == 1'
}

@test "fault http500 answers 500 with a JSON error" {
	post /control '{"fault":"http500","endpoint":"refund"}' >/dev/null
	[ "$(status POST /v1/refund "$R")" = 500 ]
	jq -e '.status == "ERROR"' "$BODY"
	[ "$(status POST /v1/settle "$S")" = 200 ]
}

@test "fault garbage answers 200 with a body that is not JSON" {
	post /control '{"fault":"garbage","endpoint":"authorize"}' >/dev/null
	[ "$(status POST /v1/authorize "$A")" = 200 ]
	[ -s "$BODY" ]
	run ! jq -e . "$BODY"
}

@test "fault close drops the connection without an answer" {
	post /control '{"fault":"close","endpoint":"settle"}' >/dev/null
	run -52 curl -s --max-time 5 -d "$S" "$URL/v1/settle"
	[ -z "$output" ]
	curl -sf "$URL/health" >/dev/null
}

@test "fault hang answers nothing until it is cleared" {
	post /control '{"fault":"hang","endpoint":"authorize"}' >/dev/null
	run -28 curl -s --max-time 1 -d "$A" "$URL/v1/authorize"
	curl -sf "$URL/health" | jq -e '.status == "UP"'
	curl -s --max-time 20 -d "$A" "$URL/v1/authorize" \
		>"$BATS_TEST_TMPDIR/late" 3>&- &
	pid=$!
	wait_until 5 calls_are "$URL" authorize 2
	post /control '{"fault":"none","endpoint":"authorize"}' >/dev/null
	wait "$pid"
	jq -e '.status == "SUCCESS"' "$BATS_TEST_TMPDIR/late"
}

@test "control shows and changes settings, and refuses bad ones" {
	run -0 post /control '{"fault":"fail","endpoint":"settle","failureRate":0.25,"delayMs":[3,4]}'
	jq -e '.settle == {"fault":"fail","failureRate":0.25,"delayMs":[3,4]}
		and .authorize.fault == "none"' <<<"$output"
	curl -s "$URL/control" | jq -e '.settle.fault == "fail"'
	for body in '{"fault":"slow"}' '{"endpoint":"capture"}' \
		'{"failureRate":1.5}' '{"failureRate":"0.1"}' '{"delayMs":[5,1]}' \
		'{"delayMs":[-1,3]}' '{"delay":[1,2]}' '{"fault":"fail"'; do
		bad_request "$(status POST /control "$body")"
	done
	curl -s "$URL/control" | jq -e '.settle.fault == "fail" and
		.authorize.fault == "none" and .authorize.failureRate == 0'
}

@test "a call takes at least its delay" {
	post /control '{"endpoint":"settle","delayMs":[200,200]}' >/dev/null
	t=$(curl -s -o /dev/null -w '%{time_total}' -d "$S" "$URL/v1/settle")
	awk -v t="$t" 'BEGIN { exit !(t >= 0.2) }'
}

@test "500 concurrent delayed calls finish together" {
	post /control '{"endpoint":"authorize","delayMs":[200,200]}' >/dev/null
	for _ in $(seq 250); do
		echo "url = \"$URL/v1/authorize\""
	done >"$BATS_TEST_TMPDIR/urls"
	start=$(date +%s%N)
	for n in 1 2; do
		curl -s --no-progress-meter -Z --parallel-max 250 \
			-K "$BATS_TEST_TMPDIR/urls" -d "${A/k1/many}" \
			>"$BATS_TEST_TMPDIR/out$n" 3>&- &
	done
	wait
	ms=$((($(date +%s%N) - start) / 1000000))
	echo "500 calls of 200 ms took $ms ms"
	[ "$ms" -ge 200 ] && [ "$ms" -lt 10000 ]
	[ "$(cat "$BATS_TEST_TMPDIR"/out[12] | jq -s 'map(select(.status == "SUCCESS")) | length')" -eq 500 ]
	curl -s "$URL/stats?endpoint=authorize&key=many" | jq -e '.calls == 500'
}

@test "the same seed gives the same first approval number" {
	local n args=(--authorize-delay 0 --authorize-failure-rate 0)
	for n in 1 2 3; do
		start_pg "$BATS_TEST_TMPDIR/s$n" --seed $((n == 3 ? 43 : 42)) "${args[@]}"
		curl -s -d "$A" "$PG_URL/v1/authorize" | jq -r .approvalNumber \
			>"$BATS_TEST_TMPDIR/app$n"
		kill "$PG_PID"
	done
	grep -q '^APP' "$BATS_TEST_TMPDIR/app1"
	cmp "$BATS_TEST_TMPDIR/app1" "$BATS_TEST_TMPDIR/app2"
	run ! cmp -s "$BATS_TEST_TMPDIR/app1" "$BATS_TEST_TMPDIR/app3"
}

@test "flags beat the environment; empty variables are unset; --loadtest lowers default rates" {
	PAY_PG_LOADTEST_MODE=true PAY_PG_SETTLE_DELAY=7-9 PAY_PG_REFUND_DELAY='' \
		PAY_PG_AUTHORIZE_DELAY=3-4 PAY_PG_REFUND_FAILURE_RATE=0.5 \
		start_pg "$BATS_TEST_TMPDIR/p" --settle-delay 1-2 \
		--authorize-failure-rate 0.25 --fault hang:settle --fault fail:refund
	run -0 curl -s "$PG_URL/control"
	jq -e '. == {
		"authorize":{"fault":"none","failureRate":0.25,"delayMs":[3,4]},
		"settle":{"fault":"hang","failureRate":0.0001,"delayMs":[1,2]},
		"refund":{"fault":"fail","failureRate":0.5,"delayMs":[50,150]}}' <<<"$output"
}

@test "prints the usage with -h and the version with -V" {
	run -0 --separate-stderr mockpg -h
	[[ ${lines[0]} == "usage: mockpg [-hVv] "* ]]
	[ -z "$stderr" ]
	run -0 mockpg -V
	[[ $output == "mockpg (paykit) "* ]]
}

@test "refuses bad flags with exit 64 and one line" {
	while IFS='|' read -r flag value reason; do
		run -64 --separate-stderr timeout 5 mockpg "$flag" "$value"
		assert_one_line_stderr "mockpg: $flag '$value': $reason (see 'mockpg -h')"
	done <<'EOF'
--listen|127.0.0.1:abc|port is not a number from 0 to 65535
--listen|127.0.0.1:70000|port is not a number from 0 to 65535
--listen|127.0.0.1|expected ADDR:PORT
--authorize-failure-rate|2|expected a rate from 0 to 1
--settle-failure-rate|-0.1|expected a rate from 0 to 1
--refund-delay|15-5|minimum is greater than maximum
--authorize-delay|-5-10|expected MIN-MAX in milliseconds
--settle-delay|5-x|expected MIN-MAX in milliseconds
--seed|-1|expected an integer from 0 to 18446744073709551615
--fault|slow|mode must be none, fail, hang, http500, garbage or close
--fault|hang:capture|endpoint must be authorize, settle, refund or all
EOF
}

@test "refuses an unknown option, a missing value and an operand" {
	run -64 --separate-stderr mockpg --bogus
	assert_one_line_stderr "mockpg: unknown option '--bogus' (see 'mockpg -h')"
	run -64 --separate-stderr mockpg -vx
	assert_one_line_stderr "mockpg: unknown option '-x' (see 'mockpg -h')"
	run -64 --separate-stderr mockpg --seed
	assert_one_line_stderr "mockpg: option '--seed' needs a value (see 'mockpg -h')"
	run -64 --separate-stderr mockpg extra
	assert_one_line_stderr "mockpg: argument 'extra': mockpg takes no operands (see 'mockpg -h')"
}

@test "the usage is the man page SYNOPSIS" {
	# Both wrap; compare the words.
	usage=$(mockpg -h | sed 's/^usage: //' | tr -s ' \t\n' '   ' |
		sed 's/^ //; s/ $//')
	synopsis=$(mandoc -Tascii "$TOP/man/mockpg.8" | col -b |
		sed -n '/^SYNOPSIS/,/^$/{/^SYNOPSIS/d;p;}' | tr -s ' \t\n' '   ' |
		sed 's/^ //; s/ $//')
	[ "$usage" = "$synopsis" ]
}

@test "refuses bad environment values with exit 78 and one line" {
	while IFS='|' read -r var value reason; do
		run -78 --separate-stderr env "$var=$value" timeout 5 mockpg
		assert_one_line_stderr "mockpg: $var '$value': $reason"
	done <<'EOF'
PAY_PG_LISTEN|127.0.0.1:abc|port is not a number from 0 to 65535
PAY_PG_AUTHORIZE_FAILURE_RATE|2|expected a rate from 0 to 1
PAY_PG_SETTLE_DELAY|15-5|minimum is greater than maximum
PAY_PG_REFUND_DELAY|-5|expected MIN-MAX in milliseconds
PAY_PG_SEED|abc|expected an integer from 0 to 18446744073709551615
PAY_PG_LOADTEST_MODE|maybe|expected true or false
EOF
}

@test "a port in use exits 75 with one line" {
	run -75 --separate-stderr timeout 5 mockpg -l "${URL#http://}"
	assert_one_line_stderr "mockpg: bind '${URL#http://}': Address already in use"
}

@test "SIGTERM exits 0 with a hung request outstanding" {
	start_pg "$BATS_TEST_TMPDIR/t" --fault hang:authorize --settle-delay 30000 \
		--settle-failure-rate 0
	curl -s --max-time 20 -d "$A" "$PG_URL/v1/authorize" 3>&- &
	hung=$!
	curl -s --max-time 20 -d "$S" "$PG_URL/v1/settle" \
		>"$BATS_TEST_TMPDIR/settled" 3>&- &
	slow=$!
	wait_until 5 calls_are "$PG_URL" authorize 1
	wait_until 5 calls_are "$PG_URL" settle 1
	kill -TERM "$PG_PID"
	wait_until 5 gone "$PG_PID"
	rc=0
	wait "$PG_PID" || rc=$?
	[ "$rc" -eq 0 ]
	# The hung call is dropped, the delayed one answered at once.
	rc=0
	wait "$hung" || rc=$?
	[ "$rc" -eq 52 ]
	wait "$slow"
	jq -e '.status == "SUCCESS"' "$BATS_TEST_TMPDIR/settled"
	run -0 cat "$BATS_TEST_TMPDIR/t.err"
	[ "${#lines[@]}" -eq 2 ]
	[[ ${lines[0]} == "mockpg: listening on $PG_URL "* ]]
	[ "${lines[1]}" = "mockpg: stopped on SIGTERM after 2 calls" ]
}
