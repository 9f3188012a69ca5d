//! Agents inside workflows: the durable driver. Each model request and each tool call becomes a
//! journaled step named like a Temporal activity: `agent__{agent}__model_request` and
//! `agent__{agent}__tool__{tool}`.

use std::sync::Arc;

use futures::future::BoxFuture;
use steadfast_core::driver::call_model;
use steadfast_core::{AgentError, Driver, ModelCall, ModelResponse, Scope, ToolCall, ToolOutcome};

use crate::ctx::{StepSpec, WorkflowCtx, hash_of};
use crate::error::{Attempt, StepError};
use crate::store::StepKind;

/// Drives agent runs inside a workflow, journaling every call.
pub(crate) struct DurableDriver {
    ctx: WorkflowCtx,
    /// The input hashes of the run's model requests.
    requests: crate::hashing::RequestHasher,
}

impl Scope for WorkflowCtx {
    fn driver(&self) -> Arc<dyn Driver> {
        Arc::new(DurableDriver::new(self.clone()))
    }
}

impl DurableDriver {
    fn new(ctx: WorkflowCtx) -> Self {
        DurableDriver {
            ctx,
            requests: crate::hashing::RequestHasher::default(),
        }
    }
}

impl Driver for DurableDriver {
    fn child(&self, name: &str) -> Arc<dyn Driver> {
        Arc::new(DurableDriver::new(self.ctx.branch(name)))
    }

    fn model_request<'a>(
        &'a self,
        call: ModelCall<'a>,
    ) -> BoxFuture<'a, Result<ModelResponse, AgentError>> {
        // The input hash covers the tools, the length of the conversation and its newest
        // message (which carries the instructions), not the model: a run resumed with another
        // model continues where it stopped. Earlier messages are the results of earlier steps,
        // each checked when it was replayed, so hashing them again would only cost time: a
        // conversation grows with every turn.
        let spec = StepSpec {
            kind: StepKind::ModelRequest,
            short: "model_request".into(),
            name: format!("agent__{}__model_request", call.agent),
            input_hash: self.requests.hash(call.messages, call.params),
            input: None,
            policy: *call.policy,
        };
        let fut = self.ctx.execute(spec, move |_, _| {
            let events = call.events.clone();
            async move {
                let sink = events.as_ref();
                match call_model(call.model, call.messages, call.params, call.settings, sink).await
                {
                    Ok(r) => Attempt::Ok(r),
                    Err(e) => Attempt::Failed(StepError::from(AgentError::Model(e))),
                }
            }
        });
        Box::pin(async move { fut.await.map_err(AgentError::engine) })
    }

    fn tool_call<'a>(
        &'a self,
        call: ToolCall<'a>,
    ) -> BoxFuture<'a, Result<ToolOutcome, AgentError>> {
        let tool = call.call.tool_name.clone();
        let args: serde_json::Value = serde_json::from_str(&call.call.args)
            .unwrap_or_else(|_| serde_json::Value::String(call.call.args.clone()));
        let spec = StepSpec {
            kind: StepKind::Tool,
            short: format!("tool__{tool}"),
            name: format!("agent__{}__tool__{tool}", call.agent),
            input_hash: hash_of(&call.call.args),
            input: Some(args),
            policy: *call.policy,
        };
        let exec = call.exec.clone();
        let fut = self.ctx.execute(spec, move |sc, nested| {
            let run = exec(nested.driver(), sc.idempotency_key);
            async move { Attempt::from(run.await) }
        });
        Box::pin(async move { fut.await.map_err(AgentError::engine) })
    }
}
