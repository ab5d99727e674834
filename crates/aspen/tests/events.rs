//! Issue 13, event notifications (EVT-*): a TPP registers, aspen pushes
//! signed SETs to the TPP's own HTTPS receiver (run here, with a server
//! certificate from the sandbox CA and no client certificate asked), retries
//! a receiver that fails, and serves the same events to aggregated polling.
//! Two nodes deliver each event once; a node killed between the change and
//! the delivery loses nothing.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{Value, json};

const RESOURCE_UPDATE: &str = "urn:uk:org:openbanking:events:resource-update";
const REVOKED: &str = "urn:uk:org:openbanking:events:consent-authorization-revoked";
const ACCEPT: u8 = 0;
const FAIL: u8 = 1;
/// Answers 202 only after 3 s, once; then at once.
const SLOW_ONCE: u8 = 2;

#[derive(Clone, Debug)]
struct Got {
    body: String,
    interaction: String,
    financial: String,
    content_type: String,
    client_cert: bool,
}

struct Rcv {
    mode: AtomicU8,
    got: Mutex<Vec<Got>>,
}

async fn receive(
    State(r): State<Arc<Rcv>>,
    axum::Extension(peer): axum::Extension<aspen_http::PeerCert>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    r.got.lock().unwrap().push(Got {
        body,
        interaction: h("x-fapi-interaction-id"),
        financial: h("x-fapi-financial-id"),
        content_type: h("content-type"),
        client_cert: peer.0.is_some(),
    });
    match r.mode.load(Ordering::SeqCst) {
        FAIL => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        SLOW_ONCE => {
            r.mode.store(ACCEPT, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
        _ => {}
    }
    (
        StatusCode::ACCEPTED,
        [("x-fapi-interaction-id", h("x-fapi-interaction-id"))],
    )
        .into_response()
}

/// The TPP's receiver: HTTPS with a certificate from the sandbox CA,
/// client certificates not required.
struct Receiver {
    url: String,
    state: Arc<Rcv>,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Receiver {
    async fn start(data: &std::path::Path, listener: tokio::net::TcpListener) -> Receiver {
        let dir = aspen::datadir::DataDir::open(data).unwrap();
        let ca = dir.sandbox_ca().unwrap();
        let issued = aspen::pki::server_cert(&ca, &["127.0.0.1".to_string()]).unwrap();
        let port = listener.local_addr().unwrap().port();
        let cert: PathBuf = data.join(format!("rcv-{port}.pem"));
        let key: PathBuf = data.join(format!("rcv-{port}-key.pem"));
        std::fs::write(&cert, format!("{}{}", issued.cert_pem, ca.cert_pem)).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        let roots = aspen::tls::root_store(&[dir.ca_cert_path()]).unwrap();
        let tls =
            aspen::tls::server_config(&cert, &key, aspen::tls::client_verifier(roots).unwrap())
                .unwrap();
        let state = Arc::new(Rcv {
            mode: AtomicU8::new(ACCEPT),
            got: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route(
                "/open-banking/v3.1/event-notifications",
                axum::routing::post(receive),
            )
            .with_state(state.clone());
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(aspen::tls::serve(
            listener,
            tls,
            app,
            aspen::tls::ListenerOptions {
                handshake_timeout: Duration::from_secs(5),
                header_read_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(30),
                max_connections: 256,
                max_connections_per_address: 0,
                cap_exempt: Vec::new(),
            },
            rx,
        ));
        Receiver {
            url: format!("https://127.0.0.1:{port}/open-banking/v3.1/event-notifications"),
            state,
            _stop: stop,
        }
    }

    fn got(&self) -> Vec<Got> {
        self.state.got.lock().unwrap().clone()
    }

    fn set(&self, mode: u8) {
        self.state.mode.store(mode, Ordering::SeqCst);
    }

    /// Waits until `pred` holds for what arrived.
    async fn wait_for(&self, what: &str, pred: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.got();
            if pred(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "waiting for {what}: {got:#?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn events_config(cfg: &mut aspen::Config) {
    cfg.events.retry_base_ms = 100;
    cfg.events.delivery_poll_ms = 25;
    cfg.events.long_poll_secs = 5;
    cfg.housekeeping.purge_interval_secs = 1;
}

async fn sandbox() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    events_config(&mut cfg);
    start_with(dir, cfg).await
}

async fn tpp(s: &TestServer, name: &str) -> (Client, String) {
    let c = s
        .client_with(
            name,
            json!({"aspen_headless": true, "scope": "openid accounts payments eventpolling"}),
        )
        .await;
    let cc = s.cc_token(&c.tpp, &c.id, "accounts payments").await;
    (c, cc)
}

/// A signed registration request (EVT-1).
async fn signed(
    s: &TestServer,
    c: &Client,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let r = s
        .kit_client(&c.tpp.dir)
        .request(method, s.url(&format!("/open-banking/v3.1{path}")))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("x-jws-signature", sign(c, &bytes))
        .body(bytes)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn subscribe(s: &TestServer, c: &Client, cc: &str, callback: Option<&str>) -> Value {
    let mut data = json!({ "Version": "3.1.2" });
    if let Some(u) = callback {
        data["CallbackUrl"] = json!(u);
    }
    let (st, v) = signed(
        s,
        c,
        cc,
        reqwest::Method::POST,
        "/event-subscriptions",
        &json!({ "Data": data }),
    )
    .await;
    assert_eq!(st, 201, "{v:#}");
    v
}

async fn poll(s: &TestServer, c: &Client, body: Value) -> Value {
    let token = s.cc_token(&c.tpp, &c.id, "eventpolling").await;
    let r = s
        .kit_client(&c.tpp.dir)
        .post(s.url("/open-banking/v3.1/events"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(st, 201, "{v:#}");
    OpenApi::load("aggregated-polling-openapi.yaml").validate("/events", "post", "201", &v);
    v
}

/// A domestic payment through consent, headless authorisation and order:
/// the payment id.
async fn pay(s: &TestServer, c: &Client, cc: &str, amount: &str) -> String {
    let body = domestic_consent_body(domestic_initiation(amount));
    let r = s
        .pis_post(c, cc, "/domestic-payment-consents", &body, &uuid())
        .await;
    assert_eq!(r.status(), 201);
    let consent = r.json::<Value>().await.unwrap()["Data"]["ConsentId"]
        .as_str()
        .unwrap()
        .to_string();
    let f = s.headless_fragment(c, &consent, "openid payments").await;
    let t: Value = s.tokens(c, &f["code"], &c.redirect).await;
    let order = json!({ "Data": { "ConsentId": consent, "Initiation": body["Data"]["Initiation"] }, "Risk": body["Risk"] });
    let r = s
        .pis_post(
            c,
            t["access_token"].as_str().unwrap(),
            "/domestic-payments",
            &order,
            &uuid(),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["Data"]["DomesticPaymentId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Verifies a SET against the bank's `/jwks` and the OB schema; its claims.
async fn verified(s: &TestServer, set: &str) -> Value {
    let v = aspen_jose::verify_jwt(set, &s.jwks().await, &[aspen_jose::Alg::PS256])
        .expect("the SET verifies against /jwks");
    assert_eq!(v.header["typ"], "JWT");
    // The v3.1.2 OpenAPI describes resource-update SETs only
    // (OBEventNotification1); the other types follow the data dictionary's
    // OBEventNotification2, checked field by field in the tests.
    if v.claims["events"].get(RESOURCE_UPDATE).is_some() {
        OpenApi::load("event-notifications-openapi.yaml")
            .validate_schema("OBEventNotification1", &v.claims);
    }
    for k in ["iss", "iat", "jti", "aud", "sub", "txn", "toe", "events"] {
        assert!(v.claims.get(k).is_some(), "{k} in {:#}", v.claims);
    }
    v.claims
}

fn subject<'a>(claims: &'a Value, urn: &str) -> &'a Value {
    &claims["events"][urn]["subject"]
}

#[tokio::test]
async fn signed_sets_are_pushed_retried_and_polled_as_the_same_events() {
    let s = sandbox().await;
    let rcv = Receiver::start(
        &s.data_dir(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await;
    let subs = OpenApi::load("event-subscriptions-openapi.yaml");
    let (c, cc) = tpp(&s, "eventtpp").await;
    let created = subscribe(&s, &c, &cc, Some(&rcv.url)).await;
    subs.validate("/event-subscriptions", "post", "201", &created);
    // EVT-2, EVT-34.1: one per TPP.
    let (st, e) = signed(
        &s,
        &c,
        &cc,
        reqwest::Method::POST,
        "/event-subscriptions",
        &json!({ "Data": { "Version": "3.1.2" } }),
    )
    .await;
    assert_eq!(
        (st, e["Errors"][0]["ErrorCode"].as_str()),
        (409, Some("Aspen.Conflict.AlreadyRegistered"))
    );
    let r = s
        .kit_client(&c.tpp.dir)
        .get(s.url("/open-banking/v3.1/event-subscriptions"))
        .bearer_auth(&cc)
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-jws-signature"), "EVT-1: signed");
    let list: Value = r.json().await.unwrap();
    subs.validate("/event-subscriptions", "get", "200", &list);
    assert_eq!(
        list["Data"]["EventSubscription"].as_array().unwrap().len(),
        1
    );

    // A payment's status change reaches the callback as a signed SET.
    let pid = pay(&s, &c, &cc, "3.21").await;
    let got = rcv.wait_for("the payment's event", |g| !g.is_empty()).await;
    let first = &got[0];
    assert_eq!(first.content_type, "application/jwt");
    assert!(!first.client_cert, "EVT-20: no client certificate");
    assert_eq!(first.financial, s.server.aspsp_org_id);
    let claims = verified(&s, &first.body).await;
    assert_eq!(claims["iss"], s.server.public_url);
    assert_eq!(claims["aud"], c.id);
    assert_eq!(claims["txn"], first.interaction);
    let sub = subject(&claims, RESOURCE_UPDATE);
    assert_eq!(sub["http://openbanking.org.uk/rid"], pid);
    assert_eq!(sub["http://openbanking.org.uk/rty"], "domestic-payment");
    let link = s.url(&format!("/open-banking/v3.1/pisp/domestic-payments/{pid}"));
    assert_eq!(sub["http://openbanking.org.uk/rlk"][0]["link"], link);
    assert_eq!(claims["sub"], link);
    // Delivered with 202: polling does not return it again.
    let v = poll(&s, &c, json!({ "returnImmediately": true })).await;
    assert_eq!(v["sets"], json!({}));
    assert_eq!(v["moreAvailable"], false);

    // A receiver answering 500 gets retries with the same SET, and the
    // same SET is there to poll; acknowledging it by polling stops the
    // retries.
    rcv.set(FAIL);
    let before = rcv.got().len();
    let pid2 = pay(&s, &c, &cc, "4.32").await;
    let got = rcv
        .wait_for("three attempts", |g| g.len() >= before + 3)
        .await;
    let attempts: Vec<&Got> = got[before..].iter().collect();
    assert!(
        attempts.iter().all(|g| g.body == attempts[0].body),
        "every retry carries the same SET"
    );
    let claims = verified(&s, &attempts[0].body).await;
    assert_eq!(
        subject(&claims, RESOURCE_UPDATE)["http://openbanking.org.uk/rid"],
        pid2
    );
    let jti = claims["jti"].as_str().unwrap().to_string();
    let v = poll(&s, &c, json!({ "returnImmediately": true })).await;
    assert_eq!(v["sets"][&jti], attempts[0].body, "the same SET by polling");
    // EVT-34.5: acknowledge only, nothing returned, never again.
    let v = poll(&s, &c, json!({ "maxEvents": 0, "ack": [jti] })).await;
    assert_eq!(v["sets"], json!({}));
    // A push already on its way when the ack landed may still arrive;
    // none may start after it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = rcv.got().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rcv.got().len(), settled, "no push after the ack");
    let v = poll(&s, &c, json!({ "returnImmediately": true })).await;
    assert!(v["sets"].get(&jti).is_none());

    // EVT-34.6: two pending, maxEvents 1.
    let _ = pay(&s, &c, &cc, "5.43").await;
    let _ = pay(&s, &c, &cc, "6.54").await;
    let v = poll(&s, &c, json!({ "maxEvents": 1, "returnImmediately": true })).await;
    assert_eq!(v["sets"].as_object().unwrap().len(), 1);
    assert_eq!(v["moreAvailable"], true);
    // A negative acknowledgement ends it too.
    let one = v["sets"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let v = poll(
        &s,
        &c,
        json!({ "maxEvents": 5, "returnImmediately": true,
                "setErrs": { one.clone(): { "err": "jwtAud", "description": "not for us" } } }),
    )
    .await;
    assert!(v["sets"].get(&one).is_none());
    assert_eq!(v["sets"].as_object().unwrap().len(), 1);
    assert_eq!(v["moreAvailable"], false);
    let rest: Vec<String> = v["sets"].as_object().unwrap().keys().cloned().collect();
    poll(&s, &c, json!({ "maxEvents": 0, "ack": rest })).await;

    // The PSU revokes an account-access consent in the dashboard.
    rcv.set(ACCEPT);
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let f = s.headless_fragment(&c, &consent, "openid accounts").await;
    assert!(f.contains_key("code"));
    let mut b = Browser::new(&s);
    let page = b
        .get(&s.url("/account/consents"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    b.post(
        "/login",
        &[("csrf", &csrf), ("username", "rora"), ("password", "rora.")],
    )
    .await;
    b.second_factor("rora").await;
    let page = b
        .get(&s.url("/account/consents"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    // Counted before the change: the push may arrive before the answer.
    let n = rcv.got().len();
    let r = b
        .post(
            &format!("/account/consents/{consent}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 200);
    let got = rcv
        .wait_for("the revocation", |g| {
            g[n.min(g.len())..]
                .iter()
                .any(|x| x.body.len() > 10 && !x.client_cert)
        })
        .await;
    let mut found = false;
    for g in &got[n..] {
        let claims = verified(&s, &g.body).await;
        if let Some(e) = claims["events"].get(REVOKED) {
            assert_eq!(e["subject"]["http://openbanking.org.uk/rid"], consent);
            assert_eq!(
                e["subject"]["http://openbanking.org.uk/rty"],
                "account-access-consent"
            );
            found = true;
        }
    }
    assert!(found, "a consent-authorization-revoked SET");
    s.stop().await;
}

#[tokio::test]
async fn registrations_are_checked() {
    let s = sandbox().await;
    let (c, cc) = tpp(&s, "regtpp").await;
    let cb = OpenApi::load("callback-urls-openapi.yaml");
    let cases = [
        (
            json!({ "Data": { "Version": "3.1.2", "EventTypes": ["urn:example:nope"] } }),
            400,
            "UK.OBIE.Unsupported.EventType",
        ),
        (
            json!({ "Data": { "Version": "3.1.1", "EventTypes": [REVOKED] } }),
            400,
            "UK.OBIE.Unsupported.EventType",
        ),
        (
            json!({ "Data": { "Version": "9.9" } }),
            400,
            "UK.OBIE.Field.Invalid",
        ),
        (
            json!({ "Data": { "Version": "3.1.2", "CallbackUrl": "https://tpp.example.com/hook" } }),
            400,
            "UK.OBIE.Field.Invalid",
        ),
        (json!({ "Data": {} }), 400, "UK.OBIE.Field.Missing"),
    ];
    for (body, st, code) in cases {
        let (got, e) = signed(
            &s,
            &c,
            &cc,
            reqwest::Method::POST,
            "/event-subscriptions",
            &body,
        )
        .await;
        assert_eq!(
            (got, e["Errors"][0]["ErrorCode"].as_str()),
            (st, Some(code)),
            "{body}"
        );
    }
    // Unsigned is refused (EVT-1: signed requests).
    let r = s
        .kit_client(&c.tpp.dir)
        .post(s.url("/open-banking/v3.1/event-subscriptions"))
        .bearer_auth(&cc)
        .json(&json!({ "Data": { "Version": "3.1.2" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Polling needs a subscription.
    let token = s.cc_token(&c.tpp, &c.id, "eventpolling").await;
    let r = s
        .kit_client(&c.tpp.dir)
        .post(s.url("/open-banking/v3.1/events"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Callback URLs: create, one only, read, update, delete.
    let url = "https://tpp.example.com/open-banking/v3.1/event-notifications";
    let (st, v) = signed(
        &s,
        &c,
        &cc,
        reqwest::Method::POST,
        "/callback-urls",
        &json!({ "Data": { "Url": url, "Version": "3.1" } }),
    )
    .await;
    assert_eq!(st, 201, "{v:#}");
    cb.validate("/callback-urls", "post", "201", &v);
    let id = v["Data"]["CallbackUrlId"].as_str().unwrap().to_string();
    let (st, _) = signed(
        &s,
        &c,
        &cc,
        reqwest::Method::POST,
        "/callback-urls",
        &json!({ "Data": { "Url": url, "Version": "3.1" } }),
    )
    .await;
    assert_eq!(st, 409);
    let other = "https://tpp.example.com/open-banking/v3.2/event-notifications";
    let (st, v) = signed(
        &s,
        &c,
        &cc,
        reqwest::Method::PUT,
        &format!("/callback-urls/{id}"),
        &json!({ "Data": { "Url": other, "Version": "3.1" } }),
    )
    .await;
    assert_eq!(st, 200, "{v:#}");
    cb.validate("/callback-urls/{CallbackUrlId}", "put", "200", &v);
    let r = s
        .kit_client(&c.tpp.dir)
        .get(s.url("/open-banking/v3.1/callback-urls"))
        .bearer_auth(&cc)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    cb.validate("/callback-urls", "get", "200", &v);
    assert_eq!(v["Data"]["CallbackUrl"][0]["Url"], other);
    // Another TPP cannot touch it.
    let (c2, cc2) = tpp(&s, "othertpp").await;
    let r = s
        .kit_client(&c2.tpp.dir)
        .delete(s.url(&format!("/open-banking/v3.1/callback-urls/{id}")))
        .bearer_auth(&cc2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .kit_client(&c.tpp.dir)
        .delete(s.url(&format!("/open-banking/v3.1/callback-urls/{id}")))
        .bearer_auth(&cc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // A subscription is updated and deleted the same way.
    let v = subscribe(&s, &c, &cc, None).await;
    let sid = v["Data"]["EventSubscriptionId"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = signed(&s, &c, &cc, reqwest::Method::PUT, &format!("/event-subscriptions/{sid}"),
        &json!({ "Data": { "EventSubscriptionId": sid, "Version": "3.1.2", "EventTypes": [REVOKED] } })).await;
    assert_eq!(st, 200, "{v:#}");
    OpenApi::load("event-subscriptions-openapi.yaml").validate(
        "/event-subscriptions/{EventSubscriptionId}",
        "put",
        "200",
        &v,
    );
    assert_eq!(v["Data"]["EventTypes"], json!([REVOKED]));
    // Meta.TotalPages is int32 in the OpenAPI: 2^31 is refused (found by
    // the schemathesis run, ST201), 2^31 - 1 is taken.
    for (pages, st) in [(2_147_483_648_i64, 400), (2_147_483_647, 200)] {
        let body = json!({
            "Data": { "EventSubscriptionId": sid, "Version": "3.1.2" },
            "Links": { "Self": "https://tpp.example.com/x" },
            "Meta": { "TotalPages": pages },
        });
        let path = format!("/event-subscriptions/{sid}");
        let (got, v) = signed(&s, &c, &cc, reqwest::Method::PUT, &path, &body).await;
        assert_eq!(got, st, "{pages}: {v:#}");
        if st == 400 {
            assert_eq!(v["Errors"][0]["ErrorCode"], "UK.OBIE.Field.Invalid");
            assert_eq!(v["Errors"][0]["Path"], "Meta.TotalPages");
        }
    }
    let _ = c2;
    let _ = cc2;
    s.stop().await;
}

/// A consent that reaches its ExpirationDateTime while authorised is
/// reported once, to a poll-only TPP (long polling holds the request until
/// it arrives).
#[tokio::test]
async fn an_expiring_consent_is_reported_once_by_long_polling() {
    let s = sandbox().await;
    let (c, cc) = tpp(&s, "polltpp").await;
    subscribe(&s, &c, &cc, None).await;
    let expiry = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let consent = s
        .ais_consent(
            &c,
            json!({ "Permissions": ["ReadAccountsBasic"], "ExpirationDateTime": expiry }),
        )
        .await;
    let f = s.headless_fragment(&c, &consent, "openid accounts").await;
    assert!(f.contains_key("code"));
    let mut sets = serde_json::Map::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sets.is_empty() {
        assert!(Instant::now() < deadline, "no expiry event");
        let v = poll(&s, &c, json!({ "returnImmediately": false })).await;
        sets = v["sets"].as_object().unwrap().clone();
    }
    assert_eq!(sets.len(), 1);
    let (jti, set) = sets.iter().next().unwrap();
    let claims = verified(&s, set.as_str().unwrap()).await;
    let e = &claims["events"][REVOKED];
    assert_eq!(e["subject"]["http://openbanking.org.uk/rid"], consent);
    assert!(e["reason"].as_str().unwrap().contains("ExpirationDateTime"));
    poll(&s, &c, json!({ "maxEvents": 0, "ack": [jti] })).await;
    // Noticed once: later sweeps add nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = poll(&s, &c, json!({ "returnImmediately": true })).await;
    assert_eq!(v["sets"], json!({}));
    s.stop().await;
}

/// Two nodes on one database push each event exactly once.
#[tokio::test]
async fn two_nodes_deliver_each_event_once() {
    let s = sandbox().await;
    let mut cfg = sandbox_config(s.dir.path());
    events_config(&mut cfg);
    let second = aspen::start(cfg).await.unwrap();
    let rcv = Receiver::start(
        &s.data_dir(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await;
    let (c, cc) = tpp(&s, "twonode").await;
    subscribe(&s, &c, &cc, Some(&rcv.url)).await;
    const N: usize = 12;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(pay(&s, &c, &cc, &format!("1.{i:02}")).await);
    }
    let got = rcv
        .wait_for("every payment's event", |g| g.len() >= N)
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let got = rcv.got().len().max(got.len());
    let mut per_jti: HashMap<String, usize> = HashMap::new();
    for g in rcv.got() {
        let (_, claims) = aspen_jose::decode_unverified(&g.body).unwrap();
        *per_jti
            .entry(claims["jti"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(got, N, "{per_jti:?}");
    assert!(per_jti.values().all(|n| *n == 1), "{per_jti:?}");
    second.stop().await;
    s.stop().await;
}

/// aspen is SIGKILLed right after the change (the receiver is down, so
/// nothing was delivered); a new process delivers it.
#[tokio::test]
async fn a_killed_node_still_delivers() {
    let s = sandbox().await;
    let (c, cc) = tpp(&s, "killtpp").await;
    // The receiver's port, not listening yet.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("https://127.0.0.1:{port}/open-banking/v3.1/event-notifications");
    subscribe(&s, &c, &cc, Some(&url)).await;
    let data = s.data_dir();
    let ca = s.ca_pem();
    let kit = c.tpp.dir.clone();
    let dir = s.stop().await;

    let serve = |port: u16| {
        std::process::Command::new(env!("CARGO_BIN_EXE_aspen"))
            .arg("serve")
            .env("ASPEN_DATA_DIR", &data)
            .env("ASPEN_LISTEN", format!("127.0.0.1:{port}"))
            .env("ASPEN_EVENTS__RETRY_BASE_MS", "100")
            .env("ASPEN_EVENTS__DELIVERY_POLL_MS", "25")
            .env("ASPEN_EVENTS__PUSH_TIMEOUT_SECS", "2")
            .env("ASPEN_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let aport = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = format!("https://127.0.0.1:{aport}");
    let mut pem = std::fs::read(kit.join("transport.pem")).unwrap();
    pem.extend(std::fs::read(kit.join("transport-key.pem")).unwrap());
    let http = client_builder(&ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let up = |http: reqwest::Client, base: String| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{base}/health")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("aspen did not come up");
    };
    let mut a = serve(aport);
    up(http.clone(), base.clone()).await;
    // A dashboard revocation: the change and its outbox row commit together.
    let consent = {
        let r = http
            .post(format!("{base}/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "accounts"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                (
                    "client_assertion",
                    &c.tpp.assertion(&c.id, &format!("{base}/token")),
                ),
            ])
            .send()
            .await
            .unwrap();
        let tok: Value = r.json().await.unwrap();
        let r = http
            .post(format!(
                "{base}/open-banking/v3.1/aisp/account-access-consents"
            ))
            .bearer_auth(tok["access_token"].as_str().unwrap())
            .json(&json!({ "Data": { "Permissions": ["ReadAccountsBasic"] }, "Risk": {} }))
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["Data"]["ConsentId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let store = aspen_store::connect(&format!("sqlite://{}", data.join("aspen.db").display()))
        .await
        .unwrap();
    store
        .transition_consent(&consent, &["AwaitingAuthorisation"], "Authorised", 1, None)
        .await
        .unwrap();
    assert!(
        store
            .end_consent(
                &consent,
                Some("Revoked"),
                chrono::Utc::now().timestamp_millis()
            )
            .await
            .unwrap()
    );
    // Give the running node a few failed attempts, then kill it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill().unwrap();
    a.wait().unwrap();

    let rcv = Receiver::start(
        &data,
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
    )
    .await;
    let mut b = serve(aport);
    up(http.clone(), base.clone()).await;
    let got = rcv
        .wait_for("the revocation after restart", |g| !g.is_empty())
        .await;
    let (_, claims) = aspen_jose::decode_unverified(&got[0].body).unwrap();
    assert_eq!(
        claims["events"][REVOKED]["subject"]["http://openbanking.org.uk/rid"],
        consent
    );
    b.kill().unwrap();
    b.wait().unwrap();
    drop(dir);
}

/// A receiver slower than `events.push_timeout_secs`: the push is cut off,
/// tried again with the same SET (same jti, same bytes), and delivered.
#[tokio::test]
async fn a_slow_receiver_gets_the_same_set_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    events_config(&mut cfg);
    cfg.events.push_timeout_secs = 1;
    let s = start_with(dir, cfg).await;
    let rcv = Receiver::start(
        &s.data_dir(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await;
    let (c, cc) = tpp(&s, "slowtpp").await;
    subscribe(&s, &c, &cc, Some(&rcv.url)).await;
    rcv.set(SLOW_ONCE);
    pay(&s, &c, &cc, "2.22").await;
    let got = rcv.wait_for("a second attempt", |g| g.len() >= 2).await;
    assert_eq!(got[0].body, got[1].body, "the same SET both times");
    // Delivered: polling has nothing pending.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = poll(&s, &c, json!({ "returnImmediately": true })).await;
        if v["sets"] == json!({}) {
            break;
        }
        assert!(Instant::now() < deadline, "still pending: {v:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}
