//! JOSE for aspen: PS256 keys, JWKS, compact JWTs, registered-claim checks
//! and OB's detached JWS (`x-jws-signature`, v3.1.2 with `b64: false`).
//!
//! Built directly on aws-lc-rs (the crypto stack rustls already uses)
//! rather than jsonwebtoken because: the parsed RSA key pair is cached in
//! [`SigningKey`] and each JWKS key is parsed once into an aws-lc public key
//! (jsonwebtoken re-parses the private key DER on every sign, and the
//! payment path signs one response per request); OB's unencoded detached
//! payload is not supported by JWT libraries anyway, and jsonwebtoken does
//! not enforce `crit`; and the verification rules (which algorithms, where
//! keys may come from) are ours to state explicitly. The primitives —
//! RSASSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt), SHA-256, key
//! generation, PKCS#8 — all come from aws-lc-rs; only the JOSE framing is
//! written here. No second crypto stack (openssl, ring, `rsa`).
//!
//! Decisions:
//! - Only PS256 is issued or accepted ([`Alg`] is a closed enum, so `none`,
//!   `HS*` and `RS*` cannot even be named). ES256 is allowed by FAPI but no
//!   aspen party uses it; adding it means a new `Alg` variant, EC JWK fields
//!   and a P-256 key type.
//! - Keys come only from the [`Jwks`] the caller passes; `jwk`, `jku`,
//!   `x5c`, `x5u` in a header are never used (AUTH-11, DCR-7).
//! - A JWT without `kid` verifies only if the set holds exactly one usable
//!   key (AUTH-12); with two or more it is [`JoseError::AmbiguousKey`]. The
//!   detached JWS always requires `kid` (COMMON-30).
//! - Claim checks are separate ([`check_claims`]) because each endpoint maps
//!   a failing claim to its own protocol error.

mod claims;
mod detached;
mod jwk;
mod jwt;
mod key;

pub use claims::{ClaimChecks, ClaimError, check_claims};
pub use detached::{
    CLAIM_IAT, CLAIM_ISS, CLAIM_TAN, DetachedExpectations, DetachedHeader, DetachedJwsError,
    sign_detached, verify_detached,
};
pub use jwk::{Jwk, Jwks};
pub use jwt::{Jws, VerifiedJwt, decode_unverified, sign_jwt, sign_jwt_with_header, verify_jwt};
pub use key::SigningKey;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Signature algorithms aspen accepts. FAPI allows PS256 and ES256
/// (AUTH-4); aspen issues and accepts PS256 only, so this is a closed set:
/// `none`, `HS*` and `RS*` can never be named here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    PS256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::PS256 => "PS256",
        }
    }

    pub fn from_name(name: &str) -> Option<Alg> {
        match name {
            "PS256" => Some(Alg::PS256),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoseError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("no key with kid {0:?} in the key set")]
    UnknownKid(String),
    #[error("the JWS header has no kid and the key set has more than one candidate key")]
    AmbiguousKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("unusable key: {0}")]
    Key(String),
    #[error("key generation failed")]
    KeyGeneration,
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_decode(s: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| JoseError::Malformed)
}

/// base64url(SHA-256(bytes)), e.g. an RFC 8705 `x5t#S256`.
pub fn sha256_b64url(bytes: &[u8]) -> String {
    b64(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// OIDC `c_hash` / `s_hash` / `at_hash` for PS256/ES256: the left half of
/// SHA-256 of the ASCII value, base64url.
pub fn half_hash(value: &str) -> String {
    let d = digest::digest(&digest::SHA256, value.as_bytes());
    b64(&d.as_ref()[..16])
}

/// RFC 7636 S256: base64url(SHA-256(verifier)) == challenge.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    constant_time_eq(&sha256_b64url(verifier.as_bytes()), challenge)
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_example() {
        assert!(pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            "x",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn hashes_known_answers() {
        // Independently computed with Python's hashlib.
        assert_eq!(
            sha256_b64url(b"hello"),
            "LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ"
        );
        assert_eq!(
            half_hash("SplxlOBeZQQYbYS6WxSbIA"),
            "o1uBp9eSe3DsmScN0jYriA"
        );
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd") && !constant_time_eq("abc", "ab"));
    }

    #[test]
    fn alg_names_are_closed() {
        for bad in ["none", "HS256", "RS256", "ps256", ""] {
            assert_eq!(Alg::from_name(bad), None);
        }
        assert_eq!(Alg::from_name("PS256"), Some(Alg::PS256));
    }
}
