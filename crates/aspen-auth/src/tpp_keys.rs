//! A TPP's signing keys, from its SSA: the inline `software_jwks`, or the
//! `software_jwks_endpoint` — served from the configured offline map when
//! listed there, fetched with a timeout and cached otherwise (AUTH-11,
//! DCR-7). Keys in a JWT header are never used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aspen_jose::Jwks;

const CACHE_TTL: Duration = Duration::from_secs(300);

pub struct TppKeyResolver {
    map: Vec<(String, Jwks)>,
    timeout: Duration,
    cache: Mutex<HashMap<String, (Instant, Jwks)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyResolveError {
    #[error("the software statement carries neither software_jwks nor software_jwks_endpoint")]
    NoKeys,
    #[error("software_jwks is not a valid JWKS: {0}")]
    BadInline(String),
    #[error("software_jwks_endpoint {0} must be an https URL")]
    BadUrl(String),
    #[error("cannot fetch {url}: {reason}")]
    Fetch { url: String, reason: String },
}

impl TppKeyResolver {
    pub fn new(map: Vec<(String, Jwks)>, timeout: Duration) -> Self {
        Self {
            map,
            timeout,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key set named by an SSA's claims. The inline set wins: it is
    /// covered by the directory's signature, so it needs no network trust.
    pub async fn for_ssa(&self, ssa: &serde_json::Value) -> Result<Jwks, KeyResolveError> {
        if let Some(inline) = ssa.get("software_jwks").filter(|v| v.is_object()) {
            return Jwks::from_value(inline).map_err(|e| KeyResolveError::BadInline(e.to_string()));
        }
        let url = ssa
            .get("software_jwks_endpoint")
            .and_then(|v| v.as_str())
            .ok_or(KeyResolveError::NoKeys)?;
        self.by_url(url, false).await
    }

    /// `refresh` bypasses the cache, for the one refetch on an unknown kid.
    pub async fn by_url(&self, url: &str, refresh: bool) -> Result<Jwks, KeyResolveError> {
        if let Some((_, jwks)) = self.map.iter().find(|(u, _)| u == url) {
            return Ok(jwks.clone());
        }
        if !url.starts_with("https://") {
            return Err(KeyResolveError::BadUrl(url.to_string()));
        }
        if !refresh
            && let Ok(cache) = self.cache.lock()
            && let Some((at, jwks)) = cache.get(url)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(jwks.clone());
        }
        let fetch_err = |reason: String| KeyResolveError::Fetch {
            url: url.to_string(),
            reason,
        };
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| fetch_err(e.to_string()))?;
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| fetch_err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fetch_err(format!("HTTP {}", resp.status())));
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| fetch_err(e.to_string()))?;
        let jwks = Jwks::from_value(&body).map_err(|e| fetch_err(e.to_string()))?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(url.to_string(), (Instant::now(), jwks.clone()));
        }
        Ok(jwks)
    }
}
