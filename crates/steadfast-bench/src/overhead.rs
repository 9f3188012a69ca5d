//! Framework overhead per model round trip, with no network: a plain agent loop of N tool-calling
//! turns against a [`FunctionModel`], versus calling the same model directly with the same
//! conversations the same number of times. The difference is what the agent loop costs (message
//! bookkeeping, tool dispatch, argument parsing, output handling) per round trip.
//!
//! Also the same loop inside a workflow on the in-memory store, to see the engine's own cost
//! without a database.

use std::hint::black_box;
use std::time::Instant;

use schemars::JsonSchema;
use serde::Deserialize;
use steadfast_core::{
    Agent, FunctionModel, Message, ModelResponse, ModelSettings, RequestPart, ResponsePart, Tool,
    ToolError, UsageLimits,
};
use steadfast_durable::{Engine, MemoryStore, Workflow, WorkflowCtx, WorkflowError};

use crate::report::{Figure, Report};
use crate::stats::{median, us};

#[derive(Deserialize, JsonSchema)]
/// Take the next step.
struct StepArgs {
    /// The step's number.
    n: u32,
}

/// The scripted model of the loop: a `step` call while fewer than `turns` results are in, then
/// the text `done`.
fn loop_turn(messages: &[Message], turns: u32) -> ModelResponse {
    let done = messages
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|r| r.parts.iter())
        .filter(|p| matches!(p, RequestPart::ToolReturn { .. }))
        .count() as u32;
    if done >= turns {
        return ModelResponse::text("done");
    }
    ModelResponse {
        parts: vec![ResponsePart::tool_call(
            "step",
            format!("{{\"n\":{done}}}"),
            format!("call_{done}"),
        )],
        ..ModelResponse::default()
    }
}

/// The agent of the loop.
pub fn loop_agent(turns: u32) -> anyhow::Result<Agent<(), String>> {
    let model = FunctionModel::new(move |m, _| Ok(loop_turn(m, turns))).named("looper");
    Ok(Agent::<(), String>::builder("looper")
        .model(model)
        .instructions("Take the steps, one at a time, then say done.")
        .tool(Tool::plain("step", |a: StepArgs| async move {
            Ok::<u32, ToolError>(a.n)
        }))
        .usage_limits(UsageLimits {
            request_limit: Some(turns + 5),
            ..UsageLimits::default()
        })
        .build()?)
}

/// The loop as a workflow.
struct LoopWorkflow {
    agent: Agent<(), String>,
}

impl Workflow for LoopWorkflow {
    const NAME: &'static str = "bench_loop";
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: &WorkflowCtx, _input: ()) -> Result<String, WorkflowError> {
        Ok(self.agent.run_in(ctx, "go", ()).await?.output)
    }
}

/// The overhead figures, per model round trip (medians over the runs).
#[derive(Debug, Clone, Copy)]
pub struct Overhead {
    /// Tool-calling turns per run (round trips: `turns + 1`).
    pub turns: u32,
    /// Runs measured.
    pub runs: usize,
    /// The plain agent loop, µs per round trip.
    pub agent_us: f64,
    /// Calling the model directly, µs per call.
    pub bare_us: f64,
    /// The loop inside a workflow on the in-memory store, µs per round trip.
    pub durable_memory_us: f64,
}

impl Overhead {
    /// The framework's own cost per round trip, µs.
    pub fn overhead_us(&self) -> f64 {
        self.agent_us - self.bare_us
    }
}

/// Measure `runs` runs of a `turns`-turn loop.
pub async fn measure(turns: u32, runs: usize) -> anyhow::Result<Overhead> {
    let agent = loop_agent(turns)?;
    let rts = f64::from(turns + 1);
    let first = agent.run("go", ()).await?;
    anyhow::ensure!(
        first.output == "done" && first.usage.requests == turns + 1,
        "the loop did not run as scripted"
    );
    let messages = first.messages;
    let model = agent.model().clone();
    let params = agent.request_params();
    let settings = ModelSettings::default();

    let engine = Engine::new(MemoryStore::new());
    let worker = engine
        .worker()
        .workflow(LoopWorkflow {
            agent: agent.clone(),
        })
        .start();

    let (mut plain, mut bare, mut durable) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs.max(1) {
        let t = Instant::now();
        black_box(agent.run("go", ()).await?);
        plain.push(us(t.elapsed()) / rts);

        let t = Instant::now();
        for k in 0..=turns as usize {
            black_box(
                model
                    .request(&messages[..2 * k + 1], &params, &settings)
                    .await?,
            );
        }
        bare.push(us(t.elapsed()) / rts);

        let t = Instant::now();
        let h = engine
            .start::<LoopWorkflow>(&format!("loop-{i}"), ())
            .await?;
        black_box(h.result().await?);
        durable.push(us(t.elapsed()) / rts);
    }
    worker.shutdown().await;
    Ok(Overhead {
        turns,
        runs: runs.max(1),
        agent_us: median(plain),
        bare_us: median(bare),
        durable_memory_us: median(durable),
    })
}

/// The `overhead` section.
pub async fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let runs = if quick { 3 } else { 200 };
    let o = measure(50, runs).await?;
    let note = format!("{}-turn loop, median of {} runs", o.turns, o.runs);
    report.add(
        Figure::new(
            "overhead",
            "plain agent loop, per round trip",
            o.agent_us,
            "µs",
        )
        .vs("FunctionModel called directly", o.bare_us)
        .note(note.clone()),
    );
    report.add(
        Figure::new(
            "overhead",
            "framework overhead per round trip (loop − direct)",
            o.overhead_us(),
            "µs",
        )
        .vs("FunctionModel called directly", o.bare_us)
        .note(note.clone()),
    );
    report.add(
        Figure::new(
            "overhead",
            "same loop in a workflow on MemoryStore, per round trip",
            o.durable_memory_us,
            "µs",
        )
        .vs("plain agent loop", o.agent_us)
        .note(note),
    );
    // The same at a fifth of the length: a cost per round trip that grows with the length of
    // the conversation shows work proportional to the whole history on every request.
    let short = measure(10, runs).await?;
    report.add(
        Figure::new(
            "overhead",
            "workflow on MemoryStore, 10-turn loop, per round trip",
            short.durable_memory_us,
            "µs",
        )
        .vs("50-turn loop", o.durable_memory_us)
        .note(format!(
            "plain 10-turn loop: {:.2} µs per round trip",
            short.agent_us
        )),
    );
    Ok(())
}
