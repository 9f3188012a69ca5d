//! The HTTP client of the OTLP/HTTP exporters: the workspace's reqwest 0.12 (rustls with ring),
//! blocking, because the SDK's batch span processor and periodic metric reader export from their
//! own threads, outside any async runtime.

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

use crate::OtelError;

/// A blocking reqwest client. Its `Debug` shows nothing of the requests (headers hold tokens).
pub(crate) struct BlockingClient(reqwest::blocking::Client);

impl std::fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlockingClient")
    }
}

/// Build the client. A blocking reqwest client runs its own small runtime on a thread; it is
/// built on a helper thread so that building it inside an async context is fine too.
pub(crate) fn client(timeout: Duration) -> Result<BlockingClient, OtelError> {
    std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()
            .map(BlockingClient)
            .map_err(|e| OtelError::Exporter(format!("HTTP client: {e}")))
    })
    .join()
    .map_err(|_| OtelError::Exporter("HTTP client: the builder thread panicked".into()))?
}

#[async_trait::async_trait]
impl HttpClient for BlockingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let mut builder = Response::builder().status(response.status());
        for (k, v) in response.headers() {
            builder = builder.header(k, v);
        }
        let body = response.bytes()?;
        Ok(builder.body(body)?)
    }
}
