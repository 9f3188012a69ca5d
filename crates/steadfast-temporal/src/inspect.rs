//! Inspecting Steadfast workflows on Temporal: list the runs of the dispatcher type, read a
//! workflow's history as one row per step (the activities, with timers, messages, child
//! workflows and continue-as-new between them), and cancel a workflow.
//!
//! ```no_run
//! # use steadfast_temporal::{TemporalClient, TemporalConfig};
//! # async fn doc() -> Result<(), steadfast_temporal::TemporalError> {
//! let client = TemporalClient::connect(TemporalConfig::default()).await?;
//! for w in client.list(None, Some(20)).await? {
//!     println!("{} {} {}", w.id, w.workflow.as_deref().unwrap_or("?"), w.status);
//! }
//! let history = client.history("research-1").await?;
//! for step in &history.steps {
//!     println!("{} {} {} {}", step.step_id, step.kind, step.name, step.status);
//! }
//! # Ok(()) }
//! ```

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use temporalio_client::errors::WorkflowInteractionError;
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowDescribeOptions, WorkflowExecutionStatus,
    WorkflowFetchHistoryOptions, WorkflowHandle, WorkflowListOptions,
};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_common::protos::temporal::api::workflow::v1::WorkflowExecutionInfo as ProtoExecutionInfo;

use crate::bridge::{DispatchInput, Dispatcher, WORKFLOW_TYPE};
use crate::{TemporalClient, TemporalError};

/// The memo key under which [`TemporalClient::start`] records the Steadfast workflow's name, so
/// a listing shows it without reading histories.
pub const MEMO_WORKFLOW: &str = "steadfast.workflow";

/// Runs followed back through continue-as-new when reading a history.
const MAX_RUNS: usize = 100;

/// Milliseconds since the epoch of an optional protobuf timestamp (or duration) field.
macro_rules! millis {
    ($t:expr) => {
        $t.as_ref()
            .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
    };
}

mod reader;

use reader::{Reader, decode};

/// The status of a workflow run on Temporal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Running (or waiting: for a step, a timer, a message or a worker).
    Running,
    /// Finished with an output.
    Completed,
    /// Failed.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Terminated from outside.
    Terminated,
    /// Timed out.
    TimedOut,
    /// Continued as new: a newer run of the same workflow id carries on.
    ContinuedAsNew,
}

impl RunStatus {
    /// The status as printed: `running`, `completed`, `failed`, `cancelled`, `terminated`,
    /// `timed_out`, `continued_as_new`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Terminated => "terminated",
            RunStatus::TimedOut => "timed_out",
            RunStatus::ContinuedAsNew => "continued_as_new",
        }
    }

    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }

    /// The value of `ExecutionStatus` in a visibility query.
    fn query_value(self) -> &'static str {
        match self {
            RunStatus::Running => "Running",
            RunStatus::Completed => "Completed",
            RunStatus::Failed => "Failed",
            RunStatus::Cancelled => "Canceled",
            RunStatus::Terminated => "Terminated",
            RunStatus::TimedOut => "TimedOut",
            RunStatus::ContinuedAsNew => "ContinuedAsNew",
        }
    }

    fn of(s: WorkflowExecutionStatus) -> Self {
        match s {
            WorkflowExecutionStatus::Completed => RunStatus::Completed,
            WorkflowExecutionStatus::Failed => RunStatus::Failed,
            WorkflowExecutionStatus::Canceled => RunStatus::Cancelled,
            WorkflowExecutionStatus::Terminated => RunStatus::Terminated,
            WorkflowExecutionStatus::TimedOut => RunStatus::TimedOut,
            WorkflowExecutionStatus::ContinuedAsNew => RunStatus::ContinuedAsNew,
            _ => RunStatus::Running,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Steadfast workflow on the cluster: its newest run, as Temporal's visibility knows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowSummary {
    /// The workflow id.
    pub id: String,
    /// The run id of this run.
    pub run_id: String,
    /// The Steadfast workflow's name (from the memo, or else the run's input).
    pub workflow: Option<String>,
    /// The run's status.
    pub status: RunStatus,
    /// Events in the run's history.
    pub history_events: u64,
    /// When the run started, in milliseconds since the epoch.
    pub started_at_ms: Option<i64>,
    /// When the run ended, if it has.
    pub closed_at_ms: Option<i64>,
    /// The task queue of its workflow tasks.
    pub task_queue: String,
    /// The parent workflow id of a child workflow.
    pub parent_id: Option<String>,
}

/// What a history row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// An agent's model request (`agent__{agent}__model_request`).
    ModelRequest,
    /// An agent's tool call (`agent__{agent}__tool__{tool}`).
    Tool,
    /// A user step (`ctx.step(name, ..)`).
    Step,
    /// A timer: `sleep`, or the timeout of a `recv`.
    Timer,
    /// A message received by signal (`steadfast.send`).
    Signal,
    /// A message delivered by update (`steadfast.deliver`).
    Update,
    /// A child workflow.
    Child,
    /// A cancellation request.
    CancelRequest,
    /// The run continued as new; the rows after it are the next run's.
    ContinueAsNew,
}

