//! The HTTP layer shared by every provider: configuration, error mapping, retries with backoff
//! that honour `Retry-After`, and SSE streaming.

use std::fmt;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::Value;
use steadfast_core::ModelError;

use crate::sse::{SseEvent, SseParser};

/// How a provider client reaches its API.
#[derive(Clone)]
pub struct ClientConfig {
    /// The API's base URL, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The API key. Never logged, never journaled.
    pub api_key: Option<String>,
    /// Timeout of one HTTP request, from sending to the last byte of a non-streamed body.
    pub timeout: Duration,
    /// Timeout for connecting.
    pub connect_timeout: Duration,
    /// Retries of 408/409/429/5xx answers and connection failures (0 = none).
    pub max_retries: u32,
    /// Delay before the first retry; doubled each time, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Cap of the backoff delay.
    pub max_backoff: Duration,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A configuration for `base_url` with default timeouts (10 min request, 10 s connect) and
    /// two retries.
    pub fn new(base_url: impl Into<String>) -> Self {
        ClientConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key: None,
            timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            headers: Vec::new(),
        }
    }

    /// The base URL from `url_var` if set (and non-empty), else `default`; the key from the
    /// first of `key_vars` that is set.
    pub fn from_env(url_var: &str, default: &str, key_vars: &[&str]) -> Self {
        let base = std::env::var(url_var)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| default.to_string());
        let mut c = ClientConfig::new(base);
        c.api_key = key_vars
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()));
        c
    }

    /// Whether the base URL's host is `host` (case-insensitive; scheme, user info, port and path
    /// ignored). Providers use it to insist on a key only for their official endpoint.
    pub fn is_host(&self, host: &str) -> bool {
        let rest = self
            .base_url
            .split_once("://")
            .map_or(self.base_url.as_str(), |(_, rest)| rest);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let h = authority.rsplit('@').next().unwrap_or(authority);
        h.split(':').next().unwrap_or(h).eq_ignore_ascii_case(host)
    }

    /// The same configuration with an API key.
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The same configuration with another request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same configuration with another retry limit.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }
}

/// A configured HTTP client for one provider.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    provider: String,
    /// The configuration.
    pub config: ClientConfig,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("provider", &self.provider)
            .field("config", &self.config)
            .finish()
    }
}

/// The body of a failed request, mapped to a [`ModelError`].
pub fn error_from_response(
    provider: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> ModelError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let parsed = match parsed {
        // Some servers wrap the error in a one-element array.
        Some(Value::Array(mut a)) if !a.is_empty() => Some(a.swap_remove(0)),
        other => other,
    };
    let (message, code) = match &parsed {
        Some(v) => {
            let err = v.get("error").unwrap_or(v);
            let message = match err {
                Value::String(s) => Some(s.clone()),
                _ => err
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            };
            let code = ["code", "type", "status"]
                .iter()
                .find_map(|k| err.get(*k))
                .and_then(|c| match c {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
            (message, code)
        }
        None => (None, None),
    };
    let message = message.unwrap_or_else(|| {
        let t = body.trim();
        if t.is_empty() {
            format!("HTTP {status} with an empty body")
        } else {
            t.chars().take(500).collect()
        }
    });
    ModelError::Http {
        provider: provider.to_string(),
        status,
        message,
        code,
        retry_after,
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
    {
        return Some(Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 3600.0)));
    }
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 3600.0)))
}

