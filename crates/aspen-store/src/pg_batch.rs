//! PostgreSQL: client-credentials tokens written several to a statement
//! (issue 15).
//!
//! A token on PostgreSQL was one statement of its own: a send to the
//! server, a wait, a receive, on aspen's side about as much CPU as the
//! token's own work (BENCHMARKS.md: 66–89 µs a `tls_client_auth` token
//! against 32 on SQLite, most of it in the kernel sending, waking and
//! being woken). Here the tokens that arrive while a statement is out
//! queue up, and the next statement writes all of them
//! ([`crate::auth::PG_CC_BATCH`]), so under load each carries many tokens,
//! and a lone token still goes out at once. A second statement goes out
//! beside the first ([`LANES`]) only when the queue holds a full batch or
//! the first has been out for [`SLOW`].
//!
//! Each token's rules are the database's, row by row, as before: the client
//! row at the revision the checks were made on (locked `FOR SHARE` until
//! the commit), the JWT id's primary key (`ON CONFLICT DO NOTHING`, one
//! winner on every node). Two uses of one JWT id in one batch are settled
//! here: the first goes to the database, the second is a replay whichever
//! way the first ends. A statement that fails writes none of its tokens,
//! so its tokens are then written one to a statement, and each caller gets
//! its own token's outcome: one bad row costs no other request its token.
//! A statement whose connection broke goes again on another; one that
//! takes longer than [`STATEMENT_TIMEOUT`] is given up. A token whose
//! caller went away before its statement is left out.
//!
//! The statements run in tasks of their own, not in a caller's future: a
//! caller that goes away (its client disconnected) does not take the other
//! callers' tokens with it, and its own token is written or not as a
//! whole, JWT id with it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use tokio::sync::oneshot;

use crate::StoreError;
use crate::auth::{JtiUse, TokenRecord};
use crate::pg_pool::PgConns;

/// Statements out at once at most, each on a connection of its own. The
/// second goes out only when one statement cannot take the queue (a full
/// batch waits) or the first is slow ([`SLOW`]): while a lone statement
/// keeps up, the tokens that come meanwhile gather for the next one.
/// Measured at 8 connections (issue 15, nineteenth pass): with the second
/// statement out whenever a token waited, two half-full statements a round
/// trip cost aspen 10–18% more CPU a token and PostgreSQL a third more,
/// for fewer tokens a second.
const LANES: usize = 2;

/// How long the first statement may be out before a token waiting for it
/// gets a statement of its own: a client row locked by a registration
/// update, a slow server. Many times a token statement's usual time (under
/// a millisecond at 64 connections).
const SLOW: Duration = Duration::from_millis(20);

/// Tokens a statement at most. A batch's message stays within one TLS
/// record (16 kB; about 400 bytes a token with its JWT id): the rest of a
/// message split across records goes out as a segment of its own, which
/// Nagle's algorithm holds until the server acknowledges the first, and the
/// server delays that acknowledgement by 40 ms waiting for the rest
/// (sqlx's sockets leave `TCP_NODELAY` off). Measured: 50 ms at the 99th
/// percentile at 64 connections with no cap.
const MAX_BATCH: usize = 24;

/// How long a lane waits for one statement. Its callers are cut off by the
/// request timeout, but the lane is not, and a statement stuck would hold
/// the lane and every token queued behind it. The server gives a statement
/// up after 10 s (`statement_timeout` on the lanes' connections: a client
/// row locked for long, say), with nothing written; this bounds the wait
/// for a server that stopped answering.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);

/// How the lanes' connections show in `pg_stat_activity`.
const APPLICATION_NAME: &str = "aspen tokens";

/// The token queue of one node ([module docs](self)).
pub(crate) struct CcBatch(Arc<Inner>);

struct Inner {
    pool: PgConns,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: Vec<Job>,
    /// Lanes running ([`Lane::drain`]); each empties the queue before it
    /// stops.
    lanes: usize,
    /// Statements out for longer than [`SLOW`]: while there is one, a
    /// token that comes starts the second lane.
    slow: usize,
}

/// One token to write, owned: it outlives its caller if need be.
pub(crate) struct Job {
    pub(crate) jti: Option<(String, String, i64)>,
    pub(crate) revision: i64,
    pub(crate) token: TokenRecord,
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

impl CcBatch {
    /// The lanes' connections are their own, one a lane, and always use
    /// the token statement's generic plan: PostgreSQL would otherwise plan
    /// it for each execution (its estimate for an array parameter's rows is
    /// far above one token's, so the generic plan never looks cheaper),
    /// 150 µs of planning for 55 µs of execution (measured, BENCHMARKS.md).
    /// The generic plan finds each client by its primary key, as a custom
    /// one does. The server also ends a statement that runs past 10 s
    /// ([`STATEMENT_TIMEOUT`]).
    pub(crate) async fn connect(opts: PgConnectOptions) -> Result<CcBatch, StoreError> {
        let opts = opts
            .options([
                ("plan_cache_mode", "force_generic_plan"),
                ("statement_timeout", "10s"),
            ])
            .application_name(APPLICATION_NAME);
        let pool = PgConns::connect(opts, LANES, Duration::from_secs(10)).await?;
        Ok(CcBatch(Arc::new(Inner {
            pool,
            state: Mutex::new(State::default()),
        })))
    }

