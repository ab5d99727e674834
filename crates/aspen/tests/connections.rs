//! Connections that carry no requests: idle TLS and TCP connections,
//! slowloris, keep-alive idleness and one address holding many connections.
//! Each test runs the attack against the real server with short timeouts
//! and bounds every wait, so a regression fails instead of hanging.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use aspen::config::LimitsConfig;
use common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

async fn start(limits: impl FnOnce(&mut LimitsConfig)) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = sandbox_config(dir.path());
    limits(&mut cfg.limits);
    cfg.validate().expect("valid limits");
    start_with(dir, cfg).await
}

/// A TLS connection from 127.0.0.1 trusting the sandbox CA, offering
/// `alpn` (none: the server speaks HTTP/1.1).
async fn tls_connect(s: &TestServer, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&s.ca_pem()) {
        roots.add(cert.expect("ca.pem")).expect("CA certificate");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(aspen::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(s.server.addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    timeout(
        Duration::from_secs(5),
        TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .expect("TLS handshake in time")
    .expect("TLS handshake")
}

/// Reads (and discards) until the server closes the connection; how long
/// that took, or `None` if it is still open after `limit`.
async fn closed_within(io: &mut (impl AsyncRead + Unpin), limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    timeout(limit, async {
        // EOF, or an error such as a reset or a TLS stream cut without
        // close_notify: either way the server is gone.
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .ok()
    .map(|()| t.elapsed())
}

/// Reads one HTTP/1.1 response (which must carry a Content-Length) and
/// returns its status.
async fn read_response(io: &mut (impl AsyncRead + Unpin)) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = io.read(&mut chunk).await.expect("response");
        assert!(n > 0, "connection closed before a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .expect("content-length")
        .trim()
        .parse()
        .expect("content-length value");
    while buf.len() < head_end + length {
        let n = io.read(&mut chunk).await.expect("body");
        assert!(n > 0, "connection closed inside a response body");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf.len(), head_end + length, "nothing was pipelined");
    status
}

async fn get_health(io: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> u16 {
    io.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");
    timeout(Duration::from_secs(5), read_response(io))
        .await
        .expect("response in time")
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let s = start(|l| {
        l.handshake_timeout_secs = 1;
        l.header_read_timeout_secs = 1;
        l.idle_timeout_secs = 1;
    })
    .await;
    let limit = Duration::from_secs(4);

    // HTTP/1.1 over TLS: handshake, then nothing.
    let h1 = async {
        let mut tls = tls_connect(&s, &[]).await;
        closed_within(&mut tls, limit).await
    };
    // HTTP/2: preface and an empty SETTINGS frame, then nothing.
    let h2 = async {
        let mut tls = tls_connect(&s, &[b"h2"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .expect("preface");
        closed_within(&mut tls, limit).await
    };
    // Plain TCP that never starts a handshake.
    let tcp = async {
        let mut tcp = TcpStream::connect(s.server.addr).await.expect("connect");
        closed_within(&mut tcp, limit).await
    };
    let (h1, h2, tcp) = tokio::join!(h1, h2, tcp);
    for (what, took) in [
        ("idle HTTP/1.1", h1),
        ("idle HTTP/2", h2),
        ("silent TCP", tcp),
    ] {
        let took = took.unwrap_or_else(|| panic!("{what} connection still open after {limit:?}"));
        // Closed by the 1 s timer, not by something that fires at once.
        assert!(
            took >= Duration::from_millis(800),
            "{what} closed after {took:?}"
        );
    }

    // The server still answers on a fresh connection.
    let mut tls = tls_connect(&s, &[]).await;
    assert_eq!(get_health(&mut tls).await, 200);
    s.stop().await;
}

#[tokio::test]
async fn slowloris_is_closed_while_bytes_keep_arriving() {
    // Idle is long so that only the header-read timer can close in time.
    let s = start(|l| {
        l.header_read_timeout_secs = 1;
        l.idle_timeout_secs = 30;
    })
    .await;
    let tls = tls_connect(&s, &[]).await;
    let (mut rx, mut tx) = tokio::io::split(tls);
    let started = Instant::now();
    tx.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("request line");
    let mut closed = tokio::spawn(async move {
        let took = closed_within(&mut rx, Duration::from_secs(10)).await;
        (took, rx)
    });
    // One header byte every 300 ms, never the blank line.
    let mut sent = 0;
    let (took, _rx) = loop {
        tokio::select! {
            r = &mut closed => break r.expect("reader"),
            _ = sleep(Duration::from_millis(300)) => {
                if tx.write_all(b"x").await.is_ok() && tx.flush().await.is_ok() {
                    sent += 1;
                }
            }
        }
    };
    let took = took.expect("slowloris connection still open after 10 s");
    assert!(
        took <= Duration::from_secs(3),
        "closed only after {took:?} (header read timeout 1 s)"
    );
    assert!(sent >= 2, "bytes kept arriving ({sent} sent)");
    assert!(started.elapsed() >= Duration::from_millis(800));
    s.stop().await;
}

/// A request whose body stops arriving is answered 408 once
/// `limits.request_timeout_secs` runs out, through the same edge as any
/// answer: its interaction id echoed, the security headers set.
#[tokio::test]
async fn a_stalled_body_is_answered_408_at_the_request_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = sandbox_config(dir.path());
    cfg.limits.request_timeout_secs = 1;
    cfg.limits.idle_timeout_secs = 30;
    cfg.events.long_poll_secs = 0;
    cfg.validate().expect("valid limits");
    let s = start_with(dir, cfg).await;
    let mut tls = tls_connect(&s, &[]).await;
    let started = Instant::now();
    tls.write_all(
        b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          x-fapi-interaction-id: stalled-1\r\n\
          Content-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 100\r\n\r\ngrant_type=",
    )
    .await
    .expect("request");
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    timeout(Duration::from_secs(5), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut chunk).await.expect("response");
            assert!(n > 0, "closed without a response: {head:?}");
            head.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("an answer within 5 s");
    let took = started.elapsed();
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 408"), "{head}");
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}, before the 1 s timeout"
    );
    assert!(
        head.contains("x-fapi-interaction-id: stalled-1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("strict-transport-security: max-age="),
        "{head}"
    );
    s.stop().await;
}

#[tokio::test]
async fn keep_alive_idles_out_but_requests_do_not() {
    let s = start(|l| {
        l.header_read_timeout_secs = 1;
        l.idle_timeout_secs = 1;
    })
    .await;
    let mut tls = tls_connect(&s, &[]).await;

    // A request every 500 ms for 3 s: the connection outlives the idle
    // timeout because it is never idle that long.
    let t = Instant::now();
    for _ in 0..7 {
        assert_eq!(get_health(&mut tls).await, 200);
        sleep(Duration::from_millis(500)).await;
    }
    assert!(t.elapsed() >= Duration::from_secs(3));

    // A request whose body takes 3 s to arrive is in flight all along:
    // neither the idle nor the header timer may cut it.
    let body = b"grant_type=x";
    tls.write_all(
        format!(
            "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("request head");
    for b in body {
        sleep(Duration::from_millis(250)).await;
        tls.write_all(&[*b])
            .await
            .expect("connection open while in flight");
    }
    let status = timeout(Duration::from_secs(5), read_response(&mut tls))
        .await
        .expect("response in time");
    // The body arrived and was read: refused for want of a certificate.
    assert_eq!(status, 401);

    // Then nothing: closed once the idle timeout passes.
    let took = closed_within(&mut tls, Duration::from_secs(4))
        .await
        .expect("idle keep-alive connection still open after 4 s");
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    s.stop().await;
}

/// The connection's one timer, still set for the first idle period's end,
/// fires before the idle deadline that follows a later response: the
/// connection stays open until that idle deadline, then closes.
#[tokio::test]
async fn an_earlier_deadline_does_not_cut_the_idle_time_after_a_request() {
    let s = start(|l| {
        l.header_read_timeout_secs = 1;
        l.idle_timeout_secs = 3;
    })
    .await;
    let mut tls = tls_connect(&s, &[]).await;
    // Most of the first idle period, then a request: its response starts
    // a new one, which ends about 2.5 s after the first would have.
    sleep(Duration::from_millis(2_500)).await;
    assert_eq!(get_health(&mut tls).await, 200);
    let took = closed_within(&mut tls, Duration::from_secs(6))
        .await
        .expect("idle keep-alive connection still open after 6 s");
    assert!(
        took >= Duration::from_millis(2_700),
        "closed after {took:?} (idle timeout 3 s, header read 1 s)"
    );
    s.stop().await;
}

#[tokio::test]
async fn one_address_at_its_cap_does_not_starve_others() {
    // Handshake and idle timers long enough not to free anything during
    // the test: only the per-address cap keeps the server reachable.
    let s = start(|l| {
        l.handshake_timeout_secs = 10;
        l.header_read_timeout_secs = 10;
        l.idle_timeout_secs = 10;
        l.max_connections = 10;
        l.max_connections_per_address = 8;
    })
    .await;
    let addr = s.server.addr;
    assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));

    let mut opened = Vec::new();
    for _ in 0..12 {
        opened.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let watch: Vec<_> = opened
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let r = closed_within(&mut c, Duration::from_secs(1)).await;
                (c, r)
            })
        })
        .collect();
    let mut held = Vec::new();
    for w in watch {
        let (c, r) = w.await.expect("watch");
        if r.is_none() {
            held.push(c);
        }
    }
    assert_eq!(
        held.len(),
        8,
        "connections over the cap of 8 are closed at once, the others stay"
    );

    // Another address is served at once although 127.0.0.1 holds its cap.
    let client = client_builder(&s.ca_pem())
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .expect("client");
    let t = Instant::now();
    let r = timeout(Duration::from_secs(5), client.get(s.url("/health")).send())
        .await
        .expect("/health from 127.0.0.2 in time")
        .expect("/health from 127.0.0.2");
    let took = t.elapsed();
    assert_eq!(r.status(), 200);
    assert!(took < Duration::from_secs(1), "/health took {took:?}");

    // 127.0.0.1 is still at its cap...
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    assert!(
        closed_within(&mut extra, Duration::from_secs(1))
            .await
            .is_some(),
        "a ninth connection from 127.0.0.1 is refused"
    );
    // ...until it lets its connections go.
    drop(held);
    let t = Instant::now();
    let local = s.client();
    loop {
        match local.get(s.url("/health")).send().await {
            Ok(r) if r.status() == 200 => break,
            other => assert!(
                t.elapsed() < Duration::from_secs(3),
                "127.0.0.1 not served after closing its connections: {other:?}"
            ),
        }
        sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_per_address_cap() {
    // Behind a proxy every client arrives from the proxy's address: the
    // configured proxies are exempt, everyone else keeps the cap.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = sandbox_config(dir.path());
    cfg.limits.max_connections_per_address = 2;
    cfg.proxy.trusted_addresses = vec!["127.0.0.1/32".into()];
    let s = start_with(dir, cfg).await;
    let mut opened = Vec::new();
    for _ in 0..6 {
        opened.push(TcpStream::connect(s.server.addr).await.expect("connect"));
    }
    for c in &mut opened {
        assert!(
            closed_within(c, Duration::from_millis(300)).await.is_none(),
            "a connection from the proxy was closed"
        );
    }
    // 127.0.0.2 is no proxy: its third connection is closed at once.
    let mut others = Vec::new();
    for _ in 0..3 {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind("127.0.0.2:0".parse().unwrap()).expect("bind");
        others.push(sock.connect(s.server.addr).await.expect("connect"));
    }
    let mut closed = 0;
    for c in &mut others {
        closed += closed_within(c, Duration::from_millis(500)).await.is_some() as usize;
    }
    assert_eq!(closed, 1);
    s.stop().await;
}
