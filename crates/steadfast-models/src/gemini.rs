//! Google Gemini through the Gemini Developer API (`generativelanguage.googleapis.com`, v1beta).
//!
//! Requests go to `POST {base}/v1beta/models/{model}:generateContent`, and streamed ones to
//! `:streamGenerateContent?alt=sse`, where every `data:` event is a whole
//! `GenerateContentResponse` and the stream simply ends. The key travels in the
//! `x-goog-api-key` header, never in the URL.
//!
//! Mapping, in short:
//!
//! * requests become `user` contents and responses `model` contents; adjacent contents of the
//!   same role are merged, as Gemini wants the roles to alternate;
//! * system prompts and the instructions of the last request become `systemInstruction`;
//! * a tool result becomes a `functionResponse` whose `response` is the result when it is a JSON
//!   object and `{"return_value": result}` otherwise; a retry prompt for a tool becomes
//!   `{"error": text}`;
//! * a `functionCall` keeps its `thoughtSignature` in
//!   [`steadfast_core::ToolCallPart::provider_details`] and gets it back when the history is
//!   sent again (Gemini 3 rejects calls without it);
//! * Gemini usually returns calls without ids, so ids are made from the position of the
//!   response in the conversation and of the call in the response: the same conversation always
//!   gets the same ids.

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use steadfast_core::{
    FinishReason, Message, Model, ModelError, ModelRequestParams, ModelResponse, ModelSettings,
    ModelStream, OutputMode, RequestPart, ResponseAssembler, ResponsePart, StreamEvent,
    ToolCallPart, ToolDefinition, Usage,
};

use crate::http::{ClientConfig, HttpClient, error_from_response, event_json, invalid, truncate};
use crate::prices;
use crate::sse::SseEvent;
use crate::streaming::{StreamDecoder, decode_stream};

/// The default base URL of the Gemini Developer API.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// The host of the official API; requests to it need a key.
const OFFICIAL_HOST: &str = "generativelanguage.googleapis.com";

/// The provider name of [`GeminiModel`].
pub const PROVIDER: &str = "google";

/// The signature Google documents for function calls that Gemini did not produce (or produced
/// without one): base64 of `skip_thought_signature_validator`. Gemini 3 requires a signature on
/// the first function call of each model turn; this one tells it to skip the check.
pub const SKIP_THOUGHT_SIGNATURE: &str = "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I=";

/// The key of the thought signature inside [`ToolCallPart::provider_details`].
pub const THOUGHT_SIGNATURE: &str = "thoughtSignature";

/// A Gemini model reached through the Gemini Developer API.
#[derive(Debug, Clone)]
pub struct GeminiModel {
    name: String,
    provider: String,
    http: HttpClient,
}

impl GeminiModel {
    /// The model `name` (`gemini-2.5-flash`, ...), configured from the environment: the base URL
    /// from `GEMINI_BASE_URL` (default [`DEFAULT_BASE_URL`]) and the key from `GEMINI_API_KEY` or
    /// `GOOGLE_API_KEY`. A missing key is reported when a request is made, not here.
    pub fn new(name: &str) -> Result<Self, ModelError> {
        let config = ClientConfig::from_env(
            "GEMINI_BASE_URL",
            DEFAULT_BASE_URL,
            &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        );
        Self::with_config(name, config)
    }

