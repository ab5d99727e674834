-- The bank: members (PSUs), accounts, transactions and per-account resources.
CREATE TABLE IF NOT EXISTS sandbox_meta (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seed BIGINT NOT NULL,
    anchor TEXT NOT NULL,
    bulk BIGINT NOT NULL,
    seeded_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS psus (
    psu_id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    party TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY,
    psu_id TEXT NOT NULL REFERENCES psus (psu_id),
    currency TEXT NOT NULL,
    account_type TEXT NOT NULL,
    account_sub_type TEXT NOT NULL,
    description TEXT NOT NULL,
    nickname TEXT,
    opening_date BIGINT NOT NULL,
    identifications TEXT NOT NULL,
    servicer TEXT,
    booked_minor BIGINT NOT NULL,
    pending_debits_minor BIGINT NOT NULL,
    pending_credits_minor BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_psu ON accounts (psu_id, account_id);

CREATE TABLE IF NOT EXISTS transactions (
    transaction_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    booking_ms BIGINT NOT NULL,
    value_ms BIGINT,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    credit BIGINT NOT NULL,
    status TEXT NOT NULL,
    reference TEXT,
    information TEXT,
    balance_minor BIGINT,
    detail TEXT NOT NULL
);
-- Keyset pagination walks (account, booking time, id) in both directions.
CREATE INDEX IF NOT EXISTS transactions_keyset ON transactions (account_id, booking_ms, transaction_id);

CREATE TABLE IF NOT EXISTS account_resources (
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    kind TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    sort_key TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, resource_id)
);
CREATE INDEX IF NOT EXISTS account_resources_order ON account_resources (account_id, kind, sort_key);
