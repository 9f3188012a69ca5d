//! Tests of the Google Gemini provider: conformance against every recorded exchange in
//! `cassettes/google/`, full agent runs against a local server, edge cases, and property tests of
//! the parsers.

mod common;

use common::{
    Canned, Interaction, MockServer, Received, assert_json_subset, cassettes_dir, load, without,
};
use futures::StreamExt;
use proptest::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use steadfast_core::{
    Agent, AgentEvent, FinishReason, Message, Model, ModelError, ModelRequest, ModelRequestParams,
    ModelResponse, ModelSettings, OutputMode, OutputSchema, RequestPart, ResponsePart, StreamEvent,
    Tool, ToolDefinition, ToolError,
};
use steadfast_models::gemini::{
    self, DEFAULT_BASE_URL, GeminiModel, GeminiStreamDecoder, SKIP_THOUGHT_SIGNATURE,
    build_request, parse_response,
};
use steadfast_models::{ClientConfig, streaming};

const KEY: &str = "test-gemini-key-0123456789";

fn model_at(base_url: &str, name: &str) -> GeminiModel {
    GeminiModel::with_config(name, ClientConfig::new(base_url).with_api_key(KEY)).unwrap()
}

// ==========================================================================================
// Conformance: every cassette in google/
// ==========================================================================================

/// What one exchange must parse into.
enum Outcome {
    Response(Want),
    /// An HTTP error: status, and a piece of the provider's message.
    HttpError(u16, &'static str),
}

/// The expected response of one exchange.
struct Want {
    text: &'static str,
    /// (name, args, id) of each call, in order.
    calls: Vec<(&'static str, Value, &'static str)>,
    /// The start of each call's recorded `thoughtSignature`, if it has one.
    signatures: Vec<Option<&'static str>>,
    /// (input, output, reasoning) tokens.
    usage: (u64, u64, u64),
    finish: FinishReason,
    model: &'static str,
    response_id: &'static str,
    /// Whether the price table knows the model.
    priced: bool,
}

struct Turn {
    request: ModelRequest,
    outcome: Outcome,
}

/// How the tools of a case are offered.
#[derive(Clone, Copy, PartialEq)]
enum Tools {
    None,
    /// The recorded function declarations, with plain text allowed (no `toolConfig`).
    TextAllowed,
    /// The recorded declarations, `final_result` as the output tool (tool output mode).
    OutputTool,
}

struct Case {
    file: &'static str,
    model: &'static str,
    stream: bool,
    /// Sent as the instructions of every request, as the agent does.
    instructions: Option<&'static str>,
    tools: Tools,
    native: Option<OutputSchema>,
    settings: ModelSettings,
    turns: Vec<Turn>,
}

fn user(text: &str) -> ModelRequest {
    ModelRequest::user(text)
}

fn tool_return(name: &str, id: &str, content: Value) -> ModelRequest {
    ModelRequest {
        parts: vec![RequestPart::ToolReturn {
            tool_name: name.into(),
            tool_call_id: id.into(),
            content,
        }],
        instructions: None,
    }
}

/// Lower-case the `type` values of an OpenAPI-subset schema (`OBJECT` -> `object`): the older
/// recording client converted JSON Schemas into the `parameters` form; we send JSON Schema.
fn legacy_to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("type", Value::String(t)) => (k.clone(), Value::String(t.to_lowercase())),
                    _ => (k.clone(), legacy_to_json_schema(v)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(legacy_to_json_schema).collect()),
        other => other.clone(),
    }
}

