//! The TPP's HTTP side: one mTLS client with the kit's transport
//! certificate, one certificate-less client for the PSU's browser side of
//! `/authorize`, and the OB/FAPI steps on top of them.

use std::sync::Arc;
use std::time::Duration;

use aspen_jose::Jwks;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::idtoken::{IdTokenExpectations, check_id_token};
use crate::state::{Pending, SavedConsent, State, Token};
use crate::{Kit, Result, TppError, now};

pub const OB_BASE: &str = "/open-banking/v3.1";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ACR_SCA: &str = "urn:openbanking:psd2:sca";
const ACR_CA: &str = "urn:openbanking:psd2:ca";
/// Values shortened in `--verbose` output: they are bearer credentials or
/// signed blobs nobody reads in a log.
const SECRET_FIELDS: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "client_assertion",
    "request",
    "software_statement",
    "registration_access_token",
    "client_secret",
    "code",
];

/// One HTTP message, for `--verbose`.
pub enum Traffic<'a> {
    Request {
        method: &'a str,
        url: &'a str,
        headers: &'a [(String, String)],
        body: &'a [u8],
    },
    Response {
        status: u16,
        headers: &'a HeaderMap,
        body: &'a [u8],
    },
}

pub type Observer = Arc<dyn Fn(&Traffic<'_>) + Send + Sync>;

/// `abcdefghij…uvwxyz (812 chars)` for long credentials.
pub fn shorten(s: &str) -> String {
    let n = s.chars().count();
    if n <= 24 {
        return s.to_string();
    }
    let head: String = s.chars().take(10).collect();
    let tail: String = s.chars().skip(n - 6).collect();
    format!("{head}…{tail} ({n} chars)")
}

fn shorten_header(name: &str, value: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "authorization" => match value.split_once(' ') {
            Some((scheme, token)) => format!("{scheme} {}", shorten(token)),
            None => shorten(value),
        },
        "x-jws-signature" | "cookie" | "set-cookie" => shorten(value),
        _ => value.to_string(),
    }
}

fn shorten_json(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Value::String(s) if SECRET_FIELDS.contains(&k.as_str()) => *s = shorten(s),
                    _ => shorten_json(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(shorten_json),
        _ => {}
    }
}

fn shorten_pairs(pairs: Vec<(String, String)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| {
            let v = if SECRET_FIELDS.contains(&k.as_str()) {
                shorten(&v)
            } else {
                v
            };
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn body_text(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    if let Ok(mut v) = serde_json::from_slice::<Value>(body) {
        shorten_json(&mut v);
        return serde_json::to_string_pretty(&v).unwrap_or_default();
    }
    let text = String::from_utf8_lossy(body);
    if let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(&text)
        && !pairs.is_empty()
        && text.contains('=')
        && !text.contains(char::is_whitespace)
    {
        return shorten_pairs(pairs);
    }
    let n = text.chars().count();
    if n > 4000 {
        format!(
            "{}… ({n} characters)",
            text.chars().take(4000).collect::<String>()
        )
    } else {
        text.into_owned()
    }
}

/// The URL with its query or fragment credentials (the request object,
/// the code and ID token in a redirect) shortened.
fn url_text(url: &str) -> String {
    let Some(i) = url.find(['?', '#']) else {
        return url.to_string();
    };
    let (base, rest) = url.split_at(i);
    let (sep, params) = rest.split_at(1);
    match serde_urlencoded::from_str::<Vec<(String, String)>>(params) {
        Ok(pairs) => format!("{base}{sep}{}", shorten_pairs(pairs)),
        Err(_) => url.to_string(),
    }
}

impl std::fmt::Display for Traffic<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Traffic::Request {
                method,
                url,
                headers,
                body,
            } => {
                writeln!(f, "> {method} {}", url_text(url))?;
                for (k, v) in *headers {
                    writeln!(f, "> {k}: {}", shorten_header(k, v))?;
                }
                for line in body_text(body).lines() {
                    writeln!(f, "> {line}")?;
                }
                Ok(())
            }
            Traffic::Response {
                status,
                headers,
                body,
            } => {
                let reason = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                writeln!(f, "< {status} {reason}")?;
                for (k, v) in headers.iter() {
                    let v = String::from_utf8_lossy(v.as_bytes());
                    let v = if k.as_str() == "location" {
                        url_text(&v)
                    } else {
                        shorten_header(k.as_str(), &v)
                    };
                    writeln!(f, "< {k}: {v}")?;
                }
                for line in body_text(body).lines() {
                    writeln!(f, "< {line}")?;
                }
                Ok(())
            }
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// `Some(true)` when the bank signed the body and the signature
    /// verified with its `/jwks`; `None` when it was not signed.
    pub signature_verified: Option<bool>,
}

impl Reply {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// The three consents the CLI creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentKind {
    Ais,
    Payment,
    Funds,
}

impl ConsentKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ais => "ais",
            Self::Payment => "payment",
            Self::Funds => "funds",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "ais" => Some(Self::Ais),
            "payment" => Some(Self::Payment),
            "funds" => Some(Self::Funds),
            _ => None,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Self::Ais => "/aisp/account-access-consents",
            Self::Payment => "/pisp/domestic-payment-consents",
            Self::Funds => "/cbpii/funds-confirmation-consents",
        }
    }

    pub fn scope(self) -> &'static str {
        match self {
            Self::Ais => "accounts",
            Self::Payment => "payments",
            Self::Funds => "fundsconfirmations",
        }
    }
}

