//! The `steadfast` binary against real SQLite files prepared through the library: a finished
//! workflow with user steps, a retried step and an agent whose tool runs a nested agent, and a
//! workflow waiting for a message.

mod common;

use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use steadfast_durable::{AttemptRecord, StepKind, StepRecord, WorkflowRecord, WorkflowStatus};
use steadfast_sqlite::SqliteStore;

use common::{Approval, fails, line_of, ok, prepare, steadfast, temp_db, worker};

// ---------------------------------------------------------------------------------------------
// list

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_ids_statuses_steps_and_cost() {
    let (db, _engine) = prepare("list").await;
    let out = ok(steadfast(&db, &["list"]));
    let header = out.lines().next().unwrap();
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(columns, ["ID", "NAME", "STATUS", "STEPS", "AGE", "COST"]);
    // Newest first.
    assert!(
        out.find("wf-wait").unwrap() < out.find("wf-done").unwrap(),
        "{out}"
    );
    let done: Vec<&str> = line_of(&out, "wf-done").split_whitespace().collect();
    assert_eq!(done[1..4], ["pipeline", "completed", "6"], "{out}");
    assert!(done[4].ends_with('s'), "age {}", done[4]);
    assert_eq!(done[5], "$0.0250", "nested expert counted once: {out}");
    let wait: Vec<&str> = line_of(&out, "wf-wait").split_whitespace().collect();
    assert_eq!(wait[1..4], ["approval", "suspended", "1"]);
    assert_eq!(wait[5], "$0.0000");

    let suspended = ok(steadfast(&db, &["list", "--status", "suspended"]));
    assert!(
        suspended.contains("wf-wait") && !suspended.contains("wf-done"),
        "{suspended}"
    );
    let one = ok(steadfast(&db, &["list", "--limit", "1"]));
    assert_eq!(one.lines().count(), 2, "{one}");
    let none = ok(steadfast(&db, &["list", "--status", "failed"]));
    assert!(none.starts_with("no failed workflows"), "{none}");

    // The database may also come from the environment.
    let env = Command::new(env!("CARGO_BIN_EXE_steadfast"))
        .env("STEADFAST_DB", db.as_os_str())
        .arg("list")
        .output()
        .unwrap();
    assert!(ok(env).contains("wf-done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_json_has_the_fields_and_step_counts() {
    let (db, engine) = prepare("list-json").await;
    let rows: Vec<Value> = serde_json::from_str(&ok(steadfast(&db, &["list", "--json"]))).unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let id = row["id"].as_str().unwrap();
        let history = engine.history(id).await.unwrap();
        assert_eq!(row["steps"], json!(history.steps.len()), "{row}");
        assert_eq!(row["created_at_ms"], json!(history.workflow.created_at));
        assert!(row["created_at"].as_str().unwrap().ends_with('Z'), "{row}");
        assert!(
            row["updated_at_ms"].is_i64() && row["age_secs"].is_i64(),
            "{row}"
        );
        assert!(row["parent_id"].is_null());
    }
    let done = rows.iter().find(|r| r["id"] == "wf-done").unwrap();
    assert_eq!(done["name"], "pipeline");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["steps"], 6);
    assert!(
        (done["cost_usd"].as_f64().unwrap() - 0.025).abs() < 1e-9,
        "{done}"
    );
    assert_eq!(done["requests"], 3);
    assert_eq!(done["input_tokens"], 250);
    let wait = rows.iter().find(|r| r["id"] == "wf-wait").unwrap();
    assert_eq!(
        (&wait["status"], &wait["steps"]),
        (&json!("suspended"), &json!(1))
    );
}

