//! The Temporal worker: the dispatcher workflow on the shared task queue, and the step
//! activities on a task queue of this process's own.

use std::collections::HashSet;
use std::sync::Arc;

use steadfast_core::Agent;
use steadfast_durable::{Deps, Workflow, WorkflowSet};
use temporalio_common::telemetry::{Logger, TelemetryOptions};
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use crate::activities::{self, Bodies, StepRunner};
use crate::bridge::Dispatcher;
use crate::{TemporalConfig, TemporalError, connect};

/// What the dispatcher workflows of one worker share.
pub(crate) struct WorkerShared {
    pub workflows: WorkflowSet,
    pub deps: Arc<Deps>,
    pub bodies: Arc<Bodies>,
    /// This process's activity task queue: steps run where their bodies are.
    pub activity_queue: String,
    /// The step names registered as activities.
    pub step_names: HashSet<String>,
    pub config: TemporalConfig,
    pub payload_limit: usize,
    pub history_limit: usize,
}

/// Builds a [`TemporalWorker`]: the workflows it runs, the agents and steps whose activities it
/// registers, and its deps.
///
/// ```no_run
/// # use steadfast_temporal::{TemporalConfig, TemporalWorker};
/// # async fn doc(agent: steadfast_core::Agent<(), String>) -> Result<(), steadfast_temporal::TemporalError> {
/// let worker = TemporalWorker::builder(TemporalConfig::default())
///     .agent(&agent)          // agent__{name}__model_request, agent__{name}__tool__{tool}
///     .step("fetch_report")   // a user step's activity
///     .start()
///     .await?;
/// # worker.shutdown().await; Ok(()) }
/// ```
pub struct TemporalWorkerBuilder {
    config: TemporalConfig,
    workflows: WorkflowSet,
    deps: Deps,
    steps: HashSet<String>,
}

impl TemporalWorkerBuilder {
    /// Run workflow `W` (by its registered name).
    pub fn workflow<W: Workflow>(mut self, workflow: W) -> Self {
        self.workflows.add(workflow);
        self
    }

    /// Register the activities of `agent`: `agent__{name}__model_request` and one
    /// `agent__{name}__tool__{tool}` per tool.
    pub fn agent<D, O>(mut self, agent: &Agent<D, O>) -> Self
    where
        D: Send + Sync + 'static,
        O: serde::de::DeserializeOwned + schemars::JsonSchema + Send + 'static,
    {
        let name = agent.name();
        self.steps.insert(format!("agent__{name}__model_request"));
        for t in agent.tool_definitions() {
            self.steps
                .insert(format!("agent__{name}__tool__{}", t.name));
        }
        self
    }

    /// Register the activity of a user step (`ctx.step(name, ..)`).
    pub fn step(mut self, name: impl Into<String>) -> Self {
        self.steps.insert(name.into());
        self
    }

    /// Give the worker a dependency of type `T`: workflows reach it with `ctx.deps::<T>()`, and
    /// tools by reference. It is never serialized.
    pub fn deps<T: Send + Sync + 'static>(mut self, value: impl Into<Arc<T>>) -> Self {
        self.deps.insert::<T>(value);
        self
    }

    /// Connect and start polling. The worker runs on a thread of its own (the SDK's worker
    /// futures are not `Send`) until [`TemporalWorker::shutdown`].
    pub async fn start(self) -> Result<TemporalWorker, TemporalError> {
        let instance = format!("{}@{}/{}", std::process::id(), hostname(), uuid_ish());
        let activity_queue = format!("{}/steps/{instance}", self.config.task_queue);
        let shared = Arc::new(WorkerShared {
            workflows: self.workflows,
            deps: Arc::new(self.deps),
            bodies: Arc::new(Bodies::default()),
            activity_queue,
            step_names: self.steps,
            payload_limit: self.config.payload_limit,
            history_limit: self.config.history_limit,
            config: self.config,
        });
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("steadfast-temporal".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(TemporalError::Worker(e.to_string())));
                        return;
                    }
                };
                let result = rt.block_on(run_workers(thread_shared, instance, ready_tx));
                let _ = done_tx.send(result);
            })
            .map_err(|e| TemporalError::Worker(format!("worker thread: {e}")))?;
        let shutdowns = ready_rx
            .await
            .map_err(|_| TemporalError::Worker("the worker thread ended".into()))??;
        Ok(TemporalWorker {
            shutdowns,
            done: Some(done_rx),
            shared,
        })
    }
}

type Shutdowns = Vec<Box<dyn Fn() + Send + Sync>>;

