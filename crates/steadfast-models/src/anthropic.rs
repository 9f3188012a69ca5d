//! Anthropic Messages API (`POST {base_url}/v1/messages`).
//!
//! The mapping, in short:
//!
//! * System prompts kept in history and the instructions of the last request become the
//!   top-level `system` string.
//! * Request parts become `user` messages of content blocks (`text`, `tool_result`); a
//!   response becomes an `assistant` message (`text`, `tool_use`, `thinking`,
//!   `redacted_thinking`). Adjacent messages of the same role are merged, because the API wants
//!   the roles to alternate.
//! * Tools become `{name, description, input_schema}`; `tool_choice` is `any` when the model must
//!   call a tool and `auto` otherwise. Native output becomes
//!   `output_config: {format: {type: json_schema, schema}}` (generally available, no beta header).
//! * `max_tokens` is required by the API; without a setting we send [`DEFAULT_MAX_TOKENS`].
//!
//! Responses map back the same way; blocks of server-side tools (web search, tool search, ...)
//! are not modelled by the core and are skipped.

use std::collections::HashMap;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use steadfast_core::{
    FinishReason, Message, Model, ModelError, ModelRequestParams, ModelResponse, ModelSettings,
    ModelStream, OutputMode, RequestPart, ResponseAssembler, ResponsePart, StreamEvent, Usage,
};

use crate::http::{ClientConfig, HttpClient, event_json, invalid, truncate};
use crate::prices;
use crate::sse::SseEvent;
use crate::streaming::{StreamDecoder, decode_stream};

/// The official API's base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The API version sent in the `anthropic-version` header.
pub const API_VERSION: &str = "2023-06-01";

/// `max_tokens` when the settings leave it unset (the API requires a value). Every recorded
/// exchange in the conformance cassettes uses this value, and every current Claude model accepts it.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The id given to the thinking part that stands for a `redacted_thinking` block; its encrypted
/// `data` is kept as the part's signature.
pub const REDACTED_THINKING_ID: &str = "redacted_thinking";

/// The provider recorded on thinking parts: their signatures only mean something to Anthropic's
/// API, whatever name the model itself goes by.
const THINKING_PROVIDER: &str = "anthropic";

const OFFICIAL_HOST: &str = "api.anthropic.com";

/// A Claude model behind the Anthropic Messages API (or a server that speaks it).
#[derive(Debug)]
pub struct AnthropicModel {
    name: String,
    provider: String,
    http: HttpClient,
}

impl AnthropicModel {
    /// The model `name` (`claude-haiku-4-5`, ...), configured from the environment: the key from
    /// `ANTHROPIC_API_KEY`, the base URL from `ANTHROPIC_BASE_URL` (default
    /// `https://api.anthropic.com`). A missing key is reported when a request is made.
    pub fn new(name: &str) -> Result<Self, ModelError> {
        let config = ClientConfig::from_env(
            "ANTHROPIC_BASE_URL",
            DEFAULT_BASE_URL,
            &["ANTHROPIC_API_KEY"],
        );
        Self::with_config(name, config)
    }

    /// The model `name` with an explicit configuration. The base URL is the part before
    /// `/v1/messages`.
    pub fn with_config(name: &str, config: ClientConfig) -> Result<Self, ModelError> {
        if name.trim().is_empty() {
            return Err(ModelError::Config(
                "the Anthropic model name is empty".to_string(),
            ));
        }
        Ok(AnthropicModel {
            name: name.to_string(),
            provider: "anthropic".to_string(),
            http: HttpClient::new("anthropic", config)?,
        })
    }

    /// The same model reporting another provider name (for a compatible server or gateway).
    pub fn with_provider_name(mut self, provider: &str) -> Self {
        self.provider = provider.to_string();
        self.http.set_provider(provider);
        self
    }

    /// The endpoint. The recorded cassettes show `/v1/messages?beta=true`: that query string is
    /// how the recording client (Anthropic's Python SDK, beta namespace) marks its calls. It
    /// selects no feature on the server, so we call the plain endpoint.
    fn url(&self) -> String {
        self.http.url("/v1/messages")
    }

