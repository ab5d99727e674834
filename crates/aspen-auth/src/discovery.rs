//! `/.well-known/openid-configuration` (AUTH-6, AUTH-7) and `/jwks`
//! (AUTH-9). The discovery document lists exactly what this server
//! enforces under the active profile (AUTH-8).

use aspen_http::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::{AuthState, ServerProfile};

/// Token endpoint authentication methods accepted under a profile
/// (AUTH-46, DCR-18).
pub fn token_endpoint_auth_methods(profile: ServerProfile) -> Vec<&'static str> {
    let mut m = vec!["private_key_jwt", "tls_client_auth"];
    if profile == ServerProfile::Sandbox {
        m.extend(["client_secret_basic", "client_secret_post"]);
    }
    m
}

/// Signing algorithms accepted for request objects, client assertions and
/// registration JWTs (AUTH-4).
pub const SIGNING_ALGS: &[&str] = &["PS256"];

pub const GRANT_TYPES: &[&str] = &["authorization_code", "client_credentials", "refresh_token"];

/// `code` alone only for permissive sandbox clients (AUTH-20).
pub fn response_types(profile: ServerProfile) -> Vec<&'static str> {
    match profile {
        ServerProfile::Sandbox => vec!["code id_token", "code"],
        ServerProfile::Production => vec!["code id_token"],
    }
}

pub const SCOPES: &[&str] = &["openid", "accounts", "payments", "fundsconfirmations"];

pub async fn openid_configuration(State(s): State<AuthState>) -> Response {
    let c = &s.config;
    let doc = serde_json::json!({
        "issuer": c.issuer,
        "authorization_endpoint": c.authorization_endpoint(),
        "token_endpoint": c.token_endpoint(),
        "jwks_uri": c.jwks_uri(),
        "registration_endpoint": c.registration_endpoint(),
        "scopes_supported": SCOPES,
        "response_types_supported": response_types(c.profile),
        "response_modes_supported": ["fragment"],
        "grant_types_supported": GRANT_TYPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": SIGNING_ALGS,
        "request_object_signing_alg_values_supported": SIGNING_ALGS,
        "token_endpoint_auth_methods_supported": token_endpoint_auth_methods(c.profile),
        "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGS,
        "claims_supported": ["sub", "acr", "openbanking_intent_id", "auth_time", "iss", "aud", "exp", "iat", "nonce"],
        "acr_values_supported": ["urn:openbanking:psd2:sca", "urn:openbanking:psd2:ca"],
        "claims_parameter_supported": true,
        "request_parameter_supported": true,
        "request_uri_parameter_supported": false,
        "tls_client_certificate_bound_access_tokens": true,
    });
    cached(Json(doc).into_response())
}

pub async fn jwks(State(s): State<AuthState>) -> Response {
    let keys: Vec<serde_json::Value> = s.keys.published.iter().map(|k| k.public_jwk()).collect();
    cached(Json(serde_json::json!({ "keys": keys })).into_response())
}

fn cached(mut resp: Response) -> Response {
    // Short: a key rotation must reach clients quickly (AUTH-10).
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
