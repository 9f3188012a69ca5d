//! The embedded store of Steadfast's durable engine: one SQLite file in WAL mode.
//!
//! [`SqliteStore`] implements [`Store`] and passes the conformance kit of `steadfast-durable`.
//!
//! - **One write connection, group commit.** Writes queue up; whoever finds the queue without
//!   a leader commits every request waiting in it in one transaction, each in its own
//!   savepoint, and answers them after the commit. Parallel steps thus share one commit. With
//!   the default durability the leader is the caller itself, on its own thread: a commit is a
//!   few `write`s and no `fsync`, cheaper than a trip to another thread and back. A caller never
//!   waits for a lock or a disk sync there; a batch that would goes to the writer thread (see
//!   `writer.rs`).
//! - **The step log.** With the default durability, a step of a workflow whose lease this store
//!   holds, and the end of such a workflow (unless it is a child, whose end wakes its parent),
//!   commit in one `write` to a log file of the store's own (`{db}-steplog/`), not in a
//!   transaction: a write survives the death of the process as a transaction does, for a
//!   fraction of the cost. The log moves into the tables many entries per transaction: a few
//!   milliseconds later on the writer thread, and before any write that must come after it (a
//!   consumed message, a claim that may take the workflow over, a cancellation). Opening the
//!   file and every claim import the logs of killed processes, so a dead worker's workflows
//!   are taken over with everything it committed. This process reads its own entries at once;
//!   another process (`steadfast show`) sees them within about 10 ms, or once
//!   [`Store::flush`] returns (a worker's shutdown calls it). Turn it off with
//!   [`SqliteOptions::step_log`].
//! - **Checkpoints off the commit path.** A checkpointer thread copies the WAL back into the
//!   database file while commits go on, and the WAL starts over instead of growing (see
//!   `checkpoint.rs`).
//! - **Reads** run on a few reader threads with their own connections, or, for quick reads of
//!   a row or two, on the caller's thread when a reader connection is free. WAL lets them read
//!   while the writer writes.
//! - **Durability.** `synchronous=NORMAL` by default: a committed step survives a crash of the
//!   process. [`Durability::PowerLossSafe`] uses `synchronous=FULL`: it survives power loss too,
//!   at the cost of an `fsync` per transaction.
//! - **Several processes** on one host may share the file. Every write runs in
//!   `BEGIN IMMEDIATE`, so claims and lease changes are serialized across processes; the busy
//!   timeout makes a process wait for the lock rather than fail. A lock held longer than that
//!   is reported as [`StoreError::Locked`].
//! - **A store alone.** While no other store has the file open
//!   ([`SqliteStore::has_file_to_itself`]), the step log also takes the starts of the
//!   top-level workflows that the store's own worker runs ([`Store::start_claimed`]): the id
//!   is checked in memory and in the table, and the start is logged without a transaction.
//!   A store that opens the file meanwhile waits (up to the busy timeout) until the first has
//!   moved its log into the tables, within about 10 ms; both then start by transaction. The
//!   folder `{db}-steplog` keeps the two lock files that arrange this.
//! - **Schema.** The file is marked as a Steadfast store (`PRAGMA application_id`) and carries
//!   its schema version (`PRAGMA user_version`); opening migrates older files, and refuses newer
//!   ones ([`StoreError::NewerSchema`]) and files that are not Steadfast stores
//!   ([`StoreError::Corrupt`]). Version 2 keys the journal by workflow and commit order, as
//!   its rows arrive; opening a version 1 file rebuilds its journal table once, in one
//!   transaction, and a build that knows only version 1 then refuses the file.
//!
//! ```no_run
//! # fn main() -> Result<(), steadfast_durable::StoreError> {
//! use steadfast_sqlite::{Durability, SqliteOptions, SqliteStore};
//!
//! let store = SqliteStore::open("steadfast.db")?;
//! let safer = SqliteStore::open_with(
//!     "steadfast-fsync.db",
//!     SqliteOptions { durability: Durability::PowerLossSafe, ..SqliteOptions::default() },
//! )?;
//! # Ok(()) }
//! ```

