#!/usr/bin/env bats
# devbroker: the in-memory Kafka broker of the dev stack, driven with kcat.
# shellcheck disable=SC2154 # bats' run sets stderr_lines.

load test_helper

# A short session timeout: the mock makes a member that joins after another
# left wait for it, less a second; below the 3 s first-join delay a new
# group never forms (see CAVEATS in devbroker(8)).
GROUP_OPTS=(-X auto.offset.reset=earliest -X session.timeout.ms=6000
	-X heartbeat.interval.ms=500)

gone() {
	! kill -0 "$1" 2>/dev/null
}

# Not jq -e alone: jq 1.6 exits 0 on an empty file.
json_ready() {
	local addr
	addr=$(jq -r '.bootstrap // empty' "$1" 2>/dev/null) && [ -n "$addr" ]
}

# log_count FILE PATTERN: how many lines of FILE match PATTERN.
log_count() {
	grep -c -- "$2" "$1" || true
}

log_grew() {
	[ "$(log_count "$1" "$2")" -gt "$3" ]
}

# stop_broker SIGNAL: send it and wait; fails unless devbroker exits 0.
stop_broker() {
	local rc=0
	kill -"$1" "$BROKER_PID"
	wait "$BROKER_PID" || rc=$?
	[ "$rc" -eq 0 ]
}

# start_broker NAME ARGS...: run devbroker in the background with its output
# in $BATS_FILE_TMPDIR/NAME.{out,err}; sets BROKER_PID and BROKER_ADDR.
start_broker() {
	local name=$1
	shift
	devbroker "$@" >"$BATS_FILE_TMPDIR/$name.out" \
		2>"$BATS_FILE_TMPDIR/$name.err" 3>&- &
	BROKER_PID=$!
	wait_until 10 json_ready "$BATS_FILE_TMPDIR/$name.out"
	BROKER_ADDR=$(jq -r .bootstrap "$BATS_FILE_TMPDIR/$name.out")
}

setup_file() {
	start_broker main -p 5 -t pay.pre:3 -t pay.dflt
	export BROKER_PID BROKER_ADDR MAIN_PID=$BROKER_PID
	export OUT="$BATS_FILE_TMPDIR/main.out" ERR="$BATS_FILE_TMPDIR/main.err"
}

# A test that started its own broker and failed before stopping it.
teardown() {
	if [ "$BROKER_PID" != "$MAIN_PID" ] && ! gone "$BROKER_PID"; then
		kill -TERM "$BROKER_PID"
	fi
}

teardown_file() {
	kill -TERM "$BROKER_PID" 2>/dev/null || true
	wait_until 10 gone "$BROKER_PID"
}

consume() {
	timeout 20 kcat -C -b "$BROKER_ADDR" -t "$1" -e -q -f '%k=%s\n' | sort
}

group_consume() {
	timeout 30 kcat -b "$BROKER_ADDR" -G "$1" "${GROUP_OPTS[@]}" -e -q \
		-f '%k=%s\n' "$2" | sort
}

partitions_of() {
	kcat -L -b "$BROKER_ADDR" -t "$1" -m 5 |
		sed -n 's/.* with \([0-9]*\) partitions:$/\1/p'
}

@test "prints one JSON line with a loopback bootstrap address" {
	run -0 jq -e -c . "$OUT"
	[ "${#lines[@]}" -eq 1 ]
	run -0 jq -e -r '.brokers == 1 and (.bootstrap | test("^127\\.0\\.0\\.1:[0-9]+$"))' "$OUT"
	[ "$output" = true ]
}

@test "logs nothing on stderr while idle" {
	run -0 cat "$ERR"
	[ -z "$output" ]
}

@test "kcat -L lists the broker" {
	run -0 kcat -L -b "$BROKER_ADDR" -m 5
	[[ $output == *" 1 brokers:"* ]]
	[[ $output == *"broker 1 at $BROKER_ADDR"* ]]
}

@test "-t creates topics with their own or the -p partition count" {
	run -0 partitions_of pay.pre
	[ "$output" = 3 ]
	run -0 partitions_of pay.dflt
	[ "$output" = 5 ]
}

@test "a topic first named by a client gets the mock's fixed 4 partitions" {
	run -0 partitions_of pay.auto
	[ "$output" = 4 ]
}

@test "kcat round-trips keyed messages" {
	printf 'k1:one\nk2:two\nk3:three\n' |
		kcat -P -b "$BROKER_ADDR" -t pay.rt -K:
	run -0 consume pay.rt
	[ "$output" = "$(printf 'k1=one\nk2=two\nk3=three')" ]
}

