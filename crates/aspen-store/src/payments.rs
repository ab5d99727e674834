//! Storage for payment initiation: idempotency keys (COMMON-24..26), payment
//! orders and the two ledger steps that execute them. Every step is one
//! database transaction that starts with a compare-and-set on the payment's
//! status, so two nodes (or a node and its restarted self) can never both
//! take it; the ledger entry's id is derived from the payment id and is a
//! primary key, so a debit cannot be written twice.

use async_trait::async_trait;
use serde_json::Value;

use crate::StoreError;
use crate::consent::ConsentRecord;

/// Identifies an idempotent request: the client, the endpoint (method and
/// path template) and the key, plus a SHA-256 of the exact body bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdemKey {
    pub client_id: String,
    pub endpoint: String,
    pub key: String,
    pub body_hash: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdemRecord {
    pub body_hash: String,
    pub resource_id: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New,
    /// The key was taken first (by another node, or an earlier request):
    /// the caller replays this record.
    Existing(IdemRecord),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCreate {
    New,
    Existing(IdemRecord),
    /// The consent is no longer `Authorised` (consumed meanwhile, say).
    ConsentNotAuthorised,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRecord {
    pub payment_id: String,
    /// `domestic-payment` / `international-payment`, as the consent kind.
    pub kind: String,
    pub consent_id: String,
    pub client_id: String,
    /// OBTransactionIndividualStatus1Code (PIS-21).
    pub status: String,
    pub created_at: i64,
    pub status_updated_at: i64,
    /// When the executor takes the next step; None once final.
    pub due_at: Option<i64>,
    pub account_id: String,
    /// What the member pays, in the account's currency.
    pub debit_minor: i64,
    pub debit_currency: String,
    /// Why it was rejected, for the log and the operator.
    pub reason: Option<String>,
    /// `Initiation`, `Risk` and the ASPSP-added fields the response repeats
    /// (`ExchangeRateInformation`).
    pub data: Value,
}

/// What one executor step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The step ran and the payment moved to this status.
    Moved(&'static str),
    /// Someone else took the step first, or the payment is not in the
    /// step's source state.
    NotApplicable,
}

pub const PENDING: &str = "Pending";
pub const IN_PROCESS: &str = "AcceptedSettlementInProcess";
pub const COMPLETED: &str = "AcceptedSettlementCompleted";
pub const REJECTED: &str = "Rejected";

#[async_trait]
pub trait PaymentStore: Send + Sync {
    /// A key used within the window (`created_at > since`).
    async fn idempotency(
        &self,
        client_id: &str,
        endpoint: &str,
        key: &str,
        since: i64,
    ) -> Result<Option<IdemRecord>, StoreError>;
    /// Inserts the consent and its idempotency key in one transaction; keys
    /// older than `since` are forgotten first (COMMON-24: after 24 hours the
    /// key is new again).
    async fn insert_consent_once(
        &self,
        c: &ConsentRecord,
        idem: &IdemKey,
        since: i64,
    ) -> Result<Created, StoreError>;
    /// One transaction: the idempotency key, the consent's move from
    /// `Authorised` to `Consumed`, and the payment row (PIS-12, PIS-20).
    async fn insert_payment_once(
        &self,
        p: &PaymentRecord,
        idem: &IdemKey,
        since: i64,
    ) -> Result<PaymentCreate, StoreError>;
    async fn payment(&self, payment_id: &str) -> Result<Option<PaymentRecord>, StoreError>;
    /// Payments whose next step is due, oldest first.
    async fn due_payments(&self, now: i64, limit: i64) -> Result<Vec<PaymentRecord>, StoreError>;
    /// Moves an OB payment to `status` as the core reported it, only
    /// forward: `from` lists the statuses it may move from. `due_at` is when
    /// to ask the core again (None once final). False when the payment was
    /// not in one of `from` (another node got there first).
    async fn advance_payment(
        &self,
        payment_id: &str,
        from: &[&str],
        status: &str,
        at: i64,
        reason: Option<&str>,
        due_at: Option<i64>,
    ) -> Result<bool, StoreError>;
    /// When to look at a payment again, without a status change.
    async fn postpone_payment(&self, payment_id: &str, due_at: i64) -> Result<(), StoreError>;

    /// The builtin ledger's side (the core): records a payment unless its
    /// id is known, and returns the stored one either way.
    async fn ledger_submit(&self, p: &LedgerPayment) -> Result<LedgerPayment, StoreError>;
    async fn ledger_payment(&self, payment_id: &str) -> Result<Option<LedgerPayment>, StoreError>;
    async fn ledger_due(&self, now: i64, limit: i64) -> Result<Vec<LedgerPayment>, StoreError>;
    /// `Pending` → `Accepted`: reserves the funds and writes `entry` as a
    /// pending debit; `Rejected` when the account cannot cover it. One
    /// transaction.
    async fn ledger_accept(
        &self,
        payment_id: &str,
        now: i64,
        next_due: i64,
        entry: &aspen_domain::Transaction,
    ) -> Result<Step, StoreError>;
    /// `Accepted` → `Completed`: books the reserved debit (balance down,
    /// entry `Booked` with its running balance). One transaction.
    async fn ledger_settle(&self, payment_id: &str, now: i64) -> Result<Step, StoreError>;
}

/// A payment as the builtin ledger keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerPayment {
    pub payment_id: String,
    pub account_id: String,
    pub debit_minor: i64,
    pub debit_currency: String,
    /// `Pending`, `Accepted`, `Completed`, `Rejected`.
    pub status: String,
    pub created_at: i64,
    pub status_updated_at: i64,
    pub due_at: Option<i64>,
    pub reason: Option<String>,
    /// The submitted instruction (payee, reference), for the ledger entry.
    pub instruction: Value,
}

pub const LEDGER_PENDING: &str = "Pending";
pub const LEDGER_ACCEPTED: &str = "Accepted";
pub const LEDGER_COMPLETED: &str = "Completed";
pub const LEDGER_REJECTED: &str = "Rejected";

pub(crate) const LEDGER_COLUMNS: &str = "payment_id, account_id, debit_minor, debit_currency, status, \
    created_at, status_updated_at, due_at, reason, instruction";

pub(crate) const PAYMENT_COLUMNS: &str = "payment_id, kind, consent_id, client_id, status, \
    created_at, status_updated_at, due_at, account_id, debit_minor, debit_currency, reason, data";

/// The ledger entry of a payment: one per payment, by construction.
pub fn entry_id(payment_id: &str) -> String {
    format!("txn-{payment_id}")
}

#[macro_export]
#[doc(hidden)]
macro_rules! impl_payment_store {
    ($store:ty, $row:ty, $db:ty) => {
        fn payment_from_row(r: &$row) -> Result<$crate::payments::PaymentRecord, $crate::StoreError> {
            use sqlx::Row;
            Ok($crate::payments::PaymentRecord {
                payment_id: r.get(0),
                kind: r.get(1),
                consent_id: r.get(2),
                client_id: r.get(3),
                status: r.get(4),
                created_at: r.get(5),
                status_updated_at: r.get(6),
                due_at: r.get(7),
                account_id: r.get(8),
                debit_minor: r.get(9),
                debit_currency: r.get(10),
                reason: r.get(11),
                data: $crate::auth::parse_json(r.get::<&str, _>(12))?,
            })
        }

        fn ledger_from_row(r: &$row) -> Result<$crate::payments::LedgerPayment, $crate::StoreError> {
            use sqlx::Row;
            Ok($crate::payments::LedgerPayment {
                payment_id: r.get(0),
                account_id: r.get(1),
                debit_minor: r.get(2),
                debit_currency: r.get(3),
                status: r.get(4),
                created_at: r.get(5),
                status_updated_at: r.get(6),
                due_at: r.get(7),
                reason: r.get(8),
                instruction: $crate::auth::parse_json(r.get::<&str, _>(9))?,
            })
        }

        async fn read_idem(
            pool: &sqlx::Pool<$db>,
            client_id: &str,
            endpoint: &str,
            key: &str,
            since: i64,
        ) -> Result<Option<$crate::payments::IdemRecord>, $crate::StoreError> {
            let row: Option<$row> = sqlx::query(
                "SELECT body_hash, resource_id, created_at FROM idempotency_keys \
                 WHERE client_id=$1 AND endpoint=$2 AND idem_key=$3 AND created_at > $4",
            )
            .bind(client_id)
            .bind(endpoint)
            .bind(key)
            .bind(since)
            .fetch_optional(pool)
            .await
            .map_err($crate::StoreError::from)?;
            use sqlx::Row;
            Ok(row.map(|r| $crate::payments::IdemRecord {
                body_hash: r.get(0),
                resource_id: r.get(1),
                created_at: r.get(2),
            }))
        }

        /// The record of the request that holds the key (it committed first).
        async fn key_holder(
            pool: &sqlx::Pool<$db>,
            idem: &$crate::payments::IdemKey,
            since: i64,
        ) -> Result<$crate::payments::IdemRecord, $crate::StoreError> {
            read_idem(pool, &idem.client_id, &idem.endpoint, &idem.key, since)
                .await?
                .ok_or_else(|| $crate::StoreError::Conflict("idempotency key in flux".into()))
        }

        /// Forgets an expired key and claims this one. `Ok(false)`: another
        /// request holds the key (the transaction must be abandoned).
        async fn claim_key(
            conn: &mut <$db as sqlx::Database>::Connection,
            idem: &$crate::payments::IdemKey,
            resource_id: &str,
            now: i64,
            since: i64,
        ) -> Result<bool, $crate::StoreError> {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE client_id=$1 AND endpoint=$2 AND idem_key=$3 AND created_at <= $4",
            )
            .bind(&idem.client_id)
            .bind(&idem.endpoint)
            .bind(&idem.key)
            .bind(since)
            .execute(&mut *conn)
            .await
            .map_err($crate::StoreError::from)?;
            let r = sqlx::query(
                "INSERT INTO idempotency_keys (client_id, endpoint, idem_key, body_hash, resource_id, created_at) \
                 VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (client_id, endpoint, idem_key) DO NOTHING",
            )
            .bind(&idem.client_id)
            .bind(&idem.endpoint)
            .bind(&idem.key)
            .bind(&idem.body_hash)
            .bind(resource_id)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err($crate::StoreError::from)?;
            Ok(r.rows_affected() == 1)
        }

        #[async_trait::async_trait]
        impl $crate::payments::PaymentStore for $store {
            async fn idempotency(
                &self,
                client_id: &str,
                endpoint: &str,
                key: &str,
                since: i64,
            ) -> Result<Option<$crate::payments::IdemRecord>, $crate::StoreError> {
                read_idem(&self.pool, client_id, endpoint, key, since).await
            }

            async fn insert_consent_once(
                &self,
                c: &$crate::consent::ConsentRecord,
                idem: &$crate::payments::IdemKey,
                since: i64,
            ) -> Result<$crate::payments::Created, $crate::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from)?;
                if !claim_key(&mut *tx, idem, &c.consent_id, c.created_at, since).await? {
                    tx.rollback().await.map_err($crate::StoreError::from)?;
                    return Ok($crate::payments::Created::Existing(key_holder(&self.pool, idem, since).await?));
                }
                insert_consent_row(&mut *tx, c).await?;
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok($crate::payments::Created::New)
            }

            async fn insert_payment_once(
                &self,
                p: &$crate::payments::PaymentRecord,
                idem: &$crate::payments::IdemKey,
                since: i64,
            ) -> Result<$crate::payments::PaymentCreate, $crate::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from)?;
                if !claim_key(&mut *tx, idem, &p.payment_id, p.created_at, since).await? {
                    tx.rollback().await.map_err($crate::StoreError::from)?;
                    return Ok($crate::payments::PaymentCreate::Existing(key_holder(&self.pool, idem, since).await?));
                }
                let consumed = sqlx::query(
                    "UPDATE consents SET status='Consumed', status_updated_at=$2 \
                     WHERE consent_id=$1 AND status='Authorised' AND deleted=0",
                )
                .bind(&p.consent_id)
                .bind(p.created_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::StoreError::from)?
                .rows_affected()
                    == 1;
                if !consumed {
                    tx.rollback().await.map_err($crate::StoreError::from)?;
                    return Ok($crate::payments::PaymentCreate::ConsentNotAuthorised);
                }
                let sql = format!(
                    "INSERT INTO payments ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                    $crate::payments::PAYMENT_COLUMNS
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&p.payment_id)
                    .bind(&p.kind)
                    .bind(&p.consent_id)
                    .bind(&p.client_id)
                    .bind(&p.status)
                    .bind(p.created_at)
                    .bind(p.status_updated_at)
                    .bind(p.due_at)
                    .bind(&p.account_id)
                    .bind(p.debit_minor)
                    .bind(&p.debit_currency)
                    .bind(&p.reason)
                    .bind(p.data.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::StoreError::from)?;
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok($crate::payments::PaymentCreate::New)
            }

            async fn payment(&self, payment_id: &str) -> Result<Option<$crate::payments::PaymentRecord>, $crate::StoreError> {
                let sql = format!("SELECT {} FROM payments WHERE payment_id=$1", $crate::payments::PAYMENT_COLUMNS);
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(payment_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                row.map(|r| payment_from_row(&r)).transpose()
            }

            async fn due_payments(&self, now: i64, limit: i64) -> Result<Vec<$crate::payments::PaymentRecord>, $crate::StoreError> {
                // `due_at IS NOT NULL` lets both backends use the partial index.
                let sql = format!(
                    "SELECT {} FROM payments WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at LIMIT $2",
                    $crate::payments::PAYMENT_COLUMNS
                );
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                rows.iter().map(payment_from_row).collect()
            }

            async fn advance_payment(
                &self,
                payment_id: &str,
                from: &[&str],
                status: &str,
                at: i64,
                reason: Option<&str>,
                due_at: Option<i64>,
            ) -> Result<bool, $crate::StoreError> {
                use sqlx::Row;
                // At most three source statuses: padded so the statement is
                // always the same one.
                let f = |i: usize| from.get(i).copied().unwrap_or("");
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from)?;
                let row: Option<$row> = sqlx::query(
                    "UPDATE payments SET status=$2, status_updated_at=$3, reason=COALESCE($4, reason), due_at=$5 \
                     WHERE payment_id=$1 AND status IN ($6, $7, $8) RETURNING client_id, kind",
                )
                .bind(payment_id)
                .bind(status)
                .bind(at)
                .bind(reason)
                .bind(due_at)
                .bind(f(0))
                .bind(f(1))
                .bind(f(2))
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::StoreError::from)?;
                // The TPP hears of the new status (EVT-12), from this
                // transaction's outbox row.
                if let Some(r) = &row {
                    let e = $crate::events::NewEvent {
                        jti: $crate::events::new_id(),
                        client_id: r.get(0),
                        event_type: $crate::events::RESOURCE_UPDATE,
                        resource_type: r.get(1),
                        resource_id: payment_id.to_string(),
                        reason: None,
                        toe: at,
                        txn: $crate::events::new_id(),
                    };
                    $crate::enqueue_event!(&mut *tx, &e)?;
                }
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok(row.is_some())
            }

            async fn postpone_payment(&self, payment_id: &str, due_at: i64) -> Result<(), $crate::StoreError> {
                sqlx::query("UPDATE payments SET due_at=$2 WHERE payment_id=$1 AND due_at IS NOT NULL")
                    .bind(payment_id)
                    .bind(due_at)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn ledger_submit(
                &self,
                p: &$crate::payments::LedgerPayment,
            ) -> Result<$crate::payments::LedgerPayment, $crate::StoreError> {
                let sql = format!(
                    "INSERT INTO core_payments ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) \
                     ON CONFLICT (payment_id) DO NOTHING",
                    $crate::payments::LEDGER_COLUMNS
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&p.payment_id)
                    .bind(&p.account_id)
                    .bind(p.debit_minor)
                    .bind(&p.debit_currency)
                    .bind(&p.status)
                    .bind(p.created_at)
                    .bind(p.status_updated_at)
                    .bind(p.due_at)
                    .bind(&p.reason)
                    .bind(p.instruction.to_string())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                self.ledger_payment(&p.payment_id)
                    .await?
                    .ok_or($crate::StoreError::NotFound)
            }

            async fn ledger_payment(
                &self,
                payment_id: &str,
            ) -> Result<Option<$crate::payments::LedgerPayment>, $crate::StoreError> {
                let sql = format!("SELECT {} FROM core_payments WHERE payment_id=$1", $crate::payments::LEDGER_COLUMNS);
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(payment_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                row.map(|r| ledger_from_row(&r)).transpose()
            }

            async fn ledger_due(
                &self,
                now: i64,
                limit: i64,
            ) -> Result<Vec<$crate::payments::LedgerPayment>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {} FROM core_payments WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at LIMIT $2",
                    $crate::payments::LEDGER_COLUMNS
                );
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                rows.iter().map(ledger_from_row).collect()
            }

            async fn ledger_accept(
                &self,
                payment_id: &str,
                now: i64,
                next_due: i64,
                entry: &aspen_domain::Transaction,
            ) -> Result<$crate::payments::Step, $crate::StoreError> {
                use sqlx::Row;
                if entry.transaction_id != $crate::payments::entry_id(payment_id) {
                    return Err($crate::StoreError::Conflict("ledger entry id must be entry_id(payment_id)".into()));
                }
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from)?;
                // The status compare-and-set comes first: it takes the row
                // lock, so a second node blocks here and then finds nothing.
                let row: Option<$row> = sqlx::query(
                    "UPDATE core_payments SET status=$2, status_updated_at=$3, due_at=$4 \
                     WHERE payment_id=$1 AND status=$5 RETURNING account_id, debit_minor",
                )
                .bind(payment_id)
                .bind($crate::payments::LEDGER_ACCEPTED)
                .bind(now)
                .bind(next_due)
                .bind($crate::payments::LEDGER_PENDING)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::StoreError::from)?;
                let Some(row) = row else {
                    tx.rollback().await.map_err($crate::StoreError::from)?;
                    return Ok($crate::payments::Step::NotApplicable);
                };
                let account_id: String = row.get(0);
                let amount: i64 = row.get(1);
                let reserved = sqlx::query(
                    "UPDATE accounts SET pending_debits_minor = pending_debits_minor + $2 \
                     WHERE account_id=$1 AND booked_minor - pending_debits_minor >= $2",
                )
                .bind(&account_id)
                .bind(amount)
                .execute(&mut *tx)
                .await
                .map_err($crate::StoreError::from)?
                .rows_affected()
                    == 1;
                if !reserved {
                    sqlx::query(
                        "UPDATE core_payments SET status=$2, due_at=NULL, reason=$3 WHERE payment_id=$1",
                    )
                    .bind(payment_id)
                    .bind($crate::payments::LEDGER_REJECTED)
                    .bind("insufficient funds at execution")
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::StoreError::from)?;
                    tx.commit().await.map_err($crate::StoreError::from)?;
                    return Ok($crate::payments::Step::Moved($crate::payments::LEDGER_REJECTED));
                }
                insert_transactions(&mut *tx, std::slice::from_ref(entry)).await?;
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok($crate::payments::Step::Moved($crate::payments::LEDGER_ACCEPTED))
            }

            async fn ledger_settle(&self, payment_id: &str, now: i64) -> Result<$crate::payments::Step, $crate::StoreError> {
                use sqlx::Row;
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from)?;
                let row: Option<$row> = sqlx::query(
                    "UPDATE core_payments SET status=$2, status_updated_at=$3, due_at=NULL \
                     WHERE payment_id=$1 AND status=$4 RETURNING account_id, debit_minor",
                )
                .bind(payment_id)
                .bind($crate::payments::LEDGER_COMPLETED)
                .bind(now)
                .bind($crate::payments::LEDGER_ACCEPTED)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::StoreError::from)?;
                let Some(row) = row else {
                    tx.rollback().await.map_err($crate::StoreError::from)?;
                    return Ok($crate::payments::Step::NotApplicable);
                };
                let account_id: String = row.get(0);
                let amount: i64 = row.get(1);
                let booked: i64 = sqlx::query(
                    "UPDATE accounts SET booked_minor = booked_minor - $2, pending_debits_minor = pending_debits_minor - $2 \
                     WHERE account_id=$1 RETURNING booked_minor",
                )
                .bind(&account_id)
                .bind(amount)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::StoreError::from)?
                .get(0);
                sqlx::query(
                    "UPDATE transactions SET status='Booked', value_ms=$2, balance_minor=$3 WHERE transaction_id=$1",
                )
                .bind($crate::payments::entry_id(payment_id))
                .bind(now)
                .bind(booked)
                .execute(&mut *tx)
                .await
                .map_err($crate::StoreError::from)?;
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok($crate::payments::Step::Moved($crate::payments::LEDGER_COMPLETED))
            }
        }
    };
}
