//! The `Store` contract: what a durable engine needs from its database.
//!
//! A store keeps workflows (with their lease, status and wake-up time), the step journal, failed
//! attempts, and mailboxes. Every implementation passes the conformance kit in the `testkit`
//! module (feature `test-kit`): claims and leases, expired-lease recovery, timers, mailboxes,
//! concurrent writers, and crashes between any two writes.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json::Json;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The current wall-clock time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Where a workflow is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    /// Created or woken, waiting for a worker.
    Pending,
    /// A worker holds its lease and runs it.
    Running,
    /// Asleep until its wake-up time, a message, or a child's completion. Holds no memory.
    Suspended,
    /// Finished with a result.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl WorkflowStatus {
    /// The status as stored (`pending`, `running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Pending => "pending",
            WorkflowStatus::Running => "running",
            WorkflowStatus::Suspended => "suspended",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Cancelled => "cancelled",
        }
    }

    /// Parse a stored status.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => WorkflowStatus::Pending,
            "running" => WorkflowStatus::Running,
            "suspended" => WorkflowStatus::Suspended,
            "completed" => WorkflowStatus::Completed,
            "failed" => WorkflowStatus::Failed,
            "cancelled" => WorkflowStatus::Cancelled,
            _ => return None,
        })
    }

    /// Whether the workflow has finished for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            WorkflowStatus::Completed | WorkflowStatus::Failed | WorkflowStatus::Cancelled
        )
    }
}

impl fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workflow as the store knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    /// The workflow id, chosen by whoever started it.
    pub id: String,
    /// The registered workflow name.
    pub name: String,
    /// The input, as JSON.
    pub input: Value,
    /// The status.
    pub status: WorkflowStatus,
    /// The output (completed) or the error (failed, cancelled), as JSON.
    pub output: Option<Value>,
    /// The worker holding the lease, if any.
    pub owner: Option<String>,
    /// When the lease expires.
    pub lease_expires_at: Option<Millis>,
    /// When a suspended workflow wakes up, if it has a timer.
    pub wake_at: Option<Millis>,
    /// Cancellation was asked for.
    pub cancel_requested: bool,
    /// The parent workflow, for a child.
    pub parent_id: Option<String>,
    /// When it was created.
    pub created_at: Millis,
    /// When the record last changed: created, claimed, suspended, woken, finished, or asked to
    /// cancel. Committing a step does not change it (the journal has each step's time).
    pub updated_at: Millis,
}

/// A workflow to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkflow {
    /// Its id.
    pub id: String,
    /// The registered workflow name.
    pub name: String,
    /// The input, as JSON.
    pub input: Value,
    /// The parent, for a child workflow.
    pub parent_id: Option<String>,
}

/// What `create_workflow` did.
#[derive(Debug, Clone, PartialEq)]
// Returned once per start, never stored: boxing the record would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Created {
    /// A new workflow was created.
    New,
    /// A workflow with that id existed already; nothing changed.
    Existing(WorkflowRecord),
}

/// The kind of a journaled step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A model request of an agent.
    ModelRequest,
    /// A tool call of an agent.
    Tool,
    /// A user step (`ctx.step`).
    Step,
    /// A durable timer.
    Sleep,
    /// A journaled clock reading, random number or uuid.
    Value,
    /// A mailbox receive.
    Recv,
    /// A child workflow.
    Child,
}

impl StepKind {
    /// The kind as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::ModelRequest => "model_request",
            StepKind::Tool => "tool",
            StepKind::Step => "step",
            StepKind::Sleep => "sleep",
            StepKind::Value => "value",
            StepKind::Recv => "recv",
            StepKind::Child => "child",
        }
    }

    /// Parse a stored kind.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "model_request" => StepKind::ModelRequest,
            "tool" => StepKind::Tool,
            "step" => StepKind::Step,
            "sleep" => StepKind::Sleep,
            "value" => StepKind::Value,
            "recv" => StepKind::Recv,
            "child" => StepKind::Child,
            _ => return None,
        })
    }
}

