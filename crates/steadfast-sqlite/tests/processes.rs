//! Real processes on one file: two worker processes claiming at once, and a writer process
//! killed with SIGKILL in the middle of committing steps.
//!
//! The test binary runs itself again as the child process, with `CHILD_ENV` saying what to do.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use steadfast_durable::{Json, NewWorkflow, StepKind, StepRecord, Store};
use steadfast_sqlite::SqliteStore;

use common::TempDb;

const CHILD_ENV: &str = "STEADFAST_SQLITE_TEST_CHILD";
const NAME: &str = "proc";
const LONG: Duration = Duration::from_secs(60);

/// `(path, owner)` when this process is a child.
fn child_args() -> Option<(PathBuf, String)> {
    let value = std::env::var(CHILD_ENV).ok()?;
    let (path, owner) = value.split_once('|')?;
    Some((PathBuf::from(path), owner.to_owned()))
}

fn spawn_child(test: &str, path: &Path, owner: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{owner}", path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child process")
}

/// What follows `marker` in a child's output line (libtest may print before it on the line).
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

fn step(position: usize) -> StepRecord {
    StepRecord {
        position: position.to_string(),
        step_id: format!("recv#{position}"),
        kind: StepKind::Recv,
        name: "recv".into(),
        input_hash: "h".into(),
        input: None,
        output: Ok(Json::from(json!({ "n": position }))),
        attempts: 1,
        started_at: 0,
        duration_us: 0,
        seq: 0,
    }
}

fn new_wf(id: &str) -> NewWorkflow {
    NewWorkflow {
        id: id.into(),
        name: NAME.into(),
        input: json!(null),
        parent_id: None,
    }
}

