//! Helpers shared by the examples (this folder is not an example itself).
//!
//! Every example runs offline: a [`FunctionModel`] plays the model, deciding its answer from the
//! messages it receives, as a real model would. Set `OPENAI_API_KEY`, `ANTHROPIC_API_KEY` or
//! `GEMINI_API_KEY` and the same example talks to a real model instead.

// Each example uses only some of these helpers.
#![allow(dead_code)]

use std::sync::Once;

use serde_json::Value;
use steadfast::{FunctionModel, Message, ModelChoice, ModelResponse, RequestPart, ResponsePart};

/// A real model if an API key is in the environment, else `offline`.
pub fn model(offline: FunctionModel) -> ModelChoice {
    let has = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
    let spec = if has("OPENAI_API_KEY") {
        "openai:gpt-4.1-mini"
    } else if has("ANTHROPIC_API_KEY") {
        "anthropic:claude-haiku-4-5"
    } else if has("GEMINI_API_KEY") {
        "google:gemini-2.5-flash"
    } else {
        announce(
            "a function plays the model (set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY to use a real one)",
        );
        return offline.into();
    };
    announce(spec);
    // Teach agents to understand "provider:model" strings.
    steadfast::install_providers();
    spec.into()
}

fn announce(what: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| eprintln!("[model: {what}]\n"));
}

/// The user's (latest) prompt.
pub fn user_prompt(messages: &[Message]) -> &str {
    requests(messages)
        .rev()
        .find_map(|p| match p {
            RequestPart::UserPrompt { content } => Some(content.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

/// The parts of the latest request: what the model has to react to now.
pub fn latest(messages: &[Message]) -> &[RequestPart] {
    messages
        .iter()
        .rev()
        .find_map(Message::as_request)
        .map(|r| r.parts.as_slice())
        .unwrap_or(&[])
}

/// What tool `name` returned most recently in the conversation.
pub fn tool_return<'a>(messages: &'a [Message], name: &str) -> Option<&'a Value> {
    requests(messages).rev().find_map(|p| match p {
        RequestPart::ToolReturn {
            tool_name, content, ..
        } if tool_name == name => Some(content),
        _ => None,
    })
}

/// A response calling these tools, with call ids unique in the conversation.
pub fn call_tools<'a>(
    messages: &[Message],
    calls: impl IntoIterator<Item = (&'a str, Value)>,
) -> ModelResponse {
    let parts = calls
        .into_iter()
        .enumerate()
        .map(|(i, (name, args))| {
            ResponsePart::tool_call(
                name,
                args.to_string(),
                format!("call_{}_{i}", messages.len()),
            )
        })
        .collect();
    ModelResponse {
        parts,
        ..Default::default()
    }
}

fn requests(messages: &[Message]) -> impl DoubleEndedIterator<Item = &RequestPart> {
    messages
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|r| r.parts.iter())
}

/// Print a conversation, one line per part.
pub fn print_conversation(messages: &[Message]) {
    for message in messages {
        match message {
            Message::Request(r) => {
                for part in &r.parts {
                    match part {
                        RequestPart::SystemPrompt { content } => println!("  system: {content}"),
                        RequestPart::UserPrompt { content } => println!("  user:   {content}"),
                        RequestPart::ToolReturn {
                            tool_name, content, ..
                        } => println!("  tool:   {tool_name} returned {content}"),
                        RequestPart::RetryPrompt {
                            tool_name, content, ..
                        } => {
                            let first_line = content.lines().next().unwrap_or_default();
                            let to = tool_name.as_deref().unwrap_or("output");
                            println!("  retry:  {to}: {first_line}");
                        }
                    }
                }
            }
            Message::Response(r) => {
                for part in &r.parts {
                    match part {
                        ResponsePart::Text { content } => println!("  model:  {content}"),
                        ResponsePart::ToolCall(c) => {
                            println!("  model:  calls {}({})", c.tool_name, c.args)
                        }
                        ResponsePart::Thinking { .. } => {}
                    }
                }
            }
        }
    }
}
