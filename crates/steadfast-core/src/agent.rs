//! `Agent`: a model, instructions, typed tools and typed output, built once and run many times.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::join_all;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::driver::{Driver, ModelCall, PlainDriver, Scope, ToolCall};
use crate::error::{AgentError, ToolError};
use crate::events::{AgentEvent, RunStream};
use crate::messages::Message;
use crate::messages::ToolCallPart;
use crate::model::{
    ModelError, ModelRef, ModelRequestParams, ModelResolver, ModelSettings, OutputMode,
};
use crate::output::OutputSpec;
use crate::policy::StepPolicy;
use crate::run::{Action, AgentRun, OutputValidator, RunResult, RunSetup};
use crate::tool::{CallInfo, Tool, ToolExec, ToolResult};
use crate::usage::UsageLimits;
use tracing::field::Empty;
use tracing::{Instrument, Span};

/// A model given by value or by a `"provider:model"` string.
#[derive(Clone)]
pub enum ModelChoice {
    /// A `"provider:model"` string, resolved when the agent is built.
    Spec(String),
    /// A model value.
    Model(ModelRef),
}

impl From<&str> for ModelChoice {
    fn from(s: &str) -> Self {
        ModelChoice::Spec(s.to_string())
    }
}

impl From<String> for ModelChoice {
    fn from(s: String) -> Self {
        ModelChoice::Spec(s)
    }
}

impl From<ModelRef> for ModelChoice {
    fn from(m: ModelRef) -> Self {
        ModelChoice::Model(m)
    }
}

impl<M: crate::Model + 'static> From<M> for ModelChoice {
    fn from(m: M) -> Self {
        ModelChoice::Model(Arc::new(m))
    }
}

static RESOLVER: OnceLock<Arc<dyn ModelResolver>> = OnceLock::new();

/// Install the resolver that turns `"provider:model"` strings into models. The first call wins;
/// `steadfast_models::install()` installs the standard one.
pub fn set_model_resolver(resolver: Arc<dyn ModelResolver>) -> bool {
    RESOLVER.set(resolver).is_ok()
}

/// Resolve a `"provider:model"` string: `test` gives a [`crate::TestModel`]; anything else goes
/// to the installed resolver.
pub fn resolve_model(spec: &str) -> Result<ModelRef, ModelError> {
    if spec == "test" {
        return Ok(Arc::new(crate::TestModel::new()));
    }
    match RESOLVER.get() {
        Some(r) => r.resolve(spec),
        None => Err(ModelError::Config(format!(
            "cannot resolve model `{spec}`: no provider resolver is installed; call \
             `steadfast::install_providers()` (or `steadfast_models::install()`) once at start-up, \
             or pass a Model value"
        ))),
    }
}

type Instruction<D> = Arc<dyn Fn(&D) -> String + Send + Sync>;

struct Inner<D, O> {
    name: String,
    model: ModelRef,
    instructions: Vec<Instruction<D>>,
    tools: Vec<Tool<D>>,
    tool_index: HashMap<String, usize>,
    output: OutputSpec<O>,
    validators: Vec<OutputValidator<D, O>>,
    settings: ModelSettings,
    limits: UsageLimits,
    retries: u32,
    output_retries: u32,
    model_policy: StepPolicy,
    tool_policy: StepPolicy,
}

/// An agent: a model with instructions, typed tools and typed output `O`, using deps `D`.
///
/// Cloning is cheap. Run it plainly with [`Agent::run`], inside a workflow or another agent's
/// tool with [`Agent::run_in`], or streamed with [`Agent::run_stream`].
pub struct Agent<D = (), O = String> {
    inner: Arc<Inner<D, O>>,
}

impl<D, O> Clone for Agent<D, O> {
    fn clone(&self) -> Self {
        Agent {
            inner: self.inner.clone(),
        }
    }
}

/// Options of one run.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Earlier messages to continue from.
    pub message_history: Vec<Message>,
    /// Another model for this run only.
    pub model: Option<ModelRef>,
    /// Limits for this run (default: the agent's).
    pub usage_limits: Option<UsageLimits>,
    /// Settings merged over the agent's.
    pub settings: Option<ModelSettings>,
}

