-- Per-day transaction counts, so a page's TotalPages costs the same
-- whatever the history's size: whole days are summed here, only the two
-- partial days at a window's edges are counted row by row, on an index
-- that covers the count.
CREATE TABLE IF NOT EXISTS tx_days (
    account_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    credit BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (account_id, day, credit)
);
INSERT INTO tx_days (account_id, day, credit, n)
    SELECT account_id, booking_ms / 86400000, credit, COUNT(*) FROM transactions
    GROUP BY account_id, booking_ms / 86400000, credit;
CREATE INDEX IF NOT EXISTS transactions_count ON transactions (account_id, booking_ms, credit);
