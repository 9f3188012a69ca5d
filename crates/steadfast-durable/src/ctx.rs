//! `WorkflowCtx`: the only door from workflow code to the outside world.
//!
//! Every effect a workflow performs goes through the context and becomes a journaled step: user
//! steps, agent model requests and tool calls, timers, clock readings, random numbers, mailbox
//! receives and child workflows. On replay, finished steps are answered from the journal.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use steadfast_core::semconv::{
    ERROR_TYPE, OTEL_NAME, OTEL_STATUS_CODE, OTEL_STATUS_DESCRIPTION, SPAN_STEP,
    STEADFAST_REPLAYED, STEADFAST_STEP_ATTEMPT, STEADFAST_STEP_ID, STEADFAST_STEP_KIND,
    STEADFAST_STEP_NAME, STEADFAST_WORKFLOW_ID, TARGET, redact_secrets,
};
use steadfast_core::{StepPolicy, Usage};
use tokio::sync::Notify;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::deps::Deps;
use crate::error::{Attempt, StepError, WorkflowError};
use crate::events::{Observer, StepEvent, StepEventKind};
use crate::hashing::Fnv;
use crate::json::Json;
use crate::remote::{RemoteCall, RemoteEngine, RemoteOp, RemoteStep, decode_recv};
use crate::store::{
    AttemptRecord, Millis, NewWorkflow, StepFailure, StepKind, StepRecord, Store, StoreFuture,
    WorkflowStatus, now_millis,
};
use crate::workflow::Workflow;

mod journal;
mod names;
mod primitives;

use journal::{InFlight, record_step_error, step_span};
pub(crate) use journal::{error_text, usage_of};
use names::Namespace;
pub(crate) use names::Short;

/// A stable 64-bit FNV-1a hash, hex-encoded: step input hashes must not change between builds.
pub(crate) fn stable_hash(bytes: &[u8]) -> String {
    let mut h = Fnv::new();
    h.update(bytes);
    h.hex()
}

/// The hash of a value's JSON form: `stable_hash` of its JSON bytes (of no bytes, when the
/// JSON cannot be built). The bytes stream into the hash; no buffer holds them.
pub(crate) fn hash_of<T: Serialize + ?Sized>(v: &T) -> String {
    let mut h = Fnv::new();
    match serde_json::to_writer(&mut h, v) {
        Ok(()) => h.hex(),
        Err(_) => stable_hash(&[]),
    }
}

/// State shared by every context of one run of one workflow.
pub(crate) struct RunShared {
    pub id: String,
    pub name: String,
    pub store: Arc<dyn Store>,
    pub owner: String,
    /// The steps recorded before this run, by position.
    pub journal: Mutex<HashMap<String, StepRecord>>,
    /// The usage of the model requests this run made, kept when the workflow span is recorded.
    pub executed_usage: Option<Mutex<Usage>>,
    pub deps: Arc<Deps>,
    pub observer: Option<Observer>,
    pub cancel: AtomicBool,
    /// When this worker's lease on the workflow runs out, as far as it knows (renewals extend it).
    pub lease_until: AtomicI64,
    pub in_flight: AtomicUsize,
    /// A suspension was asked for; `wake_at` is the earliest timer among the requests.
    pub suspend_requested: AtomicBool,
    pub wake_at: Mutex<Option<Millis>>,
    /// The mailbox topics the waiting branches receive on.
    pub waiting_on: Mutex<Vec<String>>,
    pub notify: Notify,
    pub suspend_threshold: Duration,
    pub replayed: AtomicU64,
    pub executed: AtomicU64,
    /// The input hashes of the run's model requests (every agent run in it shares them).
    pub requests: crate::hashing::RequestHasher,
    /// The step names of the run's agent calls.
    pub step_names: crate::agents::StepNames,
    /// A remote engine (Temporal) that answers every effect from its own history; `None` on the
    /// embedded engine.
    pub remote: Option<Arc<dyn RemoteEngine>>,
}

