//! Span names, attribute names and helpers for tracing, after the OpenTelemetry GenAI semantic
//! conventions (spec 1.37), plus Steadfast's own `steadfast.*` attributes.
//!
//! The agent loop opens three kinds of span with the plain `tracing` crate:
//! `invoke_agent {agent}` around a run, `chat {model}` around each model request actually sent,
//! and `execute_tool {tool}` around each tool call actually run. The durable engine adds
//! `workflow {name}` and `step {id}`. Every span sets `otel.name` to its full name, so
//! `tracing-opentelemetry` exports it under that name. Without a subscriber the spans cost an
//! atomic load each; no field value is computed.
//!
//! Message content (prompts, completions, tool arguments and results) is recorded only when
//! [`capture_content`] is on: set `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, or
//! call [`set_capture_content`]. Dependencies, API keys and HTTP headers are never recorded.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{Value, json};

use crate::messages::{FinishReason, Message, ModelResponse, RequestPart, ResponsePart};

/// The `tracing` target of every Steadfast span.
pub const TARGET: &str = "steadfast";

// ---- span names (the `tracing` names; `otel.name` adds the subject) ----

/// An agent run: `invoke_agent {agent}`.
pub const SPAN_INVOKE_AGENT: &str = "invoke_agent";
/// One model request: `chat {model}`.
pub const SPAN_CHAT: &str = "chat";
/// One tool call: `execute_tool {tool}`.
pub const SPAN_EXECUTE_TOOL: &str = "execute_tool";
/// One execution of a durable workflow: `workflow {name}`.
pub const SPAN_WORKFLOW: &str = "workflow";
/// One durable step, run or replayed: `step {id}`.
pub const SPAN_STEP: &str = "step";

// ---- fields `tracing-opentelemetry` treats specially ----

/// The exported span name.
pub const OTEL_NAME: &str = "otel.name";
/// The span kind (`client`, `internal`, ...).
pub const OTEL_KIND: &str = "otel.kind";
/// `error` or `ok`.
pub const OTEL_STATUS_CODE: &str = "otel.status_code";
/// The error description.
pub const OTEL_STATUS_DESCRIPTION: &str = "otel.status_description";

// ---- OpenTelemetry GenAI attributes ----

/// `invoke_agent`, `chat` or `execute_tool`.
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// The provider (`openai`, `anthropic`, `gcp.gemini`, ... as the model reports it).
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// The agent's name.
pub const GEN_AI_AGENT_NAME: &str = "gen_ai.agent.name";
/// The model asked for.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// `max_tokens` of the request.
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
/// `temperature` of the request.
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
/// `top_p` of the request.
pub const GEN_AI_REQUEST_TOP_P: &str = "gen_ai.request.top_p";
/// `seed` of the request.
pub const GEN_AI_REQUEST_SEED: &str = "gen_ai.request.seed";
/// The model that answered.
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// The provider's response id.
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
/// Why generation stopped, as a JSON array of strings.
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// Input tokens of one request.
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// Output tokens of one request.
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// Input tokens read from the provider's cache.
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
/// Input tokens written to the provider's cache.
pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str =
    "gen_ai.usage.cache_creation.input_tokens";
/// Input tokens of a whole run or workflow (all its requests, nested agents included); kept
/// apart from `gen_ai.usage.*` so that backends summing those do not count twice.
pub const GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS: &str = "gen_ai.aggregated_usage.input_tokens";
/// Output tokens of a whole run or workflow.
pub const GEN_AI_AGGREGATED_USAGE_OUTPUT_TOKENS: &str = "gen_ai.aggregated_usage.output_tokens";
/// The tool's name.
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
/// The tool call's id.
pub const GEN_AI_TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
/// The tool's kind (`function`).
pub const GEN_AI_TOOL_TYPE: &str = "gen_ai.tool.type";
/// Content (opt-in): the tool call's arguments.
pub const GEN_AI_TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
/// Content (opt-in): the tool call's result.
pub const GEN_AI_TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
/// Content (opt-in): the messages sent, as JSON.
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// Content (opt-in): the messages received, as JSON.
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// Content (opt-in): the instructions, as JSON.
pub const GEN_AI_SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
/// The error's type, on failure.
pub const ERROR_TYPE: &str = "error.type";
/// Cost of one request in USD, from the price table (the name Logfire reads).
pub const OPERATION_COST: &str = "operation.cost";

