#!/usr/bin/env bats
# dbstat: every section against a known fixture, the three formats, the
# checks that exit 1, dependencies that are down (69, with the rest still
# printed), a read-only database user, and usage errors.

load test_helper

# The fixture: nine payments with their events, requests, entries and
# breakers.  Tests that add rows use ids from 100 up; teardown removes them.
fixture() {
	sql "
	INSERT INTO payment (payment_id, merchant_id, idempotency_key, amount,
		currency, status, captured_amount, refunded_amount) VALUES
	(1, 'm1', 'k1', 1000, 'KRW', 'CAPTURED', 1000, 0),
	(2, 'm1', 'k2', 2000, 'KRW', 'CAPTURED', 2000, 0),
	(3, 'm2', 'k3', 500, 'USD', 'CAPTURED', 500, 0),
	(4, 'm2', 'k4', 3000, 'KRW', 'PARTIALLY_REFUNDED', 3000, 1000),
	(5, 'm3', 'k5', 700, 'KRW', 'REFUNDED', 700, 700),
	(6, 'm3', 'k6', 900, 'KRW', 'AUTHORIZED', 0, 0),
	(7, 'm3', 'k7', 100, 'KRW', 'AUTH_FAILED', 0, 0),
	(8, 'm1', 'k8', 400, 'KRW', 'CAPTURE_REQUESTED', 0, 0),
	(9, 'm1', 'k9', 800, 'KRW', 'CAPTURE_FAILED', 0, 0);

	INSERT INTO outbox_event (event_id, event_key, aggregate_id, event_type,
		payload, status, attempts, created_at, next_attempt_at) VALUES
	(1, 'e1', 1, 'PAYMENT_CAPTURED', '{}', 'PUBLISHED', 1, NOW(6) - INTERVAL 11 MINUTE, NOW(6) - INTERVAL 10 MINUTE),
	(2, 'e2', 2, 'PAYMENT_CAPTURED', '{}', 'PUBLISHED', 1, NOW(6) - INTERVAL 11 MINUTE, NOW(6) - INTERVAL 10 MINUTE),
	(3, 'e3', 3, 'PAYMENT_CAPTURED', '{}', 'PUBLISHED', 1, NOW(6) - INTERVAL 11 MINUTE, NOW(6) - INTERVAL 10 MINUTE),
	(4, 'e4', 4, 'PAYMENT_CAPTURED', '{}', 'PUBLISHED', 1, NOW(6) - INTERVAL 11 MINUTE, NOW(6) - INTERVAL 10 MINUTE),
	(5, 'e5', 5, 'PAYMENT_CAPTURED', '{}', 'PUBLISHED', 1, NOW(6) - INTERVAL 11 MINUTE, NOW(6) - INTERVAL 10 MINUTE),
	(6, 'e6', 4, 'PAYMENT_REFUNDED', '{}', 'PUBLISHED', 1, NOW(6) - INTERVAL 11 MINUTE, NOW(6) - INTERVAL 10 MINUTE),
	(7, 'e7', 5, 'PAYMENT_REFUNDED', '{}', 'PUBLISHED', 1, NOW(6) - INTERVAL 11 MINUTE, NOW(6) - INTERVAL 10 MINUTE),
	(8, 'e8', 6, 'PAYMENT_AUTHORIZED', '{}', 'PUBLISHED', 1, NOW(6) - INTERVAL 11 SECOND, NOW(6) - INTERVAL 10 SECOND),
	(9, 'e9', 7, 'PAYMENT_AUTHORIZED', '{}', 'PUBLISHED', 1, NOW(6) - INTERVAL 11 SECOND, NOW(6) - INTERVAL 10 SECOND),
	(10, 'e10', 8, 'PAYMENT_AUTHORIZED', '{}', 'PUBLISHED', 1, NOW(6) - INTERVAL 11 SECOND, NOW(6) - INTERVAL 10 SECOND);
	INSERT INTO outbox_event (event_id, event_key, aggregate_id, event_type,
		payload, status, attempts, created_at) VALUES
	(11, 'e11', 8, 'PAYMENT_CAPTURE_REQUESTED', '{}', 'PENDING', 2, NOW(6) - INTERVAL 120 SECOND),
	(12, 'e12', 5, 'PAYMENT_REFUND_REQUESTED', '{}', 'DEAD', 20, NOW(6) - INTERVAL 1 HOUR);

	INSERT INTO settlement_request (id, payment_id, event_key, amount, currency,
		status, pg_response_code, retry_count, requested_at) VALUES
	(1, 1, 's1', 1000, 'KRW', 'SUCCESS', '0000', 0, NOW(6) - INTERVAL 11 MINUTE),
	(2, 2, 's2', 2000, 'KRW', 'SUCCESS', '0000', 1, NOW(6) - INTERVAL 11 MINUTE),
	(3, 3, 's3', 500, 'USD', 'SUCCESS', '0000', 0, NOW(6) - INTERVAL 11 MINUTE),
	(4, 4, 's4', 3000, 'KRW', 'SUCCESS', '0000', 0, NOW(6) - INTERVAL 11 MINUTE),
	(5, 5, 's5', 700, 'KRW', 'SUCCESS', '0000', 2, NOW(6) - INTERVAL 11 MINUTE),
	(6, 8, 's8', 400, 'KRW', 'FAILED', 'PG_TIMEOUT', 1, NOW(6) - INTERVAL 5 MINUTE),
	(7, 9, 's9', 800, 'KRW', 'DEAD', 'PG_TIMEOUT', 10, NOW(6) - INTERVAL 1 HOUR);

	INSERT INTO refund_request (id, payment_id, amount, currency, reason,
		status, pg_response_code, retry_count, requested_at) VALUES
	(1, 4, 1000, 'KRW', 'r', 'SUCCESS', '0000', 0, NOW(6) - INTERVAL 11 MINUTE),
	(2, 5, 700, 'KRW', 'r', 'SUCCESS', '0000', 1, NOW(6) - INTERVAL 11 MINUTE),
	(3, 2, 500, 'KRW', 'r', 'PENDING', NULL, 0, NOW(6) - INTERVAL 1 MINUTE),
	(4, 1, 200, 'KRW', 'r', 'DEAD', 'PG_ERROR', 10, NOW(6) - INTERVAL 1 HOUR);

	INSERT INTO ledger_entry (entry_id, event_key, payment_id, account, side,
		amount, currency, occurred_at) VALUES
	(1, 'e1', 1, 'pg_receivable', 'DEBIT', 1000, 'KRW', NOW(6)),
	(2, 'e1', 1, 'merchant_payable', 'CREDIT', 1000, 'KRW', NOW(6)),
	(3, 'e2', 2, 'pg_receivable', 'DEBIT', 2000, 'KRW', NOW(6)),
	(4, 'e2', 2, 'merchant_payable', 'CREDIT', 2000, 'KRW', NOW(6)),
	(5, 'e3', 3, 'pg_receivable', 'DEBIT', 500, 'USD', NOW(6)),
	(6, 'e3', 3, 'merchant_payable', 'CREDIT', 500, 'USD', NOW(6)),
	(7, 'e4', 4, 'pg_receivable', 'DEBIT', 3000, 'KRW', NOW(6)),
	(8, 'e4', 4, 'merchant_payable', 'CREDIT', 3000, 'KRW', NOW(6)),
	(9, 'e5', 5, 'pg_receivable', 'DEBIT', 700, 'KRW', NOW(6)),
	(10, 'e5', 5, 'merchant_payable', 'CREDIT', 700, 'KRW', NOW(6)),
	(11, 'e6', 4, 'merchant_payable', 'DEBIT', 1000, 'KRW', NOW(6)),
	(12, 'e6', 4, 'pg_receivable', 'CREDIT', 1000, 'KRW', NOW(6)),
	(13, 'e7', 5, 'merchant_payable', 'DEBIT', 700, 'KRW', NOW(6)),
	(14, 'e7', 5, 'pg_receivable', 'CREDIT', 700, 'KRW', NOW(6));

	INSERT INTO breaker_state (name, state, opened_at, open_until,
		open_count, not_permitted) VALUES
	('pg', 'OPEN', NOW(6) - INTERVAL 5 SECOND, NOW(6) + INTERVAL 25 SECOND, 3, 42),
	('kafka', 'CLOSED', NULL, NULL, 0, 0);
	$REBALANCE; $RECOUNT"
}

