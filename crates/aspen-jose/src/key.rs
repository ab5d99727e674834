//! RSA signing keys with a cached parsed key pair.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PSS_SHA256};
use base64::Engine;

use crate::{JoseError, b64, jwk::Jwk};

#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    pair: Arc<KeyPair>,
    pkcs8: Arc<Vec<u8>>,
    jwk: Jwk,
    /// The certificate chain for the key (DER, leaf first), published as
    /// `x5c` / `x5t#S256` (RFC 7517 §4.7-4.9): OB clients check response
    /// signatures against a key whose certificate they can verify.
    x5c: Arc<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new RSA-2048 key; the `kid` defaults to the RFC 7638 thumbprint.
    pub fn generate(kid: Option<String>) -> Result<Self, JoseError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| JoseError::KeyGeneration)?;
        let der = pair.as_der().map_err(|_| JoseError::KeyGeneration)?;
        Self::from_pkcs8_der(der.as_ref(), kid)
    }

    pub fn from_pkcs8_der(der: &[u8], kid: Option<String>) -> Result<Self, JoseError> {
        let pair = KeyPair::from_pkcs8(der).map_err(|e| JoseError::Key(e.to_string()))?;
        if pair.public_modulus_len() < 256 {
            return Err(JoseError::Key("RSA keys must be at least 2048 bits".into()));
        }
        let public = pair.public_key();
        let n = b64(public.modulus().big_endian_without_leading_zero());
        let e = b64(public.exponent().big_endian_without_leading_zero());
        let thumb = Jwk::rsa_thumbprint(&n, &e);
        let kid = kid.unwrap_or(thumb);
        let jwk = Jwk {
            kty: "RSA".into(),
            kid: Some(kid.clone()),
            use_: Some("sig".into()),
            alg: Some("PS256".into()),
            n: Some(n),
            e: Some(e),
        };
        Ok(Self {
            kid,
            pair: Arc::new(pair),
            pkcs8: Arc::new(der.to_vec()),
            jwk,
            x5c: Arc::new(Vec::new()),
        })
    }

    pub fn from_pkcs8_pem(pem: &str, kid: Option<String>) -> Result<Self, JoseError> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END PRIVATE KEY-----")
            .collect();
        if body.is_empty() {
            return Err(JoseError::Key(
                "expected a PKCS#8 \"PRIVATE KEY\" PEM block".into(),
            ));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| JoseError::Key("PEM body is not base64".into()))?;
        Self::from_pkcs8_der(&der, kid)
    }

    pub fn to_pkcs8_pem(&self) -> Result<String, JoseError> {
        let b = base64::engine::general_purpose::STANDARD.encode(self.pkcs8.as_slice());
        let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).map_err(|_| JoseError::Malformed)?);
            out.push('\n');
        }
        out.push_str("-----END PRIVATE KEY-----\n");
        Ok(out)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The key with its certificate chain (DER, leaf first). The caller
    /// checks that the leaf certifies this key.
    pub fn with_certificates(mut self, chain: Vec<Vec<u8>>) -> Self {
        self.x5c = Arc::new(chain);
        self
    }

    pub fn certificates(&self) -> &[Vec<u8>] {
        &self.x5c
    }

    /// The public JWK (`kty`, `kid`, `use: sig`, `alg: PS256`, `n`, `e`),
    /// with `x5c` and `x5t#S256` when the key has a certificate.
    pub fn public_jwk(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.jwk).unwrap_or(serde_json::Value::Null);
        if let (Some(leaf), Some(m)) = (self.x5c.first(), v.as_object_mut()) {
            let std = base64::engine::general_purpose::STANDARD;
            m.insert(
                "x5c".into(),
                self.x5c.iter().map(|c| std.encode(c)).collect(),
            );
            m.insert("x5t#S256".into(), crate::sha256_b64url(leaf).into());
        }
        v
    }

    /// RSASSA-PSS with SHA-256 and a 32-byte salt over `msg`.
    pub fn sign_ps256(&self, msg: &[u8]) -> Result<Vec<u8>, JoseError> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&RSA_PSS_SHA256, &rng, msg, &mut sig)
            .map_err(|_| JoseError::Key("signing failed".into()))?;
        Ok(sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_defaults_to_thumbprint_and_pem_round_trips() {
        let k = SigningKey::generate(None).unwrap();
        let jwk = k.jwk();
        let thumb = Jwk::rsa_thumbprint(jwk.n.as_deref().unwrap(), jwk.e.as_deref().unwrap());
        assert_eq!(k.kid(), thumb);
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let named =
            SigningKey::from_pkcs8_pem(&pem.replace('\n', "\r\n"), Some("k-2".into())).unwrap();
        assert_eq!(named.kid(), "k-2");
        assert_eq!(named.jwk().n, jwk.n);
        let v = k.public_jwk();
        assert_eq!(v["kty"], "RSA");
        assert_eq!(v["use"], "sig");
        assert!(v.get("d").is_none() && v.get("p").is_none());
    }

    #[test]
    fn bad_pem_is_an_error() {
        for pem in [
            "",
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        ] {
            assert!(SigningKey::from_pkcs8_pem(pem, None).is_err(), "{pem}");
        }
    }

    /// Keys made by the openssl CLI load; 1024-bit ones are refused. Skipped
    /// when openssl is not installed.
    #[test]
    fn openssl_generated_keys() {
        let gen_key = |bits: u32| {
            std::process::Command::new("openssl")
                .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
                .arg(format!("rsa_keygen_bits:{bits}"))
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let Some(pem) = gen_key(2048) else {
            eprintln!("SKIPPED: openssl CLI not available");
            return;
        };
        let k = SigningKey::from_pkcs8_pem(&pem, None).unwrap();
        assert_eq!(k.sign_ps256(b"x").unwrap().len(), 256);
        let small = gen_key(1024).unwrap();
        assert!(SigningKey::from_pkcs8_pem(&small, None).is_err());
    }
}
