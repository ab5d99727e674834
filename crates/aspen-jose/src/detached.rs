//! OB detached JWS for `x-jws-signature` (COMMON-29..33), v3.1.2 style:
//! `b64: false`, so the signing input is `BASE64URL(header) "." body` with
//! the exact body bytes.

use serde_json::{Map, Value};

use crate::{Alg, Jwks, SigningKey, b64, b64_decode};

pub const CLAIM_IAT: &str = "http://openbanking.org.uk/iat";
pub const CLAIM_ISS: &str = "http://openbanking.org.uk/iss";
pub const CLAIM_TAN: &str = "http://openbanking.org.uk/tan";
const CRIT: [&str; 4] = ["b64", CLAIM_IAT, CLAIM_ISS, CLAIM_TAN];
const ALLOWED: [&str; 9] = [
    "alg", "kid", "b64", "crit", "typ", "cty", CLAIM_IAT, CLAIM_ISS, CLAIM_TAN,
];

/// Failures, one per OB error code (COMMON-31); the `String` is the claim,
/// for `Errors[].Path`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetachedJwsError {
    #[error("x-jws-signature is missing")]
    Missing,
    #[error("x-jws-signature is not a detached JWS")]
    Malformed,
    #[error("x-jws-signature header lacks {0}")]
    MissingClaim(String),
    #[error("x-jws-signature header claim {0} is invalid")]
    InvalidClaim(String),
    #[error("x-jws-signature does not verify")]
    Invalid,
}

impl DetachedJwsError {
    /// The OB error code (COMMON-52).
    pub fn ob_code(&self) -> &'static str {
        match self {
            Self::Missing => "UK.OBIE.Signature.Missing",
            Self::Malformed => "UK.OBIE.Signature.Malformed",
            Self::MissingClaim(_) => "UK.OBIE.Signature.MissingClaim",
            Self::InvalidClaim(_) => "UK.OBIE.Signature.InvalidClaim",
            Self::Invalid => "UK.OBIE.Signature.Invalid",
        }
    }

    pub fn claim(&self) -> Option<&str> {
        match self {
            Self::MissingClaim(c) | Self::InvalidClaim(c) => Some(c),
            _ => None,
        }
    }
}

pub struct DetachedExpectations<'a> {
    /// The `iss` the signer must use (TPP: `{org_id}/{software_id}`).
    pub iss: &'a str,
    /// Trusted anchors for `tan`.
    pub tans: &'a [String],
    pub now: i64,
    /// Allowed clock skew for `iat` in the future, and the oldest `iat`
    /// accepted (seconds).
    pub max_future_skew: i64,
    pub max_age: i64,
}

#[derive(Debug, Clone)]
pub struct DetachedHeader {
    pub kid: String,
    pub iat: i64,
    pub iss: String,
    pub tan: String,
    /// The payload's media type when the signer stated it.
    pub cty: Option<String>,
    /// The whole JOSE header as received.
    pub raw: Value,
}

pub fn sign_detached(
    key: &SigningKey,
    body: &[u8],
    iss: &str,
    tan: &str,
    iat: i64,
    cty: Option<&str>,
) -> Result<String, crate::JoseError> {
    let mut h = Map::new();
    h.insert("alg".into(), Value::from("PS256"));
    h.insert("kid".into(), Value::from(key.kid()));
    h.insert("b64".into(), Value::from(false));
    h.insert(CLAIM_IAT.into(), Value::from(iat));
    h.insert(CLAIM_ISS.into(), Value::from(iss));
    h.insert(CLAIM_TAN.into(), Value::from(tan));
    h.insert("crit".into(), Value::from(CRIT.to_vec()));
    if let Some(c) = cty {
        h.insert("cty".into(), Value::from(c));
    }
    let encoded = b64(Value::Object(h).to_string().as_bytes());
    let mut input = Vec::with_capacity(encoded.len() + 1 + body.len());
    input.extend_from_slice(encoded.as_bytes());
    input.push(b'.');
    input.extend_from_slice(body);
    let sig = key.sign_ps256(&input)?;
    Ok(format!("{encoded}..{}", b64(&sig)))
}

