//! Storage: the traits every component uses, and their SQLite (embedded
//! default) and PostgreSQL implementations. The SQL is shared — both
//! backends take `$n` parameters, `ON CONFLICT` and row-value comparisons —
//! and is stamped out once per backend by macros, so the two cannot drift.
//! Times are BIGINT unix milliseconds (or seconds where named so), money
//! BIGINT minor units; both behave identically on both backends.

pub mod auth;
mod cols;
pub mod consent;
mod direct;
pub mod events;
pub mod factors;
mod jti;
mod migrate;
pub mod payments;
mod pg_batch;
mod pg_pool;
mod sweep;
mod world;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use auth::AuthStore;
pub use consent::ConsentStore;
pub use direct::one_snapshot;
pub use events::EventStore;
pub use factors::FactorStore;
pub use payments::PaymentStore;
pub use world::{SeedState, TxCursor, TxFilter, TxPageSummary, WorldStore};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

/// Everything aspen keeps, behind one object-safe handle.
#[async_trait]
pub trait Store:
    AuthStore + ConsentStore + EventStore + FactorStore + PaymentStore + WorldStore + Send + Sync
{
    fn backend_name(&self) -> &'static str;
    /// A cheap round trip, for `/ready`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Applies pending migrations; safe to run on every start and from
    /// several nodes at once (the migrator takes a lock).
    async fn migrate(&self) -> Result<(), StoreError>;
}

pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    /// The hot single-statement writes (a client-credentials token, an
    /// immediate payment) run here, on a connection of their own (see
    /// [`SQLITE_CONNECTIONS`]), when the direct lane is busy or absent.
    writer: sqlx::SqlitePool,
    /// The hot statements on the request's own thread, when the database
    /// is a file ([`direct`]); sqlx's connections serve the rest.
    direct: Option<direct::Direct>,
    token_ids: IdBlock,
    /// Where this node's purge of spent JWT ids resumes ([`jti`]).
    spent_sweep: sweep::Sweep<Vec<u8>>,
    /// Where this node's purge of expired tokens resumes ([`TOKEN_WALK`]).
    token_sweep: sweep::Sweep<i64>,
}

pub struct PgStore {
    pool: pg_pool::PgConns,
    /// The same pool: PostgreSQL keeps no cache per connection.
    writer: pg_pool::PgConns,
    token_ids: IdBlock,
    /// Client-credentials tokens, several to a statement.
    cc_tokens: pg_batch::Lanes<pg_batch::Tokens>,
    /// Domestic payments executed at once, several to a transaction.
    payments: pg_batch::Lanes<payments::Payments>,
}

/// Ids handed out from a block this node took from `id_blocks` (issue 15):
/// one write every [`IdBlock::SIZE`] ids instead of one an id. Each block
/// is taken by one `UPDATE`, so blocks never overlap, whichever nodes ask;
/// a block not used up when the node stops is skipped.
pub(crate) struct IdBlock(std::sync::Mutex<(i64, i64)>);

impl IdBlock {
    pub(crate) const SIZE: i64 = 1024;

    fn new() -> IdBlock {
        IdBlock(std::sync::Mutex::new((0, 0)))
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, (i64, i64)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next id of the current block, if any is left.
    pub(crate) fn take(&self) -> Option<i64> {
        let mut s = self.slots();
        (s.0 < s.1).then(|| {
            s.0 += 1;
            s.0 - 1
        })
    }

    /// Makes the block that ends before `end` current and takes its
    /// first id. Two tasks that both found the block used up each take a
    /// block of their own; the second one's install wins.
    pub(crate) fn refill(&self, end: i64) -> i64 {
        let start = end - Self::SIZE;
        *self.slots() = (start + 1, end);
        start
    }
}

impl SqliteStore {
    fn direct(&self) -> Option<&direct::Direct> {
        self.direct.as_ref()
    }

    async fn use_spent_id(
        &self,
        scope: &str,
        id: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        jti::sqlite_use(&self.pool, scope, id, expires_at).await
    }

