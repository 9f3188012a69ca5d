//! The worker: claims runnable workflows, runs them (replaying their journals), keeps their
//! leases, and suspends or finishes them.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use serde_json::{Value, json};
use steadfast_core::Usage;
use steadfast_core::semconv::{
    GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS, GEN_AI_AGGREGATED_USAGE_OUTPUT_TOKENS, OTEL_NAME,
    OTEL_STATUS_CODE, OTEL_STATUS_DESCRIPTION, SPAN_WORKFLOW, STEADFAST_COST_USD,
    STEADFAST_REQUESTS, STEADFAST_STEPS_EXECUTED, STEADFAST_STEPS_REPLAYED,
    STEADFAST_UNPRICED_REQUESTS, STEADFAST_WORKFLOW_ID, STEADFAST_WORKFLOW_NAME,
    STEADFAST_WORKFLOW_STATUS, TARGET, int, redact_secrets,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::ctx::{RunShared, WorkflowCtx, usage_of};
use crate::deps::Deps;
use crate::ends::End;
use crate::engine::Engine;
use crate::error::WorkflowError;
use crate::events::{Observer, StepEvent};
use crate::owner;
use crate::poll_again::PollAgain;
use crate::store::{Claim, Outcome, StoreError, WorkflowStatus, now_millis};
use crate::workflow::{Erased, ErasedWorkflow, Workflow};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Workflows run at once, at most.
    pub max_concurrent: usize,
    /// Lease length; a worker that dies is replaced after this long (at once on the same host).
    pub lease: Duration,
    /// How often the store is polled for work started by other processes.
    pub poll_interval: Duration,
    /// Sleeps and waits shorter than this stay in memory; longer ones suspend the workflow.
    pub suspend_threshold: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_concurrent: 64,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(100),
            suspend_threshold: Duration::from_secs(1),
        }
    }
}

/// Builds a [`Worker`].
pub struct WorkerBuilder {
    engine: Engine,
    workflows: HashMap<String, Arc<dyn ErasedWorkflow>>,
    deps: Deps,
    observer: Option<Observer>,
    config: WorkerConfig,
}

impl WorkerBuilder {
    pub(crate) fn new(engine: Engine) -> Self {
        WorkerBuilder {
            engine,
            workflows: HashMap::new(),
            deps: Deps::default(),
            observer: None,
            config: WorkerConfig::default(),
        }
    }

    /// Register a workflow.
    pub fn workflow<W: Workflow>(mut self, w: W) -> Self {
        self.workflows
            .insert(W::NAME.to_string(), Arc::new(Erased(w)));
        self
    }

