//! PSU sign-in at the bank's own login, an upstream OpenID provider
//! (`psu_auth.provider = "oidc"`, docs/upstream-oidc.md). `/login` sends
//! the PSU there; `/login/callback` verifies what comes back and carries
//! on to aspen's consent page or dashboard. With the builtin provider
//! these routes are the password pages of the parent module.
//!
//! Rules: the PSU id is the upstream's verified `sub`; SCA is what the
//! upstream's `acr` says (`urn:openbanking:psd2:sca`), with its `amr`
//! recorded; state, nonce and PKCE verifier live in the server-side
//! session only, and a state is good once.

use std::sync::Arc;

use aspen_psu::upstream::{Identity, Pending, Upstream, UpstreamError};
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::{
    ACR_CA, ACR_SCA, AuthzError, Validated, authz_error_response, current_session, error_page,
    new_session, no_store, now, payment_link, redirect, session_cookie,
};
use crate::{AuthState, ServerProfile, secrets};

/// Who authenticates PSUs.
#[derive(Debug, Clone, Default)]
pub enum PsuAuth {
    /// aspen's own PSU store: password, then TOTP.
    #[default]
    Builtin,
    /// The bank's own login as an upstream OpenID provider.
    Oidc(Arc<Upstream>),
}

/// The session payload key of a sign-in in progress at the upstream.
const PENDING: &str = "upstream";
/// `use_jti` scope that makes each state good once, on any node.
const STATE_SCOPE: &str = "upstream-state";

fn oidc(state: &AuthState) -> Option<Arc<Upstream>> {
    match &state.config.psu_auth {
        PsuAuth::Oidc(u) => Some(u.clone()),
        PsuAuth::Builtin => None,
    }
}

fn callback_uri(state: &AuthState) -> String {
    format!("{}/login/callback", state.config.issuer)
}

fn expired(state: &AuthState) -> Response {
    error_page(
        state,
        StatusCode::BAD_REQUEST,
        "Your session has expired or was not started by an application. Start again from the application.",
    )
}

/// 503 when the upstream is down or slow, 502 when it answers garbage:
/// both with the page's reference, never a panic, never a 500.
fn upstream_failed(state: &AuthState, e: &UpstreamError) -> Response {
    match e {
        UpstreamError::Unavailable(m) => {
            tracing::warn!(error = %m, "upstream OpenID provider unavailable");
            let mut r = error_page(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "The bank's sign-in service is not available right now. Please try again in a few minutes.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            r
        }
        UpstreamError::BadAnswer(m) | UpstreamError::Config(m) => {
            tracing::warn!(error = %m, "upstream OpenID provider answer refused");
            error_page(
                state,
                StatusCode::BAD_GATEWAY,
                "The bank's sign-in service gave an answer we could not accept. Please try again later.",
            )
        }
    }
}

fn with_session(mut resp: Response, id: &str, expires_at: i64) -> Response {
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(id, expires_at - now()));
    no_store(resp)
}

pub async fn login_page(State(state): State<AuthState>, req: Request) -> Response {
    match oidc(&state) {
        Some(up) => start(&state, &up, req.headers()).await,
        None => super::login_page.call(req, state).await,
    }
}

/// With the upstream there is no password to post: back into its flow.
pub async fn login_submit(State(state): State<AuthState>, req: Request) -> Response {
    match oidc(&state) {
        Some(_) => no_store(redirect(StatusCode::SEE_OTHER, "/login")),
        None => super::login_submit.call(req, state).await,
    }
}

fn not_here(state: &AuthState) -> Response {
    error_page(state, StatusCode::NOT_FOUND, "There is no such page.")
}

pub async fn otp_page(State(state): State<AuthState>, req: Request) -> Response {
    match oidc(&state) {
        Some(_) => not_here(&state),
        None => super::otp_page.call(req, state).await,
    }
}

pub async fn otp_submit(State(state): State<AuthState>, req: Request) -> Response {
    match oidc(&state) {
        Some(_) => not_here(&state),
        None => super::otp_submit.call(req, state).await,
    }
}