/// The tool definitions of a recorded request (the input we reconstruct).
fn recorded_tools(body: &Value) -> Vec<ToolDefinition> {
    let decls = body["tools"][0]["functionDeclarations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    decls
        .iter()
        .map(|d| ToolDefinition {
            name: d["name"].as_str().unwrap().to_string(),
            // An empty recorded description is what a tool without one sends.
            description: d["description"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            parameters: match d.get("parameters_json_schema") {
                Some(p) => p.clone(),
                None => legacy_to_json_schema(&d["parameters"]),
            },
            strict: None,
        })
        .collect()
}

/// The recorded request body reduced to what is part of the input, in the form we send.
fn expected_body(recorded: &Value) -> Value {
    let mut v = without(
        recorded.clone(),
        &[
            // The recording client always asked for text; it is not part of the input.
            "generationConfig.responseModalities",
            // Random per-run ids (`pyd_ai_<uuid>`) of the recording client; ours are
            // deterministic, and `check_ids` verifies that calls and results pair up.
            "contents.*.parts.*.functionCall.id",
            "contents.*.parts.*.functionResponse.id",
        ],
    );
    normalize(&mut v);
    v
}

/// Recording-client spellings, rewritten to the equivalent form we send:
/// * `thoughtSignature` is bytes; the recording client echoed it in URL-safe base64, we echo it
///   exactly as Gemini sent it (standard base64). Same bytes.
/// * Older recordings declared tools with the OpenAPI-subset `parameters`; we send the JSON
///   Schema as `parameters_json_schema`, as the newer recordings do.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(sig)) = m.get_mut("thoughtSignature") {
                *sig = sig.replace('-', "+").replace('_', "/");
            }
            if (m.contains_key("functionDeclarations") || m.contains_key("name"))
                && let Some(p) = m.remove("parameters")
            {
                m.insert("parameters_json_schema".into(), legacy_to_json_schema(&p));
            }
            for (_, x) in m.iter_mut() {
                normalize(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// Every `functionResponse` answers the call with the same id, in order, and ids are ours.
fn check_ids(file: &str, body: &Value) {
    let mut call_ids = Vec::new();
    let mut response_ids = Vec::new();
    for content in body["contents"].as_array().unwrap() {
        for part in content["parts"].as_array().unwrap() {
            if let Some(id) = part["functionCall"].get("id") {
                call_ids.push(id.as_str().unwrap().to_string());
            }
            if let Some(id) = part["functionResponse"].get("id") {
                response_ids.push(id.as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(call_ids, response_ids, "{file}: call and response ids");
    for id in &call_ids {
        assert!(id.starts_with("call_"), "{file}: unexpected id {id}");
    }
}

fn check_request(file: &str, i: usize, interaction: &Interaction, got: &Received, stream: bool) {
    let uri = &interaction.request.uri;
    let recorded_path = uri.strip_prefix(DEFAULT_BASE_URL).unwrap();
    assert_eq!(got.path_and_query, recorded_path, "{file}[{i}]: path");
    let suffix = if stream {
        ":streamGenerateContent?alt=sse"
    } else {
        ":generateContent"
    };
    assert!(got.path_and_query.starts_with("/v1beta/models/"));
    assert!(got.path_and_query.ends_with(suffix), "{file}[{i}]");
    // The key goes in the header, never in the URL.
    assert_eq!(
        got.headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok()),
        Some(KEY),
        "{file}[{i}]: x-goog-api-key"
    );
    assert!(!got.path_and_query.contains(KEY) && !got.path_and_query.contains("key="));
    assert!(got.headers.get("authorization").is_none());

    let recorded = interaction.request.parsed_body.as_ref().unwrap();
    assert_json_subset(&expected_body(recorded), &got.body, &format!("{file}[{i}]"));
    check_ids(file, &got.body);
}

async fn stream_response(
    model: &GeminiModel,
    messages: &[Message],
    params: &ModelRequestParams,
    settings: &ModelSettings,
) -> Result<ModelResponse, ModelError> {
    let mut stream = model.request_stream(messages, params, settings).await?;
    let mut text = String::new();
    let mut call_names = Vec::new();
    let mut done = None;
    while let Some(ev) = stream.next().await {
        match ev? {
            StreamEvent::TextDelta { delta, .. } => text.push_str(&delta),
            StreamEvent::ToolCallDelta {
                tool_name: Some(n), ..
            } => call_names.push(n),
            StreamEvent::Done(r) => done = Some(r),
            _ => {}
        }
    }
    let response = done.expect("the stream ends with Done");
    // The deltas add up to the assembled response.
    assert_eq!(text, response.text_content());
    let names: Vec<String> = response.tool_calls().map(|c| c.tool_name.clone()).collect();
    assert_eq!(call_names, names);
    Ok(response)
}

fn check_response(file: &str, i: usize, want: &Want, r: &ModelResponse) {
    let at = format!("{file}[{i}]");
    assert_eq!(r.text_content(), want.text, "{at}: text");
    let calls: Vec<_> = r.tool_calls().collect();
    assert_eq!(calls.len(), want.calls.len(), "{at}: calls {calls:?}");
    for (j, (call, (name, args, id))) in calls.iter().zip(&want.calls).enumerate() {
        assert_eq!(call.tool_name, *name, "{at}: call {j}");
        assert_eq!(call.args_object(), *args, "{at}: call {j} args");
        assert_eq!(call.tool_call_id, *id, "{at}: call {j} id");
        let sig = call
            .provider_details
            .as_ref()
            .and_then(|d| d.get("thoughtSignature"))
            .and_then(Value::as_str);
        match want.signatures.get(j).copied().flatten() {
            Some(prefix) => assert!(
                sig.is_some_and(|s| s.starts_with(prefix) && s.len() > 100),
                "{at}: call {j} signature {sig:?}"
            ),
            None => assert_eq!(sig, None, "{at}: call {j} signature"),
        }
    }
    let u = &r.usage;
    assert_eq!(
        (u.input_tokens, u.output_tokens, u.reasoning_tokens),
        want.usage,
        "{at}: usage"
    );
    assert_eq!(u.requests, 1, "{at}");
    if want.priced {
        assert!(u.cost_usd > 0.0 && u.unpriced_requests == 0, "{at}: {u:?}");
    } else {
        assert!(u.cost_usd == 0.0 && u.unpriced_requests == 1, "{at}: {u:?}");
    }
    assert_eq!(r.finish_reason, Some(want.finish), "{at}: finish");
    assert_eq!(r.model_name.as_deref(), Some(want.model), "{at}");
    assert_eq!(r.response_id.as_deref(), Some(want.response_id), "{at}");
    assert_eq!(r.provider.as_deref(), Some("google"), "{at}");
}

/// Replay one cassette: drive the model with the reconstructed input, exchange by exchange
/// (each later request follows our own parsed response to the previous one, so signatures and
/// ids round-trip), and check both the request we send and what we make of the answer.
async fn check(case: Case) {
    let Some(dir) = cassettes_dir() else { return };
    let cassette = load(&dir, &format!("google/{}", case.file));
    assert_eq!(
        cassette.interactions.len(),
        case.turns.len(),
        "{}: exchanges",
        case.file
    );
    let server = MockServer::for_cassette(&cassette).await;
    let model = model_at(&server.base_url, case.model);

    let first = cassette.interactions[0]
        .request
        .parsed_body
        .as_ref()
        .unwrap();
    let tools = recorded_tools(first);
    let (function_tools, output_tools): (Vec<_>, Vec<_>) = tools
        .into_iter()
        .partition(|t| case.tools != Tools::OutputTool || t.name != "final_result");
    assert!(case.tools != Tools::None || function_tools.is_empty());
    let params = ModelRequestParams {
        function_tools,
        output_tools,
        output_mode: match (case.tools, &case.native) {
            (Tools::OutputTool, _) => OutputMode::Tool,
            (_, Some(_)) => OutputMode::Native,
            _ => OutputMode::Text,
        },
        output_schema: case.native.clone(),
        allow_text_output: case.tools != Tools::OutputTool,
    };

    let mut history: Vec<Message> = Vec::new();
    for (i, (turn, interaction)) in case.turns.iter().zip(&cassette.interactions).enumerate() {
        let mut request = turn.request.clone();
        request.instructions = case.instructions.map(str::to_string);
        history.push(Message::Request(request));
        let result = if case.stream {
            stream_response(&model, &history, &params, &case.settings).await
        } else {
            model.request(&history, &params, &case.settings).await
        };
        let received = server.received();
        assert_eq!(received.len(), i + 1, "{}[{i}]: requests sent", case.file);
        check_request(case.file, i, interaction, &received[i], case.stream);
        // The same request again gives the same body: ids and signatures are deterministic.
        assert_eq!(
            build_request("google", &history, &params, &case.settings),
            received[i].body,
            "{}[{i}]",
            case.file
        );
        match (&turn.outcome, result) {
            (Outcome::Response(want), Ok(r)) => {
                check_response(case.file, i, want, &r);
                history.push(Message::Response(r));
            }
            (Outcome::HttpError(status, needle), Err(e)) => {
                match &e {
                    ModelError::Http {
                        status: s,
                        message,
                        code,
                        provider,
                        ..
                    } => {
                        assert_eq!(s, status, "{}", case.file);
                        assert!(message.contains(needle), "{}: {message}", case.file);
                        assert_eq!(code.as_deref(), Some("404"));
                        assert_eq!(provider, "google");
                    }
                    other => panic!("{}: expected an HTTP error, got {other:?}", case.file),
                }
                assert!(!e.is_retryable(), "{}", case.file);
            }
            (Outcome::Response(_), Err(e)) => panic!("{}[{i}]: {e}", case.file),
            (Outcome::HttpError(..), Ok(r)) => {
                panic!("{}[{i}]: expected an error, got {r:?}", case.file)
            }
        }
    }
    // Nothing was retried or sent twice.
    assert_eq!(server.received().len(), cassette.interactions.len());
}

fn text_want(
    text: &'static str,
    usage: (u64, u64, u64),
    model: &'static str,
    response_id: &'static str,
    priced: bool,
) -> Outcome {
    Outcome::Response(Want {
        text,
        calls: vec![],
        signatures: vec![],
        usage,
        finish: FinishReason::Stop,
        model,
        response_id,
        priced,
    })
}

fn call_want(
    call: (&'static str, Value, &'static str),
    signature: Option<&'static str>,
    usage: (u64, u64, u64),
    model: &'static str,
    response_id: &'static str,
    priced: bool,
) -> Outcome {
    Outcome::Response(Want {
        text: "",
        calls: vec![call],
        signatures: vec![signature],
        usage,
        finish: FinishReason::ToolCall,
        model,
        response_id,
        priced,
    })
}

fn no_settings() -> ModelSettings {
    ModelSettings::default()
}

fn temperature_zero() -> ModelSettings {
    ModelSettings {
        temperature: Some(0.0),
        ..Default::default()
    }
}

#[tokio::test]
async fn conformance_google_model() {
    check(Case {
        file: "test_google_model.yaml",
        model: "gemini-2.5-flash",
        stream: false,
        instructions: Some("You are a chatbot."),
        tools: Tools::None,
        native: None,
        settings: no_settings(),
        turns: vec![Turn {
            request: user("Hello!"),
            // Thought tokens count as output and as reasoning.
            outcome: text_want(
                "Hello! How can I help you today?",
                (9, 9 + 34, 34),
                "gemini-2.5-flash",
                "bzlXaa_EE_aHqtsPi_zw8Ao",
                true,
            ),
        }],
    })
    .await;
}

#[tokio::test]
async fn conformance_google_tool_output() {
    let m = "gemini-2.0-flash";
    check(Case {
        file: "test_google_tool_output.yaml",
        model: m,
        stream: false,
        instructions: None,
        tools: Tools::OutputTool,
        native: None,
        settings: no_settings(),
        turns: vec![
            Turn {
                request: user("What is the largest city in the user country?"),
                outcome: call_want(
                    ("get_user_country", json!({}), "call_0_0"),
                    None,
                    (33, 5, 0),
                    m,
                    "LlteaIDvD9m7nvgPz5Sb0Aw",
                    false,
                ),
            },
            Turn {
                request: tool_return("get_user_country", "call_0_0", json!("Mexico")),
                outcome: call_want(
                    (
                        "final_result",
                        json!({"city": "Mexico City", "country": "Mexico"}),
                        "call_1_0",
                    ),
                    None,
                    (47, 8, 0),
                    m,
                    "LlteaOzCOPOdnvgPrJbnoQg",
                    false,
                ),
            },
        ],
    })
    .await;
}

#[tokio::test]
async fn conformance_google_model_structured_output() {
    // The second recorded request carries the documented "skip" signature on a call that Gemini
    // returned unsigned: we send the same.
    let m = "gemini-2.0-flash";
    check(Case {
        file: "test_google_model_structured_output.yaml",
        model: m,
        stream: false,
        instructions: Some("You are a helpful chatbot."),
        tools: Tools::OutputTool,
        native: None,
        settings: no_settings(),
        turns: vec![
            Turn {
                request: user("What was the temperature in London 1st January 2022?"),
                outcome: call_want(
                    (
                        "temperature",
                        json!({"city": "London", "date": "2022-01-01"}),
                        "call_0_0",
                    ),
                    None,
                    (69, 14, 0),
                    m,
                    "cDlXacOkMODnqtsPz8P96Ao",
                    false,
                ),
            },
            Turn {
                request: tool_return("temperature", "call_0_0", json!("30°C")),
                outcome: call_want(
                    (
                        "final_result",
                        json!({"city": "London", "date": "2022-01-01", "temperature": "30°C"}),
                        "call_1_0",
                    ),
                    None,
                    (91, 21, 0),
                    m,
                    "cjlXadqMAv3hqtsPuej14A4",
                    false,
                ),
            },
        ],
    })
    .await;
}

#[tokio::test]
async fn conformance_google_native_output() {
    check(Case {
        file: "test_google_native_output.yaml",
        model: "gemini-2.0-flash",
        stream: false,
        instructions: None,
        tools: Tools::None,
        // The schema as the core produces it: description and title (the name) beside it.
        native: Some(OutputSchema {
            name: "CityLocation".into(),
            description: Some("A city and its country.".into()),
            schema: json!({
                "type": "object",
                "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                "required": ["city", "country"],
            }),
            strict: Some(true),
        }),
        settings: no_settings(),
        turns: vec![Turn {
            request: user("What is the largest city in Mexico?"),
            outcome: text_want(
                "{\n  \"city\": \"Mexico City\",\n  \"country\": \"Mexico\"\n}",
                (8, 20, 0),
                "gemini-2.0-flash",
                "EfsgaZT5JPbXz7IPqtGJkQ8",
                false,
            ),
        }],
    })
    .await;
}

#[tokio::test]
async fn conformance_google_prompted_output() {
    // The core has no "prompted" output mode: the recorded input is the schema prompt as
    // instructions plus a JSON MIME type, which `extra_body` merges into `generationConfig`.
    let prompt = "Always respond with a JSON object that's compatible with this schema:\n\n\
        {\"properties\": {\"city\": {\"type\": \"string\"}, \"country\": {\"type\": \"string\"}}, \
        \"required\": [\"city\", \"country\"], \"title\": \"CityLocation\", \"type\": \"object\"}\n\n\
        Don't include any text or Markdown fencing before or after.";
    check(Case {
        file: "test_google_prompted_output.yaml",
        model: "gemini-2.0-flash",
        stream: false,
        instructions: Some(prompt),
        tools: Tools::None,
        native: None,
        settings: ModelSettings {
            extra_body: Some(json!({"generationConfig": {"responseMimeType": "application/json"}})),
            ..Default::default()
        },
        turns: vec![Turn {
            request: user("What is the largest city in Mexico?"),
            outcome: text_want(
                "{\"city\": \"Mexico City\", \"country\": \"Mexico\"}",
                (80, 13, 0),
                "gemini-2.0-flash",
                "P1teaNPqC5Tf1PIPmJOW8AE",
                false,
            ),
        }],
    })
    .await;
}

#[tokio::test]
async fn conformance_google_model_retry() {
    let m = "gemini-2.5-pro";
    check(Case {
        file: "test_google_model_retry.yaml",
        model: m,
        stream: false,
        instructions: Some("You are a helpful chatbot."),
        tools: Tools::TextAllowed,
        native: None,
        settings: temperature_zero(),
        turns: vec![
            Turn {
                request: user("What is the capital of France?"),
                outcome: call_want(
                    ("get_capital", json!({"country": "France"}), "call_0_0"),
                    Some("CpYEAXLI2nxHJhy3F4oMijlAus2CPUEnTw16"),
                    (57, 15 + 124, 124),
                    m,
                    "g5YoaezOBeyrqtsPwYqL2Q8",
                    true,
                ),
            },
            Turn {
                // The tool asked for a retry: a functionResponse with `error`.
                request: ModelRequest {
                    parts: vec![RequestPart::RetryPrompt {
                        tool_name: Some("get_capital".into()),
                        tool_call_id: Some("call_0_0".into()),
                        content: RequestPart::retry_text(
                            "The country is not supported. Use \"La France\" instead.",
                        ),
                    }],
                    instructions: None,
                },
                outcome: call_want(
                    ("get_capital", json!({"country": "La France"}), "call_1_0"),
                    Some("Ct8GAXLI2nz7mNfYmvoMGtxbp6sB05S83E1P"),
                    (109, 16 + 199, 199),
                    m,
                    "h5YoaYnYK5q5mtkP6u3JoAs",
                    true,
                ),
            },
            Turn {
                request: tool_return("get_capital", "call_1_0", json!("Paris")),
                outcome: text_want(
                    "Paris",
                    (142, 1 + 97, 97),
                    m,
                    "ipYoaaGNB9qVmtkP_vrsuQs",
                    true,
                ),
            },
        ],
    })
    .await;
}

#[tokio::test]
async fn conformance_google_model_stream() {
    check(Case {
        file: "test_google_model_stream.yaml",
        model: "gemini-2.0-flash-exp",
        stream: true,
        instructions: Some("You are a helpful chatbot."),
        tools: Tools::None,
        native: None,
        settings: temperature_zero(),
        turns: vec![Turn {
            request: user("What is the capital of France?"),
            // The last chunk's usage wins (its prompt count differs from the earlier ones').
            outcome: text_want(
                "The capital of France is Paris.\n",
                (13, 8, 0),
                "gemini-2.0-flash-exp",
                "w1peaMz6INOvnvgPgYfPiQY",
                false,
            ),
        }],
    })
    .await;
}

#[tokio::test]
async fn conformance_google_model_iter_stream() {
    let m = "gemini-2.0-flash";
    check(Case {
        file: "test_google_model_iter_stream.yaml",
        model: m,
        stream: true,
        instructions: Some("You are a helpful chatbot."),
        tools: Tools::TextAllowed,
        native: None,
        settings: no_settings(),
        turns: vec![
            Turn {
                request: user("What is the temperature of the capital of France?"),
                outcome: call_want(
                    ("get_capital", json!({"country": "France"}), "call_0_0"),
                    None,
                    (52, 5, 0),
                    m,
                    "1lpeaMTxIpW1nvgP-O3vwQY",
                    false,
                ),
            },
            Turn {
                request: tool_return("get_capital", "call_0_0", json!("Paris")),
                outcome: call_want(
                    ("get_temperature", json!({"city": "Paris"}), "call_1_0"),
                    None,
                    (64, 5, 0),
                    m,
                    "11peaOXwBPH_2PgPh_z--AY",
                    false,
                ),
            },
            Turn {
                request: tool_return("get_temperature", "call_1_0", json!("30°C")),
                outcome: text_want(
                    "The temperature in Paris is 30°C.\n",
                    (79, 12, 0),
                    m,
                    "11peaI_ZJLq3nvgP0vasuQk",
                    false,
                ),
            },
        ],
    })
    .await;
}

#[tokio::test]
async fn conformance_google_streaming_tool_call_thought_signature() {
    let m = "gemini-3-pro-preview";
    check(Case {
        file: "test_google_streaming_tool_call_thought_signature.yaml",
        model: m,
        stream: true,
        instructions: None,
        tools: Tools::TextAllowed,
        native: None,
        settings: no_settings(),
        turns: vec![
            Turn {
                request: user("What is the capital of the user country? Call the tool"),
                // The call arrives without a finish reason; the last chunk says STOP with an
                // empty text part, which leaves no text behind.
                outcome: call_want(
                    ("get_country", json!({}), "call_0_0"),
                    Some("EpwICpkIAXLI2nxlU6gsWZaZHRYkX1orzuM8"),
                    (29, 10 + 202, 202),
                    m,
                    "QUVVadTSNJ6_qtsPvN7J8Q0",
                    false,
                ),
            },
            Turn {
                request: tool_return("get_country", "call_0_0", json!("Mexico")),
                outcome: text_want(
                    "The capital of Mexico is Mexico City.",
                    (257, 8, 0),
                    m,
                    "REVVabaiCdq4qtsPnZu96Qo",
                    false,
                ),
            },
        ],
    })
    .await;
}

#[tokio::test]
async fn conformance_model_name_suggestion() {
    check(Case {
        file: "test_model_name_suggestion[google].yaml",
        model: "gemini-3.6-flahs",
        stream: false,
        instructions: None,
        tools: Tools::None,
        native: None,
        settings: no_settings(),
        turns: vec![Turn {
            request: user("hello"),
            outcome: Outcome::HttpError(404, "models/gemini-3.6-flahs is not found"),
        }],
    })
    .await;
}

/// Every cassette in google/ has a test above (a new file must get one).
#[test]
fn every_google_cassette_is_covered() {
    let Some(dir) = cassettes_dir() else { return };
    let mut files: Vec<String> = std::fs::read_dir(dir.join("google"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut covered = vec![
        "test_google_model.yaml",
        "test_google_model_iter_stream.yaml",
        "test_google_model_retry.yaml",
        "test_google_model_stream.yaml",
        "test_google_model_structured_output.yaml",
        "test_google_native_output.yaml",
        "test_google_prompted_output.yaml",
        "test_google_streaming_tool_call_thought_signature.yaml",
        "test_google_tool_output.yaml",
        "test_model_name_suggestion[google].yaml",
    ];
    covered.sort();
    assert_eq!(files, covered);
}

// ==========================================================================================
// Keys, URLs, errors and edge cases
// ==========================================================================================

#[tokio::test]
async fn no_key_against_the_official_host_is_a_config_error() {
    let model =
        GeminiModel::with_config("gemini-2.5-flash", ClientConfig::new(DEFAULT_BASE_URL)).unwrap();
    assert_eq!(model.provider(), "google");
    let err = model
        .request(
            &[Message::Request(user("hi"))],
            &ModelRequestParams::default(),
            &no_settings(),
        )
        .await
        .unwrap_err();
    match &err {
        ModelError::Config(m) => assert!(m.contains("GEMINI_API_KEY"), "{m}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    let err = model
        .request_stream(
            &[Message::Request(user("hi"))],
            &ModelRequestParams::default(),
            &no_settings(),
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ModelError::Config(_)));
}

#[test]
fn endpoints_and_construction() {
    let m = GeminiModel::with_config("gemini-2.5-flash", ClientConfig::new(DEFAULT_BASE_URL))
        .unwrap()
        .with_provider_name("my-gateway");
    assert_eq!(m.provider(), "my-gateway");
    assert_eq!(
        m.endpoint(false),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        m.endpoint(true),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    // A base URL that names the version, and a full resource name, are taken as they are.
    let m = GeminiModel::with_config(
        "models/gemini-2.5-pro",
        ClientConfig::new("http://proxy.local/v1beta/"),
    )
    .unwrap();
    assert_eq!(
        m.endpoint(false),
        "http://proxy.local/v1beta/models/gemini-2.5-pro:generateContent"
    );
    assert!(GeminiModel::with_config(" ", ClientConfig::new(DEFAULT_BASE_URL)).is_err());
    // Construction never needs a key.
    assert!(GeminiModel::new("gemini-2.5-flash").is_ok());
}

#[tokio::test]
async fn retries_429_then_succeeds_and_maps_mid_stream_errors() {
    let ok = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1},
        "modelVersion": "gemini-2.5-flash"
    });
    let server = MockServer::start(vec![
        Canned::json(
            429,
            json!({"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}),
        )
        .header("retry-after", "0"),
        Canned::json(200, ok),
        Canned {
            status: 200,
            content_type: "text/event-stream".into(),
            headers: vec![],
            body: b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"par\"}]}}]}\r\n\r\n\
                    data: {\"error\": {\"code\": 503, \"message\": \"overloaded\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n"
                .to_vec(),
        },
    ])
    .await;
    let cfg = ClientConfig::new(&server.base_url)
        .with_api_key(KEY)
        .with_max_retries(1);
    let mut cfg = cfg;
    cfg.initial_backoff = std::time::Duration::from_millis(1);
    let model = GeminiModel::with_config("gemini-2.5-flash", cfg).unwrap();
    let msgs = [Message::Request(user("hi"))];
    let r = model
        .request(&msgs, &ModelRequestParams::default(), &no_settings())
        .await
        .unwrap();
    assert_eq!(r.text_content(), "hi");
    assert_eq!(server.received().len(), 2);

    let mut stream = model
        .request_stream(&msgs, &ModelRequestParams::default(), &no_settings())
        .await
        .unwrap();
    let mut items = Vec::new();
    while let Some(x) = stream.next().await {
        items.push(x);
    }
    assert!(matches!(items[0], Ok(StreamEvent::TextDelta { .. })));
    match items.last().unwrap() {
        Err(ModelError::Http {
            status, message, ..
        }) => {
            assert_eq!(*status, 503);
            assert_eq!(message, "overloaded");
        }
        other => panic!("expected the stream's error, got {other:?}"),
    }
}

#[test]
fn parses_finish_reasons_blocks_thoughts_and_cache() {
    let body = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Let me think", "thought": true},
                {"text": " more.", "thought": true, "thoughtSignature": "c2ln"},
                {"text": "Answer"},
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
            ]},
            "finishReason": "MAX_TOKENS"
        }],
        "usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 40,
            "candidatesTokenCount": 10, "thoughtsTokenCount": 5},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1"
    });
    let r = parse_response("google", &body).unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    assert_eq!(r.parts.len(), 2);
    match &r.parts[0] {
        ResponsePart::Thinking {
            content,
            signature,
            provider,
            ..
        } => {
            assert_eq!(content, "Let me think more.");
            assert_eq!(signature.as_deref(), Some("c2ln"));
            assert_eq!(provider.as_deref(), Some("google"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.text_content(), "Answer");
    assert_eq!(
        (
            r.usage.input_tokens,
            r.usage.output_tokens,
            r.usage.cache_read_tokens,
            r.usage.reasoning_tokens
        ),
        (100, 15, 40, 5)
    );
    // 60 fresh + 40 cached input, 15 output, at gemini-2.5-flash prices.
    let expected = (60.0 * 0.30 + 40.0 * 0.075 + 15.0 * 2.50) / 1e6;
    assert!((r.usage.cost_usd - expected).abs() < 1e-12);

    // The thoughts go back to Gemini with their signature.
    let history = [
        Message::Request(user("q")),
        Message::Response(r),
        Message::Request(user("next")),
    ];
    let req = build_request(
        "google",
        &history,
        &ModelRequestParams::default(),
        &no_settings(),
    );
    assert_eq!(
        req["contents"][1]["parts"],
        json!([
            {"text": "Let me think more.", "thought": true, "thoughtSignature": "c2ln"},
            {"text": "Answer"}
        ])
    );

    for (reason, want) in [
        ("SAFETY", FinishReason::ContentFilter),
        ("RECITATION", FinishReason::ContentFilter),
        ("BLOCKLIST", FinishReason::ContentFilter),
        ("PROHIBITED_CONTENT", FinishReason::ContentFilter),
        ("MALFORMED_FUNCTION_CALL", FinishReason::Error),
        ("STOP", FinishReason::Stop),
    ] {
        let body = json!({"candidates": [{"finishReason": reason}]});
        let r = parse_response("google", &body).unwrap();
        assert_eq!(r.finish_reason, Some(want), "{reason}");
        assert!(r.parts.is_empty());
    }

    // A blocked prompt: no candidates, a block reason.
    let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 7}});
    let r = parse_response("google", &blocked).unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::ContentFilter));
    assert!(r.parts.is_empty());
    assert_eq!(r.usage.input_tokens, 7);

    // Not a response at all.
    for bad in [
        json!({}),
        json!([]),
        json!("x"),
        json!({"candidates": 3}),
        json!({"candidates": [{"content": {"parts": {}}}]}),
        json!({"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]}),
    ] {
        let e = parse_response("google", &bad).unwrap_err();
        assert!(
            matches!(e, ModelError::InvalidResponse { .. }),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn api_call_ids_are_kept_and_parallel_calls_numbered() {
    let body = json!({"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "sig"},
        {"functionCall": {"name": "b", "id": "server-id"}},
        {"functionCall": {"name": "c", "args": {}}}
    ]}, "finishReason": "STOP"}]});
    let r = parse_response("google", &body).unwrap();
    let ids: Vec<&str> = r.tool_calls().map(|c| c.tool_call_id.as_str()).collect();
    assert_eq!(ids, ["call_0_0", "server-id", "call_0_2"]);
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCall));
    assert_eq!(r.tool_calls().nth(1).unwrap().args, "{}");

    // Only the signed call carries a signature back; no skip signature in a signed turn.
    let history = [Message::Request(user("q")), Message::Response(r)];
    let req = build_request(
        "google",
        &history,
        &ModelRequestParams::default(),
        &no_settings(),
    );
    let parts = &req["contents"][1]["parts"];
    assert_eq!(parts[0]["thoughtSignature"], "sig");
    assert!(parts[1].get("thoughtSignature").is_none());
    assert!(parts[2].get("thoughtSignature").is_none());

    // An unsigned turn (say, from another provider) gets the skip signature on its first call.
    let foreign = ModelResponse {
        parts: vec![
            ResponsePart::tool_call("a", "{\"x\":1}", "toolu_1"),
            ResponsePart::tool_call("b", "not json", "toolu_2"),
        ],
        ..Default::default()
    };
    let history = [Message::Request(user("q")), Message::Response(foreign)];
    let req = build_request(
        "google",
        &history,
        &ModelRequestParams::default(),
        &no_settings(),
    );
    assert_eq!(
        req["contents"][1]["parts"],
        json!([
            {"functionCall": {"name": "a", "args": {"x": 1}, "id": "toolu_1"},
             "thoughtSignature": SKIP_THOUGHT_SIGNATURE},
            {"functionCall": {"name": "b", "args": {}, "id": "toolu_2"}}
        ])
    );
}

