//! The bank's own login as an upstream OpenID provider (issue 14, part 3),
//! against a real one: npm `oidc-provider` (tests/oidc-upstream/server.mjs)
//! over HTTPS with a certificate made here. The PSU's browser is played by
//! reqwest, following redirects by hand with cookies per host; one journey
//! runs in Chromium. Prints SKIPPED when Node is missing, unless
//! ASPEN_REQUIRE_BROWSER=1 (CI).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aspen::config::OidcUpstreamConfig;
use common::*;
use serde_json::{Value, json};

const SCA: &str = "urn:openbanking:psd2:sca";
const SECRET_CLIENT: &str = "aspen-basic";
const SECRET: &str = "upstream-client-secret-with/odd:chars&more";
const JWT_CLIENT: &str = "aspen-jwt";

fn upstream_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-upstream")
}

/// Whether Node and the provider package are here; installs the package on
/// first use.
fn ready() -> bool {
    let problem = if Command::new("node").arg("--version").output().is_err() {
        Some("node is not installed".to_string())
    } else {
        common::browser::npm_installed(&upstream_dir(), "oidc-provider").err()
    };
    match problem {
        None => true,
        Some(p) => {
            if std::env::var("ASPEN_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("upstream OpenID provider tests required: {p}");
            }
            eprintln!("SKIPPED: {p}");
            false
        }
    }
}

/// `oidc-provider` in a child process of this test; killed on drop.
struct Provider {
    node: ChildLines,
    issuer: String,
}

