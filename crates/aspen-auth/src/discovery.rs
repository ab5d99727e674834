//! `/.well-known/openid-configuration` (AUTH-6, AUTH-7) and `/jwks`
//! (AUTH-9). The discovery document lists exactly what this server
//! enforces under the active profile (AUTH-8).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::{AuthState, ServerProfile};

/// What a profile accepts, in one table: discovery is rendered from it and
/// the registration and token-endpoint validators check against it, so
/// the two cannot drift (AUTH-8).
///
/// AUTH-8 [choice]: the standard fields list exactly what an *ordinary*
/// registration gets (DCR clients copy them into their requests, DCR-24).
/// The sandbox's permissive extras (client secrets, the plain `code`
/// flow) need `"aspen_profile": "permissive"` at registration, so they are
/// advertised apart, in `aspen_permissive_*` fields.
#[derive(Debug)]
pub struct Capabilities {
    pub response_types: &'static [&'static str],
    pub token_endpoint_auth_methods: &'static [&'static str],
    /// Request objects, client assertions, registration JWTs, ID tokens
    /// (AUTH-4).
    pub signing_algs: &'static [&'static str],
    pub grant_types: &'static [&'static str],
    pub scopes: &'static [&'static str],
    /// Only for clients registered as permissive (sandbox).
    pub permissive_response_types: &'static [&'static str],
    pub permissive_auth_methods: &'static [&'static str],
}

const STRICT: Capabilities = Capabilities {
    response_types: &["code id_token"],
    token_endpoint_auth_methods: &["tls_client_auth", "private_key_jwt"],
    signing_algs: &["PS256"],
    grant_types: &["authorization_code", "client_credentials", "refresh_token"],
    scopes: &[
        "openid",
        "accounts",
        "payments",
        "fundsconfirmations",
        "eventpolling",
    ],
    permissive_response_types: &[],
    permissive_auth_methods: &[],
};

const SANDBOX: Capabilities = Capabilities {
    permissive_response_types: &["code"],
    permissive_auth_methods: &["client_secret_basic", "client_secret_post"],
    ..STRICT
};

impl Capabilities {
    pub fn of(profile: ServerProfile) -> &'static Capabilities {
        match profile {
            ServerProfile::Sandbox => &SANDBOX,
            ServerProfile::Production => &STRICT,
        }
    }

    pub fn accepts_response_type(&self, r: &str, permissive: bool) -> bool {
        self.response_types.contains(&r)
            || (permissive && self.permissive_response_types.contains(&r))
    }

    pub fn accepts_auth_method(&self, m: &str, permissive: bool) -> bool {
        self.token_endpoint_auth_methods.contains(&m)
            || (permissive && self.permissive_auth_methods.contains(&m))
    }

    /// Known to the profile at all (for a precise error message).
    pub fn knows_auth_method(&self, m: &str) -> bool {
        self.accepts_auth_method(m, true)
    }
}

/// The discovery document for `c`: what `/.well-known/openid-configuration`
/// serves (serialised once per start, [`crate::AuthState::new`]: all of it
/// comes from the configuration) and the developer portal renders.
pub fn document(c: &crate::AuthConfig) -> serde_json::Value {
    let caps = Capabilities::of(c.profile);
    let mut doc = serde_json::json!({
        "issuer": c.issuer,
        "authorization_endpoint": c.authorization_endpoint(),
        "token_endpoint": c.token_endpoint(),
        "jwks_uri": c.jwks_uri(),
        "registration_endpoint": c.registration_endpoint(),
        "scopes_supported": caps.scopes,
        "response_types_supported": caps.response_types,
        "response_modes_supported": ["fragment"],
        "grant_types_supported": caps.grant_types,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": caps.signing_algs,
        "request_object_signing_alg_values_supported": caps.signing_algs,
        "token_endpoint_auth_methods_supported": caps.token_endpoint_auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": caps.signing_algs,
        "claims_supported": ["sub", "acr", "amr", "openbanking_intent_id", "auth_time", "iss", "aud", "exp", "iat", "nonce"],
        "acr_values_supported": ["urn:openbanking:psd2:sca", "urn:openbanking:psd2:ca"],
        "claims_parameter_supported": true,
        "request_parameter_supported": true,
        "request_uri_parameter_supported": false,
        "tls_client_certificate_bound_access_tokens": true,
    });
    if !caps.permissive_auth_methods.is_empty() {
        doc["aspen_permissive_token_endpoint_auth_methods_supported"] =
            serde_json::json!(caps.permissive_auth_methods);
        doc["aspen_permissive_response_types_supported"] =
            serde_json::json!(caps.permissive_response_types);
    }
    doc
}

pub async fn openid_configuration(State(s): State<AuthState>) -> Response {
    json_bytes(s.discovery_body.clone())
}

pub async fn jwks(State(s): State<AuthState>) -> Response {
    json_bytes(s.jwks_body.clone())
}

/// A body serialised at start, as JSON, cacheable.
fn json_bytes(body: axum::body::Bytes) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(aspen_http::json::JSON_UTF8),
    );
    cached(resp)
}

fn cached(mut resp: Response) -> Response {
    // Short: a key rotation must reach clients quickly (AUTH-10).
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