#[test]
fn request_mapping_details() {
    let history = vec![
        Message::Request(ModelRequest {
            parts: vec![
                RequestPart::SystemPrompt {
                    content: "Be terse.".into(),
                },
                RequestPart::UserPrompt {
                    content: "first".into(),
                },
            ],
            instructions: Some("old instructions".into()),
        }),
        Message::Response(ModelResponse {
            parts: vec![
                ResponsePart::Text {
                    content: "calling".into(),
                },
                ResponsePart::tool_call("lookup", "{\"q\":\"x\"}", "call_0_0"),
                // Another provider's reasoning is not sent to Gemini.
                ResponsePart::Thinking {
                    content: "hmm".into(),
                    id: None,
                    signature: Some("opaque".into()),
                    provider: Some("anthropic".into()),
                },
            ],
            ..Default::default()
        }),
        Message::Request(ModelRequest {
            parts: vec![
                RequestPart::ToolReturn {
                    tool_name: "lookup".into(),
                    tool_call_id: "call_0_0".into(),
                    content: json!({"hits": 2}),
                },
                RequestPart::RetryPrompt {
                    tool_name: None,
                    tool_call_id: None,
                    content: "Plain text is not allowed.".into(),
                },
            ],
            instructions: Some("new instructions".into()),
        }),
        // Two requests in a row: one user content.
        Message::Request(ModelRequest {
            parts: vec![RequestPart::UserPrompt {
                content: "and then".into(),
            }],
            instructions: None,
        }),
    ];
    let params = ModelRequestParams {
        function_tools: vec![ToolDefinition {
            name: "lookup".into(),
            description: Some("Look it up.".into()),
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            strict: None,
        }],
        output_tools: vec![],
        output_mode: OutputMode::Text,
        output_schema: None,
        allow_text_output: false,
    };
    let settings = ModelSettings {
        max_tokens: Some(100),
        temperature: Some(0.5),
        top_p: Some(0.9),
        seed: Some(7),
        parallel_tool_calls: Some(true),
        extra_body: Some(json!({
            "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
        })),
    };
    let body = build_request("google", &history, &params, &settings);
    assert_eq!(
        body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "first"}]},
                {"role": "model", "parts": [
                    {"text": "calling"},
                    {"functionCall": {"name": "lookup", "args": {"q": "x"}, "id": "call_0_0"},
                     "thoughtSignature": SKIP_THOUGHT_SIGNATURE}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "call_0_0", "name": "lookup", "response": {"hits": 2}}},
                    {"text": "Plain text is not allowed."},
                    {"text": "and then"}
                ]}
            ],
            // Instructions are those of the last request, which has none here.
            "systemInstruction": {"role": "user", "parts": [{"text": "Be terse."}]},
            "tools": [{"functionDeclarations": [{
                "name": "lookup", "description": "Look it up.",
                "parameters_json_schema": {"type": "object", "properties": {"q": {"type": "string"}}}
            }]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}},
            "generationConfig": {
                "maxOutputTokens": 100, "temperature": 0.5, "topP": 0.9, "seed": 7,
                "thinkingConfig": {"thinkingBudget": 0}
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
        })
    );

    // With instructions on the last request, they follow the system prompts.
    let mut h2 = history.clone();
    h2.pop();
    let body = build_request("google", &h2, &params, &ModelSettings::default());
    assert_eq!(
        body["systemInstruction"]["parts"],
        json!([{"text": "Be terse."}, {"text": "new instructions"}])
    );
    assert_eq!(body["generationConfig"], json!({}));
}

