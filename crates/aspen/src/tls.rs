//! The HTTPS listener: rustls with an optional client certificate.
//!
//! A client may connect without a certificate (PSU browsers, discovery),
//! but a certificate that is sent must chain to a trusted CA or the
//! handshake fails (COMMON-3). The verified leaf goes into every request's
//! extensions as [`PeerCert`].
//!
//! Connections cost the server a slot whether or not they carry requests,
//! so each one is bounded in time (handshake, header read, keep-alive idle;
//! the request timeout is a layer of the app) and in number (per source
//! address and overall), and the accept loop keeps running whatever one
//! client holds.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};
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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
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

/// A listener that admits only clients with a certificate from `roots`
/// (the core connector: its one client is aspen).
pub fn required_client_auth_config(
    cert_file: &PathBuf,
    key_file: &PathBuf,
    roots: Arc<RootCertStore>,
) -> Result<Arc<rustls::ServerConfig>> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .context("cannot build the client certificate verifier")?;
    server_config(cert_file, key_file, verifier)
}

/// A TLS client that trusts only `ca_files` and authenticates with the
/// given certificate (aspen towards the core connector).
pub fn mtls_client_config(
    ca_files: &[PathBuf],
    cert_file: &PathBuf,
    key_file: &PathBuf,
) -> Result<rustls::ClientConfig> {
    let roots = root_store(ca_files)?;
    let certs = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("cannot read {}", cert_file.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("cannot read private key {}", key_file.display()))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .context("client certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
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

/// How the listener protects itself from clients that hold connections
/// without using them.
pub struct ListenerOptions {
    /// Longest a TLS handshake may take, counted from the TCP accept.
    pub handshake_timeout: Duration,
    /// Longest the headers of a request may take once its first byte has
    /// arrived (slowloris).
    pub header_read_timeout: Duration,
    /// Longest a connection may stay open with no request in flight and no
    /// byte arriving (keep-alive idle, HTTP/1.1 and HTTP/2 alike).
    pub idle_timeout: Duration,
    /// Open connections across all clients; a connection beyond it is
    /// closed right after accept.
    pub max_connections: usize,
    /// Open connections from one source IP address, 0 for no limit; a
    /// connection beyond it is closed right after accept, before any TLS
    /// work.
    pub max_connections_per_address: usize,
    /// Addresses the per-address cap does not apply to: the configured
    /// proxies, through which every client arrives from one address.
    pub cap_exempt: Vec<ipnet::IpNet>,
}

/// Accepts TLS connections until `shutdown` flips, then lets in-flight
/// connections finish. `app` is the application (`server::app`) or, in
/// tests and examples, a bare router.
pub async fn serve<S>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: S,
    opts: ListenerOptions,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tower::Service<
            hyper::Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    let per_address = PerAddress::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let timeouts = Timeouts {
        header_read: opts.header_read_timeout,
        idle: opts.idle_timeout,
    };
    let mut warned_full: Option<Instant> = None;
    loop {
        // Accept first and decide afterwards: the loop never waits for a
        // free slot, so connections over a limit are closed at once instead
        // of queueing in the kernel ahead of other clients' connections.
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
        let cap = if opts
            .cap_exempt
            .iter()
            .any(|n| n.contains(&peer_addr.ip().to_canonical()))
        {
            0
        } else {
            opts.max_connections_per_address
        };
        let Some(slot) = per_address.claim(peer_addr.ip(), cap) else {
            tracing::debug!(peer = %peer_addr, "connection refused: too many from this address");
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            // Once per 10 s at most: under a flood this fires per connection.
            if warned_full.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections = opts.max_connections,
                    "connection refused: limits.max_connections reached"
                );
                warned_full = Some(Instant::now());
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = opts.handshake_timeout;
        tokio::spawn(async move {
            let _slot = slot;
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
            let activity = Arc::new(Activity::new());
            let svc = {
                let activity = activity.clone();
                hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    // The headers are complete: from here until the response
                    // is ready the request timeout (TimeoutLayer) governs.
                    let in_flight = InFlight::start(activity.clone());
                    req.extensions_mut().insert(peer.clone());
                    req.extensions_mut().insert(remote);
                    let response = app.clone().oneshot(req);
                    async move {
                        let response = response.await;
                        drop(in_flight);
                        response
                    }
                })
            };
            let io = TokioIo::new(Watched {
                inner: tls,
                activity: activity.clone(),
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = watcher.watch(builder.serve_connection(io, svc).into_owned());
            // Dropping the connection future closes the socket.
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(peer = %peer_addr, error = %e, "connection ended with error");
                },
                why = watchdog(&activity, timeouts) => {
                    tracing::debug!(peer = %peer_addr, reason = why, "connection closed");
                }
            }
        });
    }
    drop(listener);
    // Give in-flight requests a bounded time to finish.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

