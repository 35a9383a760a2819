#!/usr/bin/env bats
# outbox-relay: every outbox event to Kafka, in order per payment, nothing
# lost, with several relays at once, outages, crashes and late commits.
# shellcheck disable=SC2154 # bats' run sets output, stderr and status.

load test_helper

setup_file() {
	use_own_db
}

setup() {
	# Topics of the test's own, so that reading one back sees only it.
	export PAY_TOPIC_PREFIX="t.outbox_relay.$BATS_TEST_NUMBER."
	export PAY_KAFKA_MESSAGE_TIMEOUT=2s
	sql "TRUNCATE outbox_event; TRUNCATE outbox_count"
	# Outcomes of the last test do not count against this one.
	payctl breaker kafka reset >/dev/null
	RELAY_PIDS=()
	KAFKA_DOWN=
	DB_DOWN=
}

teardown() {
	local p
	for p in "${RELAY_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	# The broker and the database are the suite's: never leave them down.
	[ -z "$KAFKA_DOWN" ] || devstack kafka-up 2>/dev/null
	[ -z "$DB_DOWN" ] || devstack db-start 2>/dev/null
}

# add_events PAYMENTS EVENTS [TYPE [FIRST]]: EVENTS events for each of the
# payments FIRST.. (1001..), the first of every payment, then the second,
# ...; payloads carry eventId and seq (1..EVENTS).
add_events() {
	sql "INSERT INTO outbox_event (event_key, aggregate_id, event_type,
		payload) SELECT k, ${4:-1001} - 1 + p, '${3:-PAYMENT_AUTHORIZED}',
		CONCAT('{\"eventId\":\"', k, '\",\"seq\":', e, '}')
		FROM (SELECT UUID() AS k, e.seq AS e, p.seq AS p
		FROM seq_1_to_$2 e, seq_1_to_$1 p) x ORDER BY e, p"
}

n_status() {
	sql "SELECT COUNT(*) FROM outbox_event WHERE status = '$1'"
}

all_published() {
	[ "$(n_status PUBLISHED)" -eq "$1" ]
}

some_published() {
	[ "$(n_status PUBLISHED)" -gt 0 ]
}

some_published_above() {
	[ "$(n_status PUBLISHED)" -gt "$1" ]
}

# consume TOPIC: the test's TOPIC as one JSON object per message: key, id
# (header eventId), type (header eventType), seq, pid (payload eventId).
consume() {
	timeout 60 kcat -C -q -e -J -b "$PAY_KAFKA_BROKERS" \
		-t "${PAY_TOPIC_PREFIX}$1" | jq -c '
		(.headers as $h | [range(0; $h | length; 2) |
			{key: $h[.], value: $h[. + 1]}] | from_entries) as $h |
		(.payload | fromjson? // {}) as $p |
		{key, id: $h.eventId, type: $h.eventType, at: $h.occurredAt,
		 seq: $p.seq, pid: $p.eventId, payload}'
}

# check_delivery FILE: every row's event is in FILE (consume's output),
# repeats are copies of one event, and each payment's events first
# appear in seq order.
check_delivery() {
	diff <(sql "SELECT event_key FROM outbox_event ORDER BY event_key") \
		<(jq -r .id "$1" | sort -u)
	jq -e -s 'group_by(.id) | all(.[];
		(map([.key, .payload, .pid]) | unique | length) == 1 and
		.[0].id == .[0].pid)' "$1"
	jq -e -s '
		reduce .[] as $m ({}; .[$m.key] += [$m.seq]) |
		map_values(reduce .[] as $s ([];
			if any(.[]; . == $s) then . else . + [$s] end)) |
		all(.[]; . == sort)' "$1"
}

# start_relay NAME ARGS...: a relay in the background, output in
# $BATS_TEST_TMPDIR/NAME.{out,err}.
start_relay() {
	local name=$1
	shift
	outbox-relay "$@" >"$BATS_TEST_TMPDIR/$name.out" \
		2>"$BATS_TEST_TMPDIR/$name.err" 3>&- &
	RELAY_PIDS+=("$!")
}

# stop_relay PID: SIGTERM, then its exit status must be 0.
stop_relay() {
	local rc=0
	kill -TERM "$1"
	wait "$1" || rc=$?
	[ "$rc" -eq 0 ]
}

