//! The `Model` trait: the one seam through which an agent reaches a language model.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::messages::{Message, ModelResponse};

/// A tool as the model sees it: a name, a description and a JSON Schema for the arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// The name the model calls it by.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments (always an object schema).
    pub parameters: Value,
    /// Ask the provider to enforce the schema strictly, where it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// How the run's final output reaches us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// Plain text is the output.
    Text,
    /// The model calls an output tool (`final_result`) whose arguments are the output.
    #[default]
    Tool,
    /// The provider's JSON-schema response format constrains the text, which is parsed.
    Native,
}

/// A named JSON Schema for native structured output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSchema {
    /// A name for the schema (providers require one).
    pub name: String,
    /// What the output is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The schema (an object schema).
    pub schema: Value,
    /// Ask for strict enforcement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// Everything about a request besides the messages: tools and how output is expected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelRequestParams {
    /// Function tools the model may call.
    #[serde(default)]
    pub function_tools: Vec<ToolDefinition>,
    /// Output tools (tool output mode); calling one ends the run.
    #[serde(default)]
    pub output_tools: Vec<ToolDefinition>,
    /// The output mode.
    #[serde(default)]
    pub output_mode: OutputMode,
    /// The schema for native output mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<OutputSchema>,
    /// Whether plain text ends the run. When false and tools exist, providers ask for a tool call
    /// (`tool_choice: required` or its equivalent).
    #[serde(default)]
    pub allow_text_output: bool,
}

impl ModelRequestParams {
    /// Function tools followed by output tools.
    pub fn all_tools(&self) -> impl Iterator<Item = &ToolDefinition> {
        self.function_tools.iter().chain(self.output_tools.iter())
    }
}

/// Sampling settings. Unset fields keep the provider's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    /// Maximum tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Seed, where the provider supports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Let the model call several tools in one response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Provider-specific fields merged into the request body as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_body: Option<Value>,
}

impl ModelSettings {
    /// `self`, with every field that `over` sets taken from `over`.
    pub fn merged(&self, over: &ModelSettings) -> ModelSettings {
        ModelSettings {
            max_tokens: over.max_tokens.or(self.max_tokens),
            temperature: over.temperature.or(self.temperature),
            top_p: over.top_p.or(self.top_p),
            seed: over.seed.or(self.seed),
            parallel_tool_calls: over.parallel_tool_calls.or(self.parallel_tool_calls),
            extra_body: over.extra_body.clone().or_else(|| self.extra_body.clone()),
        }
    }
}

/// What a model can do, for choosing defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelProfile {
    /// The provider can constrain output to a JSON Schema.
    pub supports_native_output: bool,
    /// The provider supports function tools.
    pub supports_tools: bool,
}

impl Default for ModelProfile {
    fn default() -> Self {
        ModelProfile {
            supports_native_output: true,
            supports_tools: true,
        }
    }
}

/// An error from a model provider.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Serialize, Deserialize)]
pub enum ModelError {
    /// The provider answered with an HTTP error status.
    #[error("{provider} returned HTTP {status}: {message}")]
    Http {
        /// The provider.
        provider: String,
        /// The HTTP status code.
        status: u16,
        /// The provider's error message (or the body, if it had none).
        message: String,
        /// The provider's error type or code, if given.
        code: Option<String>,
        /// The `Retry-After` delay the provider asked for.
        retry_after: Option<Duration>,
    },
    /// The request took longer than its timeout.
    #[error("{provider} request timed out after {timeout:?}")]
    Timeout {
        /// The provider.
        provider: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The connection failed.
    #[error("cannot reach {provider}: {message}")]
    Connection {
        /// The provider.
        provider: String,
        /// What went wrong.
        message: String,
    },
    /// The provider's answer could not be understood.
    #[error("{provider} sent a response that cannot be parsed: {message}")]
    InvalidResponse {
        /// The provider.
        provider: String,
        /// What was wrong with it.
        message: String,
    },
    /// The model is not configured correctly (missing API key, unknown provider, ...).
    #[error("model configuration: {0}")]
    Config(String),
    /// An error from a model implemented in code ([`crate::FunctionModel`]).
    #[error("{message}")]
    Function {
        /// What went wrong.
        message: String,
        /// Whether retrying may help.
        retryable: bool,
    },
}

impl ModelError {
    /// Whether retrying the same request may succeed: 408, 409, 429, 5xx, timeouts and
    /// connection failures are retryable; other statuses, bad responses and configuration
    /// errors are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            ModelError::Http { status, .. } => matches!(*status, 408 | 409 | 429) || *status >= 500,
            ModelError::Timeout { .. } | ModelError::Connection { .. } => true,
            ModelError::InvalidResponse { .. } | ModelError::Config(_) => false,
            ModelError::Function { retryable, .. } => *retryable,
        }
    }

    /// The delay the provider asked for before a retry.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An incremental event from a streamed model response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StreamEvent {
    /// More text for the part at `index`.
    TextDelta {
        /// The part's index in the response.
        index: usize,
        /// The new text.
        delta: String,
    },
    /// More reasoning for the part at `index`.
    ThinkingDelta {
        /// The part's index in the response.
        index: usize,
        /// The new text.
        delta: String,
    },
    /// More of a tool call at `index`: its name and id arrive first, then argument fragments.
    ToolCallDelta {
        /// The part's index in the response.
        index: usize,
        /// The tool name, on the first delta.
        tool_name: Option<String>,
        /// The call id, on the first delta.
        tool_call_id: Option<String>,
        /// A fragment of the argument JSON.
        args_delta: String,
    },
    /// The whole response, assembled. Always the last event of a stream.
    Done(ModelResponse),
}

/// A stream of events ending with [`StreamEvent::Done`].
pub type ModelStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ModelError>> + Send>>;

/// A language model.
///
/// Implementations do the IO; the agent loop only ever calls these two methods, through a
/// [`crate::Driver`].
pub trait Model: Send + Sync {
    /// The model's name, as sent to the provider (`gpt-4.1`, `claude-haiku-4-5`, ...).
    fn name(&self) -> &str;

    /// The provider's name (`openai`, `anthropic`, `google`, `function`, ...).
    fn provider(&self) -> &str;

    /// What the model supports.
    fn profile(&self) -> ModelProfile {
        ModelProfile::default()
    }

    /// Send one request and wait for the whole response.
    fn request<'a>(
        &'a self,
        messages: &'a [Message],
        params: &'a ModelRequestParams,
        settings: &'a ModelSettings,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>>;

    /// Send one request and stream the response. The default streams the whole response at once.
    fn request_stream<'a>(
        &'a self,
        messages: &'a [Message],
        params: &'a ModelRequestParams,
        settings: &'a ModelSettings,
    ) -> BoxFuture<'a, Result<ModelStream, ModelError>> {
        Box::pin(async move {
            let response = self.request(messages, params, settings).await?;
            let events = crate::stream::events_of(response);
            let stream: ModelStream = Box::pin(futures::stream::iter(events.into_iter().map(Ok)));
            Ok(stream)
        })
    }
}

/// A shared, type-erased model.
pub type ModelRef = Arc<dyn Model>;

/// Turns `"provider:model"` strings into models. `steadfast-models` provides the standard one.
pub trait ModelResolver: Send + Sync {
    /// Build the model that `spec` names, or say why not.
    fn resolve(&self, spec: &str) -> Result<ModelRef, ModelError>;
}
