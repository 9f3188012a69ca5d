//! Messages exchanged with a model: requests we send and responses we get back.
//!
//! The shapes are provider-neutral. Each provider maps them to and from its wire format, and every
//! value here round-trips through serde, so a conversation can be stored, journaled and resumed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::usage::Usage;

/// One message of a conversation: either what we sent, or what the model answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// A request we sent to the model.
    Request(ModelRequest),
    /// A response the model sent back.
    Response(ModelResponse),
}

impl Message {
    /// The request, if this message is one.
    pub fn as_request(&self) -> Option<&ModelRequest> {
        match self {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }

    /// The response, if this message is one.
    pub fn as_response(&self) -> Option<&ModelResponse> {
        match self {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        }
    }
}

/// A request: the parts we send in one turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The parts, in order.
    pub parts: Vec<RequestPart>,
    /// Instructions in force for this request (sent as the system prompt; not repeated in history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

impl ModelRequest {
    /// A request holding one user prompt.
    pub fn user(prompt: impl Into<String>) -> Self {
        ModelRequest {
            parts: vec![RequestPart::UserPrompt {
                content: prompt.into(),
            }],
            instructions: None,
        }
    }
}

/// One part of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "part_kind", rename_all = "snake_case")]
pub enum RequestPart {
    /// A system prompt kept in history (unlike instructions, which are re-sent each turn).
    SystemPrompt {
        /// The text.
        content: String,
    },
    /// What the user said.
    UserPrompt {
        /// The text.
        content: String,
    },
    /// The result of a tool call, sent back to the model.
    ToolReturn {
        /// The tool that ran.
        tool_name: String,
        /// The id of the call this answers.
        tool_call_id: String,
        /// What the tool returned, as JSON.
        content: Value,
    },
    /// A request to try again: invalid tool arguments, a tool that asked for a retry, or output
    /// that failed validation.
    RetryPrompt {
        /// The tool whose call is being retried, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_name: Option<String>,
        /// The id of that call, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_call_id: Option<String>,
        /// What went wrong.
        content: String,
    },
}

impl RequestPart {
    /// The text the model reads for a retry prompt.
    pub fn retry_text(content: &str) -> String {
        format!("{content}\n\nFix the errors and try again.")
    }
}

/// Why the model stopped generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural stop.
    Stop,
    /// The token limit was reached.
    Length,
    /// The model wants tools called.
    ToolCall,
    /// Content was filtered.
    ContentFilter,
    /// An error on the provider's side.
    Error,
}

/// What the model answered in one turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelResponse {
    /// The parts, in order.
    pub parts: Vec<ResponsePart>,
    /// Tokens (and cost) of this one request.
    #[serde(default)]
    pub usage: Usage,
    /// The model that answered, as the provider names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// The provider (`openai`, `anthropic`, `google`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The provider's id for this response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// Why generation stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
}

impl ModelResponse {
    /// A response holding one text part.
    pub fn text(content: impl Into<String>) -> Self {
        ModelResponse {
            parts: vec![ResponsePart::Text {
                content: content.into(),
            }],
            finish_reason: Some(FinishReason::Stop),
            ..Default::default()
        }
    }

    /// A response holding one tool call.
    pub fn tool_call(name: impl Into<String>, args: Value) -> Self {
        ModelResponse {
            parts: vec![ResponsePart::tool_call(name, args.to_string(), "call_1")],
            finish_reason: Some(FinishReason::ToolCall),
            ..Default::default()
        }
    }

    /// All text parts joined.
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            if let ResponsePart::Text { content } = part {
                out.push_str(content);
            }
        }
        out
    }

    /// The tool calls, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCallPart> {
        self.parts.iter().filter_map(|p| match p {
            ResponsePart::ToolCall(c) => Some(c),
            _ => None,
        })
    }
}

/// One part of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "part_kind", rename_all = "snake_case")]
pub enum ResponsePart {
    /// Text.
    Text {
        /// The text.
        content: String,
    },
    /// A call of a tool.
    ToolCall(ToolCallPart),
    /// Reasoning the model showed (or an opaque reasoning item to send back).
    Thinking {
        /// Readable reasoning text, possibly a summary.
        content: String,
        /// The provider's id for the item, when it has one (OpenAI Responses).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// An opaque signature or encrypted content that must be sent back unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
        /// The provider that produced it; the signature means nothing to others.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider: Option<String>,
    },
}

impl ResponsePart {
    /// A tool-call part.
    pub fn tool_call(
        name: impl Into<String>,
        args: impl Into<String>,
        id: impl Into<String>,
    ) -> Self {
        ResponsePart::ToolCall(ToolCallPart {
            tool_name: name.into(),
            args: args.into(),
            tool_call_id: id.into(),
            provider_details: None,
        })
    }
}

/// A call of a tool, as the model asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallPart {
    /// The tool's name.
    pub tool_name: String,
    /// The arguments as JSON text, exactly as the model produced them (it may be invalid).
    pub args: String,
    /// The call's id, which its result must carry.
    pub tool_call_id: String,
    /// Provider data to echo back with the call (for example Gemini's `thoughtSignature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_details: Option<Value>,
}

impl ToolCallPart {
    /// The arguments parsed as a JSON object; invalid or non-object arguments give an empty object.
    pub fn args_object(&self) -> Value {
        match serde_json::from_str::<Value>(&self.args) {
            Ok(v @ Value::Object(_)) => v,
            _ => Value::Object(Default::default()),
        }
    }
}
