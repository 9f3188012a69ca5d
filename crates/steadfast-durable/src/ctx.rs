//! `WorkflowCtx`: the only door from workflow code to the outside world.
//!
//! Every effect a workflow performs goes through the context and becomes a journaled step: user
//! steps, agent model requests and tool calls, timers, clock readings, random numbers, mailbox
//! receives and child workflows. On replay, finished steps are answered from the journal.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
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

/// What is reported of a step once it is committed (see [`WorkflowCtx::report`]).
struct Committed {
    /// Boxed, so that a step's future, which holds it across the commit, stays small.
    event: Option<Box<StepEvent>>,
    usage: Option<Usage>,
}

/// Counts a step as in flight while alive; the worker never suspends a run with steps in flight.
struct InFlight<'a>(&'a RunShared);

impl<'a> InFlight<'a> {
    fn new(run: &'a RunShared) -> Self {
        run.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(run)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // The worker waits for the last step in flight only once a suspension was asked for
        // (`request_suspend` notifies by itself); waking it for every step would re-poll the
        // whole workflow future once per step for nothing.
        let run = self.0;
        if run.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && run.suspend_requested.load(Ordering::SeqCst)
        {
            run.notify.notify_one();
        }
    }
}

/// A step-id namespace: the root, an agent run, a parallel branch, or a tool's nested scope.
struct Namespace {
    prefix: String,
    seq: AtomicU32,
    names: Mutex<NameCounts>,
}

/// How many times each name was used in a namespace. Child namespaces count under
/// `ns:{name}`, alongside the step names.
///
/// A namespace uses few names (an agent run: its model requests and a tool or two), so they
/// are looked up in a short list; past [`NameCounts::FEW`] names they move to a hash map.
#[derive(Default)]
struct NameCounts {
    few: Vec<(String, u32)>,
    many: HashMap<String, u32>,
}

impl NameCounts {
    const FEW: usize = 16;

    /// Count one more use of the name `head` + `tail`; returns the uses so far.
    fn bump(&mut self, head: &str, tail: &str) -> u32 {
        if self.many.is_empty() {
            let found = self.few.iter_mut().find(|(k, _)| {
                k.len() == head.len() + tail.len()
                    && k.starts_with(head)
                    && &k[head.len()..] == tail
            });
            if let Some((_, n)) = found {
                *n += 1;
                return *n;
            }
            if self.few.len() < Self::FEW {
                self.few.push((concat(head, tail), 1));
                return 1;
            }
            self.many.extend(self.few.drain(..));
        }
        let n = self.many.entry(concat(head, tail)).or_insert(0);
        *n += 1;
        *n
    }
}

/// `head` followed by `tail`, in one allocation.
fn concat(head: &str, tail: &str) -> String {
    let mut s = String::with_capacity(head.len() + tail.len());
    s.push_str(head);
    s.push_str(tail);
    s
}

/// Appends the decimal digits of `n`.
fn push_u32(s: &mut String, n: u32) {
    use std::fmt::Write as _;
    // Writing to a `String` cannot fail.
    let _ = write!(s, "{n}");
}

/// A step's short name, the name its ids count under (`model_request`, `tool__ask`), given in
/// two parts that are joined, so that a name such as `tool__{tool}` needs no allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Short<'s>(pub &'s str, pub &'s str);

impl<'s> From<&'s str> for Short<'s> {
    fn from(s: &'s str) -> Self {
        Short("", s)
    }
}

impl<'s> From<&'s String> for Short<'s> {
    fn from(s: &'s String) -> Self {
        Short("", s)
    }
}

impl Namespace {
    fn new(prefix: String) -> Self {
        Namespace {
            prefix,
            seq: AtomicU32::new(0),
            names: Mutex::new(NameCounts::default()),
        }
    }

    fn count(&self, head: &str, tail: &str) -> u32 {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.bump(head, tail)
    }

