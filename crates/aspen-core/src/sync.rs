//! Places OB payment orders and keeps them in step with the core. With a
//! core that executes inside aspen's own database ([`Core::execution_in_store`]:
//! the builtin ledger, immediate timing) the order, its idempotency key, the
//! consent's move to `Consumed` and the execution are one write transaction
//! and there is nothing left to keep in step. Otherwise a payment order is
//! committed in aspen's database first (with its idempotency key and the
//! consent's move to `Consumed`), then submitted to the core with the
//! payment id as the core's idempotency key. Until the core reports a final
//! status the payment stays due: the loop here (on every node) submits it
//! again — a no-op for a core that already has it — and copies the status
//! it reports. So a payment accepted by aspen reaches the core even when
//! the core was down or aspen was killed between commit and submission,
//! and reaches it as one payment however many times it is sent. Every node
//! may pick up the same due payment at once; they only send the same
//! idempotent request twice, and the status moves by compare-and-set.

use std::sync::Arc;
use std::time::Duration;

use aspen_store::Store;
use aspen_store::payments::{self, IdemKey, IdemRecord, PaymentCreate, PaymentRecord};

use crate::{Core, CoreError, CorePayment, Creditor, PaymentInstruction, PaymentStatus};

pub struct PaymentSync {
    store: Arc<dyn Store>,
    core: Arc<dyn Core>,
    /// How soon to ask again about a payment that is not final.
    poll: Duration,
    /// How soon to try again after the core failed.
    retry: Duration,
}

/// What became of a new payment order.
#[derive(Debug)]
pub enum Placed {
    /// Committed; the payment as it stands now (its status is the one
    /// committed).
    New(Box<PaymentRecord>),
    /// The idempotency key was taken first: the caller replays this record.
    Existing(IdemRecord),
    /// The consent is no longer `Authorised` (PIS-12: it pays once).
    ConsentNotAuthorised,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The OB v3.1.2 status (OBTransactionIndividualStatus1Code) of a core
/// status.
pub fn ob_status(s: PaymentStatus) -> &'static str {
    match s {
        PaymentStatus::Pending => payments::PENDING,
        PaymentStatus::Accepted => payments::IN_PROCESS,
        PaymentStatus::Completed => payments::COMPLETED,
        PaymentStatus::Rejected => payments::REJECTED,
    }
}

/// The OB statuses a payment may move to `to` from.
fn earlier(to: PaymentStatus) -> &'static [&'static str] {
    match to {
        PaymentStatus::Pending => &[],
        PaymentStatus::Accepted => &[payments::PENDING],
        PaymentStatus::Completed | PaymentStatus::Rejected => {
            &[payments::PENDING, payments::IN_PROCESS]
        }
    }
}

/// What the core is asked to execute for an OB payment order.
pub fn instruction(p: &PaymentRecord) -> PaymentInstruction {
    let i = &p.data["Initiation"];
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let c = &i["CreditorAccount"];
    PaymentInstruction {
        payment_id: p.payment_id.clone(),
        scheme: if p.kind == "international-payment" {
            "international".into()
        } else {
            "domestic".into()
        },
        account_id: p.account_id.clone(),
        debit_minor: p.debit_minor,
        debit_currency: p.debit_currency.clone(),
        instructed_amount: s(&i["InstructedAmount"]["Amount"]).unwrap_or_default(),
        instructed_currency: s(&i["InstructedAmount"]["Currency"]).unwrap_or_default(),
        creditor: Creditor {
            name: s(&c["Name"]).unwrap_or_default(),
            scheme: s(&c["SchemeName"]).unwrap_or_default(),
            identification: s(&c["Identification"]).unwrap_or_default(),
            secondary_identification: s(&c["SecondaryIdentification"]),
        },
        reference: s(&i["RemittanceInformation"]["Reference"]),
        end_to_end_id: s(&i["EndToEndIdentification"]),
    }
}

impl PaymentSync {
    pub fn new(
        store: Arc<dyn Store>,
        core: Arc<dyn Core>,
        poll: Duration,
        retry: Duration,
    ) -> Self {
        Self {
            store,
            core,
            poll,
            retry,
        }
    }

