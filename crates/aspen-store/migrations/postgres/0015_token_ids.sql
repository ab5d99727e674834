-- Issue 15: a token is found by a row id it carries (`<id>.<secret>`), not
-- by an index over its hash (a random leaf on every insert). Ids come in
-- ascending blocks (`id_blocks`); tokens issued before keep ids below zero
-- and are found by their hash's index, which covers only them.
ALTER TABLE tokens ADD COLUMN id BIGINT;
UPDATE tokens SET id = -n.n FROM
    (SELECT token_hash, ROW_NUMBER() OVER (ORDER BY issued_at, token_hash) AS n FROM tokens) AS n
    WHERE tokens.token_hash = n.token_hash;
ALTER TABLE tokens ALTER COLUMN id SET NOT NULL;
ALTER TABLE tokens DROP CONSTRAINT tokens_pkey;
ALTER TABLE tokens ADD PRIMARY KEY (id);
CREATE INDEX tokens_legacy ON tokens (token_hash) WHERE id < 0;
-- Revoked tokens are purged a day after issue (a rotated refresh token may
-- never expire); only revocations, not issues, write this index.
CREATE INDEX tokens_revoked ON tokens (issued_at) WHERE revoked = 1;
-- A token is read only with its live client, so deleting a client writes
-- nothing here and needs no index on the client.
DROP INDEX tokens_client;

-- The next id block of each sequence: a node takes a block in one
-- statement and hands its ids out from memory.
CREATE TABLE id_blocks (
    name TEXT PRIMARY KEY,
    next BIGINT NOT NULL
);
INSERT INTO id_blocks (name, next) VALUES ('tokens', 1);
