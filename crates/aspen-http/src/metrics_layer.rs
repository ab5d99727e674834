//! Request counts and latency histograms by route template and status, for
//! `/metrics`. The route label is the matched template (`/register/{id}`),
//! never the raw path, so label cardinality stays bounded.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

pub const REQUESTS: &str = "aspen_http_requests_total";
pub const DURATION: &str = "aspen_http_request_duration_seconds";

pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!(REQUESTS, &labels).increment(1);
    metrics::histogram!(DURATION, &labels).record(start.elapsed().as_secs_f64());
    resp
}
