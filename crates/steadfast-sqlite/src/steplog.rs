//! The step log: how a step commits in one `write` instead of one SQLite transaction.
//!
//! With [`Durability::ProcessCrashSafe`], a step is committed once its record is in the
//! kernel: a write to a file survives the death of the process that made it. A SQLite
//! transaction gives the same guarantee at the cost of locks, B-tree pages and several `write`s
//! of whole pages. So a step of a workflow whose lease this store took goes to a log file of
//! this store's own, and into the journal table later, many steps per transaction:
//!
//! - **Segment.** Each store writes to one segment file, `{db}-steplog/{pid}-{n}.log`, created
//!   on the first logged step and locked (`flock`) while the store is open. A record is a
//!   12-byte header (length, epoch, CRC-32) and the JSON of the step. The segment is reused
//!   from its start each time everything in it has reached the journal; the epoch tells the
//!   records written since from older ones further on.
//! - **Flush.** Every write transaction of the store first moves the logged steps into the
//!   journal, so whatever the store writes next (a workflow's end, a mailbox consumption)
//!   comes after its steps. The writer thread also flushes a little after the first step
//!   logged, and at once when many wait.
//! - **Fencing.** A step is logged only while the store knows that its caller holds the
//!   workflow's lease: it took the lease in `claim` (or extended it in `renew`) and the lease
//!   has not expired. Anything else, and a record too large for the segment, commits by
//!   transaction as before. The flush fences again: a step whose workflow changed hands in the
//!   meantime (its worker stalled past its lease) is dropped, and the new owner runs it again.
//! - **Recovery.** A segment whose lock can be taken belongs to a store that is gone (a killed
//!   process). Opening a store and every `claim` import such segments into the journal first,
//!   fenced by the workflows' owners, then delete them. A dead worker's workflows are thus
//!   claimed with every step it logged.
//! - **Reads.** `load_journal` adds the steps still in the log to what the journal table holds.
//!   Other processes read the table alone: they see a running workflow's newest steps once
//!   they are flushed (within [`FLUSH_DELAY`]); a workflow's end is written with all its steps.
//!
//! [`Durability::ProcessCrashSafe`]: crate::Durability::ProcessCrashSafe

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use steadfast_durable::{Claim, LeaseState, Millis, StepRecord, StoreError, now_millis};

use crate::writes::EncodedStep;

mod record;

use record::{HEADER, decode_segment, encode, seal};

/// The size of a segment. A step whose record does not fit in what is left commits by
/// transaction (which flushes the log and so empties the segment).
const SEGMENT_BYTES: u64 = 4 << 20;

/// How long after the first step waiting in the log the writer thread flushes it.
pub(crate) const FLUSH_DELAY: Duration = Duration::from_millis(10);

/// With this many steps waiting, the writer thread flushes at once.
const FLUSH_AT: usize = 256;

/// What became of a step offered to the log.
pub(crate) enum Logged {
    /// Committed. `Some(delay)`: ask the writer thread to flush within `delay`.
    Done(Option<Duration>),
    /// Not for the log: commit it by transaction.
    Transaction(EncodedStep),
}

/// A lease this store took, as far as it knows.
struct LocalLease {
    owner: String,
    /// No later than the lease's expiry in the database.
    expires_at: Millis,
    /// The positions in the journal and in the log.
    positions: HashSet<String>,
    /// Whether the journal table may hold steps of the workflow (else the log has them all).
    in_table: bool,
}

struct Segment {
    file: File,
    path: PathBuf,
    offset: u64,
    epoch: u32,
}

#[derive(Default)]
struct State {
    segment: Option<Segment>,
    /// Logged steps not yet in the journal table, in commit order.
    pending: VecDeque<Arc<EncodedStep>>,
    leases: HashMap<String, LocalLease>,
}

/// The step log of one store.
pub(crate) struct StepLog {
    dir: PathBuf,
    state: Mutex<State>,
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

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("cannot {what} `{}`: {e}", path.display()))
}

impl StepLog {
    /// The step log of database `db`; nothing is created before the first step.
    pub(crate) fn new(db: &Path) -> Self {
        StepLog {
            dir: dir_of(db),
            state: Mutex::new(State::default()),
        }
    }

