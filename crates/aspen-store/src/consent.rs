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
    /// Authentication methods verified at the login (`pwd`, `otp`, …).
    pub amr: Vec<String>,
}

/// How a login throttle locks a key out (per PSU or per address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRule {
    /// Attempts allowed per window.
    pub limit: i64,
    /// Window length, seconds.
    pub window: i64,
    /// First lockout, seconds; each further lockout doubles it (up to 64×)
    /// until a success clears the key or a day passes without attempts.
    pub lock_secs: i64,
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
    /// The code and whether it has been spent.
    async fn code(&self, code_hash: &str) -> Result<Option<(CodeRecord, bool)>, StoreError>;
    /// Spends the code for its own client and writes the tokens it buys in
    /// one transaction, retiring the consent's earlier tokens (COMMON-58).
    /// The spend is a compare-and-set: false, with nothing written, when
    /// the code was spent (or expired) first — on any node.
    async fn spend_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: i64,
        tokens: &[crate::auth::TokenRecord],
    ) -> Result<bool, StoreError>;
    async fn revoke_tokens_of_code(&self, code_hash: &str) -> Result<(), StoreError>;
    /// Spends a refresh token of `client_id` bound to `cert_thumbprint` and
    /// writes its replacements in one transaction. The spend is a
    /// compare-and-set on `revoked`: of any number of concurrent refreshes,
    /// on any nodes, one wins; false, with nothing written, for the rest.
    async fn rotate_refresh_token(
        &self,
        key: &crate::auth::TokenKey,
        client_id: &str,
        cert_thumbprint: &str,
        now: i64,
        tokens: &[crate::auth::TokenRecord],
    ) -> Result<bool, StoreError>;
    /// Deletes up to `batch` rows of each kind of expired short-lived state
    /// (web sessions, authorisation codes a day past expiry, used JWT ids,
    /// tokens a day past expiry, idempotency keys older than their 24-hour
    /// life, idle login throttles); returns how many went. Safe to run on
    /// every node at once.
    async fn purge_expired(&self, now: i64, batch: i64) -> Result<u64, StoreError>;

    async fn insert_session(&self, s: &WebSession) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<WebSession>, StoreError>;
    async fn set_session_psu(
        &self,
        id_hash: &str,
        psu_id: &str,
        auth_time: i64,
    ) -> Result<(), StoreError>;
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;

    /// Reserves one login attempt for a throttle key before any password
    /// is checked. One statement, so N concurrent attempts on any number of
    /// nodes reserve at most `rule.limit`; false when the key is locked out
    /// or its window is full.
    async fn reserve_login_attempt(
        &self,
        key: &str,
        now: i64,
        rule: ThrottleRule,
    ) -> Result<bool, StoreError>;
    /// A reserved attempt failed: once the window's attempts reach the
    /// limit the key is locked out, for longer each time.
    async fn fail_login_attempt(
        &self,
        key: &str,
        now: i64,
        rule: ThrottleRule,
    ) -> Result<(), StoreError>;
    /// Gives back a reserved attempt that succeeded (per-address keys: a
    /// success does not wipe the address's failures).
    async fn release_login_attempt(&self, key: &str) -> Result<(), StoreError>;
    /// Forgets the key (a PSU's successful login).
    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError>;
}

pub(crate) const CONSENT_COLUMNS: &str = "consent_id, kind, client_id, status, created_at, \
    status_updated_at, expires_at, psu_id, accounts, data, authorised_at, deleted";

/// A consent from [`CONSENT_COLUMNS`].
pub(crate) fn consent_from_row(r: &impl crate::cols::Cols) -> Result<ConsentRecord, StoreError> {
    Ok(ConsentRecord {
        consent_id: r.col(0)?,
        kind: r.col(1)?,
        client_id: r.col(2)?,
        status: r.col(3)?,
        created_at: r.col(4)?,
        status_updated_at: r.col(5)?,
        expires_at: r.col(6)?,
        psu_id: r.col(7)?,
        accounts: crate::auth::parse_list(r.col_str(8)?)?,
        data: crate::auth::parse_json(r.col_str(9)?)?,
        authorised_at: r.col(10)?,
        deleted: r.col::<i64>(11)? != 0,
    })
}

