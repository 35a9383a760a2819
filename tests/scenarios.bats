#!/usr/bin/env bats
# The scenario scripts that CI pipelines run against a deployed stack
# (scripts/smoke, scripts/circuit-breaker with cbtest), here against the
# embedded stack with the real daemons running: outbox-relay, settle,
# refund and ledger-apply.

load test_helper

setup_file() {
	use_own_db
	# Consumer groups form against the dev broker only with a session
	# timeout of a few seconds (devbroker(8)); the breaker waits briefly.
	export PAY_CONFIG="$BATS_FILE_TMPDIR/scenarios.conf"
	printf 'kafka.session.timeout.ms = 6000\n' >"$PAY_CONFIG"
	export PAY_BREAKER_KAFKA_WAIT_OPEN=3s PAY_KAFKA_MESSAGE_TIMEOUT=2s
	curl -sf -d '{"fault":"none","endpoint":"all","failureRate":0}' \
		"$PAY_PG_URL/control" >/dev/null
	for d in outbox-relay settle refund ledger-apply; do
		"$d" 2>"$BATS_FILE_TMPDIR/$d.log" &
		echo $! >"$BATS_FILE_TMPDIR/$d.pid"
	done
}

teardown_file() {
	local d p
	for d in outbox-relay settle refund ledger-apply; do
		p=$(cat "$BATS_FILE_TMPDIR/$d.pid")
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	devstack kafka-up >/dev/null 2>&1 || true
}

@test "smoke: one authorization goes through the relay, settlement and the ledger" {
	run -0 --separate-stderr timeout 120 smoke -t 60
	echo "$output" | jq -e -s 'map(.step) == ["authorize","publish","settle","ledger","done"] and
		all(.ok)'
}

@test "smoke names the step that failed" {
	PAY_PG_URL=http://127.0.0.1:1 run -1 --separate-stderr smoke -t 5
	[[ $stderr == *"smoke: step 'authorize': "* ]]
	echo "$output" | jq -e '.step == "authorize" and .ok == false'
}

@test "smoke refuses a bad option" {
	run -64 --separate-stderr smoke -t soon
	assert_one_line_stderr "smoke: -t 'soon' is not a number of seconds*"
}

@test "circuit-breaker: Kafka stops and starts, the breaker cycles, no event is lost" {
	payctl breaker kafka reset >/dev/null
	run -0 --separate-stderr timeout 240 circuit-breaker \
		-o "$BATS_TEST_TMPDIR/cb.json" --open-state-wait 20 \
		--recovery-wait 2 --recovery-traffic-attempts 20
	jq -e '.pass and .final_state == "CLOSED" and .events_lost == 0 and
		.events_expected > 0 and .outbox_pending == 0 and .cycle_seen and
		.outage_authorizations_ok and .recovery_ok and
		.time_to_open_ms >= 0 and .time_to_open_ms <= 20000' "$BATS_TEST_TMPDIR/cb.json"
	jq -e '[.transitions[].to] | index("OPEN") < index("HALF_OPEN")' "$BATS_TEST_TMPDIR/cb.json"
	echo "$output" | jq -e '.pass'
}

@test "cbtest refuses to start with the breaker not CLOSED" {
	payctl breaker kafka force-open >/dev/null
	run -1 --separate-stderr cbtest
	assert_one_line_stderr "cbtest: breaker 'kafka' is FORCED_OPEN, not CLOSED*"
	payctl breaker kafka reset >/dev/null
}

@test "cbtest usage errors are exit 64 with one line" {
	run -64 --separate-stderr cbtest --outage 0
	assert_one_line_stderr "cbtest: --outage '0': not a number from 1 to 10000*"
	run -64 --separate-stderr cbtest --bogus
	assert_one_line_stderr "cbtest: unknown option '--bogus'*"
	OPEN_STATE_WAIT_SECONDS=soon run -78 --separate-stderr cbtest
	assert_one_line_stderr "cbtest: setting 'OPEN_STATE_WAIT_SECONDS': 'soon'*"
}

@test "the demo runs the main job: authorize, settle, refund, a balanced ledger" {
	# It runs its own daemons on the stack's paydb: keep them off this
	# file's topics and consumer groups.
	PAY_TOPIC_PREFIX=t.demo. PAY_SETTLE_GROUP=demo-settle \
		PAY_REFUND_GROUP=demo-refund PAY_LEDGER_GROUP=demo-ledger \
		run -0 --separate-stderr timeout 300 demo -n 40 -r 4 -t 120
	echo "$output" | jq -e -s '
		(map(select(.status == "CAPTURED")) | .[0].payments) == 36 and
		(map(select(.status == "REFUNDED")) | .[0].payments) == 4 and
		(map(select(.ledger)) | .[0].ledger.balanced)'
	[[ $stderr == *"40 of 40 authorized"* ]]
}
