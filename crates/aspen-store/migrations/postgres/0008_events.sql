-- Event notifications (EVENTS.md). One subscription and one callback URL
-- per TPP (EVT-2): the UNIQUE client_id makes a second registration fail
-- on every node.
CREATE TABLE IF NOT EXISTS event_subscriptions (
    subscription_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    callback_url TEXT,
    version TEXT NOT NULL,
    -- The URNs it receives, as ",urn,urn," ('' = every supported type).
    event_types TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS callback_urls (
    callback_url_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    version TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- The outbox: written in the transaction that makes the change. `jti` is
-- the SET's id for its whole life; `set_jws` is the SET as first signed, so
-- every retry and every poll sends the same bytes.
CREATE TABLE IF NOT EXISTS events (
    jti TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    reason TEXT,
    toe BIGINT NOT NULL,
    txn TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- 'pending' until acknowledged (a 202 to a push, or an ack in a poll);
    -- 'acked', or 'nacked' (setErrs) with ack_error.
    state TEXT NOT NULL,
    ack_error TEXT,
    push_url TEXT,
    push_next_at BIGINT,
    push_attempts BIGINT NOT NULL DEFAULT 0,
    push_lease_until BIGINT,
    push_error TEXT,
    set_jws TEXT
);
CREATE INDEX IF NOT EXISTS events_poll ON events (client_id, state, created_at);
CREATE INDEX IF NOT EXISTS events_push ON events (push_next_at) WHERE push_next_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_age ON events (created_at);

-- Expiry is noticed once per consent.
ALTER TABLE consents ADD COLUMN IF NOT EXISTS expiry_notified BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS consents_expiry ON consents (expires_at)
    WHERE expiry_notified = 0 AND expires_at IS NOT NULL;
