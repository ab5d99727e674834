//! Passkeys (WebAuthn Level 2) for the relying party side: the options a
//! page hands to `navigator.credentials`, and the checks of §7.1
//! (registration) and §7.2 (authentication) over aws-lc-rs.
//!
//! Attestation is not relied on [choice]: the pages ask for `none`, and a
//! statement that comes anyway is ignored, because a bank accepts any
//! authenticator its customer owns; what makes SCA is the possession of the
//! key (every assertion is signed by it) and the user verification flag.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ciborium::Value as Cbor;
use serde::Deserialize;
use serde_json::{Value, json};

/// COSE algorithm identifiers aspen verifies, in order of preference.
pub const ES256: i64 = -7;
pub const EDDSA: i64 = -8;
pub const RS256: i64 = -257;

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebauthnError {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("clientDataJSON.type is not {0}")]
    Type(&'static str),
    #[error("the challenge is not the one this page issued")]
    Challenge,
    #[error("the origin {0} is not this bank's")]
    Origin(String),
    #[error("the authenticator data is for another relying party")]
    RpId,
    #[error("the authenticator did not test user presence")]
    NotPresent,
    #[error("the authenticator did not verify the user")]
    NotVerified,
    #[error("unsupported credential key (COSE alg {0})")]
    Algorithm(i64),
    #[error("the signature does not verify")]
    Signature,
}

/// Who the credentials are for: the bank's pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    /// A domain: the issuer's host or a registrable suffix of it.
    pub id: String,
    /// `https://host[:port]` of the pages, as browsers write it in
    /// `clientDataJSON.origin`.
    pub origin: String,
    pub name: String,
}

impl RelyingParty {
    /// The relying party for pages served under `issuer`; `None` when the
    /// issuer's host is an IP address, which WebAuthn cannot use as an RP id.
    /// `rp_id`, when given, must be the host or a parent domain of it.
    pub fn for_issuer(
        issuer: &str,
        rp_id: Option<&str>,
        name: &str,
    ) -> Result<Option<Self>, String> {
        let rest = issuer
            .strip_prefix("https://")
            .ok_or_else(|| format!("passkeys need an https issuer, not {issuer}"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let origin = format!("https://{authority}");
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or_default()
        } else {
            authority.split(':').next().unwrap_or_default()
        };
        let host = host.to_ascii_lowercase();
        if host.parse::<std::net::IpAddr>().is_ok() {
            return match rp_id {
                Some(id) => Err(format!(
                    "passkey rp id {id} cannot serve an issuer on an IP address ({host})"
                )),
                None => Ok(None),
            };
        }
        let id = match rp_id {
            Some(id) => {
                let id = id.to_ascii_lowercase();
                if host != id && !host.ends_with(&format!(".{id}")) {
                    return Err(format!(
                        "passkey rp id {id} is not {host} or a parent domain of it"
                    ));
                }
                id
            }
            None => host,
        };
        Ok(Some(Self {
            id,
            origin,
            name: name.to_string(),
        }))
    }

    fn id_hash(&self) -> digest::Digest {
        digest::digest(&digest::SHA256, self.id.as_bytes())
    }
}

/// A challenge bound to what it is for. `secret` is unguessable and ends
/// with the step (the PSU's web session, replaced after every sign-in, so a
/// challenge is good once); `link` is the dynamic-linking digest of the
/// payment being approved (RTS Art. 5), empty otherwise, so an assertion
/// made for one payment does not verify for another.
pub fn challenge(purpose: &str, secret: &str, link: &str) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in ["aspen-webauthn", purpose, secret, link] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    ctx.finish().as_ref().to_vec()
}

/// The WebAuthn user handle for a PSU: stable, opaque, not the PSU id.
pub fn user_handle(psu_id: &str) -> Vec<u8> {
    let d = digest::digest(&digest::SHA256, format!("aspen-psu\n{psu_id}").as_bytes());
    d.as_ref()[..16].to_vec()
}

