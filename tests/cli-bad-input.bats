#!/usr/bin/env bats
# Bad input, table-driven: every program, every flag that takes a value
# (and the operands), with an empty, a huge (100,000 characters), a
# negative, a non-numeric, a non-UTF-8, a quote-laden, an injection-shaped
# and a two-line value.  Each case must end with the exit code its man page
# gives (64 for a bad flag value), one line on stderr, no crash or sanitizer
# report, and nothing written to the database.  A NUL byte cannot be passed
# in argv: the stream modes get it in their input lines instead.
# shellcheck disable=SC2154 # bats' run sets output, status and stderr.

load test_helper

CLASSES=(empty huge negative nonnumeric nonutf8 quotes injection newline)
# Bats loads this file in a function: -g keeps the table global.
declare -gA VALUES
VALUES=(
	[empty]=''
	[huge]=$(head -c 100000 /dev/zero | tr '\0' 9)
	[negative]=-1
	[nonnumeric]=abc
	[nonutf8]=$'\xff\xfe'
	[quotes]="a'b\"c\`d\\e"
	[injection]="x'; DROP TABLE payment; --"
	[newline]=$'1\n2'
)

setup_file() {
	use_own_db
}

# sqlraw STATEMENT: sql without the escaping of tabs and backslashes.
sqlraw() {
	mariadb --no-defaults -N -B -r -h "$PAY_DB_HOST" -P "$PAY_DB_PORT" \
		-u "$PAY_DB_USER" -p"$PAY_DB_PASSWORD" -e "$1" "$PAY_DB_NAME"
}

# Everything the programs could write, as one line.
snapshot() {
	sql "CHECKSUM TABLE payment, outbox_event, settlement_request, refund_request,
		ledger_entry, ledger_balance, processed_event, rate_limit, breaker_state, breaker_bucket,
		breaker_permit, breaker_event, schema_version" | tr '\n\t' '  '
}

# daemon CMD...: start a daemon, wait for its first line on stdout, stop it
# with SIGTERM; sets status and stderr as run does.
daemon() {
	local out=$BATS_TEST_TMPDIR/daemon.out err=$BATS_TEST_TMPDIR/err pid
	: >"$out"
	"$@" </dev/null >"$out" 2>"$err" 3>&- &
	pid=$!
	if wait_until 20 test -s "$out"; then
		kill -TERM "$pid"
	else
		kill -KILL "$pid"
	fi
	status=0
	wait "$pid" || status=$?
	stderr=$(cat "$err")
}

# table: runs the cases of the table on stdin, one row a line:
#   EMPTY HUGE NEGATIVE NONNUMERIC NONUTF8 QUOTES INJECTION NEWLINE | COMMAND
# where each code is the exit status expected with that value, d0 a daemon
# that starts (then stops on SIGTERM with 0); in COMMAND, @ is the value and
# %k a new idempotency key.  The database is compared after each row whose
# every case must fail.  Reports every mismatch, then fails if any.
table() {
	local line want words args w i c code before lines fails=()
	local err=$BATS_TEST_TMPDIR/err
	while IFS= read -r line; do
		[[ -z $line || $line == '#'* ]] && continue
		read -ra want <<<"${line%%|*}"
		read -ra words <<<"${line#*|}"
		[ "${#want[@]}" -eq "${#CLASSES[@]}" ] || {
			echo "bad row: $line" >&2
			return 1
		}
		[[ " ${want[*]} " == *" 0 "* || " ${want[*]} " == *" d0 "* ]] || before=$(snapshot)
		for i in "${!CLASSES[@]}"; do
			c=${CLASSES[$i]} code=${want[$i]}
			args=()
			for w in "${words[@]}"; do
				case $w in
				@) args+=("${VALUES[$c]}") ;;
				%k) args+=("k-$BATS_TEST_NUMBER-$i-$RANDOM$RANDOM") ;;
				*) args+=("$w") ;;
				esac
			done
			if [ "$code" = d0 ]; then
				daemon "${args[@]}"
				code=0
			else
				status=0
				"${args[@]}" </dev/null >/dev/null 2>"$err" 3>&- || status=$?
				stderr=$(<"$err")
			fi
			mapfile -t lines <"${err}"
			w="${line#*|} [$c]"
			if [ "$status" -ne "$code" ]; then
				fails+=("$w: exit $status, expected $code: ${stderr:0:200}")
			elif [ "$code" -ne 0 ] && [ "${#lines[@]}" -ne 1 ]; then
				fails+=("$w: ${#lines[@]} lines on stderr, expected 1: ${stderr:0:300}")
			fi
			if [[ $stderr == *Sanitizer* || $stderr == *"runtime error"* ]]; then
				fails+=("$w: sanitizer report: ${stderr:0:300}")
			fi
		done
		if [ -n "${before:-}" ] && [ "$(snapshot)" != "$before" ]; then
			fails+=("${line#*|}: the database changed")
		fi
		before=''
	done
	if [ "${#fails[@]}" -gt 0 ]; then
		printf '%s\n' "${fails[@]}" >&2
		return 1
	fi
}