#[test]
fn stream_truncation_and_empty_stream_are_errors() {
    let full = b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"a\"}]}}]}\r\n\r\n\
                 data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"b\"}]}, \"finishReason\": \"STOP\"}],\
                 \"usageMetadata\": {\"promptTokenCount\": 2, \"candidatesTokenCount\": 2}}\r\n\r\n";
    let (events, r) = streaming::decode_body(
        full,
        Box::new(GeminiStreamDecoder::new("google", "gemini-2.5-flash", 0)),
    )
    .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(r.text_content(), "ab");
    assert_eq!(r.parts.len(), 1);
    assert!(r.usage.cost_usd > 0.0);

    // Cut after the first event: no finish reason, so the stream was cut off (retryable).
    let cut = &full[..full.iter().position(|b| *b == b'\n').unwrap() + 3];
    let e = streaming::decode_body(cut, Box::new(GeminiStreamDecoder::new("google", "m", 0)))
        .unwrap_err();
    assert!(
        matches!(e, ModelError::Connection { .. }) && e.is_retryable(),
        "{e:?}"
    );
    let e = streaming::decode_body(b"", Box::new(GeminiStreamDecoder::new("google", "m", 0)))
        .unwrap_err();
    assert!(matches!(e, ModelError::InvalidResponse { .. }), "{e:?}");
    let e = streaming::decode_body(
        b"data: {not json\r\n\r\n",
        Box::new(GeminiStreamDecoder::new("google", "m", 0)),
    )
    .unwrap_err();
    assert!(matches!(e, ModelError::InvalidResponse { .. }), "{e:?}");
}

