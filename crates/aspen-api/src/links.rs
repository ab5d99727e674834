//! Opaque, tamper-evident page links: the state is serialised, then sealed
//! with HMAC-SHA256 under a key every node shares (from the key
//! directory), so a link made on one node works on another and an edited
//! link is refused.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn seal<T: Serialize>(key: &hmac::Key, value: &T) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default());
    let tag = hmac::sign(key, body.as_bytes());
    format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

pub fn open<T: DeserializeOwned>(key: &hmac::Key, token: &str) -> Option<T> {
    let (body, tag) = token.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    hmac::verify(key, body.as_bytes(), &tag).ok()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampering_is_detected() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let t = seal(&key, &serde_json::json!({"ms": 5}));
        assert_eq!(open::<serde_json::Value>(&key, &t).unwrap()["ms"], 5);
        let (b, s) = t.split_once('.').unwrap();
        let forged = format!("{}.{s}", URL_SAFE_NO_PAD.encode(br#"{"ms":6}"#));
        assert!(open::<serde_json::Value>(&key, &forged).is_none());
        assert!(
            open::<serde_json::Value>(&hmac::Key::new(hmac::HMAC_SHA256, b"other"), &t).is_none()
        );
        assert!(open::<serde_json::Value>(&key, b).is_none());
    }
}
