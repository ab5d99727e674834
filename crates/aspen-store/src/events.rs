//! Event notifications: registrations (one event subscription and one
//! callback URL per TPP, EVT-2) and the outbox of events. An event row is
//! written in the same transaction as the change it reports (a payment's
//! status, a consent revoked or expired), and only for a TPP registered
//! for its type at that moment; delivery (push) and aggregated polling
//! read the same rows, on any node.

use async_trait::async_trait;

use crate::StoreError;

/// How long an event (and so its `jti`) is kept, acknowledged or not.
pub const RETENTION_DAYS: i64 = 30;

pub const RESOURCE_UPDATE: &str = "urn:uk:org:openbanking:events:resource-update";
pub const CONSENT_REVOKED: &str = "urn:uk:org:openbanking:events:consent-authorization-revoked";

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub subscription_id: String,
    pub client_id: String,
    pub callback_url: Option<String>,
    pub version: String,
    /// Event-type URNs; empty = every type aspen sends.
    pub event_types: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallbackUrl {
    pub callback_url_id: String,
    pub client_id: String,
    pub url: String,
    pub version: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a change reports, before it is in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub jti: String,
    pub client_id: String,
    pub event_type: &'static str,
    /// OB resource type: `domestic-payment`, `account-access-consent`, …
    pub resource_type: String,
    pub resource_id: String,
    pub reason: Option<String>,
    /// When it happened (ms).
    pub toe: i64,
    /// Correlation id, sent as `txn` and `x-fapi-interaction-id`.
    pub txn: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub jti: String,
    pub client_id: String,
    pub event_type: String,
    pub resource_type: String,
    pub resource_id: String,
    pub reason: Option<String>,
    pub toe: i64,
    pub txn: String,
    pub created_at: i64,
    pub state: String,
    pub push_url: Option<String>,
    pub push_attempts: i64,
    pub set_jws: Option<String>,
}

/// How a push attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PushOutcome {
    /// 202: delivered, acknowledged.
    Accepted,
    /// 4xx: the TPP refused it; no more pushes, still pollable (EVT-21).
    Refused(String),
    /// Timeout, connection failure or 5xx: again at `next_at`, or never
    /// again (None) once the retries are spent.
    Failed { error: String, next_at: Option<i64> },
}

/// A registration could not be made: the TPP already holds one (EVT-2).
#[derive(Debug, Clone, PartialEq)]
pub enum Registered {
    New,
    AlreadyExists,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    async fn insert_subscription(&self, s: &Subscription) -> Result<Registered, StoreError>;
    async fn subscriptions(&self, client_id: &str) -> Result<Vec<Subscription>, StoreError>;
    /// Replaces its fields; false if the client holds no such subscription.
    async fn update_subscription(&self, s: &Subscription) -> Result<bool, StoreError>;
    async fn delete_subscription(&self, client_id: &str, id: &str) -> Result<bool, StoreError>;

    async fn insert_callback_url(&self, c: &CallbackUrl) -> Result<Registered, StoreError>;
    async fn callback_urls(&self, client_id: &str) -> Result<Vec<CallbackUrl>, StoreError>;
    async fn update_callback_url(&self, c: &CallbackUrl) -> Result<bool, StoreError>;
    async fn delete_callback_url(&self, client_id: &str, id: &str) -> Result<bool, StoreError>;

