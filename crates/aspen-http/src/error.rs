//! `OBErrorResponse1` (COMMON-51) and the v3.1.2 error codes (COMMON-52).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::json::Json;

/// The 28 `OBErrorResponseError1Code` values of v3.1.2 (COMMON-52).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObErrorCode {
    FieldExpected,
    FieldInvalid,
    FieldInvalidDate,
    FieldMissing,
    FieldUnexpected,
    HeaderInvalid,
    HeaderMissing,
    ResourceConsentMismatch,
    ResourceInvalidConsentStatus,
    ResourceInvalidFormat,
    ResourceNotFound,
    RulesAfterCutOffDateTime,
    RulesDuplicateReference,
    SignatureInvalid,
    SignatureInvalidClaim,
    SignatureMalformed,
    SignatureMissing,
    SignatureMissingClaim,
    SignatureUnexpected,
    UnsupportedAccountIdentifier,
    UnsupportedAccountSecondaryIdentifier,
    UnsupportedCurrency,
    UnsupportedEventType,
    UnsupportedFrequency,
    UnsupportedLocalInstrument,
    UnsupportedScheme,
    Reauthenticate,
    UnexpectedError,
}

impl ObErrorCode {
    /// Every code, for the developer portal's error catalogue.
    pub const ALL: [ObErrorCode; 28] = {
        use ObErrorCode::*;
        [
            FieldExpected,
            FieldInvalid,
            FieldInvalidDate,
            FieldMissing,
            FieldUnexpected,
            HeaderInvalid,
            HeaderMissing,
            ResourceConsentMismatch,
            ResourceInvalidConsentStatus,
            ResourceInvalidFormat,
            ResourceNotFound,
            RulesAfterCutOffDateTime,
            RulesDuplicateReference,
            SignatureInvalid,
            SignatureInvalidClaim,
            SignatureMalformed,
            SignatureMissing,
            SignatureMissingClaim,
            SignatureUnexpected,
            UnsupportedAccountIdentifier,
            UnsupportedAccountSecondaryIdentifier,
            UnsupportedCurrency,
            UnsupportedEventType,
            UnsupportedFrequency,
            UnsupportedLocalInstrument,
            UnsupportedScheme,
            Reauthenticate,
            UnexpectedError,
        ]
    };

    pub fn as_str(self) -> &'static str {
        use ObErrorCode::*;
        match self {
            FieldExpected => "UK.OBIE.Field.Expected",
            FieldInvalid => "UK.OBIE.Field.Invalid",
            FieldInvalidDate => "UK.OBIE.Field.InvalidDate",
            FieldMissing => "UK.OBIE.Field.Missing",
            FieldUnexpected => "UK.OBIE.Field.Unexpected",
            HeaderInvalid => "UK.OBIE.Header.Invalid",
            HeaderMissing => "UK.OBIE.Header.Missing",
            ResourceConsentMismatch => "UK.OBIE.Resource.ConsentMismatch",
            ResourceInvalidConsentStatus => "UK.OBIE.Resource.InvalidConsentStatus",
            ResourceInvalidFormat => "UK.OBIE.Resource.InvalidFormat",
            ResourceNotFound => "UK.OBIE.Resource.NotFound",
            RulesAfterCutOffDateTime => "UK.OBIE.Rules.AfterCutOffDateTime",
            RulesDuplicateReference => "UK.OBIE.Rules.DuplicateReference",
            SignatureInvalid => "UK.OBIE.Signature.Invalid",
            SignatureInvalidClaim => "UK.OBIE.Signature.InvalidClaim",
            SignatureMalformed => "UK.OBIE.Signature.Malformed",
            SignatureMissing => "UK.OBIE.Signature.Missing",
            SignatureMissingClaim => "UK.OBIE.Signature.MissingClaim",
            SignatureUnexpected => "UK.OBIE.Signature.Unexpected",
            UnsupportedAccountIdentifier => "UK.OBIE.Unsupported.AccountIdentifier",
            UnsupportedAccountSecondaryIdentifier => {
                "UK.OBIE.Unsupported.AccountSecondaryIdentifier"
            }
            UnsupportedCurrency => "UK.OBIE.Unsupported.Currency",
            UnsupportedEventType => "UK.OBIE.Unsupported.EventType",
            UnsupportedFrequency => "UK.OBIE.Unsupported.Frequency",
            UnsupportedLocalInstrument => "UK.OBIE.Unsupported.LocalInstrument",
            UnsupportedScheme => "UK.OBIE.Unsupported.Scheme",
            Reauthenticate => "UK.OBIE.Reauthenticate",
            UnexpectedError => "UK.OBIE.UnexpectedError",
        }
    }
}