/// Build both SDK workers, report their shutdown handles, and run them until they stop.
async fn run_workers(
    shared: Arc<WorkerShared>,
    instance: String,
    ready: tokio::sync::oneshot::Sender<Result<Shutdowns, TemporalError>>,
) -> Result<(), TemporalError> {
    let built = build_workers(&shared, &instance).await;
    let (runtime, mut workers) = match built {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let shutdowns: Shutdowns = workers
        .iter()
        .map(|w| Box::new(w.shutdown_handle()) as Box<dyn Fn() + Send + Sync>)
        .collect();
    let _ = ready.send(Ok(shutdowns));
    let results = futures::future::join_all(workers.iter_mut().map(|w| w.run())).await;
    drop(workers);
    drop(runtime);
    for r in results {
        r.map_err(|e| TemporalError::Worker(e.to_string()))?;
    }
    Ok(())
}

async fn build_workers(
    shared: &Arc<WorkerShared>,
    instance: &str,
) -> Result<(Runtime, Vec<Worker>), TemporalError> {
    let config = &shared.config;
    // The SDK's core logs nothing unless told to: a failing workflow task (a non-determinism
    // error, say) must not retry silently, so its warnings go to stderr.
    let logging = config.core_log.clone().map(|filter| Logger::Console {
        filter,
        format: None,
    });
    let options = RuntimeOptions::builder()
        .telemetry_options(TelemetryOptions::builder().maybe_logging(logging).build())
        .build()
        .map_err(|e| TemporalError::Worker(format!("runtime options: {e}")))?;
    let runtime = Runtime::from_current_tokio(options)
        .map_err(|e| TemporalError::Worker(format!("runtime: {e}")))?;
    let mut workers = Vec::new();

    // Workflows: the shared task queue.
    let factory_shared = shared.clone();
    let mut wf_opts = WorkerOptions::new(config.task_queue.clone())
        .register_workflow_with_factory::<Dispatcher, _>(move || {
            Dispatcher::new(factory_shared.clone())
        })
        .map_err(|e| TemporalError::Worker(format!("workflow registration: {e}")))?
        .build();
    // The bridge wakes the workflow's own futures from inside the workflow's poll; every other
    // effect goes through the context, so the wake detector has nothing to find.
    wf_opts.detect_nondeterministic_futures = false;
    wf_opts.sticky_queue_schedule_to_start_timeout = config.sticky_timeout;
    wf_opts.client_identity_override = Some(instance.to_string());
    let client = connect(config).await?;
    workers.push(
        Worker::new(&runtime, client, wf_opts)
            .map_err(|e| TemporalError::Worker(format!("workflow worker: {e}")))?,
    );

    // Steps: this process's own queue, every registered step name.
    if !shared.step_names.is_empty() {
        let runner = Arc::new(StepRunner {
            bodies: shared.bodies.clone(),
            payload_limit: shared.payload_limit,
        });
        let mut step_opts = WorkerOptions::new(shared.activity_queue.clone()).build();
        for name in &shared.step_names {
            activities::register(&mut step_opts, name, runner.clone());
        }
        step_opts.client_identity_override = Some(instance.to_string());
        let client = connect(config).await?;
        workers.push(
            Worker::new(&runtime, client, step_opts)
                .map_err(|e| TemporalError::Worker(format!("step worker: {e}")))?,
        );
    }
    Ok((runtime, workers))
}

/// A running Temporal worker.
pub struct TemporalWorker {
    shutdowns: Shutdowns,
    done: Option<tokio::sync::oneshot::Receiver<Result<(), TemporalError>>>,
    shared: Arc<WorkerShared>,
}

impl std::fmt::Debug for TemporalWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalWorker")
            .field("task_queue", &self.shared.config.task_queue)
            .field("activity_queue", &self.shared.activity_queue)
            .finish_non_exhaustive()
    }
}

impl TemporalWorker {
    /// A builder with `config`.
    pub fn builder(config: TemporalConfig) -> TemporalWorkerBuilder {
        TemporalWorkerBuilder {
            config,
            workflows: WorkflowSet::new(),
            deps: Deps::default(),
            steps: HashSet::new(),
        }
    }

    /// This process's activity task queue, where its steps run.
    pub fn activity_queue(&self) -> &str {
        &self.shared.activity_queue
    }

    /// Step bodies held for activities not yet finished.
    pub fn pending_steps(&self) -> usize {
        self.shared.bodies.len()
    }

    /// Wait until the worker stops by itself (an error), or forever.
    pub async fn wait(&mut self) -> Result<(), TemporalError> {
        match self.done.take() {
            Some(done) => done
                .await
                .map_err(|_| TemporalError::Worker("the worker thread ended".into()))?,
            None => Ok(()),
        }
    }

    /// Stop polling, let running tasks finish, and wait for the worker to stop.
    pub async fn shutdown(mut self) {
        for s in &self.shutdowns {
            s();
        }
        let _ = self.wait().await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// A process-unique suffix: the clock and an address, hashed.
fn uuid_ish() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}
