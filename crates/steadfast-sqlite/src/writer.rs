//! The write path: one write connection, leader/follower group commit.
//!
//! Every write is a request (a closure over the write connection) put in one queue. Whoever
//! finds the queue without a leader becomes the leader and commits every request waiting in it
//! in one transaction (see [`crate::batch`]); the others wait for their answers.
//!
//! - **On the caller's thread.** With [`Durability::ProcessCrashSafe`] a commit is a few
//!   `write`s to the WAL and no `fsync`, so the caller that finds no leader commits the batch
//!   itself: no hand-off to another thread and back. It first yields once to its executor, so
//!   that writes issued at the same moment (the other branches of a join, other tasks) join its
//!   transaction. It never waits for a lock: when another process holds the write lock, the
//!   batch goes to the writer thread, which waits under the busy timeout.
//! - **On the writer thread.** With [`Durability::PowerLossSafe`] (an `fsync` per commit), for a
//!   batch that met a lock, for requests that arrive while a caller's commit runs, and when the
//!   checkpoints need it (see [`crate::checkpoint`]), the dedicated writer thread leads, so an
//!   async executor never waits for a lock or a disk sync.
//! - **Giving way.** A request that arrives while the writer thread flushes the step log in the
//!   background interrupts the flush within a few entries and is committed at once. Its caller
//!   polls for the answer for up to [`SPIN`] before it waits to be woken: the wake-up of a
//!   parked thread costs more than the wait.
//!
//! [`Durability::ProcessCrashSafe`]: crate::Durability::ProcessCrashSafe
//! [`Durability::PowerLossSafe`]: crate::Durability::PowerLossSafe

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use steadfast_durable::StoreError;
use tokio::sync::oneshot;

use crate::batch::{Job, NoQueue, Queued, Request, commit_batch};
use crate::checkpoint::{Checkpoints, task};
use crate::schema::map_err;
use crate::steplog::{ALL, FLUSH_DELAY, StepLog};

/// At most this many entries of the step log go into one transaction of the writer thread's
/// own, so a caller that needs the write connection meanwhile waits for a short one. Larger
/// chunks write each B-tree page fewer times: 64 measured about 85 WAL frames per 151-step
/// game, 256 about 55.
const FLUSH_CHUNK: usize = 256;

/// A background flush that requests interrupt is rolled back so that they need not wait for
/// its pages to be written; after this many in a row, requests join the next flush instead, so
/// that a steady stream of them cannot keep the step log from the tables.
const MAX_INTERRUPTIONS: u32 = 2;

/// A request that arrives while the writer thread flushes the step log in the background is
/// committed within a few entries (the flush gives way to it): its caller polls for the answer
/// this long before it waits to be woken, which would cost it more than the wait.
const SPIN: Duration = Duration::from_micros(100);

/// How long the writer thread keeps looking at its queue every [`FLUSH_DELAY`] after its last
/// work, before it sleeps until woken.
const LINGER: Duration = Duration::from_secs(1);

/// At most this many requests share one transaction.
const MAX_BATCH: usize = 512;

/// A caller that leads commits at most this many batches before it hands the queue to the
/// writer thread: requests keep arriving under load, and its own caller is waiting.
const CALLER_BATCHES: usize = 4;

/// Counters of the write path.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) transactions: AtomicU64,
    pub(crate) requests: AtomicU64,
}

/// Who commits the requests in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leader {
    /// Nobody: the next request's caller leads (or wakes the writer thread).
    None,
    /// A caller, on its own thread.
    Caller,
    /// The writer thread.
    Thread,
}

struct Queue {
    jobs: VecDeque<Job>,
    leader: Leader,
    closed: bool,
    /// When the writer thread flushes the step log (if no transaction did before).
    flush_at: Option<Instant>,
    /// Whether the writer thread runs a flush of the step log that gives way to requests.
    background: bool,
    /// Whether the writer thread waits for a wake-up, and until when (`Some(None)`: until
    /// woken). When it does not, it looks at the queue before it waits again: a change to
    /// the queue then needs no wake-up, which is a system call.
    asleep: Option<Option<Instant>>,
}