/// Why a request with a valid token is refused (403). COMMON-39 [choice]:
/// the body names the reason with a code in aspen's own namespace (the OB
/// codes are an `x-namespaced-enum`, open to a bank's own), so a TPP
/// engineer can tell a missing permission from someone else's resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// The token lacks the scope the endpoint needs.
    Scope,
    /// The consent does not grant the permission the endpoint needs.
    Permission,
    /// The account is not one the consent covers.
    Account,
    /// The resource belongs to another TPP.
    OtherTpp,
    /// The token is for another consent than the resource's.
    OtherConsent,
}

impl Forbidden {
    pub const ALL: [Forbidden; 5] = [
        Forbidden::Scope,
        Forbidden::Permission,
        Forbidden::Account,
        Forbidden::OtherTpp,
        Forbidden::OtherConsent,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Forbidden::Scope => "Aspen.Forbidden.Scope",
            Forbidden::Permission => "Aspen.Forbidden.Permission",
            Forbidden::Account => "Aspen.Forbidden.Account",
            Forbidden::OtherTpp => "Aspen.Forbidden.OtherTpp",
            Forbidden::OtherConsent => "Aspen.Forbidden.OtherConsent",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ObErrorItem {
    pub error_code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// An error answer on `/open-banking/**`.
///
/// 401 and most 403s carry no body (COMMON-37, COMMON-39); everything else
/// carries an `OBErrorResponse1` whose `Id` is also logged so an operator can
/// find the request (COMMON-55).
#[derive(Debug, Clone)]
pub struct ObError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<ObErrorItem>,
    /// `WWW-Authenticate` for 401s.
    pub www_authenticate: Option<&'static str>,
    /// `Retry-After` (seconds) for 503s.
    pub retry_after: Option<u64>,
}

impl ObError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            errors: Vec::new(),
            www_authenticate: None,
            retry_after: None,
        }
    }

    /// 400 with one error item.
    pub fn bad_request(code: ObErrorCode, message: impl Into<String>, path: Option<&str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "The request is invalid.").with(code, message, path)
    }

    pub fn with(
        mut self,
        code: ObErrorCode,
        message: impl Into<String>,
        path: Option<&str>,
    ) -> Self {
        self.errors.push(ObErrorItem {
            error_code: code.as_str(),
            message: message.into(),
            path: path.map(str::to_string),
            url: None,
        });
        self
    }

    /// 401 without a body (COMMON-37).
    pub fn unauthorized() -> Self {
        Self {
            www_authenticate: Some("Bearer error=\"invalid_token\""),
            ..Self::new(StatusCode::UNAUTHORIZED, "")
        }
    }

    /// 403 with an `OBErrorResponse1` that names the reason (COMMON-39).
    pub fn forbidden(reason: Forbidden, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            "The request is not allowed for this token.",
        );
        e.errors.push(ObErrorItem {
            error_code: reason.code(),
            message: message.into(),
            path: None,
            url: None,
        });
        e
    }

    /// 409 with aspen's own code (the OB codes have none for a conflict).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::CONFLICT, "The resource already exists.");
        e.errors.push(ObErrorItem {
            error_code: code,
            message: message.into(),
            path: None,
            url: None,
        });
        e
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Resource not found.")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.")
    }

    pub fn not_acceptable() -> Self {
        Self::new(
            StatusCode::NOT_ACCEPTABLE,
            "The Accept header cannot be satisfied.",
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Content-Type.",
        )
    }

    /// 503 with `Retry-After`: a system behind aspen (the core banking
    /// connector) cannot answer now; the request may be sent again.
    pub fn unavailable(retry_after_secs: u64, detail: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %detail, "service unavailable");
        Self {
            retry_after: Some(retry_after_secs.max(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is temporarily unavailable.",
            )
            .with(
                ObErrorCode::UnexpectedError,
                "The bank's core system is temporarily unavailable; try again after the Retry-After delay.",
                None,
            )
        }
    }

    /// 500; the detail goes to the log, never to the client (COMMON-54).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error.").with(
            ObErrorCode::UnexpectedError,
            "An unexpected error occurred.",
            None,
        )
    }

    fn code_text(&self) -> String {
        let reason = self
            .status
            .canonical_reason()
            .unwrap_or("Error")
            .replace(' ', "");
        format!("{} {}", self.status.as_u16(), reason)
    }

    /// The `OBErrorResponse1` body, or `None` for statuses sent bare.
    pub fn body(&self) -> Option<serde_json::Value> {
        // Only 401 goes bare (COMMON-37); 406 and 415 say which header was
        // wrong, like every other refusal.
        if self.status == StatusCode::UNAUTHORIZED {
            return None;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let mut errors = self.errors.clone();
        if errors.is_empty() {
            // OBErrorResponse1 requires at least one item.
            let code = if self.status.is_server_error() {
                ObErrorCode::UnexpectedError
            } else if matches!(
                self.status,
                StatusCode::NOT_ACCEPTABLE | StatusCode::UNSUPPORTED_MEDIA_TYPE
            ) {
                ObErrorCode::HeaderInvalid
            } else {
                ObErrorCode::ResourceNotFound
            };
            errors.push(ObErrorItem {
                error_code: code.as_str(),
                message: self.message.clone(),
                path: None,
                url: None,
            });
        }
        // OBError1 Message and Path are 1..500 characters; a client's own
        // input echoed back (a path, a value) must not break the schema.
        for e in &mut errors {
            e.message = clip(&e.message);
            e.path = e.path.as_deref().map(clip);
        }
        tracing::info!(error_id = %id, status = self.status.as_u16(), "ob error response");
        Some(serde_json::json!({
            "Code": self.code_text(),
            "Id": id,
            "Message": clip(&self.message),
            "Errors": errors,
        }))
    }
}

