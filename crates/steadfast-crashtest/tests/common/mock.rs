//! A mock OpenAI-compatible chat-completions server: deterministic, quick, and counting.
//!
//! It plays the pipeline's agents from the conversation alone:
//! * **planner** (the request offers a tool `lookup`): while fewer than [`LOOKUPS`] tool results
//!   are in the conversation, it calls `lookup` once with key `{topic}.k{n}`; then it answers
//!   `plan[{topic}]: {values}` from the `value` fields of the tool results;
//! * **analyst** (the request offers `score`): it calls `score` once with the part named in the
//!   prompt, then answers `analysis[{part}]={value}`;
//! * anything else gets the text `ok`.
//!
//! `topic=` and `part=` are read from the first user message. Every request is recorded with a
//! fingerprint (a hash of the model and the messages), the sending process (`x-crashy-pid`) and
//! the response id it was given (unique per request, so the journal tells which answer was
//! committed). `GET /stats` reports totals and duplicates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// Lookups the planner makes before it answers.
pub const LOOKUPS: usize = 4;

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Arrival order, from 1.
    pub seq: u64,
    /// Hash of the model name and the messages.
    pub fp: String,
    /// The sending process, from the `x-crashy-pid` header.
    pub pid: Option<u32>,
    /// The id of the response it was given.
    pub response_id: String,
    /// `planner`, `analyst` or `other`.
    pub role: &'static str,
    /// The line of execution that sent it: `{workflow}/{branch}` from the prompt's `workflow=`
    /// and `branch=` (`root` when there is no branch).
    pub line: String,
}

#[derive(Default)]
struct Book {
    requests: Vec<Request>,
    counts: HashMap<String, u32>,
}

#[derive(Clone)]
struct Shared {
    book: Arc<Mutex<Book>>,
    latency: Duration,
}

/// A running mock server (it stops with the runtime it was started on).
pub struct MockLlm {
    url: String,
    book: Arc<Mutex<Book>>,
}

/// A stable 64-bit FNV-1a hash.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl MockLlm {
    /// Start on 127.0.0.1, port 0, on `rt`; each answer is delayed by `latency`.
    pub fn start(rt: &tokio::runtime::Runtime, latency: Duration) -> MockLlm {
        let book = Arc::new(Mutex::new(Book::default()));
        let shared = Shared {
            book: book.clone(),
            latency,
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/stats", get(stats))
            .with_state(shared);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the mock server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("mock address");
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            axum::serve(listener, app).await.expect("mock server");
        });
        MockLlm {
            url: format!("http://{addr}/v1"),
            book,
        }
    }

    /// The base URL (`http://127.0.0.1:PORT/v1`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.book.lock().unwrap().requests.clone()
    }

    /// Requests so far.
    pub fn total(&self) -> usize {
        self.book.lock().unwrap().requests.len()
    }

    /// Requests that repeated an earlier one (same model and messages): the sum of count − 1.
    pub fn duplicates(&self) -> usize {
        self.book
            .lock()
            .unwrap()
            .counts
            .values()
            .map(|c| (*c as usize).saturating_sub(1))
            .sum()
    }

    /// Distinct requests so far.
    pub fn distinct(&self) -> usize {
        self.book.lock().unwrap().counts.len()
    }

    /// The largest number of times one request was seen.
    pub fn max_repeats(&self) -> u32 {
        self.book
            .lock()
            .unwrap()
            .counts
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": { "message": message, "type": "invalid_request_error" } })),
    )
        .into_response()
}

async fn stats(State(s): State<Shared>) -> axum::Json<Value> {
    let book = s.book.lock().unwrap();
    let duplicates: u32 = book.counts.values().map(|c| c - 1).sum();
    axum::Json(json!({
        "total": book.requests.len(),
        "distinct": book.counts.len(),
        "duplicates": duplicates,
    }))
}