@test "payctl authorize, capture, refund, show: bad flag values and operands are 64, nothing written" {
	table <<-'EOF'
		# empty huge neg  nonnum nonutf8 quotes inject newline
		64 64 0  0  64 0  64 64 | payctl authorize -m @ -a 100 -k %k
		64 64 64 64 64 64 64 64 | payctl authorize -m M1 -a @ -k %k
		64 64 64 64 64 64 64 64 | payctl authorize -m M1 -a 100 -c @ -k %k
		64 64 0  0  64 0  64 64 | payctl authorize -m M2 -a 100 -k @
		64 64 64 64 64 64 64 64 | payctl authorize -C @ -
		64 64 64 64 64 64 64 64 | payctl capture @
		64 64 64 64 64 64 64 64 | payctl capture -C @ -
		64 64 64 64 64 64 64 64 | payctl refund -r why @
		64 64 64 64 64 64 64 64 | payctl refund -a @ -r why 999999
		# A reason is any printable UTF-8: payment 999999 does not exist.
		64 64 65 65 64 65 65 64 | payctl refund -a 1 -r @ 999999
		64 64 64 64 64 64 64 64 | payctl refund -C @ -
		64 64 64 64 64 64 64 64 | payctl show @
	EOF
}

@test "payctl list, breaker, migrate, config, audit, recover and the dispatcher: bad values are 64" {
	table <<-'EOF'
		64 64 0  0  64 0  64 64 | payctl list -m @
		64 64 64 64 64 64 64 64 | payctl list -n @
		64 64 64 64 64 64 64 64 | payctl list -s @
		64 64 64 64 64 64 64 64 | payctl list -t @
		64 64 64 64 64 64 64 64 | payctl breaker -n @
		# Breaker names are open (a-z 0-9 _ - .): an unknown one is UNKNOWN.
		64 64 64 0  64 64 64 64 | payctl breaker @
		64 64 64 64 64 64 64 64 | payctl breaker pg @
		# A directory that is not there is a configuration error.
		64 78 78 78 78 78 78 78 | payctl migrate -s -d @
		64 64 64 64 64 64 64 64 | payctl migrate -s -w @
		64 64 64 64 64 64 64 64 | payctl config -X @
		64 64 64 64 64 64 64 64 | payctl audit -p @
		64 64 64 64 64 64 64 64 | payctl audit -t @
		64 64 64 64 64 64 64 64 | payctl recover -n @
		64 64 64 64 64 64 64 64 | payctl recover -o @
		64 64 64 64 64 64 64 64 | payctl @
	EOF
}

@test "outbox-relay, settle, refund, ledger-apply, dbstat: bad values are 64" {
	# A group name is any text; with no database the run then stops at 69.
	table <<-'EOF'
		64 64 64 64 64 64 64 64 | outbox-relay -1 -b @
		64 64 64 64 64 64 64 64 | outbox-relay -P @
		64 64 64 64 64 64 64 64 | outbox-relay -1 -X @
		64 64 69 69 69 69 69 64 | env PAY_DB_PORT=1 settle --once -g @
		64 64 64 64 64 64 64 64 | settle --once -n @
		64 64 64 64 64 64 64 64 | settle --once -X @
		64 64 64 64 64 64 64 64 | settle --retry-due -c @
		64 64 64 64 64 64 64 64 | settle -P @
		64 64 69 69 69 69 69 64 | env PAY_DB_PORT=1 refund --once -g @
		64 64 64 64 64 64 64 64 | refund --once -n @
		64 64 64 64 64 64 64 64 | refund --once -X @
		64 64 64 64 64 64 64 64 | refund --retry-due -c @
		64 64 64 64 64 64 64 64 | refund -P @
		64 64 69 69 69 69 69 64 | env PAY_DB_PORT=1 ledger-apply --once -g @
		64 64 64 64 64 64 64 64 | ledger-apply --once -n @
		64 64 64 64 64 64 64 64 | ledger-apply --once -X @
		64 64 64 64 64 64 64 64 | ledger-apply -P @
		64 64 64 64 64 64 64 64 | dbstat -a @
		64 64 64 64 64 64 64 64 | dbstat -f @
		64 64 64 64 64 64 64 64 | dbstat -l @
		64 64 64 64 64 64 64 64 | dbstat -n @
		64 64 64 64 64 64 64 64 | dbstat -s @
		64 64 64 64 64 64 64 64 | dbstat -X @
	EOF
}