/// The write connection and whether its busy handler currently waits for locks.
struct WriteConn {
    conn: Connection,
    waits: bool,
}

impl WriteConn {
    /// Wait for locks (under the busy timeout) or fail at once with "busy".
    fn set_waits(&mut self, waits: bool, busy_timeout: Duration) {
        if self.waits != waits {
            let t = if waits { busy_timeout } else { Duration::ZERO };
            if self.conn.busy_timeout(t).is_ok() {
                self.waits = waits;
            }
        }
    }
}

/// The write side of a store: its connection, its queue and its thread's wake-up.
pub(crate) struct Writer {
    conn: Mutex<WriteConn>,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Whether callers may commit on their own threads (no `fsync` per commit).
    inline: bool,
    checkpoints: Arc<Checkpoints>,
    busy_timeout: Duration,
    pub(crate) counters: Counters,
    /// The step log, which every transaction flushes first.
    pub(crate) log: Option<Arc<StepLog>>,
    /// Flushes interrupted in a row.
    interruptions: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn stopped() -> StoreError {
    StoreError::Backend("the store's connection threads have stopped".into())
}

impl Writer {
    /// The write side over `conn` (in WAL mode, its busy timeout set to `busy_timeout`), its
    /// WAL checkpointed by `checkpoints`. `inline`: callers commit on their own threads when
    /// they can.
    pub(crate) fn new(
        mut conn: Connection,
        inline: bool,
        busy_timeout: Duration,
        checkpoints: Arc<Checkpoints>,
        log: Option<Arc<StepLog>>,
    ) -> Result<Self, StoreError> {
        let mut hook = checkpoints.hook();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages| {
            hook(pages);
            Ok(())
        }))
        .map_err(map_err)?;
        Ok(Writer {
            conn: Mutex::new(WriteConn { conn, waits: true }),
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                leader: Leader::None,
                closed: false,
                flush_at: None,
                background: false,
                asleep: None,
            }),
            wake: Condvar::new(),
            inline,
            checkpoints,
            busy_timeout,
            counters: Counters::default(),
            log,
            interruptions: AtomicU32::new(0),
        })
    }

    /// Have the writer thread flush the step log within `delay`, unless a transaction does
    /// before.
    pub(crate) fn flush_within(&self, delay: Duration) {
        let at = Instant::now() + delay;
        let mut q = lock(&self.queue);
        if q.flush_at.is_none_or(|t| at < t) {
            q.flush_at = Some(at);
            self.wake_thread(&q, Some(at));
        }
    }

    /// Wake the writer thread if it waits past `by` (`None`: it must look at the queue now).
    fn wake_thread(&self, q: &Queue, by: Option<Instant>) {
        let wake = match q.asleep {
            None => false,
            Some(None) => true,
            Some(Some(until)) => by.is_none_or(|by| by < until),
        };
        if wake {
            self.wake.notify_one();
        }
    }

    /// Run `f` in the next write transaction; its result once that transaction committed.
    /// With `flush`, the entries of the step log reach the database first.
    pub(crate) async fn write<T, F>(&self, flush: bool, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, mut rx) = oneshot::channel();
        let (lead, spin) = {
            let mut q = lock(&self.queue);
            if q.closed {
                return Err(stopped());
            }
            q.jobs.push_back(Box::new(Request { f, tx, flush }));
            match q.leader {
                Leader::None if self.inline => {
                    q.leader = Leader::Caller;
                    (true, false)
                }
                Leader::None => {
                    self.hand_to_thread(&mut q);
                    (false, false)
                }
                // The leader takes the request with its next batch.
                Leader::Caller => (false, false),
                Leader::Thread => (false, q.background),
            }
        };
        if spin {
            let until = Instant::now() + SPIN;
            loop {
                match rx.try_recv() {
                    Ok(answer) => return answer,
                    Err(oneshot::error::TryRecvError::Closed) => return Err(stopped()),
                    Err(oneshot::error::TryRecvError::Empty) if Instant::now() < until => {
                        std::hint::spin_loop();
                    }
                    Err(oneshot::error::TryRecvError::Empty) => break,
                }
            }
        }
        if lead {
            let mut lead = Lead {
                writer: self,
                done: false,
            };
            // Writes issued at this moment join the transaction: the other branches of a
            // join are polled before this future is polled again.
            YieldOnce(false).await;
            lead.commit();
        }
        rx.await.map_err(|_| stopped())?
    }

    /// Stop: the writer thread answers what is queued, then ends.
    pub(crate) fn close(&self) {
        lock(&self.queue).closed = true;
        self.wake.notify_all();
    }

    /// Give the queue to the writer thread.
    fn hand_to_thread(&self, q: &mut Queue) {
        q.leader = Leader::Thread;
        self.wake_thread(q, None);
    }

    fn take_batch(q: &mut Queue) -> Vec<Job> {
        let n = q.jobs.len().min(MAX_BATCH);
        q.jobs.drain(..n).collect()
    }

    fn count(&self, requests: usize) {
        self.counters.transactions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .requests
            .fetch_add(requests as u64, Ordering::Relaxed);
    }

    /// The writer thread's loop: lead whenever the queue is handed to it, and flush the step
    /// log when asked to.
    pub(crate) fn thread_loop(&self) {
        // When the thread last had work.
        let mut busy_at = Instant::now();
        loop {
            let (owed, batch, flush) = {
                let mut q = lock(&self.queue);
                q.background = false;
                loop {
                    let now = Instant::now();
                    let flush = q.flush_at.is_some_and(|t| t <= now);
                    if flush && q.leader == Leader::None {
                        q.leader = Leader::Thread;
                    }
                    if q.leader == Leader::Thread {
                        let owed = self.checkpoints.writer_task();
                        if owed == task::FINISH || !q.jobs.is_empty() || flush {
                            if flush {
                                q.flush_at = None;
                            }
                            let batch = Self::take_batch(&mut q);
                            q.background = flush && batch.is_empty() && owed != task::FINISH;
                            break (owed, batch, flush);
                        }
                        q.leader = Leader::None;
                    }
                    if q.closed && q.leader == Leader::None {
                        drop(q);
                        self.close_log();
                        return;
                    }
                    // Lingering after work, the thread looks at the queue every `FLUSH_DELAY`:
                    // the first step logged after a flush then need not wake it (a system
                    // call, and a wake-up on another CPU) to have it flushed in time.
                    let until = q
                        .flush_at
                        .or_else(|| (now < busy_at + LINGER).then(|| now + FLUSH_DELAY));
                    q.asleep = Some(until);
                    q = match until {
                        Some(t) => {
                            let wait = t.saturating_duration_since(now);
                            match self.wake.wait_timeout(q, wait) {
                                Ok((q, _)) => q,
                                Err(e) => e.into_inner().0,
                            }
                        }
                        None => self.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
                    };
                    q.asleep = None;
                }
            };
            busy_at = Instant::now();
            let mut conn = lock(&self.conn);
            if owed == task::FINISH {
                self.checkpoints.finish(&conn.conn);
            }
            let flush = flush && self.log.as_ref().is_some_and(|l| l.has_pending());
            if batch.is_empty() && !flush {
                continue;
            }
            conn.set_waits(true, self.busy_timeout);
            self.count(batch.len());
            // Waiting for the lock, the batch cannot come back.
            let flushes = self.log.as_ref().map_or(0, |l| l.flushes());
            let interruptions = self.interruptions.load(Ordering::Relaxed);
            // After an interrupted flush, a quarter of the chunk, and a sixteenth after two: the
            // requests that keep arriving then wait for a short one, or join it.
            let chunk = if flush {
                FLUSH_CHUNK >> (2 * interruptions.min(MAX_INTERRUPTIONS))
            } else {
                0
            };
            let _ = commit_batch(&conn.conn, batch, false, self.log.as_deref(), chunk, self);
            lock(&self.queue).background = false;
            self.checkpoints.committed_on_thread();
            let interrupted = self.interruptions.load(Ordering::Relaxed) > interruptions;
            if self.log.as_ref().is_some_and(|l| l.flushes() != flushes) {
                self.interruptions.store(0, Ordering::Relaxed);
            }
            if let Some(log) = self.log.as_ref().filter(|l| flush && l.has_pending()) {
                drop(conn);
                if interrupted {
                    // Requests interrupted the flush: it starts over once they are committed.
                    self.flush_within(Duration::ZERO);
                } else if log.flushes() != flushes {
                    // A chunk or more waits: the next one at once (requests queued meanwhile
                    // go first). Fewer wait as long as the first flush would have: flushing
                    // them at once, while steps keep coming, would commit a few per
                    // transaction and write the same pages again and again.
                    let delay = if log.pending() >= FLUSH_CHUNK {
                        Duration::ZERO
                    } else {
                        FLUSH_DELAY
                    };
                    self.flush_within(delay);
                } else {
                    // The flush failed (a full disk, a lock held past the busy timeout):
                    // try again later rather than in a loop.
                    self.flush_within(FLUSH_DELAY);
                }
            }
        }
    }

    /// The last flush of the step log, then its segment goes.
    fn close_log(&self) {
        let Some(log) = &self.log else { return };
        if log.has_pending() {
            let conn = lock(&self.conn);
            let _ = commit_batch(&conn.conn, Vec::new(), false, Some(log), ALL, &NoQueue);
        }
        log.close();
    }
}

