//! A measurement, not an assertion: the latency of one `commit_step` in each durability mode,
//! and how group commit batches parallel writers. Run with
//! `cargo test -p steadfast-sqlite --release --test latency -- --nocapture`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use steadfast_durable::{Json, NewWorkflow, StepKind, StepRecord, Store};
use steadfast_sqlite::{Durability, SqliteOptions};

use common::TempDb;

fn step(position: String) -> StepRecord {
    StepRecord {
        step_id: format!("agent#1/tool__search#{position}"),
        position,
        kind: StepKind::Tool,
        name: "agent__a__tool__search".into(),
        input_hash: "0123456789abcdef".into(),
        input: Some(Json::from(json!({ "query": "steadfast" }))),
        output: Ok(Json::from(
            json!({ "results": ["a", "b", "c"], "usage": { "input_tokens": 120 } }),
        )),
        attempts: 1,
        started_at: 1_700_000_000_000,
        duration_us: 1234,
        seq: 0,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_step_latency() {
    const SEQUENTIAL: usize = 200;
    const TASKS: usize = 8;
    const PER_TASK: usize = 50;
    for durability in [Durability::ProcessCrashSafe, Durability::PowerLossSafe] {
        let db = TempDb::new(&format!("latency-{durability:?}"));
        let store = Arc::new(db.open_with(SqliteOptions {
            durability,
            ..SqliteOptions::default()
        }));
        let names = vec!["bench".to_owned()];
        for w in 0..=TASKS {
            let new = NewWorkflow {
                id: format!("wf{w}"),
                name: "bench".into(),
                input: json!(null),
                parent_id: None,
            };
            store.create_workflow(new).await.unwrap();
        }
        let claimed = store
            .claim("w", &names, TASKS + 1, Duration::from_secs(600), &[])
            .await
            .unwrap();
        assert_eq!(claimed.len(), TASKS + 1);

        let mut times = Vec::with_capacity(SEQUENTIAL);
        for i in 0..SEQUENTIAL {
            let start = Instant::now();
            store
                .commit_step("wf0", "w", step(i.to_string()), None)
                .await
                .unwrap();
            times.push(start.elapsed());
        }
        times.sort();

        let before = store.stats();
        let start = Instant::now();
        let tasks: Vec<_> = (1..=TASKS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..PER_TASK {
                        let id = format!("wf{w}");
                        store
                            .commit_step(&id, "w", step(i.to_string()), None)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let parallel = start.elapsed();
        let after = store.stats();
        let transactions = after.transactions - before.transactions;
        let requests = after.requests - before.requests;
        println!(
            "{durability:?}: commit_step median {:?}, p90 {:?}, max {:?} ({SEQUENTIAL} sequential); \
             {TASKS} tasks x {PER_TASK} in parallel: {parallel:?} total, {requests} requests in \
             {transactions} transactions ({:.1} per transaction)",
            percentile(&times, 0.5),
            percentile(&times, 0.9),
            times[times.len() - 1],
            requests as f64 / transactions.max(1) as f64,
        );
    }
}
