//! The write path: writes issued together share a transaction (group commit) whether they
//! come from one task or many, a leader whose future is dropped hands its batch on, and the WAL
//! starts over under a steady stream of commits instead of growing. The step log: steps commit
//! without a transaction each, reach the journal table soon after, and the log file goes with
//! the store.

mod common;

use std::time::Duration;

use serde_json::json;
use steadfast_durable::{Created, Json, NewWorkflow, StepKind, StepRecord, Store, WorkflowStatus};
use steadfast_sqlite::{Durability, SqliteOptions, SqliteStore};

use common::TempDb;

fn step(position: usize) -> StepRecord {
    StepRecord {
        position: position.to_string(),
        step_id: format!("s#{position}"),
        kind: StepKind::Step,
        name: "s".into(),
        input_hash: "h".into(),
        input: Some(Json::from(json!(position))),
        output: Ok(Json::from(json!({ "n": position }))),
        attempts: 1,
        started_at: 1,
        duration_us: 2,
        seq: 0,
    }
}

/// A store with workflow `wf` claimed by owner `w`; every step commits by transaction.
async fn claimed(db: &TempDb, durability: Durability) -> SqliteStore {
    claimed_with(
        db,
        SqliteOptions {
            durability,
            step_log: false,
            ..SqliteOptions::default()
        },
    )
    .await
}

/// A store opened with `options`, with workflow `wf` claimed by owner `w`.
async fn claimed_with(db: &TempDb, options: SqliteOptions) -> SqliteStore {
    let store = db.open_with(options);
    store
        .create_workflow(NewWorkflow {
            id: "wf".into(),
            name: "n".into(),
            input: json!(null),
            parent_id: None,
        })
        .await
        .unwrap();
    let claims = store
        .claim("w", &["n".to_owned()], 1, Duration::from_secs(600), &[])
        .await
        .unwrap();
    assert_eq!(claims.len(), 1);
    store
}

async fn commits_of_one_task_share_a_transaction(durability: Durability) {
    let db = TempDb::new(&format!("one-task-{durability:?}"));
    let store = claimed(&db, durability).await;
    let steps: Vec<StepRecord> = (0..32).map(step).collect();
    let before = store.stats();
    // Like the branches of `ctx.join_all`: all polled by one task.
    let results = futures::future::join_all(
        steps
            .iter()
            .map(|s| store.commit_step("wf", "w", s.clone(), None)),
    )
    .await;
    let after = store.stats();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(after.requests - before.requests, 32);
    assert!(
        after.transactions - before.transactions <= 2,
        "32 writes of one task took {} transactions",
        after.transactions - before.transactions
    );
    assert_eq!(store.load_journal("wf").await.unwrap().len(), 32);
}

