//! The step log: how a step commits in one `write` instead of one SQLite transaction.
//!
//! With [`Durability::ProcessCrashSafe`], a write is committed once it is in the kernel: a
//! write to a file survives the death of the process that made it. A SQLite transaction gives
//! the same guarantee at the cost of locks, B-tree pages and several `write`s of whole pages.
//! So the steps of a workflow whose lease this store took, and the workflow's end, go to a log
//! file of this store's own, and into the tables later, many per transaction:
//!
//! - **Segment.** Each store writes to a segment file of its own, `{db}-steplog/{pid}-….log`,
//!   created on the first entry and locked (`flock`) while the store is open. A record is a
//!   12-byte header (length, epoch, CRC-32) and the entry (see `record.rs`). The segment is
//!   reused from its start each time everything in it has reached the tables; the epoch tells
//!   the records written since from older ones further on. A segment that fills up while some
//!   of its entries still wait is retired: the store goes on in another segment, and keeps the
//!   old one as a spare for the next once its last entry is in the tables (see `segment.rs`).
//!   File names sort in the order of the segments' entries.
//! - **Flush.** A write transaction that must come after the log's entries (a consumed message,
//!   a cancellation, a claim that may take over a workflow with entries in the log, any write
//!   of the workflow's own) moves them into the tables first. The writer thread also flushes, in
//!   chunks, a little after the first entry and at once when many wait. The store keeps no
//!   copy of a logged step, only where its record is: a flush reads the records back from the
//!   segment (from the page cache), so that a step's memory is freed on the thread that
//!   logged it, not on the writer thread, whose frees into another thread's heap contend for
//!   the allocator's locks.
//! - **Fencing.** An entry is logged only while the store knows that its owner holds the
//!   workflow's lease: it took the lease in `claim` (or extended it in `renew`) and the lease
//!   has not expired. Anything else, a child's end, and a record too large for the segment
//!   commit by transaction as before. The flush fences again: an entry whose workflow changed
//!   hands in the meantime (its worker stalled past its lease) is dropped, and the new owner
//!   runs the step again.
//! - **Recovery.** A segment whose lock can be taken belongs to a store that is gone (a killed
//!   process). Opening a store and every `claim` import such segments first, fenced by the
//!   workflows' owners, then delete them. A dead worker's workflows are thus claimed with
//!   everything it committed.
//! - **Reads.** Reads of one workflow (`get_workflow`, `load_journal`) add what the log holds;
//!   reads across workflows (`list_workflows`, `running_owners`) flush first. Other processes
//!   read the tables alone: they see the newest entries once flushed (within [`FLUSH_DELAY`],
//!   or when `Store::flush` returns).
//!
//! [`Durability::ProcessCrashSafe`]: crate::Durability::ProcessCrashSafe

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steadfast_durable::{
    Claim, LeaseState, Millis, StepRecord, StoreError, WorkflowRecord, WorkflowStatus, now_millis,
};

use crate::writes::{EncodedStep, StepFields, output_of};

mod apply;
mod record;
mod recover;
mod segment;

use apply::{Applier, apply_all};
use record::{Written, decode_record, encode_into, encode_step_into, seal};
pub(crate) use recover::{Orphan, import_by, recover};
use segment::{Retired, Segment, Spares};

/// The size of a segment. A record that does not fit in what is left goes to the next segment;
/// one larger than a segment commits by transaction. Small enough that a busy store soon writes
/// to segments whose pages are allocated already (prepared or reused, see `segment.rs`), and
/// large enough for a model response of hundreds of kilobytes.
const SEGMENT_BYTES: u64 = 1 << 20;

/// How long after the first step waiting in the log the writer thread flushes it.
pub(crate) const FLUSH_DELAY: Duration = Duration::from_millis(10);

/// A background flush checks this often (in entries) whether a request waits for the write
/// connection, and if one does, commits what it has with the request.
const GIVE_WAY_EVERY: usize = 4;

/// With this many steps waiting, the writer thread flushes at once.
const FLUSH_AT: usize = 256;