    /// The next position and readable id for a step named `short`: `{prefix}{n}` and
    /// `{prefix}{short}#{k}`.
    fn alloc<'s>(&self, short: impl Into<Short<'s>>) -> (String, String) {
        let Short(head, tail) = short.into();
        let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let k = self.count(head, tail);
        let mut position = String::with_capacity(self.prefix.len() + 10);
        position.push_str(&self.prefix);
        push_u32(&mut position, n);
        let mut step_id = String::with_capacity(self.prefix.len() + head.len() + tail.len() + 11);
        step_id.push_str(&self.prefix);
        step_id.push_str(head);
        step_id.push_str(tail);
        step_id.push('#');
        push_u32(&mut step_id, k);
        (position, step_id)
    }

    /// A child namespace named `name`: `{prefix}{name}#{k}/`.
    fn child(&self, name: &str) -> Namespace {
        let k = self.count("ns:", name);
        let mut prefix = String::with_capacity(self.prefix.len() + name.len() + 12);
        prefix.push_str(&self.prefix);
        prefix.push_str(name);
        prefix.push('#');
        push_u32(&mut prefix, k);
        prefix.push('/');
        Namespace::new(prefix)
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
            let result = Box::pin(
                async {
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
                    let record = StepRecord {
                        position,
                        step_id: step_id.clone(),
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
                    if !span.is_disabled() {
                        span.record(STEADFAST_STEP_ATTEMPT, i64::from(attempt));
                    }
                    match result {
                        Ok(v) => Ok(v),
                        Err(e) => Err(WorkflowError::StepFailed {
                            step: step_id.clone(),
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

    /// Whether this run resumed from a journal (its history holds steps of earlier runs).
    pub(crate) fn resumed(&self) -> bool {
        !self
            .run
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Write-ahead: commit the record (the store takes it); once that is done,
    /// [`WorkflowCtx::committed`] reports it. (The store's future is awaited as it is, so a
    /// step's future holds no more than it.)
    fn commit(&self, record: StepRecord, consume: Option<i64>) -> StoreFuture<'_, ()> {
        let run = &self.run;
        run.store.commit_step(&run.id, &run.owner, record, consume)
    }

    /// What to report of `record` once it is committed: its event, if an observer listens,
    /// and its usage, if the workflow span records it. Taken before the store takes the record.
    fn report(&self, record: &StepRecord) -> Committed {
        let run = &self.run;
        let event = run.observer.as_ref().map(|_| {
            Box::new(StepEvent {
                workflow_id: run.id.clone(),
                step_id: record.step_id.clone(),
                kind: record.kind,
                name: record.name.clone(),
                event: match &record.output {
                    Ok(_) => StepEventKind::Completed,
                    Err(f) => StepEventKind::Failed {
                        error: f.message.clone(),
                    },
                },
                attempts: record.attempts,
                duration: Duration::from_micros(record.duration_us.max(0) as u64),
                input: record.input.as_ref().map(Json::to_value),
                output: record.output.as_ref().ok().map(Json::to_value),
            })
        });
        let usage = run.executed_usage.as_ref().and_then(|_| usage_of(record));
        Committed { event, usage }
    }

    /// Report a committed record.
    ///
    /// The record is not kept in this run's journal: a run never looks up a position it ran
    /// itself (positions only grow). Only its usage is kept, for the workflow span, when that
    /// span is recorded.
    fn committed(&self, report: Committed) {
        let run = &self.run;
        if let (Some(o), Some(event)) = (&run.observer, &report.event) {
            o(event);
        }
        if let (Some(total), Some(u)) = (&run.executed_usage, &report.usage) {
            *total.lock().unwrap_or_else(|e| e.into_inner()) += u;
        }
    }

    /// The recorded result at `position`, if the journal has one; a mismatch is non-determinism.
    ///
    /// A hit marks `span` as replayed (`steadfast.replayed = true`, the recorded attempts).
    fn replay<T: DeserializeOwned>(
        &self,
        spec: &StepSpec,
        position: &str,
        step_id: &str,
        span: &Span,
    ) -> Result<Option<Result<T, WorkflowError>>, WorkflowError> {
        let run = &self.run;
        let clock = run.observer.as_ref().map(|_| Instant::now());
        // Everything is read under the lock, from the record in place: a replayed step clones
        // nothing but what it reports.
        let journal = run.journal.lock().unwrap_or_else(|e| e.into_inner());
        let Some(record) = journal.get(position) else {
            return Ok(None);
        };
        if record.kind != spec.kind
            || record.name != spec.name
            || (record.input_hash != spec.input_hash
                && spec.legacy_hash.as_ref() != Some(&record.input_hash))
            || record.step_id != step_id
        {
            return Err(WorkflowError::NonDeterminism {
                workflow_id: run.id.clone(),
                position: position.to_string(),
                expected: describe(
                    record.kind,
                    &record.name,
                    &record.step_id,
                    &record.input_hash,
                ),
                actual: describe(spec.kind, &spec.name, step_id, &spec.input_hash),
            });
        }
        let value = match &record.output {
            Ok(v) => Ok(v.decode::<T>()?),
            Err(f) => Err(WorkflowError::StepFailed {
                step: record.step_id.clone(),
                message: f.message.clone(),
                attempts: record.attempts,
            }),
        };
        let attempts = record.attempts;
        let event = run.observer.as_ref().map(|_| StepEvent {
            workflow_id: run.id.clone(),
            step_id: record.step_id.clone(),
            kind: record.kind,
            name: record.name.clone(),
            event: StepEventKind::Replayed,
            attempts,
            duration: Duration::ZERO,
            input: record.input.as_ref().map(Json::to_value),
            output: record.output.as_ref().ok().map(Json::to_value),
        });
        drop(journal);
        run.replayed.fetch_add(1, Ordering::Relaxed);
        if !span.is_disabled() {
            span.record(STEADFAST_REPLAYED, true);
            span.record(STEADFAST_STEP_ATTEMPT, i64::from(attempts));
            if let Err(e) = &value {
                record_step_error(span, e);
            }
        }
        if let Some(mut event) = event {
            event.duration = clock.map_or(Duration::ZERO, |c| c.elapsed());
            run.emit(|| event);
        }
        Ok(Some(value))
    }

    /// Journal a value computed once (a clock reading, a random number, a wake-up time).
    fn value<T, C>(
        &self,
        short: &str,
        kind: StepKind,
        input: Value,
        compute: C,
    ) -> impl Future<Output = Result<T, WorkflowError>> + Send + 'static + use<T, C>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        C: FnOnce() -> T + Send + 'static,
    {
        let spec = StepSpec {
            kind,
            name: short.to_string(),
            input_hash: hash_of(&input),
            legacy_hash: None,
            input: StepInput::Value(input),
            policy: StepPolicy::default(),
        };
        let mut compute = Some(compute);
        self.execute(short.into(), spec, move |_| {
            let v = compute.take().map(|f| f());
            async move {
                match v {
                    Some(v) => Attempt::Ok(v),
                    None => Attempt::Failed(StepError::fatal("value computed twice")),
                }
            }
        })
    }

    /// The current time in milliseconds since the Unix epoch, journaled: a replay sees the same
    /// reading.
    pub fn now(
        &self,
    ) -> impl Future<Output = Result<Millis, WorkflowError>> + Send + 'static + use<> {
        if self.run.remote.is_some() {
            return futures::future::Either::Left(decode_remote(
                self.remote_call("now", || RemoteOp::Now),
            ));
        }
        futures::future::Either::Right(self.value("now", StepKind::Value, Value::Null, now_millis))
    }

    /// A random 64-bit number, journaled.
    pub fn random(
        &self,
    ) -> impl Future<Output = Result<u64, WorkflowError>> + Send + 'static + use<> {
        if self.run.remote.is_some() {
            return futures::future::Either::Left(decode_remote(
                self.remote_call("random", || RemoteOp::Random),
            ));
        }
        futures::future::Either::Right(self.value(
            "random",
            StepKind::Value,
            Value::Null,
            random_u64,
        ))
    }

    /// A random (v4) UUID, journaled.
    pub fn uuid(
        &self,
    ) -> impl Future<Output = Result<String, WorkflowError>> + Send + 'static + use<> {
        if self.run.remote.is_some() {
            let a = decode_remote::<u64>(self.remote_call("uuid", || RemoteOp::Random));
            let b = decode_remote::<u64>(self.remote_call("uuid", || RemoteOp::Random));
            return futures::future::Either::Left(
                async move { Ok(format_uuid(a.await?, b.await?)) },
            );
        }
        futures::future::Either::Right(self.value("uuid", StepKind::Value, Value::Null, || {
            format_uuid(random_u64(), random_u64())
        }))
    }

    /// Sleep durably: the wake-up time is journaled, so the sleep survives restarts. A sleep
    /// longer than the worker's suspend threshold drops the workflow from memory until it is due.
    pub fn sleep(
        &self,
        d: Duration,
    ) -> impl Future<Output = Result<(), WorkflowError>> + Send + 'static + use<> {
        if self.run.remote.is_some() {
            let call = self.remote_call("sleep", || RemoteOp::Sleep(d));
            return futures::future::Either::Left(async move {
                decode_remote::<Value>(call).await.map(|_| ())
            });
        }
        let ms = d.as_millis() as i64;
        let wake = self.value("sleep", StepKind::Sleep, Value::from(ms), move || {
            now_millis() + ms
        });
        let run = self.run.clone();
        futures::future::Either::Right(async move {
            let wake_at = wake.await?;
            wait_until(&run, wake_at).await;
            Ok(())
        })
    }

    /// Receive the next message on `topic` from this workflow's mailbox (filled by
    /// `Engine::send`), waiting at most `timeout` (`None`: forever). `Ok(None)` means the
    /// timeout passed. The receipt is journaled, so a replay gets the same message.
    pub fn recv<T: DeserializeOwned + Send + 'static>(
        &self,
        topic: &str,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Option<T>, WorkflowError>> + Send + 'static + use<T> {
        if self.run.remote.is_some() {
            let call = self.remote_call(Short("recv__", topic), || RemoteOp::Recv {
                topic: topic.to_string(),
                timeout,
            });
            return futures::future::Either::Left(async move {
                match decode_recv(decode_remote::<Value>(call).await?) {
                    Some(v) => Ok(Some(serde_json::from_value(v)?)),
                    None => Ok(None),
                }
            });
        }
        let deadline = timeout.map(|t| {
            let ms = t.as_millis() as i64;
            self.value(
                "recv_deadline",
                StepKind::Value,
                Value::from(ms),
                move || now_millis() + ms,
            )
        });
        let (position, step_id) = self.ns.alloc(Short("recv__", topic));
        let ctx = self.clone();
        let topic = topic.to_string();
        futures::future::Either::Right(async move {
            let deadline = match deadline {
                Some(d) => Some(d.await?),
                None => None,
            };
            let spec = StepSpec {
                kind: StepKind::Recv,
                name: topic.clone(),
                input_hash: hash_of(&topic),
                legacy_hash: None,
                input: StepInput::None,
                policy: StepPolicy::default(),
            };
            let run = ctx.run.clone();
            let span = step_span(&run, &spec, &step_id);
            loop {
                if let Some(r) = ctx
                    .replay::<Option<T>>(&spec, &position, &step_id, &span)
                    .inspect_err(|e| record_step_error(&span, e))?
                {
                    return r;
                }
                if run.cancel.load(Ordering::SeqCst) {
                    return Err(WorkflowError::Cancelled(run.id.clone()));
                }
                let message = {
                    let _g = InFlight::new(&run);
                    run.store.next_message(&run.id, &topic).await?
                };
                let due = deadline.is_some_and(|d| now_millis() >= d);
                if message.is_some() || due {
                    let _g = InFlight::new(&run);
                    let consume = message.as_ref().map(|m| m.seq);
                    let payload = message.map(|m| m.payload);
                    let record = StepRecord {
                        position: position.clone(),
                        step_id: step_id.clone(),
                        kind: StepKind::Recv,
                        name: topic.clone(),
                        input_hash: spec.input_hash.clone(),
                        input: None,
                        output: Ok(Json::encode(&payload)?),
                        attempts: 1,
                        started_at: now_millis(),
                        duration_us: 0,
                        seq: 0,
                    };
                    let report = ctx.report(&record);
                    ctx.commit(record, consume).await?;
                    ctx.committed(report);
                    run.executed.fetch_add(1, Ordering::Relaxed);
                    if !span.is_disabled() {
                        span.record(STEADFAST_REPLAYED, false);
                        span.record(STEADFAST_STEP_ATTEMPT, 1_i64);
                    }
                    return match payload {
                        Some(v) => Ok(Some(serde_json::from_value(v)?)),
                        None => Ok(None),
                    };
                }
                // Nothing yet: wait in memory briefly when the deadline is near, else suspend
                // until a message (or the deadline) wakes the workflow.
                match deadline {
                    Some(d) if d - now_millis() <= run.suspend_threshold.as_millis() as i64 => {
                        let _g = InFlight::new(&run);
                        let left = (d - now_millis()).clamp(0, 50) as u64;
                        tokio::time::sleep(Duration::from_millis(left)).await;
                    }
                    _ => {
                        run.request_suspend(deadline, Some(&topic));
                        futures::future::pending::<()>().await;
                    }
                }
            }
        })
    }

    /// Start child workflow `W` with id `child_id` (idempotently) and wait for its output. The
    /// child runs on any worker that registers `W`; the parent holds no memory while it waits.
    pub fn child<W: Workflow>(
        &self,
        child_id: &str,
        input: W::Input,
    ) -> impl Future<Output = Result<W::Output, WorkflowError>> + Send + 'static + use<W> {
        let child_id = child_id.to_string();
        let input = serde_json::to_value(&input).unwrap_or(Value::Null);
        if self.run.remote.is_some() {
            let call = self.remote_call(Short("child__", W::NAME), || RemoteOp::Child {
                workflow: W::NAME.to_string(),
                id: child_id,
                input,
            });
            return futures::future::Either::Left(decode_remote(call));
        }
        let store = self.run.store.clone();
        let parent = self.run.id.clone();
        let start_input =
            serde_json::json!({ "id": child_id, "workflow": W::NAME, "input": input });
        let start = self.execute(
            Short("start_child__", W::NAME),
            StepSpec {
                kind: StepKind::Child,
                name: W::NAME.to_string(),
                input_hash: hash_of(&start_input),
                legacy_hash: None,
                input: StepInput::Value(start_input),
                policy: StepPolicy::default(),
            },
            {
                let child_id = child_id.clone();
                move |_| {
                    let store = store.clone();
                    let new = NewWorkflow {
                        id: child_id.clone(),
                        name: W::NAME.to_string(),
                        input: input.clone(),
                        parent_id: Some(parent.clone()),
                    };
                    async move {
                        match store.create_workflow(new).await {
                            Ok(_) => Attempt::Ok(()),
                            Err(e) => Attempt::Failed(StepError::retryable(e)),
                        }
                    }
                }
            },
        );
        let (position, step_id) = self.ns.alloc(Short("child__", W::NAME));
        let ctx = self.clone();
        futures::future::Either::Right(async move {
            let () = start.await?;
            let spec = StepSpec {
                kind: StepKind::Child,
                name: W::NAME.to_string(),
                input_hash: hash_of(&child_id),
                legacy_hash: None,
                // The record's input (the child's id) is encoded when it is committed.
                input: StepInput::None,
                policy: StepPolicy::default(),
            };
            let run = ctx.run.clone();
            let span = step_span(&run, &spec, &step_id);
            loop {
                if let Some(r) = ctx
                    .replay::<W::Output>(&spec, &position, &step_id, &span)
                    .inspect_err(|e| record_step_error(&span, e))?
                {
                    return r;
                }
                let record = {
                    let _g = InFlight::new(&run);
                    run.store.get_workflow(&child_id).await?
                };
                let Some(record) = record else {
                    return Err(WorkflowError::Config(format!(
                        "child workflow `{child_id}` does not exist"
                    )));
                };
                if !record.status.is_terminal() {
                    // The child's completion wakes this workflow; the timer is a safety net.
                    run.request_suspend(Some(now_millis() + CHILD_POLL_MS), None);
                    futures::future::pending::<()>().await;
                    continue;
                }
                let output = match record.status {
                    WorkflowStatus::Completed => {
                        Ok(record.output.as_ref().map_or_else(Json::null, Json::from))
                    }
                    status => Err(StepFailure {
                        message: format!(
                            "child workflow `{child_id}` {status}: {}",
                            error_text(record.output.as_ref())
                        ),
                        retryable: false,
                    }),
                };
                let _g = InFlight::new(&run);
                let step = StepRecord {
                    position: position.clone(),
                    step_id: step_id.clone(),
                    kind: StepKind::Child,
                    name: W::NAME.to_string(),
                    input_hash: spec.input_hash.clone(),
                    input: Some(Json::encode(&child_id)?),
                    output,
                    attempts: 1,
                    started_at: now_millis(),
                    duration_us: 0,
                    seq: 0,
                };
                let report = ctx.report(&step);
                let output = step.output.clone();
                ctx.commit(step, None).await?;
                ctx.committed(report);
                run.executed.fetch_add(1, Ordering::Relaxed);
                if !span.is_disabled() {
                    span.record(STEADFAST_REPLAYED, false);
                    span.record(STEADFAST_STEP_ATTEMPT, 1_i64);
                    if let Err(f) = &output {
                        span.record(OTEL_STATUS_CODE, "error");
                        span.record(OTEL_STATUS_DESCRIPTION, redact_secrets(&f.message));
                    }
                }
                return match output {
                    Ok(v) => Ok(v.decode()?),
                    Err(f) => Err(WorkflowError::StepFailed {
                        step: step_id,
                        message: f.message,
                        attempts: 1,
                    }),
                };
            }
        })
    }
}

