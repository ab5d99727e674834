//! Checks every resource endpoint shares: grant and scope (COMMON-43,
//! COMMON-44), media types (COMMON-20), FAPI headers (COMMON-14..17),
//! date parsing (COMMON-11, COMMON-12).

use std::sync::Arc;

use aspen_auth::{BoundToken, GrantKind};
use aspen_http::{Forbidden, ObError, ObErrorCode};
use aspen_store::consent::ConsentRecord;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat, Timelike, Utc,
};

/// COMMON-44: the wrong grant type is a 401; COMMON-38: the wrong scope a 403.
pub fn require(token: &BoundToken, grant: GrantKind, scope: &str) -> Result<(), ObError> {
    if token.grant != grant {
        return Err(ObError::unauthorized());
    }
    if !token.has_scope(scope) {
        return Err(ObError::forbidden(
            Forbidden::Scope,
            format!("the access token does not carry the {scope:?} scope"),
        ));
    }
    Ok(())
}

/// `Accept` must allow JSON in UTF-8 (COMMON-20).
pub fn check_accept(headers: &HeaderMap) -> Result<(), ObError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let ok = accept.split(',').any(|part| {
        let mut bits = part.split(';').map(str::trim);
        let media = bits.next().unwrap_or("").to_ascii_lowercase();
        let media_ok = matches!(media.as_str(), "application/json" | "application/*" | "*/*");
        let charset_ok = bits.all(|p| {
            let p = p.to_ascii_lowercase();
            !p.starts_with("charset=") || p == "charset=utf-8"
        });
        media_ok && charset_ok
    });
    if ok {
        Ok(())
    } else {
        Err(ObError::not_acceptable())
    }
}

/// Request bodies are `application/json` (any charset parameter naming
/// UTF-8) (COMMON-20).
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ObError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut bits = ct.split(';').map(str::trim);
    let media = bits.next().unwrap_or("").to_ascii_lowercase();
    let charset_ok = bits.all(|p| {
        let p = p.to_ascii_lowercase();
        !p.starts_with("charset=") || p == "charset=utf-8"
    });
    if media == "application/json" && charset_ok {
        Ok(())
    } else {
        Err(ObError::unsupported_media_type())
    }
}

/// COMMON-16: malformed optional FAPI headers are 400 `Header.Invalid`.
pub fn check_fapi_headers(headers: &HeaderMap) -> Result<(), ObError> {
    for name in ["x-fapi-auth-date", "x-fapi-customer-last-logged-time"] {
        if let Some(v) = headers.get(name) {
            let ok = v.to_str().ok().is_some_and(valid_imf_fixdate);
            if !ok {
                return Err(ObError::bad_request(
                    ObErrorCode::HeaderInvalid,
                    format!("{name} must be an RFC 7231 IMF-fixdate"),
                    Some(name),
                ));
            }
        }
    }
    if let Some(v) = headers.get("x-fapi-customer-ip-address") {
        let ok = v
            .to_str()
            .ok()
            .is_some_and(|s| s.trim().parse::<std::net::IpAddr>().is_ok());
        if !ok {
            return Err(ObError::bad_request(
                ObErrorCode::HeaderInvalid,
                "x-fapi-customer-ip-address must be an IPv4 or IPv6 address",
                Some("x-fapi-customer-ip-address"),
            ));
        }
    }
    Ok(())
}

fn valid_imf_fixdate(s: &str) -> bool {
    // `Sun, 10 Sep 2017 19:43:31 GMT`; the OpenAPI pattern also allows UTC.
    let s = s.trim();
    let normalised = s.strip_suffix(" UTC").map(|x| format!("{x} GMT"));
    let s = normalised.as_deref().unwrap_or(s);
    // IMF-fixdate is case-sensitive and fixed-width (RFC 7231 §7.1.1.1):
    // the date must read back exactly as it was written.
    DateTime::parse_from_rfc2822(s)
        .is_ok_and(|d| d.format("%a, %d %b %Y %H:%M:%S GMT").to_string() == s)
}

/// Request date-times in every ISO 8601 form OB allows (COMMON-11): with
/// or without seconds and fractions, `Z` or an offset.
pub fn parse_request_datetime(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d);
    }
    for fmt in ["%Y-%m-%dT%H:%M%:z", "%Y-%m-%dT%H:%M%#z"] {
        if let Ok(d) = DateTime::parse_from_str(s, fmt) {
            return Some(d);
        }
    }
    if let Some(base) = s.strip_suffix('Z') {
        for fmt in ["%Y-%m-%dT%H:%M"] {
            if let Ok(n) = NaiveDateTime::parse_from_str(base, fmt) {
                return Some(n.and_utc().fixed_offset());
            }
        }
    }
    None
}

/// Query-parameter date-times: no timezone; one if sent is ignored
/// (COMMON-11, COMMON-50).
pub fn parse_query_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Some(d) = parse_request_datetime(s) {
        return Some(d.naive_local().and_utc());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(n.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| n.and_utc())
}

