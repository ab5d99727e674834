//! Test harness: starts the real server in-process on a loopback port with
//! its own data directory, and builds TLS clients the way a TPP would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use aspen::{Config, RunningServer};

pub mod browser;

pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
    /// The reference connector in its own process, when the core is `http`.
    pub connector: Option<Connector>,
}

/// Which core the harness puts behind the server. The `*_http` suites
/// (`ais_http.rs`, `pis_http.rs`) are the same tests compiled again; their
/// test binaries are named after them, and there the core is the reference
/// connector in a process of its own. `ASPEN_TEST_CORE=http` forces it for
/// any suite.
pub fn core_kind() -> &'static str {
    let forced = std::env::var("ASPEN_TEST_CORE").ok();
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if forced.as_deref() == Some("http") || exe.contains("_http-") {
        "http"
    } else {
        "builtin"
    }
}

/// A child process of a test with its output's lines on a channel: its
/// stdout when piped, else its stderr. Killed on drop, so a test that fails
/// (or a child that never says it is ready) leaves nothing running.
pub struct ChildLines {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for ChildLines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildLines {
    pub fn spawn(cmd: &mut std::process::Command) -> ChildLines {
        use std::io::{BufRead, Read};
        let mut child = cmd.spawn().expect("the child process starts");
        let out: Box<dyn Read + Send> = match (child.stdout.take(), child.stderr.take()) {
            (Some(stdout), _) => Box::new(stdout),
            (None, Some(stderr)) => Box::new(stderr),
            (None, None) => panic!("neither stdout nor stderr is piped"),
        };
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildLines { child, lines }
    }

    /// The next line, if one comes `within`.
    pub fn next(&self, within: std::time::Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }
}

/// `aspen connector serve` as a child process; killed on drop.
pub struct Connector {
    pub child: std::process::Child,
    pub url: String,
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Connector {
    /// Starts the connector on the data directory (and database, and
    /// payment timing) of `cfg`, on a port of its choosing, and waits until
    /// it says where it listens.
    pub fn spawn(cfg: &Config) -> Connector {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aspen"));
        cmd.args(["connector", "serve", "--listen", "127.0.0.1:0"])
            .env("ASPEN_DATA_DIR", &cfg.data_dir)
            .env(
                "ASPEN_PAYMENTS__ACCEPT_AFTER_MS",
                cfg.payments.accept_after_ms.to_string(),
            )
            .env(
                "ASPEN_PAYMENTS__SETTLE_AFTER_MS",
                cfg.payments.settle_after_ms.to_string(),
            )
            .env(
                "ASPEN_PAYMENTS__POLL_INTERVAL_MS",
                cfg.payments.poll_interval_ms.to_string(),
            )
            .env("ASPEN_SANDBOX__SEED", cfg.sandbox.seed.to_string())
            .env(
                "ASPEN_SANDBOX__TRANSACTIONS",
                cfg.sandbox.transactions.to_string(),
            )
            .env("ASPEN_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(url) = &cfg.database_url {
            cmd.env("ASPEN_DATABASE_URL", url);
        }
        let mut child = cmd.spawn().expect("aspen connector serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if !sent && let Some(url) = line.split("API on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                    sent = true;
                } else {
                    eprintln!("connector: {line}");
                }
            }
        });
        let url = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the connector reports its address");
        Connector { child, url }
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.public_url, path)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.data_dir().join("ca.pem")).expect("ca.pem")
    }

    /// A client trusting the sandbox CA, without a client certificate.
    pub fn client(&self) -> reqwest::Client {
        client_builder(&self.ca_pem()).build().expect("client")
    }

    /// A client presenting the transport certificate of a kit.
    pub fn kit_client(&self, kit: &Path) -> reqwest::Client {
        let mut pem = std::fs::read(kit.join("transport.pem")).expect("transport.pem");
        pem.extend(std::fs::read(kit.join("transport-key.pem")).expect("transport-key.pem"));
        client_builder(&self.ca_pem())
            .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
            .build()
            .expect("client")
    }

    /// Writes a TPP kit with `aspen sandbox init` semantics into the temp dir.
    pub fn make_kit(&self, name: &str, redirect: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        let data = aspen::datadir::DataDir::open(&self.data_dir()).expect("data dir");
        aspen::kit::create(
            &data,
            &aspen::kit::KitOptions {
                out: out.clone(),
                redirect_uris: vec![redirect.to_string()],
                org_name: format!("{name} Ltd"),
                org_id: None,
                software_id: None,
                client_name: name.to_string(),
                roles: vec!["AISP".into(), "PISP".into(), "CBPII".into()],
                directory_issuer: "aspen sandbox directory".into(),
                server_url: self.server.public_url.clone(),
                aspsp_org_id: None,
                ec_transport: false,
                sandbox_seed: 42,
            },
        )
        .expect("kit");
        out
    }

    pub async fn stop(self) -> tempfile::TempDir {
        self.server.stop().await;
        drop(self.connector);
        self.dir
    }
}

