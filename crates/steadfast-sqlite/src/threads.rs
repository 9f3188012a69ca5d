//! The threads that own the connections: one writer with group commit, a few readers.
//!
//! No SQLite call runs on an async executor's thread. A request is a closure sent over a
//! channel to the thread that owns a connection; the answer comes back on a oneshot channel,
//! so the futures work on any executor.
//!
//! **Group commit.** The writer takes every request waiting in its channel and applies them in
//! one `BEGIN IMMEDIATE … COMMIT` transaction, each inside its own savepoint: a request that
//! fails (a lost lease, a duplicate step) is rolled back alone, and the others commit. Answers go
//! out only after the commit, so a caller never observes a write that is not durable.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use rusqlite::Connection;
use steadfast_durable::StoreError;
use tokio::sync::oneshot;

use crate::SqliteOptions;
use crate::schema::{connect, map_err};

/// At most this many requests share one transaction.
const MAX_BATCH: usize = 512;

/// Counters of the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) transactions: AtomicU64,
    pub(crate) requests: AtomicU64,
}

/// A write request, type-erased.
trait WriteJob: Send {
    /// Apply the request; whether it succeeded, and its answer (sent after the commit).
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Box<dyn Answer>);
    /// Answer without running (the transaction could not start).
    fn fail(self: Box<Self>, err: StoreError);
}

/// The answer of an applied request, waiting for the commit.
trait Answer: Send {
    fn send(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Request<F, T> {
    f: F,
    tx: oneshot::Sender<Result<T, StoreError>>,
}

struct Applied<T> {
    result: Result<T, StoreError>,
    tx: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> WriteJob for Request<F, T>
where
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Box<dyn Answer>) {
        let result = (self.f)(conn);
        (
            result.is_ok(),
            Box::new(Applied {
                result,
                tx: self.tx,
            }),
        )
    }

    fn fail(self: Box<Self>, err: StoreError) {
        let _ = self.tx.send(Err(err));
    }
}

impl<T: Send> Answer for Applied<T> {
    fn send(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (self.result, commit) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(v), Ok(())) => Ok(v),
        };
        let _ = self.tx.send(answer);
    }
}

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The connection threads of one store.
pub(crate) struct Threads {
    writer: Option<Sender<Box<dyn WriteJob>>>,
    readers: Option<Sender<ReadJob>>,
    handles: Vec<JoinHandle<()>>,
    pub(crate) counters: Arc<Counters>,
}

fn stopped() -> StoreError {
    StoreError::Backend("the store's connection threads have stopped".into())
}

impl Threads {
    /// Start the writer on `writer` and `readers` reader threads with their own connections.
    pub(crate) fn start(
        writer: Connection,
        path: &Path,
        options: &SqliteOptions,
        readers: usize,
    ) -> Result<Self, StoreError> {
        let counters = Arc::new(Counters::default());
        let (write_tx, write_rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let (read_tx, read_rx) = mpsc::channel::<ReadJob>();
        let mut threads = Threads {
            writer: Some(write_tx),
            readers: Some(read_tx),
            handles: Vec::new(),
            counters: counters.clone(),
        };
        let spawn_err =
            |e: std::io::Error| StoreError::Backend(format!("cannot start thread: {e}"));
        let handle = thread::Builder::new()
            .name("steadfast-sqlite-writer".into())
            .spawn(move || write_loop(&writer, &write_rx, &counters))
            .map_err(spawn_err)?;
        threads.handles.push(handle);
        let read_rx = Arc::new(Mutex::new(read_rx));
        for i in 0..readers.max(1) {
            let conn = connect(path, options)?;
            conn.execute_batch("PRAGMA query_only = ON")
                .map_err(map_err)?;
            let rx = read_rx.clone();
            let handle = thread::Builder::new()
                .name(format!("steadfast-sqlite-reader-{i}"))
                .spawn(move || read_loop(&conn, &rx))
                .map_err(spawn_err)?;
            threads.handles.push(handle);
        }
        Ok(threads)
    }

    /// Run `f` in the next write transaction.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let sender = self.writer.as_ref().ok_or_else(stopped)?;
        sender
            .send(Box::new(Request { f, tx }))
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Run `f` on a reader connection.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let sender = self.readers.as_ref().ok_or_else(stopped)?;
        sender
            .send(Box::new(move |conn: &Connection| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        // Closing the channels ends the loops once the requests already sent are answered.
        self.writer.take();
        self.readers.take();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

fn read_loop(conn: &Connection, jobs: &Mutex<Receiver<ReadJob>>) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        match job {
            Ok(job) => job(conn),
            Err(_) => return,
        }
    }
}

fn write_loop(conn: &Connection, jobs: &Receiver<Box<dyn WriteJob>>, counters: &Counters) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        counters.transactions.fetch_add(1, Ordering::Relaxed);
        counters
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        commit_batch(conn, batch);
    }
}

/// Apply `batch` in one transaction, one savepoint per request, and answer every request.
fn commit_batch(conn: &Connection, batch: Vec<Box<dyn WriteJob>>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = map_err(e);
        for job in batch {
            job.fail(e.clone());
        }
        return;
    }
    let mut answers = Vec::with_capacity(batch.len());
    let mut fatal: Option<StoreError> = None;
    for job in batch {
        if let Some(e) = &fatal {
            job.fail(e.clone());
            continue;
        }
        if let Err(e) = conn.execute_batch("SAVEPOINT request") {
            let e = map_err(e);
            job.fail(e.clone());
            fatal = Some(e);
            continue;
        }
        let (ok, answer) = job.run(conn);
        answers.push(answer);
        let end = if ok {
            conn.execute_batch("RELEASE request")
        } else {
            conn.execute_batch("ROLLBACK TO request; RELEASE request")
        };
        // Some errors (I/O, a full disk) roll the whole transaction back by themselves.
        if let Err(e) = end {
            fatal = Some(map_err(e));
        } else if conn.is_autocommit() {
            fatal = Some(StoreError::Backend(
                "the transaction was rolled back by SQLite".into(),
            ));
        }
    }
    let commit = match fatal {
        Some(e) => Err(e),
        None => conn.execute_batch("COMMIT").map_err(map_err),
    };
    if commit.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for answer in answers {
        answer.send(commit.clone());
    }
}
