//! The GenAI client metrics, taken from the `chat` spans as they close:
//! `gen_ai.client.token.usage` (by `gen_ai.token.type`), `gen_ai.client.operation.duration`
//! and `operation.cost`.

use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use steadfast_core::semconv::*;
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::fields::Fields;

/// A `tracing` layer that records the GenAI metrics of every `chat` span.
pub struct GenAiMetricsLayer {
    tokens: Histogram<u64>,
    duration: Histogram<f64>,
    cost: Histogram<f64>,
}

struct ChatTiming {
    start: Instant,
    fields: Fields,
}

impl GenAiMetricsLayer {
    /// The instruments, on a meter of `provider`.
    pub fn new(provider: &SdkMeterProvider) -> Self {
        let meter = provider.meter("steadfast");
        // The conventions' advised bucket boundaries.
        let token_buckets = vec![
            1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
            4194304.0, 16777216.0, 67108864.0,
        ];
        let duration_buckets = vec![
            0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
        ];
        GenAiMetricsLayer {
            tokens: meter
                .u64_histogram(METRIC_TOKEN_USAGE)
                .with_unit("{token}")
                .with_description("Number of input and output tokens used")
                .with_boundaries(token_buckets)
                .build(),
            duration: meter
                .f64_histogram(METRIC_OPERATION_DURATION)
                .with_unit("s")
                .with_description("GenAI operation duration")
                .with_boundaries(duration_buckets)
                .build(),
            cost: meter
                .f64_histogram(METRIC_OPERATION_COST)
                .with_unit("USD")
                .with_description("Cost of one model request, from the price table")
                .build(),
        }
    }
}

impl<S> Layer<S> for GenAiMetricsLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != SPAN_CHAT || attrs.metadata().target() != TARGET {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(ChatTiming {
            start: Instant::now(),
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(t) = span.extensions_mut().get_mut::<ChatTiming>() {
            values.record(&mut t.fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(t) = span.extensions_mut().remove::<ChatTiming>() else {
            return;
        };
        let f = &t.fields;
        let mut attrs = vec![KeyValue::new(GEN_AI_OPERATION_NAME, OP_CHAT)];
        for key in [
            GEN_AI_PROVIDER_NAME,
            GEN_AI_REQUEST_MODEL,
            GEN_AI_RESPONSE_MODEL,
            ERROR_TYPE,
        ] {
            if let Some(v) = f.str(key) {
                attrs.push(KeyValue::new(key, v.to_string()));
            }
        }
        self.duration
            .record(t.start.elapsed().as_secs_f64(), &attrs);
        if f.get(ERROR_TYPE).is_some() {
            return;
        }
        for (key, kind) in [
            (GEN_AI_USAGE_INPUT_TOKENS, "input"),
            (GEN_AI_USAGE_OUTPUT_TOKENS, "output"),
        ] {
            if let Some(n) = f.u64(key) {
                let mut a = attrs.clone();
                a.push(KeyValue::new(GEN_AI_TOKEN_TYPE, kind));
                self.tokens.record(n, &a);
            }
        }
        if let Some(c) = f.f64(OPERATION_COST) {
            self.cost.record(c, &attrs);
        }
    }
}
