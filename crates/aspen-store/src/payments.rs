//! Storage for payment initiation: idempotency keys (COMMON-24..26), payment
//! orders and the two ledger steps that execute them. Every step is one
//! database transaction that starts with a compare-and-set on the payment's
//! status, so two nodes (or a node and its restarted self) can never both
//! take it; the ledger entry's id is derived from the payment id and is a
//! primary key, so a debit cannot be written twice.

use async_trait::async_trait;
use serde_json::Value;

use crate::StoreError;
use crate::consent::{CONSENT_COLUMNS, ConsentRecord};
use crate::direct::{Param, Script, bind_params};

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
    /// Written and executed by the ledger in the same transaction
    /// ([`PaymentStore::insert_payment_executed`]): the OB status committed,
    /// [`COMPLETED`], or [`REJECTED`] when the account could not cover the
    /// debit.
    Executed(&'static str),
    Existing(IdemRecord),
    /// The consent is no longer `Authorised` (consumed meanwhile, say).
    ConsentNotAuthorised,
}

/// What the builtin ledger writes when it executes a payment at once:
/// its row (as submitted, `Pending`) and its debit entry (as
/// [`PaymentStore::ledger_accept`] would write it).
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerExecution {
    pub payment: LedgerPayment,
    pub entry: aspen_domain::Transaction,
}

/// Why the ledger rejects a payment it cannot cover (PIS-21).
pub const INSUFFICIENT_FUNDS: &str = "insufficient funds at execution";

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
    /// [`PaymentStore::insert_payment_once`] and the builtin ledger's
    /// immediate execution in one write transaction: the idempotency key,
    /// the consent's move to `Consumed`, the ledger's payment row, the debit
    /// reserved and booked at once (balance down, entry `Booked` with its
    /// running balance), and the OB payment with its final status and its
    /// event (EVT-12). An account that cannot cover the debit leaves the
    /// balance alone and both rows `Rejected` (PIS-21). `p.status` and
    /// `p.due_at` are replaced by the outcome; the entry takes its id,
    /// reference, information and detail from `exec.entry` and its
    /// account, amount, currency and time from the order.
    async fn insert_payment_executed(
        &self,
        p: &PaymentRecord,
        idem: &IdemKey,
        since: i64,
        exec: &LedgerExecution,
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

/// SQLite: [`PaymentStore::insert_payment_executed`] as one statement list,
/// so one hop to sqlx's worker thread, one commit, and the write lock held
/// only while the list runs (not across hops, which is what queues the
/// other writers). Each write is guarded by the one before it: the consent
/// moves only if the key was claimed (`changes()` of the claim), the
/// payment row is written only if the consent moved, every later write only
/// if that row exists, and a key claimed for a consent that did not move is
/// released again. The debit's outcome (`changes()` of the balance update)
/// decides between `Completed` and `Rejected`. The list answers the
/// payment's status, or nothing when no payment was made. Run as
/// [`crate::sqlite_script`] says, in a task of its own.
pub(crate) async fn sqlite_insert_payment_executed(
    store: &crate::SqliteStore,
    p: &PaymentRecord,
    idem: &IdemKey,
    since: i64,
    exec: &LedgerExecution,
) -> Result<Option<&'static str>, StoreError> {
    if let Some(direct) = &store.direct
        && let Some(rows) = direct
            .write(&SQLITE_EXECUTED, executed_params(p, idem, since, exec))
            .await?
    {
        return Ok(rows.first().map(|v| {
            final_status(match v {
                rusqlite::types::Value::Text(s) => s,
                _ => "",
            })
        }));
    }
    let params = executed_params(p, idem, since, exec);
    let pool = store.writer.clone();
    tokio::spawn(async move {
        use sqlx::Row;
        let mut conn = pool.acquire().await?;
        let q = sqlx::query(sqlx::AssertSqlSafe(SQLITE_EXECUTED.text.as_str()));
        let rows = crate::sqlite_script(&mut conn, bind_params(q, params)).await?;
        Ok(rows.first().map(|r| final_status(r.get::<&str, _>(0))))
    })
    .await
    .map_err(|e| StoreError::Backend(format!("payment write did not finish: {e}")))?
}

