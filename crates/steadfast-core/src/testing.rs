//! Models implemented in code: [`FunctionModel`] (a closure plays the model) and [`TestModel`]
//! (calls every tool, then returns schema-valid output). Neither does any IO.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::messages::{FinishReason, Message, ModelResponse, RequestPart, ResponsePart};
use crate::model::{Model, ModelError, ModelRequestParams, ModelSettings, OutputMode};
use crate::schema::example_value;
use crate::usage::Usage;

type SyncFn =
    Arc<dyn Fn(&[Message], &ModelRequestParams) -> Result<ModelResponse, ModelError> + Send + Sync>;
type AsyncFn = Arc<
    dyn Fn(
            Vec<Message>,
            ModelRequestParams,
        ) -> BoxFuture<'static, Result<ModelResponse, ModelError>>
        + Send
        + Sync,
>;

#[derive(Clone)]
enum Func {
    Sync(SyncFn),
    Async(AsyncFn),
}

/// A model played by a function of the conversation and the request parameters.
///
/// Usage is estimated from word counts, so runs report non-zero tokens.
#[derive(Clone)]
pub struct FunctionModel {
    name: String,
    f: Func,
}

impl FunctionModel {
    /// A model answered by `f`.
    pub fn new(
        f: impl Fn(&[Message], &ModelRequestParams) -> Result<ModelResponse, ModelError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        FunctionModel {
            name: "function".into(),
            f: Func::Sync(Arc::new(f)),
        }
    }

    /// A model answered by an async `f` (to simulate latency, or to await something).
    pub fn new_async<F, Fut>(f: F) -> Self
    where
        F: Fn(Vec<Message>, ModelRequestParams) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ModelResponse, ModelError>> + Send + 'static,
    {
        FunctionModel {
            name: "function".into(),
            f: Func::Async(Arc::new(move |m, p| Box::pin(f(m, p)))),
        }
    }

    /// The same model under another name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Rough token counts for models that have no tokenizer: one token per word, plus a little per
/// message.
pub fn estimate_usage(messages: &[Message], response: &ModelResponse) -> Usage {
    let mut input = 0;
    for m in messages {
        input += 4;
        match m {
            Message::Request(r) => {
                input += r.instructions.as_deref().map(words).unwrap_or(0);
                for p in &r.parts {
                    input += match p {
                        RequestPart::SystemPrompt { content }
                        | RequestPart::UserPrompt { content }
                        | RequestPart::RetryPrompt { content, .. } => words(content),
                        RequestPart::ToolReturn { content, .. } => words(&content.to_string()),
                    };
                }
            }
            Message::Response(r) => input += response_words(r),
        }
    }
    Usage {
        requests: 1,
        input_tokens: input,
        output_tokens: response_words(response),
        ..Default::default()
    }
}

fn response_words(r: &ModelResponse) -> u64 {
    r.parts
        .iter()
        .map(|p| match p {
            ResponsePart::Text { content } | ResponsePart::Thinking { content, .. } => {
                words(content)
            }
            ResponsePart::ToolCall(c) => 1 + words(&c.args),
        })
        .sum()
}

fn finish(name: &str, messages: &[Message], mut r: ModelResponse) -> ModelResponse {
    if r.usage == Usage::default() {
        r.usage = estimate_usage(messages, &r);
    }
    r.usage.requests = 1;
    r.model_name.get_or_insert_with(|| name.to_string());
    r.provider.get_or_insert_with(|| "function".to_string());
    if r.finish_reason.is_none() {
        r.finish_reason = Some(if r.tool_calls().next().is_some() {
            FinishReason::ToolCall
        } else {
            FinishReason::Stop
        });
    }
    r
}

impl Model for FunctionModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &str {
        "function"
    }

    fn request<'a>(
        &'a self,
        messages: &'a [Message],
        params: &'a ModelRequestParams,
        _settings: &'a ModelSettings,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        match &self.f {
            Func::Sync(f) => {
                let r = f(messages, params).map(|r| finish(&self.name, messages, r));
                Box::pin(async move { r })
            }
            Func::Async(f) => {
                let fut = f(messages.to_vec(), params.clone());
                Box::pin(async move { fut.await.map(|r| finish(&self.name, messages, r)) })
            }
        }
    }
}