    async fn purge_spent_ids(&self, now: i64, batch: i64) -> Result<u64, StoreError> {
        self.spent_sweep.step(&self.pool, now, batch).await
    }

    async fn purge_expired_tokens(&self, cutoff: i64, batch: i64) -> Result<u64, StoreError> {
        self.token_sweep.step(&self.pool, cutoff, batch).await
    }
}

/// SQLite's purge of expired tokens walks their ids ([`sweep`]): they have
/// no expiry index (migration 18). Ids are above `i64::MIN`, the walk's
/// start: a node's blocks count up from 1, and tokens issued before ids
/// were carried count down from -1 (migration 14).
static TOKEN_WALK: sweep::Walk = sweep::Walk {
    end: "SELECT id FROM tokens WHERE id > $1 ORDER BY id LIMIT 1 OFFSET $2",
    delete_range: "DELETE FROM tokens WHERE id > $1 AND id <= $2 AND expires_at <= $3",
    delete_rest: "DELETE FROM tokens WHERE id > $1 AND expires_at <= $2",
};

impl PgStore {
    /// PostgreSQL has no direct lane: its round trip is the network's.
    fn direct(&self) -> Option<&direct::Direct> {
        None
    }

    async fn use_spent_id(
        &self,
        scope: &str,
        id: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        jti::pg_use(&self.pool, scope, id, expires_at).await
    }

    async fn purge_spent_ids(&self, now: i64, batch: i64) -> Result<u64, StoreError> {
        jti::pg_purge(&self.pool, now, batch).await
    }

    /// Found by the expiry index, which PostgreSQL keeps: its tokens are
    /// written several to a statement, with no WAL frame a page.
    async fn purge_expired_tokens(&self, cutoff: i64, batch: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM tokens WHERE id IN \
             (SELECT id FROM tokens WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

impl_auth_store!(
    SqliteStore,
    sqlx::sqlite::SqliteRow,
    auth::sqlite_insert_cc_token
);
mod pg_auth {
    use super::*;
    impl_auth_store!(PgStore, sqlx::postgres::PgRow, auth::pg_insert_cc_token);
}
impl_consent_store!(SqliteStore, sqlx::sqlite::SqliteRow, sqlx::Sqlite);
mod pg_consent {
    use super::*;
    impl_consent_store!(PgStore, sqlx::postgres::PgRow, sqlx::Postgres);
}
impl_world_store!(SqliteStore, sqlx::sqlite::SqliteRow, sqlx::Sqlite);
impl_event_store!(SqliteStore, sqlx::sqlite::SqliteRow, sqlx::Sqlite);
impl_factor_store!(SqliteStore, sqlx::sqlite::SqliteRow);
impl_payment_store!(
    SqliteStore,
    sqlx::sqlite::SqliteRow,
    sqlx::Sqlite,
    payments::sqlite_insert_payment_executed,
    payments::sqlite_insert_consent_once
);
mod pg_world {
    use super::*;
    impl_world_store!(PgStore, sqlx::postgres::PgRow, sqlx::Postgres);
    impl_payment_store!(
        PgStore,
        sqlx::postgres::PgRow,
        sqlx::Postgres,
        payments::pg_insert_payment_executed,
        payments::pg_insert_consent_once
    );
}
mod pg_events {
    use super::*;
    impl_event_store!(PgStore, sqlx::postgres::PgRow, sqlx::Postgres);
    impl_factor_store!(PgStore, sqlx::postgres::PgRow);
}

#[async_trait]
impl Store for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // One connection for both: a second would stay open in the pool,
        // with its worker thread and page cache, on a node that may
        // otherwise never need it. `run_direct` as on PostgreSQL below:
        // `run`'s `Acquire` bound is not general enough here.
        let mut conn = self.pool.acquire().await?;
        migrate::sqlite()
            .run_direct(None, &mut *conn, false)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        jti::sqlite_carry(&mut conn).await
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        // What `Migrator::run` does once it holds a connection (its
        // `Acquire` bound is not general enough for a `Send` future here).
        migrate::postgres()
            .run_direct(None, &mut *conn, false)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))
    }
}

