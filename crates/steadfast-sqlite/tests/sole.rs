//! A store that has the database file to itself starts workflows by its step log; a second
//! store on the file makes it share: its logged starts reach the tables before the second
//! store's first write, and starts go by transaction until the first is alone again. Two stores in one
//! process hold their locks as two processes would (`flock` locks belong to open files).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use steadfast_durable::{Created, NewWorkflow, Store};
use steadfast_sqlite::SqliteStore;

use common::TempDb;

const LEASE: Duration = Duration::from_secs(600);

fn new_wf(id: &str) -> NewWorkflow {
    NewWorkflow {
        id: id.into(),
        name: "n".into(),
        input: json!({ "id": id }),
        parent_id: None,
    }
}

/// Wait until `store` has the file to itself again, for up to 10 s.
async fn alone_again(store: &SqliteStore) {
    let start = Instant::now();
    while !store.has_file_to_itself() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the store did not take the file back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_makes_the_first_share_the_file() {
    let db = TempDb::new("sole-share");
    let first = db.open();
    assert!(first.has_file_to_itself());
    let requests = first.stats().requests;
    let (created, claim) = first
        .start_claimed(new_wf("logged"), "w1", LEASE)
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    assert!(claim.is_some());
    assert_eq!(first.stats().requests, requests, "started by the log");

    // A second store reads at once, and leaves the first alone while it only reads.
    let second = db.open();
    assert!(!second.has_file_to_itself());
    assert!(second.get_workflow("nothing").await.unwrap().is_none());
    assert!(first.has_file_to_itself());
    // Its first write waits for the first store to move its log into the tables and share.
    let (again, none) = second
        .start_claimed(new_wf("logged"), "w2", LEASE)
        .await
        .unwrap();
    assert!(matches!(again, Created::Existing(_)) && none.is_none());
    assert!(!first.has_file_to_itself());
    let seen = second.get_workflow("logged").await.unwrap();
    assert_eq!(seen, claim.map(|c| c.record));

    // Shared, both start by transaction, and each sees the other's starts at once.
    let (created, _) = second
        .start_claimed(new_wf("by-second"), "w2", LEASE)
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    let (created, claim) = first
        .start_claimed(new_wf("by-second"), "w1", LEASE)
        .await
        .unwrap();
    assert!(matches!(created, Created::Existing(_)) && claim.is_none());
    let before = first.stats().requests;
    let (created, _) = first
        .start_claimed(new_wf("by-first"), "w1", LEASE)
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    assert!(first.stats().requests > before, "started by transaction");
    assert!(second.get_workflow("by-first").await.unwrap().is_some());

    // Once the second store is closed, the first has the file to itself again.
    drop(second);
    alone_again(&first).await;
    let before = first.stats().requests;
    let (created, _) = first
        .start_claimed(new_wf("logged-again"), "w1", LEASE)
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    assert_eq!(first.stats().requests, before, "started by the log again");
    let (created, _) = first
        .start_claimed(new_wf("by-first"), "w1", LEASE)
        .await
        .unwrap();
    assert!(matches!(created, Created::Existing(_)));
}

/// Many tasks that start one id at once start it once, while flushes of the log run beside
/// them and earlier ids are started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_of_one_id_start_it_once() {
    let db = TempDb::new("sole-race");
    let store = Arc::new(db.open());
    assert!(store.has_file_to_itself());
    for round in 0..20 {
        let id = format!("wf{round}");
        let mut tasks = Vec::new();
        for i in 0..16 {
            // Every fourth start is of the id of the round before, started already.
            let id = if i % 4 == 3 && round > 0 {
                format!("wf{}", round - 1)
            } else {
                id.clone()
            };
            let starter = store.clone();
            tasks.push(tokio::spawn(async move {
                let started = starter
                    .start_claimed(new_wf(&id), &format!("w{i}"), LEASE)
                    .await
                    .unwrap();
                Some((id, started))
            }));
            if i == 8 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    store.flush().await.unwrap();
                    None
                }));
            }
        }
        let mut new = Vec::new();
        let mut owners = HashSet::new();
        for t in tasks {
            let Some((started_id, started)) = t.await.unwrap() else {
                continue;
            };
            match started {
                (Created::New, Some(claim)) => {
                    new.push(started_id.clone());
                    owners.insert((started_id, claim.record.owner));
                }
                (Created::Existing(record), None) => {
                    owners.insert((started_id, record.owner));
                }
                other => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(new, std::slice::from_ref(&id), "round {round}");
        let expected = if round > 0 { 2 } else { 1 };
        assert_eq!(owners.len(), expected, "round {round}: one owner per id");
    }
    store.flush().await.unwrap();
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM workflows", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 20);
}

/// A store whose first write waits for another to share the file fails with a clear error
/// after its busy timeout when the other cannot (its log cannot reach the tables while a third
/// connection holds the write lock), and succeeds once it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_waits_for_the_file_fails_after_the_busy_timeout() {
    let db = TempDb::new("sole-timeout");
    let first = db.open();
    let (created, _) = first
        .start_claimed(new_wf("logged"), "w1", LEASE)
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    let blocker = rusqlite::Connection::open(db.path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let second = db.open_with(steadfast_sqlite::SqliteOptions {
        busy_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let started = Instant::now();
    let err = second
        .start_claimed(new_wf("other"), "w2", LEASE)
        .await
        .unwrap_err();
    assert!(
        matches!(err, steadfast_durable::StoreError::Locked(_)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up after {:?}",
        started.elapsed()
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    let (created, _) = second
        .start_claimed(new_wf("other"), "w2", LEASE)
        .await
        .unwrap();
    assert_eq!(created, Created::New);
    assert!(second.get_workflow("logged").await.unwrap().is_some());
}
