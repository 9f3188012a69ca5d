//! The durable engine end to end, on both the in-memory store and a SQLite file: agents in
//! workflows, replay, non-determinism, timers, mailboxes, retries, idempotent start, parallel
//! branches, children and cancellation.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use steadfast_core::{
    Agent, FunctionModel, Message, ModelResponse, RequestPart, RetryPolicy, StepPolicy, Tool,
    ToolCtx,
};
use steadfast_durable::{
    Engine, Json, StepError, StepKind, Store, WorkerConfig, Workflow, WorkflowCtx, WorkflowError,
    WorkflowStatus,
};

fn temp_db(tag: &str) -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "steadfast-engine-{tag}-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    common::remove_db(&p);
    p
}

fn fast() -> WorkerConfig {
    WorkerConfig {
        lease: Duration::from_millis(400),
        poll_interval: Duration::from_millis(20),
        suspend_threshold: Duration::from_millis(200),
        ..Default::default()
    }
}

/// Runs a scenario on a memory store and on a SQLite file.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(std::sync::Arc::new(steadfast_durable::MemoryStore::new())).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let path = super::temp_db(stringify!($name));
                    let store = steadfast_sqlite::SqliteStore::open(&path).expect("open");
                    super::$name(std::sync::Arc::new(store)).await;
                    super::common::remove_db(&path);
                }
            )*
        }
    };
}

on_both_stores!(
    agent_steps_are_journaled_and_replayed,
    changed_code_is_a_non_determinism_error,
    sleep_suspends_and_wakes,
    recv_waits_for_a_signal_and_times_out,
    start_is_idempotent,
    retries_follow_the_policy_and_failures_fail_the_workflow,
    parallel_branches_replay_deterministically,
    child_workflows_and_journaled_values,
    cancellation_stops_a_waiting_workflow,
    an_early_message_does_not_wake_a_sleeper_again_and_again,
    a_local_worker_takes_what_its_process_starts,
    a_start_given_up_midway_keeps_no_slot,
);

// ---------------------------------------------------------------------------------------------
// An agent with a tool inside a workflow.

#[derive(Deserialize, JsonSchema)]
/// Look up a fact.
struct Lookup {
    key: String,
}

/// Counts model requests per distinct conversation length, like a provider would see them.
#[derive(Default)]
struct Counter {
    requests: Mutex<HashMap<usize, usize>>,
    tools: AtomicUsize,
}

fn agent(counter: Arc<Counter>) -> Agent<(), String> {
    let c = counter.clone();
    let model = FunctionModel::new(move |messages: &[Message], _| {
        *c.requests
            .lock()
            .unwrap()
            .entry(messages.len())
            .or_default() += 1;
        let tool_returns = messages
            .iter()
            .filter_map(Message::as_request)
            .flat_map(|r| r.parts.iter())
            .filter(|p| matches!(p, RequestPart::ToolReturn { .. }))
            .count();
        Ok(if tool_returns < 3 {
            ModelResponse::tool_call("lookup", json!({ "key": format!("k{tool_returns}") }))
        } else {
            ModelResponse::text("done after 3 lookups")
        })
    });
    Agent::builder("researcher")
        .model(model)
        .tool(Tool::new("lookup", move |ctx: ToolCtx<()>, a: Lookup| {
            let counter = counter.clone();
            async move {
                counter.tools.fetch_add(1, Ordering::SeqCst);
                assert!(
                    ctx.idempotency_key.contains("tool__lookup#"),
                    "{}",
                    ctx.idempotency_key
                );
                Ok(format!("value of {}", a.key))
            }
        }))
        .build()
        .unwrap()
}

struct Research {
    agent: Agent<(), String>,
}

impl Workflow for Research {
    const NAME: &'static str = "research";
    type Input = String;
    type Output = (String, u32);
    async fn run(&self, ctx: &WorkflowCtx, q: String) -> Result<(String, u32), WorkflowError> {
        let r = self.agent.run_in(ctx, q, ()).await?;
        // Hold here until told to finish, so a test can stop the worker between runs.
        let _: Option<bool> = ctx.recv("finish", None).await?;
        Ok((r.output, r.usage.requests))
    }
}

