//! What every request passes through around the router, outermost first:
//! security headers, the interaction id and its span, the request timeout,
//! the forwarded client certificate, response signing, OB error shaping
//! and reading the whole body. One service with one boxed future per
//! request: as a stack of axum `from_fn` layers inside every route, each
//! step boxed the rest of the stack and its future again on every request;
//! one service took 15% off a JWKS or discovery request's instructions
//! (issue 15, eleventh pass in BENCHMARKS.md).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aspen_http::interaction::{self, InteractionId};
use aspen_http::{ObError, ObErrorCode, PeerCert, RemoteAddr};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use rustls::server::danger::ClientCertVerifier;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::tls;

/// The edge around `inner` (the router).
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    settings: Arc<EdgeSettings>,
}

pub struct EdgeSettings {
    pub proxy: ProxyCert,
    /// Signs PIS and event-registration answers made outside their routes.
    pub api: aspen_api::ApiState,
    /// From complete headers to a ready response.
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
}

impl<S> Edge<S> {
    pub fn new(inner: S, settings: EdgeSettings) -> Self {
        Self {
            inner,
            settings: Arc::new(settings),
        }
    }
}

impl<S, B> Service<Request<B>> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The inner service is made ready per request, on its clone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut req = req.map(Body::new);
        let id = interaction::request_id(req.headers());
        let span = interaction::span(&id, &req);
        req.extensions_mut().insert(InteractionId(id.clone()));
        let inner = self.inner.clone();
        let settings = self.settings.clone();
        Box::pin(
            async move {
                let timeout = settings.request_timeout;
                let mut resp = tokio::time::timeout(timeout, handle(inner, &settings, req))
                    .await
                    .unwrap_or_else(|_| StatusCode::REQUEST_TIMEOUT.into_response());
                // On the event, not recorded into the span: a recorded field
                // makes the fmt layer format the span's fields again.
                tracing::info!(status = resp.status().as_u16(), "response");
                if let Ok(v) = HeaderValue::from_str(&id) {
                    resp.headers_mut().insert(interaction::HEADER, v);
                }
                security_headers(&mut resp);
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

/// Under `/open-banking/` refusals are OB errors (COMMON-51); elsewhere
/// they are the authorisation server's and the pages' own.
pub fn is_open_banking(path: &str) -> bool {
    path.starts_with("/open-banking/")
}

/// Within the request timeout.
async fn handle<S>(inner: S, settings: &EdgeSettings, mut req: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    if let Some(refused) = settings.proxy.apply(&mut req) {
        return refused;
    }
    let path = req.uri().path();
    let ob = is_open_banking(path);
    let signed = aspen_api::pis::signs_responses(path);
    let resp = match read_body_first(&mut req, settings.max_body_bytes, ob).await {
        Some(refused) => refused,
        None => match inner.oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
    };
    let resp = if ob { ob_error_shape(resp).await } else { resp };
    if signed {
        aspen_api::pis::sign(&settings.api, resp).await
    } else {
        resp
    }
}

/// Reads the whole request body (up to the limit) before anything answers.
/// A refusal made before a handler reads the body (401, 404) would
/// otherwise leave the rest unread, and the connection — HTTP/1.1 closed
/// without `Connection: close`, an HTTP/2 stream reset — breaks for a
/// client that did nothing wrong on it. A body over the limit is refused
/// here (413), saying on HTTP/1.1 that the connection closes.
/// Returns the refusal, if any; otherwise the body is in memory.
async fn read_body_first(req: &mut Request, limit: usize, ob: bool) -> Option<Response> {
    let body = std::mem::take(req.body_mut());
    let e = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => {
            *req.body_mut() = Body::from(bytes);
            return None;
        }
        Err(e) => e,
    };
    let too_large =
        std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
    let (status, text) = if too_large {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            "the request body could not be read".to_string(),
        )
    };
    let mut resp = if ob {
        ObError::new(status, text.clone())
            .with(ObErrorCode::FieldInvalid, text, None)
            .into_response()
    } else {
        (
            status,
            aspen_http::Json(serde_json::json!({
                "error": "invalid_request",
                "error_description": text,
            })),
        )
            .into_response()
    };
    if req.version() <= Version::HTTP_11 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Some(resp)
}