// ---------------------------------------------------------------------------------------------
// show

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_lists_steps_with_kinds_attempts_and_the_retry_error() {
    let (db, _engine) = prepare("show").await;
    let out = ok(steadfast(&db, &["show", "wf-done"]));
    assert!(line_of(&out, "Workflow").ends_with("wf-done"), "{out}");
    assert!(line_of(&out, "Status").contains("completed"));
    assert!(line_of(&out, "Input").contains("https://example.com/a"));
    assert!(line_of(&out, "Output").contains("a summary"));
    assert!(line_of(&out, "Usage").contains("$0.0250"), "{out}");
    assert!(
        line_of(&out, "Usage").contains("3 model request(s)"),
        "{out}"
    );

    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("STEP "))
        .collect();
    let columns: Vec<&str> = table[0].split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "STEP", "KIND", "NAME", "ATTEMPTS", "DURATION", "STATUS", "INPUT"
        ]
    );
    let cells = |start: &str| -> Vec<String> {
        line_of(&out, start)
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let fetch = cells("fetch#1");
    assert_eq!(fetch[1..4], ["step", "fetch", "1"]);
    assert_eq!(fetch[5], "ok");
    assert_eq!(fetch[6], "\"https://example.com/a\"");
    let flaky = cells("flaky#1");
    assert_eq!(flaky[1..4], ["step", "flaky", "2"], "{out}");
    assert_eq!(flaky[6], "{\"n\":1}");
    // The failed attempt is listed right under its step.
    let at = table.iter().position(|l| l.starts_with("flaky#1")).unwrap();
    assert_eq!(
        table[at + 1].trim(),
        "attempt 1 failed: upstream 503",
        "{out}"
    );

    let request = cells("writer#1/model_request#1");
    assert_eq!(
        request[1..4],
        ["model_request", "agent__writer__model_request", "1"]
    );
    assert_eq!(request.len(), 6, "a model request shows no input: {out}");
    let tool = line_of(&out, "writer#1/tool__ask_expert#1 ");
    assert!(
        tool.contains(" tool ") && tool.contains("agent__writer__tool__ask_expert"),
        "{tool}"
    );
    assert!(
        tool.ends_with("{\"question\":\"what is the answer?\"}"),
        "{tool}"
    );
    let nested = cells("writer#1/tool__ask_expert#1/expert#1/model_request#1");
    assert_eq!(nested[1], "model_request");
    assert!(out.contains("writer#1/model_request#2"));
    // Rows follow commit order: the tool commits after the nested request it ran.
    let pos = |s: &str| out.find(s).unwrap();
    assert!(pos("fetch#1") < pos("flaky#1"));
    assert!(pos("expert#1/model_request#1") < pos("writer#1/tool__ask_expert#1 "));
    assert!(pos("writer#1/tool__ask_expert#1 ") < pos("writer#1/model_request#2"));

    let waiting = ok(steadfast(&db, &["show", "wf-wait"]));
    assert!(
        line_of(&waiting, "Status").contains("suspended"),
        "{waiting}"
    );
    assert!(waiting.contains("draft#1"));
    assert!(!waiting.contains("Output"));
}

