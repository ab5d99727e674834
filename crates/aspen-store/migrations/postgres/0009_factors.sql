-- Second factors of PSUs (issue 14): TOTP authenticators. `last_step` is
-- the last RFC 6238 time step accepted, so a code is good once: the
-- compare-and-set on it is the replay check on every node.
CREATE TABLE IF NOT EXISTS psu_factors (
    factor_id TEXT PRIMARY KEY,
    psu_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_step BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS psu_factors_psu ON psu_factors (psu_id);
-- The authentication methods verified for the code's login (`amr`).
ALTER TABLE auth_codes ADD COLUMN IF NOT EXISTS amr TEXT NOT NULL DEFAULT '';
