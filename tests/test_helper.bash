# Shared by every bats file: `load test_helper` at the top.
# Points PATH (built binaries first), HOME and PAY_CONFIG at the test's own
# directory and removes stray PAY_* settings, so a test sees only what it sets.

bats_require_minimum_version 1.5.0

TOP=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
export TOP
PATH="$TOP/bin:$TOP/scripts:$PATH"
export HOME="$BATS_FILE_TMPDIR/home"
mkdir -p "$HOME"

# Keep the stack's connection settings (exported by setup_suite), drop the rest.
for v in $(env | sed -n 's/^\(PAY_[A-Z0-9_]*\)=.*/\1/p'); do
	case $v in
	PAY_DEVSTACK_DIR | PAY_DB_HOST | PAY_DB_PORT | PAY_DB_USER | PAY_DB_PASSWORD | \
	PAY_DB_NAME | PAY_KAFKA_BROKERS | PAY_PG_URL | PAY_DB_ADMIN_SOCKET | \
	PAY_TOPIC_PREFIX) ;;
	*) unset "$v" ;;
	esac
done
export PAY_CONFIG="$BATS_FILE_TMPDIR/empty.conf"
: >"$PAY_CONFIG"

# wait_until SECONDS CMD...: run CMD every 50 ms until it succeeds; fail
# after SECONDS.  Tests wait on a condition, never on a fixed sleep.
wait_until() {
	local limit=$1 start
	shift
	start=$(date +%s%N)
	until "$@"; do
		if (($(date +%s%N) - start > limit * 1000000000)); then
			echo "wait_until: timed out after ${limit}s: $*" >&2
			return 1
		fi
		sleep 0.05
	done
}

# Exactly one line on stderr, matching the glob PATTERN.
# Use with `run --separate-stderr`.
assert_one_line_stderr() {
	local n
	n=$(printf '%s' "$stderr" | grep -c '' || true)
	if [ "$n" -ne 1 ]; then
		echo "expected one line on stderr, got $n:" >&2
		printf '%s\n' "$stderr" >&2
		return 1
	fi
	if [ $# -gt 0 ]; then
		# shellcheck disable=SC2053
		[[ $stderr == $1 ]] || {
			echo "stderr: '$stderr' does not match '$1'" >&2
			return 1
		}
	fi
}

# Each bats file works in its own database (paytest_<file>) and topics
# (prefix t.<file>.), created and migrated by use_own_db in setup_file.
use_own_db() {
	local name
	name=$(basename "$BATS_TEST_FILENAME" .bats | tr -c 'a-zA-Z0-9\n' _)
	export PAY_DB_NAME="paytest_$name"
	export PAY_TOPIC_PREFIX="t.$name."
	sql_server "DROP DATABASE IF EXISTS $PAY_DB_NAME;
		CREATE DATABASE $PAY_DB_NAME" || return 1
	payctl migrate >/dev/null
}

# sql STATEMENT: run SQL in the file's database, tab-separated rows out.
# sql_server STATEMENT: the same outside any database.
sql() {
	sql_server "$1" "$PAY_DB_NAME"
}
sql_server() {
	mariadb --no-defaults -N -B -h "$PAY_DB_HOST" -P "$PAY_DB_PORT" \
		-u "$PAY_DB_USER" -p"$PAY_DB_PASSWORD" -e "$1" ${2:+"$2"}
}
# The statements that make ledger_balance again from ledger_entry, as
# migration 0010 does: the running balances ledger-apply keeps, for the
# entries a test writes with SQL.
# shellcheck disable=SC2034 # for the files that load this one
REBALANCE="DELETE FROM ledger_balance;
	INSERT INTO ledger_balance SELECT account, side, currency, 0, COUNT(*),
	SUM(amount), MOD(SUM((payment_id % 2147483647) * (amount % 2147483647)),
	2147483647) FROM ledger_entry GROUP BY account, side, currency"
# ... and outbox_count from outbox_event, as migration 0011 does: the count
# outbox-relay keeps, for the rows a test publishes or deletes with SQL.
# shellcheck disable=SC2034 # for the files that load this one
RECOUNT="DELETE FROM outbox_count; INSERT INTO outbox_count
	SELECT 0, COUNT(*) FROM outbox_event WHERE status = 'PUBLISHED'"

# For conditions polled in a child shell: wait_until 5 bash -c '... sql ...'
export -f sql sql_server
