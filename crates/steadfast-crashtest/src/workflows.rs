//! The workflows that `crashy` runs.
//!
//! * `crash_pipeline` (36 journaled steps): a user step `prepare`; the agent `planner`, whose
//!   model (the mock server) calls the tool `lookup` several times before it answers; a fan-out
//!   of [`BRANCHES`] parallel branches, each with a user step `fetch`, the agent `analyst` (one
//!   call of the tool `score`, then its answer) and a user step `refine`; and a user step
//!   `combine` that joins everything into the output string.
//! * `sleeper`: a user step, a durable sleep, a journaled clock reading, a user step.
//! * `approval`: a user step, a wait for a message on topic `approve`, a user step. Its `alt`
//!   variant starts with another step: the "changed code" of the non-determinism test.
//!
//! Every user step and tool appends a line to the execution log when it runs, and returns its
//! execution tag next to its value (see [`Tagged`]); the workflow's output never depends on it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steadfast::{
    Agent, ClientConfig, OpenAIChatModel, StepCtx, StepError, Tool, ToolCtx, Workflow, WorkflowCtx,
    WorkflowError,
};

use crate::execlog::ExecLog;

/// Parallel branches of the pipeline.
pub const BRANCHES: usize = 5;

/// A step's value with the tag of the execution that produced it.
#[derive(Debug, Serialize, Deserialize)]
struct Tagged<T> {
    value: T,
    exec: String,
}

/// A stable 64-bit FNV-1a hash (the same in every process and build).
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A user step that logs each execution and keeps its result tagged in the journal.
///
/// The step is created inside the returned future: `WorkflowCtx::step`'s future, although
/// `'static`, captures the lifetimes of its borrowed arguments (edition 2024 capture rules), so
/// it cannot outlive a local input. Creating it at the first poll keeps program order, since
/// every caller awaits it at once.
fn user_step<I, T>(
    ctx: &WorkflowCtx,
    log: &Arc<ExecLog>,
    name: &str,
    input: I,
    f: fn(&I) -> T,
) -> impl Future<Output = Result<T, WorkflowError>> + Send + 'static
where
    I: Serialize + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
{
    let ctx = ctx.clone();
    let log = log.clone();
    let name = name.to_string();
    async move {
        let input = Arc::new(input);
        let body_input = input.clone();
        let step = ctx.step(&name, &*input, move |sc: StepCtx| {
            let log = log.clone();
            let input = body_input.clone();
            async move {
                let exec = log.record(&sc.idempotency_key);
                log.delay().await;
                Ok::<_, StepError>(Tagged {
                    value: f(&input),
                    exec,
                })
            }
        });
        Ok(step.await?.value)
    }
}

/// The arguments of `lookup`.
#[derive(Debug, Deserialize, JsonSchema)]
struct LookupArgs {
    /// The fact to look up.
    key: String,
}

/// The arguments of `score`.
#[derive(Debug, Deserialize, JsonSchema)]
struct ScoreArgs {
    /// The item to score.
    item: String,
}

fn model(name: &str, llm_url: &str) -> anyhow::Result<OpenAIChatModel> {
    // No HTTP retries: every request the mock server sees is one the step sent.
    let mut config = ClientConfig::new(llm_url)
        .with_max_retries(0)
        .with_timeout(Duration::from_secs(30));
    // Lets the mock server tell which process sent a request.
    config
        .headers
        .push(("x-crashy-pid".into(), std::process::id().to_string()));
    Ok(OpenAIChatModel::with_config(name, config)?)
}

/// The `crash_pipeline` workflow.
pub struct Pipeline {
    planner: Agent<ExecLog, String>,
    analyst: Agent<ExecLog, String>,
}

/// The input of `crash_pipeline`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PipelineInput {
    /// What the pipeline works on; its output depends on this alone.
    pub topic: String,
}

impl Pipeline {
    /// The pipeline with both agents' model at `llm_url`.
    pub fn new(llm_url: &str) -> anyhow::Result<Pipeline> {
        let lookup = Tool::new(
            "lookup",
            |ctx: ToolCtx<ExecLog>, args: LookupArgs| async move {
                let exec = ctx.deps.record(&ctx.idempotency_key);
                ctx.deps.delay().await;
                let value = format!("{}={}", args.key, fnv(&args.key) % 1000);
                Ok(json!({ "value": value, "exec": exec }))
            },
        )
        .description("Look up one fact.");
        let score = Tool::new(
            "score",
            |ctx: ToolCtx<ExecLog>, args: ScoreArgs| async move {
                let exec = ctx.deps.record(&ctx.idempotency_key);
                ctx.deps.delay().await;
                let value = format!("{}", fnv(&args.item) % 100);
                Ok(json!({ "value": value, "exec": exec }))
            },
        )
        .description("Score an item from 0 to 99.");
        let planner = Agent::<ExecLog, String>::builder("planner")
            .model(model("planner-model", llm_url)?)
            .instructions("You plan. Call `lookup` for each fact you need, then state the plan.")
            .tool(lookup)
            .build()?;
        let analyst = Agent::<ExecLog, String>::builder("analyst")
            .model(model("analyst-model", llm_url)?)
            .instructions("You analyse one part. Call `score` once, then report the score.")
            .tool(score)
            .build()?;
        Ok(Pipeline { planner, analyst })
    }
}

