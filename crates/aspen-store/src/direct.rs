//! SQLite on the request's own thread, for the hot statements (issue 15).
//!
//! sqlx runs every SQLite connection on a worker thread of its own, so each
//! statement costs a context switch each way plus a release ping (9–11
//! switches per client-credentials token, BENCHMARKS.md). A statement on a
//! warm page cache takes microseconds, so the hot ones run here instead, on
//! the calling thread, with the same SQL text as the sqlx path and the same
//! column mapping ([`crate::cols`]).
//!
//! Nothing here waits for a lock. The connections have no busy handler,
//! and whatever meets `SQLITE_BUSY` or `SQLITE_LOCKED` (another connection
//! writing, a migration) answers `Ok(None)` with nothing written: the caller
//! then takes the sqlx path, which waits on sqlx's thread as before. So a
//! request thread never sleeps here, and every rule the SQL enforces
//! (constraints, the compare-and-sets, `changes()`) holds on either path.
//!
//! Writes are group-committed: a write joins a queue and yields once, so
//! that the other requests on its thread reach theirs, and the first to
//! resume commits all of them in one transaction (each in a savepoint of
//! its own only when one of them fails: see [`Direct::commit`]). A
//! token touches about eight B-tree pages, most of which the next token
//! touches too; one commit for several writes writes those pages to the WAL
//! once (BENCHMARKS.md has the frames per token).
//!
//! Commits here do not checkpoint (that `fsync`s): a WAL hook notes the
//! log's size, and past the lane's threshold a blocking task runs a
//! passive checkpoint in two passes ([`Direct::checkpoint`]): the bulk of
//! the copy while writes go on, then the little the log grew meanwhile while
//! they wait in the queue, so that the log starts again from the beginning.

use std::cell::{Cell, RefCell};
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OpenFlags, ToSql};
use tokio::sync::oneshot;

use crate::StoreError;

/// WAL pages past which a commit starts a checkpoint (SQLite's own default
/// is 1,000). A checkpoint copies each page once however often the log
/// holds it, then `fsync`s twice; at 1,000 pages checkpoints took 13% of
/// a token's server CPU (issue 15, eighth pass). The log's file grows to
/// this many pages (4 kB each) and stays that size.
pub(crate) const CHECKPOINT_PAGES: c_int = 8000;
/// Idle reader connections kept (one per thread that reads at once).
const IDLE_READERS: usize = 4;
/// Distinct statements each connection keeps prepared.
const STATEMENT_CACHE: usize = 64;

thread_local! {
    /// Pages in the WAL after this thread's last commit (the hook runs
    /// inside `COMMIT`, on the committing thread).
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

tokio::task_local! {
    /// The read transaction a task's reads on the lane share, inside
    /// [`one_snapshot`]; none until its first read.
    static SNAPSHOT: RefCell<Option<Held>>;
}

/// Runs `f` with its reads on SQLite's direct lane in one read transaction,
/// begun by the first and ended when `f` is done (or dropped): they see one
/// snapshot, and the transaction's locks are taken and released once
/// (issue 15, twenty-sixth pass: an AIS page's token and page read each
/// took and released WAL read locks, two `fcntl`s each, 9% of the page's
/// server CPU). For a task that only reads, and whose reads follow one
/// another without waiting on anything else (a write of its own would not
/// be seen by its later reads, and a long wait would hold the snapshot and
/// its connection). Reads through sqlx, and PostgreSQL, are unaffected.
pub async fn one_snapshot<F: std::future::Future>(f: F) -> F::Output {
    SNAPSHOT.scope(RefCell::new(None), f).await
}

/// A reader connection inside the read transaction of a task's
/// [`one_snapshot`]; committed and back to the idle ones when dropped.
struct Held {
    lane: Arc<Inner>,
    /// Taken only to close the connection uncommitted (a read failed) or
    /// to commit it (dropped): in the task's slot it is always there.
    c: Option<Connection>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(c) = self.c.take()
            && run(&c, "COMMIT", &[], &mut |_| Ok(())).is_ok()
        {
            Direct(self.lane.clone()).idle(c);
        }
    }
}

