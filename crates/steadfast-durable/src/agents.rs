//! Agents inside workflows: the durable driver. Each model request and each tool call becomes a
//! journaled step named like a Temporal activity: `agent__{agent}__model_request` and
//! `agent__{agent}__tool__{tool}`.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::Value;
use steadfast_core::driver::call_model;
use steadfast_core::{
    AgentError, Driver, ModelCall, ModelResponse, PlainDriver, Scope, ToolCall, ToolExec,
    ToolOutcome,
};

use crate::ctx::{Short, StepCtx, StepInput, StepSpec, WorkflowCtx, hash_of};
use crate::error::{Attempt, StepError, WorkflowError};
use crate::json::Json;
use crate::remote::{RemoteOp, RemoteStep, StepBody};
use crate::store::StepKind;

/// Drives agent runs inside a workflow, journaling every call.
pub(crate) struct DurableDriver {
    ctx: WorkflowCtx,
}

/// The step names of a workflow run's agent calls, built on first use.
#[derive(Default)]
pub(crate) struct StepNames(Mutex<Vec<StepName>>);

/// The step names of an agent's model requests (`tool` = `None`) or of its calls of a tool.
struct StepName {
    agent: String,
    tool: Option<String>,
    /// `agent__{agent}__model_request` or `agent__{agent}__tool__{tool}`.
    name: String,
}

impl Scope for WorkflowCtx {
    fn driver(&self) -> Arc<dyn Driver> {
        Arc::new(DurableDriver::new(self.clone()))
    }
}

impl DurableDriver {
    fn new(ctx: WorkflowCtx) -> Self {
        DurableDriver { ctx }
    }
}

impl StepNames {
    /// The step name of `agent`'s model requests (`tool` = `None`) or of its calls of `tool`:
    /// `agent__{agent}__model_request` or `agent__{agent}__tool__{tool}`.
    fn get(&self, agent: &str, tool: Option<&str>) -> String {
        let mut names = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = names
            .iter()
            .find(|n| n.agent == agent && n.tool.as_deref() == tool)
        {
            return n.name.clone();
        }
        let name = match tool {
            None => format!("agent__{agent}__model_request"),
            Some(t) => format!("agent__{agent}__tool__{t}"),
        };
        names.push(StepName {
            agent: agent.to_string(),
            tool: tool.map(str::to_string),
            name: name.clone(),
        });
        name
    }
}

impl DurableDriver {
    /// On a remote engine, the step as a [`RemoteStep`] with an owned body; `None` on the
    /// embedded engine.
    fn remote_step(
        &self,
        short: Short<'_>,
        spec: &StepSpec,
        body: impl FnOnce() -> StepBody,
    ) -> Option<BoxFuture<'static, Result<Value, WorkflowError>>> {
        self.ctx.run.remote.as_ref()?;
        self.ctx.remote_call(short, || {
            RemoteOp::Step(RemoteStep {
                kind: spec.kind,
                name: spec.name.clone(),
                input: spec.input.to_value(),
                input_hash: spec.input_hash.clone(),
                policy: spec.policy,
                body: body(),
            })
        })
    }
}

/// A model request that owns its conversation: a remote engine runs it on another task. Live
/// events stay with the caller's process, so they are not streamed from there.
fn model_request_body(call: &ModelCall<'_>) -> StepBody {
    let model = call.model.clone();
    let messages = Arc::new(call.messages.to_vec());
    let params = Arc::new(call.params.clone());
    let settings = Arc::new(call.settings.clone());
    Box::new(move |_| {
        let (model, messages, params, settings) = (
            model.clone(),
            messages.clone(),
            params.clone(),
            settings.clone(),
        );
        Box::pin(async move {
            match call_model(&*model, &messages, &params, &settings, None).await {
                Ok(r) => serde_json::to_value(r).map_err(StepError::fatal),
                Err(e) => Err(StepError::from(AgentError::Model(e))),
            }
        })
    })
}

/// A tool call on a remote engine. Whatever the tool runs inside (a nested agent, say) runs
/// plainly within the one step: the step is the unit the remote history records.
fn tool_body(exec: ToolExec) -> StepBody {
    Box::new(move |sc: StepCtx| {
        let run = exec(Arc::new(PlainDriver), sc.idempotency_key);
        Box::pin(async move {
            match Attempt::from(run.await) {
                Attempt::Ok(v) => serde_json::to_value(v).map_err(StepError::fatal),
                Attempt::Failed(e) => Err(e),
                Attempt::Engine(e) => Err(StepError::fatal(e)),
            }
        })
    })
}

/// A remote step's JSON answer as the driver's result.
fn decode<T: serde::de::DeserializeOwned>(
    r: Result<Value, WorkflowError>,
) -> Result<T, AgentError> {
    let v = r.map_err(AgentError::engine)?;
    serde_json::from_value(v).map_err(|e| AgentError::engine(WorkflowError::from(e)))
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
        //
        // A remote engine's histories keep the hash of earlier builds (FNV-1a); the embedded
        // engine writes `xxh3:` hashes and, in a run resumed from a journal, accepts the
        // earlier ones too.
        let short = Short("", "model_request");
        let requests = &self.ctx.run.requests;
        let (input_hash, legacy_hash) = if self.ctx.run.remote.is_some() {
            (requests.legacy_hash(call.messages, call.params), None)
        } else {
            let legacy = self
                .ctx
                .resumed()
                .then(|| requests.legacy_hash(call.messages, call.params));
            (requests.hash(call.messages, call.params), legacy)
        };
        let spec = StepSpec {
            kind: StepKind::ModelRequest,
            name: self.ctx.run.step_names.get(call.agent, None),
            input_hash,
            legacy_hash,
            input: StepInput::None,
            policy: *call.policy,
        };
        if let Some(remote) = self.remote_step(short, &spec, || model_request_body(&call)) {
            return Box::pin(async move { decode(remote.await) });
        }
        let fut = self.ctx.execute(short, spec, move |_| {
            let events = call.events.clone();
            async move {
                let sink = events.as_ref();
                match call_model(
                    &**call.model,
                    call.messages,
                    call.params,
                    call.settings,
                    sink,
                )
                .await
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
        // The arguments as the model wrote them, checked to be JSON (else kept as a string).
        // The hash is of the JSON of the arguments' text, as it has always been.
        let args = &call.call.args;
        let input = Json::from_string(args.clone()).or_else(|_| Json::encode(args));
        let short = Short("tool__", &call.call.tool_name);
        let spec = StepSpec {
            kind: StepKind::Tool,
            name: self
                .ctx
                .run
                .step_names
                .get(call.agent, Some(&call.call.tool_name)),
            input_hash: hash_of(args),
            legacy_hash: None,
            input: input.map_or(StepInput::None, StepInput::Json),
            policy: *call.policy,
        };
        let exec = call.exec;
        if let Some(remote) = self.remote_step(short, &spec, || tool_body(exec.clone())) {
            return Box::pin(async move { decode(remote.await) });
        }
        let fut = self.ctx.execute(short, spec, move |a| {
            let run = exec(a.nested().driver(), a.idempotency_key());
            async move { Attempt::from(run.await) }
        });
        Box::pin(async move { fut.await.map_err(AgentError::engine) })
    }
}
