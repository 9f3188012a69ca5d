//! The OpenAI Responses provider against recorded exchanges, scripted agent runs, and fuzzing of
//! its response parser and stream decoder.

mod common;

use std::path::Path;

use common::{Canned, Cassette, MockServer, assert_json_subset, without};
use futures::StreamExt;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use steadfast_core::{
    Agent, FinishReason, Message, Model, ModelError, ModelRequest, ModelRequestParams,
    ModelResponse, ModelSettings, OUTPUT_TOOL_NAME, OutputMode, OutputSchema, RequestPart,
    ResponsePart, StreamEvent, Tool, ToolCallPart, ToolDefinition, ToolError,
};
use steadfast_models::openai_responses::{
    OpenAIResponsesModel, ResponsesStreamDecoder, build_request, parse_response,
};
use steadfast_models::{ClientConfig, streaming};

const KEY: &str = "sk-test-key";

fn model_at(base_url: &str, name: &str) -> OpenAIResponsesModel {
    let config = ClientConfig::new(format!("{base_url}/v1"))
        .with_api_key(KEY)
        .with_max_retries(0);
    OpenAIResponsesModel::with_config(name, config).unwrap()
}

// =============================================================================================
// Conformance: every cassette in openai_responses/
// =============================================================================================

/// What one recorded exchange must parse into.
enum Outcome {
    Response(Expect),
    Error {
        status: u16,
        code: &'static str,
        message: &'static str,
    },
}

struct Expect {
    /// All text parts joined.
    text: &'static str,
    /// (tool name, call id, arguments), in order.
    calls: &'static [(&'static str, &'static str, &'static str)],
    /// Thinking parts: their count, and the item id, signature prefix and content prefix of the
    /// first one.
    thinking: Option<(usize, &'static str, &'static str, &'static str)>,
    /// (input, output, cached input, reasoning) tokens.
    usage: (u64, u64, u64, u64),
    finish: FinishReason,
    model: &'static str,
    id: &'static str,
}

struct Case {
    file: &'static str,
    turns: Vec<Outcome>,
    /// Paths removed from both the recorded and our request body before they are compared: only
    /// artifacts of the recording client, never input. Each case says why.
    strip: &'static [&'static str],
}

const POEM: &str = "Softly old fountains illumine alleys\nDunes over harbor aglow\nAncient temples hum, echoing novas' songs\nAmber breezes uplift jasmine avenues\nMoonlight across distant roofs, inviting dreams\nWhispers across river, stars awake, wandering\nIvory sands lull, as minarets arise, birds ascend, dreaming\nOrchards shimmer, lanterns over\nRustling almonds breathe amber twilight\nOaks tremble, twin auroras weave, alight\nAutumn nights kindle amber river arcs\nDusty alleys murmur, amber spices curl under starlight";

const PLAN_ARGS: &str = "{\"plan\":\"Plan:\\n1) Determine required first-letter acrostics for lines: odd lines -> SAMIRA; even lines -> DAWOOD (12 total lines).\\n2) For each line, select a world capital whose name begins with the required first letter.\\n3) Compose each line so that the first letter of every word spells that chosen capital (word-initial acrostic), while keeping imagery poetic and coherent.\\n4) Double-check all acrostics (line-initial and word-initial) for accuracy.\\n5) Deliver the 12-line poem.\"}";

fn text(
    text: &'static str,
    usage: (u64, u64, u64, u64),
    model: &'static str,
    id: &'static str,
) -> Outcome {
    Outcome::Response(Expect {
        text,
        calls: &[],
        thinking: None,
        usage,
        finish: FinishReason::Stop,
        model,
        id,
    })
}

fn calls(
    calls: &'static [(&'static str, &'static str, &'static str)],
    usage: (u64, u64, u64, u64),
    model: &'static str,
    id: &'static str,
) -> Outcome {
    Outcome::Response(Expect {
        text: "",
        calls,
        thinking: None,
        usage,
        finish: FinishReason::ToolCall,
        model,
        id,
    })
}

