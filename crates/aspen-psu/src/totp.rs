//! TOTP (RFC 6238, HMAC-SHA1, 6 digits, 30-second steps): what every
//! authenticator app implements. Written over aws-lc-rs's HMAC rather than
//! a TOTP crate, which would bring a second crypto stack for an HMAC and a
//! truncation; the RFC's own test vectors check it below.

use aws_lc_rs::hmac;
use data_encoding::BASE32_NOPAD;

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Steps either side of now that are accepted (clock drift of a phone).
const SKEW: i64 = 1;

fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mac = hmac::sign(&k, &counter.to_be_bytes());
    let m = mac.as_ref();
    let off = (m[m.len() - 1] & 0x0f) as usize;
    let bin = (u32::from(m[off] & 0x7f) << 24)
        | (u32::from(m[off + 1]) << 16)
        | (u32::from(m[off + 2]) << 8)
        | u32::from(m[off + 3]);
    format!(
        "{:0width$}",
        bin % 10u32.pow(digits),
        width = digits as usize
    )
}

/// The secret's bytes from its base32 form (as authenticator apps show it:
/// upper case, no padding; spaces and lower case are forgiven).
pub fn decode_secret(b32: &str) -> Option<Vec<u8>> {
    let clean: String = b32
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    BASE32_NOPAD.decode(clean.as_bytes()).ok()
}

pub fn code_at(secret: &[u8], unix_secs: i64) -> String {
    hotp(secret, (unix_secs / STEP_SECS) as u64, DIGITS)
}

/// The time step `code` is valid for around `now`, if any (constant-time
/// comparison per candidate).
pub fn matching_step(secret_b32: &str, code: &str, now: i64) -> Option<i64> {
    let key = decode_secret(secret_b32)?;
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now_step = now / STEP_SECS;
    (now_step - SKEW..=now_step + SKEW).find(|step| {
        let want = hotp(&key, *step as u64, DIGITS);
        crate::constant_time_eq(want.as_bytes(), code.as_bytes())
    })
}

/// A new 160-bit secret, base32 (RFC 4226's recommended length).
pub fn new_secret() -> String {
    let mut b = [0u8; 20];
    aws_lc_rs::rand::fill(&mut b).expect("system RNG available");
    BASE32_NOPAD.encode(&b)
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &str) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors() {
        let key = b"12345678901234567890";
        for (t, want) in [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ] {
            assert_eq!(hotp(key, (t / STEP_SECS) as u64, 8), want, "T={t}");
        }
    }

    #[test]
    fn codes_match_their_step_and_drift_by_one() {
        let secret = BASE32_NOPAD.encode(b"12345678901234567890");
        let now = 1_111_111_111;
        let code = code_at(b"12345678901234567890", now);
        assert_eq!(matching_step(&secret, &code, now), Some(now / STEP_SECS));
        assert!(matching_step(&secret, &code, now + STEP_SECS).is_some());
        assert!(matching_step(&secret, &code, now + 3 * STEP_SECS).is_none());
        assert!(matching_step(&secret, "12345", now).is_none());
        assert!(matching_step(&secret.to_lowercase(), &code, now).is_some());
        assert!(decode_secret(&new_secret()).is_some_and(|k| k.len() == 20));
    }
}
