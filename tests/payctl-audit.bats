#!/usr/bin/env bats
# payctl audit: every invariant broken by a fixture written with SQL into
# the file's own database, next to a consistent one that passes.  The
# fixtures are rows as the pipeline writes them, so no worker runs here.
# shellcheck disable=SC2154 # bats' run sets output and stderr.

load test_helper

setup_file() {
	use_own_db
}

# A long time ago, so that anything unfinished then is overdue now.
OLD='2026-01-01 00:00:00.000000'
OLD_ISO='2026-01-01T00:00:00.000000Z'

setup() {
	sql "SET FOREIGN_KEY_CHECKS = 0;
		TRUNCATE ledger_entry; TRUNCATE ledger_balance; TRUNCATE processed_event;
		TRUNCATE outbox_count;
		TRUNCATE refund_request; TRUNCATE settlement_request;
		TRUNCATE outbox_event; TRUNCATE payment"
}

# The statements below print SQL; `load_sql` runs what they printed.
# pay ID STATUS AMOUNT [CAPTURED [REFUNDED]]
pay() {
	echo "INSERT INTO payment (payment_id, merchant_id, idempotency_key,
		amount, status, captured_amount, refunded_amount, transaction_id,
		created_at) VALUES ($1, 'M1', 'key-$1', $3, '$2', ${4:-0}, ${5:-0},
		'txn-$1', '$OLD');"
}

# event ID TYPE KEY [CONSUMER]: a published event of payment ID, counted as
# outbox-relay counts it, and recorded as processed by CONSUMER when given.
event() {
	echo "INSERT INTO outbox_event (event_key, aggregate_id, event_type,
		payload, status, attempts, created_at, next_attempt_at)
		VALUES ('$3', $1, 'PAYMENT_$2', '{}', 'PUBLISHED', 1, '$OLD', '$OLD');
		INSERT INTO outbox_count VALUES (0, 1)
		ON DUPLICATE KEY UPDATE published = published + 1;"
	[ -z "${4:-}" ] ||
		echo "INSERT INTO processed_event VALUES ('$4', '$3', '$OLD');"
}

# settlement ID STATUS AMOUNT
settlement() {
	echo "INSERT INTO settlement_request (id, payment_id, event_key, amount,
		currency, status, requested_at) VALUES ($1, $1, 'p$1-capreq', $3,
		'KRW', '$2', '$OLD');"
}

# refund ID RID STATUS AMOUNT
refund() {
	echo "INSERT INTO refund_request (id, payment_id, amount, currency,
		reason, status, requested_at) VALUES ($2, $1, $4, 'KRW', 'test',
		'$3', '$OLD');"
	event "$1" REFUND_REQUESTED "p$1-refreq-$2" refund
}

# ledger ID KEY DEBIT CREDIT AMOUNT: the entries, and what they add to the
# running balances, as ledger-apply writes them.
ledger() {
	echo "INSERT INTO ledger_entry (event_key, payment_id, account, side,
		amount, currency, occurred_at) VALUES
		('$2', $1, '$3', 'DEBIT', $5, 'KRW', '$OLD'),
		('$2', $1, '$4', 'CREDIT', $5, 'KRW', '$OLD');
		INSERT INTO ledger_balance VALUES
		('$3', 'DEBIT', 'KRW', 0, 1, $5, $1 * $5 % 2147483647),
		('$4', 'CREDIT', 'KRW', 0, 1, $5, $1 * $5 % 2147483647)
		ON DUPLICATE KEY UPDATE entries = entries + VALUES(entries),
		amount = amount + VALUES(amount),
		checksum = (checksum + VALUES(checksum)) % 2147483647;"
}


# requested ID AMOUNT: authorized with capture, the request read by settle.
requested() {
	pay "$1" CAPTURE_REQUESTED "$2"
	event "$1" AUTHORIZED "p$1-auth"
	event "$1" CAPTURE_REQUESTED "p$1-capreq" settle
}

# captured ID AMOUNT [STATUS [REFUNDED]]: settled and booked.
captured() {
	pay "$1" "${3:-CAPTURED}" "$2" "$2" "${4:-0}"
	event "$1" AUTHORIZED "p$1-auth"
	event "$1" CAPTURE_REQUESTED "p$1-capreq" settle
	settlement "$1" SUCCESS "$2"
	event "$1" CAPTURED "p$1-cap" ledger-apply
	ledger "$1" "p$1-cap" pg_receivable merchant_payable "$2"
}

