//! PostgreSQL: writes that arrive together go out together (issue 15):
//! client-credentials tokens several to a statement ([`Tokens`]), domestic
//! payments several to a transaction ([`crate::payments::Payments`]).
//!
//! A token on PostgreSQL was one statement of its own: a send to the
//! server, a wait, a receive, on aspen's side about as much CPU as the
//! token's own work (BENCHMARKS.md: 66–89 µs a `tls_client_auth` token
//! against 32 on SQLite, most of it in the kernel sending, waking and
//! being woken). A payment was one statement and one commit of its own,
//! and each commit's WAL flush cost PostgreSQL about 370 µs of CPU
//! (BENCHMARKS.md, thirty-sixth pass). Here the writes that arrive while a
//! batch is out queue up, and the next batch takes all of them (up to
//! [`Batch::MAX`]), so under load each carries many, and a lone write
//! still goes out at once. A second batch goes out beside the first
//! ([`LANES`]) only when the queue holds a full batch or the first has
//! been out for [`SLOW`].
//!
//! Each write's rules are the database's, row by row, as when it went out
//! alone. A batch that fails writes none of its writes, so they are then
//! written one at a time, and each caller gets its own outcome: one bad
//! row costs no other request its write. A batch whose connection broke
//! goes again on another; one that takes longer than [`STATEMENT_TIMEOUT`]
//! is given up. A write whose caller went away before its batch is left
//! out.
//!
//! The batches run in tasks of their own, not in a caller's future: a
//! caller that goes away (its client disconnected) does not take the other
//! callers' writes with it, and its own is written or not as a whole.
//!
//! Tokens: each token's rules are in its row of the statement: the client
//! row at the revision the checks were made on (locked `FOR SHARE` until
//! the commit), the JWT id's primary key (`ON CONFLICT DO NOTHING`, one
//! winner on every node). Two uses of one JWT id in one batch are settled
//! here: the first goes to the database, the second is a replay whichever
//! way the first ends.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use tokio::sync::oneshot;

use crate::StoreError;
use crate::auth::{JtiUse, TokenRecord};
use crate::pg_pool::PgConns;

/// Batches out at once at most, each on a connection of its own. The
/// second goes out only when one batch cannot take the queue (a full
/// batch waits) or the first is slow ([`SLOW`]): while a lone batch keeps
/// up, the writes that come meanwhile gather for the next one. Measured at
/// 8 connections (issue 15, nineteenth pass): with the second token
/// statement out whenever a token waited, two half-full statements a round
/// trip cost aspen 10–18% more CPU a token and PostgreSQL a third more,
/// for fewer tokens a second.
const LANES: usize = 2;

/// How long the first batch may be out before a write waiting for it gets
/// a batch of its own: a row locked by another transaction, a slow server.
/// Many times a batch's usual time (under a millisecond for tokens at 64
/// connections, a few for payments).
const SLOW: Duration = Duration::from_millis(20);

/// How long a lane waits for one batch. Its callers are cut off by the
/// request timeout, but the lane is not, and a batch stuck would hold the
/// lane and every write queued behind it. The server gives a statement up
/// after 10 s (`statement_timeout` on the lanes' connections: a row locked
/// for long, say), with nothing written; this bounds the wait for a server
/// that stopped answering.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);

/// One kind of write the lanes take.
pub(crate) trait Batch: Sized + Send + Sync + 'static {
    /// One write, owned: it outlives its caller if need be.
    type Item: Send + 'static;
    /// What its caller is told.
    type Out: Send + 'static;
    /// Writes a batch at most.
    const MAX: usize;
    /// How the lanes' connections show in `pg_stat_activity`.
    const APPLICATION_NAME: &'static str;
    /// Session settings of the lanes' connections, beside
    /// `statement_timeout`.
    const OPTIONS: &'static [(&'static str, &'static str)];
    /// Writes `jobs` (none of whose callers has gone away) and answers
    /// each.
    fn write(pool: &PgConns, jobs: Vec<Job<Self>>) -> impl Future<Output = ()> + Send;
}

/// A write queued, with where its outcome goes.
pub(crate) struct Job<B: Batch> {
    pub(crate) item: B::Item,
    reply: oneshot::Sender<Result<B::Out, StoreError>>,
}

impl<B: Batch> Job<B> {
    pub(crate) fn answer(self, outcome: Result<B::Out, StoreError>) {
        let _ = self.reply.send(outcome);
    }
}

/// One node's queue of one kind of write ([module docs](self)).
pub(crate) struct Lanes<B: Batch>(Arc<Inner<B>>);

