//! The builtin core: aspen's own ledger (the sandbox bank), in the same
//! database. Payments run `Pending` → `Accepted` (funds reserved, pending
//! debit) → `Completed` (booked), or `Rejected` when the account cannot
//! cover the debit at execution (PIS-21). Each step is one store
//! transaction guarded by a status compare-and-set, so any number of
//! processes may run the execution loop, and a process killed at any point
//! leaves either the step done or not done; the next pass finishes it.

use std::sync::Arc;
use std::time::Duration;

use aspen_domain::{CreditDebit, ResourceKind, Transaction};
use aspen_store::Store;
use aspen_store::payments::{self, LedgerExecution, LedgerPayment, Step};
use async_trait::async_trait;
use serde_json::json;

use crate::{
    Account, AccountResource, Core, CoreError, CorePayment, Customer, Direction,
    PaymentInstruction, PaymentStatus, TxEntry, TxFilter, TxPageEnd, TxPageRequest, TxSink,
    TxSummary,
};

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From submission to acceptance (funds reserved).
    pub accept_after_ms: i64,
    /// From acceptance to settlement (booked).
    pub settle_after_ms: i64,
    /// How often the loop looks for due work.
    pub poll: Duration,
}

impl Timing {
    pub fn immediate(&self) -> bool {
        self.accept_after_ms == 0 && self.settle_after_ms == 0
    }
}

pub struct BuiltinCore {
    store: Arc<dyn Store>,
    timing: Timing,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn store_filter(f: &TxFilter) -> aspen_store::TxFilter {
    aspen_store::TxFilter {
        from_ms: f.from_ms,
        to_ms: f.to_ms,
        credits: f.credits,
        debits: f.debits,
    }
}

/// The ledger's cursor: the keyset position `booking_ms.transaction_id`.
/// Written by hand: every entry of a page has one, and through `format!`
/// they were 6% of a page's instructions (issue 15, twelfth pass).
fn cursor_of(booking_ms: i64, transaction_id: &str) -> String {
    let mut ms = itoa::Buffer::new();
    let ms = ms.format(booking_ms);
    let mut c = String::with_capacity(ms.len() + 1 + transaction_id.len());
    c.push_str(ms);
    c.push('.');
    c.push_str(transaction_id);
    c
}

fn parse_cursor(c: &str) -> Result<aspen_store::TxCursor, CoreError> {
    c.split_once('.')
        .and_then(|(ms, id)| {
            Some(aspen_store::TxCursor {
                booking_ms: ms.parse().ok()?,
                transaction_id: id.to_string(),
            })
        })
        .ok_or_else(|| CoreError::BadRequest(format!("{c:?} is not a ledger cursor")))
}

/// The store's keyset bounds for a page request: after the cursor
/// (forward), or before it — the end of the history without one
/// (backward).
type Keyset = (Option<aspen_store::TxCursor>, Option<aspen_store::TxCursor>);

fn keyset(page: &TxPageRequest) -> Result<Keyset, CoreError> {
    let cursor = page.cursor.as_deref().map(parse_cursor).transpose()?;
    Ok(match page.direction {
        Direction::Forward => (cursor, None),
        Direction::Backward => (
            None,
            Some(cursor.unwrap_or(aspen_store::TxCursor {
                booking_ms: i64::MAX,
                transaction_id: String::new(),
            })),
        ),
    })
}

fn entries(rows: Vec<Transaction>) -> Vec<TxEntry> {
    rows.into_iter()
        .map(|t| TxEntry {
            cursor: cursor_of(t.booking_ms, &t.transaction_id),
            transaction: t,
        })
        .collect()
}

fn status_of(s: &str) -> PaymentStatus {
    match s {
        payments::LEDGER_ACCEPTED => PaymentStatus::Accepted,
        payments::LEDGER_COMPLETED => PaymentStatus::Completed,
        payments::LEDGER_REJECTED => PaymentStatus::Rejected,
        _ => PaymentStatus::Pending,
    }
}

fn core_payment(p: &LedgerPayment) -> CorePayment {
    CorePayment {
        payment_id: p.payment_id.clone(),
        status: status_of(&p.status),
        status_at_ms: p.status_updated_at,
        reason: p.reason.clone(),
    }
}

/// The ledger entry a payment writes on its debtor account; `i` is the
/// submitted instruction (payee, reference) when it is at hand.
fn entry(p: &LedgerPayment, i: Option<&PaymentInstruction>, now: i64) -> Transaction {
    let name = i
        .as_ref()
        .map_or("payee".to_string(), |i| i.creditor.name.clone());
    let international = i.is_some_and(|i| i.scheme == "international");
    let (sub, prop) = if international {
        ("InternationalCreditTransfer", "INTERNATIONAL PAYMENT")
    } else {
        ("DomesticCreditTransfer", "FASTER PAYMENT")
    };
    let creditor = i.map(|i| {
        let mut c = json!({
            "SchemeName": i.creditor.scheme,
            "Identification": i.creditor.identification,
            "Name": i.creditor.name,
        });
        if let Some(s) = &i.creditor.secondary_identification {
            c["SecondaryIdentification"] = json!(s);
        }
        c
    });
    let mut detail = json!({
        "BankTransactionCode": { "Code": "IssuedCreditTransfers", "SubCode": sub },
        "ProprietaryBankTransactionCode": { "Code": prop, "Issuer": "Aspen" },
    });
    if let Some(c) = creditor {
        detail["CreditorAccount"] = c;
    }
    Transaction {
        transaction_id: payments::entry_id(&p.payment_id),
        account_id: p.account_id.clone(),
        booking_ms: now,
        value_ms: None,
        amount_minor: p.debit_minor,
        currency: p.debit_currency.clone(),
        credit_debit: CreditDebit::Debit,
        status: "Pending".into(),
        reference: i.and_then(|i| i.reference.clone()),
        information: Some(format!("Payment to {name}")),
        balance_minor: None,
        detail: detail.into(),
    }
}

impl BuiltinCore {
    pub fn new(store: Arc<dyn Store>, timing: Timing) -> Self {
        Self { store, timing }
    }

