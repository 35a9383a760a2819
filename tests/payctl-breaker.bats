#!/usr/bin/env bats
# The shared circuit breaker, seen through payctl: the pg breaker guards
# gateway authorizations; every transition is provoked with the mock
# gateway's fault modes, and each payctl run is a separate process sharing
# the breaker through the database.
# shellcheck disable=SC2016 # bash -c expands its tests in the child.

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
	export PAY_BREAKER_PG_WAIT_OPEN=1s
	payctl breaker pg reset >/dev/null
	# Transitions before this test's own are not its business.
	BASE=$(payctl breaker pg -n 1000 | jq '.transitions | length')
	export BASE
	pg_control '{"fault":"none","endpoint":"authorize","delayMs":[0,0]}' >/dev/null
}

teardown() {
	pg_restore
}

# The gateway's count of authorizations, all keys.
pg_total() {
	curl -sf --max-time 5 "$PAY_PG_URL/stats" | jq -r .calls.authorize
}

# authorize_n N PREFIX: N authorizations, each its own process; exit codes
# are ignored (failures are what these tests provoke).
authorize_n() {
	local i
	for i in $(seq "$1"); do
		payctl authorize -m BRK -a 1000 -k "$2-$i-$RANDOM$RANDOM" >/dev/null 2>&1 || true
	done
}

state() {
	payctl breaker pg | jq -r .state
}

transitions() {
	payctl breaker pg -n 1000 | jq -r --argjson b "$BASE" '[.transitions[$b:][].to] | join(",")'
}

@test "a new breaker is CLOSED and shows its counts and settings" {
	run -0 payctl breaker pg
	echo "$output" | jq -e '.name == "pg" and .state == "CLOSED" and
		.failed == 0 and .not_permitted == 0 and .failure_rate == null and
		.config.min_calls == 5 and .config.failure_rate == 50 and
		.config.wait_open_ms == 1000 and .config.half_open_calls == 3'
}

@test "five failed calls open it; then calls are refused without reaching the gateway" {
	pg_control '{"fault":"http500","endpoint":"authorize"}' >/dev/null
	authorize_n 5 trip
	[ "$(state)" = OPEN ]
	payctl breaker pg | jq -e '.failed == 5 and .failure_rate == 100'
	before=$(pg_total)
	run -75 --separate-stderr payctl authorize -m BRK -a 1000 -k refused-1
	assert_one_line_stderr "*circuit breaker 'pg' is open*"
	echo "$output" | jq -e '.error == "GATEWAY_ERROR"'
	[ "$(pg_total)" -eq "$before" ]
	[ "$(sql "SELECT COUNT(*) FROM payment WHERE idempotency_key = 'refused-1'")" -eq 0 ]
	payctl breaker pg | jq -e '.not_permitted >= 1'
}

@test "fewer calls than the minimum never open it" {
	pg_control '{"fault":"http500","endpoint":"authorize"}' >/dev/null
	authorize_n 4 few
	[ "$(state)" = CLOSED ]
}

@test "a success that brings the window to the minimum judges it too" {
	pg_control '{"fault":"http500","endpoint":"authorize"}' >/dev/null
	authorize_n 4 judge
	[ "$(state)" = CLOSED ]
	pg_control '{"fault":"none","endpoint":"authorize"}' >/dev/null
	authorize_n 1 judge-ok
	[ "$(state)" = OPEN ]
	payctl breaker pg | jq -e '.transitions[-1].reason | test("4 of 5 calls failed")'
}

@test "an authorization purges the breaker's buckets older than an hour" {
	# The reset in setup dropped every bucket: this run starts a new one.
	sql "INSERT INTO breaker_bucket (name, bucket, successes)
		VALUES ('pg', NOW() - INTERVAL 2 HOUR, 7)"
	authorize_n 1 purge
	[ "$(sql "SELECT COUNT(*) FROM breaker_bucket WHERE name = 'pg'
		AND bucket < NOW() - INTERVAL 1 HOUR")" = 0 ]
	payctl breaker pg | jq -e '.successful == 1'
}

@test "declines are answers, not failures" {
	pg_control '{"fault":"fail","endpoint":"authorize"}' >/dev/null
	authorize_n 6 decline
	[ "$(state)" = CLOSED ]
	payctl breaker pg | jq -e '.successful == 6 and .failed == 0'
}

