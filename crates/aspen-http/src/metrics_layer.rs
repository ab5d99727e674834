//! Request counts and latency histograms by route template and status, for
//! `/metrics`. The route label is the matched template (`/register/{id}`),
//! never the raw path, and the method label is a standard method or
//! `other`, so label cardinality stays bounded whatever a client sends.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};

pub const REQUESTS: &str = "aspen_http_requests_total";
pub const DURATION: &str = "aspen_http_request_duration_seconds";

/// The method as a label: an extension method (`FOO /jwks` reaches a route
/// and is answered 405) would otherwise add a series per name it invents.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

type Handles = (Counter, Histogram);

/// Route template → handles, for one (method label, status).
type ByRoute = HashMap<Box<str>, Handles>;

/// This node's handles for each (method, status, route) it has answered: a
/// request increments its counter and records its latency without building
/// and hashing a labelled key in the recorder on every request (issue 15).
/// Made with the router, after the recorder is installed.
#[derive(Default)]
pub struct RouteMetrics {
    seen: RwLock<HashMap<(&'static str, u16), ByRoute>>,
}

impl RouteMetrics {
    fn handles(&self, method: &'static str, status: u16, route: &str) -> Handles {
        let cached = self
            .seen
            .read()
            .ok()
            .and_then(|m| m.get(&(method, status))?.get(route).cloned());
        if let Some(h) = cached {
            return h;
        }
        let labels = [
            ("method", method.to_string()),
            ("route", route.to_string()),
            ("status", status.to_string()),
        ];
        let h = (
            metrics::counter!(REQUESTS, &labels),
            metrics::histogram!(DURATION, &labels),
        );
        if let Ok(mut m) = self.seen.write() {
            m.entry((method, status))
                .or_default()
                .insert(route.into(), h.clone());
        }
        h
    }
}

pub async fn track(State(seen): State<Arc<RouteMetrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let resp = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (count, latency) = seen.handles(method, resp.status().as_u16(), route);
    count.increment(1);
    latency.record(start.elapsed().as_secs_f64());
    resp
}