logged() {
	grep -q -- "$2" "$BATS_TEST_TMPDIR/$1.err"
}

# Rows nobody holds a lock on, as another relay's claim would see them.
unlocked() {
	sql "SELECT COUNT(*) FROM (SELECT event_id FROM outbox_event
		FOR UPDATE SKIP LOCKED) x"
}

n_unlocked() {
	[ "$(unlocked)" -eq "$1" ]
}

@test "publishes each event to its type's topic: key, headers, payload as stored" {
	local t
	for t in AUTHORIZED CAPTURE_REQUESTED CAPTURED REFUND_REQUESTED REFUNDED; do
		add_events 1 1 "PAYMENT_$t"
	done
	sql "UPDATE outbox_event SET payload = JSON_SET(payload,
		'$.occurredAt', '2026-11-21T10:00:00.000001Z') WHERE event_id = 1"
	run -0 --separate-stderr outbox-relay --once
	echo "$output" | jq -e '.published == 5 and .failed == 0 and
		.dead_lettered == 0'
	[ -z "$stderr" ]
	[ "$(n_status PUBLISHED)" = 5 ]
	[ "$(sql "SELECT COUNT(*) FROM outbox_event WHERE published_at IS NULL")" = 0 ]
	for t in authorized capture-requested captured refund-requested refunded; do
		consume "payment.$t" >"$BATS_TEST_TMPDIR/$t"
		jq -e -s --arg t "$t" 'length == 1 and .[0].key == "1001" and
			(.[0].type | ascii_downcase | gsub("_"; "-")) ==
			"payment-" + $t' "$BATS_TEST_TMPDIR/$t"
	done
	[ "$(jq -r .at "$BATS_TEST_TMPDIR/authorized")" = 2026-11-21T10:00:00.000001Z ]
	# Without occurredAt in the payload, the row's created_at.
	[[ $(jq -r .at "$BATS_TEST_TMPDIR/refunded") =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}Z$ ]]
	[ "$(jq -r .payload "$BATS_TEST_TMPDIR/captured")" = \
		"$(sql "SELECT payload FROM outbox_event WHERE event_type = 'PAYMENT_CAPTURED'")" ]
}

@test "keeps each payment's events in order, even claimed newest first" {
	add_events 40 15
	# Later events come due first: the relay must hold them back.
	sql "UPDATE outbox_event SET next_attempt_at =
		NOW(6) - INTERVAL event_id * 1000 MICROSECOND"
	start_relay r -b 37
	wait_until 60 all_published 600
	stop_relay "${RELAY_PIDS[0]}"
	consume payment.authorized >"$BATS_TEST_TMPDIR/got"
	check_delivery "$BATS_TEST_TMPDIR/got"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/got")" -eq 600 ]
	[ "$(sql "SELECT MAX(attempts) FROM outbox_event")" = 0 ]
}

@test "two relays at once publish every event once and in order per payment" {
	start_relay a -b 25 -v
	start_relay b -b 25 -v
	wait_until 10 logged a "publishing from"
	wait_until 10 logged b "publishing from"
	add_events 100 30
	sql "UPDATE outbox_event SET next_attempt_at =
		NOW(6) - INTERVAL FLOOR(RAND() * 1000000) MICROSECOND"
	wait_until 60 all_published 3000
	stop_relay "${RELAY_PIDS[0]}"
	stop_relay "${RELAY_PIDS[1]}"
	# Both counted what they marked, each in its connection's shard.
	[ "$(sql "SELECT SUM(published) FROM outbox_count")" = 3000 ]
	consume payment.authorized >"$BATS_TEST_TMPDIR/got"
	check_delivery "$BATS_TEST_TMPDIR/got"
	# Nothing failed, so nothing was sent twice.
	[ "$(wc -l <"$BATS_TEST_TMPDIR/got")" -eq 3000 ]
	# Both took part.
	for r in a b; do
		tail -n 1 "$BATS_TEST_TMPDIR/$r.err" |
			grep -E '/s, [1-9][0-9]* published'
	done
}

