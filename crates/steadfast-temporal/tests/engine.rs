//! Steadfast workflows on a real Temporal dev server: steps, timers, parallel fan-out,
//! approvals by signal and by update, agents with deps by reference, child workflows,
//! continue-as-new, payload limits and non-determinism.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use steadfast_core::{Agent, FunctionModel, Message, ModelResponse, RequestPart, Tool, ToolCtx};
use steadfast_durable::{StepError, Workflow, WorkflowCtx, WorkflowError};
use steadfast_temporal::{RowStatus, TemporalClient, TemporalStatus, TemporalWorker};

/// Fan-out, a timer and an approval.
struct Pipeline;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct PipelineOut {
    parts: Vec<String>,
    slept_ms: i64,
    approved_by: Option<String>,
}

impl Workflow for Pipeline {
    const NAME: &'static str = "pipeline";
    type Input = Vec<String>;
    type Output = PipelineOut;

    async fn run(
        &self,
        ctx: &WorkflowCtx,
        items: Vec<String>,
    ) -> Result<PipelineOut, WorkflowError> {
        let futures: Vec<_> = items
            .iter()
            .map(|item| {
                let b = ctx.branch(item);
                let item = item.clone();
                let input = item.clone();
                async move {
                    b.step("fetch", &input, move |_| {
                        let item = item.clone();
                        async move { Ok::<_, StepError>(item.to_uppercase()) }
                    })
                    .await
                }
            })
            .collect();
        let parts = ctx
            .join_all(futures)
            .await
            .into_iter()
            .collect::<Result<Vec<String>, _>>()?;
        let before = ctx.now().await?;
        ctx.sleep(Duration::from_secs(1)).await?;
        let after = ctx.now().await?;
        let approval: Option<String> = ctx.recv("approval", Some(Duration::from_secs(60))).await?;
        Ok(PipelineOut {
            parts,
            slept_ms: after - before,
            approved_by: approval,
        })
    }
}