pub(crate) const CODE_COLUMNS: &str = "code_hash, client_id, redirect_uri, consent_id, psu_id, \
    nonce, scope, code_challenge, acr, auth_time, expires_at, amr";

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

        /// A token INSERT inside a caller's transaction.
        async fn insert_token_in<'c, E>(
            conn: E,
            t: &$crate::auth::TokenRecord,
        ) -> Result<(), $crate::StoreError>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            $crate::bind_token!(sqlx::query($crate::auth::insert_token_sql()), t)
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
                if let Some(d) = self.direct()
                    && let Some(c) = d.read_opt(&sql, &[&consent_id], |r| $crate::consent::consent_from_row(r))?
                {
                    return Ok(c);
                }
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(consent_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                row.map(|r| $crate::consent::consent_from_row(&r)).transpose()
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
                let ended = match to {
                    Some(status) => {
                        use sqlx::Row;
                        let row: Option<$row> = sqlx::query(
                            "UPDATE consents SET status=$2, status_updated_at=$3 \
                             WHERE consent_id=$1 AND deleted=0 AND status<>$2 RETURNING client_id, kind",
                        )
                        .bind(consent_id)
                        .bind(status)
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err($crate::StoreError::from)?;
                        // Revoked by the PSU or the bank (not by the TPP,
                        // which deletes): the TPP hears of it (EVT-12).
                        if let (Some(r), "Revoked") = (&row, status) {
                            let kind: String = r.get(1);
                            let e = $crate::events::NewEvent {
                                jti: $crate::events::new_id(),
                                client_id: r.get(0),
                                event_type: $crate::events::CONSENT_REVOKED,
                                resource_type: $crate::events::consent_resource_type(&kind),
                                resource_id: consent_id.to_string(),
                                reason: None,
                                toe: now,
                                txn: $crate::events::new_id(),
                            };
                            $crate::enqueue_event!(&mut *tx, &e)?;
                        }
                        row.is_some()
                    }
                    None => {
                        sqlx::query("UPDATE consents SET deleted=1, status_updated_at=$2 WHERE consent_id=$1 AND deleted=0")
                            .bind(consent_id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::StoreError::from)?
                            .rows_affected()
                            == 1
                    }
                };
                sqlx::query("UPDATE tokens SET revoked=1 WHERE consent_id=$1")
                    .bind(consent_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::StoreError::from)?;
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok(ended)
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
                rows.iter().map($crate::consent::consent_from_row).collect()
            }

            async fn insert_code(&self, c: &$crate::consent::CodeRecord) -> Result<(), $crate::StoreError> {
                let sql = format!(
                    "INSERT INTO auth_codes ({}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
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
                    .bind(c.amr.join(" "))
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn code(&self, code_hash: &str) -> Result<Option<($crate::consent::CodeRecord, bool)>, $crate::StoreError> {
                let sql = format!("SELECT {}, used_at FROM auth_codes WHERE code_hash=$1", $crate::consent::CODE_COLUMNS);
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(code_hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                use sqlx::Row;
                Ok(row.map(|r| {
                    (
                        $crate::consent::CodeRecord {
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
                            amr: r
                                .get::<&str, _>(11)
                                .split_whitespace()
                                .map(str::to_string)
                                .collect(),
                        },
                        r.get::<Option<i64>, _>(12).is_some(),
                    )
                }))
            }

            async fn spend_code(
                &self,
                code_hash: &str,
                client_id: &str,
                now: i64,
                tokens: &[$crate::auth::TokenRecord],
            ) -> Result<bool, $crate::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from)?;
                // The compare-and-set takes the code's row lock: a replay on
                // another node waits here until this transaction has
                // committed its tokens, so its revocation then sees them.
                let spent = sqlx::query(
                    "UPDATE auth_codes SET used_at=$2 WHERE code_hash=$1 AND client_id=$3 \
                     AND used_at IS NULL AND expires_at > $2",
                )
                .bind(code_hash)
                .bind(now)
                .bind(client_id)
                .execute(&mut *tx)
                .await
                .map_err($crate::StoreError::from)?
                .rows_affected()
                    == 1;
                if !spent {
                    return Ok(false);
                }
                let consents: std::collections::BTreeSet<&str> =
                    tokens.iter().filter_map(|t| t.consent_id.as_deref()).collect();
                for c in consents {
                    sqlx::query("UPDATE tokens SET revoked=1 WHERE consent_id=$1")
                        .bind(c)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::StoreError::from)?;
                }
                for t in tokens {
                    insert_token_in(&mut *tx, t).await?;
                }
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok(true)
            }

            async fn rotate_refresh_token(
                &self,
                key: &$crate::auth::TokenKey,
                client_id: &str,
                cert_thumbprint: &str,
                now: i64,
                tokens: &[$crate::auth::TokenRecord],
            ) -> Result<bool, $crate::StoreError> {
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from)?;
                let sql = format!(
                    "UPDATE tokens AS t SET revoked=1 WHERE {} AND client_id=$3 \
                     AND cert_thumbprint=$4 AND kind='refresh' AND revoked=0 AND expires_at > $5",
                    key.cond(1, 2)
                );
                let spent = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(key.id_param())
                .bind(&key.hash)
                .bind(client_id)
                .bind(cert_thumbprint)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::StoreError::from)?
                .rows_affected()
                    == 1;
                if !spent {
                    return Ok(false);
                }
                for t in tokens {
                    insert_token_in(&mut *tx, t).await?;
                }
                tx.commit().await.map_err($crate::StoreError::from)?;
                Ok(true)
            }

            async fn purge_expired(&self, now: i64, batch: i64) -> Result<u64, $crate::StoreError> {
                const DAY: i64 = 86_400;
                let steps: [(&str, i64); 6] = [
                    ("DELETE FROM web_sessions WHERE id_hash IN \
                      (SELECT id_hash FROM web_sessions WHERE expires_at <= $1 LIMIT $2)", now),
                    // Spent codes stay a day past expiry so a late replay
                    // still revokes what the code bought (AUTH-53).
                    ("DELETE FROM auth_codes WHERE code_hash IN \
                      (SELECT code_hash FROM auth_codes WHERE expires_at <= $1 LIMIT $2)", now - DAY),
                    // A revoked token answers as an unknown one would: it
                    // goes a day after issue, whatever its expiry (a rotated
                    // refresh token of a consent with no end date has none).
                    ("DELETE FROM tokens WHERE id IN \
                      (SELECT id FROM tokens WHERE revoked = 1 AND issued_at <= $1 LIMIT $2)", now - DAY),
                    // COMMON-25: a key lives 24 hours (created_at in ms).
                    ("DELETE FROM idempotency_keys WHERE (client_id, endpoint, idem_key) IN \
                      (SELECT client_id, endpoint, idem_key FROM idempotency_keys WHERE created_at <= $1 LIMIT $2)",
                     (now - DAY) * 1000),
                    ("DELETE FROM login_failures WHERE throttle_key IN \
                      (SELECT throttle_key FROM login_failures WHERE window_start <= $1 AND locked_until <= $1 + 86400 LIMIT $2)",
                     now - DAY),
                    // Events are kept 30 days whatever their state, so a jti
                    // is never reused within that time (EVT-33).
                    ("DELETE FROM events WHERE jti IN \
                      (SELECT jti FROM events WHERE created_at <= $1 LIMIT $2)",
                     (now - $crate::events::RETENTION_DAYS * DAY) * 1000),
                ];
                // Spent JWT ids: each backend's own way (`crate::jti`).
                let mut total = self.purge_spent_ids(now, batch).await?;
                // Tokens a day past expiry: each backend's own way too.
                total += self.purge_expired_tokens(now - DAY, batch).await?;
                for (sql, cutoff) in steps {
                    total += sqlx::query(sql)
                        .bind(cutoff)
                        .bind(batch)
                        .execute(&self.pool)
                        .await
                        .map_err($crate::StoreError::from)?
                        .rows_affected();
                }
                Ok(total)
            }

            async fn revoke_tokens_of_code(&self, code_hash: &str) -> Result<(), $crate::StoreError> {
                sqlx::query("UPDATE tokens SET revoked=1 WHERE code_hash=$1")
                    .bind(code_hash)
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

            async fn reserve_login_attempt(
                &self,
                key: &str,
                now: i64,
                rule: $crate::consent::ThrottleRule,
            ) -> Result<bool, $crate::StoreError> {
                // A lapsed lockout or window starts a new window; a day
                // without attempts also forgets earlier lockouts. The WHERE
                // refuses while locked or full, so the reservation and the
                // check are one statement on every backend.
                let row: Option<$row> = sqlx::query(
                    "INSERT INTO login_failures (throttle_key, failures, window_start, locked_until, lockouts) \
                     VALUES ($1, 1, $2, 0, 0) \
                     ON CONFLICT (throttle_key) DO UPDATE SET \
                       failures = CASE WHEN login_failures.locked_until > 0 OR login_failures.window_start + $3 <= $2 \
                                  THEN 1 ELSE login_failures.failures + 1 END, \
                       window_start = CASE WHEN login_failures.locked_until > 0 OR login_failures.window_start + $3 <= $2 \
                                  THEN $2 ELSE login_failures.window_start END, \
                       lockouts = CASE WHEN login_failures.window_start + 86400 <= $2 \
                                  THEN 0 ELSE login_failures.lockouts END, \
                       locked_until = 0 \
                     WHERE login_failures.locked_until <= $2 \
                       AND (login_failures.locked_until > 0 OR login_failures.window_start + $3 <= $2 \
                            OR login_failures.failures < $4) \
                     RETURNING failures",
                )
                .bind(key)
                .bind(now)
                .bind(rule.window)
                .bind(rule.limit)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(row.is_some())
            }

            async fn fail_login_attempt(
                &self,
                key: &str,
                now: i64,
                rule: $crate::consent::ThrottleRule,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query(
                    "UPDATE login_failures SET \
                       locked_until = CASE WHEN failures >= $3 \
                         THEN $2 + $4 * (CASE WHEN lockouts >= 6 THEN 64 ELSE (1 << CAST(lockouts AS INTEGER)) END) \
                         ELSE locked_until END, \
                       lockouts = CASE WHEN failures >= $3 THEN lockouts + 1 ELSE lockouts END \
                     WHERE throttle_key = $1",
                )
                .bind(key)
                .bind(now)
                .bind(rule.limit)
                .bind(rule.lock_secs)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn release_login_attempt(&self, key: &str) -> Result<(), $crate::StoreError> {
                sqlx::query("UPDATE login_failures SET failures = failures - 1 WHERE throttle_key = $1 AND failures > 0")
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(())
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
    };
}
