//! Compact JWS / JWT sign and verify. Keys come only from the key set the
//! caller passes (the client's registered keys, the directory's keys):
//! `jwk`, `jku`, `x5c` and `x5u` in a header are never used (AUTH-11).

use serde_json::{Map, Value};

use crate::{Alg, JoseError, Jwks, SigningKey, b64, b64_decode};

#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub header: Value,
    pub claims: Value,
}

/// Signs `claims` with PS256 and the key's `kid`; `typ` as given.
pub fn sign_jwt(key: &SigningKey, typ: Option<&str>, claims: &Value) -> Result<String, JoseError> {
    let mut extra = Map::new();
    if let Some(t) = typ {
        extra.insert("typ".into(), Value::from(t));
    }
    sign_jwt_with_header(key, &extra, claims)
}

/// Like [`sign_jwt`] with further header parameters (`typ`, `cty`, …).
/// `alg` and `kid` always come from the key: extras naming them are
/// overridden, so a caller cannot produce a header that lies about either.
pub fn sign_jwt_with_header(
    key: &SigningKey,
    extra: &Map<String, Value>,
    claims: &Value,
) -> Result<String, JoseError> {
    let mut header = extra.clone();
    header.insert("alg".into(), Value::from("PS256"));
    header.insert("kid".into(), Value::from(key.kid()));
    let h = b64(Value::Object(header).to_string().as_bytes());
    let p = b64(claims.to_string().as_bytes());
    let input = format!("{h}.{p}");
    let sig = key.sign_ps256(input.as_bytes())?;
    Ok(format!("{input}.{}", b64(&sig)))
}

fn split(token: &str) -> Result<(&str, &str, &str), JoseError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok((h, p, s)),
        _ => Err(JoseError::Malformed),
    }
}

fn json_object(b64_part: &str) -> Result<Value, JoseError> {
    let bytes = b64_decode(b64_part)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| JoseError::Malformed)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(JoseError::Malformed)
    }
}

/// A compact JWS read but not yet verified: its header and claims decoded
/// once, for whichever step needs them first (the token endpoint reads the
/// assertion's `iss` to find the keys that verify it; decoding it again to
/// verify was 12,000 instructions a token, issue 15, fourteenth pass).
#[derive(Debug)]
pub struct Jws<'a> {
    token: &'a str,
    /// Length of the signing input, `header.payload`.
    signed: usize,
    header: Value,
    claims: Value,
}

impl<'a> Jws<'a> {
    pub fn parse(token: &'a str) -> Result<Self, JoseError> {
        let (h, p, _) = split(token)?;
        Ok(Jws {
            token,
            signed: h.len() + 1 + p.len(),
            header: json_object(h)?,
            claims: json_object(p)?,
        })
    }

    /// The claims as sent, for finding which key set applies. Never trust
    /// them on their own: [`Jws::verify`] gives the verified ones.
    pub fn unverified_claims(&self) -> &Value {
        &self.claims
    }

    /// Verifies the signature with a key from `jwks`, accepting only
    /// `allowed` algorithms, and gives the claims. Claim checks (`exp`,
    /// `aud`, …) are the caller's: their failures map to different protocol
    /// errors at each endpoint.
    pub fn verify(&self, jwks: &Jwks, allowed: &[Alg]) -> Result<&Value, JoseError> {
        let alg_name = self.header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = Alg::from_name(alg_name)
            .filter(|a| allowed.contains(a))
            .ok_or_else(|| JoseError::Algorithm(alg_name.to_string()))?;
        if self.header.get("crit").is_some() {
            // No critical extension is understood for plain JWTs (RFC 7515 §4.1.11).
            return Err(JoseError::Malformed);
        }
        let kid = self.header.get("kid").and_then(Value::as_str);
        let key = jwks.select_for_verify(kid, alg)?;
        let (input, sig) = self.token.split_at(self.signed);
        key.verify(input.as_bytes(), &b64_decode(&sig[1..])?)?;
        Ok(&self.claims)
    }
}