# refunded ID RID AMOUNT: a successful refund, booked.
refunded() {
	refund "$1" "$2" SUCCESS "$3"
	event "$1" REFUNDED "p$1-ref-$2" ledger-apply
	ledger "$1" "p$1-ref-$2" merchant_payable pg_receivable "$3"
}

# One payment in every final status, each consistent.
consistent() {
	captured 1 1000
	captured 2 1000 PARTIALLY_REFUNDED 400
	refunded 2 21 400
	pay 3 AUTHORIZED 500
	event 3 AUTHORIZED p3-auth
	pay 4 AUTH_FAILED 700
	requested 5 800
	echo "UPDATE payment SET status = 'CAPTURE_FAILED' WHERE payment_id = 5;"
	settlement 5 DEAD 800
	event 5 SETTLEMENT_DEAD_LETTER p5-dlq
	captured 6 600 REFUNDED 600
	refunded 6 61 200
	refunded 6 62 400
	captured 7 900 REFUND_FAILED 0
	refund 7 71 DEAD 900
	event 7 REFUND_DEAD_LETTER p7-dlq
}

load_sql() {
	sql "$(cat)"
}

# violations INVARIANT: its lines, without the time-dependent overdue_ms.
violations() {
	echo "$output" | jq -c --arg i "$1" 'select(.invariant == $i) | del(.overdue_ms)'
}

# summary: the last line, which must be the only one without "invariant".
summary() {
	echo "$output" | jq -s -e 'map(select(has("invariant") | not)) | length == 1' >/dev/null &&
		echo "$output" | tail -n 1
}

# found: the summary's non-zero counts, as one JSON object.
found() {
	summary | jq -c '.invariants | with_entries(select(.value > 0))'
}

@test "-h prints the usage without a database" {
	PAY_DB_PORT=1 run -0 payctl audit -h
	[ "$output" = "usage: payctl audit [-h] [-p age] [-t since]" ]
}

@test "an empty database passes" {
	run -0 --separate-stderr payctl audit -p 0
	[ -z "$stderr" ]
	summary | jq -e '.audit == "ok" and .violations == 0 and .in_flight == 0
		and .checked.payments == 0 and (.invariants | length == 15)
		and all(.invariants[]; . == 0)'
}

@test "payments consistent in every final status pass" {
	consistent | load_sql
	run -0 --separate-stderr payctl audit -p 0
	[ -z "$stderr" ]
	[ "$(echo "$output" | wc -l)" -eq 1 ]
	summary | jq -e '.audit == "ok" and .checked == {payments: 7, events: 24,
		settlements: 5, refunds: 4, ledger_entries: 14}'
}

@test "a pending outbox row past the bound is outbox_pending" {
	consistent | load_sql
	sql "UPDATE outbox_event SET status = 'PENDING',
		attempts = 3, last_error = 'broker down' WHERE event_key = 'p3-auth';
		$RECOUNT"
	run -1 payctl audit -p 0
	[ "$(violations outbox_pending)" = '{"invariant":"outbox_pending","payment_id":3,"event_id":9,"event_key":"p3-auth","event_type":"PAYMENT_AUTHORIZED","attempts":3,"last_error":"broker down","created_at":"'$OLD_ISO'"}' ]
	echo "$output" | jq -s -e 'first.overdue_ms > 1000'
	[ "$(found)" = '{"outbox_pending":1}' ]
	summary | jq -e '.audit == "failed" and .violations == 1'
}

@test "work within the bound is in flight: not a violation, its payment not compared" {
	consistent | load_sql
	# Payment 1's capture is still on its way to the ledger.
	sql "UPDATE outbox_event SET status = 'PENDING',
		created_at = NOW(6) WHERE event_key = 'p1-cap';
		DELETE FROM processed_event WHERE event_key = 'p1-cap';
		DELETE FROM ledger_entry WHERE payment_id = 1;
		$REBALANCE; $RECOUNT"
	run -0 payctl audit -p 1h
	summary | jq -e '.audit == "ok" and .in_flight == 1'
	run -1 payctl audit -p 0
	[ "$(found)" = '{"outbox_pending":1}' ]
}