/// Child: claim until nothing is left, printing `CLAIMED <id>` for each claim.
async fn claim_child(path: &Path, owner: &str) {
    let store = SqliteStore::open(path).expect("child opens the store");
    let names = vec![NAME.to_owned()];
    let mut empty = 0;
    while empty < 5 {
        let claims = store
            .claim(owner, &names, 2, LONG, &[])
            .await
            .expect("claim");
        if claims.is_empty() {
            empty += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for c in claims {
            println!("CLAIMED {}", c.record.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_claim_exclusively() {
    if let Some((path, owner)) = child_args() {
        return claim_child(&path, &owner).await;
    }
    const N: usize = 300;
    let db = TempDb::new("two-processes");
    let store = db.open();
    for i in 0..N {
        store
            .create_workflow(new_wf(&format!("wf{i:03}")))
            .await
            .unwrap();
    }
    let children: Vec<(String, Child)> = ["proc-a", "proc-b"]
        .into_iter()
        .map(|owner| {
            let child = spawn_child("two_processes_claim_exclusively", db.path(), owner);
            (owner.to_owned(), child)
        })
        .collect();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    let mut per_owner: HashMap<String, usize> = HashMap::new();
    for (owner, child) in children {
        let out = child.wait_with_output().expect("child output");
        assert!(out.status.success(), "child {owner} failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(id) = after(line, "CLAIMED ") {
                *per_owner.entry(owner.clone()).or_default() += 1;
                if let Some(first) = claimed.insert(id.to_owned(), owner.clone()) {
                    panic!("`{id}` claimed by both {first} and {owner}");
                }
            }
        }
    }
    assert_eq!(claimed.len(), N, "every workflow claimed once");
    for (id, owner) in &claimed {
        let record = store.get_workflow(id).await.unwrap().unwrap();
        assert_eq!(record.owner.as_ref(), Some(owner), "owner of {id}");
    }
    println!("claims per process: {per_owner:?}");
}

/// Child: commit steps on four workflows in parallel, each consuming its message, printing
/// `COMMITTED <workflow> <position>` after each acknowledged commit. Runs until killed.
async fn commit_child(path: &Path, owner: &str) {
    let store = Arc::new(SqliteStore::open(path).expect("child opens the store"));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        let owner = owner.to_owned();
        tasks.push(tokio::spawn(async move {
            let id = format!("wf{w}");
            for i in 0.. {
                let seq = i as i64 + 1;
                store
                    .commit_step(&id, &owner, step(i), Some(seq))
                    .await
                    .expect("commit");
                println!("COMMITTED {id} {i}");
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_killed_mid_commit_leaves_a_consistent_file() {
    if let Some((path, owner)) = child_args() {
        return commit_child(&path, &owner).await;
    }
    const MESSAGES: usize = 1_000;
    let db = TempDb::new("sigkill");
    let store = db.open();
    for w in 0..4 {
        let id = format!("wf{w}");
        store.create_workflow(new_wf(&id)).await.unwrap();
        for i in 0..MESSAGES {
            store.send(&id, "m", json!(i)).await.unwrap();
        }
    }
    let claimed = store
        .claim("victim", &[NAME.to_owned()], 4, LONG, &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    drop(store);

    let acknowledged = run_and_kill(
        "writer_killed_mid_commit_leaves_a_consistent_file",
        db.path(),
        800,
    );

    let store = db.open();
    let names = vec![NAME.to_owned()];
    let dead = vec!["victim".to_owned()];
    let claimed = store
        .claim("survivor", &names, 4, LONG, &dead)
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        4,
        "the dead owner's workflows are taken over"
    );
    assert_journals(&store, &acknowledged).await;
    for w in 0..4 {
        let id = format!("wf{w}");
        let n = store.load_journal(&id).await.unwrap().len();
        // Exactly the messages of the committed steps are consumed.
        let next = store
            .next_message(&id, "m")
            .await
            .unwrap()
            .expect("messages left");
        assert_eq!(
            next.seq,
            n as i64 + 1,
            "{id}: consumption not atomic with the journal"
        );
        store
            .commit_step(&id, "survivor", step(n), Some(next.seq))
            .await
            .unwrap();
        let r = store.commit_step(&id, "victim", step(n + 1), None).await;
        assert!(r.is_err(), "the killed owner is fenced off");
    }
    println!("acknowledged before SIGKILL: {acknowledged:?}");
}

fn segments(path: &Path) -> Vec<PathBuf> {
    let mut dir = path.to_owned().into_os_string();
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

/// Child: claim the four workflows and commit steps on them in parallel through the step log,
/// printing `COMMITTED <workflow> <position>` after each acknowledged commit. Runs until killed.
async fn logging_child(path: &Path, owner: &str) {
    let store = Arc::new(SqliteStore::open(path).expect("child opens the store"));
    let claims = store
        .claim(owner, &[NAME.to_owned()], 4, LONG, &[])
        .await
        .expect("claim");
    assert_eq!(claims.len(), 4, "the child claims all four");
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        let owner = owner.to_owned();
        tasks.push(tokio::spawn(async move {
            let id = format!("wf{w}");
            for i in 0.. {
                store
                    .commit_step(&id, &owner, step(i), None)
                    .await
                    .expect("commit");
                println!("COMMITTED {id} {i}");
                if i % 50 == 49 {
                    // Pauses let the writer thread flush now and then, so the kill finds
                    // steps both in the table and in the log.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Run the child of `test`, which prints `COMMITTED <workflow> <position>`, and kill it after
/// `enough` acknowledged commits; the acknowledged count per workflow.
fn run_and_kill(test: &str, path: &Path, enough: usize) -> HashMap<String, usize> {
    run_and_kill_with(test, path, enough, || {})
}

/// [`run_and_kill`], calling `on_commit` after each acknowledged commit.
fn run_and_kill_with(
    test: &str,
    path: &Path,
    enough: usize,
    mut on_commit: impl FnMut(),
) -> HashMap<String, usize> {
    let mut child = spawn_child(test, path, "victim");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acknowledged: HashMap<String, usize> = HashMap::new();
    let start = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        if let Some(rest) = after(&line, "COMMITTED ") {
            let (id, position) = rest.split_once(' ').expect("COMMITTED <id> <position>");
            acknowledged.insert(id.to_owned(), position.parse::<usize>().unwrap() + 1);
            on_commit();
            if acknowledged.values().sum::<usize>() >= enough {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20), "child too slow");
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    acknowledged
}

/// Create `wf0` … `wf3`.
async fn create_four(store: &SqliteStore) {
    for w in 0..4 {
        store
            .create_workflow(new_wf(&format!("wf{w}")))
            .await
            .unwrap();
    }
}

/// Every acknowledged step of `acknowledged` is in `store`'s journal, in order.
async fn assert_journals(store: &SqliteStore, acknowledged: &HashMap<String, usize>) {
    for w in 0..4 {
        let id = format!("wf{w}");
        let journal = store.load_journal(&id).await.unwrap();
        let acked = acknowledged.get(&id).copied().unwrap_or(0);
        assert!(
            journal.len() >= acked,
            "{id}: {acked} commits acknowledged but only {} in the journal",
            journal.len()
        );
        for (i, s) in journal.iter().enumerate() {
            assert_eq!(
                s,
                &StepRecord {
                    seq: s.seq,
                    ..step(i)
                },
                "{id} step {i}"
            );
        }
        assert!(journal.windows(2).all(|p| p[0].seq < p[1].seq));
    }
}

/// A worker killed while its steps sit in the step log loses none of them: the next claim
/// imports its log before taking over its workflows, and deletes the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logged_steps_of_a_killed_worker_are_imported_by_the_next_claim() {
    const TEST: &str = "logged_steps_of_a_killed_worker_are_imported_by_the_next_claim";
    if let Some((path, owner)) = child_args() {
        return logging_child(&path, &owner).await;
    }
    let db = TempDb::new("steplog-claim");
    // Opened before the child runs: only its claim can find the child's log.
    let store = db.open();
    create_four(&store).await;
    let acknowledged = run_and_kill(TEST, db.path(), 800);
    assert!(
        !segments(db.path()).is_empty(),
        "the killed worker's log is left"
    );

    let dead = vec!["victim".to_owned()];
    let claimed = store
        .claim("survivor", &[NAME.to_owned()], 4, LONG, &dead)
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        4,
        "the dead owner's workflows are taken over"
    );
    assert!(
        segments(db.path()).is_empty(),
        "the imported log is deleted"
    );
    assert_journals(&store, &acknowledged).await;
    for w in 0..4 {
        let id = format!("wf{w}");
        let n = store.load_journal(&id).await.unwrap().len();
        store
            .commit_step(&id, "survivor", step(n), None)
            .await
            .unwrap();
        let r = store.commit_step(&id, "victim", step(n + 1), None).await;
        assert!(r.is_err(), "the killed owner is fenced off");
    }
    println!("acknowledged before SIGKILL: {acknowledged:?}");
}

/// Opening the file imports the log of a killed worker: `steadfast show` after a crash shows
/// every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opening_the_file_imports_the_log_of_a_killed_worker() {
    const TEST: &str = "opening_the_file_imports_the_log_of_a_killed_worker";
    if let Some((path, owner)) = child_args() {
        return logging_child(&path, &owner).await;
    }
    let db = TempDb::new("steplog-open");
    let store = db.open();
    create_four(&store).await;
    drop(store);
    let acknowledged = run_and_kill(TEST, db.path(), 400);
    let reader = db.open_with(steadfast_sqlite::SqliteOptions {
        step_log: false,
        ..Default::default()
    });
    assert!(
        segments(db.path()).is_empty(),
        "the imported log is deleted"
    );
    assert_journals(&reader, &acknowledged).await;
}

/// Child: claim `wf0`, commit three steps and finish it, all through the step log, print
/// `FINISHED`, then wait to be killed.
async fn finishing_child(path: &Path, owner: &str) {
    let store = SqliteStore::open(path).expect("child opens the store");
    let claims = store
        .claim(owner, &[NAME.to_owned()], 1, LONG, &[])
        .await
        .expect("claim");
    assert_eq!(claims.len(), 1);
    for i in 0..3 {
        store
            .commit_step("wf0", owner, step(i), None)
            .await
            .expect("commit");
    }
    store
        .finish(
            "wf0",
            owner,
            steadfast_durable::Outcome::Finished {
                status: steadfast_durable::WorkflowStatus::Completed,
                output: json!({ "done": true }),
            },
        )
        .await
        .expect("finish");
    let ended = store.get_workflow("wf0").await.unwrap().unwrap();
    assert_eq!(ended.status, steadfast_durable::WorkflowStatus::Completed);
    println!("FINISHED");
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// A workflow's end committed to the step log survives the kill of its process: the next
/// process to open the file finds the workflow completed, with its output and its steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_end_survives_the_kill_of_its_process() {
    const TEST: &str = "a_logged_end_survives_the_kill_of_its_process";
    if let Some((path, owner)) = child_args() {
        return finishing_child(&path, &owner).await;
    }
    let db = TempDb::new("steplog-finish");
    let store = db.open();
    store.create_workflow(new_wf("wf0")).await.unwrap();
    drop(store);
    let mut child = spawn_child(TEST, db.path(), "victim");
    let stdout = child.stdout.take().expect("child stdout");
    let finished = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("FINISHED"));
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    assert!(finished, "the child did not finish its workflow");

    let store = db.open();
    assert!(
        segments(db.path()).is_empty(),
        "the imported log is deleted"
    );
    let wf = store.get_workflow("wf0").await.unwrap().unwrap();
    assert_eq!(wf.status, steadfast_durable::WorkflowStatus::Completed);
    assert_eq!(wf.output, Some(json!({ "done": true })));
    assert_eq!(wf.owner, None);
    let journal = store.load_journal("wf0").await.unwrap();
    assert_eq!(journal.len(), 3);
    assert_eq!(store.running_owners().await.unwrap(), Vec::<String>::new());
}

/// Child: start `s0`, `s1` and `s2` (claimed) and log two steps of each, while the parent holds
/// the write lock so that nothing is flushed; print `STARTED`, then wait to be killed.
async fn starting_child(path: &Path, owner: &str) {
    let store = SqliteStore::open(path).expect("child opens the store");
    assert!(store.has_file_to_itself());
    for w in 0..3 {
        let id = format!("s{w}");
        let (created, claim) = store
            .start_claimed(new_wf(&id), owner, LONG)
            .await
            .expect("start");
        assert_eq!(created, steadfast_durable::Created::New);
        assert!(claim.is_some());
        for i in 0..2 {
            store
                .commit_step(&id, owner, step(i), None)
                .await
                .expect("commit");
        }
    }
    println!("STARTED");
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// Workflows started by the log of a store that had the file to itself survive the kill of its
/// process before any of it reached the tables: the next store to open the file imports the
/// starts with their steps, and a claim takes the workflows over from the dead owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_starts_survive_the_kill_of_their_process() {
    const TEST: &str = "logged_starts_survive_the_kill_of_their_process";
    if let Some((path, owner)) = child_args() {
        return starting_child(&path, &owner).await;
    }
    let db = TempDb::new("steplog-start");
    drop(db.open());
    // The write lock, held so that the child's flushes wait: its starts stay in its log.
    let blocker = rusqlite::Connection::open(db.path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut child = spawn_child(TEST, db.path(), "victim");
    let stdout = child.stdout.take().expect("child stdout");
    let started = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("STARTED"));
    let in_table: i64 = blocker
        .query_row("SELECT count(*) FROM workflows", [], |r| r.get(0))
        .unwrap();
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    assert!(started, "the child did not start its workflows");
    assert_eq!(in_table, 0, "the starts were still in the child's log");
    blocker.execute_batch("ROLLBACK").unwrap();

    let store = db.open();
    assert!(
        segments(db.path()).is_empty(),
        "the imported log is deleted"
    );
    for w in 0..3 {
        let id = format!("s{w}");
        let wf = store.get_workflow(&id).await.unwrap().expect("imported");
        assert_eq!(wf.status, steadfast_durable::WorkflowStatus::Running);
        assert_eq!(wf.owner.as_deref(), Some("victim"));
        assert_eq!(wf.input, json!(null));
        assert_eq!(store.load_journal(&id).await.unwrap().len(), 2);
        let (again, claim) = store
            .start_claimed(new_wf(&id), "survivor", LONG)
            .await
            .unwrap();
        assert!(matches!(again, steadfast_durable::Created::Existing(_)) && claim.is_none());
    }
    let dead = vec!["victim".to_owned()];
    let claimed = store
        .claim("survivor", &[NAME.to_owned()], 10, LONG, &dead)
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        3,
        "the dead owner's workflows are taken over"
    );
    for w in 0..3 {
        let id = format!("s{w}");
        store
            .commit_step(&id, "survivor", step(2), None)
            .await
            .unwrap();
        assert_eq!(store.load_journal(&id).await.unwrap().len(), 3);
    }
}

/// A step of about 200 KB: twenty fill a segment of the step log.
fn big_step(position: usize) -> StepRecord {
    StepRecord {
        output: Ok(json!({ "n": position, "text": "y".repeat(200 * 1024) }).into()),
        ..step(position)
    }
}

/// Child: claim `wf0` and commit big steps on it through the step log, printing
/// `COMMITTED wf0 <position>` after each acknowledged commit; with `flush_after`, flush the log
/// into the tables after that step (before printing it). Runs until killed.
async fn big_logging_child(path: &Path, owner: &str, flush_after: Option<usize>) {
    let store = SqliteStore::open(path).expect("child opens the store");
    let claims = store
        .claim(owner, &[NAME.to_owned()], 1, LONG, &[])
        .await
        .expect("claim");
    assert_eq!(claims.len(), 1, "the child claims wf0");
    for i in 0.. {
        store
            .commit_step("wf0", owner, big_step(i), None)
            .await
            .expect("commit");
        if flush_after == Some(i) {
            store.flush().await.expect("flush");
        }
        println!("COMMITTED wf0 {i}");
    }
}

/// A connection holding the write lock of `path`: nothing else can write until it rolls back.
fn block_writes(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch("BEGIN IMMEDIATE").unwrap();
    c
}

/// After the kill of a child that committed big steps on `wf0` (`acknowledged` of them
/// acknowledged) and left at least three segments: release `blocker`, have `store` take the
/// workflow over, which imports the segments, and check that they are deleted and that the
/// journal holds every acknowledged step, in order.
async fn take_over_big_steps(
    store: &SqliteStore,
    db: &Path,
    blocker: Option<rusqlite::Connection>,
    acknowledged: usize,
) {
    let left = segments(db).len();
    assert!(left >= 3, "the killed worker left {left} segments");
    if let Some(c) = blocker {
        c.execute_batch("ROLLBACK").unwrap();
    }
    let claimed = store
        .claim(
            "survivor",
            &[NAME.to_owned()],
            1,
            LONG,
            &["victim".to_owned()],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the dead owner's workflow is taken over");
    assert!(segments(db).is_empty(), "the imported segments are deleted");
    let journal = store.load_journal("wf0").await.unwrap();
    assert!(
        journal.len() >= acknowledged,
        "{acknowledged} commits acknowledged but only {} in the journal",
        journal.len()
    );
    for (i, s) in journal.iter().enumerate() {
        // Not `assert_eq!`: a step holds 200 KB.
        assert_eq!(s.position, i.to_string(), "the journal's step {i}");
        assert!(
            s == &StepRecord {
                seq: s.seq,
                ..big_step(i)
            },
            "step {i} differs from what was committed"
        );
    }
    assert!(journal.windows(2).all(|p| p[0].seq < p[1].seq));
}

/// A worker killed with its log spread over several segments (they filled up while another
/// process held the write lock, so nothing could be flushed) loses none of its steps: the next
/// claim imports the segments in the order they were written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_of_several_segments_is_imported_in_order() {
    const TEST: &str = "a_log_of_several_segments_is_imported_in_order";
    if let Some((path, owner)) = child_args() {
        return big_logging_child(&path, &owner, None).await;
    }
    let db = TempDb::new("steplog-segments");
    let store = db.open();
    store.create_workflow(new_wf("wf0")).await.unwrap();
    let mut blocker = None;
    let acknowledged = run_and_kill_with(TEST, db.path(), 70, || {
        if blocker.is_none() {
            // From now on the child cannot flush its log.
            blocker = Some(block_writes(db.path()));
        }
    });
    let acknowledged = acknowledged.get("wf0").copied().unwrap_or(0);
    take_over_big_steps(&store, db.path(), blocker, acknowledged).await;
}

/// Segments whose entries reached the tables are reused for later entries. A worker killed
/// after that, with its newest entries spread over reused and new segments (they filled up
/// while another process held the write lock), loses none of its steps, and the next claim
/// imports them in the order they were written, older segments' files notwithstanding.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reused_segments_are_imported_in_the_order_of_their_entries() {
    const TEST: &str = "reused_segments_are_imported_in_the_order_of_their_entries";
    if let Some((path, owner)) = child_args() {
        return big_logging_child(&path, &owner, Some(14)).await;
    }
    let db = TempDb::new("steplog-reuse");
    let store = db.open();
    store.create_workflow(new_wf("wf0")).await.unwrap();
    let (mut seen, mut blocker) = (0, None);
    let acknowledged = run_and_kill_with(TEST, db.path(), 60, || {
        seen += 1;
        match seen {
            // Segments fill up and are retired, as the child cannot flush its log.
            1 => blocker = Some(block_writes(db.path())),
            // Until the child's flush after step 14, which empties them all.
            14 => {
                if let Some(c) = blocker.take() {
                    c.execute_batch("ROLLBACK").unwrap();
                }
            }
            // The next steps fill the segment and the spares, and new segments.
            15 => blocker = Some(block_writes(db.path())),
            _ => {}
        }
    });
    let acknowledged = acknowledged.get("wf0").copied().unwrap_or(0);
    assert!(acknowledged >= 60, "{acknowledged} commits acknowledged");
    take_over_big_steps(&store, db.path(), blocker, acknowledged).await;
}