    fn headers(&self) -> Result<Vec<(&'static str, String)>, ModelError> {
        let configured = |name: &str| {
            self.http
                .config
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        let mut headers = Vec::new();
        if !configured("anthropic-version") {
            headers.push(("anthropic-version", API_VERSION.to_string()));
        }
        match &self.http.config.api_key {
            Some(key) => headers.push(("x-api-key", key.clone())),
            None if self.http.config.is_host(OFFICIAL_HOST)
                && !configured("x-api-key")
                && !configured("authorization") =>
            {
                return Err(ModelError::Config(
                    "no Anthropic API key: set ANTHROPIC_API_KEY or pass one with \
                     ClientConfig::with_api_key"
                        .to_string(),
                ));
            }
            // Local servers and gateways may need no key (or take it from configured headers).
            None => {}
        }
        Ok(headers)
    }
}

impl Model for AnthropicModel {
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
            let headers = self.headers()?;
            let body = build_request(&self.name, messages, params, settings, false);
            let answer = self.http.post_json(&self.url(), &headers, &body).await?;
            parse(&self.provider, Some(&self.name), &answer)
        })
    }

    fn request_stream<'a>(
        &'a self,
        messages: &'a [Message],
        params: &'a ModelRequestParams,
        settings: &'a ModelSettings,
    ) -> BoxFuture<'a, Result<ModelStream, ModelError>> {
        Box::pin(async move {
            let headers = self.headers()?;
            let body = build_request(&self.name, messages, params, settings, true);
            let events = self.http.post_sse(&self.url(), &headers, &body).await?;
            let decoder =
                AnthropicStreamDecoder::new(&self.provider).with_requested_model(&self.name);
            Ok(decode_stream(events, Box::new(decoder)))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// The JSON body of a Messages API request for `model`.
///
/// `stream` sets the `stream` flag; everything else comes from the messages, the parameters and
/// the settings. `settings.extra_body` is merged last, recursively into objects, so it can add
/// fields such as `thinking` or `output_config.effort` next to the ones built here.
pub fn build_request(
    model: &str,
    messages: &[Message],
    params: &ModelRequestParams,
    settings: &ModelSettings,
    stream: bool,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(settings.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if let Some(system) = system_prompt(messages) {
        body.insert("system".into(), Value::String(system));
    }
    body.insert("messages".into(), Value::Array(map_messages(messages)));
    body.insert("stream".into(), Value::Bool(stream));

    let tools: Vec<Value> = params.all_tools().map(tool_json).collect();
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        let mut choice = Map::new();
        let kind = if params.allow_text_output {
            "auto"
        } else {
            "any"
        };
        choice.insert("type".into(), json!(kind));
        if settings.parallel_tool_calls == Some(false) {
            choice.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
        body.insert("tool_choice".into(), Value::Object(choice));
    }

    if params.output_mode == OutputMode::Native
        && let Some(schema) = &params.output_schema
    {
        body.insert(
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": closed_objects(&schema.schema)}}),
        );
    }
    if let Some(t) = settings.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = settings.top_p {
        body.insert("top_p".into(), json!(p));
    }

    let extra = match &settings.extra_body {
        Some(Value::Object(extra)) => Some(extra),
        Some(other) => {
            tracing::warn!(extra_body = %truncate(&other.to_string(), 100), "extra_body is not a JSON object; ignored");
            None
        }
        None => None,
    };
    if let Some(extra) = extra {
        merge_into(&mut body, extra);
    }

    // The API rejects forced tool use while extended thinking is on. Unless the caller chose a
    // tool_choice themselves, fall back to `auto`; the agent loop still insists on a tool call
    // (it answers plain text with a retry prompt).
    let thinking_on = matches!(
        body.get("thinking")
            .and_then(|t| t.get("type"))
            .and_then(Value::as_str),
        Some("enabled" | "adaptive")
    );
    let caller_choice = extra.is_some_and(|e| e.contains_key("tool_choice"));
    if thinking_on
        && !caller_choice
        && let Some(Value::Object(choice)) = body.get_mut("tool_choice")
        && choice.get("type").and_then(Value::as_str) == Some("any")
    {
        choice.insert("type".into(), json!("auto"));
    }
    Value::Object(body)
}

fn tool_json(t: &steadfast_core::ToolDefinition) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(t.name));
    if let Some(d) = &t.description {
        o.insert("description".into(), json!(d));
    }
    o.insert("input_schema".into(), t.parameters.clone());
    if let Some(strict) = t.strict {
        o.insert("strict".into(), Value::Bool(strict));
    }
    Value::Object(o)
}

/// Structured outputs need `additionalProperties: false` on every object schema; add it where a
/// schema says nothing (an explicit value is left alone).
fn closed_objects(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                // Literal values, not schemas.
                let literal = matches!(k.as_str(), "default" | "examples" | "const" | "enum");
                out.insert(
                    k.clone(),
                    if literal {
                        v.clone()
                    } else {
                        closed_objects(v)
                    },
                );
            }
            if out.get("type").and_then(Value::as_str) == Some("object")
                && !out.contains_key("additionalProperties")
            {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(closed_objects).collect()),
        other => other.clone(),
    }
}

