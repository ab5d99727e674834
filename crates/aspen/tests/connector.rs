//! Issue 12: aspen in front of a core that misbehaves. The reference
//! connector runs in its own process; between it and aspen sits a proxy
//! (same mTLS, the data directory's connector PKI) that can forward, answer
//! 503, hang, answer garbage, refuse payment submissions or send each one
//! twice. TPPs must see the documented OB errors, never a hang or a bare
//! 500, and an accepted payment must reach the ledger exactly once.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{Value, json};

const FORWARD: u8 = 0;
const UNAVAILABLE: u8 = 1;
const HANG: u8 = 2;
const GARBAGE: u8 = 3;
const FAIL_PUTS: u8 = 4;
const DOUBLE_PUTS: u8 = 5;

struct Fault {
    mode: AtomicU8,
    upstream: String,
    client: reqwest::Client,
    hits: AtomicUsize,
    /// Payment submissions aspen sent, and those the core received.
    puts: Mutex<HashMap<String, usize>>,
    delivered: Mutex<HashMap<String, usize>>,
}

async fn misbehave(State(f): State<Arc<Fault>>, req: Request) -> Response {
    f.hits.fetch_add(1, Ordering::SeqCst);
    let method = req.method().clone();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let put = method == axum::http::Method::PUT;
    if put {
        *f.puts.lock().unwrap().entry(pq.clone()).or_default() += 1;
    }
    let mode = f.mode.load(Ordering::SeqCst);
    match mode {
        UNAVAILABLE => {
            return (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "7")],
                axum::Json(json!({"error": "unavailable", "message": "maintenance"})),
            )
                .into_response();
        }
        HANG => {
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        GARBAGE => {
            return (
                [("content-type", "application/json")],
                "<html>not the connector</html>",
            )
                .into_response();
        }
        FAIL_PUTS if put => {
            return (axum::http::StatusCode::BAD_GATEWAY, "upstream down").into_response();
        }
        _ => {}
    }
    let send = || {
        if put {
            *f.delivered.lock().unwrap().entry(pq.clone()).or_default() += 1;
        }
        f.client
            .request(method.clone(), format!("{}{pq}", f.upstream))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    if mode == DOUBLE_PUTS && put {
        // The first answer is lost on the way back: the core saw the
        // payment twice.
        let _ = send().await;
    }
    match send().await {
        Ok(r) => {
            let status = r.status();
            let bytes = r.bytes().await.unwrap_or_default();
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(bytes))
                .unwrap()
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

struct Rig {
    s: TestServer,
    fault: Arc<Fault>,
    _connector: Connector,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// The real connector in its own process, the proxy in front of it, and
/// aspen pointed at the proxy.
async fn rig(tune: impl FnOnce(&mut aspen::Config)) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = sandbox_config(dir.path());
    tune(&mut cfg);
    let connector = Connector::spawn(&cfg);
    let pki = aspen::datadir::DataDir::open(&cfg.data_dir)
        .unwrap()
        .connector_pki()
        .unwrap();
    let mut pem = std::fs::read(&pki.client_cert).unwrap();
    pem.extend(std::fs::read(&pki.client_key).unwrap());
    let client = client_builder(&std::fs::read(&pki.ca_file).unwrap())
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let fault = Arc::new(Fault {
        mode: AtomicU8::new(FORWARD),
        upstream: connector.url.clone(),
        client,
        hits: AtomicUsize::new(0),
        puts: Mutex::new(HashMap::new()),
        delivered: Mutex::new(HashMap::new()),
    });
    let tls = aspen::tls::required_client_auth_config(
        &pki.server_cert,
        &pki.server_key,
        aspen::tls::root_store(std::slice::from_ref(&pki.ca_file)).unwrap(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(misbehave)
        .with_state(fault.clone());
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(aspen::tls::serve(
        listener,
        tls,
        app,
        aspen::tls::ListenerOptions {
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_connections: 64,
            max_connections_per_address: 0,
            cap_exempt: Vec::new(),
        },
        rx,
    ));
    cfg.core.kind = "http".into();
    cfg.core.url = Some(url);
    let s = start_with(dir, cfg).await;
    Rig {
        s,
        fault,
        _connector: connector,
        _stop: stop,
    }
}

impl Rig {
    fn set(&self, mode: u8) {
        self.fault.mode.store(mode, Ordering::SeqCst);
    }
}

/// An AIS token for `rora` over all her accounts (headless).
async fn ais_token(s: &TestServer, c: &Client) -> String {
    let consent = s
        .ais_consent(
            c,
            json!({ "Permissions": ["ReadAccountsDetail", "ReadBalances", "ReadTransactionsDetail",
                "ReadTransactionsCredits", "ReadTransactionsDebits"] }),
        )
        .await;
    let f = s.headless_fragment(c, &consent, "openid accounts").await;
    let t: Value = s.tokens(c, &f["code"], &c.redirect).await;
    t["access_token"].as_str().unwrap().to_string()
}

async fn get_accounts(s: &TestServer, c: &Client, token: &str) -> reqwest::Response {
    s.kit_client(&c.tpp.dir)
        .get(s.url("/open-banking/v3.1/aisp/accounts"))
        .bearer_auth(token)
        .header(
            "x-fapi-interaction-id",
            "5b4b6b3c-7f55-4bb1-9a53-7b3e1b6d2c11",
        )
        .send()
        .await
        .unwrap()
}

/// A transactions page (or a link of one) read as a TPP reads it: 200 and
/// valid against the official schema.
async fn transactions_page(s: &TestServer, c: &Client, token: &str, url: &str) -> Value {
    let r = s
        .kit_client(&c.tpp.dir)
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    OpenApi::load("account-info-openapi.yaml").validate(
        "/accounts/{AccountId}/transactions",
        "get",
        "200",
        &body,
    );
    body
}

fn transaction_ids(page: &Value) -> Vec<String> {
    page["Data"]["Transaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["TransactionId"].as_str().unwrap().to_string())
        .collect()
}

/// An OB error body: `UK.OBIE.UnexpectedError`, valid against the
/// official schema, and the interaction id echoed.
async fn ob_error(r: reqwest::Response, status: u16) -> reqwest::header::HeaderMap {
    assert_eq!(r.status(), status);
    let headers = r.headers().clone();
    assert_eq!(
        headers["x-fapi-interaction-id"],
        "5b4b6b3c-7f55-4bb1-9a53-7b3e1b6d2c11"
    );
    let body: Value = r.json().await.unwrap();
    OpenApi::load("account-info-openapi.yaml").validate("/accounts", "get", "500", &body);
    assert_eq!(body["Errors"][0]["ErrorCode"], "UK.OBIE.UnexpectedError");
    headers
}

#[tokio::test]
async fn a_failing_core_gives_ob_errors_and_the_breaker_sheds_load() {
    let rig = rig(|cfg| {
        cfg.limits.page_size = 25;
        cfg.core.timeout_ms = 400;
        cfg.core.retries = 0;
        cfg.core.breaker_failures = 3;
        cfg.core.breaker_open_secs = 3600;
    })
    .await;
    let s = &rig.s;
    let c = s
        .client_with("coreaisp", json!({"aspen_headless": true}))
        .await;
    let token = ais_token(s, &c).await;
    let r = get_accounts(s, &c, &token).await;
    assert_eq!(r.status(), 200);
    let accounts: Value = r.json().await.unwrap();
    assert!(!accounts["Data"]["Account"].as_array().unwrap().is_empty());

    // A transactions page through the connector (the core's default
    // page: account, summary and entries in three calls), its links
    // walked forwards and backwards.
    // The account with the longest history: at least three pages of 25.
    let mut first = Value::Null;
    for a in accounts["Data"]["Account"].as_array().unwrap() {
        let id = a["AccountId"].as_str().unwrap();
        let url = s.url(&format!(
            "/open-banking/v3.1/aisp/accounts/{id}/transactions"
        ));
        let page = transactions_page(s, &c, &token, &url).await;
        if page["Meta"]["TotalPages"].as_i64() > first["Meta"]["TotalPages"].as_i64() {
            first = page;
        }
    }
    assert!(
        first["Meta"]["TotalPages"].as_i64().unwrap() >= 3,
        "{first}"
    );
    assert_eq!(transaction_ids(&first).len(), 25);
    let link = |page: &Value, rel: &str| page["Links"][rel].as_str().unwrap().to_string();
    let second = transactions_page(s, &c, &token, &link(&first, "Next")).await;
    let back = transactions_page(s, &c, &token, &link(&second, "Prev")).await;
    assert_eq!(back["Data"], first["Data"]);
    let last = transactions_page(s, &c, &token, &link(&first, "Last")).await;
    let times = |page: &Value| -> Vec<String> {
        page["Data"]["Transaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["BookingDateTime"].as_str().unwrap().to_string())
            .collect()
    };
    for page in [&first, &second, &last] {
        let t = times(page);
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "in booking order");
    }
    assert!(times(&first).last() <= times(&second).first());
    assert!(
        !transaction_ids(&second)
            .iter()
            .any(|id| transaction_ids(&first).contains(id))
    );
    assert!(times(&second).last() <= times(&last).first());

    // Down: 503 with the core's Retry-After passed on.
    rig.set(UNAVAILABLE);
    let h = ob_error(get_accounts(s, &c, &token).await, 503).await;
    assert_eq!(h["retry-after"], "7");

    // Slow: the call is cut at the timeout, the TPP gets a 503.
    rig.set(HANG);
    let h = ob_error(get_accounts(s, &c, &token).await, 503).await;
    assert!(h.contains_key("retry-after"));

    // Garbage: a 500 that still is an OBErrorResponse1.
    rig.set(GARBAGE);
    ob_error(get_accounts(s, &c, &token).await, 500).await;

    // Three failures in a row opened the circuit: the core is not called
    // while it is open, even once it is back.
    rig.set(FORWARD);
    let hits = rig.fault.hits.load(Ordering::SeqCst);
    for _ in 0..5 {
        let h = ob_error(get_accounts(s, &c, &token).await, 503).await;
        let secs: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(secs > 60, "the open circuit's time left: {secs}");
    }
    assert_eq!(rig.fault.hits.load(Ordering::SeqCst), hits);

    // The consent page, too, says the bank is unavailable rather than
    // failing: a browser-facing 503 page.
    let consent = s
        .ais_consent(&c, json!({ "Permissions": ["ReadAccountsBasic"] }))
        .await;
    let url = authorize_url(
        s,
        &c,
        &c.tpp
            .sign(&request_claims(s, &c, &consent, "openid accounts")),
        "openid accounts",
    );
    let r = s.client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("not available right now"));
}

#[tokio::test]
async fn an_accepted_payment_reaches_the_core_once_whatever_the_core_did() {
    let rig = rig(|cfg| {
        cfg.core.retries = 1;
        cfg.core.payment_poll_ms = 50;
        cfg.core.payment_retry_ms = 100;
    })
    .await;
    let s = &rig.s;
    let c = s
        .client_with("corepisp", json!({"aspen_headless": true}))
        .await;
    let cc = s.cc_token(&c.tpp, &c.id, "payments").await;
    let mut orders = Vec::new();
    for amount in ["12.34", "5.67"] {
        let body = domestic_consent_body(domestic_initiation(amount));
        let r = s
            .pis_post(&c, &cc, "/domestic-payment-consents", &body, &uuid())
            .await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        let consent = v["Data"]["ConsentId"].as_str().unwrap().to_string();
        let f = s.headless_fragment(&c, &consent, "openid payments").await;
        let t: Value = s.tokens(&c, &f["code"], &c.redirect).await;
        let order = json!({ "Data": { "ConsentId": consent, "Initiation": body["Data"]["Initiation"] }, "Risk": body["Risk"] });
        orders.push((
            order,
            t["access_token"].as_str().unwrap().to_string(),
            aspen_domain::parse_minor(amount).unwrap(),
        ));
    }
    let store = s.server.store.clone();
    let rora = store.psu_by_username("rora").await.unwrap().unwrap();
    let before: HashMap<String, i64> = store
        .accounts_for_psu(&rora.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.account_id, a.booked_minor))
        .collect();

    // The core refuses submissions (its gateway is down): the order is
    // still accepted, and stays Pending.
    rig.set(FAIL_PUTS);
    let (order, token, _) = &orders[0];
    let r = s
        .pis_post(&c, token, "/domestic-payments", order, &uuid())
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Data"]["Status"], "Pending");
    let first = v["Data"]["DomesticPaymentId"].as_str().unwrap().to_string();

    // The second order's submission arrives twice at the core (an answer
    // lost on the way back).
    rig.set(DOUBLE_PUTS);
    let (order, token, _) = &orders[1];
    let r = s
        .pis_post(&c, token, "/domestic-payments", order, &uuid())
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let second = v["Data"]["DomesticPaymentId"].as_str().unwrap().to_string();

    // The sync loop delivers the first one once the core is back.
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in [&first, &second] {
        loop {
            let r = s
                .kit_client(&c.tpp.dir)
                .get(s.url(&format!("/open-banking/v3.1/pisp/domestic-payments/{id}")))
                .bearer_auth(&cc)
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            if v["Data"]["Status"] == "AcceptedSettlementCompleted" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} still {}",
                v["Data"]["Status"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let puts = rig.fault.puts.lock().unwrap().clone();
    let delivered = rig.fault.delivered.lock().unwrap().clone();
    let count = |m: &HashMap<String, usize>, id: &str| {
        m.get(&format!("/core/v1/payments/{id}"))
            .copied()
            .unwrap_or(0)
    };
    assert!(
        count(&puts, &first) >= 3 && count(&delivered, &first) >= 1,
        "refused, retried, then delivered: {puts:?} {delivered:?}"
    );
    assert!(
        count(&delivered, &second) >= 2,
        "the core saw it twice: {delivered:?}"
    );

    // One ledger entry each, and the balance moved by exactly the sum.
    let mut debits: HashMap<String, i64> = HashMap::new();
    for (id, (_, _, minor)) in [&first, &second].into_iter().zip(&orders) {
        let p = store.payment(id).await.unwrap().unwrap();
        let entries = store
            .transactions_page(
                &p.account_id,
                &aspen_store::TxFilter::all(),
                None,
                None,
                100_000,
            )
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.transaction_id == aspen_store::payments::entry_id(id))
            .count();
        assert_eq!(entries, 1, "payment {id}");
        assert_eq!(p.debit_minor, *minor);
        *debits.entry(p.account_id).or_default() += minor;
    }
    for a in store.accounts_for_psu(&rora.id).await.unwrap() {
        let want = before[&a.account_id] - debits.get(&a.account_id).copied().unwrap_or(0);
        assert_eq!(a.booked_minor, want, "account {}", a.account_id);
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The reference connector admits aspen's certificate only (not a TPP's
/// from the sandbox CA, not none), and every answer matches
/// `docs/connector-openapi.yaml`.
#[tokio::test]
async fn the_connector_admits_only_aspen_and_answers_by_its_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sandbox_config(dir.path());
    let conn = Connector::spawn(&cfg);
    let data = aspen::datadir::DataDir::open(&cfg.data_dir).unwrap();
    let pki = data.connector_pki().unwrap();
    let ca = std::fs::read(&pki.ca_file).unwrap();
    let base = format!("{}/core/v1", conn.url);

    let bare = client_builder(&ca).build().unwrap();
    assert!(bare.get(format!("{base}/accounts/x")).send().await.is_err());
    let kit = dir.path().join("kit");
    aspen::kit::create(
        &data,
        &aspen::kit::KitOptions {
            out: kit.clone(),
            redirect_uris: vec!["https://tpp.example/cb".into()],
            org_name: "Nosy Ltd".into(),
            org_id: None,
            software_id: None,
            client_name: "Nosy".into(),
            roles: vec!["AISP".into()],
            directory_issuer: "aspen sandbox directory".into(),
            server_url: "https://127.0.0.1:8443".into(),
            aspsp_org_id: None,
            ec_transport: false,
            sandbox_seed: 42,
        },
    )
    .unwrap();
    let mut tpp_pem = std::fs::read(kit.join("transport.pem")).unwrap();
    tpp_pem.extend(std::fs::read(kit.join("transport-key.pem")).unwrap());
    let tpp = client_builder(&ca)
        .identity(reqwest::Identity::from_pem(&tpp_pem).unwrap())
        .build()
        .unwrap();
    assert!(tpp.get(format!("{base}/accounts/x")).send().await.is_err());

    let mut pem = std::fs::read(&pki.client_cert).unwrap();
    pem.extend(std::fs::read(&pki.client_key).unwrap());
    let http = client_builder(&ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let api = OpenApi::load_ours("connector-openapi.yaml");
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut r = http.request(method, format!("{base}{path}"));
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let store = aspen_store::connect(&cfg.database_url()).await.unwrap();
    let rora = store.psu_by_username("rora").await.unwrap().unwrap();
    let (st, v) = call(
        reqwest::Method::GET,
        format!("/customers/{}", rora.id),
        None,
    )
    .await;
    assert_eq!(st, 200);
    api.validate("/core/v1/customers/{psuId}", "get", "200", &v);
    let (st, v) = call(
        reqwest::Method::GET,
        format!("/customers/{}/accounts", rora.id),
        None,
    )
    .await;
    assert_eq!(st, 200);
    api.validate("/core/v1/customers/{psuId}/accounts", "get", "200", &v);
    let account = v["accounts"][0].clone();
    let id = account["account_id"].as_str().unwrap().to_string();
    let (st, v) = call(reqwest::Method::GET, format!("/accounts/{id}"), None).await;
    assert_eq!(st, 200);
    api.validate("/core/v1/accounts/{accountId}", "get", "200", &v);
    let window = format!(
        "from_ms={}&to_ms={}&credits=true&debits=true",
        i64::MIN,
        i64::MAX
    );
    let (st, v) = call(
        reqwest::Method::GET,
        format!("/accounts/{id}/transactions?{window}&limit=5&direction=backward"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    api.validate(
        "/core/v1/accounts/{accountId}/transactions",
        "get",
        "200",
        &v,
    );
    assert_eq!(v["transactions"].as_array().unwrap().len(), 5);
    let (st, v) = call(
        reqwest::Method::GET,
        format!("/accounts/{id}/transaction-summary?{window}"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    api.validate(
        "/core/v1/accounts/{accountId}/transaction-summary",
        "get",
        "200",
        &v,
    );
    for kind in ["beneficiary", "statement", "product", "party"] {
        let (st, v) = call(
            reqwest::Method::GET,
            format!("/accounts/{id}/resources/{kind}"),
            None,
        )
        .await;
        assert_eq!(st, 200, "{kind}");
        api.validate(
            "/core/v1/accounts/{accountId}/resources/{kind}",
            "get",
            "200",
            &v,
        );
    }
    let (st, v) = call(
        reqwest::Method::GET,
        format!("/accounts/{id}/funds?amount_minor=100"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    api.validate("/core/v1/accounts/{accountId}/funds", "get", "200", &v);

    let instruction = json!({
        "payment_id": "pmt-contract-1",
        "scheme": "domestic",
        "account_id": id,
        "debit_minor": 150,
        "debit_currency": account["currency"],
        "instructed_amount": "1.50",
        "instructed_currency": account["currency"],
        "creditor": { "name": "ACME Inc", "scheme": "UK.OBIE.SortCodeAccountNumber",
            "identification": "08080021325698", "secondary_identification": null },
        "reference": "INV-1",
        "end_to_end_id": null,
    });
    let path = "/payments/pmt-contract-1".to_string();
    let (st, first) = call(
        reqwest::Method::PUT,
        path.clone(),
        Some(instruction.clone()),
    )
    .await;
    assert_eq!(st, 200);
    api.validate("/core/v1/payments/{paymentId}", "put", "200", &first);
    let (st, again) = call(
        reqwest::Method::PUT,
        path.clone(),
        Some(instruction.clone()),
    )
    .await;
    assert_eq!((st, &again["payment_id"]), (200, &first["payment_id"]));
    let (st, v) = call(reqwest::Method::GET, path.clone(), None).await;
    assert_eq!(st, 200);
    api.validate("/core/v1/payments/{paymentId}", "get", "200", &v);
    let mut other = instruction.clone();
    other["debit_minor"] = json!(151);
    let (st, v) = call(reqwest::Method::PUT, path.clone(), Some(other)).await;
    assert_eq!(st, 409);
    api.validate("/core/v1/payments/{paymentId}", "put", "409", &v);
    let (st, v) = call(reqwest::Method::GET, "/accounts/nope".into(), None).await;
    assert_eq!(st, 404);
    api.validate("/core/v1/accounts/{accountId}", "get", "404", &v);
    let (st, v) = call(
        reqwest::Method::GET,
        format!("/accounts/{id}/transactions?{window}&limit=0"),
        None,
    )
    .await;
    assert_eq!(st, 400);
    api.validate(
        "/core/v1/accounts/{accountId}/transactions",
        "get",
        "400",
        &v,
    );
    let (st, v) = call(
        reqwest::Method::GET,
        format!("/accounts/{id}/transactions?{window}&cursor=not-a-cursor"),
        None,
    )
    .await;
    assert_eq!(st, 400);
    api.validate(
        "/core/v1/accounts/{accountId}/transactions",
        "get",
        "400",
        &v,
    );
}
