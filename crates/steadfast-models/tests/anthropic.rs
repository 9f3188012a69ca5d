//! Anthropic Messages provider: conformance against the recorded cassettes, agent runs over real
//! HTTP against a local server, request mapping, and parser robustness (proptest).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use steadfast_core::{
    Agent, FinishReason, Message, Model, ModelError, ModelRequest, ModelRequestParams,
    ModelResponse, ModelSettings, OUTPUT_TOOL_NAME, OutputMode, OutputSchema, RequestPart,
    ResponsePart, StreamEvent, Tool, ToolDefinition, ToolError,
};
use steadfast_models::ClientConfig;
use steadfast_models::anthropic::{
    AnthropicModel, AnthropicStreamDecoder, build_request, parse_response,
};
use steadfast_models::streaming::decode_body;

const KEY: &str = "test-key";

fn model_at(base_url: &str, name: &str) -> AnthropicModel {
    let config = ClientConfig::new(base_url)
        .with_api_key(KEY)
        .with_max_retries(0);
    AnthropicModel::with_config(name, config).expect("model")
}

// =============================================================================================
// Conformance: every cassette in anthropic/
// =============================================================================================

/// What the text of a response must be.
#[derive(Debug, Clone, Copy)]
enum Text {
    /// No text at all.
    Empty,
    /// Exactly this.
    Is(&'static str),
    /// Starting with this (long answers).
    Starts(&'static str),
}

/// What one recorded exchange must give.
#[derive(Debug, Clone)]
enum Expect {
    Ok {
        /// Part kinds in order: `text`, `tool_call`, `thinking`.
        kinds: &'static [&'static str],
        text: Text,
        /// Tool calls in order: (name, arguments as JSON text), compared as JSON values.
        tools: &'static [(&'static str, &'static str)],
        /// (thinking text prefix, signature prefix).
        thinking: Option<(&'static str, &'static str)>,
        /// (input tokens, output tokens).
        usage: (u64, u64),
        finish: FinishReason,
        model: &'static str,
        id: &'static str,
    },
    Err {
        status: u16,
        code: &'static str,
        message: &'static str,
    },
}

/// A cassette, what its exchanges must give, and how its recorded requests differ from ours for
/// reasons that are not part of the input (each normalizer says why).
struct Case {
    file: &'static str,
    exchanges: Vec<Expect>,
    normalize: fn(Value) -> Value,
}

fn as_is(v: Value) -> Value {
    v
}

/// `test_anthropic_native_tool_search_streaming.yaml` uses Anthropic's server-side tool search,
/// which we do not implement (the core has no server-tool parts). We assert everything else:
/// function tools, messages, text and the function `tool_use` sent back.
fn tool_search_normalize(v: Value) -> Value {
    // `defer_loading` belongs to tool search: it hides a tool until the search finds it.
    let mut v = without(v, &["tools.*.defer_loading"]);
    // The server tool's own definition (`{type: tool_search_tool_bm25_20251119, name}`).
    if let Some(Value::Array(tools)) = v.get_mut("tools") {
        tools.retain(|t| t.get("type").is_none());
    }
    if let Some(Value::Array(messages)) = v.get_mut("messages") {
        for m in messages {
            let Some(Value::Array(blocks)) = m.get_mut("content") else {
                continue;
            };
            // The `server_tool_use` and `tool_search_tool_result` blocks of the server-side
            // search are dropped when we parse, so they are not sent back.
            blocks.retain(|b| {
                !matches!(
                    b.get("type").and_then(Value::as_str),
                    Some("server_tool_use" | "tool_search_tool_result")
                )
            });
            // The recording client sent the tool's string return as a one-element list of text
            // blocks; we send the string itself, which the API treats the same.
            for b in blocks {
                if b.get("type").and_then(Value::as_str) == Some("tool_result")
                    && let Some(list @ Value::Array(_)) = b.get("content")
                {
                    b["content"] = Value::String(blocks_text(list));
                }
            }
        }
    }
    v
}

fn blocks_text(list: &Value) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect()
}

