#!/usr/bin/env bats
# payctl list: payments as JSON Lines, newest first, by status, merchant
# and time.
# shellcheck disable=SC2154 # bats' run sets output and stderr.

load test_helper
load payctl_helper

setup_file() {
	use_own_db
	pg_save
	# Three merchants; LA's payments were made a day and an hour ago.
	authorized LA 1 >/dev/null
	authorized LA 2 >/dev/null
	authorized LA 3 --no-capture >/dev/null
	authorized LB 4 >/dev/null
	authorized LC 5 --no-capture >/dev/null
	sql "UPDATE payment SET created_at = NOW(6) - INTERVAL 1 DAY WHERE amount = 1;
		UPDATE payment SET created_at = NOW(6) - INTERVAL 1 HOUR WHERE amount = 2"
}

teardown_file() {
	pg_leave
}

@test "-h prints the usage without a database" {
	PAY_DB_PORT=1 run -0 payctl list -h
	[ "$output" = "usage: payctl list [-h] [-m merchant] [-n limit] [-s status] [-t since]" ]
}

@test "lists every payment, newest first" {
	run -0 --separate-stderr payctl list
	[ -z "$stderr" ]
	echo "$output" | jq -e -s 'map(.amount) == [5, 4, 3, 2, 1] and
		all(has("payment_id") and has("status") and has("created_at"))'
}

@test "filters by status and merchant" {
	run -0 payctl list --status AUTHORIZED
	echo "$output" | jq -e -s 'map(.amount) == [5, 3]'
	run -0 payctl list -m LA
	echo "$output" | jq -e -s 'map(.amount) == [3, 2, 1]'
	run -0 payctl list -m LA -s CAPTURE_REQUESTED
	echo "$output" | jq -e -s 'map(.amount) == [2, 1]'
	run -0 --separate-stderr payctl list -m NOBODY
	[ -z "$output" ] && [ -z "$stderr" ]
}

@test "filters by a duration or a timestamp" {
	run -0 payctl list --since 30m
	echo "$output" | jq -e -s 'map(.amount) == [5, 4, 3]'
	run -0 payctl list -t 2h -m LA
	echo "$output" | jq -e -s 'map(.amount) == [3, 2]'
	run -0 payctl list -t "$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%SZ)"
	echo "$output" | jq -e -s 'map(.amount) == [5, 4, 3, 2]'
	run -0 payctl list -t "$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%S.000001+00:00)"
	echo "$output" | jq -e -s 'length == 4'
	run -0 payctl list -t "$(date -u -d '+1 day' +%Y-%m-%d)"
	[ -z "$output" ]
}

@test "--limit caps the lines" {
	run -0 payctl list -n 2
	echo "$output" | jq -e -s 'map(.amount) == [5, 4]'
	run -0 payctl list --limit 1 --merchant LA
	echo "$output" | jq -e -s 'map(.amount) == [3]'
}

@test "refuses bad filters with exit 64" {
	local bad
	for bad in "-s WHATEVER" "-s authorized" "-m" "-n 0" "-n -1" "-n abc" "-n 100001" \
		"-t yesterday" "-t 2026-13-01" "-t 2026-02-30" "-t 2026-01-01T25:00:00Z" \
		"-t 2026-01-01T10:00:00" "-t -1h" "-t 0s" "--bogus" "extra"; do
		# shellcheck disable=SC2086 # split on purpose
		PAY_DB_PORT=1 run -64 --separate-stderr payctl list $bad
		assert_one_line_stderr "payctl list: *"
		[ -z "$output" ]
	done
	PAY_DB_PORT=1 run -64 --separate-stderr payctl list -m 'a b'
	assert_one_line_stderr "payctl list: option '--merchant': 'a b' is not 1 to 32 printable characters without spaces (see 'payctl list -h')"
	PAY_DB_PORT=1 run -64 --separate-stderr payctl list -t tomorrow
	assert_one_line_stderr "payctl list: option '--since': 'tomorrow' is not a time (2026-11-21T08:00:00Z) or a duration (15m, 1h, 7d) (see 'payctl list -h')"
}
