//! Test kit shared by the provider tests: recorded cassettes and local HTTP servers.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

/// The cassettes folder: `STEADFAST_CASSETTES`, or `../shared/conformance/cassettes` beside the
/// checkout. `None` (with a note) when absent; under `CI=true` a missing folder is a failure.
pub fn cassettes_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("STEADFAST_CASSETTES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/cassettes")
        });
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "the cassettes folder {} is missing (set STEADFAST_CASSETTES); under CI=true this is a failure",
            dir.display()
        );
    }
    eprintln!(
        "SKIP: no cassettes at {} (set STEADFAST_CASSETTES to run the conformance tests)",
        dir.display()
    );
    None
}

#[derive(Debug, Clone, Deserialize)]
pub struct Cassette {
    pub interactions: Vec<Interaction>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    pub request: RecordedRequest,
    pub response: RecordedResponse,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub uri: String,
    #[serde(default)]
    pub parsed_body: Option<Value>,
    #[serde(default)]
    pub body: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordedResponse {
    pub status: Status,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub parsed_body: Option<Value>,
    #[serde(default)]
    pub body: Option<BodyString>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub code: u16,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BodyString {
    pub string: String,
}

impl RecordedResponse {
    /// The body bytes as the server sent them (JSON re-serialized from `parsed_body`).
    pub fn body_bytes(&self) -> Vec<u8> {
        if let Some(v) = &self.parsed_body {
            return serde_json::to_vec(v).unwrap();
        }
        self.body
            .as_ref()
            .map(|b| b.string.clone().into_bytes())
            .unwrap_or_default()
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get("content-type")
            .and_then(|v| v.first().cloned())
            .unwrap_or_else(|| "application/json".to_string())
    }

    pub fn is_stream(&self) -> bool {
        self.content_type().contains("event-stream")
    }
}

/// Load `<cassettes>/<rel>`.
pub fn load(dir: &std::path::Path, rel: &str) -> Cassette {
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A request the local server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Canned {
    pub fn json(status: u16, body: Value) -> Self {
        Canned {
            status,
            content_type: "application/json".into(),
            headers: vec![],
            body: serde_json::to_vec(&body).unwrap(),
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

impl From<&RecordedResponse> for Canned {
    fn from(r: &RecordedResponse) -> Self {
        Canned {
            status: r.status.code,
            content_type: r.content_type(),
            headers: vec![],
            body: r.body_bytes(),
        }
    }
}

#[derive(Clone, Default)]
struct ServerState {
    queue: Arc<Mutex<VecDeque<Canned>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A local HTTP server that answers each request with the next canned answer, in order, and
/// records what it received.
pub struct MockServer {
    pub base_url: String,
    state: ServerState,
}

impl MockServer {
    pub async fn start(answers: Vec<Canned>) -> MockServer {
        let state = ServerState {
            queue: Arc::new(Mutex::new(answers.into())),
            received: Default::default(),
        };
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MockServer {
            base_url: format!("http://{addr}"),
            state,
        }
    }

    /// Serve every exchange of a cassette, in order.
    pub async fn for_cassette(c: &Cassette) -> MockServer {
        Self::start(
            c.interactions
                .iter()
                .map(|i| Canned::from(&i.response))
                .collect(),
        )
        .await
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn push(&self, c: Canned) {
        self.state.queue.lock().unwrap().push_back(c);
    }
}

async fn handle(
    State(state): State<ServerState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.received.lock().unwrap().push(Received {
        path_and_query: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers,
        body: parsed,
    });
    let next = state.queue.lock().unwrap().pop_front();
    match next {
        Some(c) => {
            let mut resp = (
                StatusCode::from_u16(c.status).unwrap(),
                [("content-type", c.content_type.clone())],
                c.body,
            )
                .into_response();
            for (k, v) in c.headers {
                resp.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            resp
        }
        None => (StatusCode::INTERNAL_SERVER_ERROR, "no more canned answers").into_response(),
    }
}

/// Assert that every key of `expected` is in `actual` with an equal value, recursively: the
/// comparison of our request against the recorded one, as JSON values, not bytes. `ignore` lists
/// top-level keys to leave out (fields the recording client sent that are not part of the input).
pub fn assert_json_subset(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let av = a.get(k).unwrap_or_else(|| {
                    panic!("missing `{path}/{k}`; expected {ev}\nactual object: {actual}")
                });
                assert_json_subset(ev, av, &format!("{path}/{k}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(
                e.len(),
                a.len(),
                "length of `{path}` differs:\nexpected {expected}\nactual {actual}"
            );
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_json_subset(ev, av, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(e), Value::Number(a)) => {
            assert!(
                (e.as_f64().unwrap() - a.as_f64().unwrap()).abs() < 1e-9,
                "`{path}`: expected {e}, got {a}"
            );
        }
        _ => assert_eq!(expected, actual, "`{path}` differs"),
    }
}

/// Remove keys (by dotted path from the root, `*` for every array element) from a JSON value.
pub fn without(mut v: Value, paths: &[&str]) -> Value {
    for p in paths {
        let segs: Vec<&str> = p.split('.').collect();
        remove_path(&mut v, &segs);
    }
    v
}

fn remove_path(v: &mut Value, segs: &[&str]) {
    match segs {
        [] => {}
        [last] => {
            if let Value::Object(m) = v {
                m.remove(*last);
            } else if let (Value::Array(a), &"*") = (v, last) {
                a.clear();
            }
        }
        [head, rest @ ..] => {
            if *head == "*" {
                if let Value::Array(a) = v {
                    for x in a {
                        remove_path(x, rest);
                    }
                }
            } else if let Some(next) = v.get_mut(*head) {
                remove_path(next, rest);
            }
        }
    }
}
