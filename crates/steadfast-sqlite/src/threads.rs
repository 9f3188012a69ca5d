//! The connections of one store and the threads that own them: the write side (see
//! [`crate::writer`]), the checkpointer (see [`crate::checkpoint`]), a few readers, and the
//! thread that shares the file with other processes (see [`crate::sole`]).
//!
//! A read is a closure sent over a channel to a reader thread; the answer comes back on a
//! oneshot channel, so the futures work on any executor. A quick read (a row or two by key)
//! runs on the caller's thread instead when a reader connection is free: it never waits for a
//! lock there (it goes to a reader thread when it meets one), and it costs less than the trip
//! to a reader thread and back.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rusqlite::Connection;
use steadfast_durable::StoreError;
use tokio::sync::oneshot;

use crate::checkpoint::Checkpoints;
use crate::schema::{connect, map_err};
use crate::sole::{Hooks, Sole};
use crate::steplog::{Orphan, StepLog, import_by};
use crate::writer::{self, Writer, stopped};
use crate::{Durability, SqliteOptions};

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// A reader connection and whether its busy handler currently waits for locks.
struct ReadConn {
    conn: Connection,
    waits: bool,
}

impl ReadConn {
    fn set_waits(&mut self, waits: bool, busy_timeout: Duration) {
        if self.waits != waits {
            let t = if waits { busy_timeout } else { Duration::ZERO };
            if self.conn.busy_timeout(t).is_ok() {
                self.waits = waits;
            }
        }
    }
}

/// The connection threads of one store.
pub(crate) struct Threads {
    pub(crate) writer: Arc<Writer>,
    checkpoints: Arc<Checkpoints>,
    pub(crate) sole: Arc<Sole>,
    readers: Option<Sender<ReadJob>>,
    /// The reader connections, each used by its thread and by quick reads.
    pool: Vec<Arc<Mutex<ReadConn>>>,
    busy_timeout: Duration,
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    /// Start the write side on `conn`, the checkpointer, `readers` reader threads, each with
    /// its own connection, and the thread of `sole`.
    pub(crate) fn start(
        conn: Connection,
        path: &Path,
        options: &SqliteOptions,
        readers: usize,
        sole: Sole,
    ) -> Result<Self, StoreError> {
        let inline = options.durability == Durability::ProcessCrashSafe;
        let checkpoints = Arc::new(Checkpoints::default());
        let log = (inline && options.step_log).then(|| Arc::new(StepLog::new(path)));
        let writer = Arc::new(Writer::new(
            conn,
            inline,
            options.busy_timeout,
            checkpoints.clone(),
            log,
        )?);
        let (read_tx, read_rx) = mpsc::channel::<ReadJob>();
        let mut threads = Threads {
            writer: writer.clone(),
            checkpoints: checkpoints.clone(),
            sole: Arc::new(sole),
            readers: Some(read_tx),
            pool: Vec::new(),
            busy_timeout: options.busy_timeout,
            handles: Vec::new(),
        };
        let spawn_err =
            |e: std::io::Error| StoreError::Backend(format!("cannot start thread: {e}"));
        threads
            .handles
            .push(writer::spawn(writer).map_err(spawn_err)?);
        let checkpointer = connect(path, options)?;
        let handle = thread::Builder::new()
            .name("steadfast-sqlite-checkpointer".into())
            .spawn(move || checkpoints.thread_loop(&checkpointer))
            .map_err(spawn_err)?;
        threads.handles.push(handle);
        let (sole, w, db) = (
            threads.sole.clone(),
            threads.writer.clone(),
            path.to_owned(),
        );
        let handle = thread::Builder::new()
            .name("steadfast-sqlite-sole".into())
            .spawn(move || {
                let flush = || match &w.log {
                    Some(log) if log.has_pending() => {
                        futures::executor::block_on(w.write(true, |_| Ok(())))
                    }
                    _ => Ok(()),
                };
                let import = || {
                    let orphans = match &w.log {
                        Some(log) => log.orphans(),
                        None => StepLog::new(&db).orphans(),
                    };
                    futures::executor::block_on(import_by(&w, orphans))
                };
                sole.thread_loop(&Hooks {
                    flush: &flush,
                    import: &import,
                });
            })
            .map_err(spawn_err)?;
        threads.handles.push(handle);
        let read_rx = Arc::new(Mutex::new(read_rx));
        for i in 0..readers.max(1) {
            let conn = connect(path, options)?;
            conn.execute_batch("PRAGMA query_only = ON")
                .map_err(map_err)?;
            let conn = Arc::new(Mutex::new(ReadConn { conn, waits: true }));
            threads.pool.push(conn.clone());
            let rx = read_rx.clone();
            let busy_timeout = options.busy_timeout;
            let handle = thread::Builder::new()
                .name(format!("steadfast-sqlite-reader-{i}"))
                .spawn(move || read_loop(&conn, &rx, busy_timeout))
                .map_err(spawn_err)?;
            threads.handles.push(handle);
        }
        Ok(threads)
    }

    /// Run `f` in the next write transaction, after the entries of the step log.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.sole.ready(self.busy_timeout).await?;
        self.writer.write(true, f).await
    }

    /// Run `f` in the next write transaction; the step log need not reach the database first
    /// (`f` touches nothing it holds).
    pub(crate) async fn write_unflushed<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.sole.ready(self.busy_timeout).await?;
        self.writer.write(false, f).await
    }

    /// Import the segments of dead processes, `orphans`, in a write transaction, then delete
    /// them.
    pub(crate) async fn import(&self, orphans: Vec<Orphan>) -> Result<(), StoreError> {
        if orphans.is_empty() {
            return Ok(());
        }
        self.sole.ready(self.busy_timeout).await?;
        import_by(&self.writer, orphans).await
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

    /// Run the quick read `f` on the caller's thread if a reader connection is free, else (or
    /// if it meets a lock) on a reader thread.
    pub(crate) async fn read_quick<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        for conn in &self.pool {
            let Ok(mut c) = conn.try_lock() else { continue };
            c.set_waits(false, self.busy_timeout);
            match f(&c.conn) {
                Err(StoreError::Locked(_)) => break,
                answer => return answer,
            }
        }
        self.read(f).await
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        // The writer answers the requests already queued, then ends; closing the channel ends
        // the readers.
        self.sole.close();
        self.writer.close();
        self.checkpoints.close();
        self.readers.take();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

fn read_loop(conn: &Mutex<ReadConn>, jobs: &Mutex<Receiver<ReadJob>>, busy_timeout: Duration) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        match job {
            Ok(job) => {
                let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
                c.set_waits(true, busy_timeout);
                job(&c.conn);
            }
            Err(_) => return,
        }
    }
}