    /// The model `name` with an explicit configuration.
    pub fn with_config(name: &str, config: ClientConfig) -> Result<Self, ModelError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ModelError::Config("a Gemini model needs a name".into()));
        }
        Ok(GeminiModel {
            name: name.to_string(),
            provider: PROVIDER.to_string(),
            http: HttpClient::new(PROVIDER, config)?,
        })
    }

    /// The same model reporting another provider name (in [`Model::provider`] and in its
    /// responses), for Gemini-compatible gateways.
    pub fn with_provider_name(mut self, provider: &str) -> Self {
        self.provider = provider.to_string();
        self.http.set_provider(provider);
        self
    }

    /// The URL of a (streamed) generation request.
    pub fn endpoint(&self, stream: bool) -> String {
        let base = self.http.config.base_url.trim_end_matches('/');
        // A base URL that already names the API version is used as it is.
        let root = if ["/v1beta", "/v1", "/v1alpha"]
            .iter()
            .any(|v| base.ends_with(v))
        {
            base.to_string()
        } else {
            format!("{base}/v1beta")
        };
        // `models/x` and `tunedModels/x` are resource names already; a bare name is a model.
        let resource = if self.name.contains('/') {
            self.name.clone()
        } else {
            format!("models/{}", self.name)
        };
        if stream {
            format!("{root}/{resource}:streamGenerateContent?alt=sse")
        } else {
            format!("{root}/{resource}:generateContent")
        }
    }

    fn auth_headers(&self) -> Result<Vec<(&'static str, String)>, ModelError> {
        match &self.http.config.api_key {
            Some(key) => Ok(vec![("x-goog-api-key", key.clone())]),
            None if self.http.config.is_host(OFFICIAL_HOST) => Err(ModelError::Config(format!(
                "no API key for Google Gemini (model `{}`): set GEMINI_API_KEY or \
                     GOOGLE_API_KEY, or pass ClientConfig::with_api_key",
                self.name
            ))),
            // A local server or a gateway that authenticates otherwise.
            None => Ok(Vec::new()),
        }
    }
}

impl Model for GeminiModel {
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
            let headers = self.auth_headers()?;
            let body = build_request(&self.provider, messages, params, settings);
            let value = self
                .http
                .post_json(&self.endpoint(false), &headers, &body)
                .await?;
            let mut acc = Accumulator::new(&self.provider, &self.name, response_index(messages));
            acc.absorb(&value)?;
            acc.finish(false)
        })
    }

    fn request_stream<'a>(
        &'a self,
        messages: &'a [Message],
        params: &'a ModelRequestParams,
        settings: &'a ModelSettings,
    ) -> BoxFuture<'a, Result<ModelStream, ModelError>> {
        Box::pin(async move {
            let headers = self.auth_headers()?;
            let body = build_request(&self.provider, messages, params, settings);
            let events = self
                .http
                .post_sse(&self.endpoint(true), &headers, &body)
                .await?;
            let decoder =
                GeminiStreamDecoder::new(&self.provider, &self.name, response_index(messages));
            Ok(decode_stream(events, Box::new(decoder)))
        })
    }
}

/// The position the next response will take among the responses of `messages`; generated call
/// ids include it, so they are unique in the conversation and the same on every replay.
pub fn response_index(messages: &[Message]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m, Message::Response(_)))
        .count()
}

/// The id given to the `n`-th function call of the response at `response_index` when Gemini
/// sends none.
pub fn generated_call_id(response_index: usize, n: usize) -> String {
    format!("call_{response_index}_{n}")
}

// ------------------------------------------------------------------------------------------
// Requests
// ------------------------------------------------------------------------------------------

