//! JSON responses with the exact `Content-Type` the OB conformance suite
//! checks (COMMON-19).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const JSON_UTF8: &str = "application/json; charset=utf-8";

pub struct Json<T>(pub T);

/// A 200 whose body is JSON already written.
pub fn bytes(body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8))],
        body,
    )
        .into_response()
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => bytes(body),
            Err(e) => {
                tracing::error!(error = %e, "response serialisation failed");
                axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}