fn with_thinking(o: Outcome, t: (usize, &'static str, &'static str, &'static str)) -> Outcome {
    match o {
        Outcome::Response(mut e) => {
            e.thinking = Some(t);
            Outcome::Response(e)
        }
        other => other,
    }
}

fn cases() -> Vec<Case> {
    const GPT4O: &str = "gpt-4o-2024-08-06";
    const GPT5: &str = "gpt-5-2025-08-07";
    vec![
        Case {
            file: "test_openai_responses_model_simple_response.yaml",
            turns: vec![text(
                "The capital of France is Paris.",
                (14, 8, 0, 0),
                GPT4O,
                "resp_68c2e8c147ac819491bcd667055eadbc02e845978fbbb592",
            )],
            strip: &[],
        },
        Case {
            file: "test_openai_responses_model_simple_response_with_tool_call.yaml",
            turns: vec![
                calls(
                    &[(
                        "get_capital",
                        "call_YfwRsW8sUxDKipwyhWTzOXCA",
                        r#"{"country":"PotatoLand"}"#,
                    )],
                    (40, 18, 0, 0),
                    GPT4O,
                    "resp_04907f5d3de791830068fbaa19bb908195a91378279dba0f14",
                ),
                text(
                    "The capital of PotatoLand is Potato City.",
                    (67, 11, 0, 0),
                    GPT4O,
                    "resp_0e9950da9eac6a780068fbaa1bc030819da585a6f85ddad1e6",
                ),
            ],
            // `status: null` on the echoed function call is dropped with the other nulls.
            strip: &[],
        },
        Case {
            file: "test_tool_output.yaml",
            turns: vec![
                calls(
                    &[("get_user_country", "call_ZWkVhdUjupo528U9dqgFeRkH", "{}")],
                    (62, 12, 0, 0),
                    GPT4O,
                    "resp_68477f0b40a8819cb8d55594bc2c232a001fd29e2d5573f7",
                ),
                calls(
                    &[(
                        "final_result",
                        "call_iFBd0zULhSZRR908DfH73VwN",
                        r#"{"city":"Mexico City","country":"Mexico"}"#,
                    )],
                    (85, 20, 0, 0),
                    GPT4O,
                    "resp_68477f0bfda8819ea65458cd7cc389b801dc81d4bc91f560",
                ),
            ],
            // The empty assistant message this old recording echoes is removed by
            // `recorded_request` (see there).
            strip: &[],
        },
        Case {
            file: "test_native_output.yaml",
            turns: vec![
                calls(
                    &[("get_user_country", "call_tTAThu8l2S9hNky2krdwijGP", "{}")],
                    (66, 12, 0, 0),
                    GPT4O,
                    "resp_68477f0f220081a1a621d6bcdc7f31a50b8591d9001d2329",
                ),
                text(
                    r#"{"city":"Mexico City","country":"Mexico"}"#,
                    (89, 16, 0, 0),
                    GPT4O,
                    "resp_68477f0fde708192989000a62809c6e5020197534e39cc1f",
                ),
            ],
            strip: &[],
        },
        Case {
            file: "test_openai_responses_stream.yaml",
            turns: vec![
                calls(
                    &[(
                        "get_capital",
                        "call_kL0PCQV7M2WMoVX8V8OtYSAL",
                        r#"{"country":"France"}"#,
                    )],
                    (255, 16, 0, 0),
                    GPT4O,
                    "resp_67e554a155508191900ee113293c4c830794405d35281ae2",
                ),
                text(
                    "The capital of France is Paris.",
                    (278, 9, 0, 0),
                    GPT4O,
                    "resp_67e554a21aa88191b65876ac5e5bbe0406c52f0e511c76ed",
                ),
            ],
            strip: &[
                // The recording client sent `instructions: ""` when the test set none; we send
                // no instructions at all for none (or empty) instructions.
                "instructions",
                // The recording client's stream handling of the time used the item id
                // (`fc_...`) as the call id. We use the real `call_id`; `check` asserts that
                // separately (STREAM_CALL_ID).
                "input.*.call_id",
            ],
        },
        Case {
            file: "test_openai_responses_streaming_usage.yaml",
            turns: vec![with_thinking(
                calls(
                    &[(
                        "final_result",
                        "call_CWXgs68YprAjp6t0371hiPOI",
                        r#"{"result":6666}"#,
                    )],
                    (53, 469, 0, 448),
                    GPT5,
                    "resp_0050471a34b36ae60068c97b94a480819587a9d70cf2979b33",
                ),
                // One reasoning item without a summary; its encrypted content is the one of
                // `response.completed` (the added/done events carry older versions).
                (
                    1,
                    "rs_0050471a34b36ae60068c97bac4dcc819595fd0f80d6b3c405",
                    "gAAAAABoyXvynDJ_tG_Xp4Uzjn4eVm80",
                    "",
                ),
            )],
            // `previous_response_id: null` goes with the other nulls; `include`, `reasoning`
            // and `service_tier` are input (extra_body).
            strip: &[],
        },
        Case {
            file: "test_openai_responses_thinking_with_tool_calls.yaml",
            turns: vec![
                with_thinking(
                    calls(
                        &[("update_plan", "call_gL7JE6GDeGGsFubqO2XGytyO", PLAN_ARGS)],
                        (124, 1926, 0, 1792),
                        GPT5,
                        "resp_68c42d28772c819684459966ee2201ed0e8bc41441c948f6",
                    ),
                    (
                        5,
                        "rs_68c42d29124881968e24c1ca8c1fc7860e8bc41441c948f6",
                        "gAAAAABoxC0_aDtrISw_zls0dyams",
                        "**Creating a structured poem**",
                    ),
                ),
                text(
                    POEM,
                    (2087, 124, 2048, 0),
                    GPT5,
                    "resp_68c42d3fd6a08196bce23d6be960ff8a0e8bc41441c948f6",
                ),
            ],
            strip: &[],
        },
        Case {
            file: "test_openai_responses_model_http_error.yaml",
            turns: vec![Outcome::Error {
                status: 400,
                code: "decimal_below_min_value",
                message: "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got -1 instead.",
            }],
            // As in the stream cassette: an empty `instructions` for none.
            strip: &["instructions"],
        },
        Case {
            file: "test_model_name_suggestion[openai-responses].yaml",
            turns: vec![Outcome::Error {
                status: 400,
                code: "model_not_found",
                message: "The requested model 'gpt-5.2-proo' does not exist.",
            }],
            // `include` is taken as input (extra_body), like in the other reasoning cassettes.
            strip: &[],
        },
    ]
}

/// The real call id of the stream cassette, which its second request recorded as the item id.
const STREAM_CALL_ID: &str = "call_kL0PCQV7M2WMoVX8V8OtYSAL";

/// Remove `null` members of objects, recursively. The API reads a null field as an absent one,
/// and the recording client writes nulls for what it leaves unset (`description: null`,
/// `status: null`, `previous_response_id: null`, `reasoning.summary: null`).
fn drop_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), drop_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(drop_nulls).collect()),
        other => other.clone(),
    }
}

/// The recorded request body, normalized for comparison.
fn recorded_request(body: &Value, strip: &[&str]) -> Value {
    let mut v = without(drop_nulls(body), strip);
    // The older recordings echo a tool-call-only response as an empty assistant message before
    // the function call (`{role: assistant, content: ""}`). It says nothing; we send no empty
    // messages.
    if let Some(Value::Array(items)) = v.get_mut("input") {
        items.retain(|i| *i != json!({ "role": "assistant", "content": "" }));
    }
    v
}

// --- input reconstructed from a recorded request --------------------------------------------

fn tools_of(body: &Value) -> (Vec<ToolDefinition>, Vec<ToolDefinition>) {
    let mut function_tools = Vec::new();
    let mut output_tools = Vec::new();
    for t in body["tools"].as_array().into_iter().flatten() {
        let def = ToolDefinition {
            name: t["name"].as_str().unwrap().to_string(),
            description: t["description"].as_str().map(str::to_string),
            parameters: t["parameters"].clone(),
            strict: t["strict"].as_bool(),
        };
        if def.name == OUTPUT_TOOL_NAME {
            output_tools.push(def);
        } else {
            function_tools.push(def);
        }
    }
    (function_tools, output_tools)
}

/// Tools, tool choice and output format as the recorded request states them.
fn params_of(body: &Value) -> ModelRequestParams {
    let (function_tools, output_tools) = tools_of(body);
    let native = body
        .pointer("/text/format")
        .filter(|f| f["type"] == "json_schema")
        .map(|f| OutputSchema {
            name: f["name"].as_str().unwrap().to_string(),
            description: f["description"].as_str().map(str::to_string),
            schema: f["schema"].clone(),
            strict: f["strict"].as_bool(),
        });
    let output_mode = if native.is_some() {
        OutputMode::Native
    } else if !output_tools.is_empty() {
        OutputMode::Tool
    } else {
        OutputMode::Text
    };
    ModelRequestParams {
        function_tools,
        output_tools,
        output_mode,
        output_schema: native,
        allow_text_output: body["tool_choice"] != "required",
    }
}