// ---- GenAI metrics ----

/// Histogram of tokens per request, split by [`GEN_AI_TOKEN_TYPE`].
pub const METRIC_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// Histogram of the duration of one request, in seconds.
pub const METRIC_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// Histogram of the cost of one request, in USD.
pub const METRIC_OPERATION_COST: &str = "operation.cost";
/// `input` or `output`.
pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";

// ---- operation names ----

/// [`GEN_AI_OPERATION_NAME`] of an agent run.
pub const OP_INVOKE_AGENT: &str = "invoke_agent";
/// [`GEN_AI_OPERATION_NAME`] of a model request.
pub const OP_CHAT: &str = "chat";
/// [`GEN_AI_OPERATION_NAME`] of a tool call.
pub const OP_EXECUTE_TOOL: &str = "execute_tool";

// ---- Steadfast attributes ----

/// Total cost in USD of a run or a workflow (all its requests, nested agents included).
pub const STEADFAST_COST_USD: &str = "steadfast.cost_usd";
/// Model requests of a run or a workflow.
pub const STEADFAST_REQUESTS: &str = "steadfast.requests";
/// Requests whose model has no price, so the cost leaves them out.
pub const STEADFAST_UNPRICED_REQUESTS: &str = "steadfast.unpriced_requests";
/// The workflow id.
pub const STEADFAST_WORKFLOW_ID: &str = "steadfast.workflow.id";
/// The workflow's registered name.
pub const STEADFAST_WORKFLOW_NAME: &str = "steadfast.workflow.name";
/// How this execution of the workflow ended: `completed`, `failed`, `cancelled`, `suspended`
/// or `interrupted` (the worker stopped, or lost the lease).
pub const STEADFAST_WORKFLOW_STATUS: &str = "steadfast.workflow.status";
/// Steps answered from the journal in this execution.
pub const STEADFAST_STEPS_REPLAYED: &str = "steadfast.steps.replayed";
/// Steps run and committed in this execution.
pub const STEADFAST_STEPS_EXECUTED: &str = "steadfast.steps.executed";
/// The step's readable id (`agent#1/model_request#2`).
pub const STEADFAST_STEP_ID: &str = "steadfast.step.id";
/// The step's stable name (`agent__{agent}__model_request`).
pub const STEADFAST_STEP_NAME: &str = "steadfast.step.name";
/// The step's kind (`model_request`, `tool`, `step`, `sleep`, `value`, `recv`, `child`).
pub const STEADFAST_STEP_KIND: &str = "steadfast.step.kind";
/// The attempt that finished the step (1-based), or the recorded attempts of a replay.
pub const STEADFAST_STEP_ATTEMPT: &str = "steadfast.step.attempt";
/// Whether the step was answered from the journal (`true`) or ran (`false`).
pub const STEADFAST_REPLAYED: &str = "steadfast.replayed";

// ---- content capture ----

/// The standard opt-in variable for recording message content.
pub const CAPTURE_CONTENT_ENV: &str = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT";

const UNSET: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;
static CAPTURE: AtomicU8 = AtomicU8::new(UNSET);
static CAPTURE_ENV: OnceLock<bool> = OnceLock::new();

/// Whether spans record message content: [`set_capture_content`] if called, else
/// `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` (`true` or `1`), read once. Off by default.
pub fn capture_content() -> bool {
    match CAPTURE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => *CAPTURE_ENV.get_or_init(|| {
            std::env::var(CAPTURE_CONTENT_ENV)
                .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1"))
                .unwrap_or(false)
        }),
    }
}