/// A pooled connection idle at least this long is pinged before use (the
/// server may have dropped it meanwhile). Sooner, its last use vouches for
/// it (sqlx's ping on release on SQLite; on PostgreSQL the statement that
/// ended, [`pg_pool`]): a ping on acquire too would add a round trip (on
/// SQLite a hop to its worker thread) to every query.
pub(crate) const PING_IF_IDLE: Duration = Duration::from_secs(30);

fn ping_if_idle<'c, C: sqlx::Connection>(
    conn: &'c mut C,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'c, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if meta.idle_for >= PING_IF_IDLE {
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// SQLite connections (issue 15). SQLite lets one connection write at a
/// time, and in WAL mode a connection drops its whole page cache whenever
/// another one has written since its last read; sqlx hands idle
/// connections out in turn, so with eight every token read its pages again
/// (17 `pread`s). The hot writes (a token, an immediate payment: one
/// statement or statement list each) have a connection of their own, whose
/// cache only other writes disturb; everything else shares four, so that
/// reads (an AIS page) run beside each other and beside the writes.
/// Measured (BENCHMARKS.md): one connection for everything made a token
/// 44% cheaper than eight but halved AIS pages at 16 clients; four alone
/// served pages best but tokens worst. The hot statements now run on the
/// direct lane first ([`direct`]); these serve everything else, and the
/// lane's statements when it meets a busy database.
const SQLITE_CONNECTIONS: u32 = 4;

/// Runs a SQLite statement list that holds its own `BEGIN IMMEDIATE …
/// COMMIT` on `conn` (one hop to sqlx's worker thread, one commit). sqlx
/// does not know of that transaction, so a failure part-way is rolled back
/// here, and a connection that cannot be rolled back is closed instead of
/// going back to the pool. Callers run it in a task of its own: sqlx's
/// worker stops a statement list whose caller went away, which would leave
/// the transaction open on a pooled connection.
pub(crate) async fn sqlite_script<'q>(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
) -> Result<Vec<sqlx::sqlite::SqliteRow>, StoreError> {
    match q.fetch_all(&mut **conn).await {
        Ok(rows) => Ok(rows),
        Err(e) => {
            if sqlx::query("ROLLBACK").execute(&mut **conn).await.is_err() {
                conn.close_on_drop();
            }
            Err(e.into())
        }
    }
}

/// Opens the store named by the URL: `sqlite:…` (the file is created if
/// missing) or `postgres://…`.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    connect_with_schema(url, None).await
}

/// As [`connect`], with every PostgreSQL connection using `schema` (tests
/// isolate themselves this way on a shared server).
pub async fn connect_with_schema(
    url: &str,
    pg_schema: Option<&str>,
) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .pragma("wal_autocheckpoint", direct::CHECKPOINT_PAGES.to_string())
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = |n| {
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(n)
                .test_before_acquire(false)
                .before_acquire(ping_if_idle)
                .connect_with(opts.clone())
        };
        Ok(Arc::new(SqliteStore {
            pool: pool(SQLITE_CONNECTIONS).await?,
            writer: pool(1).await?,
            direct: direct::Direct::new(opts.get_filename()),
            token_ids: IdBlock::new(),
            spent_sweep: sweep::Sweep::new(&jti::SPENT_WALK, Vec::new()),
            token_sweep: sweep::Sweep::new(&TOKEN_WALK, i64::MIN),
        }))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut opts = sqlx::postgres::PgConnectOptions::from_str(url)?;
        if let Some(schema) = pg_schema {
            opts = opts.options([("search_path", schema)]);
        }
        let lanes = pg_batch::Lanes::connect(opts.clone()).await?;
        let payments = pg_batch::Lanes::connect(opts.clone()).await?;
        let pool = pg_pool::PgConns::connect(opts, 16, Duration::from_secs(10)).await?;
        Ok(Arc::new(PgStore {
            cc_tokens: lanes,
            payments,
            writer: pool.clone(),
            pool,
            token_ids: IdBlock::new(),
        }))
    } else {
        Err(StoreError::Backend(format!(
            "unsupported database URL scheme in {url:?}"
        )))
    }
}