@test "a batch sent while the broker is down goes out when it is back, uncharged" {
	add_events 50 4
	KAFKA_DOWN=1
	devstack kafka-down
	PAY_KAFKA_MESSAGE_TIMEOUT=60s start_relay r -v
	# Claimed and sent, then failed after a second of every broker down,
	# not after the 60 s message timeout.  (Waiting for the batch's locks
	# instead raced that second on a slow host.)
	wait_until 20 logged r "every broker is down"
	devstack kafka-up
	KAFKA_DOWN=
	# The breaker opened on those failures: close it rather than wait.
	payctl breaker kafka reset >/dev/null
	wait_until 60 all_published 200
	stop_relay "${RELAY_PIDS[0]}"
	[ "$(sql "SELECT MAX(attempts) FROM outbox_event")" = 0 ]
	consume payment.authorized >"$BATS_TEST_TMPDIR/got"
	check_delivery "$BATS_TEST_TMPDIR/got"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/got")" -eq 200 ]
}

@test "broker down: rows stay pending, uncharged, and all go out after it returns" {
	start_relay r -v
	add_events 20 5
	wait_until 30 all_published 100
	KAFKA_DOWN=1
	devstack kafka-down
	add_events 30 5
	wait_until 30 logged r "events not sent"
	[ "$(n_status PUBLISHED)" = 100 ]
	[ "$(n_status PENDING)" = 150 ]
	[ "$(sql "SELECT MAX(attempts) FROM outbox_event")" = 0 ]
	devstack kafka-up
	KAFKA_DOWN=
	wait_until 60 all_published 250
	wait_until 10 logged r "delivering again"
	stop_relay "${RELAY_PIDS[0]}"
	[ "$(n_status DEAD)" = 0 ]
	consume payment.authorized >"$BATS_TEST_TMPDIR/got"
	check_delivery "$BATS_TEST_TMPDIR/got"
}

@test "killed with -9 mid-batch and restarted: every event published" {
	add_events 500 20
	start_relay r -b 50
	wait_until 30 some_published
	kill -KILL "${RELAY_PIDS[0]}"
	wait "${RELAY_PIDS[0]}" || true
	[ "$(n_status PUBLISHED)" -lt 10000 ]
	# Its claim died with its connection: nothing stays locked.
	wait_until 10 n_unlocked 10000
	run -0 outbox-relay --once
	[ "$(n_status PUBLISHED)" = 10000 ]
	consume payment.authorized >"$BATS_TEST_TMPDIR/got"
	check_delivery "$BATS_TEST_TMPDIR/got"
}

