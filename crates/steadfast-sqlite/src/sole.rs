//! Starting workflows by the step log while this store is the only one with the database open.
//!
//! Two processes that start a workflow under one id must not both run it, so a start commits
//! the workflow's row in a transaction: the table's primary key decides between them. That
//! transaction waits for the write lock, which a flush of the step log holds to the end of its
//! `COMMIT`. A store that has the file to itself needs no arbiter between processes: it decides
//! its starts in memory, one at a time, and logs them like steps (see `steplog.rs`).
//!
//! - **The lock.** Every store that writes holds `{db}-steplog/sole.lock` with `flock`:
//!   exclusively while it is alone, shared otherwise. Opening tries for the exclusive lock,
//!   then for a shared one. Locks are taken and converted only under `sole.gate`, held for that
//!   instant, so that no store takes the exclusive lock in the moment another converts its own
//!   (`flock` lets go of the old lock before it takes the new one).
//! - **Waiting.** A store that opens while another has the file to itself reads at once; its
//!   first write waits (up to the busy timeout) while its thread leaves a knock (`sole.knock`)
//!   and tries again every millisecond. The sole store looks for a knock every 10 ms. On one,
//!   it stops starting by the log, waits for the starts under way, moves its log into the
//!   tables, and converts its lock to a shared one: the newcomer's transactions then see every
//!   workflow it started.
//! - **Taking it back.** A store that shares the file tries for the exclusive lock every
//!   second, and gets it once the others have closed the file.
//! - **Crashes.** The kernel drops the locks of a process that dies. Its logged starts are in
//!   its segments: a store that takes a lock imports the segments of dead processes before its
//!   first write.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use steadfast_durable::StoreError;
use tokio::sync::Notify;

/// How often the sole store looks for a knock: a newcomer's first write waits about this long.
const KNOCK_EVERY: Duration = Duration::from_millis(10);

/// How often a waiting store tries again for its lock, or for its import.
const RETRY_EVERY: Duration = Duration::from_millis(1);

/// How often a store that shares the file tries to have it to itself again.
const TAKE_BACK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No lock yet: another store has the file to itself. Reads go on; writes wait.
    Waiting,
    /// The exclusive lock: starts go to the log.
    Sole,
    /// Giving way: starts commit by transaction, and those under way finish first.
    Draining,
    /// A shared lock: starts commit by transaction.
    Shared,
}

struct State {
    mode: Mode,
    /// Whether the logs of dead processes were imported since the lock was taken.
    imported: bool,
    /// Whether a write waits for the lock.
    wanted: bool,
    /// Starts by the log under way.
    starts: usize,
    closed: bool,
}

/// What the thread of [`Sole`] needs from the store.
pub(crate) struct Hooks<'a> {
    /// Move the step log into the tables.
    pub(crate) flush: &'a dyn Fn() -> Result<(), StoreError>,
    /// Import the logs of dead processes.
    pub(crate) import: &'a dyn Fn() -> Result<(), StoreError>,
}

/// The lock of one store on its database's `sole.lock`, and what it allows.
pub(crate) struct Sole {
    lock: File,
    path: PathBuf,
    gate: PathBuf,
    knock: PathBuf,
    db: PathBuf,
    state: Mutex<State>,
    /// The thread's wake-up.
    changed: Condvar,
    /// Writes waiting for the lock are told when to look again.
    ready: Notify,
}

/// A start by the log under way: the store does not give way before it is dropped.
pub(crate) struct SoleStart<'a>(&'a Sole);

impl Drop for SoleStart<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.0.state);
        st.starts -= 1;
        // Only a store giving way waits for its starts (a wake-up is a system call).
        if st.mode == Mode::Draining && st.starts == 0 {
            self.0.changed.notify_all();
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("cannot {what} `{}`: {e}", path.display()))
}

/// Whether a `try_lock*` call took the lock.
fn took(r: Result<(), TryLockError>, path: &Path) -> Result<bool, StoreError> {
    match r {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(io("lock", path, e)),
    }
}

fn open_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io("open", path, e))
}

