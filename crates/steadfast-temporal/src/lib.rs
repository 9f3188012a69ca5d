//! Steadfast workflows and agents on a Temporal cluster, through the official Temporal Rust SDK.
//!
//! The workflows you wrote for the embedded engine run here unchanged: every model request,
//! tool call and user step becomes a Temporal activity named like the step
//! (`agent__{agent}__model_request`, `agent__{agent}__tool__{tool}`, or the step's name), `sleep`
//! becomes a timer, `recv` a signal (or an update with a validator, for approvals), child
//! workflows child workflows, and the state lives in Temporal's history.
//!
//! ```no_run
//! use steadfast_temporal::{TemporalClient, TemporalConfig, TemporalWorker};
//! # use steadfast_durable::{Workflow, WorkflowCtx, WorkflowError};
//! # struct Research;
//! # impl Workflow for Research {
//! #     const NAME: &'static str = "research";
//! #     type Input = String;
//! #     type Output = String;
//! #     async fn run(&self, _ctx: &WorkflowCtx, q: String) -> Result<String, WorkflowError> { Ok(q) }
//! # }
//! # async fn doc() -> Result<(), steadfast_temporal::TemporalError> {
//! let config = TemporalConfig::default(); // 127.0.0.1:7233, namespace `default`, queue `steadfast`
//! let worker = TemporalWorker::builder(config.clone())
//!     .workflow(Research)
//!     .start()
//!     .await?;
//! let client = TemporalClient::connect(config).await?;
//! let handle = client.start::<Research>("research-1", "why is the sky blue?".into()).await?;
//! let report = handle.result().await?;
//! # worker.shutdown().await; Ok(()) }
//! ```
//!
//! How it maps (see `ARCHITECTURE.md` for the reasons):
//! - **One dispatcher workflow.** Temporal runs one workflow type, `steadfast`, whose input names
//!   the Steadfast workflow to run. The SDK wants a concrete, non-generic, `!Send` workflow type
//!   per registration; one dispatcher keeps every Steadfast workflow plain Rust, with nothing
//!   Temporal-specific to write.
//! - **Steps run where their bodies are.** A step's body is a closure holding the worker's deps
//!   by reference; it is never serialized. Each worker process polls a task queue of its own for
//!   step activities, so an activity runs in the process that scheduled it; when that process
//!   dies, the step is scheduled again on the worker that picked up the workflow.
//! - **Small histories.** An activity's payload carries a key and the step's input (tool
//!   arguments), never the conversation: a model request's input stays in the worker.
//! - **Policies are activity options**: start-to-close timeout, retry policy (errors classified
//!   as fatal are non-retryable), and a heartbeat timeout, so a dead worker is noticed in
//!   seconds.
//! - **Continue-as-new**: past `history_limit` events (or when Temporal suggests it), a run
//!   continues as new between steps, carrying the answers it has; the next run replays them
//!   without activities.
//! - **Non-determinism** fails the workflow task with Steadfast's error text (logged); the
//!   workflow waits for a worker with the code that matches its history.

mod activities;
mod bridge;
mod client;
pub mod dev;
mod inspect;
mod steps;
mod worker;

use std::time::Duration;

pub use bridge::{DELIVER_UPDATE, SEND_SIGNAL, WORKFLOW_TYPE};
pub use client::{HistorySize, TemporalClient, TemporalHandle, TemporalStatus};
pub use inspect::{
    MEMO_WORKFLOW, RowKind, RowStatus, RunStatus, StepRow, TemporalHistory, WorkflowSummary,
};
pub use worker::{TemporalWorker, TemporalWorkerBuilder};