async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_timer_and_approval_by_update() -> anyhow::Result<()> {
    let Some(server) = common::server("pipeline") else {
        return Ok(());
    };
    let config = common::config(&server, "pipeline");
    let worker = TemporalWorker::builder(config.clone())
        .workflow(Pipeline)
        .step("fetch")
        .start()
        .await?;
    let client = TemporalClient::connect(config).await?;
    let items = vec!["alpha".to_string(), "beta".into(), "gamma".into()];
    let id = common::id("pipeline");
    let h = client.start::<Pipeline>(&id, items.clone()).await?;
    // An approval before anything waits for it is refused.
    let early = client.deliver(&id, "nothing", "x").await;
    assert!(
        early.is_err(),
        "a delivery on a topic nobody waits on must be refused"
    );
    // Deliver once the workflow waits on `approval`.
    wait_for("the approval to be accepted", || async {
        client.deliver(&id, "approval", "ada").await.is_ok()
    })
    .await;
    let again = client.deliver(&id, "approval", "bob").await;
    let out = h.result().await?;
    assert_eq!(out.parts, vec!["ALPHA", "BETA", "GAMMA"]);
    assert!(
        out.slept_ms >= 1000,
        "the timer fired early: {} ms",
        out.slept_ms
    );
    assert_eq!(out.approved_by.as_deref(), Some("ada"));
    assert!(again.is_err(), "a second approval must be refused");
    assert_eq!(h.status().await?, TemporalStatus::Completed);
    // Idempotent start: the same id does not run again.
    let h2 = client.start::<Pipeline>(&id, items).await?;
    assert_eq!(h2.result().await?, out);
    worker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_by_signal_arrives_before_the_receive() -> anyhow::Result<()> {
    let Some(server) = common::server("signal") else {
        return Ok(());
    };
    let config = common::config(&server, "signal");
    let client = TemporalClient::connect(config.clone()).await?;
    let id = common::id("signal");
    // Started with no worker yet: the signal waits in the workflow's mailbox.
    let h = client.start::<Pipeline>(&id, vec!["x".into()]).await?;
    client.send(&id, "approval", "grace").await?;
    let worker = TemporalWorker::builder(config)
        .workflow(Pipeline)
        .step("fetch")
        .start()
        .await?;
    let out = h.result().await?;
    assert_eq!(out.approved_by.as_deref(), Some("grace"));
    assert_eq!(out.parts, vec!["X"]);
    worker.shutdown().await;
    Ok(())
}

/// Deps reach tools by reference: the counter is the worker's own value.
#[derive(Default)]
struct Counter {
    tools: AtomicUsize,
}

#[derive(Deserialize, JsonSchema)]
struct Lookup {
    /// The key to look up.
    key: String,
}

fn researcher() -> Agent<Counter, String> {
    let model = FunctionModel::new(|messages: &[Message], _| {
        let returns = messages
            .iter()
            .filter_map(Message::as_request)
            .flat_map(|r| r.parts.iter())
            .filter(|p| matches!(p, RequestPart::ToolReturn { .. }))
            .count();
        Ok(if returns < 3 {
            ModelResponse::tool_call("lookup", json!({ "key": format!("k{returns}") }))
        } else {
            ModelResponse::text("done after 3 lookups")
        })
    });
    Agent::builder("researcher")
        .model(model)
        .tool(Tool::new(
            "lookup",
            |ctx: ToolCtx<Counter>, a: Lookup| async move {
                ctx.deps.tools.fetch_add(1, Ordering::SeqCst);
                assert!(ctx.idempotency_key.contains("tool__lookup#"));
                Ok(format!("value of {}", a.key))
            },
        ))
        .build()
        .expect("agent")
}

struct Research {
    agent: Agent<Counter, String>,
}

impl Workflow for Research {
    const NAME: &'static str = "research";
    type Input = String;
    type Output = (String, u32);

    async fn run(&self, ctx: &WorkflowCtx, q: String) -> Result<(String, u32), WorkflowError> {
        let deps = ctx.deps::<Counter>()?;
        let r = self.agent.run_in(ctx, q, deps).await?;
        Ok((r.output, r.usage.requests))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_as_activities_with_deps_by_reference() -> anyhow::Result<()> {
    let Some(server) = common::server("agent") else {
        return Ok(());
    };
    let config = common::config(&server, "agent");
    let counter = Arc::new(Counter::default());
    let agent = researcher();
    let worker = TemporalWorker::builder(config.clone())
        .workflow(Research {
            agent: agent.clone(),
        })
        .agent(&agent)
        .deps::<Counter>(counter.clone())
        .start()
        .await?;
    let client = TemporalClient::connect(config).await?;
    let h = client
        .start::<Research>(&common::id("research"), "go".into())
        .await?;
    let (output, requests) = h.result().await?;
    assert_eq!(output, "done after 3 lookups");
    assert_eq!(requests, 4, "usage travels in the step results");
    assert_eq!(
        counter.tools.load(Ordering::SeqCst),
        3,
        "each tool ran once, in this worker"
    );
    let names = h.activity_types().await?;
    assert_eq!(
        names
            .iter()
            .filter(|n| *n == "agent__researcher__model_request")
            .count(),
        4,
        "{names:?}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| *n == "agent__researcher__tool__lookup")
            .count(),
        3,
        "{names:?}"
    );
    assert_eq!(
        worker.pending_steps(),
        0,
        "no step body outlives its activity"
    );
    worker.shutdown().await;
    Ok(())
}

/// A child workflow.
struct Double;

impl Workflow for Double {
    const NAME: &'static str = "double";
    type Input = u64;
    type Output = u64;

    async fn run(&self, ctx: &WorkflowCtx, n: u64) -> Result<u64, WorkflowError> {
        ctx.step(
            "double",
            &n,
            move |_| async move { Ok::<_, StepError>(n * 2) },
        )
        .await
    }
}

/// Many sequential steps, counted by a worker-local counter, and a child.
struct Long;

impl Workflow for Long {
    const NAME: &'static str = "long";
    type Input = u64;
    type Output = u64;

    async fn run(&self, ctx: &WorkflowCtx, n: u64) -> Result<u64, WorkflowError> {
        let runs = ctx.deps::<Counter>()?;
        let mut sum = 0;
        for i in 0..n {
            let runs = runs.clone();
            sum += ctx
                .step("inc", &i, move |_| {
                    runs.tools.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, StepError>(i) }
                })
                .await?;
        }
        let doubled = ctx
            .child::<Double>(&format!("{}-child", ctx.workflow_id()), sum)
            .await?;
        Ok(doubled)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_runs_continue_as_new_and_children_are_child_workflows() -> anyhow::Result<()> {
    let Some(server) = common::server("long") else {
        return Ok(());
    };
    let mut config = common::config(&server, "long");
    config.history_limit = 40;
    let runs = Arc::new(Counter::default());
    let worker = TemporalWorker::builder(config.clone())
        .workflow(Long)
        .workflow(Double)
        .step("inc")
        .step("double")
        .deps::<Counter>(runs.clone())
        .start()
        .await?;
    let client = TemporalClient::connect(config).await?;
    let id = common::id("long");
    let h = client.start::<Long>(&id, 30).await?;
    assert_eq!(h.result().await?, 2 * (0..30).sum::<u64>());
    assert_eq!(
        runs.tools.load(Ordering::SeqCst),
        30,
        "each step ran once across the runs"
    );
    let newest = h.activity_types().await?;
    assert!(
        newest.len() < 30,
        "the newest run must hold only the steps since its continue-as-new: {}",
        newest.len()
    );
    let size = h.history_size().await?;
    assert!(size.events < 60, "{size:?}");
    let child = client.handle::<Double>(&format!("{id}-child"));
    assert_eq!(child.result().await?, 2 * (0..30).sum::<u64>());
    worker.shutdown().await;
    Ok(())
}

/// A step whose output is over the payload limit.
struct Huge;

impl Workflow for Huge {
    const NAME: &'static str = "huge";
    type Input = usize;
    type Output = usize;

    async fn run(&self, ctx: &WorkflowCtx, n: usize) -> Result<usize, WorkflowError> {
        let s: String = ctx
            .step("make_blob", &n, move |_| async move {
                Ok::<_, StepError>("x".repeat(n))
            })
            .await?;
        Ok(s.len())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_over_the_limit_names_the_step() -> anyhow::Result<()> {
    let Some(server) = common::server("huge") else {
        return Ok(());
    };
    let config = common::config(&server, "huge");
    let worker = TemporalWorker::builder(config.clone())
        .workflow(Huge)
        .step("make_blob")
        .start()
        .await?;
    let client = TemporalClient::connect(config).await?;
    assert_eq!(
        client
            .start::<Huge>(&common::id("small"), 1000)
            .await?
            .result()
            .await?,
        1000
    );
    let err = client
        .start::<Huge>(&common::id("big"), 3 * 1024 * 1024)
        .await?
        .result()
        .await
        .expect_err("a 3 MiB step output must fail");
    let text = err.to_string();
    assert!(
        text.contains("make_blob") && text.contains("payload limit"),
        "the error must name the step and the limit: {text}"
    );
    worker.shutdown().await;
    Ok(())
}

/// Three versions of one workflow: the original, one whose step input changed, and one whose
/// step was renamed.
struct Evolving {
    version: u32,
}

impl Workflow for Evolving {
    const NAME: &'static str = "evolving";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: &WorkflowCtx, _: ()) -> Result<String, WorkflowError> {
        let (name, input) = match self.version {
            1 => ("first", 1),
            2 => ("first", 2),
            _ => ("renamed", 1),
        };
        let a: i32 = ctx
            .step(
                name,
                &input,
                move |_| async move { Ok::<_, StepError>(input) },
            )
            .await?;
        let go: Option<String> = ctx.recv("go", None).await?;
        Ok(format!("{a} {}", go.unwrap_or_default()))
    }
}

async fn evolving_worker(
    config: &steadfast_temporal::TemporalConfig,
    version: u32,
) -> anyhow::Result<TemporalWorker> {
    Ok(TemporalWorker::builder(config.clone())
        .workflow(Evolving { version })
        .step("first")
        .step("renamed")
        .start()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_workflow_fails_its_task_with_a_clear_error_and_keeps_its_history()
-> anyhow::Result<()> {
    let Some(server) = common::server("nondet") else {
        return Ok(());
    };
    let config = common::config(&server, "nondet");
    let client = TemporalClient::connect(config.clone()).await?;
    for (id, changed, expect) in [
        ("input-changed", 2, ["non-determinism", "first"]),
        ("renamed", 3, ["ondeterminism", "renamed"]),
    ] {
        let v1 = evolving_worker(&config, 1).await?;
        let id = &common::id(id);
        let h = client.start::<Evolving>(id, ()).await?;
        // The first step must be in the history as completed: a step still in flight when its
        // worker stops is simply run again by the next worker, with that worker's code.
        wait_for("the first step to complete", || async {
            client.history(id).await.is_ok_and(|h| {
                h.steps
                    .iter()
                    .any(|r| r.name == "first" && r.status == RowStatus::Completed)
            })
        })
        .await;
        v1.shutdown().await;
        // The changed code replays the history when the signal wakes the workflow.
        let v2 = evolving_worker(&config, changed).await?;
        client.send(id, "go", "now").await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let failure = loop {
            if let TemporalStatus::Running {
                task_failure: Some(f),
            } = h.status().await?
            {
                break f;
            }
            assert!(Instant::now() < deadline, "the workflow task did not fail");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for word in expect {
            assert!(failure.contains(word), "`{word}` missing from: {failure}");
        }
        v2.shutdown().await;
        // The history is intact: the original code finishes the workflow.
        let v1 = evolving_worker(&config, 1).await?;
        assert_eq!(h.result().await?, "1 now");
        v1.shutdown().await;
    }
    Ok(())
}
