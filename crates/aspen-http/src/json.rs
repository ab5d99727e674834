//! JSON responses with the exact `Content-Type` the OB conformance suite
//! checks (COMMON-19).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const JSON_UTF8: &str = "application/json; charset=utf-8";

pub struct Json<T>(pub T);

impl<T: Serialize> Json<T> {
    /// The response, its body written into `capacity` bytes reserved up
    /// front: a large body (an AIS page, ~50 kB) is not grown and copied
    /// by doubling.
    pub fn into_response_sized(self, capacity: usize) -> Response {
        let mut bytes = Vec::with_capacity(capacity);
        match serde_json::to_writer(&mut bytes, &self.0) {
            Ok(()) => (
                [(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8))],
                bytes,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "response serialisation failed");
                axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        // serde_json::to_vec's own starting size.
        self.into_response_sized(128)
    }
}
