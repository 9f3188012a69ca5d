//! End to end: the real `twenty-questions` binary against a local OpenAI-compatible server that
//! plays the game deterministically and counts every request; killed with SIGKILL mid-game and
//! resumed by id.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

/// Questions the mock questioner asks before guessing.
const K: usize = 8;

#[derive(Default)]
struct Counts {
    /// Requests seen, by (model, messages).
    seen: HashMap<String, usize>,
    total: usize,
}

impl Counts {
    fn duplicates(&self) -> usize {
        self.seen.values().map(|n| n - 1).sum()
    }
}

type Shared = Arc<Mutex<Counts>>;

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
    {
        let mut c = counts.lock().unwrap();
        *c.seen.entry(key).or_default() += 1;
        c.total += 1;
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

async fn start_server() -> (String, Shared) {
    let counts: Shared = Arc::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), counts)
}

fn temp_db(tag: &str) -> String {
    let p = std::env::temp_dir().join(format!("tq-e2e-{tag}-{}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", p.display()));
    }
    p.display().to_string()
}

fn game(db: &str, url: &str, id: &str, failure_rate: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_twenty-questions"))
        .args([
            "--db",
            db,
            "--id",
            id,
            "--base-url",
            url,
            "--failure-rate",
            failure_rate,
            "--seed",
            "7",
        ])
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn twenty-questions")
}

/// Read the child's stdout on a thread, line by line.
fn lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
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

fn collect_until_exit(mut child: Child) -> (String, bool) {
    let rx = lines(&mut child);
    let mut all = String::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(60)) {
        all.push_str(&l);
        all.push('\n');
    }
    let ok = child.wait().unwrap().success();
    (all, ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_question_five_resumes_by_id() {
    let (url, counts) = start_server().await;
    let db = temp_db("kill");
    let mut child = game(&db, &url, "kill-test", "0.1");
    let rx = lines(&mut child);
    let mut first = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("question 5 never came:\n{first}"));
        first.push_str(&line);
        first.push('\n');
        if line.trim_start().starts_with("5.") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = counts.lock().unwrap().total;
    assert!(
        !first.contains("Guess:"),
        "the game ended before the kill:\n{first}"
    );

    let (second, ok) = tokio::task::spawn_blocking({
        let (db, url) = (db.clone(), url.clone());
        move || collect_until_exit(game(&db, &url, "kill-test", "0.1"))
    })
    .await
    .unwrap();
    assert!(ok, "the resumed game failed:\n{second}");
    assert!(second.contains("Resuming game kill-test"), "{second}");
    assert!(second.contains("Guess: potato  ✔ right"), "{second}");
    let replayed = second.lines().filter(|l| l.contains("(replayed,")).count();
    assert!(
        replayed >= 4,
        "the resumed run shows the replayed questions:\n{second}"
    );
    assert!(second.contains("replayed from the journal"), "{second}");

    let c = counts.lock().unwrap();
    assert!(c.total > before, "the resumed run sent new requests");
    // Every request reached the server once, except at most the one in flight at the kill.
    assert!(
        c.duplicates() <= 1,
        "{} duplicated requests:\nfirst run:\n{first}\nsecond run:\n{second}",
        c.duplicates()
    );
    // K questions and a guess: (K + 1) answerer requests and K + 2 questioner requests.
    assert_eq!(c.seen.len(), 2 * K + 3, "distinct requests");
    let _ = std::fs::remove_file(&db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_calls_fail_and_the_game_still_completes() {
    let (url, counts) = start_server().await;
    let db = temp_db("flaky");
    let (out, ok) = tokio::task::spawn_blocking({
        let (db, url) = (db.clone(), url.clone());
        move || collect_until_exit(game(&db, &url, "flaky-test", "0.5"))
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("Guess: potato  ✔ right"), "{out}");
    let failures = out
        .lines()
        .filter(|l| l.contains("simulated failure"))
        .count();
    assert!(failures > 0, "{out}");
    // The history shows the retries: attempts recorded against the tool steps.
    let engine = steadfast::sqlite_engine(&db).unwrap();
    let h = engine.history("flaky-test").await.unwrap();
    assert_eq!(
        h.attempts.len(),
        failures,
        "every failure is in the history"
    );
    assert!(
        h.attempts
            .iter()
            .all(|a| a.step_id.contains("tool__ask_question"))
    );
    let retried = h.steps.iter().filter(|s| s.attempts > 1).count();
    assert!(retried > 0);
    // Failures happen before the answerer is called: no request was sent twice.
    assert_eq!(counts.lock().unwrap().duplicates(), 0);
    let _ = std::fs::remove_file(&db);
}