impl<D, O> Agent<D, O>
where
    D: Send + Sync + 'static,
    O: DeserializeOwned + JsonSchema + Send + 'static,
{
    /// Start building an agent named `name`. The name is part of every step id and activity
    /// name, so keep it stable.
    pub fn builder(name: impl Into<String>) -> AgentBuilder<D, O> {
        AgentBuilder {
            name: name.into(),
            model: None,
            instructions: Vec::new(),
            tools: Vec::new(),
            output: OutputSpec::new(),
            validators: Vec::new(),
            settings: ModelSettings::default(),
            limits: UsageLimits::default(),
            retries: 1,
            output_retries: None,
            model_policy: StepPolicy::default(),
            tool_policy: StepPolicy::default(),
            step_timeout: None,
        }
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The agent's model.
    pub fn model(&self) -> &ModelRef {
        &self.inner.model
    }

    /// The definitions of its function tools.
    pub fn tool_definitions(&self) -> Vec<crate::ToolDefinition> {
        self.inner.tools.iter().map(|t| t.def.clone()).collect()
    }

    /// The step policy of its model requests.
    pub fn model_policy(&self) -> &StepPolicy {
        &self.inner.model_policy
    }

    /// The step policy of tool `name`.
    pub fn tool_policy(&self, name: &str) -> StepPolicy {
        self.inner
            .tool_index
            .get(name)
            .and_then(|i| self.inner.tools[*i].policy)
            .unwrap_or(self.inner.tool_policy)
    }

    /// A copy of this agent that uses another model (for tests and evals).
    pub fn with_model(&self, model: ModelRef) -> Self
    where
        D: 'static,
    {
        let i = &self.inner;
        Agent {
            inner: Arc::new(Inner {
                name: i.name.clone(),
                model,
                instructions: i.instructions.clone(),
                tools: i.tools.clone(),
                tool_index: i.tool_index.clone(),
                output: i.output.clone(),
                validators: i.validators.clone(),
                settings: i.settings.clone(),
                limits: i.limits.clone(),
                retries: i.retries,
                output_retries: i.output_retries,
                model_policy: i.model_policy,
                tool_policy: i.tool_policy,
            }),
        }
    }

    /// Run plainly: models and tools are called directly.
    pub async fn run(
        &self,
        prompt: impl Into<String>,
        deps: impl Into<Arc<D>>,
    ) -> Result<RunResult<O>, AgentError> {
        self.run_with(prompt, deps, RunOptions::default()).await
    }

    /// Run plainly, with options (history, model, limits, settings).
    pub async fn run_with(
        &self,
        prompt: impl Into<String>,
        deps: impl Into<Arc<D>>,
        options: RunOptions,
    ) -> Result<RunResult<O>, AgentError> {
        match crate::driver::default_scope() {
            Some(scope) => self.run_in_with(&*scope, prompt, deps, options).await,
            None => {
                self.drive(
                    Arc::new(PlainDriver),
                    Some(prompt.into()),
                    deps.into(),
                    options,
                    None,
                )
                .await
            }
        }
    }

    /// Run inside `scope`: a workflow (each model request and tool call becomes a journaled
    /// step) or another agent's tool (usage adds to the outer run, and under durability the
    /// inner steps are journaled too).
    ///
    /// The run's identity is taken when this is called, not when the future is first polled, so
    /// runs started side by side keep their ids on replay.
    pub fn run_in<'s, S: Scope + Sync + ?Sized>(
        &'s self,
        scope: &'s S,
        prompt: impl Into<String>,
        deps: impl Into<Arc<D>>,
    ) -> impl Future<Output = Result<RunResult<O>, AgentError>> + Send + 's {
        self.run_in_with(scope, prompt, deps, RunOptions::default())
    }

    /// [`Agent::run_in`] with options.
    pub fn run_in_with<'s, S: Scope + Sync + ?Sized>(
        &'s self,
        scope: &'s S,
        prompt: impl Into<String>,
        deps: impl Into<Arc<D>>,
        options: RunOptions,
    ) -> impl Future<Output = Result<RunResult<O>, AgentError>> + Send + 's {
        let driver = scope.driver().child(&self.inner.name);
        let prompt = prompt.into();
        let deps = deps.into();
        async move {
            let result = self.drive(driver, Some(prompt), deps, options, None).await;
            if let Ok(r) = &result {
                scope.record_usage(&r.usage);
            }
            result
        }
    }

    /// Run plainly and stream events: text and tool-call deltas as they arrive, tool calls and
    /// results, and at the end the output.
    pub fn run_stream(&self, prompt: impl Into<String>, deps: impl Into<Arc<D>>) -> RunStream<O> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let sink: crate::events::AgentSink = Arc::new(move |e| {
            let _ = tx.unbounded_send(e);
        });
        let agent = self.clone();
        let prompt = prompt.into();
        let deps = deps.into();
        let scope = crate::driver::default_scope();
        let driver: Arc<dyn Driver> = match &scope {
            Some(s) => s.driver().child(&self.inner.name),
            None => Arc::new(PlainDriver),
        };
        let fut = async move {
            let result = agent
                .drive(
                    driver,
                    Some(prompt),
                    deps,
                    RunOptions::default(),
                    Some(sink),
                )
                .await;
            if let (Some(s), Ok(r)) = (&scope, &result) {
                s.record_usage(&r.usage);
            }
            result
        };
        RunStream::new(Box::pin(fut), rx)
    }

    fn instructions_for(&self, deps: &D) -> Option<String> {
        if self.inner.instructions.is_empty() {
            return None;
        }
        let parts: Vec<String> = self.inner.instructions.iter().map(|f| f(deps)).collect();
        Some(parts.join("\n\n"))
    }

    /// The request parameters this agent sends.
    pub fn request_params(&self) -> ModelRequestParams {
        let i = &self.inner;
        ModelRequestParams {
            function_tools: i.tools.iter().map(|t| t.def.clone()).collect(),
            output_tools: i.output.output_tool().into_iter().collect(),
            output_mode: i.output.mode,
            output_schema: i.output.native_schema(),
            allow_text_output: i.output.mode != OutputMode::Tool,
        }
    }

    /// Drive the state machine with `driver` until the run ends, inside an
    /// `invoke_agent {agent}` span that gets the run's total usage and cost at the end.
    pub(crate) async fn drive(
        &self,
        driver: Arc<dyn Driver>,
        prompt: Option<String>,
        deps: Arc<D>,
        options: RunOptions,
        events: Option<crate::events::AgentSink>,
    ) -> Result<RunResult<O>, AgentError> {
        let model = options.model.as_ref().unwrap_or(&self.inner.model);
        let span = agent_span(&self.inner.name, &**model);
        let result = self
            .drive_loop(driver, prompt, deps, options, events)
            .instrument(span.clone())
            .await;
        if !span.is_disabled() {
            record_run(&span, result.as_ref().map(|r| &r.usage));
        }
        result
    }

    async fn drive_loop(
        &self,
        driver: Arc<dyn Driver>,
        prompt: Option<String>,
        deps: Arc<D>,
        options: RunOptions,
        events: Option<crate::events::AgentSink>,
    ) -> Result<RunResult<O>, AgentError> {
        let i = &self.inner;
        let model = options.model.unwrap_or_else(|| i.model.clone());
        let settings = match &options.settings {
            Some(s) => i.settings.merged(s),
            None => i.settings.clone(),
        };
        let function_tools = i
            .tools
            .iter()
            .map(|t| (t.def.name.clone(), t.max_retries.unwrap_or(i.retries)))
            .collect();
        let mut run = AgentRun::new(RunSetup {
            instructions: self.instructions_for(&deps),
            deps,
            history: options.message_history,
            prompt,
            limits: options.usage_limits.unwrap_or_else(|| i.limits.clone()),
            params: self.request_params(),
            output: i.output.clone(),
            validators: i.validators.clone(),
            function_tools,
            max_output_retries: i.output_retries,
        });
        let model_events = events.clone().map(|sink| {
            let f: crate::driver::EventSink = Arc::new(move |e| sink(AgentEvent::Model(e)));
            f
        });
        loop {
            match run.next_action()? {
                Action::CallModel => {
                    let response = driver
                        .model_request(ModelCall {
                            agent: &i.name,
                            model: &model,
                            messages: run.messages(),
                            params: run.params(),
                            settings: &settings,
                            policy: &i.model_policy,
                            events: model_events.clone(),
                        })
                        .await?;
                    run.model_responded(response)?;
                }
                Action::CallTools(calls) => {
                    let futures: Vec<_> = calls
                        .iter()
                        .map(|call| {
                            let idx = i.tool_index[&call.tool_name];
                            let tool = &i.tools[idx];
                            if let Some(sink) = &events {
                                sink(AgentEvent::ToolCall(call.clone()));
                            }
                            let exec = instrument_tool(
                                tool.exec(
                                    run.deps.clone(),
                                    CallInfo {
                                        tool_name: call.tool_name.clone(),
                                        tool_call_id: call.tool_call_id.clone(),
                                        args: call.args.clone(),
                                        retry: run.tool_retries(&call.tool_name),
                                        run_step: run.run_step(),
                                    },
                                ),
                                call,
                            );
                            driver.tool_call(ToolCall {
                                agent: &i.name,
                                call,
                                policy: tool.policy.as_ref().unwrap_or(&i.tool_policy),
                                exec,
                            })
                        })
                        .collect();
                    let results = join_all(futures).await;
                    let mut outcomes = Vec::with_capacity(results.len());
                    for (call, result) in calls.into_iter().zip(results) {
                        let outcome = result?;
                        if let Some(sink) = &events {
                            sink(AgentEvent::ToolResult {
                                call: call.clone(),
                                result: outcome.result.clone(),
                            });
                        }
                        outcomes.push((call, outcome));
                    }
                    run.tools_returned(outcomes)?;
                }
                Action::Finished => return run.finish(),
            }
        }
    }
}

