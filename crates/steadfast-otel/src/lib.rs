//! Observability for Steadfast: OpenTelemetry traces and metrics over OTLP, and a console span
//! tree.
//!
//! Steadfast's crates open their spans with the plain `tracing` crate, after the OpenTelemetry
//! GenAI conventions (`invoke_agent {agent}`, `chat {model}`, `execute_tool {tool}`) plus the
//! durable engine's `workflow {name}` and `step {id}`; the names are in
//! [`steadfast_core::semconv`]. This crate turns them into something to look at:
//!
//! - **OTLP export** of the spans (batched) and of the GenAI metrics
//!   (`gen_ai.client.token.usage`, `gen_ai.client.operation.duration`, `operation.cost`), over
//!   HTTP/protobuf or gRPC, configured by the standard `OTEL_*` variables.
//! - **A console tree** ([`ConsoleLayer`]): a live, indented tree of the spans with durations,
//!   tokens and cost, replayed steps marked. It needs no collector.
//!
//! One call sets it all up from the environment:
//!
//! ```no_run
//! # async fn demo() -> Result<(), steadfast_otel::OtelError> {
//! let _otel = steadfast_otel::init()?; // flushes when dropped
//! # Ok(()) }
//! ```
//!
//! | variable | meaning |
//! | --- | --- |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL of the receiver; export is on when this (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `..._METRICS_ENDPOINT` | full URLs per signal (used as they are) |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf` (default) or `grpc` |
//! | `OTEL_EXPORTER_OTLP_HEADERS` | `key=value,key2=value2` (URL-encoded values), e.g. `Authorization=<token>` |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` | milliseconds per export (default 10000) |
//! | `OTEL_SERVICE_NAME` | `service.name` (default `steadfast`) |
//! | `OTEL_RESOURCE_ATTRIBUTES` | more resource attributes, `key=value,...` |
//! | `OTEL_SDK_DISABLED` | `true` turns export off |
//! | `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` | `true` records prompts, completions, tool arguments and results |
//! | `STEADFAST_CONSOLE` | `1` prints the console tree on stderr |
//!
//! gRPC export runs on the caller's tokio runtime (a multi-threaded one): call [`init`] inside
//! it. HTTP export needs no runtime.

mod console;
mod fields;
mod http;
mod metrics;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

pub use console::ConsoleLayer;
pub use metrics::GenAiMetricsLayer;
/// The OpenTelemetry API, for custom setups.
pub use opentelemetry;
/// The OpenTelemetry SDK, for custom setups (and its in-memory exporter in tests).
pub use opentelemetry_sdk;
pub use steadfast_core::semconv;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Protobuf over HTTP (`http/protobuf`), to `{endpoint}/v1/traces` and `/v1/metrics`.
    #[default]
    HttpProtobuf,
    /// gRPC (`grpc`), usually on port 4317.
    Grpc,
}

impl Protocol {
    /// Parse an `OTEL_EXPORTER_OTLP_PROTOCOL` value.
    pub fn parse(s: &str) -> Result<Self, OtelError> {
        match s.trim() {
            "" | "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "grpc" => Ok(Protocol::Grpc),
            other => Err(OtelError::Config(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported; use http/protobuf or grpc"
            ))),
        }
    }
}