/// A finished step in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Position in program order: `{namespace}{n}`, unique in the workflow. Replay looks steps
    /// up by position.
    pub position: String,
    /// The readable id: `{namespace}{short name}#{k}`, e.g. `questioner#1/tool__ask_question#3`.
    pub step_id: String,
    /// The kind.
    pub kind: StepKind,
    /// The stable name (`agent__questioner__model_request`, or the user step's name).
    pub name: String,
    /// A hash of the step's input, checked on replay.
    pub input_hash: String,
    /// The input itself, for the history, when it is small and useful (tool arguments, user
    /// step inputs); `None` for model requests, whose input is the whole conversation.
    #[serde(default)]
    pub input: Option<Json>,
    /// The result: `Ok` with the step's value as JSON text, or the error of a step that failed
    /// for good. The engine encodes the value once; stores keep the text as it is.
    pub output: Result<Json, StepFailure>,
    /// Attempts made (1 when the first one succeeded).
    pub attempts: u32,
    /// When the first attempt started.
    pub started_at: Millis,
    /// How long it took, in microseconds, over all attempts.
    pub duration_us: i64,
    /// The commit order in the journal (assigned by the store; ignored on write).
    #[serde(default)]
    pub seq: i64,
}

/// Why a step failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFailure {
    /// What went wrong.
    pub message: String,
    /// Whether the error was of a retryable kind (it failed because attempts ran out).
    pub retryable: bool,
}

/// A failed attempt of a step, kept for the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The step's position.
    pub position: String,
    /// The step's readable id.
    pub step_id: String,
    /// The attempt number (1-based).
    pub attempt: u32,
    /// The error.
    pub error: String,
    /// When it failed.
    pub at: Millis,
}

/// A message in a workflow's mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailMessage {
    /// Its sequence number (store-assigned, increasing).
    pub seq: i64,
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Value,
}

/// A claimed workflow, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The workflow.
    pub record: WorkflowRecord,
}

/// How a run of a workflow ended for now.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Finished for good.
    Finished {
        /// `Completed`, `Failed` or `Cancelled`.
        status: WorkflowStatus,
        /// The output or the error.
        output: Value,
    },
    /// Suspended until `wake_at` (or a message or a child's completion, whichever first).
    Suspended {
        /// The timer, if any.
        wake_at: Option<Millis>,
        /// The mailbox topics the workflow waits on. An unconsumed message on one of them (sent
        /// while the run was going on) makes the workflow pending at once instead; messages on
        /// other topics wait for their `recv` and do not wake it again and again.
        waiting_on: Vec<String>,
    },
}

/// Filter for listing workflows.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this status.
    pub status: Option<WorkflowStatus>,
    /// At most this many (newest first). `None`: all.
    pub limit: Option<usize>,
}

/// A row of a workflow listing: the record plus journal figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSummary {
    /// The workflow.
    pub record: WorkflowRecord,
    /// Steps in its journal.
    pub steps: u64,
}

/// Store errors.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum StoreError {
    /// The lease of this workflow is held by another worker (or was lost).
    #[error("workflow `{0}` is leased by another worker")]
    LeaseLost(String),
    /// No such workflow.
    #[error("no workflow `{0}`")]
    NotFound(String),
    /// A position was committed twice.
    #[error("step `{position}` of workflow `{workflow_id}` is already in the journal")]
    DuplicateStep {
        /// The workflow.
        workflow_id: String,
        /// The position.
        position: String,
    },
    /// The database is locked by another process for longer than the busy timeout.
    #[error("the database is locked: {0}")]
    Locked(String),
    /// The database file is not a valid store (corrupt, or not a database).
    #[error("the database is corrupt or not a Steadfast store: {0}")]
    Corrupt(String),
    /// The database was written by a newer version of Steadfast.
    #[error(
        "the database schema version {found} is newer than this build supports ({supported}); upgrade Steadfast"
    )]
    NewerSchema {
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// Any other database error.
    #[error("store error: {0}")]
    Backend(String),
}

/// A lease held on a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseState {
    /// The workflow.
    pub id: String,
    /// Whether we still hold it.
    pub held: bool,
    /// Whether cancellation was asked for.
    pub cancel_requested: bool,
}