/// The `invoke_agent {agent}` span of one run.
fn agent_span(agent: &str, model: &dyn crate::Model) -> Span {
    use crate::semconv::*;
    tracing::info_span!(
        target: TARGET,
        SPAN_INVOKE_AGENT,
        { OTEL_NAME } = format!("{OP_INVOKE_AGENT} {agent}"),
        { GEN_AI_OPERATION_NAME } = OP_INVOKE_AGENT,
        { GEN_AI_AGENT_NAME } = agent,
        { GEN_AI_PROVIDER_NAME } = model.provider(),
        { GEN_AI_REQUEST_MODEL } = model.name(),
        { GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS } = Empty,
        { GEN_AI_AGGREGATED_USAGE_OUTPUT_TOKENS } = Empty,
        { STEADFAST_REQUESTS } = Empty,
        { STEADFAST_COST_USD } = Empty,
        { STEADFAST_UNPRICED_REQUESTS } = Empty,
        { ERROR_TYPE } = Empty,
        { OTEL_STATUS_CODE } = Empty,
        { OTEL_STATUS_DESCRIPTION } = Empty,
    )
}

/// Records a run's totals (nested runs included) or its error on its span.
fn record_run(span: &Span, result: Result<&crate::Usage, &AgentError>) {
    use crate::semconv::*;
    match result {
        Ok(u) => {
            span.record(GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS, int(u.input_tokens));
            span.record(GEN_AI_AGGREGATED_USAGE_OUTPUT_TOKENS, int(u.output_tokens));
            span.record(STEADFAST_REQUESTS, int(u.requests));
            span.record(STEADFAST_COST_USD, u.cost_usd);
            if u.unpriced_requests > 0 {
                span.record(STEADFAST_UNPRICED_REQUESTS, int(u.unpriced_requests));
            }
        }
        Err(e) => record_error(span, e),
    }
}