pub fn client_builder(ca_pem: &[u8]) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem).expect("ca")])
        .redirect(reqwest::redirect::Policy::none())
}

pub fn sandbox_config(dir: &Path) -> Config {
    let mut cfg = Config::load(None, Vec::<(String, String)>::new()).expect("default config");
    cfg.listen = "127.0.0.1:0".into();
    cfg.data_dir = dir.join("data");
    cfg
}

/// A production configuration trusting a sandbox's CA and directory, as an
/// operator lists the real ones.
pub fn production_config(dir: &std::path::Path, sandbox_data: &std::path::Path) -> aspen::Config {
    let mut cfg = sandbox_config(dir);
    cfg.profile = aspen::Profile::Production;
    cfg.trust.client_ca_files = vec![sandbox_data.join("ca.pem")];
    cfg.trust.directory_jwks_files = vec![sandbox_data.join("directory/jwks.json")];
    cfg.trust.directory_issuers = vec!["aspen sandbox directory".into()];
    cfg.tls.cert_file = Some(sandbox_data.join("server.pem"));
    cfg.tls.key_file = Some(sandbox_data.join("server-key.pem"));
    cfg
}

pub async fn start_with(dir: tempfile::TempDir, mut cfg: Config) -> TestServer {
    let connector = (core_kind() == "http" && cfg.core.kind == "builtin").then(|| {
        let c = Connector::spawn(&cfg);
        cfg.core.kind = "http".into();
        cfg.core.url = Some(c.url.clone());
        c
    });
    let server = aspen::start(cfg).await.expect("server starts");
    TestServer {
        server,
        dir,
        connector,
    }
}

pub async fn start_sandbox() -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = sandbox_config(dir.path());
    start_with(dir, cfg).await
}

/// A sandbox whose pages are at `https://localhost:<port>`: passkeys need
/// a host name (WebAuthn has no relying party on an IP address).
pub async fn start_localhost() -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = sandbox_config(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.listen = format!("127.0.0.1:{port}");
    cfg.public_url = Some(format!("https://localhost:{port}"));
    start_with(dir, cfg).await
}

/// The TPP side of a kit: its identifiers and signing key.
pub struct Tpp {
    pub dir: PathBuf,
    pub org_id: String,
    pub software_id: String,
    pub key: aspen_jose::SigningKey,
    pub ssa: String,
    pub redirect_uris: Vec<String>,
}