mod batch;
mod checkpoint;
mod reads;
mod schema;
mod sole;
mod steplog;
mod threads;
mod writer;
mod writes;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use steadfast_durable::{
    AttemptRecord, Claim, Created, LeaseState, ListFilter, MailMessage, Millis, NewWorkflow,
    Outcome, StepRecord, Store, StoreError, StoreFuture, WorkflowRecord, WorkflowStatus,
    WorkflowSummary, now_millis,
};

use crate::sole::Sole;
use crate::steplog::StartEntry;
use crate::threads::Threads;

/// How much a committed write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL`: committed writes survive a crash or kill of the process; a power
    /// loss may lose the last transactions (never corrupting the file). The default.
    #[default]
    ProcessCrashSafe,
    /// `synchronous=FULL`: committed writes survive power loss too. Each transaction waits for
    /// an `fsync`.
    PowerLossSafe,
}

/// Options for [`SqliteStore::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How much a committed write survives.
    pub durability: Durability,
    /// How long to wait for a lock held by another connection or process before failing with
    /// [`StoreError::Locked`]. Default: 5 s.
    pub busy_timeout: Duration,
    /// With [`Durability::ProcessCrashSafe`], commit the steps of the workflows this store's
    /// workers run by appending them to a log file of the store's own, and move them into the
    /// journal table many per transaction (see the crate docs). Default: on. Off, every step
    /// is a transaction of its own, and other processes see it at once.
    pub step_log: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            busy_timeout: Duration::from_secs(5),
            step_log: true,
        }
    }
}

/// Figures of the write path, to see group commit at work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Write transactions committed (or attempted), by callers and the writer thread.
    pub transactions: u64,
    /// Write requests applied in them.
    pub requests: u64,
}

/// Reader threads (each with its own connection).
const READERS: usize = 3;

/// The SQLite [`Store`]. Cloning is cheap and shares the connections; the threads stop and
/// the file is closed when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: SqliteOptions,
    threads: Threads,
    /// Held by a creation of a workflow while the step log may start workflows: a start by
    /// the log decides in memory that its id is new, so no other creation may commit or log
    /// one between its check and its entry.
    creating: tokio::sync::Mutex<()>,
}

