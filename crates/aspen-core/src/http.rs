//! The `http` core: the connector API (`docs/connector-openapi.yaml`) that a
//! bank implements in front of its core system, called over mutual TLS.
//!
//! Every call has a connect timeout and a total timeout. Every operation of
//! the API is idempotent (reads, and a payment `PUT` keyed by its id), so a
//! call that failed in transit is tried again a bounded number of times. A
//! circuit breaker stops calling a core that keeps failing: while open,
//! calls fail at once with [`CoreError::Unavailable`] and the time left, so
//! TPPs get a prompt 503 instead of a queue of hanging requests.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{
    Account, AccountResource, Core, CoreError, CorePayment, Customer, Direction,
    PaymentInstruction, ResourceKind, TxEntry, TxFilter, TxPageRequest, TxSummary,
};

/// The API's base path; a later incompatible version gets `/core/v2`.
pub const BASE: &str = "/core/v1";

/// Largest response body accepted from the core.
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct HttpCoreOptions {
    /// `https://host:port` of the connector.
    pub url: String,
    pub connect_timeout: Duration,
    /// Whole call, from connect to the last body byte.
    pub timeout: Duration,
    /// Further attempts after a failure in transit.
    pub retries: u32,
    /// Consecutive failed calls that open the circuit.
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before one is tried.
    pub breaker_open: Duration,
}

struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    /// While the circuit is half-open, the one trial call in flight and
    /// when it is given up (a caller that went away never reports back).
    trial_until: Option<Instant>,
}

pub struct HttpCore {
    client: reqwest::Client,
    opts: HttpCoreOptions,
    breaker: Mutex<Breaker>,
}