fn merge_into(target: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (k, v) in extra {
        match (target.get_mut(k), v) {
            (Some(Value::Object(t)), Value::Object(e)) => merge_into(t, e),
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

/// System prompts from history, then the instructions of the last request, blank-line separated.
fn system_prompt(messages: &[Message]) -> Option<String> {
    let mut pieces: Vec<&str> = Vec::new();
    for m in messages {
        if let Message::Request(r) = m {
            for p in &r.parts {
                if let RequestPart::SystemPrompt { content } = p
                    && !content.is_empty()
                {
                    pieces.push(content);
                }
            }
        }
    }
    let last = messages.iter().rev().find_map(Message::as_request);
    if let Some(instructions) = last.and_then(|r| r.instructions.as_deref())
        && !instructions.is_empty()
    {
        pieces.push(instructions);
    }
    (!pieces.is_empty()).then(|| pieces.join("\n\n"))
}

fn map_messages(messages: &[Message]) -> Vec<Value> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, blocks): (&'static str, Vec<Value>) = match m {
            Message::Request(r) => ("user", r.parts.iter().filter_map(request_block).collect()),
            Message::Response(r) => (
                "assistant",
                r.parts.iter().filter_map(response_block).collect(),
            ),
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    turns
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == "user" {
                // Tool results must open the user turn that follows the tool calls; a stable
                // partition keeps both groups in their order.
                blocks
                    .sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
            }
            json!({"role": role, "content": blocks})
        })
        .collect()
}

fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}

fn request_block(part: &RequestPart) -> Option<Value> {
    match part {
        RequestPart::SystemPrompt { .. } => None,
        RequestPart::UserPrompt { content } => text_block(content),
        RequestPart::ToolReturn {
            tool_call_id,
            content,
            ..
        } => Some(json!({
            "type": "tool_result",
            "tool_use_id": tool_call_id,
            "content": tool_content(content),
            "is_error": false,
        })),
        RequestPart::RetryPrompt {
            tool_call_id: Some(id),
            content,
            ..
        } => Some(json!({
            "type": "tool_result",
            "tool_use_id": id,
            "content": content,
            "is_error": true,
        })),
        RequestPart::RetryPrompt { content, .. } => text_block(content),
    }
}

