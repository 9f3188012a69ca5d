//! `crashy`: a Steadfast worker process for crash tests.
//!
//! It opens a SQLite store (wrapped in a failpoint store), starts the workflows named on the
//! command line (idempotently: a restarted process resumes them), runs a worker until all of them
//! have finished, and prints one JSON line per workflow. See `crashy --help` and the tests in
//! `tests/`, which start it, kill it with SIGKILL at random moments or let it abort at chosen
//! commits, start it again, and check the outcome.

mod args;
mod execlog;
mod failpoint;
mod workflows;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use serde_json::json;
use steadfast::durable::StoreError;
use steadfast::{Engine, SqliteStore, WorkerConfig, WorkflowError, WorkflowStatus};

use crate::args::{Args, Kind};
use crate::execlog::{ExecLog, LineLog};
use crate::failpoint::FailpointStore;
use crate::workflows::{Approval, ApprovalInput, Pipeline, PipelineInput, Sleeper, SleeperInput};

/// Where the pipeline's model points when no `--llm-url` is given (nothing listens there; only
/// runs of `crash_pipeline` need the model).
const NO_LLM: &str = "http://127.0.0.1:9/v1";

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("crashy: {e:#}");
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crashy: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crashy[{}]: {e:#}", std::process::id());
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let pid = std::process::id();
    let store = retry_locked(|| async { Ok(SqliteStore::open(&args.db)?) }).await?;
    let store = FailpointStore::new(
        store,
        args.crash,
        LineLog::open(args.commit_log.as_deref())?,
    );
    let engine = Engine::new(store);
    let log = Arc::new(ExecLog::new(
        LineLog::open(args.exec_log.as_deref())?,
        args.step_delay,
    ));
    let pipeline = Pipeline::new(args.llm_url.as_deref().unwrap_or(NO_LLM))?;
    let worker = engine
        .worker()
        .workflow(pipeline)
        .workflow(Sleeper)
        .workflow(Approval {
            alt: args.variant_alt,
        })
        .deps::<ExecLog>(log)
        .config(WorkerConfig {
            max_concurrent: args.concurrency,
            lease: args.lease,
            poll_interval: Duration::from_millis(25),
            suspend_threshold: Duration::from_secs(1),
        })
        .start();
    eprintln!(
        "crashy[{pid}]: worker {} on {} (crash plan {:?})",
        worker.id(),
        args.db.display(),
        args.crash
    );

    for (id, topic) in &args.start {
        retry_locked(|| start(&engine, args.kind, id, topic, args.sleep_ms)).await?;
    }

    // Wait until every started workflow has finished, whichever worker (process) ran it.
    let mut records = Vec::new();
    for (id, _) in &args.start {
        loop {
            let rec = retry_locked(|| async { Ok(engine.store().get_workflow(id).await?) })
                .await?
                .ok_or_else(|| anyhow::anyhow!("workflow `{id}` vanished"))?;
            if rec.status.is_terminal() {
                records.push(rec);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    worker.shutdown().await;

    let mut all_completed = true;
    for rec in records {
        let line = if rec.status == WorkflowStatus::Completed {
            json!({ "id": rec.id, "status": rec.status.as_str(), "output": rec.output })
        } else {
            all_completed = false;
            let error = match &rec.output {
                Some(serde_json::Value::Object(m)) => m
                    .get("error")
                    .and_then(|e| e.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| serde_json::Value::Object(m.clone()).to_string()),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            json!({ "id": rec.id, "status": rec.status.as_str(), "error": error })
        };
        println!("{line}");
    }
    Ok(if all_completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Start workflow `id` of `kind` (idempotently).
async fn start(
    engine: &Engine,
    kind: Kind,
    id: &str,
    topic: &str,
    sleep_ms: u64,
) -> Result<(), WorkflowError> {
    match kind {
        Kind::Pipeline => {
            let input = PipelineInput {
                topic: topic.to_string(),
            };
            engine.start::<Pipeline>(id, input).await?;
        }
        Kind::Sleeper => {
            engine
                .start::<Sleeper>(id, SleeperInput { sleep_ms })
                .await?;
        }
        Kind::Approval => {
            let input = ApprovalInput {
                what: topic.to_string(),
            };
            engine.start::<Approval>(id, input).await?;
        }
    }
    Ok(())
}

/// Run `op`, again and again while the database is locked by another process (one that is
/// paused while it holds the write lock, say), for up to two minutes.
async fn retry_locked<T, F, Fut>(mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, WorkflowError>>,
{
    let mut waited = Duration::ZERO;
    loop {
        match op().await {
            Err(WorkflowError::Store(StoreError::Locked(m))) if waited < LOCKED_PATIENCE => {
                if waited.is_zero() {
                    eprintln!(
                        "crashy[{}]: the database is locked ({m}); retrying",
                        std::process::id()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += Duration::from_millis(100);
            }
            other => return Ok(other?),
        }
    }
}

/// How long `retry_locked` keeps trying.
const LOCKED_PATIENCE: Duration = Duration::from_secs(120);
