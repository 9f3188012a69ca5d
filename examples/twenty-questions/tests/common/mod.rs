//! The tests' local OpenAI-compatible server: it plays the game deterministically and counts
//! every request; and helpers to read a child process's output.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

/// Questions the mock questioner asks before guessing.
pub const K: usize = 8;

#[derive(Default)]
pub struct Counts {
    /// Latency added to every response, in milliseconds.
    pub latency_ms: u64,
    /// Requests seen, by (model, messages).
    pub seen: HashMap<String, usize>,
    pub total: usize,
}

impl Counts {
    pub fn duplicates(&self) -> usize {
        self.seen.values().map(|n| n - 1).sum()
    }
}

pub type Shared = Arc<Mutex<Counts>>;

fn tool_message(id: &str, name: &str, args: Value) -> Value {
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "model": "mock",
        "choices": [{
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": null,
                "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}]
            }
        }],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    })
}

fn text_message(text: &str) -> Value {
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "model": "mock",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22}
    })
}

async fn chat(State(counts): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    let key = format!("{}|{}", body["model"], body["messages"]);
    let latency = {
        let mut c = counts.lock().unwrap();
        *c.seen.entry(key).or_default() += 1;
        c.total += 1;
        c.latency_ms
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let offers = |name: &str| {
        body["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == name))
    };
    if offers("ask_question") {
        let answered = messages.iter().filter(|m| m["role"] == "tool").count();
        let last = messages.iter().rev().find(|m| m["role"] == "tool");
        if answered > K && last.is_some_and(|m| m["content"].as_str() == Some("yes")) {
            return Json(text_message("potato"));
        }
        let q = if answered < K {
            format!("Question number {}?", answered + 1)
        } else {
            "Is it a potato?".to_string()
        };
        return Json(tool_message(
            &format!("call_{answered}"),
            "ask_question",
            json!({ "question": q }),
        ));
    }
    // The answerer: its instructions hold the secret, its last user message the question.
    let system = messages
        .iter()
        .filter(|m| m["role"] == "system")
        .map(|m| m["content"].as_str().unwrap_or(""))
        .collect::<String>();
    let secret = system
        .rsplit("THE SECRET OBJECT IS:")
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let question = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let answer = if !secret.is_empty() && question.contains(&secret) {
        "yes"
    } else if question.len() % 2 == 0 {
        "no"
    } else {
        "not really"
    };
    Json(tool_message(
        "call_a",
        "final_result",
        json!({ "response": answer }),
    ))
}

pub async fn start_server() -> (String, Shared) {
    let counts: Shared = Arc::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), counts)
}

/// Read the child's stdout on a thread, line by line.
pub fn lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub fn collect_until_exit(mut child: Child) -> (String, bool) {
    let rx = lines(&mut child);
    let mut all = String::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(60)) {
        all.push_str(&l);
        all.push('\n');
    }
    let ok = child.wait().unwrap().success();
    (all, ok)
}