/// Turn content capture on or off for the whole process; `None` goes back to the environment
/// variable.
pub fn set_capture_content(on: Option<bool>) {
    let v = match on {
        Some(true) => ON,
        Some(false) => OFF,
        None => UNSET,
    };
    CAPTURE.store(v, Ordering::Relaxed);
}

/// A count as a span attribute: OTLP has signed 64-bit integers only, and `tracing-opentelemetry`
/// exports unsigned values as strings, so counts go through this.
pub fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

// ---- secrets ----

/// `text` with anything that looks like a credential masked: the word after `Bearer` or
/// `Basic`, words with a known API-key prefix (`sk-`, `AIza`, ...), and long random-looking
/// words. Error messages go through this before they reach a span, because providers sometimes
/// echo (part of) the key they were sent.
pub fn redact_secrets(text: &str) -> String {
    const PREFIXES: [&str; 10] = [
        "sk-", "sk_", "pk-", "rk-", "AIza", "xai-", "gsk_", "ghp_", "hf_", "key-",
    ];
    let is_word =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '=');
    let mut out = String::with_capacity(text.len());
    let mut after_scheme = false;
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(is_word).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        if rest.is_empty() {
            break;
        }
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let word = &rest[..end];
        let letters = word.chars().filter(char::is_ascii_alphabetic).count();
        let digits = word.chars().filter(char::is_ascii_digit).count();
        let secret = after_scheme
            || (word.len() >= 12 && PREFIXES.iter().any(|p| word.starts_with(p)))
            || (word.len() >= 32 && letters > 0 && digits > 0);
        after_scheme = word.eq_ignore_ascii_case("bearer") || word.eq_ignore_ascii_case("basic");
        out.push_str(if secret { "[REDACTED]" } else { word });
        rest = &rest[end..];
    }
    out
}

// ---- content in the conventions' JSON shapes ----

/// A finish reason as the conventions spell it.
pub fn finish_reason_str(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCall => "tool_call",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Error => "error",
    }
}

/// `gen_ai.response.finish_reasons` of a response: a JSON array of strings.
pub fn finish_reasons(r: &ModelResponse) -> String {
    let reasons: Vec<&str> = r.finish_reason.map(finish_reason_str).into_iter().collect();
    Value::from(reasons).to_string()
}

fn response_parts(r: &ModelResponse) -> Vec<Value> {
    r.parts
        .iter()
        .map(|p| match p {
            ResponsePart::Text { content } => json!({ "type": "text", "content": content }),
            ResponsePart::Thinking { content, .. } => {
                json!({ "type": "reasoning", "content": content })
            }
            ResponsePart::ToolCall(c) => json!({
                "type": "tool_call",
                "id": c.tool_call_id,
                "name": c.tool_name,
                "arguments": c.args_object(),
            }),
        })
        .collect()
}

/// `gen_ai.input.messages`: the conversation, in the conventions' shape (roles `system`,
/// `user`, `assistant`, `tool`; typed parts). Instructions go to [`system_instructions`].
pub fn input_messages(messages: &[Message]) -> String {
    let mut out = Vec::new();
    for m in messages {
        match m {
            Message::Request(r) => {
                let mut user = Vec::new();
                let mut tool = Vec::new();
                for p in &r.parts {
                    match p {
                        RequestPart::SystemPrompt { content } => out.push(json!({
                            "role": "system",
                            "parts": [{ "type": "text", "content": content }],
                        })),
                        RequestPart::UserPrompt { content } => {
                            user.push(json!({ "type": "text", "content": content }))
                        }
                        RequestPart::ToolReturn {
                            tool_call_id,
                            content,
                            ..
                        } => tool.push(json!({
                            "type": "tool_call_response",
                            "id": tool_call_id,
                            "response": content,
                        })),
                        RequestPart::RetryPrompt {
                            tool_call_id: Some(id),
                            content,
                            ..
                        } => tool.push(json!({
                            "type": "tool_call_response",
                            "id": id,
                            "response": content,
                        })),
                        RequestPart::RetryPrompt { content, .. } => {
                            user.push(json!({ "type": "text", "content": content }))
                        }
                    }
                }
                if !tool.is_empty() {
                    out.push(json!({ "role": "tool", "parts": tool }));
                }
                if !user.is_empty() {
                    out.push(json!({ "role": "user", "parts": user }));
                }
            }
            Message::Response(r) => out.push(json!({
                "role": "assistant",
                "parts": response_parts(r),
            })),
        }
    }
    Value::from(out).to_string()
}