/// A tool's return value as the text the model reads: strings as they are, anything else as JSON.
fn tool_content(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn response_block(part: &ResponsePart) -> Option<Value> {
    match part {
        ResponsePart::Text { content } => text_block(content),
        ResponsePart::ToolCall(call) => Some(json!({
            "type": "tool_use",
            "id": call.tool_call_id,
            "name": call.tool_name,
            "input": call.args_object(),
        })),
        ResponsePart::Thinking {
            content,
            id,
            signature,
            provider,
        } => {
            // Reasoning from other providers, or without the signature the API checks, cannot be
            // sent back; it is left out.
            if provider.as_deref() != Some(THINKING_PROVIDER) {
                return None;
            }
            let signature = signature.as_deref().filter(|s| !s.is_empty())?;
            if id.as_deref() == Some(REDACTED_THINKING_ID) {
                Some(json!({"type": "redacted_thinking", "data": signature}))
            } else {
                Some(json!({"type": "thinking", "thinking": content, "signature": signature}))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// Parse a Messages API response body (`{type: message, content: [...], usage, ...}`) into a
/// [`ModelResponse`] from `provider`, with usage and cost. Malformed bodies give
/// [`ModelError::InvalidResponse`]; an error body (`{type: error, ...}`) gives the error it reports.
pub fn parse_response(provider: &str, body: &Value) -> Result<ModelResponse, ModelError> {
    parse(provider, None, body)
}

fn parse(
    provider: &str,
    requested_model: Option<&str>,
    body: &Value,
) -> Result<ModelResponse, ModelError> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid(provider, "the response body is not a JSON object"))?;
    if obj.get("type").and_then(Value::as_str) == Some("error") {
        return Err(error_from_event(provider, body));
    }
    let content = obj
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(provider, "the response has no `content` array"))?;
    let mut parts = Vec::with_capacity(content.len());
    for block in content {
        if let Some(part) = parse_block(provider, block)? {
            parts.push(part);
        }
    }
    let model_name = obj
        .get("model")
        .and_then(Value::as_str)
        .or(requested_model)
        .map(str::to_string);
    let mut usage = RawUsage::default();
    if let Some(u) = obj.get("usage") {
        usage.update(u);
    }
    let usage = usage.to_usage(model_name.as_deref());
    Ok(ModelResponse {
        parts,
        usage,
        model_name,
        provider: Some(provider.to_string()),
        response_id: obj.get("id").and_then(Value::as_str).map(str::to_string),
        finish_reason: obj
            .get("stop_reason")
            .and_then(Value::as_str)
            .and_then(finish_reason),
    })
}

fn str_field<'v>(
    provider: &str,
    block: &'v Value,
    kind: &str,
    field: &str,
) -> Result<&'v str, ModelError> {
    block.get(field).and_then(Value::as_str).ok_or_else(|| {
        invalid(
            provider,
            format!("a `{kind}` block has no string `{field}`"),
        )
    })
}

fn parse_block(provider: &str, block: &Value) -> Result<Option<ResponsePart>, ModelError> {
    let kind = block
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(provider, "a content block has no `type`"))?;
    Ok(match kind {
        "text" => Some(ResponsePart::Text {
            content: str_field(provider, block, kind, "text")?.to_string(),
        }),
        "tool_use" => {
            let args = match block.get("input") {
                None | Some(Value::Null) => "{}".to_string(),
                Some(input) => input.to_string(),
            };
            Some(ResponsePart::tool_call(
                str_field(provider, block, kind, "name")?,
                args,
                str_field(provider, block, kind, "id")?,
            ))
        }
        "thinking" => Some(ResponsePart::Thinking {
            content: block
                .get("thinking")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            id: None,
            signature: block
                .get("signature")
                .and_then(Value::as_str)
                .map(str::to_string),
            provider: Some(THINKING_PROVIDER.to_string()),
        }),
        "redacted_thinking" => Some(ResponsePart::Thinking {
            content: String::new(),
            id: Some(REDACTED_THINKING_ID.to_string()),
            signature: Some(str_field(provider, block, kind, "data")?.to_string()),
            provider: Some(THINKING_PROVIDER.to_string()),
        }),
        // Server-side tools (`server_tool_use`, `web_search_tool_result`,
        // `tool_search_tool_result`, ...) run on Anthropic's side; the core has no part for them.
        _ => None,
    })
}

fn finish_reason(stop_reason: &str) -> Option<FinishReason> {
    match stop_reason {
        "end_turn" | "stop_sequence" | "pause_turn" => Some(FinishReason::Stop),
        "max_tokens" | "model_context_window_exceeded" => Some(FinishReason::Length),
        "tool_use" => Some(FinishReason::ToolCall),
        "refusal" => Some(FinishReason::ContentFilter),
        _ => None,
    }
}

/// The HTTP status an error type stands for, so that errors reported inside a body or a stream
/// are retryable exactly when the same error as an HTTP answer would be.
fn status_of_error_type(kind: Option<&str>) -> u16 {
    match kind {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("billing_error") => 402,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("timeout_error") => 504,
        Some("overloaded_error") => 529,
        _ => 500,
    }
}

fn error_from_event(provider: &str, v: &Value) -> ModelError {
    let err = v.get("error").unwrap_or(v);
    let kind = err.get("type").and_then(Value::as_str);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "the provider reported an error: {}",
                truncate(&v.to_string(), 200)
            )
        });
    ModelError::Http {
        provider: provider.to_string(),
        status: status_of_error_type(kind),
        message,
        code: kind.map(str::to_string),
        retry_after: None,
    }
}

