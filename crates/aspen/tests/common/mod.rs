//! Test harness: starts the real server in-process on a loopback port with
//! its own data directory, and builds TLS clients the way a TPP would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use aspen::{Config, RunningServer};

pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
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
            },
        )
        .expect("kit");
        out
    }

    pub async fn stop(self) -> tempfile::TempDir {
        self.server.stop().await;
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

pub async fn start_with(dir: tempfile::TempDir, cfg: Config) -> TestServer {
    let server = aspen::start(cfg).await.expect("server starts");
    TestServer { server, dir }
}

pub async fn start_sandbox() -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = sandbox_config(dir.path());
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