/// Which access token a resource call carries.
#[derive(Debug, Clone)]
pub enum TokenChoice {
    /// Consent endpoints get a client-credentials token, everything else
    /// the token of the last consent exchanged.
    Auto,
    /// A client-credentials token; the scope from the path when `None`.
    ClientCredentials(Option<String>),
    /// The token obtained for this consent (refreshed when expired).
    Consent(String),
    Raw(String),
    None,
}

#[derive(Debug, Clone)]
pub struct CallRequest {
    pub method: Method,
    /// `/open-banking/v3.1/…`, a path relative to it (`aisp/accounts`),
    /// or a full URL.
    pub path: String,
    pub body: Option<Vec<u8>>,
    pub token: TokenChoice,
    pub headers: Vec<(String, String)>,
    /// Sign the body (`x-jws-signature`); by default for the endpoints
    /// that require it.
    pub sign: Option<bool>,
}

/// The result of a code exchange.
#[derive(Debug)]
pub struct Exchange {
    pub consent_id: String,
    /// The token response (credentials in full: the caller decides what
    /// to print).
    pub token: Value,
    /// Claims of the verified ID tokens: from the redirect (hybrid flow)
    /// when it carried one, and from the token endpoint.
    pub redirect_id_token: Option<Value>,
    pub id_token: Option<Value>,
}

/// The URL for a path given on the command line: a full URL as it is,
/// the bank's own paths (`/.well-known/…`, `/open-banking/…`, `/jwks`)
/// under the server, and anything else (`aisp/accounts`) under the OB
/// base.
fn resolve(server: &str, path: &str) -> String {
    if path.starts_with("https://") || path.starts_with("http://") {
        return path.to_string();
    }
    let p = path.trim_start_matches('/');
    let ob_api = ["aisp/", "pisp/", "cbpii/", "event", "callback-urls"]
        .iter()
        .any(|a| p.starts_with(a));
    if ob_api {
        format!("{server}{OB_BASE}/{p}")
    } else {
        format!("{server}/{p}")
    }
}

/// A payment status that will not change again.
pub fn is_final(status: &str) -> bool {
    matches!(
        status,
        "AcceptedSettlementCompleted" | "AcceptedCreditSettlementCompleted" | "Rejected"
    )
}

pub struct Tpp {
    pub kit: Kit,
    pub state: State,
    http: reqwest::Client,
    browser: reqwest::Client,
    observer: Option<Observer>,
    discovery: Option<Value>,
    jwks: Option<Jwks>,
}

fn transport_error(method: &Method, url: &str, e: &reqwest::Error) -> TppError {
    let mut parts = vec![e.to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let m = s.to_string();
        if !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        src = s.source();
    }
    let mut detail = parts.join(": ");
    let lower = detail.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("tls") {
        detail.push_str(
            " (TLS failed: is ca.pem the CA that issued the bank's certificate, and is the \
             kit's transport certificate one the bank trusts?)",
        );
    } else if e.is_timeout() {
        detail.push_str(" (timed out)");
    }
    TppError::Transport {
        method: method.to_string(),
        url: url.to_string(),
        detail,
    }
}