fn final_status(s: &str) -> &'static str {
    if s == COMPLETED { COMPLETED } else { REJECTED }
}

/// The statement list of [`sqlite_insert_payment_executed`], parameters as
/// [`executed_params`].
static SQLITE_EXECUTED: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    use crate::world::TX_INSERT_COLUMNS;
    let paid = "EXISTS (SELECT 1 FROM payments WHERE payment_id=$5)";
    let booked = format!(
        "EXISTS (SELECT 1 FROM core_payments WHERE payment_id=$5 AND status='{LEDGER_COMPLETED}')"
    );
    let event = executed_event_sql();
    Script::new(format!(
        "BEGIN IMMEDIATE; {CLAIM_SQL}; \
         UPDATE consents SET status='Consumed', status_updated_at=$6 \
         WHERE consent_id=$8 AND status='Authorised' AND deleted=0 AND changes() = 1; \
         INSERT INTO payments ({PAYMENT_COLUMNS}) \
         SELECT $5,$9,$8,$1,'{COMPLETED}',$6,$6,NULL,$10,$11,$12,NULL,$13 WHERE changes() = 1; \
         DELETE FROM idempotency_keys WHERE client_id=$1 AND endpoint=$2 AND idem_key=$3 AND resource_id=$5 \
         AND NOT {paid}; \
         INSERT INTO core_payments ({LEDGER_COLUMNS}) \
         SELECT $5,$10,$11,$12,'{LEDGER_COMPLETED}',$6,$6,NULL,NULL,$14 WHERE {paid}; \
         {event} AND {paid}; \
         UPDATE accounts SET booked_minor = booked_minor - $11 \
         WHERE account_id=$10 AND booked_minor - pending_debits_minor >= $11 AND {paid}; \
         UPDATE core_payments SET status='{LEDGER_REJECTED}', reason=$15 WHERE payment_id=$5 AND changes() = 0; \
         UPDATE payments SET status='{REJECTED}', reason=$15 WHERE payment_id=$5 AND changes() = 1; \
         INSERT INTO tx_days (account_id, day, credit, n) SELECT $10, $16, 0, 1 WHERE {booked} \
         ON CONFLICT (account_id, day, credit) DO UPDATE SET n = tx_days.n + excluded.n; \
         INSERT INTO tx_blocks (account_id, block, credit, n) SELECT $10, $23, 0, 1 WHERE {booked} \
         ON CONFLICT (account_id, block, credit) DO UPDATE SET n = tx_blocks.n + excluded.n; \
         INSERT INTO transactions ({TX_INSERT_COLUMNS}) \
         SELECT $17,$10,$6,$6,$11,$12,0,'Booked',$18,$19,a.booked_minor,$20,$24,$25 \
         FROM accounts a WHERE a.account_id=$10 AND {booked}; \
         SELECT status FROM payments WHERE payment_id=$5; \
         COMMIT"
    ))
});

/// PostgreSQL: [`PaymentStore::insert_payment_executed`] through the
/// node's payment queue ([`Payments`]): one statement, written alone or in
/// one transaction with the orders that came meanwhile. The statement's
/// parts chain through what each returns: the consent moves only if the
/// key was claimed, the debit only if the consent moved, and the rows
/// follow the debit's outcome. A key claimed for a consent that did not
/// move (another order consumed it meanwhile) is undone by the statement
/// failing with our SQLSTATE (`aspen_abort`, migration 0012), which rolls
/// all of it back.
pub(crate) async fn pg_insert_payment_executed(
    store: &crate::PgStore,
    p: &PaymentRecord,
    idem: &IdemKey,
    since: i64,
    exec: &LedgerExecution,
) -> Result<Option<&'static str>, StoreError> {
    store
        .payments
        .write(Order {
            account_id: exec.payment.account_id.clone(),
            params: executed_params(p, idem, since, exec),
        })
        .await
}

