//! The effect seam. The agent loop asks a [`Driver`] to call the model and to call tools; the
//! driver decides how: directly ([`PlainDriver`]), as journaled steps (the durable engine), or as
//! activities (Temporal). No agent code knows which.

use std::sync::Arc;

use futures::future::BoxFuture;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::error::{AgentError, ToolError};
use crate::messages::{Message, ModelResponse, ToolCallPart};
use crate::model::{Model, ModelError, ModelRef, ModelRequestParams, ModelSettings, StreamEvent};
use crate::policy::StepPolicy;
use crate::tool::{ToolExec, ToolOutcome};
use crate::usage::Usage;

/// A sink for live stream events of a model request.
pub type EventSink = Arc<dyn Fn(StreamEvent) + Send + Sync>;

/// A model request, as the agent loop hands it to a driver.
pub struct ModelCall<'a> {
    /// The agent's name (step names are `agent__{agent}__model_request`).
    pub agent: &'a str,
    /// The model to call (shared, so an engine may hand it to another task).
    pub model: &'a ModelRef,
    /// The conversation so far.
    pub messages: &'a [Message],
    /// Tools and output mode.
    pub params: &'a ModelRequestParams,
    /// Sampling settings.
    pub settings: &'a ModelSettings,
    /// Retries and timeout.
    pub policy: &'a StepPolicy,
    /// Where live events go, when the run is streamed.
    pub events: Option<EventSink>,
}

/// A tool call, as the agent loop hands it to a driver.
pub struct ToolCall<'a> {
    /// The agent's name (step names are `agent__{agent}__tool__{tool}`).
    pub agent: &'a str,
    /// The call.
    pub call: &'a ToolCallPart,
    /// Retries and timeout.
    pub policy: &'a StepPolicy,
    /// Runs the call; the driver may run it several times (retries).
    pub exec: ToolExec,
}

/// Performs the effects the agent loop asks for.
///
/// Implementations must allocate any step identity synchronously, in the body of
/// `child`, `model_request` and `tool_call` before returning the future: that makes identity
/// follow program order even when the futures run concurrently.
pub trait Driver: Send + Sync {
    /// A driver for a nested scope (an agent run, a parallel branch), named `name`.
    fn child(&self, name: &str) -> Arc<dyn Driver>;

    /// Call the model.
    fn model_request<'a>(
        &'a self,
        call: ModelCall<'a>,
    ) -> BoxFuture<'a, Result<ModelResponse, AgentError>>;

    /// Call a tool.
    fn tool_call<'a>(
        &'a self,
        call: ToolCall<'a>,
    ) -> BoxFuture<'a, Result<ToolOutcome, AgentError>>;
}

/// Where an agent runs: plainly, inside a workflow, or inside another agent's tool.
pub trait Scope {
    /// The driver of this scope.
    fn driver(&self) -> Arc<dyn Driver>;

    /// Called with a nested run's usage, so the enclosing run can add it to its own.
    fn record_usage(&self, _usage: &Usage) {}
}

/// A scope shared by the runs of a task, as [`with_default_scope`] installs it.
pub type SharedScope = Arc<dyn Scope + Send + Sync>;

tokio::task_local! {
    static DEFAULT_SCOPE: SharedScope;
}

/// Run `fut` with `scope` as the scope of every plain run inside it (`Agent::run`, `run_with`,
/// `run_stream`): an observer such as an evaluation or a tracer then sees their model requests,
/// tool calls and usage, with no change to the code that runs the agents. Runs inside tools
/// (`run_in(&ctx, ..)`) keep their own scope.
pub async fn with_default_scope<F: std::future::Future>(scope: SharedScope, fut: F) -> F::Output {
    DEFAULT_SCOPE.scope(scope, fut).await
}

/// The scope that [`with_default_scope`] installed around the current task, if any.
pub fn default_scope() -> Option<SharedScope> {
    DEFAULT_SCOPE.try_with(Arc::clone).ok()
}

/// Calls models and tools directly, retrying failures under their step policies.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainDriver;