async fn agent_steps_are_journaled_and_replayed(store: Arc<dyn Store>) {
    let counter = Arc::new(Counter::default());
    let engine = Engine::from_arc(store);
    let worker = engine
        .worker()
        .config(fast())
        .workflow(Research {
            agent: agent(counter.clone()),
        })
        .start();
    let h = engine
        .start::<Research>("r-1", "find".into())
        .await
        .unwrap();
    // Wait until it is suspended on `recv`: 4 model requests and 3 tools are journaled.
    wait_status(&engine, "r-1", WorkflowStatus::Suspended).await;
    worker.shutdown().await;
    let history = engine.history("r-1").await.unwrap();
    let names: Vec<&str> = history.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "agent__researcher__model_request",
            "agent__researcher__tool__lookup",
            "agent__researcher__model_request",
            "agent__researcher__tool__lookup",
            "agent__researcher__model_request",
            "agent__researcher__tool__lookup",
            "agent__researcher__model_request",
        ]
    );
    assert_eq!(history.steps[1].step_id, "researcher#1/tool__lookup#1");
    assert_eq!(
        history.steps[1].input.as_ref().map(Json::to_value),
        Some(json!({"key": "k0"}))
    );

    // A new worker resumes: everything is answered from the journal.
    let replays = Arc::new(AtomicUsize::new(0));
    let r2 = replays.clone();
    let worker = engine
        .worker()
        .config(fast())
        .workflow(Research {
            agent: agent(counter.clone()),
        })
        .on_step(move |e| {
            if e.event == steadfast_durable::StepEventKind::Replayed {
                r2.fetch_add(1, Ordering::SeqCst);
            }
        })
        .start();
    engine.send("r-1", "finish", true).await.unwrap();
    let (out, requests) = h.result().await.unwrap();
    assert_eq!(out, "done after 3 lookups");
    assert_eq!(requests, 4, "usage survives replay");
    assert_eq!(counter.tools.load(Ordering::SeqCst), 3, "no tool ran twice");
    let per_turn = counter.requests.lock().unwrap().clone();
    assert!(
        per_turn.values().all(|n| *n == 1),
        "a model request ran twice: {per_turn:?}"
    );
    assert!(replays.load(Ordering::SeqCst) >= 7);
    worker.shutdown().await;
}

async fn wait_status(engine: &Engine, id: &str, want: WorkflowStatus) {
    for _ in 0..500 {
        if let Some(r) = engine.store().get_workflow(id).await.unwrap()
            && r.status == want
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("workflow {id} never reached {want}");
}

// ---------------------------------------------------------------------------------------------

struct TwoSteps {
    swapped: bool,
}

impl Workflow for TwoSteps {
    const NAME: &'static str = "two_steps";
    type Input = ();
    type Output = String;
    async fn run(&self, ctx: &WorkflowCtx, _: ()) -> Result<String, WorkflowError> {
        let (a, b) = if self.swapped { ("b", "a") } else { ("a", "b") };
        let x: String = ctx
            .step(a, &(), |_| async { Ok::<_, StepError>("x".to_string()) })
            .await?;
        let _: Option<()> = ctx.recv("go", None).await?;
        let y: String = ctx
            .step(b, &(), |_| async { Ok::<_, StepError>("y".to_string()) })
            .await?;
        Ok(x + &y)
    }
}

async fn changed_code_is_a_non_determinism_error(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store);
    let w = engine
        .worker()
        .config(fast())
        .workflow(TwoSteps { swapped: false })
        .start();
    let h = engine.start::<TwoSteps>("nd", ()).await.unwrap();
    wait_status(&engine, "nd", WorkflowStatus::Suspended).await;
    w.shutdown().await;
    let before = engine.history("nd").await.unwrap().steps;

    let w = engine
        .worker()
        .config(fast())
        .workflow(TwoSteps { swapped: true })
        .start();
    engine.send("nd", "go", ()).await.unwrap();
    let err = h.result().await.unwrap_err().to_string();
    assert!(err.contains("non-determinism"), "{err}");
    assert!(
        err.contains("holds `a` (kind step") && err.contains("asks for `b` (kind step"),
        "names both steps: {err}"
    );
    let after = engine.history("nd").await.unwrap().steps;
    assert_eq!(before, after, "the history is left intact");
    w.shutdown().await;
}

