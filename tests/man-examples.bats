#!/usr/bin/env bats
# The man pages' EXAMPLES that can run against the embedded stack do run:
# every read-only command shown (payctl config, list, show, migrate
# --status, audit; dbstat; kcat reading) is run as written, so a flag that
# was renamed or removed shows up as a usage error here.
# shellcheck disable=SC2016 # "$id" is put into the examples, not expanded here.

load test_helper

setup_file() {
	use_own_db
	# A payment for the examples that name one ("$id", or 42).
	curl -sf -d '{"fault":"none","endpoint":"authorize"}' "$PAY_PG_URL/control" >/dev/null
	payctl authorize -m M123 -a 50000 -k man-examples-1 | jq -r .payment_id \
		>"$BATS_FILE_TMPDIR/id"
	# As settle would leave it, so that the refund examples apply.
	sql "UPDATE payment SET status = 'CAPTURED', captured_amount = amount
		WHERE payment_id = $(cat "$BATS_FILE_TMPDIR/id")"
}

# Each example command on one line: continuation lines (ending in \ or |,
# or inside an open quote) joined.
examples() {
	local m
	for m in "$TOP"/man/*.[178]; do
		mandoc -Tascii -Owidth=400 "$m" | col -bx |
			sed -n '/^EXAMPLES/,/^SEE ALSO/p' | sed 's/^ *//' |
			awk -v q="'" '{ if (cont) line = line " " $0; else line = $0
			       t = line; quotes = gsub(q, "", t)
			       cont = ($0 ~ /(\\|\|)$/) || quotes % 2 == 1
			       if (cont) sub(/\\$/, "", line)
			       else print line }'
	done
}

runnable() {
	grep -E '^(payctl (config|list|show|audit|migrate --status)|dbstat|kcat (-C|-L))' |
		grep -v -e '# fails' -e '&$'
}

@test "the man pages' runnable examples run without a usage error" {
	local id cmd rc n=0
	id=$(cat "$BATS_FILE_TMPDIR/id")
	while IFS= read -r cmd; do
		n=$((n + 1))
		rc=0
		(cd "$BATS_TEST_TMPDIR" && id="$id" timeout 60 bash -c "set -o pipefail; $cmd") \
			>/dev/null 2>"$BATS_TEST_TMPDIR/err" || rc=$?
		case $rc in
		0 | 1) ;;
		*)
			echo "example failed with exit $rc: $cmd" >&2
			cat "$BATS_TEST_TMPDIR/err" >&2
			return 1
			;;
		esac
	done < <(examples | runnable | sed 's/\bpayctl show 42\b/payctl show "$id"/')
	[ "$n" -ge 10 ]
}
