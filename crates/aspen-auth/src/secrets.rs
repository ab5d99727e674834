//! Random opaque values (tokens, client secrets) and their stored hashes.
//! Tokens carry 256 bits of entropy (AUTH-58), so an unsalted SHA-256 is
//! enough to make a database dump useless without slowing every request.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use aspen_store::auth::TokenKey;

pub fn random_token() -> String {
    let mut out = String::with_capacity(43);
    push_random(&mut out);
    out
}

/// 256 random bits in base64url (43 characters), at the end of `out`.
fn push_random(out: &mut String) {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system RNG available");
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// An access or refresh token: the row id it is stored under, a dot, and
/// 256 random bits. The id lets a token be found by its row instead of an
/// index over its hash, whose random leaf cost a WAL frame on every issue
/// (issue 15). The id is not a secret: ids ascend, so a client can tell
/// roughly how many tokens were issued between two of its own, and nothing
/// else. The 256 bits are what a client must hold (AUTH-58), and the row
/// must hold the whole token's hash.
pub fn carried_token(id: i64) -> String {
    use std::fmt::Write as _;
    // One allocation: the id's at most 19 digits, the dot, the 43.
    let mut out = String::with_capacity(64);
    let _ = write!(out, "{id}.");
    push_random(&mut out);
    out
}

/// Where a presented token's row is, and the hash it must hold. A token
/// with an id is `<digits>.<rest>`; one without a dot was issued before
/// tokens carried ids (they never held a dot: base64url). Anything else,
/// an id that is not a positive decimal number included, names no row.
pub fn token_key(presented: &str) -> TokenKey {
    let hash = hash(presented);
    let id = presented.split_once('.').map(|(id, _)| {
        (!id.is_empty() && id.len() <= 18 && id.bytes().all(|b| b.is_ascii_digit()))
            .then(|| id.parse::<i64>().ok())
            .flatten()
            .filter(|&i| i > 0)
            .unwrap_or(0)
    });
    TokenKey { id, hash }
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

    /// A token carries its row id; what it hashes to is the whole token.
    /// A token from before ids (no dot) is looked up by its hash alone;
    /// any other id part names id 0, which no row has.
    #[test]
    fn a_token_names_its_row_and_the_hash_of_all_of_it() {
        let t = super::carried_token(4097);
        let (id, secret) = t.split_once('.').unwrap();
        assert_eq!(id, "4097");
        assert_eq!(secret.len(), 43);
        let key = super::token_key(&t);
        assert_eq!(key.id, Some(4097));
        assert_eq!(key.hash, super::hash(&t));
        assert_ne!(super::token_key(&super::carried_token(4097)).hash, key.hash);

        let legacy = super::random_token();
        assert!(!legacy.contains('.'));
        assert_eq!(super::token_key(&legacy).id, None);
        assert_eq!(super::token_key(&legacy).hash, super::hash(&legacy));

        for bad in [
            ".abc",
            "0.abc",
            "-5.abc",
            "+5.abc",
            "5a.abc",
            " 5.abc",
            "99999999999999999999.abc",
            "١٢.abc",
        ] {
            assert_eq!(super::token_key(bad).id, Some(0), "{bad}");
        }
        assert_eq!(super::token_key("12.a.b").id, Some(12));
    }
}
