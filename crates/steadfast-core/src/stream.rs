//! Assembling a streamed response from deltas, for providers and for the agent's event stream.

use crate::messages::{FinishReason, ModelResponse, ResponsePart, ToolCallPart};
use crate::model::StreamEvent;
use crate::usage::Usage;

/// Builds a [`ModelResponse`] from stream deltas, and hands back the [`StreamEvent`] for each.
///
/// Providers key parts by their own index (a content-block index, an output index, a tool-call
/// index); the assembler keeps them in the order they first appeared.
#[derive(Debug, Default)]
pub struct ResponseAssembler {
    parts: Vec<(String, ResponsePart)>,
    /// Usage so far; providers overwrite or add as their wire format dictates.
    pub usage: Usage,
    /// The answering model.
    pub model_name: Option<String>,
    /// The provider's response id.
    pub response_id: Option<String>,
    /// Why generation stopped.
    pub finish_reason: Option<FinishReason>,
}

impl ResponseAssembler {
    /// A new, empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&mut self, key: &str, make: impl FnOnce() -> ResponsePart) -> usize {
        if let Some(i) = self.parts.iter().position(|(k, _)| k == key) {
            return i;
        }
        self.parts.push((key.to_string(), make()));
        self.parts.len() - 1
    }

    /// Append text to the text part keyed `key`.
    pub fn text(&mut self, key: &str, delta: &str) -> Option<StreamEvent> {
        if delta.is_empty() {
            return None;
        }
        let index = self.slot(key, || ResponsePart::Text {
            content: String::new(),
        });
        if let ResponsePart::Text { content } = &mut self.parts[index].1 {
            content.push_str(delta);
        }
        Some(StreamEvent::TextDelta {
            index,
            delta: delta.to_string(),
        })
    }

    /// Append reasoning text to the thinking part keyed `key`.
    pub fn thinking(&mut self, key: &str, delta: &str) -> Option<StreamEvent> {
        let index = self.slot(key, || ResponsePart::Thinking {
            content: String::new(),
            id: None,
            signature: None,
            provider: None,
        });
        if let ResponsePart::Thinking { content, .. } = &mut self.parts[index].1 {
            content.push_str(delta);
        }
        if delta.is_empty() {
            return None;
        }
        Some(StreamEvent::ThinkingDelta {
            index,
            delta: delta.to_string(),
        })
    }

    /// Set the id, signature and provider of the thinking part keyed `key`.
    pub fn thinking_meta(
        &mut self,
        key: &str,
        id: Option<String>,
        signature: Option<String>,
        provider: &str,
    ) {
        let index = self.thinking_slot(key);
        if let ResponsePart::Thinking {
            id: i,
            signature: s,
            provider: p,
            ..
        } = &mut self.parts[index].1
        {
            if id.is_some() {
                *i = id;
            }
            if let Some(sig) = signature {
                s.get_or_insert_with(String::new).push_str(&sig);
            }
            *p = Some(provider.to_string());
        }
    }

    fn thinking_slot(&mut self, key: &str) -> usize {
        self.slot(key, || ResponsePart::Thinking {
            content: String::new(),
            id: None,
            signature: None,
            provider: None,
        })
    }

    /// Add to the tool call keyed `key`: a name and id (first delta) and an argument fragment.
    pub fn tool_call(
        &mut self,
        key: &str,
        name: Option<&str>,
        id: Option<&str>,
        args_delta: &str,
    ) -> Option<StreamEvent> {
        let index = self.slot(key, || {
            ResponsePart::ToolCall(ToolCallPart {
                tool_name: String::new(),
                args: String::new(),
                tool_call_id: String::new(),
                provider_details: None,
            })
        });
        if let ResponsePart::ToolCall(call) = &mut self.parts[index].1 {
            if let Some(n) = name
                && !n.is_empty()
            {
                call.tool_name = n.to_string();
            }
            if let Some(i) = id
                && !i.is_empty()
            {
                call.tool_call_id = i.to_string();
            }
            call.args.push_str(args_delta);
        }
        if name.is_none() && id.is_none() && args_delta.is_empty() {
            return None;
        }
        Some(StreamEvent::ToolCallDelta {
            index,
            tool_name: name.map(str::to_string),
            tool_call_id: id.map(str::to_string),
            args_delta: args_delta.to_string(),
        })
    }

    /// Set provider details on the tool call keyed `key`, if it exists.
    pub fn tool_call_details(&mut self, key: &str, details: serde_json::Value) {
        if let Some((_, ResponsePart::ToolCall(call))) =
            self.parts.iter_mut().find(|(k, _)| k == key)
        {
            call.provider_details = Some(details);
        }
    }

    /// The parts assembled so far.
    pub fn parts(&self) -> impl Iterator<Item = &ResponsePart> {
        self.parts.iter().map(|(_, p)| p)
    }

    /// The finished response. Tool calls without an id get `call_{index}`; empty arguments
    /// become `{}`.
    pub fn finish(self, provider: &str) -> ModelResponse {
        let parts = self
            .parts
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut part))| {
                if let ResponsePart::ToolCall(call) = &mut part {
                    if call.tool_call_id.is_empty() {
                        call.tool_call_id = format!("call_{i}");
                    }
                    if call.args.trim().is_empty() {
                        call.args = "{}".to_string();
                    }
                }
                part
            })
            .collect();
        ModelResponse {
            parts,
            usage: self.usage,
            model_name: self.model_name,
            provider: Some(provider.to_string()),
            response_id: self.response_id,
            finish_reason: self.finish_reason,
        }
    }
}

/// The events that stream a whole response at once: one delta per part, then `Done`.
pub fn events_of(response: ModelResponse) -> Vec<StreamEvent> {
    let mut events = Vec::with_capacity(response.parts.len() + 1);
    for (index, part) in response.parts.iter().enumerate() {
        match part {
            ResponsePart::Text { content } => events.push(StreamEvent::TextDelta {
                index,
                delta: content.clone(),
            }),
            ResponsePart::Thinking { content, .. } => events.push(StreamEvent::ThinkingDelta {
                index,
                delta: content.clone(),
            }),
            ResponsePart::ToolCall(c) => events.push(StreamEvent::ToolCallDelta {
                index,
                tool_name: Some(c.tool_name.clone()),
                tool_call_id: Some(c.tool_call_id.clone()),
                args_delta: c.args.clone(),
            }),
        }
    }
    events.push(StreamEvent::Done(response));
    events
}
