//! What the steps pass to each other: `tpp-state.json` beside the kit,
//! readable by its owner only since it holds bearer and refresh tokens.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Result, TppError};

pub const FILE: &str = "tpp-state.json";

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct State {
    pub client_id: Option<String>,
    /// `private_key_jwt` or `tls_client_auth`.
    pub auth_method: Option<String>,
    pub redirect_uri: Option<String>,
    /// The registration response, as the bank returned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<serde_json::Value>,
    /// Client-credentials tokens by scope, authorisation-code tokens by
    /// consent id.
    #[serde(default)]
    pub cc_tokens: BTreeMap<String, Token>,
    #[serde(default)]
    pub consent_tokens: BTreeMap<String, Token>,
    /// The consent whose token a `call` uses by default, per scope
    /// (`accounts`, `payments`, `fundsconfirmations`): the last one
    /// exchanged for it.
    #[serde(default)]
    pub current: BTreeMap<String, String>,
    /// The authorisation in flight, for checking what comes back.
    pub pending: Option<Pending>,
    #[serde(default)]
    pub consents: BTreeMap<String, SavedConsent>,
    pub last_consent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds since the epoch.
    pub expires_at: i64,
    pub scope: Option<String>,
}

impl Token {
    pub fn fresh(&self, now: i64) -> bool {
        // A margin so a token does not expire between check and use.
        self.expires_at > now + 10
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub consent_id: String,
    pub state: String,
    pub nonce: String,
    pub scope: String,
    pub redirect_uri: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedConsent {
    /// `ais`, `payment` or `funds`.
    pub kind: String,
    /// The request body the consent was created with: a payment order
    /// must repeat its Initiation and Risk.
    pub request: serde_json::Value,
}

impl State {
    pub fn path(kit_dir: &Path) -> PathBuf {
        kit_dir.join(FILE)
    }

    pub fn load(kit_dir: &Path) -> Result<State> {
        let path = Self::path(kit_dir);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| TppError::State {
                path,
                what: format!("unreadable ({e}); delete it to start over"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(TppError::State {
                path,
                what: e.to_string(),
            }),
        }
    }

    /// Writes a temporary file created 0600 and renames it over the old
    /// one, so a crash never leaves half a file and the tokens are never
    /// readable by others, not even for a moment.
    pub fn save(&self, kit_dir: &Path) -> Result<()> {
        let path = Self::path(kit_dir);
        let err = |e: std::io::Error| TppError::State {
            path: path.clone(),
            what: e.to_string(),
        };
        let tmp = kit_dir.join(format!(".{FILE}.{}", uuid::Uuid::new_v4().simple()));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| TppError::State {
            path: path.clone(),
            what: e.to_string(),
        })?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let written = opts.open(&tmp).and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_owner_only_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::load(dir.path()).unwrap();
        assert!(s.client_id.is_none());
        s.client_id = Some("c1".into());
        s.cc_tokens.insert(
            "accounts".into(),
            Token {
                access_token: "t".into(),
                refresh_token: None,
                expires_at: 5,
                scope: None,
            },
        );
        s.save(dir.path()).unwrap();
        s.save(dir.path()).unwrap();
        let back = State::load(dir.path()).unwrap();
        assert_eq!(back.client_id.as_deref(), Some("c1"));
        assert!(!back.cc_tokens["accounts"].fresh(0));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(State::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(State::path(dir.path()), b"{not json").unwrap();
        assert!(matches!(
            State::load(dir.path()),
            Err(TppError::State { .. })
        ));
    }
}
