//! Reading Steadfast workflows back from a real Temporal dev server: the listing (names from the
//! memo or the input, continued runs left out) and the history as rows, across a
//! continue-as-new: a retried step, a timer, an update, a child workflow.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use steadfast_durable::{StepError, Workflow, WorkflowCtx, WorkflowError};
use steadfast_temporal::{RowKind, RowStatus, RunStatus, TemporalClient, TemporalWorker};

/// Attempts of the `fetch` step, across workflows.
#[derive(Default)]
struct Attempts(AtomicUsize);

/// A child workflow.
struct Double;

impl Workflow for Double {
    const NAME: &'static str = "double";
    type Input = u64;
    type Output = u64;

    async fn run(&self, _ctx: &WorkflowCtx, n: u64) -> Result<u64, WorkflowError> {
        Ok(n * 2)
    }
}

/// A step that fails once, a timer, an approval by update, a child, then enough steps to
/// continue as new.
struct Tour;

impl Workflow for Tour {
    const NAME: &'static str = "tour";
    type Input = u64;
    type Output = (String, u64);

    async fn run(&self, ctx: &WorkflowCtx, n: u64) -> Result<(String, u64), WorkflowError> {
        let attempts = ctx.deps::<Attempts>()?;
        let fetched: String = ctx
            .step("fetch", "a", move |_| {
                let first = attempts.0.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        return Err(StepError::retryable("flaky service"));
                    }
                    Ok("A".to_string())
                }
            })
            .await?;
        ctx.sleep(Duration::from_millis(200)).await?;
        let approval: Option<String> = ctx.recv("approval", Some(Duration::from_secs(60))).await?;
        let doubled = ctx
            .child::<Double>(&format!("{}-child", ctx.workflow_id()), n)
            .await?;
        let mut sum = doubled;
        for i in 0..n {
            sum += ctx
                .step("inc", &i, move |_| async move { Ok::<_, StepError>(i) })
                .await?;
        }
        Ok((format!("{fetched}/{}", approval.unwrap_or_default()), sum))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_history_read_back_every_kind_of_row_across_runs() -> anyhow::Result<()> {
    let Some(server) = common::server("inspect") else {
        return Ok(());
    };
    let mut config = common::config(&server, "inspect");
    config.history_limit = 40;
    let worker = TemporalWorker::builder(config.clone())
        .workflow(Tour)
        .workflow(Double)
        .step("fetch")
        .step("inc")
        .deps::<Attempts>(Arc::new(Attempts::default()))
        .start()
        .await?;
    let client = TemporalClient::connect(config).await?;
    let id = &common::id("tour");
    let h = client.start::<Tour>(id, 15).await?;
    // The update is refused until the workflow waits for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.deliver(id, "approval", "ada").await.is_err() {
        assert!(Instant::now() < deadline, "the workflow never waited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.result().await?, ("A/ada".to_string(), 30 + 105));

    let history = client.history(id).await?;
    assert_eq!(history.workflow.status, RunStatus::Completed);
    assert_eq!(history.workflow.workflow.as_deref(), Some("tour"));
    assert_eq!(history.input, Some(serde_json::json!(15)));
    assert_eq!(history.output, Some(serde_json::json!(["A/ada", 135])));
    assert!(history.runs.len() >= 2, "{:?}", history.runs);
    assert!(!history.cancel_requested && history.task_failure.is_none());
    let of = |kind: RowKind| history.steps.iter().filter(move |r| r.kind == kind);

    let fetch: Vec<_> = of(RowKind::Step).filter(|r| r.name == "fetch").collect();
    assert_eq!(fetch.len(), 1, "{:#?}", history.steps);
    assert_eq!(fetch[0].status, RowStatus::Completed);
    assert_eq!(fetch[0].attempts, 2, "the first attempt failed");
    assert_eq!(fetch[0].input, Some(serde_json::json!("a")));
    assert_eq!(fetch[0].output, Some(serde_json::json!("A")));
    assert!(fetch[0].duration_us.is_some());

    let timers: Vec<_> = of(RowKind::Timer).collect();
    assert!(
        timers.iter().any(|t| t.status == RowStatus::Completed
            && t.input == Some(serde_json::json!({"seconds": 0.2}))),
        "{timers:#?}"
    );
    let update: Vec<_> = of(RowKind::Update).collect();
    assert_eq!(update.len(), 1);
    assert_eq!(update[0].step_id, steadfast_temporal::DELIVER_UPDATE);
    assert_eq!(update[0].name, "approval");
    assert_eq!(update[0].input, Some(serde_json::json!("ada")));

    let child: Vec<_> = of(RowKind::Child).collect();
    assert_eq!(child.len(), 1);
    assert_eq!(child[0].step_id, format!("{id}-child"));
    assert_eq!(child[0].name, "double");
    assert_eq!(child[0].status, RowStatus::Completed);
    assert_eq!(child[0].output, Some(serde_json::json!(30)));

    let incs = of(RowKind::Step).filter(|r| r.name == "inc").count();
    assert_eq!(incs, 15, "each step once, across the runs");
    let continued: Vec<_> = of(RowKind::ContinueAsNew).collect();
    assert_eq!(continued.len(), history.runs.len() - 1);
    assert_eq!(continued[0].step_id, history.runs[1]);
    assert_eq!(continued[0].run_id, history.runs[0]);
    assert!(history.steps.iter().all(|r| r.status != RowStatus::Running));

    // One row per workflow: the runs that continued as new are left out.
    let listed = client.list(None, None).await?;
    let tours: Vec<_> = listed.iter().filter(|w| w.id == *id).collect();
    assert_eq!(tours.len(), 1, "{listed:#?}");
    assert_eq!(tours[0].workflow.as_deref(), Some("tour"));
    assert_eq!(tours[0].run_id, *history.runs.last().unwrap());
    let child = listed
        .iter()
        .find(|w| w.id == format!("{id}-child"))
        .unwrap();
    assert_eq!(
        child.workflow.as_deref(),
        Some("double"),
        "a child has no memo: its input names it"
    );
    assert_eq!(child.parent_id.as_deref(), Some(id.as_str()));
    let continued = client.list(Some(RunStatus::ContinuedAsNew), None).await?;
    assert_eq!(
        continued.iter().filter(|w| w.id == *id).count(),
        history.runs.len() - 1
    );
    assert_eq!(client.list(None, Some(1)).await?.len(), 1);
    assert_eq!(client.describe(id).await?.status, RunStatus::Completed);
    let missing = client.history("nope").await.unwrap_err().to_string();
    assert!(missing.contains("no workflow `nope`"), "{missing}");
    worker.shutdown().await;
    Ok(())
}
