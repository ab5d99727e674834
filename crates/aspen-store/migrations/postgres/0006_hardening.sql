-- Login throttling with lockout and backoff: `failures` counts attempts
-- reserved in the current window (a reservation is taken before the
-- password is checked); `locked_until` (unix seconds, 0 = not locked) and
-- `lockouts` (how many times the key was locked, for the backoff).
ALTER TABLE login_failures ADD COLUMN IF NOT EXISTS locked_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE login_failures ADD COLUMN IF NOT EXISTS lockouts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS login_failures_age ON login_failures (window_start);
