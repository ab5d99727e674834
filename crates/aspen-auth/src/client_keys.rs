//! Client key sets, parsed once and found again by their exact text.
//!
//! The token endpoint reads the client's row on every request, so a DCR
//! update or delete made on any node counts at once, and looks the row's
//! `jwks` text up here: a hit is the key set that very row holds, parsed
//! (its RSA public keys built) by an earlier request. Nothing here can be
//! stale: changed keys are different text, which misses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aspen_jose::Jwks;

/// Distinct key sets kept; past it the cache starts over (a node serving
/// more clients than this parses some sets again, nothing worse).
const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub struct ClientKeys {
    parsed: Mutex<HashMap<String, Arc<Jwks>>>,
}

impl ClientKeys {
    /// The key set a client registered, from the stored JSON text; `None`
    /// when it holds no key that can verify PS256.
    pub fn get(&self, jwks_json: &str) -> Option<Arc<Jwks>> {
        if let Some(hit) = self.lock().get(jwks_json) {
            return Some(hit.clone());
        }
        let value: serde_json::Value = serde_json::from_str(jwks_json).ok()?;
        let jwks = Arc::new(Jwks::from_value(&value).ok()?);
        let mut parsed = self.lock();
        if parsed.len() >= MAX_ENTRIES {
            parsed.clear();
        }
        parsed.insert(jwks_json.to_string(), jwks.clone());
        Some(jwks)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Jwks>>> {
        self.parsed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(kid: &str) -> String {
        let k = aspen_jose::SigningKey::generate(Some(kid.into())).unwrap();
        serde_json::json!({ "keys": [k.public_jwk()] }).to_string()
    }

    #[test]
    fn a_changed_key_set_is_parsed_again_never_served_from_before() {
        let cache = ClientKeys::default();
        let (a, b) = (set("a"), set("b"));
        assert!(cache.get(&a).unwrap().find("a").is_some());
        assert!(Arc::ptr_eq(
            &cache.get(&a).unwrap(),
            &cache.get(&a).unwrap()
        ));
        // The same client re-registered with other keys: its new row's text.
        let now = cache.get(&b).unwrap();
        assert!(now.find("b").is_some() && now.find("a").is_none());
    }

    #[test]
    fn unusable_sets_are_refused_and_not_kept() {
        let cache = ClientKeys::default();
        assert!(cache.get(r#"{"keys":[]}"#).is_none());
        assert!(cache.get("not json").is_none());
        assert!(cache.lock().is_empty());
    }
}
