//! The OpenAI Responses API (`POST {base_url}/responses`).
//!
//! Requests are stateless: the whole conversation is sent as `input` items every turn (no
//! `previous_response_id`), so a journaled conversation can be replayed and resumed anywhere.
//!
//! How core messages map to the wire:
//!
//! | core | Responses API |
//! |---|---|
//! | instructions of the last request | top-level `instructions` |
//! | system prompt | `{role: system, content}` |
//! | user prompt | `{role: user, content}` |
//! | tool return | `{type: function_call_output, call_id, output}` |
//! | retry prompt for a tool call | `function_call_output` carrying the retry text |
//! | retry prompt without a tool call | `{role: user, content}` carrying the retry text |
//! | assistant text | `{role: assistant, content}` |
//! | tool call | `{type: function_call, call_id, name, arguments}` |
//! | thinking from this provider | `{type: reasoning, id, summary, encrypted_content}` |
//!
//! A `reasoning` output item becomes one [`ResponsePart::Thinking`] per summary entry (or one
//! empty part when it has no summary), all carrying the item id and tagged with the provider
//! name; the first also carries `encrypted_content` as its signature. Consecutive parts with the
//! same id become one reasoning item again when they are sent back, so the round trip is exact.
//!
//! Reasoning items, and the `id`s of the function calls that follow them, are sent back only
//! for responses that hold tool calls and no text: the API insists that a reasoning item be
//! followed by the very item it produced, and a text part keeps no item id to refer to. Other
//! providers' thinking is not sent. `seed` is not supported by the API and is not sent.
//!
//! Reasoning options (`reasoning`, `include`), `service_tier`, `store`, `truncation` and the
//! like go in [`ModelSettings::extra_body`]; they are merged into the request body as they are.

use std::collections::HashSet;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use steadfast_core::{
    FinishReason, Message, Model, ModelError, ModelRequestParams, ModelResponse, ModelSettings,
    ModelStream, OutputMode, RequestPart, ResponseAssembler, ResponsePart, StreamEvent,
    ToolCallPart, ToolDefinition, Usage,
};

use crate::http::{ClientConfig, HttpClient, event_json, invalid, truncate};
use crate::prices;
use crate::sse::SseEvent;
use crate::streaming::{StreamDecoder, decode_stream};

/// The provider name responses and errors carry unless [`OpenAIResponsesModel::with_provider_name`]
/// says otherwise.
pub const PROVIDER: &str = "openai";

/// The official API's host; requests to it need a key.
const OFFICIAL_HOST: &str = "api.openai.com";

/// A model served by the OpenAI Responses API (or a server that speaks it).
#[derive(Debug, Clone)]
pub struct OpenAIResponsesModel {
    name: String,
    provider: String,
    client: HttpClient,
}

impl OpenAIResponsesModel {
    /// The model `name`, configured from the environment: `OPENAI_BASE_URL` (default
    /// `https://api.openai.com/v1`) and `OPENAI_API_KEY`.
    ///
    /// A missing key is not an error here; a request to the official API without one fails with
    /// [`ModelError::Config`].
    pub fn new(name: &str) -> Result<Self, ModelError> {
        let config = ClientConfig::from_env(
            "OPENAI_BASE_URL",
            "https://api.openai.com/v1",
            &["OPENAI_API_KEY"],
        );
        Self::with_config(name, config)
    }

    /// The model `name`, reached with `config`.
    pub fn with_config(name: &str, config: ClientConfig) -> Result<Self, ModelError> {
        if name.trim().is_empty() {
            return Err(ModelError::Config(
                "the OpenAI Responses model needs a name".into(),
            ));
        }
        Ok(OpenAIResponsesModel {
            name: name.to_string(),
            provider: PROVIDER.to_string(),
            client: HttpClient::new(PROVIDER, config)?,
        })
    }

    /// The same model under another provider name (for a compatible server). Responses, errors
    /// and thinking parts carry this name, and only thinking parts carrying it are sent back.
    pub fn with_provider_name(mut self, provider: &str) -> Self {
        self.provider = provider.to_string();
        self.client.set_provider(provider);
        self
    }