/// Contents under construction: adjacent parts of the same role share one content.
#[derive(Default)]
struct Contents(Vec<(&'static str, Vec<Value>)>);

impl Contents {
    fn push(&mut self, role: &'static str, part: Value) {
        match self.0.last_mut() {
            Some((r, parts)) if *r == role => parts.push(part),
            _ => self.0.push((role, vec![part])),
        }
    }

    fn into_value(self) -> Value {
        Value::Array(
            self.0
                .into_iter()
                .filter(|(_, parts)| !parts.is_empty())
                .map(|(role, parts)| json!({"role": role, "parts": parts}))
                .collect(),
        )
    }
}

/// The `response` object of a `functionResponse`: a JSON object as it is, anything else
/// wrapped as `{"return_value": ...}` (the API takes an object only).
fn function_response_object(content: &Value) -> Value {
    match content {
        Value::Object(_) => content.clone(),
        other => json!({ "return_value": other }),
    }
}

fn function_response(name: &str, id: &str, response: Value) -> Value {
    let mut fr = Map::new();
    if !id.is_empty() {
        fr.insert("id".into(), Value::String(id.to_string()));
    }
    fr.insert("name".into(), Value::String(name.to_string()));
    fr.insert("response".into(), response);
    json!({ "functionResponse": fr })
}

fn request_parts(parts: &[RequestPart], contents: &mut Contents, system: &mut Vec<Value>) {
    for part in parts {
        match part {
            RequestPart::SystemPrompt { content } => system.push(json!({ "text": content })),
            RequestPart::UserPrompt { content } => {
                contents.push("user", json!({ "text": content }))
            }
            RequestPart::ToolReturn {
                tool_name,
                tool_call_id,
                content,
            } => contents.push(
                "user",
                function_response(tool_name, tool_call_id, function_response_object(content)),
            ),
            RequestPart::RetryPrompt {
                tool_name: Some(name),
                tool_call_id,
                content,
            } if !name.is_empty() => contents.push(
                "user",
                function_response(
                    name,
                    tool_call_id.as_deref().unwrap_or(""),
                    json!({ "error": content }),
                ),
            ),
            // A retry without a tool (invalid text output) is a user message.
            RequestPart::RetryPrompt { content, .. } => {
                contents.push("user", json!({ "text": content }))
            }
        }
    }
}

fn response_parts(provider: &str, response: &ModelResponse, contents: &mut Contents) {
    let signed = response.tool_calls().any(|c| signature_of(c).is_some());
    let mut first_call = true;
    for part in &response.parts {
        match part {
            ResponsePart::Text { content } => {
                if !content.is_empty() {
                    contents.push("model", json!({ "text": content }));
                }
            }
            ResponsePart::Thinking {
                content,
                signature,
                provider: from,
                ..
            } => {
                // Only Gemini's own thoughts mean anything to Gemini.
                let ours = matches!(from.as_deref(), Some(p) if p == provider || p == PROVIDER);
                if ours && (!content.is_empty() || signature.is_some()) {
                    let mut p = Map::new();
                    p.insert("text".into(), Value::String(content.clone()));
                    p.insert("thought".into(), Value::Bool(true));
                    if let Some(sig) = signature {
                        p.insert(THOUGHT_SIGNATURE.into(), Value::String(sig.clone()));
                    }
                    contents.push("model", Value::Object(p));
                }
            }
            ResponsePart::ToolCall(call) => {
                let mut fc = Map::new();
                fc.insert("args".into(), call.args_object());
                if !call.tool_call_id.is_empty() {
                    fc.insert("id".into(), Value::String(call.tool_call_id.clone()));
                }
                fc.insert("name".into(), Value::String(call.tool_name.clone()));
                let mut p = Map::new();
                p.insert("functionCall".into(), Value::Object(fc));
                let sig = match signature_of(call) {
                    Some(s) => Some(s.to_string()),
                    // A turn with no signature at all (an older model, another provider, a
                    // hand-made history): the documented bypass on its first call.
                    None if !signed && first_call => Some(SKIP_THOUGHT_SIGNATURE.to_string()),
                    None => None,
                };
                if let Some(sig) = sig {
                    p.insert(THOUGHT_SIGNATURE.into(), Value::String(sig));
                }
                first_call = false;
                contents.push("model", Value::Object(p));
            }
        }
    }
}

fn signature_of(call: &ToolCallPart) -> Option<&str> {
    call.provider_details
        .as_ref()
        .and_then(|d| d.get(THOUGHT_SIGNATURE))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn function_declaration(tool: &ToolDefinition) -> Value {
    json!({
        "name": tool.name,
        "description": tool.description.clone().unwrap_or_default(),
        // The JSON Schema form (not the OpenAPI subset of `parameters`). The API parses proto3
        // JSON, which takes the proto field name as well as the camel-case one; this is the
        // spelling the recorded exchanges show the live API accepting.
        "parameters_json_schema": tool.parameters,
    })
}

/// Merge `src` into `dst`: objects key by key, recursively; anything else replaces.
fn deep_merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v)
                    }
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

/// The `generateContent` request body for a conversation.
///
/// `provider` is the name the model reports: thinking parts from that provider (or from
/// `google`) are sent back, other providers' reasoning is left out. `settings.extra_body` is
/// merged into the body last, objects key by key (so `{"generationConfig": {...}}` adds to the
/// generation config rather than replacing it); an `extra_body` that is not an object is ignored.
pub fn build_request(
    provider: &str,
    messages: &[Message],
    params: &ModelRequestParams,
    settings: &ModelSettings,
) -> Value {
    let mut contents = Contents::default();
    let mut system = Vec::new();
    for message in messages {
        match message {
            Message::Request(r) => request_parts(&r.parts, &mut contents, &mut system),
            Message::Response(r) => response_parts(provider, r, &mut contents),
        }
    }
    let instructions = messages
        .iter()
        .rev()
        .find_map(Message::as_request)
        .and_then(|r| r.instructions.as_deref())
        .filter(|s| !s.trim().is_empty());
    if let Some(text) = instructions {
        system.push(json!({ "text": text }));
    }

    let mut body = Map::new();
    body.insert("contents".into(), contents.into_value());
    if !system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({ "role": "user", "parts": system }),
        );
    }

    let tools: Vec<&ToolDefinition> = params.all_tools().collect();
    if !tools.is_empty() {
        let decls: Vec<Value> = tools.iter().map(|t| function_declaration(t)).collect();
        body.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
        if !params.allow_text_output {
            let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
            body.insert(
                "toolConfig".into(),
                json!({ "functionCallingConfig": { "mode": "ANY", "allowedFunctionNames": names } }),
            );
        }
    }

    let mut gen_config = Map::new();
    if let Some(n) = settings.max_tokens {
        gen_config.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(t) = settings.temperature {
        gen_config.insert("temperature".into(), json!(t));
    }
    if let Some(p) = settings.top_p {
        gen_config.insert("topP".into(), json!(p));
    }
    if let Some(s) = settings.seed {
        gen_config.insert("seed".into(), json!(s));
    }
    if params.output_mode == OutputMode::Native {
        gen_config.insert("responseMimeType".into(), json!("application/json"));
        if let Some(out) = &params.output_schema {
            let mut schema = out.schema.clone();
            if let Value::Object(m) = &mut schema {
                m.entry("title")
                    .or_insert_with(|| Value::String(out.name.clone()));
                if let Some(d) = &out.description {
                    m.entry("description")
                        .or_insert_with(|| Value::String(d.clone()));
                }
            }
            gen_config.insert("responseJsonSchema".into(), schema);
        }
    }
    body.insert("generationConfig".into(), Value::Object(gen_config));

    let mut body = Value::Object(body);
    if let Some(extra @ Value::Object(_)) = &settings.extra_body {
        deep_merge(&mut body, extra);
    }
    body
}

