//! The worker: claims runnable workflows, runs them (replaying their journals), keeps their
//! leases, and suspends or finishes them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::ctx::{RunShared, WorkflowCtx};
use crate::deps::Deps;
use crate::engine::Engine;
use crate::error::WorkflowError;
use crate::events::{Observer, StepEvent};
use crate::owner;
use crate::store::{Claim, Outcome, WorkflowStatus, now_millis};
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
            running: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            finished: AtomicU64::new(0),
        });
        let join = tokio::spawn(main_loop(shared.clone(), stop_rx));
        Worker {
            shared,
            stop: stop_tx,
            join: Some(join),
        }
    }
}

struct Running {
    run: Arc<RunShared>,
    lost: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

struct WorkerShared {
    id: String,
    engine: Engine,
    names: Vec<String>,
    workflows: HashMap<String, Arc<dyn ErasedWorkflow>>,
    deps: Arc<Deps>,
    observer: Option<Observer>,
    config: WorkerConfig,
    running: Mutex<HashMap<String, Running>>,
    active: AtomicUsize,
    finished: AtomicU64,
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
    /// and release their leases so any worker can pick them up at once.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
        let running: Vec<(String, Running)> = {
            let mut r = self.shared.running.lock().unwrap_or_else(|e| e.into_inner());
            r.drain().collect()
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
                    },
                )
                .await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Ok(mut r) = self.shared.running.lock() {
            for (_, run) in r.drain() {
                run.task.abort();
            }
        }
    }
}

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
        if dead_check.elapsed() >= Duration::from_secs(2) {
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
                        spawn_run(&w, c);
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
    let ids: Vec<String> = {
        let r = w.running.lock().unwrap_or_else(|e| e.into_inner());
        r.keys().cloned().collect()
    };
    if ids.is_empty() {
        return;
    }
    let states = match w.engine.store().renew(&w.id, &ids, w.config.lease).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "renewing leases failed");
            return;
        }
    };
    let r = w.running.lock().unwrap_or_else(|e| e.into_inner());
    for s in states {
        if let Some(run) = r.get(&s.id) {
            if !s.held {
                run.lost.store(true, Ordering::SeqCst);
                run.task.abort();
            }
            if s.cancel_requested {
                run.run.cancel.store(true, Ordering::SeqCst);
                run.run.notify.notify_one();
            }
        }
    }
}

fn spawn_run(w: &Arc<WorkerShared>, claim: Claim) {
    let rec = claim.record;
    let Some(wf) = w.workflows.get(&rec.name).cloned() else {
        return;
    };
    let run = Arc::new(RunShared {
        id: rec.id.clone(),
        name: rec.name.clone(),
        store: w.engine.store().clone(),
        owner: w.id.clone(),
        journal: Mutex::new(HashMap::new()),
        deps: w.deps.clone(),
        observer: w.observer.clone(),
        cancel: AtomicBool::new(rec.cancel_requested),
        in_flight: AtomicUsize::new(0),
        suspend_requested: AtomicBool::new(false),
        wake_at: Mutex::new(None),
        notify: Notify::new(),
        suspend_threshold: w.config.suspend_threshold,
        replayed: AtomicU64::new(0),
        executed: AtomicU64::new(0),
    });
    let lost = Arc::new(AtomicBool::new(false));
    w.active.fetch_add(1, Ordering::SeqCst);
    let task = {
        let w = w.clone();
        let run = run.clone();
        let input = rec.input.clone();
        tokio::spawn(async move {
            let id = run.id.clone();
            execute_run(&w, run, wf, input).await;
            w.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            w.active.fetch_sub(1, Ordering::SeqCst);
            w.finished.fetch_add(1, Ordering::Relaxed);
            w.engine.notify_changed();
        })
    };
    w.running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(rec.id, Running { run, lost, task });
}

async fn execute_run(
    w: &Arc<WorkerShared>,
    run: Arc<RunShared>,
    wf: Arc<dyn ErasedWorkflow>,
    input: Value,
) {
    let store = run.store.clone();
    match store.load_journal(&run.id).await {
        Ok(steps) => {
            let mut j = run.journal.lock().unwrap_or_else(|e| e.into_inner());
            for s in steps {
                j.insert(s.position.clone(), s);
            }
        }
        Err(e) => {
            tracing::warn!(workflow = %run.id, error = %e, "cannot load the journal; leaving it for a retry");
            return;
        }
    }
    let ctx = WorkflowCtx::root(run.clone());
    let mut fut = wf.run(ctx, input);
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
            Outcome::Suspended { wake_at }
        }
        Some(Ok(v)) => Outcome::Finished {
            status: WorkflowStatus::Completed,
            output: v,
        },
        Some(Err(WorkflowError::Cancelled(_))) => Outcome::Finished {
            status: WorkflowStatus::Cancelled,
            output: json!({ "error": "cancelled" }),
        },
        Some(Err(e @ (WorkflowError::Store(_) | WorkflowError::LeaseLost(_)))) => {
            // Not the workflow's fault: leave it to be picked up again when the lease expires.
            tracing::warn!(workflow = %run.id, error = %e, "run interrupted");
            return;
        }
        Some(Err(e)) => {
            tracing::error!(workflow = %run.id, error = %e, "workflow failed");
            Outcome::Finished {
                status: WorkflowStatus::Failed,
                output: json!({ "error": e.to_string() }),
            }
        }
    };
    if let Err(e) = store.finish(&run.id, &w.id, outcome).await {
        tracing::warn!(workflow = %run.id, error = %e, "cannot record the end of the run");
    }
}