#[test]
fn stream_ids_follow_the_response_index() {
    let body = b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"f\", \"args\": {\"a\": 1}}}]}}]}\r\n\r\n\
                 data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"g\"}}]}, \"finishReason\": \"STOP\"}]}\r\n\r\n";
    let (_, r) =
        streaming::decode_body(body, Box::new(GeminiStreamDecoder::new("google", "m", 3))).unwrap();
    let ids: Vec<&str> = r.tool_calls().map(|c| c.tool_call_id.as_str()).collect();
    assert_eq!(ids, ["call_3_0", "call_3_1"]);
    assert_eq!(r.finish_reason, Some(FinishReason::ToolCall));
    assert_eq!(gemini::generated_call_id(3, 1), "call_3_1");
}

// ==========================================================================================
// Full agent runs against a local server
// ==========================================================================================

fn answer_call(name: &str, args: Value, usage: (u64, u64)) -> Canned {
    Canned::json(
        200,
        json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": name, "args": args}}
            ]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": usage.0, "candidatesTokenCount": usage.1},
            "modelVersion": "gemini-2.5-flash",
            "responseId": format!("resp-{name}")
        }),
    )
}

fn answer_text(text: &str, usage: (u64, u64)) -> Canned {
    Canned::json(
        200,
        json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": usage.0, "candidatesTokenCount": usage.1},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "resp-text"
        }),
    )
}