pub fn verify_detached(
    header_value: Option<&str>,
    body: &[u8],
    keys: &Jwks,
    exp: &DetachedExpectations<'_>,
) -> Result<DetachedHeader, DetachedJwsError> {
    use DetachedJwsError::*;
    let value = header_value.ok_or(Missing)?.trim();
    if value.is_empty() {
        return Err(Missing);
    }
    // `header..signature`: exactly two dots, the middle part empty.
    let mut parts = value.split('.');
    let (h, mid, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(m), Some(s), None) => (h, m, s),
        _ => return Err(Malformed),
    };
    if !mid.is_empty() || h.is_empty() || s.is_empty() {
        return Err(Malformed);
    }
    let header: Value = b64_decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(Value::is_object)
        .ok_or(Malformed)?;
    let sig = b64_decode(s).map_err(|_| Malformed)?;
    let obj = header.as_object().ok_or(Malformed)?;

    for claim in ["alg", "kid", "b64", "crit", CLAIM_IAT, CLAIM_ISS, CLAIM_TAN] {
        if !obj.contains_key(claim) {
            return Err(MissingClaim(claim.into()));
        }
    }
    if let Some(unknown) = obj.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return Err(InvalidClaim(unknown.clone()));
    }
    if obj["alg"].as_str() != Some("PS256") {
        return Err(InvalidClaim("alg".into()));
    }
    if obj["b64"] != Value::Bool(false) {
        return Err(InvalidClaim("b64".into()));
    }
    let crit_ok = obj["crit"].as_array().is_some_and(|c| {
        let names: Vec<&str> = c.iter().filter_map(Value::as_str).collect();
        names.len() == c.len()
            && names.len() == CRIT.len()
            && CRIT.iter().all(|x| names.contains(x))
    });
    if !crit_ok {
        return Err(InvalidClaim("crit".into()));
    }
    if let Some(t) = obj.get("typ")
        && t.as_str() != Some("JOSE")
    {
        return Err(InvalidClaim("typ".into()));
    }
    let cty = match obj.get("cty") {
        None => None,
        Some(Value::String(c)) if valid_cty(c) => Some(c.clone()),
        Some(_) => return Err(InvalidClaim("cty".into())),
    };
    let kid = obj["kid"]
        .as_str()
        .ok_or_else(|| InvalidClaim("kid".into()))?;
    let iat = obj[CLAIM_IAT]
        .as_i64()
        .ok_or_else(|| InvalidClaim(CLAIM_IAT.into()))?;
    let iss = obj[CLAIM_ISS]
        .as_str()
        .ok_or_else(|| InvalidClaim(CLAIM_ISS.into()))?;
    let tan = obj[CLAIM_TAN]
        .as_str()
        .ok_or_else(|| InvalidClaim(CLAIM_TAN.into()))?;
    let key = keys
        .select_for_verify(Some(kid), Alg::PS256)
        .map_err(|_| InvalidClaim("kid".into()))?;
    if iss != exp.iss {
        return Err(InvalidClaim(CLAIM_ISS.into()));
    }
    if !exp.tans.iter().any(|t| t == tan) {
        return Err(InvalidClaim(CLAIM_TAN.into()));
    }
    if iat > exp.now + exp.max_future_skew || iat < exp.now - exp.max_age {
        return Err(InvalidClaim(CLAIM_IAT.into()));
    }
    let mut input = Vec::with_capacity(h.len() + 1 + body.len());
    input.extend_from_slice(h.as_bytes());
    input.push(b'.');
    input.extend_from_slice(body);
    key.verify(&input, &sig).map_err(|_| Invalid)?;
    Ok(DetachedHeader {
        kid: kid.to_string(),
        iat,
        iss: iss.to_string(),
        tan: tan.to_string(),
        cty,
        raw: header,
    })
}