/// Settings as the recorded request states them. Reasoning options, `include` and
/// `service_tier` have no typed setting: they are input given through `extra_body`.
fn settings_of(body: &Value) -> ModelSettings {
    let mut extra = serde_json::Map::new();
    for k in ["reasoning", "include", "service_tier"] {
        if let Some(v) = body.get(k) {
            extra.insert(k.to_string(), v.clone());
        }
    }
    ModelSettings {
        max_tokens: body["max_output_tokens"].as_u64().map(|n| n as u32),
        temperature: body["temperature"].as_f64(),
        top_p: body["top_p"].as_f64(),
        parallel_tool_calls: body["parallel_tool_calls"].as_bool(),
        extra_body: (!extra.is_empty()).then_some(Value::Object(extra)),
        ..Default::default()
    }
}

fn instructions_of(body: &Value) -> Option<String> {
    body["instructions"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The first request: the prompts of the recorded input.
fn first_request(body: &Value) -> ModelRequest {
    let parts = body["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| match i["role"].as_str() {
            Some("user") => RequestPart::UserPrompt {
                content: i["content"].as_str().unwrap().to_string(),
            },
            Some("system") => RequestPart::SystemPrompt {
                content: i["content"].as_str().unwrap().to_string(),
            },
            other => panic!("unexpected first input item {other:?}: {i}"),
        })
        .collect();
    ModelRequest {
        parts,
        instructions: instructions_of(body),
    }
}

/// A later request: the tool results the recording sent for the calls of our parsed previous
/// response (matched by position, since one recording misnames the call ids).
fn next_request(body: &Value, prev_body: &Value, prev: &ModelResponse) -> ModelRequest {
    let outputs = |b: &Value| -> Vec<Value> {
        b["input"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "function_call_output")
            .cloned()
            .collect()
    };
    let new_outputs = outputs(body).split_off(outputs(prev_body).len());
    let calls: Vec<&ToolCallPart> = prev.tool_calls().collect();
    assert_eq!(
        new_outputs.len(),
        calls.len(),
        "one recorded tool result per call"
    );
    let parts = calls
        .iter()
        .zip(&new_outputs)
        .map(|(call, out)| RequestPart::ToolReturn {
            tool_name: call.tool_name.clone(),
            tool_call_id: call.tool_call_id.clone(),
            content: out["output"].clone(),
        })
        .collect();
    ModelRequest {
        parts,
        instructions: instructions_of(body),
    }
}

// --- checks ----------------------------------------------------------------------------------

fn check_response(case: &str, turn: usize, r: &ModelResponse, e: &Expect) {
    let at = format!("{case} turn {}", turn + 1);
    assert_eq!(r.text_content(), e.text, "{at}: text");
    let got: Vec<(&str, &str, &str)> = r
        .tool_calls()
        .map(|c| {
            (
                c.tool_name.as_str(),
                c.tool_call_id.as_str(),
                c.args.as_str(),
            )
        })
        .collect();
    assert_eq!(got, e.calls.to_vec(), "{at}: tool calls");
    for c in r.tool_calls() {
        let id = c.provider_details.as_ref().and_then(|d| d["id"].as_str());
        assert!(
            id.is_some_and(|id| id.starts_with("fc_")),
            "{at}: item id kept: {c:?}"
        );
    }
    let thinking: Vec<&ResponsePart> = r
        .parts
        .iter()
        .filter(|p| matches!(p, ResponsePart::Thinking { .. }))
        .collect();
    match e.thinking {
        None => assert!(
            thinking.is_empty(),
            "{at}: no thinking expected: {thinking:?}"
        ),
        Some((n, id, sig, content)) => {
            assert_eq!(thinking.len(), n, "{at}: thinking parts");
            for (i, t) in thinking.iter().enumerate() {
                let ResponsePart::Thinking {
                    content: c,
                    id: tid,
                    signature,
                    provider,
                } = t
                else {
                    unreachable!()
                };
                assert_eq!(tid.as_deref(), Some(id), "{at}: thinking id");
                assert_eq!(
                    provider.as_deref(),
                    Some("openai"),
                    "{at}: thinking provider"
                );
                if i == 0 {
                    assert!(
                        signature.as_deref().is_some_and(|s| s.starts_with(sig)),
                        "{at}: signature {signature:?}"
                    );
                    assert!(c.starts_with(content), "{at}: thinking content {c:?}");
                } else {
                    assert!(
                        signature.is_none(),
                        "{at}: only the first part carries the signature"
                    );
                    assert!(!c.is_empty());
                }
            }
        }
    }
    let u = &r.usage;
    assert_eq!(
        (
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.reasoning_tokens
        ),
        e.usage,
        "{at}: usage"
    );
    assert_eq!(u.requests, 1, "{at}: requests");
    assert!(
        u.cost_usd > 0.0 && u.unpriced_requests == 0,
        "{at}: priced: {u:?}"
    );
    assert_eq!(r.finish_reason, Some(e.finish), "{at}: finish reason");
    assert_eq!(r.model_name.as_deref(), Some(e.model), "{at}: model");
    assert_eq!(r.response_id.as_deref(), Some(e.id), "{at}: response id");
    assert_eq!(r.provider.as_deref(), Some("openai"), "{at}: provider");
}

/// Stream events must add up to the final response, and `Done` must come last.
fn check_stream_events(case: &str, events: &[StreamEvent]) -> ModelResponse {
    let Some(StreamEvent::Done(done)) = events.last() else {
        panic!("{case}: the stream did not end with Done: {events:?}");
    };
    let mut text = String::new();
    let mut args = std::collections::BTreeMap::<usize, String>::new();
    for ev in &events[..events.len() - 1] {
        match ev {
            StreamEvent::TextDelta { delta, .. } => text.push_str(delta),
            StreamEvent::ToolCallDelta {
                index, args_delta, ..
            } => args.entry(*index).or_default().push_str(args_delta),
            StreamEvent::ThinkingDelta { .. } => {}
            StreamEvent::Done(_) => panic!("{case}: Done before the end"),
        }
    }
    assert_eq!(text, done.text_content(), "{case}: text deltas add up");
    let streamed: Vec<&String> = args.values().collect();
    let final_args: Vec<&String> = done.tool_calls().map(|c| &c.args).collect();
    assert_eq!(streamed, final_args, "{case}: argument deltas add up");
    done.clone()
}

async fn check(dir: &Path, case: &Case) {
    let cassette: Cassette = common::load(dir, &format!("openai_responses/{}", case.file));
    assert_eq!(
        cassette.interactions.len(),
        case.turns.len(),
        "{}: exchanges",
        case.file
    );
    let server = MockServer::for_cassette(&cassette).await;

    let mut messages: Vec<Message> = Vec::new();
    let mut prev_body: Option<&Value> = None;
    for (turn, (exchange, outcome)) in cassette.interactions.iter().zip(&case.turns).enumerate() {
        let at = format!("{} turn {}", case.file, turn + 1);
        let body = exchange.request.parsed_body.as_ref().unwrap();
        let request = match (prev_body, messages.last()) {
            (Some(pb), Some(Message::Response(prev))) => next_request(body, pb, prev),
            _ => first_request(body),
        };
        messages.push(Message::Request(request));
        let params = params_of(body);
        let settings = settings_of(body);
        let model = model_at(&server.base_url, body["model"].as_str().unwrap());

        let streamed = body["stream"] == true;
        let result = if streamed {
            match model.request_stream(&messages, &params, &settings).await {
                Ok(mut stream) => {
                    let mut events = Vec::new();
                    let mut error = None;
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(ev) => events.push(ev),
                            Err(e) => {
                                error = Some(e);
                                break;
                            }
                        }
                    }
                    match error {
                        Some(e) => Err(e),
                        None => Ok(check_stream_events(&at, &events)),
                    }
                }
                Err(e) => Err(e),
            }
        } else {
            model.request(&messages, &params, &settings).await
        };

        // (b) our request carries what the recorded one did.
        let received = server.received();
        let ours = &received
            .get(turn)
            .unwrap_or_else(|| panic!("{at}: no request"))
            .body;
        assert_eq!(received[turn].path_and_query, "/v1/responses", "{at}: path");
        assert_eq!(
            received[turn]
                .headers
                .get("authorization")
                .and_then(|h| h.to_str().ok()),
            Some(format!("Bearer {KEY}").as_str()),
            "{at}: authorization"
        );
        let expected = recorded_request(body, case.strip);
        let actual = without(drop_nulls(ours), case.strip);
        assert_json_subset(&expected, &actual, "");
        assert_json_subset(&actual, &expected, "");
        // Our own request must equal what `build_request` says, byte-for-value.
        assert_eq!(
            *ours,
            build_request(
                "openai",
                model.name(),
                &messages,
                &params,
                &settings,
                streamed
            ),
            "{at}: build_request"
        );
        if case.strip.contains(&"input.*.call_id") {
            for item in ours["input"].as_array().unwrap() {
                if item["type"] == "function_call" || item["type"] == "function_call_output" {
                    assert_eq!(item["call_id"], STREAM_CALL_ID, "{at}: real call id sent");
                }
            }
        }

        // (a) the response parses into what it says.
        match (outcome, result) {
            (Outcome::Response(e), Ok(r)) => {
                check_response(case.file, turn, &r, e);
                if !streamed {
                    let parsed =
                        parse_response("openai", exchange.response.parsed_body.as_ref().unwrap());
                    assert_eq!(parsed.as_ref(), Ok(&r), "{at}: parse_response agrees");
                }
                messages.push(Message::Response(r));
            }
            (
                Outcome::Error {
                    status,
                    code,
                    message,
                },
                Err(err),
            ) => {
                match &err {
                    ModelError::Http {
                        provider,
                        status: s,
                        message: m,
                        code: c,
                        ..
                    } => {
                        assert_eq!(provider, "openai");
                        assert_eq!(s, status, "{at}: status");
                        assert_eq!(c.as_deref(), Some(*code), "{at}: code");
                        assert_eq!(m, message, "{at}: message");
                    }
                    other => panic!("{at}: expected an HTTP error, got {other:?}"),
                }
                assert!(!err.is_retryable(), "{at}: a 400 is not retryable");
            }
            (Outcome::Response(_), Err(e)) => panic!("{at}: unexpected error {e}"),
            (Outcome::Error { .. }, Ok(r)) => panic!("{at}: expected an error, got {r:?}"),
        }
        prev_body = Some(body);
    }
    assert_eq!(
        server.received().len(),
        case.turns.len(),
        "{}: no retries",
        case.file
    );
}