fn cases() -> Vec<Case> {
    use Expect::*;
    use FinishReason::*;
    vec![
        Case {
            file: "test_anthropic_model_instructions.yaml",
            exchanges: vec![Ok {
                kinds: &["text"],
                text: Text::Is("The capital of France is Paris."),
                tools: &[],
                thinking: None,
                usage: (20, 10),
                finish: Stop,
                model: "claude-3-opus-20240229",
                id: "msg_01Fg1JVgvCYUHWsxrj9GkpEv",
            }],
            normalize: as_is,
        },
        Case {
            file: "test_anthropic_tool_output.yaml",
            exchanges: vec![
                Ok {
                    kinds: &["tool_call"],
                    text: Text::Empty,
                    tools: &[("get_user_country", "{}")],
                    thinking: None,
                    usage: (445, 23),
                    finish: ToolCall,
                    model: "claude-sonnet-4-5-20250929",
                    id: "msg_012TXW181edhmR5JCsQRsBKx",
                },
                Ok {
                    kinds: &["tool_call"],
                    text: Text::Empty,
                    tools: &[(
                        "final_result",
                        r#"{"city":"Mexico City","country":"Mexico"}"#,
                    )],
                    thinking: None,
                    usage: (497, 56),
                    finish: ToolCall,
                    model: "claude-sonnet-4-5-20250929",
                    id: "msg_01K4Fzcf1bhiyLzHpwLdrefj",
                },
            ],
            normalize: as_is,
        },
        Case {
            file: "test_multiple_parallel_tool_calls.yaml",
            exchanges: vec![
                Ok {
                    kinds: &["text", "tool_call", "tool_call", "tool_call", "tool_call"],
                    text: Text::Is(
                        "I'll help you find out who is the youngest by retrieving information \
                         about each family member. I'll retrieve their entity information to \
                         compare their ages.",
                    ),
                    tools: &[
                        ("retrieve_entity_info", r#"{"name":"Alice"}"#),
                        ("retrieve_entity_info", r#"{"name":"Bob"}"#),
                        ("retrieve_entity_info", r#"{"name":"Charlie"}"#),
                        ("retrieve_entity_info", r#"{"name":"Daisy"}"#),
                    ],
                    thinking: None,
                    usage: (423, 202),
                    finish: ToolCall,
                    model: "claude-haiku-4-5-20251001",
                    id: "msg_011S3wxtqL5CVescWqS3zeg2",
                },
                Ok {
                    kinds: &["text"],
                    text: Text::Starts(
                        "Based on the retrieved information, we can see the family relationships:",
                    ),
                    tools: &[],
                    thinking: None,
                    usage: (771, 77),
                    finish: Stop,
                    model: "claude-haiku-4-5-20251001",
                    id: "msg_01JVqZPgDwmnyb2kKC3MwCVf",
                },
            ],
            normalize: as_is,
        },
        Case {
            file: "test_anthropic_prompted_output.yaml",
            exchanges: vec![
                Ok {
                    kinds: &["tool_call"],
                    text: Text::Empty,
                    tools: &[("get_user_country", "{}")],
                    thinking: None,
                    usage: (459, 38),
                    finish: ToolCall,
                    model: "claude-sonnet-4-5-20250929",
                    id: "msg_018YiNXULHGpoKoHkTt6GivG",
                },
                Ok {
                    kinds: &["text"],
                    text: Text::Is(r#"{"city": "Mexico City", "country": "Mexico"}"#),
                    tools: &[],
                    thinking: None,
                    usage: (510, 17),
                    finish: Stop,
                    model: "claude-sonnet-4-5-20250929",
                    id: "msg_01WiRVmLhCrJbJZRqmAWKv3X",
                },
            ],
            normalize: as_is,
        },
        Case {
            file: "test_no_tools_native_output_strict_true.yaml",
            exchanges: vec![Ok {
                kinds: &["text"],
                text: Text::Is(
                    r#"{"city":"London","country":"United Kingdom","population":9002488}"#,
                ),
                tools: &[],
                thinking: None,
                usage: (196, 19),
                finish: Stop,
                model: "claude-sonnet-4-5-20250929",
                id: "msg_01Hfgh959WDWjL5jkM2FQXTL",
            }],
            normalize: as_is,
        },
        Case {
            file: "test_anthropic_tool_with_thinking.yaml",
            exchanges: vec![
                Ok {
                    kinds: &["thinking", "text", "tool_call"],
                    text: Text::Is(
                        "I'll help you find the largest city in your country. First, let me \
                         determine which country you're from.",
                    ),
                    tools: &[("get_user_country", "{}")],
                    thinking: Some((
                        "The user is asking about the largest city in \"the user country\".",
                        "EqEECkYICxgCKkAo3UA4WwDbB8ih",
                    )),
                    usage: (398, 155),
                    finish: ToolCall,
                    model: "claude-sonnet-4-20250514",
                    id: "msg_01WvueFjZVbHcj4H4zUzeGv2",
                },
                Ok {
                    kinds: &["text"],
                    text: Text::Starts(
                        "Based on the information that you're from Mexico, the largest city in \
                         your country is **Mexico City**",
                    ),
                    tools: &[],
                    thinking: None,
                    usage: (566, 126),
                    finish: Stop,
                    model: "claude-sonnet-4-20250514",
                    id: "msg_01SZ8KP8HhB1TxP6Ybbv6iKz",
                },
            ],
            normalize: as_is,
        },
        Case {
            file: "test_anthropic_model_thinking_part_stream.yaml",
            exchanges: vec![Ok {
                kinds: &["thinking", "text"],
                text: Text::Starts("Here are the basic"),
                tools: &[],
                thinking: Some((
                    "This is a straightforward question about pedestrian safety. I should \
                     provide clear, helpful advice about how to safely cross a street. This is \
                     basic safety information that could help prevent accidents.",
                    "EvMCCkYICxgCKkCHP2cSuEdcJK",
                )),
                usage: (43, 282),
                finish: Stop,
                model: "claude-sonnet-4-20250514",
                id: "msg_01ALwQ87pTS7hH1PjSdC9wJD",
            }],
            normalize: as_is,
        },
        Case {
            file: "test_anthropic_native_tool_search_streaming.yaml",
            exchanges: vec![
                Ok {
                    // Blocks 1 and 2 (server tool use and its result) are skipped; the two text
                    // blocks stay separate parts.
                    kinds: &["text", "text", "tool_call"],
                    text: Text::Is(
                        "Let me search for a tool that can provide current exchange rate \
                         information.I found the right tool! Let me fetch the current USD to EUR \
                         exchange rate for you.",
                    ),
                    tools: &[(
                        "get_exchange_rate",
                        r#"{"from_currency":"USD","to_currency":"EUR"}"#,
                    )],
                    thinking: None,
                    // `message_delta` repeats the input count, grown by the server-side search
                    // (702 at `message_start`); the last report wins.
                    usage: (1591, 175),
                    finish: ToolCall,
                    model: "claude-sonnet-4-6",
                    id: "msg_01E3Wn1NynZw9FALZ68znj9S",
                },
                Ok {
                    kinds: &["text"],
                    text: Text::Starts("The current exchange rate is **1 USD = 0.92 EUR**."),
                    tools: &[],
                    thinking: None,
                    usage: (1007, 59),
                    finish: Stop,
                    model: "claude-sonnet-4-6",
                    id: "msg_011oC3yivUSFxqbo3krQu9Nt",
                },
            ],
            normalize: tool_search_normalize,
        },
        Case {
            file: "test_request_stream_fallback_for_high_max_tokens.yaml",
            exchanges: vec![Ok {
                kinds: &["text"],
                text: Text::Is("2"),
                tools: &[],
                thinking: None,
                usage: (20, 5),
                finish: Stop,
                model: "claude-sonnet-4-5-20250929",
                id: "msg_018E1hg8GoVTGEKQY3ovMcSJ",
            }],
            normalize: as_is,
        },
        Case {
            file: "test_anthropic_explicit_effort_xhigh_unsupported_model_errors.yaml",
            exchanges: vec![Err {
                status: 400,
                code: "invalid_request_error",
                message: "This model does not support effort level 'xhigh'. Supported levels: \
                          high, low, max, medium.",
            }],
            normalize: as_is,
        },
        Case {
            file: "test_model_name_suggestion[anthropic].yaml",
            exchanges: vec![Err {
                status: 404,
                code: "not_found_error",
                message: "model: claude-sonet-4-5",
            }],
            normalize: as_is,
        },
    ]
}

/// The parameters the recording client must have been given, read back from its request.
fn params_from(recorded: &Value) -> ModelRequestParams {
    let mut function_tools = Vec::new();
    let mut output_tools = Vec::new();
    for t in recorded["tools"].as_array().into_iter().flatten() {
        // Server-side tools (`{type: ..., name}`) have no ToolDefinition; see the tool-search case.
        if t.get("type").is_some() {
            continue;
        }
        let def = ToolDefinition {
            name: t["name"].as_str().unwrap().to_string(),
            description: t["description"].as_str().map(str::to_string),
            parameters: t["input_schema"].clone(),
            strict: t["strict"].as_bool(),
        };
        if def.name == OUTPUT_TOOL_NAME {
            output_tools.push(def);
        } else {
            function_tools.push(def);
        }
    }
    let native = recorded.pointer("/output_config/format/schema");
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
        output_schema: native.map(|s| OutputSchema {
            name: "output".into(),
            description: None,
            schema: s.clone(),
            strict: Some(true),
        }),
        allow_text_output: recorded
            .pointer("/tool_choice/type")
            .and_then(Value::as_str)
            != Some("any"),
    }
}

/// The settings the recording client must have been given.
fn settings_from(recorded: &Value) -> ModelSettings {
    let max_tokens = recorded["max_tokens"].as_u64().unwrap() as u32;
    let mut extra = serde_json::Map::new();
    if let Some(t) = recorded.get("thinking") {
        extra.insert("thinking".into(), t.clone());
    }
    // `output_config.format` comes from the native output mode; the rest (effort) is a setting.
    if let Some(Value::Object(oc)) = recorded.get("output_config") {
        let mut oc = oc.clone();
        oc.remove("format");
        if !oc.is_empty() {
            extra.insert("output_config".into(), Value::Object(oc));
        }
    }
    ModelSettings {
        // 4096 is our default too: leave it unset so the default is what gets checked.
        max_tokens: (max_tokens != 4096).then_some(max_tokens),
        temperature: recorded["temperature"].as_f64(),
        top_p: recorded["top_p"].as_f64(),
        extra_body: (!extra.is_empty()).then_some(Value::Object(extra)),
        ..Default::default()
    }
}

/// The user turns the recording client sent after the last assistant turn, as request parts.
/// Tool results get their tool name from the calls in `history`.
fn new_user_parts(recorded: &Value, history: &[Message]) -> Vec<RequestPart> {
    let names: HashMap<String, String> = history
        .iter()
        .filter_map(Message::as_response)
        .flat_map(|r| r.tool_calls())
        .map(|c| (c.tool_call_id.clone(), c.tool_name.clone()))
        .collect();
    let messages = recorded["messages"].as_array().unwrap();
    let start = messages
        .iter()
        .rposition(|m| m["role"] == "assistant")
        .map_or(0, |i| i + 1);
    let mut parts = Vec::new();
    for m in &messages[start..] {
        assert_eq!(m["role"], "user");
        let blocks = match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(a) => a.clone(),
            other => panic!("unexpected content {other}"),
        };
        for b in blocks {
            match b["type"].as_str().unwrap() {
                "text" => parts.push(RequestPart::UserPrompt {
                    content: b["text"].as_str().unwrap().to_string(),
                }),
                "tool_result" => {
                    let id = b["tool_use_id"].as_str().unwrap().to_string();
                    let tool_name = names.get(&id).cloned().expect("a result for a known call");
                    let content = match &b["content"] {
                        Value::String(s) => s.clone(),
                        list => blocks_text(list),
                    };
                    if b["is_error"].as_bool() == Some(true) {
                        parts.push(RequestPart::RetryPrompt {
                            tool_name: Some(tool_name),
                            tool_call_id: Some(id),
                            content,
                        });
                    } else {
                        parts.push(RequestPart::ToolReturn {
                            tool_name,
                            tool_call_id: id,
                            content: Value::String(content),
                        });
                    }
                }
                other => panic!("unexpected user block {other}"),
            }
        }
    }
    parts
}

/// Drain a stream, check the deltas against the final response, and return it.
async fn collect_stream(
    mut stream: steadfast_core::ModelStream,
) -> Result<ModelResponse, ModelError> {
    let mut text: HashMap<usize, String> = HashMap::new();
    let mut thinking: HashMap<usize, String> = HashMap::new();
    let mut args: HashMap<usize, String> = HashMap::new();
    let mut done = None;
    while let Some(ev) = stream.next().await {
        assert!(done.is_none(), "an event after Done");
        match ev? {
            StreamEvent::TextDelta { index, delta } => {
                text.entry(index).or_default().push_str(&delta)
            }
            StreamEvent::ThinkingDelta { index, delta } => {
                thinking.entry(index).or_default().push_str(&delta)
            }
            StreamEvent::ToolCallDelta {
                index, args_delta, ..
            } => args.entry(index).or_default().push_str(&args_delta),
            StreamEvent::Done(r) => done = Some(r),
        }
    }
    let response = done.expect("the stream ends with Done");
    for (i, part) in response.parts.iter().enumerate() {
        match part {
            ResponsePart::Text { content } => assert_eq!(text.get(&i), Some(content)),
            ResponsePart::Thinking { content, .. } => {
                assert_eq!(thinking.get(&i).map_or("", String::as_str), content)
            }
            ResponsePart::ToolCall(c) => assert_eq!(args.get(&i), Some(&c.args)),
        }
    }
    Ok(response)
}

fn kind_of(p: &ResponsePart) -> &'static str {
    match p {
        ResponsePart::Text { .. } => "text",
        ResponsePart::ToolCall(_) => "tool_call",
        ResponsePart::Thinking { .. } => "thinking",
    }
}

fn check_response(file: &str, i: usize, r: &ModelResponse, expect: &Expect) {
    let ctx = format!("{file} exchange {i}");
    let Expect::Ok {
        kinds,
        text,
        tools,
        thinking,
        usage,
        finish,
        model,
        id,
    } = expect
    else {
        panic!("{ctx}: expected an error, got {r:?}");
    };
    let got_kinds: Vec<&str> = r.parts.iter().map(kind_of).collect();
    assert_eq!(&got_kinds, kinds, "{ctx}: part kinds");
    let content = r.text_content();
    match text {
        Text::Empty => assert_eq!(content, "", "{ctx}"),
        Text::Is(t) => assert_eq!(content, *t, "{ctx}"),
        Text::Starts(t) => assert!(content.starts_with(t), "{ctx}: text {content:?}"),
    }
    let calls: Vec<_> = r.tool_calls().collect();
    assert_eq!(calls.len(), tools.len(), "{ctx}: tool calls");
    for (call, (name, args)) in calls.iter().zip(tools.iter()) {
        assert_eq!(call.tool_name, *name, "{ctx}");
        let got: Value = serde_json::from_str(&call.args).expect("args are JSON");
        let want: Value = serde_json::from_str(args).unwrap();
        assert_eq!(got, want, "{ctx}: args of {name}");
        assert!(
            call.tool_call_id.starts_with("toolu_"),
            "{ctx}: id {}",
            call.tool_call_id
        );
    }
    let found = r.parts.iter().find_map(|p| match p {
        ResponsePart::Thinking {
            content,
            signature,
            provider,
            ..
        } => Some((content, signature, provider)),
        _ => None,
    });
    match (thinking, found) {
        (None, None) => {}
        (Some((t, sig)), Some((content, signature, provider))) => {
            assert!(content.starts_with(t), "{ctx}: thinking {content:?}");
            let signature = signature.as_deref().unwrap_or_default();
            assert!(signature.starts_with(sig), "{ctx}: signature {signature}");
            assert!(signature.ends_with('='), "{ctx}: the whole signature");
            assert_eq!(provider.as_deref(), Some("anthropic"), "{ctx}");
        }
        (want, got) => panic!("{ctx}: thinking {want:?} vs {got:?}"),
    }
    assert_eq!(r.usage.requests, 1, "{ctx}");
    assert_eq!(
        (r.usage.input_tokens, r.usage.output_tokens),
        *usage,
        "{ctx}: usage"
    );
    assert_eq!(
        (r.usage.cache_read_tokens, r.usage.cache_write_tokens),
        (0, 0),
        "{ctx}"
    );
    if steadfast_models::price_of(model).is_some() {
        assert!(r.usage.cost_usd > 0.0, "{ctx}: cost");
        assert_eq!(r.usage.unpriced_requests, 0, "{ctx}");
    } else {
        assert_eq!(r.usage.unpriced_requests, 1, "{ctx}: unpriced");
    }
    assert_eq!(r.finish_reason, Some(*finish), "{ctx}: finish");
    assert_eq!(r.model_name.as_deref(), Some(*model), "{ctx}");
    assert_eq!(r.response_id.as_deref(), Some(*id), "{ctx}");
    assert_eq!(r.provider.as_deref(), Some("anthropic"), "{ctx}");
}

fn check_error(file: &str, i: usize, e: &ModelError, expect: &Expect) {
    let Expect::Err {
        status,
        code,
        message,
    } = expect
    else {
        panic!("{file} exchange {i}: unexpected error {e}");
    };
    match e {
        ModelError::Http {
            provider,
            status: s,
            message: m,
            code: c,
            ..
        } => {
            assert_eq!(provider, "anthropic");
            assert_eq!(s, status, "{file}");
            assert_eq!(m, message, "{file}");
            assert_eq!(c.as_deref(), Some(*code), "{file}");
        }
        other => panic!("{file}: expected an HTTP error, got {other:?}"),
    }
    assert!(!e.is_retryable(), "{file}: {status} must not be retried");
}

/// Replay one cassette through the real client and check responses and requests.
async fn check(dir: &std::path::Path, case: &Case) {
    let cassette = load(dir, &format!("anthropic/{}", case.file));
    assert_eq!(
        cassette.interactions.len(),
        case.exchanges.len(),
        "{}: exchanges",
        case.file
    );
    let server = MockServer::for_cassette(&cassette).await;
    let first = cassette.interactions[0]
        .request
        .parsed_body
        .as_ref()
        .unwrap();
    let model = model_at(&server.base_url, first["model"].as_str().unwrap());
    let mut history: Vec<Message> = Vec::new();

    for (i, (inter, expect)) in cassette
        .interactions
        .iter()
        .zip(&case.exchanges)
        .enumerate()
    {
        let recorded = inter.request.parsed_body.as_ref().expect("a JSON request");
        history.push(Message::Request(ModelRequest {
            parts: new_user_parts(recorded, &history),
            instructions: recorded["system"].as_str().map(str::to_string),
        }));
        let params = params_from(recorded);
        let settings = settings_from(recorded);

        let result = if inter.response.is_stream() {
            match model.request_stream(&history, &params, &settings).await {
                Ok(stream) => collect_stream(stream).await,
                Err(e) => Err(e),
            }
        } else {
            model.request(&history, &params, &settings).await
        };
        match &result {
            Ok(r) => check_response(case.file, i, r, expect),
            Err(e) => check_error(case.file, i, e, expect),
        }

        // (b) Our request carries what the recorded one did.
        let received = server.received();
        assert_eq!(
            received.len(),
            i + 1,
            "{}: one HTTP request per exchange",
            case.file
        );
        let got = &received[i];
        // The recorded URI ends in `?beta=true`, a marker of the recording SDK's beta namespace
        // that selects nothing on the server; the plain endpoint is the same API.
        assert_eq!(got.path_and_query, "/v1/messages", "{}", case.file);
        assert_eq!(got.headers["x-api-key"], KEY);
        assert_eq!(got.headers["anthropic-version"], "2023-06-01");
        // The recorded bodies hold no client-only fields elsewhere: `stream`, `tool_choice:
        // auto`, `is_error: false` and `description: ''` are all things we send as well, so only
        // the tool-search case needs normalizing (see `tool_search_normalize`).
        let expected = (case.normalize)(recorded.clone());
        assert_json_subset(&expected, &got.body, case.file);

        if let Ok(r) = result {
            history.push(Message::Response(r));
        }
    }
}

#[tokio::test]
async fn conformance_all_cassettes() {
    let Some(dir) = cassettes_dir() else {
        return;
    };
    let cases = cases();
    // Every file in the folder has a case, and every case a file.
    let mut on_disk: Vec<String> = std::fs::read_dir(dir.join("anthropic"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let mut covered: Vec<String> = cases.iter().map(|c| c.file.to_string()).collect();
    covered.sort();
    assert_eq!(on_disk, covered);
    assert_eq!(on_disk.len(), 11);
    for case in &cases {
        check(&dir, case).await;
    }
}

// =============================================================================================
// Request mapping
// =============================================================================================

fn user(text: &str) -> Message {
    Message::Request(ModelRequest::user(text))
}

#[test]
fn history_maps_to_alternating_roles_with_tool_results_first() {
    let messages = vec![
        Message::Request(ModelRequest {
            parts: vec![
                RequestPart::SystemPrompt {
                    content: "Kept in history.".into(),
                },
                RequestPart::UserPrompt {
                    content: "Hi".into(),
                },
            ],
            instructions: Some("old instructions".into()),
        }),
        Message::Response(ModelResponse {
            parts: vec![
                ResponsePart::Thinking {
                    content: "other provider".into(),
                    id: None,
                    signature: Some("sig-x".into()),
                    provider: Some("openai".into()),
                },
                ResponsePart::Thinking {
                    content: String::new(),
                    id: Some("redacted_thinking".into()),
                    signature: Some("opaque".into()),
                    provider: Some("anthropic".into()),
                },
                ResponsePart::Text {
                    content: String::new(),
                },
                ResponsePart::tool_call("a", r#"{"x": 1}"#, "toolu_1"),
                ResponsePart::tool_call("b", "not json", "toolu_2"),
            ],
            ..Default::default()
        }),
        Message::Request(ModelRequest {
            parts: vec![
                RequestPart::ToolReturn {
                    tool_name: "a".into(),
                    tool_call_id: "toolu_1".into(),
                    content: json!({"ok": true}),
                },
                RequestPart::RetryPrompt {
                    tool_name: Some("b".into()),
                    tool_call_id: Some("toolu_2".into()),
                    content: "bad args\n\nFix the errors and try again.".into(),
                },
            ],
            instructions: None,
        }),
        // A second request in a row: merged into the same user turn, after the tool results.
        Message::Request(ModelRequest {
            parts: vec![RequestPart::RetryPrompt {
                tool_name: None,
                tool_call_id: None,
                content: "Please answer in text.".into(),
            }],
            instructions: Some("new instructions".into()),
        }),
    ];
    let body = build_request(
        "claude-haiku-4-5",
        &messages,
        &ModelRequestParams::default(),
        &ModelSettings::default(),
        false,
    );
    let expected = json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 4096,
        "stream": false,
        "system": "Kept in history.\n\nnew instructions",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": [
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "tool_use", "id": "toolu_1", "name": "a", "input": {"x": 1}},
                {"type": "tool_use", "id": "toolu_2", "name": "b", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "{\"ok\":true}", "is_error": false},
                {"type": "tool_result", "tool_use_id": "toolu_2",
                 "content": "bad args\n\nFix the errors and try again.", "is_error": true},
                {"type": "text", "text": "Please answer in text."},
            ]},
        ],
    });
    assert_eq!(body, expected);
}