/// The writer thread's queue, as a flush it runs sees it.
impl Queued for Writer {
    fn waiting(&self) -> bool {
        !lock(&self.queue).jobs.is_empty()
    }

    fn take(&self) -> Vec<Job> {
        let mut q = lock(&self.queue);
        let n = q
            .jobs
            .iter()
            .take(MAX_BATCH)
            .take_while(|j| !j.flushes())
            .count();
        self.counters
            .requests
            .fetch_add(n as u64, Ordering::Relaxed);
        q.jobs.drain(..n).collect()
    }

    fn may_interrupt(&self) -> bool {
        self.interruptions.load(Ordering::Relaxed) < MAX_INTERRUPTIONS
    }

    fn interrupted(&self) {
        self.interruptions.fetch_add(1, Ordering::Relaxed);
    }
}

/// Pending once, after waking its task: whatever else the task polls now (the other branches
/// of a join) runs before the caller's commit. (Unlike `tokio::task::yield_now`, it wakes the
/// task at once, so an executor that polls a self-woken future again at once, as the durable
/// engine's worker does, need not go through its scheduler.)
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// A caller's leadership; dropped before it has committed (its future was cancelled), it
/// hands the queue to the writer thread.
struct Lead<'a> {
    writer: &'a Writer,
    done: bool,
}

