//! The fixed run every telemetry test uses: an agent `planner` with a tool `lookup` that runs a
//! nested agent `searcher`, both played by FunctionModels with fixed usage and cost; and a
//! workflow `research` that runs the planner, waits for a `go` message (where a test interrupts
//! it), then publishes in a user step.

#![allow(dead_code)]

pub mod phoenix;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use steadfast_core::{
    Agent, FunctionModel, Message, ModelResponse, RequestPart, Tool, ToolCtx, Usage,
};
use steadfast_durable::{
    Engine, StepError, WorkerConfig, Workflow, WorkflowCtx, WorkflowError, WorkflowStatus,
};

/// Tokens and cost of each planner request.
pub const PLANNER_USAGE: (u64, u64, f64) = (100, 20, 0.0012);
/// Tokens and cost of each searcher request.
pub const SEARCHER_USAGE: (u64, u64, f64) = (30, 6, 0.0003);
/// Marker strings in the content, to find leaks.
pub const PROMPT: &str = "PROMPT-MARKER-7f3a: plan a trip";
pub const TOOL_QUERY: &str = "ARGS-MARKER-91c2";
pub const SEARCH_ANSWER: &str = "RESULT-MARKER-5d0e";
pub const FINAL_ANSWER: &str = "COMPLETION-MARKER-b41f";

fn usage((input, output, cost): (u64, u64, f64)) -> Usage {
    Usage {
        requests: 1,
        input_tokens: input,
        output_tokens: output,
        cost_usd: cost,
        ..Default::default()
    }
}

fn tool_returns(messages: &[Message]) -> usize {
    messages
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|r| r.parts.iter())
        .filter(|p| matches!(p, RequestPart::ToolReturn { .. }))
        .count()
}

/// Look something up.
#[derive(Deserialize, JsonSchema)]
pub struct Lookup {
    /// What to look up.
    pub query: String,
}

/// The searcher: answers at once.
pub fn searcher() -> Agent<(), String> {
    let model = FunctionModel::new(|_, _| {
        let mut r = ModelResponse::text(SEARCH_ANSWER);
        r.usage = usage(SEARCHER_USAGE);
        Ok(r)
    })
    .named("search-model");
    Agent::builder("searcher")
        .model(model)
        .instructions("Find facts.")
        .build()
        .expect("searcher")
}

/// The planner: calls `lookup` once (which runs the searcher), then answers.
pub fn planner() -> Agent<(), String> {
    let model = FunctionModel::new(|messages, _| {
        let mut r = if tool_returns(messages) == 0 {
            ModelResponse::tool_call("lookup", json!({ "query": TOOL_QUERY }))
        } else {
            ModelResponse::text(FINAL_ANSWER)
        };
        r.usage = usage(PLANNER_USAGE);
        Ok(r)
    })
    .named("plan-model");
    let searcher = searcher();
    Agent::builder("planner")
        .model(model)
        .instructions("Plan carefully.")
        .tool(Tool::new("lookup", move |ctx: ToolCtx<()>, a: Lookup| {
            let searcher = searcher.clone();
            async move { Ok(searcher.run_in(&ctx, a.query, ()).await?.output) }
        }))
        .build()
        .expect("planner")
}

/// Runs the planner, waits for `go`, then publishes.
pub struct Research {
    pub planner: Agent<(), String>,
    /// How many times the publish step actually ran.
    pub published: Arc<AtomicUsize>,
}

impl Workflow for Research {
    const NAME: &'static str = "research";
    type Input = String;
    type Output = String;

    async fn run(&self, ctx: &WorkflowCtx, prompt: String) -> Result<String, WorkflowError> {
        let plan = self.planner.run_in(ctx, prompt, ()).await?.output;
        let go: Option<String> = ctx.recv("go", None).await?;
        let published = self.published.clone();
        let text = format!("{plan} ({})", go.unwrap_or_default());
        let input = text.clone();
        ctx.step("publish", &input, move |_| {
            published.fetch_add(1, Ordering::SeqCst);
            let text = text.clone();
            async move { Ok::<_, StepError>(text) }
        })
        .await
    }
}

/// Quick leases and polls, so that a test does not wait.
pub fn fast() -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_millis(500),
        poll_interval: Duration::from_millis(20),
        suspend_threshold: Duration::from_millis(200),
        ..Default::default()
    }
}

/// Waits until workflow `id` has status `want`.
pub async fn wait_status(engine: &Engine, id: &str, want: WorkflowStatus) {
    for _ in 0..500 {
        if let Ok(Some(rec)) = engine.store().get_workflow(id).await
            && rec.status == want
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("workflow {id} never reached {want:?}");
}

/// A fresh SQLite file in the temp dir.
pub fn temp_db(tag: &str) -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "steadfast-otel-{tag}-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    remove_db(&p);
    p
}

/// Remove a SQLite file made by [`temp_db`], its companions and its step log folder.
pub fn remove_db(p: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
    }
    let _ = std::fs::remove_dir_all(format!("{}-steplog", p.display()));
}

/// Run the research workflow `id` on `engine` with an interruption: a first worker runs it until
/// it waits for `go` and is shut down; then `go` is sent and a second worker resumes it, replaying
/// the agent's steps from the journal. Returns the output and how often `publish` ran.
pub async fn interrupted_research(engine: &Engine, id: &str) -> (String, usize) {
    let published = Arc::new(AtomicUsize::new(0));
    let workflow = || Research {
        planner: planner(),
        published: published.clone(),
    };
    let first = engine.worker().workflow(workflow()).config(fast()).start();
    let handle = engine
        .start::<Research>(id, PROMPT.to_string())
        .await
        .expect("start");
    wait_status(engine, id, WorkflowStatus::Suspended).await;
    first.shutdown().await;
    engine.send(id, "go", "approved").await.expect("send");
    let second = engine.worker().workflow(workflow()).config(fast()).start();
    let out = handle.result().await.expect("result");
    second.shutdown().await;
    (out, published.load(Ordering::SeqCst))
}
