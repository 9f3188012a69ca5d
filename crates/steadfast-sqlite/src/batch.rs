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

/// Where a background flush finds the requests queued while it runs.
pub(crate) trait Queued {
    /// Whether a request waits.
    fn waiting(&self) -> bool;
    /// Take the waiting requests that need no flush first, in order.
    fn take(&self) -> Vec<Job>;
    /// Whether the flush may give way to them by rolling back (else they join it).
    fn may_interrupt(&self) -> bool {
        false
    }
    /// The flush gave way to the requests taken: it was rolled back.
    fn interrupted(&self) {}
}

/// No queue: nothing ever waits.
pub(crate) struct NoQueue;

impl Queued for NoQueue {
    fn waiting(&self) -> bool {
        false
    }

    fn take(&self) -> Vec<Job> {
        Vec::new()
    }
}

/// Apply `batch` in one transaction and answer every request. Entries of `log` come first:
/// all of them if a request asks for it, else the first `flush` (a background flush), of which
/// only a few when requests wait (in `batch`, or in `queued`). A background flush (`batch`
/// empty) that requests interrupt (in `queued`) is rolled back, and they commit alone, if
/// `queued` allows it; else they join its transaction. With `give_back`, a
/// batch whose transaction cannot start because another connection holds the lock is returned
/// unanswered.
pub(crate) fn commit_batch(
    conn: &Connection,
    mut batch: Vec<Job>,
    give_back: bool,
    log: Option<&StepLog>,
    flush: usize,
    queued: &dyn Queued,
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
    let gave_way = std::cell::Cell::new(false);
    let give_way = || {
        let give = !all && (in_batch || queued.waiting());
        gave_way.set(give);
        give
    };
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
    if flushed > 0 && !all {
        let waiting = queued.take();
        if gave_way.get() && !in_batch && !waiting.is_empty() && queued.may_interrupt() {
            // A background flush that requests interrupted is undone: in WAL mode that only
            // drops pages from the cache, and its entries stay in the log for the next flush.
            // Committing it would make the requests wait for the writes of its pages.
            let _ = exec(conn, "ROLLBACK");
            queued.interrupted();
            return commit_batch(conn, waiting, give_back, None, 0, &NoQueue);
        }
        batch.extend(waiting);
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use serde_json::json;
    use steadfast_durable::{Json, NewWorkflow, StepKind, StepRecord};

    use super::*;
    use crate::SqliteOptions;
    use crate::writes;

    fn new(id: &str) -> NewWorkflow {
        NewWorkflow {
            id: id.into(),
            name: "w".into(),
            input: json!(null),
            parent_id: None,
        }
    }

    /// A user step at `position` whose output is `position`.
    pub(crate) fn step(position: usize) -> StepRecord {
        StepRecord {
            position: position.to_string(),
            step_id: format!("s#{position}"),
            kind: StepKind::Step,
            name: "s".into(),
            input_hash: "h".into(),
            input: None,
            output: Ok(Json::from(json!(position))),
            attempts: 1,
            started_at: 1,
            duration_us: 2,
            seq: 0,
        }
    }

    /// A queue that holds one request, counts how often it was asked whether one waits, and
    /// notes whether a flush gave way to it.
    struct OneRequest {
        job: Mutex<Option<Job>>,
        asked: AtomicUsize,
        interrupted: AtomicUsize,
        may_interrupt: bool,
    }

    impl OneRequest {
        /// A queue holding a request that creates workflow `id`, and where its answer goes.
        fn create(
            id: &'static str,
            may_interrupt: bool,
        ) -> (Self, oneshot::Receiver<Result<(), StoreError>>) {
            let (tx, rx) = oneshot::channel();
            let request = Request {
                f: move |c: &Connection| writes::create(c, &new(id), None).map(|_| ()),
                tx,
                flush: false,
            };
            let queue = OneRequest {
                job: Mutex::new(Some(Box::new(request))),
                asked: AtomicUsize::new(0),
                interrupted: AtomicUsize::new(0),
                may_interrupt,
            };
            (queue, rx)
        }
    }

    impl Queued for OneRequest {
        fn waiting(&self) -> bool {
            self.asked.fetch_add(1, Ordering::Relaxed);
            self.job.lock().unwrap().is_some()
        }

        fn take(&self) -> Vec<Job> {
            self.job.lock().unwrap().take().into_iter().collect()
        }

        fn may_interrupt(&self) -> bool {
            self.may_interrupt
        }

        fn interrupted(&self) {
            self.interrupted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A database in a folder of its own, with workflow `wf` running under owner `w` and
    /// `steps` of its steps in the step log.
    fn logged_steps(steps: usize) -> (std::path::PathBuf, Connection, StepLog) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "steadfast-batch-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("t.db");
        let conn = crate::schema::open_writer(&db, &SqliteOptions::default()).unwrap();
        let (_, claim) =
            writes::create(&conn, &new("wf"), Some(("w", Duration::from_secs(60)))).unwrap();
        let log = StepLog::new(&db);
        log.claimed("w", i64::MAX, &[claim.unwrap()], vec![HashSet::new()]);
        for i in 0..steps {
            assert!(matches!(
                log.append("wf", "w", step(i)).unwrap(),
                crate::steplog::Logged::Done(_)
            ));
        }
        (dir, conn, log)
    }

    /// Reads of a workflow whose steps the log holds take them from the log alone until one of
    /// them is flushed, then from the table as well.
    #[test]
    fn a_workflow_journal_is_in_the_log_then_in_the_table() {
        let (dir, conn, log) = logged_steps(3);
        let (steps, in_table) = log.journal_view("wf").unwrap();
        assert_eq!(steps.len(), 3);
        assert!(!in_table, "nothing flushed yet");
        exec(&conn, "BEGIN IMMEDIATE").unwrap();
        let n = log.flush_into(&conn, 2, &|| false).unwrap();
        exec(&conn, "COMMIT").unwrap();
        log.flushed(n);
        let (steps, in_table) = log.journal_view("wf").unwrap();
        let positions: Vec<&str> = steps.iter().map(|s| s.position.as_str()).collect();
        assert_eq!(positions, ["2"]);
        assert!(in_table, "two steps are in the table");
        drop(conn);
        log.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A flush reads the entries back from the segment: a record damaged there fails it with
    /// a clear error, and nothing of the chunk reaches the journal.
    #[test]
    fn a_record_damaged_in_the_segment_fails_the_flush_with_a_clear_error() {
        let (dir, conn, log) = logged_steps(3);
        // The segment written to: its first record has a length (a spare prepared meanwhile
        // holds zeros).
        let (segment, mut bytes) = std::fs::read_dir(crate::steplog::dir_of(&dir.join("t.db")))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .find(|(_, b)| b.len() >= 4 && b[0..4] != [0; 4])
            .unwrap();
        // A byte of the second record's payload (each record is well over 40 bytes).
        let second = 12 + u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
        bytes[second + 30] ^= 0xff;
        std::fs::write(&segment, &bytes).unwrap();

        exec(&conn, "BEGIN IMMEDIATE").unwrap();
        let r = log.flush_into(&conn, ALL, &|| false);
        exec(&conn, "ROLLBACK").unwrap();
        match r {
            Err(StoreError::Corrupt(m)) => {
                assert!(m.contains("step log") && m.contains("CRC"), "{m}");
            }
            other => panic!("not a corrupt log: {other:?}"),
        }
        let count: i64 = conn
            .query_row("SELECT count(*) FROM journal", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0);
        assert_eq!(log.pending(), 3);
        drop(conn);
        log.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_request_that_waits_interrupts_the_background_flush_and_commits_alone() {
        let (dir, conn, log) = logged_steps(40);

        let (queue, mut rx) = OneRequest::create("other", true);
        assert!(commit_batch(&conn, Vec::new(), false, Some(&log), 256, &queue).is_none());

        // The flush stopped at its first look at the queue and was undone; the request
        // committed alone, and every entry still waits in the log.
        assert_eq!(queue.asked.load(Ordering::Relaxed), 1);
        assert_eq!(queue.interrupted.load(Ordering::Relaxed), 1);
        rx.try_recv().unwrap().unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM journal"), 0);
        assert_eq!(
            count("SELECT count(*) FROM workflows WHERE id = 'other'"),
            1
        );
        assert_eq!(log.pending(), 40);
        assert!(conn.is_autocommit(), "committed");

        // A queue that allows no more interruptions (so that a stream of requests cannot
        // starve the flush) has its request join the flush after a few entries.
        let (queue, mut rx) = OneRequest::create("third", false);
        assert!(commit_batch(&conn, Vec::new(), false, Some(&log), 256, &queue).is_none());
        assert_eq!(queue.asked.load(Ordering::Relaxed), 1);
        assert_eq!(queue.interrupted.load(Ordering::Relaxed), 0);
        rx.try_recv().unwrap().unwrap();
        assert_eq!(count("SELECT count(*) FROM journal"), 4);
        assert_eq!(
            count("SELECT count(*) FROM workflows WHERE id = 'third'"),
            1
        );
        assert_eq!(log.pending(), 36);
        assert!(conn.is_autocommit(), "one transaction, committed");

        // With nothing waiting, the rest goes in one chunk.
        assert!(commit_batch(&conn, Vec::new(), false, Some(&log), 256, &NoQueue).is_none());
        assert_eq!(count("SELECT count(*) FROM journal"), 40);
        assert_eq!(log.pending(), 0);
        log.close();
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