impl Scope for PlainDriver {
    fn driver(&self) -> Arc<dyn Driver> {
        Arc::new(PlainDriver)
    }
}

/// Runs one model request, streaming its events to `sink` when there is one.
///
/// The request runs inside a `chat {model}` span (see [`crate::semconv`]): every request
/// actually sent gets one, whichever driver sends it, and replays from a journal get none.
pub async fn call_model(
    model: &dyn Model,
    messages: &[Message],
    params: &ModelRequestParams,
    settings: &ModelSettings,
    sink: Option<&EventSink>,
) -> Result<ModelResponse, ModelError> {
    let span = chat_span(model, messages, settings);
    let result = send_request(model, messages, params, settings, sink)
        .instrument(span.clone())
        .await;
    if !span.is_disabled() {
        record_chat(&span, &result);
    }
    result
}

/// The `chat {model}` span of one request, with its request attributes.
fn chat_span(model: &dyn Model, messages: &[Message], settings: &ModelSettings) -> Span {
    use crate::semconv::*;
    let span = tracing::info_span!(
        target: TARGET,
        SPAN_CHAT,
        { OTEL_NAME } = format!("{OP_CHAT} {}", model.name()),
        { OTEL_KIND } = "client",
        { GEN_AI_OPERATION_NAME } = OP_CHAT,
        { GEN_AI_PROVIDER_NAME } = model.provider(),
        { GEN_AI_REQUEST_MODEL } = model.name(),
        { GEN_AI_REQUEST_MAX_TOKENS } = settings.max_tokens.map(i64::from),
        { GEN_AI_REQUEST_TEMPERATURE } = settings.temperature,
        { GEN_AI_REQUEST_TOP_P } = settings.top_p,
        { GEN_AI_REQUEST_SEED } = settings.seed,
        { GEN_AI_RESPONSE_MODEL } = Empty,
        { GEN_AI_RESPONSE_ID } = Empty,
        { GEN_AI_RESPONSE_FINISH_REASONS } = Empty,
        { GEN_AI_USAGE_INPUT_TOKENS } = Empty,
        { GEN_AI_USAGE_OUTPUT_TOKENS } = Empty,
        { GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS } = Empty,
        { GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS } = Empty,
        { OPERATION_COST } = Empty,
        { GEN_AI_INPUT_MESSAGES } = Empty,
        { GEN_AI_OUTPUT_MESSAGES } = Empty,
        { GEN_AI_SYSTEM_INSTRUCTIONS } = Empty,
        { ERROR_TYPE } = Empty,
        { OTEL_STATUS_CODE } = Empty,
        { OTEL_STATUS_DESCRIPTION } = Empty,
    );
    if !span.is_disabled() && capture_content() {
        span.record(GEN_AI_INPUT_MESSAGES, input_messages(messages));
        if let Some(s) = system_instructions(messages) {
            span.record(GEN_AI_SYSTEM_INSTRUCTIONS, s);
        }
    }
    span
}

/// Records the response (or the error) on a `chat` span.
fn record_chat(span: &Span, result: &Result<ModelResponse, ModelError>) {
    use crate::semconv::*;
    match result {
        Ok(r) => {
            if let Some(m) = &r.model_name {
                span.record(GEN_AI_RESPONSE_MODEL, m.as_str());
            }
            if let Some(id) = &r.response_id {
                span.record(GEN_AI_RESPONSE_ID, id.as_str());
            }
            span.record(GEN_AI_RESPONSE_FINISH_REASONS, finish_reasons(r));
            let u = &r.usage;
            span.record(GEN_AI_USAGE_INPUT_TOKENS, int(u.input_tokens));
            span.record(GEN_AI_USAGE_OUTPUT_TOKENS, int(u.output_tokens));
            if u.cache_read_tokens > 0 {
                span.record(
                    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
                    int(u.cache_read_tokens),
                );
            }
            if u.cache_write_tokens > 0 {
                span.record(
                    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
                    int(u.cache_write_tokens),
                );
            }
            span.record(OPERATION_COST, u.cost_usd);
            if capture_content() {
                span.record(GEN_AI_OUTPUT_MESSAGES, output_messages(r));
            }
        }
        Err(e) => {
            span.record(ERROR_TYPE, model_error_type(e));
            span.record(OTEL_STATUS_CODE, "error");
            span.record(OTEL_STATUS_DESCRIPTION, redact_secrets(&e.to_string()));
        }
    }
}

