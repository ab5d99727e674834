//! `aspen connector serve`: the reference core connector. It serves the
//! connector API (`docs/connector-openapi.yaml`) over aspen's own ledger,
//! in a process and on a port of its own, behind mTLS that admits only
//! certificates of the data directory's connector CA. With the same data
//! directory as `aspen serve`, nothing else needs configuring.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::timeout::TimeoutLayer;

use crate::config::{Config, Profile};
use crate::datadir::DataDir;
use crate::tls;

#[derive(clap::Args, Debug)]
pub struct ConnectorArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub listen: String,
    /// Server certificate chain (PEM). Default: the data directory's
    /// connector PKI.
    #[arg(long, requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    #[arg(long, requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// CA whose client certificates are admitted. Default: the data
    /// directory's connector CA.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub store: crate::cli::StoreArgs,
}

/// Every 503 says when to come back, also the timeout layer's.
async fn retry_after_on_503(mut resp: axum::response::Response) -> axum::response::Response {
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .entry(axum::http::header::RETRY_AFTER)
            .or_insert(axum::http::HeaderValue::from_static("5"));
    }
    resp
}

pub struct RunningConnector {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningConnector {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

pub async fn start(config: Config, args: &ConnectorArgs) -> Result<RunningConnector> {
    let listen: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {}: not a socket address", args.listen))?;
    let data = DataDir::open(&config.data_dir)?;
    let url = config.database_url();
    if config.database_url.is_none() {
        data.protect_database_files()?;
    }
    let store = aspen_store::connect(&url)
        .await
        .context("cannot open the database")?;
    store.migrate().await.context("database migration failed")?;
    if config.profile == Profile::Sandbox {
        aspen_sandbox::seed(
            store.as_ref(),
            &aspen_sandbox::SeedConfig {
                seed: config.sandbox.seed,
                bulk_transactions: config.sandbox.transactions,
            },
        )
        .await
        .context("seeding the sandbox failed")?;
    }
    let (cert, key, ca) = match (&args.cert_file, &args.key_file, &args.client_ca_file) {
        (Some(c), Some(k), Some(ca)) => (c.clone(), k.clone(), ca.clone()),
        _ => {
            let pki = data.connector_pki()?;
            (
                args.cert_file.clone().unwrap_or(pki.server_cert),
                args.key_file.clone().unwrap_or(pki.server_key),
                args.client_ca_file.clone().unwrap_or(pki.ca_file),
            )
        }
    };
    let tls_config = tls::required_client_auth_config(&cert, &key, tls::root_store(&[ca])?)?;
    let ledger = Arc::new(aspen_core::builtin::BuiltinCore::new(
        store,
        crate::server::ledger_timing(&config),
    ));
    let app = aspen_core::connector::router(ledger.clone())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(config.limits.request_timeout_secs),
        ))
        .layer(axum::middleware::map_response(retry_after_on_503))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024));
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(ledger.run(rx.clone()));
    let limits = &config.limits;
    let opts = tls::ListenerOptions {
        handshake_timeout: Duration::from_secs(limits.handshake_timeout_secs),
        header_read_timeout: Duration::from_secs(limits.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(limits.idle_timeout_secs),
        max_connections: limits.max_connections,
        max_connections_per_address: 0,
        cap_exempt: Vec::new(),
    };
    let task = tokio::spawn(tls::serve(listener, tls_config, app, opts, rx));
    tracing::info!(%addr, "core connector listening");
    Ok(RunningConnector {
        addr,
        shutdown: tx,
        task,
    })
}