/// Token counts as the API reports them: `input_tokens` leaves out cache reads and writes.
#[derive(Debug, Default, Clone, Copy)]
struct RawUsage {
    input: u64,
    cache_write: u64,
    cache_read: u64,
    output: u64,
}

impl RawUsage {
    /// Take every count `u` reports (streams repeat cumulative counts; the last one wins).
    fn update(&mut self, u: &Value) {
        let get = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(n) = get("input_tokens") {
            self.input = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            self.cache_write = n;
        }
        if let Some(n) = get("cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = get("output_tokens") {
            self.output = n;
        }
    }

    fn to_usage(self, model: Option<&str>) -> Usage {
        let mut usage = Usage {
            requests: 1,
            input_tokens: self
                .input
                .saturating_add(self.cache_write)
                .saturating_add(self.cache_read),
            output_tokens: self.output,
            cache_read_tokens: self.cache_read,
            cache_write_tokens: self.cache_write,
            ..Default::default()
        };
        prices::apply_cost(model.unwrap_or_default(), &mut usage);
        usage
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Block {
    Text,
    Thinking,
    ToolUse {
        /// A non-empty `input` given at block start, used only if no `input_json_delta` follows.
        start_input: Option<String>,
        got_delta: bool,
    },
    /// A block we do not model (server tools and anything new); its deltas are dropped.
    Ignored,
}

/// Decodes the Messages API event stream (`message_start`, `content_block_start/delta/stop`,
/// `message_delta`, `message_stop`, `ping`, `error`) into stream events and a [`ModelResponse`].
///
/// Parts are keyed by content-block index. A stream that ends before `message_stop` is an error,
/// not a silently truncated response.
#[derive(Debug)]
pub struct AnthropicStreamDecoder {
    provider: String,
    requested_model: Option<String>,
    asm: ResponseAssembler,
    blocks: HashMap<u64, Block>,
    usage: RawUsage,
    done: bool,
}

impl AnthropicStreamDecoder {
    /// A decoder whose response and errors name `provider`.
    pub fn new(provider: &str) -> Self {
        AnthropicStreamDecoder {
            provider: provider.to_string(),
            requested_model: None,
            asm: ResponseAssembler::new(),
            blocks: HashMap::new(),
            usage: RawUsage::default(),
            done: false,
        }
    }

    /// The model that was asked for, used as the model name if the stream does not say.
    pub fn with_requested_model(mut self, model: &str) -> Self {
        self.requested_model = Some(model.to_string());
        self
    }

    fn index(&self, v: &Value) -> Result<u64, ModelError> {
        v.get("index")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid(&self.provider, "a content-block event has no `index`"))
    }

    fn block_start(&mut self, v: &Value, out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        let index = self.index(v)?;
        let key = index.to_string();
        let block = v.get("content_block").ok_or_else(|| {
            invalid(
                &self.provider,
                "`content_block_start` has no `content_block`",
            )
        })?;
        let s = |field: &str| block.get(field).and_then(Value::as_str).unwrap_or_default();
        let kind = match block
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "text" => {
                out.extend(self.asm.text(&key, s("text")));
                Block::Text
            }
            "thinking" => {
                out.extend(self.asm.thinking(&key, s("thinking")));
                let signature = Some(s("signature").to_string()).filter(|x| !x.is_empty());
                self.asm
                    .thinking_meta(&key, None, signature, THINKING_PROVIDER);
                Block::Thinking
            }
            "redacted_thinking" => {
                self.asm.thinking(&key, "");
                self.asm.thinking_meta(
                    &key,
                    Some(REDACTED_THINKING_ID.to_string()),
                    Some(s("data").to_string()),
                    THINKING_PROVIDER,
                );
                Block::Thinking
            }
            "tool_use" => {
                out.extend(self.asm.tool_call(&key, Some(s("name")), Some(s("id")), ""));
                let start_input = match block.get("input") {
                    Some(Value::Object(m)) if m.is_empty() => None,
                    None | Some(Value::Null) => None,
                    Some(other) => Some(other.to_string()),
                };
                Block::ToolUse {
                    start_input,
                    got_delta: false,
                }
            }
            _ => Block::Ignored,
        };
        self.blocks.insert(index, kind);
        Ok(())
    }

