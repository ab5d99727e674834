//! OB Dynamic Client Registration v3.2 (DCR.md): `POST /register` and
//! `GET|PUT|DELETE /register/{ClientId}`.

use std::collections::BTreeSet;

use aspen_http::{ClientCert, Json, PeerCert};
use aspen_jose::Jwks;
use aspen_store::auth::ClientRecord;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::bearer::BoundToken;
use crate::discovery::Capabilities;
use crate::oauth_error::OAuthError;
use crate::{AuthState, ServerProfile, secrets};

/// Longest accepted registration-JWT lifetime (DCR-9 [choice]).
const MAX_REQUEST_LIFETIME: i64 = 3600;
/// Clock skew allowed on `iat`/`exp` (AUTH-5).
const SKEW: i64 = 60;

/// Request claims that exist only on the request (DCR-8) and are not
/// echoed as registered metadata.
const REQUEST_ONLY: &[&str] = &["iss", "iat", "exp", "aud", "jti", "nbf"];

/// Metadata extensions of aspen, honoured only in the sandbox profile.
pub const EXT_PROFILE: &str = "aspen_profile";
pub const EXT_HEADLESS: &str = "aspen_headless";

fn require_jwt_content_type(headers: &HeaderMap) -> Result<(), OAuthError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // DCR-6: both media types are in use by TPPs.
    if essence == "application/jwt" || essence == "application/jose" {
        Ok(())
    } else {
        Err(OAuthError::unsupported_media_type(
            "registration requests must be application/jwt (or application/jose)",
        ))
    }
}

fn peer_cert(peer: &PeerCert) -> Result<&ClientCert, OAuthError> {
    // DCR-3: mutual TLS is the only authentication on POST /register.
    peer.0
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_client("a trusted TLS client certificate is required"))
}

/// A registration that passed every check, ready to store.
pub struct Validated {
    pub record: ClientRecord,
    /// The plain client secret, only when one was generated now.
    pub secret: Option<String>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn str_claim<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

fn string_list(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        Value::String(s) => Some(s.split_whitespace().map(str::to_string).collect()),
        _ => None,
    }
}

fn base62_max(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Verifies the SSA against the trusted directory keys and returns its
/// claims (DCR-14, DCR-15).
pub fn verify_ssa(state: &AuthState, ssa: &str) -> Result<Value, OAuthError> {
    let (header, claims) = aspen_jose::decode_unverified(ssa).map_err(|e| {
        OAuthError::invalid_software_statement(format!("software_statement is not a JWS: {e}"))
    })?;
    let alg = str_claim(&header, "alg").unwrap_or("");
    if alg.eq_ignore_ascii_case("none") {
        return Err(OAuthError::unapproved_software_statement(
            "unsigned software statements are not accepted",
        ));
    }
    let iss = str_claim(&claims, "iss").unwrap_or("");
    if !state.config.directory_issuers.iter().any(|i| i == iss) {
        return Err(OAuthError::unapproved_software_statement(format!(
            "software statement issuer {iss:?} is not trusted"
        )));
    }
    let verified =
        aspen_jose::verify_jwt(ssa, &state.config.directory_jwks, &[aspen_jose::Alg::PS256])
            .map_err(|e| {
                OAuthError::unapproved_software_statement(format!(
                    "software statement signature does not verify with a trusted directory key: {e}"
                ))
            })?;
    let claims = verified.claims;
    let t = now();
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64)
        && exp + SKEW < t
    {
        return Err(OAuthError::invalid_software_statement(
            "software statement has expired",
        ));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| OAuthError::invalid_software_statement("software statement has no iat"))?;
    if iat > t + SKEW {
        return Err(OAuthError::invalid_software_statement(
            "software statement iat is in the future",
        ));
    }
    if t - iat > state.config.ssa_max_age.as_secs() as i64 {
        return Err(OAuthError::invalid_software_statement(
            "software statement is older than this ASPSP accepts; obtain a fresh one",
        ));
    }
    if str_claim(&claims, "org_status") != Some("Active") {
        return Err(OAuthError::unapproved_software_statement(
            "organisation is not Active",
        ));
    }
    for c in ["software_id", "org_id"] {
        if !str_claim(&claims, c)
            .is_some_and(|v| base62_max(v, if c == "org_id" { 36 } else { 22 }))
        {
            return Err(OAuthError::invalid_software_statement(format!(
                "software statement claim {c} is missing or malformed"
            )));
        }
    }
    let roles = string_list(claims.get("software_roles")).unwrap_or_default();
    if roles.is_empty() {
        return Err(OAuthError::invalid_software_statement(
            "software statement has no software_roles",
        ));
    }
    Ok(claims)
}