const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Kinds on the wire, in paths: `beneficiary`, `direct-debit`, …
pub fn kind_from_path(s: &str) -> Option<ResourceKind> {
    use ResourceKind::*;
    [
        Beneficiary,
        DirectDebit,
        StandingOrder,
        ScheduledPayment,
        Statement,
        Product,
        Offer,
        Party,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

#[derive(Serialize, Deserialize)]
pub struct AccountsBody {
    pub accounts: Vec<Account>,
}

#[derive(Serialize, Deserialize)]
pub struct TransactionsBody {
    pub transactions: Vec<TxEntry>,
}

#[derive(Serialize, Deserialize)]
pub struct ResourcesBody {
    pub resources: Vec<AccountResource>,
}

#[derive(Serialize, Deserialize)]
pub struct FundsBody {
    pub available: bool,
}

/// Query of the transaction endpoints.
#[derive(Debug, Serialize, Deserialize)]
pub struct TxQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub credits: bool,
    pub debits: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl TxQuery {
    pub fn filter(&self) -> TxFilter {
        TxFilter {
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            credits: self.credits,
            debits: self.debits,
        }
    }
}

/// An answer that is not a usable result: what to tell the caller, and
/// whether trying again may help.
enum Failure {
    Transient(CoreError),
    Final(CoreError),
}

fn unavailable(detail: impl Into<String>, retry_after: Duration) -> CoreError {
    CoreError::Unavailable {
        detail: detail.into(),
        retry_after,
    }
}

impl HttpCore {
    pub fn new(opts: HttpCoreOptions, tls: rustls::ClientConfig) -> Result<Self, CoreError> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                CoreError::BadRequest(format!("cannot build the connector client: {e}"))
            })?;
        Ok(Self {
            client,
            opts: HttpCoreOptions {
                url: opts.url.trim_end_matches('/').to_string(),
                ..opts
            },
            breaker: Mutex::new(Breaker {
                failures: 0,
                open_until: None,
                trial_until: None,
            }),
        })
    }

    /// `Err` with the time left while the circuit is open. Once the open
    /// period is over, one call at a time goes through as a trial until one
    /// succeeds.
    fn admit(&self) -> Result<(), CoreError> {
        let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let Some(open_until) = b.open_until else {
            return Ok(());
        };
        if open_until > now {
            return Err(unavailable(
                "the connector failed repeatedly; calls are paused (circuit open)",
                open_until - now,
            ));
        }
        if b.trial_until.is_some_and(|t| t > now) {
            return Err(unavailable(
                "the connector failed repeatedly; a trial call is in flight",
                self.opts.timeout,
            ));
        }
        b.trial_until = Some(now + self.opts.timeout * (self.opts.retries + 1) + self.opts.timeout);
        Ok(())
    }

    fn outcome(&self, ok: bool) {
        let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        b.trial_until = None;
        if ok {
            b.failures = 0;
            b.open_until = None;
            return;
        }
        b.failures += 1;
        if b.failures >= self.opts.breaker_failures {
            b.open_until = Some(Instant::now() + self.opts.breaker_open);
            tracing::warn!(
                failures = b.failures,
                open_secs = self.opts.breaker_open.as_secs(),
                "core connector circuit opened"
            );
        }
    }

    async fn once<T: DeserializeOwned>(
        &self,
        method: &Method,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<Option<T>, Failure> {
        let mut req = self
            .client
            .request(method.clone(), url)
            .header("accept", "application/json");
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_vec());
        }
        let mut resp = req.send().await.map_err(|e| {
            Failure::Transient(unavailable(
                if e.is_timeout() {
                    "the connector did not answer in time".to_string()
                } else {
                    format!("cannot reach the connector: {e}")
                },
                self.opts.breaker_open,
            ))
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(self.opts.breaker_open, Duration::from_secs);
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if bytes.len() + c.len() > MAX_BODY {
                        return Err(Failure::Final(CoreError::BadResponse(
                            "the connector's answer is too large".into(),
                        )));
                    }
                    bytes.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Failure::Transient(unavailable(
                        format!("the connector's answer broke off: {e}"),
                        self.opts.breaker_open,
                    )));
                }
            }
        }
        let message = || {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("HTTP {status}"))
        };
        match status {
            s if s.is_success() => serde_json::from_slice::<T>(&bytes).map(Some).map_err(|e| {
                Failure::Final(CoreError::BadResponse(format!(
                    "{method} {url}: not a connector answer: {e}"
                )))
            }),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::CONFLICT => Err(Failure::Final(CoreError::Conflict(message()))),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                Err(Failure::Final(CoreError::BadRequest(message())))
            }
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS => Err(Failure::Transient(unavailable(
                format!("the connector answered {status}: {}", message()),
                retry_after,
            ))),
            _ => Err(Failure::Final(CoreError::BadResponse(format!(
                "{method} {url}: HTTP {status}: {}",
                message()
            )))),
        }
    }

    /// One call with retries; every connector operation is idempotent.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Option<T>, CoreError> {
        self.admit()?;
        let url = format!("{}{BASE}{path}", self.opts.url);
        let mut attempt = 0;
        loop {
            match self.once::<T>(&method, &url, body.as_deref()).await {
                Ok(v) => {
                    self.outcome(true);
                    return Ok(v);
                }
                Err(Failure::Final(e)) => {
                    // A 4xx is an answer from a working core; garbage is not.
                    self.outcome(!matches!(e, CoreError::BadResponse(_)));
                    return Err(e);
                }
                Err(Failure::Transient(e)) if attempt >= self.opts.retries => {
                    self.outcome(false);
                    return Err(e);
                }
                Err(Failure::Transient(e)) => {
                    attempt += 1;
                    tracing::info!(error = %e, attempt, "connector call failed; trying again");
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                }
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, CoreError> {
        self.call(Method::GET, path, None).await
    }

    async fn get_some<T: DeserializeOwned>(&self, path: &str) -> Result<T, CoreError> {
        self.get(path)
            .await?
            .ok_or_else(|| CoreError::BadRequest(format!("{path}: not found")))
    }
}

fn tx_query(filter: &TxFilter, page: Option<&TxPageRequest>) -> String {
    let q = TxQuery {
        from_ms: filter.from_ms,
        to_ms: filter.to_ms,
        credits: filter.credits,
        debits: filter.debits,
        cursor: page.and_then(|p| p.cursor.clone()),
        direction: page.map(|p| p.direction),
        limit: page.map(|p| p.limit),
    };
    serde_urlencoded_query(&q)
}

fn serde_urlencoded_query<T: Serialize>(q: &T) -> String {
    // reqwest's query encoder, without a request to hang it on.
    let v = serde_json::to_value(q).unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(m) = v.as_object() {
        for (k, v) in m {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            parts.push(format!("{k}={}", seg(&s)));
        }
    }
    parts.join("&")
}

#[async_trait]
impl Core for HttpCore {
    async fn customer(&self, psu_id: &str) -> Result<Option<Customer>, CoreError> {
        self.get(&format!("/customers/{}", seg(psu_id))).await
    }

    async fn accounts_for_psu(&self, psu_id: &str) -> Result<Vec<Account>, CoreError> {
        // A customer the core does not know has no accounts.
        Ok(self
            .get::<AccountsBody>(&format!("/customers/{}/accounts", seg(psu_id)))
            .await?
            .map(|b| b.accounts)
            .unwrap_or_default())
    }

    async fn account(&self, account_id: &str) -> Result<Option<Account>, CoreError> {
        self.get(&format!("/accounts/{}", seg(account_id))).await
    }

    async fn transactions(
        &self,
        account_id: &str,
        page: &TxPageRequest,
    ) -> Result<Vec<TxEntry>, CoreError> {
        let b: TransactionsBody = self
            .get_some(&format!(
                "/accounts/{}/transactions?{}",
                seg(account_id),
                tx_query(&page.filter, Some(page))
            ))
            .await?;
        Ok(b.transactions)
    }

    async fn transaction_summary(
        &self,
        account_id: &str,
        filter: &TxFilter,
    ) -> Result<TxSummary, CoreError> {
        self.get_some(&format!(
            "/accounts/{}/transaction-summary?{}",
            seg(account_id),
            tx_query(filter, None)
        ))
        .await
    }

    async fn resources(
        &self,
        account_id: &str,
        kind: ResourceKind,
    ) -> Result<Vec<AccountResource>, CoreError> {
        Ok(self
            .get::<ResourcesBody>(&format!(
                "/accounts/{}/resources/{}",
                seg(account_id),
                kind.as_str()
            ))
            .await?
            .map(|b| b.resources)
            .unwrap_or_default())
    }

    async fn resource(
        &self,
        account_id: &str,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<AccountResource>, CoreError> {
        self.get(&format!(
            "/accounts/{}/resources/{}/{}",
            seg(account_id),
            kind.as_str(),
            seg(id)
        ))
        .await
    }

    async fn funds_available(
        &self,
        account_id: &str,
        amount_minor: i64,
    ) -> Result<bool, CoreError> {
        let b: FundsBody = self
            .get_some(&format!(
                "/accounts/{}/funds?amount_minor={amount_minor}",
                seg(account_id)
            ))
            .await?;
        Ok(b.available)
    }

    async fn submit_payment(&self, p: &PaymentInstruction) -> Result<CorePayment, CoreError> {
        let body = serde_json::to_vec(p).map_err(|e| CoreError::BadRequest(e.to_string()))?;
        self.call::<CorePayment>(
            Method::PUT,
            &format!("/payments/{}", seg(&p.payment_id)),
            Some(body),
        )
        .await?
        .ok_or_else(|| CoreError::BadResponse("the connector answered 404 to a payment PUT".into()))
    }

    async fn payment(&self, payment_id: &str) -> Result<Option<CorePayment>, CoreError> {
        self.get(&format!("/payments/{}", seg(payment_id))).await
    }
}
