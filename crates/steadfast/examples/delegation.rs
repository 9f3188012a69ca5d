//! Delegation: a tool that runs another agent.
//!
//! ```sh
//! cargo run -p steadfast --example delegation
//! ```
//!
//! The planner's `research` tool hands the work to a researcher agent with
//! `researcher.run_in(&ctx, ...)`. Running it *in* the tool's context makes it part of the
//! planner's run: its usage is added to the planner's total (and inside a durable workflow, its
//! model requests would be journaled steps too).

mod common;

use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use steadfast::FunctionModel;
use steadfast::prelude::*;

/// Research a city: returns a few facts about it.
#[derive(Deserialize, JsonSchema)]
struct ResearchArgs {
    /// The city, for example "Lisbon".
    city: String,
}

/// The city named at the end of a prompt like "... about Lisbon." or "... in Lisbon."
fn last_word(text: &str) -> &str {
    let word = text.split_whitespace().last().unwrap_or_default();
    word.trim_matches(|c: char| !c.is_alphanumeric())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The researcher. Offline, a function plays its model: it states what it knows about the
    // city in the prompt.
    let researcher_model = FunctionModel::new(|messages, _params| {
        let city = last_word(common::user_prompt(messages));
        Ok(ModelResponse::text(match city {
            "Lisbon" => "Lisbon is built on seven hills. Tram 28 climbs through the old town. \
                         Belém is the home of pastéis de nata."
                .to_string(),
            other => format!("I know nothing about {other}."),
        }))
    });
    let researcher = Agent::<(), String>::builder("researcher")
        .model(common::model(researcher_model))
        .instructions("State three facts about the city, one short sentence each.")
        .build()?;

    // The tool that delegates. `ctx` is the tool's context; the researcher runs inside it.
    let researcher_usage = Arc::new(Mutex::new(Usage::default()));
    let research = {
        let (researcher, researcher_usage) = (researcher.clone(), researcher_usage.clone());
        Tool::new("research", move |ctx: ToolCtx<()>, args: ResearchArgs| {
            let (researcher, researcher_usage) = (researcher.clone(), researcher_usage.clone());
            async move {
                let prompt = format!("Three facts about {}.", args.city);
                let result = researcher.run_in(&ctx, prompt, ()).await?;
                *researcher_usage.lock().unwrap() += &result.usage;
                Ok(result.output)
            }
        })
    };

    // The planner. Offline, a function plays its model: it researches the city in the prompt,
    // then builds the plan on what the research returned.
    let planner_model = FunctionModel::new(|messages, _params| {
        let city = last_word(common::user_prompt(messages));
        Ok(match common::tool_return(messages, "research") {
            None => common::call_tools(messages, [("research", json!({ "city": city }))]),
            Some(facts) => {
                let facts = facts.as_str().unwrap_or_default();
                let stops: Vec<&str> = facts.split(". ").map(|s| s.trim_end_matches('.')).collect();
                ModelResponse::text(format!("A day in {city}: {}.", stops.join("; then ")))
            }
        })
    });
    let planner = Agent::<(), String>::builder("planner")
        .model(common::model(planner_model))
        .instructions("Plan a day in the city. Research it first with the research tool.")
        .tool(research)
        .build()?;

    let result = planner.run("Plan my day in Lisbon.", ()).await?;
    common::print_conversation(&result.messages);
    println!("\nPlan: {}\n", result.output);

    let inner = researcher_usage.lock().unwrap().clone();
    let total = &result.usage;
    println!(
        "researcher (run inside the tool): {} request(s), {} tokens",
        inner.requests,
        inner.total_tokens()
    );
    println!(
        "planner's total:                  {} request(s), {} tokens, {} tool call(s)",
        total.requests,
        total.total_tokens(),
        total.tool_calls
    );
    println!(
        "The planner's total includes the researcher's usage: {} of its own request(s) + {} of the researcher's.",
        total.requests - inner.requests,
        inner.requests
    );
    Ok(())
}