/// What [`init_with`] sets up. [`Config::from_env`] reads the standard variables; every field can
/// be set in code too.
#[derive(Clone)]
pub struct Config {
    /// `service.name`.
    pub service_name: String,
    /// Base URL of the OTLP receiver; `None` (and no per-signal endpoint) turns export off.
    pub endpoint: Option<String>,
    /// Full URL for traces, used as it is (wins over `endpoint`).
    pub traces_endpoint: Option<String>,
    /// Full URL for metrics, used as it is (wins over `endpoint`).
    pub metrics_endpoint: Option<String>,
    /// The transport.
    pub protocol: Protocol,
    /// Headers (gRPC metadata) sent with every export, e.g. an `Authorization` token. Never
    /// printed: `Debug` shows the names only.
    pub headers: Vec<(String, String)>,
    /// Timeout of one export.
    pub timeout: Duration,
    /// More resource attributes (`OTEL_RESOURCE_ATTRIBUTES` is read by the SDK as well).
    pub resource: Vec<(String, String)>,
    /// Export the GenAI metrics too (when exporting at all).
    pub metrics: bool,
    /// How often metrics are exported.
    pub metrics_interval: Duration,
    /// Print the console tree on stderr.
    pub console: bool,
    /// Show durations in the console tree (off for snapshot tests).
    pub console_durations: bool,
    /// Record message content on spans: `Some` overrides
    /// `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` for the whole process.
    pub capture_content: Option<bool>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service_name: "steadfast".into(),
            endpoint: None,
            traces_endpoint: None,
            metrics_endpoint: None,
            protocol: Protocol::HttpProtobuf,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            resource: Vec::new(),
            metrics: true,
            metrics_interval: Duration::from_secs(60),
            console: false,
            console_durations: true,
            capture_content: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Config")
            .field("service_name", &self.service_name)
            .field("endpoint", &self.endpoint)
            .field("traces_endpoint", &self.traces_endpoint)
            .field("metrics_endpoint", &self.metrics_endpoint)
            .field("protocol", &self.protocol)
            .field("headers", &header_names)
            .field("timeout", &self.timeout)
            .field("resource", &self.resource)
            .field("metrics", &self.metrics)
            .field("console", &self.console)
            .field("capture_content", &self.capture_content)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_flag(name: &str) -> bool {
    env(name).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// Parse `key=value,key2=value2` (values URL-decoded), as in `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES`.
pub fn parse_key_values(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = percent_decode(k.trim());
            (!k.is_empty()).then(|| (k, percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Config {
    /// The configuration the standard variables give (see the crate docs).
    pub fn from_env() -> Result<Self, OtelError> {
        let mut c = Config::default();
        if let Some(name) = env("OTEL_SERVICE_NAME") {
            c.service_name = name;
        }
        if !env_flag("OTEL_SDK_DISABLED") {
            c.endpoint = env("OTEL_EXPORTER_OTLP_ENDPOINT");
            c.traces_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
            c.metrics_endpoint = env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
        }
        if let Some(p) = env("OTEL_EXPORTER_OTLP_PROTOCOL") {
            c.protocol = Protocol::parse(&p)?;
        }
        if let Some(h) = env("OTEL_EXPORTER_OTLP_HEADERS") {
            c.headers = parse_key_values(&h);
        }
        if let Some(t) = env("OTEL_EXPORTER_OTLP_TIMEOUT") {
            let ms: u64 = t.trim().parse().map_err(|_| {
                OtelError::Config(format!(
                    "OTEL_EXPORTER_OTLP_TIMEOUT={t} is not a number of milliseconds"
                ))
            })?;
            c.timeout = Duration::from_millis(ms);
        }
        if env("OTEL_METRICS_EXPORTER").is_some_and(|v| v.trim() == "none") {
            c.metrics = false;
        }
        if let Some(ms) =
            env("OTEL_METRIC_EXPORT_INTERVAL").and_then(|v| v.trim().parse::<u64>().ok())
        {
            c.metrics_interval = Duration::from_millis(ms);
        }
        c.console = env_flag("STEADFAST_CONSOLE");
        Ok(c)
    }

    /// Turn the console tree on or off (`--trace` flags).
    pub fn with_console(mut self, on: bool) -> Self {
        self.console = on;
        self
    }

    /// Export to `endpoint` (a base URL) over `protocol`.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>, protocol: Protocol) -> Self {
        self.endpoint = Some(endpoint.into());
        self.protocol = protocol;
        self
    }

    /// Add a resource attribute (for example `openinference.project.name` for Phoenix).
    pub fn with_resource_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.resource.push((key.into(), value.into()));
        self
    }

    /// Whether this configuration exports anything over OTLP.
    pub fn exports(&self) -> bool {
        self.endpoint.is_some() || self.traces_endpoint.is_some()
    }

    fn signal_endpoint(&self, specific: &Option<String>, path: &str) -> Option<String> {
        if let Some(e) = specific {
            return Some(e.clone());
        }
        let base = self.endpoint.as_ref()?.trim_end_matches('/');
        Some(match self.protocol {
            Protocol::HttpProtobuf => format!("{base}{path}"),
            Protocol::Grpc => base.to_string(),
        })
    }
}

/// Why telemetry could not be set up.
#[derive(Debug)]
pub enum OtelError {
    /// A setting is wrong.
    Config(String),
    /// The exporter could not be built.
    Exporter(String),
    /// A flush did not complete (the receiver is down or slow).
    Flush(String),
    /// A global `tracing` subscriber is set already.
    AlreadyInitialized,
}

impl fmt::Display for OtelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OtelError::Config(m) => write!(f, "telemetry configuration: {m}"),
            OtelError::Exporter(m) => write!(f, "cannot build the OTLP exporter: {m}"),
            OtelError::Flush(m) => write!(f, "flushing telemetry: {m}"),
            OtelError::AlreadyInitialized => {
                f.write_str("a global tracing subscriber is already set")
            }
        }
    }
}

