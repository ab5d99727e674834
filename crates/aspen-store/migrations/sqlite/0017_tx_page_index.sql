-- Issue 15, twenty-third pass: a page of transactions read from one index
-- alone. The keyset index led to each row's table entry (a B-tree seek a
-- row, 5% of a page's server CPU); this one holds what a page reads of a
-- stored transaction (`STORED_COLUMNS`) and what it filters on, in the
-- keyset's order, so SQLite walks its leaves and never opens the table.
-- It is the keyset index with more after its key, so that one goes: every
-- query that used it has the same prefix here. The cost is the stored
-- forms' bytes a second time (measured in BENCHMARKS.md). PostgreSQL keeps
-- its keyset index: its page's cost is its own executor's, not the seek.
CREATE INDEX IF NOT EXISTS transactions_page
    ON transactions (account_id, booking_ms, transaction_id, credit, balance_minor, wire);
DROP INDEX IF EXISTS transactions_keyset;
