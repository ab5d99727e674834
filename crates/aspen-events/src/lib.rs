//! Event notifications: Security Event Tokens (RFC 8417) for the outbox's
//! events, signed with the bank's PS256 key (EVT-11..13), and their
//! real-time delivery to TPP callbacks with retries (EVT-20, EVT-21).
//! Aggregated polling reads the same outbox and the same signed SETs.

use std::sync::Arc;
use std::time::Duration;

use aspen_jose::SigningKey;
use aspen_store::Store;
use aspen_store::events::{EventRecord, PushOutcome};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error(transparent)]
    Store(#[from] aspen_store::StoreError),
    #[error("signing the SET failed: {0}")]
    Sign(String),
}

/// Makes the SET of an event: the same bytes for its whole life (kept in
/// the outbox the first time), so a retry or a poll never changes it.
pub struct SetSigner {
    pub key: SigningKey,
    /// `iss`: the bank's issuer.
    pub issuer: String,
    /// Public base URL of the resource links.
    pub base_url: String,
}

/// The API path of a resource type, for its `rlk` link.
fn resource_path(rty: &str, rid: &str) -> String {
    let (api, plural) = match rty {
        "domestic-payment" => ("pisp", "domestic-payments"),
        "international-payment" => ("pisp", "international-payments"),
        "domestic-payment-consent" => ("pisp", "domestic-payment-consents"),
        "international-payment-consent" => ("pisp", "international-payment-consents"),
        "account-access-consent" => ("aisp", "account-access-consents"),
        "funds-confirmation-consent" => ("cbpii", "funds-confirmation-consents"),
        other => ("", other),
    };
    format!("/open-banking/v3.1/{api}/{plural}/{rid}")
}

impl SetSigner {
    pub fn claims(&self, e: &EventRecord, iat: i64) -> serde_json::Value {
        let link = format!(
            "{}{}",
            self.base_url,
            resource_path(&e.resource_type, &e.resource_id)
        );
        let subject = json!({
            "subject_type": "http://openbanking.org.uk/rid_http://openbanking.org.uk/rty",
            "http://openbanking.org.uk/rid": e.resource_id,
            "http://openbanking.org.uk/rty": e.resource_type,
            // Every version of the resource aspen serves (EVT-12).
            "http://openbanking.org.uk/rlk": [{ "version": "v3.1", "link": link }],
        });
        let mut event = json!({ "subject": subject });
        if let Some(r) = &e.reason {
            event["reason"] = json!(r);
        }
        json!({
            "iss": self.issuer,
            "iat": iat,
            "jti": e.jti,
            "aud": e.client_id,
            "sub": link,
            "txn": e.txn,
            "toe": e.toe / 1000,
            "events": { e.event_type.clone(): event },
        })
    }

    /// The event's SET: the one kept in the outbox, or a new one kept now.
    pub async fn set_of(&self, store: &dyn Store, e: &EventRecord) -> Result<String, EventsError> {
        if let Some(s) = &e.set_jws {
            return Ok(s.clone());
        }
        let jws = aspen_jose::sign_jwt(
            &self.key,
            Some("JWT"),
            &self.claims(e, chrono::Utc::now().timestamp()),
        )
        .map_err(|x| EventsError::Sign(x.to_string()))?;
        Ok(store.keep_set(&e.jti, &jws).await?)
    }
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Longest a push may take (connect to answer).
    pub timeout: Duration,
    /// First retry delay; doubles per attempt up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Attempts in all before the callback counts as unresponsive.
    pub max_attempts: i64,
    /// How often the outbox is looked at.
    pub poll: Duration,
    /// `x-fapi-financial-id` sent with pushes (EVT-20).
    pub financial_id: String,
}

/// Pushes due events to their TPP's callback (EVT-20): the compact SET as
/// the body (`application/jwt`), no client certificate, 202 expected.
/// Every node runs one; the outbox's lease gives each push to one node.
pub struct Deliverer {
    store: Arc<dyn Store>,
    signer: Arc<SetSigner>,
    http: reqwest::Client,
    cfg: DeliveryConfig,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Deliverer {
    pub fn new(
        store: Arc<dyn Store>,
        signer: Arc<SetSigner>,
        http: reqwest::Client,
        cfg: DeliveryConfig,
    ) -> Self {
        Self {
            store,
            signer,
            http,
            cfg,
        }
    }

    fn retry_at(&self, attempts: i64) -> Option<i64> {
        if attempts >= self.cfg.max_attempts {
            return None;
        }
        let exp = (attempts.max(1) - 1).min(20) as u32;
        let delay = self
            .cfg
            .retry_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.cfg.retry_cap);
        Some(now_ms() + delay.as_millis() as i64)
    }

    async fn push(&self, e: &EventRecord) -> PushOutcome {
        let Some(url) = &e.push_url else {
            return PushOutcome::Refused("no callback".into());
        };
        let set = match self.signer.set_of(self.store.as_ref(), e).await {
            Ok(s) => s,
            Err(err) => {
                return PushOutcome::Failed {
                    error: err.to_string(),
                    next_at: self.retry_at(e.push_attempts),
                };
            }
        };
        let sent = self
            .http
            .post(url)
            .timeout(self.cfg.timeout)
            .header("content-type", "application/jwt")
            .header("x-fapi-financial-id", &self.cfg.financial_id)
            .header("x-fapi-interaction-id", &e.txn)
            .body(set)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().as_u16() == 202 => PushOutcome::Accepted,
            Ok(r) if r.status().is_client_error() => {
                PushOutcome::Refused(format!("the callback answered {}", r.status()))
            }
            Ok(r) => PushOutcome::Failed {
                error: format!("the callback answered {}", r.status()),
                next_at: self.retry_at(e.push_attempts),
            },
            Err(err) => PushOutcome::Failed {
                error: if err.is_timeout() {
                    "the callback did not answer in time".into()
                } else {
                    format!("cannot reach the callback: {err}")
                },
                next_at: self.retry_at(e.push_attempts),
            },
        }
    }

    /// One pass: claims due pushes and sends them concurrently. Returns how
    /// many were sent.
    pub async fn run_due(&self) -> Result<usize, EventsError> {
        let now = now_ms();
        // The lease outlives the push's own timeout, so no other node takes
        // an event while this one may still deliver it.
        let lease = now + 2 * self.cfg.timeout.as_millis() as i64 + 1000;
        let due = self.store.claim_pushes(now, lease, 64).await?;
        let n = due.len();
        let results = futures_util::future::join_all(due.iter().map(|e| async move {
            let outcome = self.push(e).await;
            (e, outcome)
        }))
        .await;
        for (e, outcome) in results {
            match &outcome {
                PushOutcome::Accepted => {
                    tracing::info!(jti = %e.jti, client_id = %e.client_id, "event delivered")
                }
                PushOutcome::Refused(why) => {
                    tracing::info!(jti = %e.jti, %why, "event refused by the callback; left for polling")
                }
                PushOutcome::Failed { error, next_at } => {
                    tracing::warn!(jti = %e.jti, %error, attempts = e.push_attempts, retry = next_at.is_some(), "event delivery failed")
                }
            }
            self.store.push_result(&e.jti, &outcome).await?;
        }
        Ok(n)
    }

    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.run_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "event delivery pass failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.poll) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
