//! Errors of agent runs and tools.

use std::sync::Arc;

use crate::model::ModelError;

/// Why an agent run failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    /// The model failed, and retries (if any) did not help.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A usage limit would be exceeded.
    #[error("usage limit exceeded: {0}")]
    UsageLimitExceeded(String),
    /// A tool asked for more retries than its budget allows.
    #[error("tool `{tool}` exceeded its retry budget of {max_retries}: {last_error}")]
    ToolRetriesExceeded {
        /// The tool.
        tool: String,
        /// Its budget.
        max_retries: u32,
        /// The last retry message.
        last_error: String,
    },
    /// The model kept producing output that failed validation.
    #[error("output validation failed after {max_retries} retries: {last_error}")]
    OutputRetriesExceeded {
        /// The budget.
        max_retries: u32,
        /// The last validation error.
        last_error: String,
    },
    /// A tool failed, and retries (if any) did not help.
    #[error("tool `{tool}` failed: {message}")]
    Tool {
        /// The tool.
        tool: String,
        /// What went wrong.
        message: String,
        /// Whether trying the call again may help.
        retryable: bool,
    },
    /// The agent is misconfigured.
    #[error("agent configuration: {0}")]
    Config(String),
    /// A step exceeded its start-to-close timeout on every attempt.
    #[error("step `{step}` timed out after {timeout:?}")]
    Timeout {
        /// The step.
        step: String,
        /// The timeout.
        timeout: std::time::Duration,
    },
    /// An error raised by the engine driving the run (durable store, non-determinism,
    /// cancellation, suspension). Engines downcast it back to their own type.
    #[error(transparent)]
    Engine(Arc<dyn std::error::Error + Send + Sync>),
}

impl AgentError {
    /// Wrap an engine error.
    pub fn engine(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        AgentError::Engine(Arc::new(e))
    }

    /// Whether running the same thing again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Model(e) => e.is_retryable(),
            AgentError::Timeout { .. } => true,
            AgentError::Tool { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

/// What a tool returns when it does not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolError {
    /// Ask the model to call again with better arguments; the message goes back to the model.
    /// Counts against the tool's retry budget.
    #[error("retry: {0}")]
    Retry(String),
    /// The tool failed. A retryable failure is retried under the tool's step policy, and the
    /// model never sees it; a non-retryable one fails the run.
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
        /// Whether trying again may help.
        retryable: bool,
    },
    /// An engine error from a nested agent run; it passes through untouched.
    #[error(transparent)]
    Engine(Arc<dyn std::error::Error + Send + Sync>),
}

impl ToolError {
    /// Ask the model to try again (the `ModelRetry` idea).
    pub fn retry(message: impl Into<String>) -> Self {
        ToolError::Retry(message.into())
    }

    /// A failure that the step policy retries.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        ToolError::Failed {
            message: message.to_string(),
            retryable: true,
        }
    }

    /// A failure that ends the run at once.
    pub fn fatal(message: impl std::fmt::Display) -> Self {
        ToolError::Failed {
            message: message.to_string(),
            retryable: false,
        }
    }
}

impl From<AgentError> for ToolError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Engine(inner) => ToolError::Engine(inner),
            other => ToolError::Failed {
                retryable: other.is_retryable(),
                message: other.to_string(),
            },
        }
    }
}
