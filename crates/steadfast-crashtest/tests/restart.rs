//! Waiting across a restart: a durable sleep and a mailbox wait survive SIGKILL, and a restart
//! with changed workflow code stops with a non-determinism error and leaves the journal alone.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use steadfast::durable::StepKind;
use steadfast::{Engine, History, WorkflowStatus};

/// Poll the store until workflow `id` is suspended and its journal satisfies `ready`.
fn wait_suspended(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    id: &str,
    p: &mut Proc,
    ready: impl Fn(&History) -> bool,
) -> History {
    let mut last = None;
    let ok = poll_until(Duration::from_secs(30), || {
        assert!(p.exited().is_none(), "crashy exited early:\n{}", p.stderr());
        let h = rt.block_on(engine.history(id)).ok();
        let done = h
            .as_ref()
            .is_some_and(|h| h.workflow.status == WorkflowStatus::Suspended && ready(h));
        last = h;
        done
    });
    assert!(ok, "{id} never suspended as expected: {last:#?}");
    last.expect("history")
}

fn count(execs: &[Exec], key: &str) -> usize {
    execs.iter().filter(|e| e.key == key).count()
}

#[test]
fn durable_sleep_survives_a_restart() {
    let rt = runtime();
    let scratch = Scratch::new("sleep");
    let db = scratch.path("sleep.db");
    let exec = scratch.path("exec.log");
    let engine = steadfast::sqlite_engine(&db).expect("db");
    let spawn = |label: &str| {
        Crashy::new(&db, label)
            .arg("workflow", "sleeper")
            .arg("sleep-ms", "3000")
            .arg("exec-log", &exec)
            .arg("start", "s1")
            .spawn(&scratch)
    };

    let mut first = spawn("first");
    // 3 s is longer than the worker's suspend threshold (1 s): the run leaves memory.
    let h = wait_suspended(&rt, &engine, "s1", &mut first, |h| {
        h.steps.iter().any(|s| s.kind == StepKind::Sleep)
    });
    let sleep = h.steps.iter().find(|s| s.kind == StepKind::Sleep).unwrap();
    let wake_at: i64 = sleep
        .output
        .as_ref()
        .unwrap()
        .decode()
        .expect("wake-up time");
    assert_eq!(h.workflow.wake_at, Some(wake_at), "the timer row");
    assert!(first.kill(), "the first process was still running");
    let killed_at = now_ms();
    assert!(
        killed_at < wake_at,
        "killed while asleep ({killed_at} < {wake_at})"
    );

    let mut second = spawn("second");
    let restarted_at = now_ms();
    assert!(restarted_at < wake_at, "restarted before the wake-up time");
    let status = second.wait(Duration::from_secs(30), "sleeper after restart");
    let exited_at = now_ms();
    assert!(status.success(), "{status}:\n{}", second.stderr());
    let results = second.results();
    let out = &results[0]["output"];
    let woke_at = out["woke_at"].as_i64().expect("woke_at");
    println!(
        "sleep: wake-up journaled for {wake_at}; killed {} ms before it, restarted {} ms before \
         it; woke {} ms after it; exited {} ms after it",
        wake_at - killed_at,
        wake_at - restarted_at,
        woke_at - wake_at,
        exited_at - wake_at
    );
    assert!(
        woke_at >= wake_at,
        "woke at {woke_at}, before the journaled {wake_at}"
    );
    assert!(exited_at >= wake_at);
    assert!(
        woke_at - wake_at < 2_000,
        "woke {} ms late",
        woke_at - wake_at
    );
    assert!(woke_at - out["before"].as_i64().unwrap() >= 3_000);

    let after = history(&rt, &engine, "s1");
    assert_eq!(after.workflow.status, WorkflowStatus::Completed);
    let sleeps: Vec<_> = after
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Sleep)
        .collect();
    assert_eq!(sleeps.len(), 1, "the sleep is journaled once");
    assert_eq!(sleeps[0], sleep, "the timer was not re-armed on restart");
    let execs = exec_log(&exec);
    assert_eq!(count(&execs, "s1/before#1"), 1, "{execs:?}");
    assert_eq!(count(&execs, "s1/after#1"), 1, "{execs:?}");
    assert_eq!(execs.len(), 2);
}