    /// The client configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.client.config
    }

    fn headers(&self) -> Result<Vec<(&'static str, String)>, ModelError> {
        match &self.client.config.api_key {
            Some(key) => Ok(vec![("authorization", format!("Bearer {key}"))]),
            None if self.client.config.is_host(OFFICIAL_HOST) => Err(ModelError::Config(format!(
                "no API key for {}: set OPENAI_API_KEY, or give the ClientConfig a key",
                self.client.config.base_url
            ))),
            None => Ok(Vec::new()),
        }
    }
}

impl Model for OpenAIResponsesModel {
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
            let body = build_request(
                &self.provider,
                &self.name,
                messages,
                params,
                settings,
                false,
            );
            let url = self.client.url("/responses");
            let value = self.client.post_json(&url, &headers, &body).await?;
            parse_response_priced(&self.provider, &value, Some(&self.name))
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
            let body = build_request(&self.provider, &self.name, messages, params, settings, true);
            let url = self.client.url("/responses");
            let events = self.client.post_sse(&url, &headers, &body).await?;
            let decoder = ResponsesStreamDecoder::new(&self.provider).with_model_name(&self.name);
            Ok(decode_stream(events, Box::new(decoder)))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// The request body for `messages`: the model, `input` items, the last request's
/// `instructions`, tools and `tool_choice`, the native output format, the settings, `stream`,
/// and finally `extra_body` merged in (objects merge key by key; anything else replaces).
///
/// `provider` names the thinking parts that may be sent back as reasoning items.
pub fn build_request(
    provider: &str,
    model: &str,
    messages: &[Message],
    params: &ModelRequestParams,
    settings: &ModelSettings,
    stream: bool,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.to_string()));
    body.insert(
        "input".into(),
        Value::Array(input_items(provider, messages)),
    );

    let instructions = messages
        .iter()
        .rev()
        .find_map(Message::as_request)
        .and_then(|r| r.instructions.as_deref())
        .filter(|s| !s.is_empty());
    if let Some(text) = instructions {
        body.insert("instructions".into(), Value::String(text.to_string()));
    }

    let tools: Vec<Value> = params.all_tools().map(tool_json).collect();
    if !tools.is_empty() {
        let choice = if params.allow_text_output {
            "auto"
        } else {
            "required"
        };
        body.insert("tool_choice".into(), Value::String(choice.into()));
        body.insert("tools".into(), Value::Array(tools));
    }

    if params.output_mode == OutputMode::Native
        && let Some(schema) = &params.output_schema
    {
        let mut format = Map::new();
        format.insert("type".into(), json!("json_schema"));
        format.insert("name".into(), json!(schema.name));
        if let Some(d) = &schema.description {
            format.insert("description".into(), json!(d));
        }
        format.insert("schema".into(), schema.schema.clone());
        if let Some(strict) = schema.strict {
            format.insert("strict".into(), json!(strict));
        }
        body.insert("text".into(), json!({ "format": format }));
    }

    if let Some(n) = settings.max_tokens {
        body.insert("max_output_tokens".into(), json!(n));
    }
    if let Some(t) = settings.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = settings.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(p) = settings.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), json!(p));
    }
    body.insert("stream".into(), Value::Bool(stream));

    let mut body = Value::Object(body);
    if let Some(extra @ Value::Object(_)) = &settings.extra_body {
        merge(&mut body, extra);
    }
    body
}

