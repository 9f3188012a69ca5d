//! Fixtures of the CLI tests: the workflows, a database prepared with them, and running the
//! binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use steadfast_core::{
    Agent, FunctionModel, Message, ModelResponse, RequestPart, RetryPolicy, StepPolicy, Tool,
    ToolCtx, Usage,
};
use steadfast_durable::{
    Engine, StepError, Worker, WorkerConfig, Workflow, WorkflowCtx, WorkflowError, WorkflowStatus,
};
use steadfast_sqlite::SqliteStore;

// ---------------------------------------------------------------------------------------------
// Workflows.

/// Each writer request costs 1 cent, the expert's 0.5 cent: $0.025 in all. A naive sum of model
/// requests and tool outcomes would count the expert twice ($0.030).
pub const WRITER_COST: f64 = 0.01;
pub const EXPERT_COST: f64 = 0.005;

pub fn usage(cost_usd: f64, input_tokens: u64) -> Usage {
    Usage {
        requests: 1,
        input_tokens,
        output_tokens: 20,
        cost_usd,
        ..Usage::default()
    }
}

#[derive(Deserialize, JsonSchema)]
/// Ask the expert a question.
pub struct Ask {
    question: String,
}

pub fn expert() -> Agent<(), String> {
    let model = FunctionModel::new(|_, _| {
        let mut r = ModelResponse::text("forty-two");
        r.usage = usage(EXPERT_COST, 50);
        Ok(r)
    });
    Agent::builder("expert").model(model).build().unwrap()
}

pub fn writer() -> Agent<(), String> {
    let model = FunctionModel::new(|messages: &[Message], _| {
        let answered = messages
            .iter()
            .filter_map(Message::as_request)
            .flat_map(|r| r.parts.iter())
            .any(|p| matches!(p, RequestPart::ToolReturn { .. }));
        let mut r = if answered {
            ModelResponse::text("a summary")
        } else {
            ModelResponse::tool_call("ask_expert", json!({ "question": "what is the answer?" }))
        };
        r.usage = usage(WRITER_COST, 100);
        Ok(r)
    });
    let expert = expert();
    Agent::builder("writer")
        .model(model)
        .tool(Tool::new("ask_expert", move |ctx: ToolCtx<()>, a: Ask| {
            let expert = expert.clone();
            async move {
                let r = expert.run_in(&ctx, a.question, ()).await?;
                Ok(r.output)
            }
        }))
        .build()
        .unwrap()
}

pub struct Pipeline {
    writer: Agent<(), String>,
}

impl Workflow for Pipeline {
    const NAME: &'static str = "pipeline";
    type Input = String;
    type Output = String;
    async fn run(&self, ctx: &WorkflowCtx, url: String) -> Result<String, WorkflowError> {
        let u = url.clone();
        let page: String = ctx
            .step("fetch", &url, move |_| {
                let u = u.clone();
                async move { Ok::<_, StepError>(format!("contents of {u}")) }
            })
            .await?;
        let retry = RetryPolicy::attempts(3).with_initial_interval(Duration::from_millis(5));
        let _: u32 = ctx
            .step_with(
                "flaky",
                &json!({ "n": 1 }),
                StepPolicy::default().with_retry(retry),
                |sc| async move {
                    match sc.attempt {
                        1 => Err(StepError::retryable("upstream 503")),
                        n => Ok(n),
                    }
                },
            )
            .await?;
        let r = self
            .writer
            .run_in(ctx, format!("summarize {page}"), ())
            .await?;
        Ok(r.output)
    }
}

pub struct Approval;

impl Workflow for Approval {
    const NAME: &'static str = "approval";
    type Input = String;
    type Output = Value;
    async fn run(&self, ctx: &WorkflowCtx, doc: String) -> Result<Value, WorkflowError> {
        let _: String = ctx
            .step("draft", &doc, |_| async {
                Ok::<_, StepError>("draft v1".to_string())
            })
            .await?;
        let approval: Option<Value> = ctx.recv("approve", None).await?;
        Ok(json!({ "approval": approval }))
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// A database file in the temp directory, removed (with its WAL files) when dropped.
pub struct TempDb(PathBuf);

impl TempDb {
    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
        let _ = std::fs::remove_dir_all(format!("{}-steplog", self.0.display()));
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

impl std::ops::Deref for TempDb {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDb {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

pub fn temp_db(tag: &str) -> TempDb {
    static N: AtomicUsize = AtomicUsize::new(0);
    let db = TempDb(std::env::temp_dir().join(format!(
        "steadfast-cli-{tag}-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )));
    db.remove();
    db
}

pub fn worker(engine: &Engine) -> Worker {
    engine
        .worker()
        .config(WorkerConfig {
            lease: Duration::from_millis(500),
            poll_interval: Duration::from_millis(20),
            ..WorkerConfig::default()
        })
        .workflow(Pipeline { writer: writer() })
        .workflow(Approval)
        .start()
}

/// A database with `wf-done` (completed) and `wf-wait` (suspended on `recv("approve")`).
pub async fn prepare(tag: &str) -> (TempDb, Engine) {
    let path = temp_db(tag);
    let engine = Engine::new(SqliteStore::open(&path).expect("open"));
    let w = worker(&engine);
    let done = engine
        .start::<Pipeline>("wf-done", "https://example.com/a".into())
        .await
        .unwrap();
    assert_eq!(done.result().await.unwrap(), "a summary");
    engine
        .start::<Approval>("wf-wait", "doc".into())
        .await
        .unwrap();
    wait_for(&engine, "wf-wait", WorkflowStatus::Suspended).await;
    w.shutdown().await;
    (path, engine)
}

pub async fn wait_for(engine: &Engine, id: &str, status: WorkflowStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = engine
            .store()
            .get_workflow(id)
            .await
            .unwrap()
            .map(|r| r.status);
        if now == Some(status) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} is {now:?}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn steadfast(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steadfast"))
        .env_remove("STEADFAST_DB")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run steadfast")
}

/// Success: its stdout.
pub fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {stderr}",
        out.status.code()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Failure: exit code 1 and one line on stderr, which is returned.
pub fn fails(out: Output) -> String {
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

pub fn line_of<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with `{start}` in:\n{text}"))
}