/// The `step {id}` span of one step, run or replayed.
fn step_span(run: &RunShared, spec: &StepSpec, step_id: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        SPAN_STEP,
        { OTEL_NAME } = format!("{SPAN_STEP} {step_id}"),
        { STEADFAST_STEP_ID } = step_id,
        { STEADFAST_STEP_NAME } = spec.name.as_str(),
        { STEADFAST_STEP_KIND } = spec.kind.as_str(),
        { STEADFAST_WORKFLOW_ID } = run.id.as_str(),
        { STEADFAST_REPLAYED } = Empty,
        { STEADFAST_STEP_ATTEMPT } = Empty,
        { ERROR_TYPE } = Empty,
        { OTEL_STATUS_CODE } = Empty,
        { OTEL_STATUS_DESCRIPTION } = Empty,
    )
}

/// Records a step's failure on its span. Suspension is not a failure: a suspended step's
/// future is dropped, and its span simply ends.
fn record_step_error(span: &Span, e: &WorkflowError) {
    if span.is_disabled() {
        return;
    }
    let kind = match e {
        WorkflowError::Agent(_) => "agent",
        WorkflowError::StepFailed { .. } => "step_failed",
        WorkflowError::NonDeterminism { .. } => "non_determinism",
        WorkflowError::Cancelled(_) => "cancelled",
        WorkflowError::Store(_) => "store",
        WorkflowError::MissingDeps(_) => "missing_deps",
        WorkflowError::Serde(_) => "serde",
        WorkflowError::Config(_) => "config",
        WorkflowError::Failed(_) => "failed",
        WorkflowError::Remote { .. } => "remote",
        WorkflowError::LeaseLost(_) => "lease_lost",
    };
    span.record(ERROR_TYPE, kind);
    span.record(OTEL_STATUS_CODE, "error");
    span.record(OTEL_STATUS_DESCRIPTION, redact_secrets(&e.to_string()));
}