impl HttpClient {
    /// A client for `provider` with `config`.
    pub fn new(provider: impl Into<String>, config: ClientConfig) -> Result<Self, ModelError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ModelError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpClient {
            client,
            provider: provider.into(),
            config,
        })
    }

    /// The provider's name, used in every error this client reports.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Report errors under another provider name (a compatible server or gateway).
    pub fn set_provider(&mut self, provider: &str) {
        self.provider = provider.to_string();
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.config.base_url, path)
    }

    fn map_send_error(&self, e: reqwest::Error, timeout: Duration) -> ModelError {
        if e.is_timeout() {
            ModelError::Timeout {
                provider: self.provider.clone(),
                timeout,
            }
        } else {
            ModelError::Connection {
                provider: self.provider.clone(),
                message: error_chain(&e),
            }
        }
    }

    fn backoff(&self, attempt: u32, err: &ModelError) -> Option<Duration> {
        if attempt > self.config.max_retries || !err.is_retryable() {
            return None;
        }
        let exp = self.config.initial_backoff.as_secs_f64() * 2f64.powi(attempt as i32 - 1);
        let computed = Duration::from_secs_f64(exp.min(self.config.max_backoff.as_secs_f64()));
        Some(err.retry_after().map_or(computed, |ra| ra.max(computed)))
    }

    /// Send the request once; a non-2xx status becomes an error.
    async fn send_once(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
        streaming: bool,
    ) -> Result<reqwest::Response, ModelError> {
        let mut req = self.client.post(url).json(body);
        if !streaming {
            req = req.timeout(self.config.timeout);
        }
        for (k, v) in &self.config.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        // A streamed request has no whole-body timeout, but waiting for its headers is bounded.
        let resp = match tokio::time::timeout(self.config.timeout, req.send()).await {
            Ok(r) => r.map_err(|e| self.map_send_error(e, self.config.timeout))?,
            Err(_) => {
                return Err(ModelError::Timeout {
                    provider: self.provider.clone(),
                    timeout: self.config.timeout,
                });
            }
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let ra = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        Err(error_from_response(&self.provider, status, ra, &text))
    }

    async fn send_with_retries(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
        streaming: bool,
    ) -> Result<reqwest::Response, ModelError> {
        let mut attempt = 1;
        loop {
            match self.send_once(url, headers, body, streaming).await {
                Ok(r) => return Ok(r),
                Err(e) => match self.backoff(attempt, &e) {
                    Some(d) => {
                        tracing::debug!(provider = %self.provider, attempt, delay = ?d, error = %e, "retrying model request");
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(e),
                },
            }
            attempt += 1;
        }
    }

    /// POST JSON and parse the JSON answer, retrying retryable failures.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, ModelError> {
        let mut attempt = 1;
        loop {
            let result = async {
                let resp = self.send_with_retries(url, headers, body, false).await?;
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| self.map_send_error(e, self.config.timeout))?;
                serde_json::from_slice::<Value>(&bytes).map_err(|e| ModelError::InvalidResponse {
                    provider: self.provider.clone(),
                    message: format!("the body is not JSON ({e})"),
                })
            }
            .await;
            match result {
                // Body read failures (a timeout mid-body) are retried like send failures.
                Err(e @ (ModelError::Timeout { .. } | ModelError::Connection { .. })) => {
                    match self.backoff(attempt, &e) {
                        Some(d) => tokio::time::sleep(d).await,
                        None => return Err(e),
                    }
                }
                other => return other,
            }
            attempt += 1;
        }
    }

    /// POST JSON and stream the SSE answer. Failures before the first byte are retried; the
    /// stream itself is not (a half-consumed stream cannot be replayed).
    pub async fn post_sse(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &Value,
    ) -> Result<impl Stream<Item = Result<SseEvent, ModelError>> + Send + 'static, ModelError> {
        let resp = self.send_with_retries(url, headers, body, true).await?;
        let provider = self.provider.clone();
        let timeout = self.config.timeout;
        Ok(sse_events(resp.bytes_stream(), provider, timeout))
    }
}

/// Turn a byte stream into SSE events; an idle gap longer than `idle_timeout` ends it with an error.
fn sse_events<S>(
    bytes: S,
    provider: String,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<SseEvent, ModelError>> + Send + 'static
where
    S: Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
{
    let state = (
        Box::pin(bytes),
        SseParser::new(),
        std::collections::VecDeque::new(),
        false,
    );
    futures::stream::unfold(
        state,
        move |(mut bytes, mut parser, mut queue, mut done)| {
            let provider = provider.clone();
            async move {
                loop {
                    if let Some(ev) = queue.pop_front() {
                        return Some((Ok(ev), (bytes, parser, queue, done)));
                    }
                    if done {
                        return None;
                    }
                    match tokio::time::timeout(idle_timeout, bytes.next()).await {
                        Err(_) => {
                            done = true;
                            let err = ModelError::Timeout {
                                provider: provider.clone(),
                                timeout: idle_timeout,
                            };
                            return Some((Err(err), (bytes, parser, queue, done)));
                        }
                        Ok(Some(Ok(chunk))) => queue.extend(parser.feed(&chunk)),
                        Ok(Some(Err(e))) => {
                            done = true;
                            let err = ModelError::Connection {
                                provider: provider.clone(),
                                message: format!("the stream broke: {}", error_chain(&e)),
                            };
                            return Some((Err(err), (bytes, parser, queue, done)));
                        }
                        Ok(None) => {
                            done = true;
                            queue.extend(parser.finish());
                        }
                    }
                }
            }
        },
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Parse an SSE event's data as JSON, or fail with a clear error.
pub fn event_json(provider: &str, ev: &SseEvent) -> Result<Value, ModelError> {
    serde_json::from_str(ev.data.trim()).map_err(|e| ModelError::InvalidResponse {
        provider: provider.to_string(),
        message: format!(
            "a stream event is not JSON ({e}): {}",
            truncate(&ev.data, 200)
        ),
    })
}

/// A string cut to `n` characters.
pub fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A helper for parsers: a missing field as an error.
pub fn invalid(provider: &str, message: impl Into<String>) -> ModelError {
    ModelError::InvalidResponse {
        provider: provider.to_string(),
        message: message.into(),
    }
}