/// `cty` is a media type, optionally without its `application/` prefix
/// (RFC 7515 §4.1.10: `json` means `application/json`), and optionally with
/// parameters. COMMON-30 allows `json`/`application/json` for JSON and the
/// file's MIME type for files, so any well-formed type is accepted here and
/// the API layer compares it with what the endpoint expects.
fn valid_cty(cty: &str) -> bool {
    fn token(t: &str) -> bool {
        !t.is_empty()
            && t.len() <= 127
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    }
    let essence = cty.split(';').next().unwrap_or_default().trim();
    match essence.split_once('/') {
        Some((ty, sub)) => token(ty) && token(sub),
        None => token(essence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DetachedJwsError::*;

    const BODY: &[u8] = br#"{"Data":{"Initiation":{"InstructedAmount":{"Amount":"10.00","Currency":"GBP"}}},"Risk":{}}"#;

    fn setup() -> (SigningKey, Jwks, Vec<String>) {
        let k = SigningKey::generate(None).unwrap();
        let j = Jwks::from_keys(vec![k.jwk().clone()]);
        (k, j, vec!["openbanking.org.uk".to_string()])
    }

    fn exp<'a>(tans: &'a [String], now: i64) -> DetachedExpectations<'a> {
        DetachedExpectations {
            iss: "org/soft",
            tans,
            now,
            max_future_skew: 30,
            max_age: 3600,
        }
    }

    fn with_header(k: &SigningKey, header: Value, body: &[u8]) -> String {
        let h = b64(header.to_string().as_bytes());
        let mut input = h.clone().into_bytes();
        input.push(b'.');
        input.extend_from_slice(body);
        format!("{h}..{}", b64(&k.sign_ps256(&input).unwrap()))
    }

    fn base_header(k: &SigningKey, now: i64) -> Value {
        serde_json::json!({
            "alg": "PS256", "kid": k.kid(), "b64": false,
            CLAIM_IAT: now, CLAIM_ISS: "org/soft", CLAIM_TAN: "openbanking.org.uk",
            "crit": CRIT,
        })
    }

    #[test]
    fn round_trip_with_dots_in_body() {
        let (k, j, t) = setup();
        let sig = sign_detached(&k, BODY, "org/soft", "openbanking.org.uk", 1000, None).unwrap();
        let h = verify_detached(Some(&sig), BODY, &j, &exp(&t, 1000)).unwrap();
        assert_eq!(h.kid, k.kid());
    }

    #[test]
    fn tampered_body_and_missing() {
        let (k, j, t) = setup();
        let sig = sign_detached(&k, BODY, "org/soft", "openbanking.org.uk", 1000, None).unwrap();
        let mut body = BODY.to_vec();
        body[40] = b'9';
        assert_eq!(
            verify_detached(Some(&sig), &body, &j, &exp(&t, 1000)).unwrap_err(),
            Invalid
        );
        assert_eq!(
            verify_detached(None, BODY, &j, &exp(&t, 1000)).unwrap_err(),
            Missing
        );
        assert_eq!(
            verify_detached(Some("abc"), BODY, &j, &exp(&t, 1000)).unwrap_err(),
            Malformed
        );
        let (h, _) = sig.split_once("..").unwrap();
        let attached = format!("{h}.{}.x", b64(BODY));
        assert_eq!(
            verify_detached(Some(&attached), BODY, &j, &exp(&t, 1000)).unwrap_err(),
            Malformed
        );
    }

    #[test]
    fn each_required_claim_missing() {
        let (k, j, t) = setup();
        for claim in ["alg", "kid", "b64", "crit", CLAIM_IAT, CLAIM_ISS, CLAIM_TAN] {
            let mut h = base_header(&k, 1000);
            h.as_object_mut().unwrap().remove(claim);
            let sig = with_header(&k, h, BODY);
            assert_eq!(
                verify_detached(Some(&sig), BODY, &j, &exp(&t, 1000)).unwrap_err(),
                MissingClaim(claim.into())
            );
        }
    }

    #[test]
    fn invalid_claims() {
        let (k, j, t) = setup();
        let cases: Vec<(&str, Value, &str)> = vec![
            ("b64", Value::Bool(true), "b64"),
            ("alg", Value::from("RS256"), "alg"),
            (
                "crit",
                serde_json::json!(["b64", CLAIM_IAT, CLAIM_ISS]),
                "crit",
            ),
            (
                "crit",
                serde_json::json!(["b64", CLAIM_IAT, CLAIM_ISS, CLAIM_TAN, "x"]),
                "crit",
            ),
            ("kid", Value::from("nope"), "kid"),
            (CLAIM_ISS, Value::from("other/soft"), CLAIM_ISS),
            (CLAIM_TAN, Value::from("evil.example"), CLAIM_TAN),
            (CLAIM_IAT, Value::from(5000), CLAIM_IAT),
            (CLAIM_IAT, Value::from(-9000), CLAIM_IAT),
            ("x5c", serde_json::json!(["abc"]), "x5c"),
            ("typ", Value::from("JWT"), "typ"),
            ("cty", Value::from(""), "cty"),
            ("cty", Value::from("not a type"), "cty"),
            ("cty", Value::from("application/"), "cty"),
            ("cty", Value::from(7), "cty"),
            ("kid", Value::from(7), "kid"),
            ("kid", Value::from(""), "kid"),
            (CLAIM_IAT, Value::from("1000"), CLAIM_IAT),
            (CLAIM_IAT, Value::from(1000.5), CLAIM_IAT),
            (CLAIM_ISS, Value::from(1), CLAIM_ISS),
            ("crit", Value::from("b64"), "crit"),
            (
                "crit",
                serde_json::json!(["b64", CLAIM_IAT, CLAIM_ISS, CLAIM_ISS]),
                "crit",
            ),
            ("jwk", serde_json::json!({"kty":"RSA"}), "jwk"),
            ("jku", Value::from("https://evil.example/jwks"), "jku"),
            ("x5u", Value::from("https://evil.example/cert"), "x5u"),
        ];
        for (name, value, path) in cases {
            let mut h = base_header(&k, 1000);
            h.as_object_mut().unwrap().insert(name.into(), value);
            let sig = with_header(&k, h, BODY);
            assert_eq!(
                verify_detached(Some(&sig), BODY, &j, &exp(&t, 1000)).unwrap_err(),
                InvalidClaim(path.into()),
                "{name}"
            );
        }
    }

    #[test]
    fn optional_typ_and_cty_and_iat_skew() {
        let (k, j, t) = setup();
        for (name, value) in [
            ("typ", "JOSE"),
            ("cty", "json"),
            ("cty", "application/json"),
            ("cty", "text/csv; charset=utf-8"),
            ("cty", "application/vnd.ms-excel"),
        ] {
            let mut h = base_header(&k, 1000);
            h.as_object_mut().unwrap().insert(name.into(), value.into());
            let sig = with_header(&k, h, BODY);
            let got = verify_detached(Some(&sig), BODY, &j, &exp(&t, 1000)).unwrap();
            if name == "cty" {
                assert_eq!(got.cty.as_deref(), Some(value));
            }
        }
        let sig = sign_detached(
            &k,
            BODY,
            "org/soft",
            "openbanking.org.uk",
            1030,
            Some("json"),
        )
        .unwrap();
        // iat 30 s ahead of our clock is within the skew, 31 s is not.
        assert!(verify_detached(Some(&sig), BODY, &j, &exp(&t, 1000)).is_ok());
        assert_eq!(
            verify_detached(Some(&sig), BODY, &j, &exp(&t, 999)).unwrap_err(),
            InvalidClaim(CLAIM_IAT.into())
        );
        // Crit order does not matter.
        let mut h = base_header(&k, 1000);
        h["crit"] = serde_json::json!([CLAIM_TAN, CLAIM_ISS, CLAIM_IAT, "b64"]);
        let sig = with_header(&k, h, BODY);
        assert!(verify_detached(Some(&sig), BODY, &j, &exp(&t, 1000)).is_ok());
    }

    #[test]
    fn tampered_or_garbled_header() {
        let (k, j, t) = setup();
        let sig = sign_detached(&k, BODY, "org/soft", "openbanking.org.uk", 1000, None).unwrap();
        let (_, s) = sig.split_once("..").unwrap();
        // A valid header that the signature was not made over.
        let mut other = base_header(&k, 1000);
        other["cty"] = "json".into();
        let forged = format!("{}..{s}", b64(other.to_string().as_bytes()));
        assert_eq!(
            verify_detached(Some(&forged), BODY, &j, &exp(&t, 1000)).unwrap_err(),
            Invalid
        );
        // The same header re-encoded differently (whitespace) must not
        // verify either: verification is over the bytes received.
        let spaced = serde_json::to_string_pretty(&base_header(&k, 1000)).unwrap();
        let forged = format!("{}..{s}", b64(spaced.as_bytes()));
        assert_eq!(
            verify_detached(Some(&forged), BODY, &j, &exp(&t, 1000)).unwrap_err(),
            Invalid
        );
        let e = exp(&t, 1000);
        for bad in [
            format!("{}..{s}", b64(b"[1,2]")),
            format!("{}..{s}", b64(b"{not json")),
            format!("!!..{s}"),
            format!("{}..", b64(b"{}")),
            format!("..{s}"),
            format!("{}...{s}", b64(b"{}")),
            format!("{}..{s}=", b64(b"{}")),
        ] {
            assert_eq!(
                verify_detached(Some(&bad), BODY, &j, &e).unwrap_err(),
                Malformed,
                "{bad}"
            );
        }
        assert_eq!(
            verify_detached(Some("  "), BODY, &j, &e).unwrap_err(),
            Missing
        );
        // Signature bytes altered.
        let mut raw = b64_decode(s).unwrap();
        raw[10] ^= 1;
        let (h, _) = sig.split_once("..").unwrap();
        let flipped = format!("{h}..{}", b64(&raw));
        assert_eq!(
            verify_detached(Some(&flipped), BODY, &j, &e).unwrap_err(),
            Invalid
        );
    }

    #[test]
    fn empty_and_binary_bodies() {
        let (k, j, t) = setup();
        let file = [0u8, 0x2e, 0xff, 0x2e, 0x2e, 10, 13];
        for body in [&b""[..], &file[..], b"a.b.c"] {
            let sig = sign_detached(
                &k,
                body,
                "org/soft",
                "openbanking.org.uk",
                1000,
                Some("application/octet-stream"),
            )
            .unwrap();
            assert!(verify_detached(Some(&sig), body, &j, &exp(&t, 1000)).is_ok());
            assert_eq!(
                verify_detached(Some(&sig), b"x", &j, &exp(&t, 1000)).unwrap_err(),
                Invalid
            );
        }
    }

    #[test]
    fn signature_by_another_key_is_invalid() {
        let (k, j, t) = setup();
        let other = SigningKey::generate(Some(k.kid().to_string())).unwrap();
        let sig =
            sign_detached(&other, BODY, "org/soft", "openbanking.org.uk", 1000, None).unwrap();
        assert_eq!(
            verify_detached(Some(&sig), BODY, &j, &exp(&t, 1000)).unwrap_err(),
            Invalid
        );
    }

    /// Cross-check with the openssl CLI when it is installed: the signature
    /// is plain RSASSA-PSS (SHA-256, salt 32) over `header "." body`.
    #[test]
    fn openssl_agrees() {
        let Ok(out) = std::process::Command::new("openssl")
            .arg("version")
            .output()
        else {
            eprintln!("SKIPPED: openssl CLI not available");
            return;
        };
        if !out.status.success() {
            eprintln!("SKIPPED: openssl CLI not usable");
            return;
        }
        let (k, _, _) = setup();
        let sig = sign_detached(&k, BODY, "org/soft", "openbanking.org.uk", 1000, None).unwrap();
        let (h, s) = sig.split_once("..").unwrap();
        let dir = std::env::temp_dir().join(format!("aspen-jose-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut input = h.as_bytes().to_vec();
        input.push(b'.');
        input.extend_from_slice(BODY);
        std::fs::write(dir.join("in"), &input).unwrap();
        std::fs::write(dir.join("sig"), b64_decode(s).unwrap()).unwrap();
        std::fs::write(dir.join("key.pem"), k.to_pkcs8_pem().unwrap()).unwrap();
        let pubkey = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("pub.pem"))
            .status()
            .unwrap();
        assert!(pubkey.success());
        let verify = std::process::Command::new("openssl")
            .args([
                "dgst",
                "-sha256",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
                "-verify",
            ])
            .arg(dir.join("pub.pem"))
            .arg("-signature")
            .arg(dir.join("sig"))
            .arg(dir.join("in"))
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }
}
