//! What spans may and may not carry. With content capture on, prompts, completions and tool
//! arguments and results are recorded; with it off, none of them is. Either way an API key set in
//! a provider's config, the `Authorization` header it becomes, and extra secret headers never
//! appear in any exported span: not in attributes, events, status or names, not even when the
//! provider echoes the key back in an error.
//!
//! The spans are captured with the SDK's in-memory exporter behind the same layer `init` installs;
//! the provider is a real `OpenAIChatModel` talking HTTP to a fake server on 127.0.0.1, which also
//! checks that the key was really sent (so the test is not vacuous).
//!
//! The content switch is process-wide, so this file holds one test that runs the cases in turn.

mod common;

use std::sync::{Arc, Mutex};

use common::{FINAL_ANSWER, PROMPT, SEARCH_ANSWER, TOOL_QUERY};
use opentelemetry::Value as OtelValue;
use serde_json::{Value, json};
use steadfast_core::{Agent, Tool, semconv};
use steadfast_models::{ClientConfig, OpenAIChatModel};
use steadfast_otel::opentelemetry;
use steadfast_otel::opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;

const API_KEY: &str = "sk-steadfast-SECRETKEY-0123456789abcdef";
const HEADER_SECRET: &str = "hdr-SECRET-VALUE-42";

/// What the fake provider saw: the request heads.
type Seen = Arc<Mutex<Vec<String>>>;

/// A fake OpenAI-compatible server: a tool call first, then a final answer; with `reject`, a 401
/// whose message echoes the key (as providers do).
async fn fake_provider(reject: bool) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        // Bounded: a handful of requests per test.
        for _ in 0..8 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let (head, body) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let head = text[..i].to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        break (
                            head,
                            String::from_utf8_lossy(&buf[i + 4..i + 4 + len]).to_string(),
                        );
                    }
                }
            };
            log.lock().unwrap().push(head);
            let (status, answer) = if reject {
                (
                    "401 Unauthorized",
                    json!({ "error": { "message": format!("Incorrect API key provided: {API_KEY}."), "type": "invalid_request_error", "code": "invalid_api_key" } }),
                )
            } else {
                let message = if body.contains("\"role\":\"tool\"") {
                    json!({ "role": "assistant", "content": FINAL_ANSWER })
                } else {
                    json!({ "role": "assistant", "content": null, "tool_calls": [{
                        "id": "call_9", "type": "function",
                        "function": { "name": "lookup", "arguments": json!({ "query": TOOL_QUERY }).to_string() }
                    }] })
                };
                let finish = if message["tool_calls"].is_null() {
                    "stop"
                } else {
                    "tool_calls"
                };
                (
                    "200 OK",
                    json!({
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-test",
                        "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
                        "usage": { "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18 }
                    }),
                )
            };
            let text = answer.to_string();
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (format!("http://{addr}/v1"), seen)
}

fn agent(base_url: &str) -> Agent<(), String> {
    let mut cfg = ClientConfig::new(base_url);
    cfg.api_key = Some(API_KEY.to_string());
    cfg.headers
        .push(("X-Secret-Header".into(), HEADER_SECRET.into()));
    cfg.max_retries = 0;
    let model = OpenAIChatModel::with_config("gpt-test", cfg).unwrap();
    Agent::builder("assistant")
        .model(model)
        .output_mode(steadfast_core::OutputMode::Text)
        .tool(Tool::plain("lookup", |a: common::Lookup| async move {
            assert_eq!(a.query, TOOL_QUERY);
            Ok(SEARCH_ANSWER.to_string())
        }))
        .build()
        .unwrap()
}

/// Every string an exported span holds, in one text.
fn everything(spans: &[SpanData]) -> String {
    let mut out = String::new();
    let value = |v: &OtelValue| v.to_string();
    for s in spans {
        out.push_str(&s.name);
        out.push('\n');
        for kv in &s.attributes {
            out.push_str(&format!("{}={}\n", kv.key, value(&kv.value)));
        }
        for e in s.events.iter() {
            out.push_str(&e.name);
            for kv in &e.attributes {
                out.push_str(&format!("{}={}\n", kv.key, value(&kv.value)));
            }
        }
        out.push_str(&format!("{:?}\n", s.status));
    }
    out
}