/// Records an error: its type always, its message (secrets masked) unless it may carry content
/// (tool and validation messages) and content capture is off.
fn record_error(span: &Span, e: &AgentError) {
    use crate::semconv::*;
    let (kind, may_hold_content) = match e {
        AgentError::Model(_) => ("model", false),
        AgentError::UsageLimitExceeded(_) => ("usage_limit_exceeded", false),
        AgentError::ToolRetriesExceeded { .. } => ("tool_retries_exceeded", true),
        AgentError::OutputRetriesExceeded { .. } => ("output_retries_exceeded", true),
        AgentError::Tool { .. } => ("tool", true),
        AgentError::Config(_) => ("config", false),
        AgentError::Timeout { .. } => ("timeout", false),
        AgentError::Engine(_) => ("engine", false),
    };
    span.record(ERROR_TYPE, kind);
    span.record(OTEL_STATUS_CODE, "error");
    if !may_hold_content || capture_content() {
        span.record(OTEL_STATUS_DESCRIPTION, redact_secrets(&e.to_string()));
    }
}

/// Wraps a tool executor so that each call it runs (each attempt) is an
/// `execute_tool {tool}` span; a nested agent run inside the tool becomes its child.
fn instrument_tool(exec: ToolExec, call: &ToolCallPart) -> ToolExec {
    let name: Arc<str> = call.tool_name.as_str().into();
    let id: Arc<str> = call.tool_call_id.as_str().into();
    let args: Arc<str> = call.args.as_str().into();
    Arc::new(move |driver, key| {
        use crate::semconv::*;
        let span = tracing::info_span!(
            target: TARGET,
            SPAN_EXECUTE_TOOL,
            { OTEL_NAME } = format!("{OP_EXECUTE_TOOL} {name}"),
            { GEN_AI_OPERATION_NAME } = OP_EXECUTE_TOOL,
            { GEN_AI_TOOL_NAME } = &*name,
            { GEN_AI_TOOL_CALL_ID } = &*id,
            { GEN_AI_TOOL_TYPE } = "function",
            { GEN_AI_TOOL_CALL_ARGUMENTS } = Empty,
            { GEN_AI_TOOL_CALL_RESULT } = Empty,
            { ERROR_TYPE } = Empty,
            { OTEL_STATUS_CODE } = Empty,
            { OTEL_STATUS_DESCRIPTION } = Empty,
        );
        let fut = span.in_scope(|| exec(driver, key));
        if span.is_disabled() {
            return fut;
        }
        let capture = capture_content();
        if capture {
            span.record(GEN_AI_TOOL_CALL_ARGUMENTS, &*args);
        }
        Box::pin(async move {
            let result = fut.instrument(span.clone()).await;
            match &result {
                Ok(outcome) => match &outcome.result {
                    ToolResult::Return(v) if capture => {
                        span.record(GEN_AI_TOOL_CALL_RESULT, v.to_string());
                    }
                    ToolResult::Retry(m) => {
                        span.record(ERROR_TYPE, "retry");
                        if capture {
                            span.record(GEN_AI_TOOL_CALL_RESULT, m.as_str());
                        }
                    }
                    _ => {}
                },
                Err(e) => {
                    span.record(ERROR_TYPE, "tool_error");
                    span.record(OTEL_STATUS_CODE, "error");
                    if capture {
                        span.record(OTEL_STATUS_DESCRIPTION, redact_secrets(&e.to_string()));
                    }
                }
            }
            result
        })
    })
}

