-- Issue 15: a spent JWT id is kept as 16 bytes (SHA-256 over its scope and
-- id, `src/jti.rs`), with no index on its expiry: the random leaf each
-- spend dirties is in a table a fifth of the size, and no second B-tree
-- takes a page of its own. The purge walks the keys in order instead.
-- SQL cannot make the keys (SQLite has no SHA-256): the ids spent so far
-- wait in used_jti_v1, which the store carries over and drops as soon as
-- the migrations have run, in one transaction (`jti::sqlite_carry`).
DROP INDEX IF EXISTS used_jti_expiry;
ALTER TABLE used_jti RENAME TO used_jti_v1;
CREATE TABLE used_jti (
    k BLOB NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