    /// Log `step` if its workflow's lease is known to be held by its owner.
    pub(crate) fn append(&self, step: EncodedStep) -> Result<Logged, StoreError> {
        let mut st = lock(&self.state);
        let Some(lease) = st.leases.get(&step.id) else {
            return Ok(Logged::Transaction(step));
        };
        if lease.owner != step.owner || now_millis() >= lease.expires_at {
            return Ok(Logged::Transaction(step));
        }
        if lease.positions.contains(&step.position) {
            return Err(step.duplicate());
        }
        let record = match encode(&step, 0) {
            Some(r) if (r.len() as u64) < SEGMENT_BYTES => r,
            _ => return Ok(Logged::Transaction(step)),
        };
        if st.segment.is_none() {
            match self.create_segment() {
                Ok(seg) => st.segment = Some(seg),
                Err(e) => {
                    tracing::warn!(error = %e, "the step log is unavailable; steps commit by transaction");
                    return Ok(Logged::Transaction(step));
                }
            }
        }
        let seg = st.segment.as_mut().expect("created above");
        let len = record.len() as u64;
        if seg.offset + len > SEGMENT_BYTES {
            return Ok(Logged::Transaction(step));
        }
        let mut record = record;
        record[4..8].copy_from_slice(&seg.epoch.to_le_bytes());
        seal(&mut record);
        if let Err(e) = seg.file.write_all_at(&record, seg.offset) {
            tracing::warn!(error = %e, "cannot write the step log; the step commits by transaction");
            return Ok(Logged::Transaction(step));
        }
        seg.offset += len;
        if let Some(lease) = st.leases.get_mut(&step.id) {
            lease.positions.insert(step.position.clone());
        }
        st.pending.push_back(Arc::new(step));
        Ok(Logged::Done(match st.pending.len() {
            1 => Some(FLUSH_DELAY),
            FLUSH_AT => Some(Duration::ZERO),
            _ => None,
        }))
    }

    fn create_segment(&self) -> Result<Segment, StoreError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(&self.dir).map_err(|e| io("create", &self.dir, e))?;
        let path = self.dir.join(format!(
            "{}-{}-{}.log",
            std::process::id(),
            now_millis(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io("create", &path, e))?;
        file.try_lock()
            .map_err(|e| StoreError::Backend(format!("cannot lock `{}`: {e}", path.display())))?;
        file.set_len(SEGMENT_BYTES)
            .map_err(|e| io("size", &path, e))?;
        Ok(Segment {
            file,
            path,
            offset: 0,
            epoch: 1,
        })
    }

    /// Whether steps wait in the log.
    pub(crate) fn has_pending(&self) -> bool {
        !lock(&self.state).pending.is_empty()
    }

    /// Move the logged steps into the journal, inside the caller's transaction. Returns how
    /// many were taken, to pass to [`StepLog::flushed`] once the transaction commits.
    pub(crate) fn flush_into(&self, conn: &Connection) -> Result<usize, StoreError> {
        let steps: Vec<Arc<EncodedStep>> = lock(&self.state).pending.iter().cloned().collect();
        insert_all(conn, steps.iter().map(|s| &**s))?;
        Ok(steps.len())
    }

    /// The first `n` logged steps are in the journal now.
    pub(crate) fn flushed(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut st = lock(&self.state);
        let st = &mut *st;
        for step in st.pending.drain(..n.min(st.pending.len())) {
            if let Some(lease) = st.leases.get_mut(&step.id) {
                lease.in_table = true;
            }
        }
        if st.pending.is_empty()
            && let Some(seg) = st.segment.as_mut()
        {
            // Everything is in the journal: start the segment over.
            seg.epoch = seg.epoch.wrapping_add(1).max(1);
            seg.offset = 0;
            if let Err(e) = seg.file.write_all_at(&[0; HEADER], 0) {
                tracing::warn!(error = %e, "cannot reset the step log");
                // Keep appending after what is there; importing it again changes nothing.
                seg.offset = SEGMENT_BYTES;
            }
        }
    }

    /// Workflow `id`'s logged steps not yet in the journal table, and whether the table may
    /// hold others.
    pub(crate) fn journal_view(&self, id: &str) -> (Vec<Arc<EncodedStep>>, bool) {
        let st = lock(&self.state);
        let pending = st.pending.iter().filter(|s| s.id == id).cloned().collect();
        let in_table = st.leases.get(id).is_none_or(|l| l.in_table);
        (pending, in_table)
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
        for (claim, positions) in claims.iter().zip(positions) {
            st.leases.insert(
                claim.record.id.clone(),
                LocalLease {
                    owner: owner.to_owned(),
                    expires_at,
                    in_table: !positions.is_empty(),
                    positions,
                },
            );
        }
    }

    /// `owner` renewed leases until no earlier than `expires_at`; those not held are gone.
    pub(crate) fn renewed(&self, owner: &str, expires_at: Millis, states: &[LeaseState]) {
        let mut st = lock(&self.state);
        for s in states {
            match st.leases.get_mut(&s.id) {
                Some(l) if l.owner == owner && s.held => l.expires_at = expires_at,
                Some(l) if l.owner == owner => {
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
        if let Some(l) = lock(&self.state).leases.get_mut(id) {
            l.positions.insert(position.to_owned());
        }
    }

    /// The segments of stores that are gone, locked by this one, with their steps.
    pub(crate) fn orphans(&self) -> Vec<Orphan> {
        let own = lock(&self.state).segment.as_ref().map(|s| s.path.clone());
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "log") || Some(&path) == own.as_ref() {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot lock a step log");
                    continue;
                }
            }
            let steps = match std::fs::read(&path) {
                Ok(bytes) => decode_segment(&bytes, &path),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read a step log");
                    continue;
                }
            };
            found.push(Orphan {
                path,
                _file: file,
                steps,
            });
        }
        // Oldest first: a process's segments, and processes, in the order they were made.
        found.sort_by(|a, b| a.path.cmp(&b.path));
        found
    }