@test "devbroker, mockpg, loadgen, cbtest: bad values are 64" {
	# loadgen --dry-run prints the schedule and runs nothing; cbtest with no
	# database stops at 69 before it touches Kafka.
	mkdir "$BATS_TEST_TMPDIR/cwd"
	cd "$BATS_TEST_TMPDIR/cwd"
	table <<-'EOF'
		64 64 64 64 64 64 64 64 | devbroker -b @
		64 64 64 64 64 64 64 64 | devbroker -p @
		64 64 d0 d0 64 64 64 64 | devbroker -t @
		64 64 64 64 64 64 64 64 | devbroker -t a:@
		64 64 64 64 64 64 64 64 | mockpg -l @
		64 64 64 64 64 64 64 64 | mockpg --fault @
		64 64 64 64 64 64 64 64 | mockpg --seed @
		64 64 64 64 64 64 64 64 | mockpg --authorize-delay @
		64 64 64 64 64 64 64 64 | mockpg --settle-delay @
		64 64 64 64 64 64 64 64 | mockpg --refund-delay @
		64 64 64 64 64 64 64 64 | mockpg --authorize-failure-rate @
		64 64 64 64 64 64 64 64 | mockpg --settle-failure-rate @
		64 64 64 64 64 64 64 64 | mockpg --refund-failure-rate @
		64 64 64 64 64 64 64 64 | loadgen --dry-run -S @
		64 64 64 64 64 64 64 64 | loadgen --dry-run -r @ -d 1s
		64 64 64 64 64 64 64 64 | loadgen --dry-run -r 1 -d @
		64 64 64 64 64 64 64 64 | loadgen --dry-run -s @
		64 64 64 64 64 64 64 64 | loadgen --dry-run -s 1s:@
		64 64 64 64 64 64 64 64 | loadgen --dry-run -R @ -s 1s:5
		64 64 64 64 64 64 64 64 | loadgen --dry-run -c @ -r 1 -d 1s
		64 64 64 64 64 64 64 64 | loadgen --dry-run -n @ -r 1 -d 1s
		64 0  0  0  0  0  0  0  | loadgen --dry-run -T @ -r 1 -d 1s
		64 0  0  0  0  0  0  0  | loadgen --dry-run --capture-target @ -r 1 -d 1s
		64 0  0  0  0  0  0  0  | loadgen --dry-run --refund-target @ -r 1 -d 1s
		64 64 64 64 64 64 64 64 | loadgen --dry-run --seed @ -r 1 -d 1s
		64 64 0  0  64 64 64 64 | loadgen --dry-run --key-prefix @ -r 1 -d 1s
		64 64 64 64 64 64 64 64 | loadgen --dry-run --timeout @ -r 1 -d 1s
		64 64 64 64 64 64 64 64 | loadgen --dry-run --grace @ -r 1 -d 1s
		64 64 64 64 64 64 64 64 | loadgen --dry-run --poll-interval @ -r 1 -d 1s
		64 64 64 64 64 64 64 64 | loadgen --dry-run --ledger-rows @ -r 1 -d 1s
		64 64 64 64 64 64 64 64 | loadgen --dry-run -t @ -r 1 -d 1s
		64 0  0  0  0  0  0  0  | loadgen --dry-run -o @ -r 1 -d 1s
		64 64 64 64 64 64 64 64 | loadgen --echo-target --delay-ms @
		64 64 64 64 64 64 64 64 | loadgen --echo-target --fail-every @
		64 64 64 64 64 64 64 64 | cbtest -n @
		64 64 64 64 64 64 64 64 | cbtest -m @
		64 64 69 69 64 64 64 64 | env PAY_DB_PORT=1 cbtest -b @
		64 69 69 69 69 69 69 69 | env PAY_DB_PORT=1 cbtest -o @
		64 64 64 64 64 64 64 64 | cbtest -X @
		64 69 69 69 69 69 69 69 | env PAY_DB_PORT=1 cbtest --kafka-stop @
		64 69 69 69 69 69 69 69 | env PAY_DB_PORT=1 cbtest --kafka-start @
		64 64 64 64 64 64 64 64 | cbtest --open-state-wait @
		64 64 64 64 64 64 64 64 | cbtest --recovery-ready-checks @
		64 64 64 64 64 64 64 64 | cbtest --recovery-traffic-attempts @
		64 64 64 64 64 64 64 64 | cbtest --recovery-wait @
		64 64 64 64 64 64 64 64 | cbtest --drain-wait @
	EOF
	# Nothing was written where they ran.
	[ -z "$(ls -A "$BATS_TEST_TMPDIR/cwd")" ]
}

