//! A handle waiting for a workflow that a worker of its own process runs gets the result from
//! the worker, without reading the store back; a handle on a workflow that ended before it
//! waited reads the store. A run that its start created reads no journal; a claimed one does.
//! Counted through the timing wrapper, on a SQLite file and in memory.

use std::sync::Arc;
use std::time::Duration;

use steadfast_bench::stats::open_sqlite;
use steadfast_bench::timed_store::TimedStore;
use steadfast_durable::{
    Engine, MemoryStore, NewWorkflow, StepError, Store, Workflow, WorkflowCtx, WorkflowError,
};
use steadfast_sqlite::Durability;
use tokio::sync::Semaphore;

/// Waits in a step until its gate (a worker dependency) lets it through.
struct Gated;

impl Workflow for Gated {
    const NAME: &'static str = "gated";
    type Input = ();
    type Output = String;
    async fn run(&self, ctx: &WorkflowCtx, _: ()) -> Result<String, WorkflowError> {
        let gate = ctx.deps::<Semaphore>()?;
        ctx.step("pass", &(), move |_| {
            let gate = gate.clone();
            async move {
                // One permit per run.
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                Ok::<_, StepError>("passed".to_string())
            }
        })
        .await
    }
}

async fn results_are_handed_over(store: impl Store) -> anyhow::Result<()> {
    let timed = TimedStore::new(store);
    let probe = timed.probe();
    let engine = Engine::new(timed);
    let gate = Arc::new(Semaphore::new(0));
    let worker = engine
        .worker()
        .deps::<Semaphore>(gate.clone())
        .workflow(Gated)
        .start();
    for g in 0..5 {
        let h = engine.start::<Gated>(&format!("g-{g}"), ()).await?;
        let mut result = Box::pin(h.result());
        // Polled: the handle waits while the run waits at its gate.
        let waited = tokio::time::timeout(Duration::from_millis(5), &mut result).await;
        assert!(
            waited.is_err(),
            "the run cannot end before its gate opens: {waited:?}"
        );
        gate.add_permits(1);
        assert_eq!(result.await?, "passed");
    }
    assert_eq!(
        probe.get("get_workflow").calls,
        0,
        "the worker handed each result over"
    );
    assert_eq!(
        probe.get("load_journal").calls,
        0,
        "a run that its start created and leased has no journal to read"
    );
    // A workflow that the worker claims (here: one created pending, behind the engine's back)
    // may have run before: its run reads the journal. The worker finds it at its next poll.
    engine
        .store()
        .create_workflow(NewWorkflow {
            id: "claimed".into(),
            name: Gated::NAME.into(),
            input: serde_json::Value::Null,
            parent_id: None,
        })
        .await?;
    gate.add_permits(1);
    assert_eq!(engine.handle::<Gated>("claimed").result().await?, "passed");
    assert_eq!(probe.get("load_journal").calls, 1);
    // A handle on a workflow that ended before it waited reads the store.
    let reads = probe.get("get_workflow").calls;
    assert_eq!(engine.handle::<Gated>("g-0").result().await?, "passed");
    assert_eq!(probe.get("get_workflow").calls, reads + 1);
    worker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_runs_result_reaches_its_handle_without_a_store_read() -> anyhow::Result<()> {
    results_are_handed_over(MemoryStore::new()).await?;

    let dir = std::env::temp_dir().join(format!("steadfast-handles-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = open_sqlite(dir.join("h.db"), Durability::ProcessCrashSafe).await?;
    let result = results_are_handed_over(store).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
