//! The bank's own login as an upstream OpenID provider: aspen is its
//! relying party (OpenID Connect Core 1.0, authorization code flow with
//! PKCE, RFC 7636). Discovery and JWKS are fetched with timeouts and
//! cached; the ID token is verified here (Core §3.1.3.7). No web framework
//! here: the pages that drive it live in `aspen-auth`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How long a discovery document or key set is reused before it is
/// fetched again.
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// An unknown `kid` refetches the key set, but not more often than this:
/// tokens with made-up `kid`s must not turn aspen into a load generator.
const REFETCH_GAP: Duration = Duration::from_secs(5);
/// Clock skew accepted on `exp` and `iat`.
const SKEW: i64 = 60;
/// Oldest `iat` accepted: the token is fetched seconds after it is made.
const MAX_AGE: i64 = 600;
/// Largest body read from the upstream.
const MAX_BODY: usize = 256 * 1024;
/// ID token algorithms aspen can verify (the upstream's advertised list
/// is intersected with these; `none` and `HS*` can never be named).
const VERIFIABLE: [(&str, Algorithm); 3] = [
    ("PS256", Algorithm::PS256),
    ("RS256", Algorithm::RS256),
    ("ES256", Algorithm::ES256),
];

/// How aspen authenticates to the upstream's token endpoint.
#[derive(Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` (RFC 6749 §2.3.1).
    Secret(String),
    /// `private_key_jwt` (OIDC Core §9, RFC 7523) with PS256 assertions.
    PrivateKeyJwt(aspen_jose::SigningKey),
}

impl ClientAuth {
    fn method(&self) -> &'static str {
        match self {
            ClientAuth::Secret(_) => "client_secret_basic",
            ClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}

#[derive(Clone)]
pub struct UpstreamConfig {
    /// The upstream's issuer identifier, compared byte for byte.
    pub issuer: String,
    pub client_id: String,
    pub auth: ClientAuth,
    /// Trust anchors (PEM certificates) for the upstream's TLS; the
    /// platform's roots when empty.
    pub ca_pem: Option<Vec<u8>>,
    pub scope: String,
    /// Sent as `acr_values` (voluntary: the upstream's ID token says what
    /// it did, and aspen decides on that).
    pub acr_values: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream cannot be reached, timed out, or failed on its side.
    #[error("the bank's sign-in service is unavailable: {0}")]
    Unavailable(String),
    /// The upstream answered, but with something aspen cannot accept.
    #[error("the bank's sign-in service answered unacceptably: {0}")]
    BadAnswer(String),
    /// The configuration cannot work (keys, trust anchors).
    #[error("upstream OpenID provider configuration: {0}")]
    Config(String),
}

/// The upstream's discovery document: the fields aspen uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Absent means `client_secret_basic` only (Discovery §3).
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207: the authorization response then carries `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// What a started sign-in keeps on the server until the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// The verified outcome of the upstream sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub sub: String,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub auth_time: Option<i64>,
}

struct Cached<T> {
    at: Instant,
    value: Arc<T>,
}

pub struct Upstream {
    cfg: UpstreamConfig,
    http: reqwest::Client,
    discovery: Mutex<Option<Cached<Discovery>>>,
    jwks: Mutex<Option<Cached<Vec<Value>>>>,
    last_refetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("issuer", &self.cfg.issuer)
            .field("client_id", &self.cfg.client_id)
            .field("auth", &self.cfg.auth.method())
            .finish_non_exhaustive()
    }
}

/// 32 random bytes, base64url: state, nonce, PKCE verifier, `jti`.
fn random_token() -> Result<String, UpstreamError> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| UpstreamError::Config("no randomness".into()))?;
    Ok(aspen_jose::b64(&b))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A client key from PEM: PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE
/// KEY`), RSA of at least 2048 bits.
pub fn load_client_key(pem: &str, kid: Option<String>) -> Result<aspen_jose::SigningKey, String> {
    if pem.contains("-----BEGIN PRIVATE KEY-----") {
        return aspen_jose::SigningKey::from_pkcs8_pem(pem, kid).map_err(|e| e.to_string());
    }
    use aws_lc_rs::encoding::AsDer;
    use base64::Engine;
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN RSA PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END RSA PRIVATE KEY-----")
        .collect();
    if body.is_empty() {
        return Err("expected a PEM \"PRIVATE KEY\" or \"RSA PRIVATE KEY\" block".into());
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| "the PEM body is not base64".to_string())?;
    let pair = aws_lc_rs::rsa::KeyPair::from_der(&der).map_err(|e| e.to_string())?;
    let pkcs8 = pair
        .as_der()
        .map_err(|_| "cannot re-encode the key".to_string())?;
    aspen_jose::SigningKey::from_pkcs8_der(pkcs8.as_ref(), kid).map_err(|e| e.to_string())
}