/// Header and claims without checking the signature — for reading which
/// key set applies (an SSA inside a registration request) before
/// verifying. Never trust the result on its own.
pub fn decode_unverified(token: &str) -> Result<(Value, Value), JoseError> {
    let jws = Jws::parse(token)?;
    Ok((jws.header, jws.claims))
}

/// Verifies a compact JWS with a key from `jwks`, accepting only `allowed`
/// algorithms ([`Jws::verify`]).
pub fn verify_jwt(token: &str, jwks: &Jwks, allowed: &[Alg]) -> Result<VerifiedJwt, JoseError> {
    let jws = Jws::parse(token)?;
    jws.verify(jwks, allowed)?;
    Ok(VerifiedJwt {
        header: jws.header,
        claims: jws.claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Jwk;

    fn key() -> SigningKey {
        SigningKey::generate(None).unwrap()
    }

    fn jwks(k: &SigningKey) -> Jwks {
        Jwks::from_keys(vec![k.jwk().clone()])
    }

    #[test]
    fn round_trip_and_tamper() {
        let k = key();
        let t = sign_jwt(&k, Some("JWT"), &serde_json::json!({"sub":"a","n":1})).unwrap();
        let v = verify_jwt(&t, &jwks(&k), &[Alg::PS256]).unwrap();
        assert_eq!(v.claims["sub"], "a");
        assert_eq!(v.header["kid"], k.kid());

        let (h, _, s) = split(&t).unwrap();
        let forged = format!("{h}.{}.{s}", b64(br#"{"sub":"b","n":1}"#));
        assert_eq!(
            verify_jwt(&forged, &jwks(&k), &[Alg::PS256]).unwrap_err(),
            JoseError::BadSignature
        );
    }

    #[test]
    fn other_key_unknown_kid_and_algorithms() {
        let k = key();
        let other = key();
        let t = sign_jwt(&k, None, &serde_json::json!({})).unwrap();
        assert!(matches!(
            verify_jwt(&t, &jwks(&other), &[Alg::PS256]),
            Err(JoseError::UnknownKid(_))
        ));
        // Same kid, wrong key material.
        let mut imposter = other.jwk().clone();
        imposter.kid = Some(k.kid().to_string());
        assert_eq!(
            verify_jwt(&t, &Jwks::from_keys(vec![imposter]), &[Alg::PS256]).unwrap_err(),
            JoseError::BadSignature
        );
        let (_, p, s) = split(&t).unwrap();
        for alg in ["none", "HS256", "RS256", "ES256"] {
            let h = b64(serde_json::json!({"alg": alg, "kid": k.kid()})
                .to_string()
                .as_bytes());
            let token = format!("{h}.{p}.{s}");
            assert_eq!(
                verify_jwt(&token, &jwks(&k), &[Alg::PS256]).unwrap_err(),
                JoseError::Algorithm(alg.into()),
                "{alg}"
            );
        }
        let unsigned = format!("{}.{p}.", b64(br#"{"alg":"none"}"#));
        assert!(verify_jwt(&unsigned, &jwks(&k), &[Alg::PS256]).is_err());
    }

    #[test]
    fn header_keys_are_ignored() {
        // A token carrying its own jwk must still be checked against the
        // registered set.
        let k = key();
        let attacker = key();
        let claims = b64(b"{}");
        let h = b64(
            serde_json::json!({"alg":"PS256","jwk": attacker.public_jwk()})
                .to_string()
                .as_bytes(),
        );
        let sig = attacker
            .sign_ps256(format!("{h}.{claims}").as_bytes())
            .unwrap();
        let t = format!("{h}.{claims}.{}", b64(&sig));
        assert!(verify_jwt(&t, &jwks(&k), &[Alg::PS256]).is_err());
    }

    #[test]
    fn verify_then_check_claims() {
        use crate::{ClaimChecks, ClaimError, check_claims};
        let k = key();
        let mut extra = Map::new();
        extra.insert("typ".into(), "JWT".into());
        extra.insert("alg".into(), "none".into());
        let claims = serde_json::json!({"iss":"c1","aud":"https://as","iat":1000,"exp":1300});
        let t = sign_jwt_with_header(&k, &extra, &claims).unwrap();
        let v = verify_jwt(&t, &jwks(&k), &[Alg::PS256]).unwrap();
        assert_eq!(v.header["alg"], "PS256");
        assert_eq!(v.header["typ"], "JWT");
        let checks = |now: i64, aud: &str| ClaimChecks {
            now,
            leeway_secs: 10,
            expected_iss: Some("c1".into()),
            expected_aud: Some(vec![aud.into()]),
            require_exp: true,
            ..Default::default()
        };
        assert_eq!(check_claims(&v.claims, &checks(1100, "https://as")), Ok(()));
        assert_eq!(
            check_claims(&v.claims, &checks(1310, "https://as")),
            Err(ClaimError::Expired)
        );
        assert_eq!(
            check_claims(&v.claims, &checks(1100, "https://other")),
            Err(ClaimError::WrongAudience)
        );
    }

    #[test]
    fn rs256_signature_by_the_right_key_is_still_refused() {
        // A genuine RSASSA-PKCS1-v1_5 signature by the registered key: only
        // the alg check stands between it and acceptance (FAPI: no RS256).
        let k = key();
        let h = b64(serde_json::json!({"alg":"RS256","kid":k.kid()})
            .to_string()
            .as_bytes());
        let p = b64(b"{}");
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&b64_decode_std(&k.to_pkcs8_pem().unwrap()))
            .unwrap();
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            format!("{h}.{p}").as_bytes(),
            &mut sig,
        )
        .unwrap();
        let t = format!("{h}.{p}.{}", b64(&sig));
        assert_eq!(
            verify_jwt(&t, &jwks(&k), &[Alg::PS256]).unwrap_err(),
            JoseError::Algorithm("RS256".into())
        );
        // And relabelling it PS256 does not make it verify.
        let h2 = b64(serde_json::json!({"alg":"PS256","kid":k.kid()})
            .to_string()
            .as_bytes());
        let t2 = format!("{h2}.{p}.{}", b64(&sig));
        assert_eq!(
            verify_jwt(&t2, &jwks(&k), &[Alg::PS256]).unwrap_err(),
            JoseError::BadSignature
        );
    }

    fn b64_decode_std(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }

    #[test]
    fn missing_kid_uses_the_only_key() {
        let k = key();
        let h = b64(br#"{"alg":"PS256"}"#);
        let p = b64(b"{}");
        let sig = k.sign_ps256(format!("{h}.{p}").as_bytes()).unwrap();
        let t = format!("{h}.{p}.{}", b64(&sig));
        assert!(verify_jwt(&t, &jwks(&k), &[Alg::PS256]).is_ok());
        let two = Jwks::from_keys(vec![k.jwk().clone(), key().jwk().clone()]);
        assert_eq!(
            verify_jwt(&t, &two, &[Alg::PS256]).unwrap_err(),
            JoseError::AmbiguousKey
        );
    }

    #[test]
    fn pem_round_trip_keeps_kid_and_key() {
        let k = key();
        let pem = k.to_pkcs8_pem().unwrap();
        let back = SigningKey::from_pkcs8_pem(&pem, None).unwrap();
        assert_eq!(back.kid(), k.kid());
        let t = sign_jwt(&back, None, &serde_json::json!({})).unwrap();
        assert!(verify_jwt(&t, &jwks(&k), &[Alg::PS256]).is_ok());
        let jwk: Jwk = serde_json::from_value(k.public_jwk()).unwrap();
        assert_eq!(jwk.alg.as_deref(), Some("PS256"));
    }
}