/// `PublicKeyCredentialCreationOptions`, buffers in base64url (the page's
/// script turns them into `ArrayBuffer`s).
pub fn creation_options(
    rp: &RelyingParty,
    psu_id: &str,
    user_name: &str,
    challenge: &[u8],
    exclude: &[Vec<u8>],
) -> Value {
    let exclude: Vec<Value> = exclude
        .iter()
        .map(|id| json!({"type": "public-key", "id": B64.encode(id)}))
        .collect();
    let params: Vec<Value> = [ES256, EDDSA, RS256]
        .iter()
        .map(|a| json!({"type": "public-key", "alg": a}))
        .collect();
    json!({
        "rp": { "id": rp.id, "name": rp.name },
        "user": { "id": B64.encode(user_handle(psu_id)), "name": user_name, "displayName": user_name },
        "challenge": B64.encode(challenge),
        "pubKeyCredParams": params,
        "timeout": 120000,
        "attestation": "none",
        "authenticatorSelection": { "residentKey": "required", "requireResidentKey": true, "userVerification": "preferred" },
        "excludeCredentials": exclude,
    })
}

/// `PublicKeyCredentialRequestOptions`. An empty `allow` lets the PSU pick
/// any of their passkeys for this site (sign-in without a username).
pub fn request_options(
    rp: &RelyingParty,
    challenge: &[u8],
    allow: &[Vec<u8>],
    require_uv: bool,
) -> Value {
    let allow: Vec<Value> = allow
        .iter()
        .map(|id| json!({"type": "public-key", "id": B64.encode(id)}))
        .collect();
    json!({
        "rpId": rp.id,
        "challenge": B64.encode(challenge),
        "timeout": 120000,
        "userVerification": if require_uv { "required" } else { "preferred" },
        "allowCredentials": allow,
    })
}

/// A credential that passed registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub id: Vec<u8>,
    /// The COSE_Key as the authenticator sent it.
    pub public_key: Vec<u8>,
    pub alg: i64,
    pub sign_count: u32,
    pub user_verified: bool,
}

/// What an assertion proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assertion {
    pub sign_count: u32,
    pub user_verified: bool,
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: bool,
}

fn check_client_data(
    rp: &RelyingParty,
    raw: &[u8],
    kind: &'static str,
    challenge: &[u8],
) -> Result<(), WebauthnError> {
    let c: ClientData =
        serde_json::from_slice(raw).map_err(|_| WebauthnError::Malformed("clientDataJSON"))?;
    if c.kind != kind {
        return Err(WebauthnError::Type(kind));
    }
    let sent = B64
        .decode(c.challenge.trim_end_matches('='))
        .map_err(|_| WebauthnError::Challenge)?;
    if !crate::constant_time_eq(&sent, challenge) {
        return Err(WebauthnError::Challenge);
    }
    // The bank's pages are never framed (frame-ancestors 'none'), so a
    // cross-origin ceremony is someone else's.
    if c.origin != rp.origin || c.cross_origin {
        return Err(WebauthnError::Origin(c.origin));
    }
    Ok(())
}

struct AuthData<'a> {
    rp_id_hash: &'a [u8],
    flags: u8,
    sign_count: u32,
    /// Attested credential data (registration only): id and COSE key.
    attested: Option<(Vec<u8>, Vec<u8>)>,
}

fn parse_auth_data(b: &[u8]) -> Result<AuthData<'_>, WebauthnError> {
    let bad = || WebauthnError::Malformed("authenticator data");
    if b.len() < 37 {
        return Err(bad());
    }
    let flags = b[32];
    let sign_count = u32::from_be_bytes([b[33], b[34], b[35], b[36]]);
    let attested = if flags & FLAG_AT != 0 {
        // aaguid (16), credential id length (2), id, COSE key (CBOR, then
        // possibly extensions: the key's own length is what CBOR says).
        let rest = b.get(37 + 16..).ok_or_else(bad)?;
        let len = u16::from_be_bytes([
            *rest.first().ok_or_else(bad)?,
            *rest.get(1).ok_or_else(bad)?,
        ]) as usize;
        if len == 0 || len > 1023 {
            return Err(bad());
        }
        let id = rest.get(2..2 + len).ok_or_else(bad)?.to_vec();
        let key_and_more = rest.get(2 + len..).ok_or_else(bad)?;
        let mut cursor = std::io::Cursor::new(key_and_more);
        let _: Cbor = ciborium::de::from_reader(&mut cursor).map_err(|_| bad())?;
        let key = key_and_more[..cursor.position() as usize].to_vec();
        Some((id, key))
    } else {
        None
    };
    Ok(AuthData {
        rp_id_hash: &b[..32],
        flags,
        sign_count,
        attested,
    })
}

