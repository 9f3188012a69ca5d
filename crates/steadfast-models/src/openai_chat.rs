//! OpenAI Chat Completions (`POST {base_url}/chat/completions`), and every server that speaks it:
//! Ollama, vLLM, llama.cpp, Gemini's OpenAI-compatible endpoint, and so on.
//!
//! The mapping from the core's messages to the wire:
//!
//! * the instructions of the **last** [`ModelRequest`](steadfast_core::ModelRequest) become a
//!   leading `system` message (they are re-sent every turn, never taken from history);
//! * system-prompt parts become `system` messages and user prompts `user` messages, where they
//!   occur;
//! * a [`ModelResponse`] becomes one `assistant` message: its text parts joined (or `null` when it
//!   only calls tools) and its `tool_calls`; thinking parts are dropped;
//! * tool returns, and retry prompts that answer a tool call, become `tool` messages; other retry
//!   prompts become `user` messages;
//! * a tool call with an empty id (some compatible servers send `""`) gets a generated id that is
//!   derived from its position, so a replayed conversation produces the same request byte for
//!   byte, and the `tool` message answering it carries the same id.
//!
//! The pure parts (the request builder, the response parser and the stream decoder) are public so
//! that tests and fuzzers can drive them without HTTP.

use std::collections::VecDeque;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use steadfast_core::{
    FinishReason, Message, Model, ModelError, ModelRequestParams, ModelResponse, ModelSettings,
    ModelStream, OutputMode, RequestPart, ResponseAssembler, ResponsePart, StreamEvent,
    ToolDefinition, Usage,
};

use crate::http::{ClientConfig, HttpClient, event_json, invalid, truncate};
use crate::prices;
use crate::sse::SseEvent;
use crate::streaming::{StreamDecoder, decode_stream};

/// The base URL used when `OPENAI_BASE_URL` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The provider name this model reports unless [`OpenAIChatModel::with_provider_name`] changes it.
pub const PROVIDER: &str = "openai";

/// The request-body field OpenAI's current API uses for the token limit. Compatible servers
/// (any other provider name) get the older, more widely supported `max_tokens`.
const MAX_COMPLETION_TOKENS: &str = "max_completion_tokens";
const MAX_TOKENS: &str = "max_tokens";

/// A model behind the OpenAI Chat Completions API.
///
/// ```no_run
/// # fn main() -> Result<(), steadfast_core::ModelError> {
/// use steadfast_models::{ClientConfig, OpenAIChatModel};
///
/// // From OPENAI_API_KEY and OPENAI_BASE_URL:
/// let gpt = OpenAIChatModel::new("gpt-4.1")?;
/// // A local compatible server (no key needed):
/// let local = OpenAIChatModel::with_config("llama3.2", ClientConfig::new("http://127.0.0.1:11434/v1"))?
///     .with_provider_name("ollama");
/// # let _ = (gpt, local);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OpenAIChatModel {
    name: String,
    provider: String,
    http: HttpClient,
}

impl OpenAIChatModel {
    /// The model `name`, configured from the environment: the base URL from `OPENAI_BASE_URL`
    /// (default [`DEFAULT_BASE_URL`]) and the key from `OPENAI_API_KEY`.
    ///
    /// A missing key is not an error here, because local compatible servers need none; the
    /// request is then sent without an `Authorization` header and the server decides.
    pub fn new(name: &str) -> Result<Self, ModelError> {
        let config =
            ClientConfig::from_env("OPENAI_BASE_URL", DEFAULT_BASE_URL, &["OPENAI_API_KEY"]);
        Self::with_config(name, config)
    }

    /// The model `name` with an explicit configuration (base URL, key, timeouts, retries).
    pub fn with_config(name: &str, config: ClientConfig) -> Result<Self, ModelError> {
        if name.trim().is_empty() {
            return Err(ModelError::Config("the OpenAI model name is empty".into()));
        }
        Ok(OpenAIChatModel {
            name: name.to_string(),
            provider: PROVIDER.to_string(),
            http: HttpClient::new(PROVIDER, config)?,
        })
    }

