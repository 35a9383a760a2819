#!/usr/bin/env bats
# Least privilege: scripts/db-roles makes one MariaDB account per role.
# Each runs its program's main path on the embedded stack, and outside it
# is refused with exit 78 and one line naming the access, writing nothing.
# shellcheck disable=SC2154 # bats' run sets output and stderr.

load test_helper
load consumer_helper

new_key() {
	echo "roles-$BATS_TEST_NUMBER-$RANDOM$RANDOM"
}

admin() {
	mariadb --no-defaults -N -B -S "$PAY_DB_ADMIN_SOCKET" -u "$(id -un)" "$@"
}

# db_roles ARGS...: scripts/db-roles with the suite's administrator.
db_roles() {
	db-roles -H 127.0.0.1 -H localhost "$@" -- --no-defaults \
		-S "$PAY_DB_ADMIN_SOCKET" -u "$(id -un)"
}

# as ROLE CMD...: run CMD as the role's account, its password from its file.
as() {
	local role=$1
	shift
	PAY_DB_USER=rt_$role PAY_DB_PASSWORD='' \
		PAY_DB_PASSWORD_FILE=$BATS_FILE_TMPDIR/roles/$role.password "$@"
}

# as_sql ROLE STATEMENT: the mariadb client as the role's account.
as_sql() {
	MYSQL_PWD=$(cat "$BATS_FILE_TMPDIR/roles/$1.password") \
		mariadb --no-defaults -N -B -h "$PAY_DB_HOST" -P "$PAY_DB_PORT" \
		-u "rt_$1" -e "$2" "$PAY_DB_NAME"
}

# The rows of every table, to show that a refused run wrote nothing.
snapshot() {
	sql "SELECT (SELECT COUNT(*) FROM payment), (SELECT COUNT(*) FROM outbox_event),
		(SELECT COUNT(*) FROM refund_request), (SELECT COUNT(*) FROM settlement_request),
		(SELECT COUNT(*) FROM ledger_entry), (SELECT COUNT(*) FROM ledger_balance),
		(SELECT COUNT(*) FROM processed_event),
		(SELECT COUNT(*) FROM rate_limit), (SELECT COUNT(*) FROM breaker_state),
		(SELECT COUNT(*) FROM breaker_event),
		(SELECT COALESCE(SUM(CRC32(CONCAT_WS(',', payment_id, status,
			captured_amount, refunded_amount))), 0) FROM payment)"
}

setup_file() {
	use_own_db
	pg_reset
	db_roles -d "$PAY_DB_NAME" -p rt_ -s "$BATS_FILE_TMPDIR/roles" \
		>"$BATS_FILE_TMPDIR/roles.jsonl"
}

