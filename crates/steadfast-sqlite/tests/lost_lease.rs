//! A worker whose lease on a running workflow is taken over stops that run and frees its slot,
//! and a handle in its process waiting on the workflow sees how the new owner ends it. On the
//! memory store and on a SQLite file.

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

async fn a_taken_over_run_frees_its_slot_and_its_waiters(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store.clone());
    let worker = engine
        .worker()
        .config(WorkerConfig {
            lease: Duration::from_millis(300),
            poll_interval: Duration::from_millis(20),
            max_concurrent: 1,
            ..Default::default()
        })
        .workflow(Hang)
        .workflow(Quick)
        .start();
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
    let quick = engine.start::<Quick>("q-1", ()).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), quick.result())
        .await
        .expect("the next workflow runs: the lost run gave its slot back")
        .unwrap();
    assert_eq!(out, "quick");
    worker.shutdown().await;
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
