-- Issue 15: a client-credentials token has no consent and no code; partial
-- indexes leave such rows out of two index updates per token, and
-- `consent_id = $1` / `code_hash = $1` lookups still use them.
DROP INDEX IF EXISTS tokens_consent;
CREATE INDEX tokens_consent ON tokens (consent_id) WHERE consent_id IS NOT NULL;
DROP INDEX IF EXISTS tokens_code;
CREATE INDEX tokens_code ON tokens (code_hash) WHERE code_hash IS NOT NULL;

-- Counts a client's updates: a client-credentials token is written only
-- while the client is still at the revision its checks were made on, so
-- the token endpoint may check a client against a copy of its row.
ALTER TABLE clients ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