@test "injection-shaped values that are valid are stored as they are, by bound parameters" {
	local m="a'b\"c\`d\\e" k="k'); DELETE FROM payment; --" id
	k=${k// /_}
	run -0 --separate-stderr payctl authorize -m "$m" -a 100 -k "$k"
	id=$(echo "$output" | jq -er .payment_id)
	[ "$(sqlraw "SELECT merchant_id, idempotency_key FROM payment WHERE payment_id = $id")" = "$m	$k" ]
	run -0 --separate-stderr payctl list -m "$m"
	echo "$output" | jq -e -s --arg m "$m" 'length >= 1 and all(.merchant_id == $m)'
	sql "UPDATE payment SET status = 'CAPTURED', captured_amount = amount WHERE payment_id = $id"
	run -0 --separate-stderr payctl refund -a 1 -r "x'; DROP TABLE payment; --" "$id"
	[ "$(sqlraw "SELECT reason FROM refund_request WHERE payment_id = $id")" = "x'; DROP TABLE payment; --" ]
	[ "$(sql "SELECT COUNT(*) FROM payment")" -ge 1 ]
}

# stream CMD INPUT: CMD with INPUT (printf-style, so \0 is a raw NUL) on stdin.
stream() {
	local cmd=$1
	shift
	run --separate-stderr bash -c "$cmd"' < <(printf "$@")' _ "$@"
}

@test "stream lines with a NUL byte, raw or escaped, bad UTF-8 or an injection are BAD_REQUEST, 65, nothing written" {
	local before line
	before=$(snapshot)
	for line in \
		'{"merchantId":"M\\u0000X","amount":100,"idempotencyKey":"n1"}' \
		'{"merchantId":"MX","amount":100,"idempotencyKey":"n\\u0000x"}' \
		'{"merchantId":"MX","amount":100,"idempotencyKey":"raw\0nul"}' \
		'{"merchantId":"MX","amount":100,"idempotencyKey":"nul-after"}\0' \
		'\0' \
		'{"merchantId":"MX","amount":100,"idempotencyKey":"k\xff"}' \
		'{"merchantId":"x'"'"'; DROP TABLE payment; --","amount":100,"idempotencyKey":"i1"}' \
		'{"merchantId":"MX","amount":-1,"idempotencyKey":"i2"}' \
		'{"merchantId":"MX","amount":"100","idempotencyKey":"i3"}' \
		'{"merchantId":"MX","amount":100,"idempotencyKey":"i4","currency":"KR\\u0000"}' \
		'[]' '{}' 'null' '"x"'; do
		stream 'payctl authorize -' "$line\n"
		[ "$status" -eq 65 ] || {
			echo "line '$line': exit $status: $output $stderr" >&2
			return 1
		}
		assert_one_line_stderr 'payctl authorize: 1 of 1 requests failed (1 bad)'
		echo "$output" | jq -e '.error == "BAD_REQUEST" and .line == 1'
	done
	for cmd in 'payctl capture -' 'payctl refund -'; do
		for line in '{"paymentId":1,"reason":"r\\u0000"}' '{"paymentId":1,"reason":"r"}\0junk' \
			'\0' '{"paymentId":"1\xff","reason":"r"}' '{"paymentId":"1; DROP TABLE payment","reason":"r"}'; do
			stream "$cmd" "$line\n"
			[ "$status" -eq 65 ] || {
				echo "$cmd, line '$line': exit $status: $output $stderr" >&2
				return 1
			}
			assert_one_line_stderr "${cmd% -}: 1 of 1 requests failed (1 bad)"
			echo "$output" | jq -e '.error == "BAD_REQUEST" and .line == 1'
		done
	done
	# A line too long is refused, and the next one still runs.
	stream 'payctl authorize -' '%070000d\n{"merchantId":"M\\u0000","amount":1,"idempotencyKey":"z"}\n' 0
	[ "$status" -eq 65 ]
	[ "$(echo "$output" | jq -s 'map(.error) == ["BAD_REQUEST","BAD_REQUEST"]')" = true ]
	[ "$(snapshot)" = "$before" ]
}