impl std::error::Error for OtelError {}

/// Keeps the exporters alive; dropping it flushes and shuts them down.
#[must_use = "dropping the guard shuts the exporters down"]
#[derive(Default)]
pub struct OtelGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelGuard")
            .field("traces", &self.tracer.is_some())
            .field("metrics", &self.meter.is_some())
            .finish()
    }
}

impl OtelGuard {
    /// Export everything finished so far, now. Blocks until the exporters answer (or time out).
    pub fn flush(&self) -> Result<(), OtelError> {
        if let Some(t) = &self.tracer {
            t.force_flush()
                .map_err(|e| OtelError::Flush(e.to_string()))?;
        }
        if let Some(m) = &self.meter {
            m.force_flush()
                .map_err(|e| OtelError::Flush(e.to_string()))?;
        }
        Ok(())
    }

    /// The tracer provider, if spans are exported.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.tracer.as_ref()
    }

    /// The meter provider, if metrics are exported.
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.meter.as_ref()
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        if let Some(m) = self.meter.take() {
            let _ = m.shutdown();
        }
    }
}

/// Set everything up from the environment ([`Config::from_env`]) and install it as the global
/// `tracing` subscriber.
pub fn init() -> Result<OtelGuard, OtelError> {
    init_with(Config::from_env()?)
}

/// Set up what `config` asks for and install it as the global `tracing` subscriber.
pub fn init_with(config: Config) -> Result<OtelGuard, OtelError> {
    let (layer, guard) = layers(&config)?;
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| OtelError::AlreadyInitialized)?;
    Ok(guard)
}

/// The layers `config` asks for, to compose with a subscriber of your own, and the guard of
/// their exporters. Sets the content-capture switch if the config has one.
pub fn layers<S>(config: &Config) -> Result<(Box<dyn Layer<S> + Send + Sync>, OtelGuard), OtelError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if let Some(on) = config.capture_content {
        semconv::set_capture_content(Some(on));
    }
    let mut all: Vec<Box<dyn Layer<S> + Send + Sync>> = Vec::new();
    let mut guard = OtelGuard::default();
    if config.exports() {
        let resource = resource(config);
        let tracer = tracer_provider(config, resource.clone())?;
        all.push(Box::new(
            tracing_layer(&tracer).with_filter(filter_fn(exported)),
        ));
        guard.tracer = Some(tracer);
        if config.metrics {
            let meter = meter_provider(config, resource)?;
            all.push(Box::new(GenAiMetricsLayer::new(&meter)));
            guard.meter = Some(meter);
        }
    }
    if config.console {
        let console = ConsoleLayer::stderr().with_durations(config.console_durations);
        all.push(Box::new(console));
    }
    Ok((Box::new(all), guard))
}

/// Which spans and events the OTLP layer exports: INFO and above (Steadfast's spans are INFO),
/// except those of the exporters' own stack (HTTP/2, gRPC, the SDK), which would otherwise feed
/// back into the export.
pub fn exported(meta: &tracing::Metadata<'_>) -> bool {
    const TRANSPORT: [&str; 7] = [
        "h2",
        "hyper",
        "tonic",
        "tower",
        "reqwest",
        "opentelemetry",
        "rustls",
    ];
    *meta.level() <= tracing::Level::INFO
        && !TRANSPORT.iter().any(|t| {
            meta.target().strip_prefix(t).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with("::") || rest.starts_with('_')
            })
        })
}

/// The `tracing-opentelemetry` layer as Steadfast configures it: spans of `provider`, without
/// the thread, source-location and busy/idle attributes.
pub fn tracing_layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("steadfast"))
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_target(false)
}