fn wal_grew(_: &rusqlite::hooks::Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

/// A statement list of ours: the text sqlx runs (`BEGIN IMMEDIATE; …;
/// COMMIT`) and its statements, to run here one by one.
pub(crate) struct Script {
    pub(crate) text: String,
    statements: Vec<String>,
}

impl Script {
    /// Splits at each `;` outside a quoted literal (the scripts are ours);
    /// `BEGIN IMMEDIATE` and `COMMIT` are [`Direct::write`]'s own.
    pub(crate) fn new(text: String) -> Script {
        let mut statements = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for c in text.chars() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                ';' if !quoted => statements.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        statements.push(cur);
        let statements = statements
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s != "BEGIN IMMEDIATE" && s != "COMMIT")
            .collect();
        Script { text, statements }
    }
}

pub(crate) struct Direct(Arc<Inner>);

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<Connection>>,
    queue: Mutex<Vec<Job>>,
    leading: AtomicBool,
    readers: Mutex<Vec<Connection>>,
    checkpointer: Mutex<Option<Connection>>,
    /// Where the checkpoint is: [`IDLE`], [`COPYING`], [`COPIED`] or
    /// [`HOLDING`] (see [`Direct::checkpoint`]).
    stage: AtomicU8,
}

/// No checkpoint running.
const IDLE: u8 = 0;
/// The bulk pass: writes go on meanwhile.
const COPYING: u8 = 1;
/// The bulk pass is done; the next commit starts the catch-up.
const COPIED: u8 = 2;
/// The catch-up: writes wait in the queue.
const HOLDING: u8 = 3;

/// A write waiting for the next commit ([`Direct::write`]).
struct Job {
    script: &'static Script,
    params: Vec<Param>,
    reply: oneshot::Sender<Result<Option<Vec<Value>>, StoreError>>,
}

/// A queued write's turn to lead the commit: taken when its caller has
/// yielded once, or when the caller goes away first, so that no queued
/// write waits for a commit nobody runs.
struct Turn<'a>(&'a Direct);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.lead();
    }
}

/// Ends a checkpoint's pass: moves it to its next stage and, after the
/// catch-up, commits the writes it held. After the bulk pass, which held
/// none, the writers' own threads go on leading: the pass's thread taking
/// the queue over there (committing from another thread than the writers')
/// cost tls_client_auth tokens at 64 connections about 0.75 ms of p99
/// (issue 15, twenty-eighth pass).
struct Resume {
    inner: Arc<Inner>,
    catch_up: bool,
}

impl Drop for Resume {
    fn drop(&mut self) {
        if self.catch_up {
            self.inner.stage.store(IDLE, Ordering::SeqCst);
            Direct(self.inner.clone()).lead();
        } else {
            self.inner.stage.store(COPIED, Ordering::SeqCst);
        }
    }
}

/// Clears its flag when dropped.
struct Clear<'a>(&'a AtomicBool);

impl Drop for Clear<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Backend("the direct lane's lock was poisoned".into())
}

/// Why a statement did not run here: the sqlx path is to run it.
fn busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn to_store(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()))
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

/// `Ok(None)` for a busy database, else the result or the error.
fn settle<T>(r: rusqlite::Result<T>) -> Result<Option<T>, StoreError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if busy(&e) => Ok(None),
        Err(e) => Err(to_store(e)),
    }
}

/// A lane connection, or none when the file cannot be opened this way (the
/// caller then takes the sqlx path, whose connections are open already).
fn open_or_fall_back(path: &Path) -> Option<Connection> {
    open(path)
        .inspect_err(|e| tracing::warn!(error = %e, "SQLite direct lane unavailable; using sqlx"))
        .ok()
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // As sqlx's connections (`connect_with_schema`), but with no busy
    // handler (rusqlite sets one of five seconds): see the module's comment.
    c.busy_timeout(std::time::Duration::ZERO)?;
    // A group commit's savepoint journals stay in memory (they spilled to
    // files created and unlinked under /var/tmp); the lane's statements
    // are small, unlike the bulk loads on sqlx's connections.
    c.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;",
    )?;
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(c)
}

/// The lane's writer: checkpoints are its WAL hook's, not SQLite's own.
fn open_writer(path: &Path) -> Option<Connection> {
    let c = open_or_fall_back(path)?;
    c.wal_hook(Some(wal_grew));
    Some(c)
}