@test "slow calls open it" {
	export PAY_BREAKER_PG_SLOW_CALL_DURATION=100ms
	pg_control '{"fault":"none","endpoint":"authorize","delayMs":[150,150]}' >/dev/null
	authorize_n 5 slow
	[ "$(state)" = OPEN ]
	payctl breaker pg | jq -e '.transitions[-1].reason | test("5 slow")'
}

@test "after the wait it lets probes through, and closes when they succeed" {
	pg_control '{"fault":"http500","endpoint":"authorize"}' >/dev/null
	authorize_n 5 open
	[ "$(state)" = OPEN ]
	pg_control '{"fault":"none","endpoint":"authorize"}' >/dev/null
	wait_until 5 bash -c '[ "$(payctl breaker pg | jq -r .open_until)" \< "$(date -u +%Y-%m-%dT%H:%M:%S)" ]'
	run -0 payctl authorize -m BRK -a 1000 -k probe-1
	[ "$(state)" = HALF_OPEN ]
	authorize_n 2 probe
	[ "$(state)" = CLOSED ]
	[ "$(transitions)" = OPEN,HALF_OPEN,CLOSED ]
}

@test "a failed probe opens it again" {
	pg_control '{"fault":"http500","endpoint":"authorize"}' >/dev/null
	authorize_n 5 reopen
	wait_until 5 bash -c '[ "$(payctl breaker pg | jq -r .open_until)" \< "$(date -u +%Y-%m-%dT%H:%M:%S)" ]'
	run -75 payctl authorize -m BRK -a 1000 -k badprobe
	[ "$(state)" = OPEN ]
	[ "$(transitions)" = OPEN,HALF_OPEN,OPEN ]
}

@test "a probe lease held by a killed process expires" {
	export PAY_BREAKER_PG_HALF_OPEN_CALLS=1 PAY_BREAKER_PG_PERMIT_TTL=5s PAY_PG_TIMEOUT=30s
	pg_control '{"fault":"http500","endpoint":"authorize"}' >/dev/null
	authorize_n 5 lease
	wait_until 5 bash -c '[ "$(payctl breaker pg | jq -r .open_until)" \< "$(date -u +%Y-%m-%dT%H:%M:%S)" ]'
	pg_control '{"fault":"hang","endpoint":"authorize"}' >/dev/null
	payctl authorize -m BRK -a 1000 -k holder >/dev/null 2>&1 &
	holder=$!
	wait_until 5 bash -c '[ "$(sql "SELECT COUNT(*) FROM breaker_permit")" -eq 1 ]'
	kill -9 "$holder"
	wait "$holder" || true
	pg_control '{"fault":"none","endpoint":"authorize"}' >/dev/null
	# The lease still holds: no second probe yet.
	run -75 payctl authorize -m BRK -a 1000 -k while-leased
	# Once it expires, the next call is the probe that closes the breaker.
	wait_until 10 payctl authorize -m BRK -a 1000 -k "after-lease-$RANDOM"
	[ "$(state)" = CLOSED ]
}

@test "force-open refuses every call, disable lets every call through, reset closes" {
	run -0 payctl breaker pg force-open
	echo "$output" | jq -e '.state == "FORCED_OPEN"'
	run -75 payctl authorize -m BRK -a 1000 -k forced
	pg_control '{"fault":"http500","endpoint":"authorize"}' >/dev/null
	run -0 payctl breaker pg disable
	authorize_n 6 disabled
	[ "$(state)" = DISABLED ]
	run -0 payctl breaker pg reset
	echo "$output" | jq -e '.state == "CLOSED"'
	[ "$(transitions)" = FORCED_OPEN,DISABLED,CLOSED ]
}

@test "a new process never resets the shared state" {
	run -0 payctl breaker pg force-open
	run -75 payctl authorize -m BRK -a 1000 -k newproc
	[ "$(state)" = FORCED_OPEN ]
}

@test "lists every breaker as JSON Lines" {
	payctl breaker kafka reset >/dev/null
	run -0 payctl breaker
	echo "$output" | jq -e -s 'map(.name) | index("pg") != null and index("kafka") != null'
}

@test "usage errors are exit 64 with one line" {
	run -64 --separate-stderr payctl breaker pg explode
	assert_one_line_stderr "*'explode' is not force-open, disable or reset*"
	run -64 --separate-stderr payctl breaker 'Bad Name'
	assert_one_line_stderr "*breaker name 'Bad Name'*"
	run -64 --separate-stderr payctl breaker -n x
	assert_one_line_stderr "*'--count': 'x'*"
	run -64 --separate-stderr payctl breaker pg reset extra
	assert_one_line_stderr "*unexpected argument 'extra'*"
}
