//! The ceiling for BENCHMARKS.md: the same rustls listener and mTLS
//! verification as `aspen serve`, answering every request with fixed
//! bytes — no routing logic, no store, no middleware.
//!
//! `ceiling <data-dir> <body-file> <listen-addr>`

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::header;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let data = std::path::PathBuf::from(args.next().context("data dir")?);
    let body = Arc::new(std::fs::read(args.next().context("body file")?)?);
    let listen = args.next().context("listen address")?;
    let roots = aspen::tls::root_store(&[data.join("ca.pem")])?;
    let verifier = aspen::tls::client_verifier(roots)?;
    let tls = aspen::tls::server_config(
        &data.join("server.pem"),
        &data.join("server-key.pem"),
        verifier,
    )?;
    let app = Router::new().fallback(move || {
        let body = body.clone();
        async move {
            (
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                body.as_ref().clone(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let opts = aspen::tls::ListenerOptions {
        handshake_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        max_connections: 4096,
        // The load generator connects from one address.
        max_connections_per_address: 0,
        cap_exempt: Vec::new(),
    };
    aspen::tls::serve(listener, tls, app, opts, rx).await;
    Ok(())
}