/// At most 500 characters (OBError1 / OBErrorResponse1 `maxLength`).
fn clip(s: &str) -> String {
    match s.char_indices().nth(500) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

impl std::fmt::Display for ObError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for ObError {}

impl IntoResponse for ObError {
    fn into_response(self) -> Response {
        let mut resp = match self.body() {
            Some(body) => (self.status, Json(body)).into_response(),
            None => self.status.into_response(),
        };
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if let Some(v) = self.www_authenticate {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(v),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_request_body_has_code_id_message_errors() {
        let e = ObError::bad_request(ObErrorCode::FieldMissing, "x missing", Some("Data.X"));
        let b = e.body().unwrap();
        assert_eq!(b["Code"], "400 BadRequest");
        assert_eq!(b["Errors"][0]["ErrorCode"], "UK.OBIE.Field.Missing");
        assert_eq!(b["Errors"][0]["Path"], "Data.X");
        assert!(b["Id"].as_str().unwrap().len() <= 40);
    }

    #[test]
    fn unauthorized_has_no_body() {
        assert!(ObError::unauthorized().body().is_none());
        let b = ObError::forbidden(Forbidden::Permission, "ReadBalances is not granted")
            .body()
            .unwrap();
        assert_eq!(b["Code"], "403 Forbidden");
        assert_eq!(b["Errors"][0]["ErrorCode"], "Aspen.Forbidden.Permission");
        assert_eq!(b["Errors"][0]["Message"], "ReadBalances is not granted");
    }

    #[test]
    fn echoed_input_is_clipped_to_the_schema() {
        let long = "é".repeat(900);
        let b = ObError::bad_request(ObErrorCode::FieldInvalid, long.clone(), Some(&long))
            .body()
            .unwrap();
        for f in ["Message", "Path"] {
            assert_eq!(b["Errors"][0][f].as_str().unwrap().chars().count(), 500);
        }
    }

    #[test]
    fn not_found_still_has_an_error_item() {
        let b = ObError::not_found().body().unwrap();
        assert_eq!(b["Code"], "404 NotFound");
        assert_eq!(b["Errors"].as_array().unwrap().len(), 1);
    }
}
