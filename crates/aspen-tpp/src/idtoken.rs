//! The checks a FAPI client makes on the bank's ID tokens (OIDC Core
//! §3.3.2.12 for the hybrid flow, FAPI Part 2 §5.2.2.1 for `s_hash`): the
//! hybrid-flow token is the detached signature over `code` and `state`, so
//! an attacker who swaps the code in the redirect is caught here.

use aspen_jose::{Alg, ClaimChecks, Jwks};
use serde_json::Value;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("its signature does not verify with the bank's /jwks ({0})")]
    Signature(aspen_jose::JoseError),
    #[error("claim {0}: {1}")]
    Claim(&'static str, aspen_jose::ClaimError),
    #[error("nonce is not the one this client sent")]
    Nonce,
    #[error("c_hash does not match the authorisation code")]
    CHash,
    #[error("s_hash does not match the state")]
    SHash,
    #[error("openbanking_intent_id is not the consent that was authorised")]
    Intent,
    #[error("{0} is missing")]
    Missing(&'static str),
}

#[derive(Debug, Clone, Default)]
pub struct IdTokenExpectations<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub now: i64,
    /// Required when given; the token endpoint may omit it on a refresh.
    pub nonce: Option<&'a str>,
    /// The code beside it in the redirect (hybrid flow): `c_hash` required.
    pub code: Option<&'a str>,
    /// The state beside it in the redirect: `s_hash` required.
    pub state: Option<&'a str>,
    pub consent_id: Option<&'a str>,
}

/// Verifies the token and its claims; the claims.
pub fn check_id_token(
    token: &str,
    jwks: &Jwks,
    e: &IdTokenExpectations<'_>,
) -> Result<Value, IdTokenError> {
    let v = aspen_jose::verify_jwt(token, jwks, &[Alg::PS256]).map_err(IdTokenError::Signature)?;
    let claims = v.claims;
    aspen_jose::check_claims(
        &claims,
        &ClaimChecks {
            now: e.now,
            leeway_secs: 60,
            expected_iss: Some(e.issuer.to_string()),
            expected_aud: Some(vec![e.client_id.to_string()]),
            require_exp: true,
            require_iat: true,
            ..ClaimChecks::default()
        },
    )
    .map_err(|c| IdTokenError::Claim(c.claim(), c))?;
    let claim = |name: &'static str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .ok_or(IdTokenError::Missing(name))
    };
    if let Some(n) = e.nonce
        && !aspen_jose::constant_time_eq(claim("nonce")?, n)
    {
        return Err(IdTokenError::Nonce);
    }
    if let Some(code) = e.code
        && claim("c_hash")? != aspen_jose::half_hash(code)
    {
        return Err(IdTokenError::CHash);
    }
    if let Some(state) = e.state
        && claim("s_hash")? != aspen_jose::half_hash(state)
    {
        return Err(IdTokenError::SHash);
    }
    if let Some(c) = e.consent_id
        && claim("openbanking_intent_id")? != c
    {
        return Err(IdTokenError::Intent);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aspen_jose::SigningKey;
    use serde_json::json;

    const ISS: &str = "https://bank.example";

    fn claims(now: i64) -> Value {
        json!({
            "iss": ISS, "aud": "client-1", "sub": "intent-1", "iat": now, "exp": now + 300,
            "nonce": "n-1", "c_hash": aspen_jose::half_hash("code-1"),
            "s_hash": aspen_jose::half_hash("state-1"), "openbanking_intent_id": "intent-1",
        })
    }

    fn expect(now: i64) -> IdTokenExpectations<'static> {
        IdTokenExpectations {
            issuer: ISS,
            client_id: "client-1",
            now,
            nonce: Some("n-1"),
            code: Some("code-1"),
            state: Some("state-1"),
            consent_id: Some("intent-1"),
        }
    }

    #[test]
    fn each_check_refuses_its_own_fault() {
        let key = SigningKey::generate(None).unwrap();
        let jwks = Jwks::from_keys(vec![key.jwk().clone()]);
        let now = 1_700_000_000;
        let good = aspen_jose::sign_jwt(&key, None, &claims(now)).unwrap();
        assert_eq!(
            check_id_token(&good, &jwks, &expect(now)).unwrap()["sub"],
            "intent-1"
        );

        let other = SigningKey::generate(Some(key.kid().to_string())).unwrap();
        let forged = aspen_jose::sign_jwt(&other, None, &claims(now)).unwrap();
        assert!(matches!(
            check_id_token(&forged, &jwks, &expect(now)),
            Err(IdTokenError::Signature(_))
        ));

        let cases: Vec<(&str, Value, IdTokenError)> = vec![
            ("nonce", json!("n-2"), IdTokenError::Nonce),
            ("c_hash", json!("AAAA"), IdTokenError::CHash),
            ("s_hash", json!("AAAA"), IdTokenError::SHash),
            (
                "openbanking_intent_id",
                json!("intent-2"),
                IdTokenError::Intent,
            ),
            (
                "iss",
                json!("https://evil.example"),
                IdTokenError::Claim("iss", aspen_jose::ClaimError::WrongIssuer),
            ),
            (
                "aud",
                json!("client-2"),
                IdTokenError::Claim("aud", aspen_jose::ClaimError::WrongAudience),
            ),
            (
                "exp",
                json!(now - 120),
                IdTokenError::Claim("exp", aspen_jose::ClaimError::Expired),
            ),
        ];
        for (name, value, want) in cases {
            let mut c = claims(now);
            c[name] = value;
            let t = aspen_jose::sign_jwt(&key, None, &c).unwrap();
            assert_eq!(check_id_token(&t, &jwks, &expect(now)), Err(want), "{name}");
        }
        for name in ["nonce", "c_hash", "s_hash", "openbanking_intent_id"] {
            let mut c = claims(now);
            c.as_object_mut().unwrap().remove(name);
            let t = aspen_jose::sign_jwt(&key, None, &c).unwrap();
            assert_eq!(
                check_id_token(&t, &jwks, &expect(now)),
                Err(IdTokenError::Missing(name)),
                "{name}"
            );
        }
        // At the token endpoint there is no code or state to bind.
        let mut c = claims(now);
        c.as_object_mut().unwrap().remove("c_hash");
        c.as_object_mut().unwrap().remove("s_hash");
        let t = aspen_jose::sign_jwt(&key, None, &c).unwrap();
        let e = IdTokenExpectations {
            code: None,
            state: None,
            ..expect(now)
        };
        assert!(check_id_token(&t, &jwks, &e).is_ok());
    }
}