impl Tpp {
    pub fn load(dir: &Path) -> Tpp {
        let kit: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("kit.json")).unwrap()).unwrap();
        let pem = std::fs::read_to_string(dir.join("signing-key.pem")).unwrap();
        Tpp {
            dir: dir.to_path_buf(),
            org_id: kit["org_id"].as_str().unwrap().to_string(),
            software_id: kit["software_id"].as_str().unwrap().to_string(),
            key: aspen_jose::SigningKey::from_pkcs8_pem(&pem, None).unwrap(),
            ssa: std::fs::read_to_string(dir.join("ssa.jwt"))
                .unwrap()
                .trim()
                .to_string(),
            redirect_uris: serde_json::from_value(kit["redirect_uris"].clone()).unwrap(),
        }
    }

    /// Registration claims as a TPP following DCR v3.2 would send them.
    pub fn registration_claims(&self, aud: &str) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({
            "iss": self.software_id,
            "iat": now,
            "exp": now + 300,
            "aud": aud,
            "jti": uuid::Uuid::new_v4().to_string(),
            "redirect_uris": self.redirect_uris,
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "PS256",
            "grant_types": ["client_credentials", "authorization_code", "refresh_token"],
            "response_types": ["code id_token"],
            "software_id": self.software_id,
            "scope": "openid accounts payments",
            "software_statement": self.ssa,
            "application_type": "web",
            "id_token_signed_response_alg": "PS256",
            "request_object_signing_alg": "PS256",
        })
    }

    pub fn sign(&self, claims: &serde_json::Value) -> String {
        aspen_jose::sign_jwt(&self.key, None, claims).unwrap()
    }

    /// A fresh `private_key_jwt` client assertion.
    pub fn assertion(&self, client_id: &str, aud: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        self.sign(&serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": aud,
            "iat": now, "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string(),
        }))
    }
}

impl TestServer {
    pub async fn register(&self, tpp: &Tpp, claims: &serde_json::Value) -> reqwest::Response {
        self.kit_client(&tpp.dir)
            .post(self.url("/register"))
            .header("content-type", "application/jwt")
            .body(tpp.sign(claims))
            .send()
            .await
            .unwrap()
    }

    /// Registers a private_key_jwt client and returns its client_id.
    pub async fn register_ok(&self, tpp: &Tpp) -> String {
        let r = self
            .register(tpp, &tpp.registration_claims(&self.server.public_url))
            .await;
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        body["client_id"].as_str().unwrap().to_string()
    }

    /// A client-credentials token via private_key_jwt.
    pub async fn cc_token(&self, tpp: &Tpp, client_id: &str, scope: &str) -> String {
        let r = self
            .kit_client(&tpp.dir)
            .post(self.url("/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                (
                    "client_assertion",
                    &tpp.assertion(client_id, &self.url("/token")),
                ),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }
}

pub const ALL_PERMISSIONS: &[&str] = &[
    "ReadAccountsDetail",
    "ReadBalances",
    "ReadBeneficiariesDetail",
    "ReadDirectDebits",
    "ReadOffers",
    "ReadPAN",
    "ReadParty",
    "ReadPartyPSU",
    "ReadProducts",
    "ReadScheduledPaymentsDetail",
    "ReadStandingOrdersDetail",
    "ReadStatementsDetail",
    "ReadTransactionsCredits",
    "ReadTransactionsDebits",
    "ReadTransactionsDetail",
];

/// A registered client and what the TPP needs to drive it.
pub struct Client {
    pub tpp: Tpp,
    pub id: String,
    pub redirect: String,
}

impl TestServer {
    /// Registers a private_key_jwt client; `extra` is merged into the
    /// registration claims (e.g. `aspen_headless`).
    pub async fn client_with(&self, name: &str, extra: serde_json::Value) -> Client {
        let redirect = format!("https://{name}.example.com/cb");
        let tpp = Tpp::load(&self.make_kit(name, &redirect));
        let mut claims = tpp.registration_claims(&self.server.public_url);
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        let r = self.register(&tpp, &claims).await;
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        Client {
            id: body["client_id"].as_str().unwrap().to_string(),
            tpp,
            redirect,
        }
    }