#[tokio::test]
async fn conformance_with_every_cassette() {
    let Some(dir) = common::cassettes_dir() else {
        return;
    };
    let cases = cases();
    // Every cassette of the folder has a case, so a new one cannot be silently skipped.
    let mut files: Vec<String> = std::fs::read_dir(dir.join("openai_responses"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut covered: Vec<String> = cases.iter().map(|c| c.file.to_string()).collect();
    covered.sort();
    assert_eq!(files, covered, "every cassette has a case");
    for case in &cases {
        check(&dir, case).await;
    }
}

/// The recorded streams, decoded without HTTP, agree with the final response they carry.
#[test]
fn recorded_streams_decode_to_their_completed_response() {
    let Some(dir) = common::cassettes_dir() else {
        return;
    };
    let mut n = 0;
    for (_, body) in recorded_streams(&dir) {
        let (events, response) = streaming::decode_body(
            body.as_bytes(),
            Box::new(ResponsesStreamDecoder::new("openai")),
        )
        .unwrap();
        let completed = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|v| v["type"] == "response.completed")
            .unwrap();
        assert_eq!(
            parse_response("openai", &completed["response"]).unwrap(),
            response
        );
        let mut all = events;
        all.push(StreamEvent::Done(response));
        check_stream_events("recorded stream", &all);
        n += 1;
    }
    assert_eq!(n, 3);
}

fn recorded_streams(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in [
        "test_openai_responses_stream.yaml",
        "test_openai_responses_streaming_usage.yaml",
    ] {
        let c = common::load(dir, &format!("openai_responses/{file}"));
        for (i, x) in c.interactions.iter().enumerate() {
            if x.response.is_stream() {
                out.push((
                    format!("{file}#{i}"),
                    x.response.body.as_ref().unwrap().string.clone(),
                ));
            }
        }
    }
    out
}

// =============================================================================================
// Requests and responses beyond the cassettes
// =============================================================================================

#[test]
fn request_mapping_of_prompts_retries_settings_and_extra_body() {
    let call = ResponsePart::ToolCall(ToolCallPart {
        tool_name: "lookup".into(),
        args: String::new(),
        tool_call_id: "call_1".into(),
        provider_details: Some(json!({ "id": "fc_1" })),
    });
    let messages = vec![
        Message::Request(ModelRequest {
            parts: vec![
                RequestPart::SystemPrompt {
                    content: "sys".into(),
                },
                RequestPart::UserPrompt {
                    content: "hi".into(),
                },
            ],
            instructions: Some("old instructions".into()),
        }),
        Message::Response(ModelResponse {
            parts: vec![
                ResponsePart::Text {
                    content: "let me look".into(),
                },
                // Thinking of another provider is never sent.
                ResponsePart::Thinking {
                    content: "hmm".into(),
                    id: Some("x".into()),
                    signature: Some("sig".into()),
                    provider: Some("anthropic".into()),
                },
                call,
            ],
            ..Default::default()
        }),
        Message::Request(ModelRequest {
            parts: vec![
                RequestPart::RetryPrompt {
                    tool_name: Some("lookup".into()),
                    tool_call_id: Some("call_1".into()),
                    content: "bad args".into(),
                },
                RequestPart::ToolReturn {
                    tool_name: "lookup".into(),
                    tool_call_id: "call_2".into(),
                    content: json!({ "a": 1 }),
                },
                RequestPart::RetryPrompt {
                    tool_name: None,
                    tool_call_id: None,
                    content: "not JSON".into(),
                },
            ],
            instructions: Some("new instructions".into()),
        }),
    ];
    let params = ModelRequestParams {
        function_tools: vec![ToolDefinition {
            name: "lookup".into(),
            description: None,
            parameters: json!({ "type": "object", "properties": {} }),
            strict: None,
        }],
        allow_text_output: true,
        output_mode: OutputMode::Text,
        ..Default::default()
    };
    let settings = ModelSettings {
        max_tokens: Some(100),
        temperature: Some(0.5),
        top_p: Some(0.9),
        seed: Some(7),
        parallel_tool_calls: Some(false),
        extra_body: Some(
            json!({ "store": false, "reasoning": { "effort": "low" }, "temperature": 0.25 }),
        ),
    };
    let body = build_request("openai", "gpt-4.1", &messages, &params, &settings, false);
    assert_eq!(
        body,
        json!({
            "model": "gpt-4.1",
            "instructions": "new instructions",
            "input": [
                { "role": "system", "content": "sys" },
                { "role": "user", "content": "hi" },
                { "role": "assistant", "content": "let me look" },
                // No `id`: the response has no reasoning of ours to pair it with.
                { "type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}" },
                { "type": "function_call_output", "call_id": "call_1", "output": "bad args\n\nFix the errors and try again." },
                { "type": "function_call_output", "call_id": "call_2", "output": "{\"a\":1}" },
                { "role": "user", "content": "not JSON\n\nFix the errors and try again." },
            ],
            "tools": [{ "type": "function", "name": "lookup", "parameters": { "type": "object", "properties": {} }, "strict": false }],
            "tool_choice": "auto",
            "max_output_tokens": 100,
            "temperature": 0.25,
            "top_p": 0.9,
            "parallel_tool_calls": false,
            "stream": false,
            "store": false,
            "reasoning": { "effort": "low" },
        })
    );
}

#[test]
fn reasoning_round_trips_and_text_responses_keep_it_home() {
    let response = json!({
        "id": "resp_1", "model": "gpt-5", "status": "completed",
        "output": [
            { "type": "reasoning", "id": "rs_1", "encrypted_content": "ENC",
              "summary": [{ "type": "summary_text", "text": "a\n\nb" }, { "type": "summary_text", "text": "c" }] },
            { "type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{\"x\":1}" },
        ],
        "usage": { "input_tokens": 10, "output_tokens": 5, "output_tokens_details": { "reasoning_tokens": 3 } }
    });
    let parsed = parse_response("openai", &response).unwrap();
    assert_eq!(parsed.parts.len(), 3);
    assert_eq!(parsed.finish_reason, Some(FinishReason::ToolCall));
    let messages = vec![
        Message::Request(ModelRequest::user("q")),
        Message::Response(parsed.clone()),
    ];
    let body = build_request(
        "openai",
        "gpt-5",
        &messages,
        &Default::default(),
        &Default::default(),
        false,
    );
    assert_eq!(
        body["input"][1],
        json!({ "type": "reasoning", "id": "rs_1", "encrypted_content": "ENC",
                "summary": [{ "type": "summary_text", "text": "a\n\nb" }, { "type": "summary_text", "text": "c" }] })
    );
    assert_eq!(body["input"][2]["id"], "fc_1");
    // Under another provider name, the same thinking is foreign and stays home.
    let body = build_request(
        "azure",
        "gpt-5",
        &messages,
        &Default::default(),
        &Default::default(),
        false,
    );
    assert_eq!(body["input"].as_array().unwrap().len(), 2);
    assert!(body["input"][1].get("id").is_none());

    // Reasoning followed by text: the message keeps no id, so the reasoning is not sent.
    let text_response = parse_response(
        "openai",
        &json!({ "status": "completed", "model": "gpt-5", "output": [
            { "type": "reasoning", "id": "rs_2", "summary": [] },
            { "type": "message", "id": "msg_2", "role": "assistant",
              "content": [{ "type": "output_text", "text": "done" }] },
        ]}),
    )
    .unwrap();
    let messages = vec![
        Message::Request(ModelRequest::user("q")),
        Message::Response(text_response),
        Message::Request(ModelRequest::user("more")),
    ];
    let body = build_request(
        "openai",
        "gpt-5",
        &messages,
        &Default::default(),
        &Default::default(),
        true,
    );
    assert_eq!(
        body["input"],
        json!([
            { "role": "user", "content": "q" },
            { "role": "assistant", "content": "done" },
            { "role": "user", "content": "more" },
        ])
    );
    assert_eq!(body["stream"], true);
}

#[test]
fn native_output_format_and_required_tool_choice() {
    let schema = json!({ "type": "object", "properties": { "a": { "type": "integer" } } });
    let params = ModelRequestParams {
        output_mode: OutputMode::Native,
        output_schema: Some(OutputSchema {
            name: "Out".into(),
            description: Some("the output".into()),
            schema: schema.clone(),
            strict: Some(true),
        }),
        allow_text_output: true,
        ..Default::default()
    };
    let messages = [Message::Request(ModelRequest::user("x"))];
    let body = build_request(
        "openai",
        "m",
        &messages,
        &params,
        &Default::default(),
        false,
    );
    assert_eq!(
        body["text"],
        json!({ "format": { "type": "json_schema", "name": "Out", "description": "the output", "schema": schema, "strict": true } })
    );
    assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());

    let params = ModelRequestParams {
        output_tools: vec![ToolDefinition {
            name: OUTPUT_TOOL_NAME.into(),
            description: Some("final".into()),
            parameters: json!({ "type": "object" }),
            strict: Some(true),
        }],
        output_mode: OutputMode::Tool,
        allow_text_output: false,
        ..Default::default()
    };
    let body = build_request(
        "openai",
        "m",
        &messages,
        &params,
        &Default::default(),
        false,
    );
    assert_eq!(body["tool_choice"], "required");
    assert_eq!(
        body["tools"],
        json!([{ "type": "function", "name": "final_result", "description": "final", "parameters": { "type": "object" }, "strict": true }])
    );
    assert!(body.get("text").is_none());
}

