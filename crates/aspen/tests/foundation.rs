//! Issue 2: the server, TLS/mTLS, common HTTP behaviour, persistence.

mod common;

use common::*;

#[tokio::test]
async fn health_ready_and_interaction_id() {
    let s = start_sandbox().await;
    let c = s.client();
    let r = c.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // COMMON-18: a fresh UUID when none was sent.
    let id = r.headers()["x-fapi-interaction-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        uuid::Uuid::parse_str(&id).map(|u| u.get_version_num()),
        Ok(4),
        "{id}"
    );
    let again = c.get(s.url("/health")).send().await.unwrap();
    assert_ne!(again.headers()["x-fapi-interaction-id"], id.as_str());
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );

    let r = c
        .get(s.url("/ready"))
        .header(
            "x-fapi-interaction-id",
            "93bac548-d2de-4546-b106-880a5018460d",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-fapi-interaction-id"],
        "93bac548-d2de-4546-b106-880a5018460d"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["database"], "sqlite");
    s.stop().await;
}

#[tokio::test]
async fn open_banking_404_and_405_use_ob_error_shape() {
    let s = start_sandbox().await;
    let c = s.client();
    let r = c
        .get(s.url("/open-banking/v3.1/aisp/foobar"))
        .header("x-fapi-interaction-id", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // COMMON-18: echoed on errors too.
    assert_eq!(r.headers()["x-fapi-interaction-id"], "abc");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["Code"], "404 NotFound");
    assert!(body["Id"].is_string());
    assert!(!body["Errors"].as_array().unwrap().is_empty());

    let r = c.get(s.url("/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-fapi-interaction-id"));
    s.stop().await;
}

