#!/usr/bin/env bats
# scripts/leakcheck: the programs' main paths on the suite's stack under
# valgrind's memcheck (the quick set, a minute or so) and built with ASan
# and UBSan (every path, half a minute): no definite leak, no invalid
# access, no undefined behaviour.  scripts/leakcheck alone runs every path
# under valgrind.
# shellcheck disable=SC2154 # bats' run sets output and stderr.

load test_helper

@test "every program's main path runs under valgrind with no leak and no invalid access" {
	run --separate-stderr leakcheck -s quick -l "$BATS_FILE_TMPDIR/logs"
	[ "$status" -eq 0 ] || {
		echo "$stderr" >&2
		return 1
	}
	echo "$output" | jq -e -s 'length >= 16 and all(.ok and .errors == 0 and .definitely_lost == 0)'
	# Each program was in it, the daemons stopped by SIGTERM.
	for r in payctl-migrate payctl-authorize payctl-authorize-stream outbox-relay-once \
		settle-once ledger-apply-once payctl-refund refund-once dbstat devbroker mockpg loadgen; do
		echo "$output" | jq -e -s --arg r "$r" 'any(.run == $r and .ok)' >/dev/null
	done
	# loadgen's echo targets ran under valgrind too.
	[ "$(find "$BATS_FILE_TMPDIR/logs" -name 'loadgen.*.vg' | wc -l)" -ge 2 ]
	assert_one_line_stderr "leakcheck: * runs, 0 with a leak or an invalid access, 0 with another exit status"
}

@test "every program's main paths run under ASan and UBSan with no report" {
	run --separate-stderr leakcheck -s full -t asan -l "$BATS_FILE_TMPDIR/asan"
	[ "$status" -eq 0 ] || {
		echo "$stderr" >&2
		return 1
	}
	echo "$output" | jq -e -s 'length >= 33 and all(.ok and .errors == 0 and .definitely_lost == 0)'
	assert_one_line_stderr "leakcheck: * runs, 0 with a leak or an invalid access, 0 with another exit status"
	run -1 grep -rl -e 'Sanitizer' -e 'runtime error:' "$BATS_FILE_TMPDIR/asan"
}

@test "leakcheck refuses an unknown set" {
	run -64 --separate-stderr leakcheck -s most
	assert_one_line_stderr "leakcheck: set 'most' is not quick or full (see 'leakcheck -h')"
}
