-- Payment initiation: idempotency keys and payment orders.

-- COMMON-24..26: one row per (client, endpoint, key); the primary key makes
-- two nodes receiving the same request at once create one resource. The row
-- is written in the transaction that creates the resource.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    client_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, endpoint, idem_key)
);

-- A payment order. `consent_id` is UNIQUE: a consent pays once (PIS-12),
-- whatever the nodes do. `due_at` is when the executor should take the next
-- step; NULL once the status is final.
CREATE TABLE IF NOT EXISTS payments (
    payment_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    consent_id TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status_updated_at INTEGER NOT NULL,
    due_at INTEGER,
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    debit_minor INTEGER NOT NULL,
    debit_currency TEXT NOT NULL,
    reason TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_due ON payments (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency_keys (created_at);
