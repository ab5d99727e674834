-- Passkeys (issue 14): the WebAuthn credential id (base64url), unique over
-- all PSUs so a sign-in without a username finds its PSU and one
-- authenticator cannot be enrolled twice; the signature counter of a
-- passkey lives in `last_step`.
ALTER TABLE psu_factors ADD COLUMN credential_id TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS psu_factors_credential ON psu_factors (credential_id);