// ---------------------------------------------------------------------------------------------

struct Sleeper;

impl Workflow for Sleeper {
    const NAME: &'static str = "sleeper";
    type Input = u64;
    type Output = i64;
    async fn run(&self, ctx: &WorkflowCtx, ms: u64) -> Result<i64, WorkflowError> {
        let start = ctx.now().await?;
        ctx.sleep(Duration::from_millis(ms)).await?;
        let end = ctx.now().await?;
        Ok(end - start)
    }
}

async fn sleep_suspends_and_wakes(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store);
    let w = engine.worker().config(fast()).workflow(Sleeper).start();
    let h = engine.start::<Sleeper>("sl", 700).await.unwrap();
    // Longer than the suspend threshold: it leaves memory, with a timer in the store.
    wait_status(&engine, "sl", WorkflowStatus::Suspended).await;
    let rec = engine.store().get_workflow("sl").await.unwrap().unwrap();
    assert!(rec.wake_at.is_some());
    // Across a worker restart it still wakes on time.
    w.shutdown().await;
    let w = engine.worker().config(fast()).workflow(Sleeper).start();
    let slept = h.result().await.unwrap();
    assert!(slept >= 700, "woke early: {slept} ms");
    w.shutdown().await;
}

// ---------------------------------------------------------------------------------------------

struct Approval;

impl Workflow for Approval {
    const NAME: &'static str = "approval";
    type Input = u64;
    type Output = (Option<String>, Option<String>);
    async fn run(&self, ctx: &WorkflowCtx, timeout_ms: u64) -> Result<Self::Output, WorkflowError> {
        let first = ctx.recv::<String>("approve", None).await?;
        let second = ctx
            .recv::<String>("approve", Some(Duration::from_millis(timeout_ms)))
            .await?;
        Ok((first, second))
    }
}

async fn recv_waits_for_a_signal_and_times_out(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store);
    let w = engine.worker().config(fast()).workflow(Approval).start();
    let h = engine.start::<Approval>("ap", 300).await.unwrap();
    wait_status(&engine, "ap", WorkflowStatus::Suspended).await;
    w.shutdown().await;
    // The signal arrives while no worker runs; a new worker continues.
    engine.send("ap", "approve", "yes by ada").await.unwrap();
    let w = engine.worker().config(fast()).workflow(Approval).start();
    let (first, second) = h.result().await.unwrap();
    assert_eq!(first.as_deref(), Some("yes by ada"));
    assert_eq!(second, None, "the second wait timed out");
    w.shutdown().await;
}

// ---------------------------------------------------------------------------------------------

static IDEMPOTENT_RUNS: AtomicUsize = AtomicUsize::new(0);

struct Once;

impl Workflow for Once {
    const NAME: &'static str = "once";
    type Input = String;
    type Output = String;
    async fn run(&self, ctx: &WorkflowCtx, s: String) -> Result<String, WorkflowError> {
        ctx.step("count", &s, |_| async {
            IDEMPOTENT_RUNS.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StepError>("ran".to_string())
        })
        .await
    }
}