fn resource(config: &Config) -> Resource {
    Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attributes(
            config
                .resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}

fn tracer_provider(config: &Config, resource: Resource) -> Result<SdkTracerProvider, OtelError> {
    let endpoint = config
        .signal_endpoint(&config.traces_endpoint, "/v1/traces")
        .ok_or_else(|| OtelError::Config("no OTLP endpoint for traces".into()))?;
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match config.protocol {
        Protocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(config.timeout)
            .with_headers(header_map(config))
            .with_http_client(http::client(config.timeout)?)
            .build(),
        Protocol::Grpc => {
            need_runtime()?;
            builder
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(config.timeout)
                .with_metadata(metadata(config)?)
                .build()
        }
    }
    .map_err(|e| OtelError::Exporter(e.to_string()))?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

fn meter_provider(config: &Config, resource: Resource) -> Result<SdkMeterProvider, OtelError> {
    let endpoint = config
        .signal_endpoint(&config.metrics_endpoint, "/v1/metrics")
        .ok_or_else(|| OtelError::Config("no OTLP endpoint for metrics".into()))?;
    let builder = opentelemetry_otlp::MetricExporter::builder();
    let exporter = match config.protocol {
        Protocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(config.timeout)
            .with_headers(header_map(config))
            .with_http_client(http::client(config.timeout)?)
            .build(),
        Protocol::Grpc => {
            need_runtime()?;
            builder
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(config.timeout)
                .with_metadata(metadata(config)?)
                .build()
        }
    }
    .map_err(|e| OtelError::Exporter(e.to_string()))?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
        .with_interval(config.metrics_interval)
        .build();
    Ok(SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader)
        .build())
}

fn need_runtime() -> Result<(), OtelError> {
    tokio::runtime::Handle::try_current().map(|_| ()).map_err(|_| {
        OtelError::Config(
            "OTLP over gRPC runs on the caller's tokio runtime: call init() inside a (multi-threaded) \
             tokio runtime, or use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
                .into(),
        )
    })
}

fn header_map(config: &Config) -> HashMap<String, String> {
    config.headers.iter().cloned().collect()
}

fn metadata(
    config: &Config,
) -> Result<opentelemetry_otlp::tonic_types::metadata::MetadataMap, OtelError> {
    use ::http::{HeaderMap, HeaderName, HeaderValue};
    let mut map = HeaderMap::new();
    for (k, v) in &config.headers {
        let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|_| OtelError::Config(format!("`{k}` is not a valid header name")))?;
        // The value is a secret (a token); never echo it in the error.
        let value = HeaderValue::from_str(v)
            .map_err(|_| OtelError::Config(format!("the value of header `{k}` is not valid")))?;
        map.insert(name, value);
    }
    Ok(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_parse_and_decode() {
        assert_eq!(
            parse_key_values("Authorization=Bearer%20abc, x-team = blue ,bad"),
            vec![
                ("Authorization".to_string(), "Bearer abc".to_string()),
                ("x-team".to_string(), "blue".to_string())
            ]
        );
    }

    #[test]
    fn endpoints_follow_the_protocol() {
        let c = Config::default().with_endpoint("http://127.0.0.1:6006/", Protocol::HttpProtobuf);
        assert_eq!(
            c.signal_endpoint(&c.traces_endpoint, "/v1/traces")
                .as_deref(),
            Some("http://127.0.0.1:6006/v1/traces")
        );
        let c = Config::default().with_endpoint("http://127.0.0.1:4317", Protocol::Grpc);
        assert_eq!(
            c.signal_endpoint(&c.traces_endpoint, "/v1/traces")
                .as_deref(),
            Some("http://127.0.0.1:4317")
        );
        assert!(!Config::default().exports());
    }

    #[test]
    fn debug_hides_header_values() {
        let mut c = Config::default();
        c.headers
            .push(("Authorization".into(), "secret-token".into()));
        let s = format!("{c:?}");
        assert!(
            s.contains("Authorization") && !s.contains("secret-token"),
            "{s}"
        );
    }

    #[test]
    fn protocols_parse() {
        assert_eq!(Protocol::parse("grpc").unwrap(), Protocol::Grpc);
        assert_eq!(
            Protocol::parse("http/protobuf").unwrap(),
            Protocol::HttpProtobuf
        );
        assert!(Protocol::parse("http/json").is_err());
    }
}
