-- 0006_breaker: what the shared circuit breaker needs beyond 0001.

-- since: outcomes before this instant are not counted (set when a breaker
-- closes, so the failures that opened it do not open it again).
ALTER TABLE breaker_state ADD COLUMN IF NOT EXISTS since TIMESTAMP(6) NULL AFTER open_count;

-- outcome of a HALF_OPEN probe: NULL while in flight, 'ok' once it
-- succeeded; a failed probe reopens the breaker at once.
ALTER TABLE breaker_permit ADD COLUMN IF NOT EXISTS outcome VARCHAR(4) NULL AFTER holder;