// ------------------------------------------------------------------------------------------
// Responses
// ------------------------------------------------------------------------------------------

/// The open part that a streamed text or thought continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thought { signed: bool },
}

/// Builds one response from one or more `GenerateContentResponse` chunks (one for
/// `generateContent`, many for a stream).
#[derive(Debug)]
struct Accumulator {
    provider: String,
    model: String,
    response_index: usize,
    asm: ResponseAssembler,
    open: Option<(Open, String)>,
    next_key: usize,
    calls: usize,
    finish_reason: Option<String>,
    blocked: Option<String>,
    saw_candidate: bool,
    chunks: usize,
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(|x| {
            x.as_u64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0)
}

fn map_finish_reason(reason: &str) -> Option<FinishReason> {
    Some(match reason {
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        "MALFORMED_FUNCTION_CALL"
        | "UNEXPECTED_TOOL_CALL"
        | "TOO_MANY_TOOL_CALLS"
        | "MISSING_THOUGHT_SIGNATURE"
        | "LANGUAGE"
        | "NO_IMAGE"
        | "IMAGE_OTHER"
        | "OTHER" => FinishReason::Error,
        _ => return None,
    })
}

impl Accumulator {
    fn new(provider: &str, model: &str, response_index: usize) -> Self {
        Accumulator {
            provider: provider.to_string(),
            model: model.to_string(),
            response_index,
            asm: ResponseAssembler::new(),
            open: None,
            next_key: 0,
            calls: 0,
            finish_reason: None,
            blocked: None,
            saw_candidate: false,
            chunks: 0,
        }
    }

    fn bad(&self, message: impl Into<String>) -> ModelError {
        invalid(&self.provider, message)
    }

    fn new_key(&mut self) -> String {
        self.next_key += 1;
        format!("p{}", self.next_key)
    }

    /// The key of the open part of `kind`, opening a new one if another kind is open.
    fn key_for(&mut self, kind: Open) -> String {
        match &self.open {
            Some((open, key)) if *open == kind => key.clone(),
            _ => {
                let key = self.new_key();
                self.open = Some((kind, key.clone()));
                key
            }
        }
    }