/// Where the Temporal server is and how steps are scheduled on it.
#[derive(Debug, Clone)]
pub struct TemporalConfig {
    /// The frontend address, `host:port` (or a URL).
    pub address: String,
    /// The namespace.
    pub namespace: String,
    /// The task queue of the workflows.
    pub task_queue: String,
    /// How long a step may go without a heartbeat before Temporal gives up on its worker. Step
    /// bodies heartbeat at a third of this while they run.
    pub heartbeat_timeout: Duration,
    /// How long a scheduled step may wait for its worker before it is scheduled on another.
    pub schedule_to_start_timeout: Duration,
    /// The start-to-close timeout of steps whose policy has none.
    pub default_step_timeout: Duration,
    /// How long a workflow task waits on a (possibly dead) worker's sticky queue.
    pub sticky_timeout: Duration,
    /// The workflow task timeout of started workflows.
    pub workflow_task_timeout: Duration,
    /// The largest payload, in bytes: Temporal's own limit is 2 MiB.
    pub payload_limit: usize,
    /// History events after which a run continues as new (between steps).
    pub history_limit: usize,
    /// How long [`TemporalHandle::result`] keeps re-attaching while the server is unreachable.
    pub reattach_timeout: Duration,
    /// The filter of the SDK core's log on stderr (`tracing` `EnvFilter` syntax); `None`
    /// silences it. The default shows warnings, such as a workflow task failing.
    pub core_log: Option<String>,
}

impl Default for TemporalConfig {
    fn default() -> Self {
        TemporalConfig {
            address: "127.0.0.1:7233".into(),
            namespace: "default".into(),
            task_queue: "steadfast".into(),
            heartbeat_timeout: Duration::from_secs(5),
            schedule_to_start_timeout: Duration::from_secs(10),
            default_step_timeout: Duration::from_secs(600),
            sticky_timeout: Duration::from_secs(3),
            workflow_task_timeout: Duration::from_secs(10),
            payload_limit: 2 * 1024 * 1024,
            history_limit: 10_000,
            reattach_timeout: Duration::from_secs(300),
            core_log: Some("temporalio_sdk_core=warn,temporalio_sdk=warn".into()),
        }
    }
}

impl TemporalConfig {
    /// The default config at `address`.
    pub fn at(address: impl Into<String>) -> Self {
        TemporalConfig {
            address: address.into(),
            ..Default::default()
        }
    }

    /// With workflows on `task_queue`.
    pub fn task_queue(mut self, task_queue: impl Into<String>) -> Self {
        self.task_queue = task_queue.into();
        self
    }
}

/// What can go wrong talking to Temporal.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TemporalError {
    /// The server could not be reached.
    #[error("cannot connect to Temporal at {address}: {message}")]
    Connect {
        /// The address tried.
        address: String,
        /// Why.
        message: String,
    },
    /// The worker could not start or stopped with an error.
    #[error("Temporal worker: {0}")]
    Worker(String),
    /// The workflow ended without an output.
    #[error("workflow `{id}` failed: {message}")]
    Workflow {
        /// The workflow id.
        id: String,
        /// Its error.
        message: String,
    },
    /// The workflow refused a delivery (its validator said why).
    #[error("refused: {0}")]
    Rejected(String),
    /// A payload is over the limit.
    #[error("{0}")]
    Payload(String),
    /// A call to the server failed.
    #[error("Temporal: {0}")]
    Rpc(String),
    /// A value did not serialize or deserialize.
    #[error("serialization: {0}")]
    Serde(String),
}

/// A client for `config`.
pub(crate) async fn connect(
    config: &TemporalConfig,
) -> Result<temporalio_client::Client, TemporalError> {
    let err = |m: String| TemporalError::Connect {
        address: config.address.clone(),
        message: m,
    };
    let url = if config.address.contains("://") {
        config.address.clone()
    } else {
        format!("http://{}", config.address)
    };
    let url = url::Url::parse(&url).map_err(|e| err(e.to_string()))?;
    let conn = temporalio_client::Connection::connect(
        temporalio_client::ConnectionOptions::new(url).build(),
    )
    .await
    .map_err(|e| err(e.to_string()))?;
    temporalio_client::Client::new(
        conn,
        temporalio_client::ClientOptions::new(config.namespace.clone()).build(),
    )
    .map_err(|e| err(e.to_string()))
}
