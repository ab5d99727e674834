//! Registered-claim checks (`exp`, `nbf`, `iat`, `iss`, `aud`) for a JWT
//! whose signature has already been verified.
//!
//! Kept apart from `verify_jwt` because each endpoint maps a failing claim
//! to its own protocol error (`invalid_request_object`,
//! `invalid_client_metadata`, `invalid_software_statement`, …) and some
//! need rules of their own (DCR-9's 60-minute `exp − iat`, the FAPI request
//! object's `nbf` window, AUTH-19). The error names the claim that failed
//! so the caller can say which one in its `error_description`.

use serde_json::Value;

/// What to check. `Default` checks nothing but the types of the time claims
/// that are present, with no leeway; set the fields each endpoint needs.
#[derive(Debug, Clone, Default)]
pub struct ClaimChecks {
    /// Seconds since the epoch.
    pub now: i64,
    /// Clock skew allowed on every time comparison (AUTH-5: at most 60 s).
    pub leeway_secs: i64,
    /// `iss` must equal this.
    pub expected_iss: Option<String>,
    /// `aud` (a string or an array of strings) must contain one of these.
    pub expected_aud: Option<Vec<String>>,
    pub require_exp: bool,
    pub require_iat: bool,
    pub require_nbf: bool,
    /// Upper bound on `exp − iat` (or `exp − nbf` when there is no `iat`;
    /// both when both are present). Needs `exp`; a token without one fails
    /// with `Missing("exp")`.
    pub max_lifetime_secs: Option<i64>,
    /// Oldest acceptable `iat`/`nbf`: `now − max_age_secs − leeway`.
    pub max_age_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("the claims are not a JSON object")]
    NotAnObject,
    #[error("claim {0} is missing")]
    Missing(&'static str),
    /// Present but of the wrong JSON type (a time that is not an integer,
    /// an `aud` that is neither a string nor an array of strings, …).
    #[error("claim {0} has the wrong type")]
    WrongType(&'static str),
    #[error("the token has expired (exp)")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was issued in the future (iat)")]
    IssuedInFuture,
    /// `iat` or `nbf` older than `max_age_secs`.
    #[error("claim {0} is too old")]
    TooOld(&'static str),
    #[error("the token's lifetime is too long (exp)")]
    LifetimeTooLong,
    #[error("wrong issuer (iss)")]
    WrongIssuer,
    #[error("wrong audience (aud)")]
    WrongAudience,
}

impl ClaimError {
    /// The claim that failed, for error descriptions.
    pub fn claim(&self) -> &'static str {
        match self {
            Self::NotAnObject => "",
            Self::Missing(c) | Self::WrongType(c) | Self::TooOld(c) => c,
            Self::Expired | Self::LifetimeTooLong => "exp",
            Self::NotYetValid => "nbf",
            Self::IssuedInFuture => "iat",
            Self::WrongIssuer => "iss",
            Self::WrongAudience => "aud",
        }
    }
}

/// A NumericDate claim: absent → `None`; present, it must be an integer.
/// Fractional NumericDates are legal JSON but nobody in OB sends them, and
/// refusing them avoids float-rounding arguments at the boundaries.
fn time(
    claims: &serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, ClaimError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(ClaimError::WrongType(name)),
    }
}

