//! Tools: typed Rust functions the model can call.
//!
//! ```sh
//! cargo run -p steadfast --example tools
//! ```
//!
//! - `forecast` reads the run's dependencies through its [`ToolCtx`].
//! - `to_fahrenheit` is a plain function of its arguments.
//! - `set_reminder` rejects a badly formatted time with [`ToolError::retry`]: the message goes
//!   back to the model, which calls again with better arguments.
//!
//! Each tool's arguments are a struct. Its doc comment becomes the tool's description, and the
//! doc comments of its fields become the parameter descriptions in the JSON Schema the model sees.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use steadfast::prelude::*;
use steadfast::{FunctionModel, RequestPart};

/// The run's dependencies: what tools share (in a real program, clients and connection pools).
struct Deps {
    forecasts: HashMap<&'static str, Forecast>,
    reminders: Mutex<Vec<String>>,
}

#[derive(Clone, Serialize)]
struct Forecast {
    celsius: f64,
    sky: &'static str,
}

/// Get tomorrow's weather forecast for a city.
#[derive(Deserialize, JsonSchema)]
struct ForecastArgs {
    /// The city, for example "Paris".
    city: String,
}

/// Convert a temperature from degrees Celsius to degrees Fahrenheit.
#[derive(Deserialize, JsonSchema)]
struct FahrenheitArgs {
    /// The temperature in degrees Celsius.
    celsius: f64,
}

/// Set a reminder for tomorrow.
#[derive(Deserialize, JsonSchema)]
struct ReminderArgs {
    /// The time, 24-hour "HH:MM", for example "07:30" or "19:00".
    time: String,
    /// What to remind the user of.
    note: String,
}

fn is_24h_time(t: &str) -> bool {
    matches!(t.split_once(':'), Some((h, m))
        if h.len() == 2 && m.len() == 2
            && h.parse::<u8>().is_ok_and(|h| h < 24)
            && m.parse::<u8>().is_ok_and(|m| m < 60))
}

