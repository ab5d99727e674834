//! The core-banking boundary: everything the OB resource server needs from
//! whoever holds the money, in aspen's own types (not one OB version's), so
//! a later OB version maps onto the same boundary.
//!
//! Two implementations: [`builtin::BuiltinCore`] (aspen's own ledger, the
//! sandbox) and [`http::HttpCore`] (a connector API the bank implements,
//! `docs/connector-openapi.yaml`); [`connector`] serves that API over any
//! [`Core`] — the reference connector behind `aspen connector serve`.

pub mod builtin;
pub mod connector;
pub mod http;
pub mod sync;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use aspen_domain::{
    Account, AccountIdentification, AccountResource, CreditDebit, ResourceKind, Transaction,
    TransactionView, TxSink,
};

/// Which transactions a page sees: booking time in `[from_ms, to_ms)` and
/// the credit/debit sides allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxFilter {
    pub from_ms: i64,
    pub to_ms: i64,
    pub credits: bool,
    pub debits: bool,
}

impl TxFilter {
    pub fn all() -> Self {
        Self {
            from_ms: i64::MIN,
            to_ms: i64::MAX,
            credits: true,
            debits: true,
        }
    }
}

/// Which way a page walks from its cursor (booking order, oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Entries after the cursor; without one, from the oldest.
    Forward,
    /// Entries before the cursor (returned oldest first); without one, the
    /// newest page.
    Backward,
}

/// A page request. The cursor is the core's own: aspen never looks
/// inside it, only hands back one the core gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxPageRequest {
    pub filter: TxFilter,
    pub cursor: Option<String>,
    pub direction: Direction,
    pub limit: u32,
}

/// A transaction with the core's cursor for its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxEntry {
    #[serde(flatten)]
    pub transaction: Transaction,
    pub cursor: String,
}

/// How many transactions a filter matches and the booking times of the
/// account's first and last entry (for TotalPages and the period a page
/// covers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxSummary {
    pub count: i64,
    pub first_booking_ms: Option<i64>,
    pub last_booking_ms: Option<i64>,
}

/// What [`Core::transaction_page`] answers besides the transactions, which
/// went to its sink: on a first page the summary, and the cursors of the
/// page's first and last transactions (in page order), where its links
/// start. The one where the read ended may be left out when the page came
/// back short of its limit: nothing lies beyond it to link to.
#[derive(Debug, Clone, PartialEq)]
pub struct TxPageEnd {
    pub summary: Option<TxSummary>,
    pub first_cursor: Option<String>,
    pub last_cursor: Option<String>,
    /// The sink had the transactions last first.
    pub descending: bool,
}

/// The PSU as the core knows them: the party record the bank keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub psu_id: String,
    pub name: String,
    /// The party in ISO 20022 terms (names, addresses, contact details).
    pub party: serde_json::Value,
}

/// A payment for the core to execute; `payment_id` is the idempotency key:
/// the same id submitted again is the same payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentInstruction {
    pub payment_id: String,
    /// `domestic` or `international`.
    pub scheme: String,
    pub account_id: String,
    /// What the debtor account pays, in its own currency (minor units).
    pub debit_minor: i64,
    pub debit_currency: String,
    /// What the payee receives (the instructed amount).
    pub instructed_amount: String,
    pub instructed_currency: String,
    pub creditor: Creditor,
    pub reference: Option<String>,
    pub end_to_end_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Creditor {
    pub name: String,
    /// Account identification scheme, e.g. `UK.OBIE.SortCodeAccountNumber`.
    pub scheme: String,
    pub identification: String,
    pub secondary_identification: Option<String>,
}

/// Where a payment stands in the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// Received, not yet checked.
    Pending,
    /// Funds reserved; settlement in process.
    Accepted,
    /// Booked. Final.
    Completed,
    /// Refused by the core. Final.
    Rejected,
}

impl PaymentStatus {
    pub fn is_final(self) -> bool {
        matches!(self, PaymentStatus::Completed | PaymentStatus::Rejected)
    }

