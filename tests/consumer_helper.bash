# Shared by the workers' tests (settle, refund, ledger-apply): load after
# test_helper.  Workers run against the suite's stack in the file's own
# database and topics.

# Consumers need a session timeout of about 6 s against devbroker (see
# devbroker(8)); test_helper empties its PAY_CONFIG, so use another file.
export PAY_CONFIG="$BATS_FILE_TMPDIR/consumer.conf"
printf 'kafka.session.timeout.ms = 6000\nkafka.heartbeat.interval.ms = 500\n' \
	>"$PAY_CONFIG"

# The mock gateway is shared by the suite: reset what a file changed.
pg_control() {
	curl -sf -d "$1" "$PAY_PG_URL/control" >/dev/null
}
pg_calls() {
	curl -sf "$PAY_PG_URL/stats?endpoint=$1&key=$2" | jq -r .calls
}
pg_reset() {
	pg_control '{"fault":"none","failureRate":0,"delayMs":[50,150]}'
}

uuid() {
	cat /proc/sys/kernel/random/uuid
}

# A group of its own per run: a new group forms in about 3 s, while a
# member that rejoins after another left waits for its session timeout.
group() {
	echo "g$BATS_TEST_NUMBER.$1"
}

# produce TOPIC: key:value lines from stdin to the file's TOPIC.
produce() {
	kcat -P -b "$PAY_KAFKA_BROKERS" -t "${PAY_TOPIC_PREFIX}$1" -K:
}

# The message at TOPIC (prefix included) PARTITION OFFSET, as is.
message_at() {
	timeout 20 kcat -C -b "$PAY_KAFKA_BROKERS" -t "$1" -p "$2" -o "$3" \
		-c 1 -e -q -f '%s'
}

# Like sql, without the escaping of tabs, newlines and backslashes, for
# JSON columns.
sqlraw() {
	mariadb --no-defaults -N -B -r -h "$PAY_DB_HOST" -P "$PAY_DB_PORT" \
		-u "$PAY_DB_USER" -p"$PAY_DB_PASSWORD" -e "$1" "$PAY_DB_NAME"
}

count() {
	sql "SELECT COUNT(*) FROM $1"
}

# Payloads of the outbox events of a type, one JSON object per line.
outbox() {
	sqlraw "SELECT payload FROM outbox_event WHERE event_type = '$1'
		${2:+AND $2} ORDER BY event_id"
}

# start NAME CMD...: run a worker in the background, stderr in
# $BATS_TEST_TMPDIR/NAME.err; its pid in $BATS_TEST_TMPDIR/NAME.pid.
start() {
	local name=$1
	shift
	"$@" >"$BATS_TEST_TMPDIR/$name.out" 2>"$BATS_TEST_TMPDIR/$name.err" 3>&- &
	echo $! >"$BATS_TEST_TMPDIR/$name.pid"
}
pid_of() {
	cat "$BATS_TEST_TMPDIR/$1.pid"
}
gone() {
	! kill -0 "$1" 2>/dev/null
}
# stop_with CODE NAME [SIGNAL]: signal a started worker (TERM by default),
# wait for it, and fail unless it exits with CODE.  Not under `run`: only
# this shell can wait for its children.
stop_with() {
	local pid rc=0
	pid=$(pid_of "$2")
	kill -"${3:-TERM}" "$pid"
	wait "$pid" || rc=$?
	[ "$rc" -eq "$1" ] || {
		echo "$2 exited $rc, expected $1; its stderr:" >&2
		cat "$BATS_TEST_TMPDIR/$2.err" >&2
		return 1
	}
}
log_has() {
	grep -q -- "$2" "$BATS_TEST_TMPDIR/$1.err"
}

# Kill what a failed test left running: only the workers it started.
stop_started() {
	local f pid
	for f in "$BATS_TEST_TMPDIR"/*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	done
	return 0
}

# The program's usage line and its man page's SYNOPSIS.
usage_matches_synopsis() {
	local usage synopsis
	usage=$("$1" -h | sed 's/^usage: //')
	synopsis=$(mandoc -Tascii -Owidth=200 "$TOP/man/$1.8" | col -b |
		sed -n '/^SYNOPSIS/{n;p;}' | sed 's/^ *//')
	[ "$usage" = "$synopsis" ] || {
		echo "usage:    $usage" >&2
		echo "synopsis: $synopsis" >&2
		return 1
	}
}
