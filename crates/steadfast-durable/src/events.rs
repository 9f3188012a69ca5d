//! Step events: what a worker reports as steps run, retry and replay.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::store::StepKind;

/// What happened to a step.
#[derive(Debug, Clone, PartialEq)]
pub enum StepEventKind {
    /// Answered from the journal without running.
    Replayed,
    /// Ran and its result was committed.
    Completed,
    /// An attempt failed and will be retried after `delay`.
    Retrying {
        /// The failed attempt (1-based).
        attempt: u32,
        /// The error.
        error: String,
        /// The backoff before the next attempt.
        delay: Duration,
    },
    /// Failed for good (the failure is committed).
    Failed {
        /// The error.
        error: String,
    },
}

/// A step event.
#[derive(Debug, Clone)]
pub struct StepEvent {
    /// The workflow.
    pub workflow_id: String,
    /// The readable step id.
    pub step_id: String,
    /// The kind.
    pub kind: StepKind,
    /// The stable name.
    pub name: String,
    /// What happened.
    pub event: StepEventKind,
    /// Attempts made so far.
    pub attempts: u32,
    /// Time spent: for a replay, the time to answer from the journal; otherwise over all
    /// attempts.
    pub duration: Duration,
    /// The step's input, when journaled. (Built from the journal's JSON text for the event:
    /// only runs with an observer pay for it.)
    pub input: Option<Value>,
    /// The step's output, when it has one (built the same way).
    pub output: Option<Value>,
}

/// Receives step events. It is called inline, so keep it quick.
pub type Observer = Arc<dyn Fn(&StepEvent) + Send + Sync>;