#[test]
fn tools_output_modes_and_settings() {
    let tool = ToolDefinition {
        name: "get".into(),
        description: None,
        parameters: json!({"type": "object", "properties": {}}),
        strict: Some(true),
    };
    let params = ModelRequestParams {
        function_tools: vec![tool.clone()],
        allow_text_output: false,
        ..Default::default()
    };
    let settings = ModelSettings {
        max_tokens: Some(100),
        temperature: Some(0.5),
        top_p: Some(0.9),
        parallel_tool_calls: Some(false),
        extra_body: Some(json!({"metadata": {"user_id": "u1"}})),
        ..Default::default()
    };
    let body = build_request("m", &[user("x")], &params, &settings, true);
    assert_eq!(body["max_tokens"], 100);
    assert_eq!(body["stream"], true);
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["metadata"], json!({"user_id": "u1"}));
    assert_eq!(
        body["tools"],
        json!([{"name": "get", "input_schema": {"type": "object", "properties": {}}, "strict": true}])
    );
    assert_eq!(
        body["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    assert!(body.get("system").is_none());

    // Extended thinking forbids forced tool use: `any` falls back to `auto`...
    let thinking = ModelSettings {
        extra_body: Some(json!({"thinking": {"type": "enabled", "budget_tokens": 2000}})),
        ..Default::default()
    };
    let body = build_request("m", &[user("x")], &params, &thinking, false);
    assert_eq!(body["tool_choice"], json!({"type": "auto"}));
    assert_eq!(body["thinking"]["budget_tokens"], 2000);
    // ...unless the caller picks the tool choice.
    let explicit = ModelSettings {
        extra_body: Some(
            json!({"thinking": {"type": "enabled", "budget_tokens": 2000},
                                "tool_choice": {"type": "tool", "name": "get"}}),
        ),
        ..Default::default()
    };
    let body = build_request("m", &[user("x")], &params, &explicit, false);
    assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "get"}));

    // Native output: the schema (objects closed) in output_config.format, merged with extra_body.
    let native = ModelRequestParams {
        output_mode: OutputMode::Native,
        output_schema: Some(OutputSchema {
            name: "City".into(),
            description: None,
            schema: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            strict: Some(true),
        }),
        allow_text_output: true,
        ..Default::default()
    };
    let effort = ModelSettings {
        extra_body: Some(json!({"output_config": {"effort": "low"}})),
        ..Default::default()
    };
    let body = build_request("m", &[user("x")], &native, &effort, false);
    assert_eq!(
        body["output_config"],
        json!({"effort": "low", "format": {"type": "json_schema", "schema": {
            "type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}}})
    );
    assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());
}

// =============================================================================================
// Response parsing
// =============================================================================================

#[test]
fn parses_cache_usage_redacted_thinking_and_stop_reasons() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [
            {"type": "redacted_thinking", "data": "secret"},
            {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {"q": "x"}},
            {"type": "web_search_tool_result", "tool_use_id": "srv_1", "content": []},
            {"type": "some_future_block"},
            {"type": "text", "text": "hi", "citations": null},
        ],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 100, "cache_creation_input_tokens": 20,
                  "cache_read_input_tokens": 30, "output_tokens": 7},
    });
    let r = parse_response("anthropic", &body).unwrap();
    assert_eq!(r.parts.len(), 2);
    assert_eq!(
        r.parts[0],
        ResponsePart::Thinking {
            content: String::new(),
            id: Some("redacted_thinking".into()),
            signature: Some("secret".into()),
            provider: Some("anthropic".into()),
        }
    );
    assert_eq!(r.text_content(), "hi");
    assert_eq!(r.finish_reason, Some(FinishReason::Length));
    assert_eq!(r.usage.input_tokens, 150);
    assert_eq!(r.usage.cache_read_tokens, 30);
    assert_eq!(r.usage.cache_write_tokens, 20);
    assert_eq!(r.usage.output_tokens, 7);
    // 120 fresh at $1/M, 30 cached at $0.10/M, 7 out at $5/M.
    let cost = (120.0 * 1.0 + 30.0 * 0.10 + 7.0 * 5.0) / 1e6;
    assert!(
        (r.usage.cost_usd - cost).abs() < 1e-12,
        "{}",
        r.usage.cost_usd
    );

    for (reason, want) in [
        ("end_turn", Some(FinishReason::Stop)),
        ("stop_sequence", Some(FinishReason::Stop)),
        ("tool_use", Some(FinishReason::ToolCall)),
        ("refusal", Some(FinishReason::ContentFilter)),
        ("something_new", None),
    ] {
        let body = json!({"content": [], "stop_reason": reason});
        assert_eq!(
            parse_response("anthropic", &body).unwrap().finish_reason,
            want
        );
    }
}