#[test]
fn mailbox_message_survives_a_restart() {
    let rt = runtime();
    let scratch = Scratch::new("mailbox");
    let db = scratch.path("mailbox.db");
    let exec = scratch.path("exec.log");
    let engine = steadfast::sqlite_engine(&db).expect("db");
    let spawn = |label: &str| {
        Crashy::new(&db, label)
            .arg("workflow", "approval")
            .arg("exec-log", &exec)
            .arg("start", "m1")
            .spawn(&scratch)
    };

    let mut first = spawn("first");
    let before = wait_suspended(&rt, &engine, "m1", &mut first, |h| {
        h.steps.iter().any(|s| s.name == "request")
    });
    assert!(first.kill());
    assert!(before.steps.iter().all(|s| s.kind != StepKind::Recv));

    let payload = json!({ "approver": "the test", "ticket": 42 });
    rt.block_on(engine.send("m1", "approve", payload.clone()))
        .expect("send");
    let mut second = spawn("second");
    let status = second.wait(Duration::from_secs(30), "approval after restart");
    assert!(status.success(), "{status}:\n{}", second.stderr());
    let results = second.results();
    let output = results[0]["output"].as_str().expect("output").to_string();
    println!("mailbox: output {output:?}");
    assert!(
        output.ends_with(&payload.to_string()),
        "the output carries the payload: {output}"
    );

    let after = history(&rt, &engine, "m1");
    assert_eq!(after.workflow.status, WorkflowStatus::Completed);
    let recv: Vec<_> = after
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Recv)
        .collect();
    assert_eq!(recv.len(), 1);
    assert_eq!(recv[0].output.clone().map(|o| o.to_value()), Ok(payload));
    assert_eq!(
        &after.steps[..before.steps.len()],
        &before.steps[..],
        "history kept"
    );
    let execs = exec_log(&exec);
    assert_eq!(count(&execs, "m1/request#1"), 1, "{execs:?}");
    assert_eq!(count(&execs, "m1/apply#1"), 1, "{execs:?}");
}

#[test]
fn changed_code_after_a_restart_is_a_non_determinism_error() {
    let rt = runtime();
    let scratch = Scratch::new("nondeterminism");
    let db = scratch.path("nondet.db");
    let exec = scratch.path("exec.log");
    let engine = steadfast::sqlite_engine(&db).expect("db");
    let spawn = |label: &str, variant: &str| {
        Crashy::new(&db, label)
            .arg("workflow", "approval")
            .arg("variant", variant)
            .arg("exec-log", &exec)
            .arg("start", "n1")
            .spawn(&scratch)
    };

    let mut first = spawn("base", "base");
    wait_suspended(&rt, &engine, "n1", &mut first, |h| {
        h.steps.iter().any(|s| s.name == "request")
    });
    assert!(first.kill());
    let before = history(&rt, &engine, "n1");

    // Wake it with its message, and run the changed code.
    rt.block_on(engine.send("n1", "approve", json!("yes")))
        .expect("send");
    let mut second = spawn("alt", "alt");
    let status = second.wait(Duration::from_secs(30), "changed code");
    assert_eq!(
        status.code(),
        Some(2),
        "a failed workflow:\n{}",
        second.stderr()
    );
    let results = second.results();
    assert_eq!(results[0]["status"], "failed", "{results:?}");
    let error = results[0]["error"].as_str().unwrap_or_default().to_string();
    println!("non-determinism: {error}");
    assert!(error.contains("non-determinism"), "{error}");
    assert!(
        error.contains("`request`"),
        "names the journaled step: {error}"
    );
    assert!(
        error.contains("`request_v2`"),
        "names the new step: {error}"
    );

    let after = history(&rt, &engine, "n1");
    assert_eq!(after.workflow.status, WorkflowStatus::Failed);
    assert_eq!(
        after.workflow.output.as_ref().and_then(|o| o.get("error")),
        Some(&Value::String(error.clone()))
    );
    assert_eq!(after.steps, before.steps, "the journal is unchanged");
    assert_eq!(after.attempts, before.attempts);
    let execs = exec_log(&exec);
    assert_eq!(execs.len(), 1, "only the first `request` ran: {execs:?}");
    assert_eq!(execs[0].key, "n1/request#1");
}
