-- Consents of every kind (account access, payments, funds confirmation),
-- authorisation codes, PSU web sessions and login throttling.
CREATE TABLE IF NOT EXISTS consents (
    consent_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    client_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status_updated_at BIGINT NOT NULL,
    expires_at BIGINT,
    psu_id TEXT,
    accounts TEXT NOT NULL,
    data TEXT NOT NULL,
    authorised_at BIGINT,
    deleted BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS consents_client ON consents (client_id);
CREATE INDEX IF NOT EXISTS consents_psu ON consents (psu_id, created_at);

CREATE TABLE IF NOT EXISTS auth_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    consent_id TEXT NOT NULL,
    psu_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    scope TEXT NOT NULL,
    code_challenge TEXT,
    acr TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX IF NOT EXISTS auth_codes_expiry ON auth_codes (expires_at);

CREATE TABLE IF NOT EXISTS web_sessions (
    id_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    csrf TEXT NOT NULL,
    psu_id TEXT,
    auth_time BIGINT,
    payload TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS web_sessions_expiry ON web_sessions (expires_at);

CREATE TABLE IF NOT EXISTS login_failures (
    throttle_key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);