@test "SIGTERM finishes the batch in flight and exits 0, losing nothing" {
	add_events 500 20
	start_relay r -b 200
	wait_until 30 some_published
	stop_relay "${RELAY_PIDS[0]}"
	# Every row marked published is in Kafka; the rest are untouched.
	diff <(sql "SELECT event_key FROM outbox_event
		WHERE status = 'PUBLISHED' ORDER BY event_key") \
		<(consume payment.authorized | jq -r .id | sort -u)
	[ "$(sql "SELECT COUNT(*) FROM outbox_event WHERE status <> 'PUBLISHED'
		AND (status <> 'PENDING' OR attempts > 0)")" = 0 ]
	[ "$(unlocked)" -eq 10000 ]
	run -0 outbox-relay --once
	consume payment.authorized >"$BATS_TEST_TMPDIR/got"
	check_delivery "$BATS_TEST_TMPDIR/got"
}

@test "four lanes and small batches: --once publishes every event once, in order per payment" {
	add_events 300 4
	run -0 --separate-stderr outbox-relay --once -j 4 -b 50
	[ "$(n_status PUBLISHED)" = 1200 ]
	echo "$output" | jq -e '.published == 1200 and .failed == 0'
	consume payment.authorized >"$BATS_TEST_TMPDIR/got"
	check_delivery "$BATS_TEST_TMPDIR/got"
	[ "$(jq -s 'map(.id) | unique | length' "$BATS_TEST_TMPDIR/got")" = 1200 ]
}

@test "lanes and long payments: --once waits out the rows it held back" {
	# Twenty events a payment, claimed in small batches by four lanes:
	# most payments are split between lanes, so rows are held back
	# behind events in flight, and some behind rows held themselves.
	add_events 100 20
	run -0 --separate-stderr outbox-relay --once -j 4 -b 40
	echo "$output" | jq -e '.published == 2000 and .held > 0'
	[ "$(n_status PUBLISHED)" = 2000 ]
	consume payment.authorized >"$BATS_TEST_TMPDIR/got"
	check_delivery "$BATS_TEST_TMPDIR/got"
}

outages() {
	grep -c -- "connecting again" "$BATS_TEST_TMPDIR/$1.err"
}

@test "rides out a database restart and a kill: one line per outage, every event published" {
	start_relay r -b 50
	add_events 20 5
	wait_until 30 all_published 100
	DB_DOWN=1
	devstack db-stop
	wait_until 20 logged r "connecting again"
	# Still running, and saying so once, whatever the attempts.
	kill -0 "${RELAY_PIDS[0]}"
	devstack db-start
	DB_DOWN=
	add_events 30 5 PAYMENT_AUTHORIZED 2001
	wait_until 60 all_published 250
	wait_until 10 logged r "connected again after"
	[ "$(outages r)" = 1 ]
	# Killed mid-batch: that batch is sent again, nothing is lost.
	add_events 400 10 PAYMENT_AUTHORIZED 3001
	wait_until 30 some_published_above 250
	DB_DOWN=1
	devstack db-kill
	devstack db-start
	DB_DOWN=
	wait_until 90 all_published 4250
	[ "$(outages r)" = 2 ]
	[ "$(grep -c "connected again after" "$BATS_TEST_TMPDIR/r.err")" = 2 ]
	stop_relay "${RELAY_PIDS[0]}"
	run -1 grep -q "kafka producer failed" "$BATS_TEST_TMPDIR/r.err"
	[ "$(sql "SELECT MAX(attempts) FROM outbox_event")" = 0 ]
	consume payment.authorized >"$BATS_TEST_TMPDIR/got"
	check_delivery "$BATS_TEST_TMPDIR/got"
}

@test "SIGTERM while the database is away exits 0; --once exits 69 when it goes away" {
	local rc=0
	start_relay r -v
	wait_until 10 logged r "publishing from"
	DB_DOWN=1
	devstack db-stop
	wait_until 20 logged r "connecting again"
	stop_relay "${RELAY_PIDS[0]}"
	devstack db-start
	DB_DOWN=
	add_events 500 10
	outbox-relay --once -b 10 >"$BATS_TEST_TMPDIR/once.out" \
		2>"$BATS_TEST_TMPDIR/once.err" 3>&- &
	RELAY_PIDS+=("$!")
	wait_until 30 some_published
	DB_DOWN=1
	devstack db-kill
	wait "${RELAY_PIDS[1]}" || rc=$?
	devstack db-start
	DB_DOWN=
	[ "$rc" -eq 69 ]
	# One line on stderr, the summary on stdout.
	[ "$(wc -l <"$BATS_TEST_TMPDIR/once.err")" = 1 ]
	grep -qi "lost connection\|server has gone away\|can't connect" "$BATS_TEST_TMPDIR/once.err"
	run -1 grep -q "connecting again" "$BATS_TEST_TMPDIR/once.err"
	jq -e '.published > 0 and .published < 5000' "$BATS_TEST_TMPDIR/once.out"
	run -0 outbox-relay --once
	[ "$(n_status PUBLISHED)" = 5000 ]
}

# hold_late_row: a client inserts an event of payment 7001 and keeps its
# transaction open, so the row has a lower id than rows committed after
# it; sets the caller's early (its event_key) and client (the client's
# pid), and leaves the client's input open on fd 7.  commit_late_row
# commits it.
hold_late_row() {
	local fifo=$BATS_TEST_TMPDIR/fifo
	mkfifo "$fifo"
	mariadb --no-defaults -N -B --unbuffered -h "$PAY_DB_HOST" \
		-P "$PAY_DB_PORT" -u "$PAY_DB_USER" -p"$PAY_DB_PASSWORD" \
		"$PAY_DB_NAME" <"$fifo" >"$BATS_TEST_TMPDIR/client" 2>&1 3>&- &
	client=$!
	exec 7>"$fifo"
	early=$(cat /proc/sys/kernel/random/uuid)
	echo "START TRANSACTION;
		INSERT INTO outbox_event (event_key, aggregate_id, event_type,
		payload) VALUES ('$early', 7001, 'PAYMENT_AUTHORIZED',
		'{\"eventId\":\"$early\",\"seq\":1}');
		SELECT 'inserted';" >&7
	wait_until 10 grep -q inserted "$BATS_TEST_TMPDIR/client"
}
commit_late_row() {
	echo "COMMIT;" >&7
	exec 7>&-
	wait "$client"
}

@test "a row committed late with a lower id is still published" {
	local early client
	hold_late_row
	add_events 1 1
	run -0 --separate-stderr outbox-relay --once
	echo "$stderr" >&2
	echo "$output" | jq -e '.published == 1'
	commit_late_row
	[ "$(sql "SELECT MIN(event_id) FROM outbox_event")" = \
		"$(sql "SELECT event_id FROM outbox_event WHERE event_key = '$early'")" ]
	[ "$(sql "SELECT status FROM outbox_event WHERE event_key = '$early'")" = PENDING ]
	run -0 outbox-relay --once
	echo "$output" | jq -e '.published == 1'
	consume payment.authorized >"$BATS_TEST_TMPDIR/got"
	check_delivery "$BATS_TEST_TMPDIR/got"
}

@test "a row committed late, behind claims that resume past it, is still published" {
	local early client
	hold_late_row
	add_events 10 2
	# Full batches of 2: each claim resumes after the last one's rows,
	# past the uncommitted row, which is due before all of them.  (Not
	# holding the client's input open.)
	outbox-relay -b 2 >"$BATS_TEST_TMPDIR/r.out" \
		2>"$BATS_TEST_TMPDIR/r.err" 3>&- 7>&- &
	RELAY_PIDS+=("$!")
	wait_until 30 all_published 20
	commit_late_row
	wait_until 10 all_published 21
	stop_relay "${RELAY_PIDS[0]}"
	consume payment.authorized >"$BATS_TEST_TMPDIR/got"
	check_delivery "$BATS_TEST_TMPDIR/got"
}

@test "an unknown event type and a malformed payload are DEAD with a dead-letter record" {
	sql "INSERT INTO outbox_event (event_key, aggregate_id, event_type,
		payload) VALUES
		('e0000000-0000-4000-8000-000000000001', 8001,
			'PAYMENT_FROBNICATED', '{\"a\":1}'),
		('e0000000-0000-4000-8000-000000000002', 8002,
			'PAYMENT_AUTHORIZED', 'not json'),
		('e0000000-0000-4000-8000-000000000003', 8001,
			'PAYMENT_AUTHORIZED', '{\"seq\":2}')"
	run -1 --separate-stderr outbox-relay --once -e
	echo "$output" | jq -e '.published == 1 and .dead_lettered == 2'
	[[ $stderr == *"event 'e0000000-0000-4000-8000-000000000001' (PAYMENT_FROBNICATED, payment 8001) dead-lettered to '${PAY_TOPIC_PREFIX}payment.dlq': unknown event type 'PAYMENT_FROBNICATED'"* ]]
	[[ $stderr == *"payment 8002) dead-lettered"*"payload is not JSON"* ]]
	[ "$(sql "SELECT status, last_error FROM outbox_event WHERE event_id = 1")" = \
		"DEAD	unknown event type 'PAYMENT_FROBNICATED'" ]
	[ "$(sql "SELECT status FROM outbox_event WHERE event_id = 2")" = DEAD ]
	# A DEAD event no longer holds its payment back.
	[ "$(sql "SELECT status FROM outbox_event WHERE event_id = 3")" = PUBLISHED ]
	consume payment.dlq >"$BATS_TEST_TMPDIR/dlq"
	jq -e -s 'length == 2 and all(.[]; .type == "PAYMENT_DEAD_LETTER")' \
		"$BATS_TEST_TMPDIR/dlq"
	jq -s -c '[.[] | .payload | fromjson] | sort_by(.outboxEventId)' \
		"$BATS_TEST_TMPDIR/dlq" | jq -e '
		.[0].errorType == "UNKNOWN_EVENT_TYPE" and
		.[0].originalEventId == "e0000000-0000-4000-8000-000000000001" and
		.[0].originalEventType == "PAYMENT_FROBNICATED" and
		.[0].originalTopic == null and .[0].paymentId == 8001 and
		.[0].payload == "{\"a\":1}" and .[0].source == "outbox-relay" and
		.[1].errorType == "MALFORMED_PAYLOAD" and .[1].payload == "not json" and
		(.[1].originalTopic | endswith("payment.authorized")) and
		(.[1].errorMessage | startswith("payload is not JSON"))'
	# Nothing went to a catch-all topic.
	[ "$(consume payment.unknown | wc -l)" = 0 ]
	run -0 outbox-relay --once -e
	echo "$output" | jq -e '.dead_lettered == 0 and .published == 0'
}