#[test]
fn finish_reasons_failures_and_malformed_bodies() {
    let incomplete = json!({ "status": "incomplete", "model": "gpt-4.1",
        "incomplete_details": { "reason": "max_output_tokens" },
        "output": [{ "type": "message", "content": [{ "type": "output_text", "text": "trunc" }] }],
        "usage": { "input_tokens": 3, "output_tokens": 4 } });
    let r = parse_response("openai", &incomplete).unwrap();
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    assert_eq!(r.text_content(), "trunc");
    assert!(r.usage.cost_usd > 0.0);

    let filtered = json!({ "status": "incomplete", "incomplete_details": { "reason": "content_filter" }, "output": [] });
    assert_eq!(
        parse_response("openai", &filtered).unwrap().finish_reason,
        Some(FinishReason::ContentFilter)
    );

    let refusal = json!({ "output": [{ "type": "message", "content": [{ "type": "refusal", "refusal": "no" }] }] });
    let r = parse_response("openai", &refusal).unwrap();
    assert_eq!(r.text_content(), "no");
    assert_eq!(r.usage.unpriced_requests, 1, "no model name: unpriced");

    let failed = json!({ "status": "failed", "error": { "code": "server_error", "message": "boom" }, "output": [] });
    let e = parse_response("openai", &failed).unwrap_err();
    assert!(matches!(&e, ModelError::Http { status: 500, message, .. } if message == "boom"));
    assert!(e.is_retryable());
    let failed =
        json!({ "status": "failed", "error": { "code": "invalid_prompt", "message": "nope" } });
    assert!(
        !parse_response("openai", &failed)
            .unwrap_err()
            .is_retryable()
    );

    for bad in [
        json!(null),
        json!([1, 2]),
        json!("text"),
        json!({}),
        json!({ "output": 5 }),
        json!({ "output": [7] }),
        json!({ "output": [{ "type": "function_call", "arguments": "{}" }] }),
    ] {
        let e = parse_response("openai", &bad).unwrap_err();
        assert!(
            matches!(e, ModelError::InvalidResponse { .. }),
            "{bad}: {e:?}"
        );
    }
}

fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

#[test]
fn stream_with_reasoning_summaries_failures_and_early_ends() {
    let body = sse(&[
        json!({ "type": "response.created", "response": { "id": "resp_s", "model": "gpt-5", "output": [] } }),
        json!({ "type": "response.output_item.added", "output_index": 0,
                "item": { "type": "reasoning", "id": "rs_s", "summary": [] } }),
        json!({ "type": "response.reasoning_summary_part.added", "item_id": "rs_s", "output_index": 0, "summary_index": 0 }),
        json!({ "type": "response.reasoning_summary_text.delta", "item_id": "rs_s", "output_index": 0, "summary_index": 0, "delta": "think" }),
        json!({ "type": "response.reasoning_summary_text.delta", "item_id": "rs_s", "output_index": 0, "summary_index": 1, "delta": "more" }),
        json!({ "type": "response.output_item.done", "output_index": 0,
                "item": { "type": "reasoning", "id": "rs_s", "encrypted_content": "E",
                          "summary": [{ "type": "summary_text", "text": "think" }, { "type": "summary_text", "text": "more" }] } }),
        json!({ "type": "response.output_item.added", "output_index": 1,
                "item": { "type": "message", "id": "msg_s", "content": [] } }),
        json!({ "type": "response.output_text.delta", "item_id": "msg_s", "output_index": 1, "content_index": 0, "delta": "Hel" }),
        json!({ "type": "response.output_text.delta", "item_id": "msg_s", "output_index": 1, "content_index": 0, "delta": "lo" }),
        json!({ "type": "response.completed", "response": { "id": "resp_s", "model": "gpt-5", "status": "completed",
            "output": [
                { "type": "reasoning", "id": "rs_s", "encrypted_content": "E",
                  "summary": [{ "type": "summary_text", "text": "think" }, { "type": "summary_text", "text": "more" }] },
                { "type": "message", "id": "msg_s", "content": [{ "type": "output_text", "text": "Hello" }] },
            ],
            "usage": { "input_tokens": 5, "output_tokens": 6, "output_tokens_details": { "reasoning_tokens": 2 } } } }),
        json!({ "type": "response.output_text.delta", "output_index": 9, "delta": "after the end, ignored" }),
    ]);
    let (events, response) = streaming::decode_body(
        body.as_bytes(),
        Box::new(ResponsesStreamDecoder::new("openai")),
    )
    .unwrap();
    assert_eq!(
        events,
        vec![
            StreamEvent::ThinkingDelta {
                index: 0,
                delta: "think".into()
            },
            StreamEvent::ThinkingDelta {
                index: 1,
                delta: "more".into()
            },
            StreamEvent::TextDelta {
                index: 2,
                delta: "Hel".into()
            },
            StreamEvent::TextDelta {
                index: 2,
                delta: "lo".into()
            },
        ]
    );
    assert_eq!(response.text_content(), "Hello");
    assert_eq!(response.parts.len(), 3);
    assert_eq!(response.usage.reasoning_tokens, 2);
    assert_eq!(response.finish_reason, Some(FinishReason::Stop));

    let failed = sse(&[
        json!({ "type": "response.created", "response": { "id": "r" } }),
        json!({ "type": "response.failed", "response": { "status": "failed", "error": { "code": "rate_limit_exceeded", "message": "slow down" } } }),
    ]);
    let e = streaming::decode_body(
        failed.as_bytes(),
        Box::new(ResponsesStreamDecoder::new("openai")),
    )
    .unwrap_err();
    assert!(
        matches!(&e, ModelError::Http { status: 429, message, .. } if message == "slow down"),
        "{e:?}"
    );

    let error = sse(&[
        json!({ "type": "error", "code": "server_error", "message": "oops", "param": null }),
    ]);
    let e = streaming::decode_body(
        error.as_bytes(),
        Box::new(ResponsesStreamDecoder::new("openai")),
    )
    .unwrap_err();
    assert!(e.is_retryable() && e.to_string().contains("oops"), "{e:?}");

    let cut = sse(&[json!({ "type": "response.created", "response": { "id": "r" } })]);
    let e = streaming::decode_body(
        cut.as_bytes(),
        Box::new(ResponsesStreamDecoder::new("openai")),
    )
    .unwrap_err();
    assert!(matches!(e, ModelError::Connection { .. }), "{e:?}");

    let json_body = br#"{"id":"resp","output":[]}"#;
    let e = streaming::decode_body(json_body, Box::new(ResponsesStreamDecoder::new("openai")))
        .unwrap_err();
    assert!(matches!(e, ModelError::InvalidResponse { .. }), "{e:?}");

    let not_json = b"event: response.created\ndata: {oops\n\n";
    let e = streaming::decode_body(not_json, Box::new(ResponsesStreamDecoder::new("openai")))
        .unwrap_err();
    assert!(matches!(e, ModelError::InvalidResponse { .. }), "{e:?}");
}

