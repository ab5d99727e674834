//! `x-fapi-interaction-id` (COMMON-18): echoed verbatim when sent, a fresh
//! UUID otherwise, on every response; one tracing span per request carries
//! it so every log line of the request can be found by it.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: &str = "x-fapi-interaction-id";

/// The request's interaction id, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct InteractionId(pub String);

/// A version 4 UUID from aws-lc's generator (a per-thread DRBG), not
/// `Uuid::new_v4`'s `getrandom` system call on every request (issue 15).
fn fresh_id() -> String {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return uuid::Uuid::new_v4().to_string();
    }
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

pub async fn interaction_id_layer(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(fresh_id);
    req.extensions_mut().insert(InteractionId(id.clone()));
    let span = tracing::info_span!(
        "request",
        interaction_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        status = tracing::field::Empty,
    );
    let fut = next.run(req);
    async move {
        let mut resp = fut.await;
        tracing::Span::current().record("status", resp.status().as_u16());
        tracing::info!("response");
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(HEADER, v);
        }
        resp
    }
    .instrument(span)
    .await
}