struct Inner<B: Batch> {
    pool: PgConns,
    state: Mutex<State<B>>,
}

struct State<B: Batch> {
    queue: Vec<Job<B>>,
    /// Lanes running ([`Lane::drain`]); each empties the queue before it
    /// stops.
    lanes: usize,
    /// Batches out for longer than [`SLOW`]: while there is one, a write
    /// that comes starts the second lane.
    slow: usize,
}

impl<B: Batch> Lanes<B> {
    /// The lanes' connections are their own, one a lane, with
    /// [`Batch::OPTIONS`]; the server also ends a statement that runs past
    /// 10 s ([`STATEMENT_TIMEOUT`]).
    pub(crate) async fn connect(opts: PgConnectOptions) -> Result<Lanes<B>, StoreError> {
        let opts = opts
            .options(B::OPTIONS.iter().copied())
            .options([("statement_timeout", "10s")])
            .application_name(B::APPLICATION_NAME);
        let pool = PgConns::connect(opts, LANES, Duration::from_secs(10)).await?;
        Ok(Lanes(Arc::new(Inner {
            pool,
            state: Mutex::new(State {
                queue: Vec::new(),
                lanes: 0,
                slow: 0,
            }),
        })))
    }

    /// Queues `item` and waits for its outcome.
    pub(crate) async fn write(&self, item: B::Item) -> Result<B::Out, StoreError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut s = self.0.state();
            s.queue.push(Job { item, reply });
            let wanted = s.lanes == 0 || s.slow > 0 || s.queue.len() >= B::MAX;
            s.take_lane(wanted)
        };
        if start {
            spawn_lane(&self.0);
        }
        answer
            .await
            .map_err(|_| StoreError::Backend("the write's batch did not finish".into()))?
    }
}

impl<B: Batch> Inner<B> {
    fn state(&self) -> std::sync::MutexGuard<'_, State<B>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<B: Batch> State<B> {
    /// Counts a lane to start when `wanted` and one is free.
    fn take_lane(&mut self, wanted: bool) -> bool {
        let start = wanted && self.lanes < LANES;
        self.lanes += usize::from(start);
        start
    }
}

/// Starts a lane counted in [`State::lanes`]. A function of its own: a lane
/// starts another from inside [`Lane::drain`].
fn spawn_lane<B: Batch>(inner: &Arc<Inner<B>>) {
    tokio::spawn(Lane::new(inner).drain());
}

/// A running lane. Should its task end early (a panic, the runtime
/// stopping), the lane is given back, and another starts if writes wait.
struct Lane<B: Batch> {
    inner: Arc<Inner<B>>,
    /// Given back by [`Lane::drain`] itself.
    done: bool,
    /// Counted in [`State::slow`].
    slow: bool,
}

impl<B: Batch> Lane<B> {
    fn new(inner: &Arc<Inner<B>>) -> Lane<B> {
        Lane {
            inner: inner.clone(),
            done: false,
            slow: false,
        }
    }

    async fn drain(mut self) {
        loop {
            let mut jobs = {
                let mut s = self.inner.state();
                if s.queue.is_empty() {
                    // In the same critical section as the check: a write
                    // queued after it finds the lane free and starts one.
                    s.lanes -= 1;
                    self.done = true;
                    return;
                }
                let n = s.queue.len().min(B::MAX);
                s.queue.drain(..n).collect::<Vec<_>>()
            };
            // A caller that went away (its client, the request timeout)
            // gets nothing written for it.
            jobs.retain(|job| !job.reply.is_closed());
            if jobs.is_empty() {
                continue;
            }
            let write = B::write(&self.inner.pool, jobs);
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

impl<B: Batch> Drop for Lane<B> {
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

/// `run` within [`STATEMENT_TIMEOUT`], and again on another connection
/// while the one it ran on was broken (each lane's idle connection may
/// have broken at once). A batch given up is dropped mid-way, and the pool
/// puts its connection right or closes it ([`crate::pg_pool`]); the lane
/// goes on.
pub(crate) async fn attempt<T, F>(
    pool: &PgConns,
    mut run: impl FnMut(PgConns) -> F,
) -> Result<T, sqlx::Error>
where
    F: Future<Output = Result<T, sqlx::Error>>,
{
    let mut outcome = within(run(pool.clone())).await;
    for _ in 0..LANES {
        match &outcome {
            Err(e) if broken(e) => outcome = within(run(pool.clone())).await,
            _ => break,
        }
    }
    outcome
}

async fn within<T>(f: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    tokio::time::timeout(STATEMENT_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the batch took too long",
            )))
        })
}