/// Runs one statement of ours with `params`, `$n` (as sqlx numbers them)
/// bound to `params[n - 1]`, handing each row to `row`.
fn run(
    c: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    row: &mut dyn FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut stmt = c.prepare_cached(sql)?;
    for i in 1..=stmt.parameter_count() {
        // SQLite numbers `$n` parameters in order of first appearance.
        let n = stmt
            .parameter_name(i)
            .and_then(|name| name[1..].parse::<usize>().ok())
            .unwrap_or(i);
        let p = n
            .checked_sub(1)
            .and_then(|k| params.get(k))
            .ok_or(rusqlite::Error::InvalidParameterCount(n, params.len()))?;
        stmt.raw_bind_parameter(i, p)?;
    }
    if stmt.column_count() == 0 {
        stmt.raw_execute()?;
        return Ok(());
    }
    let mut rows = stmt.raw_query();
    while let Some(r) = rows.next()? {
        row(r)?;
    }
    Ok(())
}

/// Runs `jobs` in one transaction and commits it, answering each job's
/// rows. With `apart`, each job runs in a savepoint of its own and a failed
/// one is rolled back to it and answered its error; otherwise, and when a
/// failure took the transaction with it, the first failure is the answer
/// for all, with the transaction left for the caller to roll back.
fn attempt(
    c: &Connection,
    jobs: &[Job],
    apart: bool,
) -> rusqlite::Result<Vec<rusqlite::Result<Vec<Value>>>> {
    let exec = |sql: &str| c.prepare_cached(sql).and_then(|mut s| s.execute([]));
    exec("BEGIN IMMEDIATE")?;
    let mut answers = Vec::with_capacity(jobs.len());
    for j in jobs {
        if apart {
            exec("SAVEPOINT job")?;
        }
        let refs: Vec<&dyn ToSql> = j.params.iter().map(|p| p as _).collect();
        let mut rows = Vec::new();
        let ran = j.script.statements.iter().try_for_each(|s| {
            run(c, s, &refs, &mut |r| {
                rows.push(r.get::<_, Value>(0)?);
                Ok(())
            })
        });
        match ran {
            Ok(()) => answers.push(Ok(rows)),
            // An I/O error, or a full disk under a statement with no
            // journal of its own, rolls back the whole transaction.
            Err(e) if !apart || c.is_autocommit() => return Err(e),
            Err(e) => {
                exec("ROLLBACK TO job")?;
                answers.push(Err(e));
            }
        }
        if apart {
            exec("RELEASE job")?;
        }
    }
    exec("COMMIT")?;
    Ok(answers)
}

/// Ends a transaction left open, if there is one; false when the
/// connection cannot, and is not to be used again.
fn roll_back(c: &Connection) -> bool {
    c.is_autocommit() || c.execute_batch("ROLLBACK").is_ok()
}

impl Direct {
    /// For a database in a file; none for an in-memory one (its
    /// connections would each see a database of their own).
    pub(crate) fn new(path: &Path) -> Option<Direct> {
        let name = path.to_string_lossy();
        if name.is_empty() || name.contains(":memory:") || name.contains("mode=memory") {
            return None;
        }
        // The writer is opened now, so that a file this lane cannot open is
        // found once, at start, and not again on every request.
        let writer = open_writer(path)?;
        Some(Direct(Arc::new(Inner {
            path: path.to_path_buf(),
            writer: Mutex::new(Some(writer)),
            queue: Mutex::new(Vec::new()),
            leading: AtomicBool::new(false),
            readers: Mutex::new(Vec::new()),
            checkpointer: Mutex::new(None),
            stage: AtomicU8::new(IDLE),
        })))
    }

