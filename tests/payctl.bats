#!/usr/bin/env bats
# payctl's dispatcher and payctl config.

load test_helper

@test "help lists the commands and needs no database" {
	PAY_DB_PORT=1 run -0 payctl help
	[[ $output == *migrate* ]]
	[[ $output == *config* ]]
}

@test "an unknown command is exit 64 with one line" {
	run -64 --separate-stderr payctl frobnicate
	assert_one_line_stderr "payctl: 'frobnicate' is not a payctl command (see 'payctl help')"
}

@test "no command prints the usage and exits 64" {
	run -64 payctl
}

@test "-V prints the version" {
	run -0 payctl -V
	[[ $output == "payctl (paykit) "* ]]
}

@test "config shows each setting's source and masks secrets" {
	PAY_DB_PASSWORD=hunter2 run -0 payctl config -X sasl.password=topsecret -X linger.ms=5
	[[ $output != *hunter2* ]]
	[[ $output != *topsecret* ]]
	echo "$output" | jq -e '.db_password.value == "********" and
		.db_password.source == "env" and .db_port.source == "env" and
		.kafka["linger.ms"] == "5"'
}

@test "config reads the file named by PAY_CONFIG, the environment wins" {
	printf 'topic_prefix = fromfile.\npg_timeout = 3s\n# comment\nkafka.linger.ms = 9\n' >"$BATS_TEST_TMPDIR/c.conf"
	PAY_CONFIG="$BATS_TEST_TMPDIR/c.conf" PAY_PG_TIMEOUT=4s run -0 payctl config
	echo "$output" | jq -e '.topic_prefix.source == "file" and
		.pg_timeout.value == "4s" and .pg_timeout.source == "env" and
		.kafka["linger.ms"] == "9"'
}

@test "config refuses -X without key=value" {
	run -64 --separate-stderr payctl config -X novalue
	assert_one_line_stderr "*'-X': 'novalue' is not key=value*"
}

@test "a closed stdout pipe ends quietly" {
	run -0 --separate-stderr bash -c 'payctl config | true'
	[ -z "$stderr" ]
}
