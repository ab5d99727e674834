//! Passkeys on the PSU pages (issue 14): sign-in with a passkey that
//! verifies the PSU (SCA on its own), a passkey as the second factor after
//! the password, enrolment and a fresh sign-in on the security page.
//!
//! Every challenge is derived from the web session's secrets, the purpose
//! and — for a payment — the dynamic-linking digest of the consent as it
//! is when the assertion arrives (RTS Art. 5), and is spent in the
//! database before the PSU is signed in, so an assertion counts once on
//! any node.

use aspen_psu::webauthn::{self, RelyingParty, WebauthnError};
use aspen_store::consent::WebSession;
use aspen_store::factors::Factor;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::json;

use super::*;

/// `amr` (RFC 8176): proof of possession of a key held by an authenticator.
pub const AMR_HWK: &str = "hwk";
/// `amr`: the authenticator verified the user itself (PIN or biometric,
/// whichever it used — RFC 8176 has no neutral value for "either"); with
/// `hwk` these are two factors.
pub const AMR_MFA: &str = "mfa";

const LOGIN: &str = "login";
const SECOND: &str = "second-factor";
const REGISTER: &str = "register";
const REAUTH: &str = "reauth";

pub async fn script() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        include_str!("../../assets/passkey.js"),
    )
        .into_response()
}

/// The dynamic-linking digest of the journey's payment as it is now, or
/// "" for anything else.
async fn link_now(state: &AuthState, s: &WebSession) -> Result<String, aspen_store::StoreError> {
    if s.kind != "authorize" {
        return Ok(String::new());
    }
    let Some(id) = s.payload["consent_id"].as_str() else {
        return Ok(String::new());
    };
    Ok(state
        .store
        .consent(id)
        .await?
        .and_then(|c| payment_link(&c))
        .map(|(_, digest)| digest)
        .unwrap_or_default())
}

fn challenge_for(purpose: &str, s: &WebSession, link: &str) -> Vec<u8> {
    webauthn::challenge(purpose, &format!("{}\n{}", s.id_hash, s.csrf), link)
}

fn ids_of(factors: &[Factor]) -> Vec<Vec<u8>> {
    factors
        .iter()
        .filter(|f| f.kind == "passkey")
        .filter_map(|f| f.credential_id.as_deref())
        .filter_map(|id| B64.decode(id).ok())
        .collect()
}

/// Options for the login page's "Use a passkey": any passkey of this
/// site, and it must verify the PSU, because it stands for both factors.
pub(super) async fn login_options(state: &AuthState, s: &WebSession) -> Option<String> {
    let rp = state.passkeys.as_deref()?;
    let link = link_now(state, s).await.ok()?;
    let c = challenge_for(LOGIN, s, &link);
    Some(webauthn::request_options(rp, &c, &[], true).to_string())
}

/// Options for the second-factor page: one of this PSU's passkeys.
pub(super) async fn second_factor_options(
    state: &AuthState,
    s: &WebSession,
    factors: &[Factor],
) -> Option<String> {
    let rp = state.passkeys.as_deref()?;
    let allow = ids_of(factors);
    if allow.is_empty() {
        return None;
    }
    let link = link_now(state, s).await.ok()?;
    let c = challenge_for(SECOND, s, &link);
    Some(webauthn::request_options(rp, &c, &allow, false).to_string())
}

/// Options for a fresh sign-in on the security page with a passkey.
pub(super) fn reauth_options(
    state: &AuthState,
    s: &WebSession,
    factors: &[Factor],
) -> Option<String> {
    let rp = state.passkeys.as_deref()?;
    let allow = ids_of(factors);
    if allow.is_empty() {
        return None;
    }
    let c = challenge_for(REAUTH, s, "");
    Some(webauthn::request_options(rp, &c, &allow, true).to_string())
}

/// Options to enrol a new passkey on the security page.
pub(super) fn creation_options(
    state: &AuthState,
    s: &WebSession,
    username: &str,
    factors: &[Factor],
) -> Option<String> {
    let rp = state.passkeys.as_deref()?;
    let c = challenge_for(REGISTER, s, "");
    let psu = s.psu_id.as_deref()?;
    Some(webauthn::creation_options(rp, psu, username, &c, &ids_of(factors)).to_string())
}

#[derive(Deserialize)]
pub struct AssertionForm {
    csrf: String,
    credential_id: String,
    client_data: String,
    authenticator_data: String,
    signature: String,
    #[serde(default)]
    user_handle: String,
}