/// Open connections per source address. Addresses are canonical, so an
/// IPv4 client counts the same on a dual-stack listener (`::ffff:a.b.c.d`).
#[derive(Default)]
struct PerAddress(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PerAddress {
    /// A slot for one more connection from `ip`, or `None` when it already
    /// holds `cap` of them (`cap` 0: no limit).
    fn claim(&self, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        let ip = ip.to_canonical();
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if cap != 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            map: self.0.clone(),
            ip,
        })
    }
}

/// One connection's place in [`PerAddress`], given back on drop; an address
/// with no connection left is removed so the map stays as small as the set
/// of connected clients.
struct AddressSlot {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    idle: Duration,
}

/// No byte has arrived since the connection went idle.
const NONE: u64 = u64::MAX;

/// What the watchdog knows about one connection, shared with its IO
/// ([`Watched`]) and its requests ([`InFlight`]). Times are milliseconds
/// since `start`.
struct Activity {
    start: Instant,
    /// Requests whose headers arrived and whose response is not ready yet.
    in_flight: AtomicUsize,
    /// When the last request in flight finished (or the connection opened).
    idle_since: AtomicU64,
    /// When the first byte arrived after `idle_since`, or [`NONE`].
    first_byte: AtomicU64,
    /// Wakes the watchdog when the deadline may have changed.
    wake: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(NONE),
            wake: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn bytes_arrived(&self) {
        // Only the first byte moves the deadline: later ones (one every few
        // seconds, slowloris) must not extend it.
        if self.first_byte.load(Ordering::Relaxed) == NONE
            && self
                .first_byte
                .compare_exchange(NONE, self.now(), Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            self.wake.notify_one();
        }
    }
}

/// A request between its headers and its response: while any is, the
/// connection is not idle.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        // Set before the count drops, so a watchdog that sees no request in
        // flight also sees when the idle period began.
        a.idle_since.store(a.now(), Ordering::SeqCst);
        a.first_byte.store(NONE, Ordering::SeqCst);
        if a.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            a.wake.notify_one();
        }
    }
}

/// Resolves when the connection has to be closed; says why. With a request
/// in flight it waits (the request timeout bounds that). Otherwise the
/// connection may stay idle for `idle` and, once a byte arrived, has
/// `header_read` to complete a request's headers. This works below HTTP, so
/// it covers HTTP/1.1 and HTTP/2 alike; the response body is written after
/// the response is ready, so the idle timer also bounds a client that never
/// reads it.
async fn watchdog(a: &Activity, t: Timeouts) -> &'static str {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE);
    // One timer for the connection's life, moved only to an earlier
    // deadline, or on from one that has passed (it fired, or it is the
    // start's, never set): one that fires early finds the deadline later
    // and sleeps on. Registering a timer for each request's header and
    // idle deadlines was 1% of an AIS page's server CPU (issue 15,
    // twenty-fifth pass).
    let timer = tokio::time::sleep_until(a.start);
    tokio::pin!(timer);
    loop {
        if a.in_flight.load(Ordering::SeqCst) > 0 {
            a.wake.notified().await;
            continue;
        }
        let (reason, deadline) = match a.first_byte.load(Ordering::SeqCst) {
            NONE => (
                "idle timeout",
                a.idle_since
                    .load(Ordering::SeqCst)
                    .saturating_add(ms(t.idle)),
            ),
            first => (
                "header read timeout",
                first.saturating_add(ms(t.header_read)),
            ),
        };
        match a.start.checked_add(Duration::from_millis(deadline)) {
            Some(at) if at <= Instant::now() => return reason,
            Some(at) => {
                if at < timer.deadline() || timer.deadline() <= Instant::now() {
                    timer.as_mut().reset(at);
                }
                tokio::select! {
                    _ = &mut timer => {}
                    _ = a.wake.notified() => {}
                }
            }
            // A timeout too long to represent: never.
            None => a.wake.notified().await,
        }
    }
}

/// The TLS stream, telling [`Activity`] when application bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