#[tokio::test]
async fn keys_and_configuration() {
    // The official API without a key: a clear configuration error, before any IO.
    let model = OpenAIResponsesModel::with_config(
        "gpt-4.1",
        ClientConfig::new("https://api.openai.com/v1"),
    )
    .unwrap();
    let messages = [Message::Request(ModelRequest::user("x"))];
    let e = model
        .request(&messages, &Default::default(), &Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ModelError::Config(m) if m.contains("OPENAI_API_KEY")),
        "{e:?}"
    );
    assert!(
        model
            .request_stream(&messages, &Default::default(), &Default::default())
            .await
            .is_err()
    );

    // A compatible server without a key: no authorization header, and another provider name.
    let server = MockServer::start(vec![Canned::json(
        200,
        json!({ "id": "r1", "model": "local", "status": "completed",
                "output": [{ "type": "message", "content": [{ "type": "output_text", "text": "ok" }] }] }),
    )])
    .await;
    let config = ClientConfig::new(format!("{}/v1", server.base_url)).with_max_retries(0);
    let model = OpenAIResponsesModel::with_config("local", config)
        .unwrap()
        .with_provider_name("local-server");
    assert_eq!(model.provider(), "local-server");
    let r = model
        .request(&messages, &Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(r.text_content(), "ok");
    assert_eq!(r.provider.as_deref(), Some("local-server"));
    assert!(server.received()[0].headers.get("authorization").is_none());
    // Errors carry the provider name too.
    let e = model
        .request(&messages, &Default::default(), &Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ModelError::Http { provider, status: 500, .. } if provider == "local-server"),
        "{e:?}"
    );
}

#[tokio::test]
async fn retries_honour_retry_after_then_succeed() {
    let ok = json!({ "id": "r", "model": "gpt-4.1", "status": "completed",
        "output": [{ "type": "message", "content": [{ "type": "output_text", "text": "fine" }] }],
        "usage": { "input_tokens": 1, "output_tokens": 1 } });
    let server = MockServer::start(vec![
        Canned::json(
            429,
            json!({ "error": { "message": "slow", "type": "rate_limit" } }),
        )
        .header("retry-after-ms", "10"),
        Canned::json(200, ok),
    ])
    .await;
    let mut config = ClientConfig::new(format!("{}/v1", server.base_url)).with_api_key(KEY);
    config.initial_backoff = std::time::Duration::from_millis(1);
    let model = OpenAIResponsesModel::with_config("gpt-4.1", config).unwrap();
    let r = model
        .request(
            &[Message::Request(ModelRequest::user("x"))],
            &Default::default(),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.text_content(), "fine");
    assert_eq!(server.received().len(), 2);
}

// =============================================================================================
// Whole agent runs against scripted answers
// =============================================================================================

#[derive(Deserialize, schemars::JsonSchema)]
struct CityArgs {
    /// The city.
    city: String,
}

/// A weather report.
#[derive(Debug, PartialEq, Deserialize, schemars::JsonSchema)]
struct Forecast {
    city: String,
    temperature_c: i64,
}

fn answer(id: &str, output: Value, input_tokens: u64, output_tokens: u64) -> Canned {
    Canned::json(
        200,
        json!({ "id": id, "object": "response", "model": "gpt-4.1-2025-04-14", "status": "completed",
                "output": output,
                "usage": { "input_tokens": input_tokens, "output_tokens": output_tokens,
                           "input_tokens_details": { "cached_tokens": 0 },
                           "output_tokens_details": { "reasoning_tokens": 0 } } }),
    )
}

fn weather_tool() -> Tool<()> {
    Tool::plain("get_weather", |a: CityArgs| async move {
        Ok::<_, ToolError>(format!("21 degrees in {}", a.city))
    })
    .description("The weather in a city.")
}

#[tokio::test]
async fn agent_run_with_a_tool_call_then_a_text_answer() {
    let server = MockServer::start(vec![
        answer(
            "resp_1",
            json!([{ "type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
                     "arguments": "{\"city\":\"Paris\"}", "status": "completed" }]),
            50,
            10,
        ),
        answer(
            "resp_2",
            json!([{ "type": "message", "id": "msg_2", "role": "assistant", "status": "completed",
                     "content": [{ "type": "output_text", "text": "It is 21 degrees in Paris.", "annotations": [] }] }]),
            80,
            12,
        ),
    ])
    .await;
    let agent = Agent::<(), String>::builder("weather")
        .model(model_at(&server.base_url, "gpt-4.1"))
        .instructions("Answer briefly.")
        .tool(weather_tool())
        .build()
        .unwrap();
    let result = agent.run("Weather in Paris?", ()).await.unwrap();
    assert_eq!(result.output, "It is 21 degrees in Paris.");
    assert_eq!(result.usage.requests, 2);
    assert_eq!(result.usage.input_tokens, 130);
    assert_eq!(result.usage.output_tokens, 22);
    assert_eq!(result.usage.tool_calls, 1);
    assert!(result.usage.cost_usd > 0.0);

    let received = server.received();
    assert_eq!(received.len(), 2);
    let first = &received[0].body;
    assert_eq!(first["instructions"], "Answer briefly.");
    assert_eq!(first["tool_choice"], "auto");
    assert_eq!(first["tools"][0]["name"], "get_weather");
    assert_eq!(first["tools"][0]["description"], "The weather in a city.");
    let second = &received[1].body;
    assert_eq!(second["instructions"], "Answer briefly.");
    assert_eq!(
        second["input"],
        json!([
            { "role": "user", "content": "Weather in Paris?" },
            { "type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" },
            { "type": "function_call_output", "call_id": "call_1", "output": "21 degrees in Paris" },
        ])
    );
}

#[tokio::test]
async fn agent_run_with_structured_output_through_the_output_tool() {
    let server = MockServer::start(vec![
        answer(
            "resp_1",
            json!([{ "type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
                     "arguments": "{\"city\":\"Oslo\"}" }]),
            40,
            8,
        ),
        answer(
            "resp_2",
            json!([{ "type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "final_result",
                     "arguments": "{\"city\":\"Oslo\",\"temperature_c\":21}" }]),
            60,
            9,
        ),
    ])
    .await;
    let agent = Agent::<(), Forecast>::builder("forecast")
        .model(model_at(&server.base_url, "gpt-4.1-mini"))
        .tool(weather_tool())
        .build()
        .unwrap();
    let result = agent.run("Forecast for Oslo", ()).await.unwrap();
    assert_eq!(
        result.output,
        Forecast {
            city: "Oslo".into(),
            temperature_c: 21
        }
    );
    assert_eq!(result.usage.requests, 2);
    assert_eq!(result.usage.input_tokens, 100);
    assert_eq!(result.usage.output_tokens, 17);
    let first = &server.received()[0].body;
    assert_eq!(first["tool_choice"], "required");
    let names: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_weather", "final_result"]);
}

