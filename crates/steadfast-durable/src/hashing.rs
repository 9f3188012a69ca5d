//! Step input hashes computed without building their JSON first.
//!
//! A step's input hash is the FNV-1a hash of its input's JSON (see `ctx::stable_hash`), and it
//! is stored in the journal: it must stay the same from build to build. The helpers here
//! compute exactly those hashes, only cheaper: the bytes stream into the hash instead of into
//! a buffer, and the JSON of a model request's parameters (the tools' schemas, mostly) is
//! serialized once per agent run instead of once per request.

use std::io::{self, Write};
use std::sync::Mutex;

use steadfast_core::{Message, ModelRequestParams};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a over the bytes written to it; [`Fnv::hex`] is `stable_hash` of those bytes.
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(FNV_OFFSET)
    }

    /// Hash `bytes` in.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        self.0 = h;
    }

    /// The hash as 16 lowercase hex digits (`{:016x}`).
    pub(crate) fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

impl Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The input hashes of one agent run's model requests: the hash of the JSON of
/// `(messages.len(), messages.last(), params)`, with the JSON of `params` kept from the
/// previous request while the parameters stay the same (they do, for the whole run).
#[derive(Default)]
pub(crate) struct RequestHasher {
    params: Mutex<Option<(ModelRequestParams, Vec<u8>)>>,
}

impl RequestHasher {
    /// The input hash of a model request with `messages` and `params`.
    pub(crate) fn hash(&self, messages: &[Message], params: &ModelRequestParams) -> String {
        let mut cached = self.params.lock().unwrap_or_else(|e| e.into_inner());
        if cached.as_ref().is_none_or(|(p, _)| p != params) {
            match serde_json::to_vec(params) {
                Ok(json) => *cached = Some((params.clone(), json)),
                Err(_) => {
                    *cached = None;
                    return crate::ctx::hash_of(&(messages.len(), messages.last(), params));
                }
            }
        }
        let Some((_, params_json)) = cached.as_ref() else {
            return crate::ctx::hash_of(&(messages.len(), messages.last(), params));
        };
        // The JSON of a tuple is its elements' JSON, comma-separated, in brackets.
        let mut h = Fnv::new();
        let streamed = (|| -> serde_json::Result<()> {
            h.write_all(b"[").map_err(serde_json::Error::io)?;
            serde_json::to_writer(&mut h, &messages.len())?;
            h.write_all(b",").map_err(serde_json::Error::io)?;
            serde_json::to_writer(&mut h, &messages.last())?;
            h.write_all(b",").map_err(serde_json::Error::io)?;
            h.write_all(params_json).map_err(serde_json::Error::io)?;
            h.write_all(b"]").map_err(serde_json::Error::io)
        })();
        match streamed {
            Ok(()) => h.hex(),
            // `hash_of` hashes no bytes when the JSON cannot be built.
            Err(_) => crate::ctx::stable_hash(&[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use steadfast_core::{
        ModelRequest, ModelResponse, OutputMode, RequestPart, ResponsePart, ToolDefinition,
    };

    use super::*;
    use crate::ctx::hash_of;

    fn params(tools: usize) -> ModelRequestParams {
        ModelRequestParams {
            function_tools: (0..tools)
                .map(|i| ToolDefinition {
                    name: format!("tool_{i}"),
                    description: Some("Ask \"something\" — with ünïcode.".into()),
                    parameters: json!({
                        "type": "object",
                        "properties": { "q": { "type": "string", "description": "a\nb" } },
                        "required": ["q"],
                    }),
                    strict: (i % 2 == 0).then_some(true),
                })
                .collect(),
            output_mode: OutputMode::Text,
            allow_text_output: true,
            ..ModelRequestParams::default()
        }
    }

    fn conversation(turns: usize) -> Vec<Message> {
        let mut m = vec![Message::Request(ModelRequest {
            parts: vec![RequestPart::UserPrompt {
                content: "start".into(),
            }],
            instructions: Some("Play.".into()),
        })];
        for i in 0..turns {
            m.push(Message::Response(ModelResponse {
                parts: vec![ResponsePart::tool_call(
                    "tool_0",
                    format!("{{\"q\":\"{i}\"}}"),
                    format!("call_{i}"),
                )],
                ..ModelResponse::default()
            }));
        }
        m
    }

    /// FNV-1a of `bytes` as it was first written: over a buffer, hex-encoded with `format!`.
    fn reference_hash(bytes: &[u8]) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    #[test]
    fn streamed_hashes_are_the_hashes_of_the_json_bytes() {
        let values = [
            json!(null),
            json!(0),
            json!("a \"quoted\" ünïcode\nstring"),
            json!({ "question": "Is it alive?", "n": [1, 2.5, true] }),
        ];
        for v in &values {
            assert_eq!(hash_of(v), reference_hash(&serde_json::to_vec(v).unwrap()));
        }
        assert_eq!(
            hash_of("{\"question\":\"Question number 1?\"}"),
            reference_hash(br#""{\"question\":\"Question number 1?\"}""#)
        );
        assert_eq!(crate::ctx::stable_hash(&[]), reference_hash(&[]));
        assert_eq!(crate::ctx::stable_hash(b"xyz"), reference_hash(b"xyz"));
    }

    #[test]
    fn request_hashes_are_the_hashes_of_the_request_json() {
        let hasher = RequestHasher::default();
        for (tools, turns) in [(0, 0), (1, 0), (1, 3), (3, 1), (1, 4), (0, 2)] {
            let (m, p) = (conversation(turns), params(tools));
            assert_eq!(
                hasher.hash(&m, &p),
                hash_of(&(m.len(), m.last(), &p)),
                "{tools} tools, {turns} turns"
            );
        }
        let p = params(2);
        assert_eq!(
            hasher.hash(&[], &p),
            hash_of(&(0_usize, None::<&Message>, &p))
        );
    }
}
