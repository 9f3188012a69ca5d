//! Checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that grows the WAL past 1000 pages,
//! and a checkpoint syncs the WAL and the database file: that commit waits for two `fsync`s,
//! several milliseconds on a busy disk. Here the write connection's WAL hook only wakes a
//! thread of our own, which runs `PASSIVE` checkpoints on its own connection. A passive
//! checkpoint waits for no reader or writer, so commits go on meanwhile; the durability of a
//! commit never depends on checkpoints.
//!
//! The WAL starts over from its beginning at the first write transaction that finds every
//! frame checkpointed. That happens by itself once writes pause (between model requests, say);
//! under a steady stream of commits it never does, and the WAL would grow. So once it has
//! grown past [`FINISH_PAGES`], the writer thread runs one more checkpoint on the write
//! connection itself, between two transactions (after the background pass in progress, if
//! any), so the next one starts the WAL over. That checkpoint syncs what the background passes
//! have not: it is the one wait commits still see, once every few thousand WAL pages.
//!
//! Starting the WAL over syncs its new header. The commit that is likely to do it (the first
//! after a checkpoint that emptied the WAL) runs on the writer thread, so callers' threads do
//! not wait for that sync either, but for one that begins in the instant between the end of a
//! background pass and the note it leaves for the writer.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rusqlite::Connection;

/// The WAL size, in pages, at which the first background pass runs, and the growth after which
/// the next one does. Each pass syncs the WAL while commits go on writing to it, which slows
/// them a little: two passes between two starts over of the WAL measured better than eight.
const PASS_PAGES: i32 = 4000;

/// The WAL size, in pages, past which the writer makes it start over (32 MiB of 4 KiB pages).
const FINISH_PAGES: i32 = 8192;

/// What the writer owes the checkpoints before its next batch.
pub(crate) mod task {
    /// Nothing.
    pub(crate) const NONE: u8 = 0;
    /// Commit the next batch on the writer thread: it may start the WAL over.
    pub(crate) const RESTART: u8 = 1;
    /// Checkpoint on the write connection, then commit the next batch on the writer thread.
    pub(crate) const FINISH: u8 = 2;
}

#[derive(Default)]
struct PassState {
    requested: bool,
    closed: bool,
}

/// The checkpoints of one store, shared by the write side and the checkpointer thread.
pub(crate) struct Checkpoints {
    /// The WAL size at which the next background pass runs.
    next_pass: AtomicI32,
    /// The WAL size at which the writer makes the WAL start over.
    next_finish: AtomicI32,
    state: Mutex<PassState>,
    wake: Condvar,
    /// What the writer owes the checkpoints (a [`task`]).
    writer_task: AtomicU8,
    /// Held while a checkpoint runs: one at a time.
    running: Mutex<()>,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Checkpoints {
            next_pass: AtomicI32::new(PASS_PAGES),
            next_finish: AtomicI32::new(FINISH_PAGES),
            state: Mutex::new(PassState::default()),
            wake: Condvar::new(),
            writer_task: AtomicU8::new(task::NONE),
            running: Mutex::new(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Checkpoints {
    /// The write connection's WAL hook: `pages` is the WAL's size after a commit. It replaces
    /// SQLite's automatic checkpoint (itself a WAL hook).
    pub(crate) fn hook(self: &Arc<Self>) -> impl FnMut(i32) + Send + 'static {
        let this = self.clone();
        let mut last = 0;
        move |pages| {
            if pages < last {
                // The WAL started over.
                this.next_pass.store(PASS_PAGES, Ordering::Relaxed);
                this.next_finish.store(FINISH_PAGES, Ordering::Relaxed);
            }
            last = pages;
            if pages >= this.next_finish.load(Ordering::Relaxed) {
                this.writer_task.store(task::FINISH, Ordering::Release);
            } else if pages >= this.next_pass.load(Ordering::Relaxed) {
                let mut s = lock(&this.state);
                if !s.requested {
                    s.requested = true;
                    this.wake.notify_one();
                }
            }
        }
    }

    /// What the writer owes before its next batch.
    pub(crate) fn writer_task(&self) -> u8 {
        self.writer_task.load(Ordering::Acquire)
    }

    /// The writer thread committed a batch: a restart it owed is done.
    pub(crate) fn committed_on_thread(&self) {
        let _ = self.writer_task.compare_exchange(
            task::RESTART,
            task::NONE,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// The writer's own checkpoint, on the write connection between two transactions.
    pub(crate) fn finish(&self, conn: &Connection) {
        self.writer_task.store(task::RESTART, Ordering::Release);
        let _running = lock(&self.running);
        match passive(conn) {
            // Should readers keep the WAL from starting over, wait for it to grow some more
            // before trying again.
            Ok((log, _)) => self.next_finish.store(
                FINISH_PAGES.max(log.saturating_add(PASS_PAGES)),
                Ordering::Relaxed,
            ),
            Err(e) => {
                tracing::debug!(error = %e, "WAL checkpoint failed; it is retried later");
            }
        }
    }

    /// Stop the checkpointer thread.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_one();
    }

    /// The checkpointer thread's loop, on its own connection.
    pub(crate) fn thread_loop(&self, conn: &Connection) {
        loop {
            {
                let mut s = lock(&self.state);
                while !s.requested && !s.closed {
                    s = self.wake.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                if s.closed {
                    return;
                }
                s.requested = false;
            }
            let pass = {
                let _running = lock(&self.running);
                passive(conn)
            };
            match pass {
                Ok((log, done)) => {
                    self.next_pass.store(
                        PASS_PAGES.max(log.saturating_add(PASS_PAGES)),
                        Ordering::Relaxed,
                    );
                    if log > 0 && done == log {
                        // The next write transaction may start the WAL over, and sync its
                        // header: let the writer thread run it.
                        self.writer_task.fetch_max(task::RESTART, Ordering::AcqRel);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "WAL checkpoint failed; it is retried later");
                }
            }
        }
    }
}

/// A passive checkpoint: the WAL's size and the frames now in the database file, in pages.
fn passive(conn: &Connection) -> rusqlite::Result<(i32, i32)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}