/// Why an assertion was not accepted.
enum Refused {
    /// Shown to the PSU on the page they came from.
    Page(&'static str, StatusCode),
    /// A payment journey whose consent changed since the page was shown.
    PaymentChanged,
    Answer(Box<Response>),
}

fn decode(v: &str) -> Result<Vec<u8>, Refused> {
    B64.decode(v.trim_end_matches('=')).map_err(|_| {
        Refused::Page(
            "The passkey's answer could not be read. Try again.",
            StatusCode::BAD_REQUEST,
        )
    })
}

const NOT_ACCEPTED: &str = "That passkey was not accepted. Try again, or sign in another way.";

/// Checks an assertion for `purpose` against the passkey it names (of
/// `psu` when the PSU is known already), throttled per PSU like passwords,
/// then spends its challenge and records its counter. Returns the passkey
/// and whether it verified the user.
async fn accept(
    state: &AuthState,
    rp: &RelyingParty,
    s: &WebSession,
    form: &AssertionForm,
    purpose: &str,
    psu: Option<&str>,
    require_uv: bool,
) -> Result<(Factor, bool), Refused> {
    let internal = |e: aspen_store::StoreError| {
        Refused::Answer(Box::new(authz_error_response(state, e.into())))
    };
    let refused = || Refused::Page(NOT_ACCEPTED, StatusCode::UNAUTHORIZED);
    if !secrets::constant_time_eq(&s.csrf, &form.csrf) {
        return Err(Refused::Answer(Box::new(error_page(
            state,
            StatusCode::FORBIDDEN,
            "The form could not be verified. Start again.",
        ))));
    }
    let (client_data, auth_data, sig) = (
        decode(&form.client_data)?,
        decode(&form.authenticator_data)?,
        decode(&form.signature)?,
    );
    let factor = state
        .store
        .factor_by_credential(&form.credential_id)
        .await
        .map_err(internal)?
        .filter(|f| f.kind == "passkey")
        .ok_or_else(refused)?;
    // Another customer's passkey never stands in for this one's.
    if psu.is_some_and(|p| p != factor.psu_id) {
        return Err(refused());
    }
    if !form.user_handle.is_empty()
        && decode(&form.user_handle)? != webauthn::user_handle(&factor.psu_id)
    {
        return Err(refused());
    }
    let t = now();
    let key = format!("passkey:{}", factor.psu_id);
    match state
        .store
        .reserve_login_attempt(&key, t, state.config.login_per_psu)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Err(Refused::Page(TOO_MANY, StatusCode::TOO_MANY_REQUESTS));
        }
        Err(e) => return Err(internal(e)),
    }
    let link = link_now(state, s).await.map_err(internal)?;
    let challenge = challenge_for(purpose, s, &link);
    let public_key = B64.decode(&factor.secret).unwrap_or_default();
    let verified = webauthn::verify_assertion(
        rp,
        &challenge,
        &public_key,
        &client_data,
        &auth_data,
        &sig,
        require_uv,
    );
    let assertion = match verified {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(factor_id = %factor.factor_id, error = %e, "passkey assertion refused");
            let _ = state
                .store
                .fail_login_attempt(&key, t, state.config.login_per_psu)
                .await;
            // A challenge made for the payment as it was shown that does
            // not match the payment as it is: the consent changed.
            let linked = s.payload["linked"].as_str().unwrap_or_default();
            if e == WebauthnError::Challenge && !link.is_empty() && linked != link {
                return Err(Refused::PaymentChanged);
            }
            return Err(match e {
                WebauthnError::NotVerified => Refused::Page(
                    "That passkey did not check it is you (no PIN or biometric). Use one that does, or sign in with your password.",
                    StatusCode::UNAUTHORIZED,
                ),
                _ => refused(),
            });
        }
    };
    let spent = state
        .store
        .use_jti(
            "webauthn",
            &B64.encode(&challenge),
            t + state.config.session_ttl.as_secs() as i64,
        )
        .await
        .map_err(internal)?;
    if !spent {
        return Err(Refused::Page(
            "That passkey answer was already used. Start again.",
            StatusCode::CONFLICT,
        ));
    }
    if !state
        .store
        .use_passkey_counter(&factor.factor_id, i64::from(assertion.sign_count))
        .await
        .map_err(internal)?
    {
        tracing::warn!(factor_id = %factor.factor_id, "passkey signature counter did not move forward: possibly a cloned authenticator");
        return Err(refused());
    }
    let _ = state.store.clear_login_failures(&key).await;
    Ok((factor, assertion.user_verified))
}