impl RowKind {
    /// The kind as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::ModelRequest => "model_request",
            RowKind::Tool => "tool",
            RowKind::Step => "step",
            RowKind::Timer => "timer",
            RowKind::Signal => "signal",
            RowKind::Update => "update",
            RowKind::Child => "child",
            RowKind::CancelRequest => "cancel_request",
            RowKind::ContinueAsNew => "continue_as_new",
        }
    }

    /// The kind of an activity, from its type (the step name).
    pub fn of_activity(name: &str) -> Self {
        match name.strip_prefix("agent__") {
            Some(rest) if rest.ends_with("__model_request") => RowKind::ModelRequest,
            Some(rest) if rest.contains("__tool__") => RowKind::Tool,
            _ => RowKind::Step,
        }
    }
}

impl std::fmt::Display for RowKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a history row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    /// Scheduled or running (a step, a timer, a child workflow).
    Running,
    /// Finished (a step with its output, a timer that fired, a continue-as-new).
    Completed,
    /// Failed: [`StepRow::error`] says why.
    Failed,
    /// Timed out.
    TimedOut,
    /// Cancelled.
    Cancelled,
    /// Received (a message, a cancellation request).
    Received,
}

impl RowStatus {
    /// The status as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Running => "running",
            RowStatus::Completed => "completed",
            RowStatus::Failed => "failed",
            RowStatus::TimedOut => "timed_out",
            RowStatus::Cancelled => "cancelled",
            RowStatus::Received => "received",
        }
    }
}

impl std::fmt::Display for RowStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of a workflow's history: a step (an activity), a timer, a message, a child
/// workflow, a cancellation request or a continue-as-new.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    /// The Steadfast step id (the activity id) of a step; the timer id of a timer; the child's
    /// workflow id; the signal or update name of a message; the new run id of a continue-as-new.
    pub step_id: String,
    /// What the row is.
    pub kind: RowKind,
    /// The step name (the activity type); the topic of a message; the Steadfast workflow of a
    /// child.
    pub name: String,
    /// The run the row belongs to.
    pub run_id: String,
    /// Attempts of a step (the newest attempt's number); 0 for a step not yet started and for
    /// other rows.
    pub attempts: u32,
    /// When it was scheduled (or received), in milliseconds since the epoch.
    pub at_ms: Option<i64>,
    /// From scheduled to finished, in microseconds, once finished.
    pub duration_us: Option<i64>,
    /// Where it is.
    pub status: RowStatus,
    /// The input: tool arguments and user step inputs, a message's payload, a timer's
    /// `{"seconds": ..}`, a child's input, the answers a continue-as-new carried.
    pub input: Option<Value>,
    /// The output of a finished step or child workflow.
    pub output: Option<Value>,
    /// The failure of a failed row, or the newest failed attempt of a step being retried.
    pub error: Option<String>,
    /// Times the step was scheduled again because the worker holding it went away.
    pub reissued: u32,
}

/// A workflow's history across its runs: the newest run's status and the rows of every run.
#[derive(Debug, Clone, Serialize)]
pub struct TemporalHistory {
    /// The newest run.
    pub workflow: WorkflowSummary,
    /// The Steadfast workflow's input.
    pub input: Option<Value>,
    /// The output, once completed.
    pub output: Option<Value>,
    /// Why the workflow failed, was terminated or timed out.
    pub error: Option<String>,
    /// While running: the error of the newest workflow task when it failed (a
    /// non-determinism error, a workflow or step no worker registers). The workflow waits for a
    /// worker with the right code.
    pub task_failure: Option<String>,
    /// Whether cancellation was requested.
    pub cancel_requested: bool,
    /// The run ids, oldest first (more than one after a continue-as-new).
    pub runs: Vec<String>,
    /// The rows, in history order, oldest run first.
    pub steps: Vec<StepRow>,
}

