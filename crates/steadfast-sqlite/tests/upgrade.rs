//! A journal written by an earlier build replays under this one: model requests whose input
//! hashes are FNV-1a (16 hex digits), as builds before `xxh3:` hashes wrote them, are answered
//! from the journal; a hash that matches neither form is still non-determinism.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use steadfast_core::{Agent, FunctionModel, Message, ModelResponse, Tool, ToolCtx};
use steadfast_durable::{
    Engine, StepKind, Store, Worker, WorkerConfig, Workflow, WorkflowCtx, WorkflowError,
    WorkflowStatus,
};
use steadfast_sqlite::SqliteStore;

use common::TempDb;

/// FNV-1a of `bytes`, hex: how earlier builds hashed a model request's JSON.
fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[derive(Deserialize, JsonSchema)]
struct Lookup {
    key: String,
}

/// An agent that looks up two keys, then answers. Its model keeps, per request, the hash an
/// earlier build would have journaled for it.
fn agent(calls: Arc<AtomicUsize>, legacy: Arc<Mutex<Vec<String>>>) -> Agent<(), String> {
    let model = FunctionModel::new(move |messages: &[Message], params| {
        calls.fetch_add(1, Ordering::SeqCst);
        let json = serde_json::to_vec(&(messages.len(), messages.last(), params)).unwrap();
        legacy.lock().unwrap().push(fnv1a(&json));
        let looked_up = messages.len() / 2;
        Ok(if looked_up < 2 {
            ModelResponse::tool_call("lookup", json!({ "key": format!("k{looked_up}") }))
        } else {
            ModelResponse::text("found both")
        })
    });
    Agent::builder("upgrader")
        .model(model)
        .tool(Tool::new(
            "lookup",
            |_: ToolCtx<()>, a: Lookup| async move { Ok(format!("value of {}", a.key)) },
        ))
        .build()
        .unwrap()
}

struct Upgraded {
    agent: Agent<(), String>,
}

impl Workflow for Upgraded {
    const NAME: &'static str = "upgraded";
    type Input = ();
    type Output = String;
    async fn run(&self, ctx: &WorkflowCtx, _: ()) -> Result<String, WorkflowError> {
        let r = self.agent.run_in(ctx, "find", ()).await?;
        let _: Option<bool> = ctx.recv("finish", None).await?;
        Ok(r.output)
    }
}

fn fast() -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_millis(400),
        poll_interval: Duration::from_millis(20),
        suspend_threshold: Duration::from_millis(100),
        ..Default::default()
    }
}

/// An engine on `store` and a worker of it that runs `Upgraded`.
fn running(
    store: &SqliteStore,
    calls: Arc<AtomicUsize>,
    legacy: Arc<Mutex<Vec<String>>>,
) -> (Engine, Worker) {
    let engine = Engine::new(store.clone());
    let worker = engine
        .worker()
        .config(fast())
        .workflow(Upgraded {
            agent: agent(calls, legacy),
        })
        .start();
    (engine, worker)
}

async fn wait_status(store: &SqliteStore, id: &str, want: WorkflowStatus) {
    for _ in 0..1000 {
        if let Some(r) = store.get_workflow(id).await.unwrap()
            && r.status == want
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("workflow {id} never reached {want}");
}

/// Run the workflow up to its `recv`, then put `hashes(legacy)` in place of its model
/// requests' hashes, as a file written by an earlier build would hold them. Returns the
/// database and how often the model was called.
async fn journal_with(
    label: &str,
    hashes: impl Fn(&[String]) -> Vec<String>,
) -> (TempDb, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let db = TempDb::new(label);
    let calls = Arc::new(AtomicUsize::new(0));
    let legacy = Arc::new(Mutex::new(Vec::new()));
    {
        let store = db.open();
        let (engine, worker) = running(&store, calls.clone(), legacy.clone());
        engine.start::<Upgraded>("u-1", ()).await.unwrap();
        wait_status(&store, "u-1", WorkflowStatus::Suspended).await;
        worker.shutdown().await;
        let journal = store.load_journal("u-1").await.unwrap();
        let requests: Vec<_> = journal
            .iter()
            .filter(|r| r.kind == StepKind::ModelRequest)
            .collect();
        assert_eq!(requests.len(), 3);
        for r in &requests {
            assert!(r.input_hash.starts_with("xxh3:"), "{}", r.input_hash);
        }
    }
    let wanted = hashes(&legacy.lock().unwrap());
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let mut seqs: Vec<i64> = conn
        .prepare("SELECT seq FROM journal WHERE kind = 'model_request' ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(seqs.len(), wanted.len());
    for (seq, hash) in seqs.drain(..).zip(wanted) {
        conn.execute(
            "UPDATE journal SET input_hash = ?1 WHERE workflow_id = 'u-1' AND seq = ?2",
            rusqlite::params![hash, seq],
        )
        .unwrap();
    }
    (db, calls, legacy)
}

/// Resume the workflow on a new store over the file and send it `finish`: its result.
async fn resume(db: &TempDb, calls: Arc<AtomicUsize>) -> Result<String, WorkflowError> {
    let store = db.open();
    let (engine, worker) = running(&store, calls, Arc::new(Mutex::new(Vec::new())));
    engine.send("u-1", "finish", true).await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        engine.handle::<Upgraded>("u-1").result(),
    )
    .await
    .expect("the workflow ends");
    worker.shutdown().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_requests_hashed_by_an_earlier_build_replay() {
    let (db, calls, _) = journal_with("legacy", |legacy| legacy.to_vec()).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(resume(&db, calls.clone()).await.unwrap(), "found both");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "every model request was answered from the journal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_hash_of_neither_form_is_non_determinism() {
    // The second request's hash is an earlier build's hash of another request.
    let (db, calls, _) = journal_with("mismatch", |legacy| {
        vec![legacy[0].clone(), legacy[0].clone(), legacy[2].clone()]
    })
    .await;
    let err = resume(&db, calls).await.unwrap_err().to_string();
    assert!(
        err.contains("non-determinism") || err.contains("nondeterminism"),
        "{err}"
    );
}