    /// The ledger's row for a newly submitted payment.
    fn submitted_row(&self, p: &PaymentInstruction, now: i64) -> LedgerPayment {
        LedgerPayment {
            payment_id: p.payment_id.clone(),
            account_id: p.account_id.clone(),
            debit_minor: p.debit_minor,
            debit_currency: p.debit_currency.clone(),
            status: payments::LEDGER_PENDING.into(),
            created_at: now,
            status_updated_at: now,
            due_at: Some(now + self.timing.accept_after_ms),
            reason: None,
            instruction: serde_json::to_value(p).unwrap_or_default(),
        }
    }

    /// Takes the payment's next step if it is due.
    async fn step(&self, p: &LedgerPayment, now: i64) -> Result<Step, aspen_store::StoreError> {
        let step = match p.status.as_str() {
            payments::LEDGER_PENDING => {
                let i: Option<PaymentInstruction> =
                    serde_json::from_value(p.instruction.clone()).ok();
                self.store
                    .ledger_accept(
                        &p.payment_id,
                        now,
                        now + self.timing.settle_after_ms,
                        &entry(p, i.as_ref(), now),
                    )
                    .await?
            }
            payments::LEDGER_ACCEPTED => self.store.ledger_settle(&p.payment_id, now).await?,
            _ => Step::NotApplicable,
        };
        if let Step::Moved(to) = step {
            tracing::info!(payment_id = %p.payment_id, status = to, "ledger payment status");
        }
        Ok(step)
    }

