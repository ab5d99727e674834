-- Issue 15: fewer B-trees touched by a token write (each is a WAL frame).
-- A client-credentials token has no consent and no code: partial indexes
-- leave such rows out, and `consent_id = ?` / `code_hash = ?` lookups still
-- use them (an equality implies NOT NULL).
DROP INDEX IF EXISTS tokens_consent;
CREATE INDEX tokens_consent ON tokens (consent_id) WHERE consent_id IS NOT NULL;
DROP INDEX IF EXISTS tokens_code;
CREATE INDEX tokens_code ON tokens (code_hash) WHERE code_hash IS NOT NULL;

-- The JWT-id table is its primary key: WITHOUT ROWID stores the rows in
-- that B-tree instead of a rowid table plus an index over it.
CREATE TABLE used_jti_new (
    scope TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, jti)
) WITHOUT ROWID;
INSERT INTO used_jti_new (scope, jti, expires_at) SELECT scope, jti, expires_at FROM used_jti;
DROP TABLE used_jti;
ALTER TABLE used_jti_new RENAME TO used_jti;
CREATE INDEX used_jti_expiry ON used_jti (expires_at);

-- Counts a client's updates: a client-credentials token is written only
-- while the client is still at the revision its checks were made on, so
-- the token endpoint may check a client against a copy of its row.
ALTER TABLE clients ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
