//! Random opaque values (tokens, client secrets) and their stored hashes.
//! Tokens carry 256 bits of entropy (AUTH-58), so an unsalted SHA-256 is
//! enough to make a database dump useless without slowing every request.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system RNG available");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A client secret: 32 base62 characters (≈190 bits, DCR-26).
pub fn random_secret() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut b = [0u8; 1];
        aws_lc_rs::rand::fill(&mut b).expect("system RNG available");
        // Reject the top bytes so every symbol is equally likely.
        if b[0] < 248 {
            out.push(ALPHABET[(b[0] % 62) as usize] as char);
        }
    }
    out
}

/// SHA-256 in lowercase hex, as stored. Written through `encode_to_slice`,
/// a table lookup a byte: `hex::encode` went through a character iterator,
/// 1,700 instructions a hash, on every token issued and every token checked
/// (issue 15, fourteenth pass).
pub fn hash(value: &str) -> String {
    let digest = digest::digest(&digest::SHA256, value.as_bytes());
    let mut out = [0u8; 64];
    if hex::encode_to_slice(digest.as_ref(), &mut out).is_ok()
        && let Ok(text) = std::str::from_utf8(&out)
    {
        return text.to_owned();
    }
    // Unreachable: SHA-256's 32 bytes always fill the 64, in ASCII.
    hex::encode(digest.as_ref())
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    /// The stored form: lowercase hex of SHA-256 (FIPS 180-2's "abc" vector).
    #[test]
    fn hash_is_lowercase_hex_sha256() {
        assert_eq!(
            super::hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(super::hash("").len(), 64);
    }
}
