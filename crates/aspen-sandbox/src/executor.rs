//! Executes payment orders against the sandbox ledger (PIS-21): `Pending`
//! → `AcceptedSettlementInProcess` (funds reserved, pending debit) →
//! `AcceptedSettlementCompleted` (booked), or `Rejected` when the account
//! cannot cover the debit at execution. Each step is one store
//! transaction guarded by a status compare-and-set, so any number of nodes
//! may run this loop, and a process killed at any point leaves either the
//! step done or not done; the next pass (here or on a restarted node)
//! finishes it.

use std::sync::Arc;
use std::time::Duration;

use aspen_domain::{CreditDebit, Transaction};
use aspen_store::Store;
use aspen_store::payments::{self, PaymentRecord, Step};
use serde_json::json;

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

pub struct Executor {
    store: Arc<dyn Store>,
    timing: Timing,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The ledger entry a payment writes on its debtor account.
fn entry(p: &PaymentRecord, now: i64) -> Transaction {
    let i = &p.data["Initiation"];
    let creditor = i["CreditorAccount"].clone();
    let name = creditor["Name"].as_str().unwrap_or("payee").to_string();
    let international = p.kind == "international-payment";
    let (code, prop) = if international {
        ("IssuedCreditTransfers", "INTERNATIONAL PAYMENT")
    } else {
        ("IssuedCreditTransfers", "FASTER PAYMENT")
    };
    Transaction {
        transaction_id: payments::entry_id(&p.payment_id),
        account_id: p.account_id.clone(),
        booking_ms: now,
        value_ms: None,
        amount_minor: p.debit_minor,
        currency: p.debit_currency.clone(),
        credit_debit: CreditDebit::Debit,
        status: "Pending".into(),
        reference: i["RemittanceInformation"]["Reference"]
            .as_str()
            .map(str::to_string),
        information: Some(format!("Payment to {name}")),
        balance_minor: None,
        detail: json!({
            "BankTransactionCode": { "Code": code, "SubCode": "DomesticCreditTransfer" },
            "ProprietaryBankTransactionCode": { "Code": prop, "Issuer": "Aspen" },
            "CreditorAccount": creditor,
        }),
    }
}

impl Executor {
    pub fn new(store: Arc<dyn Store>, timing: Timing) -> Self {
        Self { store, timing }
    }

    /// Takes the payment's next step if it is due.
    async fn step(&self, p: &PaymentRecord, now: i64) -> Result<Step, aspen_store::StoreError> {
        let step = match p.status.as_str() {
            payments::PENDING => {
                self.store
                    .accept_payment(
                        &p.payment_id,
                        now,
                        now + self.timing.settle_after_ms,
                        &entry(p, now),
                    )
                    .await?
            }
            payments::IN_PROCESS => self.store.settle_payment(&p.payment_id, now).await?,
            _ => Step::NotApplicable,
        };
        if let Step::Moved(to) = step {
            tracing::info!(payment_id = %p.payment_id, status = to, "payment status");
        }
        Ok(step)
    }

    /// A new order: executed at once with immediate timing; otherwise
    /// left to the loop. Failures are left to the loop as well: each step
    /// either happened or not.
    pub async fn submitted(&self, p: &PaymentRecord) {
        if !self.timing.immediate() {
            return;
        }
        let now = now_ms();
        let settled = match self.step(p, now).await {
            Ok(Step::Moved(payments::IN_PROCESS)) => {
                self.store.settle_payment(&p.payment_id, now).await
            }
            other => other,
        };
        match settled {
            Ok(Step::Moved(to)) => {
                tracing::info!(payment_id = %p.payment_id, status = to, "payment status");
            }
            Ok(Step::NotApplicable) => {}
            Err(e) => {
                tracing::warn!(error = %e, payment_id = %p.payment_id, "payment execution deferred");
            }
        }
    }

    /// One pass over due work; returns how many steps ran.
    pub async fn run_due(&self) -> Result<usize, aspen_store::StoreError> {
        let now = now_ms();
        let mut n = 0;
        for p in self.store.due_payments(now, 200).await? {
            if let Step::Moved(_) = self.step(&p, now).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Runs until `stop` turns true; the first pass finishes whatever a
    /// previous process left in flight.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.run_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "payment executor pass failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.poll) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
