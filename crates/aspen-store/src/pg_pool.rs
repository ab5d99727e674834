//! PostgreSQL connections, pooled without a round trip per release
//! (issue 15).
//!
//! sqlx's pool pings every connection it takes back (a `Sync` and its
//! `ReadyForQuery`), so each statement cost two round trips: one for the
//! statement and one more, off the request's path but on both processes'
//! CPU, before the connection could serve anyone else. Measured
//! (BENCHMARKS.md), that ping was 16–19% of aspen's CPU per
//! `private_key_jwt` token, whose only statement is the token's write.
//!
//! The ping is there because sqlx cannot tell a connection whose work
//! finished from one whose caller went away mid-statement. Here the pool's
//! own callers can: a connection goes back as it is only when its
//! statement or transaction finished, with a result or with the database's
//! own error (after which the protocol is in step: sqlx reads the pending
//! `ReadyForQuery` before the next statement). A connection given up any
//! other way (its future dropped mid-statement, an I/O error, a
//! transaction neither committed nor rolled back) is put right first, in
//! a task of its own: a ping, or a `ROLLBACK` for a transaction, within
//! [`RECOVER_TIMEOUT`]; one that fails is closed.
//!
//! As before: at most `max` connections, waiters served in turn, up to the
//! acquire timeout (sqlx's `PoolTimedOut`); a connection idle for
//! [`crate::PING_IF_IDLE`] is pinged before use; idle ones are closed
//! after [`IDLE_TIMEOUT`] and every one after [`MAX_LIFETIME`] (sqlx's
//! defaults).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgQueryResult, PgRow, PgStatement, PgTypeInfo, Postgres,
};
use sqlx::{ConnectOptions, Connection, Either, Execute, Executor, SqlStr};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long putting a given-up connection right may take before it is
/// closed instead.
const RECOVER_TIMEOUT: Duration = Duration::from_secs(5);
/// sqlx's default: an idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// sqlx's default: a connection is closed, not reused, after this long.
const MAX_LIFETIME: Duration = Duration::from_secs(1800);

/// A pool of PostgreSQL connections ([module docs](self)); cheap to clone.
#[derive(Clone)]
pub(crate) struct PgConns(Arc<Shared>);

struct Shared {
    opts: PgConnectOptions,
    acquire_timeout: Duration,
    /// One permit per connection open and not idle.
    permits: Arc<Semaphore>,
    /// Last in, first out: the warmest connection serves next, and the
    /// ones at the bottom age out.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: PgConnection,
    opened: Instant,
    since: Instant,
}

impl std::fmt::Debug for PgConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConns").finish_non_exhaustive()
    }
}

impl PgConns {
    /// Opens one connection, so that a wrong URL fails at start.
    pub(crate) async fn connect(
        opts: PgConnectOptions,
        max: usize,
        acquire_timeout: Duration,
    ) -> Result<PgConns, sqlx::Error> {
        let pool = PgConns(Arc::new(Shared {
            opts,
            acquire_timeout,
            permits: Arc::new(Semaphore::new(max)),
            idle: Mutex::new(Vec::new()),
        }));
        let mut first = pool.acquire().await?;
        first.clean = true;
        drop(first);
        Ok(pool)
    }

    /// A connection of the caller's own until the guard drops. Nothing tells
    /// the guard whether its user's statements ended, so when it drops the
    /// connection is put right before anyone reuses it; the pool's own
    /// statements and [`PgTx`] mark theirs finished and skip that.
    pub(crate) async fn acquire(&self) -> Result<PgConn, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + self.0.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, self.0.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        while let Some(mut idle) = self.take_idle() {
            if idle.since.elapsed() >= crate::PING_IF_IDLE {
                match tokio::time::timeout_at(deadline, idle.conn.ping()).await {
                    Ok(Ok(())) => {}
                    // The server dropped it meanwhile: try the next.
                    _ => continue,
                }
            }
            return Ok(self.guard(idle.conn, idle.opened, permit));
        }
        let conn = tokio::time::timeout_at(deadline, self.0.opts.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        Ok(self.guard(conn, Instant::now(), permit))
    }