/// PostgreSQL's executed payments, several to a transaction
/// ([`crate::pg_batch`]; issue 15). Each order's statement commits at once
/// when it is alone, as one statement outside any explicit transaction:
/// one round trip, and the debited account's row lock held only until that
/// statement commits. Orders that came while a batch was out go together,
/// one statement each in one transaction, so one commit and one WAL flush
/// for all of them: the flush had cost PostgreSQL about 370 µs of CPU an
/// order (BENCHMARKS.md, thirty-sixth pass). A batch's orders on one
/// account do not wait for each other's commits; an order on that account
/// from the other lane or another node waits for the batch's.
///
/// The orders go in the order of their accounts, so that two batches take
/// the accounts' row locks in one order and cannot deadlock on them. Any
/// statement that fails rolls the whole batch back: an order whose consent
/// another consumed first (`aspen_abort`), a row's constraint, a deadlock
/// met on another row. The orders are then written one at a time, each
/// with its own outcome, as if none had been batched. A batch sent again
/// because its connection broke, perhaps during its `COMMIT`, cannot pay
/// twice: an order already written finds its key claimed, and its caller
/// answers with the stored payment, as for any replay (COMMON-24).
pub(crate) struct Payments;

/// One executed payment to write: the statement's parameters
/// ([`executed_params`]) and the account it debits.
pub(crate) struct Order {
    account_id: String,
    params: Vec<Param>,
}

impl crate::pg_batch::Batch for Payments {
    type Item = Order;
    type Out = Option<&'static str>;
    /// How many orders' row locks one transaction holds at most.
    const MAX: usize = 16;
    const APPLICATION_NAME: &'static str = "aspen payments";
    const OPTIONS: &'static [(&'static str, &'static str)] = &[];

    async fn write(pool: &crate::pg_pool::PgConns, mut jobs: Vec<crate::pg_batch::Job<Payments>>) {
        use crate::pg_batch::attempt;
        if jobs.len() > 1 {
            jobs.sort_by(|a, b| a.item.account_id.cmp(&b.item.account_id));
            match attempt(pool, |p| pg_executed_together(p, &jobs)).await {
                Ok(outcomes) => {
                    for (job, outcome) in jobs.into_iter().zip(outcomes) {
                        job.answer(Ok(outcome));
                    }
                    return;
                }
                Err(e) if crate::pg_batch::for_a_row(&e) || aborted(&e) => {}
                Err(e) => {
                    let e = StoreError::from(e);
                    for job in jobs {
                        job.answer(Err(e.clone()));
                    }
                    return;
                }
            }
        }
        for job in jobs {
            let outcome = attempt(pool, |p| pg_executed_alone(p, &job.item.params)).await;
            job.answer(outcome.map_err(StoreError::from));
        }
    }
}

/// One order's statement, committed on its own: `None` when nothing was
/// written (the key is another request's, or the consent moved on).
async fn pg_executed_alone(
    pool: crate::pg_pool::PgConns,
    params: &[Param],
) -> Result<Option<&'static str>, sqlx::Error> {
    match pg_executed(&pool, params).await {
        Err(e) if aborted(&e) => Ok(None),
        outcome => outcome,
    }
}

