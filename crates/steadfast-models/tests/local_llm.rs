//! Steadfast agents against a real local LLM (SmolLM2-135M-Instruct behind llama.cpp's
//! OpenAI-compatible server), through the OpenAI Chat Completions provider.
//!
//! Start the server with `eval "$(bash .ci/llm-server.sh)"`, which sets `STEADFAST_LLM_URL`
//! (e.g. `http://127.0.0.1:PORT/v1`). Without it the tests are skipped, except under `CI=true`,
//! where a missing server is a failure. `STEADFAST_LLM_MODEL` overrides the model name
//! (default `smollm2`, the alias the script gives it).
//!
//! The model is tiny and runs on one CPU thread, so every request is bounded by `max_tokens`, and
//! sampling is greedy with a fixed seed. Nothing here asserts on what the model says, only on
//! the shape of what comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use steadfast_core::{
    Agent, AgentEvent, Message, ModelSettings, OutputMode, RequestPart, StreamEvent, ToolError,
};
use steadfast_models::{ClientConfig, OpenAIChatModel};

/// Upper bound of one test, so that a stuck server fails the test instead of hanging CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// The server's base URL, or `None` (with a note) when the tests should be skipped.
fn llm_url() -> Option<String> {
    match std::env::var("STEADFAST_LLM_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "STEADFAST_LLM_URL is not set; under CI=true the local LLM tests must run \
                     (start the server with `eval \"$(bash .ci/llm-server.sh)\"`)"
                );
            }
            println!("SKIP: STEADFAST_LLM_URL not set");
            None
        }
    }
}

fn model(url: &str) -> OpenAIChatModel {
    let name = std::env::var("STEADFAST_LLM_MODEL").unwrap_or_else(|_| "smollm2".to_string());
    let config = ClientConfig::new(url).with_timeout(Duration::from_secs(120));
    OpenAIChatModel::with_config(&name, config).expect("the OpenAI Chat model builds")
}

/// Greedy, seeded and short.
fn settings(max_tokens: u32) -> ModelSettings {
    ModelSettings {
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        seed: Some(42),
        ..ModelSettings::default()
    }
}

async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {TEST_TIMEOUT:?}"))
}

fn retry_prompts(messages: &[Message]) -> usize {
    messages
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|r| &r.parts)
        .filter(|p| matches!(p, RequestPart::RetryPrompt { .. }))
        .count()
}

/// A small typed output.
#[derive(Debug, Deserialize, JsonSchema)]
struct City {
    /// The city's name.
    name: String,
    /// The country it is in.
    country: String,
}

#[tokio::test]
async fn plain_text_run() {
    let Some(url) = llm_url() else { return };
    let agent = Agent::<(), String>::builder("local_text")
        .model(model(&url))
        .instructions("You are a helpful assistant. Answer in one short sentence.")
        .settings(settings(64))
        .build()
        .unwrap();

    let result = bounded(agent.run("What is the capital of France?", ()))
        .await
        .expect("the run succeeds");
    eprintln!("output: {:?}, usage: {:?}", result.output, result.usage);

    assert!(!result.output.trim().is_empty(), "empty text output");
    let u = &result.usage;
    assert_eq!(u.requests, 1, "one model request: {u:?}");
    assert!(u.input_tokens > 0, "input tokens are reported: {u:?}");
    assert!(u.output_tokens > 0, "output tokens are reported: {u:?}");
    assert_eq!(retry_prompts(&result.messages), 0);
}

#[tokio::test]
async fn streamed_text_run() {
    let Some(url) = llm_url() else { return };
    let agent = Agent::<(), String>::builder("local_stream")
        .model(model(&url))
        .instructions("You are a helpful assistant.")
        .settings(settings(64))
        .build()
        .unwrap();

    let mut deltas: Vec<String> = Vec::new();
    let result = bounded(
        agent
            .run_stream("Count from one to ten in words.", ())
            .text_deltas(|d| deltas.push(d.to_string())),
    )
    .await
    .expect("the streamed run succeeds");
    eprintln!("deltas: {deltas:?}, usage: {:?}", result.usage);

    let non_empty = deltas.iter().filter(|d| !d.is_empty()).count();
    assert!(
        non_empty >= 2,
        "expected at least 2 text deltas, got {}: {deltas:?}",
        deltas.len()
    );
    assert!(!result.output.trim().is_empty(), "empty text output");
    assert_eq!(
        deltas.concat(),
        result.output,
        "the deltas add up to the final output"
    );
    assert_eq!(result.usage.requests, 1, "{:?}", result.usage);
}

#[tokio::test]
async fn streamed_events_end_with_the_output() {
    // The same through the raw event stream: text deltas only, then the result.
    use futures::StreamExt;

    let Some(url) = llm_url() else { return };
    let agent = Agent::<(), String>::builder("local_events")
        .model(model(&url))
        .settings(settings(32))
        .build()
        .unwrap();

    let mut stream = agent.run_stream("Say hello to the world.", ());
    let mut text = String::new();
    let mut done = 0;
    bounded(async {
        while let Some(ev) = stream.next().await {
            match ev {
                AgentEvent::Model(StreamEvent::TextDelta { delta, .. }) => text.push_str(&delta),
                AgentEvent::Model(StreamEvent::Done(_)) => done += 1,
                AgentEvent::Model(_) => {}
                other => panic!("no tools are defined, yet got {other:?}"),
            }
        }
    })
    .await;
    let result = bounded(stream.output()).await.expect("the run succeeds");
    assert_eq!(text, result.output);
    assert!(done <= 1, "at most one Done per model response, got {done}");
}

#[tokio::test]
async fn native_structured_output() {
    let Some(url) = llm_url() else { return };
    let agent = Agent::<(), City>::builder("local_native")
        .model(model(&url))
        .instructions("You answer with JSON describing a city.")
        .output_mode(OutputMode::Native)
        .settings(settings(128))
        .build()
        .unwrap();

    let result = bounded(agent.run("Describe the city of Paris, in France.", ()))
        .await
        .expect("the run succeeds with a typed City");
    eprintln!("output: {:?}, usage: {:?}", result.output, result.usage);

    let city: &City = &result.output;
    assert!(
        !city.name.trim().is_empty() || !city.country.trim().is_empty(),
        "the parsed City has content: {city:?}"
    );
    assert!(result.usage.requests >= 1);
    assert!(result.usage.input_tokens > 0 && result.usage.output_tokens > 0);
}

#[tokio::test]
async fn rejected_output_goes_back_to_the_model() {
    let Some(url) = llm_url() else { return };
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let agent = Agent::<(), City>::builder("local_retry")
        .model(model(&url))
        .instructions("You answer with JSON describing a city.")
        .output_mode(OutputMode::Native)
        .settings(settings(128))
        // Room for one spurious miss besides the deliberate one.
        .output_retries(3)
        .output_validator(move |_deps, _out: &City| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(ToolError::retry(
                    "Please answer again with a different city of the same country.",
                ))
            } else {
                Ok(())
            }
        })
        .build()
        .unwrap();

    let result = bounded(agent.run("Describe the city of Paris, in France.", ()))
        .await
        .expect("the run succeeds after the retry");
    eprintln!("output: {:?}, usage: {:?}", result.output, result.usage);

    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "the validator saw a second answer"
    );
    assert!(
        retry_prompts(&result.messages) >= 1,
        "the history holds the retry prompt: {:#?}",
        result.messages
    );
    assert!(result.usage.requests >= 2, "{:?}", result.usage);
    assert!(result.usage.input_tokens > 0 && result.usage.output_tokens > 0);
}
