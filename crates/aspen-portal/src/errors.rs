//! The error catalogue: every code a TPP can meet, what makes aspen send
//! it, and how to fix the request. The matches have no catch-all arm, so a
//! new code cannot reach the wire without an entry here.

use aspen_http::{Forbidden, ObErrorCode};

pub struct Entry {
    pub code: &'static str,
    pub status: &'static str,
    pub cause: &'static str,
    pub fix: &'static str,
    /// False for v3.1.2 codes aspen never sends (listed so the table is
    /// the whole enumeration).
    pub emitted: bool,
}

fn ob(c: ObErrorCode) -> Entry {
    use ObErrorCode::*;
    let (status, cause, fix, emitted) = match c {
        FieldExpected => (
            "400",
            "A field the bank's payment rules need for this payment is absent although the OB schema makes it optional (for example the creditor's SupplementaryData or a country's bank details).",
            "Send the field named in Path; the payment rules page lists what each scheme and country needs.",
            true,
        ),
        FieldInvalid => (
            "400",
            "A field has a value the schema or the bank's rules refuse: format, length, a reference that breaks the reference rules, an amount that is not positive, a date in the past.",
            "Correct the value at Path; Message says which rule it broke.",
            true,
        ),
        FieldInvalidDate => (
            "400",
            "A date-time field cannot be read (ISO 8601 with a time zone) or is out of range, such as an ExpirationDateTime in the past or a transaction window whose end is before its start.",
            "Send ISO 8601 date-times with an offset, in the allowed range.",
            true,
        ),
        FieldMissing => (
            "400",
            "A field the OB schema requires is absent, or the body is not the JSON object the endpoint takes.",
            "Add the field at Path; validate the body against the OpenAPI file.",
            true,
        ),
        FieldUnexpected => (
            "400",
            "A field is present that must not be for this request, such as Destination on a creditor account that is not a wallet.",
            "Remove the field at Path.",
            true,
        ),
        HeaderInvalid => (
            "400",
            "A header has a value aspen cannot use: x-fapi-auth-date not an HTTP date, x-fapi-customer-ip-address not an IP address, x-idempotency-key too long or reused with another body, or a content type aspen does not take.",
            "Fix the header named in Message.",
            true,
        ),
        HeaderMissing => (
            "400",
            "A required header is absent: x-idempotency-key on a POST that needs one, or x-jws-signature where the endpoint needs a signed body.",
            "Send the header named in Message.",
            true,
        ),
        ResourceConsentMismatch => (
            "400",
            "A payment order or funds check does not match its consent: Initiation or Risk differ byte for byte in meaning, or the ConsentId is another one than the token's.",
            "Send the consent's Initiation and Risk unchanged with the consent the PSU authorised.",
            true,
        ),
        ResourceInvalidConsentStatus => (
            "400",
            "The consent is not in the status the call needs: not Authorised yet, already Consumed, Rejected, Revoked or expired.",
            "Have the PSU authorise a new consent; a payment consent is good for one order.",
            true,
        ),
        ResourceInvalidFormat => (
            "400",
            "The body cannot be parsed as the resource the endpoint takes (not JSON, wrong types, unknown permission codes, a page cursor aspen did not issue).",
            "Send JSON that validates against the OpenAPI schema.",
            true,
        ),
        ResourceNotFound => (
            "400",
            "A resource the body names does not exist, such as a ConsentId aspen never issued.",
            "Use an id from an earlier response.",
            true,
        ),
        RulesAfterCutOffDateTime => (
            "400",
            "Not sent by aspen: payments have no cut-off in this sandbox's core.",
            "—",
            false,
        ),
        RulesDuplicateReference => (
            "400",
            "Not sent by aspen: duplicate submissions are caught by x-idempotency-key instead.",
            "—",
            false,
        ),
        SignatureInvalid => (
            "400",
            "The x-jws-signature does not verify over the body with the key its kid names in your software statement's JWKS.",
            "Sign the exact bytes you send (b64 false, detached), with a key of your SSA.",
            true,
        ),
        SignatureInvalidClaim => (
            "400",
            "A protected header of the signature has a wrong value: iss not your organisation/software id, tan not this bank's trust anchor, iat in the future, alg not PS256.",
            "Set the claim named in Message to the value the OB signing profile requires.",
            true,
        ),
        SignatureMalformed => (
            "400",
            "The x-jws-signature is not a detached compact JWS (header..signature).",
            "Send the JWS with an empty payload part.",
            true,
        ),
        SignatureMissing => (
            "400",
            "The endpoint needs a signed body and x-jws-signature is absent.",
            "Sign the body and send the header.",
            true,
        ),
        SignatureMissingClaim => (
            "400",
            "A protected header the OB signing profile requires is absent (kid, b64, crit, iat, iss, tan).",
            "Add the claim named in Message; crit must list the OB claims.",
            true,
        ),
        SignatureUnexpected => (
            "400",
            "Not sent by aspen: a signature where none is required is ignored.",
            "—",
            false,
        ),
        UnsupportedAccountIdentifier => (
            "400",
            "The account identification does not fit its scheme (for example a sort code and account number that is not 14 digits, an IBAN with a bad check sum, a wallet id without its prefix).",
            "Correct Identification for the SchemeName; see the payment rules page.",
            true,
        ),
        UnsupportedAccountSecondaryIdentifier => (
            "400",
            "Not sent by aspen: SecondaryIdentification is accepted as given.",
            "—",
            false,
        ),
        UnsupportedCurrency => (
            "400",
            "The currency is not one this payment type takes here (domestic payments are in the currencies the payment rules list; a funds check is in the account's currency).",
            "Use a currency from the payment rules page.",
            true,
        ),
        UnsupportedEventType => (
            "400",
            "An event subscription names an event type aspen does not send.",
            "Subscribe to the types aspen sends: urn:uk:org:openbanking:events:resource-update and urn:uk:org:openbanking:events:consent-authorization-revoked.",
            true,
        ),
        UnsupportedFrequency => (
            "400",
            "Not sent by aspen: standing orders are not offered.",
            "—",
            false,
        ),
        UnsupportedLocalInstrument => (
            "400",
            "LocalInstrument is not one this bank offers for the payment type.",
            "Leave it out or use one listed on the payment rules page.",
            true,
        ),
        UnsupportedScheme => (
            "400",
            "The creditor's SchemeName is not accepted for this payment type or destination country.",
            "Use a scheme the payment rules page lists for this type and country.",
            true,
        ),
        Reauthenticate => (
            "400",
            "Not sent by aspen: an expired or revoked consent answers with the consent status instead.",
            "—",
            false,
        ),
        UnexpectedError => (
            "500 / 503",
            "Something failed on the bank's side: a database or core banking outage (503 with Retry-After), or a defect (500). The body's Id is in the bank's logs.",
            "Retry after the time in Retry-After with the same x-idempotency-key; report the Id if it persists.",
            true,
        ),
    };
    Entry {
        code: c.as_str(),
        status,
        cause,
        fix,
        emitted,
    }
}