/// Builds an [`Agent`].
pub struct AgentBuilder<D, O> {
    name: String,
    model: Option<ModelChoice>,
    instructions: Vec<Instruction<D>>,
    tools: Vec<Tool<D>>,
    output: OutputSpec<O>,
    validators: Vec<OutputValidator<D, O>>,
    settings: ModelSettings,
    limits: UsageLimits,
    retries: u32,
    output_retries: Option<u32>,
    model_policy: StepPolicy,
    tool_policy: StepPolicy,
    step_timeout: Option<Duration>,
}

impl<D, O> AgentBuilder<D, O>
where
    D: Send + Sync + 'static,
    O: DeserializeOwned + JsonSchema + Send + 'static,
{
    /// The model: a `"provider:model"` string or a model value.
    pub fn model(mut self, model: impl Into<ModelChoice>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Static instructions. Several calls are joined with blank lines.
    pub fn instructions(mut self, text: impl Into<String>) -> Self {
        let text = text.into();
        self.instructions.push(Arc::new(move |_| text.clone()));
        self
    }

    /// Instructions computed from the deps for each run.
    pub fn instructions_fn(mut self, f: impl Fn(&D) -> String + Send + Sync + 'static) -> Self {
        self.instructions.push(Arc::new(f));
        self
    }

    /// Add a tool.
    pub fn tool(mut self, tool: Tool<D>) -> Self {
        self.tools.push(tool);
        self
    }

    /// The output mode (tool, native JSON schema, or text).
    pub fn output_mode(mut self, mode: OutputMode) -> Self {
        self.output = self.output.with_mode(mode);
        self
    }

    /// Add an output validator; returning `ToolError::Retry` asks the model to try again.
    pub fn output_validator(
        mut self,
        f: impl Fn(&D, &O) -> Result<(), ToolError> + Send + Sync + 'static,
    ) -> Self {
        self.validators.push(Arc::new(f));
        self
    }

    /// Sampling settings.
    pub fn settings(mut self, settings: ModelSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Usage limits for each run.
    pub fn usage_limits(mut self, limits: UsageLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Default retry budget of each tool (default 1).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Retry budget for invalid output (default: the tool budget).
    pub fn output_retries(mut self, n: u32) -> Self {
        self.output_retries = Some(n);
        self
    }

    /// The step policy of model requests (retries and timeout).
    pub fn model_policy(mut self, policy: StepPolicy) -> Self {
        self.model_policy = policy;
        self
    }

    /// The default step policy of tool calls; a tool's own policy wins.
    pub fn tool_policy(mut self, policy: StepPolicy) -> Self {
        self.tool_policy = policy;
        self
    }

    /// Set the start-to-close timeout of all this agent's steps (model requests and every tool,
    /// whenever it is added), overriding their own timeouts.
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.step_timeout = Some(timeout);
        self
    }

    /// Build the agent. Fails on a missing or unresolvable model and on duplicate tool names.
    pub fn build(mut self) -> Result<Agent<D, O>, AgentError> {
        if let Some(timeout) = self.step_timeout {
            self.model_policy.timeout = Some(timeout);
            self.tool_policy.timeout = Some(timeout);
            for t in &mut self.tools {
                if let Some(p) = &mut t.policy {
                    p.timeout = Some(timeout);
                }
            }
        }
        let model = match self.model {
            None => {
                return Err(AgentError::Config(format!(
                    "agent `{}` has no model",
                    self.name
                )));
            }
            Some(ModelChoice::Model(m)) => m,
            Some(ModelChoice::Spec(s)) => resolve_model(&s)?,
        };
        if self.name.is_empty() || self.name.contains('/') || self.name.contains('#') {
            return Err(AgentError::Config(format!(
                "agent name `{}` must be non-empty and free of `/` and `#`",
                self.name
            )));
        }
        let mut tool_index = HashMap::new();
        for (i, t) in self.tools.iter().enumerate() {
            if t.def.name == crate::output::OUTPUT_TOOL_NAME
                || tool_index.insert(t.def.name.clone(), i).is_some()
            {
                return Err(AgentError::Config(format!(
                    "agent `{}` has two tools named `{}` (or one named like the output tool)",
                    self.name, t.def.name
                )));
            }
        }
        Ok(Agent {
            inner: Arc::new(Inner {
                name: self.name,
                model,
                instructions: self.instructions,
                tools: self.tools,
                tool_index,
                output: self.output,
                validators: self.validators,
                settings: self.settings,
                limits: self.limits,
                output_retries: self.output_retries.unwrap_or(self.retries),
                retries: self.retries,
                model_policy: self.model_policy,
                tool_policy: self.tool_policy,
            }),
        })
    }
}