impl RunShared {
    fn request_suspend(&self, wake_at: Option<Millis>, topic: Option<&str>) {
        if let Some(t) = topic
            && let Ok(mut w) = self.waiting_on.lock()
            && !w.iter().any(|x| x == t)
        {
            w.push(t.to_string());
        }
        if let Some(t) = wake_at
            && let Ok(mut w) = self.wake_at.lock()
        {
            *w = Some(w.map_or(t, |cur| cur.min(t)));
        }
        self.suspend_requested.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    fn emit(&self, ev: impl FnOnce() -> StepEvent) {
        if let Some(o) = &self.observer {
            o(&ev());
        }
    }
}

/// What a step body gets: its attempt number and the idempotency key to give the outside world.
#[derive(Debug, Clone)]
pub struct StepCtx {
    /// The attempt, 1-based.
    pub attempt: u32,
    /// `workflow_id/step_id`: the same on every attempt and every replay.
    pub idempotency_key: String,
    /// The step's readable id.
    pub step_id: String,
}

/// One attempt of a step, as the engine hands it to the step's body. The body asks for what it
/// needs ([`StepAttempt::step_ctx`], [`StepAttempt::nested`]); a model request needs neither.
pub(crate) struct StepAttempt<'a> {
    attempt: u32,
    ctx: &'a WorkflowCtx,
    step_id: &'a str,
}

impl StepAttempt<'_> {
    /// The attempt number and the idempotency key, as a user step's body gets them.
    pub(crate) fn step_ctx(&self) -> StepCtx {
        StepCtx {
            attempt: self.attempt,
            idempotency_key: self.idempotency_key(),
            step_id: self.step_id.to_string(),
        }
    }

    /// `workflow_id/step_id`: the same on every attempt and every replay.
    pub(crate) fn idempotency_key(&self) -> String {
        let id = &self.ctx.run.id;
        let mut key = String::with_capacity(id.len() + 1 + self.step_id.len());
        key.push_str(id);
        key.push('/');
        key.push_str(self.step_id);
        key
    }

    /// The context of whatever runs inside the step (a tool's nested agent): its step ids live
    /// under `{step_id}/`.
    pub(crate) fn nested(&self) -> WorkflowCtx {
        let mut prefix = String::with_capacity(self.step_id.len() + 1);
        prefix.push_str(self.step_id);
        prefix.push('/');
        self.ctx.nested(prefix)
    }
}

/// The description of a step about to run.
pub(crate) struct StepSpec {
    pub kind: StepKind,
    pub name: String,
    pub input_hash: String,
    /// Another hash a journal may hold for the same input: what an earlier build computed.
    pub legacy_hash: Option<String>,
    pub input: StepInput,
    pub policy: StepPolicy,
}

/// A step's input as the context has it, for the history. It becomes [`Json`] only when the
/// step runs and is committed: a replayed step does not encode it.
pub(crate) enum StepInput {
    /// Not kept (a model request's conversation, a mailbox receive).
    None,
    /// A value (a user step's input, a journaled value's parameters, a child's start).
    Value(Value),
    /// JSON text (a tool call's arguments, as the model wrote them).
    Json(Json),
}

impl StepInput {
    /// The input as the journal keeps it.
    fn into_json(self) -> Option<Json> {
        match self {
            StepInput::None => None,
            StepInput::Value(v) => Some(Json::from(&v)),
            StepInput::Json(j) => Some(j),
        }
    }

    /// The input as a `Value`, for a remote engine.
    fn into_value(self) -> Option<Value> {
        match self {
            StepInput::Value(v) => Some(v),
            other => other.to_value(),
        }
    }

    /// The input as a `Value`, for step events and remote engines.
    pub(crate) fn to_value(&self) -> Option<Value> {
        match self {
            StepInput::None => None,
            StepInput::Value(v) => Some(v.clone()),
            StepInput::Json(j) => Some(j.to_value()),
        }
    }
}

/// The context of a running workflow. Cheap to clone.
#[derive(Clone)]
pub struct WorkflowCtx {
    pub(crate) run: Arc<RunShared>,
    ns: Arc<Namespace>,
}