impl SqliteStore {
    /// Open (or create) the store at `path` with default options.
    ///
    /// This blocks while it opens the file and migrates its schema; call it before entering an
    /// async context or from a blocking task.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Open (or create) the store at `path`. Fails with [`StoreError::Corrupt`] when the file
    /// is not a Steadfast store, [`StoreError::NewerSchema`] when a newer build wrote it, and
    /// [`StoreError::Locked`] when another process holds it locked beyond the busy timeout.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let writer = schema::open_writer(&path, &options)?;
        // Before the logs of dead processes are imported: one that had the file to itself may
        // have logged starts.
        let sole = Sole::open(&path, &steplog::dir_of(&path))?;
        if steplog::recover(&writer, &path)? {
            sole.imported();
        }
        let threads = Threads::start(writer, &path, &options, READERS, sole)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                options,
                threads,
                creating: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The options it was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.inner.options
    }

    /// How many write transactions and requests the write path has handled.
    pub fn stats(&self) -> WriterStats {
        let c = &self.inner.threads.writer.counters;
        WriterStats {
            transactions: c.transactions.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
        }
    }

    fn log(&self) -> Option<&steplog::StepLog> {
        self.inner.threads.writer.log.as_deref()
    }

    /// Whether no other store, in this process or another, has the database file open. With
    /// the step log (the default), such a store starts a workflow that its own worker runs by
    /// logging it, without a transaction, and so without waiting for one. When another store
    /// opens the file, this one moves its log into the tables and starts workflows by
    /// transaction, until it is alone again (it checks every second).
    pub fn has_file_to_itself(&self) -> bool {
        self.inner.threads.sole.is_sole()
    }

    /// Start top-level workflow `new`, claimed by `owner`, by logging it; `None` to start it by
    /// transaction instead (an existing workflow with entries in the log, a log that cannot be
    /// written). The caller holds `creating`, and a [`sole::SoleStart`].
    async fn start_by_log(
        &self,
        log: &steplog::StepLog,
        new: &NewWorkflow,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<(Created, Option<Claim>)>, StoreError> {
        // Logged and not flushed yet, or else in the table if it exists (a flush takes an entry
        // off the log only once it is committed).
        if let Some(existing) = log.logged_workflow(&new.id) {
            return Ok(Some((Created::Existing(existing), None)));
        }
        if log.holds(&new.id) {
            return Ok(None);
        }
        let key = new.id.clone();
        let t = &self.inner.threads;
        if let Some(existing) = t.read_quick(move |c| reads::get_workflow(c, &key)).await? {
            return Ok(Some((Created::Existing(existing), None)));
        }
        let now = now_millis();
        let until = writes::lease_until(now, lease);
        let start = StartEntry {
            id: new.id.clone(),
            name: new.name.clone(),
            input: new.input.clone(),
            owner: owner.to_owned(),
            lease_expires_at: until,
            at: now,
        };
        let record = start.record();
        let Some(flush) = log.append_start(start)? else {
            return Ok(None);
        };
        if let Some(delay) = flush {
            t.writer.flush_within(delay);
        }
        let claim = Claim { record };
        log.claimed(
            owner,
            until,
            std::slice::from_ref(&claim),
            vec![HashSet::new()],
        );
        Ok(Some((Created::New, Some(claim))))
    }

    /// Move what waits in the step log into the database (for reads across workflows).
    async fn flush_log(&self) -> Result<(), StoreError> {
        if self.log().is_some_and(|l| l.has_pending()) {
            self.inner.threads.write(|_| Ok(())).await?;
        }
        Ok(())
    }

    /// The newest schema version this build reads and writes.
    pub fn schema_version() -> i64 {
        schema::supported_version()
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("durability", &self.inner.options.durability)
            .field("busy_timeout", &self.inner.options.busy_timeout)
            .finish()
    }
}

fn names_json(names: &[String]) -> Result<String, StoreError> {
    reads::encoded(serde_json::to_string(names))
}

