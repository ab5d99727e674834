//! The HTTPS listener: rustls with an optional client certificate.
//!
//! A client may connect without a certificate (PSU browsers, discovery),
//! but a certificate that is sent must chain to a trusted CA or the
//! handshake fails (COMMON-3). The verified leaf goes into every request's
//! extensions as [`PeerCert`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use aspen_http::{ClientCert, PeerCert, RemoteAddr};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The trusted CA bundle for TPP transport certificates.
pub fn root_store(ca_files: &[PathBuf]) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for path in ca_files {
        let mut n = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read CA bundle {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("bad PEM in {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("unusable CA certificate in {}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(anyhow!("{} holds no certificates", path.display()));
        }
    }
    Ok(Arc::new(roots))
}

pub fn client_verifier(roots: Arc<RootCertStore>) -> Result<Arc<dyn ClientCertVerifier>> {
    WebPkiClientVerifier::builder_with_provider(roots, provider())
        .allow_unauthenticated()
        .build()
        .context("cannot build the client certificate verifier")
}

pub fn server_config(
    cert_file: &PathBuf,
    key_file: &PathBuf,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("cannot read {}", cert_file.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("cannot read private key {}", key_file.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("server certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Verifies a certificate that arrived in the trusted proxy header against
/// the same CA bundle the listener uses: the proxy is trusted to have done
/// the TLS handshake, and this keeps a misconfigured proxy from widening
/// trust.
pub fn verify_forwarded(
    verifier: &dyn ClientCertVerifier,
    header_value: &str,
) -> Option<ClientCert> {
    let pem = percent_encoding::percent_decode_str(header_value)
        .decode_utf8()
        .ok()?;
    let mut chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    if chain.is_empty() {
        return None;
    }
    let leaf = chain.remove(0);
    verifier
        .verify_client_cert(&leaf, &chain, UnixTime::now())
        .ok()?;
    ClientCert::from_der(leaf.to_vec())
}

pub struct ListenerOptions {
    pub handshake_timeout: Duration,
    pub max_connections: usize,
}

/// Accepts TLS connections until `shutdown` flips, then lets in-flight
/// connections finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    opts: ListenerOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (tcp, peer_addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = opts.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(peer = %peer_addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(peer = %peer_addr, "TLS handshake timed out");
                    return;
                }
            };
            let peer = PeerCert(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|leaf| ClientCert::from_der(leaf.to_vec()))
                    .map(Arc::new),
            );
            let remote = RemoteAddr(peer_addr);
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(peer.clone());
                req.extensions_mut().insert(remote);
                app.clone().oneshot(req)
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(peer = %peer_addr, error = %e, "connection ended with error");
            }
        });
    }
    drop(listener);
    // Give in-flight requests a bounded time to finish.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}
