-- The core-banking boundary. `core_payments` is the builtin ledger's own
-- record of the payments it executes (the connector's side); `payments`
-- stays the OB resource, whose status mirrors what the core reports. The
-- primary key on payment_id makes a payment submitted twice (retries, two
-- nodes, a restarted node) one payment.
CREATE TABLE IF NOT EXISTS core_payments (
    payment_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    debit_minor INTEGER NOT NULL,
    debit_currency TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status_updated_at INTEGER NOT NULL,
    due_at INTEGER,
    reason TEXT,
    instruction TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS core_payments_due ON core_payments (due_at) WHERE due_at IS NOT NULL;

-- Payments executed before the boundary existed belong to the ledger too.
INSERT INTO core_payments (payment_id, account_id, debit_minor, debit_currency, status, created_at,
    status_updated_at, due_at, reason, instruction)
SELECT payment_id, account_id, debit_minor, debit_currency,
    CASE status WHEN 'AcceptedSettlementInProcess' THEN 'Accepted'
                WHEN 'AcceptedSettlementCompleted' THEN 'Completed' ELSE status END,
    created_at, status_updated_at, due_at, reason, '{}'
FROM payments;

-- The OB payment names an account of the core, which may live in another
-- system: no foreign key into aspen's ledger (SQLite rebuilds the table).
CREATE TABLE payments_new (
    payment_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    consent_id TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status_updated_at INTEGER NOT NULL,
    due_at INTEGER,
    account_id TEXT NOT NULL,
    debit_minor INTEGER NOT NULL,
    debit_currency TEXT NOT NULL,
    reason TEXT,
    data TEXT NOT NULL
);
INSERT INTO payments_new SELECT payment_id, kind, consent_id, client_id, status, created_at,
    status_updated_at, due_at, account_id, debit_minor, debit_currency, reason, data FROM payments;
DROP TABLE payments;
ALTER TABLE payments_new RENAME TO payments;
CREATE INDEX IF NOT EXISTS payments_due ON payments (due_at) WHERE due_at IS NOT NULL;
