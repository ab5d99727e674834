//! The ceiling for BENCHMARKS.md: the same rustls listener and mTLS
//! verification as `aspen serve`, answering every request with fixed
//! bytes — no routing logic, no store, no middleware.
//!
//! `ceiling <data-dir> <body-file> <listen-addr> [<sqlite:<file> | postgres://...> [pkjwt | batch]]`
//!
//! With a database, every request first writes one row of a token's size
//! and commits it, alone, before the fixed bytes go out: the least any
//! server that keeps its tokens in that database must do for each one
//! (issue 15, thirty-second pass). SQLite as aspen opens it (WAL,
//! `synchronous = NORMAL`, a checkpoint each 8,000 pages, the statement
//! on the request's thread);
//! PostgreSQL one `INSERT` in autocommit on one held connection, one
//! round trip.
//!
//! With `pkjwt` after the database, the floor of a private_key_jwt token (issue 15,
//! thirty-sixth pass): every request first verifies one PS256 signature
//! over an assertion-sized message with a key parsed once, as aspen
//! verifies a client assertion, and the same commit also spends a random
//! JWT id in a table of `used_jti`'s shape (SQLite: a 16-byte key,
//! `WITHOUT ROWID`; PostgreSQL: scope and id in text, in the same
//! statement as the row).
//!
//! With `batch` after a PostgreSQL URL, the floor of a token on PostgreSQL
//! at more than one connection (issue 15, thirty-ninth pass): the rows of
//! the requests that arrive while a statement is out wait, and the next
//! statement (`INSERT … SELECT unnest($1)`, up to 24 rows, as aspen's token
//! lane) commits all of them; one statement is out at a time. At one
//! connection each statement carries one row, as without `batch`.

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
    let url = args.next();
    let (assertion, batch) = match args.next().as_deref() {
        Some("pkjwt") => (Some(Arc::new(Assertion::new()?)), false),
        Some("batch") => (None, true),
        Some(other) => anyhow::bail!("unknown option {other}"),
        None => (None, false),
    };
    let store = match url {
        Some(url) => Some(Arc::new(Store::open(&url, batch).await?)),
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
        let assertion = assertion.clone();
        async move {
            if let Some(a) = &assertion
                && let Err(e) = a.verify()
            {
                return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
            }
            if let Some(store) = store
                && let Err(e) = store.write(assertion.is_some()).await
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

/// A signature made once at start-up over an assertion-sized message (the
/// peer-bench's client assertions are about 650 bytes before their
/// signature), and its key parsed once.
struct Assertion {
    key: aws_lc_rs::signature::ParsedPublicKey,
    msg: Vec<u8>,
    sig: Vec<u8>,
}

impl Assertion {
    fn new() -> Result<Assertion> {
        use aws_lc_rs::signature::{KeyPair, RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256};
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|e| anyhow::anyhow!("RSA key: {e}"))?;
        let msg = vec![b'e'; 650];
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(
            &RSA_PSS_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            &msg,
            &mut sig,
        )
        .map_err(|e| anyhow::anyhow!("sign: {e}"))?;
        let key = aws_lc_rs::signature::ParsedPublicKey::new(
            &RSA_PSS_2048_8192_SHA256,
            pair.public_key().as_ref(),
        )
        .map_err(|e| anyhow::anyhow!("public key: {e}"))?;
        Ok(Assertion { key, msg, sig })
    }

    fn verify(&self) -> Result<()> {
        self.key
            .verify_sig(&self.msg, &self.sig)
            .map_err(|_| anyhow::anyhow!("the signature does not verify"))
    }
}

/// A random JWT id's key, as aspen's SQLite keeps one (16 bytes).
fn spent_key() -> Result<[u8; 16]> {
    let mut k = [0; 16];
    aws_lc_rs::rand::fill(&mut k).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    Ok(k)
}

/// An hour and a minute from now, as a spent id's expiry.
fn spent_expiry() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        + 3660
}

enum Store {
    Sqlite(std::sync::Mutex<rusqlite::Connection>),
    Postgres(tokio::sync::Mutex<sqlx::PgConnection>),
    Batched(Arc<Batches>),
}

struct Batches {
    conn: tokio::sync::Mutex<sqlx::PgConnection>,
    queue: std::sync::Mutex<Queue>,
}

/// Rows waiting for a statement, and whether a writer is running.
#[derive(Default)]
struct Queue {
    waiting: Vec<tokio::sync::oneshot::Sender<Result<(), String>>>,
    writing: bool,
}

