//! Typed tools: a Rust function whose argument type gives the JSON Schema the model sees.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::driver::{Driver, Scope};
use crate::error::ToolError;
use crate::model::ToolDefinition;
use crate::policy::{RetryPolicy, StepPolicy};
use crate::schema;
use crate::usage::Usage;

/// What a tool gets besides its arguments.
pub struct ToolCtx<D> {
    /// The run's dependencies (clients, keys, pools). They live in the worker and are never
    /// serialized.
    pub deps: Arc<D>,
    /// The tool's name.
    pub tool_name: String,
    /// The id of the call being answered.
    pub tool_call_id: String,
    /// How many times the model has been asked to retry this tool in this run.
    pub retry: u32,
    /// The number of model requests made so far in this run.
    pub run_step: u32,
    /// The key that identifies this call to the outside world. Durable engines make it
    /// `workflow_id/step_id`, the same on every attempt and every replay; plain runs leave it empty.
    pub idempotency_key: String,
    driver: Arc<dyn Driver>,
    usage: Arc<Mutex<Usage>>,
}

impl<D> Clone for ToolCtx<D> {
    fn clone(&self) -> Self {
        ToolCtx {
            deps: self.deps.clone(),
            tool_name: self.tool_name.clone(),
            tool_call_id: self.tool_call_id.clone(),
            retry: self.retry,
            run_step: self.run_step,
            idempotency_key: self.idempotency_key.clone(),
            driver: self.driver.clone(),
            usage: self.usage.clone(),
        }
    }
}

impl<D> Scope for ToolCtx<D> {
    fn driver(&self) -> Arc<dyn Driver> {
        self.driver.clone()
    }

    fn record_usage(&self, usage: &Usage) {
        if let Ok(mut u) = self.usage.lock() {
            *u += usage;
        }
    }
}

/// The journaled answer of a tool call: what goes back to the model, and the usage of any agent
/// the tool ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolOutcome {
    /// What the model gets.
    pub result: ToolResult,
    /// Usage of nested agent runs inside the tool.
    #[serde(default)]
    pub usage: Usage,
}

/// What the model gets back from a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ToolResult {
    /// The tool's return value.
    Return(Value),
    /// A request to call again, with what was wrong.
    Retry(String),
}

/// The facts about a call that a tool executor receives.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// The tool's name.
    pub tool_name: String,
    /// The call id.
    pub tool_call_id: String,
    /// The arguments as JSON text.
    pub args: String,
    /// Retries of this tool so far.
    pub retry: u32,
    /// Model requests so far.
    pub run_step: u32,
}

/// Runs one tool call, given the driver scoped to the call's step and its idempotency key.
pub type ToolExec = Arc<
    dyn Fn(Arc<dyn Driver>, String) -> BoxFuture<'static, Result<ToolOutcome, ToolError>>
        + Send
        + Sync,
>;

type Handler<D> =
    Arc<dyn Fn(ToolCtx<D>, String) -> BoxFuture<'static, Result<Value, ToolError>> + Send + Sync>;

/// A tool an agent can call.
pub struct Tool<D> {
    pub(crate) def: ToolDefinition,
    handler: Handler<D>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) policy: Option<StepPolicy>,
}

impl<D> Clone for Tool<D> {
    fn clone(&self) -> Self {
        Tool {
            def: self.def.clone(),
            handler: self.handler.clone(),
            max_retries: self.max_retries,
            policy: self.policy,
        }
    }
}

fn parse_args<A: DeserializeOwned>(args: &str) -> Result<A, ToolError> {
    let text = if args.trim().is_empty() { "{}" } else { args };
    serde_json::from_str(text).map_err(|e| ToolError::Retry(format!("invalid arguments: {e}")))
}

fn to_value<R: Serialize>(r: R) -> Result<Value, ToolError> {
    serde_json::to_value(r)
        .map_err(|e| ToolError::fatal(format!("cannot serialize tool result: {e}")))
}

impl<D: Send + Sync + 'static> Tool<D> {
    /// A tool that receives a [`ToolCtx`] and typed arguments.
    ///
    /// The argument type's JSON Schema becomes the tool's parameters, and its doc comment the
    /// tool's description.
    pub fn new<A, R, F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(ToolCtx<D>, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let handler: Handler<D> = Arc::new(move |ctx, args| {
            let f = f.clone();
            Box::pin(async move {
                let a: A = parse_args(&args)?;
                to_value(f(ctx, a).await?)
            })
        });
        Self::from_parts(name.into(), schema::schema_of::<A>(), handler)
    }

    /// A tool that needs no context, only its typed arguments.
    pub fn plain<A, R, F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ToolError>> + Send + 'static,
    {
        let f = Arc::new(f);
        Self::new(name, move |_ctx: ToolCtx<D>, a: A| {
            let f = f.clone();
            async move { f(a).await }
        })
    }

    fn from_parts(name: String, mut parameters: Value, handler: Handler<D>) -> Self {
        let description = schema::take_description(&mut parameters);
        if !schema::is_object_schema(&parameters) {
            parameters = schema::wrap_response(parameters);
        }
        Tool {
            def: ToolDefinition {
                name,
                description,
                parameters,
                strict: None,
            },
            handler,
            max_retries: None,
            policy: None,
        }
    }

    /// Set the description (overrides the argument type's doc comment).
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.def.description = Some(d.into());
        self
    }

    /// How many times the model may be asked to retry this tool (default: the agent's).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// The step policy of this tool's calls (retries of failures and timeout).
    pub fn policy(mut self, p: StepPolicy) -> Self {
        self.policy = Some(p);
        self
    }

    /// The retry policy for failures of this tool.
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.policy = Some(self.policy.unwrap_or_default().with_retry(r));
        self
    }

    /// The start-to-close timeout of one attempt.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.policy = Some(self.policy.unwrap_or_default().with_timeout(t));
        self
    }

    /// Ask providers to enforce the argument schema strictly.
    pub fn strict(mut self, strict: bool) -> Self {
        self.def.strict = Some(strict);
        self
    }

    /// The definition the model sees.
    pub fn definition(&self) -> &ToolDefinition {
        &self.def
    }

    /// The executor of one call: builds the context, runs the handler, collects nested usage.
    pub(crate) fn exec(&self, deps: Arc<D>, info: CallInfo) -> ToolExec {
        let handler = self.handler.clone();
        let info = Arc::new(info);
        Arc::new(move |driver, key| {
            let usage = Arc::new(Mutex::new(Usage::default()));
            let ctx = ToolCtx {
                deps: deps.clone(),
                tool_name: info.tool_name.clone(),
                tool_call_id: info.tool_call_id.clone(),
                retry: info.retry,
                run_step: info.run_step,
                idempotency_key: key,
                driver,
                usage: usage.clone(),
            };
            let handler = handler.clone();
            let args = info.args.clone();
            Box::pin(async move {
                let result = match handler(ctx, args).await {
                    Ok(v) => ToolResult::Return(v),
                    Err(ToolError::Retry(m)) => ToolResult::Retry(m),
                    Err(e) => return Err(e),
                };
                let usage = usage.lock().map(|u| u.clone()).unwrap_or_default();
                Ok(ToolOutcome { result, usage })
            })
        })
    }
}
