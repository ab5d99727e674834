//! SQLite's purges of tables with no expiry index: spent JWT ids
//! ([`crate::jti`]) and tokens. An index on the expiry takes a page of its
//! own on every insert, so one more WAL frame in every commit that writes
//! a row (issue 15); these purges walk the table's key in order instead, a
//! range a step, and delete what has expired in the range. A step's own
//! condition keeps every live row, so the position is only a hint; each
//! node keeps its own.

use std::sync::Mutex;

use sqlx::Sqlite;

use crate::StoreError;

/// Keys one purge step visits, per row of the purge's batch: a step looks
/// at `batch * VISITS_PER_BATCH` keys in order and deletes the expired
/// rows among them.
const VISITS_PER_BATCH: i64 = 8;

/// One table's walk: the statements of a step, over its key `k`.
pub(crate) struct Walk {
    /// The key `$2` keys after `$1`, where a step ends.
    pub(crate) end: &'static str,
    /// Expired rows after `$1` up to `$2`, as the table's rule compares
    /// their expiry with the cutoff `$3`.
    pub(crate) delete_range: &'static str,
    /// Expired rows after `$1` to the last, against the cutoff `$2`.
    pub(crate) delete_rest: &'static str,
}

/// Where this node's walk over one table resumes. `K` is the table's key.
pub(crate) struct Sweep<K> {
    walk: &'static Walk,
    /// Below every key the table holds: a walk from it starts at the first.
    start: K,
    next: Mutex<K>,
}

impl<K> Sweep<K>
where
    K: Clone + Send + Sync + Unpin + 'static,
    K: for<'q> sqlx::Encode<'q, Sqlite> + for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    pub(crate) fn new(walk: &'static Walk, start: K) -> Self {
        Sweep {
            walk,
            next: Mutex::new(start.clone()),
            start,
        }
    }

    /// One step: up to `batch * VISITS_PER_BATCH` keys after the last
    /// step's, their expired rows deleted (as the walk's statements say,
    /// against `cutoff`). After the last key the next step starts again
    /// from the first.
    pub(crate) async fn step(
        &self,
        pool: &sqlx::SqlitePool,
        cutoff: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let from = self.position();
        let visit = batch.max(1).saturating_mul(VISITS_PER_BATCH);
        let end: Option<K> = sqlx::query_scalar(self.walk.end)
            .bind(from.clone())
            .bind(visit - 1)
            .fetch_optional(pool)
            .await?;
        let deleted = match &end {
            Some(end) => {
                sqlx::query(self.walk.delete_range)
                    .bind(from)
                    .bind(end.clone())
                    .bind(cutoff)
                    .execute(pool)
                    .await?
            }
            None => {
                sqlx::query(self.walk.delete_rest)
                    .bind(from)
                    .bind(cutoff)
                    .execute(pool)
                    .await?
            }
        }
        .rows_affected();
        *self.next.lock().unwrap_or_else(|p| p.into_inner()) =
            end.unwrap_or_else(|| self.start.clone());
        Ok(deleted)
    }

    fn position(&self) -> K {
        self.next.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    /// Tokens have no expiry index on SQLite (migration 18): the purge
    /// walks their ids, a range a step, from below the tokens issued
    /// before ids were carried (negative ids). A step deletes only tokens
    /// a day past expiry, only in its range; after the last id the walk
    /// starts again from the first, so tokens that expire later are found
    /// on the next lap.
    #[tokio::test]
    async fn expired_tokens_are_purged_by_walking_their_ids() {
        const DAY: i64 = 86_400;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}/aspen.db?mode=rwc", dir.path().display());
        let store = crate::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tokens'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(!indexes.iter().any(|i| i == "tokens_expiry"), "{indexes:?}");

        let now = chrono::Utc::now().timestamp();
        let issue = |id: i64, expires_at: i64| {
            let pool = pool.clone();
            async move {
                sqlx::query(
                    "INSERT INTO tokens (id, token_hash, kind, client_id, scope, grant_type, \
                     issued_at, expires_at) VALUES ($1, $2, 'access', 'c1', 'accounts', \
                     'client_credentials', $3, $4)",
                )
                .bind(id)
                .bind(format!("h{id}"))
                .bind(expires_at - 3600)
                .bind(expires_at)
                .execute(&pool)
                .await
                .unwrap();
            }
        };
        // Expired a day ago and live, alternating, 40 of each; ten of the
        // expired ones from before ids were carried.
        for i in 0..40 {
            let id = if i < 10 { -(i + 1) } else { i * 2 };
            issue(id, now - DAY - 1).await;
            issue(id + 1000, now + 600).await;
        }
        // Expired, but not yet a day ago: kept.
        issue(5000, now - 10).await;
        let count = |sql: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        let purgeable =
            "SELECT COUNT(*) FROM tokens WHERE expires_at <= strftime('%s', 'now') - 86400";
        // A batch of 2 visits 16 ids a step (the other tables are empty).
        let mut steps = 0;
        while count(purgeable).await > 0 {
            let before = count(purgeable).await;
            let deleted = store.purge_expired(now, 2).await.unwrap() as i64;
            assert!(deleted <= 16, "a step deleted {deleted}");
            assert_eq!(count(purgeable).await, before - deleted);
            steps += 1;
            assert!(steps <= 6, "81 ids take six steps of 16");
        }
        assert_eq!(count("SELECT COUNT(*) FROM tokens").await, 41);
        // Tokens that pass the cutoff later are found on the next lap.
        for i in 0..10 {
            issue(-(100 + i), now - DAY - 1).await;
        }
        for _ in 0..6 {
            store.purge_expired(now, 2).await.unwrap();
        }
        assert_eq!(count(purgeable).await, 0);
        assert_eq!(count("SELECT COUNT(*) FROM tokens").await, 41);
        // The live ones, and the one expired less than a day ago.
        assert_eq!(
            count("SELECT COUNT(*) FROM tokens WHERE expires_at > strftime('%s', 'now')").await,
            40
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM tokens WHERE id = 5000").await,
            1
        );
    }
}