@test "a row failing every attempt holds back only its payment, then is DEAD with its last error" {
	# Bigger than the producer's message.max.bytes: refused every time.
	sql "INSERT INTO outbox_event (event_key, aggregate_id, event_type,
		payload) VALUES
		(UUID(), 9001, 'PAYMENT_AUTHORIZED',
			CONCAT('{\"pad\":\"', REPEAT('x', 2000), '\"}')),
		(UUID(), 9001, 'PAYMENT_AUTHORIZED', '{\"seq\":2}'),
		(UUID(), 9002, 'PAYMENT_AUTHORIZED', '{\"seq\":1}')"
	export PAY_RELAY_MAX_ATTEMPTS=2
	run -75 --separate-stderr outbox-relay --once -X message.max.bytes=1000
	[[ $stderr == *"1 events not delivered, retried later: event '"*"': Broker: Message size too large" ]]
	[ "$(sql "SELECT status, attempts, next_attempt_at > NOW(6), last_error
		FROM outbox_event WHERE event_id = 1")" = \
		"PENDING	1	1	Broker: Message size too large" ]
	# Its payment's next event waits; another payment's does not.
	[ "$(sql "SELECT status, attempts FROM outbox_event WHERE event_id = 2")" = "PENDING	0" ]
	[ "$(sql "SELECT status FROM outbox_event WHERE event_id = 3")" = PUBLISHED ]
	sql "UPDATE outbox_event SET next_attempt_at = NOW(6) WHERE status = 'PENDING'"
	run -75 outbox-relay --once -X message.max.bytes=1000
	[ "$(sql "SELECT status, attempts, last_error FROM outbox_event
		WHERE event_id = 1")" = "DEAD	2	Broker: Message size too large" ]
	consume payment.dlq | jq -e -s '
		length == 1 and (.[0].payload | fromjson |
		.errorType == "MAX_ATTEMPTS" and .attempts == 2 and
		.errorMessage == "Broker: Message size too large" and
		.payload == null and .payloadOmitted == true)'
	sql "UPDATE outbox_event SET next_attempt_at = NOW(6) WHERE status = 'PENDING'"
	run -0 outbox-relay --once
	[ "$(n_status PUBLISHED)" = 2 ]
}