    /// A transaction on a connection of its own: `BEGIN` has run.
    pub(crate) async fn begin(&self) -> Result<PgTx, sqlx::Error> {
        let mut conn = self.acquire().await?;
        conn.in_transaction = true;
        let begun = sqlx::raw_sql("BEGIN").execute(&mut *conn).await;
        conn.settle(&begun);
        if begun.is_err() {
            // Refused by the server: no transaction is open.
            conn.in_transaction = !conn.clean;
        }
        begun?;
        Ok(PgTx { conn })
    }

    fn guard(&self, conn: PgConnection, opened: Instant, permit: OwnedSemaphorePermit) -> PgConn {
        PgConn {
            conn: Some(conn),
            opened,
            permit: Some(permit),
            pool: self.clone(),
            clean: false,
            in_transaction: false,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.0.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_idle(&self) -> Option<Idle> {
        self.idle().pop()
    }

    /// Takes back a connection known to be in step; closes it instead when
    /// it is past its lifetime, and closes those idle too long.
    fn put(&self, conn: PgConnection, opened: Instant) {
        let mut expired = Vec::new();
        {
            let mut idle = self.idle();
            while idle
                .first()
                .is_some_and(|i| i.since.elapsed() >= IDLE_TIMEOUT)
            {
                expired.push(idle.remove(0).conn);
            }
            if opened.elapsed() < MAX_LIFETIME {
                idle.push(Idle {
                    conn,
                    opened,
                    since: Instant::now(),
                });
            } else {
                expired.push(conn);
            }
        }
        for conn in expired {
            close(conn);
        }
    }
}

/// Says goodbye to the server (`Terminate`), in the background.
fn close(conn: PgConnection) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = tokio::time::timeout(RECOVER_TIMEOUT, conn.close()).await;
        });
    }
}

/// A connection taken from [`PgConns`].
pub(crate) struct PgConn {
    conn: Option<PgConnection>,
    opened: Instant,
    /// Held until the connection is idle again or closed, so that one
    /// being put right still counts against the pool's size.
    permit: Option<OwnedSemaphorePermit>,
    pool: PgConns,
    /// The last statement finished and the protocol is in step.
    clean: bool,
    /// A transaction may be open: put right with `ROLLBACK`.
    in_transaction: bool,
}

impl PgConn {
    /// Records how a statement ended: with a result or the database's own
    /// error, the connection is in step; anything else (I/O, protocol,
    /// a timeout) leaves it to be put right.
    fn settle<T>(&mut self, result: &Result<T, sqlx::Error>) {
        self.clean = matches!(result, Ok(_) | Err(sqlx::Error::Database(_)));
    }
}

impl Deref for PgConn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let permit = self.permit.take();
        if self.clean && !self.in_transaction {
            self.pool.put(conn, self.opened);
            drop(permit);
            return;
        }
        // Outside a runtime nothing can be put right: the socket closes.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (pool, opened, rollback) = (self.pool.clone(), self.opened, self.in_transaction);
        rt.spawn(async move {
            let recovered = tokio::time::timeout(RECOVER_TIMEOUT, async {
                if rollback {
                    sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.map(drop)
                } else {
                    conn.ping().await
                }
            })
            .await;
            match recovered {
                Ok(Ok(())) => pool.put(conn, opened),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "closing a PostgreSQL connection that could not be put right");
                }
                Err(_) => tracing::warn!("closing a PostgreSQL connection that did not answer"),
            }
            drop(permit);
        });
    }
}

/// A transaction from [`PgConns::begin`]; rolled back (in the background)
/// if dropped before [`PgTx::commit`] or [`PgTx::rollback`], as sqlx's own
/// transactions are.
pub(crate) struct PgTx {
    conn: PgConn,
}

impl PgTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.end("COMMIT").await
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.end("ROLLBACK").await
    }

    async fn end(mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        let ended = sqlx::raw_sql(sql).execute(&mut *self.conn).await;
        // Either way the server has ended the transaction (a failed
        // `COMMIT` rolls back).
        self.conn.settle(&ended);
        self.conn.in_transaction = !self.conn.clean;
        ended.map(drop)
    }
}

impl Deref for PgTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for PgTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