    pub async fn ais_consent(&self, c: &Client, data: serde_json::Value) -> String {
        let token = self.cc_token(&c.tpp, &c.id, "accounts").await;
        let r = self
            .kit_client(&c.tpp.dir)
            .post(self.url("/open-banking/v3.1/aisp/account-access-consents"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "Data": data, "Risk": {} }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        body["Data"]["ConsentId"].as_str().unwrap().to_string()
    }

    /// A token request authenticated with the client's private_key_jwt
    /// assertion, over the transport certificate of the kit in `kit_dir`.
    pub async fn token_request(
        &self,
        kit_dir: &Path,
        c: &Client,
        pairs: &[(&str, &str)],
    ) -> reqwest::Response {
        let assertion = c.tpp.assertion(&c.id, &self.url("/token"));
        let mut form = pairs.to_vec();
        form.push((
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
        form.push(("client_assertion", &assertion));
        self.kit_client(kit_dir)
            .post(self.url("/token"))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Exchanges an authorisation code at the token endpoint.
    pub async fn exchange(&self, c: &Client, code: &str, redirect: &str) -> reqwest::Response {
        self.token_request(
            &c.tpp.dir,
            c,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect),
            ],
        )
        .await
    }

    /// Exchanges an authorisation code that must be granted: the token
    /// response's body, or a failure that shows the error it got.
    pub async fn tokens(&self, c: &Client, code: &str, redirect: &str) -> serde_json::Value {
        let r = self.exchange(c, code, redirect).await;
        let status = r.status();
        // As text first: a refusal that is not JSON still shows itself.
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "the code's exchange was refused: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The `refresh_token` grant, authenticated with private_key_jwt.
    pub async fn refresh(&self, c: &Client, refresh_token: &str) -> reqwest::Response {
        self.token_request(
            &c.tpp.dir,
            c,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    pub async fn jwks(&self) -> aspen_jose::Jwks {
        let v: serde_json::Value = self
            .client()
            .get(self.url("/jwks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        aspen_jose::Jwks::from_value(&v).unwrap()
    }
}

/// The request object claims of a well-formed FAPI authorisation request.
pub fn request_claims(
    s: &TestServer,
    c: &Client,
    consent_id: &str,
    scope: &str,
) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({
        "iss": c.id, "aud": s.server.public_url, "client_id": c.id,
        "response_type": "code id_token", "redirect_uri": c.redirect, "scope": scope,
        "state": "st-123", "nonce": "n-456", "nbf": now, "exp": now + 300,
        "jti": uuid::Uuid::new_v4().to_string(),
        "claims": { "id_token": {
            "openbanking_intent_id": { "value": consent_id, "essential": true },
            "acr": { "essential": true, "values": ["urn:openbanking:psd2:sca", "urn:openbanking:psd2:ca"] },
        }},
    })
}

pub fn authorize_url(s: &TestServer, c: &Client, request: &str, scope: &str) -> String {
    let q = [
        ("response_type", "code id_token"),
        ("client_id", c.id.as_str()),
        ("scope", scope),
        ("redirect_uri", c.redirect.as_str()),
        ("request", request),
    ];
    let query: Vec<String> = q
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    format!("{}?{}", s.url("/authorize"), query.join("&"))
}

/// Parses `…#a=b&c=d` into pairs.
pub fn fragment(location: &str) -> std::collections::HashMap<String, String> {
    let frag = location.split_once('#').map(|(_, f)| f).unwrap_or("");
    frag.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                percent_encoding::percent_decode_str(&v.replace('+', " "))
                    .decode_utf8()
                    .unwrap()
                    .into_owned(),
            )
        })
        .collect()
}

/// Validates response bodies against the official v3.1.2 OpenAPI files
/// in ../shared/standard/openapi (loaded, never copied). Basic/Detail
/// `oneOf`s are read as `anyOf` (AIS-52: a Detail object matches both).
pub struct OpenApi {
    doc: serde_json::Value,
}

impl OpenApi {
    pub fn load(file: &str) -> OpenApi {
        Self::load_path(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/standard/openapi")
                .join(file),
        )
    }

    /// One of aspen's own OpenAPI 3.0 documents (`docs/…`); `nullable`
    /// becomes a JSON-schema `null` type so the validator understands it.
    pub fn load_ours(file: &str) -> OpenApi {
        let mut api = Self::load_path(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../docs")
                .join(file),
        );
        fn nullable(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    if m.remove("nullable") == Some(serde_json::Value::Bool(true))
                        && let Some(serde_json::Value::String(t)) = m.get("type").cloned()
                    {
                        m.insert("type".into(), serde_json::json!([t, "null"]));
                    }
                    m.values_mut().for_each(nullable);
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(nullable),
                _ => {}
            }
        }
        nullable(&mut api.doc);
        api
    }

    fn load_path(path: &Path) -> OpenApi {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let mut doc: serde_json::Value = serde_json::to_value(yaml).unwrap();
        fn one_of_to_any_of(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(x) = m.remove("oneOf") {
                        m.insert("anyOf".into(), x);
                    }
                    m.values_mut().for_each(one_of_to_any_of);
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(one_of_to_any_of),
                _ => {}
            }
        }
        one_of_to_any_of(&mut doc);
        OpenApi { doc }
    }

    /// The JSON schema of `method path` answering `status`.
    fn schema_ref(&self, path: &str, method: &str, status: &str) -> String {
        let mut resp = &self.doc["paths"][path][method]["responses"][status];
        assert!(
            !resp.is_null(),
            "{method} {path} {status} not in the OpenAPI"
        );
        if let Some(r) = resp["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap();
            resp = &self.doc["components"]["responses"][name];
        }
        let content = &resp["content"];
        let media = content
            .as_object()
            .and_then(|m| m.keys().find(|k| k.starts_with("application/json")))
            .cloned()
            .expect("json content");
        content[&media]["schema"]["$ref"]
            .as_str()
            .expect("schema ref")
            .to_string()
    }

    pub fn validate(&self, path: &str, method: &str, status: &str, body: &serde_json::Value) {
        let reference = self.schema_ref(path, method, status);
        self.validate_ref(&reference, path, method, body);
    }

    /// Against a named schema of `components.schemas`.
    pub fn validate_schema(&self, name: &str, body: &serde_json::Value) {
        self.validate_ref(&format!("#/components/schemas/{name}"), name, "-", body);
    }

    fn validate_ref(&self, reference: &str, path: &str, method: &str, body: &serde_json::Value) {
        let mut root = serde_json::json!({ "$ref": reference });
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .build(&root)
            .unwrap_or_else(|e| panic!("schema for {path}: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path}: body does not match {reference}:\n{}\n{body:#}",
            errors.join("\n")
        );
    }
}

/// The trust anchor TPPs name in their request signatures.
pub const TAN: &str = "openbanking.org.uk";

pub fn iss(c: &Client) -> String {
    format!("{}/{}", c.tpp.org_id, c.tpp.software_id)
}

pub fn sign(c: &Client, body: &[u8]) -> String {
    aspen_jose::sign_detached(
        &c.tpp.key,
        body,
        &iss(c),
        TAN,
        chrono::Utc::now().timestamp(),
        None,
    )
    .unwrap()
}

pub fn domestic_initiation(amount: &str) -> serde_json::Value {
    serde_json::json!({
        "InstructionIdentification": "ACME412",
        "EndToEndIdentification": "FRESCO.21302.GFX.20",
        "InstructedAmount": { "Amount": amount, "Currency": "GBP" },
        "CreditorAccount": {
            "SchemeName": "UK.OBIE.SortCodeAccountNumber",
            "Identification": "08080021325698",
            "Name": "ACME Inc",
        },
        "RemittanceInformation": { "Reference": "FRESCO-101", "Unstructured": "Internal ops code 5120101" },
        "SupplementaryData": { "CreditorAccount": {
            "Email": "ops@acme.example", "EntityType": "company", "BusinessDetails": { "Name": "ACME Inc" },
        }},
    })
}

/// The `Location` header, or empty.
pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A cookie-keeping HTTP client for the PSU pages.
pub struct Browser<'a> {
    s: &'a TestServer,
    http: reqwest::Client,
    pub cookie: Option<String>,
}

impl<'a> Browser<'a> {
    pub fn new(s: &'a TestServer) -> Self {
        Self {
            s,
            http: s.client(),
            cookie: None,
        }
    }