@test "purge deletes only published rows older than the age, in batches" {
	add_events 12 1
	# A published row's next_attempt_at is when it was published (0009).
	sql "UPDATE outbox_event SET status = 'PUBLISHED',
		next_attempt_at = NOW(6) - INTERVAL 8 DAY WHERE event_id <= 5;
		UPDATE outbox_event SET status = 'PUBLISHED',
		next_attempt_at = NOW(6) - INTERVAL 6 DAY WHERE event_id IN (6, 7);
		UPDATE outbox_event SET status = 'DEAD',
		created_at = NOW(6) - INTERVAL 30 DAY WHERE event_id = 8;
		UPDATE outbox_event SET
		created_at = NOW(6) - INTERVAL 30 DAY WHERE event_id = 9; $RECOUNT"
	run -0 --separate-stderr outbox-relay --purge-older-than 7d -b 2 -v
	[ "$output" = '{"purged":5}' ]
	# The purged rows are taken from the count of published rows.
	[ "$(sql "SELECT SUM(published) FROM outbox_count")" = 2 ]
	[[ $stderr == *"purged 5 rows"* ]]
	[ "$(sql "SELECT GROUP_CONCAT(event_id ORDER BY event_id)
		FROM outbox_event")" = 6,7,8,9,10,11,12 ]
	run -0 outbox-relay -P 7d
	[ "$output" = '{"purged":0}' ]
}

