//! The audit that the crash tests rely on catches what it must: a step executed again after its
//! result was committed, a model request sent again after its answer was committed, and work
//! that was never committed. (Synthetic journals; no processes.)

mod common;

use common::*;
use serde_json::{Value, json};
use steadfast::History;
use steadfast::durable::{Json, StepKind, StepRecord, WorkflowRecord, WorkflowStatus};

fn step(step_id: &str, kind: StepKind, output: Value) -> StepRecord {
    StepRecord {
        position: step_id.to_string(),
        step_id: step_id.to_string(),
        kind,
        name: step_id.to_string(),
        input_hash: String::new(),
        input: None,
        output: Ok(Json::from(output)),
        attempts: 1,
        started_at: 0,
        duration_us: 0,
        seq: 0,
    }
}

fn history(steps: Vec<StepRecord>) -> History {
    History {
        workflow: WorkflowRecord {
            id: "w".into(),
            name: "crash_pipeline".into(),
            input: Value::Null,
            status: WorkflowStatus::Completed,
            output: None,
            owner: None,
            lease_expires_at: None,
            wake_at: None,
            cancel_requested: false,
            parent_id: None,
            created_at: 0,
            updated_at: 0,
        },
        steps,
        attempts: Vec::new(),
    }
}

fn req(seq: u64, fp: &str, pid: u32) -> Request {
    Request {
        seq,
        fp: fp.into(),
        pid: Some(pid),
        response_id: format!("r{seq}"),
        role: "planner",
        line: "w/root".into(),
    }
}

fn exec(tag: &str, key: &str) -> Exec {
    Exec {
        tag: tag.into(),
        pid: tag.split(':').next().unwrap().parse().unwrap(),
        key: key.into(),
    }
}

/// A journal with one model request (answered by request 2) and one user step (execution 2:1).
fn journal() -> Vec<History> {
    vec![history(vec![
        step(
            "a#1",
            StepKind::Step,
            json!({ "value": "x", "exec": "2:1" }),
        ),
        step(
            "planner#1/model_request#1",
            StepKind::ModelRequest,
            json!({ "parts": [], "response_id": "r2" }),
        ),
        step(
            "planner#1/tool__lookup#1",
            StepKind::Tool,
            json!({ "result": { "kind": "return", "value": { "value": "v", "exec": "2:2" } } }),
        ),
    ])]
}

#[test]
fn work_in_flight_in_a_dead_process_is_reported_as_wasted_not_as_a_problem() {
    // Process 1 ran the step and sent the request, then died; process 2 did both again.
    let requests = [req(1, "f", 1), req(2, "f", 2)];
    let execs = [
        exec("1:1", "w/a#1"),
        exec("2:1", "w/a#1"),
        exec("2:2", "w/planner#1/tool__lookup#1"),
    ];
    let a = audit(&journal(), &requests, &execs);
    assert!(a.problems.is_empty(), "{:#?}", a.problems);
    assert_eq!(a.wasted_requests.len(), 1);
    assert_eq!(a.wasted_requests[0].pid, Some(1));
    assert_eq!(a.wasted_execs, vec![exec("1:1", "w/a#1")]);
    assert_eq!(a.max_execs_per_key, 2);
    assert_eq!(a.wasted_by_pid().get(&1), Some(&2));
    // Both on the main line of `w`: two steps of one line cannot have been in flight at once.
    assert_eq!(a.wasted_by_line().get(&(1, "w/root".to_string())), Some(&2));
}

#[test]
fn steps_belong_to_their_line_of_execution() {
    assert_eq!(line_of("w/prepare#1"), "w/root");
    assert_eq!(line_of("w/planner#1/tool__lookup#3"), "w/root");
    assert_eq!(line_of("w/part3#1/fetch#1"), "w/part3");
    assert_eq!(line_of("w/part0#1/analyst#1/model_request#2"), "w/part0");
}

#[test]
fn a_step_executed_after_its_commit_is_a_problem() {
    let requests = [req(2, "f", 2)];
    let execs = [
        exec("2:1", "w/a#1"),
        exec("3:1", "w/a#1"), // ran again although 2:1 is committed
        exec("2:2", "w/planner#1/tool__lookup#1"),
    ];
    let a = audit(&journal(), &requests, &execs);
    assert_eq!(a.problems.len(), 1, "{:#?}", a.problems);
    assert!(
        a.problems[0].contains("executed again after its result"),
        "{:?}",
        a.problems
    );
}

#[test]
fn a_request_sent_after_its_answer_was_committed_is_a_problem() {
    let requests = [req(2, "f", 2), req(3, "f", 3)];
    let execs = [
        exec("2:1", "w/a#1"),
        exec("2:2", "w/planner#1/tool__lookup#1"),
    ];
    let a = audit(&journal(), &requests, &execs);
    assert_eq!(a.problems.len(), 1, "{:#?}", a.problems);
    assert!(
        a.problems[0].contains("sent again after its answer"),
        "{:?}",
        a.problems
    );
}

#[test]
fn uncommitted_and_unlogged_work_is_a_problem() {
    let requests = [req(2, "f", 2), req(5, "g", 2)];
    let execs = [exec("2:1", "w/a#1"), exec("2:9", "w/b#1")];
    let a = audit(&journal(), &requests, &execs);
    let text = a.problems.join("\n");
    assert!(
        text.contains("request g was sent 1 time(s) but no answer"),
        "{text}"
    );
    assert!(
        text.contains("w/b#1: executed 1 time(s) but never committed"),
        "{text}"
    );
    assert!(
        text.contains("tool__lookup#1: committed, but its execution was never logged"),
        "{text}"
    );
    assert_eq!(a.problems.len(), 3, "{text}");
}
