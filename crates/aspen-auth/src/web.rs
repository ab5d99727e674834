//! The PSU's side: `/authorize` (FAPI hybrid flow with a signed request
//! object), the login and consent pages, headless sandbox authorisation,
//! and the consent dashboard.

use std::collections::HashMap;

use askama::Template;
use aspen_http::RemoteAddr;
use aspen_store::auth::ClientRecord;
use aspen_store::consent::{CodeRecord, ConsentRecord, WebSession};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub mod passkey;

use crate::consent_view;
use crate::{AuthState, ServerProfile, secrets, totp};

pub mod upstream;

const COOKIE: &str = "__Host-aspen-session";
const SKEW: i64 = 60;
pub const ACR_SCA: &str = "urn:openbanking:psd2:sca";
pub const ACR_CA: &str = "urn:openbanking:psd2:ca";
/// Prefix of a dashboard visitor's cookie before sign-in: such a session
/// lives only in the cookie (no row until there is something to keep).
const ANON_PREFIX: &str = "anon.";

/// Branding for the pages (from configuration).
#[derive(Debug, Clone)]
pub struct Brand {
    pub name: String,
    pub colour: String,
    /// A `data:` URI, so pages need no external assets.
    pub logo: Option<String>,
}

/// An authorisation request that passed every check in step 1; stored in
/// the journey's session until the PSU decides.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Validated {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scope: String,
    pub consent_id: String,
    pub consent_kind: String,
    /// Two factors are a must: the request accepts only
    /// `urn:openbanking:psd2:sca`, or the profile is production.
    #[serde(default)]
    pub sca_required: bool,
    /// Authentication methods verified so far in this journey (`pwd`,
    /// `otp`); the ID token's `acr` follows from them.
    #[serde(default)]
    pub amr: Vec<String>,
    /// Dynamic linking (RTS Art. 5): the payment the PSU authenticated
    /// for — a digest of consent id, amount, currency and payee taken when
    /// the second factor was asked; approval checks it against the consent
    /// as it is then.
    #[serde(default)]
    pub linked: Option<String>,
    /// Set when an upstream OpenID provider signed the PSU in: its `acr`
    /// decides (sca or ca), not the `amr` it reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    pub code_challenge: Option<String>,
    pub login_hint: Option<String>,
    pub response_type: String,
}

enum AuthzError {
    /// Before the redirect URI is trusted: an HTML page, never a redirect
    /// (AUTH-36).
    Page(String),
    /// After: back to the TPP in the fragment (AUTH-37).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
    Internal(String),
    /// The bank's core cannot list the PSU's accounts now.
    Unavailable(String),
}

impl From<aspen_core::CoreError> for AuthzError {
    fn from(e: aspen_core::CoreError) -> Self {
        match e {
            aspen_core::CoreError::Unavailable { detail, .. } => AuthzError::Unavailable(detail),
            other => AuthzError::Internal(other.to_string()),
        }
    }
}

impl From<aspen_store::StoreError> for AuthzError {
    fn from(e: aspen_store::StoreError) -> Self {
        AuthzError::Internal(e.to_string())
    }
}

/// `amr` values (RFC 8176): a password, a one-time password.
pub const AMR_PWD: &str = "pwd";
pub const AMR_OTP: &str = "otp";

fn is_payment(kind: &str) -> bool {
    matches!(kind, "domestic-payment" | "international-payment")
}

