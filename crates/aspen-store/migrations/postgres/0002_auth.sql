-- Authorisation server: registered clients, issued tokens, single-use JWT ids.
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    software_id TEXT NOT NULL,
    client_name TEXT NOT NULL,
    token_endpoint_auth_method TEXT NOT NULL,
    token_endpoint_auth_signing_alg TEXT,
    tls_client_auth_subject_dn TEXT,
    client_secret_hash TEXT,
    permissive BIGINT NOT NULL,
    headless BIGINT NOT NULL,
    scope TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    response_types TEXT NOT NULL,
    jwks TEXT NOT NULL,
    jwks_uri TEXT,
    metadata TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX IF NOT EXISTS clients_software ON clients (software_id);

CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    consent_id TEXT,
    psu_id TEXT,
    grant_type TEXT NOT NULL,
    cert_thumbprint TEXT,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0,
    code_hash TEXT
);
CREATE INDEX IF NOT EXISTS tokens_client ON tokens (client_id);
CREATE INDEX IF NOT EXISTS tokens_consent ON tokens (consent_id);
CREATE INDEX IF NOT EXISTS tokens_code ON tokens (code_hash);
CREATE INDEX IF NOT EXISTS tokens_expiry ON tokens (expires_at);

-- A JWT id is accepted once per scope (client assertions, registration
-- requests): the primary key makes replay fail on every node (AUTH-47).
CREATE TABLE IF NOT EXISTS used_jti (
    scope TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, jti)
);
CREATE INDEX IF NOT EXISTS used_jti_expiry ON used_jti (expires_at);