    /// Copies the core's status onto the OB payment, forward only; the
    /// payment as this call left it, or `None` when another node moved it
    /// first.
    async fn record(
        &self,
        p: &PaymentRecord,
        c: &CorePayment,
    ) -> Result<Option<PaymentRecord>, CoreError> {
        let to = ob_status(c.status);
        let due = (!c.status.is_final()).then(|| now_ms() + self.poll.as_millis() as i64);
        if to != p.status {
            let at = c.status_at_ms.max(p.status_updated_at);
            let moved = self
                .store
                .advance_payment(
                    &p.payment_id,
                    earlier(c.status),
                    to,
                    at,
                    c.reason.as_deref(),
                    due,
                )
                .await?;
            if !moved {
                return Ok(None);
            }
            tracing::info!(payment_id = %p.payment_id, status = to, "payment status");
            return Ok(Some(PaymentRecord {
                status: to.into(),
                status_updated_at: at,
                due_at: due,
                reason: c.reason.clone().or_else(|| p.reason.clone()),
                ..p.clone()
            }));
        }
        if let Some(due) = due {
            self.store.postpone_payment(&p.payment_id, due).await?;
        }
        Ok(Some(PaymentRecord {
            due_at: due.or(p.due_at),
            ..p.clone()
        }))
    }

    /// Submits (again) and records what the core says. A core that cannot
    /// be reached leaves the payment due for a later pass.
    pub async fn sync(&self, p: &PaymentRecord) -> Result<Option<PaymentRecord>, CoreError> {
        match self.core.submit_payment(&instruction(p)).await {
            Ok(c) => self.record(p, &c).await,
            // The core answered and refused this payment for good (the
            // instruction is invalid for it, or its id is taken by another
            // payment): sending it again would never succeed.
            Err(e @ (CoreError::BadRequest(_) | CoreError::Conflict(_))) => {
                let reason = format!("refused by the core banking system: {e}");
                tracing::warn!(payment_id = %p.payment_id, %reason, "payment rejected");
                self.record(
                    p,
                    &CorePayment {
                        payment_id: p.payment_id.clone(),
                        status: PaymentStatus::Rejected,
                        status_at_ms: now_ms(),
                        reason: Some(reason),
                    },
                )
                .await
            }
            Err(e) => {
                let retry = match &e {
                    CoreError::Unavailable { retry_after, .. } => (*retry_after).max(self.retry),
                    _ => self.retry,
                };
                self.store
                    .postpone_payment(&p.payment_id, now_ms() + retry.as_millis() as i64)
                    .await?;
                Err(e)
            }
        }
    }

    /// Commits a new order (`p`, `Pending` and due now) under its
    /// idempotency key, consuming its consent, and has it executed: in the
    /// same transaction when the core can ([`Core::execution_in_store`]),
    /// else by submitting it at once so the answer to the PISP shows what
    /// the core already did (a failure is left to the loop).
    pub async fn place(
        &self,
        p: PaymentRecord,
        idem: &IdemKey,
        since: i64,
    ) -> Result<Placed, CoreError> {
        let created = match self.core.execution_in_store(&instruction(&p), p.created_at) {
            Some(exec) => {
                self.store
                    .insert_payment_executed(&p, idem, since, &exec)
                    .await?
            }
            None => self.store.insert_payment_once(&p, idem, since).await?,
        };
        Ok(match created {
            PaymentCreate::Executed(status) => Placed::New(Box::new(PaymentRecord {
                status: status.into(),
                due_at: None,
                reason: (status == payments::REJECTED)
                    .then(|| payments::INSUFFICIENT_FUNDS.to_string()),
                ..p
            })),
            PaymentCreate::New => Placed::New(Box::new(self.submitted(p).await?)),
            PaymentCreate::Existing(rec) => Placed::Existing(rec),
            PaymentCreate::ConsentNotAuthorised => Placed::ConsentNotAuthorised,
        })
    }

    /// A committed order submitted at once; the payment as it stands after.
    async fn submitted(&self, p: PaymentRecord) -> Result<PaymentRecord, CoreError> {
        match self.sync(&p).await {
            Ok(Some(now)) => Ok(now),
            Ok(None) => Ok(self
                .store
                .payment(&p.payment_id)
                .await?
                .ok_or(aspen_store::StoreError::NotFound)?),
            Err(e) => {
                tracing::warn!(error = %e, payment_id = %p.payment_id, "payment submission deferred");
                Ok(p)
            }
        }
    }

    /// One pass over due payments; returns how many were looked at.
    pub async fn run_due(&self) -> Result<usize, CoreError> {
        let due = self.store.due_payments(now_ms(), 200).await?;
        let n = due.len();
        for p in due {
            if let Err(e) = self.sync(&p).await {
                tracing::warn!(error = %e, payment_id = %p.payment_id, "payment status sync failed");
            }
        }
        Ok(n)
    }

    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.run_due().await {
                tracing::warn!(error = %e, "payment sync pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