fn forbidden(f: Forbidden) -> Entry {
    let (cause, fix) = match f {
        Forbidden::Scope => (
            "The access token was not granted the scope this endpoint needs (accounts, payments, fundsconfirmations, eventpolling).",
            "Ask for the scope when you get the token; your software statement's roles decide which scopes you may have.",
        ),
        Forbidden::Permission => (
            "The consent behind the token does not grant the permission this endpoint needs (for example ReadTransactionsDetail).",
            "Create a consent with the permission and have the PSU authorise it.",
        ),
        Forbidden::Account => (
            "The account is not one the PSU chose for this consent.",
            "Use an AccountId from /accounts with this token.",
        ),
        Forbidden::OtherTpp => (
            "The resource belongs to another TPP.",
            "Use resources your client created.",
        ),
        Forbidden::OtherConsent => (
            "The token is for another consent than the resource's.",
            "Use the token the PSU's authorisation of this consent gave.",
        ),
    };
    Entry {
        code: f.code(),
        status: "403",
        cause,
        fix,
        emitted: true,
    }
}

pub fn ob_entries() -> Vec<Entry> {
    ObErrorCode::ALL.into_iter().map(ob).collect()
}

pub fn forbidden_entries() -> Vec<Entry> {
    Forbidden::ALL.into_iter().map(forbidden).collect()
}

