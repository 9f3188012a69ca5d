//! Export over OTLP/gRPC to a real Arize Phoenix and read the spans back from its REST API. Needs
//! `STEADFAST_OTLP_URL` and `STEADFAST_OTLP_GRPC` (`eval "$(bash .ci/phoenix.sh)"`); skipped
//! without them, except under `CI=true`, where that is a failure.

mod common;

use steadfast_otel::Protocol;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_phoenix_over_grpc_and_read_back() {
    let (Some(phoenix), Some(grpc)) = (
        common::phoenix::receiver("STEADFAST_OTLP_URL"),
        common::phoenix::receiver("STEADFAST_OTLP_GRPC"),
    ) else {
        return;
    };
    common::phoenix::export_and_read_back(&phoenix, &grpc, Protocol::Grpc, "grpc").await;
}