/// Arguments of the weather tool.
#[derive(Deserialize, JsonSchema)]
struct WeatherArgs {
    /// The city.
    city: String,
}

fn weather_tool() -> Tool<()> {
    Tool::plain("get_weather", |a: WeatherArgs| async move {
        Ok::<_, ToolError>(format!("sunny in {}", a.city))
    })
    .description("Get the weather in a city.")
}

#[tokio::test]
async fn agent_run_with_a_function_call_then_text() {
    let server = MockServer::start(vec![
        answer_call("get_weather", json!({"city": "Paris"}), (20, 5)),
        answer_text("It is sunny in Paris.", (40, 7)),
    ])
    .await;
    let agent = Agent::<(), String>::builder("weather")
        .model(model_at(&server.base_url, "gemini-2.5-flash"))
        .instructions("Answer briefly.")
        .tool(weather_tool())
        .build()
        .unwrap();
    let result = agent.run("Weather in Paris?", ()).await.unwrap();
    assert_eq!(result.output, "It is sunny in Paris.");
    let u = &result.usage;
    assert_eq!((u.requests, u.tool_calls), (2, 1));
    assert_eq!((u.input_tokens, u.output_tokens), (60, 12));
    let expected = (60.0 * 0.30 + 12.0 * 2.50) / 1e6;
    assert!((u.cost_usd - expected).abs() < 1e-12, "{}", u.cost_usd);

    let received = server.received();
    assert_eq!(received.len(), 2);
    let first = &received[0].body;
    // Text output is allowed: no forced function calling.
    assert!(first.get("toolConfig").is_none());
    assert_eq!(
        first["systemInstruction"],
        json!({"role": "user", "parts": [{"text": "Answer briefly."}]})
    );
    let decl = &first["tools"][0]["functionDeclarations"][0];
    assert_eq!(decl["name"], "get_weather");
    assert_eq!(decl["description"], "Get the weather in a city.");
    assert_eq!(decl["parameters_json_schema"]["required"], json!(["city"]));
    let second = &received[1].body;
    assert_eq!(
        second["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_0_0"},
                "thoughtSignature": SKIP_THOUGHT_SIGNATURE
            }]},
            {"role": "user", "parts": [{"functionResponse": {
                "id": "call_0_0", "name": "get_weather",
                "response": {"return_value": "sunny in Paris"}
            }}]}
        ])
    );
}

