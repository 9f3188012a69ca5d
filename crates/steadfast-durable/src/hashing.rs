//! Step input hashes computed without building their JSON first.
//!
//! A step's input hash is stored in the journal and checked on replay: it must stay the same
//! from build to build. Most steps hash their input's JSON with FNV-1a (see
//! `ctx::stable_hash`). A model request hashes more bytes (the newest message and the tools'
//! schemas), on every turn, so its hash is XXH3-64 of the same JSON, written `xxh3:{16 hex}`;
//! journals of builds that hashed model requests with FNV-1a (plain 16 hex digits) still
//! replay, since the engine computes that hash too when a run resumes from a journal.
//!
//! Either way the bytes stream into the hash instead of into a buffer, and the JSON of a model
//! request's parameters is serialized once per agent run instead of once per request.

use std::io::{self, Write};
use std::sync::Mutex;

use steadfast_core::{Message, ModelRequestParams};
use xxhash_rust::xxh3::xxh3_64;

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
        let mut s = String::with_capacity(16);
        push_hex(&mut s, self.0);
        s
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

/// Appends `v` as 16 lowercase hex digits, as `{:016x}` prints it (without the formatting
/// machinery, which costs more than the hash of a small input).
pub(crate) fn push_hex(s: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        s.push(char::from(DIGITS[((v >> (i * 4)) & 0xf) as usize]));
    }
}

/// The prefix of model-request hashes made with XXH3-64.
pub(crate) const XXH3_PREFIX: &str = "xxh3:";

/// The input hashes of one workflow run's model requests: the hash of the JSON of
/// `(messages.len(), messages.last(), params)`. The JSON of the parameters is kept for the
/// last few sets seen (one per agent, usually), so that it is serialized once per run, not once
/// per request: an agent that a tool runs gets a new run on every call.
#[derive(Default)]
pub(crate) struct RequestHasher {
    state: Mutex<HasherState>,
}

/// At most this many sets of parameters keep their JSON.
const KEPT_PARAMS: usize = 8;

#[derive(Default)]
struct HasherState {
    /// Parameters and their JSON, the most recently used last.
    params: Vec<(ModelRequestParams, Vec<u8>)>,
    /// The JSON of the last request hashed, its buffer reused.
    json: Vec<u8>,
}

impl RequestHasher {
    /// The input hash of a model request with `messages` and `params`: `xxh3:` and the
    /// XXH3-64 of the JSON of `(messages.len(), messages.last(), params)`, in hex.
    pub(crate) fn hash(&self, messages: &[Message], params: &ModelRequestParams) -> String {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut json = std::mem::take(&mut st.json);
        json.clear();
        // `hash_of` hashes no bytes when the JSON cannot be built; so does this. The JSON is
        // hashed in one piece: XXH3 is at its fastest over a whole buffer.
        if st.write(&mut json, messages, params).is_err() {
            json.clear();
        }
        let mut hash = String::with_capacity(XXH3_PREFIX.len() + 16);
        hash.push_str(XXH3_PREFIX);
        push_hex(&mut hash, xxh3_64(&json));
        st.json = json;
        hash
    }

    /// The input hash that builds before `xxh3:` hashes gave a model request: FNV-1a of the
    /// same JSON (`stable_hash`). A journal written by them replays against it.
    pub(crate) fn legacy_hash(&self, messages: &[Message], params: &ModelRequestParams) -> String {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut h = Fnv::new();
        match st.write(&mut h, messages, params) {
            Ok(()) => h.hex(),
            Err(_) => crate::ctx::stable_hash(&[]),
        }
    }
}

impl HasherState {
    /// Write the JSON of `(messages.len(), messages.last(), params)` to `out`.
    fn write(
        &mut self,
        out: &mut impl Write,
        messages: &[Message],
        params: &ModelRequestParams,
    ) -> serde_json::Result<()> {
        match self.params.iter().rposition(|(p, _)| p == params) {
            Some(i) if i + 1 == self.params.len() => {}
            Some(i) => {
                let hit = self.params.remove(i);
                self.params.push(hit);
            }
            None => {
                let json = serde_json::to_vec(params)?;
                if self.params.len() == KEPT_PARAMS {
                    self.params.remove(0);
                }
                self.params.push((params.clone(), json));
            }
        }
        let params_json = self
            .params
            .last()
            .map_or(&[][..], |(_, json)| json.as_slice());
        // The JSON of a tuple is its elements' JSON, comma-separated, in brackets.
        let io = serde_json::Error::io;
        out.write_all(b"[").map_err(io)?;
        serde_json::to_writer(&mut *out, &messages.len())?;
        out.write_all(b",").map_err(io)?;
        serde_json::to_writer(&mut *out, &messages.last())?;
        out.write_all(b",").map_err(io)?;
        out.write_all(params_json).map_err(io)?;
        out.write_all(b"]").map_err(io)
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
    fn hex_digits_are_those_of_the_format_macro() {
        for v in [0, 1, 0xf, 0x10, 0xdead_beef, 1 << 63, u64::MAX] {
            let mut s = String::from("x");
            push_hex(&mut s, v);
            assert_eq!(s, format!("x{v:016x}"));
        }
        assert_eq!(Fnv(0xabc).hex(), "0000000000000abc");
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
        let xxh3 =
            |bytes: &[u8]| format!("{XXH3_PREFIX}{:016x}", xxhash_rust::xxh3::xxh3_64(bytes));
        for (tools, turns) in [(0, 0), (1, 0), (1, 3), (3, 1), (1, 4), (0, 2)] {
            let (m, p) = (conversation(turns), params(tools));
            let json = serde_json::to_vec(&(m.len(), m.last(), &p)).unwrap();
            assert_eq!(
                hasher.hash(&m, &p),
                xxh3(&json),
                "{tools} tools, {turns} turns"
            );
            // What earlier builds wrote for the same request.
            assert_eq!(
                hasher.legacy_hash(&m, &p),
                hash_of(&(m.len(), m.last(), &p)),
                "{tools} tools, {turns} turns"
            );
        }
        let p = params(2);
        let json = serde_json::to_vec(&(0_usize, None::<&Message>, &p)).unwrap();
        assert_eq!(hasher.hash(&[], &p), xxh3(&json));
        assert_eq!(
            hasher.legacy_hash(&[], &p),
            hash_of(&(0_usize, None::<&Message>, &p))
        );
    }

    #[test]
    fn kept_parameters_never_answer_for_other_ones() {
        // More sets than are kept, in turns, as a run's agents and their nested agents ask.
        let shared = RequestHasher::default();
        let m = conversation(2);
        for round in 0..3 {
            for tools in (0..KEPT_PARAMS + 2).rev() {
                let p = params(tools);
                assert_eq!(
                    shared.hash(&m, &p),
                    RequestHasher::default().hash(&m, &p),
                    "round {round}, {tools} tools"
                );
                assert_eq!(
                    shared.legacy_hash(&m, &p),
                    hash_of(&(m.len(), m.last(), &p))
                );
            }
        }
        assert!(shared.state.lock().unwrap().params.len() <= KEPT_PARAMS);
    }

    #[test]
    fn xxh3_is_the_published_algorithm() {
        // XXH3-64 of no bytes with seed 0, as its reference implementation gives it: a
        // journal's hashes must not depend on the crate's version.
        assert_eq!(xxh3_64(b""), 0x2d06_8005_38d3_94c2);
    }
}
