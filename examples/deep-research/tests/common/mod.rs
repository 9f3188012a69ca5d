//! Local stand-ins for the outside world: an OpenAI-compatible model server that plays the three
//! roles and counts every request, and a Tavily-compatible search server that counts queries.
//! Both listen on 127.0.0.1 only.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

/// The searches the mock planner plans.
pub const PLAN_TERMS: [&str; 4] = [
    "durable execution engines",
    "type safe agent frameworks",
    "rust agent libraries",
    "workflow replay determinism",
];

/// The mock analyst's follow-up search.
pub const EXTRA_QUERY: &str = "follow-up on crash recovery";

/// The role a request was for, told by the tools it offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Plan,
    Search,
    Analysis,
}

#[derive(Default)]
pub struct LlmState {
    /// Requests by hash of (model, messages): the role and how often it was seen.
    pub seen: HashMap<u64, (Role, usize)>,
    /// Requests per role, in arrival order.
    pub log: Vec<Role>,
}

impl LlmState {
    pub fn total(&self, role: Role) -> usize {
        self.log.iter().filter(|r| **r == role).count()
    }

    /// Requests seen more than once, per role: (role, extra copies).
    pub fn duplicates(&self) -> Vec<(Role, usize)> {
        self.seen
            .values()
            .filter(|(_, n)| *n > 1)
            .map(|(r, n)| (*r, n - 1))
            .collect()
    }
}

/// The model server.
pub struct Llm {
    pub url: String,
    pub state: Arc<Mutex<LlmState>>,
    /// Set when the analyst's final request (the one that writes the report) arrives.
    pub report_requested: Arc<AtomicBool>,
    /// How long the final analysis request takes, in milliseconds (changeable between runs).
    pub report_delay_ms: Arc<AtomicU64>,
    /// Search summaries answered so far.
    pub summaries: Arc<AtomicU64>,
    pub seed: u64,
}

#[derive(Clone)]
struct LlmShared {
    state: Arc<Mutex<LlmState>>,
    report_requested: Arc<AtomicBool>,
    report_delay_ms: Arc<AtomicU64>,
    summaries: Arc<AtomicU64>,
    rng: Arc<Mutex<u64>>,
}

fn hash(s: &str) -> u64 {
    // FNV-1a: stable and dependency-free.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn next_delay(rng: &Mutex<u64>, max_ms: u64) -> Duration {
    let mut s = rng.lock().unwrap();
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    Duration::from_millis(*s % max_ms)
}

fn tool_call(name: &str, args: Value) -> Value {
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
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": args.to_string()}}]
            }
        }],
        "usage": {"prompt_tokens": 30, "completion_tokens": 10, "total_tokens": 40}
    })
}

fn text(content: &str) -> Value {
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "model": "mock",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 20, "total_tokens": 50}
    })
}

/// Every `https://search.example.net/...` address in `s`, in order, without repeats.
pub fn search_urls(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, _) in s.match_indices("https://search.example.net/") {
        let url: String = s[i..]
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\\' | ')' | '<' | ']'))
            .collect();
        if !out.contains(&url) {
            out.push(url);
        }
    }
    out
}

