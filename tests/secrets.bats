#!/usr/bin/env bats
# Secrets: no password on a command line or in ps output, in a log line or
# in a settings dump; a password file that group or others can read is
# refused with exit 78 by every program that reads the settings.
# shellcheck disable=SC2154 # bats' run sets output and stderr.

load test_helper

admin() {
	mariadb --no-defaults -N -B -S "$PAY_DB_ADMIN_SOCKET" -u "$(id -un)" "$@"
}

setup_file() {
	use_own_db
	# An account of its own with a password no other test uses.
	SECRET=s3c-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	export SECRET
	admin -e "CREATE OR REPLACE USER 'sec_user'@'127.0.0.1' IDENTIFIED BY '$SECRET';
		GRANT ALL ON \`$PAY_DB_NAME\`.* TO 'sec_user'@'127.0.0.1'"
}

teardown_file() {
	admin -e "DROP USER IF EXISTS 'sec_user'@'127.0.0.1'"
}

teardown() {
	if [ -f "$BATS_TEST_TMPDIR/pid" ]; then
		kill -KILL "$(cat "$BATS_TEST_TMPDIR/pid")" 2>/dev/null || true
	fi
}

connected() {
	[ "$(admin -e "SELECT COUNT(*) FROM information_schema.processlist
		WHERE user = 'sec_user'")" -ge 1 ]
}

@test "no program has a password flag: a password comes from the environment or a file" {
	for p in payctl outbox-relay settle refund ledger-apply dbstat cbtest loadgen mockpg devbroker; do
		run -0 "$p" -h
		[[ $output != *[Pp]assword* ]]
	done
	for c in authorize capture refund show list breaker audit migrate config; do
		run -0 payctl "$c" -h
		[[ $output != *[Pp]assword* ]]
	done
}

@test "a daemon given PAY_DB_PASSWORD shows it in no command line, ps output or log line" {
	PAY_DB_USER=sec_user PAY_DB_PASSWORD=$SECRET outbox-relay -v \
		>"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" 3>&- &
	pid=$!
	echo "$pid" >"$BATS_TEST_TMPDIR/pid"
	wait_until 20 connected
	# Its environment has the password; argv, and so ps, do not.
	tr '\0' '\n' <"/proc/$pid/environ" | grep -qxF "PAY_DB_PASSWORD=$SECRET"
	run -0 tr '\0' ' ' <"/proc/$pid/cmdline"
	[[ $output == *outbox-relay* && $output != *"$SECRET"* ]]
	run -0 ps -o args= -p "$pid"
	[[ $output == *outbox-relay* && $output != *"$SECRET"* ]]
	run -0 ps -eo args=
	[[ $output != *"$SECRET"* ]]
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	run -1 grep -F "$SECRET" "$BATS_TEST_TMPDIR/err" "$BATS_TEST_TMPDIR/out"
}

@test "a refused password is named in no diagnostic" {
	PAY_DB_USER=sec_user PAY_DB_PASSWORD=$SECRET-wrong run -78 --separate-stderr payctl show 1
	assert_one_line_stderr "payctl show: *Access denied for user 'sec_user'@*"
	[[ $stderr != *"$SECRET"* && $output != *"$SECRET"* ]]
	PAY_DB_USER=sec_user PAY_DB_PASSWORD=$SECRET-wrong run -78 --separate-stderr outbox-relay -1 -v
	[[ $stderr == *"Access denied for user 'sec_user'@"* && $stderr != *"$SECRET"* ]]
	PAY_DB_USER=sec_user PAY_DB_PASSWORD=$SECRET-wrong run -78 --separate-stderr dbstat
	[[ $stderr != *"$SECRET"* && $output != *"$SECRET"* ]]
}

@test "payctl config masks every secret, wherever it came from" {
	cat >"$BATS_TEST_TMPDIR/c.conf" <<-EOF
		db_password = file-$SECRET
		kafka.sasl.password = sasl-$SECRET
		kafka.ssl.key.password = key-$SECRET
		kafka.ssl.key.pem = pem-$SECRET
	EOF
	PAY_DB_PASSWORD="" PAY_CONFIG=$BATS_TEST_TMPDIR/c.conf run -0 --separate-stderr payctl config \
		-X "sasl.oauthbearer.client.secret=oauth-$SECRET" -X "sasl.username=user-$SECRET"
	[[ $output != *"$SECRET"* && -z $stderr ]]
	echo "$output" | jq -e '.db_password == {"value": "********", "source": "file"}
		and .kafka["sasl.password"] == "********" and .kafka["ssl.key.password"] == "********"
		and .kafka["ssl.key.pem"] == "********"
		and .kafka["sasl.oauthbearer.client.secret"] == "********"'
	PAY_DB_PASSWORD=env-$SECRET run -0 payctl config
	[[ $output != *"$SECRET"* ]]
	echo "$output" | jq -e '.db_password == {"value": "********", "source": "env"}'
	(umask 077 && echo "pwfile-$SECRET" >"$BATS_TEST_TMPDIR/pw")
	PAY_DB_PASSWORD='' PAY_DB_PASSWORD_FILE=$BATS_TEST_TMPDIR/pw run -0 payctl config
	[[ $output != *"$SECRET"* ]]
	echo "$output" | jq -e '.db_password.value == "********"
		and .db_password_file.value == env.BATS_TEST_TMPDIR + "/pw"'
}

@test "a password file others can read stops every program with 78 before it does anything" {
	local f=$BATS_TEST_TMPDIR/pw
	echo "$SECRET" >"$f"
	for mode in 640 604 644; do
		chmod "$mode" "$f"
		for cmd in "payctl show 1" "payctl migrate" "payctl authorize -m M1 -a 100 -k k1" \
			"outbox-relay -1" "settle --once" "refund --retry-due" "ledger-apply --once" \
			"dbstat" "cbtest"; do
			# shellcheck disable=SC2086 # the command's words
			PAY_DB_USER=sec_user PAY_DB_PASSWORD='' PAY_DB_PASSWORD_FILE=$f \
				run -78 --separate-stderr $cmd
			assert_one_line_stderr "*: password file '$f': readable by group or others (chmod 600 it)"
			[ -z "$output" ]
		done
	done
	chmod 600 "$f"
	PAY_DB_USER=sec_user PAY_DB_PASSWORD='' PAY_DB_PASSWORD_FILE=$f run -0 payctl migrate --status
	rm "$f"
	PAY_DB_USER=sec_user PAY_DB_PASSWORD='' PAY_DB_PASSWORD_FILE=$f \
		run -78 --separate-stderr payctl show 1
	assert_one_line_stderr "payctl show: password file '$f': No such file or directory"
}

@test "db-roles hands passwords to the client on its standard input, never in argv" {
	local bin=$BATS_TEST_TMPDIR/bin
	mkdir -p "$bin"
	# A stand-in client that keeps what it was given.
	cat >"$bin/mariadb" <<-EOF
		#!/bin/sh
		printf '%s\n' "\$*" >"$BATS_TEST_TMPDIR/argv"
		cat >"$BATS_TEST_TMPDIR/stdin"
	EOF
	chmod +x "$bin/mariadb"
	PATH=$bin:$PATH run -0 db-roles -d paydb -s "$BATS_TEST_TMPDIR/roles" settle -- -u admin
	pw=$(cat "$BATS_TEST_TMPDIR/roles/settle.password")
	[ -n "$pw" ]
	grep -qF "IDENTIFIED BY '$pw'" "$BATS_TEST_TMPDIR/stdin"
	run -1 grep -F "$pw" "$BATS_TEST_TMPDIR/argv"
	[ "$(cat "$BATS_TEST_TMPDIR/argv")" = "-u admin" ]
	[[ $output != *"$pw"* ]]
}

@test "TLS settings reach both clients: MariaDB's ssl settings and Kafka's -X properties" {
	# The suite's MariaDB has no TLS: asked to verify it, the client refuses.
	PAY_DB_SSL_CA=/etc/ssl/certs/ca-certificates.crt PAY_DB_SSL_VERIFY=true \
		run -69 --separate-stderr payctl show 1
	assert_one_line_stderr "payctl show: connect to *TLS/SSL error: SSL is required, but the server does not support it"
	run -78 --separate-stderr outbox-relay -1 -X security.protocol=ssl \
		-X "ssl.ca.location=$BATS_TEST_TMPDIR/none.pem"
	assert_one_line_stderr "outbox-relay: kafka producer: ssl.ca.location failed: *"
}