#[test]
fn malformed_bodies_are_invalid_responses() {
    for body in [
        json!(null),
        json!([]),
        json!({"type": "message"}),
        json!({"content": {}}),
        json!({"content": [{"text": "no type"}]}),
        json!({"content": [{"type": "text"}]}),
        json!({"content": [{"type": "tool_use", "name": "x"}]}),
        json!({"content": [{"type": "redacted_thinking"}]}),
    ] {
        match parse_response("anthropic", &body) {
            Err(ModelError::InvalidResponse { provider, .. }) => assert_eq!(provider, "anthropic"),
            other => panic!("{body}: {other:?}"),
        }
    }
    // An error body delivered with a 2xx status is still that error, retryable as its type says.
    let overloaded =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    let e = parse_response("anthropic", &overloaded).unwrap_err();
    assert!(
        matches!(e, ModelError::Http { status: 529, .. }) && e.is_retryable(),
        "{e:?}"
    );
}

fn sse(events: &[Value]) -> Vec<u8> {
    let mut out = String::new();
    for e in events {
        out.push_str(&format!(
            "event: {}\ndata: {}\n\n",
            e["type"].as_str().unwrap(),
            e
        ));
    }
    out.into_bytes()
}

#[test]
fn decoder_handles_redacted_thinking_start_input_and_errors() {
    let body = sse(&[
        json!({"type": "message_start", "message": {"id": "m1", "model": "claude-haiku-4-5",
               "usage": {"input_tokens": 5, "cache_read_input_tokens": 3, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "redacted_thinking", "data": "enc"}}),
        json!({"type": "content_block_stop", "index": 0}),
        // A tool_use whose input arrives whole at block start, with no deltas.
        json!({"type": "content_block_start", "index": 1,
               "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"a": 1}}}),
        json!({"type": "content_block_stop", "index": 1}),
        // Deltas for a block that never started as a tool_use are dropped.
        json!({"type": "content_block_delta", "index": 7, "delta": {"type": "input_json_delta", "partial_json": "{"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "refusal"}, "usage": {"output_tokens": 9}}),
        json!({"type": "message_stop"}),
    ]);
    let (_, r) = decode_body(&body, Box::new(AnthropicStreamDecoder::new("anthropic"))).unwrap();
    assert_eq!(r.parts.len(), 2);
    assert!(
        matches!(&r.parts[0], ResponsePart::Thinking { id: Some(id), signature: Some(s), .. }
        if id == "redacted_thinking" && s == "enc")
    );
    let call = r.tool_calls().next().unwrap();
    assert_eq!(
        (
            call.tool_name.as_str(),
            call.args.as_str(),
            call.tool_call_id.as_str()
        ),
        ("f", r#"{"a":1}"#, "toolu_9")
    );
    assert_eq!(r.finish_reason, Some(FinishReason::ContentFilter));
    assert_eq!(
        (
            r.usage.input_tokens,
            r.usage.cache_read_tokens,
            r.usage.output_tokens
        ),
        (8, 3, 9)
    );

    // An `error` event mid-stream is the error it reports.
    let body = sse(&[
        json!({"type": "message_start", "message": {"id": "m1", "model": "x", "usage": {}}}),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]);
    let e = decode_body(&body, Box::new(AnthropicStreamDecoder::new("anthropic"))).unwrap_err();
    assert!(
        matches!(&e, ModelError::Http { status: 529, message, .. } if message == "Overloaded"),
        "{e:?}"
    );
    assert!(e.is_retryable());

    // A stream cut before `message_stop` is not a complete response.
    let body = sse(&[json!({"type": "message_start", "message": {"id": "m1", "model": "x"}})]);
    let e = decode_body(&body, Box::new(AnthropicStreamDecoder::new("anthropic"))).unwrap_err();
    assert!(matches!(e, ModelError::InvalidResponse { .. }), "{e:?}");
}

// =============================================================================================
// HTTP behaviour
// =============================================================================================

fn message(content: Value, stop: &str, input: u64, output: u64) -> Value {
    json!({
        "id": "msg_x", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    })
}

#[tokio::test]
async fn missing_key_for_the_official_host_is_a_config_error() {
    let model = AnthropicModel::with_config(
        "claude-haiku-4-5",
        ClientConfig::new("https://api.anthropic.com"),
    )
    .expect("construction needs no key");
    let params = ModelRequestParams::default();
    let settings = ModelSettings::default();
    let e = model
        .request(&[user("hi")], &params, &settings)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ModelError::Config(m) if m.contains("ANTHROPIC_API_KEY")),
        "{e:?}"
    );
    let e = model
        .request_stream(&[user("hi")], &params, &settings)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ModelError::Config(_)), "{e:?}");
    assert!(AnthropicModel::with_config("", ClientConfig::new("http://x")).is_err());
}

