//! Event delivery throughput for BENCHMARKS.md: N consents are revoked
//! (each revocation one transaction with its outbox row), then aspen's
//! deliverer pushes the N signed SETs to a TPP receiver over HTTPS (a
//! 202-answering server on the same listener code as aspen), and the figures
//! are printed: changes with their outbox row per second, and SETs
//! delivered (signed, POSTed, acknowledged in the outbox) per second.
//!
//! `cargo run --release -p aspen --example events -- [N] [postgres-url]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use aspen_store::consent::ConsentRecord;
use aspen_store::events::Subscription;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let work = tempfile::tempdir()?;
    let data = aspen::datadir::DataDir::open(&work.path().join("data"))?;
    let url = args
        .next()
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data.root.join("aspen.db").display()));
    let store = aspen_store::connect(&url).await?;
    store.migrate().await?;

    // The TPP's receiver: HTTPS, a certificate from the sandbox CA, 202.
    let ca = data.sandbox_ca()?;
    let issued = aspen::pki::server_cert(&ca, &["127.0.0.1".to_string()])?;
    let cert = work.path().join("rcv.pem");
    let key = work.path().join("rcv-key.pem");
    std::fs::write(&cert, format!("{}{}", issued.cert_pem, ca.cert_pem))?;
    std::fs::write(&key, &issued.key_pem)?;
    let tls = aspen::tls::server_config(
        &cert,
        &key,
        aspen::tls::client_verifier(aspen::tls::root_store(&[data.ca_cert_path()])?)?,
    )?;
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::ACCEPTED });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(aspen::tls::serve(
        listener,
        tls,
        app,
        aspen::tls::ListenerOptions {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_address: 0,
            cap_exempt: Vec::new(),
        },
        rx,
    ));

    let now = chrono::Utc::now().timestamp_millis();
    store
        .insert_subscription(&Subscription {
            subscription_id: "es-bench".into(),
            client_id: "bench".into(),
            callback_url: Some(format!(
                "https://127.0.0.1:{port}/open-banking/v3.1/event-notifications"
            )),
            version: "3.1.2".into(),
            event_types: Vec::new(),
            created_at: now,
            updated_at: now,
        })
        .await?;
    for i in 0..n {
        store
            .insert_consent(&ConsentRecord {
                consent_id: format!("aac-bench-{i}"),
                kind: "account-access".into(),
                client_id: "bench".into(),
                status: "Authorised".into(),
                created_at: now,
                status_updated_at: now,
                expires_at: None,
                psu_id: Some("psu".into()),
                accounts: Vec::new(),
                data: serde_json::json!({}),
                authorised_at: Some(now),
                deleted: false,
            })
            .await?;
    }
    let t = Instant::now();
    for i in 0..n {
        store
            .end_consent(&format!("aac-bench-{i}"), Some("Revoked"), now)
            .await?;
    }
    let changes = t.elapsed();

    let signer = Arc::new(aspen_events::SetSigner {
        key: aspen_jose::SigningKey::generate(None)?,
        issuer: "https://bank.example".into(),
        base_url: "https://bank.example".into(),
    });
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem.as_bytes())?])
        .build()?;
    let deliverer = aspen_events::Deliverer::new(
        store.clone(),
        signer,
        http,
        aspen_events::DeliveryConfig {
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(100),
            retry_cap: Duration::from_secs(1),
            max_attempts: 10,
            poll: Duration::from_millis(10),
            financial_id: "bench".into(),
        },
    );
    let t = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = deliverer.run_due().await?;
        if k == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sent += k;
    }
    let delivery = t.elapsed();
    let (left, _) = store.poll_events("bench", &[], &[], 10).await?;
    anyhow::ensure!(left.is_empty(), "undelivered events remain");
    println!(
        "backend={} events={n} changes_with_outbox_row={:.0}/s delivered={:.0}/s ({:.2} ms per event)",
        store.backend_name(),
        n as f64 / changes.as_secs_f64(),
        n as f64 / delivery.as_secs_f64(),
        delivery.as_secs_f64() * 1000.0 / n as f64
    );
    Ok(())
}