    /// Give the worker a dependency, reached in workflows with `ctx.deps::<T>()`.
    pub fn deps<T: Send + Sync + 'static>(mut self, value: impl Into<Arc<T>>) -> Self {
        self.deps.insert::<T>(value);
        self
    }

    /// Call `f` for every step event (replayed, completed, retrying, failed).
    pub fn on_step(mut self, f: impl Fn(&StepEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Settings.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Start the worker on the current tokio runtime.
    pub fn start(self) -> Worker {
        let id = owner::new_owner_id();
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(WorkerShared {
            id: id.clone(),
            engine: self.engine,
            names: self.workflows.keys().cloned().collect(),
            workflows: self.workflows,
            deps: Arc::new(self.deps),
            observer: self.observer,
            config: self.config,
            running: Mutex::new(Running::default()),
            active: AtomicUsize::new(0),
            finished: AtomicU64::new(0),
        });
        shared.engine.add_local(&shared);
        let join = tokio::spawn(main_loop(shared.clone(), stop_rx));
        Worker {
            shared,
            stop: stop_tx,
            join: Some(join),
        }
    }
}

/// A workflow this worker runs.
struct Run {
    run: Arc<RunShared>,
    task: JoinHandle<()>,
}

/// The workflows this worker runs, and whether it has stopped taking more.
#[derive(Default)]
struct Running {
    runs: HashMap<String, Run>,
    closed: bool,
}

/// A worker, as its main loop, its runs and its engine see it.
pub(crate) struct WorkerShared {
    id: String,
    engine: Engine,
    names: Vec<String>,
    workflows: HashMap<String, Arc<dyn ErasedWorkflow>>,
    deps: Arc<Deps>,
    observer: Option<Observer>,
    config: WorkerConfig,
    running: Mutex<Running>,
    active: AtomicUsize,
    finished: AtomicU64,
}

impl WorkerShared {
    /// The worker's id (the lease owner it writes).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The length of the leases it takes.
    pub(crate) fn lease(&self) -> Duration {
        self.config.lease
    }

    /// Whether it runs workflows named `name`.
    pub(crate) fn serves(&self, name: &str) -> bool {
        self.workflows.contains_key(name)
    }

    /// Whether it is running workflow `id`.
    pub(crate) fn runs(&self, id: &str) -> bool {
        self.running().runs.contains_key(id)
    }

    /// Whether it has stopped taking workflows.
    pub(crate) fn stopped(&self) -> bool {
        self.running().closed
    }

    /// Give back a slot counted in `active` for a run that did not start.
    fn unreserve(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running worker. Dropping it stops it without waiting; [`Worker::shutdown`] stops it and
/// hands its workflows back at once.
pub struct Worker {
    shared: Arc<WorkerShared>,
    stop: watch::Sender<bool>,
    join: Option<JoinHandle<()>>,
}

impl Worker {
    /// This worker's id (the lease owner it writes).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Workflows this worker has finished or suspended so far.
    pub fn runs_ended(&self) -> u64 {
        self.shared.finished.load(Ordering::Relaxed)
    }

    /// Stop claiming, stop the running workflows (everything they finished is in the journal),
    /// release their leases so any worker can pick them up at once, and flush the store
    /// ([`Store::flush`](crate::Store::flush)), so that other processes see everything the
    /// worker did.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
        let running: Vec<(String, Run)> = {
            let mut r = self.shared.running();
            r.closed = true;
            r.runs.drain().collect()
        };
        for (id, r) in running {
            r.task.abort();
            let _ = r.task.await;
            let _ = self
                .shared
                .engine
                .store()
                .finish(
                    &id,
                    &self.shared.id,
                    Outcome::Suspended {
                        wake_at: Some(now_millis()),
                        waiting_on: Vec::new(),
                    },
                )
                .await;
        }
        // What this worker committed is visible to other processes once it has stopped.
        if let Err(e) = self.shared.engine.store().flush().await {
            tracing::warn!(error = %e, "cannot flush the store at shutdown");
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let mut r = self.shared.running();
        r.closed = true;
        for (_, run) in r.runs.drain() {
            run.task.abort();
        }
    }
}

/// How often a worker looks for workflows leased by dead processes on its host. A killed process
/// may take a moment to disappear, so the check repeats often; it is one small query.
const DEAD_CHECK_EVERY: Duration = Duration::from_millis(300);

async fn main_loop(w: Arc<WorkerShared>, mut stop: watch::Receiver<bool>) {
    let renew_every = (w.config.lease / 3).min(Duration::from_secs(2));
    let mut last_renew = tokio::time::Instant::now();
    let mut dead_check = tokio::time::Instant::now() - Duration::from_secs(60);
    let wake = w.engine.wake_handle();
    loop {
        if *stop.borrow() {
            return;
        }
        // Workers of dead processes on this host give up their workflows at once.
        let mut dead = Vec::new();
        if dead_check.elapsed() >= DEAD_CHECK_EVERY {
            dead_check = tokio::time::Instant::now();
            if let Ok(owners) = w.engine.store().running_owners().await {
                dead = owners.into_iter().filter(|o| owner::is_dead(o)).collect();
            }
        }
        let capacity = w
            .config
            .max_concurrent
            .saturating_sub(w.active.load(Ordering::SeqCst));
        if capacity > 0 {
            match w
                .engine
                .store()
                .claim(&w.id, &w.names, capacity, w.config.lease, &dead)
                .await
            {
                Ok(claims) => {
                    for c in claims {
                        w.active.fetch_add(1, Ordering::SeqCst);
                        if let Some(id) = spawn_run(&w, c, false) {
                            give_back(&w, id);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming workflows failed"),
            }
        }
        if last_renew.elapsed() >= renew_every {
            last_renew = tokio::time::Instant::now();
            renew(&w).await;
        }
        let mut wait = w.config.poll_interval.min(renew_every);
        if let Ok(Some(t)) = w.engine.store().next_wake(&w.names).await {
            let until = (t - now_millis()).max(0) as u64;
            wait = wait.min(Duration::from_millis(until));
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn renew(w: &Arc<WorkerShared>) {
    let ids: Vec<String> = w.running().runs.keys().cloned().collect();
    if ids.is_empty() {
        return;
    }
    let asked_at = now_millis();
    let states = match w.engine.store().renew(&w.id, &ids, w.config.lease).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "renewing leases failed");
            return;
        }
    };
    let mut lost_any = false;
    {
        let mut r = w.running();
        for s in states {
            if !s.held {
                // Another worker has the workflow now: this run stops where it is, and its
                // slot is free again (an aborted task does not get to its own cleanup).
                if let Some(run) = r.runs.remove(&s.id) {
                    run.task.abort();
                    w.active.fetch_sub(1, Ordering::SeqCst);
                    lost_any = true;
                }
                continue;
            }
            if let Some(run) = r.runs.get(&s.id) {
                run.run
                    .lease_until
                    .store(lease_deadline(asked_at, w.config.lease), Ordering::SeqCst);
                if s.cancel_requested {
                    run.run.cancel.store(true, Ordering::SeqCst);
                    run.run.notify.notify_one();
                }
            }
        }
    }
    if lost_any {
        // Handles waiting on those workflows look at the store again.
        w.engine.notify_changed();
    }
}

/// Until when a lease asked for at `asked_at` is surely ours: its length less a tenth, for the
/// time the request took and for clock drift.
fn lease_deadline(asked_at: i64, lease: Duration) -> i64 {
    let ms = lease.as_millis() as i64;
    asked_at + ms - ms / 10
}

/// A slot of a worker reserved for one more run: [`Slot::run`] runs a workflow in it, and
/// dropped unused it is given back.
pub(crate) struct Slot {
    worker: Arc<WorkerShared>,
    used: bool,
    /// The workflow being created under the worker's lease for this slot, if any.
    claiming: Option<String>,
}

impl Slot {
    /// Reserve a slot of `worker`, if one is free.
    pub(crate) fn reserve(worker: Arc<WorkerShared>) -> Option<Slot> {
        let max = worker.config.max_concurrent;
        worker
            .active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot {
            worker,
            used: false,
            claiming: None,
        })
    }

    /// The worker.
    pub(crate) fn worker(&self) -> &Arc<WorkerShared> {
        &self.worker
    }

    /// Workflow `id` is being created under the worker's lease: should the slot be dropped
    /// before [`Slot::run`] (the caller gave up waiting), the lease is released, in case the
    /// creation went through, so that a worker claims the workflow at once.
    pub(crate) fn claiming(&mut self, id: &str) {
        self.claiming = Some(id.to_owned());
    }

    /// The creation came back (claimed, not claimed, or failed): nothing to release on drop.
    pub(crate) fn settled(&mut self) {
        self.claiming = None;
    }

    /// Run `claim`, claimed for this worker by [`Engine::start`](crate::Engine::start); `new`:
    /// the workflow was created with the claim, so its journal is empty. A worker that has
    /// stopped gives the workflow back at once.
    pub(crate) fn run(mut self, claim: Claim, new: bool) {
        self.used = true;
        if let Some(id) = spawn_run(&self.worker, claim, new) {
            give_back(&self.worker, id);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        self.worker.unreserve();
        if let Some(id) = self.claiming.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            // Queued after the creation on the store's write path; a workflow that was not
            // created, or not under this lease, is left as it is.
            give_back(&self.worker, id);
        }
    }
}

/// Release the lease of workflow `id`, which this worker claimed but will not run, so that any
/// worker can pick it up at once.
fn give_back(w: &Arc<WorkerShared>, id: String) {
    let w = w.clone();
    tokio::spawn(async move {
        let given_back = Outcome::Suspended {
            wake_at: Some(now_millis()),
            waiting_on: Vec::new(),
        };
        match w.engine.store().finish(&id, &w.id, given_back).await {
            // Not there, or not under this lease: nothing to give back.
            Ok(()) | Err(StoreError::NotFound(_) | StoreError::LeaseLost(_)) => {}
            Err(e) => tracing::warn!(workflow = %id, error = %e, "cannot give back a workflow"),
        }
        w.engine.wake_handle().notify_one();
    });
}

/// Run `claim` in a slot already counted in `active`. If it cannot run (the worker has stopped,
/// or does not know the workflow), the slot is given back and so is the workflow's id. `new`:
/// the workflow was created with the claim, and its journal is not read.
fn spawn_run(w: &Arc<WorkerShared>, claim: Claim, new: bool) -> Option<String> {
    let rec = claim.record;
    let Some(wf) = w.workflows.get(&rec.name).cloned() else {
        w.unreserve();
        return Some(rec.id);
    };
    // Taken before the run's task exists, so the task's removal of its entry comes after the
    // entry is in.
    let mut running = w.running();
    if running.closed {
        w.unreserve();
        return Some(rec.id);
    }
    // A root span: each execution of a workflow (first run, resumption) is its own trace.
    let span = tracing::info_span!(
        target: TARGET,
        parent: None,
        SPAN_WORKFLOW,
        { OTEL_NAME } = format!("{SPAN_WORKFLOW} {}", rec.name),
        { STEADFAST_WORKFLOW_ID } = rec.id.as_str(),
        { STEADFAST_WORKFLOW_NAME } = rec.name.as_str(),
        { STEADFAST_WORKFLOW_STATUS } = Empty,
        { STEADFAST_STEPS_REPLAYED } = Empty,
        { STEADFAST_STEPS_EXECUTED } = Empty,
        { GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS } = Empty,
        { GEN_AI_AGGREGATED_USAGE_OUTPUT_TOKENS } = Empty,
        { STEADFAST_REQUESTS } = Empty,
        { STEADFAST_COST_USD } = Empty,
        { STEADFAST_UNPRICED_REQUESTS } = Empty,
        { OTEL_STATUS_CODE } = Empty,
        { OTEL_STATUS_DESCRIPTION } = Empty,
    );
    let run = Arc::new(RunShared {
        id: rec.id.clone(),
        name: rec.name.clone(),
        store: w.engine.store().clone(),
        owner: w.id.clone(),
        journal: Mutex::new(HashMap::new()),
        executed_usage: (!span.is_disabled()).then(Mutex::default),
        deps: w.deps.clone(),
        observer: w.observer.clone(),
        cancel: AtomicBool::new(rec.cancel_requested),
        lease_until: AtomicI64::new(lease_deadline(now_millis(), w.config.lease)),
        in_flight: AtomicUsize::new(0),
        suspend_requested: AtomicBool::new(false),
        wake_at: Mutex::new(None),
        waiting_on: Mutex::new(Vec::new()),
        notify: Notify::new(),
        suspend_threshold: w.config.suspend_threshold,
        replayed: AtomicU64::new(0),
        executed: AtomicU64::new(0),
        requests: crate::hashing::RequestHasher::default(),
        step_names: crate::agents::StepNames::default(),
        remote: None,
    });
    let task = {
        let w = w.clone();
        let run = run.clone();
        let input = rec.input.clone();
        let report = RunSpan {
            span: span.clone(),
            run: run.clone(),
            done: false,
        };
        tokio::spawn(async move {
            let id = run.id.clone();
            let this = run.clone();
            let end = execute_run(&w, run, wf, input, new, report)
                .instrument(span)
                .await;
            // The end is there for the handles waiting for it before the run leaves the list
            // (a handle that finds the run gone finds its end), and the slot is free before
            // they are woken (so that a workflow they start next can have it).
            if let Some(end) = end {
                w.engine.ended(&id, end);
            }
            {
                // Unless a renewal found the lease lost and let the slot go already.
                let mut r = w.running();
                if r.runs.get(&id).is_some_and(|e| Arc::ptr_eq(&e.run, &this)) {
                    r.runs.remove(&id);
                    w.active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            w.finished.fetch_add(1, Ordering::Relaxed);
            w.engine.notify_changed();
        })
    };
    running.runs.insert(rec.id, Run { run, task });
    None
}

/// Reports how one execution of a workflow ended on its `workflow` span, with the workflow's
/// totals read from its journal. Dropped unfinished (the task aborted: shutdown, lost lease),
/// it reports `interrupted`.
struct RunSpan {
    span: Span,
    run: Arc<RunShared>,
    done: bool,
}

impl RunSpan {
    fn finish(&mut self, status: &str, error: Option<&str>) {
        self.done = true;
        let span = &self.span;
        if span.is_disabled() {
            return;
        }
        span.record(STEADFAST_WORKFLOW_STATUS, status);
        span.record(
            STEADFAST_STEPS_REPLAYED,
            int(self.run.replayed.load(Ordering::Relaxed)),
        );
        span.record(
            STEADFAST_STEPS_EXECUTED,
            int(self.run.executed.load(Ordering::Relaxed)),
        );
        if let Some(e) = error {
            span.record(OTEL_STATUS_CODE, "error");
            span.record(OTEL_STATUS_DESCRIPTION, redact_secrets(e));
        }
        // Every model request of the workflow, nested agents included, is a step of its own.
        let mut total = Usage::default();
        {
            let journal = self.run.journal.lock().unwrap_or_else(|e| e.into_inner());
            for u in journal.values().filter_map(usage_of) {
                total += &u;
            }
        }
        if let Some(executed) = &self.run.executed_usage {
            total += &*executed.lock().unwrap_or_else(|e| e.into_inner());
        }
        span.record(
            GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS,
            int(total.input_tokens),
        );
        span.record(
            GEN_AI_AGGREGATED_USAGE_OUTPUT_TOKENS,
            int(total.output_tokens),
        );
        span.record(STEADFAST_REQUESTS, int(total.requests));
        span.record(STEADFAST_COST_USD, total.cost_usd);
        if total.unpriced_requests > 0 {
            span.record(STEADFAST_UNPRICED_REQUESTS, int(total.unpriced_requests));
        }
    }
}

impl Drop for RunSpan {
    fn drop(&mut self) {
        if !self.done {
            self.finish("interrupted", None);
        }
    }
}

/// The error of a workflow whose code panicked, with the panic's message.
fn panicked(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    format!("the workflow's code panicked: {message}")
}

/// Run a workflow until it ends or suspends, and record that. Returns its end if it ended for
/// good and a handle of this process waits for it. `new`: the workflow was just created, with
/// an empty journal.
async fn execute_run(
    w: &Arc<WorkerShared>,
    run: Arc<RunShared>,
    wf: Arc<dyn ErasedWorkflow>,
    input: Value,
    new: bool,
    mut report: RunSpan,
) -> Option<End> {
    let store = run.store.clone();
    let journal = if new {
        Ok(Vec::new())
    } else {
        store.load_journal(&run.id).await
    };
    match journal {
        Ok(steps) => {
            let mut j = run.journal.lock().unwrap_or_else(|e| e.into_inner());
            for s in steps {
                j.insert(s.position.clone(), s);
            }
        }
        Err(e) => {
            tracing::warn!(workflow = %run.id, error = %e, "cannot load the journal; leaving it for a retry");
            report.finish("interrupted", Some(&e.to_string()));
            return None;
        }
    }
    let ctx = WorkflowCtx::root(run.clone());
    // A step that yields so that its sibling branches get polled first (to share a commit)
    // is polled again here at once, not after a trip through the scheduler.
    // A panic in the workflow's code (a step's body, a tool) fails the workflow with its
    // message instead of ending the worker's task, which would hold the workflow's lease
    // forever.
    let run_caught = AssertUnwindSafe(wf.run(ctx, input))
        .catch_unwind()
        .map(|r| r.unwrap_or_else(|panic| Err(WorkflowError::Failed(panicked(&*panic)))));
    let mut fut = PollAgain::new(run_caught);
    let result = loop {
        tokio::select! {
            r = &mut fut => break Some(r),
            _ = run.notify.notified() => {
                if run.suspend_requested.load(Ordering::SeqCst)
                    && run.in_flight.load(Ordering::SeqCst) == 0
                {
                    // Give every branch one more chance to make progress; if none starts a
                    // step, they are all waiting, and the run can leave memory.
                    tokio::task::yield_now().await;
                    if let std::task::Poll::Ready(r) = futures::poll!(&mut fut) {
                        break Some(r);
                    }
                    if run.in_flight.load(Ordering::SeqCst) == 0 {
                        break None;
                    }
                }
            }
        }
    };
    drop(fut);
    let outcome = match result {
        None => {
            let wake_at = *run.wake_at.lock().unwrap_or_else(|e| e.into_inner());
            report.finish("suspended", None);
            let waiting_on =
                std::mem::take(&mut *run.waiting_on.lock().unwrap_or_else(|e| e.into_inner()));
            Outcome::Suspended {
                wake_at,
                waiting_on,
            }
        }
        Some(Ok(v)) => {
            report.finish("completed", None);
            Outcome::Finished {
                status: WorkflowStatus::Completed,
                output: v,
            }
        }
        Some(Err(WorkflowError::Cancelled(_))) => {
            report.finish("cancelled", None);
            Outcome::Finished {
                status: WorkflowStatus::Cancelled,
                output: json!({ "error": "cancelled" }),
            }
        }
        Some(Err(e @ (WorkflowError::Store(_) | WorkflowError::LeaseLost(_)))) => {
            // Not the workflow's fault: leave it to be picked up again when the lease expires.
            tracing::warn!(workflow = %run.id, error = %e, "run interrupted");
            report.finish("interrupted", Some(&e.to_string()));
            return None;
        }
        Some(Err(e)) => {
            tracing::error!(workflow = %run.id, error = %e, "workflow failed");
            report.finish("failed", Some(&e.to_string()));
            Outcome::Finished {
                status: WorkflowStatus::Failed,
                output: json!({ "error": e.to_string() }),
            }
        }
    };
    // The end, for the handles of this process that wait for it (if any).
    let end = match &outcome {
        Outcome::Finished { status, output } if w.engine.awaited(&run.id) => {
            Some((*status, output.clone()))
        }
        _ => None,
    };
    match store.finish(&run.id, &w.id, outcome).await {
        Ok(()) => end,
        Err(e) => {
            tracing::warn!(workflow = %run.id, error = %e, "cannot record the end of the run");
            None
        }
    }
}