#[tokio::test]
async fn overloaded_529_is_retried_and_provider_name_is_reported() {
    let server = MockServer::start(vec![
        Canned::json(
            529,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        )
        .header("retry-after", "0"),
        Canned::json(200, message(json!([{"type": "text", "text": "ok"}]), "end_turn", 3, 1)),
    ])
    .await;
    let mut config = ClientConfig::new(&server.base_url).with_max_retries(1);
    config.initial_backoff = Duration::from_millis(1);
    // No key: fine for a server other than the official one.
    let model = AnthropicModel::with_config("claude-haiku-4-5", config)
        .unwrap()
        .with_provider_name("my-gateway");
    let r = model
        .request(
            &[user("hi")],
            &ModelRequestParams::default(),
            &ModelSettings::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.text_content(), "ok");
    assert_eq!(r.provider.as_deref(), Some("my-gateway"));
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(received[0].headers.get("x-api-key").is_none());

    // Without retries the 529 comes back, retryable, under the model's provider name.
    let server = MockServer::start(vec![Canned::json(
        529,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )])
    .await;
    let model = model_at(&server.base_url, "claude-haiku-4-5").with_provider_name("my-gateway");
    let e = model
        .request(
            &[user("hi")],
            &ModelRequestParams::default(),
            &ModelSettings::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ModelError::Http { status: 529, provider, code: Some(c), .. }
            if provider == "my-gateway" && c == "overloaded_error"),
        "{e:?}"
    );
    assert!(e.is_retryable());
}