@test "a consumer group resumes from its committed offsets" {
	printf 'a:1\nb:2\n' | kcat -P -b "$BROKER_ADDR" -t pay.grp -K:
	run -0 group_consume g1 pay.grp
	[ "$output" = "$(printf 'a=1\nb=2')" ]
	printf 'c:3\n' | kcat -P -b "$BROKER_ADDR" -t pay.grp -K:
	run -0 group_consume g1 pay.grp
	[ "$output" = c=3 ]
}

@test "SIGUSR1 takes the brokers down and SIGUSR2 brings them back with the data" {
	printf 'x:before\n' | kcat -P -b "$BROKER_ADDR" -t pay.outage -K:
	run -0 group_consume g2 pay.outage
	[ "$output" = x=before ]

	n=$(log_count "$ERR" 'brokers down')
	kill -USR1 "$BROKER_PID"
	wait_until 10 log_grew "$ERR" '^devbroker: brokers down$' "$n"
	run -1 kcat -L -b "$BROKER_ADDR" -m 1

	n=$(log_count "$ERR" 'brokers up')
	kill -USR2 "$BROKER_PID"
	wait_until 10 log_grew "$ERR" '^devbroker: brokers up$' "$n"
	run -0 kcat -L -b "$BROKER_ADDR" -m 5
	run -0 consume pay.outage
	[ "$output" = x=before ]
	printf 'y:after\n' | kcat -P -b "$BROKER_ADDR" -t pay.outage -K:
	run -0 group_consume g2 pay.outage
	[ "$output" = y=after ]
}

@test "-b 3 runs three brokers" {
	start_broker three -b 3
	run -0 jq -e '.brokers == 3 and (.bootstrap | split(",") | length == 3)' \
		"$BATS_FILE_TMPDIR/three.out"
	run -0 kcat -L -b "$BROKER_ADDR" -m 5
	[[ $output == *" 3 brokers:"* ]]
	stop_broker TERM
}

@test "SIGTERM stops it with exit 0" {
	start_broker term
	stop_broker TERM
	run -0 cat "$BATS_FILE_TMPDIR/term.err"
	[ "$output" = "devbroker: stopping on SIGTERM" ]
}

@test "SIGINT stops it with exit 0, even started as a background job" {
	start_broker int
	stop_broker INT
	run -0 cat "$BATS_FILE_TMPDIR/int.err"
	[ "$output" = "devbroker: stopping on SIGINT" ]
}

@test "refuses a partition count that is not a number" {
	run --separate-stderr -64 devbroker --partitions abc
	[ -z "$output" ]
	assert_one_line_stderr "devbroker: partitions 'abc': not a number (see 'devbroker -h')"
}

@test "refuses a partition count out of range" {
	run --separate-stderr -64 devbroker -t pay.x:0
	assert_one_line_stderr "devbroker: partitions '0': not between 1 and 1000 (see 'devbroker -h')"
}

@test "refuses an invalid topic name" {
	run --separate-stderr -64 devbroker -t 'pay/x'
	assert_one_line_stderr "devbroker: topic 'pay/x': not a valid Kafka topic name (see 'devbroker -h')"
}

@test "refuses a topic given twice" {
	run --separate-stderr -64 devbroker -t pay.x -t pay.x:2
	assert_one_line_stderr "devbroker: topic 'pay.x': given twice (see 'devbroker -h')"
}

@test "refuses an unknown option and an operand" {
	run --separate-stderr -64 devbroker --bogus
	assert_one_line_stderr "devbroker: unknown option '--bogus' (see 'devbroker -h')"
	run --separate-stderr -64 devbroker extra
	assert_one_line_stderr "devbroker: argument 'extra': devbroker takes no operands (see 'devbroker -h')"
}

@test "--help prints the usage on stdout and exits 0" {
	run --separate-stderr -0 devbroker --help
	[[ $output == "usage: devbroker [-hV] "* ]]
	[ -z "$stderr" ]
}

@test "the usage line is the man page SYNOPSIS" {
	usage=$(devbroker -h | sed 's/^usage: //')
	synopsis=$(mandoc -Tascii "$TOP/man/devbroker.8" | col -b |
		sed -n '/^SYNOPSIS/{n;p;}' | sed 's/^ *//')
	[ "$usage" = "$synopsis" ]
}

@test "--version prints the version and exits 0" {
	run -0 devbroker --version
	[[ $output == "devbroker (paykit) "* ]]
}