/// The database refused a batch for one of its rows (a constraint) or for
/// the moment (a deadlock, a serialisation failure): worth writing each on
/// its own, so that only that row's request fails. Anything else (no
/// server, a timeout, a statement cancelled) would only be waited out once
/// a write.
pub(crate) fn for_a_row(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.code().is_some_and(|c| c.starts_with("23") || c.starts_with("40")))
}

/// Client-credentials tokens, several to a statement
/// ([`crate::auth::pg_write_cc_tokens`]).
pub(crate) struct Tokens;

/// One token to write.
pub(crate) struct CcToken {
    pub(crate) jti: Option<(String, String, i64)>,
    pub(crate) revision: i64,
    pub(crate) token: TokenRecord,
}

impl Lanes<Tokens> {
    /// True when the token was written and its JWT id (if any) spent; false
    /// with nothing written, as [`crate::AuthStore::insert_cc_token`].
    pub(crate) async fn insert(
        &self,
        jti: Option<JtiUse<'_>>,
        revision: i64,
        t: &TokenRecord,
    ) -> Result<bool, StoreError> {
        self.write(CcToken {
            jti: jti.map(|j| {
                (
                    j.scope.to_string(),
                    j.jti.to_string(),
                    crate::auth::jti_expiry(j.expires_at),
                )
            }),
            revision,
            token: t.clone(),
        })
        .await
    }
}

impl Batch for Tokens {
    type Item = CcToken;
    type Out = bool;
    /// A batch's message stays within one TLS record (16 kB; about 400
    /// bytes a token with its JWT id): the rest of a message split across
    /// records goes out as a segment of its own, which Nagle's algorithm
    /// holds until the server acknowledges the first, and the server
    /// delays that acknowledgement by 40 ms waiting for the rest (sqlx's
    /// sockets leave `TCP_NODELAY` off). Measured: 50 ms at the 99th
    /// percentile at 64 connections with no cap.
    const MAX: usize = 24;
    const APPLICATION_NAME: &'static str = "aspen tokens";
    /// Always the token statement's generic plan: PostgreSQL would
    /// otherwise plan it for each execution (its estimate for an array
    /// parameter's rows is far above one token's, so the generic plan never
    /// looks cheaper), 150 µs of planning for 55 µs of execution (measured,
    /// BENCHMARKS.md). The generic plan finds each client by its primary
    /// key, as a custom one does.
    const OPTIONS: &'static [(&'static str, &'static str)] =
        &[("plan_cache_mode", "force_generic_plan")];

    async fn write(pool: &PgConns, mut jobs: Vec<Job<Tokens>>) {
        // Sorted by JWT id, so that two statements take the ids' locks in
        // one order and cannot deadlock; a repeat is then next to its first
        // use.
        jobs.sort_by(|a, b| a.item.jti.cmp(&b.item.jti));
        let mut batch: Vec<Job<Tokens>> = Vec::with_capacity(jobs.len());
        for job in jobs {
            let repeat = matches!((&job.item.jti, batch.last()),
                (Some((scope, id, _)), Some(Job { item: CcToken { jti: Some((s, i, _)), .. }, .. }))
                    if scope == s && id == i);
            if repeat {
                job.answer(Ok(false));
            } else {
                batch.push(job);
            }
        }
        match attempt(pool, |p| statement(p, &batch)).await {
            Ok(mut written) => {
                written.sort_unstable();
                for job in batch {
                    let ok = written.binary_search(&job.item.token.id).is_ok();
                    job.answer(Ok(ok));
                }
            }
            Err(e) if batch.len() > 1 && for_a_row(&e) => {
                for job in batch {
                    let id = job.item.token.id;
                    let outcome = attempt(pool, |p| statement(p, std::slice::from_ref(&job)))
                        .await
                        .map(|written| written.contains(&id))
                        .map_err(StoreError::from);
                    job.answer(outcome);
                }
            }
            Err(e) => {
                let e = StoreError::from(e);
                for job in batch {
                    job.answer(Err(e.clone()));
                }
            }
        }
    }
}

/// The tokens' one statement ([`crate::auth::pg_write_cc_tokens`]).
async fn statement(pool: PgConns, jobs: &[Job<Tokens>]) -> Result<Vec<i64>, sqlx::Error> {
    let items: Vec<&CcToken> = jobs.iter().map(|j| &j.item).collect();
    crate::auth::pg_write_cc_tokens(&pool, &items).await
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
