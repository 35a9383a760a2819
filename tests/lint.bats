#!/usr/bin/env bats
# make lint: clang-format, banned functions, SQL built at run time, the
# shell scripts, the man pages, the systemd units and the compose file.
# shellcheck disable=SC2154 # bats' run sets output.

load test_helper

@test "make lint passes" {
	run make -s -C "$TOP" lint
	echo "$output" | tail -n 40
	[ "$status" -eq 0 ]
}