#[tokio::test(flavor = "current_thread")]
async fn commits_of_one_task_share_a_transaction_process_crash_safe() {
    commits_of_one_task_share_a_transaction(Durability::ProcessCrashSafe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_of_one_task_share_a_transaction_power_loss_safe() {
    commits_of_one_task_share_a_transaction(Durability::PowerLossSafe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_of_many_tasks_are_grouped() {
    let db = TempDb::new("many-tasks");
    let store = std::sync::Arc::new(claimed(&db, Durability::ProcessCrashSafe).await);
    let before = store.stats();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let s = step(t * 1000 + i);
                    store.commit_step("wf", "w", s, None).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let after = store.stats();
    assert_eq!(after.requests - before.requests, 400);
    assert!(after.transactions - before.transactions <= 400);
    let journal = store.load_journal("wf").await.unwrap();
    assert_eq!(journal.len(), 400);
    let mut seqs: Vec<i64> = journal.iter().map(|s| s.seq).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), 400, "one sequence number per step");
}

/// A caller that leads a batch and is dropped before it commits (its task was cancelled)
/// leaves the batch to the writer thread: nobody waits forever, and the write still happens,
/// as a request already handed to a writer always did.
#[tokio::test(flavor = "current_thread")]
async fn a_dropped_leader_hands_its_batch_on() {
    let db = TempDb::new("dropped-leader");
    let store = claimed(&db, Durability::ProcessCrashSafe).await;
    let first = step(1);
    let mut fut = store.commit_step("wf", "w", first.clone(), None);
    assert!(
        futures::poll!(&mut fut).is_pending(),
        "the leader yields first"
    );
    drop(fut);
    let second = step(2);
    tokio::time::timeout(
        Duration::from_secs(10),
        store.commit_step("wf", "w", second.clone(), None),
    )
    .await
    .expect("the next write is not stuck behind the dropped one")
    .unwrap();
    let positions: Vec<String> = store
        .load_journal("wf")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.position)
        .collect();
    assert_eq!(positions, ["1", "2"]);
}

fn wal_len(db: &TempDb) -> u64 {
    let mut p = db.path().to_owned().into_os_string();
    p.push("-wal");
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Commits back to back never leave a pause in which a checkpoint could finish by itself; the
/// writer makes the WAL start over all the same, so it stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_starts_over_under_steady_commits() {
    let db = TempDb::new("wal-bound");
    let store = claimed(&db, Durability::ProcessCrashSafe).await;
    let mut largest = 0;
    for i in 0..12_000 {
        store.commit_step("wf", "w", step(i), None).await.unwrap();
        if i % 500 == 0 {
            largest = largest.max(wal_len(&db));
        }
    }
    largest = largest.max(wal_len(&db));
    // Without starting over, these 12,000 commits make it about 130 MB.
    assert!(largest < 60 << 20, "the WAL grew to {} MB", largest >> 20);
    assert_eq!(store.load_journal("wf").await.unwrap().len(), 12_000);
}

fn segments(db: &TempDb) -> Vec<std::path::PathBuf> {
    let mut dir = db.path().to_owned().into_os_string();
    dir.push("-steplog");
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// With the step log, steps commit without a transaction each; they reach the journal table
/// (what another process reads) within moments, and the log's file goes with the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_steps_reach_the_table_soon_and_the_log_goes_with_the_store() {
    let db = TempDb::new("step-log");
    let store = claimed_with(&db, SqliteOptions::default()).await;
    let before = store.stats();
    for i in 0..100 {
        store.commit_step("wf", "w", step(i), None).await.unwrap();
    }
    let after = store.stats();
    assert_eq!(
        after.requests - before.requests,
        0,
        "logged steps are no write requests"
    );
    // This store sees every step at once, in commit order.
    let journal = store.load_journal("wf").await.unwrap();
    let positions: Vec<String> = journal.iter().map(|s| s.position.clone()).collect();
    let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(positions, expected);
    assert!(journal.windows(2).all(|p| p[0].seq < p[1].seq));
    assert_eq!(
        journal[7],
        StepRecord {
            seq: journal[7].seq,
            ..step(7)
        }
    );
    // A logged position is a duplicate like any other.
    let again = store.commit_step("wf", "w", step(3), None).await;
    assert!(
        matches!(
            again,
            Err(steadfast_durable::StoreError::DuplicateStep { .. })
        ),
        "{again:?}"
    );
    let files = segments(&db).len();
    assert!(
        (1..=3).contains(&files),
        "{files} log files while the store is open: the segment and at most two spares"
    );

    // Another store on the file reads the table alone.
    let other = db.open_with(SqliteOptions {
        step_log: false,
        ..SqliteOptions::default()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = other.load_journal("wf").await.unwrap();
        if seen.len() == 100 {
            assert_eq!(seen, journal, "the table holds what the log held");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 100 logged steps reached the table",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(store);
    assert!(
        segments(&db).is_empty(),
        "log files left: {:?}",
        segments(&db)
    );
    // What stays in the log's folder is the lock that tells a store whether it has the
    // file to itself (see `SqliteStore::has_file_to_itself`).
    let mut dir = db.path().to_owned().into_os_string();
    dir.push("-steplog");
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    left.sort();
    assert_eq!(left, ["sole.gate", "sole.lock"]);
}

/// A workflow created already claimed (`start_claimed`) by a store that has the file to itself
/// is logged, as its steps are: no transaction until the log is flushed. Reads see it at once,
/// and starting the id again finds it, before the flush and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_alone_logs_the_start_of_a_workflow_with_its_steps() {
    let db = TempDb::new("start-claimed");
    let store = db.open_with(SqliteOptions::default());
    assert!(store.has_file_to_itself());
    let before = store.stats();
    let new = NewWorkflow {
        id: "wf".into(),
        name: "n".into(),
        input: json!({ "k": 1 }),
        parent_id: None,
    };
    let (created, claim) = store
        .start_claimed(new.clone(), "w", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    let claim = claim.expect("the SQLite store claims what it starts");
    for i in 0..20 {
        store.commit_step("wf", "w", step(i), None).await.unwrap();
    }
    assert_eq!(
        store.stats().requests - before.requests,
        0,
        "the start and the steps are logged"
    );
    let seen = store.get_workflow("wf").await.unwrap().unwrap();
    assert_eq!(seen, claim.record);
    assert_eq!(seen.status, WorkflowStatus::Running);
    assert_eq!(seen.owner.as_deref(), Some("w"));
    assert_eq!(seen.input, json!({ "k": 1 }));
    let (again, none) = store
        .start_claimed(new.clone(), "w", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!((again, none), (Created::Existing(seen.clone()), None));

    store.flush().await.unwrap();
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let row: (String, String, Option<String>) = conn
        .query_row(
            "SELECT name, status, owner FROM workflows WHERE id = 'wf'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(row, ("n".into(), "running".into(), Some("w".into())));
    let steps: i64 = conn
        .query_row(
            "SELECT count(*) FROM journal WHERE workflow_id = 'wf'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(steps, 20);
    let (after_flush, _) = store
        .start_claimed(new, "w", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(after_flush, Created::Existing(seen));
    assert_eq!(store.load_journal("wf").await.unwrap().len(), 20);

    // A workflow started and ended by the log reads as ended, before the flush and after.
    let (created, _) = store
        .start_claimed(new_short(), "w", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    let done = steadfast_durable::Outcome::Finished {
        status: WorkflowStatus::Completed,
        output: json!("done"),
    };
    store.finish("short", "w", done).await.unwrap();
    let ended = store.get_workflow("short").await.unwrap().unwrap();
    assert_eq!(
        (ended.status, ended.output, ended.owner),
        (WorkflowStatus::Completed, Some(json!("done")), None)
    );
    store.flush().await.unwrap();
    let ended = store.get_workflow("short").await.unwrap().unwrap();
    assert_eq!(ended.status, WorkflowStatus::Completed);
}

/// Workflow `short`.
fn new_short() -> NewWorkflow {
    NewWorkflow {
        id: "short".into(),
        name: "n".into(),
        input: json!(null),
        parent_id: None,
    }
}

/// A segment that fills up while its entries cannot reach the tables (another connection holds
/// the write lock) is retired, not a reason to fall back to transactions; once the entries are
/// in the tables, two retired segments are kept as spares and the others deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_segment_is_retired_and_kept_or_deleted_once_flushed() {
    let db = TempDb::new("rotate");
    let store = claimed_with(
        &db,
        SqliteOptions {
            busy_timeout: Duration::from_millis(50),
            ..SqliteOptions::default()
        },
    )
    .await;
    let blocker = rusqlite::Connection::open(db.path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let before = store.stats();
    // 70 records of about 200 KB: fourteen 1 MiB segments.
    let big = "x".repeat(200 * 1024);
    for i in 0..70 {
        let s = StepRecord {
            output: Ok(json!({ "n": i, "text": big }).into()),
            ..step(i)
        };
        store.commit_step("wf", "w", s, None).await.unwrap();
    }
    assert_eq!(
        store.stats().requests - before.requests,
        0,
        "every step was logged"
    );
    let held = segments(&db).len();
    assert!(held >= 4, "{held} segments for 14 MB of steps");
    assert_eq!(store.load_journal("wf").await.unwrap().len(), 70);
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    store.flush().await.unwrap();
    assert!(
        segments(&db).len() <= 3,
        "retired segments left besides the segment and two spares: {:?}",
        segments(&db)
    );
    let other = db.open_with(SqliteOptions {
        step_log: false,
        ..SqliteOptions::default()
    });
    let journal = other.load_journal("wf").await.unwrap();
    assert_eq!(journal.len(), 70, "the table holds every step");
    assert_eq!(
        journal[69].output,
        Ok(json!({ "n": 69, "text": big }).into())
    );
}

/// A workflow's end goes through the step log too: this store reports it at once, other
/// stores once it is flushed, and nothing counts it as running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_end_is_seen_here_at_once_and_elsewhere_soon() {
    use steadfast_durable::{Outcome, WorkflowStatus};
    let db = TempDb::new("step-log-end");
    let store = claimed_with(&db, SqliteOptions::default()).await;
    for i in 0..5 {
        store.commit_step("wf", "w", step(i), None).await.unwrap();
    }
    let before = store.stats();
    store
        .finish(
            "wf",
            "w",
            Outcome::Finished {
                status: WorkflowStatus::Completed,
                output: json!("done"),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.stats().requests - before.requests,
        0,
        "the logged end is no write request"
    );
    let here = store.get_workflow("wf").await.unwrap().unwrap();
    assert_eq!(here.status, WorkflowStatus::Completed);
    assert_eq!(here.output, Some(json!("done")));
    assert_eq!(here.owner, None);
    assert_eq!(store.load_journal("wf").await.unwrap().len(), 5);
    // The lease is given up: the owner can no longer log steps of it.
    let late = store.commit_step("wf", "w", step(9), None).await;
    assert!(late.is_err(), "a step after the end: {late:?}");

    let other = db.open_with(SqliteOptions {
        step_log: false,
        ..SqliteOptions::default()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let there = other.get_workflow("wf").await.unwrap().unwrap();
        if there.status == WorkflowStatus::Completed {
            assert_eq!(there, here, "the table holds what the log held");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the end never reached the table"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(other.load_journal("wf").await.unwrap().len(), 5);
    assert!(store.running_owners().await.unwrap().is_empty());
}

/// A step too large for the log's segment commits by transaction, and reads back whole, in
/// order with the logged steps around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_too_large_for_the_log_commits_by_transaction() {
    let db = TempDb::new("step-log-large");
    let store = claimed_with(&db, SqliteOptions::default()).await;
    store.commit_step("wf", "w", step(0), None).await.unwrap();
    let large = StepRecord {
        output: Ok(Json::from(json!({ "text": "x".repeat(5 << 20) }))),
        ..step(1)
    };
    let before = store.stats();
    store
        .commit_step("wf", "w", large.clone(), None)
        .await
        .unwrap();
    assert_eq!(
        store.stats().requests - before.requests,
        1,
        "the large step is a write request of its own"
    );
    store.commit_step("wf", "w", step(2), None).await.unwrap();
    let journal = store.load_journal("wf").await.unwrap();
    let positions: Vec<&str> = journal.iter().map(|s| s.position.as_str()).collect();
    assert_eq!(positions, ["0", "1", "2"]);
    assert_eq!(
        journal[1],
        StepRecord {
            seq: journal[1].seq,
            ..large
        }
    );
    assert!(journal.windows(2).all(|p| p[0].seq < p[1].seq));
}