/// Scopes the SSA's roles allow (DCR-17).
pub fn role_scopes(ssa: &Value) -> BTreeSet<String> {
    let mut s = BTreeSet::from(["openid".to_string()]);
    for r in string_list(ssa.get("software_roles")).unwrap_or_default() {
        match r.as_str() {
            "AISP" => {
                s.insert("accounts".into());
            }
            "PISP" => {
                s.insert("payments".into());
            }
            "CBPII" => {
                s.insert("fundsconfirmations".into());
            }
            _ => continue,
        }
        // Aggregated polling of its own events (EVT-30), for any role.
        s.insert("eventpolling".into());
    }
    s
}

fn check_redirect_uri(uri: &str, allowed: &[String]) -> Result<(), OAuthError> {
    let bad = |why: &str| OAuthError::invalid_redirect_uri(format!("redirect URI {uri:?} {why}"));
    if uri.len() > 256 {
        return Err(bad("is longer than 256 characters"));
    }
    let Some(rest) = uri.strip_prefix("https://") else {
        return Err(bad("must use https"));
    };
    if uri.contains('#') {
        return Err(bad("must not contain a fragment"));
    }
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host_only = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    if host_only.is_empty() {
        return Err(bad("has no host"));
    }
    if host_only.eq_ignore_ascii_case("localhost") {
        return Err(bad("must not point at localhost"));
    }
    if !allowed.iter().any(|a| a == uri) {
        return Err(bad(
            "is not one of the software statement's software_redirect_uris",
        ));
    }
    Ok(())
}

