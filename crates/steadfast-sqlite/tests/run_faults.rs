//! Runs that end abnormally free their worker's slot and their waiters: a run whose lease is
//! taken over stops, and a handle in its process sees how the new owner ends the workflow; a run
//! whose code panics fails its workflow with the panic's message. On the memory store and on a
//! SQLite file.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use steadfast_durable::{
    Engine, MemoryStore, Outcome, StepError, Store, WorkerConfig, Workflow, WorkflowCtx,
    WorkflowError, WorkflowStatus,
};

use common::TempDb;

/// Its one step never ends.
struct Hang;

impl Workflow for Hang {
    const NAME: &'static str = "hang";
    type Input = ();
    type Output = String;
    async fn run(&self, ctx: &WorkflowCtx, _: ()) -> Result<String, WorkflowError> {
        ctx.step("wait", &(), |_| {
            futures::future::pending::<Result<String, StepError>>()
        })
        .await
    }
}

/// Its step panics.
struct Panics;

impl Workflow for Panics {
    const NAME: &'static str = "panics";
    type Input = ();
    type Output = String;
    async fn run(&self, ctx: &WorkflowCtx, _: ()) -> Result<String, WorkflowError> {
        ctx.step("explode", &(), |_| async {
            if true {
                panic!("boom");
            }
            Ok::<String, StepError>(String::new())
        })
        .await
    }
}

/// Ends at once.
struct Quick;

impl Workflow for Quick {
    const NAME: &'static str = "quick";
    type Input = ();
    type Output = String;
    async fn run(&self, _: &WorkflowCtx, _: ()) -> Result<String, WorkflowError> {
        Ok("quick".into())
    }
}

/// An engine on `store` with a worker of one slot that runs every workflow here.
fn one_slot(store: Arc<dyn Store>) -> (Engine, steadfast_durable::Worker) {
    let engine = Engine::from_arc(store);
    let worker = engine
        .worker()
        .config(WorkerConfig {
            lease: Duration::from_millis(300),
            poll_interval: Duration::from_millis(20),
            max_concurrent: 1,
            ..Default::default()
        })
        .workflow(Hang)
        .workflow(Panics)
        .workflow(Quick)
        .start();
    (engine, worker)
}

/// The worker's one slot is free: the next workflow runs.
async fn slot_is_free(engine: &Engine, id: &str) {
    let quick = engine.start::<Quick>(id, ()).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), quick.result())
        .await
        .expect("the next workflow runs: the slot was given back")
        .unwrap();
    assert_eq!(out, "quick");
}

async fn a_taken_over_run_frees_its_slot_and_its_waiters(store: Arc<dyn Store>) {
    let (engine, worker) = one_slot(store.clone());
    let hang = engine.start::<Hang>("h-1", ()).await.unwrap();
    let running = store.get_workflow("h-1").await.unwrap().unwrap();
    assert_eq!(running.status, WorkflowStatus::Running);
    assert_eq!(running.owner.as_deref(), Some(worker.id()));

    // Another worker takes the workflow over, as it would from a worker it believed dead, and
    // ends it.
    let names = ["hang".to_string()];
    let taken = store
        .claim(
            "thief",
            &names,
            1,
            Duration::from_secs(60),
            &[worker.id().to_string()],
        )
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "the workflow changed hands");
    store
        .finish(
            "h-1",
            "thief",
            Outcome::Finished {
                status: WorkflowStatus::Completed,
                output: json!("finished elsewhere"),
            },
        )
        .await
        .unwrap();

    // The handle in this process learns how it ended...
    let out = tokio::time::timeout(Duration::from_secs(20), hang.result())
        .await
        .expect("the handle sees the workflow end")
        .unwrap();
    assert_eq!(out, "finished elsewhere");
    // ...and the worker's one slot is free for the next workflow.
    slot_is_free(&engine, "q-1").await;
    worker.shutdown().await;
}

async fn a_panic_fails_the_workflow_with_its_message(store: Arc<dyn Store>) {
    let (engine, worker) = one_slot(store.clone());
    let h = engine.start::<Panics>("p-1", ()).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), h.result())
        .await
        .expect("the handle sees the workflow end")
        .unwrap_err()
        .to_string();
    assert!(err.contains("panicked") && err.contains("boom"), "{err}");
    let rec = store.get_workflow("p-1").await.unwrap().unwrap();
    assert_eq!(rec.status, WorkflowStatus::Failed);
    slot_is_free(&engine, "q-2").await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_the_workflow_with_its_message_memory() {
    a_panic_fails_the_workflow_with_its_message(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_the_workflow_with_its_message_sqlite() {
    let db = TempDb::new("panic");
    a_panic_fails_the_workflow_with_its_message(Arc::new(db.open())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_over_run_frees_its_slot_and_its_waiters_memory() {
    a_taken_over_run_frees_its_slot_and_its_waiters(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_over_run_frees_its_slot_and_its_waiters_sqlite() {
    let db = TempDb::new("lost-lease");
    a_taken_over_run_frees_its_slot_and_its_waiters(Arc::new(db.open())).await;
}