    /// The same model reporting another provider name (`ollama`, `vllm`, ...) in its responses,
    /// usage and errors. A provider other than `openai` also gets the token limit as
    /// `max_tokens` instead of `max_completion_tokens`, since compatible servers often know only
    /// the older field.
    pub fn with_provider_name(mut self, provider: &str) -> Self {
        self.provider = provider.to_string();
        self.http.set_provider(provider);
        self
    }

    /// The client configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.http.config
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        match &self.http.config.api_key {
            Some(key) => vec![("authorization", format!("Bearer {key}"))],
            None => Vec::new(),
        }
    }

    fn max_tokens_field(&self) -> &'static str {
        if self.provider == PROVIDER {
            MAX_COMPLETION_TOKENS
        } else {
            MAX_TOKENS
        }
    }

    fn body(
        &self,
        messages: &[Message],
        params: &ModelRequestParams,
        settings: &ModelSettings,
        stream: bool,
    ) -> Value {
        build_body(
            &self.name,
            messages,
            params,
            settings,
            stream,
            self.max_tokens_field(),
        )
    }
}

impl Model for OpenAIChatModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &str {
        &self.provider
    }

    fn request<'a>(
        &'a self,
        messages: &'a [Message],
        params: &'a ModelRequestParams,
        settings: &'a ModelSettings,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let body = self.body(messages, params, settings, false);
            let url = self.http.url("/chat/completions");
            let answer = self.http.post_json(&url, &self.headers(), &body).await?;
            parse_with(&self.provider, &answer, Some(&self.name))
        })
    }

    fn request_stream<'a>(
        &'a self,
        messages: &'a [Message],
        params: &'a ModelRequestParams,
        settings: &'a ModelSettings,
    ) -> BoxFuture<'a, Result<ModelStream, ModelError>> {
        Box::pin(async move {
            let body = self.body(messages, params, settings, true);
            let url = self.http.url("/chat/completions");
            let headers = self.headers();
            // The shared client sets no timeout on streamed requests (the body may legitimately
            // take long); bound the wait for the answer to start, so a server that accepts and
            // stays silent cannot hang the run. Once bytes flow, the idle timeout takes over.
            let timeout = self.http.config.timeout;
            let events = match tokio::time::timeout(
                timeout,
                self.http.post_sse(&url, &headers, &body),
            )
            .await
            {
                Ok(r) => r?,
                Err(_) => {
                    return Err(ModelError::Timeout {
                        provider: self.provider.clone(),
                        timeout,
                    });
                }
            };
            let decoder = ChatStreamDecoder::new(&self.provider).with_fallback_model(&self.name);
            Ok(decode_stream(events, Box::new(decoder)))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// The request body for `model`, as OpenAI's API expects it.
///
/// `stream` selects a streamed answer (`stream: true` with `stream_options.include_usage`, so the
/// last chunk carries the usage) or a whole one (`stream: false`). The token limit is sent as
/// `max_completion_tokens`; `settings.extra_body` is merged in last, at the top level, so it can
/// override anything.
pub fn build_request(
    model: &str,
    messages: &[Message],
    params: &ModelRequestParams,
    settings: &ModelSettings,
    stream: bool,
) -> Value {
    build_body(
        model,
        messages,
        params,
        settings,
        stream,
        MAX_COMPLETION_TOKENS,
    )
}

fn build_body(
    model: &str,
    messages: &[Message],
    params: &ModelRequestParams,
    settings: &ModelSettings,
    stream: bool,
    max_tokens_field: &str,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.to_string()));
    body.insert("messages".into(), Value::Array(map_messages(messages)));

    let tools: Vec<Value> = params.all_tools().map(tool_json).collect();
    if !tools.is_empty() {
        let choice = if params.allow_text_output {
            "auto"
        } else {
            "required"
        };
        body.insert("tool_choice".into(), Value::String(choice.into()));
        body.insert("tools".into(), Value::Array(tools));
        // OpenAI rejects `parallel_tool_calls` in a request without tools.
        if let Some(p) = settings.parallel_tool_calls {
            body.insert("parallel_tool_calls".into(), Value::Bool(p));
        }
    }

    if params.output_mode == OutputMode::Native
        && let Some(schema) = &params.output_schema
    {
        let mut js = Map::new();
        js.insert("name".into(), Value::String(schema.name.clone()));
        if let Some(d) = &schema.description {
            js.insert("description".into(), Value::String(d.clone()));
        }
        js.insert("schema".into(), schema.schema.clone());
        if let Some(strict) = schema.strict {
            js.insert("strict".into(), Value::Bool(strict));
        }
        body.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": Value::Object(js)}),
        );
    }

    if let Some(n) = settings.max_tokens {
        body.insert(max_tokens_field.to_string(), json!(n));
    }
    if let Some(t) = settings.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = settings.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(s) = settings.seed {
        body.insert("seed".into(), json!(s));
    }

    body.insert("stream".into(), Value::Bool(stream));
    if stream {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }

    if let Some(Value::Object(extra)) = &settings.extra_body {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    Value::Object(body)
}