@test "a published event its worker never recorded is event_unprocessed" {
	consistent | load_sql
	sql "DELETE FROM processed_event WHERE event_key = 'p5-capreq'"
	run -1 payctl audit
	[ "$(violations event_unprocessed)" = '{"invariant":"event_unprocessed","payment_id":5,"event_id":11,"event_key":"p5-capreq","event_type":"PAYMENT_CAPTURE_REQUESTED","consumer":"settle","published_at":"'$OLD_ISO'"}' ]
	[ "$(found)" = '{"event_unprocessed":1}' ]
}

@test "a settlement left open past its due time is settlement_overdue" {
	requested 1 1000 | load_sql
	settlement 1 FAILED 1000 | load_sql
	sql "UPDATE settlement_request SET retry_count = 2,
		pg_response_code = 'PG_TIMEOUT', next_retry_at = '$OLD'"
	run -1 payctl audit
	[ "$(violations settlement_overdue)" = '{"invariant":"settlement_overdue","payment_id":1,"settlement_id":1,"status":"FAILED","retry_count":2,"response_code":"PG_TIMEOUT","next_retry_at":"'$OLD_ISO'"}' ]
	[ "$(found)" = '{"settlement_overdue":1}' ]
	# Waiting for a retry that is not due yet is work in flight.
	sql "UPDATE settlement_request SET next_retry_at = NOW(6) + INTERVAL 1 MINUTE"
	run -0 payctl audit -p 0
	summary | jq -e '.in_flight == 1'
}

@test "a refund whose event was never read is refund_overdue" {
	captured 1 1000 REFUND_REQUESTED | load_sql
	refund 1 11 PENDING 300 | load_sql
	run -1 payctl audit
	[ "$(violations refund_overdue)" = '{"invariant":"refund_overdue","payment_id":1,"refund_id":11,"status":"PENDING","amount":300,"retry_count":0,"response_code":null,"next_retry_at":null}' ]
	[ "$(found)" = '{"refund_overdue":1}' ]
}

@test "an authorization claim whose lease ran out is claim_expired" {
	consistent | load_sql
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key,
		amount, status, lease_until, claim_token) VALUES (8, 'M1', 'key-8',
		100, 'PENDING', '$OLD', 'tok')"
	run -1 payctl audit
	[ "$(violations claim_expired)" = '{"invariant":"claim_expired","payment_id":8,"merchant_id":"M1","idempotency_key":"key-8","amount":100,"lease_until":"'$OLD_ISO'"}' ]
	[ "$(found)" = '{"claim_expired":1}' ]
	sql "UPDATE payment SET lease_until = NOW(6) + INTERVAL 1 MINUTE WHERE payment_id = 8"
	run -0 payctl audit -p 0
}

@test "an outbox row the relay gave up on is outbox_dead" {
	consistent | load_sql
	sql "UPDATE outbox_event SET status = 'DEAD',
		attempts = 20, last_error = 'timed out' WHERE event_key = 'p6-ref-62';
		$RECOUNT"
	run -1 payctl audit
	[ "$(violations outbox_dead)" = '{"invariant":"outbox_dead","payment_id":6,"event_id":19,"event_key":"p6-ref-62","event_type":"PAYMENT_REFUNDED","attempts":20,"last_error":"timed out"}' ]
	# The missing ledger rows are its consequence, not reported again.
	[ "$(found)" = '{"outbox_dead":1}' ]
}