/// Validates registration metadata (the request JWT's claims, already
/// signature-checked) against the SSA and the server profile, and builds
/// the client record (DCR-8, DCR-16..24).
pub fn validate_metadata(
    state: &AuthState,
    req: &Value,
    ssa_claims: &Value,
    ssa_jws: &str,
    tpp_jwks: &Jwks,
    cert: Option<&ClientCert>,
    existing: Option<&ClientRecord>,
) -> Result<Validated, OAuthError> {
    let software_id = str_claim(ssa_claims, "software_id")
        .unwrap_or_default()
        .to_string();
    let org_id = str_claim(ssa_claims, "org_id")
        .unwrap_or_default()
        .to_string();
    if let Some(sid) = req.get("software_id")
        && sid.as_str() != Some(software_id.as_str())
    {
        return Err(OAuthError::invalid_software_statement(
            "software_id does not match the software statement (DCR-16)",
        ));
    }
    if let Some(existing) = existing
        && existing.software_id != software_id
    {
        return Err(OAuthError::invalid_client_metadata(
            "software_id cannot change (DCR-31)",
        ));
    }

    // DCR-20: the transport certificate belongs to the SSA's organisation
    // and software.
    if let Some(cert) = cert {
        let subject = cert.subject();
        let org_match =
            subject.has("OU", &org_id) || subject.has("organizationIdentifier", &org_id);
        if !org_match || !subject.has("CN", &software_id) {
            return Err(OAuthError::invalid_client_metadata(
                "the transport certificate does not belong to the software statement's organisation and software (OU/CN)",
            ));
        }
    }

    let permissive = match req.get(EXT_PROFILE) {
        None => false,
        Some(Value::String(p)) if p == "strict" => false,
        Some(Value::String(p)) if p == "permissive" => {
            if state.config.profile != ServerProfile::Sandbox {
                return Err(OAuthError::invalid_client_metadata(
                    "the permissive profile is not available on this server",
                ));
            }
            true
        }
        Some(_) => {
            return Err(OAuthError::invalid_client_metadata(format!(
                "{EXT_PROFILE} must be \"strict\" or \"permissive\""
            )));
        }
    };
    let headless = match req.get(EXT_HEADLESS) {
        None => false,
        Some(Value::Bool(b)) => {
            if *b && state.config.profile != ServerProfile::Sandbox {
                return Err(OAuthError::invalid_client_metadata(
                    "headless authorisation is not available on this server",
                ));
            }
            *b
        }
        Some(_) => {
            return Err(OAuthError::invalid_client_metadata(format!(
                "{EXT_HEADLESS} must be a boolean"
            )));
        }
    };

    // redirect_uris (DCR-22)
    let allowed = string_list(ssa_claims.get("software_redirect_uris")).unwrap_or_default();
    let redirect_uris = match req.get("redirect_uris") {
        None => allowed.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| OAuthError::invalid_redirect_uri("redirect_uris must be strings"))?,
        Some(_) => {
            return Err(OAuthError::invalid_redirect_uri(
                "redirect_uris must be an array",
            ));
        }
    };
    for uri in &redirect_uris {
        check_redirect_uri(uri, &allowed)?;
    }

    // token_endpoint_auth_method (DCR-18)
    let method = str_claim(req, "token_endpoint_auth_method")
        .ok_or_else(|| {
            OAuthError::invalid_client_metadata("token_endpoint_auth_method is required")
        })?
        .to_string();
    let caps = Capabilities::of(state.config.profile);
    if !caps.knows_auth_method(&method) {
        return Err(OAuthError::invalid_client_metadata(format!(
            "token_endpoint_auth_method {method:?} is not supported"
        )));
    }
    let secret_method = method.starts_with("client_secret_");
    if !caps.accepts_auth_method(&method, permissive) {
        return Err(OAuthError::invalid_client_metadata(format!(
            "{method} is only available to clients registered with \"{EXT_PROFILE}\": \"permissive\" in the sandbox"
        )));
    }
    let signing_alg = str_claim(req, "token_endpoint_auth_signing_alg").map(str::to_string);
    if method == "private_key_jwt" && signing_alg.is_none() {
        return Err(OAuthError::invalid_client_metadata(
            "token_endpoint_auth_signing_alg is required with private_key_jwt",
        ));
    }
    for (name, required) in [
        ("token_endpoint_auth_signing_alg", false),
        ("id_token_signed_response_alg", true),
        ("request_object_signing_alg", true),
    ] {
        match str_claim(req, name) {
            Some(a) if caps.signing_algs.contains(&a) => {}
            Some(a) => {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "{name} {a:?} is not supported (supported: {})",
                    caps.signing_algs.join(", ")
                )));
            }
            None if required => {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "{name} is required"
                )));
            }
            None => {}
        }
    }

    // tls_client_auth_subject_dn (DCR-19, DCR-35 alias)
    let dn = str_claim(req, "tls_client_auth_subject_dn")
        .or_else(|| str_claim(req, "tls_client_auth_dn"))
        .map(str::to_string);
    match (&dn, method.as_str()) {
        (None, "tls_client_auth") => {
            return Err(OAuthError::invalid_client_metadata(
                "tls_client_auth_subject_dn is required with tls_client_auth",
            ));
        }
        (Some(_), m) if m != "tls_client_auth" => {
            return Err(OAuthError::invalid_client_metadata(
                "tls_client_auth_subject_dn is only allowed with tls_client_auth",
            ));
        }
        (Some(d), _) => {
            let parsed = aspen_http::client_cert::Dn::parse(d).ok_or_else(|| {
                OAuthError::invalid_client_metadata("tls_client_auth_subject_dn is not a valid DN")
            })?;
            if d.len() > 128 {
                return Err(OAuthError::invalid_client_metadata(
                    "tls_client_auth_subject_dn is longer than 128 characters",
                ));
            }
            if let Some(cert) = cert
                && parsed != *cert.subject()
            {
                return Err(OAuthError::invalid_client_metadata(
                    "tls_client_auth_subject_dn does not match the transport certificate's subject",
                ));
            }
        }
        (None, _) => {}
    }

    // grant_types / response_types (DCR-23, DCR-24)
    let grant_types = string_list(req.get("grant_types"))
        .filter(|g| !g.is_empty())
        .ok_or_else(|| OAuthError::invalid_client_metadata("grant_types is required"))?;
    for g in &grant_types {
        if !caps.grant_types.contains(&g.as_str()) {
            return Err(OAuthError::invalid_client_metadata(format!(
                "grant type {g:?} is not supported"
            )));
        }
    }
    let response_types = match req.get("response_types") {
        None => vec!["code id_token".to_string()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| OAuthError::invalid_client_metadata("response_types must be strings"))?,
        Some(_) => {
            return Err(OAuthError::invalid_client_metadata(
                "response_types must be an array",
            ));
        }
    };
    for r in &response_types {
        if !caps.accepts_response_type(r, permissive) {
            return Err(OAuthError::invalid_client_metadata(format!(
                "response type {r:?} is not supported"
            )));
        }
    }
    if grant_types.iter().any(|g| g == "authorization_code") && redirect_uris.is_empty() {
        return Err(OAuthError::invalid_redirect_uri(
            "authorization_code needs at least one redirect URI",
        ));
    }

    // scope (DCR-17)
    let allowed_scopes = role_scopes(ssa_claims);
    let scope: Vec<String> = match req.get("scope") {
        None => allowed_scopes.iter().cloned().collect(),
        Some(Value::String(s)) if s.len() <= 256 => {
            s.split_whitespace().map(str::to_string).collect()
        }
        Some(_) => {
            return Err(OAuthError::invalid_client_metadata(
                "scope must be a space-separated string of at most 256 characters",
            ));
        }
    };
    for s in &scope {
        if !allowed_scopes.contains(s) {
            return Err(OAuthError::invalid_client_metadata(format!(
                "scope {s:?} is not allowed by the software statement's roles"
            )));
        }
    }
    let application_type = str_claim(req, "application_type").unwrap_or("web");
    if !matches!(application_type, "web" | "mobile") {
        return Err(OAuthError::invalid_client_metadata(
            "application_type must be web or mobile",
        ));
    }

    // The secret survives an update unless the method changes (DCR-31).
    let (secret, secret_hash) = match existing {
        Some(e) if e.token_endpoint_auth_method == method => (None, e.client_secret_hash.clone()),
        _ if secret_method => {
            let s = secrets::random_secret();
            let h = secrets::hash(&s);
            (Some(s), Some(h))
        }
        _ => (None, None),
    };

    let client_id = existing
        .map(|e| e.client_id.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let issued_at = existing.map(|e| e.issued_at).unwrap_or_else(now);

    // DCR-25: registered metadata as accepted, plus every SSA claim.
    let mut meta = Map::new();
    if let Value::Object(ssa) = ssa_claims {
        for (k, v) in ssa {
            if !matches!(k.as_str(), "iss" | "iat" | "exp" | "jti" | "aud" | "nbf") {
                meta.insert(k.clone(), v.clone());
            }
        }
    }
    if let Value::Object(r) = req {
        for (k, v) in r {
            if !REQUEST_ONLY.contains(&k.as_str()) {
                meta.insert(k.clone(), v.clone());
            }
        }
    }
    meta.remove("tls_client_auth_dn");
    meta.insert("client_id".into(), json!(client_id));
    meta.insert("client_id_issued_at".into(), json!(issued_at));
    meta.insert("redirect_uris".into(), json!(redirect_uris));
    meta.insert("token_endpoint_auth_method".into(), json!(method));
    meta.insert("grant_types".into(), json!(grant_types));
    meta.insert("response_types".into(), json!(response_types));
    meta.insert("scope".into(), json!(scope.join(" ")));
    meta.insert("application_type".into(), json!(application_type));
    meta.insert("software_id".into(), json!(software_id));
    meta.insert("software_statement".into(), json!(ssa_jws));
    meta.insert(
        EXT_PROFILE.into(),
        json!(if permissive { "permissive" } else { "strict" }),
    );
    meta.insert(EXT_HEADLESS.into(), json!(headless));
    if let Some(d) = &dn {
        meta.insert("tls_client_auth_subject_dn".into(), json!(d));
    }

    let client_name = str_claim(ssa_claims, "software_client_name")
        .or_else(|| str_claim(req, "client_name"))
        .unwrap_or(&software_id)
        .to_string();
    let record = ClientRecord {
        client_id,
        org_id,
        software_id,
        client_name,
        token_endpoint_auth_method: method,
        token_endpoint_auth_signing_alg: signing_alg,
        tls_client_auth_subject_dn: dn,
        client_secret_hash: secret_hash,
        permissive,
        headless,
        scope: scope.join(" "),
        redirect_uris,
        grant_types,
        response_types,
        jwks: tpp_jwks.to_value(),
        jwks_uri: str_claim(ssa_claims, "software_jwks_endpoint").map(str::to_string),
        metadata: Value::Object(meta),
        issued_at,
        updated_at: now(),
    };
    Ok(Validated { record, secret })
}