impl WorkflowCtx {
    pub(crate) fn root(run: Arc<RunShared>) -> Self {
        WorkflowCtx {
            run,
            ns: Arc::new(Namespace::new(String::new())),
        }
    }

    /// The context of a workflow run by a remote engine (Temporal): every effect goes to
    /// `engine`, which answers it from its own history. `deps` are the worker's.
    pub fn remote(
        workflow_id: &str,
        workflow_name: &str,
        deps: Arc<Deps>,
        engine: Arc<dyn RemoteEngine>,
    ) -> WorkflowCtx {
        let run = RunShared {
            id: workflow_id.to_string(),
            name: workflow_name.to_string(),
            store: Arc::new(crate::memory::MemoryStore::new()),
            owner: "remote".to_string(),
            journal: Mutex::new(HashMap::new()),
            executed_usage: None,
            deps,
            observer: None,
            cancel: AtomicBool::new(false),
            lease_until: AtomicI64::new(i64::MAX),
            in_flight: AtomicUsize::new(0),
            suspend_requested: AtomicBool::new(false),
            wake_at: Mutex::new(None),
            waiting_on: Mutex::new(Vec::new()),
            notify: Notify::new(),
            suspend_threshold: Duration::MAX,
            replayed: AtomicU64::new(0),
            executed: AtomicU64::new(0),
            requests: crate::hashing::RequestHasher::default(),
            step_names: crate::agents::StepNames::default(),
            remote: Some(engine),
        };
        WorkflowCtx::root(Arc::new(run))
    }

