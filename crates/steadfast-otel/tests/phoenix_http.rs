//! Export over OTLP/HTTP (protobuf) to a real Arize Phoenix and read the spans back from its REST
//! API. Needs `STEADFAST_OTLP_URL` (`eval "$(bash .ci/phoenix.sh)"`); skipped without it, except
//! under `CI=true`, where that is a failure.

mod common;

use steadfast_otel::Protocol;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_phoenix_over_http_and_read_back() {
    let Some(phoenix) = common::phoenix::receiver("STEADFAST_OTLP_URL") else {
        return;
    };
    common::phoenix::export_and_read_back(&phoenix, &phoenix, Protocol::HttpProtobuf, "http").await;
}