impl Sole {
    /// The lock of the database at `db`, in the folder `dir`: exclusive if no other store has
    /// the file open, else shared, else none yet (another store has the file to itself).
    pub(crate) fn open(db: &Path, dir: &Path) -> Result<Sole, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let path = dir.join("sole.lock");
        let sole = Sole {
            lock: open_file(&path)?,
            path,
            gate: dir.join("sole.gate"),
            knock: dir.join("sole.knock"),
            db: db.to_owned(),
            state: Mutex::new(State {
                mode: Mode::Waiting,
                imported: false,
                wanted: false,
                starts: 0,
                closed: false,
            }),
            changed: Condvar::new(),
            ready: Notify::new(),
        };
        let mode = sole.try_take(true)?;
        lock(&sole.state).mode = mode;
        Ok(sole)
    }

    /// Under the gate, the exclusive lock, else (with `shared`) a shared one: the mode that
    /// gives, or [`Mode::Waiting`] for neither.
    fn try_take(&self, shared: bool) -> Result<Mode, StoreError> {
        let _gate = self.gate()?;
        if took(self.lock.try_lock(), &self.path)? {
            return Ok(Mode::Sole);
        }
        if shared && took(self.lock.try_lock_shared(), &self.path)? {
            return Ok(Mode::Shared);
        }
        Ok(Mode::Waiting)
    }

    /// The gate, held until the file is dropped.
    fn gate(&self) -> Result<File, StoreError> {
        let gate = open_file(&self.gate)?;
        gate.lock().map_err(|e| io("lock", &self.gate, e))?;
        Ok(gate)
    }

    /// The logs of dead processes were imported under the lock just taken (when opening).
    pub(crate) fn imported(&self) {
        let mut st = lock(&self.state);
        if st.mode != Mode::Waiting {
            st.imported = true;
        }
    }

    /// Whether the store has the file to itself.
    pub(crate) fn is_sole(&self) -> bool {
        lock(&self.state).mode == Mode::Sole
    }

    /// A start by the log, if the store has the file to itself; it does not give way while the
    /// start lives.
    pub(crate) fn enter(&self) -> Option<SoleStart<'_>> {
        let mut st = lock(&self.state);
        (st.mode == Mode::Sole && st.imported).then(|| {
            st.starts += 1;
            SoleStart(self)
        })
    }

    /// Wait until the store may write: it holds a lock, and has imported the logs of dead
    /// processes under it. Fails with [`StoreError::Locked`] after `timeout`.
    pub(crate) async fn ready(&self, timeout: Duration) -> Result<(), StoreError> {
        let mut deadline = None;
        loop {
            let mut told = std::pin::pin!(self.ready.notified());
            told.as_mut().enable();
            {
                let mut st = lock(&self.state);
                if st.mode != Mode::Waiting && st.imported {
                    return Ok(());
                }
                st.wanted = true;
            }
            self.changed.notify_all();
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            if Instant::now() >= deadline {
                return Err(StoreError::Locked(format!(
                    "another process has `{}` open to itself and did not share it within \
                     {timeout:?}",
                    self.db.display()
                )));
            }
            told.await;
        }
    }

    /// Stop the thread.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.changed.notify_all();
    }

    /// The store's thread: it takes a lock for a waiting write, imports the logs of dead
    /// processes under a new lock, gives way on a knock, and takes the file back once alone.
    pub(crate) fn thread_loop(&self, hooks: &Hooks<'_>) {
        let mut tried = Instant::now();
        loop {
            let (mode, imported, wanted) = {
                let st = lock(&self.state);
                let wait = match st.mode {
                    Mode::Waiting if st.wanted => RETRY_EVERY,
                    Mode::Waiting => Duration::from_secs(3600),
                    _ if !st.imported => RETRY_EVERY,
                    Mode::Shared => TAKE_BACK_EVERY.saturating_sub(tried.elapsed()),
                    Mode::Sole | Mode::Draining => KNOCK_EVERY,
                };
                let (st, _) = self
                    .changed
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner());
                if st.closed {
                    return;
                }
                (st.mode, st.imported, st.wanted)
            };
            match mode {
                Mode::Waiting if wanted => self.take_for_write(),
                Mode::Waiting => {}
                _ if !imported => self.import(hooks),
                Mode::Sole if self.knock.exists() => self.give_way(hooks),
                Mode::Shared if tried.elapsed() >= TAKE_BACK_EVERY => {
                    tried = Instant::now();
                    self.take_back();
                }
                _ => {}
            }
        }
    }

    /// A write waits: take a lock, or knock.
    fn take_for_write(&self) {
        match self.try_take(true) {
            Ok(Mode::Waiting) => {
                // Another store has the file to itself: ask it to share.
                if let Err(e) = open_file(&self.knock) {
                    tracing::warn!(error = %e, "cannot ask another process to share the database");
                }
            }
            Ok(mode) => lock(&self.state).mode = mode,
            Err(e) => tracing::warn!(error = %e, "cannot lock the database's sole.lock"),
        }
        // The waiting writes look at their deadlines.
        self.ready.notify_waiters();
    }

    /// Import the logs of dead processes (one that had the file to itself may have logged
    /// starts), then let writes go.
    fn import(&self, hooks: &Hooks<'_>) {
        match (hooks.import)() {
            Ok(()) => lock(&self.state).imported = true,
            Err(e) => {
                tracing::debug!(error = %e, "the logs of stopped workers are imported later");
            }
        }
        self.ready.notify_waiters();
    }

    /// Share the file: no more starts by the log, the log in the tables, the lock shared.
    fn give_way(&self, hooks: &Hooks<'_>) {
        {
            let mut st = lock(&self.state);
            st.mode = Mode::Draining;
            while st.starts > 0 && !st.closed {
                st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        // Every start logged so far reaches the tables before another store may start one.
        if let Err(e) = (hooks.flush)() {
            // A full disk, or the write lock held elsewhere: go on alone, try again soon.
            tracing::warn!(error = %e, "cannot share the database with another process yet");
            lock(&self.state).mode = Mode::Sole;
            return;
        }
        // Converting lets go of the exclusive lock first; under the gate nobody takes it
        // meanwhile, so the shared one is free.
        let shared = self.gate().and_then(|_gate| {
            self.lock
                .lock_shared()
                .map_err(|e| io("lock", &self.path, e))
        });
        if let Err(e) = shared {
            tracing::error!(error = %e, "cannot share the database's lock");
        }
        lock(&self.state).mode = Mode::Shared;
        let _ = std::fs::remove_file(&self.knock);
    }

    /// Have the file to itself again if no other store has it open.
    fn take_back(&self) {
        if self.knock.exists() {
            return;
        }
        let Ok(_gate) = self.gate() else { return };
        match took(self.lock.try_lock(), &self.path) {
            Ok(true) => lock(&self.state).mode = Mode::Sole,
            _ => {
                // The failed conversion let go of the shared lock: take it again. Under the
                // gate nobody holds the exclusive one, so it is free.
                if let Err(e) = self.lock.lock_shared() {
                    tracing::warn!(error = %e, "cannot lock the database's sole.lock again");
                }
            }
        }
    }
}