/// A city and its country.
#[derive(Debug, PartialEq, Deserialize, JsonSchema)]
struct CityLocation {
    city: String,
    country: String,
}

#[tokio::test]
async fn agent_run_with_structured_tool_output() {
    let server = MockServer::start(vec![
        answer_call("get_weather", json!({"city": "Mexico City"}), (30, 6)),
        answer_call(
            "final_result",
            json!({"city": "Mexico City", "country": "Mexico"}),
            (50, 9),
        ),
    ])
    .await;
    let agent = Agent::<(), CityLocation>::builder("cities")
        .model(model_at(&server.base_url, "gemini-2.5-flash"))
        .tool(weather_tool())
        .build()
        .unwrap();
    let result = agent
        .run("Largest city in Mexico, and its weather?", ())
        .await
        .unwrap();
    assert_eq!(
        result.output,
        CityLocation {
            city: "Mexico City".into(),
            country: "Mexico".into()
        }
    );
    assert_eq!((result.usage.requests, result.usage.tool_calls), (2, 1));
    assert_eq!(
        (result.usage.input_tokens, result.usage.output_tokens),
        (80, 15)
    );
    let received = server.received();
    // Tool output mode: a function call is required, among the function and output tools.
    for r in &received {
        assert_eq!(
            r.body["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY",
                "allowedFunctionNames": ["get_weather", "final_result"]}})
        );
    }
    let final_decl = &received[0].body["tools"][0]["functionDeclarations"][1];
    assert_eq!(final_decl["name"], "final_result");
    assert_eq!(
        final_decl["parameters_json_schema"]["required"],
        json!(["city", "country"])
    );
    // The conversation ends with the output tool's return.
    match result.messages.last().unwrap() {
        Message::Request(r) => assert!(matches!(
            &r.parts[0],
            RequestPart::ToolReturn { tool_name, tool_call_id, .. }
                if tool_name == "final_result" && tool_call_id == "call_1_0"
        )),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn agent_run_streamed() {
    let sse = |body: &str| Canned {
        status: 200,
        content_type: "text/event-stream".into(),
        headers: vec![],
        body: body.as_bytes().to_vec(),
    };
    let server = MockServer::start(vec![
        sse("data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"get_weather\", \
             \"args\": {\"city\": \"Rome\"}}}], \"role\": \"model\"}, \"finishReason\": \"STOP\"}], \
             \"usageMetadata\": {\"promptTokenCount\": 10, \"candidatesTokenCount\": 3}, \"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n"),
        sse("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Sunny \"}], \"role\": \"model\"}}]}\r\n\r\n\
             data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"in Rome.\"}], \"role\": \"model\"}, \"finishReason\": \"STOP\"}], \
             \"usageMetadata\": {\"promptTokenCount\": 20, \"candidatesTokenCount\": 4}, \"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n"),
    ])
    .await;
    let agent = Agent::<(), String>::builder("weather")
        .model(model_at(&server.base_url, "gemini-2.5-flash"))
        .tool(weather_tool())
        .build()
        .unwrap();
    let mut run = agent.run_stream("Weather in Rome?", ());
    let mut deltas = Vec::new();
    let mut tool_calls = 0;
    while let Some(ev) = run.next().await {
        match ev {
            AgentEvent::Model(StreamEvent::TextDelta { delta, .. }) => deltas.push(delta),
            AgentEvent::ToolCall(_) => tool_calls += 1,
            _ => {}
        }
    }
    let result = run.output().await.unwrap();
    assert_eq!(result.output, "Sunny in Rome.");
    assert_eq!(deltas, ["Sunny ", "in Rome."]);
    assert_eq!(tool_calls, 1);
    assert_eq!(
        (result.usage.input_tokens, result.usage.output_tokens),
        (30, 7)
    );
    for r in server.received() {
        assert!(r.path_and_query.ends_with(":streamGenerateContent?alt=sse"));
    }
}

// ==========================================================================================
// Property tests: the parsers never panic
// ==========================================================================================

const KEYS: &[&str] = &[
    "candidates",
    "content",
    "parts",
    "text",
    "thought",
    "thoughtSignature",
    "functionCall",
    "name",
    "args",
    "id",
    "role",
    "finishReason",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
    "toolUsePromptTokenCount",
    "modelVersion",
    "responseId",
    "promptFeedback",
    "blockReason",
    "error",
    "code",
    "message",
];

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-zA-Z]{0,6}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(&["STOP", "MAX_TOKENS", "SAFETY", "OTHER", "", "x"][..])
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Plausible responses whose fields are replaced by arbitrary JSON here and there.
fn arb_response() -> impl Strategy<Value = Value> {
    let part = prop_oneof![
        ".{0,8}".prop_map(|t| json!({"text": t})),
        (".{0,8}", any::<bool>()).prop_map(|(t, th)| json!({"text": t, "thought": th})),
        (".{0,8}", arb_json(), prop::option::of(".{0,8}")).prop_map(|(n, a, s)| {
            let mut p = json!({"functionCall": {"name": n, "args": a}});
            if let Some(s) = s {
                p["thoughtSignature"] = json!(s);
            }
            p
        }),
        arb_json(),
    ];
    (
        prop::collection::vec(part, 0..5),
        prop_oneof![arb_json(), Just(json!("STOP"))],
        prop_oneof![
            arb_json(),
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c)| json!({
                "promptTokenCount": a, "candidatesTokenCount": b, "thoughtsTokenCount": c
            })),
        ],
        any::<bool>(),
    )
        .prop_map(|(parts, finish, usage, with_content)| {
            let candidate = if with_content {
                json!({"content": {"role": "model", "parts": parts}, "finishReason": finish})
            } else {
                json!({"finishReason": finish})
            };
            json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash"})
        })
}