fn payment_changed(state: &AuthState, s: &WebSession) -> Response {
    match serde_json::from_value::<Validated>(s.payload.clone()) {
        Ok(v) => authz_error_response(
            state,
            AuthzError::Redirect {
                redirect_uri: v.redirect_uri,
                state: v.state,
                error: "access_denied",
                description:
                    "the payment changed after it was shown to the customer; nothing was authorised"
                        .into(),
            },
        ),
        Err(_) => error_page(
            state,
            StatusCode::BAD_REQUEST,
            "Your session is not valid. Start again from the application.",
        ),
    }
}

/// The signed-in session after a passkey: a new id (no fixation), the
/// journey's `amr`, the payment link as authenticated.
async fn signed_in(
    state: &AuthState,
    s: &WebSession,
    psu: &str,
    auth_time: i64,
    amr: &[&str],
) -> Response {
    let _ = state.store.delete_session(&s.id_hash).await;
    let mut payload = if s.kind == "authorize" {
        s.payload.clone()
    } else {
        json!({})
    };
    if let Some(m) = payload.as_object_mut() {
        m.remove("otp_psu");
        m.remove("otp_auth_time");
        m.remove("linked_words");
    }
    let next = if s.kind == "authorize" {
        payload["amr"] = json!(amr);
        match link_now(state, s).await {
            Ok(link) if !link.is_empty() => payload["linked"] = json!(link),
            Ok(_) => {}
            Err(e) => return authz_error_response(state, e.into()),
        }
        "/consent"
    } else {
        "/account/consents"
    };
    let (id, new) = match new_session(state, &s.kind, Some((psu, auth_time)), payload).await {
        Ok(x) => x,
        Err(e) => return authz_error_response(state, e.into()),
    };
    let mut resp = redirect(StatusCode::SEE_OTHER, next);
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&id, new.expires_at - now()),
    );
    no_store(resp)
}

/// "Use a passkey" on the login page: a passkey that verified the user is
/// both factors (possession, and the authenticator's PIN or biometric).
pub async fn login(
    State(state): State<AuthState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<AssertionForm>,
) -> Response {
    let expired = || {
        error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "Your session has expired. Start again from the application.",
        )
    };
    let Some(s) = current_session(&state, &headers)
        .await
        .filter(|s| s.psu_id.is_none())
    else {
        return expired();
    };
    let Some(rp) = state.passkeys.clone() else {
        return expired();
    };
    match accept(&state, &rp, &s, &form, LOGIN, None, true).await {
        Ok((factor, _)) => signed_in(&state, &s, &factor.psu_id, now(), &[AMR_HWK, AMR_MFA]).await,
        Err(Refused::PaymentChanged) => payment_changed(&state, &s),
        Err(Refused::Answer(r)) => *r,
        Err(Refused::Page(msg, status)) => login_page_with(&state, &s, Some(msg), status).await,
    }
}