/// The orders' statements in one transaction, their outcomes in their
/// order; the first that fails rolls back all of them.
async fn pg_executed_together(
    pool: crate::pg_pool::PgConns,
    jobs: &[crate::pg_batch::Job<Payments>],
) -> Result<Vec<Option<&'static str>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        match pg_executed(&mut *tx, &job.item.params).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                // The error is the batch's answer; a rollback that fails
                // leaves the connection to the pool to put right.
                let _ = tx.rollback().await;
                return Err(e);
            }
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// One order's statement on `on`: the pool, where the connection goes back
/// as soon as the statement ends ([`crate::pg_pool`]), or a batch's
/// transaction.
async fn pg_executed<'c>(
    on: impl sqlx::Executor<'c, Database = sqlx::Postgres>,
    params: &[Param],
) -> Result<Option<&'static str>, sqlx::Error> {
    use sqlx::Row;
    let row = bind_params(
        sqlx::query(sqlx::AssertSqlSafe(PG_EXECUTED_SQL.as_str())),
        params.to_vec(),
    )
    .fetch_one(on)
    .await?;
    Ok(row.get::<Option<String>, _>(0).map(|s| final_status(&s)))
}

/// The statement failed with our SQLSTATE: its order's consent had moved.
fn aborted(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some(ABORT_SQLSTATE))
}

/// The SQLSTATE `aspen_abort` raises.
const ABORT_SQLSTATE: &str = "ASP01";

/// The statement of [`pg_insert_payment_executed`], parameters as
/// [`executed_params`].
static PG_EXECUTED_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use crate::world::TX_INSERT_COLUMNS;
    let event = executed_event_sql();
    format!(
        "WITH claim AS ({CLAIM_SQL} RETURNING 1), \
         consumed AS (\
           UPDATE consents SET status='Consumed', status_updated_at=$6 \
           WHERE consent_id=$8 AND status='Authorised' AND deleted=0 AND EXISTS (SELECT 1 FROM claim) \
           RETURNING 1), \
         debit AS (\
           UPDATE accounts SET booked_minor = booked_minor - $11 \
           WHERE account_id=$10 AND booked_minor - pending_debits_minor >= $11 \
           AND EXISTS (SELECT 1 FROM consumed) RETURNING booked_minor), \
         outcome AS (SELECT EXISTS (SELECT 1 FROM debit) AS ok FROM consumed), \
         pay AS (\
           INSERT INTO payments ({PAYMENT_COLUMNS}) \
           SELECT $5,$9,$8,$1,CASE WHEN ok THEN '{COMPLETED}' ELSE '{REJECTED}' END,$6,$6,NULL,$10,$11,$12,\
           CASE WHEN ok THEN NULL ELSE $15 END,$13 FROM outcome RETURNING status), \
         ledger AS (\
           INSERT INTO core_payments ({LEDGER_COLUMNS}) \
           SELECT $5,$10,$11,$12,CASE WHEN ok THEN '{LEDGER_COMPLETED}' ELSE '{LEDGER_REJECTED}' END,$6,$6,NULL,\
           CASE WHEN ok THEN NULL ELSE $15 END,$14 FROM outcome), \
         days AS (\
           INSERT INTO tx_days (account_id, day, credit, n) SELECT $10, $16, 0, 1 FROM debit \
           ON CONFLICT (account_id, day, credit) DO UPDATE SET n = tx_days.n + excluded.n), \
         blocks AS (\
           INSERT INTO tx_blocks (account_id, block, credit, n) SELECT $10, $23, 0, 1 FROM debit \
           ON CONFLICT (account_id, block, credit) DO UPDATE SET n = tx_blocks.n + excluded.n), \
         entry AS (\
           INSERT INTO transactions ({TX_INSERT_COLUMNS}) \
           SELECT $17,$10,$6,$6,$11,$12,0,'Booked',$18,$19,booked_minor,$20,$24,$25 FROM debit), \
         event AS ({event} AND EXISTS (SELECT 1 FROM consumed)) \
         SELECT (SELECT status FROM pay), \
           CASE WHEN EXISTS (SELECT 1 FROM claim) AND NOT EXISTS (SELECT 1 FROM consumed) \
           THEN aspen_abort('the consent moved before the order could consume it') END"
    )
});