    /// Stop: delete the segment if everything in it reached the journal.
    pub(crate) fn close(&self) {
        let mut st = lock(&self.state);
        if st.pending.is_empty()
            && let Some(seg) = st.segment.take()
        {
            let _ = std::fs::remove_file(&seg.path);
        }
    }
}

/// A segment of a store that is gone, locked while it is imported.
pub(crate) struct Orphan {
    path: PathBuf,
    _file: File,
    steps: Vec<EncodedStep>,
}

/// Import `orphans` into the journal inside the caller's transaction.
pub(crate) fn import(conn: &Connection, orphans: &[Orphan]) -> Result<usize, StoreError> {
    insert_all(conn, orphans.iter().flat_map(|o| o.steps.iter()))
}

/// Delete imported segments (their transaction committed).
pub(crate) fn remove(orphans: Vec<Orphan>) {
    for o in orphans {
        if let Err(e) = std::fs::remove_file(&o.path) {
            tracing::warn!(path = %o.path.display(), error = %e, "cannot delete an imported step log");
        }
    }
}

/// Import the segments of stores that are gone, on `conn` (outside any transaction).
pub(crate) fn recover(conn: &Connection, db: &Path) -> Result<(), StoreError> {
    let log = StepLog::new(db);
    let orphans = log.orphans();
    if orphans.is_empty() {
        return Ok(());
    }
    let map = crate::schema::map_err;
    conn.execute_batch("BEGIN IMMEDIATE").map_err(map)?;
    let imported = import(conn, &orphans).and_then(|n| {
        conn.execute_batch("COMMIT").map_err(map)?;
        Ok(n)
    });
    match imported {
        Ok(n) => {
            tracing::info!(
                steps = n,
                segments = orphans.len(),
                "imported the step logs of stopped workers"
            );
            remove(orphans);
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Insert logged steps into the journal, in order, each unless its workflow changed hands or
/// has it already; how many were. The lease and the last sequence number are read once per
/// run of steps of one workflow and owner.
fn insert_all<'a>(
    conn: &Connection,
    steps: impl Iterator<Item = &'a EncodedStep>,
) -> Result<usize, StoreError> {
    let map = crate::schema::map_err;
    let mut lease = conn
        .prepare_cached("SELECT status = 'running' AND owner = ?2 FROM workflows WHERE id = ?1")
        .map_err(map)?;
    let mut last = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM journal WHERE workflow_id = ?1")
        .map_err(map)?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO journal (workflow_id, position, seq, step_id, kind, name, input_hash, \
                 input, output, ok, attempts, started_at, duration_us) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
             ON CONFLICT DO NOTHING",
        )
        .map_err(map)?;
    // The workflow and owner of the current run of steps; its next `seq`, if it holds the lease.
    let mut run: Option<(&str, &str, Option<i64>)> = None;
    let mut inserted = 0;
    for step in steps {
        let next = match &mut run {
            Some((id, owner, next)) if *id == step.id && *owner == step.owner => next,
            _ => {
                let held: Option<bool> = lease
                    .query_row([&step.id, &step.owner], |r| r.get(0))
                    .optional()
                    .map_err(map)?;
                let next = if held == Some(true) {
                    Some(
                        last.query_row([&step.id], |r| r.get::<_, i64>(0))
                            .map_err(map)?
                            + 1,
                    )
                } else {
                    None
                };
                &mut run.insert((&step.id, &step.owner, next)).2
            }
        };
        let Some(seq) = next else {
            // A step flushed just before its process died is in the journal already.
            let there = conn
                .prepare_cached("SELECT 1 FROM journal WHERE workflow_id = ?1 AND position = ?2")
                .map_err(map)?
                .exists([&step.id, &step.position])
                .map_err(map)?;
            if !there {
                tracing::warn!(
                    workflow_id = %step.id,
                    step = %step.step_id,
                    "a logged step was dropped: its worker lost the workflow's lease before it \
                     reached the journal, so the workflow's new worker runs the step again"
                );
            }
            continue;
        };
        let n = insert
            .execute(params![
                step.id,
                step.position,
                *seq,
                step.step_id,
                step.kind.as_str(),
                step.name,
                step.input_hash,
                step.input,
                step.output,
                step.ok,
                step.attempts,
                step.started_at,
                step.duration_us,
            ])
            .map_err(map)?;
        if n == 1 {
            *seq += 1;
            inserted += 1;
        }
    }
    Ok(inserted)
}

/// Steps of workflow `id` from the journal table (`rows`, in order) and from the log, as one
/// journal.
pub(crate) fn merge(
    mut rows: Vec<StepRecord>,
    logged: &[Arc<EncodedStep>],
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