    /// Runs `script` with `params` in a write transaction on the writer
    /// connection, with whatever other writes are waiting (group commit:
    /// one commit, and the pages the writes share, written once to the
    /// WAL). Answers the first column of each row the script returns, or
    /// `Ok(None)`, with nothing written, when the database is busy.
    ///
    /// The write runs even if the caller goes away once it is queued (as the
    /// sqlx path runs it in a task of its own): a statement list is never
    /// left half done.
    pub(crate) async fn write(
        &self,
        script: &'static Script,
        params: Vec<Param>,
    ) -> Result<Option<Vec<Value>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.0.queue.lock().map_err(poisoned)?.push(Job {
            script,
            params,
            reply,
        });
        let turn = Turn(self);
        // The other requests on this thread reach their writes meanwhile
        // and join this commit.
        tokio::task::yield_now().await;
        drop(turn);
        answer
            .await
            .map_err(|_| StoreError::Backend("a queued write was dropped".into()))?
    }

    /// Runs the queued writes until none is left, unless another thread is
    /// already at it (that one looks again once it is done). While a
    /// checkpoint holds writes nothing is committed here; the checkpoint
    /// commits the queue when it is done. The stage is read only once this
    /// thread leads (the commit that starts the hold sets [`HOLDING`] while
    /// it still leads, so no commit can slip in after it), and again after
    /// letting go, so that a thread that saw the hold does not spin on it
    /// and the checkpoint's own call here finds the way clear.
    fn lead(&self) {
        loop {
            if self.0.leading.swap(true, Ordering::SeqCst) {
                return;
            }
            {
                // Cleared however the commit ends, so a later write can lead.
                let _leading = Clear(&self.0.leading);
                if self.0.stage.load(Ordering::SeqCst) != HOLDING {
                    let jobs = self
                        .0
                        .queue
                        .lock()
                        .map(|mut q| std::mem::take(&mut *q))
                        .unwrap_or_default();
                    if !jobs.is_empty() {
                        self.commit(jobs);
                    }
                }
            }
            if self.0.stage.load(Ordering::SeqCst) == HOLDING
                || self.0.queue.lock().map(|q| q.is_empty()).unwrap_or(true)
            {
                return;
            }
        }
    }

    /// One transaction for `jobs`, all together with no savepoint first:
    /// under a savepoint SQLite copies each page a job changes to a journal
    /// before changing it (about 4,000 instructions a page, eight pages a
    /// token; issue 15, fourteenth pass). If a job fails and there are
    /// others, all of it is rolled back and the jobs run again, each in a
    /// savepoint of its own, so that one's failure undoes only its own
    /// writes. A job alone never has one: its failure undoes the commit.
    fn commit(&self, jobs: Vec<Job>) {
        let mut slot = match self.0.writer.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if slot.is_none() {
            *slot = open_writer(&self.0.path);
        }
        let Some(c) = slot.as_ref() else {
            for j in jobs {
                let _ = j.reply.send(Ok(None));
            }
            return;
        };
        let mut outcome = attempt(c, &jobs, false);
        if jobs.len() > 1
            && let Err(e) = &outcome
            && !busy(e)
            && roll_back(c)
        {
            outcome = attempt(c, &jobs, true);
        }
        let answers = match outcome {
            Ok(answers) => answers,
            Err(e) => {
                if !roll_back(c) {
                    *slot = None;
                }
                let answer = settle::<Vec<Value>>(Err(e));
                for j in jobs {
                    let _ = j.reply.send(answer.clone());
                }
                return;
            }
        };
        drop(slot);
        for (j, a) in jobs.into_iter().zip(answers) {
            let _ = j.reply.send(settle(a));
        }
        let pages = WAL_PAGES.replace(0);
        match self.0.stage.load(Ordering::SeqCst) {
            COPIED => self.checkpoint(true),
            IDLE if pages >= CHECKPOINT_PAGES => self.checkpoint(false),
            _ => {}
        }
    }

    /// Runs one read-only statement of ours on a reader connection;
    /// `Ok(None)` when the database is busy.
    pub(crate) fn read(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        row: &mut dyn FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
    ) -> Result<Option<()>, StoreError> {
        self.with_reader(|c, _| run(c, sql, params, row))
    }

    /// `work` on a reader connection, with whether that connection is
    /// already inside a read transaction: the one [`one_snapshot`] keeps
    /// for its task's reads on this lane (begun here by its first read),
    /// or none, on a connection of its own.
    fn with_reader<T>(
        &self,
        work: impl FnOnce(&Connection, bool) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        if SNAPSHOT.try_with(|_| ()).is_ok() {
            return SNAPSHOT.with(|slot| match slot.try_borrow_mut() {
                Ok(mut slot) => self.with_snapshot(&mut slot, work),
                Err(_) => self.with_own_reader(work),
            });
        }
        self.with_own_reader(work)
    }

    /// `work` on the task's snapshot, begun now if the task has none; a
    /// snapshot of another lane (another store in this process) is left
    /// alone. A connection that failed half-way is closed, its read
    /// transaction with it, and the task's next read begins another.
    fn with_snapshot<T>(
        &self,
        slot: &mut Option<Held>,
        work: impl FnOnce(&Connection, bool) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        if slot
            .as_ref()
            .is_some_and(|h| !Arc::ptr_eq(&h.lane, &self.0))
        {
            return self.with_own_reader(work);
        }
        if slot.is_none() {
            let Some(c) = self.reader() else {
                return Ok(None);
            };
            if let Err(e) = run(&c, "BEGIN", &[], &mut |_| Ok(())) {
                return settle(Err(e));
            }
            *slot = Some(Held {
                lane: self.0.clone(),
                c: Some(c),
            });
        }
        let Some(held) = slot.as_ref().and_then(|h| h.c.as_ref()) else {
            return Ok(None);
        };
        let r = work(held, true);
        if r.is_err() {
            // Closed, not committed: nothing of it goes back to the idle ones.
            if let Some(mut h) = slot.take() {
                h.c = None;
            }
        }
        settle(r)
    }

    /// `work` on a reader connection of its own, which goes back to the idle
    /// ones only if `work` succeeded: a connection that failed half-way
    /// (inside a read transaction, say) is closed, never handed out again.
    fn with_own_reader<T>(
        &self,
        work: impl FnOnce(&Connection, bool) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        let Some(c) = self.reader() else {
            return Ok(None);
        };
        let r = work(&c, false);
        if r.is_ok() {
            self.idle(c);
        }
        settle(r)
    }

    /// An idle reader connection, or a new one; none when the file cannot
    /// be opened this way.
    fn reader(&self) -> Option<Connection> {
        let idle = self.0.readers.lock().ok().and_then(|mut r| r.pop());
        idle.or_else(|| open_or_fall_back(&self.0.path))
    }

    /// A reader connection, outside any transaction, back to the idle ones
    /// (or closed, past [`IDLE_READERS`]).
    fn idle(&self, c: Connection) {
        if let Ok(mut idle) = self.0.readers.lock()
            && idle.len() < IDLE_READERS
        {
            idle.push(c);
        }
    }

    /// One pass of a passive checkpoint on a blocking thread: the bulk
    /// pass, or with `catch_up` the second, each started by a commit.
    ///
    /// A checkpoint is two passes. The first ([`COPYING`]) copies the log
    /// as it was when the pass began back into the database and `fsync`s
    /// both files while writes go on, appending to the log. The next
    /// commit after it starts the second ([`HOLDING`]): writes wait in the
    /// queue (as SQLite's own checkpoint holds up the connection that
    /// commits) while it copies what the log gained during the first, so
    /// that it catches up and the next write starts the log again from the
    /// beginning; the second pass's thread then commits the writes it held.
    /// The wait is the second pass's, a small part of the copy: holding
    /// writes for the whole of it gave private_key_jwt tokens a p99 of
    /// 33–37 ms at 64 connections, against 15 ms now (issue 15,
    /// twenty-eighth pass).
    fn checkpoint(&self, catch_up: bool) {
        let (from, during) = if catch_up {
            (COPIED, HOLDING)
        } else {
            (IDLE, COPYING)
        };
        if self
            .0
            .stage
            .compare_exchange(from, during, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        // Dropped when the pass is done, or with the task if the runtime
        // drops it unrun (shutting down): either way the checkpoint moves on
        // and held writes are committed, never left waiting.
        let done = Resume {
            inner: self.0.clone(),
            catch_up,
        };
        let run = move || {
            let inner = &done.inner;
            if let Ok(mut slot) = inner.checkpointer.lock() {
                if slot.is_none() {
                    *slot = open_or_fall_back(&inner.path);
                }
                if let Some(c) = slot.as_ref()
                    && let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    && !busy(&e)
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                    *slot = None;
                }
            }
            drop(done);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(run)),
            Err(_) => run(),
        }
    }
}

