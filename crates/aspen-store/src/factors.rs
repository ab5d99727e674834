//! PSU factors beyond the password (issue 14): TOTP authenticators and
//! passkeys, several per PSU.

use async_trait::async_trait;

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    pub factor_id: String,
    pub psu_id: String,
    /// `totp` or `passkey`.
    pub kind: String,
    /// What the PSU called it ("Phone").
    pub label: String,
    /// TOTP: the sealed shared secret. Passkey: the credential's COSE
    /// public key (base64url), nothing secret.
    pub secret: String,
    pub created_at: i64,
    /// Passkey: the WebAuthn credential id (base64url), unique.
    pub credential_id: Option<String>,
}

#[async_trait]
pub trait FactorStore: Send + Sync {
    /// Adds a factor unless its id is taken (then nothing changes); a
    /// credential id enrolled before is a `Conflict`.
    async fn add_factor(&self, f: &Factor) -> Result<(), StoreError>;
    async fn factors(&self, psu_id: &str) -> Result<Vec<Factor>, StoreError>;
    async fn remove_factor(&self, psu_id: &str, factor_id: &str) -> Result<bool, StoreError>;
    /// Accepts a TOTP time step once: true only if it is later than every
    /// step this factor accepted before (a code cannot be replayed, also
    /// not on another node).
    async fn use_totp_step(&self, factor_id: &str, step: i64) -> Result<bool, StoreError>;
    /// The passkey with this credential id, whoever owns it.
    async fn factor_by_credential(&self, credential_id: &str)
    -> Result<Option<Factor>, StoreError>;
    /// Records a passkey's signature counter: true when it moved forward,
    /// or when the authenticator keeps none (0 now and before). A counter
    /// that does not move forward means a cloned authenticator (WebAuthn
    /// §7.2 step 21) — or the same assertion twice, on any node.
    async fn use_passkey_counter(&self, factor_id: &str, counter: i64) -> Result<bool, StoreError>;
}

#[macro_export]
#[doc(hidden)]
macro_rules! impl_factor_store {
    ($store:ty, $row:ty) => {
        #[async_trait::async_trait]
        impl $crate::factors::FactorStore for $store {
            async fn add_factor(
                &self,
                f: &$crate::factors::Factor,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query(
                    "INSERT INTO psu_factors (factor_id, psu_id, kind, label, secret, created_at, credential_id) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (factor_id) DO NOTHING",
                )
                .bind(&f.factor_id)
                .bind(&f.psu_id)
                .bind(&f.kind)
                .bind(&f.label)
                .bind(&f.secret)
                .bind(f.created_at)
                .bind(&f.credential_id)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(())
            }

            async fn factors(
                &self,
                psu_id: &str,
            ) -> Result<Vec<$crate::factors::Factor>, $crate::StoreError> {
                use sqlx::Row;
                let rows: Vec<$row> = sqlx::query(
                    "SELECT factor_id, psu_id, kind, label, secret, created_at, credential_id \
                     FROM psu_factors WHERE psu_id=$1 ORDER BY created_at, factor_id",
                )
                .bind(psu_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(rows
                    .iter()
                    .map(|r| $crate::factors::Factor {
                        factor_id: r.get(0),
                        psu_id: r.get(1),
                        kind: r.get(2),
                        label: r.get(3),
                        secret: r.get(4),
                        created_at: r.get(5),
                        credential_id: r.get(6),
                    })
                    .collect())
            }

            async fn factor_by_credential(
                &self,
                credential_id: &str,
            ) -> Result<Option<$crate::factors::Factor>, $crate::StoreError> {
                use sqlx::Row;
                let row: Option<$row> = sqlx::query(
                    "SELECT factor_id, psu_id, kind, label, secret, created_at, credential_id \
                     FROM psu_factors WHERE credential_id=$1",
                )
                .bind(credential_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(row.map(|r| $crate::factors::Factor {
                    factor_id: r.get(0),
                    psu_id: r.get(1),
                    kind: r.get(2),
                    label: r.get(3),
                    secret: r.get(4),
                    created_at: r.get(5),
                    credential_id: r.get(6),
                }))
            }

            async fn use_passkey_counter(
                &self,
                factor_id: &str,
                counter: i64,
            ) -> Result<bool, $crate::StoreError> {
                let r = sqlx::query(
                    "UPDATE psu_factors SET last_step=$2 WHERE factor_id=$1 AND kind='passkey' \
                     AND (last_step < $2 OR ($2 = 0 AND last_step = 0))",
                )
                .bind(factor_id)
                .bind(counter)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(r.rows_affected() == 1)
            }

            async fn remove_factor(
                &self,
                psu_id: &str,
                factor_id: &str,
            ) -> Result<bool, $crate::StoreError> {
                let r = sqlx::query("DELETE FROM psu_factors WHERE factor_id=$1 AND psu_id=$2")
                    .bind(factor_id)
                    .bind(psu_id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from)?;
                Ok(r.rows_affected() == 1)
            }

            async fn use_totp_step(
                &self,
                factor_id: &str,
                step: i64,
            ) -> Result<bool, $crate::StoreError> {
                let r = sqlx::query(
                    "UPDATE psu_factors SET last_step=$2 WHERE factor_id=$1 AND last_step < $2",
                )
                .bind(factor_id)
                .bind(step)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from)?;
                Ok(r.rows_affected() == 1)
            }
        }
    };
}