impl Store for SqliteStore {
    fn create_workflow(&self, new: NewWorkflow) -> StoreFuture<'_, Created> {
        Box::pin(async move {
            let t = &self.inner.threads;
            let _creating = match self.log() {
                Some(_) => Some(self.inner.creating.lock().await),
                None => None,
            };
            // A new workflow has nothing in the log; an existing one is reported as it is.
            if self.log().is_some_and(|l| l.holds(&new.id)) {
                t.write(move |c| writes::create_workflow(c, &new)).await
            } else {
                t.write_unflushed(move |c| writes::create_workflow(c, &new))
                    .await
            }
        })
    }

    fn start_claimed<'a>(
        &'a self,
        new: NewWorkflow,
        owner: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, (Created, Option<Claim>)> {
        let id = new.id.clone();
        Box::pin(async move {
            let t = &self.inner.threads;
            let Some(log) = self.log() else {
                let who = owner.to_owned();
                return t
                    .write(move |c| writes::create(c, &new, Some((&who, lease))))
                    .await;
            };
            let _creating = self.inner.creating.lock().await;
            if new.parent_id.is_none()
                && let Some(_start) = t.sole.enter()
                && let Some(started) = self.start_by_log(log, &new, owner, lease).await?
            {
                return Ok(started);
            }
            let held = log.holds(&id);
            let asked = now_millis();
            let who = owner.to_owned();
            let create =
                move |c: &rusqlite::Connection| writes::create(c, &new, Some((&who, lease)));
            // As in `create_workflow`: only an existing workflow can have entries in the log.
            let (created, claim) = if held {
                t.write(create).await?
            } else {
                t.write_unflushed(create).await?
            };
            if let Some(claim) = &claim {
                log.claimed(
                    owner,
                    writes::lease_until(asked, lease),
                    std::slice::from_ref(claim),
                    vec![HashSet::new()],
                );
            }
            Ok((created, claim))
        })
    }

    fn get_workflow<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<WorkflowRecord>> {
        let key = id.to_owned();
        Box::pin(async move {
            let t = &self.inner.threads;
            // A workflow started by the log, before its start reaches the table.
            if let Some(record) = self.log().and_then(|l| l.logged_workflow(id)) {
                return Ok(Some(record));
            }
            // The log's view first: an end flushed meanwhile is then in both, never in neither.
            let ended = self.log().and_then(|l| l.pending_finish(id));
            let mut record = t.read_quick(move |c| reads::get_workflow(c, &key)).await?;
            if let (Some(r), Some(end)) = (record.as_mut(), ended) {
                steplog::apply_finish(r, end);
            }
            Ok(record)
        })
    }

    fn list_workflows(&self, filter: ListFilter) -> StoreFuture<'_, Vec<WorkflowSummary>> {
        Box::pin(async move {
            let t = &self.inner.threads;
            // Step counts come from the journal table: the logged steps go there first.
            self.flush_log().await?;
            t.read(move |c| reads::list_workflows(c, &filter)).await
        })
    }

    fn claim<'a>(
        &'a self,
        owner: &'a str,
        names: &'a [String],
        limit: usize,
        lease: Duration,
        dead_owners: &'a [String],
    ) -> StoreFuture<'a, Vec<Claim>> {
        let owner = owner.to_owned();
        let names = names_json(names);
        let dead = names_json(dead_owners);
        Box::pin(async move {
            let (names, dead) = (names?, dead?);
            let t = &self.inner.threads;
            let Some(log) = self.log() else {
                return t
                    .write(move |c| writes::claim(c, &owner, &names, limit, lease, &dead))
                    .await;
            };
            // A dead worker's steps reach the journal before its workflows are claimed.
            t.import(log.orphans()).await?;
            let asked = now_millis();
            let who = owner.clone();
            let claim = move |c: &rusqlite::Connection| {
                let claims = writes::claim(c, &who, &names, limit, lease, &dead)?;
                let positions = claims
                    .iter()
                    .map(|cl| reads::positions(c, &cl.record.id))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((claims, positions))
            };
            // Only a workflow whose lease expired or whose owner died can change hands: the
            // log must reach the database first only if it holds one of those.
            let (claims, positions) = if log.claim_needs_flush(dead_owners) {
                t.write(claim).await?
            } else {
                t.write_unflushed(claim).await?
            };
            log.claimed(
                &owner,
                writes::lease_until(asked, lease),
                &claims,
                positions,
            );
            Ok(claims)
        })
    }

    fn running_owners(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            // A logged end is a workflow no longer running.
            self.flush_log().await?;
            self.inner.threads.read_quick(reads::running_owners).await
        })
    }

    fn renew<'a>(
        &'a self,
        owner: &'a str,
        ids: &'a [String],
        lease: Duration,
    ) -> StoreFuture<'a, Vec<LeaseState>> {
        let who = owner.to_owned();
        let ids = ids.to_vec();
        Box::pin(async move {
            let asked = now_millis();
            let t = &self.inner.threads;
            let states = t
                .write(move |c| writes::renew(c, &who, &ids, lease))
                .await?;
            if let Some(log) = self.log() {
                log.renewed(owner, writes::lease_until(asked, lease), &states);
            }
            Ok(states)
        })
    }

    fn load_journal<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<StepRecord>> {
        let id = id.to_owned();
        Box::pin(async move {
            let t = &self.inner.threads;
            // The log's view first: a step flushed meanwhile is then in both, never in neither.
            let (logged, in_table) = match self.log() {
                Some(log) => log.journal_view(&id)?,
                None => (Vec::new(), true),
            };
            let rows = if in_table {
                t.read(move |c| reads::load_journal(c, &id)).await?
            } else {
                Vec::new()
            };
            steplog::merge(rows, &logged)
        })
    }

    fn commit_step<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        step: StepRecord,
        consume: Option<i64>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut step = step;
            let t = &self.inner.threads;
            let log = self.log();
            if let (Some(log), None) = (log, consume) {
                match log.append(id, owner, step)? {
                    steplog::Logged::Done(flush) => {
                        if let Some(delay) = flush {
                            t.writer.flush_within(delay);
                        }
                        return Ok(());
                    }
                    steplog::Logged::Transaction(s) => step = s,
                }
            }
            // Encoded here, on the caller's side: the request then owns only text.
            let step = writes::EncodedStep::new(id, owner, step)?;
            let position = step.position.clone();
            if let Some(log) = log {
                log.committing(id);
            }
            t.write(move |c| writes::commit_step(c, &step, consume))
                .await?;
            if let Some(log) = log {
                log.committed(id, &position);
            }
            Ok(())
        })
    }

    fn record_attempt<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        attempt: AttemptRecord,
    ) -> StoreFuture<'a, ()> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        Box::pin(async move {
            let t = &self.inner.threads;
            t.write(move |c| writes::record_attempt(c, &id, &owner, &attempt))
                .await
        })
    }

    fn load_attempts<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<AttemptRecord>> {
        let id = id.to_owned();
        Box::pin(async move {
            let t = &self.inner.threads;
            t.read(move |c| reads::load_attempts(c, &id)).await
        })
    }

    fn finish<'a>(&'a self, id: &'a str, owner: &'a str, outcome: Outcome) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let t = &self.inner.threads;
            let mut outcome = outcome;
            if let (Some(log), Outcome::Finished { status, output }) = (self.log(), &outcome) {
                let end = steplog::FinishEntry {
                    id: id.to_owned(),
                    owner: owner.to_owned(),
                    status: *status,
                    output: output.clone(),
                    at: now_millis(),
                };
                match log.append_finish(end)? {
                    steplog::Logged::Done(flush) => {
                        if let Some(delay) = flush {
                            t.writer.flush_within(delay);
                        }
                        return Ok(());
                    }
                    steplog::Logged::Transaction(end) => {
                        outcome = Outcome::Finished {
                            status: end.status,
                            output: end.output,
                        };
                    }
                }
            }
            let (wf, who) = (id.to_owned(), owner.to_owned());
            let r = t
                .write(move |c| writes::finish(c, &wf, &who, &outcome))
                .await;
            if let Some(log) = self.log() {
                log.released(id);
            }
            r
        })
    }

    fn send<'a>(&'a self, id: &'a str, topic: &'a str, payload: Value) -> StoreFuture<'a, i64> {
        let (id, topic) = (id.to_owned(), topic.to_owned());
        Box::pin(async move {
            let t = &self.inner.threads;
            t.write(move |c| writes::send(c, &id, &topic, &payload))
                .await
        })
    }

    fn next_message<'a>(
        &'a self,
        id: &'a str,
        topic: &'a str,
    ) -> StoreFuture<'a, Option<MailMessage>> {
        let (id, topic) = (id.to_owned(), topic.to_owned());
        Box::pin(async move {
            let t = &self.inner.threads;
            t.read_quick(move |c| reads::next_message(c, &id, &topic))
                .await
        })
    }

    fn request_cancel<'a>(&'a self, id: &'a str) -> StoreFuture<'a, WorkflowStatus> {
        let id = id.to_owned();
        Box::pin(async move {
            let t = &self.inner.threads;
            t.write(move |c| writes::request_cancel(c, &id)).await
        })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.flush_log())
    }

    fn next_wake<'a>(&'a self, names: &'a [String]) -> StoreFuture<'a, Option<Millis>> {
        let names = names_json(names);
        Box::pin(async move {
            let names = names?;
            let t = &self.inner.threads;
            t.read_quick(move |c| reads::next_wake(c, &names)).await
        })
    }
}