impl Upstream {
    pub fn new(cfg: UpstreamConfig) -> Result<Self, UpstreamError> {
        if !cfg.issuer.starts_with("https://") {
            return Err(UpstreamError::Config(
                "the issuer must be an https URL".into(),
            ));
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true);
        if let Some(pem) = &cfg.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| UpstreamError::Config(format!("ca_file: {e}")))?;
            if certs.is_empty() {
                return Err(UpstreamError::Config("ca_file holds no certificate".into()));
            }
            b = b.tls_certs_only(certs);
        }
        let http = b
            .build()
            .map_err(|e| UpstreamError::Config(e.to_string()))?;
        Ok(Self {
            cfg,
            http,
            discovery: Mutex::new(None),
            jwks: Mutex::new(None),
            last_refetch: Mutex::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.cfg.issuer
    }

    async fn get_json(&self, url: &str) -> Result<Value, UpstreamError> {
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("GET {url}: {e}")))?;
        let status = resp.status();
        let body = read_limited(resp).await?;
        if status.is_server_error() {
            return Err(UpstreamError::Unavailable(format!(
                "GET {url}: HTTP {status}"
            )));
        }
        if !status.is_success() {
            return Err(UpstreamError::BadAnswer(format!(
                "GET {url}: HTTP {status}"
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::BadAnswer(format!("GET {url}: not JSON: {e}")))
    }

    /// The discovery document (OpenID Connect Discovery §4), checked and
    /// cached.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, UpstreamError> {
        if let Ok(g) = self.discovery.lock()
            && let Some(c) = g.as_ref()
            && c.at.elapsed() < CACHE_TTL
        {
            return Ok(c.value.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let v = self.get_json(&url).await?;
        let d: Discovery = serde_json::from_value(v)
            .map_err(|e| UpstreamError::BadAnswer(format!("discovery document: {e}")))?;
        check_discovery(&d, &self.cfg)?;
        let d = Arc::new(d);
        if let Ok(mut g) = self.discovery.lock() {
            *g = Some(Cached {
                at: Instant::now(),
                value: d.clone(),
            });
        }
        Ok(d)
    }

    async fn jwks(&self, d: &Discovery, refresh: bool) -> Result<Arc<Vec<Value>>, UpstreamError> {
        if !refresh
            && let Ok(g) = self.jwks.lock()
            && let Some(c) = g.as_ref()
            && c.at.elapsed() < CACHE_TTL
        {
            return Ok(c.value.clone());
        }
        let v = self.get_json(&d.jwks_uri).await?;
        let keys = v
            .get("keys")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| UpstreamError::BadAnswer("the JWKS has no keys array".into()))?;
        let keys = Arc::new(keys);
        if let Ok(mut g) = self.jwks.lock() {
            *g = Some(Cached {
                at: Instant::now(),
                value: keys.clone(),
            });
        }
        Ok(keys)
    }

    /// Begins a sign-in: the URL to send the PSU to, and what to keep
    /// server-side until the callback.
    pub async fn start(&self, redirect_uri: &str) -> Result<(String, Pending), UpstreamError> {
        let d = self.discovery().await?;
        let pending = Pending {
            state: random_token()?,
            nonce: random_token()?,
            verifier: random_token()?,
        };
        let mut url = reqwest::Url::parse(&d.authorization_endpoint)
            .map_err(|e| UpstreamError::BadAnswer(format!("authorization_endpoint: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.cfg.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &self.cfg.scope)
                .append_pair("state", &pending.state)
                .append_pair("nonce", &pending.nonce)
                .append_pair(
                    "code_challenge",
                    &aspen_jose::sha256_b64url(pending.verifier.as_bytes()),
                )
                .append_pair("code_challenge_method", "S256");
            if !self.cfg.acr_values.is_empty() {
                q.append_pair("acr_values", &self.cfg.acr_values);
            }
        }
        Ok((url.into(), pending))
    }

    /// Ends a sign-in: the authorization response's `iss` (RFC 9207) is
    /// checked, the code exchanged, and the ID token verified.
    pub async fn finish(
        &self,
        pending: &Pending,
        code: &str,
        iss: Option<&str>,
        redirect_uri: &str,
    ) -> Result<Identity, UpstreamError> {
        let d = self.discovery().await?;
        match iss {
            Some(i) if i != d.issuer => {
                return Err(UpstreamError::BadAnswer(
                    "the authorization response names another issuer".into(),
                ));
            }
            None if d.authorization_response_iss_parameter_supported => {
                return Err(UpstreamError::BadAnswer(
                    "the authorization response lacks iss".into(),
                ));
            }
            _ => {}
        }
        let id_token = self
            .exchange(&d, code, &pending.verifier, redirect_uri)
            .await?;
        let algs = allowed_algs(&d);
        let header = jsonwebtoken::decode_header(&id_token)
            .map_err(|e| UpstreamError::BadAnswer(format!("ID token header: {e}")))?;
        let mut keys = self.jwks(&d, false).await?;
        if let Some(kid) = &header.kid
            && !keys
                .iter()
                .any(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
            && self.may_refetch()
        {
            keys = self.jwks(&d, true).await?;
        }
        verify_id_token(
            &id_token,
            &keys,
            &algs,
            &Expect {
                issuer: &self.cfg.issuer,
                client_id: &self.cfg.client_id,
                nonce: &pending.nonce,
                now: now(),
            },
        )
        .map_err(|e| UpstreamError::BadAnswer(format!("ID token: {e}")))
    }

    fn may_refetch(&self) -> bool {
        let Ok(mut last) = self.last_refetch.lock() else {
            return false;
        };
        if last.is_some_and(|t| t.elapsed() < REFETCH_GAP) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    async fn exchange(
        &self,
        d: &Discovery,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, UpstreamError> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.into()),
            ("redirect_uri", redirect_uri.into()),
            ("code_verifier", verifier.into()),
        ];
        let mut req = self.http.post(&d.token_endpoint);
        match &self.cfg.auth {
            ClientAuth::Secret(secret) => {
                // RFC 6749 §2.3.1: both parts form-encoded before Basic.
                let enc = |s: &str| serde_urlencoded::to_string([("", s)]).unwrap_or_default();
                let id = enc(&self.cfg.client_id);
                let pw = enc(secret);
                req = req.basic_auth(id.trim_start_matches('='), Some(pw.trim_start_matches('=')));
            }
            ClientAuth::PrivateKeyJwt(key) => {
                let t = now();
                // The issuer identifier as audience: what current guidance
                // (RFC 7523bis, FAPI 2) asks for and providers accept.
                let claims = serde_json::json!({
                    "iss": self.cfg.client_id, "sub": self.cfg.client_id,
                    "aud": d.issuer, "iat": t, "exp": t + 60, "jti": random_token()?,
                });
                let assertion = aspen_jose::sign_jwt(key, None, &claims)
                    .map_err(|e| UpstreamError::Config(format!("client assertion: {e}")))?;
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", assertion));
                form.push(("client_id", self.cfg.client_id.clone()));
            }
        }
        let resp = req
            .header("accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("token endpoint: {e}")))?;
        let status = resp.status();
        let body = read_limited(resp).await?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_server_error() {
            return Err(UpstreamError::Unavailable(format!(
                "token endpoint: HTTP {status}"
            )));
        }
        if !status.is_success() {
            let err = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error code");
            return Err(UpstreamError::BadAnswer(format!(
                "token endpoint: HTTP {status}: {err}"
            )));
        }
        v.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| UpstreamError::BadAnswer("the token response has no id_token".into()))
    }
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| UpstreamError::Unavailable(format!("reading the answer: {e}")))?
    {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(UpstreamError::BadAnswer("the answer is too large".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn check_discovery(d: &Discovery, cfg: &UpstreamConfig) -> Result<(), UpstreamError> {
    let bad = |m: String| Err(UpstreamError::BadAnswer(m));
    // Discovery §4.3: the issuer in the document is the one asked for.
    if d.issuer != cfg.issuer {
        return bad(format!(
            "discovery names issuer {:?}, configured is {:?}",
            d.issuer, cfg.issuer
        ));
    }
    for (name, url) in [
        ("authorization_endpoint", &d.authorization_endpoint),
        ("token_endpoint", &d.token_endpoint),
        ("jwks_uri", &d.jwks_uri),
    ] {
        if !url.starts_with("https://") || reqwest::Url::parse(url).is_err() {
            return bad(format!("{name} must be an https URL"));
        }
    }
    if allowed_algs(d).is_empty() {
        return bad("none of the upstream's ID token algorithms is PS256, RS256 or ES256".into());
    }
    if d.code_challenge_methods_supported
        .as_ref()
        .is_some_and(|m| !m.iter().any(|x| x == "S256"))
    {
        return bad("the upstream does not support PKCE S256".into());
    }
    let methods = d
        .token_endpoint_auth_methods_supported
        .clone()
        .unwrap_or_else(|| vec!["client_secret_basic".into()]);
    if !methods.iter().any(|m| m == cfg.auth.method()) {
        return bad(format!(
            "the upstream does not support {} at its token endpoint",
            cfg.auth.method()
        ));
    }
    Ok(())
}

/// The upstream's advertised ID token algorithms that aspen can verify.
/// With none advertised, RS256 (the Discovery §3 default) only.
fn allowed_algs(d: &Discovery) -> Vec<Algorithm> {
    let advertised: Vec<&str> = if d.id_token_signing_alg_values_supported.is_empty() {
        vec!["RS256"]
    } else {
        d.id_token_signing_alg_values_supported
            .iter()
            .map(String::as_str)
            .collect()
    };
    VERIFIABLE
        .iter()
        .filter(|(n, _)| advertised.contains(n))
        .map(|(_, a)| *a)
        .collect()
}

/// What the ID token must say.
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now: i64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IdTokenError {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("no usable key for kid {0:?}")]
    NoKey(Option<String>),
    #[error("signature or registered claims do not verify: {0}")]
    Invalid(String),
    #[error("iss is not the upstream's issuer")]
    Issuer,
    #[error("aud does not contain the client_id")]
    Audience,
    #[error("azp is not the client_id")]
    Azp,
    #[error("exp has passed")]
    Expired,
    #[error("iat is missing, in the future or too old")]
    IssuedAt,
    #[error("nonce does not match")]
    Nonce,
    #[error("sub is missing or unusable")]
    Subject,
}

fn key_matches(jwk: &Value, alg: Algorithm) -> bool {
    let kty = jwk.get("kty").and_then(Value::as_str);
    let kty_ok = match alg {
        Algorithm::PS256 | Algorithm::RS256 => kty == Some("RSA"),
        Algorithm::ES256 => {
            kty == Some("EC") && jwk.get("crv").and_then(Value::as_str) == Some("P-256")
        }
        _ => false,
    };
    let use_ok = jwk
        .get("use")
        .and_then(Value::as_str)
        .is_none_or(|u| u == "sig");
    let alg_ok = jwk.get("alg").and_then(Value::as_str).is_none_or(|a| {
        serde_json::to_value(alg)
            .ok()
            .as_ref()
            .and_then(Value::as_str)
            == Some(a)
    });
    kty_ok && use_ok && alg_ok
}

/// OIDC Core §3.1.3.7: signature with an advertised algorithm and a key of
/// the upstream's set, `iss` byte for byte, `aud` containing the client,
/// `azp` when several audiences, `exp`, `iat` within skew, `nonce`.
pub fn verify_id_token(
    token: &str,
    keys: &[Value],
    algs: &[Algorithm],
    expect: &Expect<'_>,
) -> Result<Identity, IdTokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| IdTokenError::Malformed(e.to_string()))?;
    if !algs.contains(&header.alg) {
        return Err(IdTokenError::Algorithm(format!("{:?}", header.alg)));
    }
    let candidates: Vec<&Value> = keys
        .iter()
        .filter(|k| key_matches(k, header.alg))
        .filter(|k| match &header.kid {
            Some(kid) => k.get("kid").and_then(Value::as_str) == Some(kid),
            None => true,
        })
        .collect();
    // Without a kid the set must hold exactly one candidate: aspen never
    // tries keys one after another.
    let jwk = match candidates.as_slice() {
        [one] => *one,
        _ => return Err(IdTokenError::NoKey(header.kid.clone())),
    };
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk.clone()).map_err(|_| IdTokenError::NoKey(header.kid.clone()))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| IdTokenError::NoKey(header.kid.clone()))?;
    let mut v = Validation::new(header.alg);
    // The claims are checked below, each with its own error.
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(token, &key, &v)
        .map_err(|e| IdTokenError::Invalid(e.to_string()))?;
    let c = data.claims;
    let s = |k: &str| c.get(k).and_then(Value::as_str);
    if s("iss") != Some(expect.issuer) {
        return Err(IdTokenError::Issuer);
    }
    let auds: Vec<&str> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !auds.contains(&expect.client_id) {
        return Err(IdTokenError::Audience);
    }
    if (auds.len() > 1 || c.get("azp").is_some()) && s("azp") != Some(expect.client_id) {
        return Err(IdTokenError::Azp);
    }
    match c.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp + SKEW > expect.now => {}
        _ => return Err(IdTokenError::Expired),
    }
    match c.get("iat").and_then(Value::as_i64) {
        Some(iat) if iat <= expect.now + SKEW && iat >= expect.now - MAX_AGE => {}
        _ => return Err(IdTokenError::IssuedAt),
    }
    match s("nonce") {
        Some(n) if aspen_jose::constant_time_eq(n, expect.nonce) => {}
        _ => return Err(IdTokenError::Nonce),
    }
    let sub = match s("sub") {
        Some(sub) if !sub.is_empty() && sub.len() <= 255 && !sub.chars().any(char::is_control) => {
            sub.to_string()
        }
        _ => return Err(IdTokenError::Subject),
    };
    Ok(Identity {
        sub,
        acr: s("acr").map(str::to_string),
        amr: c
            .get("amr")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        auth_time: c.get("auth_time").and_then(Value::as_i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://bank.example";
    const CLIENT: &str = "aspen";

    fn key() -> &'static aspen_jose::SigningKey {
        static K: std::sync::OnceLock<aspen_jose::SigningKey> = std::sync::OnceLock::new();
        K.get_or_init(|| aspen_jose::SigningKey::generate(Some("k1".into())).unwrap())
    }

    fn claims(t: i64) -> Value {
        json!({
            "iss": ISS, "aud": CLIENT, "sub": "psu-1", "iat": t, "exp": t + 300,
            "nonce": "n-1", "acr": "urn:openbanking:psd2:sca", "amr": ["pwd", "otp"],
            "auth_time": t - 5,
        })
    }

    fn keys() -> Vec<Value> {
        vec![key().public_jwk()]
    }

    fn expect(t: i64) -> Expect<'static> {
        Expect {
            issuer: ISS,
            client_id: CLIENT,
            nonce: "n-1",
            now: t,
        }
    }

    fn verify(token: &str, t: i64) -> Result<Identity, IdTokenError> {
        verify_id_token(
            token,
            &keys(),
            &[Algorithm::PS256, Algorithm::RS256],
            &expect(t),
        )
    }

    fn with(t: i64, f: impl FnOnce(&mut Value)) -> String {
        let mut c = claims(t);
        f(&mut c);
        aspen_jose::sign_jwt(key(), None, &c).unwrap()
    }

    #[test]
    fn a_good_token_gives_the_identity() {
        let t = now();
        let id = verify(&with(t, |_| {}), t).unwrap();
        assert_eq!(id.sub, "psu-1");
        assert_eq!(id.acr.as_deref(), Some("urn:openbanking:psd2:sca"));
        assert_eq!(id.amr, vec!["pwd", "otp"]);
        assert_eq!(id.auth_time, Some(t - 5));
    }

    #[test]
    fn rs256_verifies_with_the_same_key() {
        let t = now();
        let pem = key().to_pkcs8_pem().unwrap();
        let enc = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let mut h = jsonwebtoken::Header::new(Algorithm::RS256);
        h.kid = Some("k1".into());
        let token = jsonwebtoken::encode(&h, &claims(t), &enc).unwrap();
        let mut unpinned = key().public_jwk();
        unpinned.as_object_mut().unwrap().remove("alg");
        let algs = [Algorithm::PS256, Algorithm::RS256];
        let id = verify_id_token(&token, &[unpinned.clone()], &algs, &expect(t)).unwrap();
        assert_eq!(id.sub, "psu-1");
        // A key published for PS256 only does not verify RS256.
        assert!(matches!(verify(&token, t), Err(IdTokenError::NoKey(_))));
        // Not advertised by the upstream: refused.
        assert!(matches!(
            verify_id_token(&token, &[unpinned], &[Algorithm::PS256], &expect(t)),
            Err(IdTokenError::Algorithm(_))
        ));
    }

    #[test]
    fn every_claim_rule_has_its_refusal() {
        let t = now();
        type Change<'a> = Box<dyn FnOnce(&mut Value) + 'a>;
        let cases: Vec<(Change, IdTokenError)> = vec![
            (
                Box::new(|c| c["iss"] = json!("https://bank.example/")),
                IdTokenError::Issuer,
            ),
            (
                Box::new(|c| c["aud"] = json!("someone-else")),
                IdTokenError::Audience,
            ),
            (
                Box::new(|c| c["aud"] = json!(["someone-else", CLIENT])),
                IdTokenError::Azp,
            ),
            (
                Box::new(|c| {
                    c["aud"] = json!([CLIENT, "x"]);
                    c["azp"] = json!("x");
                }),
                IdTokenError::Azp,
            ),
            (
                Box::new(|c| c["exp"] = json!(t - 120)),
                IdTokenError::Expired,
            ),
            (
                Box::new(|c| c["iat"] = json!(t + 600)),
                IdTokenError::IssuedAt,
            ),
            (
                Box::new(|c| c["iat"] = json!(t - 3600)),
                IdTokenError::IssuedAt,
            ),
            (Box::new(|c| c["nonce"] = json!("n-2")), IdTokenError::Nonce),
            (
                Box::new(|c| {
                    c.as_object_mut().unwrap().remove("nonce");
                }),
                IdTokenError::Nonce,
            ),
            (Box::new(|c| c["sub"] = json!("")), IdTokenError::Subject),
        ];
        for (f, want) in cases {
            assert_eq!(verify(&with(t, f), t), Err(want.clone()), "{want}");
        }
        // Several audiences with the right azp pass.
        let ok = with(t, |c| {
            c["aud"] = json!([CLIENT, "x"]);
            c["azp"] = json!(CLIENT);
        });
        assert!(verify(&ok, t).is_ok());
    }

    #[test]
    fn forged_or_unsigned_tokens_are_refused() {
        let t = now();
        let good = with(t, |_| {});
        let parts: Vec<&str> = good.split('.').collect();
        // Another key, same kid.
        let other = aspen_jose::SigningKey::generate(Some("k1".into())).unwrap();
        let forged = aspen_jose::sign_jwt(&other, None, &claims(t)).unwrap();
        assert!(matches!(verify(&forged, t), Err(IdTokenError::Invalid(_))));
        // alg none.
        let none = format!("{}.{}.", aspen_jose::b64(br#"{"alg":"none"}"#), parts[1]);
        assert!(verify(&none, t).is_err());
        // HS256 keyed with the public modulus (key confusion).
        let hs = format!(
            "{}.{}.{}",
            aspen_jose::b64(br#"{"alg":"HS256","kid":"k1"}"#),
            parts[1],
            parts[2]
        );
        assert!(matches!(verify(&hs, t), Err(IdTokenError::Algorithm(_))));
        // A kid the set does not hold.
        let stranger = aspen_jose::SigningKey::generate(Some("k9".into())).unwrap();
        let t9 = aspen_jose::sign_jwt(&stranger, None, &claims(t)).unwrap();
        assert_eq!(verify(&t9, t), Err(IdTokenError::NoKey(Some("k9".into()))));
        // A key marked for encryption is not a signing key.
        let mut enc = key().public_jwk();
        enc["use"] = json!("enc");
        assert!(matches!(
            verify_id_token(&good, &[enc], &[Algorithm::PS256], &expect(t)),
            Err(IdTokenError::NoKey(_))
        ));
    }

    #[test]
    fn pkcs1_and_pkcs8_client_keys_load() {
        let k = aspen_jose::SigningKey::generate(None).unwrap();
        let pem8 = k.to_pkcs8_pem().unwrap();
        assert_eq!(
            load_client_key(&pem8, Some("c1".into())).unwrap().kid(),
            "c1"
        );
        // The same key as PKCS#1: a 2048-bit PKCS#8 RSA key is a 26-byte
        // prefix (version, rsaEncryption, OCTET STRING header) around it.
        use base64::Engine;
        let der: Vec<u8> = base64::engine::general_purpose::STANDARD
            .decode(
                pem8.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        assert_eq!(&der[22..24], &[0x04, 0x82]);
        let pkcs1 = base64::engine::general_purpose::STANDARD.encode(&der[26..]);
        let pem1 =
            format!("-----BEGIN RSA PRIVATE KEY-----\n{pkcs1}\n-----END RSA PRIVATE KEY-----\n");
        let k1 = load_client_key(&pem1, None).unwrap();
        assert_eq!(k1.public_jwk()["n"], k.public_jwk()["n"]);
        assert!(load_client_key("not a key", None).is_err());
    }

    #[test]
    fn discovery_must_match_the_configuration() {
        let cfg = UpstreamConfig {
            issuer: ISS.into(),
            client_id: CLIENT.into(),
            auth: ClientAuth::Secret("s".into()),
            ca_pem: None,
            scope: "openid".into(),
            acr_values: String::new(),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        let good = json!({
            "issuer": ISS, "authorization_endpoint": "https://bank.example/auth",
            "token_endpoint": "https://bank.example/token", "jwks_uri": "https://bank.example/jwks",
            "id_token_signing_alg_values_supported": ["PS256"],
        });
        let d = |f: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            f(&mut v);
            serde_json::from_value::<Discovery>(v).unwrap()
        };
        assert!(check_discovery(&d(&|_| {}), &cfg).is_ok());
        for f in [
            &(|v: &mut Value| v["issuer"] = json!("https://evil.example")) as &dyn Fn(&mut Value),
            &|v| v["token_endpoint"] = json!("http://bank.example/token"),
            &|v| v["id_token_signing_alg_values_supported"] = json!(["HS256", "none"]),
            &|v| v["code_challenge_methods_supported"] = json!(["plain"]),
            &|v| v["token_endpoint_auth_methods_supported"] = json!(["private_key_jwt"]),
        ] {
            assert!(check_discovery(&d(f), &cfg).is_err());
        }
    }
}