/// Calls every function tool once with arguments generated from its schema, then returns
/// output generated from the output schema. Good for testing wiring without a real model.
#[derive(Debug, Clone, Default)]
pub struct TestModel {
    /// Text to return in text mode (default: a JSON summary of the tool results).
    pub custom_output_text: Option<String>,
    /// Output to return in tool and native modes (default: generated from the schema).
    pub custom_output: Option<serde_json::Value>,
    /// Seed for generated values.
    pub seed: u64,
}

impl TestModel {
    /// A test model with defaults.
    pub fn new() -> Self {
        Self::default()
    }

    fn respond(&self, messages: &[Message], params: &ModelRequestParams) -> ModelResponse {
        let last = messages.iter().rev().find_map(Message::as_request);
        let retries = last
            .map(|r| {
                r.parts
                    .iter()
                    .filter(|p| matches!(p, RequestPart::RetryPrompt { .. }))
                    .count()
            })
            .unwrap_or(0) as u64;
        let called_tools = messages.iter().any(|m| {
            m.as_response()
                .is_some_and(|r| r.tool_calls().next().is_some())
        });
        if !called_tools && !params.function_tools.is_empty() {
            return ModelResponse {
                parts: params
                    .function_tools
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        ResponsePart::tool_call(
                            &t.name,
                            example_value(&t.parameters, self.seed).to_string(),
                            format!("test_call_{i}"),
                        )
                    })
                    .collect(),
                ..Default::default()
            };
        }
        let seed = self.seed + retries;
        match params.output_mode {
            OutputMode::Tool => {
                let tool = params.output_tools.first();
                let args = match (&self.custom_output, tool) {
                    (Some(v), Some(t))
                        if t.parameters
                            .get("properties")
                            .and_then(|p| p.get("response"))
                            .is_some()
                            && v.get("response").is_none() =>
                    {
                        serde_json::json!({ "response": v })
                    }
                    (Some(v), _) => v.clone(),
                    (None, Some(t)) => example_value(&t.parameters, seed),
                    (None, None) => serde_json::json!({}),
                };
                ModelResponse {
                    parts: vec![ResponsePart::tool_call(
                        tool.map(|t| t.name.as_str()).unwrap_or("final_result"),
                        args.to_string(),
                        "test_output",
                    )],
                    ..Default::default()
                }
            }
            OutputMode::Native => {
                let v = self.custom_output.clone().unwrap_or_else(|| {
                    params
                        .output_schema
                        .as_ref()
                        .map(|s| example_value(&s.schema, seed))
                        .unwrap_or_default()
                });
                ModelResponse::text(v.to_string())
            }
            OutputMode::Text => {
                let text = self.custom_output_text.clone().unwrap_or_else(|| {
                    let returns: serde_json::Map<String, serde_json::Value> = messages
                        .iter()
                        .filter_map(Message::as_request)
                        .flat_map(|r| r.parts.iter())
                        .filter_map(|p| match p {
                            RequestPart::ToolReturn {
                                tool_name, content, ..
                            } => Some((tool_name.clone(), content.clone())),
                            _ => None,
                        })
                        .collect();
                    if returns.is_empty() {
                        "success (no tool calls)".to_string()
                    } else {
                        serde_json::Value::Object(returns).to_string()
                    }
                });
                ModelResponse::text(text)
            }
        }
    }
}

impl Model for TestModel {
    fn name(&self) -> &str {
        "test"
    }

    fn provider(&self) -> &str {
        "test"
    }

    fn request<'a>(
        &'a self,
        messages: &'a [Message],
        params: &'a ModelRequestParams,
        _settings: &'a ModelSettings,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        let r = finish("test", messages, self.respond(messages, params));
        Box::pin(async move { Ok(r) })
    }
}