/// Rows a statement at most, as aspen's token lane (`pg_batch::Tokens::MAX`).
const BATCH_MAX: usize = 24;

impl Batches {
    /// Takes the waiting rows, up to [`BATCH_MAX`], until none waits.
    async fn drain(self: Arc<Batches>) {
        loop {
            let waiting: Vec<_> = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.waiting.is_empty() {
                    q.writing = false;
                    return;
                }
                let n = q.waiting.len().min(BATCH_MAX);
                q.waiting.drain(..n).collect()
            };
            let rows = vec![&ROW[..]; waiting.len()];
            let done = sqlx::query("INSERT INTO ceiling (body) SELECT unnest($1::bytea[])")
                .bind(rows)
                .execute(&mut *self.conn.lock().await)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            for w in waiting {
                let _ = w.send(done.clone());
            }
        }
    }
}

impl Store {
    /// `batch`: PostgreSQL's rows several to a statement ([`Batches`]).
    async fn open(url: &str, batch: bool) -> Result<Store> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            anyhow::ensure!(!batch, "batch is for PostgreSQL");
            let c = rusqlite::Connection::open(path)?;
            c.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA wal_autocheckpoint = 8000; \
                 CREATE TABLE IF NOT EXISTS ceiling (id INTEGER PRIMARY KEY, body BLOB NOT NULL); \
                 CREATE TABLE IF NOT EXISTS spent (k BLOB NOT NULL PRIMARY KEY, \
                   expires_at INTEGER NOT NULL) WITHOUT ROWID;",
            )?;
            return Ok(Store::Sqlite(std::sync::Mutex::new(c)));
        }
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS ceiling (id bigserial PRIMARY KEY, body bytea NOT NULL); \
             CREATE TABLE IF NOT EXISTS spent (scope text NOT NULL, jti text NOT NULL, \
               expires_at bigint NOT NULL, PRIMARY KEY (scope, jti))",
        )
        .execute(&mut c)
        .await?;
        let conn = tokio::sync::Mutex::new(c);
        Ok(if batch {
            Store::Batched(Arc::new(Batches {
                conn,
                queue: std::sync::Mutex::default(),
            }))
        } else {
            Store::Postgres(conn)
        })
    }

    /// One token-sized row, and with `spend` a random JWT id, in one commit.
    async fn write(&self, spend: bool) -> Result<()> {
        match self {
            Store::Batched(b) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let start = {
                    let mut q = b.queue.lock().unwrap_or_else(|e| e.into_inner());
                    q.waiting.push(tx);
                    !std::mem::replace(&mut q.writing, true)
                };
                if start {
                    tokio::spawn(b.clone().drain());
                }
                rx.await?.map_err(anyhow::Error::msg)?;
            }
            Store::Sqlite(c) => {
                let key = spend.then(spent_key).transpose()?;
                let c = c.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                let run = |sql: &str| c.prepare_cached(sql).and_then(|mut s| s.execute([]));
                run("BEGIN IMMEDIATE")?;
                let done = c
                    .prepare_cached("INSERT INTO ceiling (body) VALUES (?1)")
                    .and_then(|mut s| s.execute([&ROW[..]]))
                    .and_then(|_| match key {
                        Some(k) => c
                            .prepare_cached("INSERT INTO spent (k, expires_at) VALUES (?1, ?2)")
                            .and_then(|mut s| s.execute(rusqlite::params![&k[..], spent_expiry()])),
                        None => Ok(0),
                    })
                    .and_then(|_| run("COMMIT"));
                // A failed insert or commit leaves the transaction open;
                // the next request's `BEGIN` would fail on it.
                if done.is_err() && !c.is_autocommit() {
                    run("ROLLBACK")?;
                }
                done?;
            }
            Store::Postgres(c) if spend => {
                // 32 hex digits: about the length of the UUIDs the
                // peer-bench's assertions carry as their `jti`.
                let jti: String = spent_key()?.iter().map(|b| format!("{b:02x}")).collect();
                sqlx::query(
                    "WITH s AS (INSERT INTO spent (scope, jti, expires_at) \
                     VALUES ('assertion:ceiling', $2, $3)) \
                     INSERT INTO ceiling (body) VALUES ($1)",
                )
                .bind(&ROW[..])
                .bind(&jti)
                .bind(spent_expiry())
                .execute(&mut *c.lock().await)
                .await?;
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