#[tokio::test]
async fn agent_run_with_native_structured_output() {
    let server = MockServer::start(vec![answer(
        "resp_1",
        json!([{ "type": "message", "content": [{ "type": "output_text",
                 "text": "{\"city\":\"Rome\",\"temperature_c\":30}" }] }]),
        20,
        7,
    )])
    .await;
    let agent = Agent::<(), Forecast>::builder("native")
        .model(model_at(&server.base_url, "gpt-4.1"))
        .output_mode(OutputMode::Native)
        .build()
        .unwrap();
    let result = agent.run("Forecast for Rome", ()).await.unwrap();
    assert_eq!(
        result.output,
        Forecast {
            city: "Rome".into(),
            temperature_c: 30
        }
    );
    assert_eq!(result.usage.requests, 1);
    assert_eq!(
        (result.usage.input_tokens, result.usage.output_tokens),
        (20, 7)
    );
    let body = &server.received()[0].body;
    assert_eq!(body["text"]["format"]["type"], "json_schema");
    assert_eq!(body["text"]["format"]["name"], "Forecast");
    assert!(body.get("tools").is_none());
}

// =============================================================================================
// Property tests: nothing the provider sends can make us panic
// =============================================================================================

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z_.]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("message"),
            Just("function_call"),
            Just("reasoning"),
            Just("output_text"),
            Just("refusal"),
            Just("completed"),
            Just("failed"),
            Just("incomplete"),
            Just("max_output_tokens"),
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("type".to_string()),
            Just("output".to_string()),
            Just("status".to_string()),
            Just("content".to_string()),
            Just("text".to_string()),
            Just("summary".to_string()),
            Just("arguments".to_string()),
            Just("call_id".to_string()),
            Just("name".to_string()),
            Just("id".to_string()),
            Just("usage".to_string()),
            Just("error".to_string()),
            Just("input_tokens".to_string()),
            Just("incomplete_details".to_string()),
            Just("reason".to_string()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn recorded_bodies() -> Vec<Value> {
    let mut out = vec![json!({ "output": [
        { "type": "reasoning", "id": "rs", "encrypted_content": "E", "summary": [{ "text": "t" }] },
        { "type": "function_call", "id": "fc", "call_id": "c", "name": "n", "arguments": "{}" },
        { "type": "message", "content": [{ "type": "output_text", "text": "x" }] },
    ], "status": "completed", "usage": { "input_tokens": 1 } })];
    if let Some(dir) = common::cassettes_dir() {
        for file in [
            "test_openai_responses_model_simple_response_with_tool_call.yaml",
            "test_native_output.yaml",
        ] {
            let c = common::load(&dir, &format!("openai_responses/{file}"));
            out.extend(
                c.interactions
                    .iter()
                    .filter_map(|i| i.response.parsed_body.clone()),
            );
        }
    }
    out
}

/// Every JSON-pointer path of `v`.
fn paths(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                paths(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                paths(x, p, out);
            }
        }
        _ => {}
    }
}

fn arb_stream_event() -> impl Strategy<Value = String> {
    let types = prop_oneof![
        Just("response.created"),
        Just("response.output_item.added"),
        Just("response.output_item.done"),
        Just("response.output_text.delta"),
        Just("response.refusal.delta"),
        Just("response.function_call_arguments.delta"),
        Just("response.function_call_arguments.done"),
        Just("response.reasoning_summary_part.added"),
        Just("response.reasoning_summary_text.delta"),
        Just("response.completed"),
        Just("response.incomplete"),
        Just("response.failed"),
        Just("error"),
        Just("other"),
    ];
    (
        types,
        arb_json(),
        arb_json(),
        any::<Option<u8>>(),
        any::<Option<u8>>(),
    )
        .prop_map(|(ty, a, b, oi, si)| {
            let mut v =
                json!({ "type": ty, "item": a, "response": b.clone(), "delta": b, "item_id": "x" });
            if let Some(i) = oi {
                v["output_index"] = json!(i % 3);
            }
            if let Some(i) = si {
                v["summary_index"] = json!(i % 3);
                v["content_index"] = json!(i % 3);
            }
            format!("event: {ty}\ndata: {v}\n\n")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn parse_response_never_panics_on_arbitrary_json(v in arb_json()) {
        let _ = parse_response("openai", &v);
        let _ = parse_response("openai", &json!({ "output": [v.clone()] }));
        let _ = parse_response("openai", &json!({ "status": "incomplete", "output": [], "usage": v.clone(), "incomplete_details": v }));
    }

    #[test]
    fn parse_response_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            let _ = parse_response("openai", &v);
        }
    }

    #[test]
    fn parse_response_never_panics_on_mutated_recordings(
        which in any::<prop::sample::Index>(),
        path in any::<prop::sample::Index>(),
        replacement in arb_json(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bodies = recorded_bodies();
        let body = &bodies[which.index(bodies.len())];
        // A field replaced by anything.
        let mut all = Vec::new();
        paths(body, String::new(), &mut all);
        let mut mutated = body.clone();
        if let Some(slot) = mutated.pointer_mut(&all[path.index(all.len())]) {
            *slot = replacement;
        }
        let _ = parse_response("openai", &mutated);
        // The serialized body cut short: whatever still parses as JSON must not panic us.
        let text = serde_json::to_vec(body).unwrap();
        let n = cut.index(text.len() + 1);
        if let Ok(v) = serde_json::from_slice::<Value>(&text[..n]) {
            let _ = parse_response("openai", &v);
        }
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = streaming::decode_body(&bytes, Box::new(ResponsesStreamDecoder::new("openai")));
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_events(events in prop::collection::vec(arb_stream_event(), 0..12)) {
        let body = events.concat();
        let _ = streaming::decode_body(body.as_bytes(), Box::new(ResponsesStreamDecoder::new("openai")));
    }
}

/// Every truncation of every recorded stream decodes to a response or an error, never a panic;
/// only a stream that reached `response.completed` yields a response.
#[test]
fn decoder_never_panics_on_truncated_recorded_streams() {
    let Some(dir) = common::cassettes_dir() else {
        return;
    };
    for (name, body) in recorded_streams(&dir) {
        let bytes = body.as_bytes();
        let completed_at = body.find("event: response.completed").unwrap();
        for n in 0..=bytes.len() {
            let result = streaming::decode_body(
                &bytes[..n],
                Box::new(ResponsesStreamDecoder::new("openai")),
            );
            if n <= completed_at {
                assert!(result.is_err(), "{name}: cut at {n} still gave a response");
            }
            if n == bytes.len() {
                assert!(result.is_ok(), "{name}: the whole stream decodes");
            }
        }
    }
}