/// Run `f` with spans going to an in-memory exporter; return them.
fn capture<F: std::future::Future<Output = ()>>(f: F) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer =
        steadfast_otel::tracing_layer(&provider).with_filter(filter_fn(steadfast_otel::exported));
    {
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f);
    }
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a OtelValue> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[test]
fn content_only_when_opted_in_and_secrets_never() {
    // 1. Content on.
    semconv::set_capture_content(Some(true));
    let seen: Seen = Arc::default();
    let seen_in = seen.clone();
    let spans = capture(async move {
        let (url, log) = fake_provider(false).await;
        let r = agent(&url).run(PROMPT, ()).await.unwrap();
        assert_eq!(r.output, FINAL_ANSWER);
        seen_in
            .lock()
            .unwrap()
            .extend(log.lock().unwrap().iter().cloned());
    });
    let heads = seen.lock().unwrap().join("\n");
    assert!(
        heads.contains(&format!("Bearer {API_KEY}")),
        "the key was sent: {heads}"
    );
    assert!(
        heads.contains(HEADER_SECRET),
        "the header was sent: {heads}"
    );
    let all = everything(&spans);
    for secret in [API_KEY, HEADER_SECRET, "Bearer"] {
        assert!(
            !all.contains(secret),
            "`{secret}` leaked into a span:\n{all}"
        );
    }
    let chat = spans
        .iter()
        .find(|s| s.name == "chat gpt-test")
        .expect("a chat span");
    let input = attr(chat, semconv::GEN_AI_INPUT_MESSAGES)
        .expect("input messages")
        .to_string();
    let input: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(input[0]["role"], "user");
    assert_eq!(input[0]["parts"][0]["content"], PROMPT);
    assert!(
        all.contains(FINAL_ANSWER),
        "the completion is recorded:\n{all}"
    );
    let tool = spans
        .iter()
        .find(|s| s.name == "execute_tool lookup")
        .expect("a tool span");
    assert!(
        attr(tool, semconv::GEN_AI_TOOL_CALL_ARGUMENTS)
            .unwrap()
            .to_string()
            .contains(TOOL_QUERY)
    );
    assert!(
        attr(tool, semconv::GEN_AI_TOOL_CALL_RESULT)
            .unwrap()
            .to_string()
            .contains(SEARCH_ANSWER)
    );
    assert_eq!(
        attr(tool, semconv::GEN_AI_TOOL_CALL_ID)
            .unwrap()
            .to_string(),
        "call_9"
    );

    // 2. The provider echoes the key in an error: the span records the error, not the key.
    let spans = capture(async {
        let (url, _) = fake_provider(true).await;
        assert!(agent(&url).run(PROMPT, ()).await.is_err());
    });
    let all = everything(&spans);
    assert!(
        all.contains("Incorrect API key provided"),
        "the error is recorded:\n{all}"
    );
    assert!(all.contains(semconv::ERROR_TYPE), "{all}");
    assert!(
        !all.contains(API_KEY) && !all.contains("SECRETKEY"),
        "the echoed key leaked:\n{all}"
    );

    // 3. Content off: the same run records no prompt, arguments, result or completion.
    semconv::set_capture_content(Some(false));
    let spans = capture(async {
        let (url, _) = fake_provider(false).await;
        agent(&url).run(PROMPT, ()).await.unwrap();
    });
    let all = everything(&spans);
    for marker in [
        PROMPT,
        TOOL_QUERY,
        SEARCH_ANSWER,
        FINAL_ANSWER,
        API_KEY,
        HEADER_SECRET,
    ] {
        assert!(
            !all.contains(marker),
            "`{marker}` is on a span with content off:\n{all}"
        );
    }
    for key in [
        semconv::GEN_AI_INPUT_MESSAGES,
        semconv::GEN_AI_OUTPUT_MESSAGES,
        semconv::GEN_AI_SYSTEM_INSTRUCTIONS,
        semconv::GEN_AI_TOOL_CALL_ARGUMENTS,
        semconv::GEN_AI_TOOL_CALL_RESULT,
    ] {
        assert!(!all.contains(key), "`{key}` recorded with content off");
    }
    // The rest is still there.
    assert!(spans.iter().any(|s| s.name == "chat gpt-test"
        && attr(s, semconv::GEN_AI_USAGE_INPUT_TOKENS).map(|v| v.to_string())
            == Some("11".into())));
    semconv::set_capture_content(None);
}