// =============================================================================================
// Agent runs over HTTP
// =============================================================================================

/// Takes no arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// A city and its country.
#[derive(Debug, PartialEq, Deserialize, schemars::JsonSchema)]
struct CityLocation {
    city: String,
    country: String,
}

fn country_tool() -> Tool<()> {
    Tool::plain("get_user_country", |_: NoArgs| async {
        Ok::<_, ToolError>("Mexico")
    })
    .description("The user's country.")
}

fn tool_use(name: &str, id: &str, input: Value) -> Value {
    json!({"type": "tool_use", "id": id, "name": name, "input": input})
}

#[tokio::test]
async fn agent_run_with_a_tool_then_text() {
    let server = MockServer::start(vec![
        Canned::json(
            200,
            message(
                json!([{"type": "text", "text": "Let me check."},
                       tool_use("get_user_country", "toolu_a", json!({}))]),
                "tool_use",
                100,
                20,
            ),
        ),
        Canned::json(
            200,
            message(
                json!([{"type": "text", "text": "Mexico City."}]),
                "end_turn",
                150,
                5,
            ),
        ),
    ])
    .await;
    let agent = Agent::<(), String>::builder("geo")
        .model(model_at(&server.base_url, "claude-haiku-4-5"))
        .instructions("Be brief.")
        .tool(country_tool())
        .build()
        .unwrap();
    let result = agent.run("Largest city in my country?", ()).await.unwrap();
    assert_eq!(result.output, "Mexico City.");
    assert_eq!(result.usage.requests, 2);
    assert_eq!(result.usage.tool_calls, 1);
    assert_eq!(result.usage.input_tokens, 250);
    assert_eq!(result.usage.output_tokens, 25);
    let cost = (250.0 * 1.0 + 25.0 * 5.0) / 1e6;
    assert!((result.usage.cost_usd - cost).abs() < 1e-12);

    let received = server.received();
    assert_eq!(received.len(), 2);
    let first = &received[0].body;
    assert_eq!(first["system"], "Be brief.");
    assert_eq!(first["tool_choice"], json!({"type": "auto"}));
    assert_eq!(first["tools"][0]["name"], "get_user_country");
    assert_eq!(first["tools"][0]["description"], "The user's country.");
    let expected = json!({"system": "Be brief.", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Largest city in my country?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_a", "name": "get_user_country", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "Mexico", "is_error": false}]},
    ]});
    assert_json_subset(&expected, &received[1].body, "");
}

