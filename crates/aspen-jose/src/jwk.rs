//! RSA JWKs and key sets (AUTH-9, AUTH-11, AUTH-12).

use aws_lc_rs::digest;
use aws_lc_rs::rsa::PublicKeyComponents;
use std::sync::Arc;

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PSS_2048_8192_SHA256};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Alg, JoseError, b64, b64_decode};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

impl Jwk {
    /// RFC 7638 thumbprint of an RSA key.
    pub fn rsa_thumbprint(n: &str, e: &str) -> String {
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        b64(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// Whether this key may verify `alg`: an RSA signing key of at least
    /// 2048 bits whose own `alg`, if stated, agrees.
    fn usable_for(&self, alg: Alg) -> bool {
        let alg_ok = self.alg.as_deref().is_none_or(|a| a == alg.name());
        let use_ok = self.use_.as_deref().is_none_or(|u| u == "sig");
        let size_ok = self
            .n
            .as_deref()
            .and_then(|n| b64_decode(n).ok())
            .is_some_and(|n| n.iter().skip_while(|b| **b == 0).count() >= 256);
        self.kty == "RSA" && alg_ok && use_ok && size_ok && self.e.is_some()
    }

    /// Parses the public key once for `alg`, so each verification skips
    /// decoding `n`/`e` and building the RSA key. `None` if the key is not
    /// usable for `alg` at all.
    fn parse_for(&self, alg: Alg) -> Option<Arc<ParsedPublicKey>> {
        if !self.usable_for(alg) {
            return None;
        }
        let n = b64_decode(self.n.as_deref()?).ok()?;
        let e = b64_decode(self.e.as_deref()?).ok()?;
        let params = match alg {
            Alg::PS256 => &RSA_PSS_2048_8192_SHA256,
        };
        PublicKeyComponents {
            n: n.as_slice(),
            e: e.as_slice(),
        }
        .to_parsed_public_key(params)
        .ok()
        .map(Arc::new)
    }
}

/// A key that passed [`Jwk::usable_for`] and parsed: what verification uses.
#[derive(Clone)]
pub(crate) struct VerifyKey<'a> {
    pub(crate) jwk: &'a Jwk,
    parsed: &'a ParsedPublicKey,
}

impl VerifyKey<'_> {
    pub(crate) fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), JoseError> {
        self.parsed
            .verify_sig(msg, sig)
            .map_err(|_| JoseError::BadSignature)
    }
}

/// A key set. Each key is parsed for PS256 once, when the set is built,
/// because the same TPP/directory set verifies many signatures (it is
/// cached by the server) and parsing costs as much as a third of an RSA
/// verification.
#[derive(Clone, Default)]
pub struct Jwks {
    keys: Vec<Jwk>,
    /// Parallel to `keys`; `None` for keys that cannot verify PS256.
    parsed: Vec<Option<Arc<ParsedPublicKey>>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("keys", &self.keys).finish()
    }
}

/// Two sets are equal when they publish the same keys (the parsed cache is
/// derived from them).
impl PartialEq for Jwks {
    fn eq(&self, other: &Self) -> bool {
        self.keys == other.keys
    }
}
impl Eq for Jwks {}

impl Jwks {
    /// Parses `{"keys":[…]}`. Keys of other types (EC, oct, encryption
    /// keys) are kept out: aspen verifies PS256 only.
    pub fn from_value(v: &Value) -> Result<Self, JoseError> {
        let arr = v
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JoseError::Key("a JWKS needs a \"keys\" array".into()))?;
        let mut keys = Vec::new();
        for k in arr {
            if let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone())
                && jwk.usable_for(Alg::PS256)
            {
                keys.push(jwk);
            }
        }
        let set = Self::from_keys(keys);
        if set.parsed.iter().all(Option::is_none) {
            return Err(JoseError::Key(
                "the JWKS holds no RSA signing key of at least 2048 bits".into(),
            ));
        }
        Ok(set)
    }

    /// A set of exactly these keys; keys unfit for PS256 are kept (they are
    /// published as given) but never selected for verification.
    pub fn from_keys(keys: Vec<Jwk>) -> Self {
        let parsed = keys.iter().map(|k| k.parse_for(Alg::PS256)).collect();
        Self { keys, parsed }
    }

    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    pub fn to_value(&self) -> Value {
        serde_json::json!({ "keys": self.keys })
    }

    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key a JWS header selects (AUTH-12): its `kid`, or — without a
    /// `kid` — the only candidate key.
    pub fn select(&self, kid: Option<&str>, alg: Alg) -> Result<&Jwk, JoseError> {
        self.select_for_verify(kid, alg).map(|k| k.jwk)
    }

    pub(crate) fn select_for_verify(
        &self,
        kid: Option<&str>,
        alg: Alg,
    ) -> Result<VerifyKey<'_>, JoseError> {
        // Only PS256 exists, so the cache built for it serves every `alg`.
        let Alg::PS256 = alg;
        let mut candidates = self
            .keys
            .iter()
            .zip(&self.parsed)
            .filter_map(|(jwk, p)| p.as_deref().map(|parsed| VerifyKey { jwk, parsed }));
        match kid {
            Some(kid) => candidates
                .find(|k| k.jwk.kid.as_deref() == Some(kid))
                .ok_or_else(|| JoseError::UnknownKid(kid.to_string())),
            None => match (candidates.next(), candidates.next()) {
                (Some(k), None) => Ok(k),
                (None, _) => Err(JoseError::UnknownKid(String::new())),
                _ => Err(JoseError::AmbiguousKey),
            },
        }
    }
}

/// Serialises as `{"keys":[…]}`, the `jwks_uri` document (AUTH-9).
impl Serialize for Jwks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Doc<'a> {
            keys: &'a [Jwk],
        }
        Doc { keys: &self.keys }.serialize(s)
    }
}

/// Deserialises with the same filtering as [`Jwks::from_value`].
impl<'de> Deserialize<'de> for Jwks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Jwks::from_value(&v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_thumbprint() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            Jwk::rsa_thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn small_and_non_rsa_keys_are_dropped() {
        let v = serde_json::json!({"keys":[
            {"kty":"oct","k":"c2VjcmV0"},
            {"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"}
        ]});
        assert!(Jwks::from_value(&v).is_err());
    }

    #[test]
    fn serde_round_trip_filters_and_finds() {
        let k = crate::SigningKey::generate(Some("k1".into())).unwrap();
        let doc = serde_json::json!({"keys":[
            {"kty":"EC","crv":"P-256","kid":"ec","x":"AA","y":"AA"},
            {"kty":"RSA","kid":"enc","use":"enc","n":k.jwk().n,"e":"AQAB"},
            {"kty":"RSA","kid":"rs","alg":"RS256","n":k.jwk().n,"e":"AQAB"},
            k.public_jwk(),
        ]});
        let jwks: Jwks = serde_json::from_value(doc).unwrap();
        assert_eq!(jwks.keys().len(), 1);
        assert!(jwks.find("k1").is_some());
        assert!(jwks.find("ec").is_none() && jwks.find("enc").is_none());
        let out = serde_json::to_value(&jwks).unwrap();
        assert_eq!(out, jwks.to_value());
        assert_eq!(out["keys"][0]["kid"], "k1");
        assert_eq!(out["keys"][0]["use"], "sig");
        assert_eq!(out["keys"][0]["alg"], "PS256");
        assert!(out["keys"][0].get("d").is_none());
        assert!(serde_json::from_value::<Jwks>(serde_json::json!({"keys":[]})).is_err());
    }
}