setup_file() {
	use_own_db
	fixture
	# A user that may only read this database.
	mariadb --no-defaults -S "$PAY_DB_ADMIN_SOCKET" -u "$(id -un)" -e "
		DROP USER IF EXISTS 'dbstat_ro'@'127.0.0.1';
		CREATE USER 'dbstat_ro'@'127.0.0.1' IDENTIFIED BY 'ro';
		GRANT SELECT ON \`$PAY_DB_NAME\`.* TO 'dbstat_ro'@'127.0.0.1';"
}

teardown_file() {
	mariadb --no-defaults -S "$PAY_DB_ADMIN_SOCKET" -u "$(id -un)" \
		-e "DROP USER IF EXISTS 'dbstat_ro'@'127.0.0.1'"
}

teardown() {
	sql "DELETE FROM ledger_entry WHERE entry_id >= 100; $REBALANCE;
		DELETE FROM outbox_event WHERE event_id >= 100; $RECOUNT;
		DELETE FROM settlement_request WHERE id >= 100;
		DELETE FROM payment WHERE payment_id >= 100"
}

# Every column of every table block starts where its header's columns do.
aligned() {
	awk '
	function starts(s,   i, out) {
		out = ""
		for (i = 1; i <= length(s); i++)
			if (substr(s, i, 1) != " " && (i == 1 ||
			    (i > 2 && substr(s, i - 2, 2) == "  ")))
				out = out " " i
		return out
	}
	/^[^ ]/ { title = $0; head = ""; blocks++; next }
	/^$/ { next }
	{
		s = starts($0)
		if (head == "")
			head = s
		else if (s != head) {
			print "misaligned in " title ": " $0
			bad = 1
		}
		rows++
	}
	END { exit bad || blocks < 5 || rows < 20 }'
}

@test "payments: counts and amounts by status and currency, and the most recent" {
	run -0 --separate-stderr dbstat -s payments -n 2
	[ -z "$stderr" ]
	echo "$output" | jq -e '.payments.count == 9'
	echo "$output" | jq -e '.payments.by_status | length == 8'
	echo "$output" | jq -e '.payments.by_status[] |
		select(.status == "CAPTURED" and .currency == "KRW") |
		.count == 2 and .amount == 3000 and .captured_amount == 3000 and
		.refunded_amount == 0'
	echo "$output" | jq -e '.payments.by_status[] |
		select(.status == "CAPTURED" and .currency == "USD") |
		.count == 1 and .amount == 500'
	echo "$output" | jq -e '.payments.by_status[] |
		select(.status == "PARTIALLY_REFUNDED") |
		.captured_amount == 3000 and .refunded_amount == 1000'
	echo "$output" | jq -e '[.payments.recent[].payment_id] == [9, 8]'
	echo "$output" | jq -e '.payments.recent[0] | .merchant_id == "m1" and
		.amount == 800 and .status == "CAPTURE_FAILED" and
		(.created_at | test("^[0-9-]{10}T[0-9:.]{15}Z$"))'
	echo "$output" | jq -e 'keys_unsorted == ["generated_at", "elapsed_ms",
		"ok", "exit_code", "failed_checks", "payments"]'
}

@test "outbox: pending, published, dead, oldest age, last minute, per type" {
	run -0 dbstat -s outbox
	echo "$output" | jq -e '.outbox | .pending == 1 and .published == 10 and
		.dead == 1 and .total == 12 and .published_last_minute == 3 and
		.published_per_second == 0.05 and .oldest_pending_attempts == 2 and
		.max_age_s == 300'
	echo "$output" | jq -e '.outbox.oldest_pending_age_s |
		. >= 119 and . < 180'
	echo "$output" | jq -e '.outbox.by_event_type == [
		{"event_type": "PAYMENT_CAPTURE_REQUESTED", "pending": 1, "dead": 0},
		{"event_type": "PAYMENT_REFUND_REQUESTED", "pending": 0, "dead": 1}]'
}

@test "settlement: counts, rates, amounts, retries and gateway errors" {
	run -0 dbstat -s settlement
	echo "$output" | jq -e '.settlement | .total == 7 and .success == 5 and
		.pending == 0 and .failed == 1 and .dead == 1 and .failures == 2'
	echo "$output" | jq -e '.settlement |
		(.completion_rate - 5 / 7 | fabs) < 1e-12 and
		(.failure_rate - 2 / 7 | fabs) < 1e-12'
	echo "$output" | jq -e '.settlement.completed_amount | sort_by(.currency) == [
		{"currency": "KRW", "count": 4, "amount": 6700},
		{"currency": "USD", "count": 1, "amount": 500}]'
	echo "$output" | jq -e '.settlement.retry_counts == [
		{"retry_count": 0, "count": 3}, {"retry_count": 1, "count": 2},
		{"retry_count": 2, "count": 1}, {"retry_count": 10, "count": 1}]'
	echo "$output" | jq -e '.settlement.errors_by_code ==
		[{"code": "PG_TIMEOUT", "count": 2}]'
	echo "$output" | jq -e '.settlement.oldest_open_age_s | . >= 299 and . < 360'
}

@test "refund: counts, rates, amounts and gateway errors" {
	run -0 dbstat -s refund
	echo "$output" | jq -e '.refund | .total == 4 and .success == 2 and
		.pending == 1 and .failed == 0 and .dead == 1 and
		.completion_rate == 0.5 and .failure_rate == 0.25'
	echo "$output" | jq -e '.refund.completed_amount ==
		[{"currency": "KRW", "count": 2, "amount": 1700}]'
	echo "$output" | jq -e '.refund.errors_by_code ==
		[{"code": "PG_ERROR", "count": 1}]'
	echo "$output" | jq -e '.refund.oldest_open_age_s | . >= 59 and . < 120'
}

@test "sums past 2^53 are still exact (the scans fall back to DECIMAL sums)" {
	# Eleven times 999999999999999 is 10999999999999989: odd and past 2^53,
	# so a DOUBLE sum cannot hold it.
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key, amount,
		currency, status) SELECT seq, 'm9', CONCAT('big', seq),
		999999999999999, 'EUR', 'AUTHORIZED' FROM seq_100_to_110;
	INSERT INTO settlement_request (id, payment_id, event_key, amount,
		currency, status) SELECT seq, seq, CONCAT('sb', seq),
		999999999999999, 'EUR', 'SUCCESS' FROM seq_100_to_110;
	INSERT INTO ledger_entry (entry_id, event_key, payment_id, account, side,
		amount, currency, occurred_at) SELECT seq * 2 + s, CONCAT('b', seq),
		seq, IF(s = 0, 'cash', 'bank'), IF(s = 0, 'DEBIT', 'CREDIT'),
		999999999999999, 'EUR', NOW(6) FROM seq_100_to_110
		JOIN (SELECT 0 AS s UNION ALL SELECT 1) x; $REBALANCE"
	run -0 dbstat -s payments,settlement,ledger
	[[ $output == *'{"status":"AUTHORIZED","currency":"EUR","count":11,"amount":10999999999999989,'* ]]
	[[ $output == *'{"currency":"EUR","count":11,"amount":10999999999999989}'* ]]
	[[ $output == *'{"account":"cash","currency":"EUR","debits":10999999999999989,"credits":0,'* ]]
	echo "$output" | jq -e '.ledger.balanced and .ledger.payments_match and
		.payments.count == 20 and .settlement.total == 18'
}

@test "ledger: entries, balances per account, both checks pass" {
	run -0 dbstat -s ledger
	echo "$output" | jq -e '.ledger | .entries == 14 and .balanced and
		.payments_match and .mismatched_payments == 0 and
		.in_flight_payments == 0 and .account_checked == "pg_receivable" and
		.grace_s == 60 and .mismatches == []'
	echo "$output" | jq -e '.ledger.totals | sort_by(.currency) == [
		{"currency": "KRW", "debits": 8400, "credits": 8400, "balanced": true},
		{"currency": "USD", "debits": 500, "credits": 500, "balanced": true}]'
	echo "$output" | jq -e '.ledger.accounts[] |
		select(.account == "pg_receivable" and .currency == "KRW") |
		.debits == 6700 and .credits == 1700 and .balance == 5000'
	echo "$output" | jq -e '.ledger.accounts[] |
		select(.account == "merchant_payable" and .currency == "USD") |
		.balance == -500'
	echo "$output" | jq -e '.failed_checks == [] and .ok'
}

@test "ledger: a payment whose net differs is exit 1 and named" {
	sql "INSERT INTO ledger_entry (entry_id, event_key, payment_id, account,
		side, amount, currency, occurred_at) VALUES
		(100, 'x1', 1, 'pg_receivable', 'DEBIT', 50, 'KRW', NOW(6)),
		(101, 'x1', 1, 'merchant_payable', 'CREDIT', 50, 'KRW', NOW(6));
		$REBALANCE"
	run -1 --separate-stderr dbstat -s ledger
	[ -z "$stderr" ]
	echo "$output" | jq -e '.ledger | .balanced and (.payments_match | not)
		and .mismatched_payments == 1'
	echo "$output" | jq -e '.ledger.mismatches == [{"payment_id": 1,
		"currency": "KRW", "expected_net": 1000, "ledger_net": 1050}]'
	echo "$output" | jq -e '.failed_checks == ["ledger_payments"] and
		(.ok | not) and .exit_code == 1'
}

@test "ledger: entries booked to the wrong payment are found though every sum matches" {
	# 300 moves from payment 2 to payment 1: per currency nothing changes.
	sql "INSERT INTO ledger_entry (entry_id, event_key, payment_id, account,
		side, amount, currency, occurred_at) VALUES
		(100, 'x1', 1, 'pg_receivable', 'DEBIT', 300, 'KRW', NOW(6)),
		(101, 'x1', 1, 'merchant_payable', 'CREDIT', 300, 'KRW', NOW(6)),
		(102, 'x2', 2, 'merchant_payable', 'DEBIT', 300, 'KRW', NOW(6)),
		(103, 'x2', 2, 'pg_receivable', 'CREDIT', 300, 'KRW', NOW(6));
		$REBALANCE"
	run -1 dbstat -s ledger
	echo "$output" | jq -e '.ledger.balanced and .ledger.mismatched_payments == 2'
	echo "$output" | jq -e '[.ledger.mismatches[] | [.payment_id, .ledger_net]]
		== [[1, 1300], [2, 1700]]'
}

@test "ledger: debits that credits do not match are exit 1" {
	sql "INSERT INTO ledger_entry (entry_id, event_key, payment_id, account,
		side, amount, currency, occurred_at) VALUES
		(100, 'x1', 3, 'cash', 'DEBIT', 10, 'USD', NOW(6)); $REBALANCE"
	run -1 dbstat -s ledger
	echo "$output" | jq -e '(.ledger.balanced | not) and .ledger.payments_match'
	echo "$output" | jq -e '.ledger.totals[] | select(.currency == "USD") |
		.debits == 510 and .credits == 500 and (.balanced | not)'
	echo "$output" | jq -e '.failed_checks == ["ledger_balance"]'
}

@test "ledger: a capture not yet booked is in flight, until the grace is over" {
	sql "INSERT INTO payment (payment_id, merchant_id, idempotency_key, amount,
		currency, status, captured_amount) VALUES
		(100, 'm1', 'k100', 600, 'KRW', 'CAPTURED', 600);
		INSERT INTO outbox_event (event_id, event_key, aggregate_id,
		event_type, payload, status) VALUES
		(100, 'e100', 100, 'PAYMENT_CAPTURED', '{}', 'PENDING')"
	run -0 dbstat -s ledger
	echo "$output" | jq -e '.ledger | .payments_match and .in_flight_payments == 1'
	sql "UPDATE outbox_event SET status = 'PUBLISHED',
		next_attempt_at = NOW(6) - INTERVAL 10 SECOND WHERE event_id = 100;
		$RECOUNT"
	run -0 dbstat -s ledger
	echo "$output" | jq -e '.ledger.in_flight_payments == 1'
	sql "UPDATE outbox_event SET next_attempt_at = NOW(6) - INTERVAL 10 MINUTE
		WHERE event_id = 100"
	run -1 dbstat -s ledger
	echo "$output" | jq -e '.ledger | .in_flight_payments == 0 and
		.mismatches == [{"payment_id": 100, "currency": "KRW",
		"expected_net": 600, "ledger_net": 0}]'
	# Within an hour, the fixture's own events (payments 1 to 5) count too.
	PAY_DBSTAT_LEDGER_GRACE=1h run -0 dbstat -s ledger
	echo "$output" | jq -e '.ledger | .grace_s == 3600 and
		.in_flight_payments == 6 and .payments_match'
	# A dead event will never be booked: not in flight.
	sql "UPDATE outbox_event SET status = 'DEAD' WHERE event_id = 100; $RECOUNT"
	PAY_DBSTAT_LEDGER_GRACE=1h run -1 dbstat -s ledger
	echo "$output" | jq -e '.ledger.mismatched_payments == 1'
}

@test "breakers: state and rates over the window, per name" {
	# The window is the last 10 s: buckets are written just before.
	sql "DELETE FROM breaker_bucket;
	INSERT INTO breaker_bucket (name, bucket, successes, failures, slow) VALUES
	('pg', NOW() - INTERVAL 2 SECOND, 3, 6, 1),
	('pg', NOW() - INTERVAL 5 SECOND, 1, 0, 0),
	('pg', NOW() - INTERVAL 60 SECOND, 100, 0, 0)"
	run -0 dbstat -s breakers
	echo "$output" | jq -e '.breakers.pg | .state == "OPEN" and .calls == 10 and
		.successes == 4 and .failures == 6 and .slow == 1 and
		.failure_rate == 0.6 and .slow_call_rate == 0.1 and
		.not_permitted == 42 and .open_count == 3 and .window_s == 10 and
		(.opened_at | endswith("Z")) and (.open_until | endswith("Z"))'
	echo "$output" | jq -e '.breakers.kafka | .state == "CLOSED" and
		.calls == 0 and .failure_rate == null and .opened_at == null'
}

@test "the oldest pending outbox row beyond --max-outbox-age is exit 1" {
	run -1 dbstat -s outbox --max-outbox-age 60s
	echo "$output" | jq -e '.failed_checks == ["outbox_age"] and
		.outbox.max_age_s == 60'
	run -0 dbstat -s outbox -a 10m
	run -0 dbstat -s outbox -a 0
	echo "$output" | jq -e '.outbox.max_age_s == null'
	PAY_DBSTAT_MAX_OUTBOX_AGE=1m run -1 dbstat -s outbox
}

@test "kafka: messages per topic, DLQ depths, group lag per partition, --max-lag" {
	local b=$PAY_KAFKA_BROKERS t=$PAY_TOPIC_PREFIX
	printf 'a\nb\nc\nd\ne\n' | kcat -P -b "$b" -t "${t}payment.dlq" -p 0
	printf '1\n2\n3\n' | kcat -P -b "$b" -t "${t}payment.captured" -p 0
	# A consumer group that has read, and committed, two of the three.
	timeout 60 kcat -C -b "$b" -G dbstat-g -X auto.offset.reset=earliest \
		-c 2 -q "${t}payment.captured" >/dev/null
	export PAY_DBSTAT_KAFKA_GROUPS=dbstat-g,dbstat-none
	run -0 --separate-stderr dbstat -k -s kafka
	[ -z "$stderr" ]
	echo "$output" | jq -e --arg t "$t" '.kafka |
		.topics["payment.dlq"].topic == ($t + "payment.dlq") and
		.topics["payment.dlq"].messages == 5 and
		.topics["payment.captured"].messages == 3 and
		.dlq["payment.dlq"].messages == 5 and
		.dlq["settlement.dlq"].messages == 0 and .max_lag == null'
	echo "$output" | jq -e --arg t "$t" '.kafka.groups["dbstat-g"] == {"lag": 1,
		"partitions": [{"topic": ($t + "payment.captured"), "partition": 0,
		"committed": 2, "end": 3, "lag": 1}]}'
	echo "$output" | jq -e '.kafka.groups["dbstat-none"] ==
		{"lag": 0, "partitions": []}'
	run -1 dbstat -k -s kafka --max-lag 0
	echo "$output" | jq -e '.failed_checks == ["kafka_lag"] and .kafka.max_lag == 0'
	run -0 dbstat -s kafka -l 1
}

@test "health: the database, Kafka and the gateway answer" {
	run -0 dbstat -s health
	echo "$output" | jq -e '.health | (.db.up and .kafka.up and .gateway.up) and
		.db.rtt_ms >= 0 and .kafka.brokers >= 1 and .gateway.http_status == 200
		and (.db.version | length > 0)'
}

@test "a gateway that is down is exit 69, the rest still printed" {
	PAY_PG_URL=http://127.0.0.1:1 run -69 --separate-stderr dbstat
	assert_one_line_stderr "dbstat: gateway 'http://127.0.0.1:1/health': *"
	echo "$output" | jq -e '(.health.gateway.up | not) and
		(.health.gateway.error | length > 0) and .health.db.up and
		.health.kafka.up and .payments.count == 9 and .ledger.balanced and
		.exit_code == 69'
}

@test "Kafka down is exit 69 with the database sections still printed" {
	PAY_KAFKA_BROKERS=127.0.0.1:1 PAY_DBSTAT_KAFKA_TIMEOUT=300ms \
		run -69 --separate-stderr dbstat -k
	assert_one_line_stderr "dbstat: kafka '127.0.0.1:1': *"
	echo "$output" | jq -e '(.kafka.error | length > 0) and
		(.health.kafka.up | not) and .health.gateway.up and
		.payments.count == 9 and .outbox.pending == 1'
}

@test "the database down is exit 69 with Kafka and the gateway still printed" {
	PAY_DB_PORT=1 run -69 --separate-stderr dbstat -k
	assert_one_line_stderr "dbstat: connect to '127.0.0.1:1': *"
	echo "$output" | jq -e '[.payments, .outbox, .settlement, .refund,
		.ledger, .breakers] | all(.error | length > 0)'
	echo "$output" | jq -e '(.health.db.up | not) and .health.kafka.up and
		.health.gateway.up and (.kafka.error == null) and
		(.kafka.topics | length == 8)'
}

@test "a read-only database user is enough" {
	PAY_DB_USER=dbstat_ro PAY_DB_PASSWORD=ro run -0 --separate-stderr dbstat
	[ -z "$stderr" ]
	echo "$output" | jq -e '.ok and .payments.count == 9 and .ledger.entries == 14
		and .outbox.dead == 1 and .settlement.total == 7'
	# And it really is read-only.
	run ! mariadb --no-defaults -h "$PAY_DB_HOST" -P "$PAY_DB_PORT" \
		-u dbstat_ro -pro -e "DELETE FROM payment" "$PAY_DB_NAME"
}

@test "refused credentials are exit 78" {
	PAY_DB_PASSWORD=wrong run -78 --separate-stderr dbstat -s payments
	assert_one_line_stderr "*Access denied for user 'payuser'*"
	echo "$output" | jq -e '.payments.error | test("Access denied")'
}

@test "json: one object on one line, integers for money" {
	run -0 dbstat -k
	[ "${#lines[@]}" -eq 1 ]
	echo "$output" | jq -e 'type == "object" and
		([.. | objects | .amount? // empty] | all(type == "number" and . == floor))'
	echo "$output" | jq -e 'has("kafka") and has("health") and has("breakers")'
}

@test "prom: the exposition passes a strict check" {
	run -0 --separate-stderr dbstat -k -f prom
	printf '%s\n' "$output" >"$BATS_TEST_TMPDIR/m.prom"
	run -0 "$TOP/tests/prom-check" "$BATS_TEST_TMPDIR/m.prom"
	grep -qx 'paykit_payments{status="CAPTURED",currency="KRW"} 2' "$BATS_TEST_TMPDIR/m.prom"
	grep -qx 'paykit_outbox_events{status="pending"} 1' "$BATS_TEST_TMPDIR/m.prom"
	grep -qx 'paykit_breaker_state{name="pg",state="OPEN"} 1' "$BATS_TEST_TMPDIR/m.prom"
	grep -qx 'paykit_ledger_balanced 1' "$BATS_TEST_TMPDIR/m.prom"
	grep -qx 'paykit_up{dependency="gateway"} 1' "$BATS_TEST_TMPDIR/m.prom"
	grep -qx 'paykit_dbstat_check_failed{check="outbox_age"} 0' "$BATS_TEST_TMPDIR/m.prom"
}

@test "prom: still valid when a check fails and a dependency is down" {
	PAY_PG_URL=http://127.0.0.1:1 PAY_DB_PORT=1 run -69 --separate-stderr dbstat -f prom
	printf '%s\n' "$output" >"$BATS_TEST_TMPDIR/m.prom"
	run -0 "$TOP/tests/prom-check" "$BATS_TEST_TMPDIR/m.prom"
	grep -qx 'paykit_dbstat_section_error{section="payments"} 1' "$BATS_TEST_TMPDIR/m.prom"
	grep -qx 'paykit_up{dependency="db"} 0' "$BATS_TEST_TMPDIR/m.prom"
	run -1 dbstat -f prom -s outbox -a 1s
	printf '%s\n' "$output" | "$TOP/tests/prom-check"
	[[ $output == *'paykit_dbstat_check_failed{check="outbox_age"} 1'* ]]
}

@test "table: every block's columns line up" {
	run -0 dbstat -k -f table
	printf '%s\n' "$output" | aligned
	[[ $output == *"payments.by_status"* ]]
	[[ $output == *"ledger.accounts"* ]]
	[[ $output == *"kafka.topics"* ]]
}

@test "table is the default on a terminal" {
	run -0 script -qec "dbstat -s payments" /dev/null
	[[ $output == *"payments.by_status"* ]]
}

@test "sections are printed in the report's order, kafka only when asked" {
	run -0 dbstat -s ledger,payments -s health
	echo "$output" | jq -e '[keys_unsorted[5:][]] == ["payments", "ledger", "health"]'
	run -0 dbstat
	echo "$output" | jq -e 'has("kafka") | not'
	run -0 dbstat -k -s payments
	echo "$output" | jq -e '[keys_unsorted[5:][]] == ["payments", "kafka"]'
}

@test "standard output that cannot be written is exit 74" {
	run -74 --separate-stderr sh -c 'dbstat -s payments >/dev/full'
	assert_one_line_stderr "dbstat: *No space left on device"
}

@test "a malformed setting is exit 78 naming it" {
	PAY_DBSTAT_MAX_LAG=many run -78 --separate-stderr dbstat
	assert_one_line_stderr "dbstat: setting 'PAY_DBSTAT_MAX_LAG': 'many' is not an integer"
}

@test "usage errors are exit 64 with one line" {
	run -64 --separate-stderr dbstat --bogus
	assert_one_line_stderr "dbstat: unknown option '--bogus' (see 'dbstat -h')"
	run -64 --separate-stderr dbstat -f xml
	assert_one_line_stderr "*'--format': 'xml' is not json, table or prom*"
	run -64 --separate-stderr dbstat -f json --format prom
	assert_one_line_stderr "*'--format' given twice*"
	run -64 --separate-stderr dbstat -s payments,nosuch
	assert_one_line_stderr "*unknown section 'nosuch'*"
	run -64 --separate-stderr dbstat -s ,
	assert_one_line_stderr "*'--section' needs a section name*"
	run -64 --separate-stderr dbstat -n 1001
	assert_one_line_stderr "*'--recent': '1001' is not 0 to 1000*"
	run -64 --separate-stderr dbstat --max-outbox-age soon
	assert_one_line_stderr "*'--max-outbox-age': 'soon' is not a duration*"
	run -64 --separate-stderr dbstat -l -1
	assert_one_line_stderr "*'--max-lag': '-1' is not a message count*"
	run -64 --separate-stderr dbstat -X novalue
	assert_one_line_stderr "*'-X': 'novalue' is not key=value*"
	run -64 --separate-stderr dbstat -s
	assert_one_line_stderr "*option '-s' needs a value*"
	run -64 --separate-stderr dbstat extra
	assert_one_line_stderr "*unexpected argument 'extra'*"
}

@test "-h prints the usage on stdout and -V the version, with nothing running" {
	PAY_DB_PORT=1 run -0 dbstat -h
	[[ $output == "usage: dbstat "* ]]
	PAY_DB_PORT=1 run -0 dbstat -V
	[[ $output == "dbstat (paykit) "* ]]
}