    /// Take in one `GenerateContentResponse`; returns the stream events it produces.
    fn absorb(&mut self, chunk: &Value) -> Result<Vec<StreamEvent>, ModelError> {
        let Value::Object(obj) = chunk else {
            return Err(self.bad(format!(
                "expected a JSON object, got {}",
                truncate(&chunk.to_string(), 200)
            )));
        };
        if let Some(err) = obj.get("error") {
            let status = err
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| *c >= 400)
                .unwrap_or(500);
            return Err(error_from_response(
                &self.provider,
                status,
                None,
                &chunk.to_string(),
            ));
        }
        self.chunks += 1;
        if let Some(v) = obj.get("modelVersion").and_then(Value::as_str) {
            self.asm.model_name = Some(v.to_string());
        }
        if let Some(v) = obj.get("responseId").and_then(Value::as_str) {
            self.asm.response_id = Some(v.to_string());
        }
        if let Some(meta) = obj.get("usageMetadata") {
            self.usage(meta)?;
        }
        if let Some(reason) = obj
            .get("promptFeedback")
            .and_then(|f| f.get("blockReason"))
            .and_then(Value::as_str)
        {
            self.blocked = Some(reason.to_string());
        }

        let mut events = Vec::new();
        let candidate = match obj.get("candidates") {
            None | Some(Value::Null) => return Ok(events),
            Some(Value::Array(c)) => match c.first() {
                Some(first) => first,
                None => return Ok(events),
            },
            Some(_) => return Err(self.bad("`candidates` is not an array")),
        };
        if !candidate.is_object() {
            return Err(self.bad("a candidate is not an object"));
        }
        self.saw_candidate = true;
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_string());
        }
        let parts = match candidate.get("content").and_then(|c| c.get("parts")) {
            None | Some(Value::Null) => return Ok(events),
            Some(Value::Array(p)) => p,
            Some(_) => return Err(self.bad("`content.parts` is not an array")),
        };
        for part in parts {
            if !part.is_object() {
                return Err(self.bad("a content part is not an object"));
            }
            let signature = part
                .get(THOUGHT_SIGNATURE)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            if let Some(call) = part.get("functionCall") {
                events.extend(self.function_call(call, signature)?);
            } else if part.get("thought").and_then(Value::as_bool) == Some(true) {
                let text = part.get("text").and_then(Value::as_str).unwrap_or("");
                // A signature closes its thought: a later thought is a new part.
                let key = match self.open {
                    Some((Open::Thought { signed: true }, _)) => {
                        self.open = None;
                        self.key_for(Open::Thought { signed: false })
                    }
                    _ => self.key_for(Open::Thought { signed: false }),
                };
                events.extend(self.asm.thinking(&key, text));
                if let Some(sig) = signature {
                    let provider = self.provider.clone();
                    self.asm
                        .thinking_meta(&key, None, Some(sig.to_string()), &provider);
                    self.open = Some((Open::Thought { signed: true }, key));
                } else {
                    let provider = self.provider.clone();
                    self.asm.thinking_meta(&key, None, None, &provider);
                }
            } else if let Some(text) = part.get("text") {
                let Some(text) = text.as_str() else {
                    return Err(self.bad("a text part's `text` is not a string"));
                };
                // Empty text parts (often a stream's last chunk) carry nothing to keep. A
                // signature on a text part has no place in a text part and is not kept.
                if !text.is_empty() {
                    let key = self.key_for(Open::Text);
                    events.extend(self.asm.text(&key, text));
                }
            } else {
                // Parts this provider does not map (inline data, executable code, ...).
                tracing::debug!(part = %truncate(&part.to_string(), 200), "ignoring a Gemini part");
            }
        }
        Ok(events)
    }

    fn function_call(
        &mut self,
        call: &Value,
        signature: Option<&str>,
    ) -> Result<Option<StreamEvent>, ModelError> {
        let Some(name) = call.get("name").and_then(Value::as_str) else {
            return Err(self.bad("a `functionCall` has no `name`"));
        };
        let args = match call.get("args") {
            None | Some(Value::Null) => "{}".to_string(),
            Some(a) => a.to_string(),
        };
        let id = match call.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => generated_call_id(self.response_index, self.calls),
        };
        self.calls += 1;
        let key = self.new_key();
        self.open = None;
        let event = self.asm.tool_call(&key, Some(name), Some(&id), &args);
        if let Some(sig) = signature {
            self.asm
                .tool_call_details(&key, json!({ THOUGHT_SIGNATURE: sig }));
        }
        Ok(event)
    }

    fn usage(&mut self, meta: &Value) -> Result<(), ModelError> {
        if !meta.is_object() {
            return Err(self.bad("`usageMetadata` is not an object"));
        }
        let thoughts = u64_field(meta, "thoughtsTokenCount");
        // The last report wins: a stream repeats (and updates) the totals in each chunk.
        self.asm.usage = Usage {
            requests: 1,
            input_tokens: u64_field(meta, "promptTokenCount")
                .saturating_add(u64_field(meta, "toolUsePromptTokenCount")),
            output_tokens: u64_field(meta, "candidatesTokenCount").saturating_add(thoughts),
            cache_read_tokens: u64_field(meta, "cachedContentTokenCount"),
            reasoning_tokens: thoughts,
            ..Usage::default()
        };
        Ok(())
    }

    /// The response. `streamed`: the stream ended on its own, so a missing finish reason means
    /// it was cut off.
    fn finish(self, streamed: bool) -> Result<ModelResponse, ModelError> {
        let provider = self.provider.clone();
        if !self.saw_candidate && self.blocked.is_none() {
            return Err(invalid(
                &provider,
                if self.chunks == 0 {
                    "the stream ended without a response".to_string()
                } else {
                    "the response has no candidates and no block reason".to_string()
                },
            ));
        }
        let has_calls = self.calls > 0;
        let mut finish = match (&self.finish_reason, &self.blocked) {
            (Some(r), _) => map_finish_reason(r),
            // The prompt itself was blocked: no candidate at all.
            (None, Some(_)) => Some(FinishReason::ContentFilter),
            (None, None) => None,
        };
        if streamed && self.finish_reason.is_none() && self.blocked.is_none() {
            return Err(ModelError::Connection {
                provider,
                message: "the stream ended before the model finished (no finishReason)".into(),
            });
        }
        if has_calls && matches!(finish, None | Some(FinishReason::Stop)) {
            finish = Some(FinishReason::ToolCall);
        }
        let model = self.model.clone();
        let mut asm = self.asm;
        asm.finish_reason = finish;
        asm.usage.requests = 1;
        let priced = asm.model_name.clone().unwrap_or(model);
        let mut response = asm.finish(&provider);
        prices::apply_cost(&priced, &mut response.usage);
        Ok(response)
    }
}

