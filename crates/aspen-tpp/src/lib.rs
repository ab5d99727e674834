//! A TPP client for Open Banking UK v3.1.x banks, driven by a kit (the
//! files `aspen sandbox init` writes, or the same files from a real
//! directory): dynamic client registration, client-credentials tokens,
//! consents, the FAPI hybrid authorisation with its ID-token checks, the
//! code exchange, resource calls with detached request signatures, and a
//! domestic payment run to its final status.
//!
//! It talks to the bank only over HTTP, like any TPP: it does not link
//! aspen's server crates, so what it proves about aspen it proves from the
//! outside. JOSE comes from `aspen-jose`, the same code the bank verifies
//! with, which is why the request signatures here are what
//! `aspen_jose::verify_detached` accepts by construction; the tests check
//! it against the running server anyway.

mod client;
mod idtoken;
mod kit;
pub mod postman;
mod state;

pub use client::{
    CallRequest, ConsentKind, Exchange, Observer, Reply, TokenChoice, Tpp, Traffic, is_final,
    shorten,
};
pub use idtoken::{IdTokenError, IdTokenExpectations, check_id_token};
pub use kit::Kit;
pub use state::{Pending, SavedConsent, State, Token};

use std::path::PathBuf;

/// The trust anchor OB TPPs name in their request signatures.
pub const TAN: &str = "openbanking.org.uk";

#[derive(Debug, thiserror::Error)]
pub enum TppError {
    #[error("kit {}: {what}", dir.display())]
    Kit { dir: PathBuf, what: String },
    #[error("state file {}: {what}", path.display())]
    State { path: PathBuf, what: String },
    /// A step that needs an earlier one (register before token, …).
    #[error("{0}")]
    Order(String),
    #[error("{0}")]
    Input(String),
    /// The request never got an HTTP answer (DNS, connect, TLS, timeout);
    /// `detail` carries the whole cause chain, where the useful part is.
    #[error("{method} {url}: {detail}")]
    Transport {
        method: String,
        url: String,
        detail: String,
    },
    /// The bank answered with an error status (boxed: it carries the
    /// body, and every `Result` here would otherwise be as large).
    #[error("{0}")]
    Bank(Box<BankError>),
    /// The bank answered 2xx with something OB does not allow.
    #[error("unexpected answer from the bank: {0}")]
    Protocol(String),
    #[error("the bank's ID token is refused: {0}")]
    IdToken(#[from] IdTokenError),
    #[error("the authorisation ended with {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Authorization {
        error: String,
        description: Option<String>,
    },
    #[error("the bank's response signature is refused: {0}")]
    ResponseSignature(String),
    #[error("signing failed: {0}")]
    Jose(#[from] aspen_jose::JoseError),
    #[error("payment {id} is still {status} after {secs} s")]
    PaymentTimeout {
        id: String,
        status: String,
        secs: u64,
    },
}

/// An error answer: the request and the bank's body, the OB error (or
/// OAuth error) object when there is one.
#[derive(Debug)]
pub struct BankError {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub body: Option<serde_json::Value>,
    pub text: String,
    pub www_authenticate: Option<String>,
}

impl std::fmt::Display for BankError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} answered {}{}{}",
            self.method,
            self.url,
            self.status,
            reason(self.status),
            bank_detail(&self.body, &self.text, &self.www_authenticate)
        )
    }
}

impl std::error::Error for BankError {}

fn reason(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

fn bank_detail(
    body: &Option<serde_json::Value>,
    text: &str,
    www_authenticate: &Option<String>,
) -> String {
    let mut out = String::new();
    if let Some(b) = body {
        out.push_str(":\n");
        out.push_str(&serde_json::to_string_pretty(b).unwrap_or_else(|_| b.to_string()));
    } else if !text.trim().is_empty() {
        out.push_str(": ");
        out.push_str(&text.chars().take(500).collect::<String>());
    } else {
        out.push_str(" with no body");
    }
    if let Some(w) = www_authenticate {
        out.push_str(&format!(" (www-authenticate: {w})"));
    }
    out
}

pub type Result<T, E = TppError> = std::result::Result<T, E>;

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