    fn keep(&mut self, r: &reqwest::Response) {
        if let Some(v) = r.headers().get("set-cookie") {
            let v = v.to_str().unwrap();
            assert!(
                v.contains("HttpOnly") && v.contains("Secure") && v.contains("SameSite=Lax"),
                "{v}"
            );
            self.cookie = Some(v.split(';').next().unwrap().to_string());
        }
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let mut req = self.http.get(url);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        self.keep(&r);
        r
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.post(self.s.url(path)).form(form);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        self.keep(&r);
        r
    }
}

impl Browser<'_> {
    /// Allows on the consent page with the first account offered; the
    /// fragment the TPP receives.
    pub async fn allow_first_account(&mut self) -> std::collections::HashMap<String, String> {
        let page = self
            .get(&self.s.url("/consent"))
            .await
            .text()
            .await
            .unwrap();
        let csrf = csrf_of(&page);
        let pat = "name=\"account\" value=\"";
        let i = page.find(pat).expect("an account") + pat.len();
        let account = page[i..].split('"').next().unwrap().to_string();
        let r = self
            .post(
                "/consent",
                &[
                    ("csrf", &csrf),
                    ("decision", "allow"),
                    ("account", &account),
                ],
            )
            .await;
        fragment(&location(&r))
    }
}

/// The hidden CSRF field of a page.
pub fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    html[i..].split('"').next().unwrap().to_string()
}