/// The outbox row of an executed payment (EVT-12), in the numbering of
/// [`executed_params`].
fn executed_event_sql() -> String {
    crate::events::enqueue_sql_with([
        "$21",
        "$1",
        &format!("'{}'", crate::events::RESOURCE_UPDATE),
        "$9",
        "$5",
        "NULL",
        "$6",
        "$22",
    ])
}

/// SQLite: [`PaymentStore::insert_consent_once`] as one statement list on
/// the direct lane (in a shared commit), else through sqlx as
/// [`crate::sqlite_script`] says, in a task of its own. True when the
/// consent was written, false when the key is another request's.
pub(crate) async fn sqlite_insert_consent_once(
    store: &crate::SqliteStore,
    c: &ConsentRecord,
    idem: &IdemKey,
    since: i64,
) -> Result<bool, StoreError> {
    if let Some(direct) = &store.direct
        && let Some(rows) = direct
            .write(&SQLITE_CONSENT_ONCE, consent_once_params(c, idem, since))
            .await?
    {
        return Ok(matches!(
            rows.first(),
            Some(rusqlite::types::Value::Integer(1))
        ));
    }
    let params = consent_once_params(c, idem, since);
    let pool = store.writer.clone();
    tokio::spawn(async move {
        use sqlx::Row;
        let mut conn = pool.acquire().await?;
        let q = sqlx::query(sqlx::AssertSqlSafe(SQLITE_CONSENT_ONCE.text.as_str()));
        let rows = crate::sqlite_script(&mut conn, bind_params(q, params)).await?;
        Ok(rows.first().is_some_and(|r| r.get::<i64, _>(0) == 1))
    })
    .await
    .map_err(|e| StoreError::Backend(format!("consent write did not finish: {e}")))?
}

/// The statement list of [`sqlite_insert_consent_once`], parameters as
/// [`consent_once_params`]: the consent is written only if the key was
/// claimed (`changes()` of the claim).
static SQLITE_CONSENT_ONCE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(format!(
        "BEGIN IMMEDIATE; {CLAIM_SQL}; \
         INSERT INTO consents ({CONSENT_COLUMNS}) \
         SELECT $8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19 WHERE changes() = 1; \
         SELECT changes(); \
         COMMIT"
    ))
});

/// PostgreSQL: [`PaymentStore::insert_consent_once`] as one statement, so
/// one round trip (was `BEGIN`, the claim, the consent, `COMMIT`): the
/// consent is inserted only from the claim's returned row. True when the
/// consent was written.
pub(crate) async fn pg_insert_consent_once(
    store: &crate::PgStore,
    c: &ConsentRecord,
    idem: &IdemKey,
    since: i64,
) -> Result<bool, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH claim AS ({CLAIM_SQL} RETURNING 1) \
             INSERT INTO consents ({CONSENT_COLUMNS}) \
             SELECT $8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19 FROM claim"
        )
    });
    let r = bind_params(
        sqlx::query(sqlx::AssertSqlSafe(SQL.as_str())),
        consent_once_params(c, idem, since),
    )
    .execute(&store.writer)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Claims an idempotency key, `$1..$7` as [`claim_params`]: a new key, or
/// one whose window ended (COMMON-25). Every write
/// that claims a key uses this text.
pub(crate) const CLAIM_SQL: &str = "INSERT INTO idempotency_keys \
    (client_id, endpoint, idem_key, body_hash, resource_id, created_at) \
    VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (client_id, endpoint, idem_key) DO UPDATE \
    SET body_hash=excluded.body_hash, resource_id=excluded.resource_id, created_at=excluded.created_at \
    WHERE idempotency_keys.created_at <= $7";

/// [`CLAIM_SQL`]'s `$1..$7`: the key (client, endpoint, key, body hash),
/// the resource it names, now, and the window's start.
pub(crate) fn claim_params(idem: &IdemKey, resource_id: &str, now: i64, since: i64) -> Vec<Param> {
    use Param::{Int, Text};
    vec![
        Text(idem.client_id.clone()),
        Text(idem.endpoint.clone()),
        Text(idem.key.clone()),
        Text(idem.body_hash.clone()),
        Text(resource_id.to_string()),
        Int(now),
        Int(since),
    ]
}