    /// One pass over due work; returns how many steps ran.
    pub async fn run_due(&self) -> Result<usize, aspen_store::StoreError> {
        let now = now_ms();
        let mut n = 0;
        for p in self.store.ledger_due(now, 200).await? {
            if let Step::Moved(_) = self.step(&p, now).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Executes due payments until `stop` turns true; the first pass
    /// finishes whatever a previous process left in flight.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.run_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "ledger execution pass failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.poll) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

#[async_trait]
impl Core for BuiltinCore {
    fn reads_store(&self) -> bool {
        true
    }

    async fn customer(&self, psu_id: &str) -> Result<Option<Customer>, CoreError> {
        Ok(self.store.psu(psu_id).await?.map(|p| Customer {
            psu_id: p.id,
            name: p.name,
            party: p.party,
        }))
    }

    async fn accounts_for_psu(&self, psu_id: &str) -> Result<Vec<Account>, CoreError> {
        Ok(self.store.accounts_for_psu(psu_id).await?)
    }

    async fn account(&self, account_id: &str) -> Result<Option<Account>, CoreError> {
        Ok(self.store.account(account_id).await?)
    }

    async fn transactions(
        &self,
        account_id: &str,
        page: &TxPageRequest,
    ) -> Result<Vec<TxEntry>, CoreError> {
        let (after, before) = keyset(page)?;
        let rows = self
            .store
            .transactions_page(
                account_id,
                &store_filter(&page.filter),
                after.as_ref(),
                before.as_ref(),
                i64::from(page.limit),
            )
            .await?;
        Ok(entries(rows))
    }

    /// One statement: the account's existence, the summary and the page,
    /// whose transactions go to `sink` from the rows they are read from.
    async fn transaction_page(
        &self,
        account_id: &str,
        page: &TxPageRequest,
        summary: bool,
        sink: &mut dyn TxSink,
    ) -> Result<Option<TxPageEnd>, CoreError> {
        let (after, before) = keyset(page)?;
        let Some(p) = self
            .store
            .transactions_page_summary(
                account_id,
                &store_filter(&page.filter),
                after.as_ref(),
                before.as_ref(),
                i64::from(page.limit),
                summary,
                sink,
            )
            .await?
        else {
            return Ok(None);
        };
        let cursor = |c: &aspen_store::TxCursor| cursor_of(c.booking_ms, &c.transaction_id);
        Ok(Some(TxPageEnd {
            summary: summary.then(|| TxSummary {
                count: p.count.unwrap_or(0),
                first_booking_ms: p.bounds.map(|b| b.0),
                last_booking_ms: p.bounds.map(|b| b.1),
            }),
            first_cursor: p.first.as_ref().map(cursor),
            last_cursor: p.last.as_ref().map(cursor),
            descending: p.descending,
        }))
    }

    async fn transaction_summary(
        &self,
        account_id: &str,
        filter: &TxFilter,
    ) -> Result<TxSummary, CoreError> {
        let count = self
            .store
            .count_transactions(account_id, &store_filter(filter))
            .await?;
        let bounds = self.store.transaction_bounds(account_id).await?;
        Ok(TxSummary {
            count,
            first_booking_ms: bounds.map(|b| b.0),
            last_booking_ms: bounds.map(|b| b.1),
        })
    }

    async fn resources(
        &self,
        account_id: &str,
        kind: ResourceKind,
    ) -> Result<Vec<AccountResource>, CoreError> {
        Ok(self.store.resources(account_id, kind).await?)
    }

    async fn resource(
        &self,
        account_id: &str,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<AccountResource>, CoreError> {
        Ok(self.store.resource(account_id, kind, id).await?)
    }

    async fn funds_available(
        &self,
        account_id: &str,
        amount_minor: i64,
    ) -> Result<bool, CoreError> {
        Ok(self
            .store
            .account(account_id)
            .await?
            .is_some_and(|a| a.available_minor() >= amount_minor))
    }

    async fn submit_payment(&self, p: &PaymentInstruction) -> Result<CorePayment, CoreError> {
        let now = now_ms();
        let row = self.submitted_row(p, now);
        if self.store.account(&p.account_id).await?.is_none() {
            return Err(CoreError::BadRequest(format!(
                "no account {}",
                p.account_id
            )));
        }
        let stored = self.store.ledger_submit(&row).await?;
        if stored.account_id != row.account_id
            || stored.debit_minor != row.debit_minor
            || stored.debit_currency != row.debit_currency
        {
            return Err(CoreError::Conflict(p.payment_id.clone()));
        }
        if self.timing.immediate() {
            // Both steps now; a failure leaves the rest to the loop.
            for _ in 0..2 {
                let Some(cur) = self.store.ledger_payment(&p.payment_id).await? else {
                    break;
                };
                if let Err(e) = self.step(&cur, now).await {
                    tracing::warn!(error = %e, payment_id = %p.payment_id, "payment execution deferred");
                    break;
                }
            }
        }
        let cur = self
            .store
            .ledger_payment(&p.payment_id)
            .await?
            .ok_or(aspen_store::StoreError::NotFound)?;
        Ok(core_payment(&cur))
    }

    /// Immediate timing: both steps in the order's own transaction. The
    /// loop's steps stay for delayed timing and for payments submitted
    /// through the connector API.
    fn execution_in_store(&self, p: &PaymentInstruction, now_ms: i64) -> Option<LedgerExecution> {
        if !self.timing.immediate() {
            return None;
        }
        let payment = self.submitted_row(p, now_ms);
        let entry = entry(&payment, Some(p), now_ms);
        Some(LedgerExecution { payment, entry })
    }

    async fn payment(&self, payment_id: &str) -> Result<Option<CorePayment>, CoreError> {
        Ok(self
            .store
            .ledger_payment(payment_id)
            .await?
            .as_ref()
            .map(core_payment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_the_position_it_was_made_from() {
        for (ms, id) in [
            (1_764_000_000_123, "txn-1"),
            (-5, "a.b.c"),
            (0, ""),
            (i64::MIN, "blk-000000000001"),
        ] {
            let t = Transaction {
                transaction_id: id.into(),
                account_id: "acc".into(),
                booking_ms: ms,
                value_ms: None,
                amount_minor: 1,
                currency: "GBP".into(),
                credit_debit: aspen_domain::CreditDebit::Credit,
                status: "Booked".into(),
                reference: None,
                information: None,
                balance_minor: None,
                detail: serde_json::json!({}).into(),
            };
            let c = cursor_of(t.booking_ms, &t.transaction_id);
            assert_eq!(c, format!("{ms}.{id}"));
            let back = parse_cursor(&c).unwrap();
            assert_eq!((back.booking_ms, back.transaction_id.as_str()), (ms, id));
        }
    }
}