async fn chat(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("bad json: {e}")),
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return bad_request("streaming is not supported by the mock".into());
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    let messages = body
        .get("messages")
        .cloned()
        .unwrap_or(Value::Array(vec![]));
    let fp = format!(
        "{:016x}",
        fnv(format!(
            "{model}\n{}",
            serde_json::to_string(&messages).unwrap_or_default()
        )
        .as_bytes())
    );
    let pid = headers
        .get("x-crashy-pid")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (role, message, finish) = play(&body);
    let prompt = first_user_prompt(&body);
    let branch = Some(field(&prompt, "branch"))
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "root".into());
    let line = format!("{}/{branch}", field(&prompt, "workflow"));
    let response_id = {
        let mut book = s.book.lock().unwrap();
        let seq = book.requests.len() as u64 + 1;
        let response_id = format!("chatcmpl-{seq}-{fp}");
        *book.counts.entry(fp.clone()).or_insert(0) += 1;
        book.requests.push(Request {
            seq,
            fp,
            pid,
            response_id: response_id.clone(),
            role,
            line,
        });
        response_id
    };
    if !s.latency.is_zero() {
        tokio::time::sleep(s.latency).await;
    }
    let prompt_tokens = (messages.to_string().len() / 4 + 1) as u64;
    axum::Json(json!({
        "id": response_id,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{ "index": 0, "message": message, "finish_reason": finish, "logprobs": null }],
        "usage": { "prompt_tokens": prompt_tokens, "completion_tokens": 8, "total_tokens": prompt_tokens + 8 },
    }))
    .into_response()
}

fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// `name=value` from a prompt like `topic=T-alpha; workflow=r1-w0`.
fn field(prompt: &str, name: &str) -> String {
    prompt
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

/// The `value` field of a tool result (tools return `{"value": .., "exec": ..}` as JSON text).
fn tool_value(content: &str) -> String {
    serde_json::from_str::<Value>(content)
        .ok()
        .and_then(|v| v.get("value").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| content.to_string())
}

fn tool_call(id: String, name: &str, args: Value) -> Value {
    json!({
        "role": "assistant",
        "content": null,
        "tool_calls": [{
            "id": id,
            "type": "function",
            "function": { "name": name, "arguments": args.to_string() },
        }],
    })
}

fn role_of(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("")
}

/// The text of the first user message.
fn first_user_prompt(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|ms| ms.iter().find(|m| role_of(m) == "user"))
        .map(|m| text_of(m.get("content")))
        .unwrap_or_default()
}

/// The answer to one request: (role, assistant message, finish reason).
fn play(body: &Value) -> (&'static str, Value, &'static str) {
    let offers = |name: &str| {
        body.get("tools")
            .and_then(Value::as_array)
            .is_some_and(|ts| {
                ts.iter()
                    .any(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))
            })
    };
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let role_of = |m: &Value| {
        m.get("role")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let prompt = messages
        .iter()
        .find(|m| role_of(m) == "user")
        .map(|m| text_of(m.get("content")))
        .unwrap_or_default();
    let results: Vec<String> = messages
        .iter()
        .filter(|m| role_of(m) == "tool")
        .map(|m| tool_value(&text_of(m.get("content"))))
        .collect();
    if offers("lookup") {
        let topic = field(&prompt, "topic");
        let n = results.len();
        if n < LOOKUPS {
            let args = json!({ "key": format!("{topic}.k{}", n + 1) });
            (
                "planner",
                tool_call(format!("call_l{}", n + 1), "lookup", args),
                "tool_calls",
            )
        } else {
            let text = format!("plan[{topic}]: {}", results.join(","));
            (
                "planner",
                json!({ "role": "assistant", "content": text }),
                "stop",
            )
        }
    } else if offers("score") {
        let part = field(&prompt, "part");
        if results.is_empty() {
            let args = json!({ "item": part });
            (
                "analyst",
                tool_call("call_s1".into(), "score", args),
                "tool_calls",
            )
        } else {
            let text = format!("analysis[{part}]={}", results.join(","));
            (
                "analyst",
                json!({ "role": "assistant", "content": text }),
                "stop",
            )
        }
    } else {
        (
            "other",
            json!({ "role": "assistant", "content": "ok" }),
            "stop",
        )
    }
}