/// A parsed COSE_Key (RFC 9053) that aspen can verify with.
enum CoseKey {
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

fn cose_key(raw: &[u8]) -> Result<(i64, CoseKey), WebauthnError> {
    let bad = || WebauthnError::Malformed("credential public key");
    let v: Cbor = ciborium::de::from_reader(raw).map_err(|_| bad())?;
    let map = v.as_map().ok_or_else(bad)?;
    let get = |k: i64| {
        map.iter()
            .find(|(key, _)| key.as_integer().and_then(|i| i64::try_from(i).ok()) == Some(k))
            .map(|(_, v)| v)
    };
    let int = |k: i64| {
        get(k)
            .and_then(|v| v.as_integer())
            .and_then(|i| i64::try_from(i).ok())
    };
    let bytes = |k: i64| get(k).and_then(|v| v.as_bytes()).cloned().ok_or_else(bad);
    let kty = int(1).ok_or_else(bad)?;
    let alg = int(3).ok_or_else(bad)?;
    let key = match (kty, alg) {
        // EC2, P-256
        (2, ES256) if int(-1) == Some(1) => {
            let (x, y) = (bytes(-2)?, bytes(-3)?);
            if x.len() != 32 || y.len() != 32 {
                return Err(bad());
            }
            let mut point = vec![0x04];
            point.extend(x);
            point.extend(y);
            CoseKey::P256(point)
        }
        // OKP, Ed25519
        (1, EDDSA) if int(-1) == Some(6) => CoseKey::Ed25519(bytes(-2)?),
        (3, RS256) => CoseKey::Rsa {
            n: bytes(-1)?,
            e: bytes(-2)?,
        },
        (_, alg) => return Err(WebauthnError::Algorithm(alg)),
    };
    Ok((alg, key))
}

fn verify_signature(key: &CoseKey, msg: &[u8], sig: &[u8]) -> Result<(), WebauthnError> {
    let ok = match key {
        CoseKey::P256(point) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point).verify(msg, sig)
        }
        CoseKey::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x).verify(msg, sig),
        CoseKey::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }.verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            msg,
            sig,
        ),
    };
    ok.map_err(|_| WebauthnError::Signature)
}

/// §7.1: the response to `navigator.credentials.create`.
pub fn verify_registration(
    rp: &RelyingParty,
    challenge: &[u8],
    client_data_json: &[u8],
    attestation_object: &[u8],
) -> Result<NewCredential, WebauthnError> {
    check_client_data(rp, client_data_json, "webauthn.create", challenge)?;
    let bad = || WebauthnError::Malformed("attestation object");
    let att: Cbor = ciborium::de::from_reader(attestation_object).map_err(|_| bad())?;
    let auth_data = att
        .as_map()
        .ok_or_else(bad)?
        .iter()
        .find(|(k, _)| k.as_text() == Some("authData"))
        .and_then(|(_, v)| v.as_bytes())
        .ok_or_else(bad)?;
    let d = parse_auth_data(auth_data)?;
    if d.rp_id_hash != rp.id_hash().as_ref() {
        return Err(WebauthnError::RpId);
    }
    if d.flags & FLAG_UP == 0 {
        return Err(WebauthnError::NotPresent);
    }
    let (id, public_key) = d.attested.ok_or_else(bad)?;
    let (alg, _) = cose_key(&public_key)?;
    Ok(NewCredential {
        id,
        public_key,
        alg,
        sign_count: d.sign_count,
        user_verified: d.flags & FLAG_UV != 0,
    })
}

