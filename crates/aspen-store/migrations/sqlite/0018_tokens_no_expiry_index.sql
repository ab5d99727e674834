-- Issue 15: no index on a token's expiry. Its leaf was a page of its own in
-- every commit that wrote a token, so one WAL frame more (two `pwrite`s and
-- a checksum over the page): a lone client-credentials token cost ~10% more
-- CPU with it. The purge walks the tokens' ids instead (`src/sweep.rs`),
-- as it walks spent JWT ids. PostgreSQL keeps its index.
DROP INDEX IF EXISTS tokens_expiry;
