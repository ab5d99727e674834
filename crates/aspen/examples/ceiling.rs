//! The ceiling for BENCHMARKS.md: the same rustls listener and mTLS
//! verification as `aspen serve`, answering every request with fixed
//! bytes — no routing logic, no store, no middleware.
//!
//! `ceiling <data-dir> <body-file> <listen-addr> [sqlite:<file> | postgres://...]`
//!
//! With a database, every request first writes one row of a token's size
//! and commits it, alone, before the fixed bytes go out: the least any
//! server that keeps its tokens in that database must do for each one
//! (issue 15, thirty-second pass). SQLite as aspen opens it (WAL,
//! `synchronous = NORMAL`, a checkpoint each 8,000 pages, the statement
//! on the request's thread);
//! PostgreSQL one `INSERT` in autocommit on one held connection, one
//! round trip.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let data = std::path::PathBuf::from(args.next().context("data dir")?);
    let body = Arc::new(std::fs::read(args.next().context("body file")?)?);
    let listen = args.next().context("listen address")?;
    let store = match args.next() {
        Some(url) => Some(Arc::new(Store::open(&url).await?)),
        None => None,
    };
    let roots = aspen::tls::root_store(&[data.join("ca.pem")])?;
    let verifier = aspen::tls::client_verifier(roots)?;
    let tls = aspen::tls::server_config(
        &data.join("server.pem"),
        &data.join("server-key.pem"),
        verifier,
    )?;
    let app = Router::new().fallback(move || {
        let body = body.clone();
        let store = store.clone();
        async move {
            if let Some(store) = store
                && let Err(e) = store.write().await
            {
                // Counted as an error by the load generator: a request that
                // skipped its write would flatter the figure.
                return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
            }
            (
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                body.as_ref().clone(),
            )
                .into_response()
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

/// A row of about a token's size (aspen's token rows are about 206 bytes).
const ROW: [u8; 200] = [7; 200];

enum Store {
    Sqlite(std::sync::Mutex<rusqlite::Connection>),
    Postgres(tokio::sync::Mutex<sqlx::PgConnection>),
}

impl Store {
    async fn open(url: &str) -> Result<Store> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let c = rusqlite::Connection::open(path)?;
            c.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA wal_autocheckpoint = 8000; \
                 CREATE TABLE IF NOT EXISTS ceiling (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
            )?;
            return Ok(Store::Sqlite(std::sync::Mutex::new(c)));
        }
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS ceiling (id bigserial PRIMARY KEY, body bytea NOT NULL)",
        )
        .execute(&mut c)
        .await?;
        Ok(Store::Postgres(tokio::sync::Mutex::new(c)))
    }

    async fn write(&self) -> Result<()> {
        match self {
            Store::Sqlite(c) => {
                let c = c.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                let run = |sql: &str| c.prepare_cached(sql).and_then(|mut s| s.execute([]));
                run("BEGIN IMMEDIATE")?;
                let done = c
                    .prepare_cached("INSERT INTO ceiling (body) VALUES (?1)")
                    .and_then(|mut s| s.execute([&ROW[..]]))
                    .and_then(|_| run("COMMIT"));
                // A failed insert or commit leaves the transaction open;
                // the next request's `BEGIN` would fail on it.
                if done.is_err() && !c.is_autocommit() {
                    run("ROLLBACK")?;
                }
                done?;
            }
            Store::Postgres(c) => {
                sqlx::query("INSERT INTO ceiling (body) VALUES ($1)")
                    .bind(&ROW[..])
                    .execute(&mut *c.lock().await)
                    .await?;
            }
        }
        Ok(())
    }
}
