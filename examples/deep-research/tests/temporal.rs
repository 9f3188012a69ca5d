//! The research on a real Temporal dev server: a worker process of its own, a client that
//! starts the run, parallel searches as concurrent activities, and the same report as on the
//! embedded engine.

#![cfg(feature = "temporal")]

mod common;

use steadfast::temporal::dev::{DevServer, test_server};

/// A dev server, or `None` (after a note) when there is no Temporal CLI outside CI.
fn dev_server(tag: &str) -> Option<DevServer> {
    test_server(&format!("dr-{tag}")).expect("the Temporal dev server starts")
}

#[test]
fn a_worker_process_runs_the_research_and_the_report_matches_the_embedded_engine() {
    let Some(server) = dev_server("report") else {
        return;
    };
    let address = server.address();
    let temporal = |c: &mut std::process::Command| {
        c.args(["--engine", "temporal", "--temporal-address", &address])
            .args(["--task-queue", "dr-test", "--pace", "0"]);
    };
    let db = common::temp_db("temporal-baseline");
    let mut worker = common::command(&db);
    temporal(&mut worker);
    let mut worker = worker
        .arg("--worker-only")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut client = common::command(&db);
    temporal(&mut client);
    let child = client
        .args(["--id", "dr-on-temporal", "--no-worker"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (report, err, ok) = common::finish(child);
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(ok, "{err}");
    assert!(
        report.starts_with("# What's the best Rust agent framework"),
        "{report}"
    );
    assert!(report.contains("## Sources"), "{report}");

    // The same question on the embedded engine writes the same report.
    let child = common::command(&db)
        .args(["--id", "dr-embedded", "--pace", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (embedded, err, ok) = common::finish(child);
    assert!(ok, "{err}");
    assert_eq!(report, embedded, "the engines disagree");
    let _ = std::fs::remove_file(&db);
}
