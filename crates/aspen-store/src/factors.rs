//! PSU second factors (issue 14): TOTP authenticators, several per PSU.

use async_trait::async_trait;

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    pub factor_id: String,
    pub psu_id: String,
    /// `totp`.
    pub kind: String,
    /// What the PSU called it ("Phone").
    pub label: String,
    /// The shared secret (base32 for TOTP).
    pub secret: String,
    pub created_at: i64,
}

#[async_trait]
pub trait FactorStore: Send + Sync {
    /// Adds a factor unless its id is taken (then nothing changes).
    async fn add_factor(&self, f: &Factor) -> Result<(), StoreError>;
    async fn factors(&self, psu_id: &str) -> Result<Vec<Factor>, StoreError>;
    async fn remove_factor(&self, psu_id: &str, factor_id: &str) -> Result<bool, StoreError>;
    /// Accepts a TOTP time step once: true only if it is later than every
    /// step this factor accepted before (a code cannot be replayed, also
    /// not on another node).
    async fn use_totp_step(&self, factor_id: &str, step: i64) -> Result<bool, StoreError>;
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
                    "INSERT INTO psu_factors (factor_id, psu_id, kind, label, secret, created_at) \
                     VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (factor_id) DO NOTHING",
                )
                .bind(&f.factor_id)
                .bind(&f.psu_id)
                .bind(&f.kind)
                .bind(&f.label)
                .bind(&f.secret)
                .bind(f.created_at)
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
                    "SELECT factor_id, psu_id, kind, label, secret, created_at FROM psu_factors \
                     WHERE psu_id=$1 ORDER BY created_at, factor_id",
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
                    })
                    .collect())
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