/// Response date-times always carry a timezone (COMMON-12).
pub fn format_datetime(d: &DateTime<FixedOffset>) -> String {
    d.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn format_ms(ms: i64) -> String {
    MsDateTime(ms).to_string()
}

/// Unix milliseconds as a response date-time to the second, in UTC
/// (`2026-11-24T10:00:00Z`).
#[derive(Debug, Clone, Copy)]
pub struct MsDateTime(pub i64);

impl std::fmt::Display for MsDateTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match DateTime::from_timestamp_millis(self.0) {
            // What to_rfc3339_opts writes for these years, without its
            // String.
            // Digits into a template: `write!` with widths took 2,300
            // instructions a date (issue 15, twenty-fourth pass).
            Some(d) if (0..=9999).contains(&d.year()) => {
                let mut out = *b"0000-00-00T00:00:00Z";
                let mut put = |at: usize, width: usize, mut n: u32| {
                    for b in out[at..at + width].iter_mut().rev() {
                        *b = b'0' + (n % 10) as u8;
                        n /= 10;
                    }
                };
                put(0, 4, d.year().unsigned_abs());
                put(5, 2, d.month());
                put(8, 2, d.day());
                put(11, 2, d.hour());
                put(14, 2, d.minute());
                put(17, 2, d.second());
                // Only ASCII digits were written into an ASCII template.
                f.write_str(std::str::from_utf8(&out).map_err(|_| std::fmt::Error)?)
            }
            Some(d) => f.write_str(&d.to_rfc3339_opts(SecondsFormat::Secs, true)),
            None => Ok(()),
        }
    }
}

/// The consent `id`: as read with the token when the token names it (one
/// statement for both, issue 15), else from the store.
pub async fn consent(
    store: &dyn aspen_store::Store,
    token: &BoundToken,
    id: &str,
) -> Result<Option<Arc<ConsentRecord>>, ObError> {
    match token.consent_read(id) {
        Some(c) => Ok(Some(c.clone())),
        None => Ok(store
            .consent(id)
            .await
            .map_err(ObError::internal)?
            .map(Arc::new)),
    }
}

/// The consent named in a path or body, if it is of this kind (else 400
/// `Resource.NotFound`) and the caller's (else 403), COMMON-34.
pub async fn owned_consent(
    store: &dyn aspen_store::Store,
    kind: &str,
    token: &BoundToken,
    id: &str,
    path: &str,
) -> Result<Arc<ConsentRecord>, ObError> {
    let c = consent(store, token, id)
        .await?
        .filter(|c| c.kind == kind && !c.deleted)
        .ok_or_else(|| {
            ObError::bad_request(ObErrorCode::ResourceNotFound, "no such consent", Some(path))
        })?;
    if c.client_id != token.client_id {
        return Err(ObError::forbidden(
            Forbidden::OtherTpp,
            "the consent belongs to another TPP",
        ));
    }
    Ok(c)
}

pub fn created(body: serde_json::Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    (StatusCode::CREATED, aspen_http::Json(body)).into_response()
}

/// A request body as JSON, or 400 `UK.OBIE.Resource.InvalidFormat`.
pub fn parse_json(body: &[u8]) -> Result<serde_json::Value, ObError> {
    serde_json::from_slice(body).map_err(|_| {
        ObError::bad_request(
            ObErrorCode::ResourceInvalidFormat,
            "the body is not valid JSON",
            None,
        )
    })
}

/// A core failure as the TPP sees it: 503 with `Retry-After` while the
/// core cannot answer; anything else is the bank's fault, a 500 with a body.
pub fn core_error(e: aspen_core::CoreError) -> ObError {
    match e {
        aspen_core::CoreError::Unavailable {
            detail,
            retry_after,
        } => ObError::unavailable(retry_after.as_secs(), detail),
        other => ObError::internal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_variants_are_accepted() {
        for s in [
            "2017-04-05T10:43:07+00:00",
            "2017-04-05T10:43Z",
            "2017-04-05T10:43:07.123+01:00",
            "2017-04-05T10:43:07Z",
            "2017-04-05T10:43+01:00",
        ] {
            assert!(parse_request_datetime(s).is_some(), "{s}");
        }
        assert!(parse_request_datetime("2017-13-05T10:43Z").is_none());
        assert!(parse_request_datetime("yesterday").is_none());
        for s in [
            "2017-04-05T10:43:07",
            "2017-04-05T10:43:07.999",
            "2017-04-05",
            "2017-04-05T10:43:07+05:00",
        ] {
            assert!(parse_query_datetime(s).is_some(), "{s}");
        }
    }

    #[test]
    fn a_date_time_is_written_as_chrono_writes_it() {
        let year_0 = -62_167_219_200_000;
        let year_9999_end = 253_402_300_799_999;
        for ms in [
            0,
            -1,
            1,
            1_796_513_472_000,
            1_796_513_472_999,
            951_782_400_000, // 2000-02-29
            year_0,
            year_0 - 1,
            year_9999_end,
            year_9999_end + 1,
            i64::MIN,
            i64::MAX,
        ]
        .into_iter()
        .chain((0..2_000).map(|i| i * 7_919_999_999_999 % year_9999_end))
        {
            let want = DateTime::from_timestamp_millis(ms)
                .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default();
            assert_eq!(format_ms(ms), want, "{ms}");
        }
    }

    #[test]
    fn imf_fixdate() {
        assert!(valid_imf_fixdate("Sun, 10 Sep 2017 19:43:31 GMT"));
        assert!(valid_imf_fixdate("Sun, 10 Sep 2017 19:43:31 UTC"));
        assert!(!valid_imf_fixdate("2017-09-10T19:43:31Z"));
        assert!(!valid_imf_fixdate("Sun, 10 Sep 2017"));
        // RFC 7231 names are case-sensitive (schemathesis found this).
        assert!(!valid_imf_fixdate("sun, 10 SEP 2017 19:43:31 GMT"));
        assert!(!valid_imf_fixdate("Sun, 10 Sep 2017 19:43:31 gmt"));
    }
}
