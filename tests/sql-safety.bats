#!/usr/bin/env bats
# Every SQL statement is fixed text with bound values: no C file builds a
# statement with printf-style formatting or concatenation, and every
# statement handed to lib/db.c is a string literal, a static const array of
# literals, or (payctl migrate only) migration text.  db_run() sends raw SQL
# over the text protocol, so its callers are listed and held to the same
# rule.  Reads the sources; needs no service.
# shellcheck disable=SC2154 # bats' run sets output.

load test_helper

# check DIR: tests/sql-check over DIR's C files.
check() {
	"$TOP/tests/sql-check" "$1"
}

@test "no C file builds SQL text, and every statement given to lib/db.c is fixed text" {
	run -0 check "$TOP"
	[ -z "$output" ]
}

@test "db_run's callers pass literals, static statements, or migration text" {
	# The list as it stands; a new caller is a reason to look again.
	run -0 grep -rnE --include='*.c' '\<db_run[[:space:]]*\(' "$TOP/lib" "$TOP/cmd"
	callers=$(echo "$output" | sed "s|^$TOP/||" | cut -d: -f1 | sort -u | grep -vx lib/db.c)
	for f in $callers; do
		case $f in
		lib/consumer.c | lib/relay.c | cmd/dbstat/ledger.c | cmd/payctl/audit.c | cmd/payctl/migrate.c | cmd/payctl/recount.c) ;;
		*)
			echo "new db_run caller: $f (check what it passes, then add it here)" >&2
			return 1
			;;
		esac
	done
	# payctl migrate runs only what next_statement() cut from migration text.
	run -0 grep -n 'stmt = next_statement(&cursor)' "$TOP/cmd/payctl/migrate.c"
	run -0 grep -n 'char \*cursor = m->sql' "$TOP/cmd/payctl/migrate.c"
}

@test "the check fails on SQL built with printf, concatenation, or a buffer given to db_run" {
	local d=$BATS_TEST_TMPDIR/src
	mkdir -p "$d/lib" "$d/cmd/payctl"
	cat >"$d/cmd/bad.c" <<-'EOF'
		static const char ok[] = "SELECT status FROM payment WHERE payment_id = ?";
		int
		f(struct db *db, const char *merchant, char *buf, size_t n)
		{
			db_exec(db, ok, "i", (int64_t)1);
			snprintf(buf, n,
			    "SELECT * FROM payment WHERE merchant_id = '%s'", merchant);
			db_run(db, buf);
			strcat(buf, " WHERE status = 'x'");
			db_query(db, buf, "");
			char *q = xasprintf("DELETE FROM payment WHERE payment_id = %s", merchant);
			db_run(db, "START TRANSACTION");
			return db_exec(db, q, "");
		}
	EOF
	cat >"$d/cmd/payctl/migrate.c" <<-'EOF'
		int g(struct db *db) { mysql_query(db->my, "DROP TABLE payment"); return 0; }
	EOF
	cat >"$d/lib/helper.c" <<-'EOF'
		#define COLS "payment_id, status"
		static const char by_id[] = "SELECT " COLS " FROM payment WHERE payment_id = ?";
		static int
		lock(struct db *db, const char *sql, int64_t id)
		{
			return db_query(db, sql, "i", id);
		}
		int
		h(struct db *db, char *buf)
		{
			lock(db, by_id, 1);
			return lock(db, buf, 2);
		}
	EOF
	run -1 check "$d"
	[ "$(echo "$output" | grep -c .)" -eq 9 ]
	[[ $output == *"lib/helper.c:6: db_query() given 'sql'"* ]]
	[[ $output == *"cmd/bad.c:6: SQL text built with snprintf()"* ]]
	[[ $output == *"cmd/bad.c:8: db_run() given 'buf'"* ]]
	[[ $output == *"cmd/bad.c:9: SQL text built with strcat()"* ]]
	[[ $output == *"cmd/bad.c:10: db_query() given 'buf'"* ]]
	[[ $output == *"cmd/bad.c:11: SQL text built with xasprintf()"* ]]
	[[ $output == *"cmd/bad.c:13: db_exec() given 'q'"* ]]
	[[ $output == *"cmd/payctl/migrate.c:1: mysql_query() outside lib/db.c"* ]]
	[[ $output == *"cmd/payctl/migrate.c: the allowed db_run(stmt) is gone"* ]]
	[[ $output != *"cmd/bad.c:5"* && $output != *"cmd/bad.c:12"* ]]
}
