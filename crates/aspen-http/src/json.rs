//! JSON responses with the exact `Content-Type` the OB conformance suite
//! checks (COMMON-19).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const JSON_UTF8: &str = "application/json; charset=utf-8";

pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => (
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
