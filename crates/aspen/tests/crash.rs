//! Issue 6, crash safety: the real `aspen` binary executes payments with a
//! delay between acceptance and settlement and is killed with SIGKILL at
//! random moments while payment orders arrive; it is restarted each time
//! and the PISP retries with the same idempotency key whatever got no
//! answer. Afterwards the ledger must show every accepted payment settled
//! exactly once, and each balance must have dropped by exactly their sum.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(data: &std::path::Path, port: u16, core: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aspen"));
    if let Some(url) = core {
        cmd.env("ASPEN_CORE__KIND", "http")
            .env("ASPEN_CORE__URL", url)
            .env("ASPEN_CORE__PAYMENT_POLL_MS", "20")
            .env("ASPEN_CORE__PAYMENT_RETRY_MS", "50");
    }
    cmd.arg("serve")
        .env("ASPEN_DATA_DIR", data)
        .env("ASPEN_LISTEN", format!("127.0.0.1:{port}"))
        .env("ASPEN_PAYMENTS__ACCEPT_AFTER_MS", "40")
        .env("ASPEN_PAYMENTS__SETTLE_AFTER_MS", "60")
        .env("ASPEN_PAYMENTS__POLL_INTERVAL_MS", "10")
        .env("ASPEN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("aspen binary starts")
}

