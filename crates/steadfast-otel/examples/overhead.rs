//! Tracing overhead per model round trip.
//!
//! An agent played by a FunctionModel calls a tool ten times and then answers: 11 model requests
//! and 10 tool calls per run, 22 spans with tracing on. The same runs are timed with no
//! subscriber (the spans are compiled in but disabled), with the console tree (written to a sink),
//! and with the OTLP exporter batching to a running receiver over HTTP and gRPC (when
//! `STEADFAST_OTLP_URL` / `STEADFAST_OTLP_GRPC` are set, e.g. by `eval "$(bash .ci/phoenix.sh)"`).
//!
//! Runs go in rounds of 80 (1,760 spans, under the batch processor's default queue of 2,048, so
//! none is dropped); after each round the exporter is flushed, untimed. Export work runs on the
//! batch processor's thread during the timed rounds, as it would in a real program.
//!
//! ```text
//! cargo run --release -p steadfast-otel --example overhead [rounds]
//! ```

use std::time::{Duration, Instant};

use serde_json::json;
use steadfast_core::{Agent, FunctionModel, Message, ModelResponse, RequestPart, Tool};
use steadfast_otel::{Config, ConsoleLayer, OtelGuard, Protocol};
use tracing_subscriber::layer::SubscriberExt;

const TOOL_CALLS: usize = 10;
const ROUND_TRIPS_PER_RUN: usize = TOOL_CALLS + 1;
const RUNS_PER_ROUND: usize = 80;

/// Ping something.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Ping {
    /// A number.
    n: u32,
}

fn agent() -> Agent<(), String> {
    let model = FunctionModel::new(|messages: &[Message], _| {
        let returns = messages
            .iter()
            .filter_map(Message::as_request)
            .flat_map(|r| r.parts.iter())
            .filter(|p| matches!(p, RequestPart::ToolReturn { .. }))
            .count();
        Ok(if returns < TOOL_CALLS {
            ModelResponse::tool_call("ping", json!({ "n": returns }))
        } else {
            ModelResponse::text("done")
        })
    });
    Agent::builder("bench")
        .model(model)
        .tool(Tool::plain("ping", |p: Ping| async move { Ok(p.n + 1) }))
        .build()
        .expect("agent")
}

/// Time `rounds` rounds of runs; returns the time per model round trip.
fn measure(rt: &tokio::runtime::Runtime, rounds: usize, flush: &dyn Fn()) -> Duration {
    let agent = agent();
    // Warm-up.
    rt.block_on(async {
        for _ in 0..RUNS_PER_ROUND {
            agent.run("go", ()).await.unwrap();
        }
    });
    flush();
    let mut total = Duration::ZERO;
    for _ in 0..rounds {
        let t = Instant::now();
        rt.block_on(async {
            for _ in 0..RUNS_PER_ROUND {
                agent.run("go", ()).await.unwrap();
            }
        });
        total += t.elapsed();
        flush();
    }
    total / (rounds * RUNS_PER_ROUND * ROUND_TRIPS_PER_RUN) as u32
}

/// Waits for the exporter; a receiver that falls behind makes a flush time out, which costs
/// the program nothing (the export runs on the batch thread), so it is reported, not fatal.
fn flush(guard: &OtelGuard) {
    if let Err(e) = guard.flush() {
        eprintln!("flush: {e}");
    }
}

fn otlp(
    endpoint: &str,
    protocol: Protocol,
    project: &str,
) -> (Box<dyn tracing::Subscriber + Send + Sync>, OtelGuard) {
    let mut config = Config::default()
        .with_endpoint(endpoint, protocol)
        .with_resource_attribute("openinference.project.name", project);
    config.metrics = false;
    let (layer, guard) = steadfast_otel::layers(&config).expect("otlp layers");
    (Box::new(tracing_subscriber::registry().with(layer)), guard)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // gRPC export runs on a runtime of its own, as in a multi-threaded program.
    let grpc_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let tag = std::process::id();
    let mut rows: Vec<(String, Duration)> = Vec::new();

    let base = measure(&rt, rounds, &|| {});
    rows.push(("no subscriber (spans disabled)".into(), base));

    let console = tracing_subscriber::registry().with(ConsoleLayer::with_writer(std::io::sink()));
    let d = tracing::subscriber::with_default(console, || measure(&rt, rounds, &|| {}));
    rows.push(("console tree (to a sink)".into(), d));

    if let Ok(url) = std::env::var("STEADFAST_OTLP_URL") {
        let (sub, guard) = otlp(&url, Protocol::HttpProtobuf, &format!("bench-http-{tag}"));
        let d = tracing::subscriber::with_default(sub, || measure(&rt, rounds, &|| flush(&guard)));
        rows.push(("OTLP/HTTP batching to Phoenix".into(), d));
    } else {
        eprintln!("STEADFAST_OTLP_URL is not set: no OTLP/HTTP figure");
    }
    if let Ok(url) = std::env::var("STEADFAST_OTLP_GRPC") {
        let (sub, guard) = {
            let _enter = grpc_rt.enter();
            otlp(&url, Protocol::Grpc, &format!("bench-grpc-{tag}"))
        };
        let d = tracing::subscriber::with_default(sub, || measure(&rt, rounds, &|| flush(&guard)));
        rows.push(("OTLP/gRPC batching to Phoenix".into(), d));
        let _enter = grpc_rt.enter();
        drop(guard);
    } else {
        eprintln!("STEADFAST_OTLP_GRPC is not set: no OTLP/gRPC figure");
    }

    let n = rounds * RUNS_PER_ROUND;
    println!(
        "Tracing overhead per model round trip ({n} runs x {ROUND_TRIPS_PER_RUN} requests, FunctionModel, {} spans per run)",
        2 * TOOL_CALLS + 2
    );
    println!(
        "{:<34} {:>14} {:>10} {:>12}",
        "setup", "per round trip", "vs none", "added"
    );
    for (name, d) in &rows {
        let ratio = d.as_secs_f64() / base.as_secs_f64();
        let added = d.as_secs_f64() - base.as_secs_f64();
        println!(
            "{name:<34} {:>11.2} µs {:>9.2}x {:>9.2} µs",
            d.as_secs_f64() * 1e6,
            ratio,
            added * 1e6
        );
    }
}