impl Provider {
    fn spawn(dir: &Path, alg: &str, client_jwk: &Value) -> Provider {
        let ca = aspen::pki::new_ca("Upstream Test CA").unwrap();
        let leaf = aspen::pki::server_cert(&ca, &["127.0.0.1".to_string()]).unwrap();
        std::fs::write(dir.join("upstream-ca.pem"), &ca.cert_pem).unwrap();
        std::fs::write(dir.join("upstream-cert.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.join("upstream-key.pem"), &leaf.key_pem).unwrap();
        let cfg = json!({
            "cert": dir.join("upstream-cert.pem"), "key": dir.join("upstream-key.pem"), "alg": alg,
            "secret_client": { "client_id": SECRET_CLIENT, "client_secret": SECRET },
            "jwt_client": { "client_id": JWT_CLIENT, "jwk": client_jwk },
        });
        let node = ChildLines::spawn(
            Command::new("node")
                .arg(upstream_dir().join("server.mjs"))
                .arg(cfg.to_string())
                .current_dir(upstream_dir())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let first = node
            .next(std::time::Duration::from_secs(60))
            .expect("the provider says where it listens");
        let v: Value = serde_json::from_str(&first).unwrap();
        Provider {
            issuer: v["issuer"].as_str().unwrap().to_string(),
            node,
        }
    }

    /// Registers aspen's callback with the provider's two clients (known
    /// once aspen listens) and waits until it serves.
    fn register(&mut self, redirect_uri: &str) {
        let stdin = self.node.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{}", json!({ "redirect_uri": redirect_uri })).unwrap();
        stdin.flush().unwrap();
        let line = self
            .node
            .next(std::time::Duration::from_secs(30))
            .expect("the provider is ready");
        assert_eq!(line, "ready");
    }
}

enum Auth {
    Secret,
    KeyJwt,
}

struct Env {
    s: TestServer,
    provider: Provider,
    upstream_ca: Vec<u8>,
}

async fn start(auth: Auth, alg: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let key = aspen_jose::SigningKey::generate(Some("aspen-upstream-1".into())).unwrap();
    let key_file = dir.path().join("upstream-client.pem");
    std::fs::write(&key_file, key.to_pkcs8_pem().unwrap()).unwrap();
    let mut provider = Provider::spawn(dir.path(), alg, &key.public_jwk());
    let mut cfg = sandbox_config(dir.path());
    cfg.psu_auth.provider = "oidc".into();
    let (client_id, client_secret, client_key_file, client_key_id) = match auth {
        Auth::Secret => (SECRET_CLIENT, Some(SECRET.to_string()), None, None),
        Auth::KeyJwt => (
            JWT_CLIENT,
            None,
            Some(key_file),
            Some("aspen-upstream-1".to_string()),
        ),
    };
    cfg.psu_auth.oidc = Some(OidcUpstreamConfig {
        issuer: provider.issuer.clone(),
        client_id: client_id.into(),
        client_secret,
        client_key_file,
        client_key_id,
        ca_file: Some(dir.path().join("upstream-ca.pem")),
        ..OidcUpstreamConfig::default()
    });
    let upstream_ca = std::fs::read(dir.path().join("upstream-ca.pem")).unwrap();
    let s = start_with(dir, cfg).await;
    provider.register(&s.url("/login/callback"));
    Env {
        s,
        provider,
        upstream_ca,
    }
}

/// A browser: redirects followed by hand, cookies kept per host:port.
struct Agent {
    http: reqwest::Client,
    jar: HashMap<String, BTreeMap<String, String>>,
    /// Every URL requested, in order.
    trail: Vec<String>,
}

fn host_of(url: &str) -> String {
    let u = reqwest::Url::parse(url).unwrap();
    format!(
        "{}:{}",
        u.host_str().unwrap(),
        u.port_or_known_default().unwrap()
    )
}

impl Agent {
    fn new(env: &Env) -> Agent {
        let http = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(&env.s.ca_pem()).unwrap(),
                reqwest::Certificate::from_pem(&env.upstream_ca).unwrap(),
            ])
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Agent {
            http,
            jar: HashMap::new(),
            trail: Vec::new(),
        }
    }

    fn cookies(&self, url: &str) -> Option<String> {
        let jar = self.jar.get(&host_of(url))?;
        (!jar.is_empty()).then(|| {
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn aspen_cookie(&self, env: &Env) -> Option<String> {
        self.jar
            .get(&host_of(&env.s.server.public_url))?
            .get("__Host-aspen-session")
            .cloned()
    }

    fn keep(&mut self, url: &str, r: &reqwest::Response) {
        let jar = self.jar.entry(host_of(url)).or_default();
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if val.is_empty() || attrs.to_ascii_lowercase().contains("max-age=0") {
                jar.remove(k.trim());
            } else {
                jar.insert(k.trim().to_string(), val.to_string());
            }
        }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        self.trail.push(url.to_string());
        let mut req = self.http.get(url);
        if let Some(c) = self.cookies(url) {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        self.keep(url, &r);
        r
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.trail.push(url.to_string());
        let mut req = self.http.post(url).form(form);
        if let Some(c) = self.cookies(url) {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        self.keep(url, &r);
        r
    }

    /// Follows redirects among 127.0.0.1 hosts (aspen and the provider),
    /// stopping before `stop_at` (a path to leave unvisited) and before
    /// anything elsewhere (the TPP): the last URL and its response.
    async fn follow(
        &mut self,
        mut url: String,
        stop_at: Option<&str>,
    ) -> (String, reqwest::Response) {
        loop {
            let r = self.get(&url).await;
            if !r.status().is_redirection() {
                return (url, r);
            }
            let next = reqwest::Url::parse(&url)
                .unwrap()
                .join(&location(&r))
                .unwrap()
                .to_string();
            let local = next.starts_with("https://127.0.0.1:");
            let stop = stop_at.is_some_and(|p| reqwest::Url::parse(&next).unwrap().path() == p);
            if !local || stop {
                return (next, r);
            }
            url = next;
        }
    }

    /// From the provider's login form (at `url`): sign in as `username`
    /// with `level` (sca or ca); the provider's answer to aspen's callback,
    /// not yet followed.
    async fn upstream_login(
        &mut self,
        url: &str,
        page: &str,
        username: &str,
        level: &str,
    ) -> String {
        let pat = "action=\"";
        let i = page.find(pat).expect("the provider's form") + pat.len();
        let action = page[i..].split('"').next().unwrap();
        let post_to = reqwest::Url::parse(url)
            .unwrap()
            .join(action)
            .unwrap()
            .to_string();
        let r = self
            .post(&post_to, &[("username", username), ("level", level)])
            .await;
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        let next = reqwest::Url::parse(&post_to)
            .unwrap()
            .join(&location(&r))
            .unwrap()
            .to_string();
        let (callback, r) = self.follow(next, Some("/login/callback")).await;
        assert!(r.status().is_redirection(), "{}", r.text().await.unwrap());
        callback
    }
}

fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn psu_id(s: &TestServer, username: &str) -> String {
    s.server
        .store
        .psu_by_username(username)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn status_of(s: &TestServer, consent: &str) -> String {
    s.server
        .store
        .consent(consent)
        .await
        .unwrap()
        .unwrap()
        .status
}

/// TPP → aspen /authorize → /login → the provider's login form: its URL
/// and page, and the URL aspen sent the PSU to.
async fn to_upstream_form(env: &Env, a: &mut Agent, start: &str) -> (String, String, String) {
    let (form_url, r) = a.follow(start.to_string(), None).await;
    assert_eq!(r.status(), 200);
    assert!(form_url.starts_with(&env.provider.issuer), "{form_url}");
    let sent = a
        .trail
        .iter()
        .find(|u| u.starts_with(&format!("{}/auth?", env.provider.issuer)))
        .expect("aspen sends the PSU to the authorization endpoint")
        .clone();
    (form_url, r.text().await.unwrap(), sent)
}

/// The consent page after the callback: its CSRF token and first account.
async fn consent_form(a: &mut Agent, env: &Env, callback: &str) -> (String, String) {
    let (url, r) = a.follow(callback.to_string(), None).await;
    assert_eq!(url, env.s.url("/consent"));
    let page = r.text().await.unwrap();
    let pat = "name=\"account\" value=\"";
    let i = page.find(pat).expect("an account") + pat.len();
    (
        csrf_of(&page),
        page[i..].split('"').next().unwrap().to_string(),
    )
}

fn authorize(s: &TestServer, c: &Client, consent: &str, scope: &str) -> String {
    authorize_url(
        s,
        c,
        &c.tpp.sign(&request_claims(s, c, consent, scope)),
        scope,
    )
}

#[tokio::test]
async fn ais_journey_through_the_upstream_with_sca_and_replays_refused() {
    if !ready() {
        return;
    }
    let env = start(Auth::Secret, "PS256").await;
    let s = &env.s;
    let c = s.client_with("upais", json!({})).await;
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ALL_PERMISSIONS }))
        .await;
    let rora = psu_id(s, "rora").await;
    let mut a = Agent::new(&env);
    let (form_url, page, sent) =
        to_upstream_form(&env, &mut a, &authorize(s, &c, &consent, "openid accounts")).await;
    // The authorization request aspen made (OIDC Core §3.1.2.1, PKCE).
    let q = query(&sent);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], SECRET_CLIENT);
    assert_eq!(q["redirect_uri"], s.url("/login/callback"));
    assert_eq!(q["scope"], "openid");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["acr_values"], SCA);
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43);
    assert!(q.contains_key("code_challenge"));
    let before = a.aspen_cookie(&env).unwrap();

    let callback = a.upstream_login(&form_url, &page, &rora, "sca").await;
    let (csrf, account) = consent_form(&mut a, &env, &callback).await;
    // Session fixation: signed in under a new session id.
    assert_ne!(a.aspen_cookie(&env).unwrap(), before);

    // The same answer again: refused, with the current cookie and with
    // the one from before the callback.
    let r = a.get(&callback).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Reference"));
    let r = s
        .client()
        .get(&callback)
        .header("cookie", format!("__Host-aspen-session={before}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = a
        .post(
            &s.url("/consent"),
            &[
                ("csrf", &csrf),
                ("decision", "allow"),
                ("account", &account),
            ],
        )
        .await;
    let f = fragment(&location(&r));
    assert_eq!(f["state"], "st-123", "{f:?}");
    let jwks = s.jwks().await;
    let idt = aspen_jose::verify_jwt(&f["id_token"], &jwks, &[aspen_jose::Alg::PS256])
        .unwrap()
        .claims;
    assert_eq!(idt["acr"], SCA);
    assert_eq!(idt["amr"], json!(["pwd", "otp"]));
    let stored = s.server.store.consent(&consent).await.unwrap().unwrap();
    assert_eq!(stored.status, "Authorised");
    assert_eq!(stored.psu_id.as_deref(), Some(rora.as_str()));
    assert_eq!(stored.accounts, vec![account]);

    let t: Value = s.tokens(&c, &f["code"], &c.redirect).await;
    let idt = aspen_jose::verify_jwt(
        t["id_token"].as_str().unwrap(),
        &jwks,
        &[aspen_jose::Alg::PS256],
    )
    .unwrap()
    .claims;
    assert_eq!(idt["acr"], SCA);
    assert_eq!(idt["amr"], json!(["pwd", "otp"]));
    assert!(t["access_token"].is_string());
    env.s.stop().await;
}

#[tokio::test]
async fn payment_needs_sca_from_the_upstream_and_dashboard_signs_in_there() {
    if !ready() {
        return;
    }
    let env = start(Auth::KeyJwt, "RS256").await;
    let s = &env.s;
    let c = s.client_with("uppis", json!({})).await;
    let cc = s.cc_token(&c.tpp, &c.id, "payments").await;
    let body = domestic_consent_body(domestic_initiation("7.50"));
    let r = s
        .pis_post(&c, &cc, "/domestic-payment-consents", &body, "up-1")
        .await;
    assert_eq!(r.status(), 201);
    let consent = r.json::<Value>().await.unwrap()["Data"]["ConsentId"]
        .as_str()
        .unwrap()
        .to_string();
    let rora = psu_id(s, "rora").await;
    let scope = "openid payments";

    // The bank's login vouches for one factor only: the TPP hears why.
    let mut a = Agent::new(&env);
    let (form_url, page, sent) =
        to_upstream_form(&env, &mut a, &authorize(s, &c, &consent, scope)).await;
    assert_eq!(query(&sent)["client_id"], JWT_CLIENT);
    let callback = a.upstream_login(&form_url, &page, &rora, "ca").await;
    let r = a.get(&callback).await;
    assert_eq!(r.status(), 302);
    let f = fragment(&location(&r));
    assert!(location(&r).starts_with(&c.redirect));
    assert_eq!(f["error"], "access_denied");
    assert!(
        f["error_description"].contains("strong customer authentication"),
        "{f:?}"
    );
    assert_eq!(f["state"], "st-123");
    assert_eq!(status_of(s, &consent).await, "AwaitingAuthorisation");

    // With SCA the same payment goes through aspen's consent page.
    let mut a = Agent::new(&env);
    let (form_url, page, _) =
        to_upstream_form(&env, &mut a, &authorize(s, &c, &consent, scope)).await;
    let callback = a.upstream_login(&form_url, &page, &rora, "sca").await;
    let (csrf, account) = consent_form(&mut a, &env, &callback).await;
    let r = a
        .post(
            &s.url("/consent"),
            &[
                ("csrf", &csrf),
                ("decision", "allow"),
                ("account", &account),
            ],
        )
        .await;
    let f = fragment(&location(&r));
    assert!(f.contains_key("code"), "{f:?}");
    let idt = aspen_jose::verify_jwt(&f["id_token"], &s.jwks().await, &[aspen_jose::Alg::PS256])
        .unwrap()
        .claims;
    assert_eq!(idt["acr"], SCA);
    assert_eq!(status_of(s, &consent).await, "Authorised");

    // The dashboard signs in at the provider too, and lists that consent.
    let mut a = Agent::new(&env);
    let (form_url, r) = a.follow(s.url("/account/consents"), None).await;
    assert!(form_url.starts_with(&env.provider.issuer), "{form_url}");
    let page = r.text().await.unwrap();
    let callback = a.upstream_login(&form_url, &page, &rora, "sca").await;
    let (url, r) = a.follow(callback, None).await;
    assert_eq!(url, s.url("/account/consents"));
    let page = r.text().await.unwrap();
    assert!(page.contains("uppis"), "{page}");
    // The password form is not there with the upstream.
    let r = a
        .post(
            &s.url("/login"),
            &[("csrf", "x"), ("username", "rora"), ("password", "rora.")],
        )
        .await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/login".to_string())
    );
    assert_eq!(a.get(&s.url("/login/otp")).await.status(), 404);
    // aspen's own factors are not used with the bank's login: no security
    // page, no passkey sign-in.
    let r = a.get(&s.url("/account/security")).await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("managed by the bank"));
    let r = a
        .post(
            &s.url("/login/passkey"),
            &[
                ("csrf", "x"),
                ("credential_id", "x"),
                ("client_data", "x"),
                ("authenticator_data", "x"),
                ("signature", "x"),
            ],
        )
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    env.s.stop().await;
}