/// Under `/open-banking/` every refusal is an `OBErrorResponse1`
/// (COMMON-34, COMMON-51) — also those made before a handler runs: the
/// router's 404/405, the extractors' 400s (a repeated or malformed query
/// parameter, a path that is not UTF-8), which the framework answers in
/// plain text. 401 stays bare (COMMON-37).
async fn ob_error_shape(resp: Response) -> Response {
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json
        || status == StatusCode::UNAUTHORIZED
        || !(status.is_client_error() || status.is_server_error())
    {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let (_, body) = resp.into_parts();
    // The framework's own text says what was wrong; it is short.
    let text = axum::body::to_bytes(body, 2048)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let err = match status {
        StatusCode::NOT_FOUND => ObError::not_found(),
        StatusCode::METHOD_NOT_ALLOWED => ObError::method_not_allowed(),
        StatusCode::BAD_REQUEST => ObError::bad_request(
            ObErrorCode::FieldInvalid,
            format!("the request could not be read: {detail}"),
            None,
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ObError::new(status, "The request body is too large.")
            .with(ObErrorCode::FieldInvalid, detail, None),
        s if s.is_server_error() => ObError::internal(detail),
        _ => ObError::new(status, detail.clone()).with(ObErrorCode::FieldInvalid, detail, None),
    };
    let mut out = err.into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

/// Every answer comes over TLS only: browsers must not downgrade (HSTS),
/// sniff a JSON or JWT body into something executable, or leak page URLs
/// (which may carry consent ids) to other sites.
fn security_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
}

/// Behind a TLS-terminating proxy the client certificate arrives in a
/// header. It is believed only when enabled and only on a connection from a
/// configured proxy (COMMON-3: otherwise anyone reaching the listener could
/// name another TPP's public certificate); everywhere else the header is
/// removed so nothing downstream can mistake it for a verified identity.
/// From a proxy, the client address for throttling comes from
/// `X-Forwarded-For`.
pub struct ProxyCert {
    pub enabled: bool,
    pub header: String,
    pub verifier: Arc<dyn ClientCertVerifier>,
    pub addresses: Vec<ipnet::IpNet>,
    pub subjects: Vec<aspen_http::client_cert::Dn>,
}

impl ProxyCert {
    /// Settles the request's client identity; returns the refusal of a
    /// forwarded certificate that is not trusted.
    fn apply(&self, req: &mut Request) -> Option<Response> {
        let from_proxy = self.is_from_proxy(req);
        let value = req
            .headers_mut()
            .remove(self.header.as_str())
            .and_then(|v| v.to_str().ok().map(str::to_string));
        if from_proxy {
            if let Some(ip) = self.forwarded_client(req) {
                req.extensions_mut()
                    .insert(RemoteAddr(SocketAddr::new(ip, 0)));
            }
        } else if value.is_some() {
            tracing::info!("client certificate header from a non-proxy connection ignored");
        }
        if self.enabled && from_proxy {
            let cert = value
                .as_deref()
                .and_then(|v| tls::verify_forwarded(self.verifier.as_ref(), v))
                .map(Arc::new);
            if value.is_some() && cert.is_none() {
                tracing::info!("forwarded client certificate rejected");
                return Some(
                    (
                        StatusCode::UNAUTHORIZED,
                        aspen_http::Json(serde_json::json!({
                            "error": "invalid_client",
                            "error_description": "the forwarded client certificate is not trusted",
                        })),
                    )
                        .into_response(),
                );
            }
            // The proxy's own certificate, if it sent one, is not the TPP's.
            req.extensions_mut().insert(PeerCert(cert));
        } else if req.extensions().get::<PeerCert>().is_none() {
            req.extensions_mut().insert(PeerCert(None));
        }
        None
    }

    fn trusted_ip(&self, ip: std::net::IpAddr) -> bool {
        self.addresses.iter().any(|n| n.contains(&ip))
    }

    /// The connection comes from a configured proxy: by its address, or by
    /// the certificate it authenticated the TLS connection with.
    fn is_from_proxy(&self, req: &Request) -> bool {
        let by_addr = req
            .extensions()
            .get::<RemoteAddr>()
            .is_some_and(|r| self.trusted_ip(r.0.ip()));
        let by_cert = !self.subjects.is_empty()
            && req
                .extensions()
                .get::<PeerCert>()
                .and_then(|p| p.0.as_ref())
                .is_some_and(|c| self.subjects.iter().any(|s| s == c.subject()));
        by_addr || by_cert
    }

    /// The client's address behind the proxy: the right-most
    /// `X-Forwarded-For` entry that is not itself a trusted proxy (entries
    /// further left are whatever the client chose to send).
    fn forwarded_client(&self, req: &Request) -> Option<std::net::IpAddr> {
        let mut hops: Vec<std::net::IpAddr> = Vec::new();
        for v in req.headers().get_all("x-forwarded-for") {
            for part in v.to_str().ok()?.split(',') {
                hops.push(part.trim().parse().ok()?);
            }
        }
        hops.into_iter().rev().find(|ip| !self.trusted_ip(*ip))
    }
}