fn tool_json(def: &ToolDefinition) -> Value {
    let mut f = Map::new();
    f.insert("name".into(), Value::String(def.name.clone()));
    if let Some(d) = &def.description {
        f.insert("description".into(), Value::String(d.clone()));
    }
    f.insert("parameters".into(), def.parameters.clone());
    if let Some(strict) = def.strict {
        f.insert("strict".into(), Value::Bool(strict));
    }
    json!({"type": "function", "function": Value::Object(f)})
}

/// The `messages` array for a conversation (see the module documentation for the mapping).
pub fn map_messages(messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::new();
    let instructions = messages
        .iter()
        .rev()
        .find_map(Message::as_request)
        .and_then(|r| r.instructions.as_deref())
        .filter(|s| !s.trim().is_empty());
    if let Some(text) = instructions {
        out.push(json!({"role": "system", "content": text}));
    }

    // Calls of the latest response whose id was empty: (tool name, generated id), in order, so
    // that the answers (which carry the same empty id) get the same generated id.
    let mut unanswered: VecDeque<(String, String)> = VecDeque::new();
    for (mi, message) in messages.iter().enumerate() {
        match message {
            Message::Request(req) => {
                for (pi, part) in req.parts.iter().enumerate() {
                    match part {
                        RequestPart::SystemPrompt { content } => {
                            out.push(json!({"role": "system", "content": content}));
                        }
                        RequestPart::UserPrompt { content } => {
                            out.push(json!({"role": "user", "content": content}));
                        }
                        RequestPart::ToolReturn {
                            tool_name,
                            tool_call_id,
                            content,
                        } => {
                            let id =
                                answer_id(tool_call_id, Some(tool_name), &mut unanswered, mi, pi);
                            out.push(json!({
                                "role": "tool",
                                "tool_call_id": id,
                                "content": tool_content(content),
                            }));
                        }
                        RequestPart::RetryPrompt {
                            tool_name,
                            tool_call_id: Some(tool_call_id),
                            content,
                        } => {
                            let id = answer_id(
                                tool_call_id,
                                tool_name.as_deref(),
                                &mut unanswered,
                                mi,
                                pi,
                            );
                            out.push(json!({
                                "role": "tool",
                                "tool_call_id": id,
                                "content": content,
                            }));
                        }
                        RequestPart::RetryPrompt {
                            tool_call_id: None,
                            content,
                            ..
                        } => {
                            out.push(json!({"role": "user", "content": content}));
                        }
                    }
                }
            }
            Message::Response(resp) => {
                unanswered.clear();
                let mut texts: Vec<&str> = Vec::new();
                let mut calls = Vec::new();
                for part in &resp.parts {
                    match part {
                        ResponsePart::Text { content } if !content.is_empty() => {
                            texts.push(content)
                        }
                        ResponsePart::ToolCall(call) => {
                            let id = if call.tool_call_id.is_empty() {
                                let generated = format!("call_{mi}_{}", calls.len());
                                unanswered.push_back((call.tool_name.clone(), generated.clone()));
                                generated
                            } else {
                                call.tool_call_id.clone()
                            };
                            let args = if call.args.trim().is_empty() {
                                "{}"
                            } else {
                                call.args.as_str()
                            };
                            calls.push(json!({
                                "id": id,
                                "type": "function",
                                "function": {"name": call.tool_name, "arguments": args},
                            }));
                        }
                        // Thinking is not sent back over Chat Completions; nor is empty text.
                        _ => {}
                    }
                }
                if texts.is_empty() && calls.is_empty() {
                    // Nothing the API would accept as an assistant message.
                    continue;
                }
                let content = if texts.is_empty() {
                    Value::Null
                } else {
                    Value::String(texts.join("\n\n"))
                };
                let mut m = Map::new();
                m.insert("role".into(), Value::String("assistant".into()));
                m.insert("content".into(), content);
                if !calls.is_empty() {
                    m.insert("tool_calls".into(), Value::Array(calls));
                }
                out.push(Value::Object(m));
            }
        }
    }
    out
}