/// `$1..$7` the key's claim (the resource is the consent), `$8..$19` the
/// consent's [`CONSENT_COLUMNS`].
fn consent_once_params(c: &ConsentRecord, idem: &IdemKey, since: i64) -> Vec<Param> {
    use Param::{Int, OptInt, OptText, Text};
    let mut params = claim_params(idem, &c.consent_id, c.created_at, since);
    params.extend([
        Text(c.consent_id.clone()),
        Text(c.kind.clone()),
        Text(c.client_id.clone()),
        Text(c.status.clone()),
        Int(c.created_at),
        Int(c.status_updated_at),
        OptInt(c.expires_at),
        OptText(c.psu_id.clone()),
        Text(crate::auth::json_list(&c.accounts)),
        Text(c.data.to_string()),
        OptInt(c.authorised_at),
        Int(i64::from(c.deleted)),
    ]);
    params
}

/// The parameters of both backends' execution writes: `$1..$7` the key
/// (client, endpoint, key, body hash, payment id, now, the window's
/// start), `$8..$14` the order (consent, kind, account, debit, currency,
/// data, the ledger's instruction), `$15` the rejection reason, `$16` the
/// entry's day, `$17..$20` the entry (id, reference, information, detail),
/// `$21..$22` the event's ids, `$23` the entry's block, `$24` its detail's
/// index, `$25` its stored form.
fn executed_params(
    p: &PaymentRecord,
    idem: &IdemKey,
    since: i64,
    exec: &LedgerExecution,
) -> Vec<Param> {
    use Param::{Int, OptText, Text};
    let (l, e) = (&exec.payment, &exec.entry);
    let mut params = claim_params(idem, &p.payment_id, p.created_at, since);
    params.extend([
        Text(p.consent_id.clone()),
        Text(p.kind.clone()),
        Text(l.account_id.clone()),
        Int(l.debit_minor),
        Text(l.debit_currency.clone()),
        Text(p.data.to_string()),
        Text(l.instruction.to_string()),
        Text(INSUFFICIENT_FUNDS.to_string()),
        Int(p.created_at.div_euclid(crate::world::DAY_MS)),
        Text(e.transaction_id.clone()),
        OptText(e.reference.clone()),
        OptText(e.information.clone()),
        Text(e.detail.get().to_string()),
        Text(crate::events::new_id()),
        Text(crate::events::new_id()),
        Int(crate::world::block_of(
            p.created_at.div_euclid(crate::world::DAY_MS),
        )),
        Text(e.detail.index()),
        OptText(executed_entry_stored(p, exec)),
    ]);
    params
}

/// The stored form (`aspen_domain::wire::stored`) of the entry the
/// executed payment's statement writes: the columns as that statement
/// gives them (`$6`, `$10`..`$12`, `$17`..`$20`), the running balance
/// aside (the statement works it out, and the stored form leaves it out).
fn executed_entry_stored(p: &PaymentRecord, exec: &LedgerExecution) -> Option<String> {
    let (l, e) = (&exec.payment, &exec.entry);
    let mut t = e.view();
    t.account_id = &l.account_id;
    t.booking_ms = p.created_at;
    t.value_ms = Some(p.created_at);
    t.amount_minor = l.debit_minor;
    t.currency = &l.debit_currency;
    t.credit_debit = aspen_domain::CreditDebit::Debit;
    t.status = "Booked";
    aspen_domain::wire::stored(&t)
}

/// A live idempotency key: `$1..$3` the key, `$4` the window's start.
pub(crate) const IDEM_SQL: &str = "SELECT body_hash, resource_id, created_at FROM idempotency_keys \
    WHERE client_id=$1 AND endpoint=$2 AND idem_key=$3 AND created_at > $4";

