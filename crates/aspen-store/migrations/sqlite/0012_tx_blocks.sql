-- Issue 15: per-account counts of 32-day blocks (days since the epoch,
-- floor-divided by 32), so a first page's TotalPages sums a few block rows
-- and at most the ~62 days of two partial blocks, not every day of its
-- window (`count_plan`). Clustered on the key: the sum reads one B-tree.
CREATE TABLE tx_blocks (
    account_id TEXT NOT NULL,
    block INTEGER NOT NULL,
    credit INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (account_id, block, credit)
) WITHOUT ROWID;
INSERT INTO tx_blocks (account_id, block, credit, n)
    SELECT account_id, CASE WHEN day >= 0 THEN day / 32 ELSE (day - 31) / 32 END AS b, credit, SUM(n)
    FROM tx_days GROUP BY account_id, b, credit;