    /// Aggregated polling (EVT-33), one transaction: applies `ack` and
    /// `errs` (the caller's own events only), then returns up to `max`
    /// pending events, oldest first, and whether more remain.
    async fn poll_events(
        &self,
        client_id: &str,
        ack: &[String],
        errs: &[(String, String)],
        max: i64,
    ) -> Result<(Vec<EventRecord>, bool), StoreError>;
    /// Keeps the SET as first signed; returns the one kept (another node
    /// may have signed it first).
    async fn keep_set(&self, jti: &str, jws: &str) -> Result<String, StoreError>;
    /// Takes up to `limit` due pushes for this node until `lease_until`:
    /// a pending event is pushed by one node at a time.
    async fn claim_pushes(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError>;
    async fn push_result(&self, jti: &str, outcome: &PushOutcome) -> Result<(), StoreError>;
    /// Consents whose `ExpirationDateTime` has passed while authorised:
    /// each gets its consent-authorization-revoked event once. Returns how
    /// many were found.
    async fn expire_consents(&self, now: i64, limit: i64) -> Result<u64, StoreError>;
}

pub(crate) const EVENT_COLUMNS: &str = "jti, client_id, event_type, resource_type, resource_id, reason, \
    toe, txn, created_at, state, push_url, push_attempts, set_jws";

/// Writes an event for the client's registration, if it has one that
/// takes this type: the event-subscription wins over a callback URL
/// (EVT-4), a callback URL takes resource-update only (EVT-3), and the
/// push URL is fixed at the time of the change.
pub(crate) const ENQUEUE_SQL: &str = "INSERT INTO events (jti, client_id, event_type, resource_type, \
    resource_id, reason, toe, txn, created_at, state, push_url, push_next_at) \
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $7, 'pending', reg.url, \
        CASE WHEN reg.url IS NULL THEN NULL ELSE $7 END \
    FROM (SELECT s.callback_url AS url, s.event_types AS types FROM event_subscriptions s WHERE s.client_id = $2 \
          UNION ALL \
          SELECT c.url AS url, ',urn:uk:org:openbanking:events:resource-update,' AS types FROM callback_urls c \
          WHERE c.client_id = $2 AND NOT EXISTS (SELECT 1 FROM event_subscriptions s2 WHERE s2.client_id = $2)) reg \
    WHERE (reg.types = '' OR reg.types LIKE '%,' || $3 || ',%')";

/// [`ENQUEUE_SQL`] with its parameters `$1`..`$8` replaced by `args` (other
/// parameters or literals), for a statement list that numbers its own.
pub(crate) fn enqueue_sql_with(args: [&str; 8]) -> String {
    let mut out = String::with_capacity(ENQUEUE_SQL.len() + 64);
    let mut chars = ENQUEUE_SQL.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().and_then(|d| d.to_digit(10))) {
            ('$', Some(n @ 1..=8)) => {
                chars.next();
                out.push_str(args[n as usize - 1]);
            }
            _ => out.push(c),
        }
    }
    out
}

/// `enqueue_event!(executor, &NewEvent)`: the outbox write, inside the
/// caller's transaction.
#[macro_export]
#[doc(hidden)]
macro_rules! enqueue_event {
    ($conn:expr, $e:expr) => {{
        let e: &$crate::events::NewEvent = $e;
        sqlx::query($crate::events::ENQUEUE_SQL)
            .bind(&e.jti)
            .bind(&e.client_id)
            .bind(e.event_type)
            .bind(&e.resource_type)
            .bind(&e.resource_id)
            .bind(&e.reason)
            .bind(e.toe)
            .bind(&e.txn)
            .execute($conn)
            .await
            .map_err($crate::StoreError::from)
    }};
}

pub(crate) fn join_types(types: &[String]) -> String {
    if types.is_empty() {
        String::new()
    } else {
        format!(",{},", types.join(","))
    }
}