pub(crate) fn idem_from_row(r: &impl crate::cols::Cols) -> Result<IdemRecord, StoreError> {
    Ok(IdemRecord {
        body_hash: r.col(0)?,
        resource_id: r.col(1)?,
        created_at: r.col(2)?,
    })
}

/// The ledger entry of a payment: one per payment, by construction.
pub fn entry_id(payment_id: &str) -> String {
    format!("txn-{payment_id}")
}

#[macro_export]
#[doc(hidden)]
macro_rules! impl_payment_store {
    // `$executed` and `$consent_once`: the backend's one write for
    // `insert_payment_executed` and `insert_consent_once`
    // (`sqlite_insert_payment_executed`, `pg_insert_consent_once`, ...).
    ($store:ty, $row:ty, $db:ty, $executed:path, $consent_once:path) => {
        $crate::impl_payment_store!(@store $store, $row, $db, $executed, $consent_once);
    };
    (@store $store:ty, $row:ty, $db:ty, $executed:path, $consent_once:path) => {
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

        async fn read_idem<'c>(
            pool: impl sqlx::Executor<'c, Database = $db>,
            client_id: &str,
            endpoint: &str,
            key: &str,
            since: i64,
        ) -> Result<Option<$crate::payments::IdemRecord>, $crate::StoreError> {
            let row: Option<$row> = sqlx::query($crate::payments::IDEM_SQL)
            .bind(client_id)
            .bind(endpoint)
            .bind(key)
            .bind(since)
            .fetch_optional(pool)
            .await
            .map_err($crate::StoreError::from)?;
            row.map(|r| $crate::payments::idem_from_row(&r)).transpose()
        }

        /// The record of the request that holds the key (it committed first).
        async fn key_holder<'c>(
            pool: impl sqlx::Executor<'c, Database = $db>,
            idem: &$crate::payments::IdemKey,
            since: i64,
        ) -> Result<$crate::payments::IdemRecord, $crate::StoreError> {
            read_idem(pool, &idem.client_id, &idem.endpoint, &idem.key, since)
                .await?
                .ok_or_else(|| $crate::StoreError::Conflict("idempotency key in flux".into()))
        }

        /// Claims the key, taking over one that expired (COMMON-24: older
        /// than `since`), in one statement. `Ok(false)`: another request
        /// holds the key (the transaction must be abandoned).
        async fn claim_key(
            conn: &mut <$db as sqlx::Database>::Connection,
            idem: &$crate::payments::IdemKey,
            resource_id: &str,
            now: i64,
            since: i64,
        ) -> Result<bool, $crate::StoreError> {
            let r = $crate::direct::bind_params(
                sqlx::query($crate::payments::CLAIM_SQL),
                $crate::payments::claim_params(idem, resource_id, now, since),
            )
            .execute(&mut *conn)
            .await
            .map_err($crate::StoreError::from)?;
            Ok(r.rows_affected() == 1)
        }

        /// The consent's move from `Authorised` to `Consumed` (PIS-12): the
        /// compare-and-set that lets a consent pay once.
        async fn consume_consent(
            conn: &mut <$db as sqlx::Database>::Connection,
            consent_id: &str,
            at: i64,
        ) -> Result<bool, $crate::StoreError> {
            Ok(sqlx::query(
                "UPDATE consents SET status='Consumed', status_updated_at=$2 \
                 WHERE consent_id=$1 AND status='Authorised' AND deleted=0",
            )
            .bind(consent_id)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map_err($crate::StoreError::from)?
            .rows_affected()
                == 1)
        }

        async fn insert_payment_row(
            conn: &mut <$db as sqlx::Database>::Connection,
            p: &$crate::payments::PaymentRecord,
        ) -> Result<(), $crate::StoreError> {
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
                .execute(&mut *conn)
                .await
                .map_err($crate::StoreError::from)?;
            Ok(())
        }

        async fn insert_ledger_row(
            conn: &mut <$db as sqlx::Database>::Connection,
            p: &$crate::payments::LedgerPayment,
        ) -> Result<u64, $crate::StoreError> {
            let sql = format!(
                "INSERT INTO core_payments ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) \
                 ON CONFLICT (payment_id) DO NOTHING",
                $crate::payments::LEDGER_COLUMNS
            );
            Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
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
                .execute(&mut *conn)
                .await
                .map_err($crate::StoreError::from)?
                .rows_affected())
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
                if let Some(d) = self.direct()
                    && let Some(rec) = d.read_opt(
                        $crate::payments::IDEM_SQL,
                        &[&client_id, &endpoint, &key, &since],
                        |r| $crate::payments::idem_from_row(r),
                    )?
                {
                    return Ok(rec);
                }
                read_idem(&self.pool, client_id, endpoint, key, since).await
            }

            async fn insert_consent_once(
                &self,
                c: &$crate::consent::ConsentRecord,
                idem: &$crate::payments::IdemKey,
                since: i64,
            ) -> Result<$crate::payments::Created, $crate::StoreError> {
                if $consent_once(self, c, idem, since).await? {
                    Ok($crate::payments::Created::New)
                } else {
                    Ok($crate::payments::Created::Existing(key_holder(&self.pool, idem, since).await?))
                }
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
                if !consume_consent(&mut *tx, &p.consent_id, p.created_at).await? {
                    tx.rollback().await.map_err($crate::StoreError::from)?;
                    return Ok($crate::payments::PaymentCreate::ConsentNotAuthorised);
                }
                insert_payment_row(&mut *tx, p).await?;
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok($crate::payments::PaymentCreate::New)
            }

            async fn insert_payment_executed(
                &self,
                p: &$crate::payments::PaymentRecord,
                idem: &$crate::payments::IdemKey,
                since: i64,
                exec: &$crate::payments::LedgerExecution,
            ) -> Result<$crate::payments::PaymentCreate, $crate::StoreError> {
                if exec.payment.payment_id != p.payment_id
                    || exec.entry.transaction_id != $crate::payments::entry_id(&p.payment_id)
                {
                    return Err($crate::StoreError::Conflict(
                        "the ledger's rows must be the order's (payment_id, entry_id(payment_id))".into(),
                    ));
                }
                Ok(match $executed(self, p, idem, since, exec).await? {
                    Some(status) => $crate::payments::PaymentCreate::Executed(status),
                    // Nothing was written: the key is another request's, or
                    // the consent has moved on.
                    None => match read_idem(&self.pool, &idem.client_id, &idem.endpoint, &idem.key, since).await? {
                        Some(rec) => $crate::payments::PaymentCreate::Existing(rec),
                        None => $crate::payments::PaymentCreate::ConsentNotAuthorised,
                    },
                })
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
                let mut conn = self.pool.acquire().await.map_err($crate::StoreError::from)?;
                insert_ledger_row(&mut *conn, p).await?;
                drop(conn);
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
                    .bind($crate::payments::INSUFFICIENT_FUNDS)
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
                // The entry's stored form changes with its status and value
                // date, so it is written again from what the row now holds.
                let entry_id = $crate::payments::entry_id(payment_id);
                let entry: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE transactions SET status='Booked', value_ms=$2, balance_minor=$3 WHERE transaction_id=$1 \
                     RETURNING {}",
                    $crate::world::TX_COLUMNS
                )))
                .bind(&entry_id)
                .bind(now)
                .bind(booked)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::StoreError::from)?;
                if let Some(entry) = entry {
                    let entry = tx_from_row_at(&entry, 0)?;
                    sqlx::query("UPDATE transactions SET wire=$2 WHERE transaction_id=$1")
                        .bind(&entry_id)
                        .bind(aspen_domain::wire::stored(&entry.view()))
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::StoreError::from)?;
                }
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok($crate::payments::Step::Moved($crate::payments::LEDGER_COMPLETED))
            }
        }
    };
}