teardown_file() {
	local u
	for u in $(admin -e "SELECT CONCAT('''', user, '''@''', host, '''')
		FROM mysql.user WHERE user LIKE 'rt\\_%' OR user LIKE 'rm\\_%'"); do
		admin -e "DROP USER $u"
	done
	sql_server "DROP DATABASE IF EXISTS ${PAY_DB_NAME}_m"
}

teardown() {
	stop_started
}

@test "db-roles makes an account per role, each password in a file only its owner reads" {
	jq -e -s 'map(.role) == ["payctl","relay","settle","refund","ledger","dbstat","migrate"]' \
		"$BATS_FILE_TMPDIR/roles.jsonl"
	for r in payctl relay settle refund ledger dbstat migrate; do
		f=$BATS_FILE_TMPDIR/roles/$r.password
		[ "$(stat -c %a "$f")" = 600 ]
		grep -Eqx '[0-9a-f]{48}' "$f"
		[ "$(admin -e "SELECT COUNT(*) FROM mysql.user WHERE user = 'rt_$r'")" -eq 2 ]
	done
	[ "$(stat -c %a "$BATS_FILE_TMPDIR/roles")" = 700 ]
	# Nothing global: every grant names the database.
	run -0 admin -e "SHOW GRANTS FOR 'rt_settle'@'127.0.0.1'"
	[ "$(grep -c "ON \`$PAY_DB_NAME\`\\." <<<"$output")" -eq "$(($(grep -c . <<<"$output") - 1))" ]
	grep -q 'GRANT USAGE ON \*\.\*' <<<"$output"
}

@test "db-roles -n prints the grants with the passwords masked" {
	run -0 --separate-stderr db-roles -n -d paydb -H '%' relay dbstat
	[ -z "$stderr" ]
	[[ $output == *"CREATE OR REPLACE USER 'paykit_relay'@'%' IDENTIFIED BY '********';"* ]]
	[[ $output == *"GRANT SELECT, UPDATE, DELETE ON \`paydb\`.\`outbox_event\` TO 'paykit_relay'@'%';"* ]]
	[[ $output == *"GRANT SELECT ON \`paydb\`.* TO 'paykit_dbstat'@'%';"* ]]
	[[ $output != *payment* ]]
}

@test "db-roles run again keeps the passwords, and refuses a password file others can read" {
	before=$(cat "$BATS_FILE_TMPDIR/roles/dbstat.password")
	run -0 db_roles -d "$PAY_DB_NAME" -p rt_ -s "$BATS_FILE_TMPDIR/roles" dbstat
	[ "$(cat "$BATS_FILE_TMPDIR/roles/dbstat.password")" = "$before" ]
	run -0 as dbstat payctl migrate --status --wait 0
	mkdir -m 700 "$BATS_TEST_TMPDIR/open"
	echo s3cret >"$BATS_TEST_TMPDIR/open/dbstat.password"
	chmod 644 "$BATS_TEST_TMPDIR/open/dbstat.password"
	run -78 --separate-stderr db_roles -d "$PAY_DB_NAME" -p rt_ -s "$BATS_TEST_TMPDIR/open" dbstat
	assert_one_line_stderr "db-roles: password file '*/open/dbstat.password': readable by group or others (chmod 600 it)"
	run -64 --separate-stderr db-roles -s x frobnicate
	assert_one_line_stderr "db-roles: 'frobnicate' is not a role *"
}

@test "the migrate account migrates an empty database" {
	local m=${PAY_DB_NAME}_m
	sql_server "CREATE DATABASE $m"
	run -0 db_roles -d "$m" -p rm_ -s "$BATS_FILE_TMPDIR/roles-m" migrate
	PAY_DB_NAME=$m PAY_DB_USER=rm_migrate PAY_DB_PASSWORD='' \
		PAY_DB_PASSWORD_FILE=$BATS_FILE_TMPDIR/roles-m/migrate.password \
		run -0 --separate-stderr payctl migrate
	echo "$output" | jq -e -s 'length >= 1 and all(.status == "applied")'
	[ "$(sql_server "SELECT COUNT(*) FROM information_schema.tables
		WHERE table_schema = '$m' AND table_name = 'payment'")" -eq 1 ]
	# Its grants are on that database and no other.
	PAY_DB_USER=rm_migrate PAY_DB_PASSWORD='' \
		PAY_DB_PASSWORD_FILE=$BATS_FILE_TMPDIR/roles-m/migrate.password \
		run -78 --separate-stderr payctl migrate --status
	assert_one_line_stderr "payctl migrate: *Access denied for user 'rm_migrate'@*"
}

@test "every account reads the schema version (the containers' health check) and changes no schema" {
	for r in payctl relay settle refund ledger dbstat migrate; do
		run -0 --separate-stderr as "$r" payctl migrate --status --wait 0
		echo "$output" | jq -e -s 'length >= 1 and all(.status == "present")'
	done
	for r in payctl relay settle refund ledger dbstat; do
		run -78 --separate-stderr as "$r" payctl migrate
		assert_one_line_stderr "payctl migrate: create schema_version: CREATE command denied to user 'rt_$r'@*"
	done
}

@test "each role runs its program's main path, end to end" {
	local key id
	key=$(new_key)
	run -0 --separate-stderr as payctl payctl authorize -m M1 -a 5000 -k "$key"
	id=$(echo "$output" | jq -er 'select(.status == "CAPTURE_REQUESTED") | .payment_id')
	run -0 --separate-stderr as relay outbox-relay -1
	echo "$output" | jq -e '.published == 2 and .failed == 0'
	run -0 --separate-stderr as settle settle --once -v -g "$(group s)"
	[[ $stderr == *"payment $id: settled"* ]]
	[ "$(sql "SELECT status FROM payment WHERE payment_id = $id")" = CAPTURED ]
	run -0 as relay outbox-relay -1
	run -0 --separate-stderr as ledger ledger-apply --once -g "$(group l)"
	[ "$(count "ledger_entry WHERE payment_id = $id")" -eq 2 ]

	run -0 --separate-stderr as payctl payctl refund -a 1200 -r "changed mind" "$id"
	echo "$output" | jq -e '.status == "REFUND_REQUESTED"'
	run -0 as relay outbox-relay -1
	run -0 --separate-stderr as refund refund --once -g "$(group r)"
	[ "$(sql "SELECT status, refunded_amount FROM payment WHERE payment_id = $id")" = "$(printf 'PARTIALLY_REFUNDED\t1200')" ]
	run -0 as relay outbox-relay -1
	run -0 as ledger ledger-apply --once -g "$(group l)"
	[ "$(count "ledger_entry WHERE payment_id = $id")" -eq 4 ]

	run -0 --separate-stderr as dbstat dbstat
	echo "$output" | jq -e '.ledger.balanced'
	run -0 --separate-stderr as payctl payctl audit
	run -0 --separate-stderr as dbstat payctl audit
	run -0 --separate-stderr as relay outbox-relay --purge-older-than 0s
	echo "$output" | jq -e '.purged >= 5'
	run -0 --separate-stderr as ledger ledger-apply --purge-older-than 0s
	echo "$output" | jq -e '.purged >= 2'
	run -0 --separate-stderr as settle settle --purge-older-than 0s
	echo "$output" | jq -e '.purged >= 1'
	run -0 --separate-stderr as refund refund --purge-older-than 0s
	echo "$output" | jq -e '.purged >= 1'
	run -0 as settle settle --retry-due
	run -0 as refund refund --retry-due
}

@test "the ledger account dead-letters a message it cannot apply" {
	printf 'bad%s:not json\n' "$BATS_TEST_NUMBER" | produce payment.captured
	run -0 --separate-stderr as ledger ledger-apply --once -g "$(group d)"
	[[ $stderr == *"dead-lettered: NOT_JSON"* ]]
	[ "$(count "outbox_event WHERE event_type = 'PAYMENT_DEAD_LETTER'
		AND JSON_VALUE(payload, '$.key') = 'bad$BATS_TEST_NUMBER'")" -eq 1 ]
}

@test "payctl's account runs every payctl command" {
	local id
	run -0 --separate-stderr as payctl payctl authorize -m M2 -a 700 -k "$(new_key)" --no-capture
	id=$(echo "$output" | jq -er .payment_id)
	run -0 --separate-stderr as payctl payctl capture "$id"
	echo "$output" | jq -e '.status == "CAPTURE_REQUESTED"'
	run -0 --separate-stderr as payctl payctl show "$id"
	run -0 --separate-stderr as payctl payctl list -m M2
	[ "$(echo "$output" | jq -s length)" -ge 1 ]
	run -0 --separate-stderr as payctl payctl breaker
	run -0 --separate-stderr as payctl payctl breaker pg reset
	echo "$output" | jq -e -s 'any(.name == "pg" and .state == "CLOSED")'
	run -0 --separate-stderr as payctl payctl authorize - \
		<<<"{\"merchantId\":\"M2\",\"amount\":100,\"idempotencyKey\":\"$(new_key)\"}"
	echo "$output" | jq -e '.status == "CAPTURE_REQUESTED"'
}

@test "payctl authorize as the read-only account is refused, writes nothing and calls no gateway" {
	local key before
	key=$(new_key)
	before=$(snapshot)
	run -78 --separate-stderr as dbstat payctl authorize -m M1 -a 5000 -k "$key"
	assert_one_line_stderr "payctl authorize: *INSERT command denied to user 'rt_dbstat'@*"
	[ "$(snapshot)" = "$before" ]
	[ "$(pg_calls authorize "$key")" -eq 0 ]
	run -78 --separate-stderr as dbstat payctl authorize - \
		<<<"{\"merchantId\":\"M1\",\"amount\":100,\"idempotencyKey\":\"$key\"}"
	assert_one_line_stderr "payctl authorize: *INSERT command denied to user 'rt_dbstat'@*"
	[ "$(snapshot)" = "$before" ]
}

@test "payctl capture as the ledger account is refused and writes nothing" {
	local id before
	id=$(as payctl payctl authorize -m M3 -a 900 -k "$(new_key)" --no-capture | jq -er .payment_id)
	before=$(snapshot)
	run -78 --separate-stderr as ledger payctl capture "$id"
	assert_one_line_stderr "payctl capture: *command denied to user 'rt_ledger'@*"
	[ "$(snapshot)" = "$before" ]
	[ "$(sql "SELECT status FROM payment WHERE payment_id = $id")" = AUTHORIZED ]
}

@test "a program run with another role's account is refused with one line and writes nothing" {
	local before id
	id=$(as payctl payctl authorize -m M5 -a 900 -k "$(new_key)" | jq -er .payment_id)
	sql "UPDATE payment SET status = 'CAPTURED', captured_amount = amount WHERE payment_id = $id"
	before=$(snapshot)
	run -78 --separate-stderr as dbstat outbox-relay -1
	assert_one_line_stderr "outbox-relay: *command denied to user 'rt_dbstat'@*"
	run -78 --separate-stderr as ledger settle --once -g "$(group x)"
	assert_one_line_stderr "settle: *command denied to user 'rt_ledger'@*"
	run -78 --separate-stderr as relay payctl authorize -m M1 -a 100 -k "$(new_key)"
	assert_one_line_stderr "payctl authorize: *command denied to user 'rt_relay'@*"
	run -78 --separate-stderr as settle payctl refund -r x "$id"
	assert_one_line_stderr "payctl refund: *command denied to user 'rt_settle'@*"
	[ "$(snapshot)" = "$before" ]
}

@test "the relay account cannot UPDATE payment, settle cannot change an amount, dbstat cannot write" {
	local id
	id=$(as payctl payctl authorize -m M4 -a 900 -k "$(new_key)" | jq -er .payment_id)
	run -1 as_sql relay "UPDATE payment SET status = 'CAPTURED' WHERE payment_id = $id"
	[[ $output == *"ERROR 1142"*"UPDATE command denied to user 'rt_relay'@"*"payment"* ]]
	run -1 as_sql relay "SELECT COUNT(*) FROM payment"
	[[ $output == *"ERROR 1142"*"SELECT command denied"* ]]
	run -1 as_sql settle "UPDATE payment SET amount = 1 WHERE payment_id = $id"
	[[ $output == *"ERROR 1143"*"UPDATE command denied to user 'rt_settle'@"*"column 'amount'"* ]]
	run -1 as_sql refund "DELETE FROM refund_request"
	[[ $output == *"ERROR 1142"*"DELETE command denied"* ]]
	run -1 as_sql dbstat "DELETE FROM ledger_entry"
	[[ $output == *"ERROR 1142"*"DELETE command denied"* ]]
	run -1 as_sql ledger "UPDATE payment SET status = 'REFUNDED'"
	[[ $output == *"ERROR 1142"*"UPDATE command denied"* ]]
	[ "$(sql "SELECT status, amount FROM payment WHERE payment_id = $id")" = "$(printf 'CAPTURE_REQUESTED\t900')" ]
}

@test "devstack made the role accounts for paydb" {
	local f=$PAY_DEVSTACK_DIR/secrets/dbstat.password
	[ "$(stat -c %a "$f")" = 600 ]
	[ "$(stat -c %a "$PAY_DEVSTACK_DIR/secrets")" = 700 ]
	PAY_DB_NAME=paydb PAY_DB_USER=paykit_dbstat PAY_DB_PASSWORD='' PAY_DB_PASSWORD_FILE=$f \
		run -0 --separate-stderr payctl migrate --status --wait 0
	echo "$output" | jq -e -s 'all(.status == "present")'
	PAY_DB_NAME=paydb PAY_DB_USER=paykit_dbstat PAY_DB_PASSWORD='' PAY_DB_PASSWORD_FILE=$f \
		run -78 --separate-stderr payctl authorize -m M1 -a 100 -k "$(new_key)"
	assert_one_line_stderr "payctl authorize: *command denied to user 'paykit_dbstat'@*"
	# payuser/paypass stays, for the clients and the original deployment.
	run -0 mariadb --no-defaults -h127.0.0.1 -P"$PAY_DB_PORT" -upayuser -ppaypass paydb -N -e 'select 1'
}