/// The flush limit that takes every waiting entry.
pub(crate) const ALL: usize = usize::MAX;

/// The record buffer is kept for the next record up to this capacity.
const KEEP_BUFFER: usize = 64 << 10;

/// What became of a step or a workflow's end offered to the log.
pub(crate) enum Logged<T> {
    /// Committed. `Some(delay)`: ask the writer thread to flush within `delay`.
    Done(Option<Duration>),
    /// Not for the log: commit it by transaction.
    Transaction(T),
}

/// A record of the log: a step, the start of a workflow, or the end of its run. A step is
/// written in the binary form of `record.rs`; a start as JSON, `{"start": {...}}`, an end as
/// `{"finish": {...}}`, and steps written by earlier builds as `{"step": {...}}`, which still
/// read back.
///
/// Externally tagged, because a step embeds its input and output as raw JSON, which serde
/// cannot read back through the buffering of an internally tagged enum. Records of builds that
/// wrote `{"entry": "step", ...}` (input and output as strings holding JSON) are therefore not
/// entries: a segment left by such a build is read up to its first record, that is, not at all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Entry {
    /// A journaled step.
    Step(EncodedStep),
    /// A top-level workflow started and claimed while this store had the database to itself
    /// (see `sole.rs`).
    Start(StartEntry),
    /// A top-level workflow finished for good (`Outcome::Finished`).
    Finish(FinishEntry),
}

/// A workflow started by the log: its row in the `workflows` table, running under `owner`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StartEntry {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) input: Value,
    pub(crate) owner: String,
    pub(crate) lease_expires_at: Millis,
    /// When it started (the record's `created_at`).
    pub(crate) at: Millis,
}

impl StartEntry {
    /// The workflow's record, as the table holds it once the entry is there.
    pub(crate) fn record(&self) -> WorkflowRecord {
        WorkflowRecord {
            id: self.id.clone(),
            name: self.name.clone(),
            input: self.input.clone(),
            status: WorkflowStatus::Running,
            output: None,
            owner: Some(self.owner.clone()),
            lease_expires_at: Some(self.lease_expires_at),
            wake_at: None,
            cancel_requested: false,
            parent_id: None,
            created_at: self.at,
            updated_at: self.at,
        }
    }
}

/// The end of a workflow, as `Store::finish` was given it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FinishEntry {
    pub(crate) id: String,
    pub(crate) owner: String,
    pub(crate) status: WorkflowStatus,
    pub(crate) output: Value,
    /// When it finished (the record's `updated_at`).
    pub(crate) at: Millis,
}