/// "7pm" -> "19:00", "7am" -> "07:00" (how the offline model fixes a refused time).
fn to_24h(time: &str) -> String {
    let hour: u32 = time.trim_end_matches(['a', 'p', 'm']).parse().unwrap_or(0);
    let pm = if time.ends_with("pm") { 12 } else { 0 };
    format!("{:02}:00", hour % 12 + pm)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A tool with a context: `ctx.deps` is the value passed to `agent.run`.
    let forecast = Tool::new(
        "forecast",
        |ctx: ToolCtx<Deps>, args: ForecastArgs| async move {
            match ctx.deps.forecasts.get(args.city.as_str()) {
                Some(f) => Ok(f.clone()),
                None => Err(ToolError::retry(format!("no forecast for `{}`", args.city))),
            }
        },
    );

    // A plain tool: just a function of its arguments.
    let to_fahrenheit = Tool::plain("to_fahrenheit", |args: FahrenheitArgs| async move {
        Ok(args.celsius * 9.0 / 5.0 + 32.0)
    });

    // A tool that asks the model to retry when the input is bad.
    let set_reminder = Tool::new(
        "set_reminder",
        |ctx: ToolCtx<Deps>, args: ReminderArgs| async move {
            if !is_24h_time(&args.time) {
                return Err(ToolError::retry(format!(
                    "`{}` is not a 24-hour HH:MM time like 07:30 or 19:00",
                    args.time
                )));
            }
            ctx.deps
                .reminders
                .lock()
                .unwrap()
                .push(format!("{} {}", args.time, args.note));
            Ok(format!(
                "Reminder set for {} tomorrow: {}",
                args.time, args.note
            ))
        },
    );

    // Offline, this function plays the model. Like a real one it decides from the conversation
    // alone: first it calls tools for what the user asked, then it reacts to their results and
    // retry requests, and when nothing is left to do it answers.
    let offline = FunctionModel::new(|messages, _params| {
        let prompt = common::user_prompt(messages);
        let word_after = |marker: &str| {
            let rest = prompt.split(marker).nth(1).unwrap_or_default();
            let word = rest.split_whitespace().next().unwrap_or_default();
            word.trim_matches(|c: char| !c.is_alphanumeric())
                .to_string()
        };
        let (city, time) = (word_after(" in "), word_after(" at "));
        let note = "pack for the weather";

        // What to do next, given the latest tool results and retry requests.
        let mut calls = Vec::new();
        for part in common::latest(messages) {
            match part {
                RequestPart::UserPrompt { .. } => {
                    calls.push(("forecast", json!({ "city": city })));
                    calls.push(("set_reminder", json!({ "time": time, "note": note })));
                }
                RequestPart::ToolReturn {
                    tool_name, content, ..
                } if tool_name == "forecast" => {
                    calls.push(("to_fahrenheit", json!({ "celsius": content["celsius"] })));
                }
                RequestPart::RetryPrompt {
                    tool_name: Some(t), ..
                } if t == "set_reminder" => {
                    // "7pm" was refused: write it as 24-hour time.
                    calls.push((
                        "set_reminder",
                        json!({ "time": to_24h(&time), "note": note }),
                    ));
                }
                _ => {}
            }
        }
        if !calls.is_empty() {
            return Ok(common::call_tools(messages, calls));
        }

        // Everything is known: answer from the tool results.
        let f = common::tool_return(messages, "forecast")
            .cloned()
            .unwrap_or_default();
        let fahrenheit = common::tool_return(messages, "to_fahrenheit")
            .cloned()
            .unwrap_or_default();
        let reminder = common::tool_return(messages, "set_reminder")
            .cloned()
            .unwrap_or_default();
        Ok(ModelResponse::text(format!(
            "Tomorrow in {city}: {}, {}°C ({fahrenheit}°F). {}.",
            f["sky"].as_str().unwrap_or("?"),
            f["celsius"],
            reminder.as_str().unwrap_or("I could not set a reminder"),
        )))
    });

    let agent = Agent::<Deps, String>::builder("weather")
        .model(common::model(offline))
        .instructions("Help with tomorrow's weather. Use the tools; never guess a forecast.")
        .tool(forecast)
        .tool(to_fahrenheit)
        .tool(set_reminder)
        .build()?;

    println!("What the model sees:");
    for def in agent.tool_definitions() {
        println!("  {}: {}", def.name, def.description.unwrap_or_default());
        for (param, schema) in def.parameters["properties"]
            .as_object()
            .into_iter()
            .flatten()
        {
            println!(
                "      {param}: {}",
                schema["description"].as_str().unwrap_or_default()
            );
        }
    }

    // `run` takes the deps by value or as an `Arc` (here, to read the reminders afterwards).
    let deps = Arc::new(Deps {
        forecasts: HashMap::from([
            (
                "Lisbon",
                Forecast {
                    celsius: 21.0,
                    sky: "sunny",
                },
            ),
            (
                "Oslo",
                Forecast {
                    celsius: 4.0,
                    sky: "light snow",
                },
            ),
        ]),
        reminders: Mutex::new(Vec::new()),
    });
    let prompt = "Tomorrow I'm in Lisbon: what's the forecast, with Fahrenheit too? \
                  And remind me at 7pm to pack for it.";
    let result = agent.run(prompt, deps.clone()).await?;

    println!("\nThe conversation:");
    common::print_conversation(&result.messages);
    println!("\nAnswer: {}", result.output);
    println!(
        "Reminders stored in the deps: {:?}",
        deps.reminders.lock().unwrap()
    );
    let u = &result.usage;
    println!(
        "Usage: {} requests, {} tool calls, {} input + {} output tokens",
        u.requests, u.tool_calls, u.input_tokens, u.output_tokens
    );
    Ok(())
}