async fn chat(State(sh): State<LlmShared>, Json(body): Json<Value>) -> Json<Value> {
    let offers = |name: &str| {
        body["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == name))
    };
    let role = if offers("web_search") {
        Role::Search
    } else if offers("extra_search") {
        Role::Analysis
    } else {
        Role::Plan
    };
    {
        let key = hash(&format!("{}|{}", body["model"], body["messages"]));
        let mut st = sh.state.lock().unwrap();
        st.seen.entry(key).or_insert((role, 0)).1 += 1;
        st.log.push(role);
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let answered = messages.iter().any(|m| m["role"] == "tool");
    let user = messages
        .iter()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    match role {
        Role::Plan => {
            let plan = json!({
                "executive_summary": "Survey durable engines and typed agent frameworks, then compare.",
                "web_search_steps": PLAN_TERMS.iter().map(|t| json!({"search_terms": t})).collect::<Vec<_>>(),
                "analysis_instructions": "Compare the options and recommend one, citing sources."
            });
            Json(tool_call("final_result", plan))
        }
        Role::Search => {
            tokio::time::sleep(next_delay(&sh.rng, 400)).await;
            if !answered {
                return Json(tool_call("web_search", json!({ "query": user })));
            }
            let urls = search_urls(&body["messages"].to_string());
            sh.summaries.fetch_add(1, Ordering::SeqCst);
            Json(text(&format!("Summary of “{user}”: {}", urls.join(" "))))
        }
        Role::Analysis => {
            if !answered {
                return Json(tool_call("extra_search", json!({ "query": EXTRA_QUERY })));
            }
            sh.report_requested.store(true, Ordering::SeqCst);
            let delay = sh.report_delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let urls = search_urls(&body["messages"].to_string());
            let mut report = String::from(
                "# Durable agents\n\n## Executive summary\n\nThe mock analyst read every result.\n\n## Sources\n\n",
            );
            for u in urls {
                report.push_str(&format!("- [{u}]({u})\n"));
            }
            Json(text(&report))
        }
    }
}

/// Start the model server. Search-agent requests are delayed at random (up to 400 ms) from a
/// generator seeded with `seed`.
pub async fn start_llm(seed: u64) -> Llm {
    let shared = LlmShared {
        state: Arc::default(),
        report_requested: Arc::default(),
        report_delay_ms: Arc::new(AtomicU64::new(0)),
        summaries: Arc::default(),
        rng: Arc::new(Mutex::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Llm {
        url: format!("http://{addr}/v1"),
        state: shared.state,
        report_requested: shared.report_requested,
        report_delay_ms: shared.report_delay_ms,
        summaries: shared.summaries,
        seed,
    }
}

/// The search server: Tavily's `POST /search`, requiring `Authorization: Bearer test-key`.
pub struct SearchServer {
    pub url: String,
    /// Queries by text: how often each was asked.
    pub queries: Arc<Mutex<HashMap<String, usize>>>,
}

impl SearchServer {
    pub fn total(&self) -> usize {
        self.queries.lock().unwrap().values().sum()
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

async fn search(
    State(queries): State<Arc<Mutex<HashMap<String, usize>>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer test-key") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"detail": {"error": "bad key"}})),
        );
    }
    let q = body["query"].as_str().unwrap_or("").to_string();
    *queries.lock().unwrap().entry(q.clone()).or_default() += 1;
    let n = body["max_results"].as_u64().unwrap_or(5).min(3);
    let results: Vec<Value> = (1..=n)
        .map(|i| {
            json!({
                "title": format!("{q}: result {i}"),
                "url": format!("https://search.example.net/{}/{i}", slug(&q)),
                "content": format!("Result {i} about {q}. It explains {q} in some detail."),
                "score": 1.0 / i as f64,
            })
        })
        .collect();
    (
        StatusCode::OK,
        Json(json!({"query": q, "results": results, "response_time": 0.01})),
    )
}

pub async fn start_search() -> SearchServer {
    let queries: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let app = Router::new()
        .route("/search", post(search))
        .with_state(queries.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    SearchServer {
        url: format!("http://{addr}"),
        queries,
    }
}

/// A fresh database path.
pub fn temp_db(tag: &str) -> String {
    let p = std::env::temp_dir().join(format!("deep-research-{tag}-{}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", p.display()));
    }
    p.display().to_string()
}

/// The binary with no API keys from the environment.
pub fn command(db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deep-research"));
    c.args(["--db", db]);
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "TAVILY_API_KEY",
        "TAVILY_BASE_URL",
        "STEADFAST_DB",
    ] {
        c.env_remove(var);
    }
    c
}

/// The binary against the two local servers.
pub fn spawn_mocked(db: &str, id: &str, llm: &Llm, search: &SearchServer) -> Child {
    command(db)
        .args(["--id", id, "--base-url", &llm.url, "--search", "tavily"])
        .arg("Which Rust framework gives durable, type-safe agents?")
        .env("TAVILY_API_KEY", "test-key")
        .env("TAVILY_BASE_URL", &search.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn deep-research")
}

/// Collect the child's stderr on a thread, line by line, into a shared string.
pub fn tee_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let err = child.stderr.take().unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    let o = out.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut s = o.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    out
}

/// Wait for the child to exit; its stdout, stderr and success.
pub fn finish(child: Child) -> (String, String, bool) {
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}
