//! The Store conformance kit on `SqliteStore` (fresh temp files, both durability modes, with
//! and without the step log) and on `MemoryStore`; plus the SQLite-only cases: corrupt files,
//! locks, newer schemas, reopening.

mod common;

use std::time::Duration;

use rusqlite::Connection;
use serde_json::json;
use steadfast_durable::{
    Created, Json, ListFilter, MemoryStore, NewWorkflow, Outcome, StepKind, StepRecord, Store,
    StoreError, WorkflowStatus,
};
use steadfast_sqlite::{Durability, SqliteOptions, SqliteStore};

use common::TempDb;

macro_rules! sqlite_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let db = TempDb::new(concat!("kit-", stringify!($case)));
            steadfast_durable::testkit::$case(db.open()).await;
        }
    )*};
}

macro_rules! sqlite_full_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let db = TempDb::new(concat!("kit-full-", stringify!($case)));
            let options = SqliteOptions {
                durability: Durability::PowerLossSafe,
                ..SqliteOptions::default()
            };
            steadfast_durable::testkit::$case(db.open_with(options)).await;
        }
    )*};
}

macro_rules! sqlite_no_log_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let db = TempDb::new(concat!("kit-nolog-", stringify!($case)));
            let options = SqliteOptions {
                step_log: false,
                ..SqliteOptions::default()
            };
            steadfast_durable::testkit::$case(db.open_with(options)).await;
        }
    )*};
}

macro_rules! memory_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            steadfast_durable::testkit::$case(MemoryStore::new()).await;
        }
    )*};
}

mod sqlite {
    use super::*;
    steadfast_durable::store_kit_cases!(sqlite_cases);
}

mod sqlite_without_step_log {
    use super::*;
    steadfast_durable::store_kit_cases!(sqlite_no_log_cases);
}

mod sqlite_power_loss_safe {
    use super::*;
    steadfast_durable::store_kit_cases!(sqlite_full_cases);
}

mod memory {
    use super::*;
    steadfast_durable::store_kit_cases!(memory_cases);
}

/// `run_all` works on SQLite too (each case on its own file).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_on_sqlite() {
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let files = std::sync::Mutex::new(Vec::new());
    steadfast_durable::testkit::run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let db = TempDb::new(&format!("run-all-{n}"));
        let store = db.open();
        files.lock().unwrap().push(db);
        async move { store }
    })
    .await;
    macro_rules! count {
        ($($case:ident),* $(,)?) => {
            [$(stringify!($case)),*].len()
        };
    }
    let cases = steadfast_durable::store_kit_cases!(count);
    assert_eq!(files.lock().unwrap().len(), cases, "one store per case");
}

fn step(position: &str) -> StepRecord {
    StepRecord {
        position: position.to_owned(),
        step_id: format!("s#{position}"),
        kind: StepKind::Tool,
        name: "tool__t".into(),
        input_hash: "h".into(),
        input: Some(Json::from(json!({ "q": position }))),
        output: Ok(Json::from(json!({ "answer": position }))),
        attempts: 1,
        started_at: 1,
        duration_us: 2,
        seq: 0,
    }
}

fn new_wf(id: &str) -> NewWorkflow {
    NewWorkflow {
        id: id.into(),
        name: "w".into(),
        input: json!(id),
        parent_id: None,
    }
}

#[test]
fn garbage_file_is_corrupt() {
    let db = TempDb::new("garbage");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(db.path(), garbage).unwrap();
    let err = SqliteStore::open(db.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("not a database"),
        "unclear message: {message}"
    );
}

#[test]
fn foreign_sqlite_database_is_refused() {
    let db = TempDb::new("foreign");
    let conn = Connection::open(db.path()).unwrap();
    conn.execute_batch(
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY); INSERT INTO invoices VALUES (1);",
    )
    .unwrap();
    drop(conn);
    let err = SqliteStore::open(db.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("another application"), "{err}");
    // Nothing was added to the foreign file.
    let conn = Connection::open(db.path()).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
}