/// Parse a `generateContent` answer.
///
/// Calls without an id get [`generated_call_id`]`(0, n)`; [`GeminiModel`] numbers them by the
/// response's position in the conversation instead. Bodies that are not a
/// `GenerateContentResponse` give [`ModelError::InvalidResponse`]; a prompt blocked before any
/// candidate gives an empty response that finished with [`FinishReason::ContentFilter`].
pub fn parse_response(provider: &str, body: &Value) -> Result<ModelResponse, ModelError> {
    let mut acc = Accumulator::new(provider, "", 0);
    acc.absorb(body)?;
    acc.finish(false)
}

/// Decodes a `streamGenerateContent?alt=sse` stream: each event is a whole
/// `GenerateContentResponse`; text and thoughts are appended, function calls arrive whole, and
/// the usage of the last chunk that reports one is kept.
#[derive(Debug)]
pub struct GeminiStreamDecoder {
    acc: Accumulator,
}

impl GeminiStreamDecoder {
    /// A decoder for `provider`'s stream from `model` (the name used for pricing when the stream
    /// names none), whose response will be the `response_index`-th of the conversation (see
    /// [`response_index`]).
    pub fn new(provider: &str, model: &str, response_index: usize) -> Self {
        GeminiStreamDecoder {
            acc: Accumulator::new(provider, model, response_index),
        }
    }
}

impl StreamDecoder for GeminiStreamDecoder {
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ModelError> {
        if event.data.trim().is_empty() {
            return Ok(Vec::new());
        }
        let chunk = event_json(&self.acc.provider, event)?;
        self.acc.absorb(&chunk)
    }

    fn is_done(&self) -> bool {
        // Gemini sends no end marker: the stream is over when the connection ends.
        false
    }

    fn finish(self: Box<Self>) -> Result<ModelResponse, ModelError> {
        self.acc.finish(true)
    }
}