/// Statements on the pool take a connection each, as on sqlx's pool.
impl<'p> Executor<'p> for &'p PgConns {
    type Database = Postgres;

    /// Collected before they are handed on: aspen's result sets are bounded
    /// pages, and a connection goes back only after its statement ended.
    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        futures_util::stream::once(async move {
            let mut conn = self.acquire().await?;
            let all: Result<Vec<_>, sqlx::Error> =
                (&mut *conn).fetch_many(query).try_collect().await;
            conn.settle(&all);
            all
        })
        .map_ok(|all| futures_util::stream::iter(all.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        Box::pin(async move {
            let mut conn = self.acquire().await?;
            let row = (&mut *conn).fetch_optional(query).await;
            conn.settle(&row);
            row
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        Box::pin(async move {
            let mut conn = self.acquire().await?;
            let statement = (&mut *conn).prepare_with(sql, parameters).await;
            conn.settle(&statement);
            statement
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// A pool of `max` on the test server, or `None` (SKIPPED, with the
    /// reason) where PostgreSQL cannot be reached and CI does not require it.
    async fn pool(max: usize, acquire_timeout: Duration) -> Option<PgConns> {
        let url = std::env::var("ASPEN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let opts = PgConnectOptions::from_str(&url).unwrap();
        match PgConns::connect(opts, max, acquire_timeout).await {
            Ok(p) => Some(p),
            Err(e) if std::env::var("ASPEN_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
                panic!("PostgreSQL required but not reachable at {url}: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: PostgreSQL not reachable at {url}: {e}");
                None
            }
        }
    }

    async fn backend_pid(pool: &PgConns) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_finished_statement_goes_back_at_once_without_a_round_trip() {
        let Some(pool) = pool(1, Duration::from_secs(10)).await else {
            return;
        };
        let pid = backend_pid(&pool).await;
        // Idle as soon as the statement's future is done: nothing was left
        // for a background ping.
        assert_eq!(pool.idle().len(), 1);
        // The database's own error leaves the protocol in step: the same
        // connection serves the next statement.
        let err = sqlx::query("SELECT * FROM no_such_table")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(matches!(err, sqlx::Error::Database(_)), "{err:?}");
        assert_eq!(pool.idle().len(), 1);
        assert_eq!(backend_pid(&pool).await, pid);
    }

    #[tokio::test]
    async fn a_statement_given_up_midway_is_put_right_before_anyone_reuses_it() {
        let Some(pool) = pool(1, Duration::from_secs(10)).await else {
            return;
        };
        let pid = backend_pid(&pool).await;
        let gave_up = tokio::time::timeout(
            Duration::from_millis(50),
            sqlx::query("SELECT pg_sleep(0.5)").execute(&pool),
        )
        .await;
        assert!(gave_up.is_err());
        // Not idle: it is being put right, and still counts against `max`.
        assert_eq!(pool.idle().len(), 0);
        // The next statement waits for it and gets its own answer, on the
        // same connection (the sleep's rows were read and dropped).
        let seven: i32 = sqlx::query_scalar("SELECT 7")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(seven, 7);
        assert_eq!(backend_pid(&pool).await, pid);
    }

    /// A transaction that has inserted `n` into the temporary table `t`.
    async fn insert_in_transaction(pool: &PgConns, n: i32) -> PgTx {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES ($1)")
            .bind(n)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx
    }

    #[tokio::test]
    async fn a_transaction_dropped_unfinished_is_rolled_back_before_reuse() {
        let Some(pool) = pool(1, Duration::from_secs(10)).await else {
            return;
        };
        // A temporary table lives on its one connection (the pool's only).
        sqlx::raw_sql("CREATE TEMP TABLE t (n int)")
            .execute(&pool)
            .await
            .unwrap();
        drop(insert_in_transaction(&pool, 1).await);
        // Had the transaction stayed open, this would run inside it and
        // see its row; and the commit below would keep it.
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
        insert_in_transaction(&pool, 2)
            .await
            .commit()
            .await
            .unwrap();
        assert_eq!(pool.idle().len(), 1);
        insert_in_transaction(&pool, 3)
            .await
            .rollback()
            .await
            .unwrap();
        let ns: Vec<i32> = sqlx::query_scalar("SELECT n FROM t")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(ns, vec![2]);
    }

    #[tokio::test]
    async fn no_more_than_max_connections_and_waiters_time_out() {
        let Some(pool) = pool(1, Duration::from_millis(200)).await else {
            return;
        };
        let held = pool.acquire().await.unwrap();
        let err = sqlx::query("SELECT 1").execute(&pool).await.unwrap_err();
        assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
        drop(held);
        // Given back without `clean` (an acquired guard's user ran nothing
        // through the pool's executor): put right, then served again.
        sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    }
}