/// "Use a passkey" on the second-factor page, after the password: one of
/// this PSU's passkeys is the possession factor.
pub async fn second_factor(
    State(state): State<AuthState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<AssertionForm>,
) -> Response {
    let (s, psu) = match otp_session(&state, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(rp) = state.passkeys.clone() else {
        return redirect(StatusCode::SEE_OTHER, "/login/otp");
    };
    match accept(&state, &rp, &s, &form, SECOND, Some(&psu), false).await {
        Ok(_) => {
            let auth_time = s.payload["otp_auth_time"].as_i64().unwrap_or_else(now);
            signed_in(&state, &s, &psu, auth_time, &[AMR_PWD, AMR_HWK]).await
        }
        Err(Refused::PaymentChanged) => payment_changed(&state, &s),
        Err(Refused::Answer(r)) => *r,
        Err(Refused::Page(msg, status)) => otp_page_with(&state, &s, &psu, Some(msg), status).await,
    }
}

#[derive(Deserialize)]
pub struct EnrolForm {
    csrf: String,
    credential_id: String,
    client_data: String,
    attestation: String,
    #[serde(default)]
    label: String,
}

/// Enrolment on the security page, behind a fresh sign-in.
pub async fn enrol(
    State(state): State<AuthState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<EnrolForm>,
) -> Response {
    let s = match security_session(&state, &headers, Some(&form.csrf), true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(rp) = state.passkeys.clone() else {
        return security_page(
            &state,
            &s,
            None,
            Some("Passkeys are not available here."),
            StatusCode::NOT_FOUND,
        )
        .await;
    };
    let again = |msg: &'static str, status: StatusCode| {
        let state = state.clone();
        let s = s.clone();
        async move { security_page(&state, &s, None, Some(msg), status).await }
    };
    let (Ok(client_data), Ok(attestation)) = (
        B64.decode(form.client_data.trim_end_matches('=')),
        B64.decode(form.attestation.trim_end_matches('=')),
    ) else {
        return again(
            "The passkey's answer could not be read. Try again.",
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let challenge = challenge_for(REGISTER, &s, "");
    let cred = match webauthn::verify_registration(&rp, &challenge, &client_data, &attestation) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(error = %e, "passkey registration refused");
            return again(
                "That passkey could not be added. Try again.",
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let credential_id = B64.encode(&cred.id);
    if credential_id != form.credential_id.trim_end_matches('=') {
        return again(
            "That passkey could not be added. Try again.",
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let t = now();
    match state
        .store
        .use_jti(
            "webauthn",
            &B64.encode(&challenge),
            t + state.config.session_ttl.as_secs() as i64,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return again(
                "That passkey answer was already used. Start again.",
                StatusCode::CONFLICT,
            )
            .await;
        }
        Err(e) => return authz_error_response(&state, e.into()),
    }
    let label: String = form.label.trim().chars().take(40).collect();
    let factor = Factor {
        factor_id: format!("passkey-{}", secrets::random_token()),
        psu_id: s.psu_id.clone().unwrap_or_default(),
        kind: "passkey".into(),
        label: if label.is_empty() {
            "Passkey".into()
        } else {
            label
        },
        secret: B64.encode(&cred.public_key),
        created_at: t,
        credential_id: Some(credential_id),
    };
    match state.store.add_factor(&factor).await {
        Ok(()) => {}
        Err(aspen_store::StoreError::Conflict(_)) => {
            return again("That passkey is already registered.", StatusCode::CONFLICT).await;
        }
        Err(e) => return authz_error_response(&state, e.into()),
    }
    let _ = state
        .store
        .use_passkey_counter(&factor.factor_id, i64::from(cred.sign_count))
        .await;
    tracing::info!(factor_id = %factor.factor_id, user_verified = cred.user_verified, "passkey added");
    // A new session: the enrolment's challenge is not offered again.
    reissued(&state, &s, None, s.payload.clone(), Some("Passkey added.")).await
}

/// A fresh sign-in on the security page with a passkey that verifies the
/// PSU (as good as password and code).
pub async fn reauth(
    State(state): State<AuthState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<AssertionForm>,
) -> Response {
    let s = match security_session(&state, &headers, Some(&form.csrf), false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(rp) = state.passkeys.clone() else {
        return security_page(&state, &s, None, None, StatusCode::OK).await;
    };
    let psu = s.psu_id.clone().unwrap_or_default();
    match accept(&state, &rp, &s, &form, REAUTH, Some(&psu), true).await {
        Ok(_) => {
            reissued(
                &state,
                &s,
                Some(now()),
                s.payload.clone(),
                Some("Confirmed."),
            )
            .await
        }
        Err(Refused::Answer(r)) => *r,
        Err(Refused::Page(msg, status)) => security_page(&state, &s, None, Some(msg), status).await,
        Err(Refused::PaymentChanged) => {
            security_page(
                &state,
                &s,
                None,
                Some(NOT_ACCEPTED),
                StatusCode::UNAUTHORIZED,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amr_with_a_verifying_passkey_is_sca() {
        let amr = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(acr_of(&amr(&[AMR_HWK, AMR_MFA])), ACR_SCA);
        assert_eq!(acr_of(&amr(&[AMR_PWD, AMR_HWK])), ACR_SCA);
        assert_eq!(acr_of(&amr(&[AMR_HWK])), ACR_CA);
        assert_eq!(acr_of(&amr(&[AMR_PWD])), ACR_CA);
        assert_eq!(acr_of(&amr(&[AMR_MFA])), ACR_CA);
    }
}