/// The dashboard signs in at the upstream too: a visitor who is not
/// signed in goes through `/login` with a cookie-only session.
pub async fn dashboard(State(state): State<AuthState>, req: Request) -> Response {
    if oidc(&state).is_some()
        && !current_session(&state, req.headers())
            .await
            .is_some_and(|s| s.kind == "dashboard" && s.psu_id.is_some())
    {
        let id = format!("{}{}", super::ANON_PREFIX, secrets::random_token());
        let s = super::anonymous_session(&state, &id);
        return with_session(redirect(StatusCode::SEE_OTHER, "/login"), &id, s.expires_at);
    }
    super::dashboard.call(req, state).await
}

/// GET /login: a fresh session (new id) holding state, nonce and PKCE
/// verifier, and a 303 to the upstream's authorization endpoint.
async fn start(state: &AuthState, up: &Upstream, headers: &HeaderMap) -> Response {
    let Some(s) = current_session(state, headers).await else {
        return expired(state);
    };
    if s.kind == "dashboard" && s.psu_id.is_some() {
        return no_store(redirect(StatusCode::SEE_OTHER, "/account/consents"));
    }
    let (url, pending) = match up.start(&callback_uri(state)).await {
        Ok(x) => x,
        Err(e) => return upstream_failed(state, &e),
    };
    let mut payload = s.payload.clone();
    if !payload.is_object() {
        payload = json!({});
    }
    payload[PENDING] = match serde_json::to_value(&pending) {
        Ok(v) => v,
        Err(e) => return authz_error_response(state, AuthzError::Internal(e.to_string())),
    };
    let _ = state.store.delete_session(&s.id_hash).await;
    match new_session(state, &s.kind, None, payload).await {
        Ok((id, new)) => with_session(redirect(StatusCode::SEE_OTHER, &url), &id, new.expires_at),
        Err(e) => authz_error_response(state, e.into()),
    }
}

fn query_of(uri: &axum::http::Uri) -> Option<std::collections::HashMap<String, String>> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).ok()?;
    let mut out = std::collections::HashMap::new();
    for (k, v) in pairs {
        // A repeated parameter is not a response the upstream sends.
        if out.insert(k, v).is_some() {
            return None;
        }
    }
    Some(out)
}

/// GET /login/callback (OIDC Core §3.1.2.5): state, then the code, then
/// the ID token; the PSU is signed in under a new session id.
pub async fn callback(State(state): State<AuthState>, req: Request) -> Response {
    let Some(up) = oidc(&state) else {
        return not_here(&state);
    };
    let Some(q) = query_of(req.uri()) else {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "The answer from the bank's sign-in is malformed. Start again from the application.",
        );
    };
    let Some(s) = current_session(&state, req.headers()).await else {
        return expired(&state);
    };
    let Some(pending) = s
        .payload
        .get(PENDING)
        .and_then(|p| serde_json::from_value::<Pending>(p.clone()).ok())
    else {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "No sign-in is in progress, or it was already completed. Start again from the application.",
        );
    };
    // A state that is not this session's is someone else's answer (CSRF,
    // mix-up): nothing changes, the pending sign-in included.
    if !q
        .get("state")
        .is_some_and(|st| secrets::constant_time_eq(st, &pending.state))
    {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "The answer from the bank's sign-in does not belong to this session. Start again from the application.",
        );
    }
    // Good once, across nodes: a replayed or concurrent callback stops here.
    match state
        .store
        .use_jti(STATE_SCOPE, &pending.state, s.expires_at)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return error_page(
                &state,
                StatusCode::BAD_REQUEST,
                "This sign-in was already completed. Start again from the application.",
            );
        }
        Err(e) => return authz_error_response(&state, e.into()),
    }
    let _ = state.store.delete_session(&s.id_hash).await;
    let mut payload = s.payload.clone();
    if let Some(m) = payload.as_object_mut() {
        m.remove(PENDING);
    }
    let journey: Option<Validated> = (s.kind == "authorize")
        .then(|| serde_json::from_value(payload.clone()).ok())
        .flatten();
    if s.kind == "authorize" && journey.is_none() {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Your session is not valid. Start again from the application.",
        );
    }
    let deny = |v: &Validated, description: String| {
        authz_error_response(
            &state,
            AuthzError::Redirect {
                redirect_uri: v.redirect_uri.clone(),
                state: v.state.clone(),
                error: "access_denied",
                description,
            },
        )
    };
    if let Some(err) = q.get("error") {
        let code: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        tracing::info!(error = %code, "the upstream sign-in ended with an error");
        return match &journey {
            Some(v) => deny(
                v,
                format!("the customer's sign-in at the bank did not complete ({code})"),
            ),
            None => error_page(
                &state,
                StatusCode::UNAUTHORIZED,
                "Signing in at the bank did not complete. You can try again.",
            ),
        };
    }
    let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "The answer from the bank's sign-in carries no code. Start again from the application.",
        );
    };
    let id = match up
        .finish(
            &pending,
            code,
            q.get("iss").map(String::as_str),
            &callback_uri(&state),
        )
        .await
    {
        Ok(id) => id,
        Err(e) => {
            // The journey survives for another try at /login.
            let r = upstream_failed(&state, &e);
            return match new_session(&state, &s.kind, None, payload).await {
                Ok((sid, new)) => with_session(r, &sid, new.expires_at),
                Err(_) => r,
            };
        }
    };
    signed_in(&state, &s.kind, journey, payload, id).await
}