async fn start_is_idempotent(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store);
    let w = engine.worker().config(fast()).workflow(Once).start();
    let id = format!("once-{}", IDEMPOTENT_RUNS.load(Ordering::SeqCst));
    let before = IDEMPOTENT_RUNS.load(Ordering::SeqCst);
    let h1 = engine.start::<Once>(&id, "a".into()).await.unwrap();
    let h2 = engine.start::<Once>(&id, "b".into()).await.unwrap();
    assert_eq!(h1.result().await.unwrap(), "ran");
    assert_eq!(h2.result().await.unwrap(), "ran");
    let h3 = engine.start::<Once>(&id, "c".into()).await.unwrap();
    assert_eq!(h3.result().await.unwrap(), "ran");
    assert_eq!(IDEMPOTENT_RUNS.load(Ordering::SeqCst) - before, 1);
    assert_eq!(
        engine.history(&id).await.unwrap().workflow.input,
        json!("a")
    );
    // The same id for another workflow type is refused.
    let err = engine.start::<Sleeper>(&id, 1).await.err().unwrap();
    assert!(
        err.to_string().contains("taken by a `once` workflow"),
        "{err}"
    );
    w.shutdown().await;
}

// ---------------------------------------------------------------------------------------------

struct Flaky {
    fails: Arc<AtomicUsize>,
}

impl Workflow for Flaky {
    const NAME: &'static str = "flaky";
    type Input = bool;
    type Output = u32;
    async fn run(&self, ctx: &WorkflowCtx, fatal: bool) -> Result<u32, WorkflowError> {
        let policy = StepPolicy::default()
            .with_retry(RetryPolicy::attempts(5).with_initial_interval(Duration::from_millis(5)));
        let fails = self.fails.clone();
        ctx.step_with("call", &fatal, policy, move |sc| {
            let fails = fails.clone();
            async move {
                if fatal {
                    return Err(StepError::fatal("bad request: the key is wrong"));
                }
                if fails.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(StepError::retryable(format!(
                        "503 on attempt {}",
                        sc.attempt
                    )))
                } else {
                    Ok(sc.attempt)
                }
            }
        })
        .await
    }
}

async fn retries_follow_the_policy_and_failures_fail_the_workflow(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store);
    let fails = Arc::new(AtomicUsize::new(0));
    let w = engine
        .worker()
        .config(fast())
        .workflow(Flaky {
            fails: fails.clone(),
        })
        .start();
    let attempt = engine
        .start::<Flaky>("fl", false)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(
        attempt, 4,
        "three failures, then success on the 4th attempt"
    );
    let h = engine.history("fl").await.unwrap();
    assert_eq!(h.steps[0].attempts, 4);
    assert_eq!(h.attempts.len(), 3);
    assert_eq!(h.attempts[2].error, "503 on attempt 3");

    let err = engine
        .start::<Flaky>("fl-fatal", true)
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("bad request: the key is wrong"),
        "{err}"
    );
    let h = engine.history("fl-fatal").await.unwrap();
    assert_eq!(h.workflow.status, WorkflowStatus::Failed);
    assert_eq!(
        h.steps[0].attempts, 1,
        "a non-retryable error is not retried"
    );
    w.shutdown().await;
}

// ---------------------------------------------------------------------------------------------

struct FanOut;

impl Workflow for FanOut {
    const NAME: &'static str = "fan_out";
    type Input = u64;
    type Output = Vec<String>;
    async fn run(&self, ctx: &WorkflowCtx, seed: u64) -> Result<Vec<String>, WorkflowError> {
        let branches = (0..5u64).map(|i| {
            let b = ctx.branch("search");
            async move {
                // Finish in a seed-dependent order.
                let delay = (seed * 7 + i * 13) % 5 * 15;
                b.step("fetch", &i, move |sc| async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    Ok::<_, StepError>(sc.step_id)
                })
                .await
            }
        });
        let ids = ctx
            .join_all(branches)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let _: Option<()> = ctx.recv("again", None).await?;
        Ok(ids)
    }
}

