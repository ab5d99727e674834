//! Request counts and latency histograms by route template and status, for
//! `/metrics`. The route label is the matched template (`/register/{id}`),
//! never the raw path, and the method label is a standard method or
//! `other`, so label cardinality stays bounded whatever a client sends.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use metrics::{Counter, Histogram};
use tower::{Layer, Service};

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
struct RouteMetrics {
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

/// Counts and times each request under its matched route: a route layer,
/// as only the router knows the route. A plain tower layer whose future
/// wraps the route's own, so nothing is boxed per request (issue 15).
#[derive(Clone, Default)]
pub struct TrackLayer(Arc<RouteMetrics>);

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            seen: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    seen: Arc<RouteMetrics>,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        TrackFuture {
            start: Instant::now(),
            route: req.extensions().get::<MatchedPath>().cloned(),
            method: method_label(req.method()),
            seen: self.seen.clone(),
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        route: Option<MatchedPath>,
        method: &'static str,
        seen: Arc<RouteMetrics>,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Ok(resp) = &out {
            let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
            let (count, latency) = this
                .seen
                .handles(this.method, resp.status().as_u16(), route);
            count.increment(1);
            latency.record(this.start.elapsed().as_secs_f64());
        }
        Poll::Ready(out)
    }
}