/// The usage of a model request, as its recorded output has it. Only the output's `usage`
/// field is deserialized; the rest of the text (the response's parts) is skipped.
pub(crate) fn usage_of(step: &StepRecord) -> Option<Usage> {
    if step.kind != StepKind::ModelRequest {
        return None;
    }
    step.output.as_ref().ok()?.field::<Usage>("usage").ok()?
}

/// How often a parent waiting on a child re-checks it, should the child's wake-up be missed.
const CHILD_POLL_MS: i64 = 5_000;

/// The error text of a failed workflow's stored output.
pub(crate) fn error_text(output: Option<&Value>) -> String {
    match output {
        Some(Value::Object(m)) => m
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| Value::Object(m.clone()).to_string()),
        Some(v) => v.to_string(),
        None => "no error recorded".to_string(),
    }
}

/// A step as the non-determinism error names it: "`name` (kind step, id name#1, input h)".
fn describe(kind: StepKind, name: &str, step_id: &str, input_hash: &str) -> String {
    format!(
        "`{name}` (kind {}, id {step_id}, input {input_hash})",
        kind.as_str()
    )
}

/// Wait until `wake_at`: in memory when it is near, else by suspending the run.
async fn wait_until(run: &RunShared, wake_at: Millis) {
    loop {
        let left = wake_at - now_millis();
        if left <= 0 {
            return;
        }
        if left <= run.suspend_threshold.as_millis() as i64 {
            let _g = InFlight::new(run);
            tokio::time::sleep(Duration::from_millis(left as u64)).await;
            return;
        }
        run.request_suspend(Some(wake_at), None);
        futures::future::pending::<()>().await;
    }
}