async fn parallel_branches_replay_deterministically(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store);
    let w = engine.worker().config(fast()).workflow(FanOut).start();
    let h = engine.start::<FanOut>("fan", 3).await.unwrap();
    wait_status(&engine, "fan", WorkflowStatus::Suspended).await;
    let first = engine.history("fan").await.unwrap();
    // Commit order follows completion, not creation...
    let committed: Vec<&str> = first.steps.iter().map(|s| s.step_id.as_str()).collect();
    assert_ne!(
        committed,
        [
            "search#1/fetch#1",
            "search#2/fetch#1",
            "search#3/fetch#1",
            "search#4/fetch#1",
            "search#5/fetch#1"
        ]
    );
    engine.send("fan", "again", ()).await.unwrap();
    // ...but the ids follow program order, and the replay gives them back in order.
    let ids = h.result().await.unwrap();
    assert_eq!(
        ids,
        [
            "search#1/fetch#1",
            "search#2/fetch#1",
            "search#3/fetch#1",
            "search#4/fetch#1",
            "search#5/fetch#1"
        ]
    );
    w.shutdown().await;
}

// ---------------------------------------------------------------------------------------------

struct Kid;

impl Workflow for Kid {
    const NAME: &'static str = "kid";
    type Input = u32;
    type Output = u32;
    async fn run(&self, ctx: &WorkflowCtx, x: u32) -> Result<u32, WorkflowError> {
        ctx.sleep(Duration::from_millis(300)).await?;
        Ok(x * 2)
    }
}

struct ChildParent;

impl Workflow for ChildParent {
    const NAME: &'static str = "child_parent";
    type Input = ();
    type Output = (u32, u64, String);
    async fn run(&self, ctx: &WorkflowCtx, _: ()) -> Result<Self::Output, WorkflowError> {
        let r = ctx.random().await?;
        let u = ctx.uuid().await?;
        // Waiting on the child suspends this workflow; it finishes in a later, replayed run.
        let child = ctx
            .child::<Kid>(&format!("{}-kid", ctx.workflow_id()), 21)
            .await?;
        Ok((child, r, u))
    }
}

async fn child_workflows_and_journaled_values(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store);
    let w = engine
        .worker()
        .config(fast())
        .workflow(ChildParent)
        .workflow(Kid)
        .start();
    let (child, r, u) = engine
        .start::<ChildParent>("p", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(child, 42);
    let h = engine.history("p").await.unwrap();
    assert!(h.steps.iter().any(|s| s.kind == StepKind::Child));
    // The values the final (replayed) run returned are the ones first journaled.
    let recorded = |name: &str| {
        h.steps
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.output.as_ref().ok().map(Json::to_value))
            .unwrap()
    };
    assert_eq!(recorded("random"), json!(r));
    assert_eq!(recorded("uuid"), json!(u));
    assert_eq!(u.len(), 36);
    let kid = engine.history("p-kid").await.unwrap().workflow;
    assert_eq!(kid.parent_id.as_deref(), Some("p"));
    w.shutdown().await;
}

// ---------------------------------------------------------------------------------------------

async fn cancellation_stops_a_waiting_workflow(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store);
    let w = engine.worker().config(fast()).workflow(Approval).start();
    let h = engine.start::<Approval>("cx", 10_000).await.unwrap();
    wait_status(&engine, "cx", WorkflowStatus::Suspended).await;
    assert_eq!(
        engine.cancel("cx").await.unwrap(),
        WorkflowStatus::Cancelled
    );
    let err = h.result().await.unwrap_err();
    assert!(matches!(err, WorkflowError::Cancelled(_)), "{err}");
    w.shutdown().await;
}

// ---------------------------------------------------------------------------------------------

struct SleepThenRecv;

impl Workflow for SleepThenRecv {
    const NAME: &'static str = "sleep_then_recv";
    type Input = ();
    type Output = Option<String>;
    async fn run(&self, ctx: &WorkflowCtx, _: ()) -> Result<Option<String>, WorkflowError> {
        ctx.sleep(Duration::from_millis(800)).await?;
        ctx.recv("approve", None).await
    }
}