/// The upstream's verdict on SCA: its `acr`, nothing else.
fn strong(id: &Identity) -> bool {
    id.acr.as_deref() == Some(ACR_SCA)
}

async fn signed_in(
    state: &AuthState,
    kind: &str,
    journey: Option<Validated>,
    mut payload: Value,
    id: Identity,
) -> Response {
    let t = now();
    // The upstream's auth_time when it is believable, else now.
    let auth_time = id
        .auth_time
        .filter(|a| *a <= t + 60 && *a > t - state.config.session_ttl.as_secs() as i64)
        .unwrap_or(t);
    let sca = strong(&id);
    tracing::info!(sub = %id.sub, acr = ?id.acr, amr = ?id.amr, "PSU signed in at the upstream");
    let next = match &journey {
        Some(v) => {
            if v.sca_required && !sca {
                // Never a dead end: the TPP hears why.
                return authz_error_response(
                    state,
                    AuthzError::Redirect {
                        redirect_uri: v.redirect_uri.clone(),
                        state: v.state.clone(),
                        error: "access_denied",
                        description: "strong customer authentication was required and the bank's sign-in did not provide it".into(),
                    },
                );
            }
            payload["amr"] = json!(id.amr);
            payload["acr"] = json!(if sca { ACR_SCA } else { ACR_CA });
            // Dynamic linking: the payment as it is now; approval refuses a
            // consent that changed since.
            match state.store.consent(&v.consent_id).await {
                Ok(Some(c)) => {
                    if let Some((_, digest)) = payment_link(&c) {
                        payload["linked"] = json!(digest);
                    }
                }
                Ok(None) => {}
                Err(e) => return authz_error_response(state, e.into()),
            }
            "/consent"
        }
        None => {
            // The PSU's bank account online (PSD2 Art. 97(1)(a)): in
            // production only with SCA.
            if state.config.profile == ServerProfile::Production && !sca {
                return error_page(
                    state,
                    StatusCode::FORBIDDEN,
                    "Signing in here needs strong authentication at the bank.",
                );
            }
            payload = json!({});
            "/account/consents"
        }
    };
    match new_session(state, kind, Some((&id.sub, auth_time)), payload).await {
        Ok((sid, new)) => with_session(redirect(StatusCode::SEE_OTHER, next), &sid, new.expires_at),
        Err(e) => authz_error_response(state, e.into()),
    }
}