/// Merge `extra` into `target`: objects key by key, recursively; anything else replaces.
fn merge(target: &mut Value, extra: &Value) {
    match (target, extra) {
        (Value::Object(t), Value::Object(e)) => {
            for (k, v) in e {
                match t.get_mut(k) {
                    Some(existing @ Value::Object(_)) if v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, e) => *t = e.clone(),
    }
}

fn tool_json(def: &ToolDefinition) -> Value {
    let mut t = Map::new();
    t.insert("type".into(), json!("function"));
    t.insert("name".into(), json!(def.name));
    if let Some(d) = &def.description {
        t.insert("description".into(), json!(d));
    }
    t.insert("parameters".into(), def.parameters.clone());
    // The Responses API treats a missing `strict` as true, which rejects most schemas; say
    // false unless strictness was asked for.
    t.insert("strict".into(), json!(def.strict.unwrap_or(false)));
    Value::Object(t)
}

fn input_items(provider: &str, messages: &[Message]) -> Vec<Value> {
    let mut items = Vec::new();
    for message in messages {
        match message {
            Message::Request(request) => {
                for part in &request.parts {
                    items.push(request_part_item(part));
                }
            }
            Message::Response(response) => response_items(provider, response, &mut items),
        }
    }
    items
}

fn request_part_item(part: &RequestPart) -> Value {
    match part {
        RequestPart::SystemPrompt { content } => json!({ "role": "system", "content": content }),
        RequestPart::UserPrompt { content } => json!({ "role": "user", "content": content }),
        RequestPart::ToolReturn {
            tool_call_id,
            content,
            ..
        } => {
            let output = match content {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            json!({ "type": "function_call_output", "call_id": tool_call_id, "output": output })
        }
        RequestPart::RetryPrompt {
            tool_call_id: Some(id),
            content,
            ..
        } => json!({
            "type": "function_call_output",
            "call_id": id,
            "output": RequestPart::retry_text(content),
        }),
        RequestPart::RetryPrompt { content, .. } => {
            json!({ "role": "user", "content": RequestPart::retry_text(content) })
        }
    }
}

/// Whether `part` is thinking that this provider produced and can take back.
fn own_reasoning<'p>(provider: &str, part: &'p ResponsePart) -> Option<&'p str> {
    match part {
        ResponsePart::Thinking {
            id: Some(id),
            provider: Some(p),
            ..
        } if p == provider && !id.is_empty() => Some(id),
        _ => None,
    }
}

fn response_items(provider: &str, response: &ModelResponse, items: &mut Vec<Value>) {
    let parts = &response.parts;
    let has_calls = parts.iter().any(|p| matches!(p, ResponsePart::ToolCall(_)));
    let has_text = parts
        .iter()
        .any(|p| matches!(p, ResponsePart::Text { content } if !content.is_empty()));
    // Send reasoning (and the ids that tie calls to it) only where the API can pair every
    // reasoning item with the call that follows it; see the module docs.
    let echo = has_calls && !has_text && parts.iter().any(|p| own_reasoning(provider, p).is_some());

    let mut i = 0;
    while i < parts.len() {
        match &parts[i] {
            ResponsePart::Text { content } => {
                if !content.is_empty() {
                    items.push(json!({ "role": "assistant", "content": content }));
                }
            }
            ResponsePart::ToolCall(call) => items.push(call_item(call, echo)),
            part @ ResponsePart::Thinking { .. } => {
                if let (true, Some(id)) = (echo, own_reasoning(provider, part)) {
                    let mut summary = Vec::new();
                    let mut encrypted: Option<&str> = None;
                    let mut j = i;
                    while let Some(next) = parts.get(j) {
                        if own_reasoning(provider, next) != Some(id) {
                            break;
                        }
                        if let ResponsePart::Thinking {
                            content, signature, ..
                        } = next
                        {
                            if !content.is_empty() {
                                summary.push(json!({ "type": "summary_text", "text": content }));
                            }
                            if encrypted.is_none() {
                                encrypted = signature.as_deref().filter(|s| !s.is_empty());
                            }
                        }
                        j += 1;
                    }
                    let mut item = Map::new();
                    item.insert("type".into(), json!("reasoning"));
                    item.insert("id".into(), json!(id));
                    item.insert("summary".into(), Value::Array(summary));
                    if let Some(enc) = encrypted {
                        item.insert("encrypted_content".into(), json!(enc));
                    }
                    items.push(Value::Object(item));
                    i = j;
                    continue;
                }
            }
        }
        i += 1;
    }
}

fn call_item(call: &ToolCallPart, echo_id: bool) -> Value {
    let mut item = Map::new();
    item.insert("type".into(), json!("function_call"));
    item.insert("call_id".into(), json!(call.tool_call_id));
    item.insert("name".into(), json!(call.tool_name));
    let args = if call.args.trim().is_empty() {
        "{}"
    } else {
        &call.args
    };
    item.insert("arguments".into(), json!(args));
    if echo_id
        && let Some(id) = call
            .provider_details
            .as_ref()
            .and_then(|d| d.get("id"))
            .and_then(Value::as_str)
    {
        item.insert("id".into(), json!(id));
    }
    Value::Object(item)
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// Parse a Responses API response body (the JSON of `POST /responses`, or the `response` of a
/// `response.completed` event) into a [`ModelResponse`] whose usage is priced from the answering
/// model's name.
///
/// A `failed` response becomes the error it reports; anything that is not a response object
/// becomes [`ModelError::InvalidResponse`]. Never panics.
pub fn parse_response(provider: &str, body: &Value) -> Result<ModelResponse, ModelError> {
    parse_response_priced(provider, body, None)
}

/// [`parse_response`], pricing with `fallback_model` when the body names no model.
fn parse_response_priced(
    provider: &str,
    body: &Value,
    fallback_model: Option<&str>,
) -> Result<ModelResponse, ModelError> {
    let obj = body.as_object().ok_or_else(|| {
        invalid(
            provider,
            format!("the response is not a JSON object: {}", short(body)),
        )
    })?;
    let status = obj.get("status").and_then(Value::as_str);
    if status == Some("failed") {
        return Err(failure(provider, obj.get("error")));
    }
    let output = match obj.get("output") {
        Some(Value::Array(items)) => items.as_slice(),
        Some(Value::Null) | None => match obj.get("error") {
            Some(e) if !e.is_null() => return Err(failure(provider, Some(e))),
            _ => return Err(invalid(provider, "the response has no `output`")),
        },
        Some(other) => {
            return Err(invalid(
                provider,
                format!("`output` is not an array: {}", short(other)),
            ));
        }
    };

    let mut parts = Vec::new();
    for (index, item) in output.iter().enumerate() {
        output_item_parts(provider, index, item, &mut parts)?;
    }

    let model_name = obj.get("model").and_then(Value::as_str).map(str::to_string);
    let mut usage = parse_usage(obj.get("usage"));
    let priced = model_name.as_deref().or(fallback_model).unwrap_or("");
    prices::apply_cost(priced, &mut usage);

    let finish_reason = finish_reason(status, obj.get("incomplete_details"), &parts);
    Ok(ModelResponse {
        parts,
        usage,
        model_name,
        provider: Some(provider.to_string()),
        response_id: obj.get("id").and_then(Value::as_str).map(str::to_string),
        finish_reason,
    })
}

fn finish_reason(
    status: Option<&str>,
    incomplete: Option<&Value>,
    parts: &[ResponsePart],
) -> Option<FinishReason> {
    let has_calls = parts.iter().any(|p| matches!(p, ResponsePart::ToolCall(_)));
    match status {
        None | Some("completed") => Some(if has_calls {
            FinishReason::ToolCall
        } else {
            FinishReason::Stop
        }),
        Some("incomplete") => {
            match incomplete
                .and_then(|d| d.get("reason"))
                .and_then(Value::as_str)
            {
                Some("content_filter") => Some(FinishReason::ContentFilter),
                Some("max_output_tokens") | None => Some(FinishReason::Length),
                Some(_) => None,
            }
        }
        Some("cancelled") => Some(FinishReason::Error),
        Some(_) => None,
    }
}

/// The parts of one `output` item.
fn output_item_parts(
    provider: &str,
    index: usize,
    item: &Value,
    parts: &mut Vec<ResponsePart>,
) -> Result<(), ModelError> {
    let Some(obj) = item.as_object() else {
        return Err(invalid(
            provider,
            format!("output item {index} is not an object: {}", short(item)),
        ));
    };
    let ty = obj.get("type").and_then(Value::as_str);
    match ty {
        Some("message") | None if obj.contains_key("content") => {
            match obj.get("content") {
                Some(Value::String(text)) if !text.is_empty() => parts.push(ResponsePart::Text {
                    content: text.clone(),
                }),
                Some(Value::Array(content)) => {
                    for c in content {
                        if let Some(text) = content_text(c)
                            && !text.is_empty()
                        {
                            parts.push(ResponsePart::Text {
                                content: text.to_string(),
                            });
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        }
        Some("function_call") => {
            let name = obj.get("name").and_then(Value::as_str).ok_or_else(|| {
                invalid(
                    provider,
                    format!("function call {index} has no name: {}", short(item)),
                )
            })?;
            let item_id = obj.get("id").and_then(Value::as_str);
            let call_id = obj
                .get("call_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .or(item_id)
                .map(str::to_string)
                .unwrap_or_else(|| format!("call_{index}"));
            let args = match obj.get("arguments") {
                Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                Some(v @ Value::Object(_)) => v.to_string(),
                _ => "{}".to_string(),
            };
            parts.push(ResponsePart::ToolCall(ToolCallPart {
                tool_name: name.to_string(),
                args,
                tool_call_id: call_id,
                provider_details: item_id.map(|id| json!({ "id": id })),
            }));
            Ok(())
        }
        Some("reasoning") => {
            let id = obj.get("id").and_then(Value::as_str).map(str::to_string);
            let mut signature = obj
                .get("encrypted_content")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            let summaries: Vec<&str> = obj
                .get("summary")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.get("text").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            if summaries.is_empty() {
                if id.is_some() || signature.is_some() {
                    parts.push(ResponsePart::Thinking {
                        content: String::new(),
                        id,
                        signature,
                        provider: Some(provider.to_string()),
                    });
                }
            } else {
                for text in summaries {
                    parts.push(ResponsePart::Thinking {
                        content: text.to_string(),
                        id: id.clone(),
                        signature: signature.take(),
                        provider: Some(provider.to_string()),
                    });
                }
            }
            Ok(())
        }
        // Built-in tool calls and other item kinds are not requested, and not kept.
        _ => Ok(()),
    }
}

/// The text of a message content part: `output_text` text, or a refusal.
fn content_text(c: &Value) -> Option<&str> {
    match c.get("type").and_then(Value::as_str) {
        Some("refusal") => c.get("refusal").and_then(Value::as_str),
        Some("output_text") | Some("text") | None => c.get("text").and_then(Value::as_str),
        Some(_) => None,
    }
}

fn count(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Number(n)) => n.as_u64().unwrap_or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f > 0.0)
                .map_or(0, |f| f as u64)
        }),
        _ => 0,
    }
}

fn parse_usage(u: Option<&Value>) -> Usage {
    let mut usage = Usage {
        requests: 1,
        ..Default::default()
    };
    if let Some(u) = u.filter(|u| u.is_object()) {
        usage.input_tokens = count(u.get("input_tokens"));
        usage.output_tokens = count(u.get("output_tokens"));
        usage.cache_read_tokens = count(u.pointer("/input_tokens_details/cached_tokens"));
        usage.reasoning_tokens = count(u.pointer("/output_tokens_details/reasoning_tokens"));
    }
    usage
}

/// A failure the API reports inside a successful HTTP exchange (a `failed` response, a
/// `response.failed` or `error` event), as the HTTP error the same failure would have been, so
/// that retryability is right: rate limits 429, server-side trouble 500, the request's fault 400.
fn failure(provider: &str, error: Option<&Value>) -> ModelError {
    let error = error.filter(|e| !e.is_null());
    let inner = error
        .and_then(|e| e.get("error"))
        .filter(|e| e.is_object())
        .or(error);
    let code = inner
        .and_then(|e| e.get("code").or_else(|| e.get("type")))
        .filter(|c| c.as_str() != Some("error"))
        .and_then(|c| match c {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let message = match inner {
        Some(Value::String(s)) => s.clone(),
        Some(e) => e
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("the response failed: {}", short(e))),
        None => "the response failed without saying why".to_string(),
    };
    let status = match code.as_deref() {
        Some(c) if c.contains("rate_limit") || c.contains("quota") => 429,
        Some(c)
            if c.contains("server_error")
                || c.contains("overloaded")
                || c.contains("unavailable")
                || c.contains("timeout") =>
        {
            500
        }
        Some(_) => 400,
        None => 500,
    };
    ModelError::Http {
        provider: provider.to_string(),
        status,
        message,
        code,
        retry_after: None,
    }
}

fn short(v: &Value) -> String {
    truncate(&v.to_string(), 200)
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

/// The stream decoder of the Responses API: `event: <type>` + `data: {...}` events in, text,
/// reasoning and tool-call deltas out.
///
/// `response.completed` (or `response.incomplete`) ends the stream and carries the whole
/// response, which is authoritative for the final [`ModelResponse`]. `response.failed` and
/// `error` events become errors. A stream that ends without a final event is an error too.
#[derive(Debug)]
pub struct ResponsesStreamDecoder {
    provider: String,
    model_name: Option<String>,
    asm: ResponseAssembler,
    /// Keys of tool calls already announced with their name and id.
    calls: HashSet<String>,
    /// Keys of parts that received deltas (so `.done` events do not repeat their content).
    deltas: HashSet<String>,
    /// Keys of thinking parts whose id is set.
    thinking: HashSet<String>,
    events_seen: usize,
    done: bool,
    final_response: Option<ModelResponse>,
}

impl ResponsesStreamDecoder {
    /// A decoder whose responses and errors carry `provider`.
    pub fn new(provider: &str) -> Self {
        ResponsesStreamDecoder {
            provider: provider.to_string(),
            model_name: None,
            asm: ResponseAssembler::new(),
            calls: HashSet::new(),
            deltas: HashSet::new(),
            thinking: HashSet::new(),
            events_seen: 0,
            done: false,
            final_response: None,
        }
    }

    /// Price usage with `name` when the stream does not name the model.
    pub fn with_model_name(mut self, name: &str) -> Self {
        self.model_name = Some(name.to_string());
        self
    }

    fn note_response(&mut self, r: Option<&Value>) {
        if let Some(r) = r {
            if let Some(id) = r.get("id").and_then(Value::as_str) {
                self.asm.response_id = Some(id.to_string());
            }
            if let Some(m) = r.get("model").and_then(Value::as_str) {
                self.asm.model_name = Some(m.to_string());
            }
        }
    }

    fn ensure_thinking(&mut self, key: &str, item_id: Option<&str>) {
        if self.thinking.insert(key.to_string()) {
            self.asm
                .thinking_meta(key, item_id.map(str::to_string), None, &self.provider);
        }
    }

    fn on_item(&mut self, v: &Value, done: bool, out: &mut Vec<StreamEvent>) {
        let Some(item) = v.get("item").filter(|i| i.is_object()) else {
            return;
        };
        let base = base_key(v, item.get("id").and_then(Value::as_str));
        let item_id = item.get("id").and_then(Value::as_str);
        match item.get("type").and_then(Value::as_str) {
            Some("function_call") => {
                if self.calls.insert(base.clone()) {
                    let name = item.get("name").and_then(Value::as_str);
                    let call_id = item
                        .get("call_id")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .or(item_id);
                    out.extend(self.asm.tool_call(&base, name, call_id, ""));
                    if let Some(id) = item_id {
                        self.asm.tool_call_details(&base, json!({ "id": id }));
                    }
                }
                if done
                    && !self.deltas.contains(&base)
                    && let Some(args) = item.get("arguments").and_then(Value::as_str)
                {
                    self.deltas.insert(base.clone());
                    out.extend(self.asm.tool_call(&base, None, None, args));
                }
            }
            Some("reasoning") => {
                let first = format!("{base}:s0");
                self.ensure_thinking(&first, item_id);
                if done {
                    let summaries = item.get("summary").and_then(Value::as_array);
                    for (si, s) in summaries.into_iter().flatten().enumerate() {
                        let key = format!("{base}:s{si}");
                        if let Some(text) = s.get("text").and_then(Value::as_str)
                            && !self.deltas.contains(&key)
                        {
                            self.ensure_thinking(&key, item_id);
                            self.deltas.insert(key.clone());
                            out.extend(self.asm.thinking(&key, text));
                        }
                    }
                    if let Some(enc) = item.get("encrypted_content").and_then(Value::as_str)
                        && !enc.is_empty()
                    {
                        self.asm
                            .thinking_meta(&first, None, Some(enc.to_string()), &self.provider);
                    }
                }
            }
            Some("message") if done => {
                let content = item.get("content").and_then(Value::as_array);
                for (ci, c) in content.into_iter().flatten().enumerate() {
                    let key = format!("{base}:c{ci}");
                    if let Some(text) = content_text(c)
                        && !self.deltas.contains(&key)
                    {
                        self.deltas.insert(key.clone());
                        out.extend(self.asm.text(&key, text));
                    }
                }
            }
            _ => {}
        }
    }

    fn complete(&mut self, v: &Value) -> Result<(), ModelError> {
        let Some(r) = v.get("response").filter(|r| r.is_object()) else {
            return Err(invalid(
                &self.provider,
                "the final stream event carries no response",
            ));
        };
        let fallback = self.model_name.clone();
        let mut response = parse_response_priced(&self.provider, r, fallback.as_deref())?;
        if response.response_id.is_none() {
            response.response_id = self.asm.response_id.clone();
        }
        if response.parts.is_empty() {
            // Some servers send a final event without the output; keep what streamed.
            let asm = std::mem::take(&mut self.asm);
            response.parts = asm.finish(&self.provider).parts;
            if response.finish_reason == Some(FinishReason::Stop)
                && response
                    .parts
                    .iter()
                    .any(|p| matches!(p, ResponsePart::ToolCall(_)))
            {
                response.finish_reason = Some(FinishReason::ToolCall);
            }
        }
        self.final_response = Some(response);
        self.done = true;
        Ok(())
    }
}

/// The key of an output item: its `output_index`, or else its id.
fn base_key(v: &Value, item_id: Option<&str>) -> String {
    match v.get("output_index").and_then(Value::as_u64) {
        Some(i) => format!("o{i}"),
        None => format!(
            "i{}",
            item_id
                .or_else(|| v.get("item_id").and_then(Value::as_str))
                .unwrap_or("")
        ),
    }
}

fn sub_index(v: &Value, field: &str) -> u64 {
    v.get(field).and_then(Value::as_u64).unwrap_or(0)
}

impl StreamDecoder for ResponsesStreamDecoder {
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ModelError> {
        if self.done {
            return Ok(Vec::new());
        }
        let data = event.data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(Vec::new());
        }
        self.events_seen += 1;
        let v = event_json(&self.provider, event)?;
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or("");
        let mut out = Vec::new();
        match ty {
            "response.created" | "response.in_progress" => self.note_response(v.get("response")),
            "response.output_item.added" => self.on_item(&v, false, &mut out),
            "response.output_item.done" => self.on_item(&v, true, &mut out),
            "response.output_text.delta" | "response.refusal.delta" => {
                let key = format!("{}:c{}", base_key(&v, None), sub_index(&v, "content_index"));
                if let Some(delta) = v.get("delta").and_then(Value::as_str) {
                    self.deltas.insert(key.clone());
                    out.extend(self.asm.text(&key, delta));
                }
            }
            "response.function_call_arguments.delta" => {
                let key = base_key(&v, None);
                if let Some(delta) = v.get("delta").and_then(Value::as_str) {
                    self.deltas.insert(key.clone());
                    out.extend(self.asm.tool_call(&key, None, None, delta));
                }
            }
            "response.function_call_arguments.done" => {
                let key = base_key(&v, None);
                if !self.deltas.contains(&key)
                    && let Some(args) = v.get("arguments").and_then(Value::as_str)
                {
                    self.deltas.insert(key.clone());
                    out.extend(self.asm.tool_call(&key, None, None, args));
                }
            }
            "response.reasoning_summary_part.added" => {
                let key = format!("{}:s{}", base_key(&v, None), sub_index(&v, "summary_index"));
                let item_id = v.get("item_id").and_then(Value::as_str);
                self.ensure_thinking(&key, item_id);
            }
            "response.reasoning_summary_text.delta" => {
                let key = format!("{}:s{}", base_key(&v, None), sub_index(&v, "summary_index"));
                let item_id = v.get("item_id").and_then(Value::as_str);
                self.ensure_thinking(&key, item_id);
                if let Some(delta) = v.get("delta").and_then(Value::as_str) {
                    self.deltas.insert(key.clone());
                    out.extend(self.asm.thinking(&key, delta));
                }
            }
            "response.completed" | "response.incomplete" => self.complete(&v)?,
            "response.failed" => {
                let error = v.get("response").and_then(|r| r.get("error"));
                return Err(failure(&self.provider, error));
            }
            "error" => return Err(failure(&self.provider, Some(&v))),
            _ => {}
        }
        Ok(out)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(self: Box<Self>) -> Result<ModelResponse, ModelError> {
        match self.final_response {
            Some(r) => Ok(r),
            None if self.events_seen == 0 => Err(invalid(
                &self.provider,
                "the stream held no events (the body is not a Responses event stream)",
            )),
            None => Err(ModelError::Connection {
                provider: self.provider,
                message: "the stream ended before `response.completed`".into(),
            }),
        }
    }
}
