//! What the token endpoint keeps of clients between requests.
//!
//! [`ClientKeys`]: key sets, parsed once and found again by their exact
//! text: a hit is the key set the row holds, parsed (its RSA public keys
//! built) by an earlier request; changed keys are different text, which
//! misses.
//!
//! [`ClientRows`]: the client rows this node last read, by id, for the
//! `client_credentials` grant only. Such a copy can be stale (a DCR update
//! or delete on another node), so it never decides on its own: the token is
//! written only if the row is still live at the copy's revision, in the
//! same statement as the token (`AuthStore::insert_cc_token`), and any
//! refusal is decided again on the row as it is now (issue 15). Each row
//! is kept as a [`KnownClient`], with what its checks parse of it.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};

use aspen_http::client_cert::Dn;
use aspen_jose::Jwks;
use aspen_store::auth::TokenClient;

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

/// A client row, with its registered subject DN parsed once per row read
/// rather than once per `tls_client_auth` token (issue 15).
pub struct KnownClient {
    row: TokenClient,
    /// `tls_client_auth_subject_dn`; `None` when absent or not a DN.
    pub subject_dn: Option<Dn>,
}

impl KnownClient {
    pub fn new(row: TokenClient) -> KnownClient {
        let subject_dn = row
            .tls_client_auth_subject_dn
            .as_deref()
            .and_then(Dn::parse);
        KnownClient { row, subject_dn }
    }
}

impl Deref for KnownClient {
    type Target = TokenClient;

    fn deref(&self) -> &TokenClient {
        &self.row
    }
}

/// Client rows as this node last read them ([module docs](self)).
#[derive(Default)]
pub struct ClientRows {
    rows: Mutex<HashMap<String, Arc<KnownClient>>>,
}

impl ClientRows {
    pub fn get(&self, client_id: &str) -> Option<Arc<KnownClient>> {
        self.lock().get(client_id).cloned()
    }

    /// Keeps a row just read (or forgets the client, if it is gone).
    pub fn put(&self, client_id: &str, row: Option<TokenClient>) -> Option<Arc<KnownClient>> {
        let mut rows = self.lock();
        let Some(row) = row else {
            rows.remove(client_id);
            return None;
        };
        if rows.len() >= MAX_ENTRIES {
            rows.clear();
        }
        let row = Arc::new(KnownClient::new(row));
        rows.insert(client_id.to_string(), row.clone());
        Some(row)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<KnownClient>>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
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