/// One parameter of a statement list that both paths bind (the sqlx path
/// with [`bind_params`]).
#[derive(Clone)]
pub(crate) enum Param {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Blob(Vec<u8>),
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Text(s) => s.to_sql(),
            Param::OptText(s) => s.to_sql(),
            Param::Int(i) => i.to_sql(),
            Param::OptInt(i) => i.to_sql(),
            Param::Blob(b) => b.to_sql(),
        }
    }
}

/// Binds `params` in order to a sqlx query.
pub(crate) fn bind_params<'q, DB: sqlx::Database>(
    mut q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    params: Vec<Param>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for p in params {
        q = match p {
            Param::Text(s) => q.bind(s),
            Param::OptText(s) => q.bind(s),
            Param::Int(i) => q.bind(i),
            Param::OptInt(i) => q.bind(i),
            Param::Blob(b) => q.bind(b),
        };
    }
    q
}

/// Rows mapped as a statement steps; the first mapping error stops it
/// and is what the read answers.
struct Collect<T> {
    out: Vec<T>,
    failed: Option<StoreError>,
}

impl<T> Collect<T> {
    fn new() -> Self {
        Collect {
            out: Vec::new(),
            failed: None,
        }
    }

    fn push<F>(&mut self, map: &F, r: &rusqlite::Row<'_>) -> rusqlite::Result<()>
    where
        F: Fn(&rusqlite::Row<'_>) -> Result<T, StoreError> + ?Sized,
    {
        match map(r) {
            Ok(v) => {
                self.out.push(v);
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e);
                Err(rusqlite::Error::InvalidQuery)
            }
        }
    }

    fn finish(self, done: Result<Option<()>, StoreError>) -> Result<Option<Vec<T>>, StoreError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        Ok(done?.map(|()| self.out))
    }
}