/// The id a tool message carries: its own, or (when empty) the id generated for the call it
/// answers: the first unanswered call of that tool, else the first unanswered call.
fn answer_id(
    id: &str,
    tool_name: Option<&str>,
    unanswered: &mut VecDeque<(String, String)>,
    message_index: usize,
    part_index: usize,
) -> String {
    if !id.is_empty() {
        return id.to_string();
    }
    let pos = tool_name
        .and_then(|name| unanswered.iter().position(|(n, _)| n == name))
        .unwrap_or(0);
    match unanswered.remove(pos) {
        Some((_, generated)) => generated,
        None => format!("call_{message_index}_answer_{part_index}"),
    }
}

/// A tool's return value as the text of a `tool` message: strings as they are, other JSON
/// serialized.
fn tool_content(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// Parse a (non-streamed) chat completion into a [`ModelResponse`].
///
/// The first choice is used. Tool calls with an empty id get `call_{part index}`, the same id the
/// stream decoder gives them. Usage is priced with [`prices::apply_cost`] for the answering model.
/// Anything malformed gives [`ModelError::InvalidResponse`]; this never panics.
pub fn parse_response(provider: &str, body: &Value) -> Result<ModelResponse, ModelError> {
    parse_with(provider, body, None)
}

fn parse_with(
    provider: &str,
    body: &Value,
    fallback_model: Option<&str>,
) -> Result<ModelResponse, ModelError> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid(provider, "the body is not a JSON object"))?;
    if let Some(err) = obj.get("error").filter(|e| !e.is_null())
        && obj.get("choices").is_none()
    {
        return Err(invalid(
            provider,
            format!("the body reports an error: {}", error_text(err)),
        ));
    }
    let choices = obj
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(provider, "`choices` is missing or not an array"))?;
    let choice = choices
        .first()
        .ok_or_else(|| invalid(provider, "`choices` is empty"))?;
    let message = choice
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(provider, "the first choice has no `message` object"))?;

    let mut parts = Vec::new();
    if let Some(reasoning) = reasoning_text(message.get("reasoning_content"))
        .or_else(|| reasoning_text(message.get("reasoning")))
    {
        parts.push(ResponsePart::Thinking {
            content: reasoning.to_string(),
            id: None,
            signature: None,
            provider: Some(provider.to_string()),
        });
    }

    let text = content_text(message.get("content"))
        .map_err(|m| invalid(provider, format!("message `content` {m}")))?;
    match text {
        Some(t) if !t.is_empty() => parts.push(ResponsePart::Text { content: t }),
        _ => {
            // A refusal replaces the content; the agent sees it as the model's text.
            if let Some(r) = message.get("refusal").and_then(Value::as_str)
                && !r.is_empty()
            {
                parts.push(ResponsePart::Text {
                    content: r.to_string(),
                });
            }
        }
    }

    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (i, call) in calls.iter().enumerate() {
                let function = call.get("function");
                let name = function
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| {
                        invalid(provider, format!("tool call {i} has no function name"))
                    })?;
                let args = arguments_text(function.and_then(|f| f.get("arguments")));
                let args = if args.trim().is_empty() {
                    "{}".to_string()
                } else {
                    args
                };
                let id = match call.get("id").and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => id.to_string(),
                    _ => format!("call_{}", parts.len()),
                };
                parts.push(ResponsePart::tool_call(name, args, id));
            }
        }
        Some(_) => return Err(invalid(provider, "`tool_calls` is not an array")),
    }

    let model_name = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .or_else(|| fallback_model.map(str::to_string));
    let mut usage = obj.get("usage").map(parse_usage).unwrap_or_default();
    price(&mut usage, model_name.as_deref());

    Ok(ModelResponse {
        parts,
        usage,
        model_name,
        provider: Some(provider.to_string()),
        response_id: obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .and_then(finish_reason),
    })
}