/// Recorded response bodies: JSON answers, and the raw SSE bodies of the streams.
fn recorded_bodies() -> (Vec<Value>, Vec<Vec<u8>>) {
    let mut json_bodies = Vec::new();
    let mut streams = Vec::new();
    let Some(dir) = cassettes_dir() else {
        return (json_bodies, streams);
    };
    for entry in std::fs::read_dir(dir.join("google")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        for i in load(&dir, &format!("google/{name}")).interactions {
            if i.response.is_stream() {
                streams.push(i.response.body_bytes());
            } else if let Some(v) = i.response.parsed_body {
                json_bodies.push(v);
            }
        }
    }
    (json_bodies, streams)
}

fn check_invariants(r: &ModelResponse) {
    assert_eq!(r.usage.requests, 1);
    let ids: Vec<&str> = r.tool_calls().map(|c| c.tool_call_id.as_str()).collect();
    assert!(ids.iter().all(|id| !id.is_empty()));
    // Requests can always be built from what was parsed.
    let history = [Message::Request(user("q")), Message::Response(r.clone())];
    let body = build_request(
        "google",
        &history,
        &ModelRequestParams::default(),
        &no_settings(),
    );
    assert!(body["contents"].is_array());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_response_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            && let Ok(r) = parse_response("google", &v)
        {
            check_invariants(&r);
        }
    }

    #[test]
    fn parse_response_never_panics_on_json(v in arb_json()) {
        if let Ok(r) = parse_response("google", &v) {
            check_invariants(&r);
        }
    }

    #[test]
    fn parse_response_never_panics_on_plausible_responses(v in arb_response()) {
        if let Ok(r) = parse_response("google", &v) {
            check_invariants(&r);
        }
        // The same chunk streamed: same outcome, never a panic.
        let body = format!("data: {v}\r\n\r\n");
        let _ = streaming::decode_body(
            body.as_bytes(),
            Box::new(GeminiStreamDecoder::new("google", "gemini-2.5-flash", 0)),
        );
    }

    #[test]
    fn decoder_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = streaming::decode_body(&bytes, Box::new(GeminiStreamDecoder::new("google", "m", 0)));
    }

    #[test]
    fn decoder_never_panics_on_sse_shaped_bytes(
        chunks in prop::collection::vec(prop_oneof![
            arb_json().prop_map(|v| format!("data: {v}\r\n\r\n")),
            ".{0,20}".prop_map(|s| format!("data: {s}\n\n")),
            Just("\r\n".to_string()),
        ], 0..6)
    ) {
        let body = chunks.concat();
        if let Ok((_, r)) = streaming::decode_body(
            body.as_bytes(),
            Box::new(GeminiStreamDecoder::new("google", "m", 0)),
        ) {
            check_invariants(&r);
        }
    }

    #[test]
    fn decoder_never_panics_on_mutated_recordings(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let (_, streams) = recorded_bodies();
        if !streams.is_empty() {
            let mut body = streams[which.index(streams.len())].clone();
            for (at, byte) in flips {
                let i = at.index(body.len());
                body[i] = byte;
            }
            let _ = streaming::decode_body(&body, Box::new(GeminiStreamDecoder::new("google", "m", 0)));
        }
    }
}

/// Every truncation of every recorded response: the stream decoder and the JSON parser either
/// give a response or an error, never a panic; complete recordings parse.
#[test]
fn every_truncation_of_the_recordings() {
    let (json_bodies, streams) = recorded_bodies();
    for body in &streams {
        let full =
            streaming::decode_body(body, Box::new(GeminiStreamDecoder::new("google", "m", 0)));
        assert!(full.is_ok(), "{full:?}");
        for cut in 0..=body.len() {
            if let Ok((_, r)) = streaming::decode_body(
                &body[..cut],
                Box::new(GeminiStreamDecoder::new("google", "m", 0)),
            ) {
                // A truncated stream is only accepted once the model said it finished.
                assert!(r.finish_reason.is_some());
                check_invariants(&r);
            }
        }
    }
    for v in &json_bodies {
        let bytes = serde_json::to_vec(v).unwrap();
        for cut in 0..=bytes.len() {
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes[..cut]) {
                let _ = parse_response("google", &v);
            }
        }
        // Every recorded success parses; the recorded error body is not a response.
        if v.get("error").is_some() {
            assert!(parse_response("google", v).is_err());
        } else {
            check_invariants(&parse_response("google", v).unwrap());
        }
    }
}
