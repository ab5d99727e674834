-- Issue 15: a token is found by a row id it carries (`<id>.<secret>`), not
-- by an index over its hash. The hash's index took a random leaf on every
-- insert (one WAL frame more a token, ~9 µs of a commit's CPU, measured);
-- ids come in ascending blocks (`id_blocks`), so a token's row and its
-- remaining indexes are appended at their right edges. No index on the
-- client either (another frame, ~5 µs): a token is read only with its live
-- client, so deleting a client writes nothing here.
CREATE TABLE tokens_new (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    consent_id TEXT,
    psu_id TEXT,
    grant_type TEXT NOT NULL,
    cert_thumbprint TEXT,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    code_hash TEXT
);
-- Tokens issued before carry no id: they keep theirs below zero and are
-- found by their hash's index, which covers only them.
INSERT INTO tokens_new (id, token_hash, kind, client_id, scope, consent_id, psu_id, grant_type,
        cert_thumbprint, issued_at, expires_at, revoked, code_hash)
    SELECT -ROW_NUMBER() OVER (ORDER BY rowid), token_hash, kind, client_id, scope, consent_id, psu_id,
        grant_type, cert_thumbprint, issued_at, expires_at, revoked, code_hash FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_new RENAME TO tokens;
CREATE INDEX tokens_expiry ON tokens (expires_at);
CREATE INDEX tokens_consent ON tokens (consent_id) WHERE consent_id IS NOT NULL;
CREATE INDEX tokens_code ON tokens (code_hash) WHERE code_hash IS NOT NULL;
CREATE INDEX tokens_legacy ON tokens (token_hash) WHERE id < 0;
-- Revoked tokens are purged a day after issue (a rotated refresh token may
-- never expire); only revocations, not issues, write this index.
CREATE INDEX tokens_revoked ON tokens (issued_at) WHERE revoked = 1;

-- The next id block of each sequence: a node takes a block in one
-- statement and hands its ids out from memory.
CREATE TABLE id_blocks (
    name TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
INSERT INTO id_blocks (name, next) VALUES ('tokens', 1);