/// The text of a message's `content`: a string, or (some compatible servers) an array of
/// `{type: text, text}` parts. `Err` says what was wrong.
fn content_text(content: Option<&Value>) -> Result<Option<String>, &'static str> {
    match content {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(items)) => {
            let mut out = String::new();
            for item in items {
                match item {
                    Value::String(s) => out.push_str(s),
                    Value::Object(o) => {
                        if let Some(t) = o.get("text").and_then(Value::as_str) {
                            out.push_str(t);
                        }
                    }
                    _ => return Err("holds a part that is neither text nor an object"),
                }
            }
            Ok(Some(out))
        }
        Some(_) => Err("is neither a string nor an array"),
    }
}

fn reasoning_text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Tool-call arguments as JSON text: a string as it is; an object (some compatible servers send
/// one) serialized; nothing as an empty string.
fn arguments_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn error_text(err: &Value) -> String {
    match err {
        Value::String(s) => truncate(s, 300),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .map(|s| truncate(s, 300))
            .unwrap_or_else(|| truncate(&other.to_string(), 300)),
    }
}

/// The core's finish reason for OpenAI's `finish_reason`.
fn finish_reason(s: &str) -> Option<FinishReason> {
    Some(match s {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCall,
        "content_filter" => FinishReason::ContentFilter,
        "error" => FinishReason::Error,
        _ => return None,
    })
}

fn count(v: Option<&Value>) -> u64 {
    v.and_then(|v| {
        v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        })
    })
    .unwrap_or(0)
}

/// Token counts from a `usage` object (missing numbers count as zero).
fn parse_usage(u: &Value) -> Usage {
    Usage {
        input_tokens: count(u.get("prompt_tokens")),
        output_tokens: count(u.get("completion_tokens")),
        cache_read_tokens: count(u.pointer("/prompt_tokens_details/cached_tokens")),
        reasoning_tokens: count(u.pointer("/completion_tokens_details/reasoning_tokens")),
        ..Usage::default()
    }
}

