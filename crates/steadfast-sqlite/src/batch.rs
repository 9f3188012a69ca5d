//! Write requests and the transaction that commits a batch of them.
//!
//! A batch commits in one `BEGIN IMMEDIATE … COMMIT` transaction. When it holds several
//! requests, each runs in its own savepoint: a request that fails (a lost lease, a duplicate
//! step) is rolled back alone, and the others commit. A batch of one needs no savepoint: a
//! failed request rolls the transaction back. Answers go out only after the commit, so a caller
//! never observes a write that is not durable.

use rusqlite::{Connection, ErrorCode};
use steadfast_durable::StoreError;
use tokio::sync::oneshot;

use crate::schema::map_err;
use crate::steplog::{ALL, StepLog};

/// A write request, type-erased.
pub(crate) trait WriteJob: Send {
    /// Apply the request; whether it succeeded, and its answer (sent after the commit).
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Box<dyn Answer>);
    /// Answer without running (the transaction could not start).
    fn fail(self: Box<Self>, err: StoreError);
    /// Whether the step log must reach the database before this request runs.
    fn flushes(&self) -> bool;
}

/// The answer of an applied request, waiting for the commit.
pub(crate) trait Answer: Send {
    fn send(self: Box<Self>, commit: Result<(), StoreError>);
}

/// A request: the closure to run on the write connection and where its answer goes.
pub(crate) struct Request<F, T> {
    pub(crate) f: F,
    pub(crate) tx: oneshot::Sender<Result<T, StoreError>>,
    pub(crate) flush: bool,
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

    fn flushes(&self) -> bool {
        self.flush
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

/// A queued request.
pub(crate) type Job = Box<dyn WriteJob>;

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Run a statement that returns no rows, prepared once per connection.
pub(crate) fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Apply `batch` in one transaction and answer every request. Entries of `log` come first:
/// all of them if a request asks for it, else the first `flush` (a background flush), of which
/// only a few when requests wait (in `batch`, or queued meanwhile: `waiting`). With
/// `give_back`, a batch whose transaction cannot start because another connection holds the
/// lock is returned unanswered.
pub(crate) fn commit_batch(
    conn: &Connection,
    mut batch: Vec<Job>,
    give_back: bool,
    log: Option<&StepLog>,
    flush: usize,
    waiting: &dyn Fn() -> bool,
) -> Option<Vec<Job>> {
    if !conn.is_autocommit() {
        // A request panicked in the middle of the previous transaction.
        let _ = exec(conn, "ROLLBACK");
    }
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        if give_back && is_busy(&e) {
            return Some(batch);
        }
        let e = map_err(e);
        for job in batch {
            job.fail(e.clone());
        }
        return None;
    }
    // The logged steps come first: what the requests write (a workflow's end, say) comes
    // after its steps.
    let all = batch.iter().any(|j| j.flushes());
    let limit = if all { ALL } else { flush };
    // A background flush gives way to requests: they wait for a few entries, not a chunk.
    let in_batch = !batch.is_empty();
    let give_way = || !all && (in_batch || waiting());
    let log = log.filter(|_| limit > 0);
    let flushed = match log
        .map(|l| l.flush_into(conn, limit, &give_way))
        .transpose()
    {
        Ok(n) => n.unwrap_or(0),
        Err(e) => {
            let _ = exec(conn, "ROLLBACK");
            for job in batch {
                job.fail(e.clone());
            }
            return None;
        }
    };
    let done = |commit: &Result<(), StoreError>| {
        if let (Ok(()), Some(log)) = (commit, log) {
            log.flushed(flushed);
        }
    };
    if batch.len() == 1 && flushed == 0 {
        let job = batch.pop().expect("a batch of one");
        let (ok, answer) = job.run(conn);
        let end = if ok {
            exec(conn, "COMMIT").map_err(map_err)
        } else {
            // The request's own error is its answer.
            Err(StoreError::Backend("rolled back".into()))
        };
        if end.is_err() && !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
        answer.send(end);
        return None;
    }
    let mut answers = Vec::with_capacity(batch.len());
    let mut fatal: Option<StoreError> = None;
    for job in batch {
        if let Some(e) = &fatal {
            job.fail(e.clone());
            continue;
        }
        if let Err(e) = exec(conn, "SAVEPOINT request") {
            let e = map_err(e);
            job.fail(e.clone());
            fatal = Some(e);
            continue;
        }
        let (ok, answer) = job.run(conn);
        answers.push(answer);
        let end = if ok {
            exec(conn, "RELEASE request")
        } else {
            exec(conn, "ROLLBACK TO request").and_then(|()| exec(conn, "RELEASE request"))
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
        None => exec(conn, "COMMIT").map_err(map_err),
    };
    if commit.is_err() && !conn.is_autocommit() {
        let _ = exec(conn, "ROLLBACK");
    }
    done(&commit);
    for answer in answers {
        answer.send(commit.clone());
    }
    None
}