impl Tpp {
    /// Every socket gets `connect_timeout` to connect and `timeout` for
    /// the whole exchange.
    pub fn new(
        kit: Kit,
        connect_timeout: Duration,
        timeout: Duration,
        observer: Option<Observer>,
    ) -> Result<Tpp> {
        let state = State::load(&kit.dir)?;
        let kit_err = |what: String| TppError::Kit {
            dir: kit.dir.clone(),
            what,
        };
        let base = || {
            let b = reqwest::Client::builder()
                .connect_timeout(connect_timeout)
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("aspen-tpp/", env!("CARGO_PKG_VERSION")));
            match &kit.ca_pem {
                Some(pem) => reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| kit_err(format!("ca.pem: {e}")))
                    .map(|certs| b.tls_certs_only(certs)),
                None => Ok(b),
            }
        };
        let identity = reqwest::Identity::from_pem(&kit.transport_pem).map_err(|e| {
            kit_err(format!(
                "transport.pem / transport-key.pem are not a certificate and its key: {e}"
            ))
        })?;
        let http = base()?
            .identity(identity)
            .build()
            .map_err(|e| kit_err(format!("cannot build the mTLS client: {e}")))?;
        let browser = base()?
            .build()
            .map_err(|e| kit_err(format!("cannot build the HTTP client: {e}")))?;
        Ok(Tpp {
            kit,
            state,
            http,
            browser,
            observer,
            discovery: None,
            jwks: None,
        })
    }

    pub fn save(&self) -> Result<()> {
        self.state.save(&self.kit.dir)
    }

    async fn send(
        &self,
        browser: bool,
        method: Method,
        url: &str,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> Result<Reply> {
        let body = body.unwrap_or_default();
        if let Some(o) = &self.observer {
            o(&Traffic::Request {
                method: method.as_str(),
                url,
                headers: &headers,
                body: &body,
            });
        }
        let client = if browser { &self.browser } else { &self.http };
        let mut req = client.request(method.clone(), url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(&method, url, &e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&method, url, &e))?;
        if let Some(o) = &self.observer {
            o(&Traffic::Response {
                status,
                headers: &headers,
                body: &bytes,
            });
        }
        Ok(Reply {
            status,
            headers,
            body: bytes.to_vec(),
            signature_verified: None,
        })
    }

    /// `reply` when 2xx, else the bank's error.
    fn success(method: &Method, url: &str, reply: Reply) -> Result<Reply> {
        if (200..300).contains(&reply.status) {
            return Ok(reply);
        }
        Err(TppError::Bank(Box::new(crate::BankError {
            method: method.to_string(),
            url: url.to_string(),
            status: reply.status,
            body: reply.json(),
            text: String::from_utf8_lossy(&reply.body).into_owned(),
            www_authenticate: reply.header("www-authenticate"),
        })))
    }

    async fn get_json(&self, url: &str) -> Result<Value> {
        let reply = self
            .send(false, Method::GET, url, Vec::new(), None)
            .await
            .and_then(|r| Self::success(&Method::GET, url, r))?;
        reply
            .json()
            .ok_or_else(|| TppError::Protocol(format!("{url} did not answer JSON")))
    }

    pub async fn discovery(&mut self) -> Result<&Value> {
        let v = match self.discovery.take() {
            Some(v) => v,
            None => {
                let url = format!("{}/.well-known/openid-configuration", self.kit.server);
                self.get_json(&url).await?
            }
        };
        Ok(self.discovery.insert(v))
    }

    async fn endpoint(&mut self, name: &str) -> Result<String> {
        self.discovery()
            .await?
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| TppError::Protocol(format!("the discovery document has no {name}")))
    }

    pub async fn issuer(&mut self) -> Result<String> {
        self.endpoint("issuer").await
    }

    /// The bank's signing keys, from the discovery document's `jwks_uri`.
    pub async fn jwks(&mut self) -> Result<Jwks> {
        if let Some(j) = &self.jwks {
            return Ok(j.clone());
        }
        let url = self.endpoint("jwks_uri").await?;
        let v = self.get_json(&url).await?;
        let j = Jwks::from_value(&v)
            .map_err(|e| TppError::Protocol(format!("{url} is not a key set: {e}")))?;
        self.jwks = Some(j.clone());
        Ok(j)
    }

    pub fn client_id(&self) -> Result<String> {
        self.state.client_id.clone().ok_or_else(|| {
            TppError::Order(format!(
                "no client registered with this kit yet: run `aspen tpp register --kit {}`",
                self.kit.dir.display()
            ))
        })
    }

    fn redirect_uri(&self) -> Result<String> {
        self.state
            .redirect_uri
            .clone()
            .or_else(|| self.kit.redirect_uris.first().cloned())
            .ok_or_else(|| TppError::Input("the kit has no redirect URI".into()))
    }

    /// The registration request's claims (DCR v3.2). `extra` is merged in
    /// (e.g. `aspen_headless`).
    pub async fn registration_claims(
        &mut self,
        auth_method: &str,
        redirect_uri: Option<&str>,
        extra: &serde_json::Map<String, Value>,
    ) -> Result<Value> {
        let aud = match &self.kit.aspsp_org_id {
            Some(a) => a.clone(),
            None => self.issuer().await?,
        };
        let redirect_uris = match redirect_uri {
            Some(r) => vec![r.to_string()],
            None => self.kit.redirect_uris.clone(),
        };
        let now = now();
        let mut c = json!({
            "iss": self.kit.software_id,
            "iat": now,
            "exp": now + 300,
            "aud": aud,
            "jti": uuid::Uuid::new_v4().to_string(),
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": auth_method,
            "grant_types": ["client_credentials", "authorization_code", "refresh_token"],
            "response_types": ["code id_token"],
            "software_id": self.kit.software_id,
            "scope": self.kit.scope(),
            "software_statement": self.kit.ssa,
            "application_type": "web",
            "id_token_signed_response_alg": "PS256",
            "request_object_signing_alg": "PS256",
        });
        match auth_method {
            "private_key_jwt" => c["token_endpoint_auth_signing_alg"] = json!("PS256"),
            "tls_client_auth" => {
                let dn = match extra.get("tls_client_auth_subject_dn") {
                    Some(_) => None,
                    None => Some(self.kit.subject_dn().ok_or_else(|| {
                        TppError::Input(
                            "kit.json has no org_name to build the subject DN from: pass --subject-dn"
                                .into(),
                        )
                    })?),
                };
                if let Some(dn) = dn {
                    c["tls_client_auth_subject_dn"] = json!(dn);
                }
            }
            other => {
                return Err(TppError::Input(format!(
                    "auth method {other} is not one a FAPI bank takes (private_key_jwt, tls_client_auth)"
                )));
            }
        }
        if let Some(obj) = c.as_object_mut() {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        Ok(c)
    }

    /// Dynamic client registration; remembers the client.
    pub async fn register(&mut self, claims: &Value) -> Result<Value> {
        let url = self.endpoint("registration_endpoint").await?;
        let jwt = aspen_jose::sign_jwt(&self.kit.signing_key, None, claims)?;
        let reply = self
            .send(
                false,
                Method::POST,
                &url,
                vec![("content-type".into(), "application/jwt".into())],
                Some(jwt.into_bytes()),
            )
            .await
            .and_then(|r| Self::success(&Method::POST, &url, r))?;
        let body = reply
            .json()
            .ok_or_else(|| TppError::Protocol("the registration response is not JSON".into()))?;
        let client_id = body["client_id"].as_str().ok_or_else(|| {
            TppError::Protocol("the registration response has no client_id".into())
        })?;
        self.state = State {
            client_id: Some(client_id.to_string()),
            auth_method: body["token_endpoint_auth_method"]
                .as_str()
                .or(claims["token_endpoint_auth_method"].as_str())
                .map(str::to_string),
            redirect_uri: body["redirect_uris"][0]
                .as_str()
                .or(claims["redirect_uris"][0].as_str())
                .map(str::to_string),
            registration: Some(body.clone()),
            ..State::default()
        };
        self.save()?;
        Ok(body)
    }

    /// Adopts a client registered some other way (`aspen clients add`).
    pub fn adopt(&mut self, client_id: &str, auth_method: &str) -> Result<()> {
        self.state = State {
            client_id: Some(client_id.to_string()),
            auth_method: Some(auth_method.to_string()),
            redirect_uri: self.kit.redirect_uris.first().cloned(),
            ..State::default()
        };
        self.save()
    }

    /// A POST to the token endpoint, authenticated as the client is
    /// registered: a fresh `private_key_jwt` assertion, or just the
    /// client id over the mTLS connection (`tls_client_auth`).
    async fn token_request(&mut self, mut form: Vec<(&str, String)>) -> Result<Value> {
        let client_id = self.client_id()?;
        let url = self.endpoint("token_endpoint").await?;
        match self.state.auth_method.as_deref() {
            Some("tls_client_auth") => form.push(("client_id", client_id)),
            _ => {
                let now = now();
                let assertion = aspen_jose::sign_jwt(
                    &self.kit.signing_key,
                    None,
                    &json!({
                        "iss": client_id, "sub": client_id, "aud": url,
                        "iat": now, "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string(),
                    }),
                )?;
                form.push(("client_assertion_type", ASSERTION_TYPE.into()));
                form.push(("client_assertion", assertion));
            }
        }
        let body = serde_urlencoded::to_string(&form)
            .map_err(|e| TppError::Input(format!("cannot encode the token request: {e}")))?;
        let reply = self
            .send(
                false,
                Method::POST,
                &url,
                vec![(
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                )],
                Some(body.into_bytes()),
            )
            .await
            .and_then(|r| Self::success(&Method::POST, &url, r))?;
        let v = reply
            .json()
            .ok_or_else(|| TppError::Protocol("the token response is not JSON".into()))?;
        if v["access_token"].as_str().is_none() {
            return Err(TppError::Protocol(
                "the token response has no access_token".into(),
            ));
        }
        Ok(v)
    }

    fn token_of(v: &Value) -> Token {
        Token {
            access_token: v["access_token"].as_str().unwrap_or_default().to_string(),
            refresh_token: v["refresh_token"].as_str().map(str::to_string),
            expires_at: now() + v["expires_in"].as_i64().unwrap_or(0),
            scope: v["scope"].as_str().map(str::to_string),
        }
    }

    /// A new client-credentials token (saved for later steps); the
    /// token response.
    pub async fn client_credentials(&mut self, scope: &str) -> Result<Value> {
        let v = self
            .token_request(vec![
                ("grant_type", "client_credentials".into()),
                ("scope", scope.into()),
            ])
            .await?;
        self.state
            .cc_tokens
            .insert(scope.to_string(), Self::token_of(&v));
        self.save()?;
        Ok(v)
    }

    /// A client-credentials token for `scope`, the saved one while fresh.
    pub async fn cc_token(&mut self, scope: &str) -> Result<String> {
        if let Some(t) = self.state.cc_tokens.get(scope)
            && t.fresh(now())
        {
            return Ok(t.access_token.clone());
        }
        self.client_credentials(scope).await?;
        Ok(self.state.cc_tokens[scope].access_token.clone())
    }

    /// Creates a consent with a client-credentials token; remembers its
    /// request so a payment order can repeat it.
    pub async fn create_consent(&mut self, kind: ConsentKind, body: Value) -> Result<Value> {
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| TppError::Input(format!("cannot encode the consent: {e}")))?;
        let reply = self
            .call(CallRequest {
                method: Method::POST,
                path: format!("{OB_BASE}{}", kind.path()),
                body: Some(bytes),
                token: TokenChoice::ClientCredentials(Some(kind.scope().into())),
                headers: Vec::new(),
                sign: None,
            })
            .await?;
        let v = reply
            .json()
            .ok_or_else(|| TppError::Protocol("the consent response is not JSON".into()))?;
        let id = v["Data"]["ConsentId"]
            .as_str()
            .ok_or_else(|| TppError::Protocol("the consent response has no Data.ConsentId".into()))?
            .to_string();
        self.state.consents.insert(
            id.clone(),
            SavedConsent {
                kind: kind.name().into(),
                request: body,
            },
        );
        self.state.last_consent = Some(id);
        self.save()?;
        Ok(v)
    }

    /// The consent a step names, or the last one created.
    pub fn consent_or_last(&self, consent: Option<&str>) -> Result<String> {
        consent
            .map(str::to_string)
            .or_else(|| self.state.last_consent.clone())
            .ok_or_else(|| {
                TppError::Order("no consent yet: run `aspen tpp consent create …` first".into())
            })
    }

    /// The `/authorize` URL for a consent, with a PS256 request object
    /// (FAPI hybrid flow, `openbanking_intent_id` essential). Remembers
    /// state and nonce for [`Tpp::exchange`].
    pub async fn authorize_url(
        &mut self,
        consent_id: &str,
        scope: Option<&str>,
        psu: Option<&str>,
    ) -> Result<String> {
        let client_id = self.client_id()?;
        let redirect_uri = self.redirect_uri()?;
        let endpoint = self.endpoint("authorization_endpoint").await?;
        let issuer = self.issuer().await?;
        let scope = match scope {
            Some(s) => s.to_string(),
            None => {
                let kind = self
                    .state
                    .consents
                    .get(consent_id)
                    .and_then(|c| ConsentKind::from_name(&c.kind))
                    .unwrap_or(ConsentKind::Ais);
                format!("openid {}", kind.scope())
            }
        };
        let state = uuid::Uuid::new_v4().simple().to_string();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let now = now();
        let mut claims = json!({
            "iss": client_id, "aud": issuer, "client_id": client_id,
            "response_type": "code id_token", "redirect_uri": redirect_uri, "scope": scope,
            "state": state, "nonce": nonce, "nbf": now, "exp": now + 300,
            "jti": uuid::Uuid::new_v4().to_string(),
            "claims": { "id_token": {
                "openbanking_intent_id": { "value": consent_id, "essential": true },
                "acr": { "essential": true, "values": [ACR_SCA, ACR_CA] },
            }},
        });
        if let Some(p) = psu {
            claims["login_hint"] = json!(p);
        }
        let request = aspen_jose::sign_jwt(&self.kit.signing_key, None, &claims)?;
        let query = serde_urlencoded::to_string([
            ("response_type", "code id_token"),
            ("client_id", client_id.as_str()),
            ("scope", scope.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("request", request.as_str()),
        ])
        .map_err(|e| TppError::Input(e.to_string()))?;
        self.state.pending = Some(Pending {
            consent_id: consent_id.to_string(),
            state,
            nonce,
            scope,
            redirect_uri,
        });
        self.save()?;
        Ok(format!("{endpoint}?{query}"))
    }

    /// Follows the authorisation URL as a browser would, for a client the
    /// sandbox answers headlessly: the URL the bank redirects to.
    pub async fn authorize_headless(&mut self, url: &str) -> Result<String> {
        let redirect = self.redirect_uri()?;
        let reply = self.send(true, Method::GET, url, Vec::new(), None).await?;
        let location = reply.header("location").unwrap_or_default();
        if matches!(reply.status, 302 | 303) && location.starts_with(&redirect) {
            return Ok(location);
        }
        if matches!(reply.status, 302 | 303) {
            return Err(TppError::Order(format!(
                "the bank wants the customer to sign in ({location}): this client is not \
                 registered for headless authorisation (register with --headless, sandbox \
                 only), or open the URL in a browser without --headless"
            )));
        }
        Err(Self::success(&Method::GET, url, reply)
            .err()
            .unwrap_or_else(|| {
                TppError::Protocol("the authorisation endpoint did not redirect".into())
            }))
    }

    /// Exchanges a code — or the whole redirect URL, whose fragment is
    /// checked first: the state, and the ID token (signature, issuer,
    /// audience, nonce, `c_hash`, `s_hash`, consent). Saves the tokens
    /// under the consent.
    pub async fn exchange(&mut self, code_or_url: &str) -> Result<Exchange> {
        let pending = self.state.pending.clone().ok_or_else(|| {
            TppError::Order("no authorisation in flight: run `aspen tpp authorize` first".into())
        })?;
        let client_id = self.client_id()?;
        let params: Vec<(String, String)> = match code_or_url.split_once(['#', '?']) {
            Some((_, p)) => serde_urlencoded::from_str(p)
                .map_err(|e| TppError::Input(format!("cannot read the redirect URL: {e}")))?,
            None => vec![("code".into(), code_or_url.trim().to_string())],
        };
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let Some(error) = get("error") {
            self.state.pending = None;
            self.save()?;
            return Err(TppError::Authorization {
                error,
                description: get("error_description"),
            });
        }
        let code = get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| TppError::Input("the redirect carries no code".into()))?;
        let from_redirect = code_or_url.contains(['#', '?']);
        if from_redirect && get("state").as_deref() != Some(pending.state.as_str()) {
            return Err(TppError::Protocol(
                "the redirect's state is not the one this client sent (another authorisation, or forged)"
                    .into(),
            ));
        }
        let issuer = self.issuer().await?;
        let jwks = self.jwks().await?;
        let now = now();
        let redirect_id_token = match get("id_token") {
            Some(t) => Some(check_id_token(
                &t,
                &jwks,
                &IdTokenExpectations {
                    issuer: &issuer,
                    client_id: &client_id,
                    now,
                    nonce: Some(&pending.nonce),
                    code: Some(&code),
                    state: Some(&pending.state),
                    consent_id: Some(&pending.consent_id),
                },
            )?),
            None if from_redirect => {
                return Err(TppError::Protocol(
                    "the hybrid-flow redirect carries no id_token".into(),
                ));
            }
            None => None,
        };
        let token = self
            .token_request(vec![
                ("grant_type", "authorization_code".into()),
                ("code", code),
                ("redirect_uri", pending.redirect_uri.clone()),
            ])
            .await?;
        let id_token = match token["id_token"].as_str() {
            Some(t) => Some(check_id_token(
                t,
                &jwks,
                &IdTokenExpectations {
                    issuer: &issuer,
                    client_id: &client_id,
                    now,
                    nonce: Some(&pending.nonce),
                    code: None,
                    state: None,
                    consent_id: Some(&pending.consent_id),
                },
            )?),
            None => None,
        };
        self.state
            .consent_tokens
            .insert(pending.consent_id.clone(), Self::token_of(&token));
        for scope in pending.scope.split(' ').filter(|s| *s != "openid") {
            self.state
                .current
                .insert(scope.to_string(), pending.consent_id.clone());
        }
        self.state.pending = None;
        self.save()?;
        Ok(Exchange {
            consent_id: pending.consent_id,
            token,
            redirect_id_token,
            id_token,
        })
    }

    /// The consent's access token, refreshed (rotating the refresh token)
    /// when it has expired and the bank gave a refresh token.
    pub async fn consent_token(&mut self, consent_id: &str) -> Result<String> {
        let t = self
            .state
            .consent_tokens
            .get(consent_id)
            .cloned()
            .ok_or_else(|| {
                TppError::Order(format!(
                    "no token for consent {consent_id}: authorise it and exchange the code first"
                ))
            })?;
        if t.fresh(now()) {
            return Ok(t.access_token);
        }
        let Some(refresh) = t.refresh_token else {
            return Err(TppError::Order(format!(
                "the token for consent {consent_id} has expired and there is no refresh token: \
                 authorise the consent again"
            )));
        };
        let v = self
            .token_request(vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", refresh),
            ])
            .await?;
        let token = Self::token_of(&v);
        let access = token.access_token.clone();
        self.state
            .consent_tokens
            .insert(consent_id.to_string(), token);
        self.save()?;
        Ok(access)
    }

    /// A resource call over mTLS with a bearer token. Signs the body
    /// where OB requires it, adds an idempotency key to payment POSTs,
    /// and checks the bank's response signature when there is one.
    pub async fn call(&mut self, req: CallRequest) -> Result<Reply> {
        let url = resolve(&self.kit.server, &req.path);
        let path_only = url
            .strip_prefix(&self.kit.server)
            .unwrap_or(&url)
            .to_string();
        let scope_of_path = || {
            if path_only.contains("/pisp/") {
                "payments"
            } else if path_only.contains("/cbpii/") {
                "fundsconfirmations"
            } else if path_only.ends_with("/events") {
                "eventpolling"
            } else {
                "accounts"
            }
        };
        let is_consent_path = path_only.contains("-consents");
        let token = match req.token {
            TokenChoice::None => None,
            TokenChoice::Raw(t) => Some(t),
            TokenChoice::ClientCredentials(scope) => {
                let scope = scope.unwrap_or_else(|| scope_of_path().to_string());
                Some(self.cc_token(&scope).await?)
            }
            TokenChoice::Consent(id) => Some(self.consent_token(&id).await?),
            TokenChoice::Auto => {
                let consent_endpoint =
                    is_consent_path && !path_only.ends_with("/funds-confirmation");
                if consent_endpoint
                    || path_only.contains("event-subscriptions")
                    || path_only.contains("callback-urls")
                {
                    Some(self.cc_token(scope_of_path()).await?)
                } else {
                    let scope = scope_of_path();
                    let id = self.state.current.get(scope).cloned().ok_or_else(|| {
                        TppError::Order(format!(
                            "no authorised consent for {scope} yet: authorise one and exchange \
                             the code, or pass --consent / --cc / --token"
                        ))
                    })?;
                    Some(self.consent_token(&id).await?)
                }
            }
        };
        let mut headers = Vec::new();
        if let Some(t) = token {
            headers.push(("authorization".to_string(), format!("Bearer {t}")));
        }
        headers.push((
            "x-fapi-interaction-id".into(),
            uuid::Uuid::new_v4().to_string(),
        ));
        headers.push(("accept".into(), "application/json".into()));
        let writes = matches!(req.method, Method::POST | Method::PUT);
        if let Some(body) = &req.body {
            headers.push(("content-type".into(), "application/json".into()));
            let signed_endpoint = path_only.contains("/pisp/")
                || path_only.contains("event-subscriptions")
                || path_only.contains("callback-urls");
            if req.sign.unwrap_or(writes && signed_endpoint) {
                headers.push(("x-jws-signature".into(), self.kit.sign_detached(body)?));
            }
            if writes && path_only.contains("/pisp/") {
                headers.push(("x-idempotency-key".into(), uuid::Uuid::new_v4().to_string()));
            }
        }
        for (k, v) in req.headers {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
            headers.push((k, v));
        }
        let mut reply = self
            .send(false, req.method.clone(), &url, headers, req.body)
            .await?;
        if let Some(sig) = reply.header("x-jws-signature")
            && !reply.body.is_empty()
        {
            self.verify_response(&sig, &reply.body).await?;
            reply.signature_verified = Some(true);
        }
        Self::success(&req.method, &url, reply)
    }

    async fn verify_response(&mut self, sig: &str, body: &[u8]) -> Result<()> {
        let Some(iss) = self.kit.aspsp_org_id.clone() else {
            return Err(TppError::ResponseSignature(
                "kit.json names no aspsp_org_id, the bank's signing identity".into(),
            ));
        };
        let jwks = self.jwks().await?;
        let tans = vec![crate::TAN.to_string()];
        aspen_jose::verify_detached(
            Some(sig),
            body,
            &jwks,
            &aspen_jose::DetachedExpectations {
                iss: &iss,
                tans: &tans,
                now: now(),
                max_future_skew: 60,
                max_age: 300,
            },
        )
        .map(|_| ())
        .map_err(|e| TppError::ResponseSignature(e.to_string()))
    }

    /// A domestic payment order for an authorised payment consent,
    /// repeating the consent's Initiation and Risk, with the consent's
    /// token.
    pub async fn order_domestic_payment(&mut self, consent_id: &str) -> Result<Value> {
        let saved = self
            .state
            .consents
            .get(consent_id)
            .filter(|c| c.kind == ConsentKind::Payment.name())
            .cloned()
            .ok_or_else(|| {
                TppError::Order(format!(
                    "{consent_id} is not a payment consent this kit created"
                ))
            })?;
        let order = json!({
            "Data": { "ConsentId": consent_id, "Initiation": saved.request["Data"]["Initiation"] },
            "Risk": saved.request["Risk"],
        });
        let body = serde_json::to_vec(&order).map_err(|e| TppError::Input(e.to_string()))?;
        let reply = self
            .call(CallRequest {
                method: Method::POST,
                path: format!("{OB_BASE}/pisp/domestic-payments"),
                body: Some(body),
                token: TokenChoice::Consent(consent_id.to_string()),
                headers: Vec::new(),
                sign: None,
            })
            .await?;
        reply
            .json()
            .ok_or_else(|| TppError::Protocol("the payment response is not JSON".into()))
    }

    /// Polls the payment until its status is final, at most `wait`.
    pub async fn wait_for_payment(
        &mut self,
        payment_id: &str,
        wait: Duration,
        interval: Duration,
    ) -> Result<Value> {
        let started = std::time::Instant::now();
        loop {
            let reply = self
                .call(CallRequest {
                    method: Method::GET,
                    path: format!("{OB_BASE}/pisp/domestic-payments/{payment_id}"),
                    body: None,
                    token: TokenChoice::ClientCredentials(Some("payments".into())),
                    headers: Vec::new(),
                    sign: None,
                })
                .await?;
            let v = reply
                .json()
                .ok_or_else(|| TppError::Protocol("the payment status is not JSON".into()))?;
            let status = v["Data"]["Status"].as_str().unwrap_or_default().to_string();
            if is_final(&status) {
                return Ok(v);
            }
            if started.elapsed() + interval > wait {
                return Err(TppError::PaymentTimeout {
                    id: payment_id.to_string(),
                    status,
                    secs: wait.as_secs(),
                });
            }
            tokio::time::sleep(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_output_shortens_credentials() {
        let headers = vec![
            (
                "authorization".to_string(),
                format!("Bearer {}", "a".repeat(60)),
            ),
            ("x-jws-signature".to_string(), "h".repeat(300)),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        let body = br#"{"access_token":"0123456789012345678901234567890123456789","Data":{"id_token":"x"}}"#;
        let shown = Traffic::Request {
            method: "POST",
            url: &format!(
                "https://b.example/authorize?scope=openid&request={}",
                "r".repeat(80)
            ),
            headers: &headers,
            body,
        }
        .to_string();
        assert!(!shown.contains(&"a".repeat(60)), "{shown}");
        assert!(
            shown.contains("Bearer aaaaaaaaaa…aaaaaa (60 chars)"),
            "{shown}"
        );
        assert!(!shown.contains(&"h".repeat(300)) && !shown.contains(&"r".repeat(80)));
        assert!(shown.contains("scope=openid"), "{shown}");
        assert!(shown.contains("content-type: application/json"));
        assert!(!shown.contains("0123456789012345678901234567890123456789"));
        let form = b"grant_type=client_credentials&client_assertion=eyJhbGciOiJQUzI1NiJ9.eyJpc3MiOiJjIn0.c2lnbmF0dXJl";
        let shown = Traffic::Request {
            method: "POST",
            url: "https://b.example/token",
            headers: &[],
            body: form,
        }
        .to_string();
        assert!(shown.contains("grant_type=client_credentials"), "{shown}");
        assert!(!shown.contains("c2lnbmF0dXJl"), "{shown}");
    }

    #[test]
    fn paths_resolve_under_the_server() {
        let s = "https://bank.example";
        for (given, want) in [
            (
                "aisp/accounts",
                "https://bank.example/open-banking/v3.1/aisp/accounts",
            ),
            (
                "/pisp/domestic-payments",
                "https://bank.example/open-banking/v3.1/pisp/domestic-payments",
            ),
            ("events", "https://bank.example/open-banking/v3.1/events"),
            (
                "/open-banking/v3.1/aisp/accounts",
                "https://bank.example/open-banking/v3.1/aisp/accounts",
            ),
            (
                "/.well-known/openid-configuration",
                "https://bank.example/.well-known/openid-configuration",
            ),
            ("/jwks", "https://bank.example/jwks"),
            ("https://other.example/x", "https://other.example/x"),
        ] {
            assert_eq!(resolve(s, given), want, "{given}");
        }
    }

    #[test]
    fn redirect_fragments_are_shortened() {
        let loc = format!(
            "https://tpp.example/cb#code={}&state=abc&id_token={}",
            "c".repeat(43),
            "j".repeat(400)
        );
        let shown = url_text(&loc);
        assert!(
            shown.starts_with("https://tpp.example/cb#code=cccccccccc…"),
            "{shown}"
        );
        assert!(
            shown.contains("state=abc") && !shown.contains(&"j".repeat(400)),
            "{shown}"
        );
    }

    #[test]
    fn final_statuses() {
        for s in [
            "AcceptedSettlementCompleted",
            "AcceptedCreditSettlementCompleted",
            "Rejected",
        ] {
            assert!(is_final(s));
        }
        for s in [
            "Pending",
            "AcceptedSettlementInProcess",
            "AcceptedWithoutPosting",
            "",
        ] {
            assert!(!is_final(s));
        }
    }
}