    /// Send `op` to the remote engine, if this run has one, under the next step id for `short`.
    pub(crate) fn remote_call<'s>(
        &self,
        short: impl Into<Short<'s>>,
        op: impl FnOnce() -> RemoteOp,
    ) -> Option<futures::future::BoxFuture<'static, Result<Value, WorkflowError>>> {
        let engine = self.run.remote.as_ref()?;
        let (_, step_id) = self.ns.alloc(short);
        Some(engine.call(RemoteCall { step_id, op: op() }))
    }

    /// The workflow id.
    pub fn workflow_id(&self) -> &str {
        &self.run.id
    }

    /// The workflow's registered name.
    pub fn workflow_name(&self) -> &str {
        &self.run.name
    }

    /// The worker-local dependency of type `T` (given with `WorkerBuilder::deps`). Deps are
    /// never serialized into the journal.
    pub fn deps<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, WorkflowError> {
        self.run
            .deps
            .get::<T>()
            .ok_or(WorkflowError::MissingDeps(std::any::type_name::<T>()))
    }

    /// Whether this run has answered steps from the journal so far (it is resuming).
    pub fn replayed_steps(&self) -> u64 {
        self.run.replayed.load(Ordering::Relaxed)
    }

    /// A context for a parallel branch named `name`. Its step ids live in their own namespace,
    /// allocated now, so branches keep their ids on replay whatever order they finish in.
    pub fn branch(&self, name: &str) -> WorkflowCtx {
        WorkflowCtx {
            run: self.run.clone(),
            ns: Arc::new(self.ns.child(name)),
        }
    }

    fn nested(&self, prefix: String) -> WorkflowCtx {
        WorkflowCtx {
            run: self.run.clone(),
            ns: Arc::new(Namespace::new(prefix)),
        }
    }

    /// Run all futures concurrently and return their outputs in order. Give each future its own
    /// [`WorkflowCtx::branch`] (agent runs take their own namespace by themselves).
    pub async fn join_all<F: Future>(
        &self,
        futures: impl IntoIterator<Item = F>,
    ) -> Vec<F::Output> {
        futures::future::join_all(futures).await
    }

    /// A user step: `body` runs at most once to completion per workflow (retried under the
    /// default policy), and its result is journaled before the workflow sees it.
    ///
    /// `input` identifies the step on replay (it is hashed and kept in the history).
    pub fn step<I, T, F, Fut>(
        &self,
        name: &str,
        input: &I,
        body: F,
    ) -> impl Future<Output = Result<T, WorkflowError>> + Send + 'static + use<I, T, F, Fut>
    where
        I: Serialize + ?Sized,
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnMut(StepCtx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StepError>> + Send + 'static,
    {
        self.step_with(name, input, StepPolicy::default(), body)
    }

    /// A user step with its own policy (retries and timeout).
    pub fn step_with<I, T, F, Fut>(
        &self,
        name: &str,
        input: &I,
        policy: StepPolicy,
        mut body: F,
    ) -> impl Future<Output = Result<T, WorkflowError>> + Send + 'static + use<I, T, F, Fut>
    where
        I: Serialize + ?Sized,
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnMut(StepCtx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StepError>> + Send + 'static,
    {
        // The input hash is of the input's `Value` printed (map keys sorted), as it has always
        // been: journals hold these hashes. Inputs are small; outputs skip the `Value`.
        let input = serde_json::to_value(input).unwrap_or(Value::Null);
        let spec = StepSpec {
            kind: StepKind::Step,
            name: name.to_string(),
            input_hash: hash_of(&input),
            legacy_hash: None,
            input: StepInput::Value(input),
            policy,
        };
        if self.run.remote.is_some() {
            let remote = self.remote_call(name, || {
                RemoteOp::Step(RemoteStep {
                    kind: spec.kind,
                    name: spec.name,
                    input: spec.input.into_value(),
                    input_hash: spec.input_hash,
                    policy: spec.policy,
                    body: Box::new(move |sc| {
                        let fut = body(sc);
                        Box::pin(async move {
                            let v = fut.await?;
                            serde_json::to_value(v).map_err(StepError::fatal)
                        })
                    }),
                })
            });
            return futures::future::Either::Left(decode_remote(remote));
        }
        futures::future::Either::Right(self.execute(name.into(), spec, move |a| {
            let fut = body(a.step_ctx());
            async move {
                match fut.await {
                    Ok(v) => Attempt::Ok(v),
                    Err(e) => Attempt::Failed(e),
                }
            }
        }))
    }

    /// Allocate a step named `short` in this namespace and run it: replay it from the journal
    /// if it is there, otherwise run `body` under the policy and commit the result before
    /// returning it.
    pub(crate) fn execute<'a, T, F, Fut>(
        &self,
        short: Short<'_>,
        spec: StepSpec,
        mut body: F,
    ) -> impl Future<Output = Result<T, WorkflowError>> + Send + 'a + use<'a, T, F, Fut>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnMut(&StepAttempt<'_>) -> Fut + Send + 'a,
        Fut: Future<Output = Attempt<T>> + Send + 'a,
    {
        let (position, step_id) = self.ns.alloc(short);
        let ctx = self.clone();
        async move {
            // The span opens when the step is first polled, so its parent is whatever span
            // polls it (an agent run, a tool, a branch); a replay closes it at once.
            let span = step_span(&ctx.run, &spec, &step_id);
            match ctx.replay::<T>(&spec, &position, &step_id, &span) {
                Ok(Some(replayed)) => return replayed,
                Ok(None) => {}
                Err(e) => {
                    record_step_error(&span, &e);
                    return Err(e);
                }
            }
            if !span.is_disabled() {
                span.record(STEADFAST_REPLAYED, false);
            }
            // Boxed apart from the replay check, and without the retry path (boxed too): a
            // step's futures then stay under glibc's large-allocation size, whose first use
            // after many small frees costs a consolidation of the free lists.
            let attempt_span = &span;
            let result = Box::pin(
                async move {
                    let run = &ctx.run;
                    if run.cancel.load(Ordering::SeqCst) {
                        return Err(WorkflowError::Cancelled(run.id.clone()));
                    }
                    // A worker that was paused past its lease may have been replaced: it must not
                    // start new work on what may be another worker's workflow now.
                    let started_at = now_millis();
                    if started_at >= run.lease_until.load(Ordering::SeqCst) {
                        return Err(WorkflowError::LeaseLost(run.id.clone()));
                    }
                    let _guard = InFlight::new(run);
                    let clock = Instant::now();
                    let mut attempt = 1;
                    let result: Result<T, StepError> = loop {
                        let fut = body(&StepAttempt {
                            attempt,
                            ctx: &ctx,
                            step_id: &step_id,
                        });
                        let outcome = match spec.policy.timeout {
                            Some(t) => match tokio::time::timeout(t, fut).await {
                                Ok(o) => o,
                                Err(_) => Attempt::Failed(StepError::retryable(format!(
                                    "timed out after {t:?}"
                                ))),
                            },
                            None => fut.await,
                        };
                        match outcome {
                            Attempt::Ok(v) => break Ok(v),
                            Attempt::Engine(e) => return Err(e),
                            Attempt::Failed(e) => {
                                let delay = if e.retryable {
                                    spec.policy.retry.delay_after(attempt, e.retry_after)
                                } else {
                                    None
                                };
                                let Some(delay) = delay else { break Err(e) };
                                // Boxed: a step that needs no retry carries none of this.
                                Box::pin(ctx.before_retry(
                                    &spec, &position, &step_id, attempt, &e, delay, clock,
                                ))
                                .await?;
                                attempt += 1;
                            }
                        }
                    };
                    // Encoded once, straight to text: the store keeps it and a replay decodes it.
                    let output = match &result {
                        Ok(v) => Ok(Json::encode(v)?),
                        Err(e) => Err(StepFailure {
                            message: e.message.clone(),
                            retryable: e.retryable,
                        }),
                    };
                    // The id moves into the record; a failure's error names it.
                    let failed = result.is_err().then(|| step_id.clone());
                    let record = StepRecord {
                        position,
                        step_id,
                        kind: spec.kind,
                        name: spec.name,
                        input_hash: spec.input_hash,
                        input: spec.input.into_json(),
                        output,
                        attempts: attempt,
                        started_at,
                        duration_us: clock.elapsed().as_micros() as i64,
                        seq: 0,
                    };
                    let report = ctx.report(&record);
                    ctx.commit(record, None).await?;
                    ctx.committed(report);
                    run.executed.fetch_add(1, Ordering::Relaxed);
                    if !attempt_span.is_disabled() {
                        attempt_span.record(STEADFAST_STEP_ATTEMPT, i64::from(attempt));
                    }
                    match result {
                        Ok(v) => Ok(v),
                        Err(e) => Err(WorkflowError::StepFailed {
                            step: failed.unwrap_or_default(),
                            message: e.message,
                            attempts: attempt,
                        }),
                    }
                }
                .instrument(span.clone()),
            )
            .await;
            if let Err(e) = &result {
                record_step_error(&span, e);
            }
            result
        }
    }

    /// Between two attempts of a step: record the failed `attempt`, report it, and wait `delay`.
    #[allow(clippy::too_many_arguments)]
    async fn before_retry(
        &self,
        spec: &StepSpec,
        position: &str,
        step_id: &str,
        attempt: u32,
        e: &StepError,
        delay: Duration,
        clock: Instant,
    ) -> Result<(), WorkflowError> {
        let run = &self.run;
        run.store
            .record_attempt(
                &run.id,
                &run.owner,
                AttemptRecord {
                    position: position.to_string(),
                    step_id: step_id.to_string(),
                    attempt,
                    error: e.message.clone(),
                    at: now_millis(),
                },
            )
            .await?;
        run.emit(|| StepEvent {
            workflow_id: run.id.clone(),
            step_id: step_id.to_string(),
            kind: spec.kind,
            name: spec.name.clone(),
            event: StepEventKind::Retrying {
                attempt,
                error: e.message.clone(),
                delay,
            },
            attempts: attempt,
            duration: clock.elapsed(),
            input: spec.input.to_value(),
            output: None,
        });
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// The typed answer of a remote call.
async fn decode_remote<T: DeserializeOwned>(
    call: Option<futures::future::BoxFuture<'static, Result<Value, WorkflowError>>>,
) -> Result<T, WorkflowError> {
    let call = call.ok_or_else(|| WorkflowError::Config("no remote engine".into()))?;
    Ok(serde_json::from_value(call.await?)?)
}