#[tokio::test]
async fn foreign_state_and_upstream_errors_authorise_nothing() {
    if !ready() {
        return;
    }
    let env = start(Auth::Secret, "RS256").await;
    let s = &env.s;
    let c = s.client_with("upstate", json!({})).await;
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let rora = psu_id(s, "rora").await;
    let mut a = Agent::new(&env);
    let (form_url, page, _) =
        to_upstream_form(&env, &mut a, &authorize(s, &c, &consent, "openid accounts")).await;
    let callback = a.upstream_login(&form_url, &page, &rora, "sca").await;
    let q = query(&callback);
    // The real code with another state: an error page, nothing signed in.
    let mut forged = reqwest::Url::parse(&callback).unwrap();
    forged
        .query_pairs_mut()
        .clear()
        .append_pair("code", &q["code"])
        .append_pair("state", "forged-state")
        .append_pair("iss", &q["iss"]);
    let r = a.get(forged.as_str()).await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("does not belong to this session")
    );
    assert_eq!(
        a.get(&s.url("/consent")).await.status(),
        303,
        "not signed in"
    );
    assert_eq!(status_of(s, &consent).await, "AwaitingAuthorisation");
    // The genuine answer still completes the sign-in.
    let (url, _) = a.follow(callback, None).await;
    assert_eq!(url, s.url("/consent"));

    // The PSU cancels at the bank: the TPP hears access_denied.
    let mut a = Agent::new(&env);
    let (_, _, sent) =
        to_upstream_form(&env, &mut a, &authorize(s, &c, &consent, "openid accounts")).await;
    let st = query(&sent)["state"].clone();
    let mut cancelled = reqwest::Url::parse(&s.url("/login/callback")).unwrap();
    cancelled
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("error_description", "<script>cancelled</script>")
        .append_pair("state", &st);
    let r = a.get(cancelled.as_str()).await;
    assert_eq!(r.status(), 302);
    let f = fragment(&location(&r));
    assert_eq!(f["error"], "access_denied");
    assert!(f["error_description"].contains("did not complete"), "{f:?}");
    assert!(!f["error_description"].contains("script"));
    assert_eq!(status_of(s, &consent).await, "AwaitingAuthorisation");
    // A callback with no session at all.
    let r = s.client().get(cancelled.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    env.s.stop().await;
}