/// Checks the registration request JWT: SSA first, then the TPP's
/// signature with a key from the SSA, then the request claims.
async fn validate_request(
    state: &AuthState,
    body: &[u8],
    cert: &ClientCert,
    existing: Option<&ClientRecord>,
) -> Result<Validated, OAuthError> {
    let jwt = std::str::from_utf8(body)
        .map_err(|_| OAuthError::invalid_client_metadata("the request body is not a compact JWS"))?
        .trim();
    let (header, unverified) = aspen_jose::decode_unverified(jwt).map_err(|e| {
        OAuthError::invalid_client_metadata(format!("the request body is not a compact JWS: {e}"))
    })?;
    let alg = str_claim(&header, "alg").unwrap_or("");
    let caps = Capabilities::of(state.config.profile);
    if !caps.signing_algs.contains(&alg) {
        // AUTH-4: none, RS256 and HS* are refused outright.
        return Err(OAuthError::invalid_client_metadata(format!(
            "request JWT alg {alg:?} is not supported (supported: {})",
            caps.signing_algs.join(", ")
        )));
    }
    let ssa = str_claim(&unverified, "software_statement")
        .ok_or_else(|| OAuthError::invalid_software_statement("software_statement is required"))?;
    let ssa_claims = verify_ssa(state, ssa)?;
    let jwks = state
        .tpp_keys
        .for_ssa(&ssa_claims)
        .await
        .map_err(|e| OAuthError::invalid_software_statement(e.to_string()))?;
    let claims = aspen_jose::verify_jwt(jwt, &jwks, &[aspen_jose::Alg::PS256])
        .map_err(|e| {
            OAuthError::invalid_client_metadata(format!(
                "request JWT signature does not verify with a key of the software statement: {e}"
            ))
        })?
        .claims;

    let software_id = str_claim(&ssa_claims, "software_id").unwrap_or_default();
    if str_claim(&claims, "iss") != Some(software_id) {
        return Err(OAuthError::invalid_software_statement(
            "request iss must equal the software statement's software_id (DCR-12)",
        ));
    }
    let t = now();
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| OAuthError::invalid_client_metadata("exp is required"))?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| OAuthError::invalid_client_metadata("iat is required"))?;
    if exp + SKEW < t {
        return Err(OAuthError::invalid_client_metadata(
            "the request JWT has expired",
        ));
    }
    if iat > t + SKEW {
        return Err(OAuthError::invalid_client_metadata(
            "the request JWT iat is in the future",
        ));
    }
    if exp - iat > MAX_REQUEST_LIFETIME {
        return Err(OAuthError::invalid_client_metadata(
            "the request JWT lives longer than 60 minutes",
        ));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => aud_accepted(state, a),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .any(|x| aud_accepted(state, x)),
        _ => false,
    };
    if !aud_ok {
        return Err(OAuthError::invalid_client_metadata(
            "aud must be this ASPSP's issuer or organisation id (DCR-10)",
        ));
    }
    let jti = str_claim(&claims, "jti")
        .filter(|j| !j.is_empty() && j.len() <= 128)
        .ok_or_else(|| OAuthError::invalid_client_metadata("jti is required"))?;
    let fresh = state
        .store
        .use_jti(&format!("register:{software_id}"), jti, exp + SKEW)
        .await?;
    if !fresh {
        return Err(OAuthError::invalid_client_metadata(
            "the request JWT jti has been used before (DCR-11)",
        ));
    }
    validate_metadata(
        state,
        &claims,
        &ssa_claims,
        ssa,
        &jwks,
        Some(cert),
        existing,
    )
}

