//! The seam for engines that keep the history elsewhere, such as Temporal.
//!
//! On the embedded engine, a [`WorkflowCtx`] journals every effect in a [`Store`]. A *remote*
//! engine instead receives each effect as a [`RemoteCall`] and answers it from its own history:
//! a step becomes an activity, a sleep a timer, `recv` a signal, a child workflow a child workflow.
//! The workflow code is the same; only the context it is given differs
//! ([`WorkflowCtx::remote`]).
//!
//! Step ids still follow program order with a namespace per agent run and branch, so a remote
//! engine can name its activities after them and check them on replay.
//!
//! [`Store`]: crate::Store

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use steadfast_core::StepPolicy;

use crate::ctx::{StepCtx, WorkflowCtx};
use crate::error::{StepError, WorkflowError};
use crate::store::StepKind;
use crate::workflow::{Erased, ErasedWorkflow, Workflow};

/// One attempt of a step's body, with its result as JSON.
pub type StepBody = Box<dyn FnMut(StepCtx) -> BoxFuture<'static, Result<Value, StepError>> + Send>;

/// A step for a remote engine to run (as an activity), under its policy.
pub struct RemoteStep {
    /// What kind of step (a user step, a model request, a tool call).
    pub kind: StepKind,
    /// The pinned step name: `agent__{agent}__model_request`, `agent__{agent}__tool__{tool}`,
    /// or the user step's name.
    pub name: String,
    /// The step's input, when it is worth showing (tool arguments, user step inputs).
    pub input: Option<Value>,
    /// The stable hash that identifies the step's input on replay.
    pub input_hash: String,
    /// Retries and timeout.
    pub policy: StepPolicy,
    /// The body. It owns everything it needs, so it can run on any task of the worker.
    pub body: StepBody,
}

impl std::fmt::Debug for RemoteStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStep")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("input_hash", &self.input_hash)
            .finish_non_exhaustive()
    }
}

/// An effect a workflow asks a remote engine for.
#[derive(Debug)]
pub enum RemoteOp {
    /// Run a step. Answers its output.
    Step(RemoteStep),
    /// A durable timer. Answers `null`.
    Sleep(Duration),
    /// The workflow's clock, in milliseconds since the Unix epoch. Answers a number.
    Now,
    /// A random 64-bit number. Answers a number.
    Random,
    /// Receive the next message on `topic`, waiting at most `timeout`. Answers `[message]`, or
    /// `null` when the timeout passed.
    Recv {
        /// The mailbox topic.
        topic: String,
        /// How long to wait; `None`: forever.
        timeout: Option<Duration>,
    },
    /// Run child workflow `workflow` with id `id`. Answers its output.
    Child {
        /// The registered name of the child's workflow.
        workflow: String,
        /// The child's workflow id.
        id: String,
        /// Its input.
        input: Value,
    },
}

/// An effect with its place in the workflow: the step id follows program order.
#[derive(Debug)]
pub struct RemoteCall {
    /// The readable step id (`agent__q#1/model_request#3`), deterministic in program order.
    pub step_id: String,
    /// What is asked for.
    pub op: RemoteOp,
}

/// An engine that answers a workflow's effects from its own history.
pub trait RemoteEngine: Send + Sync {
    /// Perform `call` (or answer it from history) and resolve with its JSON result.
    fn call(&self, call: RemoteCall) -> BoxFuture<'static, Result<Value, WorkflowError>>;
}

/// Registered workflows by name, for engines that run them from their own workers.
#[derive(Clone, Default)]
pub struct WorkflowSet {
    map: HashMap<String, Arc<dyn ErasedWorkflow>>,
}

impl std::fmt::Debug for WorkflowSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl WorkflowSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add workflow `W` under its name.
    pub fn add<W: Workflow>(&mut self, workflow: W) -> &mut Self {
        self.map
            .insert(W::NAME.to_string(), Arc::new(Erased(workflow)));
        self
    }

    /// Whether a workflow named `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.map.keys().cloned().collect();
        names.sort();
        names
    }

    /// Run workflow `name` with `ctx` on `input`; `None` if no such workflow is registered.
    pub fn run(
        &self,
        name: &str,
        ctx: WorkflowCtx,
        input: Value,
    ) -> Option<BoxFuture<'static, Result<Value, WorkflowError>>> {
        let wf = self.map.get(name)?.clone();
        Some(wf.run(ctx, input))
    }
}

/// The answer to a `Recv` call as [`RemoteOp::Recv`] describes it.
pub(crate) fn decode_recv(v: Value) -> Option<Value> {
    match v {
        Value::Array(mut a) if a.len() == 1 => a.pop(),
        _ => None,
    }
}