    /// Statuses only move forward; a late report of an earlier one is
    /// ignored.
    pub fn rank(self) -> u8 {
        match self {
            PaymentStatus::Pending => 0,
            PaymentStatus::Accepted => 1,
            PaymentStatus::Completed | PaymentStatus::Rejected => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorePayment {
    pub payment_id: String,
    pub status: PaymentStatus,
    /// Unix milliseconds of the last status change.
    pub status_at_ms: i64,
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The core could not be reached, was too slow, or said it is
    /// unavailable; the call may be tried again later.
    #[error("the core banking system is unavailable: {detail}")]
    Unavailable {
        detail: String,
        retry_after: Duration,
    },
    /// The core answered something that is not the connector API.
    #[error("the core banking system answered unexpectedly: {0}")]
    BadResponse(String),
    /// The core refused the request as malformed (a cursor it does not
    /// know, an account that does not exist).
    #[error("the core banking system refused the request: {0}")]
    BadRequest(String),
    /// The same payment id was submitted with different content.
    #[error("payment {0} was already submitted with other details")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] aspen_store::StoreError),
}

/// The operations the OB APIs need from the bank. Reads return `None` for
/// what does not exist; a core that cannot answer returns
/// [`CoreError::Unavailable`].
#[async_trait]
pub trait Core: Send + Sync {
    /// Whether this core answers from aspen's own store on the request's
    /// thread (the builtin ledger), so that an AIS request's reads, its
    /// token's included, can share one read transaction
    /// ([`aspen_store::one_snapshot`]). A core across the network does not:
    /// its requests would hold the snapshot, and a connection, while they
    /// wait for it.
    fn reads_store(&self) -> bool {
        false
    }

    async fn customer(&self, psu_id: &str) -> Result<Option<Customer>, CoreError>;
    async fn accounts_for_psu(&self, psu_id: &str) -> Result<Vec<Account>, CoreError>;
    async fn account(&self, account_id: &str) -> Result<Option<Account>, CoreError>;
    async fn transactions(
        &self,
        account_id: &str,
        page: &TxPageRequest,
    ) -> Result<Vec<TxEntry>, CoreError>;
    async fn transaction_summary(
        &self,
        account_id: &str,
        filter: &TxFilter,
    ) -> Result<TxSummary, CoreError>;
    /// A page of an existing account's transactions into `sink`, with its
    /// summary when `summary` (a first page); `None` when the account does
    /// not exist. This default asks [`Core::account`],
    /// [`Core::transaction_summary`] and [`Core::transactions`] in turn
    /// (three connector calls); a core that can answer in one round trip,
    /// or hand over its transactions without copying them, overrides it.
    async fn transaction_page(
        &self,
        account_id: &str,
        page: &TxPageRequest,
        summary: bool,
        sink: &mut dyn TxSink,
    ) -> Result<Option<TxPageEnd>, CoreError> {
        if self.account(account_id).await?.is_none() {
            return Ok(None);
        }
        let summary = if summary {
            Some(self.transaction_summary(account_id, &page.filter).await?)
        } else {
            None
        };
        let entries = self.transactions(account_id, page).await?;
        for e in &entries {
            sink.entry(&e.transaction.view());
        }
        Ok(Some(TxPageEnd {
            summary,
            first_cursor: entries.first().map(|e| e.cursor.clone()),
            last_cursor: entries.last().map(|e| e.cursor.clone()),
            descending: false,
        }))
    }
    /// Beneficiaries, direct debits, standing orders, scheduled payments,
    /// statements, product, offers and parties of an account.
    async fn resources(
        &self,
        account_id: &str,
        kind: ResourceKind,
    ) -> Result<Vec<AccountResource>, CoreError>;
    async fn resource(
        &self,
        account_id: &str,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<AccountResource>, CoreError>;
    /// Whether the account could pay `amount_minor` of its currency now.
    async fn funds_available(&self, account_id: &str, amount_minor: i64)
    -> Result<bool, CoreError>;
    /// Submits a payment; idempotent by `payment_id` (a second submission
    /// returns the payment as it stands).
    async fn submit_payment(&self, p: &PaymentInstruction) -> Result<CorePayment, CoreError>;
    /// A core whose ledger lives in aspen's own database (the same one the
    /// orders are committed to) and executes payments at once gives the
    /// rows that execute `p`, so the order, the consent's move and the
    /// execution commit together in one write transaction
    /// ([`aspen_store::PaymentStore::insert_payment_executed`]). `None`, the
    /// default: the order is committed first and submitted after
    /// ([`sync::PaymentSync`] retries until the core answers).
    fn execution_in_store(
        &self,
        _p: &PaymentInstruction,
        _now_ms: i64,
    ) -> Option<aspen_store::payments::LedgerExecution> {
        None
    }
    async fn payment(&self, payment_id: &str) -> Result<Option<CorePayment>, CoreError>;
}
