#!/usr/bin/env bats
# scripts/devstack: the embedded stack the suite runs on, and a private
# second stack for up/down behaviour.

load test_helper

@test "status shows every service up with its address" {
	run -0 devstack status
	echo "$output" | jq -e -s 'length == 3 and all(.state == "up")'
}

@test "env prints export lines every tool reads" {
	run -0 devstack env
	[[ $output == *"export PAY_DB_PORT='$PAY_DB_PORT'"* ]]
	[[ $output == *"export PAY_KAFKA_BROKERS='$PAY_KAFKA_BROKERS'"* ]]
	[[ $output == *"export PAY_PG_URL='$PAY_PG_URL'"* ]]
}

@test "the database answers payuser/paypass on paydb" {
	run -0 mariadb --no-defaults -h127.0.0.1 -P"$PAY_DB_PORT" -upayuser -ppaypass paydb -N -e 'select 1'
	[ "$output" = 1 ]
}

@test "kcat lists the broker and round-trips a message" {
	run -0 kcat -L -b "$PAY_KAFKA_BROKERS" -m 5
	[[ $output == *"1 brokers:"* ]]
	echo "k1:hello" | kcat -P -b "$PAY_KAFKA_BROKERS" -t t.devstack.roundtrip -K:
	run -0 timeout 20 kcat -q -C -b "$PAY_KAFKA_BROKERS" -t t.devstack.roundtrip -e -c 1 -f '%k=%s\n'
	[ "$output" = "k1=hello" ]
}

@test "the gateway answers its health endpoint" {
	run -0 curl -sf "$PAY_PG_URL/health"
	echo "$output" | jq -e '.status == "UP"'
}

@test "up twice is harmless and keeps the same processes" {
	before=$(devstack status | jq -r .pid)
	run -0 devstack up
	[ "$(devstack status | jq -r .pid)" = "$before" ]
}

@test "kafka-down makes the broker unreachable, kafka-up brings it back with its data" {
	echo "k:kept" | kcat -P -b "$PAY_KAFKA_BROKERS" -t t.devstack.outage -K:
	run -0 devstack kafka-down
	run -1 timeout 10 kcat -L -b "$PAY_KAFKA_BROKERS" -m 1
	run -0 devstack kafka-up
	run -0 timeout 20 kcat -q -C -b "$PAY_KAFKA_BROKERS" -t t.devstack.outage -e -c 1 -f '%s\n'
	[ "$output" = kept ]
}

@test "a private stack comes up on free ports and down leaves no process" {
	export PAY_DEVSTACK_DIR="$BATS_TEST_TMPDIR/stack"
	export PAY_DEVSTACK_DB_PORT=0 PAY_DEVSTACK_PG_PORT=0
	run -0 devstack up
	pids=$(devstack status | jq -r .pid)
	[ "$(echo "$pids" | wc -l)" -eq 3 ]
	run -0 devstack down
	for p in $pids; do
		! kill -0 "$p" 2>/dev/null
	done
	run -69 devstack status
}

@test "a database port in use is reported clearly" {
	export PAY_DEVSTACK_DIR="$BATS_TEST_TMPDIR/busy"
	export PAY_DEVSTACK_DB_PORT="$PAY_DB_PORT"
	run -69 --separate-stderr devstack up
	assert_one_line_stderr "devstack: port $PAY_DB_PORT on 127.0.0.1 is in use*"
}

@test "an unknown subcommand is a usage error" {
	run -64 devstack frob
}

@test "db-stop and db-start keep the database's port, even one picked free" {
	local q=13306 holder port
	export PAY_DEVSTACK_DIR="$BATS_TEST_TMPDIR/restart"
	export PAY_DEVSTACK_DB_PORT=0 PAY_DEVSTACK_PG_PORT=0
	# Hold the first free port, so that up picks a later one: a restart
	# that picked again would take the held one once it is free.
	while ss -Hltn "sport = :$q" | grep -q .; do q=$((q + 1)); done
	socat "TCP-LISTEN:$q,bind=127.0.0.1,reuseaddr" /dev/null 3>&- &
	holder=$!
	wait_until 5 bash -c "ss -Hltn 'sport = :$q' | grep -q ."
	run -0 devstack up
	port=$(cat "$PAY_DEVSTACK_DIR/mariadb/port")
	[ "$port" -gt "$q" ]
	kill "$holder"
	wait "$holder" || true
	run -0 devstack db-stop
	run -69 devstack status
	run -0 devstack db-start
	[ "$(cat "$PAY_DEVSTACK_DIR/mariadb/port")" = "$port" ]
	[[ $(devstack env) == *"export PAY_DB_PORT='$port'"* ]]
	run -0 mariadb --no-defaults -h127.0.0.1 -P"$port" -upayuser -ppaypass \
		paydb -N -e 'select @@tmpdir'
	# Its temporary files stay under the state directory.
	[ "$output" = "$PAY_DEVSTACK_DIR/mariadb/tmp" ]
	run -0 devstack db-kill
	run -0 devstack db-start
	[ "$(cat "$PAY_DEVSTACK_DIR/mariadb/port")" = "$port" ]
	run -0 devstack down
}

@test "three private stacks started at once on free ports all come up" {
	local i pids=() ports failed=
	# They look for free ports at the same time and pick the same ones:
	# the ones that lose a port when they bind it take the next.  And each
	# bootstrap keeps its temporary tables where the others' servers, as
	# they start, do not clean them up.
	for i in 1 2 3; do
		PAY_DEVSTACK_DIR="$BATS_TEST_TMPDIR/s$i" PAY_DEVSTACK_DB_PORT=0 \
			PAY_DEVSTACK_PG_PORT=0 devstack up >"$BATS_TEST_TMPDIR/up$i" 2>&1 &
		pids+=($!)
	done
	# All of them finished, so that teardown leaves no half-started one.
	for i in 0 1 2; do
		wait "${pids[$i]}" || failed="$failed $((i + 1))"
	done
	for i in $failed; do
		cat "$BATS_TEST_TMPDIR/up$i"
	done
	[ -z "$failed" ]
	ports=$(cat "$BATS_TEST_TMPDIR"/s*/mariadb/port | sort -u | wc -l)
	[ "$ports" = 3 ]
	for i in 1 2 3; do
		PAY_DEVSTACK_DIR="$BATS_TEST_TMPDIR/s$i" run devstack status
		echo "$output" # what is down, should it fail
		[ "$status" = 0 ]
		PAY_DEVSTACK_DIR="$BATS_TEST_TMPDIR/s$i" run -0 devstack down
	done
}

teardown() {
	local d
	# A private stack a failed test left up.
	for d in "$BATS_TEST_TMPDIR/stack" "$BATS_TEST_TMPDIR/restart" \
		"$BATS_TEST_TMPDIR"/s[123]; do
		[ ! -d "$d" ] || PAY_DEVSTACK_DIR=$d devstack down 2>/dev/null || true
	done
}
