//! The GenAI metrics: `gen_ai.client.token.usage` split by `gen_ai.token.type`,
//! `gen_ai.client.operation.duration` in seconds, and `operation.cost`, one record per request
//! actually sent, with the conventions' attributes.

mod common;

use opentelemetry::KeyValue;
use steadfast_otel::GenAiMetricsLayer;
use steadfast_otel::opentelemetry;
use steadfast_otel::opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use steadfast_otel::opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
};
use steadfast_otel::semconv;
use tracing_subscriber::layer::SubscriberExt;

fn has(attrs: &[KeyValue], key: &str, value: &str) -> bool {
    attrs
        .iter()
        .any(|kv| kv.key.as_str() == key && kv.value.to_string() == value)
}

#[test]
fn token_usage_duration_and_cost_histograms() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let layer = GenAiMetricsLayer::new(&provider);
    {
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                common::planner().run(common::PROMPT, ()).await.unwrap();
            });
    }
    provider.force_flush().unwrap();
    let metrics = exporter.get_finished_metrics().unwrap();
    let mut tokens = Vec::new();
    let mut durations = 0;
    let mut cost = 0.0;
    for rm in &metrics {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                match (m.name(), m.data()) {
                    (
                        semconv::METRIC_TOKEN_USAGE,
                        AggregatedMetrics::U64(MetricData::Histogram(h)),
                    ) => {
                        for p in h.data_points() {
                            let attrs: Vec<KeyValue> = p.attributes().cloned().collect();
                            assert!(has(&attrs, semconv::GEN_AI_OPERATION_NAME, "chat"));
                            assert!(has(&attrs, semconv::GEN_AI_PROVIDER_NAME, "function"));
                            let model = attrs
                                .iter()
                                .find(|kv| kv.key.as_str() == semconv::GEN_AI_REQUEST_MODEL)
                                .map(|kv| kv.value.to_string())
                                .unwrap();
                            let kind = attrs
                                .iter()
                                .find(|kv| kv.key.as_str() == semconv::GEN_AI_TOKEN_TYPE)
                                .map(|kv| kv.value.to_string())
                                .unwrap();
                            tokens.push((model, kind, p.count(), p.sum()));
                        }
                    }
                    (
                        semconv::METRIC_OPERATION_DURATION,
                        AggregatedMetrics::F64(MetricData::Histogram(h)),
                    ) => {
                        assert_eq!(m.unit(), "s");
                        durations += h.data_points().map(|p| p.count()).sum::<u64>();
                    }
                    (
                        semconv::METRIC_OPERATION_COST,
                        AggregatedMetrics::F64(MetricData::Histogram(h)),
                    ) => {
                        cost += h.data_points().map(|p| p.sum()).sum::<f64>();
                    }
                    _ => {}
                }
            }
        }
    }
    tokens.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        tokens,
        vec![
            ("plan-model".to_string(), "input".to_string(), 2, 200),
            ("plan-model".to_string(), "output".to_string(), 2, 40),
            ("search-model".to_string(), "input".to_string(), 1, 30),
            ("search-model".to_string(), "output".to_string(), 1, 6),
        ]
    );
    assert_eq!(durations, 3, "one duration per request");
    assert!((cost - 0.0027).abs() < 1e-12, "{cost}");
}
