//! Structured output: the run returns a typed Rust value instead of text.
//!
//! ```sh
//! cargo run -p steadfast --example structured_output
//! ```
//!
//! The output type's JSON Schema (with its doc comments as descriptions) tells the model what to
//! produce. Two ways to ask for it:
//! - tool output (the default for structs): the model calls a `final_result` tool whose
//!   arguments are the value;
//! - native output: the provider constrains the model's text to the schema.
//!
//! An output validator checks the value; `ToolError::retry` sends the model back to fix it.

mod common;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use steadfast::prelude::*;
use steadfast::{FunctionModel, RequestPart};

/// Facts about a city.
#[derive(Debug, Deserialize, JsonSchema)]
struct CityFacts {
    /// The city's name.
    city: String,
    /// The country it is in.
    country: String,
    /// The population of the city proper, in millions.
    population_millions: f64,
    /// Exactly three things the city is famous for, most famous first.
    famous_for: Vec<String>,
}

/// Offline, this function plays the model. It knows one city, and at first it lists everything
/// the city is famous for; told by the validator to give exactly three, it keeps the first three.
fn offline_model() -> FunctionModel {
    FunctionModel::new(|messages, params| {
        let retrying = common::latest(messages)
            .iter()
            .any(|p| matches!(p, RequestPart::RetryPrompt { .. }));
        let mut famous_for = vec!["trams", "pastéis de nata", "fado", "azulejo tiles"];
        if retrying {
            famous_for.truncate(3);
        }
        let city = if common::user_prompt(messages).contains("Lisbon") {
            "Lisbon"
        } else {
            "?"
        };
        let facts = json!({
            "city": city,
            "country": "Portugal",
            "population_millions": 0.55,
            "famous_for": famous_for,
        });
        // Answer the way the request asks: through the output tool, or as JSON text.
        Ok(match params.output_mode {
            OutputMode::Tool => {
                common::call_tools(messages, [(params.output_tools[0].name.as_str(), facts)])
            }
            _ => ModelResponse::text(facts.to_string()),
        })
    })
}

fn city_agent(mode: OutputMode) -> anyhow::Result<Agent<(), CityFacts>> {
    Ok(Agent::<(), CityFacts>::builder("city_facts")
        .model(common::model(offline_model()))
        .instructions("Give facts about the city the user names.")
        .output_mode(mode)
        // Checked on every candidate output; a retry goes back to the model with the message.
        .output_validator(|_deps, facts: &CityFacts| match facts.famous_for.len() {
            3 => Ok(()),
            n => Err(ToolError::retry(format!(
                "famous_for must list exactly 3 things, not {n}"
            ))),
        })
        .build()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    for mode in [OutputMode::Tool, OutputMode::Native] {
        let agent = city_agent(mode)?;
        let result = agent.run("Tell me about Lisbon.", ()).await?;

        println!("== {mode:?} output mode");
        common::print_conversation(&result.messages);
        // `result.output` is a `CityFacts`: no parsing left to do.
        let facts: &CityFacts = &result.output;
        println!(
            "=> {} ({}), {} million people, famous for {}",
            facts.city,
            facts.country,
            facts.population_millions,
            facts.famous_for.join(", ")
        );
        println!(
            "   {} requests, {} tokens\n",
            result.usage.requests,
            result.usage.total_tokens()
        );
    }
    Ok(())
}