    fn block_delta(&mut self, v: &Value, out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        let index = self.index(v)?;
        let key = index.to_string();
        let Some(delta) = v.get("delta") else {
            return Err(invalid(
                &self.provider,
                "`content_block_delta` has no `delta`",
            ));
        };
        let s = |field: &str| delta.get(field).and_then(Value::as_str).unwrap_or_default();
        let block = self.blocks.get_mut(&index);
        if matches!(block, Some(Block::Ignored)) {
            return Ok(());
        }
        match delta
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "text_delta" => out.extend(self.asm.text(&key, s("text"))),
            "thinking_delta" => out.extend(self.asm.thinking(&key, s("thinking"))),
            "signature_delta" => self.asm.thinking_meta(
                &key,
                None,
                Some(s("signature").to_string()),
                THINKING_PROVIDER,
            ),
            "input_json_delta" => {
                // Arguments without a started tool_use block have no name to belong to.
                if let Some(Block::ToolUse { got_delta, .. }) = block {
                    *got_delta = true;
                    out.extend(self.asm.tool_call(&key, None, None, s("partial_json")));
                }
            }
            // citations_delta and anything newer.
            _ => {}
        }
        Ok(())
    }

    fn block_stop(&mut self, v: &Value, out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        let index = self.index(v)?;
        if let Some(Block::ToolUse {
            start_input,
            got_delta,
        }) = self.blocks.get_mut(&index)
            && !*got_delta
            && let Some(input) = start_input.take()
        {
            out.extend(self.asm.tool_call(&index.to_string(), None, None, &input));
        }
        Ok(())
    }
}

impl StreamDecoder for AnthropicStreamDecoder {
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ModelError> {
        if event.data.trim().is_empty() {
            return Ok(Vec::new());
        }
        // The data lines carry whitespace padding inside the object; a JSON parser of the whole
        // string takes it in its stride.
        let v = event_json(&self.provider, event)?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default()
            .to_string();
        let mut out = Vec::new();
        match kind.as_str() {
            "message_start" => {
                let message = v.get("message").unwrap_or(&Value::Null);
                if let Some(m) = message.get("model").and_then(Value::as_str) {
                    self.asm.model_name = Some(m.to_string());
                }
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    self.asm.response_id = Some(id.to_string());
                }
                if let Some(u) = message.get("usage") {
                    self.usage.update(u);
                }
            }
            "content_block_start" => self.block_start(&v, &mut out)?,
            "content_block_delta" => self.block_delta(&v, &mut out)?,
            "content_block_stop" => self.block_stop(&v, &mut out)?,
            "message_delta" => {
                if let Some(reason) = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.asm.finish_reason = finish_reason(reason);
                }
                if let Some(u) = v.get("usage") {
                    self.usage.update(u);
                }
            }
            "message_stop" => self.done = true,
            "error" => return Err(error_from_event(&self.provider, &v)),
            // `ping` and event types added later.
            _ => {}
        }
        Ok(out)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(self: Box<Self>) -> Result<ModelResponse, ModelError> {
        let mut this = *self;
        if !this.done {
            return Err(invalid(
                &this.provider,
                "the stream ended before `message_stop`",
            ));
        }
        if this.asm.model_name.is_none() {
            this.asm.model_name = this.requested_model.take();
        }
        this.asm.usage = this.usage.to_usage(this.asm.model_name.as_deref());
        Ok(this.asm.finish(&this.provider))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_host_detection() {
        let is = |url: &str| ClientConfig::new(url).is_host(OFFICIAL_HOST);
        assert!(is("https://api.anthropic.com"));
        assert!(is("https://API.anthropic.com:443/"));
        assert!(is("https://user@api.anthropic.com/v1"));
        assert!(!is("http://127.0.0.1:8080"));
        assert!(!is("https://api.anthropic.com.example.org"));
    }

    #[test]
    fn closed_objects_adds_additional_properties_only_where_missing() {
        let s = json!({"type": "object", "properties": {"a": {"type": "object", "additionalProperties": true},
            "b": {"type": "object", "properties": {}}}, "default": {"type": "object"}});
        let c = closed_objects(&s);
        assert_eq!(c["additionalProperties"], json!(false));
        assert_eq!(c["properties"]["a"]["additionalProperties"], json!(true));
        assert_eq!(c["properties"]["b"]["additionalProperties"], json!(false));
        assert_eq!(c["default"], json!({"type": "object"}));
    }
}