/// Checks `claims` against `c`; the first failure wins, in the order
/// types/presence, `iss`, `aud`, `exp`, `nbf`, `iat`, lifetime.
pub fn check_claims(claims: &Value, c: &ClaimChecks) -> Result<(), ClaimError> {
    let obj = claims.as_object().ok_or(ClaimError::NotAnObject)?;
    let exp = time(obj, "exp")?;
    let nbf = time(obj, "nbf")?;
    let iat = time(obj, "iat")?;
    let needs_exp = c.require_exp || c.max_lifetime_secs.is_some();
    if needs_exp && exp.is_none() {
        return Err(ClaimError::Missing("exp"));
    }
    if c.require_nbf && nbf.is_none() {
        return Err(ClaimError::Missing("nbf"));
    }
    if c.require_iat && iat.is_none() {
        return Err(ClaimError::Missing("iat"));
    }

    if let Some(want) = &c.expected_iss {
        match obj.get("iss") {
            None => return Err(ClaimError::Missing("iss")),
            Some(Value::String(s)) if s == want => {}
            Some(Value::String(_)) => return Err(ClaimError::WrongIssuer),
            Some(_) => return Err(ClaimError::WrongType("iss")),
        }
    }
    if let Some(want) = &c.expected_aud {
        let aud: Vec<&str> = match obj.get("aud") {
            None => return Err(ClaimError::Missing("aud")),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a
                .iter()
                .map(Value::as_str)
                .collect::<Option<Vec<_>>>()
                .ok_or(ClaimError::WrongType("aud"))?,
            Some(_) => return Err(ClaimError::WrongType("aud")),
        };
        if !aud.iter().any(|a| want.iter().any(|w| w == a)) {
            return Err(ClaimError::WrongAudience);
        }
    }

    // saturating_*: the values are attacker-chosen i64s.
    let now = c.now;
    let leeway = c.leeway_secs.max(0);
    if let Some(exp) = exp
        && now.saturating_sub(leeway) >= exp
    {
        // RFC 7519 §4.1.4: "on or after" exp the token must be rejected.
        return Err(ClaimError::Expired);
    }
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(leeway)
    {
        return Err(ClaimError::NotYetValid);
    }
    if let Some(iat) = iat
        && iat > now.saturating_add(leeway)
    {
        return Err(ClaimError::IssuedInFuture);
    }
    if let Some(max_age) = c.max_age_secs {
        let oldest = now.saturating_sub(max_age).saturating_sub(leeway);
        if iat.is_some_and(|t| t < oldest) {
            return Err(ClaimError::TooOld("iat"));
        }
        if nbf.is_some_and(|t| t < oldest) {
            return Err(ClaimError::TooOld("nbf"));
        }
    }
    if let (Some(max), Some(exp)) = (c.max_lifetime_secs, exp) {
        let too_long = |start: i64| exp.saturating_sub(start) > max;
        if iat.is_some_and(too_long) || nbf.is_some_and(too_long) {
            return Err(ClaimError::LifetimeTooLong);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checks() -> ClaimChecks {
        ClaimChecks {
            now: 10_000,
            leeway_secs: 60,
            expected_iss: Some("client-1".into()),
            expected_aud: Some(vec!["https://as.example".into(), "org1".into()]),
            require_exp: true,
            require_iat: true,
            require_nbf: false,
            max_lifetime_secs: Some(3600),
            max_age_secs: Some(3600),
        }
    }

    fn good() -> Value {
        json!({"iss":"client-1","aud":"org1","iat":9_990,"exp":10_300})
    }

    fn with(k: &str, v: Value) -> Value {
        let mut c = good();
        c[k] = v;
        c
    }

    fn without(k: &str) -> Value {
        let mut c = good();
        c.as_object_mut().unwrap().remove(k);
        c
    }

    #[test]
    fn accepts_good_claims_and_aud_arrays() {
        assert_eq!(check_claims(&good(), &checks()), Ok(()));
        let arr = with("aud", json!(["x", "https://as.example"]));
        assert_eq!(check_claims(&arr, &checks()), Ok(()));
        // Nothing required, nothing present: fine.
        assert_eq!(check_claims(&json!({}), &ClaimChecks::default()), Ok(()));
    }

    #[test]
    fn each_failure_names_its_claim() {
        let c = checks();
        let cases: Vec<(Value, ClaimError)> = vec![
            (json!("x"), ClaimError::NotAnObject),
            (without("exp"), ClaimError::Missing("exp")),
            (without("iat"), ClaimError::Missing("iat")),
            (without("iss"), ClaimError::Missing("iss")),
            (without("aud"), ClaimError::Missing("aud")),
            (with("iss", json!("client-2")), ClaimError::WrongIssuer),
            (with("iss", json!(1)), ClaimError::WrongType("iss")),
            (with("aud", json!("other")), ClaimError::WrongAudience),
            (with("aud", json!(["a", "b"])), ClaimError::WrongAudience),
            (
                with("aud", json!(["org1", 5])),
                ClaimError::WrongType("aud"),
            ),
            (with("exp", json!("10300")), ClaimError::WrongType("exp")),
            (with("exp", json!(10_300.5)), ClaimError::WrongType("exp")),
            // exp is exclusive: at now − leeway exactly, it has expired.
            (with("exp", json!(9_940)), ClaimError::Expired),
            (with("nbf", json!(10_061)), ClaimError::NotYetValid),
            (with("iat", json!(10_061)), ClaimError::IssuedInFuture),
            (with("iat", json!(6_339)), ClaimError::TooOld("iat")),
            (with("nbf", json!(6_339)), ClaimError::TooOld("nbf")),
            (with("exp", json!(13_591)), ClaimError::LifetimeTooLong),
            (with("exp", json!(i64::MIN)), ClaimError::Expired),
            (with("iat", json!(i64::MAX)), ClaimError::IssuedInFuture),
        ];
        for (claims, want) in cases {
            assert_eq!(check_claims(&claims, &c), Err(want.clone()), "{claims}");
        }
        assert_eq!(ClaimError::Expired.claim(), "exp");
        assert_eq!(ClaimError::WrongAudience.claim(), "aud");
        assert_eq!(ClaimError::Missing("nbf").claim(), "nbf");
    }

    #[test]
    fn leeway_boundaries() {
        let c = checks();
        // Inside the 60 s leeway on both sides.
        assert_eq!(check_claims(&with("exp", json!(9_941)), &c), Ok(()));
        assert_eq!(check_claims(&with("iat", json!(10_060)), &c), Ok(()));
        assert_eq!(check_claims(&with("nbf", json!(10_060)), &c), Ok(()));
        // Lifetime exactly at the limit.
        assert_eq!(check_claims(&with("exp", json!(13_590)), &c), Ok(()));
        let strict = ClaimChecks {
            leeway_secs: 0,
            ..checks()
        };
        assert_eq!(
            check_claims(&with("exp", json!(10_000)), &strict),
            Err(ClaimError::Expired)
        );
        let need_nbf = ClaimChecks {
            require_nbf: true,
            ..checks()
        };
        assert_eq!(
            check_claims(&good(), &need_nbf),
            Err(ClaimError::Missing("nbf"))
        );
    }
}