impl TemporalClient {
    /// The Steadfast workflows on the cluster (runs of the `steadfast` dispatcher type), newest
    /// first: those with `status`, or all of them but the runs that continued as new; at most
    /// `limit`.
    pub async fn list(
        &self,
        status: Option<RunStatus>,
        limit: Option<usize>,
    ) -> Result<Vec<WorkflowSummary>, TemporalError> {
        let mut query = format!("WorkflowType = '{WORKFLOW_TYPE}'");
        match status {
            Some(s) => query.push_str(&format!(" AND ExecutionStatus = '{}'", s.query_value())),
            None => query.push_str(" AND ExecutionStatus != 'ContinuedAsNew'"),
        }
        let opts = WorkflowListOptions::builder().maybe_limit(limit).build();
        let mut stream = self.client.list_workflows(query, opts);
        let mut out = Vec::new();
        while let Some(e) = stream.next().await {
            let e = e.map_err(|e| TemporalError::Rpc(format!("listing workflows: {e}")))?;
            let name = e.memo().get::<String>(MEMO_WORKFLOW).ok().flatten();
            out.push(summary(e.raw(), RunStatus::of(e.status()), name));
        }
        // Runs not started by `TemporalClient::start` (child workflows, continued runs) have
        // no memo: their input names the workflow.
        for s in out.iter_mut().filter(|s| s.workflow.is_none()) {
            s.workflow = self
                .first_input(&s.id, &s.run_id)
                .await?
                .map(|d| d.workflow);
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.started_at_ms));
        Ok(out)
    }

    /// The newest run of workflow `id`.
    pub async fn describe(&self, id: &str) -> Result<WorkflowSummary, TemporalError> {
        let d = self
            .raw(id)
            .describe(WorkflowDescribeOptions::default())
            .await
            .map_err(|e| interaction(id, e))?;
        let name = d.memo().get::<String>(MEMO_WORKFLOW).ok().flatten();
        let info = d.raw().workflow_execution_info.clone().unwrap_or_default();
        let mut s = summary(&info, RunStatus::of(d.status()), name);
        if s.workflow.is_none() {
            s.workflow = self.first_input(id, &s.run_id).await?.map(|d| d.workflow);
        }
        Ok(s)
    }

    /// The history of workflow `id`, across the runs of its continue-as-new chain, as rows.
    pub async fn history(&self, id: &str) -> Result<TemporalHistory, TemporalError> {
        let d = self
            .raw(id)
            .describe(WorkflowDescribeOptions::default())
            .await
            .map_err(|e| interaction(id, e))?;
        let name = d.memo().get::<String>(MEMO_WORKFLOW).ok().flatten();
        let info = d.raw().workflow_execution_info.clone().unwrap_or_default();
        let summary = summary(&info, RunStatus::of(d.status()), name);
        let mut runs = Vec::new();
        let mut run_id = summary.run_id.clone();
        loop {
            let events = self
                .run(id, &run_id)
                .fetch_history(WorkflowFetchHistoryOptions::default())
                .into_events()
                .await
                .map_err(|e| interaction(id, e))?;
            let previous = match events.first().and_then(|e| e.attributes.as_ref()) {
                Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                    Some(a.continued_execution_run_id.clone()).filter(|r| !r.is_empty())
                }
                _ => None,
            };
            runs.push((run_id, events));
            match previous {
                Some(p) if runs.len() < MAX_RUNS => run_id = p,
                _ => break,
            }
        }
        runs.reverse();
        let mut reader = Reader::default();
        for (run_id, events) in &runs {
            reader.run(run_id, events);
        }
        if summary.status.is_terminal() {
            reader.close();
        } else {
            reader.pending(&d.raw().pending_activities);
        }
        let mut summary = summary;
        if summary.workflow.is_none() {
            summary.workflow = reader.workflow.take();
        }
        let running = !summary.status.is_terminal();
        Ok(TemporalHistory {
            workflow: summary,
            input: reader.input,
            output: reader.output,
            error: reader.error,
            task_failure: reader.task_failure.filter(|_| running),
            cancel_requested: reader.cancel_requested,
            runs: runs.into_iter().map(|(r, _)| r).collect(),
            steps: reader.rows,
        })
    }

    /// Request the cancellation of workflow `id`, with a reason for its history.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<(), TemporalError> {
        self.raw(id)
            .cancel(WorkflowCancelOptions::builder().reason(reason).build())
            .await
            .map_err(|e| interaction(id, e))
    }

    /// A handle on one run of workflow `id`.
    fn run(&self, id: &str, run_id: &str) -> WorkflowHandle<Client, Dispatcher> {
        let info = temporalio_client::WorkflowExecutionInfo::builder()
            .namespace(self.config().namespace.clone())
            .workflow_id(id)
            .run_id(run_id)
            .build();
        WorkflowHandle::new(self.client.clone(), info)
    }

    /// The dispatcher input of one run, from its first event.
    async fn first_input(
        &self,
        id: &str,
        run_id: &str,
    ) -> Result<Option<DispatchInput>, TemporalError> {
        let mut events = self
            .run(id, run_id)
            .fetch_history(WorkflowFetchHistoryOptions::default());
        let first = match events.next().await {
            Some(e) => e.map_err(|e| interaction(id, e))?,
            None => return Ok(None),
        };
        Ok(match first.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                decode(&a.input).and_then(|v| serde_json::from_value(v).ok())
            }
            _ => None,
        })
    }
}

fn summary(info: &ProtoExecutionInfo, status: RunStatus, name: Option<String>) -> WorkflowSummary {
    let execution = info.execution.clone().unwrap_or_default();
    WorkflowSummary {
        id: execution.workflow_id,
        run_id: execution.run_id,
        workflow: name,
        status,
        history_events: u64::try_from(info.history_length).unwrap_or(0),
        started_at_ms: millis!(info.start_time),
        closed_at_ms: millis!(info.close_time),
        task_queue: info.task_queue.clone(),
        parent_id: info
            .parent_execution
            .as_ref()
            .map(|p| p.workflow_id.clone()),
    }
}

fn interaction(id: &str, e: WorkflowInteractionError) -> TemporalError {
    match e {
        WorkflowInteractionError::NotFound(_) => {
            TemporalError::Rpc(format!("no workflow `{id}` on the server"))
        }
        other => TemporalError::Rpc(format!("workflow `{id}`: {other}")),
    }
}