/// §7.2: the response to `navigator.credentials.get`, for a credential
/// whose COSE key is `public_key`. The caller has matched the credential
/// id (and the user handle, when one came) to the PSU, and keeps the
/// signature counter.
pub fn verify_assertion(
    rp: &RelyingParty,
    challenge: &[u8],
    public_key: &[u8],
    client_data_json: &[u8],
    authenticator_data: &[u8],
    sig: &[u8],
    require_uv: bool,
) -> Result<Assertion, WebauthnError> {
    check_client_data(rp, client_data_json, "webauthn.get", challenge)?;
    let d = parse_auth_data(authenticator_data)?;
    if d.rp_id_hash != rp.id_hash().as_ref() {
        return Err(WebauthnError::RpId);
    }
    if d.flags & FLAG_UP == 0 {
        return Err(WebauthnError::NotPresent);
    }
    let user_verified = d.flags & FLAG_UV != 0;
    if require_uv && !user_verified {
        return Err(WebauthnError::NotVerified);
    }
    let (_, key) = cose_key(public_key)?;
    let mut msg = authenticator_data.to_vec();
    msg.extend_from_slice(digest::digest(&digest::SHA256, client_data_json).as_ref());
    verify_signature(&key, &msg, sig)?;
    Ok(Assertion {
        sign_count: d.sign_count,
        user_verified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft_authenticator::SoftAuthenticator;

    fn rp() -> RelyingParty {
        RelyingParty::for_issuer("https://bank.example:8443", None, "Bank")
            .unwrap()
            .unwrap()
    }

    fn enrolled() -> (SoftAuthenticator, NewCredential) {
        let rp = rp();
        let mut a = SoftAuthenticator::new(&rp.origin);
        let c = challenge("register", "session", "");
        let opts = creation_options(&rp, "psu-1", "rora", &c, &[]);
        let (id, cd, att) = a.create(&opts);
        let cred =
            verify_registration(&rp, &c, &B64.decode(cd).unwrap(), &B64.decode(att).unwrap())
                .unwrap();
        assert_eq!(B64.encode(&cred.id), id);
        assert_eq!(a.user_handle, user_handle("psu-1"));
        (a, cred)
    }

    fn assert_with(
        a: &mut SoftAuthenticator,
        cred: &NewCredential,
        issued: &[u8],
        expected: &[u8],
        require_uv: bool,
        tamper: impl Fn(&mut Vec<u8>, &mut Vec<u8>, &mut Vec<u8>),
    ) -> Result<Assertion, WebauthnError> {
        let rp = rp();
        let f = a.get(&request_options(
            &rp,
            issued,
            std::slice::from_ref(&cred.id),
            require_uv,
        ));
        let (mut cd, mut ad, mut sig) = (
            B64.decode(f.client_data).unwrap(),
            B64.decode(f.authenticator_data).unwrap(),
            B64.decode(f.signature).unwrap(),
        );
        tamper(&mut cd, &mut ad, &mut sig);
        verify_assertion(&rp, expected, &cred.public_key, &cd, &ad, &sig, require_uv)
    }

    #[test]
    fn registration_then_assertions() {
        let (mut a, cred) = enrolled();
        assert_eq!(
            (cred.alg, cred.sign_count, cred.user_verified),
            (ES256, 1, true)
        );
        let c = challenge("login", "s2", "link");
        let ok = assert_with(&mut a, &cred, &c, &c, true, |_, _, _| {}).unwrap();
        assert_eq!(
            ok,
            Assertion {
                sign_count: 2,
                user_verified: true
            }
        );
    }

    #[test]
    fn every_check_refuses() {
        let (mut a, cred) = enrolled();
        let c = challenge("login", "s", "");
        let other = challenge("login", "s", "another payment");
        assert_eq!(
            assert_with(&mut a, &cred, &c, &other, false, |_, _, _| {}),
            Err(WebauthnError::Challenge)
        );
        assert_eq!(
            assert_with(&mut a, &cred, &c, &c, false, |_, _, sig| {
                let n = sig.len() - 1;
                sig[n] ^= 1;
            }),
            Err(WebauthnError::Signature)
        );
        assert_eq!(
            assert_with(&mut a, &cred, &c, &c, false, |_, ad, _| ad[0] ^= 1),
            Err(WebauthnError::RpId)
        );
        // Flags are signed: clearing UV after the fact breaks the signature.
        assert_eq!(
            assert_with(&mut a, &cred, &c, &c, false, |_, ad, _| ad[32] &= !0x04),
            Err(WebauthnError::Signature)
        );
        a.verifies_user = false;
        assert_eq!(
            assert_with(&mut a, &cred, &c, &c, true, |_, _, _| {}),
            Err(WebauthnError::NotVerified)
        );
        assert!(assert_with(&mut a, &cred, &c, &c, false, |_, _, _| {}).is_ok());
        a.origin = "https://evil.example".into();
        assert_eq!(
            assert_with(&mut a, &cred, &c, &c, false, |_, _, _| {}),
            Err(WebauthnError::Origin("https://evil.example".into()))
        );
        a.origin = rp().origin;
        // A registration response is not an assertion.
        let f = a.get(&request_options(&rp(), &c, &[], false));
        let cd = String::from_utf8(B64.decode(f.client_data).unwrap())
            .unwrap()
            .replace("webauthn.get", "webauthn.create");
        assert_eq!(
            verify_assertion(
                &rp(),
                &c,
                &cred.public_key,
                cd.as_bytes(),
                &B64.decode(f.authenticator_data).unwrap(),
                &B64.decode(f.signature).unwrap(),
                false
            ),
            Err(WebauthnError::Type("webauthn.get"))
        );
    }

    #[test]
    fn registration_for_another_site_or_challenge_is_refused() {
        let rp = rp();
        let c = challenge("register", "session", "");
        let mut a = SoftAuthenticator::new(&rp.origin);
        let mut opts = creation_options(&rp, "psu-1", "rora", &c, &[]);
        opts["rp"]["id"] = json!("other.example");
        let (_, cd, att) = a.create(&opts);
        assert_eq!(
            verify_registration(
                &rp,
                &c,
                &B64.decode(&cd).unwrap(),
                &B64.decode(&att).unwrap()
            ),
            Err(WebauthnError::RpId)
        );
        let other = challenge("register", "other session", "");
        assert_eq!(
            verify_registration(
                &rp,
                &other,
                &B64.decode(cd).unwrap(),
                &B64.decode(att).unwrap()
            ),
            Err(WebauthnError::Challenge)
        );
        assert!(matches!(
            verify_registration(&rp, &c, b"{}", b"\xa0"),
            Err(WebauthnError::Malformed(_))
        ));
    }

    #[test]
    fn relying_party_from_issuer() {
        let rp = |i: &str, id: Option<&str>| RelyingParty::for_issuer(i, id, "B");
        assert_eq!(rp("https://127.0.0.1:8443", None), Ok(None));
        assert_eq!(rp("https://[::1]:8443", None), Ok(None));
        assert!(rp("https://127.0.0.1:8443", Some("localhost")).is_err());
        assert!(rp("http://bank.example", None).is_err());
        let ok = rp("https://login.bank.example:8443/x", Some("bank.example"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (ok.id.as_str(), ok.origin.as_str()),
            ("bank.example", "https://login.bank.example:8443")
        );
        assert!(rp("https://login.bank.example", Some("ank.example")).is_err());
        assert_eq!(
            rp("https://localhost:9000", None).unwrap().unwrap().id,
            "localhost"
        );
    }

    #[test]
    fn challenges_are_bound_to_their_parts() {
        let a = challenge("login", "s", "l");
        assert_eq!(a, challenge("login", "s", "l"));
        assert_ne!(a, challenge("login", "s", "m"));
        assert_ne!(a, challenge("register", "s", "l"));
        // Length-prefixed: parts cannot slide into each other.
        assert_ne!(challenge("ab", "c", ""), challenge("a", "bc", ""));
    }
}