/// Shorthand for the futures the trait returns.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// What a durable engine needs from its database.
///
/// Methods that change a workflow the caller runs take the caller's `owner` id and fail with
/// [`StoreError::LeaseLost`] when another worker holds the lease: that fencing is what keeps two
/// workers from both running a workflow.
pub trait Store: Send + Sync + 'static {
    /// Create a workflow, or report the existing one with that id (idempotent start).
    fn create_workflow(&self, new: NewWorkflow) -> StoreFuture<'_, Created>;

    /// Create a workflow already claimed by `owner` with a lease of `lease`: what
    /// [`Store::create_workflow`] and then a [`Store::claim`] of that one workflow do, in one
    /// step. A process that starts a workflow its own worker runs uses it, so the workflow
    /// neither waits for the worker's next claim nor costs a second write. An existing workflow
    /// is reported as `create_workflow` reports it, and not claimed.
    ///
    /// The default creates the workflow pending and claims nothing: a worker's next claim picks
    /// it up.
    fn start_claimed<'a>(
        &'a self,
        new: NewWorkflow,
        owner: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, (Created, Option<Claim>)> {
        let _ = (owner, lease);
        Box::pin(async move { Ok((self.create_workflow(new).await?, None)) })
    }

    /// One workflow.
    fn get_workflow<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<WorkflowRecord>>;

    /// Workflows, newest first.
    fn list_workflows(&self, filter: ListFilter) -> StoreFuture<'_, Vec<WorkflowSummary>>;

    /// Claim up to `limit` runnable workflows whose name is in `names`, for `owner`, with a
    /// lease of `lease`. Runnable: pending; suspended with `wake_at` due; running with an expired
    /// lease, or with an owner in `dead_owners` (workers known to be dead).
    fn claim<'a>(
        &'a self,
        owner: &'a str,
        names: &'a [String],
        limit: usize,
        lease: Duration,
        dead_owners: &'a [String],
    ) -> StoreFuture<'a, Vec<Claim>>;

    /// The owners of running workflows (to check which are dead).
    fn running_owners(&self) -> StoreFuture<'_, Vec<String>>;

    /// Extend the leases of `ids` held by `owner`.
    fn renew<'a>(
        &'a self,
        owner: &'a str,
        ids: &'a [String],
        lease: Duration,
    ) -> StoreFuture<'a, Vec<LeaseState>>;

    /// The workflow's journal, in commit order.
    fn load_journal<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<StepRecord>>;

    /// Append a finished step to the journal, atomically with consuming mailbox message
    /// `consume` if given. Fenced by `owner`. Concurrent calls may be committed together.
    ///
    /// The store takes the record and assigns its `seq` (the `seq` given is ignored). The
    /// step's input and output [`Json`] texts are kept as they are: `load_journal` returns the
    /// same texts (so the records compare equal).
    fn commit_step<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        step: StepRecord,
        consume: Option<i64>,
    ) -> StoreFuture<'a, ()>;

    /// Record a failed attempt (history only; fenced by `owner`).
    fn record_attempt<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        attempt: AttemptRecord,
    ) -> StoreFuture<'a, ()>;

    /// Failed attempts of a workflow's steps.
    fn load_attempts<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<AttemptRecord>>;

    /// End this run of the workflow: finished for good (which wakes a suspended parent), or
    /// suspended. Releases the lease. Fenced by `owner`. A workflow suspended while its mailbox
    /// holds an unconsumed message on a topic it waits on becomes pending instead, so a message
    /// sent during the run is never missed.
    fn finish<'a>(&'a self, id: &'a str, owner: &'a str, outcome: Outcome) -> StoreFuture<'a, ()>;

    /// Put a message in a workflow's mailbox and wake the workflow if it is suspended.
    fn send<'a>(&'a self, id: &'a str, topic: &'a str, payload: Value) -> StoreFuture<'a, i64>;

    /// The oldest unconsumed message on `topic`.
    fn next_message<'a>(
        &'a self,
        id: &'a str,
        topic: &'a str,
    ) -> StoreFuture<'a, Option<MailMessage>>;

    /// Ask for cancellation. A pending or suspended workflow is cancelled at once; a running one
    /// at its next step. Returns the status after the request.
    fn request_cancel<'a>(&'a self, id: &'a str) -> StoreFuture<'a, WorkflowStatus>;

    /// The earliest `wake_at` among suspended workflows named in `names`, to sleep until.
    fn next_wake<'a>(&'a self, names: &'a [String]) -> StoreFuture<'a, Option<Millis>>;

    /// Make everything committed so far visible to other processes sharing the database. A
    /// store may keep commits where only its own process reads them for a moment (the SQLite
    /// store's step log: safe from a crash, read by other processes once flushed); this
    /// flushes them. A worker's `shutdown` calls it. The default does nothing.
    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}