impl Direct {
    /// Every row of one read-only statement of ours through `map` (a
    /// [`crate::cols::Cols`] mapping, the one the sqlx path uses);
    /// `Ok(None)` when the database is busy.
    pub(crate) fn read_all<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        map: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<Vec<T>>, StoreError> {
        let mut rows = Collect::new();
        let done = self.read(sql, params, &mut |r| rows.push(&map, r));
        rows.finish(done)
    }

    /// Two read-only statements of ours, one after the other in one read
    /// transaction, so both see the same snapshot (as the subqueries of one
    /// statement do); each row to `row` as it is stepped on, with whether
    /// it is the second statement's. The first error `row` gives stops the
    /// read and is what it answers. `Ok(None)` when the database is busy
    /// (some rows may have gone to `row` by then).
    pub(crate) fn read_pair(
        &self,
        first: &str,
        second: &str,
        params: &[&dyn ToSql],
        row: &mut dyn FnMut(bool, &rusqlite::Row<'_>) -> Result<(), StoreError>,
    ) -> Result<Option<()>, StoreError> {
        let mut failed = None;
        let done = self.with_reader(|c, in_snapshot| {
            if !in_snapshot {
                run(c, "BEGIN", &[], &mut |_| Ok(()))?;
            }
            for (sql, is_second) in [(first, false), (second, true)] {
                run(c, sql, params, &mut |r| {
                    row(is_second, r).map_err(|e| {
                        failed = Some(e);
                        rusqlite::Error::InvalidQuery
                    })
                })?;
            }
            if in_snapshot {
                return Ok(());
            }
            run(c, "COMMIT", &[], &mut |_| Ok(()))
        });
        match failed {
            Some(e) => Err(e),
            None => done,
        }
    }

    /// As [`Direct::read_all`], for a statement that finds at most one row.
    pub(crate) fn read_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
        map: impl Fn(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<Option<T>>, StoreError> {
        Ok(self
            .read_all(sql, params, map)?
            .map(|rows| rows.into_iter().next()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQLite linked in is built as `.cargo/config.toml` asks: each
    /// connection's page cache is its own, with no process-wide lock taken
    /// for every page a read touches, and allocations keep no statistics
    /// behind another lock (issue 15, twenty-first pass: 3% of an AIS
    /// page's server CPU). Both the direct lane and sqlx link this one
    /// library. A build that loses the setting fails here.
    #[test]
    fn sqlite_is_built_without_process_wide_locks_on_reads() {
        let c = Connection::open_in_memory().unwrap();
        let options: Vec<String> = c
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    /// Two inserts a write; `$1` and `$2` the keys.
    static PAIR: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
        Script::new("INSERT INTO t (k) VALUES ($1); INSERT INTO t (k) VALUES ($2); SELECT 1".into())
    });

    /// A lane over a new database whose table `t` holds the key "taken".
    fn lane_over_taken() -> (tempfile::TempDir, PathBuf, Direct) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY); \
                 INSERT INTO t VALUES ('taken');",
            )
            .unwrap();
        let lane = Direct::new(&path).unwrap();
        (dir, path, lane)
    }

    fn keys(path: &Path) -> Vec<String> {
        let c = Connection::open(path).unwrap();
        let mut s = c.prepare("SELECT k FROM t ORDER BY k").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Writes that share a commit run together with no savepoint; when one
    /// fails half-way (its first insert written, its second refused), the
    /// commit runs again with each in a savepoint, so that the failed one's
    /// first insert is undone and every other write is in, once.
    #[tokio::test]
    async fn a_write_failing_half_way_in_a_shared_commit_is_undone_alone() {
        let (_dir, path, lane) = lane_over_taken();
        let writes = (0..8).map(|i| {
            let second = if i == 5 {
                "taken".into()
            } else {
                format!("b{i}")
            };
            lane.write(
                &PAIR,
                vec![Param::Text(format!("a{i}")), Param::Text(second)],
            )
        });
        // On this test's one thread every write is queued before the first
        // one leads: one commit for all eight.
        let answers = futures_util::future::join_all(writes).await;
        for (i, a) in answers.into_iter().enumerate() {
            match i {
                5 => assert!(matches!(a, Err(StoreError::Conflict(_))), "{a:?}"),
                _ => assert_eq!(a.unwrap().unwrap().len(), 1, "write {i}"),
            }
        }
        let mut want: Vec<String> = (0..8)
            .filter(|&i| i != 5)
            .flat_map(|i| [format!("a{i}"), format!("b{i}")])
            .collect();
        want.push("taken".into());
        want.sort();
        assert_eq!(keys(&path), want);
    }

    /// A write alone that fails half-way leaves nothing behind.
    #[tokio::test]
    async fn a_write_alone_failing_half_way_leaves_nothing() {
        let (_dir, path, lane) = lane_over_taken();
        let a = lane
            .write(
                &PAIR,
                vec![Param::Text("a".into()), Param::Text("taken".into())],
            )
            .await;
        assert!(matches!(a, Err(StoreError::Conflict(_))), "{a:?}");
        assert_eq!(keys(&path), ["taken"]);
    }

    /// A write of about 400 WAL pages (its key in the table and its index).
    static BIG: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
        Script::new("INSERT INTO t (k) VALUES ($1 || hex(randomblob(400000))); SELECT 1".into())
    });

