//! The authorisation server: discovery, JWKS, OB Dynamic Client
//! Registration v3.2, the token endpoint and the resource-side check of
//! certificate-bound access tokens.

pub mod bearer;
pub mod client_keys;
pub mod consent_view;
pub mod dcr;
pub mod discovery;
pub mod oauth_error;
pub mod secrets;
pub mod token;
pub mod tpp_keys;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use aspen_jose::{Jwks, SigningKey};
use aspen_store::Store;
use axum::Router;
use axum::routing::{get, post};

pub use aspen_psu::{sealed, totp, upstream, webauthn};
pub use bearer::{BoundToken, GrantKind};
pub use oauth_error::OAuthError;
pub use web::upstream::PsuAuth;

/// Which rules apply to the server as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerProfile {
    /// Sandbox: clients may register as `permissive` (client secrets,
    /// headless authorisation).
    Sandbox,
    /// Production: strict clients only.
    Production,
}

/// Settings the authorisation server needs; built by the binary from its
/// configuration.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `issuer`, byte for byte (AUTH-6). Endpoint URLs are built from it.
    pub issuer: String,
    /// `[psu_auth] passkey_rp_id`; checked against the issuer at startup.
    pub passkey_rp_id: Option<String>,
    /// Seals PSU second-factor secrets at rest; from the key directory.
    pub factor_box: std::sync::Arc<sealed::SecretBox>,
    pub profile: ServerProfile,
    /// The ASPSP's own id at the directory; accepted as registration `aud`
    /// next to the issuer (DCR-10).
    pub aspsp_org_id: Option<String>,
    /// Trusted SSA issuers (`iss` of the SSA).
    pub directory_issuers: Vec<String>,
    /// Keys that sign SSAs.
    pub directory_jwks: Jwks,
    /// Oldest SSA accepted, by its `iat` (DCR-15 [choice]).
    pub ssa_max_age: Duration,
    pub client_credentials_ttl: Duration,
    /// Offline stand-ins for `software_jwks_endpoint` fetches.
    pub jwks_url_map: Vec<(String, Jwks)>,
    /// Timeout for fetching a TPP's JWKS endpoint.
    pub jwks_fetch_timeout: Duration,
    /// Authorisation-code access tokens (AUTH-59).
    pub access_token_ttl: Duration,
    pub code_ttl: Duration,
    pub id_token_ttl: Duration,
    /// PSU web sessions (login, consent, dashboard).
    pub session_ttl: Duration,
    /// PSU for headless authorisation without `login_hint`.
    pub default_psu: String,
    /// Login attempts per PSU (lockout with backoff).
    pub login_per_psu: aspen_store::consent::ThrottleRule,
    /// Login attempts per client address (from a trusted proxy's
    /// forwarding header only when the connection comes from that proxy).
    pub login_per_address: aspen_store::consent::ThrottleRule,
    pub brand: web::Brand,
    /// Who signs PSUs in: aspen's own pages or the bank's upstream OpenID
    /// provider.
    pub psu_auth: PsuAuth,
}

impl AuthConfig {
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    pub fn registration_endpoint(&self) -> String {
        format!("{}/register", self.issuer)
    }

    pub fn authorization_endpoint(&self) -> String {
        format!("{}/authorize", self.issuer)
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }
}

/// The server's signing keys as published: the current key signs, all
/// published keys appear in `/jwks` (AUTH-10).
#[derive(Clone)]
pub struct ServerKeys {
    pub current: SigningKey,
    pub published: Vec<SigningKey>,
}

/// The authorisation server's state, one `Arc` to clone: axum clones the
/// state for every request (issue 15: cloning the dozen fields one by one
/// was 4% of a discovery request's CPU).
#[derive(Clone)]
pub struct AuthState(Arc<AuthStateInner>);

impl std::ops::Deref for AuthState {
    type Target = AuthStateInner;

    fn deref(&self) -> &AuthStateInner {
        &self.0
    }
}