fn aud_accepted(state: &AuthState, aud: &str) -> bool {
    aud == state.config.issuer || state.config.aspsp_org_id.as_deref() == Some(aud)
}

fn response_body(v: &Validated) -> Value {
    let mut body = v.record.metadata.clone();
    if let (Some(secret), Value::Object(m)) = (&v.secret, &mut body) {
        m.insert("client_secret".into(), json!(secret));
        m.insert("client_secret_expires_at".into(), json!(0));
    }
    body
}

pub async fn register(
    State(state): State<AuthState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let cert = peer_cert(&peer)?;
    require_jwt_content_type(&headers)?;
    let v = validate_request(&state, &body, cert, None).await?;
    state.store.insert_client(&v.record).await?;
    tracing::info!(client_id = %v.record.client_id, software_id = %v.record.software_id, "client registered");
    Ok((StatusCode::CREATED, Json(response_body(&v))).into_response())
}

/// DCR-5, DCR-33: the token must belong to the client in the path; if not,
/// 401 and the presented token is revoked at once.
async fn own_client(
    state: &AuthState,
    token: &BoundToken,
    client_id: &str,
) -> Result<ClientRecord, OAuthError> {
    // DCR-4: only a client-credentials token manages a registration; a
    // PSU's token of the same client is refused (and stays valid for what
    // it was issued for).
    if token.grant != crate::bearer::GrantKind::ClientCredentials {
        return Err(OAuthError::invalid_token(
            "a client-credentials access token is required to manage a registration (DCR-4)",
        ));
    }
    let client = if token.client_id == client_id {
        state.store.client(client_id).await?
    } else {
        None
    };
    match client {
        Some(c) => Ok(c),
        None => {
            state.store.revoke_token(&token.key).await?;
            Err(OAuthError::invalid_token(
                "the access token does not belong to this client",
            ))
        }
    }
}

pub async fn read(
    State(state): State<AuthState>,
    token: BoundToken,
    Path(client_id): Path<String>,
) -> Result<Response, OAuthError> {
    let client = own_client(&state, &token, &client_id).await?;
    Ok(Json(client.metadata).into_response())
}

pub async fn update(
    State(state): State<AuthState>,
    token: BoundToken,
    Path(client_id): Path<String>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let existing = own_client(&state, &token, &client_id).await?;
    let cert = peer_cert(&peer)?;
    require_jwt_content_type(&headers)?;
    let v = validate_request(&state, &body, cert, Some(&existing)).await?;
    state.store.update_client(&v.record).await?;
    Ok(Json(response_body(&v)).into_response())
}

pub async fn delete(
    State(state): State<AuthState>,
    token: BoundToken,
    Path(client_id): Path<String>,
) -> Result<Response, OAuthError> {
    own_client(&state, &token, &client_id).await?;
    // DCR-32: the client and every token issued to it go in one transaction.
    state.store.delete_client(&client_id).await?;
    tracing::info!(%client_id, "client deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