fn model_error_type(e: &ModelError) -> &'static str {
    match e {
        ModelError::Http { .. } => "http",
        ModelError::Timeout { .. } => "timeout",
        ModelError::Connection { .. } => "connection",
        ModelError::InvalidResponse { .. } => "invalid_response",
        ModelError::Config(_) => "config",
        ModelError::Function { .. } => "function",
    }
}

async fn send_request(
    model: &dyn Model,
    messages: &[Message],
    params: &ModelRequestParams,
    settings: &ModelSettings,
    sink: Option<&EventSink>,
) -> Result<ModelResponse, ModelError> {
    use futures::StreamExt;
    let Some(sink) = sink else {
        return model.request(messages, params, settings).await;
    };
    let mut stream = model.request_stream(messages, params, settings).await?;
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Done(response) => return Ok(response),
            other => sink(other),
        }
    }
    Err(ModelError::InvalidResponse {
        provider: model.provider().to_string(),
        message: "the stream ended before the response was complete".into(),
    })
}

/// Runs `attempt` under `policy`: a timeout on each attempt, and retries with backoff for
/// retryable errors. Used by the plain driver and by engines that retry in-process.
pub async fn with_policy<T, F, Fut>(
    step: &str,
    policy: &StepPolicy,
    mut attempt: F,
) -> Result<T, AgentError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, AgentError>>,
{
    let mut n = 1;
    loop {
        let result = match policy.timeout {
            Some(t) => match tokio::time::timeout(t, attempt(n)).await {
                Ok(r) => r,
                Err(_) => Err(AgentError::Timeout {
                    step: step.to_string(),
                    timeout: t,
                }),
            },
            None => attempt(n).await,
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() => {
                let retry_after = match &e {
                    AgentError::Model(m) => m.retry_after(),
                    _ => None,
                };
                match policy.retry.delay_after(n, retry_after) {
                    Some(d) => tokio::time::sleep(d).await,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        n += 1;
    }
}

/// Maps a tool's failure to the run's error; retryable failures stay retryable.
pub fn tool_failure(tool: &str, e: ToolError) -> AgentError {
    match e {
        ToolError::Engine(inner) => AgentError::Engine(inner),
        ToolError::Failed { message, retryable } => AgentError::Tool {
            tool: tool.to_string(),
            message,
            retryable,
        },
        ToolError::Retry(message) => AgentError::Tool {
            tool: tool.to_string(),
            message,
            retryable: false,
        },
    }
}

impl Driver for PlainDriver {
    fn child(&self, _name: &str) -> Arc<dyn Driver> {
        Arc::new(PlainDriver)
    }

    fn model_request<'a>(
        &'a self,
        call: ModelCall<'a>,
    ) -> BoxFuture<'a, Result<ModelResponse, AgentError>> {
        Box::pin(async move {
            with_policy("model_request", call.policy, |_| async {
                call_model(
                    &**call.model,
                    call.messages,
                    call.params,
                    call.settings,
                    call.events.as_ref(),
                )
                .await
                .map_err(AgentError::from)
            })
            .await
        })
    }

    fn tool_call<'a>(
        &'a self,
        call: ToolCall<'a>,
    ) -> BoxFuture<'a, Result<ToolOutcome, AgentError>> {
        Box::pin(async move {
            let name = call.call.tool_name.as_str();
            with_policy(name, call.policy, |_| {
                let exec = call.exec.clone();
                async move {
                    exec(Arc::new(PlainDriver), String::new())
                        .await
                        .map_err(|e| tool_failure(name, e))
                }
            })
            .await
        })
    }
}