#[tokio::test]
async fn agent_run_with_structured_tool_output() {
    let server = MockServer::start(vec![
        Canned::json(
            200,
            message(
                json!([tool_use("get_user_country", "toolu_a", json!({}))]),
                "tool_use",
                10,
                2,
            ),
        ),
        Canned::json(
            200,
            message(
                json!([tool_use(
                    "final_result",
                    "toolu_b",
                    json!({"city": "Mexico City", "country": "Mexico"})
                )]),
                "tool_use",
                20,
                4,
            ),
        ),
    ])
    .await;
    let agent = Agent::<(), CityLocation>::builder("geo")
        .model(model_at(&server.base_url, "claude-haiku-4-5"))
        .tool(country_tool())
        .build()
        .unwrap();
    let result = agent.run("Largest city in my country?", ()).await.unwrap();
    assert_eq!(
        result.output,
        CityLocation {
            city: "Mexico City".into(),
            country: "Mexico".into()
        }
    );
    assert_eq!(result.usage.requests, 2);
    assert_eq!(result.usage.tool_calls, 1);
    assert_eq!(
        (result.usage.input_tokens, result.usage.output_tokens),
        (30, 6)
    );

    let received = server.received();
    let first = &received[0].body;
    assert_eq!(first["tool_choice"], json!({"type": "any"}));
    let names: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_user_country", "final_result"]);
    assert_eq!(
        first["tools"][1]["input_schema"]["required"],
        json!(["city", "country"])
    );
}

// =============================================================================================
// Robustness: nothing a server sends makes us panic
// =============================================================================================

