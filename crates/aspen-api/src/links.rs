//! Opaque, tamper-evident page links: the state is serialised, then sealed
//! with HMAC-SHA256 under a key every node shares (from the key
//! directory), so a link made on one node works on another and an edited
//! link is refused.
//!
//! A link is `2.{state}.{tag}`. What it is bound to (its consent, account
//! and endpoint) is not in the state: the tag covers it, so the link opens
//! only where the same binding is given. Written into every link, the
//! binding was two thirds of each link's bytes and most of the cost of
//! making it (issue 15, twenty-fourth pass).

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format's prefix; a link of the first format starts `ey` (its state
/// was a JSON object, base64url-encoded).
const FORMAT: &str = "2.";

/// What a link is bound to, as the start of its tag: the format, then each
/// part with its length (so that no two bindings give the same input).
/// Worked out once for all of a page's links; each link's tag goes on from
/// here over its state's JSON.
pub struct Binding(hmac::Context);

impl Binding {
    pub fn new(key: &hmac::Key, bound: &[&str]) -> Binding {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(FORMAT.as_bytes());
        for part in bound {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        Binding(ctx)
    }

    fn tag(&self, state: &[u8]) -> hmac::Tag {
        let mut ctx = self.0.clone();
        ctx.update(state);
        ctx.sign()
    }

    /// `value` sealed for use where the same binding is given again (as
    /// [`Binding::link`] seals it, with no prefix).
    #[cfg(test)]
    pub fn seal<T: Serialize>(&self, value: &T) -> String {
        self.link("", value)
    }

    /// `prefix` followed by `value` sealed for use where the same binding
    /// is given again, in one string.
    pub fn link<T: Serialize>(&self, prefix: &str, value: &T) -> String {
        let state = serde_json::to_vec(value).unwrap_or_default();
        let tag = self.tag(&state);
        let mut out = String::with_capacity(prefix.len() + FORMAT.len() + state.len() * 4 / 3 + 48);
        out.push_str(prefix);
        out.push_str(FORMAT);
        URL_SAFE_NO_PAD.encode_string(&state, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut out);
        out
    }

    /// A link sealed ([`Binding::link`]) with the same binding; `None` for
    /// anything else.
    pub fn open<T: DeserializeOwned>(&self, link: &str) -> Option<T> {
        let (state, sent) = link.strip_prefix(FORMAT)?.split_once('.')?;
        let (state, sent) = (
            URL_SAFE_NO_PAD.decode(state).ok()?,
            URL_SAFE_NO_PAD.decode(sent).ok()?,
        );
        let want = self.tag(&state);
        aws_lc_rs::constant_time::verify_slices_are_equal(want.as_ref(), &sent).ok()?;
        serde_json::from_slice(&state).ok()
    }
}

/// A link of the first format, whose state carries its own binding (the
/// caller checks it). Links made before the twenty-fourth pass of issue 15,
/// or by a node not yet upgraded, keep working; remove with the release
/// after the one that made the second format.
pub fn open_first_format<T: DeserializeOwned>(key: &hmac::Key, link: &str) -> Option<T> {
    let (body, tag) = link.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    hmac::verify(key, body.as_bytes(), &tag).ok()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
}

/// How the first format sealed (for tests of links made before).
#[cfg(test)]
pub fn seal_first_format<T: Serialize>(key: &hmac::Key, value: &T) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default());
    let tag = hmac::sign(key, body.as_bytes());
    format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn tampering_is_detected() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let bound = Binding::new(&key, &["consent-1", "acc-1"]);
        let t = bound.seal(&json!({"ms": 5}));
        assert!(t.starts_with("2."), "{t}");
        assert_eq!(bound.open::<Value>(&t).unwrap()["ms"], 5);
        // One binding seals many links.
        assert_eq!(
            bound.open::<Value>(&bound.seal(&json!({"ms": 7}))).unwrap()["ms"],
            7
        );
        let (_, s) = t.rsplit_once('.').unwrap();
        let forged = format!("2.{}.{s}", URL_SAFE_NO_PAD.encode(br#"{"ms":6}"#));
        assert!(bound.open::<Value>(&forged).is_none());
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"other");
        assert!(
            Binding::new(&other, &["consent-1", "acc-1"])
                .open::<Value>(&t)
                .is_none()
        );
        assert!(bound.open::<Value>(&t[..t.len() - 1]).is_none());
        assert!(bound.open::<Value>(t.trim_start_matches("2.")).is_none());
        // A first-format link is not opened as the second.
        assert!(
            bound
                .open::<Value>(&seal_first_format(&key, &json!({})))
                .is_none()
        );
    }

    #[test]
    fn a_link_opens_only_with_its_binding() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let t = Binding::new(&key, &["consent-1", "acc-1"]).seal(&json!({"ms": 5}));
        for other in [
            &["consent-2", "acc-1"][..],
            &["consent-1", "acc-2"],
            &["consent-1"],
            &["consent-1", "acc-1", ""],
            // The same bytes cut differently.
            &["consent-1a", "cc-1"],
            &["consent-1acc-1"],
        ] {
            assert!(
                Binding::new(&key, other).open::<Value>(&t).is_none(),
                "{other:?}"
            );
        }
    }

    #[test]
    fn first_format_links_still_open() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let t = seal_first_format(&key, &json!({"c": "consent-1", "ms": 5}));
        assert!(t.starts_with("ey"), "{t}");
        let v = open_first_format::<Value>(&key, &t).unwrap();
        assert_eq!(v["c"], "consent-1");
        let (b, s) = t.split_once('.').unwrap();
        let forged = format!("{}.{s}", URL_SAFE_NO_PAD.encode(br#"{"c":"consent-2"}"#));
        assert!(open_first_format::<Value>(&key, &forged).is_none());
        assert!(open_first_format::<Value>(&key, b).is_none());
        // Nor is a second-format link opened as the first.
        let second = Binding::new(&key, &[]).seal(&json!({"ms": 5}));
        assert!(open_first_format::<Value>(&key, &second).is_none());
    }
}