@test "usage errors are exit 64 with one line" {
	run -64 --separate-stderr outbox-relay --bogus
	assert_one_line_stderr "outbox-relay: unknown option '--bogus' (see 'outbox-relay -h')"
	run -64 --separate-stderr outbox-relay -b 0
	assert_one_line_stderr "outbox-relay: setting 'relay_batch': '0' is not an integer"
	run -64 --separate-stderr outbox-relay --batch=many
	assert_one_line_stderr "*'relay_batch': 'many'*"
	run -64 --separate-stderr outbox-relay -P soon
	assert_one_line_stderr "*option '--purge-older-than': 'soon' is not a duration*"
	run -64 --separate-stderr outbox-relay --once -P 7d
	assert_one_line_stderr "*'--purge-older-than' does not go with '--once'*"
	run -64 --separate-stderr outbox-relay -e
	assert_one_line_stderr "*'--exit-status' needs '--once'*"
	run -64 --separate-stderr outbox-relay -X linger.ms
	assert_one_line_stderr "*option '-X': 'linger.ms' is not key=value*"
	run -64 --separate-stderr outbox-relay -b
	assert_one_line_stderr "*option '-b' needs a value*"
	run -64 --separate-stderr outbox-relay extra
	assert_one_line_stderr "*unexpected argument 'extra'*"
	run -64 --separate-stderr outbox-relay -j 0
	assert_one_line_stderr "outbox-relay: setting 'relay_jobs': '0' is not an integer*"
	run -64 --separate-stderr outbox-relay --jobs=17
	assert_one_line_stderr "*'relay_jobs': '17'*"
	run -64 --separate-stderr outbox-relay -j 2 -P 7d
	assert_one_line_stderr "*'--jobs' does not go with '--purge-older-than'*"
	[ "$(n_status PUBLISHED)" = 0 ]
}

@test "a bad setting or Kafka property is exit 78 with one line" {
	PAY_RELAY_BATCH=0 run -78 --separate-stderr outbox-relay --once
	assert_one_line_stderr "outbox-relay: setting 'PAY_RELAY_BATCH': '0' is not an integer"
	PAY_RELAY_JOBS=x run -78 --separate-stderr outbox-relay --once
	assert_one_line_stderr "outbox-relay: setting 'PAY_RELAY_JOBS': 'x' is not an integer*"
	PAY_RELAY_BACKOFF=soon run -78 --separate-stderr outbox-relay --once
	assert_one_line_stderr "*'PAY_RELAY_BACKOFF': 'soon' is not a duration*"
	run -78 --separate-stderr outbox-relay --once -X no.such.property=1
	assert_one_line_stderr "outbox-relay: kafka property 'no.such.property': *"
	# An idempotent producer needs acks=all.
	run -78 --separate-stderr outbox-relay --once -X acks=1
	assert_one_line_stderr "outbox-relay: kafka producer: *acks*"
}

@test "an unreachable database is exit 69 with one line" {
	PAY_DB_PORT=1 run -69 --separate-stderr outbox-relay --once
	assert_one_line_stderr "outbox-relay: connect to '127.0.0.1:1': *"
	[ -z "$output" ]
}

@test "--once with Kafka unreachable is exit 69, rows untouched" {
	add_events 3 1
	PAY_KAFKA_BROKERS=127.0.0.1:1 PAY_KAFKA_MESSAGE_TIMEOUT=1s \
		run -69 --separate-stderr outbox-relay --once
	assert_one_line_stderr "outbox-relay: kafka '127.0.0.1:1': 3 events not sent: *"
	echo "$output" | jq -e '.published == 0 and .failed == 3'
	[ "$(sql "SELECT COUNT(*) FROM outbox_event WHERE status = 'PENDING'
		AND attempts = 0 AND last_error IS NULL")" = 3 ]
}

@test "a failed write to stdout is exit 74" {
	run -74 --separate-stderr bash -c 'outbox-relay --once >/dev/full'
	assert_one_line_stderr "outbox-relay: write to standard output: *"
}

@test "-h prints the usage on stdout, -V the version" {
	run -0 outbox-relay -h
	[ "$output" = "usage: outbox-relay [-1ehVv] [-b count] [-j jobs] [-P age] [-X key=value] ..." ]
	run -0 outbox-relay --version
	[[ $output == "outbox-relay (paykit) "* ]]
}