impl Workflow for Pipeline {
    const NAME: &'static str = "crash_pipeline";
    type Input = PipelineInput;
    type Output = String;

    async fn run(&self, ctx: &WorkflowCtx, input: PipelineInput) -> Result<String, WorkflowError> {
        let log = ctx.deps::<ExecLog>()?;
        let id = ctx.workflow_id().to_string();
        let prepared: String =
            user_step(ctx, &log, "prepare", input.topic, |t| format!("T-{t}")).await?;

        // The workflow id makes every conversation distinct; the mock's answers (and so the
        // output) depend on the topic only.
        let plan = self
            .planner
            .run_in(ctx, format!("topic={prepared}; workflow={id}"), log.clone())
            .await?
            .output;

        let branches = (0..BRANCHES).map(|i| {
            // Each branch's namespace is allocated here, in program order.
            let b = ctx.branch(&format!("part{i}"));
            let log = log.clone();
            let analyst = self.analyst.clone();
            let prepared = prepared.clone();
            let id = id.clone();
            async move {
                let part: String = user_step(&b, &log, "fetch", (prepared, i), |(t, i)| {
                    format!("{t}.p{i}")
                })
                .await?;
                let analysis = analyst
                    .run_in(
                        &b,
                        format!("part={part}; branch=part{i}; workflow={id}"),
                        log.clone(),
                    )
                    .await?
                    .output;
                user_step(&b, &log, "refine", analysis, |a| format!("<{a}>")).await
            }
        });
        let parts = ctx
            .join_all(branches)
            .await
            .into_iter()
            .collect::<Result<Vec<String>, WorkflowError>>()?;

        user_step(ctx, &log, "combine", (plan, parts), |(plan, parts)| {
            let body = format!("{plan} || {}", parts.join(" | "));
            format!("{body} #{:04}", fnv(&body) % 10_000)
        })
        .await
    }
}

/// The input of `sleeper`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SleeperInput {
    /// How long to sleep.
    pub sleep_ms: u64,
}

/// The output of `sleeper`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SleeperOutput {
    /// The (journaled) clock reading before the sleep.
    pub before: i64,
    /// The (journaled) clock reading after the sleep.
    pub woke_at: i64,
    /// The sleep asked for.
    pub sleep_ms: u64,
}

/// The `sleeper` workflow.
pub struct Sleeper;

impl Workflow for Sleeper {
    const NAME: &'static str = "sleeper";
    type Input = SleeperInput;
    type Output = SleeperOutput;

    async fn run(
        &self,
        ctx: &WorkflowCtx,
        input: SleeperInput,
    ) -> Result<SleeperOutput, WorkflowError> {
        let log = ctx.deps::<ExecLog>()?;
        let _: String = user_step(ctx, &log, "before", input.sleep_ms, |ms| {
            format!("going to sleep for {ms} ms")
        })
        .await?;
        let before = ctx.now().await?;
        ctx.sleep(Duration::from_millis(input.sleep_ms)).await?;
        let woke_at = ctx.now().await?;
        let _: String = user_step(ctx, &log, "after", woke_at, |t| format!("woke at {t}")).await?;
        Ok(SleeperOutput {
            before,
            woke_at,
            sleep_ms: input.sleep_ms,
        })
    }
}

/// The input of `approval`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApprovalInput {
    /// What is to be approved.
    pub what: String,
}

/// The `approval` workflow; `alt` is the changed code of the non-determinism test.
pub struct Approval {
    /// Run `request_v2` instead of `request` first.
    pub alt: bool,
}

impl Workflow for Approval {
    const NAME: &'static str = "approval";
    type Input = ApprovalInput;
    type Output = String;

    async fn run(&self, ctx: &WorkflowCtx, input: ApprovalInput) -> Result<String, WorkflowError> {
        let log = ctx.deps::<ExecLog>()?;
        let request: String = if self.alt {
            user_step(ctx, &log, "request_v2", input.what, |w| {
                format!("request v2 for {w}")
            })
            .await?
        } else {
            user_step(ctx, &log, "request", input.what, |w| {
                format!("request for {w}")
            })
            .await?
        };
        let payload: Option<Value> = ctx.recv("approve", None).await?;
        let payload = payload.unwrap_or(Value::Null);
        user_step(ctx, &log, "apply", (request, payload), |(r, p)| {
            format!("approved {r} with {p}")
        })
        .await
    }
}