/// OAuth 2.0 / OIDC / DCR errors of the authorisation server, with where
/// they come from.
pub fn oauth_entries() -> Vec<Entry> {
    let e = |code, status, cause, fix| Entry {
        code,
        status,
        cause,
        fix,
        emitted: true,
    };
    vec![
        e(
            "invalid_request",
            "400 / redirect",
            "A parameter is missing, repeated or malformed; at /authorize before the redirect URI is trusted this is a page, never a redirect.",
            "Check the parameter named in error_description.",
        ),
        e(
            "invalid_request_object",
            "redirect",
            "The request object does not verify (PS256 with a key of your SSA), has the wrong aud/iss/exp/nbf, or its claims differ from the query.",
            "Sign a fresh request object: aud is the issuer, exp at most an hour after nbf.",
        ),
        e(
            "unsupported_response_type",
            "redirect",
            "response_type is not one your registration allows (code id_token; code only for permissive sandbox clients).",
            "Use response_type=code id_token.",
        ),
        e(
            "access_denied",
            "redirect",
            "The PSU chose Deny, strong customer authentication was required and not completed (or the PSU has no second factor), or a payment changed after the PSU authenticated it.",
            "Read error_description; start a new authorisation.",
        ),
        e(
            "invalid_client",
            "401",
            "Client authentication failed: unknown client_id, a client assertion that does not verify or was used before (jti), a certificate that does not match the registration.",
            "Authenticate with the method you registered (tls_client_auth or private_key_jwt).",
        ),
        e(
            "invalid_grant",
            "400",
            "The code or refresh token is unknown, used, expired, issued to another client or redirect URI, or its consent was revoked; a PKCE verifier that does not match.",
            "Start a new authorisation; codes live 60 seconds and are good once.",
        ),
        e(
            "unauthorized_client",
            "400",
            "The client may not use this grant type or scope (roles in the SSA).",
            "Register the grant types and roles you need.",
        ),
        e(
            "unsupported_grant_type",
            "400",
            "grant_type is not authorization_code, client_credentials or refresh_token.",
            "Use one of those.",
        ),
        e(
            "invalid_scope",
            "400",
            "A scope is unknown or not allowed for your roles.",
            "Ask only for scopes in discovery that your roles allow.",
        ),
        e(
            "invalid_token",
            "401",
            "The access token is unknown, expired, revoked, or presented over a connection with another certificate than the one it is bound to.",
            "Get a new token; send it over the same mTLS certificate.",
        ),
        e(
            "invalid_client_metadata",
            "400",
            "A registration field is invalid or not allowed in this profile.",
            "Fix the field named in error_description.",
        ),
        e(
            "invalid_redirect_uri",
            "400",
            "A redirect URI is not https or not in the SSA's software_redirect_uris.",
            "Register redirect URIs from your SSA.",
        ),
        e(
            "invalid_software_statement",
            "400",
            "The SSA does not verify against the directory's keys, has expired, or lacks a required claim.",
            "Use a current SSA from the directory.",
        ),
        e(
            "unapproved_software_statement",
            "400",
            "The SSA's issuer is not a directory this bank trusts, or the organisation or software is not active.",
            "Use an SSA issued by a trusted directory.",
        ),
        e(
            "server_error",
            "500",
            "A defect or outage on the bank's side; the description carries a reference for the bank's logs.",
            "Retry later; report the reference.",
        ),
    ]
}