/// A v4 UUID from two random numbers.
fn format_uuid(a: u64, b: u64) -> String {
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// The typed answer of a remote call.
async fn decode_remote<T: DeserializeOwned>(
    call: Option<futures::future::BoxFuture<'static, Result<Value, WorkflowError>>>,
) -> Result<T, WorkflowError> {
    let call = call.ok_or_else(|| WorkflowError::Config("no remote engine".into()))?;
    Ok(serde_json::from_value(call.await?)?)
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids the namespace gave when they were built with `format!` and counted in a map.
    struct Reference {
        prefix: String,
        seq: u32,
        names: HashMap<String, u32>,
    }

    impl Reference {
        fn count(&mut self, key: String) -> u32 {
            let n = self.names.entry(key).or_insert(0);
            *n += 1;
            *n
        }

        fn alloc(&mut self, short: &str) -> (String, String) {
            self.seq += 1;
            let k = self.count(short.to_string());
            (
                format!("{}{}", self.prefix, self.seq),
                format!("{}{short}#{k}", self.prefix),
            )
        }

        fn child(&mut self, name: &str) -> String {
            let k = self.count(format!("ns:{name}"));
            format!("{}{name}#{k}/", self.prefix)
        }
    }

    #[test]
    fn step_ids_and_positions_keep_their_format() {
        for prefix in ["", "questioner#1/tool__ask_question#3/"] {
            let ns = Namespace::new(prefix.to_string());
            let mut reference = Reference {
                prefix: prefix.to_string(),
                seq: 0,
                names: HashMap::new(),
            };
            // More distinct names than the short list holds, each used several times, and a
            // step name that shares its counter with a child namespace.
            for round in 0..12 {
                for i in 0..(NameCounts::FEW + 5) {
                    let short = format!("step_{}", (i * 7 + round) % (NameCounts::FEW + 5));
                    assert_eq!(ns.alloc(&short), reference.alloc(&short));
                }
                assert_eq!(ns.alloc("model_request"), reference.alloc("model_request"));
                assert_eq!(ns.alloc("ns:answerer"), reference.alloc("ns:answerer"));
                assert_eq!(ns.child("answerer").prefix, reference.child("answerer"));
                assert_eq!(ns.child("é").prefix, reference.child("é"));
            }
        }
    }

    fn model_request(output: Result<Json, StepFailure>) -> StepRecord {
        StepRecord {
            position: "0".into(),
            step_id: "a#1/model_request#1".into(),
            kind: StepKind::ModelRequest,
            name: "agent__a__model_request".into(),
            input_hash: String::new(),
            input: None,
            output,
            attempts: 1,
            started_at: 0,
            duration_us: 0,
            seq: 0,
        }
    }

    #[test]
    fn usage_of_reads_the_usage_of_a_raw_model_response() {
        let usage = Usage {
            requests: 1,
            input_tokens: 12,
            output_tokens: 3,
            cost_usd: 0.25,
            ..Usage::default()
        };
        let response = steadfast_core::ModelResponse {
            usage: usage.clone(),
            ..steadfast_core::ModelResponse::text("the \"usage\": {} is in here too")
        };
        let record = model_request(Ok(Json::encode(&response).unwrap()));
        assert_eq!(usage_of(&record), Some(usage.clone()));
        // Text as a store hands it back: any key order, spaces, nested `usage` keys elsewhere.
        let text = r#"{ "parts": [{"kind": "text", "content": "x", "usage": 5}],
            "usage": {"cost_usd": 0.25, "output_tokens": 3, "input_tokens": 12, "requests": 1},
            "model_name": "m" }"#;
        let record = model_request(Ok(Json::from_string(text.into()).unwrap()));
        assert_eq!(usage_of(&record), Some(usage));
        // No usage, a usage that is not one, a failed step, another kind: none.
        for text in [
            r#"{"parts": []}"#,
            r#"{"usage": null}"#,
            r#"{"usage": 3}"#,
            "[]",
        ] {
            let record = model_request(Ok(Json::from_string(text.into()).unwrap()));
            assert_eq!(usage_of(&record), None, "{text}");
        }
        let failed = model_request(Err(StepFailure {
            message: "x".into(),
            retryable: false,
        }));
        assert_eq!(usage_of(&failed), None);
        let tool = StepRecord {
            kind: StepKind::Tool,
            ..model_request(Ok(Json::encode(&response).unwrap()))
        };
        assert_eq!(usage_of(&tool), None);
    }

    #[test]
    fn decimal_digits() {
        for n in [0, 1, 9, 10, 99, 100, 12345, u32::MAX] {
            let mut s = String::from("x");
            push_u32(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }
}