pub struct AuthStateInner {
    pub config: Arc<AuthConfig>,
    pub store: Arc<dyn Store>,
    /// The PSU's accounts for the consent page and dashboard.
    pub core: Arc<dyn aspen_core::Core>,
    pub keys: Arc<ServerKeys>,
    pub tpp_keys: Arc<tpp_keys::TppKeyResolver>,
    /// Registered client key sets, parsed once per distinct text.
    pub client_keys: Arc<client_keys::ClientKeys>,
    pub client_rows: Arc<client_keys::ClientRows>,
    /// The `/jwks` body, serialised once: the published keys change only
    /// with a restart, and with their certificate chains (`x5c`) the body
    /// is several kilobytes of base64 not worth rebuilding per request.
    pub jwks_body: axum::body::Bytes,
    /// The discovery document, serialised once for the same reason.
    pub discovery_body: axum::body::Bytes,
    /// Passkeys' relying party, when the issuer names a host.
    pub passkeys: Option<Arc<webauthn::RelyingParty>>,
}

impl AuthState {
    pub fn new(
        config: AuthConfig,
        store: Arc<dyn Store>,
        core: Arc<dyn aspen_core::Core>,
        keys: ServerKeys,
    ) -> Self {
        let tpp_keys =
            tpp_keys::TppKeyResolver::new(config.jwks_url_map.clone(), config.jwks_fetch_timeout);
        let jwks: Vec<serde_json::Value> = keys.published.iter().map(|k| k.public_jwk()).collect();
        let jwks_body = serde_json::to_vec(&serde_json::json!({ "keys": jwks }))
            .unwrap_or_default()
            .into();
        let discovery_body = serde_json::to_vec(&discovery::document(&config))
            .unwrap_or_default()
            .into();
        let passkeys = webauthn::RelyingParty::for_issuer(
            &config.issuer,
            config.passkey_rp_id.as_deref(),
            &config.brand.name,
        )
        .unwrap_or_else(|why| {
            tracing::warn!(%why, "passkeys are off");
            None
        })
        // With the bank's own login, aspen's factors are not used.
        .filter(|_| matches!(config.psu_auth, PsuAuth::Builtin))
        .map(Arc::new);
        Self(Arc::new(AuthStateInner {
            passkeys,
            config: Arc::new(config),
            store,
            core,
            keys: Arc::new(keys),
            tpp_keys: Arc::new(tpp_keys),
            client_keys: Arc::default(),
            client_rows: Arc::default(),
            jwks_body,
            discovery_body,
        }))
    }
}

impl bearer::HasStore for AuthState {
    fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

pub fn router(state: AuthState) -> Router {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/jwks", get(discovery::jwks))
        .route("/register", post(dcr::register))
        .route(
            "/register/{client_id}",
            get(dcr::read).put(dcr::update).delete(dcr::delete),
        )
        .route("/token", post(token::token))
        .route("/authorize", get(web::authorize).post(web::authorize))
        .route(
            "/login",
            get(web::upstream::login_page).post(web::upstream::login_submit),
        )
        .route(
            "/login/otp",
            get(web::upstream::otp_page).post(web::upstream::otp_submit),
        )
        .route("/login/callback", get(web::upstream::callback))
        .route("/consent", get(web::consent_get).post(web::consent_post))
        .route("/account/consents", get(web::upstream::dashboard))
        .route("/account/consents/{consent_id}/revoke", post(web::revoke))
        .route("/account/security", get(web::security))
        .route("/account/security/reauth", post(web::security_reauth))
        .route("/account/security/totp/start", post(web::totp_start))
        .route("/account/security/totp/confirm", post(web::totp_confirm))
        .route(
            "/account/security/factors/{factor_id}/remove",
            post(web::factor_remove),
        )
        .route("/login/passkey", post(web::passkey::login))
        .route("/login/otp/passkey", post(web::passkey::second_factor))
        .route("/account/security/passkey", post(web::passkey::enrol))
        .route(
            "/account/security/reauth/passkey",
            post(web::passkey::reauth),
        )
        .route("/assets/passkey.js", get(web::passkey::script))
        .route("/logout", post(web::logout))
        .with_state(state)
}