    /// Holds the lane's checkpoint connection on a thread of its own until
    /// the returned sender is dropped, so that a checkpoint's pass waits.
    fn hold_checkpointer(lane: &Direct) -> std::sync::mpsc::Sender<()> {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (locked, held) = std::sync::mpsc::channel();
        let inner = lane.0.clone();
        std::thread::spawn(move || {
            let _c = inner.checkpointer.lock().unwrap();
            locked.send(()).unwrap();
            let _ = wait.recv();
        });
        held.recv().unwrap();
        release
    }

    async fn reach(lane: &Direct, stage: u8) {
        for _ in 0..1_000 {
            if lane.0.stage.load(Ordering::SeqCst) == stage {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the checkpoint never reached stage {stage}");
    }

    async fn pair(lane: &Direct, a: &str, b: &str) -> Result<Option<Vec<Value>>, StoreError> {
        lane.write(&PAIR, vec![Param::Text(a.into()), Param::Text(b.into())])
            .await
    }

    /// A checkpoint's bulk pass lets writes commit while it copies; only
    /// its catch-up holds them, commits them when it is done, and leaves
    /// the log to start again from the beginning.
    #[tokio::test]
    async fn writes_wait_only_for_the_checkpoints_catch_up() {
        let (_dir, path, lane) = lane_over_taken();
        let wait = std::time::Duration::from_secs(10);
        let bulk = hold_checkpointer(&lane);
        let mut n = 0;
        while lane.0.stage.load(Ordering::SeqCst) == IDLE {
            n += 1;
            assert!(n < 100, "{n} big writes and no checkpoint");
            lane.write(&BIG, vec![Param::Text(format!("big{n}"))])
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(lane.0.stage.load(Ordering::SeqCst), COPYING);
        tokio::time::timeout(wait, pair(&lane, "a1", "b1"))
            .await
            .expect("a write waited for the bulk pass")
            .unwrap()
            .unwrap();
        assert_eq!(lane.0.stage.load(Ordering::SeqCst), COPYING);
        drop(bulk);
        reach(&lane, COPIED).await;

        let catch_up = hold_checkpointer(&lane);
        // The commit that finds the bulk pass done starts the catch-up.
        pair(&lane, "a2", "b2").await.unwrap().unwrap();
        assert_eq!(lane.0.stage.load(Ordering::SeqCst), HOLDING);
        // Queued, so it is committed though its caller stops waiting.
        let short = std::time::Duration::from_millis(300);
        assert!(
            tokio::time::timeout(short, pair(&lane, "a3", "b3"))
                .await
                .is_err(),
            "a write committed during the catch-up"
        );
        assert!(!keys(&path).contains(&"a3".to_string()));
        drop(catch_up);
        reach(&lane, IDLE).await;
        // The catch-up's thread commits what it held once it has let go.
        let mut tries = 0;
        while !keys(&path).contains(&"a3".to_string()) {
            tries += 1;
            assert!(tries < 1_000, "the held write was never committed");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }

        pair(&lane, "a4", "b4").await.unwrap().unwrap();
        let log: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        assert!(log < 100, "the log was not started again: {log} frames");
    }

    fn count(lane: &Direct) -> i64 {
        lane.read_all("SELECT count(*) FROM t", &[], |r| {
            r.get::<_, i64>(0).map_err(to_store)
        })
        .unwrap()
        .unwrap()[0]
    }

    fn count_pair(lane: &Direct) -> (i64, i64) {
        let mut seen = Vec::new();
        lane.read_pair(
            "SELECT count(*) FROM t",
            "SELECT count(*) FROM t",
            &[],
            &mut |_, r| {
                seen.push(r.get::<_, i64>(0).map_err(to_store)?);
                Ok(())
            },
        )
        .unwrap()
        .unwrap();
        (seen[0], seen[1])
    }

    fn insert_elsewhere(path: &Path, k: &str) {
        Connection::open(path)
            .unwrap()
            .execute("INSERT INTO t (k) VALUES (?1)", [k])
            .unwrap();
    }

    /// No read transaction is left open: a checkpoint can copy the whole
    /// log back and empty it (a reader still inside one keeps it busy).
    fn no_reader_in_a_transaction(path: &Path) {
        let busy: i64 = Connection::open(path)
            .unwrap()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0, "a read transaction is still open");
    }

    /// Inside [`one_snapshot`] a task's reads, a statement pair's included,
    /// see the database as its first read found it, whatever is committed
    /// meanwhile; once it is done, reads see the commit, and the snapshot's
    /// connection is back with the idle ones outside any transaction.
    #[tokio::test]
    async fn a_tasks_reads_share_one_snapshot() {
        let (_dir, path, lane) = lane_over_taken();
        one_snapshot(async {
            assert_eq!(count(&lane), 1);
            insert_elsewhere(&path, "meanwhile");
            assert_eq!(count_pair(&lane), (1, 1));
            assert_eq!(count(&lane), 1);
        })
        .await;
        assert_eq!(count(&lane), 2);
        assert_eq!(count_pair(&lane), (2, 2));
        no_reader_in_a_transaction(&path);
        let idle = lane.0.readers.lock().unwrap();
        assert!(!idle.is_empty());
        assert!(idle.iter().all(Connection::is_autocommit));
        drop(idle);
        // Without it each read sees what is committed when it starts.
        assert_eq!(count(&lane), 2);
        insert_elsewhere(&path, "later");
        assert_eq!(count_pair(&lane), (3, 3));
    }

    /// A task dropped while its snapshot is open (a request cut off)
    /// ends the snapshot; a read that fails inside one closes its
    /// connection, and the next read begins a new snapshot.
    #[tokio::test]
    async fn a_snapshot_ends_with_its_task_or_its_failure() {
        let (_dir, path, lane) = lane_over_taken();
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            one_snapshot(async {
                assert_eq!(count(&lane), 1);
                std::future::pending::<()>().await;
            }),
        )
        .await;
        assert!(cut.is_err());
        no_reader_in_a_transaction(&path);
        one_snapshot(async {
            assert_eq!(count(&lane), 1);
            insert_elsewhere(&path, "meanwhile");
            let bad = lane.read_all("SELECT k FROM no_such_table", &[], |_| Ok(()));
            assert!(bad.is_err());
            assert_eq!(count(&lane), 2);
        })
        .await;
        no_reader_in_a_transaction(&path);
    }

    /// A snapshot is of one database: another store's reads in the same
    /// task read their own.
    #[tokio::test]
    async fn a_snapshot_serves_only_its_own_lane() {
        let (_a_dir, _a_path, a) = lane_over_taken();
        let (_b_dir, b_path, b) = lane_over_taken();
        insert_elsewhere(&b_path, "b");
        one_snapshot(async {
            assert_eq!(count(&a), 1);
            assert_eq!(count(&b), 2);
            assert_eq!(count_pair(&b), (2, 2));
            assert_eq!(count(&a), 1);
        })
        .await;
    }
}
