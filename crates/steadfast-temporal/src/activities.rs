//! Steps as Temporal activities, with names that are the steps' own.
//!
//! A step's body is a closure that owns the worker's deps: it is never serialized. The workflow
//! side puts the body in this process's [`Bodies`] and schedules the activity on this process's
//! own activity task queue, so the attempt runs where the body is. The activity's payload holds
//! only a key and, for visibility, the step's input.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steadfast_durable::{StepBody, StepCtx, StepError};
use temporalio_common::{ActivityDefinition, ActivityError};
use temporalio_sdk::activities::{
    ActivityContext, ActivityDefinitions, ActivityImplementer, ExecutableActivity,
};
use temporalio_sdk::{ApplicationFailure, WorkerOptions};

/// The failure type of a step error that must not be retried; retry policies list it as
/// non-retryable.
pub(crate) const FATAL: &str = "steadfast.Fatal";
/// The failure type of a step error that may be retried.
pub(crate) const RETRYABLE: &str = "steadfast.Retryable";

/// What a step activity carries: the key of its body, and its input for the history's readers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StepTask {
    /// `{run_id}/{step_id}`: the body's key in the worker's [`Bodies`].
    pub key: String,
    /// The step id, for the idempotency key.
    pub step_id: String,
    /// The step's input, when it is worth showing (tool arguments, user step inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// A step activity's result: the output and the input hash it answers, checked on replay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StepDone {
    /// The input hash of the step that ran.
    pub hash: String,
    /// The output.
    pub output: Value,
}

/// A body waiting for its activity, with the input hash it was scheduled under.
pub(crate) struct Pending {
    body: Mutex<StepBody>,
    hash: String,
    name: String,
}

/// The step bodies of this process, by `{run_id}/{step_id}`.
#[derive(Default)]
pub(crate) struct Bodies {
    map: Mutex<HashMap<String, Arc<Pending>>>,
}

impl Bodies {
    /// Keep `body` until its activity has finished.
    pub fn insert(&self, key: String, name: String, hash: String, body: StepBody) {
        let pending = Arc::new(Pending {
            body: Mutex::new(body),
            hash,
            name,
        });
        self.lock().insert(key, pending);
    }

    /// Forget the body under `key` (its result is in the history).
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    fn get(&self, key: &str) -> Option<Arc<Pending>> {
        self.lock().get(key).cloned()
    }

    /// How many bodies are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Pending>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

thread_local! {
    /// The name the next registration gives its activity (see [`register`]).
    static NAMING: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The activity type of one step name.
pub(crate) struct StepActivity {
    name: String,
}

impl StepActivity {
    /// The activity named `name`.
    pub fn named(name: &str) -> Self {
        StepActivity {
            name: name.to_string(),
        }
    }
}

impl ActivityDefinition for StepActivity {
    type Input = StepTask;
    type Output = StepDone;

    fn name(&self) -> &str {
        &self.name
    }
}

impl ExecutableActivity for StepActivity {
    type Implementer = StepRunner;
    const REQUIRES_INSTANCE: bool = true;

    fn definition() -> Self {
        // The SDK keys its registry by `definition().name()`; `register` sets the name first,
        // so one Rust type serves every step name.
        StepActivity {
            name: NAMING.with(|n| n.borrow().clone()),
        }
    }

    fn execute(
        receiver: Option<Arc<StepRunner>>,
        ctx: ActivityContext,
        input: StepTask,
    ) -> BoxFuture<'static, Result<StepDone, ActivityError>> {
        match receiver {
            Some(runner) => Box::pin(runner.run(ctx, input)),
            None => Box::pin(async { Err(fatal("the step runner is missing")) }),
        }
    }
}

/// Runs step activities from this process's bodies.
pub(crate) struct StepRunner {
    pub bodies: Arc<Bodies>,
    pub payload_limit: usize,
}

impl ActivityImplementer for StepRunner {
    fn register_all(self: Arc<Self>, _defs: &mut ActivityDefinitions) {
        // Step activities are registered one name at a time by `register`.
    }
}

/// Register the activity `name` on `opts`, run by `runner`.
pub(crate) fn register(opts: &mut WorkerOptions, name: &str, runner: Arc<StepRunner>) {
    NAMING.with(|n| *n.borrow_mut() = name.to_string());
    opts.register_activity::<StepActivity>(runner);
    NAMING.with(|n| n.borrow_mut().clear());
}

impl StepRunner {
    async fn run(
        self: Arc<Self>,
        ctx: ActivityContext,
        task: StepTask,
    ) -> Result<StepDone, ActivityError> {
        let Some(pending) = self.bodies.get(&task.key) else {
            return Err(fatal(format!(
                "step `{}` has no body in this worker: it was scheduled by another process",
                task.step_id
            )));
        };
        let attempt = ctx.info().attempt.max(1);
        let heartbeat = ctx.info().heartbeat_timeout;
        let sc = StepCtx {
            attempt,
            idempotency_key: format!(
                "{}/{}",
                ctx.info().workflow_id.as_deref().unwrap_or_default(),
                task.step_id
            ),
            step_id: task.step_id.clone(),
        };
        let fut = {
            let mut body = pending.body.lock().unwrap_or_else(|e| e.into_inner());
            (body)(sc)
        };
        let result = match heartbeat {
            Some(hb) if !hb.is_zero() => with_heartbeats(&ctx, hb, fut).await,
            _ => fut.await,
        };
        match result {
            Ok(output) => {
                let size = serde_json::to_vec(&output).map(|v| v.len()).unwrap_or(0);
                if size > self.payload_limit {
                    return Err(fatal(format!(
                        "step `{}` ({}) returned {size} bytes, over the payload limit of {} \
                         bytes: return less (a reference to the data, say)",
                        pending.name, task.step_id, self.payload_limit
                    )));
                }
                Ok(StepDone {
                    hash: pending.hash.clone(),
                    output,
                })
            }
            Err(e) => Err(step_failure(&e)),
        }
    }
}

/// Run `fut`, heartbeating at a third of `timeout`, so a dead worker is noticed in seconds.
async fn with_heartbeats(
    ctx: &ActivityContext,
    timeout: Duration,
    fut: BoxFuture<'static, Result<Value, StepError>>,
) -> Result<Value, StepError> {
    let beat = async {
        let every = (timeout / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            let _ = ctx.record_heartbeat(()).await;
        }
    };
    futures::pin_mut!(beat);
    match futures::future::select(fut, beat).await {
        futures::future::Either::Left((r, _)) => r,
        futures::future::Either::Right(((), _)) => Err(StepError::fatal("heartbeat loop ended")),
    }
}

/// A step error as an activity failure whose type says whether it may be retried.
fn step_failure(e: &StepError) -> ActivityError {
    let failure = ApplicationFailure::builder(e.message.clone())
        .type_name(if e.retryable { RETRYABLE } else { FATAL }.to_string())
        .non_retryable(!e.retryable)
        .maybe_next_retry_delay(e.retry_after)
        .build();
    ActivityError::Application(Box::new(failure))
}

/// A failure that must not be retried.
fn fatal(m: impl Into<String>) -> ActivityError {
    step_failure(&StepError::fatal(m.into()))
}