pub(crate) fn split_types(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The OB resource type of a consent kind (`rty` of its events).
pub fn consent_resource_type(kind: &str) -> String {
    format!("{kind}-consent")
}

/// A fresh id for an event or a correlation.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[macro_export]
#[doc(hidden)]
macro_rules! impl_event_store {
    ($store:ty, $row:ty, $db:ty) => {
        fn event_from_row(r: &$row) -> $crate::events::EventRecord {
            use sqlx::Row;
            $crate::events::EventRecord {
                jti: r.get(0),
                client_id: r.get(1),
                event_type: r.get(2),
                resource_type: r.get(3),
                resource_id: r.get(4),
                reason: r.get(5),
                toe: r.get(6),
                txn: r.get(7),
                created_at: r.get(8),
                state: r.get(9),
                push_url: r.get(10),
                push_attempts: r.get(11),
                set_jws: r.get(12),
            }
        }

        fn subscription_from_row(r: &$row) -> $crate::events::Subscription {
            use sqlx::Row;
            $crate::events::Subscription {
                subscription_id: r.get(0),
                client_id: r.get(1),
                callback_url: r.get(2),
                version: r.get(3),
                event_types: $crate::events::split_types(r.get::<&str, _>(4)),
                created_at: r.get(5),
                updated_at: r.get(6),
            }
        }

        fn callback_from_row(r: &$row) -> $crate::events::CallbackUrl {
            use sqlx::Row;
            $crate::events::CallbackUrl {
                callback_url_id: r.get(0),
                client_id: r.get(1),
                url: r.get(2),
                version: r.get(3),
                created_at: r.get(4),
                updated_at: r.get(5),
            }
        }

        #[async_trait::async_trait]
        impl $crate::events::EventStore for $store {
            async fn insert_subscription(
                &self,
                s: &$crate::events::Subscription,
            ) -> Result<$crate::events::Registered, $crate::StoreError> {
                let r = sqlx::query(
                    "INSERT INTO event_subscriptions (subscription_id, client_id, callback_url, version, \
                     event_types, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7) \
                     ON CONFLICT (client_id) DO NOTHING",
                )
                .bind(&s.subscription_id)
                .bind(&s.client_id)
                .bind(&s.callback_url)
                .bind(&s.version)
                .bind($crate::events::join_types(&s.event_types))
                .bind(s.created_at)
                .bind(s.updated_at)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(if r.rows_affected() == 1 {
                    $crate::events::Registered::New
                } else {
                    $crate::events::Registered::AlreadyExists
                })
            }

            async fn subscriptions(
                &self,
                client_id: &str,
            ) -> Result<Vec<$crate::events::Subscription>, $crate::StoreError> {
                let rows: Vec<$row> = sqlx::query(
                    "SELECT subscription_id, client_id, callback_url, version, event_types, created_at, \
                     updated_at FROM event_subscriptions WHERE client_id=$1",
                )
                .bind(client_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(rows.iter().map(subscription_from_row).collect())
            }

            async fn update_subscription(
                &self,
                s: &$crate::events::Subscription,
            ) -> Result<bool, $crate::StoreError> {
                let r = sqlx::query(
                    "UPDATE event_subscriptions SET callback_url=$3, version=$4, event_types=$5, updated_at=$6 \
                     WHERE subscription_id=$1 AND client_id=$2",
                )
                .bind(&s.subscription_id)
                .bind(&s.client_id)
                .bind(&s.callback_url)
                .bind(&s.version)
                .bind($crate::events::join_types(&s.event_types))
                .bind(s.updated_at)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(r.rows_affected() == 1)
            }

            async fn delete_subscription(&self, client_id: &str, id: &str) -> Result<bool, $crate::StoreError> {
                let r = sqlx::query("DELETE FROM event_subscriptions WHERE subscription_id=$1 AND client_id=$2")
                    .bind(id)
                    .bind(client_id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_callback_url(
                &self,
                c: &$crate::events::CallbackUrl,
            ) -> Result<$crate::events::Registered, $crate::StoreError> {
                let r = sqlx::query(
                    "INSERT INTO callback_urls (callback_url_id, client_id, url, version, created_at, updated_at) \
                     VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (client_id) DO NOTHING",
                )
                .bind(&c.callback_url_id)
                .bind(&c.client_id)
                .bind(&c.url)
                .bind(&c.version)
                .bind(c.created_at)
                .bind(c.updated_at)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(if r.rows_affected() == 1 {
                    $crate::events::Registered::New
                } else {
                    $crate::events::Registered::AlreadyExists
                })
            }

            async fn callback_urls(
                &self,
                client_id: &str,
            ) -> Result<Vec<$crate::events::CallbackUrl>, $crate::StoreError> {
                let rows: Vec<$row> = sqlx::query(
                    "SELECT callback_url_id, client_id, url, version, created_at, updated_at \
                     FROM callback_urls WHERE client_id=$1",
                )
                .bind(client_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(rows.iter().map(callback_from_row).collect())
            }

            async fn update_callback_url(&self, c: &$crate::events::CallbackUrl) -> Result<bool, $crate::StoreError> {
                let r = sqlx::query(
                    "UPDATE callback_urls SET url=$3, version=$4, updated_at=$5 \
                     WHERE callback_url_id=$1 AND client_id=$2",
                )
                .bind(&c.callback_url_id)
                .bind(&c.client_id)
                .bind(&c.url)
                .bind(&c.version)
                .bind(c.updated_at)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(r.rows_affected() == 1)
            }

            async fn delete_callback_url(&self, client_id: &str, id: &str) -> Result<bool, $crate::StoreError> {
                let r = sqlx::query("DELETE FROM callback_urls WHERE callback_url_id=$1 AND client_id=$2")
                    .bind(id)
                    .bind(client_id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(r.rows_affected() == 1)
            }

            async fn poll_events(
                &self,
                client_id: &str,
                ack: &[String],
                errs: &[(String, String)],
                max: i64,
            ) -> Result<(Vec<$crate::events::EventRecord>, bool), $crate::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from)?;
                for jti in ack {
                    sqlx::query(
                        "UPDATE events SET state='acked', push_next_at=NULL WHERE jti=$1 AND client_id=$2 AND state='pending'",
                    )
                    .bind(jti)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::StoreError::from)?;
                }
                for (jti, err) in errs {
                    sqlx::query(
                        "UPDATE events SET state='nacked', ack_error=$3, push_next_at=NULL \
                         WHERE jti=$1 AND client_id=$2 AND state='pending'",
                    )
                    .bind(jti)
                    .bind(client_id)
                    .bind(err)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::StoreError::from)?;
                }
                let sql = format!(
                    "SELECT {} FROM events WHERE client_id=$1 AND state='pending' ORDER BY created_at, jti LIMIT $2",
                    $crate::events::EVENT_COLUMNS
                );
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(client_id)
                    .bind(max + 1)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err($crate::StoreError::from)?;
                tx.commit().await.map_err($crate::StoreError::from)?;
                let more = rows.len() as i64 > max;
                Ok((
                    rows.iter().take(max.max(0) as usize).map(event_from_row).collect(),
                    more,
                ))
            }

            async fn keep_set(&self, jti: &str, jws: &str) -> Result<String, $crate::StoreError> {
                use sqlx::Row;
                sqlx::query("UPDATE events SET set_jws=$2 WHERE jti=$1 AND set_jws IS NULL")
                    .bind(jti)
                    .bind(jws)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                let row: $row = sqlx::query("SELECT set_jws FROM events WHERE jti=$1")
                    .bind(jti)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(row.get::<Option<String>, _>(0).unwrap_or_else(|| jws.to_string()))
            }

            async fn claim_pushes(
                &self,
                now: i64,
                lease_until: i64,
                limit: i64,
            ) -> Result<Vec<$crate::events::EventRecord>, $crate::StoreError> {
                // The conditions are repeated outside the subquery: a
                // second node blocked on the same row re-checks them on the
                // updated row and skips it.
                let sql = format!(
                    "UPDATE events SET push_lease_until=$2, push_attempts=push_attempts+1 \
                     WHERE jti IN (SELECT jti FROM events WHERE push_next_at IS NOT NULL AND push_next_at <= $1 \
                                   AND state='pending' AND (push_lease_until IS NULL OR push_lease_until < $1) \
                                   ORDER BY push_next_at LIMIT $3) \
                       AND push_next_at IS NOT NULL AND push_next_at <= $1 AND state='pending' \
                       AND (push_lease_until IS NULL OR push_lease_until < $1) \
                     RETURNING {}",
                    $crate::events::EVENT_COLUMNS
                );
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(lease_until)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(rows.iter().map(event_from_row).collect())
            }

            async fn push_result(
                &self,
                jti: &str,
                outcome: &$crate::events::PushOutcome,
            ) -> Result<(), $crate::StoreError> {
                use $crate::events::PushOutcome::*;
                let q = match outcome {
                    Accepted => sqlx::query(
                        "UPDATE events SET state=CASE WHEN state='pending' THEN 'acked' ELSE state END, \
                         push_next_at=NULL, push_lease_until=NULL, push_error=NULL WHERE jti=$1",
                    )
                    .bind(jti),
                    Refused(e) => sqlx::query(
                        "UPDATE events SET push_next_at=NULL, push_lease_until=NULL, push_error=$2 WHERE jti=$1",
                    )
                    .bind(jti)
                    .bind(e),
                    Failed { error, next_at } => sqlx::query(
                        "UPDATE events SET push_next_at=$3, push_lease_until=NULL, push_error=$2 WHERE jti=$1",
                    )
                    .bind(jti)
                    .bind(error)
                    .bind(*next_at),
                };
                q.execute(&self.pool).await.map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn expire_consents(&self, now: i64, limit: i64) -> Result<u64, $crate::StoreError> {
                use sqlx::Row;
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from)?;
                let rows: Vec<$row> = sqlx::query(
                    "UPDATE consents SET expiry_notified=1 \
                     WHERE consent_id IN (SELECT consent_id FROM consents WHERE expiry_notified=0 \
                                          AND expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2) \
                       AND expiry_notified=0 \
                     RETURNING consent_id, client_id, kind, status, deleted, expires_at",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err($crate::StoreError::from)?;
                for r in &rows {
                    let status: String = r.get(3);
                    let deleted: i64 = r.get(4);
                    // Only a consent that was still giving access lapses.
                    if status != "Authorised" || deleted != 0 {
                        continue;
                    }
                    let kind: String = r.get(2);
                    let e = $crate::events::NewEvent {
                        jti: $crate::events::new_id(),
                        client_id: r.get(1),
                        event_type: $crate::events::CONSENT_REVOKED,
                        resource_type: $crate::events::consent_resource_type(&kind),
                        resource_id: r.get(0),
                        reason: Some("the consent reached its ExpirationDateTime".into()),
                        toe: r.get::<Option<i64>, _>(5).unwrap_or(now),
                        txn: $crate::events::new_id(),
                    };
                    $crate::enqueue_event!(&mut *tx, &e)?;
                }
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok(rows.len() as u64)
            }
        }
    };
}