impl TestServer {
    /// Headless `/authorize` for a consent: the fragment the TPP receives.
    pub async fn headless_fragment(
        &self,
        c: &Client,
        consent: &str,
        scope: &str,
    ) -> std::collections::HashMap<String, String> {
        let url = authorize_url(
            self,
            c,
            &c.tpp.sign(&request_claims(self, c, consent, scope)),
            scope,
        );
        let r = self.client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 302, "headless authorize");
        fragment(&location(&r))
    }

    /// POSTs a signed PIS body with the given idempotency key.
    pub async fn pis_post(
        &self,
        c: &Client,
        token: &str,
        path: &str,
        body: &serde_json::Value,
        key: &str,
    ) -> reqwest::Response {
        let bytes = serde_json::to_vec(body).unwrap();
        self.kit_client(&c.tpp.dir)
            .post(self.url(&format!("/open-banking/v3.1/pisp{path}")))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("x-idempotency-key", key)
            .header("x-jws-signature", sign(c, &bytes))
            .body(bytes)
            .send()
            .await
            .unwrap()
    }
}

/// A domestic payment consent request body.
pub fn domestic_consent_body(initiation: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "Data": { "Initiation": initiation },
        "Risk": { "PaymentContextCode": "PartyToParty" },
    })
}

/// A 403 that explains itself (COMMON-39): `OBErrorResponse1` with aspen's
/// reason code and a message.
pub async fn assert_forbidden(r: reqwest::Response, code: &str) {
    assert_eq!(r.status(), 403);
    let b: serde_json::Value = r.json().await.expect("a 403 body");
    assert_eq!(b["Code"], "403 Forbidden", "{b:#}");
    assert_eq!(b["Errors"][0]["ErrorCode"], code, "{b:#}");
    assert!(
        b["Errors"][0]["Message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{b:#}"
    );
}

impl Browser<'_> {
    /// The second step of a sign-in (issue 14): the sandbox PSU's current
    /// TOTP code, or the next one when this one was already spent (as an
    /// authenticator app shows it a moment later). The response to the
    /// accepted code.
    pub async fn second_factor(&mut self, username: &str) -> reqwest::Response {
        let secret = aspen_sandbox::sandbox_logins(42)
            .into_iter()
            .find(|l| l.username == username)
            .and_then(|l| l.totp_secret)
            .expect("a sandbox authenticator");
        let key = aspen_auth::totp::decode_secret(&secret).unwrap();
        let page = self
            .get(&self.s.url("/login/otp"))
            .await
            .text()
            .await
            .unwrap();
        let csrf = csrf_of(&page);
        let now = chrono::Utc::now().timestamp();
        for ahead in [0, aspen_auth::totp::STEP_SECS] {
            let code = aspen_auth::totp::code_at(&key, now + ahead);
            let r = self
                .post("/login/otp", &[("csrf", &csrf), ("otp", &code)])
                .await;
            if r.status() != 401 {
                return r;
            }
        }
        panic!("no TOTP code of {username} was accepted");
    }
}
