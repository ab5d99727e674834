//! Storage for consents (every kind), authorisation codes, PSU web
//! sessions and login throttling. State changes that must not half-happen
//! (authorise + bind accounts, revoke + kill tokens, code redemption) are
//! single statements or one transaction.

use async_trait::async_trait;
use serde_json::Value;

use crate::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRecord {
    pub consent_id: String,
    /// `account-access`, `domestic-payment`, `international-payment`,
    /// `funds-confirmation`.
    pub kind: String,
    pub client_id: String,
    /// The OB status (`AwaitingAuthorisation`, `Authorised`, …).
    pub status: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub status_updated_at: i64,
    pub expires_at: Option<i64>,
    pub psu_id: Option<String>,
    /// Accounts bound at authorisation.
    pub accounts: Vec<String>,
    /// The consent's request content (`Data`, `Risk`) as accepted.
    pub data: Value,
    pub authorised_at: Option<i64>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CodeRecord {
    pub code_hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub consent_id: String,
    pub psu_id: String,
    pub nonce: String,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub acr: String,
    pub auth_time: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Redeemed {
    /// First use: the code is now spent.
    Fresh(CodeRecord),
    /// Used before: the caller must revoke what it issued (AUTH-53).
    Replayed(CodeRecord),
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebSession {
    pub id_hash: String,
    /// `authorize` (one authorisation journey) or `dashboard`.
    pub kind: String,
    pub csrf: String,
    pub psu_id: Option<String>,
    pub auth_time: Option<i64>,
    pub payload: Value,
    pub expires_at: i64,
}

#[async_trait]
pub trait ConsentStore: Send + Sync {
    async fn insert_consent(&self, c: &ConsentRecord) -> Result<(), StoreError>;
    async fn consent(&self, consent_id: &str) -> Result<Option<ConsentRecord>, StoreError>;
    /// Compare-and-set on the status: succeeds only from one of `from`.
    /// `bind` sets the PSU and accounts in the same statement
    /// (authorisation).
    async fn transition_consent(
        &self,
        consent_id: &str,
        from: &[&str],
        to: &str,
        now: i64,
        bind: Option<(&str, &[String])>,
    ) -> Result<bool, StoreError>;
    /// Moves the consent to `to` (e.g. `Revoked`), or soft-deletes it when
    /// `to` is None, and revokes every token tied to it — one transaction.
    async fn end_consent(
        &self,
        consent_id: &str,
        to: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError>;
    async fn consents_for_psu(&self, psu_id: &str) -> Result<Vec<ConsentRecord>, StoreError>;

    async fn insert_code(&self, c: &CodeRecord) -> Result<(), StoreError>;
    async fn redeem_code(&self, code_hash: &str, now: i64) -> Result<Redeemed, StoreError>;
    async fn revoke_tokens_of_code(&self, code_hash: &str) -> Result<(), StoreError>;
    async fn revoke_tokens_of_consent(&self, consent_id: &str) -> Result<(), StoreError>;

    async fn insert_session(&self, s: &WebSession) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<WebSession>, StoreError>;
    async fn set_session_psu(
        &self,
        id_hash: &str,
        psu_id: &str,
        auth_time: i64,
    ) -> Result<(), StoreError>;
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;

    /// Failures counted in the current window for a throttle key.
    async fn login_failures(&self, key: &str, now: i64, window: i64) -> Result<i64, StoreError>;
    async fn record_login_failure(
        &self,
        key: &str,
        now: i64,
        window: i64,
    ) -> Result<i64, StoreError>;
    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError>;
}

pub(crate) const CONSENT_COLUMNS: &str = "consent_id, kind, client_id, status, created_at, \
    status_updated_at, expires_at, psu_id, accounts, data, authorised_at, deleted";

pub(crate) const CODE_COLUMNS: &str = "code_hash, client_id, redirect_uri, consent_id, psu_id, \
    nonce, scope, code_challenge, acr, auth_time, expires_at";

#[macro_export]
#[doc(hidden)]
macro_rules! impl_consent_store {
    ($store:ty, $row:ty, $db:ty) => {
        /// The consent INSERT, on a pool or inside a caller's transaction.
        pub(crate) async fn insert_consent_row<'c, E>(
            conn: E,
            c: &$crate::consent::ConsentRecord,
        ) -> Result<(), $crate::StoreError>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            let sql = format!(
                "INSERT INTO consents ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
                $crate::consent::CONSENT_COLUMNS
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&c.consent_id)
                .bind(&c.kind)
                .bind(&c.client_id)
                .bind(&c.status)
                .bind(c.created_at)
                .bind(c.status_updated_at)
                .bind(c.expires_at)
                .bind(&c.psu_id)
                .bind($crate::auth::json_list(&c.accounts))
                .bind(c.data.to_string())
                .bind(c.authorised_at)
                .bind(c.deleted as i64)
                .execute(conn)
                .await
                .map_err($crate::StoreError::from)?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl $crate::consent::ConsentStore for $store {
            async fn insert_consent(&self, c: &$crate::consent::ConsentRecord) -> Result<(), $crate::StoreError> {
                insert_consent_row(&self.pool, c).await
            }

            async fn consent(&self, consent_id: &str) -> Result<Option<$crate::consent::ConsentRecord>, $crate::StoreError> {
                let sql = format!("SELECT {} FROM consents WHERE consent_id=$1", $crate::consent::CONSENT_COLUMNS);
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(consent_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                row.map(|r| consent_from_row(&r)).transpose()
            }

            async fn transition_consent(
                &self,
                consent_id: &str,
                from: &[&str],
                to: &str,
                now: i64,
                bind: Option<(&str, &[String])>,
            ) -> Result<bool, $crate::StoreError> {
                // The source-state check and the write are one statement, so
                // two nodes cannot both move the consent.
                let (psu, accounts) = match bind {
                    Some((p, a)) => (Some(p.to_string()), Some($crate::auth::json_list(a))),
                    None => (None, None),
                };
                let placeholders: Vec<String> = (0..from.len().max(1)).map(|i| format!("${}", i + 6)).collect();
                let sql = format!(
                    "UPDATE consents SET status=$2, status_updated_at=$3, \
                       psu_id=COALESCE($4, psu_id), accounts=COALESCE($5, accounts), \
                       authorised_at=CASE WHEN $2='Authorised' THEN $3 ELSE authorised_at END \
                     WHERE consent_id=$1 AND deleted=0 AND status IN ({})",
                    placeholders.join(",")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(consent_id)
                    .bind(to)
                    .bind(now)
                    .bind(psu)
                    .bind(accounts);
                if from.is_empty() {
                    q = q.bind("");
                }
                for f in from {
                    q = q.bind(*f);
                }
                let r = q
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(r.rows_affected() == 1)
            }

            async fn end_consent(&self, consent_id: &str, to: Option<&str>, now: i64) -> Result<bool, $crate::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from)?;
                let r = match to {
                    Some(status) => sqlx::query(
                        "UPDATE consents SET status=$2, status_updated_at=$3 WHERE consent_id=$1 AND deleted=0",
                    )
                    .bind(consent_id)
                    .bind(status)
                    .bind(now)
                    .execute(&mut *tx)
                    .await,
                    None => sqlx::query("UPDATE consents SET deleted=1, status_updated_at=$2 WHERE consent_id=$1 AND deleted=0")
                        .bind(consent_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await,
                }
                .map_err($crate::StoreError::from)?;
                sqlx::query("UPDATE tokens SET revoked=1 WHERE consent_id=$1")
                    .bind(consent_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::StoreError::from)?;
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok(r.rows_affected() == 1)
            }

            async fn consents_for_psu(&self, psu_id: &str) -> Result<Vec<$crate::consent::ConsentRecord>, $crate::StoreError> {
                let sql = format!(
                    "SELECT {} FROM consents WHERE psu_id=$1 AND deleted=0 ORDER BY created_at DESC, consent_id",
                    $crate::consent::CONSENT_COLUMNS
                );
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(psu_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                rows.iter().map(consent_from_row).collect()
            }

            async fn insert_code(&self, c: &$crate::consent::CodeRecord) -> Result<(), $crate::StoreError> {
                let sql = format!(
                    "INSERT INTO auth_codes ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                    $crate::consent::CODE_COLUMNS
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&c.code_hash)
                    .bind(&c.client_id)
                    .bind(&c.redirect_uri)
                    .bind(&c.consent_id)
                    .bind(&c.psu_id)
                    .bind(&c.nonce)
                    .bind(&c.scope)
                    .bind(&c.code_challenge)
                    .bind(&c.acr)
                    .bind(c.auth_time)
                    .bind(c.expires_at)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn redeem_code(&self, code_hash: &str, now: i64) -> Result<$crate::consent::Redeemed, $crate::StoreError> {
                // Spending the code is one conditional UPDATE: two nodes
                // redeeming the same code at once cannot both win.
                let spent = sqlx::query("UPDATE auth_codes SET used_at=$2 WHERE code_hash=$1 AND used_at IS NULL")
                    .bind(code_hash)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?
                    .rows_affected()
                    == 1;
                let sql = format!("SELECT {} FROM auth_codes WHERE code_hash=$1", $crate::consent::CODE_COLUMNS);
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(code_hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                let Some(r) = row else { return Ok($crate::consent::Redeemed::Unknown) };
                use sqlx::Row;
                let rec = $crate::consent::CodeRecord {
                    code_hash: r.get(0),
                    client_id: r.get(1),
                    redirect_uri: r.get(2),
                    consent_id: r.get(3),
                    psu_id: r.get(4),
                    nonce: r.get(5),
                    scope: r.get(6),
                    code_challenge: r.get(7),
                    acr: r.get(8),
                    auth_time: r.get(9),
                    expires_at: r.get(10),
                };
                Ok(if spent {
                    $crate::consent::Redeemed::Fresh(rec)
                } else {
                    $crate::consent::Redeemed::Replayed(rec)
                })
            }

            async fn revoke_tokens_of_code(&self, code_hash: &str) -> Result<(), $crate::StoreError> {
                sqlx::query("UPDATE tokens SET revoked=1 WHERE code_hash=$1")
                    .bind(code_hash)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn revoke_tokens_of_consent(&self, consent_id: &str) -> Result<(), $crate::StoreError> {
                sqlx::query("UPDATE tokens SET revoked=1 WHERE consent_id=$1")
                    .bind(consent_id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn insert_session(&self, s: &$crate::consent::WebSession) -> Result<(), $crate::StoreError> {
                sqlx::query(
                    "INSERT INTO web_sessions (id_hash, kind, csrf, psu_id, auth_time, payload, expires_at) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7)",
                )
                .bind(&s.id_hash)
                .bind(&s.kind)
                .bind(&s.csrf)
                .bind(&s.psu_id)
                .bind(s.auth_time)
                .bind(s.payload.to_string())
                .bind(s.expires_at)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn session(&self, id_hash: &str, now: i64) -> Result<Option<$crate::consent::WebSession>, $crate::StoreError> {
                let row: Option<$row> = sqlx::query(
                    "SELECT id_hash, kind, csrf, psu_id, auth_time, payload, expires_at FROM web_sessions \
                     WHERE id_hash=$1 AND expires_at > $2",
                )
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                use sqlx::Row;
                row.map(|r| {
                    Ok($crate::consent::WebSession {
                        id_hash: r.get(0),
                        kind: r.get(1),
                        csrf: r.get(2),
                        psu_id: r.get(3),
                        auth_time: r.get(4),
                        payload: $crate::auth::parse_json(r.get::<&str, _>(5))?,
                        expires_at: r.get(6),
                    })
                })
                .transpose()
            }

            async fn set_session_psu(&self, id_hash: &str, psu_id: &str, auth_time: i64) -> Result<(), $crate::StoreError> {
                sqlx::query("UPDATE web_sessions SET psu_id=$2, auth_time=$3 WHERE id_hash=$1")
                    .bind(id_hash)
                    .bind(psu_id)
                    .bind(auth_time)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn delete_session(&self, id_hash: &str) -> Result<(), $crate::StoreError> {
                sqlx::query("DELETE FROM web_sessions WHERE id_hash=$1")
                    .bind(id_hash)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn login_failures(&self, key: &str, now: i64, window: i64) -> Result<i64, $crate::StoreError> {
                let row: Option<$row> = sqlx::query("SELECT failures, window_start FROM login_failures WHERE throttle_key=$1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                use sqlx::Row;
                Ok(match row {
                    Some(r) if r.get::<i64, _>(1) + window > now => r.get(0),
                    _ => 0,
                })
            }

            async fn record_login_failure(&self, key: &str, now: i64, window: i64) -> Result<i64, $crate::StoreError> {
                // One upsert: the count is shared by every node.
                let row: $row = sqlx::query(
                    "INSERT INTO login_failures (throttle_key, failures, window_start) VALUES ($1, 1, $2) \
                     ON CONFLICT (throttle_key) DO UPDATE SET \
                       failures = CASE WHEN login_failures.window_start + $3 > $2 THEN login_failures.failures + 1 ELSE 1 END, \
                       window_start = CASE WHEN login_failures.window_start + $3 > $2 THEN login_failures.window_start ELSE $2 END \
                     RETURNING failures",
                )
                .bind(key)
                .bind(now)
                .bind(window)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                use sqlx::Row;
                Ok(row.get(0))
            }

            async fn clear_login_failures(&self, key: &str) -> Result<(), $crate::StoreError> {
                sqlx::query("DELETE FROM login_failures WHERE throttle_key=$1")
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
            }
        }

        fn consent_from_row(r: &$row) -> Result<$crate::consent::ConsentRecord, $crate::StoreError> {
            use sqlx::Row;
            Ok($crate::consent::ConsentRecord {
                consent_id: r.get(0),
                kind: r.get(1),
                client_id: r.get(2),
                status: r.get(3),
                created_at: r.get(4),
                status_updated_at: r.get(5),
                expires_at: r.get(6),
                psu_id: r.get(7),
                accounts: $crate::auth::parse_list(r.get::<&str, _>(8))?,
                data: $crate::auth::parse_json(r.get::<&str, _>(9))?,
                authorised_at: r.get(10),
                deleted: r.get::<i64, _>(11) != 0,
            })
        }
    };
}