/// Every recorded JSON response body and every recorded stream body.
fn recorded_bodies() -> (Vec<Value>, Vec<String>) {
    let mut json_bodies = Vec::new();
    let mut streams = Vec::new();
    let Some(dir) = cassettes_dir() else {
        return (json_bodies, streams);
    };
    for case in cases() {
        let c = load(&dir, &format!("anthropic/{}", case.file));
        for i in c.interactions {
            if let Some(v) = i.response.parsed_body {
                json_bodies.push(v);
            } else if let Some(b) = i.response.body {
                streams.push(b.string);
            }
        }
    }
    (json_bodies, streams)
}

/// Replace the value at every position of `v` with `with`, calling `f` on each variant.
fn each_replacement(v: &Value, with: &Value, f: &mut dyn FnMut(&Value)) {
    fn walk(
        root: &Value,
        path: &mut Vec<PathSeg>,
        cur: &Value,
        with: &Value,
        f: &mut dyn FnMut(&Value),
    ) {
        let mut variant = root.clone();
        if let Some(slot) = at_mut(&mut variant, path) {
            *slot = with.clone();
        }
        f(&variant);
        match cur {
            Value::Object(m) => {
                for (k, child) in m {
                    path.push(PathSeg::Key(k.clone()));
                    walk(root, path, child, with, f);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    walk(root, path, child, with, f);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    walk(v, &mut Vec::new(), v, with, f);
}

enum PathSeg {
    Key(String),
    Index(usize),
}

fn at_mut<'v>(v: &'v mut Value, path: &[PathSeg]) -> Option<&'v mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            PathSeg::Key(k) => cur.get_mut(k.as_str())?,
            PathSeg::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

#[test]
fn parse_response_survives_truncations_and_field_replacements() {
    let (bodies, _) = recorded_bodies();
    let odd = [
        Value::Null,
        json!(-1),
        json!(u64::MAX),
        json!(1e300),
        json!("x"),
        json!([]),
        json!({}),
        json!(true),
    ];
    for body in &bodies {
        let text = serde_json::to_string(body).unwrap();
        for cut in 0..=text.len() {
            if let Ok(v) = serde_json::from_slice::<Value>(&text.as_bytes()[..cut]) {
                let _ = parse_response("anthropic", &v);
            }
        }
        for with in &odd {
            each_replacement(body, with, &mut |v| {
                let _ = parse_response("anthropic", v);
            });
        }
    }
}

#[test]
fn decoder_survives_every_truncation_of_recorded_streams() {
    let (_, streams) = recorded_bodies();
    for body in &streams {
        let bytes = body.as_bytes();
        let full = decode_body(bytes, Box::new(AnthropicStreamDecoder::new("anthropic")));
        assert!(full.is_ok(), "{full:?}");
        for cut in 0..bytes.len() {
            let _ = decode_body(
                &bytes[..cut],
                Box::new(AnthropicStreamDecoder::new("anthropic")),
            );
        }
    }
}

/// A JSON value with keys the parsers look at, nested a few levels.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("type".to_string()),
        Just("content".to_string()),
        Just("text".to_string()),
        Just("input".to_string()),
        Just("usage".to_string()),
        Just("index".to_string()),
        Just("delta".to_string()),
        Just("content_block".to_string()),
        Just("message".to_string()),
        "[a-z_]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop_oneof![
            Just("text".to_string()),
            Just("tool_use".to_string()),
            Just("thinking".to_string()),
            Just("redacted_thinking".to_string()),
            Just("message".to_string()),
            Just("error".to_string()),
            Just("end_turn".to_string()),
            Just("input_json_delta".to_string()),
            Just("text_delta".to_string()),
            ".{0,8}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Plausible stream events with random indices, types and payloads.
fn arb_event() -> impl Strategy<Value = Value> {
    let ty = prop_oneof![
        Just("message_start"),
        Just("content_block_start"),
        Just("content_block_delta"),
        Just("content_block_stop"),
        Just("message_delta"),
        Just("message_stop"),
        Just("ping"),
        Just("error"),
    ];
    let block = prop_oneof![
        Just(json!({"type": "text", "text": ""})),
        Just(json!({"type": "thinking", "thinking": "", "signature": ""})),
        Just(json!({"type": "redacted_thinking", "data": "d"})),
        Just(json!({"type": "tool_use", "id": "t", "name": "n", "input": {}})),
        Just(json!({"type": "server_tool_use", "id": "s", "name": "n", "input": {}})),
        arb_json(),
    ];
    let delta = prop_oneof![
        ".{0,6}".prop_map(|t| json!({"type": "text_delta", "text": t})),
        ".{0,6}".prop_map(|t| json!({"type": "thinking_delta", "thinking": t})),
        ".{0,6}".prop_map(|t| json!({"type": "signature_delta", "signature": t})),
        ".{0,6}".prop_map(|t| json!({"type": "input_json_delta", "partial_json": t})),
        Just(json!({"stop_reason": "tool_use"})),
        arb_json(),
    ];
    (ty, 0u64..4, block, delta, arb_json()).prop_map(|(ty, index, block, delta, extra)| {
        json!({"type": ty, "index": index, "content_block": block, "delta": delta,
               "message": extra.clone(), "usage": extra, "error": {"type": "overloaded_error"}})
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_response_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            let _ = parse_response("anthropic", &v);
        }
    }

    #[test]
    fn parse_response_never_panics_on_arbitrary_json(v in arb_json(), blocks in prop::collection::vec(arb_json(), 0..6)) {
        let _ = parse_response("anthropic", &v);
        let _ = parse_response("anthropic", &json!({"content": blocks, "usage": v}));
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = decode_body(&bytes, Box::new(AnthropicStreamDecoder::new("anthropic")));
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_event_sequences(events in prop::collection::vec(arb_event(), 0..24)) {
        let body = sse(&events);
        if let Ok((evs, response)) = decode_body(&body, Box::new(AnthropicStreamDecoder::new("anthropic"))) {
            // Whatever arrived, the response is one we can send back.
            let history = [Message::Response(response)];
            let _ = build_request("m", &history, &ModelRequestParams::default(), &ModelSettings::default(), false);
            prop_assert!(evs.iter().all(|e| !matches!(e, StreamEvent::Done(_))));
        }
    }
}