#[tokio::test]
async fn kit_certificate_is_accepted_and_unknown_ca_is_refused() {
    let s = start_sandbox().await;
    let kit = s.make_kit("acme", "https://tpp.example.com/cb");

    // Without a certificate the request still reaches the server.
    let r = s
        .client()
        .get(s.url("/sandbox/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = s
        .kit_client(&kit)
        .get(s.url("/sandbox/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let kit_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kit.join("kit.json")).unwrap()).unwrap();
    let dn = body["subject_dn"].as_str().unwrap();
    assert!(
        dn.contains(&format!("CN={}", kit_json["software_id"].as_str().unwrap())),
        "{dn}"
    );
    assert!(
        dn.contains(&format!("OU={}", kit_json["org_id"].as_str().unwrap())),
        "{dn}"
    );
    // RFC 8705 thumbprint of the presented leaf.
    let pem = std::fs::read(kit.join("transport.pem")).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    assert_eq!(
        body["x5t#S256"],
        aspen_http::client_cert::sha256_b64url(&der)
    );

    // A certificate from a CA the server does not trust fails the handshake.
    let rogue = aspen::pki::new_ca("Rogue CA").unwrap();
    let leaf =
        aspen::pki::transport_cert(&rogue, "Rogue", "rogueorg", "roguesoftware", false).unwrap();
    let mut ident = leaf.cert_pem.clone().into_bytes();
    ident.extend(leaf.key_pem.as_bytes());
    let rogue_client = client_builder(&s.ca_pem())
        .identity(reqwest::Identity::from_pem(&ident).unwrap())
        .build()
        .unwrap();
    let err = rogue_client.get(s.url("/health")).send().await;
    assert!(err.is_err(), "untrusted client certificate must be refused");
    s.stop().await;
}

async fn metrics_text(s: &TestServer) -> String {
    s.client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the `aspen_http_requests_total` series whose line carries
/// every one of `labels` (`route="/health"`), if there is one.
fn requests_total(text: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .find(|l| {
            l.starts_with("aspen_http_requests_total") && labels.iter().all(|x| l.contains(x))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let s = start_sandbox().await;
    let c = s.client();
    for _ in 0..3 {
        c.get(s.url("/health")).send().await.unwrap();
    }
    let text = metrics_text(&s).await;
    let n = requests_total(&text, &["route=\"/health\"", "status=\"200\""])
        .unwrap_or_else(|| panic!("no /health counter in:\n{text}"));
    assert!(n >= 3.0, "{n}");
    assert!(text.contains("aspen_http_request_duration_seconds_bucket"));
    s.stop().await;
}

/// A client that invents methods cannot grow `/metrics` without bound: an
/// extension method is counted as `other`, on a route (405) and off one.
#[tokio::test]
async fn metrics_do_not_take_a_series_per_invented_method() {
    let s = start_sandbox().await;
    let c = s.client();
    for name in ["INVENTED1", "INVENTED2"] {
        let m = reqwest::Method::from_bytes(name.as_bytes()).unwrap();
        let r = c.request(m.clone(), s.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 405);
        let r = c.request(m, s.url("/no-such-route")).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
    let text = metrics_text(&s).await;
    assert!(!text.contains("INVENTED"), "{text}");
    for (route, status) in [("/health", "405"), ("unmatched", "404")] {
        let route = format!("route=\"{route}\"");
        let status = format!("status=\"{status}\"");
        let n = requests_total(&text, &["method=\"other\"", &route, &status])
            .unwrap_or_else(|| panic!("no {route} {status} counter in:\n{text}"));
        assert!(n >= 2.0, "{route} {status}: {n}");
    }
    s.stop().await;
}

#[tokio::test]
async fn restart_keeps_data_keys_and_certificates() {
    let s = start_sandbox().await;
    let data = s.data_dir();
    let ca_before = std::fs::read(data.join("ca.pem")).unwrap();
    let ring_before = std::fs::read(data.join("keys/keyring.json")).unwrap();
    let dir = s.stop().await;

    let cfg = sandbox_config(dir.path());
    let s = start_with(dir, cfg).await;
    assert_eq!(std::fs::read(data.join("ca.pem")).unwrap(), ca_before);
    assert_eq!(
        std::fs::read(data.join("keys/keyring.json")).unwrap(),
        ring_before
    );
    let r = s.client().get(s.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let psu = s.server.store.psu_by_username("rora").await.unwrap();
    assert!(psu.is_some(), "seeded world survives a restart");
    s.stop().await;
}

#[tokio::test]
async fn proxy_header_certificate_only_when_enabled() {
    // Disabled (default): the header is ignored and removed.
    let s = start_sandbox().await;
    let kit = s.make_kit("proxied", "https://tpp.example.com/cb");
    let pem = std::fs::read_to_string(kit.join("transport.pem")).unwrap();
    let encoded =
        percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC).to_string();
    let r = s
        .client()
        .get(s.url("/sandbox/whoami"))
        .header("x-ssl-client-cert", &encoded)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "header must not be trusted unless enabled");
    let dir = s.stop().await;

    let mut cfg = sandbox_config(dir.path());
    cfg.proxy.trust_client_cert_header = true;
    cfg.proxy.trusted_addresses = vec!["127.0.0.1/32".into()];
    let s = start_with(dir, cfg).await;
    let r = s
        .client()
        .get(s.url("/sandbox/whoami"))
        .header("x-ssl-client-cert", &encoded)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["subject_dn"]
            .as_str()
            .unwrap()
            .contains("O=proxied Ltd")
    );

    // A forwarded certificate from an untrusted CA is refused.
    let rogue = aspen::pki::new_ca("Rogue CA").unwrap();
    let leaf =
        aspen::pki::transport_cert(&rogue, "Rogue", "rogueorg", "roguesoftware", false).unwrap();
    let enc =
        percent_encoding::utf8_percent_encode(&leaf.cert_pem, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let r = s
        .client()
        .get(s.url("/sandbox/whoami"))
        .header("x-ssl-client-cert", enc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn garbage_never_gets_a_server_error() {
    // Non-negotiable 3: client mistakes get 4xx, never 5xx.
    let s = start_sandbox().await;
    let kit = s.make_kit("garbage", "https://tpp.example.com/cb");
    let c = s.kit_client(&kit);
    let bodies: [&[u8]; 5] = [
        b"",
        b"\xff\xfe\x00",
        b"{",
        b"a.b.c",
        b"grant_type=client_credentials&grant_type=x",
    ];
    let targets = [
        ("POST", "/token", "application/x-www-form-urlencoded"),
        ("POST", "/register", "application/jwt"),
        ("PUT", "/register/x", "application/jwt"),
        ("POST", "/authorize", "application/x-www-form-urlencoded"),
        ("POST", "/login", "application/x-www-form-urlencoded"),
        ("POST", "/consent", "application/x-www-form-urlencoded"),
        (
            "POST",
            "/open-banking/v3.1/aisp/account-access-consents",
            "application/json",
        ),
        (
            "GET",
            "/open-banking/v3.1/aisp/accounts/%00",
            "application/json",
        ),
        ("GET", "/authorize?request=%ff&client_id=%00", "text/plain"),
    ];
    for (method, path, ct) in targets {
        for body in bodies {
            let r = c
                .request(method.parse().unwrap(), s.url(path))
                .header("content-type", ct)
                .header("authorization", "Bearer !!not-a-token!!")
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            assert!(
                r.status().as_u16() < 500,
                "{method} {path} {body:?} → {}",
                r.status()
            );
            assert!(
                r.headers().contains_key("x-fapi-interaction-id"),
                "{method} {path}"
            );
        }
    }
    s.stop().await;
}