/// The fields of `engine::History`, which serializes but does not deserialize.
#[derive(Debug, Deserialize)]
struct HistoryJson {
    workflow: WorkflowRecord,
    steps: Vec<StepRecord>,
    attempts: Vec<AttemptRecord>,
    totals: Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_json_round_trips_the_history() {
    let (db, engine) = prepare("show-json").await;
    let text = ok(steadfast(&db, &["show", "wf-done", "--json"]));
    let parsed: HistoryJson = serde_json::from_str(&text).unwrap();
    let history = engine.history("wf-done").await.unwrap();
    assert_eq!(parsed.workflow, history.workflow);
    assert_eq!(parsed.steps, history.steps);
    assert_eq!(parsed.attempts, history.attempts);
    assert_eq!(parsed.attempts.len(), 1);
    assert_eq!(parsed.attempts[0].error, "upstream 503");
    let kinds: Vec<StepKind> = parsed.steps.iter().map(|s| s.kind).collect();
    use StepKind::*;
    assert_eq!(
        kinds,
        [Step, Step, ModelRequest, ModelRequest, Tool, ModelRequest]
    );
    assert!((parsed.totals["cost_usd"].as_f64().unwrap() - 0.025).abs() < 1e-9);
}

// ---------------------------------------------------------------------------------------------
// signal and cancel

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_lets_the_waiting_workflow_finish() {
    let (db, engine) = prepare("signal").await;
    let err = fails(steadfast(
        &db,
        &["signal", "wf-wait", "approve", "yes please"],
    ));
    assert!(err.contains("not valid JSON"), "{err}");

    let out = ok(steadfast(
        &db,
        &["signal", "wf-wait", "approve", r#"{"by": "ana"}"#],
    ));
    assert!(out.contains("sent `approve` to wf-wait"), "{out}");
    let w = worker(&engine);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        engine.handle::<Approval>("wf-wait").result(),
    )
    .await
    .expect("finished in time")
    .unwrap();
    assert_eq!(result, json!({ "approval": { "by": "ana" } }));
    w.shutdown().await;

    let shown = ok(steadfast(&db, &["show", "wf-wait"]));
    assert!(line_of(&shown, "Status").contains("completed"), "{shown}");
    assert!(line_of(&shown, "Output").contains("ana"), "{shown}");
    let recv: Vec<&str> = line_of(&shown, "recv__approve#1")
        .split_whitespace()
        .collect();
    assert_eq!(recv[1..3], ["recv", "approve"], "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_cancels_a_waiting_workflow() {
    let (db, engine) = prepare("cancel").await;
    let out = ok(steadfast(&db, &["cancel", "wf-wait"]));
    assert_eq!(out.trim(), "wf-wait: cancelled");
    let rec = engine
        .store()
        .get_workflow("wf-wait")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, WorkflowStatus::Cancelled);
    let again = ok(steadfast(&db, &["cancel", "wf-wait"]));
    assert!(again.contains("already finished"), "{again}");
    let done = ok(steadfast(&db, &["cancel", "wf-done"]));
    assert!(done.starts_with("wf-done: completed"), "{done}");
    let shown = ok(steadfast(&db, &["show", "wf-wait"]));
    assert!(line_of(&shown, "Status").contains("cancelled"));
    assert!(line_of(&shown, "Error").contains("cancelled"), "{shown}");
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[test]
fn a_missing_database_is_an_error_and_is_not_created() {
    let db = temp_db("missing");
    for args in [
        &["list"][..],
        &["show", "x"],
        &["cancel", "x"],
        &["signal", "x", "t", "1"],
    ] {
        let err = fails(steadfast(&db, args));
        assert!(
            err.contains(&format!("no database at {}", db.display())),
            "{err}"
        );
    }
    assert!(!db.exists());
}

#[test]
fn a_garbage_or_empty_file_is_an_error() {
    let db = temp_db("garbage");
    std::fs::write(&db, b"this is not a database, just some text. ".repeat(200)).unwrap();
    let err = fails(steadfast(&db, &["list"]));
    assert!(err.contains("corrupt or not a Steadfast store"), "{err}");
    std::fs::write(&db, b"").unwrap();
    let err = fails(steadfast(&db, &["list"]));
    assert!(err.contains("is empty, not a Steadfast database"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_is_an_error() {
    let (db, _engine) = prepare("unknown").await;
    for args in [
        &["show", "nope"][..],
        &["show", "nope", "--json"],
        &["cancel", "nope"],
    ] {
        let err = fails(steadfast(&db, args));
        assert!(err.contains("no workflow `nope` in"), "{err}");
    }
    let err = fails(steadfast(&db, &["signal", "nope", "approve", "true"]));
    assert!(err.contains("no workflow `nope` in"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_an_error() {
    let db = temp_db("newer");
    drop(SqliteStore::open(&db).unwrap());
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(conn);
    let err = fails(steadfast(&db, &["list"]));
    assert!(err.contains("schema version 999 is newer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_an_error() {
    let (db, _engine) = prepare("locked").await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Reads go on under WAL; writes wait for the lock, then give up.
    assert!(ok(steadfast(&db, &["list"])).contains("wf-wait"));
    let err = fails(steadfast(
        &db,
        &["--lock-timeout-ms", "200", "cancel", "wf-wait"],
    ));
    assert!(err.contains("locked"), "{err}");
    conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(
        ok(steadfast(&db, &["cancel", "wf-wait"])).trim(),
        "wf-wait: cancelled"
    );
}

#[test]
fn help_describes_every_command() {
    let bin = env!("CARGO_BIN_EXE_steadfast");
    let top = ok(Command::new(bin).arg("--help").output().unwrap());
    for cmd in ["list", "show", "cancel", "signal", "--db", "STEADFAST_DB"] {
        assert!(top.contains(cmd), "{cmd} missing from:\n{top}");
    }
    let show = ok(Command::new(bin).args(["show", "--help"]).output().unwrap());
    assert!(
        show.contains("exactly once") && show.contains("from the journal"),
        "{show}"
    );
    for cmd in ["list", "cancel", "signal"] {
        let help = ok(Command::new(bin).args([cmd, "--help"]).output().unwrap());
        assert!(help.lines().next().is_some_and(|l| !l.is_empty()), "{help}");
    }
}

#[test]
fn eval_runs_a_dataset_file_against_a_registered_task() {
    let dir = std::env::temp_dir().join(format!("steadfast-cli-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cases.yaml");
    std::fs::write(
        &file,
        "name: echoes\ncases:\n  - {name: same, inputs: 2, expected_output: 2}\n  - {name: other, inputs: 3, expected_output: 4}\nevaluators: [EqualsExpected]\n",
    )
    .unwrap();
    let file = file.display().to_string();
    // `eval` needs no database.
    let out = ok(steadfast(
        &dir.join("none.db"),
        &["eval", &file, "--task", "echo", "--no-progress", "--json"],
    ));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let passed: Vec<bool> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["assertions"][0]["value"].as_bool().unwrap())
        .collect();
    assert_eq!(passed, [true, false], "{out}");
    // Under --strict a failing assertion is exit code 1.
    let strict = steadfast(
        &dir.join("none.db"),
        &["eval", &file, "--task", "echo", "--no-progress", "--strict"],
    );
    assert_eq!(strict.status.code(), Some(1));
    let table = String::from_utf8(strict.stdout).unwrap();
    assert!(
        table.contains("EqualsExpected") && table.contains('✗'),
        "{table}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
