//! Secrets the bank keeps but must be able to read back (TOTP secrets),
//! sealed with AES-256-GCM under a key of the shared key directory: a copy
//! of the database alone does not reveal them.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const PREFIX: &str = "v1.";

pub struct SecretBox(LessSafeKey);

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(…)")
    }
}

impl SecretBox {
    /// `key`: 32 bytes.
    pub fn new(key: &[u8]) -> Option<Self> {
        UnboundKey::new(&AES_256_GCM, key)
            .ok()
            .map(|k| Self(LessSafeKey::new(k)))
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("system RNG available");
        let mut buf = plaintext.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(PREFIX),
                &mut buf,
            )
            .expect("AES-GCM sealing of a short secret");
        let mut out = nonce.to_vec();
        out.extend(buf);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// The secret, or `None` if it was not sealed by this key. A value
    /// without the prefix was stored before sealing existed and is taken
    /// as it is.
    pub fn open(&self, stored: &str) -> Option<String> {
        let Some(b64) = stored.strip_prefix(PREFIX) else {
            return Some(stored.to_string());
        };
        let raw = URL_SAFE_NO_PAD.decode(b64).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let mut buf = ct.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(PREFIX), &mut buf)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let a = SecretBox::new(&[7u8; 32]).unwrap();
        let b = SecretBox::new(&[8u8; 32]).unwrap();
        let s = a.seal("JBSWY3DPEHPK3PXP");
        assert!(s.starts_with(PREFIX) && !s.contains("JBSWY3DPEHPK3PXP"));
        assert_ne!(a.seal("JBSWY3DPEHPK3PXP"), s, "a fresh nonce each time");
        assert_eq!(a.open(&s).as_deref(), Some("JBSWY3DPEHPK3PXP"));
        assert!(b.open(&s).is_none());
        let mut tampered = s.clone();
        tampered.push('A');
        assert!(a.open(&tampered).is_none());
        assert_eq!(a.open("LEGACYPLAIN").as_deref(), Some("LEGACYPLAIN"));
    }
}
