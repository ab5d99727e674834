//! RSA JWKs and key sets (AUTH-9, AUTH-11, AUTH-12).

use aws_lc_rs::digest;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256;
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

    pub(crate) fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> Result<(), JoseError> {
        let n = b64_decode(self.n.as_deref().ok_or(JoseError::Key("no n".into()))?)?;
        let e = b64_decode(self.e.as_deref().ok_or(JoseError::Key("no e".into()))?)?;
        let params = match alg {
            Alg::PS256 => &RSA_PSS_2048_8192_SHA256,
        };
        PublicKeyComponents {
            n: n.as_slice(),
            e: e.as_slice(),
        }
        .verify(params, msg, sig)
        .map_err(|_| JoseError::BadSignature)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

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
        if keys.is_empty() {
            return Err(JoseError::Key(
                "the JWKS holds no RSA signing key of at least 2048 bits".into(),
            ));
        }
        Ok(Self { keys })
    }

    pub fn from_keys(keys: Vec<Jwk>) -> Self {
        Self { keys }
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
        match kid {
            Some(kid) => self
                .find(kid)
                .filter(|k| k.usable_for(alg))
                .ok_or_else(|| JoseError::UnknownKid(kid.to_string())),
            None => {
                let mut c = self.keys.iter().filter(|k| k.usable_for(alg));
                match (c.next(), c.next()) {
                    (Some(k), None) => Ok(k),
                    (None, _) => Err(JoseError::UnknownKid(String::new())),
                    _ => Err(JoseError::AmbiguousKey),
                }
            }
        }
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
}