#[test]
fn newer_schema_is_refused() {
    let db = TempDb::new("newer");
    drop(db.open());
    let conn = Connection::open(db.path()).unwrap();
    conn.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(conn);
    let err = SqliteStore::open(db.path()).unwrap_err();
    assert_eq!(
        err,
        StoreError::NewerSchema {
            found: 999,
            supported: SqliteStore::schema_version()
        }
    );
    assert!(err.to_string().contains("upgrade"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_corrupt_not_panics() {
    let db = TempDb::new("bad-rows");
    let store = db.open();
    store.create_workflow(new_wf("wf")).await.unwrap();
    let conn = Connection::open(db.path()).unwrap();
    conn.execute_batch("UPDATE workflows SET status = 'exploded'")
        .unwrap();
    let err = store.get_workflow("wf").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    conn.execute_batch("UPDATE workflows SET status = 'pending', input = '{not json'")
        .unwrap();
    let err = store
        .list_workflows(ListFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");

    // A journal row whose input or output is not JSON.
    conn.execute_batch("UPDATE workflows SET input = 'null'")
        .unwrap();
    store
        .claim("w", &["w".to_owned()], 1, Duration::from_secs(60), &[])
        .await
        .unwrap();
    store.commit_step("wf", "w", step("0"), None).await.unwrap();
    store.flush().await.unwrap();
    let journal = store.load_journal("wf").await.unwrap();
    assert_eq!(journal[0].output, step("0").output);
    for column in ["output", "input"] {
        conn.execute_batch(&format!("UPDATE journal SET {column} = '{{\"a\": }}'"))
            .unwrap();
        let err = store.load_journal("wf").await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains(column)),
            "{err:?}"
        );
        conn.execute_batch("UPDATE journal SET input = '1', output = '2'")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_held_beyond_busy_timeout_is_locked() {
    let db = TempDb::new("locked");
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(50),
        ..SqliteOptions::default()
    };
    let store = db.open_with(options.clone());
    store.create_workflow(new_wf("before")).await.unwrap();

    let blocker = Connection::open(db.path()).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = store.create_workflow(new_wf("during")).await.unwrap_err();
    assert!(matches!(err, StoreError::Locked(_)), "{err:?}");
    let err = store.send("before", "t", json!(1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Locked(_)), "{err:?}");
    // Reads go on under WAL.
    assert!(store.get_workflow("before").await.unwrap().is_some());
    blocker.execute_batch("ROLLBACK").unwrap();

    assert_eq!(
        store.create_workflow(new_wf("after")).await,
        Ok(Created::New)
    );
    assert_eq!(
        store.get_workflow("during").await,
        Ok(None),
        "failed write left a row"
    );

    // A new file locked by another connection cannot even be set up.
    let fresh = TempDb::new("locked-fresh");
    let blocker = Connection::open(fresh.path()).unwrap();
    blocker
        .execute_batch("BEGIN EXCLUSIVE; CREATE TABLE t (x);")
        .unwrap();
    let err = SqliteStore::open_with(fresh.path(), options).unwrap_err();
    assert!(matches!(err, StoreError::Locked(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_timeout_waits_for_a_short_lock() {
    let db = TempDb::new("short-lock");
    let store = db.open();
    let path = db.path().to_owned();
    let blocker = std::thread::spawn(move || {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        conn.execute_batch("COMMIT").unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(store.create_workflow(new_wf("wf")).await, Ok(Created::New));
    blocker.join().unwrap();
}

async fn reopen_keeps_data(durability: Durability) {
    let db = TempDb::new(&format!("reopen-{durability:?}"));
    let options = SqliteOptions {
        durability,
        ..SqliteOptions::default()
    };
    let store = db.open_with(options.clone());
    assert_eq!(store.options().durability, durability);
    store.create_workflow(new_wf("wf")).await.unwrap();
    let claimed = store
        .claim("w", &["w".to_owned()], 1, Duration::from_secs(60), &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    for p in ["0", "1", "2"] {
        store.commit_step("wf", "w", step(p), None).await.unwrap();
    }
    let seq = store.send("wf", "topic", json!({ "hi": 1 })).await.unwrap();
    store
        .finish(
            "wf",
            "w",
            Outcome::Suspended {
                wake_at: Some(123),
                waiting_on: vec!["topic".into()],
            },
        )
        .await
        .unwrap();
    let before = store.get_workflow("wf").await.unwrap();
    let journal = store.load_journal("wf").await.unwrap();
    let debug = format!("{store:?}");
    assert!(
        debug.contains("SqliteStore") && debug.contains(&format!("{durability:?}")),
        "{debug}"
    );
    drop(store);

    let store = db.open_with(options);
    assert_eq!(store.get_workflow("wf").await.unwrap(), before);
    assert_eq!(store.load_journal("wf").await.unwrap(), journal);
    assert_eq!(journal.len(), 3);
    let message = store.next_message("wf", "topic").await.unwrap().unwrap();
    assert_eq!((message.seq, message.payload), (seq, json!({ "hi": 1 })));
    assert_eq!(store.path(), db.path());
    // The store still works after reopening.
    assert_eq!(before.map(|r| r.status), Some(WorkflowStatus::Pending));
    let claimed = store
        .claim("w2", &["w".to_owned()], 1, Duration::from_secs(60), &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .commit_step("wf", "w2", step("3"), Some(seq))
        .await
        .unwrap();
    assert_eq!(store.load_journal("wf").await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data_process_crash_safe() {
    reopen_keeps_data(Durability::ProcessCrashSafe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data_power_loss_safe() {
    reopen_keeps_data(Durability::PowerLossSafe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_is_in_wal_mode_with_the_schema_version() {
    let db = TempDb::new("pragmas");
    let store = db.open();
    store.create_workflow(new_wf("wf")).await.unwrap();
    let conn = Connection::open(db.path()).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::schema_version());
    let fks: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_foreign_key_list('journal')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(fks, 1, "journal references workflows");
    // Opening an up-to-date file twice at once is fine.
    let second = db.open();
    assert!(second.get_workflow("wf").await.unwrap().is_some());
}

/// Two stores on one file (as two processes would have) never claim the same workflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_claim_exclusively() {
    let db = TempDb::new("two-stores");
    let a = db.open();
    let b = db.open();
    for i in 0..100 {
        a.create_workflow(new_wf(&format!("wf{i:03}")))
            .await
            .unwrap();
    }
    let names = vec!["w".to_owned()];
    let mut tasks = Vec::new();
    for (i, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let names = names.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("owner{i}");
            let mut got = Vec::new();
            loop {
                let claims = store
                    .claim(&owner, &names, 3, Duration::from_secs(60), &[])
                    .await
                    .unwrap();
                if claims.is_empty() {
                    return got;
                }
                got.extend(claims.into_iter().map(|c| c.record.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        (n, all.len()),
        (100, 100),
        "each workflow claimed exactly once"
    );
}