/// What a payment consent asks the PSU to approve, in words, and its
/// digest for dynamic linking: consent id, amount, currency and payee.
fn payment_link(consent: &ConsentRecord) -> Option<(String, String)> {
    if !is_payment(&consent.kind) {
        return None;
    }
    let i = &consent.data["Data"]["Initiation"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let (amount, currency) = (
        s(&i["InstructedAmount"]["Amount"]),
        s(&i["InstructedAmount"]["Currency"]),
    );
    let c = &i["CreditorAccount"];
    let (name, scheme, id) = (s(&c["Name"]), s(&c["SchemeName"]), s(&c["Identification"]));
    let canonical = [
        consent.consent_id.as_str(),
        &amount,
        &currency,
        &scheme,
        &id,
        &name,
    ]
    .join("\n");
    let words = format!("a payment of {amount} {currency} to {name} ({id})");
    Some((words, aspen_jose::sha256_b64url(canonical.as_bytes())))
}

/// Two independent factors make SCA: the password with a code or a
/// passkey (knowledge and possession), or a passkey that verified the user
/// itself (possession and the authenticator's PIN or biometric).
fn acr_of(amr: &[String]) -> &'static str {
    let has = |v: &str| amr.iter().any(|m| m == v);
    let possession = has(AMR_OTP) || has(passkey::AMR_HWK);
    let sca = (has(AMR_PWD) && possession) || (has(passkey::AMR_HWK) && has(passkey::AMR_MFA));
    if sca { ACR_SCA } else { ACR_CA }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn encode(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// `redirect_uri#…`: the hybrid flow answers in the fragment (AUTH-23).
fn fragment_redirect(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let location = format!("{redirect_uri}#{}", encode(pairs));
    redirect(StatusCode::FOUND, &location)
}

fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (status, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    // The pages load nothing from anywhere; framing is refused.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

/// A page of a TPP's journey: its forms may be answered with a redirect to
/// the TPP (the code, or access_denied), and Chromium checks that redirect
/// against `form-action` too, so the TPP's registered redirect origin is
/// allowed next to 'self'.
fn journey_page(mut resp: Response, s: &WebSession) -> Response {
    let Some(uri) = s.payload["redirect_uri"]
        .as_str()
        .filter(|_| s.kind == "authorize")
    else {
        return resp;
    };
    let origin: String = uri.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    let safe = origin.starts_with("https://")
        && origin[8..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    // An origin that cannot be written into the policy (a sandbox client's
    // plain-http redirect) leaves form-action out rather than break.
    let form_action = if safe {
        format!(" form-action 'self' {origin};")
    } else {
        String::new()
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src data:;{form_action} frame-ancestors 'none'"
    )) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    brand: &'a Brand,
    message: &'a str,
    reference: String,
}

fn error_page(state: &AuthState, status: StatusCode, message: &str) -> Response {
    let reference = uuid::Uuid::new_v4().to_string();
    tracing::info!(%reference, message, "authorisation error page");
    let page = ErrorPage {
        brand: &state.config.brand,
        message,
        reference,
    };
    match page.render() {
        Ok(html) => no_store((status, Html(html)).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn authz_error_response(state: &AuthState, e: AuthzError) -> Response {
    match e {
        AuthzError::Page(m) => error_page(state, StatusCode::BAD_REQUEST, &m),
        AuthzError::Redirect {
            redirect_uri,
            state: st,
            error,
            description,
        } => {
            tracing::info!(error, %description, "authorisation error redirected to the client");
            let desc: String = description
                .chars()
                .filter(|c| c.is_ascii() && !c.is_control())
                .collect();
            let mut pairs = vec![("error", error), ("error_description", desc.as_str())];
            if let Some(s) = &st {
                pairs.push(("state", s));
            }
            fragment_redirect(&redirect_uri, &pairs)
        }
        AuthzError::Unavailable(m) => {
            tracing::warn!(error = %m, "core unavailable during authorisation");
            let mut resp = error_page(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Our banking systems are not available right now. Please try again in a few minutes.",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            resp
        }
        AuthzError::Internal(m) => {
            tracing::error!(error = %m, "authorisation failed");
            error_page(
                state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side.",
            )
        }
    }
}

fn params_from(
    uri: &Uri,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, String> {
    let raw: Vec<(String, String)> = if method == Method::POST {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err("The authorisation request must be form-encoded.".into());
        }
        serde_urlencoded::from_bytes(body)
            .map_err(|_| "The authorisation request is malformed.".to_string())?
    } else {
        serde_urlencoded::from_str(uri.query().unwrap_or(""))
            .map_err(|_| "The authorisation request is malformed.".to_string())?
    };
    let mut out = HashMap::new();
    for (k, v) in raw {
        if out.insert(k.clone(), v).is_some() {
            return Err(format!("The parameter {k} is repeated."));
        }
    }
    Ok(out)
}

fn claim_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// Step 1 of the journey: every check on the request (AUTH-16..34).
async fn validate(
    state: &AuthState,
    p: &HashMap<String, String>,
) -> Result<(Validated, ClientRecord), AuthzError> {
    let page = |m: &str| AuthzError::Page(m.to_string());
    let client_id = p
        .get("client_id")
        .ok_or_else(|| page("The request does not name a client."))?;
    let client = state
        .store
        .client(client_id)
        .await?
        .ok_or_else(|| page("The application is not registered with this bank."))?;

    let object = match p.get("request") {
        Some(jwt) => {
            let jwks = aspen_jose::Jwks::from_value(&client.jwks)
                .map_err(|_| page("The application has no usable keys."))?;
            let alg = aspen_jose::Alg::from_name(
                client.metadata["request_object_signing_alg"]
                    .as_str()
                    .unwrap_or("PS256"),
            )
            .ok_or_else(|| {
                page("The application registered an unsupported request object algorithm.")
            })?;
            // AUTH-18, AUTH-36: an unverifiable object cannot vouch for its
            // redirect_uri, so the error stays on our page.
            let v = aspen_jose::verify_jwt(jwt, &jwks, &[alg])
                .map_err(|e| page(&format!("The request object could not be verified: {e}.")))?;
            if claim_str(&v.claims, "iss") != Some(client_id.as_str())
                || claim_str(&v.claims, "client_id") != Some(client_id.as_str())
            {
                return Err(page(
                    "The request object was not issued by this application.",
                ));
            }
            Some(v.claims)
        }
        None => None,
    };

    let get = |k: &str| -> Option<String> {
        match &object {
            Some(o) => claim_str(o, k).map(str::to_string),
            None => p.get(k).cloned(),
        }
    };
    let redirect_uri =
        get("redirect_uri").ok_or_else(|| page("The request has no redirect_uri."))?;
    // AUTH-21: exact string match, nothing else.
    if !client.redirect_uris.contains(&redirect_uri) {
        return Err(page(
            "The redirect_uri is not registered for this application.",
        ));
    }
    let st = get("state");
    let fail = |error: &'static str, description: &str| AuthzError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: st.clone(),
        error,
        description: description.to_string(),
    };

    if p.contains_key("request_uri") {
        return Err(fail(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    let strict = !client.permissive || state.config.profile == ServerProfile::Production;
    let object = match object {
        Some(o) => o,
        None if strict => {
            return Err(fail(
                "invalid_request",
                "a signed request object is required",
            ));
        }
        None => Value::Object(
            p.iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect(),
        ),
    };

    if p.contains_key("request") {
        // AUTH-17: plain parameters that repeat a claim must agree with it.
        for k in [
            "response_type",
            "client_id",
            "scope",
            "redirect_uri",
            "state",
            "nonce",
        ] {
            if let (Some(q), Some(o)) = (p.get(k), claim_str(&object, k))
                && q != o
            {
                return Err(fail(
                    "invalid_request",
                    &format!("{k} differs from the request object"),
                ));
            }
        }
        // AUTH-19: aud, exp, nbf, iat.
        let aud_ok = match object.get("aud") {
            Some(Value::String(a)) => *a == state.config.issuer,
            Some(Value::Array(a)) => a
                .iter()
                .any(|x| x.as_str() == Some(state.config.issuer.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(fail("invalid_request_object", "aud must be the issuer"));
        }
        let t = now();
        let exp = object
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| fail("invalid_request_object", "exp is required"))?;
        if exp + SKEW < t {
            return Err(fail(
                "invalid_request_object",
                "the request object has expired",
            ));
        }
        let nbf = object
            .get("nbf")
            .and_then(Value::as_i64)
            .ok_or_else(|| fail("invalid_request_object", "nbf is required"))?;
        if nbf > t + SKEW || nbf < t - 3600 || exp - nbf > 3600 {
            return Err(fail(
                "invalid_request_object",
                "nbf must be within the last 60 minutes and exp no more than 60 minutes after it",
            ));
        }
        if let Some(iat) = object.get("iat").and_then(Value::as_i64)
            && iat > t + SKEW
        {
            return Err(fail("invalid_request_object", "iat is in the future"));
        }
        if let Some(jti) = claim_str(&object, "jti")
            && !state
                .store
                .use_jti(&format!("request:{}", client.client_id), jti, exp + SKEW)
                .await?
        {
            return Err(fail(
                "invalid_request_object",
                "the request object has been used before",
            ));
        }
    }

    // AUTH-20, AUTH-15
    let response_type = claim_str(&object, "response_type").unwrap_or("");
    let rt_ok = response_type == "code id_token" || (response_type == "code" && !strict);
    if !rt_ok {
        return Err(fail(
            "unsupported_response_type",
            "response_type must be \"code id_token\"",
        ));
    }
    if !client.response_types.iter().any(|r| r == response_type) {
        return Err(fail(
            "unauthorized_client",
            "the response type is not registered for this client",
        ));
    }
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(fail(
            "unauthorized_client",
            "authorization_code is not registered for this client",
        ));
    }
    if response_type.contains("id_token")
        && matches!(p.get("response_mode").map(String::as_str), Some("query"))
    {
        return Err(fail(
            "invalid_request",
            "response_mode=query cannot carry an id_token",
        ));
    }
    // AUTH-22
    let nonce = claim_str(&object, "nonce").map(str::to_string);
    match &nonce {
        None if response_type.contains("id_token") => {
            return Err(fail("invalid_request", "nonce is required"));
        }
        Some(n) if n.is_empty() || n.len() > 255 => {
            return Err(fail("invalid_request", "nonce must be 1 to 255 characters"));
        }
        _ => {}
    }
    // AUTH-24
    let scope = claim_str(&object, "scope").unwrap_or("");
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let registered: Vec<&str> = client.scope.split_whitespace().collect();
    let ob: Vec<&str> = scopes.iter().copied().filter(|s| *s != "openid").collect();
    if !scopes.contains(&"openid")
        || ob.len() != 1
        || !scopes.iter().all(|s| registered.contains(s))
    {
        return Err(fail(
            "invalid_scope",
            "scope must be openid plus one registered Open Banking scope",
        ));
    }
    // AUTH-25, AUTH-26
    let claims = object.get("claims").cloned().unwrap_or(Value::Null);
    let claims = match claims {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::Null),
        v => v,
    };
    let intent = |place: &str| -> Option<(Option<String>, bool)> {
        let c = claims.get(place)?.get("openbanking_intent_id")?;
        Some((
            c.get("value").and_then(Value::as_str).map(str::to_string),
            c.get("essential") == Some(&Value::Bool(true)),
        ))
    };
    let (consent_id, essential) = match (intent("id_token"), intent("userinfo")) {
        (Some(a), Some(b)) if a.0 != b.0 => {
            return Err(fail(
                "invalid_request",
                "openbanking_intent_id differs between id_token and userinfo",
            ));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => (None, false),
    };
    let consent_id = consent_id
        .filter(|c| !c.is_empty() && essential)
        .ok_or_else(|| {
            fail(
                "invalid_request",
                "claims must request openbanking_intent_id as an essential claim with a value",
            )
        })?;
    let acr_values: Vec<String> = claims["id_token"]["acr"]["values"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .or_else(|| {
            claims["id_token"]["acr"]["value"]
                .as_str()
                .map(|v| vec![v.to_string()])
        })
        .unwrap_or_default();
    if !acr_values.is_empty() && !acr_values.iter().any(|a| a == ACR_SCA || a == ACR_CA) {
        return Err(fail(
            "invalid_request",
            "none of the requested acr values is supported",
        ));
    }
    // Issue 14: the acr reported is what the login proved (two factors:
    // sca, else ca); two factors are required when the TPP accepts sca only,
    // and always in production (PSD2 RTS Art. 4).
    let sca_required = state.config.profile == ServerProfile::Production
        || (!acr_values.is_empty() && !acr_values.iter().any(|a| a == ACR_CA));

    // AUTH-27
    if p.get("prompt").map(String::as_str) == Some("none")
        || claim_str(&object, "prompt") == Some("none")
    {
        return Err(fail(
            "login_required",
            "this bank always needs the customer to authorise a consent",
        ));
    }
    // AUTH-28..34
    let consent = state
        .store
        .consent(&consent_id)
        .await?
        .filter(|c| c.client_id == client.client_id && !c.deleted)
        .ok_or_else(|| fail("invalid_request", "the intent is unknown"))?;
    if consent_view::scope_of_kind(&consent.kind) != Some(ob[0]) {
        return Err(fail(
            "invalid_request",
            "the intent does not belong to the requested scope",
        ));
    }
    let expired = consent.expires_at.is_some_and(|e| e <= now_ms());
    let status_ok = consent.status == "AwaitingAuthorisation"
        || (consent.status == "Authorised" && consent_view::is_long_lived(&consent.kind));
    if expired || !status_ok {
        return Err(fail(
            "invalid_request",
            "the intent cannot be authorised in its current state",
        ));
    }
    // PKCE (AUTH-53): only S256.
    let code_challenge = match (
        claim_str(&object, "code_challenge"),
        claim_str(&object, "code_challenge_method"),
    ) {
        (None, _) => None,
        (Some(c), Some("S256")) if (43..=128).contains(&c.len()) => Some(c.to_string()),
        _ => return Err(fail("invalid_request", "code_challenge must use S256")),
    };
    let login_hint = claim_str(&object, "login_hint")
        .map(str::to_string)
        .or_else(|| p.get("login_hint").cloned());
    Ok((
        Validated {
            client_id: client.client_id.clone(),
            redirect_uri,
            state: st,
            nonce,
            scope: scopes.join(" "),
            consent_id: consent.consent_id,
            // PSD2 Art. 97(1)(b): initiating a payment always needs SCA.
            sca_required: sca_required || is_payment(&consent.kind),
            consent_kind: consent.kind,
            amr: Vec::new(),
            linked: None,
            acr: None,
            code_challenge,
            login_hint,
            response_type: response_type.to_string(),
        },
        client,
    ))
}

fn session_cookie(value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

async fn new_session(
    state: &AuthState,
    kind: &str,
    psu: Option<(&str, i64)>,
    payload: Value,
) -> Result<(String, WebSession), aspen_store::StoreError> {
    let id = secrets::random_token();
    let s = WebSession {
        id_hash: secrets::hash(&id),
        kind: kind.to_string(),
        csrf: secrets::random_token(),
        psu_id: psu.map(|p| p.0.to_string()),
        auth_time: psu.map(|p| p.1),
        payload,
        expires_at: now() + state.config.session_ttl.as_secs() as i64,
    };
    state.store.insert_session(&s).await?;
    Ok((id, s))
}

/// A dashboard visitor who has not signed in: the session is the cookie
/// alone. Its CSRF token is derived from the cookie value, which a
/// cross-site page can neither read nor set (`__Host-`, HttpOnly).
fn anonymous_session(state: &AuthState, cookie: &str) -> WebSession {
    WebSession {
        id_hash: secrets::hash(cookie),
        kind: "dashboard".into(),
        csrf: secrets::hash(&format!("csrf:{cookie}")),
        psu_id: None,
        auth_time: None,
        payload: json!({}),
        expires_at: now() + state.config.session_ttl.as_secs() as i64,
    }
}

async fn current_session(state: &AuthState, headers: &HeaderMap) -> Option<WebSession> {
    let v = cookie_value(headers)?;
    if v.starts_with(ANON_PREFIX) {
        return Some(anonymous_session(state, &v));
    }
    state
        .store
        .session(&secrets::hash(&v), now())
        .await
        .ok()
        .flatten()
}

pub async fn authorize(
    State(state): State<AuthState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match params_from(&uri, &method, &headers, &body) {
        Ok(p) => p,
        Err(m) => return error_page(&state, StatusCode::BAD_REQUEST, &m),
    };
    let (v, client) = match validate(&state, &params).await {
        Ok(x) => x,
        Err(e) => return authz_error_response(&state, e),
    };
    if client.headless && state.config.profile == ServerProfile::Sandbox {
        return headless(&state, &v).await;
    }
    let payload = match serde_json::to_value(&v) {
        Ok(p) => p,
        Err(e) => return authz_error_response(&state, AuthzError::Internal(e.to_string())),
    };
    match new_session(&state, "authorize", None, payload).await {
        Ok((id, s)) => {
            let mut resp = redirect(StatusCode::SEE_OTHER, "/login");
            resp.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(&id, s.expires_at - now()),
            );
            no_store(resp)
        }
        Err(e) => authz_error_response(&state, AuthzError::Internal(e.to_string())),
    }
}

/// DESIGN.md "Headless": the named (or default) PSU consents at once — to
/// every account for AIS, the first account that can pay for PIS.
async fn headless(state: &AuthState, v: &Validated) -> Response {
    let username = v
        .login_hint
        .clone()
        .unwrap_or_else(|| state.config.default_psu.clone());
    let fail = |d: &str| AuthzError::Redirect {
        redirect_uri: v.redirect_uri.clone(),
        state: v.state.clone(),
        error: "access_denied",
        description: d.to_string(),
    };
    let psu = match state.store.psu_by_username(&username).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return authz_error_response(state, fail("login_hint names no sandbox customer"));
        }
        Err(e) => return authz_error_response(state, e.into()),
    };
    let consent = match state.store.consent(&v.consent_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return authz_error_response(state, fail("the intent is unknown")),
        Err(e) => return authz_error_response(state, e.into()),
    };
    let accounts = match eligible_accounts(state, &psu.id, &consent).await {
        Ok(a) => a,
        Err(e) => return authz_error_response(state, e.into()),
    };
    let chosen: Vec<String> = if consent.kind == "account-access" {
        accounts.into_iter().map(|a| a.id).collect()
    } else {
        accounts.into_iter().take(1).map(|a| a.id).collect()
    };
    // Headless pretends the PSU's login: the password, and the second
    // factor when the PSU has one (the ID token's amr says which).
    let factors = match state.store.factors(&psu.id).await {
        Ok(f) => f,
        Err(e) => return authz_error_response(state, e.into()),
    };
    if v.sca_required && factors.is_empty() {
        return authz_error_response(
            state,
            fail(
                "strong customer authentication was required and this customer has no second factor",
            ),
        );
    }
    let mut v = v.clone();
    v.linked = payment_link(&consent).map(|(_, d)| d);
    // The factor it pretends is one the PSU really has: a code when there
    // is an authenticator app, else a passkey.
    v.amr = if factors.iter().any(|f| f.kind == "totp") {
        vec![AMR_PWD.into(), AMR_OTP.into()]
    } else if factors.is_empty() {
        vec![AMR_PWD.into()]
    } else {
        vec![AMR_PWD.into(), passkey::AMR_HWK.into()]
    };
    let v = &v;
    match approve(state, v, &psu.id, &chosen, now()).await {
        Ok(r) => r,
        Err(e) => authz_error_response(state, e),
    }
}

pub struct AccountChoice {
    pub id: String,
    pub label: String,
    pub checked: bool,
}

/// The PSU's accounts that this consent may use: all for AIS and CoF; for a
/// payment, accounts in the payment's currency (or the one the TPP fixed).
async fn eligible_accounts(
    state: &AuthState,
    psu_id: &str,
    consent: &ConsentRecord,
) -> Result<Vec<AccountChoice>, aspen_core::CoreError> {
    let accounts = state.core.accounts_for_psu(psu_id).await?;
    let currency = consent_view::payment_currency(&consent.kind, &consent.data);
    let fixed = consent_view::fixed_debtor(&consent.data);
    Ok(accounts
        .into_iter()
        .filter(|a| currency.as_deref().is_none_or(|c| c == a.currency))
        .filter(|a| {
            fixed
                .as_deref()
                .is_none_or(|f| a.identifications.iter().any(|i| i.identification == f))
        })
        .map(|a| {
            let ident = a
                .identifications
                .first()
                .map(|i| mask(&i.identification))
                .unwrap_or_default();
            let name = a.nickname.clone().unwrap_or_else(|| a.description.clone());
            AccountChoice {
                label: format!("{name} ({}) {ident}", a.currency),
                checked: consent.accounts.is_empty() || consent.accounts.contains(&a.account_id),
                id: a.account_id,
            }
        })
        .collect())
}

fn mask(id: &str) -> String {
    let n = id.chars().count();
    if n <= 4 {
        return id.to_string();
    }
    format!("••••{}", id.chars().skip(n - 4).collect::<String>())
}

/// Allow: consent `Authorised` with its accounts, a code and an ID token
/// back to the TPP (AUTH-35, AUTH-39..43).
async fn approve(
    state: &AuthState,
    v: &Validated,
    psu_id: &str,
    accounts: &[String],
    auth_time: i64,
) -> Result<Response, AuthzError> {
    let fail = |error: &'static str, d: &str| AuthzError::Redirect {
        redirect_uri: v.redirect_uri.clone(),
        state: v.state.clone(),
        error,
        description: d.to_string(),
    };
    let consent = state
        .store
        .consent(&v.consent_id)
        .await?
        .ok_or_else(|| fail("invalid_request", "the intent is unknown"))?;
    if consent.psu_id.as_deref().is_some_and(|p| p != psu_id) {
        return Err(fail(
            "access_denied",
            "the intent was authorised by another customer",
        ));
    }
    // PIS-13: a payment (or funds) consent is authorised against an account
    // the PSU holds — the one the TPP named, when it named one. With none,
    // the TPP hears access_denied now rather than a failing payment later.
    if consent.kind != "account-access" && accounts.is_empty() {
        return Err(fail(
            "access_denied",
            "the customer holds no account that this consent can use",
        ));
    }
    // Checked before anything changes: a consent is never authorised by a
    // login that did not prove what it had to.
    if let Some((_, digest)) = payment_link(&consent)
        && v.linked.as_deref() != Some(digest.as_str())
    {
        return Err(fail(
            "access_denied",
            "the payment changed after the customer authenticated it; authenticate it again",
        ));
    }
    // The upstream's verdict counts only while the upstream is the
    // provider: a journey cannot carry it into a builtin sign-in.
    let acr = match (&state.config.psu_auth, v.acr.as_deref()) {
        (upstream::PsuAuth::Oidc(_), Some(ACR_SCA)) => ACR_SCA,
        (upstream::PsuAuth::Oidc(_), Some(_)) => ACR_CA,
        _ => acr_of(&v.amr),
    };
    if v.sca_required && acr != ACR_SCA {
        return Err(fail(
            "access_denied",
            "strong customer authentication (two factors) was required and not completed",
        ));
    }
    let from: &[&str] = if consent_view::is_long_lived(&consent.kind) {
        &["AwaitingAuthorisation", "Authorised"]
    } else {
        &["AwaitingAuthorisation"]
    };
    if consent.expires_at.is_some_and(|e| e <= now_ms())
        || !state
            .store
            .transition_consent(
                &v.consent_id,
                from,
                "Authorised",
                now_ms(),
                Some((psu_id, accounts)),
            )
            .await?
    {
        return Err(fail(
            "invalid_request",
            "the intent cannot be authorised in its current state",
        ));
    }
    let code = secrets::random_token();
    let t = now();
    state
        .store
        .insert_code(&CodeRecord {
            code_hash: secrets::hash(&code),
            client_id: v.client_id.clone(),
            redirect_uri: v.redirect_uri.clone(),
            consent_id: v.consent_id.clone(),
            psu_id: psu_id.to_string(),
            nonce: v.nonce.clone().unwrap_or_default(),
            scope: v.scope.clone(),
            code_challenge: v.code_challenge.clone(),
            acr: acr.to_string(),
            auth_time,
            expires_at: t + state.config.code_ttl.as_secs() as i64,
            amr: v.amr.clone(),
        })
        .await?;
    let mut pairs: Vec<(&str, String)> = vec![("code", code.clone())];
    if v.response_type.contains("id_token") {
        let mut claims = json!({
            "iss": state.config.issuer,
            "aud": v.client_id,
            "sub": v.consent_id,
            "iat": t,
            "exp": t + state.config.id_token_ttl.as_secs() as i64,
            "auth_time": auth_time,
            "acr": acr,
            "amr": v.amr,
            "openbanking_intent_id": v.consent_id,
            "c_hash": aspen_jose::half_hash(&code),
        });
        if let Some(n) = &v.nonce {
            claims["nonce"] = json!(n);
        }
        if let Some(s) = &v.state {
            claims["s_hash"] = json!(aspen_jose::half_hash(s));
        }
        let id_token = aspen_jose::sign_jwt(&state.keys.current, Some("JWT"), &claims)
            .map_err(|e| AuthzError::Internal(e.to_string()))?;
        pairs.push(("id_token", id_token));
    }
    if let Some(s) = &v.state {
        pairs.push(("state", s.clone()));
    }
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    tracing::info!(consent_id = %v.consent_id, client_id = %v.client_id, "consent authorised");
    if v.response_type == "code" {
        // Plain code flow (permissive sandbox clients): query response.
        let sep = if v.redirect_uri.contains('?') {
            '&'
        } else {
            '?'
        };
        return Ok(redirect(
            StatusCode::FOUND,
            &format!("{}{sep}{}", v.redirect_uri, encode(&borrowed)),
        ));
    }
    Ok(fragment_redirect(&v.redirect_uri, &borrowed))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    brand: &'a Brand,
    csrf: &'a str,
    client_name: Option<String>,
    error: Option<&'a str>,
    /// WebAuthn request options for "Use a passkey" (JSON).
    passkey: Option<String>,
}

fn render<T: Template>(t: &T, status: StatusCode) -> Response {
    match t.render() {
        Ok(html) => no_store((status, Html(html)).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn client_name_of(state: &AuthState, s: &WebSession) -> Option<String> {
    let id = s.payload.get("client_id")?.as_str()?;
    state
        .store
        .client(id)
        .await
        .ok()
        .flatten()
        .map(|c| c.client_name)
}

pub async fn login_page(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    let Some(s) = current_session(&state, &headers).await else {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Your session has expired or was not started by an application. Start again from the application.",
        );
    };
    login_page_with(&state, &s, None, StatusCode::OK).await
}

const TOO_MANY: &str = "Too many unsuccessful attempts. Wait a few minutes and try again.";

/// The login form (and "Use a passkey" where passkeys work), with an error.
async fn login_page_with(
    state: &AuthState,
    s: &WebSession,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let page = LoginPage {
        brand: &state.config.brand,
        csrf: &s.csrf,
        client_name: client_name_of(state, s).await,
        error,
        passkey: passkey::login_options(state, s).await,
    };
    journey_page(render(&page, status), s)
}

#[derive(Deserialize)]
pub struct LoginForm {
    csrf: String,
    username: String,
    password: String,
}

pub async fn login_submit(
    State(state): State<AuthState>,
    remote: Option<axum::Extension<RemoteAddr>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let Some(s) = current_session(&state, &headers).await else {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Your session has expired. Start again from the application.",
        );
    };
    if !secrets::constant_time_eq(&s.csrf, &form.csrf) {
        return error_page(
            &state,
            StatusCode::FORBIDDEN,
            "The form could not be verified. Start again from the application.",
        );
    }
    let t = now();
    let user_key = format!("psu:{}", form.username.to_lowercase());
    let addr_key = remote.map(|r| format!("addr:{}", r.0.0.ip()));
    // An attempt is reserved in the database before any password is
    // hashed, so parallel guesses (on any number of nodes) check at most
    // the limit: per address, then per PSU. Past this point the address
    // (when there is one) holds a reservation.
    let limits = &state.config;
    if let Some(k) = &addr_key {
        match state
            .store
            .reserve_login_attempt(k, t, limits.login_per_address)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return login_page_with(&state, &s, Some(TOO_MANY), StatusCode::TOO_MANY_REQUESTS)
                    .await;
            }
            Err(e) => return authz_error_response(&state, e.into()),
        }
    }
    match state
        .store
        .reserve_login_attempt(&user_key, t, limits.login_per_psu)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            // No password was checked: the address gets its attempt back,
            // so one locked PSU does not lock out a shared address.
            if let Some(k) = &addr_key {
                let _ = state.store.release_login_attempt(k).await;
            }
            return login_page_with(&state, &s, Some(TOO_MANY), StatusCode::TOO_MANY_REQUESTS)
                .await;
        }
        Err(e) => return authz_error_response(&state, e.into()),
    }
    let psu = match state.store.psu_by_username(&form.username).await {
        Ok(p) => p,
        Err(e) => return authz_error_response(&state, e.into()),
    };
    // The same argon2 work whether or not the username exists, so timing
    // does not tell which usernames are real.
    let ok = match &psu {
        Some(p) => verify_password(&p.password_hash, &form.password),
        None => {
            verify_password(dummy_hash(), &form.password);
            false
        }
    };
    let Some(psu) = psu.filter(|_| ok) else {
        let _ = state
            .store
            .fail_login_attempt(&user_key, t, limits.login_per_psu)
            .await;
        if let Some(k) = &addr_key {
            let _ = state
                .store
                .fail_login_attempt(k, t, limits.login_per_address)
                .await;
        }
        // One message whatever was wrong, so usernames cannot be probed.
        return login_page_with(
            &state,
            &s,
            Some("The username or password is incorrect."),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    };
    if let Some(k) = &addr_key {
        let _ = state.store.release_login_attempt(k).await;
    }
    let _ = state.store.clear_login_failures(&user_key).await;
    // A fresh session id after login defeats session fixation.
    let _ = state.store.delete_session(&s.id_hash).await;
    let mut payload = s.payload.clone();
    let mut signed_in = Some((psu.id.as_str(), t));
    let mut next = if s.kind == "dashboard" {
        "/account/consents"
    } else {
        "/consent"
    };
    if s.kind == "dashboard" {
        // The dashboard is the PSU's bank account online (PSD2 Art. 97(1)(a)):
        // a PSU with an authenticator signs in with it too.
        let has_factor = match state.store.factors(&psu.id).await {
            Ok(f) => !f.is_empty(),
            Err(e) => return authz_error_response(&state, e.into()),
        };
        if has_factor {
            payload = json!({ "otp_psu": psu.id, "otp_auth_time": t });
            signed_in = None;
            next = "/login/otp";
        }
    }
    if s.kind == "authorize" {
        payload["amr"] = json!([AMR_PWD]);
        let sca_required = payload["sca_required"] == json!(true);
        let factors = match state.store.factors(&psu.id).await {
            Ok(f) => f,
            Err(e) => return authz_error_response(&state, e.into()),
        };
        if sca_required {
            if factors.is_empty() {
                // Never a dead end: the TPP hears why (issue 14).
                let v: Option<Validated> = serde_json::from_value(payload).ok();
                return match v {
                    Some(v) => authz_error_response(
                        &state,
                        AuthzError::Redirect {
                            redirect_uri: v.redirect_uri,
                            state: v.state,
                            error: "access_denied",
                            description: "strong customer authentication was required and this customer has no second factor".into(),
                        },
                    ),
                    None => error_page(&state, StatusCode::BAD_REQUEST, "Your session is not valid. Start again from the application."),
                };
            }
            // The second step: the PSU is not signed in until it is done.
            // For a payment it names what is approved (dynamic linking).
            let consent_id = payload["consent_id"].as_str().unwrap_or("").to_string();
            if let Ok(Some(c)) = state.store.consent(&consent_id).await
                && let Some((words, digest)) = payment_link(&c)
            {
                payload["linked"] = json!(digest);
                payload["linked_words"] = json!(words);
            }
            payload["otp_psu"] = json!(psu.id);
            payload["otp_auth_time"] = json!(t);
            signed_in = None;
            next = "/login/otp";
        }
    }
    let (id, new) = match new_session(&state, &s.kind, signed_in, payload).await {
        Ok(x) => x,
        Err(e) => return authz_error_response(&state, e.into()),
    };
    let mut resp = redirect(StatusCode::SEE_OTHER, next);
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&id, new.expires_at - t));
    no_store(resp)
}

#[derive(Template)]
#[template(path = "otp.html")]
struct OtpPage<'a> {
    brand: &'a Brand,
    csrf: &'a str,
    client_name: Option<String>,
    error: Option<&'a str>,
    /// The payment being approved, in words (dynamic linking).
    linked: Option<String>,
    /// The PSU has an authenticator app: the code form is shown.
    totp: bool,
    /// WebAuthn request options for one of the PSU's passkeys (JSON).
    passkey: Option<String>,
}

/// The second-factor page: a code field when the PSU has an
/// authenticator app, "Use a passkey" when they have a passkey.
async fn otp_page_with(
    state: &AuthState,
    s: &WebSession,
    psu: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let factors = match state.store.factors(psu).await {
        Ok(f) => f,
        Err(e) => return authz_error_response(state, e.into()),
    };
    let page = OtpPage {
        brand: &state.config.brand,
        csrf: &s.csrf,
        client_name: client_name_of(state, s).await,
        error,
        linked: s.payload["linked_words"].as_str().map(str::to_string),
        totp: factors.iter().any(|f| f.kind == "totp"),
        passkey: passkey::second_factor_options(state, s, &factors).await,
    };
    journey_page(render(&page, status), s)
}

/// The journey's session between the password and the second factor.
async fn otp_session(
    state: &AuthState,
    headers: &HeaderMap,
) -> Result<(WebSession, String), Response> {
    let expired = || {
        error_page(
            state,
            StatusCode::BAD_REQUEST,
            "Your session has expired. Start again from the application.",
        )
    };
    let s = current_session(state, headers)
        .await
        .filter(|s| s.psu_id.is_none())
        .ok_or_else(expired)?;
    let psu = s.payload["otp_psu"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(expired)?;
    Ok((s, psu))
}

pub async fn otp_page(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    match otp_session(&state, &headers).await {
        Ok((s, psu)) => otp_page_with(&state, &s, &psu, None, StatusCode::OK).await,
        Err(r) => r,
    }
}

/// Whether `code` is the current code of one of the PSU's authenticators,
/// spending its time step (a code is good once, on any node).
async fn totp_accepted(
    state: &AuthState,
    factors: &[aspen_store::factors::Factor],
    code: &str,
    now: i64,
) -> Result<bool, aspen_store::StoreError> {
    for f in factors.iter().filter(|f| f.kind == "totp") {
        let Some(secret) = state.config.factor_box.open(&f.secret) else {
            tracing::warn!(factor_id = %f.factor_id, "factor secret cannot be opened with this key directory");
            continue;
        };
        if let Some(step) = totp::matching_step(&secret, code, now)
            && state.store.use_totp_step(&f.factor_id, step).await?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[derive(Deserialize)]
pub struct OtpForm {
    csrf: String,
    otp: String,
}

/// The second factor (issue 14): a TOTP code from one of the PSU's
/// authenticators, throttled like passwords (the same per-PSU rule, its
/// own key), each code good once.
pub async fn otp_submit(
    State(state): State<AuthState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<OtpForm>,
) -> Response {
    let (s, psu) = match otp_session(&state, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !secrets::constant_time_eq(&s.csrf, &form.csrf) {
        return error_page(
            &state,
            StatusCode::FORBIDDEN,
            "The form could not be verified. Start again from the application.",
        );
    }
    let t = now();
    let key = format!("otp:{psu}");
    match state
        .store
        .reserve_login_attempt(&key, t, state.config.login_per_psu)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return otp_page_with(
                &state,
                &s,
                &psu,
                Some(TOO_MANY),
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await;
        }
        Err(e) => return authz_error_response(&state, e.into()),
    }
    let factors = match state.store.factors(&psu).await {
        Ok(f) => f,
        Err(e) => return authz_error_response(&state, e.into()),
    };
    let ok = match totp_accepted(&state, &factors, &form.otp, t).await {
        Ok(ok) => ok,
        Err(e) => return authz_error_response(&state, e.into()),
    };
    if !ok {
        let _ = state
            .store
            .fail_login_attempt(&key, t, state.config.login_per_psu)
            .await;
        return otp_page_with(
            &state,
            &s,
            &psu,
            Some("That code is not right, or was already used. Wait for a new one and try again."),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    let _ = state.store.clear_login_failures(&key).await;
    let _ = state.store.delete_session(&s.id_hash).await;
    let mut payload = s.payload.clone();
    let auth_time = payload["otp_auth_time"].as_i64().unwrap_or(t);
    if let Some(m) = payload.as_object_mut() {
        m.remove("otp_psu");
        m.remove("otp_auth_time");
        m.remove("linked_words");
    }
    let next = if s.kind == "dashboard" {
        "/account/consents"
    } else {
        payload["amr"] = json!([AMR_PWD, AMR_OTP]);
        "/consent"
    };
    let (id, new) = match new_session(&state, &s.kind, Some((&psu, auth_time)), payload).await {
        Ok(x) => x,
        Err(e) => return authz_error_response(&state, e.into()),
    };
    let mut resp = redirect(StatusCode::SEE_OTHER, next);
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&id, new.expires_at - t));
    no_store(resp)
}

/// An argon2 hash with the library's default parameters — the ones PSU
/// passwords are hashed with — verified when the username is unknown.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        use argon2::password_hash::{PasswordHasher, SaltString};
        SaltString::encode_b64(b"aspen-dummy-salt")
            .and_then(|salt| {
                argon2::Argon2::default()
                    .hash_password(secrets::random_token().as_bytes(), &salt)
                    .map(|h| h.to_string())
            })
            .unwrap_or_default()
    })
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    brand: &'a Brand,
    csrf: &'a str,
    client_name: String,
    headline: &'a str,
    groups: Vec<consent_view::Group>,
    details: Vec<(String, String)>,
    accounts: Vec<AccountChoice>,
    account_prompt: &'a str,
    input_type: &'a str,
    error: Option<&'a str>,
}

async fn journey(
    state: &AuthState,
    headers: &HeaderMap,
) -> Result<(WebSession, Validated, String), Response> {
    let s = current_session(state, headers)
        .await
        .filter(|s| s.kind == "authorize")
        .ok_or_else(|| {
            error_page(
                state,
                StatusCode::BAD_REQUEST,
                "Your session has expired. Start again from the application.",
            )
        })?;
    let psu = s
        .psu_id
        .clone()
        .ok_or_else(|| redirect(StatusCode::SEE_OTHER, "/login"))?;
    let v: Validated = serde_json::from_value(s.payload.clone()).map_err(|_| {
        error_page(
            state,
            StatusCode::BAD_REQUEST,
            "Your session is not valid. Start again from the application.",
        )
    })?;
    Ok((s, v, psu))
}

async fn consent_page(
    state: &AuthState,
    s: &WebSession,
    v: &Validated,
    psu: &str,
    error: Option<&str>,
) -> Response {
    let consent = match state.store.consent(&v.consent_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return error_page(
                state,
                StatusCode::BAD_REQUEST,
                "The request no longer exists.",
            );
        }
        Err(e) => return authz_error_response(state, e.into()),
    };
    let accounts = match eligible_accounts(state, psu, &consent).await {
        Ok(a) => a,
        Err(e) => return authz_error_response(state, e.into()),
    };
    let client_name = state
        .store
        .client(&v.client_id)
        .await
        .ok()
        .flatten()
        .map(|c| c.client_name)
        .unwrap_or_default();
    let (prompt, input) = match consent.kind.as_str() {
        "account-access" => ("Choose the accounts to share (at least one)", "checkbox"),
        "funds-confirmation" => ("Choose the account whose funds may be confirmed", "radio"),
        _ => ("Choose the account to pay from", "radio"),
    };
    let page = ConsentPage {
        brand: &state.config.brand,
        csrf: &s.csrf,
        client_name,
        headline: consent_view::headline(&consent.kind),
        groups: consent_view::permission_groups(&consent_view::permissions(&consent.data)),
        details: consent_view::details(&consent.kind, &consent.data),
        accounts,
        account_prompt: prompt,
        input_type: input,
        error,
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    journey_page(render(&page, status), s)
}

pub async fn consent_get(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    match journey(&state, &headers).await {
        Ok((s, v, psu)) => consent_page(&state, &s, &v, &psu, None).await,
        Err(r) => r,
    }
}

pub async fn consent_post(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, v, psu) = match journey(&state, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if !field("csrf").is_some_and(|c| secrets::constant_time_eq(c, &s.csrf)) {
        return error_page(
            &state,
            StatusCode::FORBIDDEN,
            "The form could not be verified. Start again from the application.",
        );
    }
    match field("decision") {
        Some("deny") => {
            let _ = state.store.delete_session(&s.id_hash).await;
            // AUTH-35: refusal rejects a consent still awaiting authorisation.
            if let Err(e) = state
                .store
                .transition_consent(
                    &v.consent_id,
                    &["AwaitingAuthorisation"],
                    "Rejected",
                    now_ms(),
                    None,
                )
                .await
            {
                return authz_error_response(&state, e.into());
            }
            tracing::info!(consent_id = %v.consent_id, "consent rejected by the PSU");
            let mut pairs = vec![
                ("error", "access_denied"),
                ("error_description", "the customer declined"),
            ];
            if let Some(st) = &v.state {
                pairs.push(("state", st));
            }
            fragment_redirect(&v.redirect_uri, &pairs)
        }
        Some("allow") => {
            let consent = match state.store.consent(&v.consent_id).await {
                Ok(Some(c)) => c,
                _ => {
                    return error_page(
                        &state,
                        StatusCode::BAD_REQUEST,
                        "The request no longer exists.",
                    );
                }
            };
            let eligible = match eligible_accounts(&state, &psu, &consent).await {
                Ok(a) => a,
                Err(e) => return authz_error_response(&state, e.into()),
            };
            let chosen: Vec<String> = fields
                .iter()
                .filter(|(k, _)| k == "account")
                .map(|(_, v)| v.clone())
                .collect();
            let valid = !chosen.is_empty()
                && chosen.iter().all(|c| eligible.iter().any(|e| e.id == *c))
                && (consent.kind == "account-access" || chosen.len() == 1);
            if !valid {
                return consent_page(
                    &state,
                    &s,
                    &v,
                    &psu,
                    Some("Choose at least one of your accounts."),
                )
                .await;
            }
            let auth_time = s.auth_time.unwrap_or_else(now);
            let _ = state.store.delete_session(&s.id_hash).await;
            match approve(&state, &v, &psu, &chosen, auth_time).await {
                Ok(r) => r,
                Err(e) => authz_error_response(&state, e),
            }
        }
        _ => error_page(&state, StatusCode::BAD_REQUEST, "Choose Allow or Deny."),
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage<'a> {
    brand: &'a Brand,
    csrf: &'a str,
    notice: Option<&'a str>,
    consents: Vec<DashboardRow>,
}

struct DashboardRow {
    id: String,
    client_name: String,
    what: String,
    accounts: String,
    given: String,
    expires: String,
    status: String,
    revocable: bool,
}

fn fmt_ms(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|d| d.format("%d %b %Y %H:%M UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

async fn dashboard_session(state: &AuthState, headers: &HeaderMap) -> Option<WebSession> {
    current_session(state, headers)
        .await
        .filter(|s| s.kind == "dashboard" && s.psu_id.is_some())
}

pub async fn dashboard(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    if let Some(s) = dashboard_session(&state, &headers).await {
        return dashboard_page(&state, &s, None).await;
    }
    // Not signed in: a login page with a cookie-only session (kept when the
    // visitor already has one); nothing is written until the PSU signs in.
    let id = cookie_value(&headers)
        .filter(|v| v.starts_with(ANON_PREFIX))
        .unwrap_or_else(|| format!("{ANON_PREFIX}{}", secrets::random_token()));
    let s = anonymous_session(&state, &id);
    let mut resp = login_page_with(&state, &s, None, StatusCode::OK).await;
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&id, s.expires_at - now()),
    );
    resp
}

async fn dashboard_page(state: &AuthState, s: &WebSession, notice: Option<&str>) -> Response {
    let psu = s.psu_id.clone().unwrap_or_default();
    let consents = match state.store.consents_for_psu(&psu).await {
        Ok(c) => c,
        Err(e) => return authz_error_response(state, e.into()),
    };
    let accounts = state.core.accounts_for_psu(&psu).await.unwrap_or_default();
    let mut rows = Vec::new();
    for c in consents {
        let client_name = state
            .store
            .client(&c.client_id)
            .await
            .ok()
            .flatten()
            .map(|x| x.client_name)
            .unwrap_or_else(|| "(removed application)".into());
        let groups = consent_view::permission_groups(&consent_view::permissions(&c.data));
        let what = if groups.is_empty() {
            consent_view::headline(&c.kind).to_string()
        } else {
            groups
                .iter()
                .map(|g| g.title.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let names: Vec<String> = c
            .accounts
            .iter()
            .map(|id| {
                accounts
                    .iter()
                    .find(|a| a.account_id == *id)
                    .map(|a| a.nickname.clone().unwrap_or_else(|| a.description.clone()))
                    .unwrap_or_else(|| id.clone())
            })
            .collect();
        rows.push(DashboardRow {
            revocable: c.status == "Authorised" && consent_view::is_long_lived(&c.kind),
            id: c.consent_id,
            client_name,
            what,
            accounts: names.join(", "),
            given: fmt_ms(c.authorised_at),
            expires: c
                .expires_at
                .map_or_else(|| "No expiry date".to_string(), |e| fmt_ms(Some(e))),
            status: c.status,
        });
    }
    let page = DashboardPage {
        brand: &state.config.brand,
        csrf: &s.csrf,
        notice,
        consents: rows,
    };
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn revoke(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(consent_id): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    let Some(s) = dashboard_session(&state, &headers).await else {
        return redirect(StatusCode::SEE_OTHER, "/account/consents");
    };
    if !secrets::constant_time_eq(&s.csrf, &form.csrf) {
        return error_page(
            &state,
            StatusCode::FORBIDDEN,
            "The form could not be verified. Reload the page and try again.",
        );
    }
    let consent = match state.store.consent(&consent_id).await {
        Ok(c) => c,
        Err(e) => return authz_error_response(&state, e.into()),
    };
    let Some(c) = consent.filter(|c| c.psu_id == s.psu_id && !c.deleted) else {
        return error_page(&state, StatusCode::NOT_FOUND, "No such access was found.");
    };
    if c.status != "Authorised" || !consent_view::is_long_lived(&c.kind) {
        return dashboard_page(&state, &s, Some("This access cannot be revoked.")).await;
    }
    // COMMON-59: Revoked at once, and every token of it stops working.
    if let Err(e) = state
        .store
        .end_consent(&consent_id, Some("Revoked"), now_ms())
        .await
    {
        return authz_error_response(&state, e.into());
    }
    tracing::info!(%consent_id, "consent revoked by the PSU");
    dashboard_page(&state, &s, Some("Access revoked.")).await
}

pub async fn logout(
    State(state): State<AuthState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if let Some(s) = current_session(&state, &headers).await {
        // A cross-site form cannot sign the PSU out: without the page's
        // token nothing changes, the cookie included.
        if !secrets::constant_time_eq(&s.csrf, &form.csrf) {
            return error_page(
                &state,
                StatusCode::FORBIDDEN,
                "The form could not be verified. Reload the page and try again.",
            );
        }
        let _ = state.store.delete_session(&s.id_hash).await;
    }
    let mut resp = redirect(StatusCode::SEE_OTHER, "/account/consents");
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    resp
}

// ------------------------------------------------------------ security page

/// How recent a sign-in must be to change second factors (issue 14: each
/// change behind a fresh re-authentication).
const FRESH_SECS: i64 = 300;

struct FactorRow {
    id: String,
    label: String,
    /// "Authenticator app" or "Passkey".
    kind: &'static str,
    added: String,
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage<'a> {
    brand: &'a Brand,
    csrf: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    factors: Vec<FactorRow>,
    fresh: bool,
    pending: Option<String>,
    pending_uri: String,
    /// A fresh sign-in asks for a code (the PSU has an authenticator app).
    totp: bool,
    /// WebAuthn options: a fresh sign-in with a passkey, a new passkey.
    passkey_reauth: Option<String>,
    passkey_create: Option<String>,
    /// Passkeys cannot work on this address (an IP, not a host name).
    passkeys_off: bool,
}

fn fresh(s: &WebSession) -> bool {
    s.auth_time.is_some_and(|t| now() - t <= FRESH_SECS)
}

async fn security_page(
    state: &AuthState,
    s: &WebSession,
    notice: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let psu = s.psu_id.clone().unwrap_or_default();
    let factors = match state.store.factors(&psu).await {
        Ok(f) => f,
        Err(e) => return authz_error_response(state, e.into()),
    };
    let pending = s.payload["pending_totp"]
        .as_str()
        .and_then(|p| state.config.factor_box.open(p));
    let username = match state.store.psu(&psu).await {
        Ok(p) => p.map(|p| p.username).unwrap_or_default(),
        Err(e) => return authz_error_response(state, e.into()),
    };
    let page = SecurityPage {
        brand: &state.config.brand,
        csrf: &s.csrf,
        notice,
        error,
        factors: factors
            .iter()
            .map(|f| FactorRow {
                id: f.factor_id.clone(),
                label: f.label.clone(),
                kind: if f.kind == "passkey" {
                    "Passkey"
                } else {
                    "Authenticator app"
                },
                added: fmt_ms(Some(f.created_at * 1000)),
            })
            .collect(),
        totp: factors.iter().any(|f| f.kind == "totp"),
        passkey_reauth: passkey::reauth_options(state, s, &factors),
        passkey_create: fresh(s)
            .then(|| passkey::creation_options(state, s, &username, &factors))
            .flatten(),
        passkeys_off: state.passkeys.is_none(),
        fresh: fresh(s),
        pending_uri: pending
            .as_deref()
            .map(|p| totp::otpauth_uri(&state.config.brand.name, &username, p))
            .unwrap_or_default(),
        pending,
    };
    render(&page, status)
}

/// The dashboard session and a checked CSRF token (and, for a change, a
/// fresh sign-in), or the answer to send.
async fn security_session(
    state: &AuthState,
    headers: &HeaderMap,
    csrf: Option<&str>,
    change: bool,
) -> Result<WebSession, Response> {
    let Some(s) = dashboard_session(state, headers).await else {
        return Err(redirect(StatusCode::SEE_OTHER, "/account/consents"));
    };
    if !matches!(state.config.psu_auth, crate::PsuAuth::Builtin) {
        return Err(error_page(
            state,
            StatusCode::NOT_FOUND,
            "Your sign-in methods are managed by the bank's own sign-in, not here.",
        ));
    }
    if let Some(c) = csrf
        && !secrets::constant_time_eq(&s.csrf, c)
    {
        return Err(error_page(
            state,
            StatusCode::FORBIDDEN,
            "The form could not be verified. Reload the page and try again.",
        ));
    }
    if change && !fresh(&s) {
        return Err(security_page(
            state,
            &s,
            None,
            Some("Sign in again first."),
            StatusCode::FORBIDDEN,
        )
        .await);
    }
    Ok(s)
}

/// Replaces the session by one with `payload` (and, after a fresh
/// sign-in, a new auth time) and shows the security page with `notice`
/// under the new cookie: every change there ends this way, so a page's
/// challenge or pending secret is never offered twice.
async fn reissued(
    state: &AuthState,
    s: &WebSession,
    auth_time: Option<i64>,
    payload: Value,
    notice: Option<&str>,
) -> Response {
    let _ = state.store.delete_session(&s.id_hash).await;
    let psu = s.psu_id.clone().unwrap_or_default();
    let t = auth_time.or(s.auth_time).unwrap_or_else(now);
    match new_session(state, "dashboard", Some((&psu, t)), payload).await {
        Ok((id, new)) => {
            let mut resp = security_page(state, &new, notice, None, StatusCode::OK).await;
            resp.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(&id, new.expires_at - now()),
            );
            no_store(resp)
        }
        Err(e) => authz_error_response(state, e.into()),
    }
}

pub async fn security(State(state): State<AuthState>, headers: HeaderMap) -> Response {
    match security_session(&state, &headers, None, false).await {
        Ok(s) => security_page(&state, &s, None, None, StatusCode::OK).await,
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct ReauthForm {
    csrf: String,
    password: String,
    #[serde(default)]
    otp: String,
}

/// A fresh sign-in on the security page: the password, and a code when
/// the PSU has an authenticator; throttled like the login.
pub async fn security_reauth(
    State(state): State<AuthState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ReauthForm>,
) -> Response {
    let s = match security_session(&state, &headers, Some(&form.csrf), false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let psu_id = s.psu_id.clone().unwrap_or_default();
    let t = now();
    let key = format!("reauth:{psu_id}");
    match state
        .store
        .reserve_login_attempt(&key, t, state.config.login_per_psu)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return security_page(
                &state,
                &s,
                None,
                Some(TOO_MANY),
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await;
        }
        Err(e) => return authz_error_response(&state, e.into()),
    }
    let psu = match state.store.psu(&psu_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return redirect(StatusCode::SEE_OTHER, "/account/consents"),
        Err(e) => return authz_error_response(&state, e.into()),
    };
    let factors = match state.store.factors(&psu_id).await {
        Ok(f) => f,
        Err(e) => return authz_error_response(&state, e.into()),
    };
    let mut ok = verify_password(&psu.password_hash, &form.password);
    // Two factors when the PSU has them: with passkeys only no code can
    // match, and such a PSU confirms with "Use a passkey" instead.
    if ok && !factors.is_empty() {
        ok = match totp_accepted(&state, &factors, &form.otp, t).await {
            Ok(ok) => ok,
            Err(e) => return authz_error_response(&state, e.into()),
        };
    }
    if !ok {
        let _ = state
            .store
            .fail_login_attempt(&key, t, state.config.login_per_psu)
            .await;
        return security_page(
            &state,
            &s,
            None,
            Some("That did not match. Check your password and code and try again."),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    let _ = state.store.clear_login_failures(&key).await;
    reissued(&state, &s, Some(t), s.payload.clone(), Some("Confirmed.")).await
}

pub async fn totp_start(
    State(state): State<AuthState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    let s = match security_session(&state, &headers, Some(&form.csrf), true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut payload = s.payload.clone();
    payload["pending_totp"] = json!(state.config.factor_box.seal(&totp::new_secret()));
    reissued(&state, &s, None, payload, None).await
}

#[derive(Deserialize)]
pub struct TotpConfirmForm {
    csrf: String,
    otp: String,
    label: String,
}

/// Enrolment ends when the app shows a code that matches: the PSU has the
/// secret right.
pub async fn totp_confirm(
    State(state): State<AuthState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<TotpConfirmForm>,
) -> Response {
    let s = match security_session(&state, &headers, Some(&form.csrf), true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(secret) = s.payload["pending_totp"]
        .as_str()
        .and_then(|p| state.config.factor_box.open(p))
    else {
        return security_page(&state, &s, None, None, StatusCode::OK).await;
    };
    let t = now();
    let Some(step) = totp::matching_step(&secret, &form.otp, t) else {
        return security_page(
            &state,
            &s,
            None,
            Some("That code does not match. Check the key in your app and try again."),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    };
    let label: String = form.label.trim().chars().take(40).collect();
    let factor = aspen_store::factors::Factor {
        factor_id: format!("totp-{}", secrets::random_token()),
        psu_id: s.psu_id.clone().unwrap_or_default(),
        kind: "totp".into(),
        label: if label.is_empty() {
            "Authenticator app".into()
        } else {
            label
        },
        secret: state.config.factor_box.seal(&secret),
        created_at: t,
        credential_id: None,
    };
    if let Err(e) = state.store.add_factor(&factor).await {
        return authz_error_response(&state, e.into());
    }
    // The code that proved the enrolment is spent.
    let _ = state.store.use_totp_step(&factor.factor_id, step).await;
    let mut payload = s.payload.clone();
    if let Some(m) = payload.as_object_mut() {
        m.remove("pending_totp");
    }
    tracing::info!(factor_id = %factor.factor_id, "authenticator added");
    reissued(&state, &s, None, payload, Some("Authenticator added.")).await
}

pub async fn factor_remove(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Path(factor_id): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    let s = match security_session(&state, &headers, Some(&form.csrf), true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let psu = s.psu_id.clone().unwrap_or_default();
    match state.store.remove_factor(&psu, &factor_id).await {
        Ok(true) => {
            tracing::info!(%factor_id, "authenticator removed");
            security_page(
                &state,
                &s,
                Some("Authenticator removed."),
                None,
                StatusCode::OK,
            )
            .await
        }
        Ok(false) => {
            security_page(
                &state,
                &s,
                None,
                Some("No such authenticator."),
                StatusCode::NOT_FOUND,
            )
            .await
        }
        Err(e) => authz_error_response(&state, e.into()),
    }
}
