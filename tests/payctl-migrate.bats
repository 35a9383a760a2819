#!/usr/bin/env bats
# payctl migrate: versioned, idempotent, locked, and honest about failures.

load test_helper

setup_file() {
	use_own_db
}

fresh_db() {
	export PAY_DB_NAME="${PAY_DB_NAME}_$1"
	sql_server "DROP DATABASE IF EXISTS $PAY_DB_NAME; CREATE DATABASE $PAY_DB_NAME"
}

@test "applies every migration once and records it" {
	fresh_db a
	run -0 --separate-stderr payctl migrate
	echo "$output" | jq -e -s 'length >= 1 and all(.status == "applied")'
	[ "$(sql "SELECT COUNT(*) FROM schema_version WHERE state = 'applied'")" -ge 1 ]
	sql "SELECT COUNT(*) FROM payment"
}

@test "running again changes nothing" {
	run -0 payctl migrate
	echo "$output" | jq -e -s 'all(.status == "present")'
}

@test "status lists pending migrations without applying them" {
	fresh_db b
	run -0 payctl migrate --status
	echo "$output" | jq -e -s 'all(.status == "pending")'
	[ "$(sql "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '$PAY_DB_NAME' AND table_name = 'payment'")" -eq 0 ]
}

@test "ten concurrent runs apply each migration exactly once" {
	fresh_db c
	for i in 1 2 3 4 5 6 7 8 9 10; do
		payctl migrate >"$BATS_TEST_TMPDIR/out.$i" 2>&1 &
	done
	wait
	cat "$BATS_TEST_TMPDIR"/out.* | jq -e -s '
		(map(select(.status == "applied")) | length) ==
		(map(.migration) | unique | length)'
}

@test "a migration that fails halfway is marked failed, never applied, and can be rerun once fixed" {
	fresh_db d
	mkdir -p "$BATS_TEST_TMPDIR/m"
	printf 'CREATE TABLE IF NOT EXISTS t1 (id INT);\n' >"$BATS_TEST_TMPDIR/m/0001_one.sql"
	printf -- '-- two statements\nCREATE TABLE IF NOT EXISTS t2 (id INT);\nCREATE TABLE oops (;\n' \
		>"$BATS_TEST_TMPDIR/m/0002_two.sql"
	run -78 --separate-stderr payctl migrate --dir "$BATS_TEST_TMPDIR/m"
	assert_one_line_stderr "payctl migrate: migration '0002_two' statement 2: *"
	[ "$(sql "SELECT state FROM schema_version WHERE version = 2")" = failed ]
	[ "$(sql "SELECT state FROM schema_version WHERE version = 1")" = applied ]
	printf 'CREATE TABLE IF NOT EXISTS t2 (id INT);\nCREATE TABLE IF NOT EXISTS t3 (id INT);\n' \
		>"$BATS_TEST_TMPDIR/m/0002_two.sql"
	run -0 payctl migrate --dir "$BATS_TEST_TMPDIR/m"
	[ "$(sql "SELECT state FROM schema_version WHERE version = 2")" = applied ]
}

@test "refuses a migration edited after it was applied" {
	fresh_db e
	mkdir -p "$BATS_TEST_TMPDIR/m"
	printf 'CREATE TABLE IF NOT EXISTS t1 (id INT);\n' >"$BATS_TEST_TMPDIR/m/0001_one.sql"
	run -0 payctl migrate --dir "$BATS_TEST_TMPDIR/m"
	printf 'CREATE TABLE IF NOT EXISTS t1 (id BIGINT);\n' >"$BATS_TEST_TMPDIR/m/0001_one.sql"
	run -78 --separate-stderr payctl migrate --dir "$BATS_TEST_TMPDIR/m"
	assert_one_line_stderr "*'0001_one': changed since it was applied*"
}

@test "refuses a badly named migration file" {
	mkdir -p "$BATS_TEST_TMPDIR/m"
	printf 'SELECT 1;\n' >"$BATS_TEST_TMPDIR/m/first.sql"
	run -78 --separate-stderr payctl migrate --dir "$BATS_TEST_TMPDIR/m"
	assert_one_line_stderr "*'first': name must be NNNN_name.sql*"
}

@test "an unreachable database is exit 69 with one line" {
	PAY_DB_PORT=1 run -69 --separate-stderr payctl migrate
	assert_one_line_stderr "payctl migrate: connect to '127.0.0.1:1': *"
	[ -z "$output" ]
}

@test "a wrong password is exit 78 with one line" {
	PAY_DB_PASSWORD=wrong run -78 --separate-stderr payctl migrate
	assert_one_line_stderr "*Access denied for user 'payuser'*"
}

@test "a malformed PAY_ value is exit 78 naming the setting" {
	PAY_DB_PORT=abc run -78 --separate-stderr payctl migrate
	assert_one_line_stderr "payctl migrate: setting 'PAY_DB_PORT': 'abc' is not an integer"
	PAY_DB_CONNECT_TIMEOUT=-5s run -78 --separate-stderr payctl migrate
	assert_one_line_stderr "*'PAY_DB_CONNECT_TIMEOUT': '-5s' is not a duration*"
}

@test "an unreadable config file is exit 78 naming the file" {
	PAY_CONFIG="$BATS_TEST_TMPDIR" run -78 --separate-stderr payctl migrate
	assert_one_line_stderr "payctl migrate: config file '$BATS_TEST_TMPDIR': *"
	PAY_CONFIG=/nonexistent/paykit.conf run -78 --separate-stderr payctl migrate
	assert_one_line_stderr "*'/nonexistent/paykit.conf': No such file or directory"
}

@test "a config file error names file and line" {
	printf 'db_host = 127.0.0.1\ndb_port = many\n' >"$BATS_TEST_TMPDIR/p.conf"
	PAY_CONFIG="$BATS_TEST_TMPDIR/p.conf" run -78 --separate-stderr payctl migrate
	assert_one_line_stderr "payctl migrate: $BATS_TEST_TMPDIR/p.conf:2: setting 'db_port': 'many' is not an integer"
}

@test "a password file readable by others is refused" {
	printf 'paypass\n' >"$BATS_TEST_TMPDIR/pw"
	chmod 644 "$BATS_TEST_TMPDIR/pw"
	PAY_DB_PASSWORD='' PAY_DB_PASSWORD_FILE="$BATS_TEST_TMPDIR/pw" \
		run -78 --separate-stderr payctl migrate
	assert_one_line_stderr "*password file '$BATS_TEST_TMPDIR/pw': readable by group or others*"
	chmod 600 "$BATS_TEST_TMPDIR/pw"
	PAY_DB_PASSWORD='' PAY_DB_PASSWORD_FILE="$BATS_TEST_TMPDIR/pw" run -0 payctl migrate
}

@test "usage errors are exit 64 with one line" {
	run -64 --separate-stderr payctl migrate --bogus
	assert_one_line_stderr "payctl migrate: unknown option '--bogus' (see 'payctl migrate -h')"
	run -64 --separate-stderr payctl migrate --wait abc
	assert_one_line_stderr "*'--wait': 'abc'*"
	run -64 --separate-stderr payctl migrate --dir
	assert_one_line_stderr "*option '--dir' needs a value*"
	run -64 --separate-stderr payctl migrate extra
	assert_one_line_stderr "*unexpected argument 'extra'*"
}

@test "-h prints the usage on stdout" {
	run -0 payctl migrate -h
	[[ $output == "usage: payctl migrate "* ]]
}
