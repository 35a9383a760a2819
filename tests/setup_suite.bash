# Starts the embedded stack once for the whole bats run, in the run's own
# state directory and on free ports, so that a developer's stack and other
# runs are left alone.
# A service that does not come up fails the suite; nothing is skipped.

setup_suite() {
	TOP=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
	export PAY_DEVSTACK_DIR="$BATS_RUN_TMPDIR/devstack"
	export PAY_DEVSTACK_DB_PORT=0 PAY_DEVSTACK_PG_PORT=0
	local rc=0
	"$TOP/scripts/devstack" up 2>"$BATS_SUITE_TMPDIR/devstack.log" || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "devstack up exited $rc:" >&2
		cat "$BATS_SUITE_TMPDIR/devstack.log" >&2
		return 1
	fi
	eval "$("$TOP/scripts/devstack" env)"
}

teardown_suite() {
	[ -n "${PAY_TEST_KEEP_STACK:-}" ] ||
		"$TOP/scripts/devstack" down 2>/dev/null
}