/// `gen_ai.output.messages`: the response as one assistant message.
pub fn output_messages(r: &ModelResponse) -> String {
    json!([{
        "role": "assistant",
        "parts": response_parts(r),
        "finish_reason": r.finish_reason.map(finish_reason_str).unwrap_or("stop"),
    }])
    .to_string()
}

/// `gen_ai.system_instructions`: the instructions of the last request, if any.
pub fn system_instructions(messages: &[Message]) -> Option<String> {
    let text = messages
        .iter()
        .rev()
        .find_map(|m| m.as_request().and_then(|r| r.instructions.as_deref()))?;
    Some(json!([{ "type": "text", "content": text }]).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::ModelRequest;

    #[test]
    fn messages_take_the_conventions_shape() {
        let messages = vec![
            Message::Request(ModelRequest {
                parts: vec![RequestPart::UserPrompt {
                    content: "hi".into(),
                }],
                instructions: Some("be brief".into()),
            }),
            Message::Response(ModelResponse::tool_call("add", json!({ "a": 1 }))),
            Message::Request(ModelRequest {
                parts: vec![RequestPart::ToolReturn {
                    tool_name: "add".into(),
                    tool_call_id: "call_1".into(),
                    content: json!(2),
                }],
                instructions: Some("be brief".into()),
            }),
        ];
        let v: Value = serde_json::from_str(&input_messages(&messages)).unwrap();
        assert_eq!(v[0]["role"], "user");
        assert_eq!(v[0]["parts"][0]["content"], "hi");
        assert_eq!(v[1]["role"], "assistant");
        assert_eq!(v[1]["parts"][0]["type"], "tool_call");
        assert_eq!(v[1]["parts"][0]["arguments"]["a"], 1);
        assert_eq!(v[2]["role"], "tool");
        assert_eq!(v[2]["parts"][0]["response"], 2);
        assert_eq!(
            system_instructions(&messages).as_deref(),
            Some(r#"[{"content":"be brief","type":"text"}]"#)
        );
        let r = ModelResponse::text("done");
        assert_eq!(finish_reasons(&r), r#"["stop"]"#);
        let out: Value = serde_json::from_str(&output_messages(&r)).unwrap();
        assert_eq!(out[0]["parts"][0]["content"], "done");
    }

    #[test]
    fn secrets_are_masked() {
        let t = "HTTP 401: Incorrect API key provided: sk-proj-abcdef123456. Header Authorization: Bearer tok3n-value, key AIzaSyA1234567890abcdef";
        let r = redact_secrets(t);
        assert!(!r.contains("sk-proj"), "{r}");
        assert!(!r.contains("tok3n"), "{r}");
        assert!(!r.contains("AIzaSy"), "{r}");
        assert!(
            r.starts_with("HTTP 401: Incorrect API key provided: [REDACTED] Header"),
            "{r}"
        );
        assert_eq!(
            redact_secrets("model `gpt-4.1` timed out"),
            "model `gpt-4.1` timed out"
        );
    }

    #[test]
    fn capture_is_off_unless_asked() {
        set_capture_content(Some(true));
        assert!(capture_content());
        set_capture_content(Some(false));
        assert!(!capture_content());
        set_capture_content(None);
    }
}