/// A provider that accepts connections and never answers: /login answers
/// 503 with a reference within the configured timeout, for journeys and
/// the dashboard alike. No Node needed.
#[tokio::test]
async fn a_silent_upstream_gives_a_503_page_in_time() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    cfg.psu_auth.provider = "oidc".into();
    cfg.psu_auth.oidc = Some(OidcUpstreamConfig {
        issuer: format!("https://{addr}"),
        client_id: "aspen".into(),
        client_secret: Some("s".into()),
        connect_timeout_ms: 300,
        timeout_ms: 800,
        ..OidcUpstreamConfig::default()
    });
    let s = start_with(dir, cfg).await;
    let c = s.client_with("updown", json!({})).await;
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let mut b = Browser::new(&s);
    let r = b.get(&authorize(&s, &c, &consent, "openid accounts")).await;
    assert_eq!(location(&r), "/login");
    let t = std::time::Instant::now();
    let r = b.get(&s.url("/login")).await;
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let page = r.text().await.unwrap();
    assert!(page.contains("Reference"), "{page}");
    assert!(!page.contains("name=\"password\""));
    // The dashboard goes the same way.
    let mut b = Browser::new(&s);
    let r = b.get(&s.url("/account/consents")).await;
    assert_eq!(location(&r), "/login");
    assert_eq!(b.get(&s.url("/login")).await.status(), 503);
    // A callback with no sign-in in progress is the client's mistake.
    let r = b.get(&s.url("/login/callback?code=x&state=y")).await;
    assert_eq!(r.status(), 400);
    drop(silent);
    s.stop().await;
}

