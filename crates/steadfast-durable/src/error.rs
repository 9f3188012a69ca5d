//! Errors of durable workflows and their steps.

use serde::{Deserialize, Serialize};
use steadfast_core::{AgentError, ToolError};

use crate::store::StoreError;

/// Why a workflow (or one of its operations) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkflowError {
    /// An agent run failed.
    #[error("agent: {0}")]
    Agent(AgentError),
    /// A step failed for good (non-retryable, or out of attempts).
    #[error("step `{step}` failed after {attempts} attempt(s): {message}")]
    StepFailed {
        /// The step id.
        step: String,
        /// The error.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Replay met a different step than the journal holds at the same position: the workflow's
    /// code changed while it was running. The history is left intact.
    #[error(
        "non-determinism in workflow `{workflow_id}` at position {position}: the journal holds \
         {expected}, but the code now asks for {actual}. The workflow's code changed while it was \
         running; restore the old code to finish it, or start a new workflow id"
    )]
    NonDeterminism {
        /// The workflow.
        workflow_id: String,
        /// The position in program order.
        position: String,
        /// What the journal holds (kind, name, id, input hash).
        expected: String,
        /// What the code asked for.
        actual: String,
    },
    /// The workflow was cancelled.
    #[error("workflow `{0}` was cancelled")]
    Cancelled(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Worker-local dependencies of this type were not given to the worker.
    #[error("no deps of type `{0}` were given to the worker (use WorkerBuilder::deps)")]
    MissingDeps(&'static str),
    /// A value could not be serialized or deserialized.
    #[error("serialization: {0}")]
    Serde(String),
    /// No workflow is registered under this name (on this worker), or ids clash.
    #[error("{0}")]
    Config(String),
    /// The workflow's own error.
    #[error("{0}")]
    Failed(String),
    /// The workflow failed; this is its recorded error, read back from the store.
    #[error("workflow `{id}` failed: {message}")]
    Remote {
        /// The workflow.
        id: String,
        /// Its error message.
        message: String,
    },
    /// This run lost its lease to another worker and stopped.
    #[error("workflow `{0}` lost its lease to another worker")]
    LeaseLost(String),
}

impl WorkflowError {
    /// A workflow's own failure, with a message.
    pub fn msg(m: impl std::fmt::Display) -> Self {
        WorkflowError::Failed(m.to_string())
    }
}

impl From<AgentError> for WorkflowError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Engine(inner) => match inner.downcast_ref::<WorkflowError>() {
                Some(w) => w.clone(),
                None => WorkflowError::Failed(inner.to_string()),
            },
            other => WorkflowError::Agent(other),
        }
    }
}

impl From<serde_json::Error> for WorkflowError {
    fn from(e: serde_json::Error) -> Self {
        WorkflowError::Serde(e.to_string())
    }
}

/// The error of one attempt of a user step.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize, PartialEq)]
#[error("{message}")]
pub struct StepError {
    /// What went wrong.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// The delay the failing service asked for before a retry (`Retry-After`).
    #[serde(skip)]
    pub retry_after: Option<std::time::Duration>,
}

impl StepError {
    /// A failure that the retry policy retries.
    pub fn retryable(m: impl std::fmt::Display) -> Self {
        StepError {
            message: m.to_string(),
            retryable: true,
            retry_after: None,
        }
    }

    /// A failure that ends the step at once.
    pub fn fatal(m: impl std::fmt::Display) -> Self {
        StepError {
            message: m.to_string(),
            retryable: false,
            retry_after: None,
        }
    }
}

impl From<AgentError> for StepError {
    fn from(e: AgentError) -> Self {
        StepError {
            retryable: e.is_retryable(),
            retry_after: match &e {
                AgentError::Model(m) => m.retry_after(),
                _ => None,
            },
            message: e.to_string(),
        }
    }
}

/// What a step body returned: its value, a step failure (journaled), or an engine error that
/// must pass through untouched (non-determinism inside a nested run, cancellation).
pub(crate) enum Attempt<T> {
    Ok(T),
    Failed(StepError),
    Engine(WorkflowError),
}

impl<T> From<Result<T, ToolError>> for Attempt<T> {
    fn from(r: Result<T, ToolError>) -> Self {
        match r {
            Ok(v) => Attempt::Ok(v),
            Err(ToolError::Engine(inner)) => Attempt::Engine(
                inner
                    .downcast_ref::<WorkflowError>()
                    .cloned()
                    .unwrap_or_else(|| WorkflowError::Failed(inner.to_string())),
            ),
            Err(ToolError::Failed { message, retryable }) => Attempt::Failed(StepError {
                message,
                retryable,
                retry_after: None,
            }),
            Err(ToolError::Retry(m)) => Attempt::Failed(StepError::fatal(m)),
        }
    }
}