@test "a missing or doubled event is event_count" {
	consistent | load_sql
	sql "DELETE FROM outbox_event WHERE event_key = 'p3-auth'; $RECOUNT"
	event 1 CAPTURED p1-cap-again ledger-apply | load_sql
	run -1 payctl audit
	[ "$(violations event_count)" = '{"invariant":"event_count","payment_id":1,"status":"CAPTURED","event_type":"PAYMENT_CAPTURED","expected":1,"found":2}
{"invariant":"event_count","payment_id":3,"status":"AUTHORIZED","event_type":"PAYMENT_AUTHORIZED","expected":1,"found":0}' ]
	[ "$(found)" = '{"event_count":2}' ]
}

@test "a capture request dropped by its worker is capture_outcome" {
	consistent | load_sql
	# settle read the event (dead-lettered it, say) and made no request.
	requested 8 500 | load_sql
	run -1 payctl audit
	[ "$(violations capture_outcome)" = '{"invariant":"capture_outcome","payment_id":8,"status":"CAPTURE_REQUESTED","amount":500,"captured_amount":0,"currency":"KRW","settlement_id":null,"settlement_status":null,"settlement_amount":null,"settlement_currency":null}' ]
	[ "$(found)" = '{"capture_outcome":1}' ]
}

@test "a captured payment without its successful settlement is capture_outcome" {
	consistent | load_sql
	sql "UPDATE settlement_request SET amount = 999 WHERE payment_id = 1;
		UPDATE payment SET status = 'CAPTURED' WHERE payment_id = 5"
	run -1 payctl audit
	[ "$(violations capture_outcome)" = '{"invariant":"capture_outcome","payment_id":1,"status":"CAPTURED","amount":1000,"captured_amount":1000,"currency":"KRW","settlement_id":1,"settlement_status":"SUCCESS","settlement_amount":999,"settlement_currency":"KRW"}
{"invariant":"capture_outcome","payment_id":5,"status":"CAPTURED","amount":800,"captured_amount":0,"currency":"KRW","settlement_id":5,"settlement_status":"DEAD","settlement_amount":800,"settlement_currency":"KRW"}' ]
	[ "$(found)" = '{"capture_outcome":2}' ]
}

@test "refunds and status that disagree are refund_outcome" {
	consistent | load_sql
	# No refund open, yet still REFUND_REQUESTED; and a total that is not
	# the sum of the successful refunds.
	sql "UPDATE payment SET status = 'REFUND_REQUESTED' WHERE payment_id = 2;
		UPDATE payment SET refunded_amount = 500 WHERE payment_id = 7"
	run -1 payctl audit
	[ "$(violations refund_outcome)" = '{"invariant":"refund_outcome","payment_id":2,"status":"REFUND_REQUESTED","captured_amount":1000,"refunded_amount":400,"refunds":1,"refunds_succeeded_amount":400,"refunds_reserved_amount":400,"refunds_open":0,"refunds_dead":0}
{"invariant":"refund_outcome","payment_id":7,"status":"REFUND_FAILED","captured_amount":900,"refunded_amount":500,"refunds":1,"refunds_succeeded_amount":0,"refunds_reserved_amount":0,"refunds_open":0,"refunds_dead":1}' ]
	# Payment 7's net no longer matches its ledger either.
	[ "$(found)" = '{"refund_outcome":2,"ledger_net":1}' ]
}

@test "an event booked on one account twice is ledger_pair" {
	consistent | load_sql
	sql "UPDATE ledger_entry SET account = 'pg_receivable'
		WHERE event_key = 'p1-cap' AND side = 'CREDIT'"
	run -1 payctl audit
	[ "$(violations ledger_pair)" = '{"invariant":"ledger_pair","payment_id":1,"event_key":"p1-cap","rows":2,"debits":1000,"credits":1000,"debit_account":"pg_receivable","credit_account":"pg_receivable","currencies":"KRW"}' ]
	# Changed behind ledger-apply's back: two running balances disagree.
	[ "$(found)" = '{"ledger_pair":1,"ledger_net":1,"ledger_running_balance":2}' ]
}

@test "an event applied twice under two keys is ledger_entries" {
	consistent | load_sql
	ledger 2 p2-ref-21-again merchant_payable pg_receivable 400 | load_sql
	ledger 9 p9-nobody pg_receivable merchant_payable 100 | load_sql
	run -1 payctl audit
	[ "$(violations ledger_entries)" = '{"invariant":"ledger_entries","payment_id":2,"expected":4,"found":6}
{"invariant":"ledger_entries","payment_id":9,"expected":0,"found":2}' ]
	[ "$(violations ledger_net)" = '{"invariant":"ledger_net","payment_id":2,"currency":"KRW","expected":600,"merchant_payable":200,"pg_receivable":200,"ledger_currencies":"KRW"}' ]
	[ "$(found)" = '{"ledger_entries":2,"ledger_net":1}' ]
}

@test "a payment whose ledger net is not captured less refunded is ledger_net" {
	consistent | load_sql
	sql "UPDATE ledger_entry SET amount = 900 WHERE event_key = 'p1-cap'"
	run -1 payctl audit
	[ "$(violations ledger_net)" = '{"invariant":"ledger_net","payment_id":1,"currency":"KRW","expected":1000,"merchant_payable":900,"pg_receivable":900,"ledger_currencies":"KRW"}' ]
	[ "$(found)" = '{"ledger_net":1,"ledger_running_balance":2}' ]
}

@test "debits and credits that differ are ledger_balance" {
	consistent | load_sql
	sql "DELETE FROM ledger_entry WHERE event_key = 'p6-ref-61' AND side = 'CREDIT'"
	run -1 payctl audit
	[ "$(violations ledger_balance)" = '{"invariant":"ledger_balance","currency":"KRW","debits":4500,"credits":4300}' ]
	[ "$(found)" = '{"ledger_pair":1,"ledger_entries":1,"ledger_net":1,"ledger_balance":1,"ledger_running_balance":1}' ]
}

@test "running balances that are not the sums of their entries are ledger_running_balance" {
	consistent | load_sql
	sql "UPDATE ledger_balance SET amount = amount + 5
		WHERE account = 'merchant_payable' AND side = 'CREDIT';
		UPDATE ledger_balance SET checksum = (checksum + 1) % 2147483647
		WHERE account = 'pg_receivable' AND side = 'DEBIT'"
	run -1 payctl audit
	[ "$(violations ledger_running_balance)" = '{"invariant":"ledger_running_balance","account":"merchant_payable","side":"CREDIT","currency":"KRW","entries":4,"ledger_entries":4,"amount":3505,"ledger_amount":3500}
{"invariant":"ledger_running_balance","account":"pg_receivable","side":"DEBIT","currency":"KRW","entries":4,"ledger_entries":4,"amount":3500,"ledger_amount":3500}' ]
	[ "$(found)" = '{"ledger_running_balance":2}' ]
	# They cover every payment: not checked for some.
	run -0 payctl audit --since 1h
}

@test "a count of published rows that is not their number is outbox_published_count" {
	consistent | load_sql
	sql "UPDATE outbox_count SET published = published + 1"
	run -1 payctl audit
	[ "$(violations outbox_published_count)" = '{"invariant":"outbox_published_count","counted":25,"published":24}' ]
	[ "$(found)" = '{"outbox_published_count":1}' ]
	run -0 payctl audit --since 1h
}

@test "--since leaves older payments out" {
	consistent | load_sql
	sql "UPDATE ledger_entry SET amount = 900 WHERE event_key = 'p1-cap';
		UPDATE payment SET created_at = NOW(6) WHERE payment_id >= 4"
	run -1 payctl audit
	run -0 payctl audit --since 1h
	summary | jq -e '.first_payment_id == 4 and .checked.payments == 4'
	run -0 payctl audit -t "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)"
	run -0 payctl audit -t "$(date -u -d '+1 day' +%Y-%m-%d)"
	summary | jq -e '.first_payment_id == 8 and .checked.payments == 0'
}

@test "refuses bad options with a usage error" {
	run -64 --separate-stderr payctl audit -p soon
	assert_one_line_stderr "payctl audit: option '--max-pending-age': 'soon' is not a duration*"
	[ -z "$output" ]
	run -64 --separate-stderr payctl audit --since yesterday
	assert_one_line_stderr "payctl audit: option '--since': 'yesterday' is not a time*"
	run -64 --separate-stderr payctl audit -p -1
	assert_one_line_stderr "*'-1' is not a duration*"
	run -64 --separate-stderr payctl audit extra
	assert_one_line_stderr "payctl audit: unexpected argument 'extra'*"
	run -64 --separate-stderr payctl audit -x
	assert_one_line_stderr "*-x*"
}

@test "a database that cannot be reached exits 69" {
	PAY_DB_PORT=1 run -69 --separate-stderr payctl audit
	assert_one_line_stderr "payctl audit: connect to '127.0.0.1:1': *"
}

@test "a database without the tables exits 78" {
	sql_server "CREATE DATABASE IF NOT EXISTS paytest_audit_empty"
	PAY_DB_NAME=paytest_audit_empty run -78 --separate-stderr payctl audit
	[[ $stderr == *"payctl audit: open the audit's snapshot: "*"doesn't exist"* ]]
	echo "$output" | jq -e '.error == "DATABASE_ERROR"'
	sql_server "DROP DATABASE paytest_audit_empty"
}

@test "standard output that cannot be written exits 74" {
	run -74 --separate-stderr bash -c 'payctl audit -p 0 >/dev/full'
}
