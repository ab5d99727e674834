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
