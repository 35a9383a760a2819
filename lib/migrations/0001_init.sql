-- 0001_init: the payment pipeline's tables.
-- Money is BIGINT in minor units; timestamps are TIMESTAMP(6) from the
-- database clock (sessions run in UTC).  Every statement is re-runnable, so
-- a migration that failed halfway can be applied again once fixed.

-- payment.status:
--   PENDING             gateway authorization in flight (holds the key)
--   AUTHORIZED          authorized, capture not requested (--no-capture)
--   AUTH_FAILED         declined by the gateway (replayed for the same key)
--   CAPTURE_REQUESTED   capture requested, settlement pending
--   CAPTURED            settled with the gateway
--   CAPTURE_FAILED      settlement failed for good (retries exhausted)
--   REFUND_REQUESTED    a refund is in progress
--   PARTIALLY_REFUNDED  some of the captured amount was refunded
--   REFUNDED            the whole captured amount was refunded
--   REFUND_FAILED       the last refund failed for good
CREATE TABLE IF NOT EXISTS payment (
	payment_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	merchant_id VARCHAR(32) NOT NULL,
	idempotency_key VARCHAR(64) NOT NULL,
	amount BIGINT NOT NULL,
	currency CHAR(3) NOT NULL DEFAULT 'KRW',
	auto_capture TINYINT(1) NOT NULL DEFAULT 1,
	status VARCHAR(20) NOT NULL,
	approval_number VARCHAR(32) NULL,
	transaction_id VARCHAR(64) NULL,
	pg_response_code VARCHAR(32) NULL,
	pg_response_message VARCHAR(255) NULL,
	captured_amount BIGINT NOT NULL DEFAULT 0,
	refunded_amount BIGINT NOT NULL DEFAULT 0,
	lease_until TIMESTAMP(6) NULL,
	created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
		ON UPDATE CURRENT_TIMESTAMP(6),
	CONSTRAINT ck_payment_amount CHECK (amount > 0 AND amount <= 1000000000000000),
	CONSTRAINT ck_payment_refund CHECK (refunded_amount >= 0 AND refunded_amount <= captured_amount),
	CONSTRAINT ck_payment_status CHECK (status IN ('PENDING', 'AUTHORIZED',
		'AUTH_FAILED', 'CAPTURE_REQUESTED', 'CAPTURED', 'CAPTURE_FAILED',
		'REFUND_REQUESTED', 'PARTIALLY_REFUNDED', 'REFUNDED', 'REFUND_FAILED')),
	UNIQUE KEY uk_payment_idem (merchant_id, idempotency_key),
	KEY ix_payment_status_time (status, created_at),
	KEY ix_payment_merchant_time (merchant_id, created_at),
	KEY ix_payment_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- outbox_event.status: PENDING (to publish), PUBLISHED, DEAD (gave up;
-- last_error says why and a dead-letter record was written).
-- event_key is the event's eventId (a UUID), the consumers' dedup key.
CREATE TABLE IF NOT EXISTS outbox_event (
	event_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	event_key CHAR(36) NOT NULL,
	aggregate_type VARCHAR(32) NOT NULL DEFAULT 'payment',
	aggregate_id BIGINT NOT NULL,
	event_type VARCHAR(40) NOT NULL,
	payload MEDIUMTEXT NOT NULL,
	status VARCHAR(10) NOT NULL DEFAULT 'PENDING',
	attempts INT NOT NULL DEFAULT 0,
	next_attempt_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	last_error VARCHAR(1000) NULL,
	created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	published_at TIMESTAMP(6) NULL,
	CONSTRAINT ck_outbox_status CHECK (status IN ('PENDING', 'PUBLISHED', 'DEAD')),
	UNIQUE KEY uk_outbox_key (event_key),
	KEY ix_outbox_due (status, next_attempt_at),
	KEY ix_outbox_aggregate (aggregate_id, event_id),
	KEY ix_outbox_published (status, published_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- settlement_request.status: PENDING (gateway call due or in flight),
-- SUCCESS, FAILED (will be retried at next_retry_at), DEAD (retries
-- exhausted, dead-lettered).  One per payment.
CREATE TABLE IF NOT EXISTS settlement_request (
	id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	payment_id BIGINT NOT NULL,
	event_key CHAR(36) NOT NULL,
	amount BIGINT NOT NULL,
	currency CHAR(3) NOT NULL,
	status VARCHAR(10) NOT NULL,
	pg_transaction_id VARCHAR(64) NULL,
	pg_response_code VARCHAR(32) NULL,
	pg_response_message VARCHAR(255) NULL,
	retry_count INT NOT NULL DEFAULT 0,
	next_retry_at TIMESTAMP(6) NULL,
	last_retry_at TIMESTAMP(6) NULL,
	requested_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	completed_at TIMESTAMP(6) NULL,
	CONSTRAINT ck_settlement_amount CHECK (amount > 0),
	CONSTRAINT ck_settlement_status CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED', 'DEAD')),
	UNIQUE KEY uk_settlement_payment (payment_id),
	KEY ix_settlement_due (status, next_retry_at),
	CONSTRAINT fk_settlement_payment FOREIGN KEY (payment_id) REFERENCES payment (payment_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- refund_request.status: PENDING, SUCCESS, FAILED (retried at
-- next_retry_at), DEAD (retries exhausted, dead-lettered).  Written by
-- payctl refund with the payment's status change, so an over-refund is
-- refused in the same transaction; several partial refunds per payment.
CREATE TABLE IF NOT EXISTS refund_request (
	id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	payment_id BIGINT NOT NULL,
	amount BIGINT NOT NULL,
	currency CHAR(3) NOT NULL,
	reason VARCHAR(500) NOT NULL,
	status VARCHAR(10) NOT NULL,
	pg_cancel_transaction_id VARCHAR(64) NULL,
	pg_response_code VARCHAR(32) NULL,
	pg_response_message VARCHAR(255) NULL,
	retry_count INT NOT NULL DEFAULT 0,
	next_retry_at TIMESTAMP(6) NULL,
	last_retry_at TIMESTAMP(6) NULL,
	requested_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	completed_at TIMESTAMP(6) NULL,
	CONSTRAINT ck_refund_amount CHECK (amount > 0),
	CONSTRAINT ck_refund_status CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED', 'DEAD')),
	KEY ix_refund_payment (payment_id),
	KEY ix_refund_due (status, next_retry_at),
	CONSTRAINT fk_refund_payment FOREIGN KEY (payment_id) REFERENCES payment (payment_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Double entry: every applied event writes one DEBIT and one CREDIT row of
-- the same amount; the unique key makes a redelivered event a no-op.
-- side: DEBIT or CREDIT.
CREATE TABLE IF NOT EXISTS ledger_entry (
	entry_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	event_key CHAR(36) NOT NULL,
	payment_id BIGINT NOT NULL,
	account VARCHAR(64) NOT NULL,
	side VARCHAR(6) NOT NULL,
	amount BIGINT NOT NULL,
	currency CHAR(3) NOT NULL,
	occurred_at TIMESTAMP(6) NOT NULL,
	created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	CONSTRAINT ck_ledger_amount CHECK (amount > 0),
	CONSTRAINT ck_ledger_side CHECK (side IN ('DEBIT', 'CREDIT')),
	UNIQUE KEY uk_ledger_event (event_key, side),
	KEY ix_ledger_payment (payment_id),
	KEY ix_ledger_account (account, side)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Events a consumer has applied, written in the transaction that applied
-- them: at-least-once delivery, exactly-once effect.
CREATE TABLE IF NOT EXISTS processed_event (
	consumer VARCHAR(32) NOT NULL,
	event_key CHAR(36) NOT NULL,
	processed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	PRIMARY KEY (consumer, event_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Circuit breakers shared by every process, timed by the database clock.
-- breaker_state.state: CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED.
CREATE TABLE IF NOT EXISTS breaker_state (
	name VARCHAR(32) NOT NULL PRIMARY KEY,
	state VARCHAR(12) NOT NULL DEFAULT 'CLOSED',
	opened_at TIMESTAMP(6) NULL,
	open_until TIMESTAMP(6) NULL,
	open_count INT NOT NULL DEFAULT 0,
	not_permitted BIGINT NOT NULL DEFAULT 0,
	updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
		ON UPDATE CURRENT_TIMESTAMP(6),
	CONSTRAINT ck_breaker_state CHECK (state IN ('CLOSED', 'OPEN', 'HALF_OPEN', 'FORCED_OPEN', 'DISABLED'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Outcomes per breaker and one-second bucket, for the sliding window.
CREATE TABLE IF NOT EXISTS breaker_bucket (
	name VARCHAR(32) NOT NULL,
	bucket TIMESTAMP NOT NULL,
	successes BIGINT NOT NULL DEFAULT 0,
	failures BIGINT NOT NULL DEFAULT 0,
	slow BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (name, bucket)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- HALF_OPEN permits are leases: a holder that dies lets them expire.
CREATE TABLE IF NOT EXISTS breaker_permit (
	id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	name VARCHAR(32) NOT NULL,
	holder VARCHAR(64) NOT NULL,
	expires_at TIMESTAMP(6) NOT NULL,
	KEY ix_permit_name (name, expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS breaker_event (
	id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	name VARCHAR(32) NOT NULL,
	from_state VARCHAR(12) NOT NULL,
	to_state VARCHAR(12) NOT NULL,
	reason VARCHAR(255) NOT NULL,
	at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	KEY ix_breaker_event (name, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