impl Lead<'_> {
    fn commit(&mut self) {
        let w = self.writer;
        let mut conn = lock(&w.conn);
        // Never wait for a lock on the caller's thread: hand the batch over instead.
        conn.set_waits(false, w.busy_timeout);
        for _ in 0..CALLER_BATCHES {
            if w.checkpoints.writer_task() != task::NONE {
                break;
            }
            let batch = {
                let mut q = lock(&w.queue);
                if q.jobs.is_empty() {
                    break;
                }
                Writer::take_batch(&mut q)
            };
            let n = batch.len();
            let batch = commit_batch(&conn.conn, batch, true, w.log.as_deref(), 0, &NoQueue);
            if let Some(batch) = batch {
                // Another process holds the write lock.
                let mut q = lock(&w.queue);
                for job in batch.into_iter().rev() {
                    q.jobs.push_front(job);
                }
                w.hand_to_thread(&mut q);
                self.done = true;
                return;
            }
            w.count(n);
        }
        drop(conn);
        let mut q = lock(&w.queue);
        if q.jobs.is_empty() {
            q.leader = Leader::None;
        } else {
            w.hand_to_thread(&mut q);
        }
        self.done = true;
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.done {
            let w = self.writer;
            w.hand_to_thread(&mut lock(&w.queue));
        }
    }
}

/// Start the writer thread of `writer`.
pub(crate) fn spawn(writer: Arc<Writer>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("steadfast-sqlite-writer".into())
        .spawn(move || writer.thread_loop())
}