/// An entry to write, by reference: as JSON, it serializes exactly as [`Entry`].
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum EntryRef<'a> {
    Start(&'a StartEntry),
    Finish(&'a FinishEntry),
}

/// What reads of a workflow need of a waiting entry besides its record.
enum Kept {
    /// A step: reads take it from the segment.
    Step,
    /// A start, which reads of the workflow answer.
    Start(Box<StartEntry>),
    /// An end, which reads of the workflow add.
    Finish(Box<FinishEntry>),
}

/// An entry waiting for the journal table. The entry itself is in its segment only: a flush
/// reads it back from there, so that what a step allocates is freed by the thread that
/// logged it, and logging allocates nothing per entry.
struct Pending {
    /// Its place in this store's log, counting from 1.
    lsn: u64,
    /// Where its record is: the number of its segment (see [`State::serial`]), its offset
    /// and its length there.
    segment: u64,
    offset: u64,
    len: u32,
    /// Its workflow and owner, shared with their lease.
    id: Arc<str>,
    owner: Arc<str>,
    /// A start or an end, which reads of the workflow need.
    kept: Kept,
    /// The lease's expiry as the store knew it when the entry was logged.
    expires_at: Millis,
}

/// A lease this store took, as far as it knows.
struct LocalLease {
    /// The workflow's id, shared with the entries logged under the lease.
    id: Arc<str>,
    owner: Arc<str>,
    /// No later than the lease's expiry in the database.
    expires_at: Millis,
    /// The hashes of the positions in the journal and in the log ([`StepLog::position_hash`]).
    /// A step whose position's hash is there commits by transaction, where the journal's
    /// unique index on positions tells a step committed twice from two positions with one hash.
    positions: HashSet<u64>,
    /// Whether the journal table may hold steps of the workflow (else the log has them all),
    /// by transaction or from the journal as claimed; see [`State::in_table`] for flushed ones.
    in_table: bool,
    /// The place of the workflow's first entry in the log, if it logged one.
    first_logged: Option<u64>,
    /// Whether the workflow is a child (its end wakes its parent: that goes by transaction).
    child: bool,
}

#[derive(Default)]
struct State {
    segment: Option<Segment>,
    /// The number of `segment`: each segment that becomes the one written to gets the next.
    serial: u64,
    /// Full segments, oldest first, spares once their entries are in the tables.
    retired: VecDeque<Retired>,
    /// Entries logged so far.
    logged: u64,
    /// The place of the last entry in the tables (entries reach them in order).
    flushed: u64,
    /// Logged entries not yet in the database, in commit order.
    pending: VecDeque<Pending>,
    /// How many of `pending` belong to each workflow: reads and starts ask whether the log
    /// holds anything of one, and should not walk the queue for it.
    waiting: HashMap<Arc<str>, usize>,
    leases: HashMap<String, LocalLease>,
    /// The record being written; its allocation is kept for the next.
    buf: Vec<u8>,
}

impl State {
    /// Whether the journal table may hold steps of workflow `id`: unless this store logged all
    /// of them and none was flushed yet.
    fn in_table(&self, id: &str) -> bool {
        self.leases
            .get(id)
            .is_none_or(|l| l.in_table || l.first_logged.is_some_and(|first| first <= self.flushed))
    }

    /// The logged end of workflow `id`, if it waits for the database.
    fn logged_end(&self, id: &str) -> Option<FinishEntry> {
        if !self.waiting.contains_key(id) {
            return None;
        }
        self.pending.iter().rev().find_map(|p| match &p.kept {
            Kept::Finish(f) if f.id == id => Some((**f).clone()),
            _ => None,
        })
    }

    /// The file of segment number `serial`, which has entries waiting.
    fn file(&self, serial: u64) -> Result<&Arc<File>, StoreError> {
        let file = if serial == self.serial {
            self.segment.as_ref().map(|s| &s.file)
        } else {
            self.retired
                .iter()
                .find(|r| r.serial == serial)
                .map(|r| &r.segment.file)
        };
        file.ok_or_else(|| {
            StoreError::Backend(format!(
                "the step log lost segment {serial} with entries waiting"
            ))
        })
    }
}

/// Records to read back from one segment: consecutive, starting at `offset`.
struct Run {
    file: Arc<File>,
    offset: u64,
    lens: Vec<u32>,
}

/// The step log of one store.
pub(crate) struct StepLog {
    dir: PathBuf,
    state: Mutex<State>,
    /// Segments ready for reuse.
    spares: Arc<Spares>,
    /// Flushes committed so far.
    flushes: AtomicU64,
    /// Hashes positions for the leases' sets.
    hasher: RandomState,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The folder of the step log of database `db`.
pub(crate) fn dir_of(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-steplog");
    PathBuf::from(name)
}

/// Read `buf.len()` bytes of records at `offset` of a segment of this store's.
fn read_back(file: &File, buf: &mut [u8], offset: u64) -> Result<(), StoreError> {
    file.read_exact_at(buf, offset)
        .map_err(|e| StoreError::Backend(format!("cannot read the step log back: {e}")))
}

/// A record of this store's own log that does not read back as it was written.
fn unreadable(e: String) -> StoreError {
    StoreError::Corrupt(format!("the step log cannot be read back: {e}"))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("cannot {what} `{}`: {e}", path.display()))
}

impl StepLog {
    /// The step log of database `db`; nothing is created before the first step.
    pub(crate) fn new(db: &Path) -> Self {
        StepLog {
            dir: dir_of(db),
            state: Mutex::new(State::default()),
            spares: Arc::default(),
            flushes: AtomicU64::new(0),
            hasher: RandomState::new(),
        }
    }

    /// Log step `step` of workflow `id`, committed by `owner`, if the workflow's lease is known
    /// to be held by its owner; else hand it back, to commit by transaction.
    pub(crate) fn append(
        &self,
        id: &str,
        owner: &str,
        step: StepRecord,
    ) -> Result<Logged<StepRecord>, StoreError> {
        match self.append_step(id, owner, &step)? {
            Some(flush) => Ok(Logged::Done(flush)),
            None => Ok(Logged::Transaction(step)),
        }
    }

    /// [`StepLog::append`]: `Some(when to flush)` once logged, `None` to commit by transaction.
    fn append_step(
        &self,
        id: &str,
        owner: &str,
        step: &StepRecord,
    ) -> Result<Option<Option<Duration>>, StoreError> {
        let output = output_of(step)?;
        let position = self.position_hash(&step.position);
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let Some(lease) = st.leases.get(id) else {
            return Ok(None);
        };
        let expires_at = lease.expires_at;
        if *lease.owner != *owner
            || now_millis() >= expires_at
            || lease.positions.contains(&position)
        {
            return Ok(None);
        }
        let (wf, who) = (lease.id.clone(), lease.owner.clone());
        if !encode_step_into(&mut st.buf, &StepFields::of(id, owner, step, &output)) {
            return Ok(None);
        }
        let Some(at) = self.write(st) else {
            return Ok(None);
        };
        let lsn = st.logged + 1;
        if let Some(lease) = st.leases.get_mut(id) {
            lease.positions.insert(position);
            lease.first_logged.get_or_insert(lsn);
        }
        Ok(Some(push(st, at, wf, who, Kept::Step, expires_at)))
    }

    /// The hash of step position `position` in the leases' sets.
    fn position_hash(&self, position: &str) -> u64 {
        self.hasher.hash_one(position)
    }

    /// Log the end of top-level workflow `finish.id` if its lease is known to be held by its
    /// owner; the lease is then given up.
    pub(crate) fn append_finish(
        &self,
        finish: FinishEntry,
    ) -> Result<Logged<FinishEntry>, StoreError> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let Some(lease) = st.leases.get(&finish.id) else {
            return Ok(Logged::Transaction(finish));
        };
        let expires_at = lease.expires_at;
        if *lease.owner != *finish.owner
            || lease.child
            || now_millis() >= expires_at
            || !finish.status.is_terminal()
        {
            return Ok(Logged::Transaction(finish));
        }
        let (wf, who) = (lease.id.clone(), lease.owner.clone());
        if !encode_into(&mut st.buf, &EntryRef::Finish(&finish)) {
            return Ok(Logged::Transaction(finish));
        }
        let Some(at) = self.write(st) else {
            return Ok(Logged::Transaction(finish));
        };
        st.leases.remove(&finish.id);
        let flush = push(st, at, wf, who, Kept::Finish(Box::new(finish)), expires_at);
        Ok(Logged::Done(flush))
    }

    /// Log the start of top-level workflow `start.id`, claimed by `start.owner`: when to ask
    /// the writer thread to flush; `None` if it was not logged (to commit by transaction).
    /// The caller makes sure that no other start of the id is logged or committed meanwhile.
    pub(crate) fn append_start(
        &self,
        start: StartEntry,
    ) -> Result<Option<Option<Duration>>, StoreError> {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if !encode_into(&mut st.buf, &EntryRef::Start(&start)) {
            return Ok(None);
        }
        let Some(at) = self.write(st) else {
            return Ok(None);
        };
        let (id, owner): (Arc<str>, Arc<str>) = (
            Arc::from(start.id.as_str()),
            Arc::from(start.owner.as_str()),
        );
        let expires_at = start.lease_expires_at;
        Ok(Some(push(
            st,
            at,
            id,
            owner,
            Kept::Start(Box::new(start)),
            expires_at,
        )))
    }

    /// Write the record in `st.buf` at the end of the segment; where it went (segment,
    /// offset, length), if it is there.
    fn write(&self, st: &mut State) -> Option<(u64, u64, u32)> {
        let at = self.write_record(st);
        if st.buf.capacity() > KEEP_BUFFER {
            st.buf = Vec::new();
        }
        at
    }

    fn write_record(&self, st: &mut State) -> Option<(u64, u64, u32)> {
        let len = u32::try_from(st.buf.len()).ok()?;
        if u64::from(len) >= SEGMENT_BYTES {
            return None;
        }
        let full = st
            .segment
            .as_ref()
            .is_some_and(|seg| !seg.fits(st.buf.len()));
        if st.segment.is_none() || full {
            // A full segment still has entries waiting (else it would have started over): it
            // becomes a spare once they are in the tables.
            match self.spares.next(&self.dir) {
                Ok(next) => {
                    if let Some(segment) = st.segment.replace(next) {
                        st.retired.push_back(Retired {
                            segment,
                            serial: st.serial,
                            last: st.logged,
                        });
                    }
                    st.serial += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the step log is unavailable; steps commit by transaction");
                    return None;
                }
            }
        }
        let seg = st.segment.as_mut()?;
        st.buf[4..8].copy_from_slice(&seg.epoch.to_le_bytes());
        seal(&mut st.buf);
        let offset = seg.offset;
        seg.append(&st.buf).then_some((st.serial, offset, len))
    }

    /// Whether steps wait in the log.
    pub(crate) fn has_pending(&self) -> bool {
        !lock(&self.state).pending.is_empty()
    }

    /// How many entries wait in the log.
    pub(crate) fn pending(&self) -> usize {
        lock(&self.state).pending.len()
    }

    /// Move up to `limit` logged entries into the database, inside the caller's transaction;
    /// every [`GIVE_WAY_EVERY`] entries, stop early if `give_way()`. Returns how many were
    /// taken, to pass to [`StepLog::flushed`] once the transaction commits.
    pub(crate) fn flush_into(
        &self,
        conn: &Connection,
        limit: usize,
        give_way: &dyn Fn() -> bool,
    ) -> Result<usize, StoreError> {
        let mut applier = Applier::new(conn)?;
        let mut bytes = Vec::new();
        let mut taken = 0;
        for run in self.runs(limit)? {
            let total = run.lens.iter().map(|&l| l as usize).sum();
            bytes.resize(total, 0);
            read_back(&run.file, &mut bytes, run.offset)?;
            let mut at = 0;
            for len in run.lens {
                if taken > 0 && taken % GIVE_WAY_EVERY == 0 && give_way() {
                    return Ok(taken);
                }
                let record = &bytes[at..at + len as usize];
                at += len as usize;
                match decode_record(record).map_err(unreadable)? {
                    Written::Step(step) => applier.step(&step)?,
                    Written::Other(entry) => applier.entry(&entry)?,
                }
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// Where the first `limit` waiting entries are, in runs of consecutive records.
    fn runs(&self, limit: usize) -> Result<Vec<Run>, StoreError> {
        let st = lock(&self.state);
        let mut runs: Vec<Run> = Vec::new();
        // The segment and the end of the last run's last record.
        let mut last: Option<(u64, u64)> = None;
        for p in st.pending.iter().take(limit) {
            match runs.last_mut() {
                Some(run) if last == Some((p.segment, p.offset)) => run.lens.push(p.len),
                _ => {
                    runs.push(Run {
                        file: st.file(p.segment)?.clone(),
                        offset: p.offset,
                        lens: vec![p.len],
                    });
                }
            }
            last = Some((p.segment, p.offset + u64::from(p.len)));
        }
        Ok(runs)
    }

    /// How many flushes have committed.
    pub(crate) fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Acquire)
    }

    /// The first `n` logged entries are in the database now.
    pub(crate) fn flushed(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.flushes.fetch_add(1, Ordering::AcqRel);
        // Steps being logged wait for this lock: it is held for little more than taking the
        // flushed entries off the queue. They are freed, and full segments kept as spares,
        // after it is released.
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let done: Vec<Pending> = st.pending.drain(..n.min(st.pending.len())).collect();
        for p in &done {
            if let Some(count) = st.waiting.get_mut(&p.id) {
                *count -= 1;
                if *count == 0 {
                    st.waiting.remove(&p.id);
                }
            }
        }
        if let Some(last) = done.last() {
            st.flushed = last.lsn;
        }
        // Retired segments whose last entry is in the tables become spares.
        let mut spares = Vec::new();
        while st.retired.front().is_some_and(|r| r.last <= st.flushed) {
            spares.extend(st.retired.pop_front());
        }
        if st.pending.is_empty()
            && let Some(seg) = st.segment.as_mut()
        {
            // Everything is in the database: start the segment over.
            seg.start_over();
        }
        drop(guard);
        drop(done);
        for r in spares {
            self.spares.keep(r.segment);
        }
    }

    /// Workflow `id`'s logged steps not yet in the journal table, read back from the log, and
    /// whether the table may hold others.
    pub(crate) fn journal_view(&self, id: &str) -> Result<(Vec<EncodedStep>, bool), StoreError> {
        let st = lock(&self.state);
        let mut steps = Vec::new();
        if !st.waiting.contains_key(id) {
            return Ok((steps, st.in_table(id)));
        }
        for p in st
            .pending
            .iter()
            .filter(|p| matches!(p.kept, Kept::Step) && *p.id == *id)
        {
            let mut record = vec![0; p.len as usize];
            read_back(st.file(p.segment)?, &mut record, p.offset)?;
            let entry = decode_record(&record).and_then(Written::into_entry);
            if let Entry::Step(step) = entry.map_err(unreadable)? {
                steps.push(step);
            }
        }
        let in_table = st.in_table(id);
        Ok((steps, in_table))
    }

    /// The logged end of workflow `id`, if it has not reached the database yet.
    pub(crate) fn pending_finish(&self, id: &str) -> Option<FinishEntry> {
        lock(&self.state).logged_end(id)
    }

    /// Workflow `id` as its logged start made it, with its logged end if it has one, if the
    /// start has not reached the database yet. Both are read at one moment: a flush between
    /// them would show a finished workflow as running.
    pub(crate) fn logged_workflow(&self, id: &str) -> Option<WorkflowRecord> {
        let st = lock(&self.state);
        if !st.waiting.contains_key(id) {
            return None;
        }
        let mut record = st.pending.iter().find_map(|p| match &p.kept {
            Kept::Start(s) if s.id == id => Some(s.record()),
            _ => None,
        })?;
        if let Some(end) = st.logged_end(id) {
            apply_finish(&mut record, end);
        }
        Some(record)
    }

    /// Whether anything of workflow `id` waits in the log.
    pub(crate) fn holds(&self, id: &str) -> bool {
        lock(&self.state).waiting.contains_key(id)
    }

    /// Whether a claim that takes over the workflows of `dead_owners` and those whose lease
    /// expired might take one with entries in the log (which must then reach the database
    /// first).
    pub(crate) fn claim_needs_flush(&self, dead_owners: &[String]) -> bool {
        // A claim's transaction runs a moment after this check.
        let soon = now_millis().saturating_add(1_000);
        lock(&self.state)
            .pending
            .iter()
            .any(|p| p.expires_at <= soon || dead_owners.iter().any(|d| **d == *p.owner))
    }

    /// `owner` took these leases, until no earlier than `expires_at`; `positions[i]` is the
    /// journal of `claims[i]`.
    pub(crate) fn claimed(
        &self,
        owner: &str,
        expires_at: Millis,
        claims: &[Claim],
        positions: Vec<HashSet<String>>,
    ) {
        let mut st = lock(&self.state);
        let owner: Arc<str> = Arc::from(owner);
        for (claim, positions) in claims.iter().zip(positions) {
            st.leases.insert(
                claim.record.id.clone(),
                LocalLease {
                    id: Arc::from(claim.record.id.as_str()),
                    owner: owner.clone(),
                    expires_at,
                    in_table: !positions.is_empty(),
                    first_logged: None,
                    positions: positions.iter().map(|p| self.position_hash(p)).collect(),
                    child: claim.record.parent_id.is_some(),
                },
            );
        }
    }

    /// `owner` renewed leases until no earlier than `expires_at`; those not held are gone.
    pub(crate) fn renewed(&self, owner: &str, expires_at: Millis, states: &[LeaseState]) {
        let mut st = lock(&self.state);
        for s in states {
            match st.leases.get_mut(&s.id) {
                Some(l) if *l.owner == *owner && s.held => l.expires_at = expires_at,
                Some(l) if *l.owner == *owner => {
                    st.leases.remove(&s.id);
                }
                _ => {}
            }
        }
    }

    /// The run of workflow `id` ended (or tried to): its steps commit by transaction now.
    pub(crate) fn released(&self, id: &str) {
        lock(&self.state).leases.remove(id);
    }

    /// A step of `id` is about to be committed by transaction: the table may hold steps of
    /// the workflow from now on.
    pub(crate) fn committing(&self, id: &str) {
        if let Some(l) = lock(&self.state).leases.get_mut(id) {
            l.in_table = true;
        }
    }

    /// Step `position` of `id` was committed by transaction.
    pub(crate) fn committed(&self, id: &str, position: &str) {
        let position = self.position_hash(position);
        if let Some(l) = lock(&self.state).leases.get_mut(id) {
            l.positions.insert(position);
        }
    }

    /// Stop: delete the spares, and the segments if everything in them reached the journal.
    pub(crate) fn close(&self) {
        self.spares.close();
        let mut st = lock(&self.state);
        if st.pending.is_empty() {
            let retired = std::mem::take(&mut st.retired);
            for seg in retired
                .into_iter()
                .map(|r| r.segment)
                .chain(st.segment.take())
            {
                segment::remove(&seg.path);
            }
            // The folder too, once no process has a segment in it. (One that creates its
            // first segment at this instant fails to, and commits that step by transaction.)
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Steps of workflow `id` from the journal table (`rows`, in order) and from the log, as one
/// journal.
pub(crate) fn merge(
    mut rows: Vec<StepRecord>,
    logged: &[EncodedStep],
) -> Result<Vec<StepRecord>, StoreError> {
    let mut seq = rows.last().map_or(0, |r| r.seq);
    let known: HashSet<String> = rows.iter().map(|r| r.position.clone()).collect();
    for step in logged {
        if !known.contains(&step.position) {
            seq += 1;
            rows.push(step.decode(seq)?);
        }
    }
    Ok(rows)
}

/// `record` as it is once logged end `end` reaches the database.
pub(crate) fn apply_finish(record: &mut WorkflowRecord, end: FinishEntry) {
    record.status = end.status;
    record.output = Some(end.output);
    record.owner = None;
    record.lease_expires_at = None;
    record.wake_at = None;
    record.updated_at = end.at;
}

/// Queue an entry, logged at `(segment, offset, len)`, for the database; when to ask the
/// writer thread to flush.
fn push(
    st: &mut State,
    (segment, offset, len): (u64, u64, u32),
    id: Arc<str>,
    owner: Arc<str>,
    kept: Kept,
    expires_at: Millis,
) -> Option<Duration> {
    st.logged += 1;
    *st.waiting.entry(id.clone()).or_insert(0) += 1;
    st.pending.push_back(Pending {
        lsn: st.logged,
        segment,
        offset,
        len,
        id,
        owner,
        kept,
        expires_at,
    });
    match st.pending.len() {
        1 => Some(FLUSH_DELAY),
        FLUSH_AT => Some(Duration::ZERO),
        _ => None,
    }
}