    /// True when the token was written and its JWT id (if any) spent; false
    /// with nothing written, as [`crate::AuthStore::insert_cc_token`].
    pub(crate) async fn insert(
        &self,
        jti: Option<JtiUse<'_>>,
        revision: i64,
        t: &TokenRecord,
    ) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            jti: jti.map(|j| {
                (
                    j.scope.to_string(),
                    j.jti.to_string(),
                    crate::auth::jti_expiry(j.expires_at),
                )
            }),
            revision,
            token: t.clone(),
            reply,
        };
        let start = {
            let mut s = self.0.state();
            s.queue.push(job);
            let wanted = s.lanes == 0 || s.slow > 0 || s.queue.len() >= MAX_BATCH;
            s.take_lane(wanted)
        };
        if start {
            spawn_lane(&self.0);
        }
        answer
            .await
            .map_err(|_| StoreError::Backend("the token's write did not finish".into()))?
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Counts a lane to start when `wanted` and one is free.
    fn take_lane(&mut self, wanted: bool) -> bool {
        let start = wanted && self.lanes < LANES;
        self.lanes += usize::from(start);
        start
    }
}

/// Starts a lane counted in [`State::lanes`]. A function of its own: a lane
/// starts another from inside [`Lane::drain`].
fn spawn_lane(inner: &Arc<Inner>) {
    tokio::spawn(Lane::new(inner).drain());
}

/// A running lane. Should its task end early (a panic, the runtime
/// stopping), the lane is given back, and another starts if tokens wait.
struct Lane {
    inner: Arc<Inner>,
    /// Given back by [`Lane::drain`] itself.
    done: bool,
    /// Counted in [`State::slow`].
    slow: bool,
}

impl Lane {
    fn new(inner: &Arc<Inner>) -> Lane {
        Lane {
            inner: inner.clone(),
            done: false,
            slow: false,
        }
    }

    async fn drain(mut self) {
        loop {
            let jobs = {
                let mut s = self.inner.state();
                if s.queue.is_empty() {
                    // In the same critical section as the check: a token
                    // queued after it finds the lane free and starts one.
                    s.lanes -= 1;
                    self.done = true;
                    return;
                }
                let n = s.queue.len().min(MAX_BATCH);
                s.queue.drain(..n).collect::<Vec<_>>()
            };
            let write = write_batch(&self.inner.pool, jobs);
            tokio::pin!(write);
            if tokio::time::timeout(SLOW, &mut write).await.is_err() {
                let start = {
                    let mut s = self.inner.state();
                    s.slow += 1;
                    let waiting = !s.queue.is_empty();
                    s.take_lane(waiting)
                };
                self.slow = true;
                if start {
                    spawn_lane(&self.inner);
                }
                write.await;
                self.inner.state().slow -= 1;
                self.slow = false;
            }
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut s = self.inner.state();
        s.lanes -= 1;
        s.slow -= usize::from(self.slow);
        if !s.queue.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
            s.lanes += 1;
            drop(s);
            spawn_lane(&self.inner);
        }
    }
}

async fn write_batch(pool: &PgConns, mut jobs: Vec<Job>) {
    // A caller that went away (its client, the request timeout) gets no
    // token: none is written for it and its JWT id stays unspent.
    jobs.retain(|job| !job.reply.is_closed());
    if jobs.is_empty() {
        return;
    }
    // Sorted by JWT id, so that two statements take the ids' locks in one
    // order and cannot deadlock; a repeat is then next to its first use.
    jobs.sort_by(|a, b| a.jti.cmp(&b.jti));
    let mut batch: Vec<Job> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let repeat = matches!((&job.jti, batch.last()),
            (Some((scope, id, _)), Some(Job { jti: Some((s, i, _)), .. })) if scope == s && id == i);
        if repeat {
            let _ = job.reply.send(Ok(false));
        } else {
            batch.push(job);
        }
    }
    // A connection that broke (the server restarted, a proxy cut it) is
    // closed by the pool, and the batch goes again on another: each lane's
    // idle connection may have broken at once.
    let mut outcome = write(pool, &batch).await;
    for _ in 0..LANES {
        match &outcome {
            Err(e) if broken(e) => outcome = write(pool, &batch).await,
            _ => break,
        }
    }
    match outcome {
        Ok(mut written) => {
            written.sort_unstable();
            for job in batch {
                let ok = written.binary_search(&job.token.id).is_ok();
                let _ = job.reply.send(Ok(ok));
            }
        }
        // The database refused the statement for a row (a constraint) or
        // for the moment (a deadlock, a serialisation failure): each token
        // on its own, so that only that row's request fails.
        Err(sqlx::Error::Database(ref d))
            if batch.len() > 1
                && d.code()
                    .is_some_and(|c| c.starts_with("23") || c.starts_with("40")) =>
        {
            for job in batch {
                let one = std::slice::from_ref(&job);
                let outcome = write(pool, one)
                    .await
                    .map(|written| written.contains(&job.token.id))
                    .map_err(StoreError::from);
                let _ = job.reply.send(outcome);
            }
        }
        // Anything else (no server, a timeout, a statement cancelled):
        // each token one by one would only wait out one timeout after
        // another.
        Err(e) => {
            let e = StoreError::from(e);
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// [`crate::auth::pg_write_cc_tokens`] within [`STATEMENT_TIMEOUT`]. A
/// statement given up is dropped mid-way, and the pool puts its connection
/// right or closes it ([`crate::pg_pool`]); the lane goes on.
async fn write(pool: &PgConns, jobs: &[Job]) -> Result<Vec<i64>, sqlx::Error> {
    tokio::time::timeout(
        STATEMENT_TIMEOUT,
        crate::auth::pg_write_cc_tokens(pool, jobs),
    )
    .await
    .unwrap_or_else(|_| {
        Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the token statement took too long",
        )))
    })
}

/// The connection, not the statement, failed: it broke, or the server
/// ended it (SQLSTATE class 08, or 57P: shut down, terminated).
fn broken(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(e) => e.kind() != std::io::ErrorKind::TimedOut,
        sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}
