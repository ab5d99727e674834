//! The resource-side check of an access token (AUTH-60, COMMON-37): resolve
//! the bearer token, require the very certificate it was bound to, check
//! expiry and revocation, and hand the handler the client, scopes and
//! consent. Used by `/register/{ClientId}` and every OB resource route.

use std::sync::Arc;

use aspen_http::PeerCert;
use aspen_store::Store;
use aspen_store::auth::{SignerClient, TokenKind};
use aspen_store::consent::ConsentRecord;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::secrets;

pub trait HasStore {
    fn store(&self) -> &Arc<dyn Store>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    ClientCredentials,
    AuthorizationCode,
}

/// A valid, certificate-bound access token.
#[derive(Debug, Clone)]
pub struct BoundToken {
    /// Where the token's row is (to revoke it).
    pub key: aspen_store::auth::TokenKey,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub consent_id: Option<String>,
    pub psu_id: Option<String>,
    pub grant: GrantKind,
    pub expires_at: i64,
    /// The consent the token names, read with it (`AuthStore::access`);
    /// `None` when it names none or none exists.
    pub consent: Option<Arc<ConsentRecord>>,
    /// The client as a request-signature check needs it, read with the
    /// token when the request carries a signature (`x-jws-signature`) and
    /// the client is live.
    pub signer: Option<Arc<SignerClient>>,
}

impl BoundToken {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The consent `id` as read with the token, when the token names it.
    pub fn consent_read(&self, id: &str) -> Option<&Arc<ConsentRecord>> {
        self.consent.as_ref().filter(|c| c.consent_id == id)
    }
}

/// Why a token was refused: always 401 without a body (COMMON-37); the
/// reason goes to the log only.
#[derive(Debug, Clone)]
pub struct TokenRejection(pub &'static str);

impl IntoResponse for TokenRejection {
    fn into_response(self) -> Response {
        tracing::info!(reason = self.0, "access token refused");
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        )
            .into_response()
    }
}

pub fn bearer_value(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

impl<S> FromRequestParts<S> for BoundToken
where
    S: HasStore + Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token =
            bearer_value(parts).ok_or_else(|| TokenRejection("no bearer token").into_response())?;
        let key = secrets::token_key(token);
        // Issue 15: the token, its consent and (for a signed request) its
        // client in one statement, which handlers use instead of reading
        // them again.
        let signed = parts.headers.contains_key("x-jws-signature");
        let access = match state.store().access(&key, signed).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(TokenRejection("unknown token").into_response()),
            Err(e) => return Err(aspen_http::ObError::internal(e).into_response()),
        };
        let rec = access.token;
        if rec.kind != TokenKind::Access {
            return Err(TokenRejection("not an access token").into_response());
        }
        if rec.revoked {
            return Err(TokenRejection("revoked token").into_response());
        }
        if rec.expires_at <= chrono::Utc::now().timestamp() {
            return Err(TokenRejection("expired token").into_response());
        }
        // RFC 8705 §3: the token works only over a connection presenting
        // the certificate it was issued to.
        let peer = parts.extensions.get::<PeerCert>().and_then(|p| p.0.clone());
        match (&rec.cert_thumbprint, peer) {
            (Some(bound), Some(cert)) if secrets::constant_time_eq(bound, &cert.thumbprint) => {}
            _ => {
                return Err(
                    TokenRejection("certificate does not match the token binding").into_response(),
                );
            }
        }
        Ok(BoundToken {
            key,
            client_id: rec.client_id,
            scopes: rec.scope.split_whitespace().map(str::to_string).collect(),
            consent_id: rec.consent_id,
            psu_id: rec.psu_id,
            grant: if rec.grant == "authorization_code" {
                GrantKind::AuthorizationCode
            } else {
                GrantKind::ClientCredentials
            },
            expires_at: rec.expires_at,
            consent: access.consent.map(Arc::new),
            signer: access.signer.map(Arc::new),
        })
    }
}
