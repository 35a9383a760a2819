-- 0002_authorize_claims_rate_limit: what payctl needs beyond 0001.

-- A PENDING payment row is an authorization's claim on its idempotency key.
-- claim_token names the process (or stream batch) holding the claim until
-- lease_until; the final update and the release of the claim are guarded
-- by it, so a process whose lease expired and was taken over cannot
-- overwrite or delete the new holder's work.  NULL once the row is final.
ALTER TABLE payment ADD COLUMN IF NOT EXISTS claim_token CHAR(36) NULL AFTER lease_until;

-- Fixed-window request counts per (action, merchant), shared by every
-- payctl process.  window_start is in milliseconds since the epoch, by the
-- database clock; count is the requests seen in that window, refused ones
-- included.  Rows of past windows are deleted when a merchant's next
-- window starts.
CREATE TABLE IF NOT EXISTS rate_limit (
	action VARCHAR(16) NOT NULL,
	merchant_id VARCHAR(32) NOT NULL,
	window_start BIGINT NOT NULL,
	count BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (action, merchant_id, window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
