#!/usr/bin/env bats
# scripts/fault-matrix in a short configuration: every fault once, on the
# matrix's own private stack (it stops and kills MariaDB and the broker,
# so it must not touch the suite's), and nothing lost, doubled or stuck.
# shellcheck disable=SC2154 # bats' run sets output and stderr.

load test_helper

@test "-h describes the matrix without starting anything" {
	run -0 fault-matrix -h
	[[ $output == *"fault-matrix [-chk] [-r rate]"* ]]
	[[ $output == *"kill-relay"* ]]
}

@test "refuses a bad rate, an unknown phase or an operand" {
	run -64 --separate-stderr fault-matrix -r fast
	[[ $stderr == "fault-matrix: rate 'fast' is not a whole number"* ]]
	[ -z "$output" ]
	run -64 --separate-stderr fault-matrix -f baseline,kill-everything
	[[ $stderr == "fault-matrix: 'kill-everything' is not a phase"* ]]
	run -64 --separate-stderr fault-matrix extra
}

@test "every fault, one at a time: the pipeline drains and every invariant holds" {
	local rc=0
	# About 100 payments a second for 3 s per phase, faults of 2 s.  A
	# failed run keeps its state (logs, audits) under TMPDIR: bats's own
	# (run bats with --no-tempdir-cleanup to look at it).
	# No -c: no client retries a key; what a killed stream leaves behind
	# is finished by payctl recover, which the drain runs as the
	# operators' timer would.
	TMPDIR=$BATS_FILE_TMPDIR fault-matrix -r 100 -d 3 -F 2 -D 45 -n 6 -S 42 \
		>"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" || rc=$?
	cat "$BATS_TEST_TMPDIR/err" >&2
	[ "$rc" -eq 0 ] || {
		echo "fault-matrix exited $rc; phases that failed:" >&2
		jq -c 'select(.fault) | select(.audit == "error" or .drained != true
			or .new_violations != 0 or .injected != true)' \
			"$BATS_TEST_TMPDIR/out" >&2
		return 1
	}
	# One line per phase, the Kafka read-back, the verdict; all JSON.
	jq -e -s 'length == 16 and (map(select(.fault)) | length == 14)' \
		"$BATS_TEST_TMPDIR/out"
	jq -e -s 'map(select(.fault)) | all(.drained and .audit == "ok"
		and .violations == 0)' "$BATS_TEST_TMPDIR/out"
	# Gateway and database faults refuse or fail some authorizations;
	# the baseline loses none.
	jq -e -s 'map(select(.fault == "baseline"))[0].payments == 300' \
		"$BATS_TEST_TMPDIR/out" || {
		jq -c 'select(.fault == "baseline")' "$BATS_TEST_TMPDIR/out" >&2
		return 1
	}
	jq -e -s 'map(select(.fault)) | all(.recovered >= 0 and .client_retries == null)' \
		"$BATS_TEST_TMPDIR/out"
	jq -e -s 'map(select(.fault == "kill-stream"))[0].stream.ok and
		map(select(.fault == "dlq"))[0].dlq.ok and
		map(select(.fault == "kill-relay"))[0].restarts["outbox-relay"] >= 1' \
		"$BATS_TEST_TMPDIR/out"
	jq -e -s 'map(select(.check == "kafka"))[0].missing == 0' "$BATS_TEST_TMPDIR/out"
	tail -n 1 "$BATS_TEST_TMPDIR/out" | jq -e '.matrix == "ok" and
		.violations == 0 and .faults_injected == 13 and .payments >= 2000'
}