async fn wait_up(client: &reqwest::Client, base: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Ok(r) = client.get(format!("{base}/health")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("aspen did not come up on {base}");
}

#[tokio::test]
async fn sigkill_during_execution_never_loses_or_doubles_a_payment() {
    // Setup in-process: consents created and authorised, tokens issued;
    // all of it lives in the database the binary then takes over.
    let s = start_sandbox().await;
    let c = s
        .client_with("crashpisp", json!({"aspen_headless": true}))
        .await;
    let cc = s.cc_token(&c.tpp, &c.id, "payments").await;
    const N: usize = 24;
    let mut orders = Vec::new();
    for n in 0..N {
        let amount = format!("{}.{:02}", 1 + n, n);
        let body = json!({ "Data": { "Initiation": domestic_initiation(&amount) }, "Risk": {} });
        let bytes = serde_json::to_vec(&body).unwrap();
        let r = s
            .kit_client(&c.tpp.dir)
            .post(s.url("/open-banking/v3.1/pisp/domestic-payment-consents"))
            .bearer_auth(&cc)
            .header("content-type", "application/json")
            .header("x-idempotency-key", uuid::Uuid::new_v4().to_string())
            .header("x-jws-signature", sign(&c, &bytes))
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        let consent = v["Data"]["ConsentId"].as_str().unwrap().to_string();
        let scope = "openid payments";
        let url = authorize_url(
            &s,
            &c,
            &c.tpp.sign(&request_claims(&s, &c, &consent, scope)),
            scope,
        );
        let r = s.client().get(&url).send().await.unwrap();
        let f = fragment(r.headers()["location"].to_str().unwrap());
        let t: Value = s.tokens(&c, &f["code"], &c.redirect).await;
        let order = json!({ "Data": { "ConsentId": consent, "Initiation": body["Data"]["Initiation"] }, "Risk": {} });
        orders.push((
            serde_json::to_vec(&order).unwrap(),
            t["access_token"].as_str().unwrap().to_string(),
            uuid::Uuid::new_v4().to_string(),
            minor_of(&amount),
        ));
    }
    let store = s.server.store.clone();
    let rora = store.psu_by_username("rora").await.unwrap().unwrap();
    let before: BTreeMap<String, i64> = store
        .accounts_for_psu(&rora.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.account_id, a.booked_minor))
        .collect();
    let data = s.data_dir();
    let ca = s.ca_pem();
    let kit = c.tpp.dir.clone();
    drop(store);
    let dir = s.stop().await;

    let mut pem = std::fs::read(kit.join("transport.pem")).unwrap();
    pem.extend(std::fs::read(kit.join("transport-key.pem")).unwrap());
    let http = client_builder(&ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let port = free_port();
    let base = format!("https://127.0.0.1:{port}");

    // Orders are sent in rounds; each round ends with a SIGKILL at a
    // moment that falls inside execution (accept and settle are delayed).
    let mut accepted: BTreeMap<usize, String> = BTreeMap::new();
    let mut next = 0;
    let mut round = 0u64;
    let mut interrupted = 0;
    let db_url = format!("sqlite://{}", data.join("aspen.db").display());
    // With the http core (`crash_http.rs`) the reference connector runs
    // all along in its own process and executes the payments; only aspen
    // is killed, and every accepted order must still reach the ledger once.
    let connector = (core_kind() == "http").then(|| {
        let mut cfg = sandbox_config(dir.path());
        cfg.data_dir = data.clone();
        cfg.payments.accept_after_ms = 40;
        cfg.payments.settle_after_ms = 60;
        cfg.payments.poll_interval_ms = 10;
        Connector::spawn(&cfg)
    });
    let core = connector.as_ref().map(|c| c.url.as_str());
    while accepted.len() < N {
        round += 1;
        assert!(round < 40, "too many rounds");
        let mut child = spawn(&data, port, core);
        wait_up(&http, &base).await;
        let burst = 3 + (round as usize * 7) % 5;
        for _ in 0..burst {
            // Retry what got no answer, with the same key (PIS-4).
            let i = (0..N).find(|i| !accepted.contains_key(i)).unwrap_or(next);
            next = i;
            let (bytes, token, key, _) = &orders[i];
            let r = http
                .post(format!("{base}/open-banking/v3.1/pisp/domestic-payments"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .header("x-idempotency-key", key)
                .header("x-jws-signature", sign(&c, bytes))
                .body(bytes.clone())
                .send()
                .await;
            if let Ok(r) = r {
                assert_eq!(r.status(), 201, "order {i}");
                let v: Value = r.json().await.unwrap();
                let id = v["Data"]["DomesticPaymentId"].as_str().unwrap().to_string();
                if let Some(prev) = accepted.insert(i, id.clone()) {
                    assert_eq!(prev, id, "a replay returns the same payment");
                }
            }
            if accepted.len() == N {
                break;
            }
        }
        // Kill somewhere inside the accept/settle window of the last ones.
        tokio::time::sleep(Duration::from_millis(15 * (round % 6))).await;
        child.kill().unwrap();
        child.wait().unwrap();
        // How much the kill interrupted: orders accepted but not final.
        let db = aspen_store::connect(&db_url).await.unwrap();
        for id in accepted.values() {
            if db
                .payment(id)
                .await
                .unwrap()
                .is_some_and(|p| p.due_at.is_some())
            {
                interrupted += 1;
            }
        }
    }

    // A last start finishes whatever was in flight.
    let mut child = spawn(&data, port, core);
    wait_up(&http, &base).await;
    let store = aspen_store::connect(&db_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut done = 0;
        for id in accepted.values() {
            let p = store.payment(id).await.unwrap().unwrap();
            if p.due_at.is_none() {
                done += 1;
            }
        }
        if done == accepted.len() {
            break;
        }
        assert!(Instant::now() < deadline, "payments left in flight");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let mut debits: BTreeMap<String, i64> = BTreeMap::new();
    for (i, id) in &accepted {
        let p = store.payment(id).await.unwrap().unwrap();
        assert_eq!(p.status, "AcceptedSettlementCompleted", "payment {id}");
        assert_eq!(p.debit_minor, orders[*i].3);
        *debits.entry(p.account_id.clone()).or_default() += p.debit_minor;
        // Exactly one booked ledger entry for it.
        let page = store
            .transactions_page(
                &p.account_id,
                &aspen_store::TxFilter::all(),
                None,
                None,
                1_000_000,
            )
            .await
            .unwrap();
        let entries: Vec<_> = page
            .iter()
            .filter(|t| t.transaction_id == aspen_store::payments::entry_id(id))
            .collect();
        assert_eq!(entries.len(), 1, "payment {id}");
        assert_eq!(entries[0].status, "Booked");
    }
    let after = store.accounts_for_psu(&rora.id).await.unwrap();
    for a in after {
        let expected = before[&a.account_id] - debits.get(&a.account_id).copied().unwrap_or(0);
        assert_eq!(a.booked_minor, expected, "account {}", a.account_id);
        assert!(a.pending_debits_minor >= 0);
    }
    assert!(
        round >= 3,
        "the loop killed the server at least three times"
    );
    assert!(
        interrupted > 0,
        "at least one kill landed while payments were in flight"
    );
    eprintln!("{round} kills, {interrupted} payments caught in flight");
    drop(connector);
    drop(dir);
}

fn minor_of(s: &str) -> i64 {
    aspen_domain::parse_minor(s).unwrap()
}
