//! Durable: an agent inside a workflow, journaled in SQLite, surviving a crash.
//!
//! ```sh
//! cargo run -p steadfast --example durable
//! ```
//!
//! Inside a [`Workflow`], `agent.run_in(ctx, ...)` turns every model request and every tool call
//! into a step whose result is written to the journal before the workflow goes on. Run the
//! workflow again with the same id and finished steps are answered from the journal: only the
//! unfinished work runs again.
//!
//! To show it in one process, the first run loses power in the middle of a tool call: its worker
//! stops, and a second worker runs the same workflow id.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use steadfast::prelude::*;
use steadfast::{FunctionModel, StepEvent, StepEventKind};
use tokio::sync::Notify;

/// The workflow: answer a question about a city with the `guide` agent.
struct CityGuide {
    guide: Agent<(), String>,
}

impl Workflow for CityGuide {
    /// The name the journal knows this workflow by.
    const NAME: &'static str = "city_guide";
    type Input = String;
    type Output = String;

    async fn run(&self, ctx: &WorkflowCtx, question: String) -> Result<String, WorkflowError> {
        // The only change from a plain run: `run_in(ctx, ...)` instead of `run(...)`.
        let result = self.guide.run_in(ctx, question, ()).await?;
        Ok(result.output)
    }
}

/// Look up what a visitor should know about a city.
#[derive(Deserialize, JsonSchema)]
struct LookUpArgs {
    /// The city, for example "Lisbon".
    city: String,
}

// The power cut of the demonstration: the first call of the tool never returns.
static POWER_WENT_OUT: AtomicBool = AtomicBool::new(false);
static POWER_CUT: Notify = Notify::const_new();

fn guide() -> anyhow::Result<Agent<(), String>> {
    let look_up = Tool::plain("look_up", |args: LookUpArgs| async move {
        if !POWER_WENT_OUT.swap(true, Ordering::SeqCst) {
            POWER_CUT.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(format!(
            "{}: take tram 28 up to the castle at sunset.",
            args.city
        ))
    });

    // Offline, a function plays the model: it looks the city up, then answers from the result.
    let offline = FunctionModel::new(|messages, _params| {
        let prompt = common::user_prompt(messages);
        let city = prompt
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .trim_end_matches('?');
        Ok(match common::tool_return(messages, "look_up") {
            None => common::call_tools(messages, [("look_up", json!({ "city": city }))]),
            Some(tip) => ModelResponse::text(format!("Tip: {}", tip.as_str().unwrap_or_default())),
        })
    });

    Ok(Agent::<(), String>::builder("guide")
        .model(common::model(offline))
        .instructions("Answer with one tip. Always use the look_up tool first.")
        .tool(look_up)
        .build()?)
}

/// Print each step as the worker runs it or answers it from the journal.
fn show(e: &StepEvent) {
    let what = match &e.event {
        StepEventKind::Replayed => "replayed",
        StepEventKind::Completed => "ran",
        StepEventKind::Retrying { .. } => "retrying",
        StepEventKind::Failed { .. } => "failed",
    };
    println!("  {what:<9} {}", e.step_id);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The embedded engine: a SQLite file holds the workflows and their journals.
    let dir =
        std::env::temp_dir().join(format!("steadfast-durable-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let engine = steadfast::sqlite_engine(dir.join("journal.db"))?;
    let id = "lisbon-tip";
    let question = "What should I do in Lisbon?".to_string();
    let guide = guide()?;

    println!("Run 1 of workflow `{id}`:");
    let worker = engine
        .worker()
        .workflow(CityGuide {
            guide: guide.clone(),
        })
        .on_step(show)
        .start();
    let handle = engine.start::<CityGuide>(id, question.clone()).await?;
    tokio::select! {
        _ = POWER_CUT.notified() => println!("  -- the power goes out while look_up runs --"),
        done = handle.result() => println!("  finished without calling the tool: {}", done?),
    }
    worker.shutdown().await;

    // Start the same id again (with a real crash, this is the restarted process). `start` is
    // idempotent: the workflow exists, so the new worker resumes it.
    println!("Run 2, same id:");
    let worker = engine
        .worker()
        .workflow(CityGuide {
            guide: guide.clone(),
        })
        .on_step(show)
        .start();
    let handle = engine.start::<CityGuide>(id, question).await?;
    let answer = handle.result().await?;
    worker.shutdown().await;
    println!("Answer: {answer}\n");

    println!("The journal (engine.history):");
    for step in engine.history(id).await?.steps {
        println!("  {:<32} {}", step.step_id, step.name);
    }

    drop(engine);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