/// The journey in Chromium: the provider's page, aspen's consent page, the
/// TPP's redirect (tests/browser/upstream.mjs).
#[tokio::test]
async fn chromium_journey_through_the_upstream() {
    if !ready() || !common::browser::ready() {
        return;
    }
    let env = start(Auth::Secret, "PS256").await;
    let s = &env.s;
    let c = s.client_with("upbrowser", json!({})).await;
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ALL_PERMISSIONS }))
        .await;
    let seen = common::browser::run(
        "upstream.mjs",
        json!({
            "start_url": authorize(s, &c, &consent, "openid accounts"),
            "upstream": env.provider.issuer,
            "username": psu_id(s, "rora").await,
            "redirect_prefix": c.redirect,
            "screenshots": std::env::var("ASPEN_SCREENSHOTS").ok(),
        }),
    )
    .await;
    assert_eq!(seen["upstream_heading"], "Upstream Bank");
    assert!(
        seen["consent_heading"]
            .as_str()
            .unwrap()
            .contains("upbrowser")
    );
    let f = fragment(seen["final_url"].as_str().unwrap());
    let idt = aspen_jose::verify_jwt(&f["id_token"], &s.jwks().await, &[aspen_jose::Alg::PS256])
        .unwrap()
        .claims;
    assert_eq!(idt["acr"], SCA);
    assert_eq!(status_of(s, &consent).await, "Authorised");
    env.s.stop().await;
}
