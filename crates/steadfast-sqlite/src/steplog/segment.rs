//! The step log's segment files: made, started over, kept as spares, reused and deleted.
//!
//! A segment that fills up while some of its entries still wait for the tables is retired.
//! Once its last entry is in the tables it becomes a spare rather than being deleted, and the
//! next segment to fill up is followed by a spare, not by a new file. A new file is a hole of
//! [`SEGMENT_BYTES`]: the kernel allocates, zeroes and maps each of its pages at the first
//! write to it, on the thread of the step being logged. A spare's pages are allocated already
//! (and usually cached), so a step overwrites them in place.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use steadfast_durable::{StoreError, now_millis};

use super::record::HEADER;
use super::{SEGMENT_BYTES, io};

/// At most this many spares are kept. Under a steady stream of steps a segment's entries reach
/// the tables long before the next segment fills up, so one is enough; the second covers a
/// flush held up past that.
const SPARES: usize = 2;

/// A segment file of this store's, locked (`flock`) while it is open.
pub(super) struct Segment {
    /// Shared with a flush that reads records back.
    pub(super) file: Arc<File>,
    pub(super) path: PathBuf,
    /// Where the next record goes.
    pub(super) offset: u64,
    /// The epoch of the records written since the segment last started over.
    pub(super) epoch: u32,
}

/// A full segment whose entries are not all in the tables yet.
pub(super) struct Retired {
    pub(super) segment: Segment,
    /// Its number, as entries know it.
    pub(super) serial: u64,
    /// The place of its last entry.
    pub(super) last: u64,
}

/// A new segment's path in `dir`: zero-padded, so that a process's segments sort in the order
/// they were made (or reused), which is the order of their entries.
fn new_path(dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        "{}-{:013}-{:06}.log",
        std::process::id(),
        now_millis(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Segment {
    /// A new, locked segment file in `dir`.
    pub(super) fn create(dir: &Path) -> Result<Segment, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let path = new_path(dir);
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
            file: Arc::new(file),
            path,
            offset: 0,
            epoch: 1,
        })
    }

    /// This new segment, written through with zeros.
    fn zeroed(self) -> Result<Segment, StoreError> {
        let zeros = vec![0u8; 64 << 10];
        let mut at = 0;
        while at < SEGMENT_BYTES {
            self.file
                .write_all_at(&zeros, at)
                .map_err(|e| io("write", &self.path, e))?;
            at += zeros.len() as u64;
        }
        Ok(self)
    }

    /// Write `record` (sealed) at the end; whether it is there.
    pub(super) fn append(&mut self, record: &[u8]) -> bool {
        if let Err(e) = self.file.write_all_at(record, self.offset) {
            tracing::warn!(error = %e, "cannot write the step log; the step commits by transaction");
            return false;
        }
        self.offset += record.len() as u64;
        true
    }

    /// Whether `len` more bytes fit.
    pub(super) fn fits(&self, len: usize) -> bool {
        self.offset + len as u64 <= SEGMENT_BYTES
    }

    /// Start over from the beginning in a new epoch: every entry in it is in the tables. A
    /// reader stops at the first record of another epoch than the first record's, so the
    /// records from before are never read again: the first is cleared now, and the others
    /// follow the new epoch's last record.
    pub(super) fn start_over(&mut self) {
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.offset = 0;
        if let Err(e) = self.file.write_all_at(&[0; HEADER], 0) {
            tracing::warn!(error = %e, "cannot reset the step log");
            // Go on in another segment; importing this one again changes nothing.
            self.offset = SEGMENT_BYTES;
        }
    }
}

/// The segments of this store that hold no waiting entry, ready for the next to fill up; shared
/// with the thread that prepares them.
#[derive(Default)]
pub(super) struct Spares(Mutex<SpareState>);

#[derive(Default)]
struct SpareState {
    ready: Vec<Segment>,
    /// The last thread that prepared one (or prepares it still).
    thread: Option<std::thread::JoinHandle<()>>,
    /// The log closed: spares are deleted, not kept.
    closed: bool,
}

impl Spares {
    fn state(&self) -> MutexGuard<'_, SpareState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `segment`, whose entries are all in the tables, for reuse; or delete it.
    pub(super) fn keep(&self, mut segment: Segment) {
        segment.start_over();
        let mut st = self.state();
        if st.ready.len() < SPARES && !st.closed && segment.offset == 0 {
            st.ready.push(segment);
        } else {
            drop(st);
            remove(&segment.path);
        }
    }

    /// The next segment in `dir`: a spare renamed to a new path (so that names still sort in
    /// the order of their entries), or else a new file. When that leaves no spare, a thread
    /// prepares one.
    pub(super) fn next(self: &Arc<Self>, dir: &Path) -> Result<Segment, StoreError> {
        let (spare, prepare) = {
            let mut st = self.state();
            let spare = st.ready.pop();
            let idle = st.thread.as_ref().is_none_or(|t| t.is_finished());
            let prepare = st.ready.is_empty() && idle && !st.closed;
            (spare, prepare)
        };
        // The caller holds the log's lock: no other `next` starts a thread meanwhile.
        if prepare {
            self.prepare(dir);
        }
        if let Some(mut spare) = spare {
            let path = new_path(dir);
            match std::fs::rename(&spare.path, &path) {
                Ok(()) => {
                    spare.path = path;
                    return Ok(spare);
                }
                Err(e) => {
                    tracing::warn!(path = %spare.path.display(), error = %e, "cannot reuse a step log segment");
                    remove(&spare.path);
                }
            }
        }
        Segment::create(dir)
    }

    /// Prepare a spare in `dir` on a thread of its own: a new segment, written through with
    /// zeros so that its pages are allocated before a step writes to them.
    fn prepare(self: &Arc<Self>, dir: &Path) {
        let spares = self.clone();
        let dir = dir.to_owned();
        let spawned = std::thread::Builder::new()
            .name("steadfast-steplog".into())
            .spawn(move || {
                let segment = Segment::create(&dir).and_then(|s| s.zeroed());
                let mut st = spares.state();
                match segment {
                    Ok(s) if !st.closed && st.ready.len() < SPARES => st.ready.push(s),
                    Ok(s) => {
                        drop(st);
                        remove(&s.path);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot prepare a step log segment");
                    }
                }
            });
        if let Ok(thread) = spawned {
            self.state().thread = Some(thread);
        }
    }

    /// Delete every spare, once the one being prepared (if any) is done.
    pub(super) fn close(&self) {
        let thread = {
            let mut st = self.state();
            st.closed = true;
            st.thread.take()
        };
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        let ready = std::mem::take(&mut self.state().ready);
        for spare in ready {
            remove(&spare.path);
        }
    }
}

/// Delete a segment of this store's whose entries are all in the tables.
pub(super) fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot delete a step log segment");
    }
}