async fn an_early_message_does_not_wake_a_sleeper_again_and_again(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store);
    let w = engine
        .worker()
        .config(fast())
        .workflow(SleepThenRecv)
        .start();
    let h = engine.start::<SleepThenRecv>("early", ()).await.unwrap();
    wait_status(&engine, "early", WorkflowStatus::Suspended).await;
    // The message for the later `recv` arrives while the workflow sleeps: it wakes the workflow
    // once, which goes back to sleep; it is not woken again for every suspension.
    engine.send("early", "approve", "go").await.unwrap();
    assert_eq!(h.result().await.unwrap().as_deref(), Some("go"));
    assert!(
        w.runs_ended() <= 4,
        "{} runs for one sleep and one message",
        w.runs_ended()
    );
    w.shutdown().await;
}

// ---------------------------------------------------------------------------------------------

/// Waits in a step until its gate (a worker dependency) lets it through.
struct Gated;

impl Workflow for Gated {
    const NAME: &'static str = "gated";
    type Input = ();
    type Output = String;
    async fn run(&self, ctx: &WorkflowCtx, _: ()) -> Result<String, WorkflowError> {
        let gate = ctx.deps::<tokio::sync::Semaphore>()?;
        ctx.step("pass", &(), move |_| {
            let gate = gate.clone();
            async move {
                let _permit = gate.acquire().await;
                Ok::<_, StepError>("passed".to_string())
            }
        })
        .await
    }
}

/// A worker of `engine` for [`Gated`] with one slot, and the gate it holds (`permits` open).
fn gated_worker(
    engine: &Engine,
    permits: usize,
) -> (steadfast_durable::Worker, Arc<tokio::sync::Semaphore>) {
    let config = WorkerConfig {
        max_concurrent: 1,
        ..fast()
    };
    let gate = Arc::new(tokio::sync::Semaphore::new(permits));
    let w = engine
        .worker()
        .config(config)
        .deps::<tokio::sync::Semaphore>(gate.clone())
        .workflow(Gated)
        .start();
    (w, gate)
}

/// A workflow started where a worker for it runs is created already claimed by that worker,
/// while the worker has a slot free; otherwise it is created pending, for any worker to claim.
async fn a_local_worker_takes_what_its_process_starts(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store);
    let (w, gate) = gated_worker(&engine, 0);
    let status = |id: &'static str| {
        let engine = engine.clone();
        async move {
            let r = engine.store().get_workflow(id).await.unwrap().unwrap();
            (r.status, r.owner)
        }
    };
    let first = engine.start::<Gated>("local-1", ()).await.unwrap();
    // Running under the worker's lease as soon as `start` returns: no claim came between.
    assert_eq!(
        status("local-1").await,
        (WorkflowStatus::Running, Some(w.id().to_owned()))
    );
    // The worker's one slot is taken: the next one waits for a claim.
    let second = engine.start::<Gated>("local-2", ()).await.unwrap();
    assert_eq!(status("local-2").await, (WorkflowStatus::Pending, None));
    gate.add_permits(2);
    assert_eq!(first.result().await.unwrap(), "passed");
    assert_eq!(second.result().await.unwrap(), "passed");
    // A worker that has stopped takes nothing.
    w.shutdown().await;
    engine.start::<Gated>("local-3", ()).await.unwrap();
    assert_eq!(status("local-3").await, (WorkflowStatus::Pending, None));
}

/// A start given up while its workflow was being created under a local worker's lease keeps
/// neither the worker's slot nor the workflow: the next start runs, and the given-up workflow,
/// if it was created, is released and runs too.
async fn a_start_given_up_midway_keeps_no_slot(store: Arc<dyn Store>) {
    let engine = Engine::from_arc(store);
    let (w, _gate) = gated_worker(&engine, 100);
    {
        let mut start = Box::pin(engine.start::<Gated>("given-up", ()));
        // Polled once and dropped: on SQLite, while the write is queued.
        let _ = futures::poll!(&mut start);
    }
    let after = engine.start::<Gated>("after", ()).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(10), after.result()).await;
    assert_eq!(done.expect("the worker's slot was kept").unwrap(), "passed");
    if engine
        .store()
        .get_workflow("given-up")
        .await
        .unwrap()
        .is_some()
    {
        wait_status(&engine, "given-up", WorkflowStatus::Completed).await;
    }
    w.shutdown().await;
}