/// One request's usage, priced for `model`.
fn price(usage: &mut Usage, model: Option<&str>) {
    usage.requests = 1;
    usage.cost_usd = 0.0;
    usage.unpriced_requests = 0;
    prices::apply_cost(model.unwrap_or(""), usage);
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

/// Decodes a streamed chat completion: `data: {chunk}` events, each with `choices[0].delta`
/// holding content or tool-call fragments (keyed by the tool call's `index`, with the id and name
/// on its first fragment), a usage-only chunk with `choices: []` at the end, then `data: [DONE]`.
///
/// A pure state machine: feed it with [`crate::streaming::decode_body`] in tests. A stream that
/// ends before both a `finish_reason` and `[DONE]` were seen is an
/// [`ModelError::InvalidResponse`], not a silently truncated answer.
#[derive(Debug)]
pub struct ChatStreamDecoder {
    provider: String,
    fallback_model: Option<String>,
    assembler: ResponseAssembler,
    done: bool,
    finished: bool,
    chunks: usize,
    /// Key of the last tool call that came without an `index` (some compatible servers omit it).
    unindexed_call: Option<String>,
    unindexed_calls: usize,
}

impl ChatStreamDecoder {
    /// A decoder for `provider` (the name that goes into the response and errors).
    pub fn new(provider: &str) -> Self {
        ChatStreamDecoder {
            provider: provider.to_string(),
            fallback_model: None,
            assembler: ResponseAssembler::new(),
            done: false,
            finished: false,
            chunks: 0,
            unindexed_call: None,
            unindexed_calls: 0,
        }
    }

    /// The model name to report (and price) when no chunk names one.
    pub fn with_fallback_model(mut self, model: &str) -> Self {
        self.fallback_model = Some(model.to_string());
        self
    }

    fn tool_key(&mut self, call: &Value, has_start: bool) -> String {
        if let Some(index) = call.get("index").and_then(Value::as_u64) {
            return format!("tool:{index}");
        }
        match (&self.unindexed_call, has_start) {
            (Some(key), false) => key.clone(),
            _ => {
                let key = format!("tool:unindexed:{}", self.unindexed_calls);
                self.unindexed_calls += 1;
                self.unindexed_call = Some(key.clone());
                key
            }
        }
    }

    fn on_choice(&mut self, choice: &Value, out: &mut Vec<StreamEvent>) {
        if let Some(delta) = choice.get("delta") {
            if let Some(r) = reasoning_text(delta.get("reasoning_content"))
                .or_else(|| reasoning_text(delta.get("reasoning")))
            {
                out.extend(self.assembler.thinking("thinking", r));
            }
            if let Ok(Some(text)) = content_text(delta.get("content")) {
                out.extend(self.assembler.text("text", &text));
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    let function = call.get("function");
                    let name = function
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty());
                    let id = call
                        .get("id")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty());
                    let key = self.tool_key(call, name.is_some() || id.is_some());
                    let args = arguments_text(function.and_then(|f| f.get("arguments")));
                    out.extend(self.assembler.tool_call(&key, name, id, &args));
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.assembler.finish_reason = finish_reason(reason);
            self.finished = true;
        }
    }
}

impl StreamDecoder for ChatStreamDecoder {
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ModelError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk = event_json(&self.provider, event)?;
        if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
            return Err(invalid(
                &self.provider,
                format!("the stream reported an error: {}", error_text(err)),
            ));
        }
        if !chunk.is_object() {
            return Err(invalid(
                &self.provider,
                format!("a stream chunk is not an object: {}", truncate(data, 200)),
            ));
        }
        self.chunks += 1;
        if self.assembler.response_id.is_none()
            && let Some(id) = chunk
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        {
            self.assembler.response_id = Some(id.to_string());
        }
        if let Some(m) = chunk
            .get("model")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            self.assembler.model_name = Some(m.to_string());
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.assembler.usage = parse_usage(u);
        }
        let mut out = Vec::new();
        if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
            // One completion is asked for (`n` is never sent): only choice 0 counts.
            for choice in choices {
                if choice.get("index").and_then(Value::as_u64).unwrap_or(0) == 0 {
                    self.on_choice(choice, &mut out);
                }
            }
        }
        Ok(out)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(self: Box<Self>) -> Result<ModelResponse, ModelError> {
        let this = *self;
        if this.chunks == 0 {
            return Err(invalid(
                &this.provider,
                "the stream ended without any chunk",
            ));
        }
        if !this.done && !this.finished {
            return Err(invalid(
                &this.provider,
                "the stream ended before the response was complete (no finish_reason, no [DONE])",
            ));
        }
        let mut assembler = this.assembler;
        if assembler.model_name.is_none() {
            assembler.model_name = this.fallback_model;
        }
        let model = assembler.model_name.clone();
        price(&mut assembler.usage, model.as_deref());
        Ok(assembler.finish(&this.provider))
    }
}

/// A boxed [`ChatStreamDecoder`] for `provider`, for [`crate::streaming::decode_body`] and
/// [`decode_stream`].
pub fn stream_decoder(provider: &str) -> Box<dyn StreamDecoder> {
    Box::new(ChatStreamDecoder::new(provider))
}
