//! Reading a run's history events into rows.

use std::collections::HashMap;

use serde_json::{Value, json};
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_common::protos::temporal::api::workflow::v1::PendingActivityInfo;

use super::{RowKind, RowStatus, StepRow};
use crate::bridge::{DispatchInput, Mail};

/// The first payload of `p` as JSON (the SDK's default converter writes `json/plain`).
pub(super) fn decode(p: &Option<Payloads>) -> Option<Value> {
    let p = p.as_ref()?.payloads.first()?;
    match p.metadata.get("encoding").map(Vec::as_slice) {
        Some(b"binary/null") => Some(Value::Null),
        _ => serde_json::from_slice(&p.data).ok(),
    }
}

/// The innermost message of a failure.
fn innermost(f: &Failure) -> String {
    let mut f = f;
    while let Some(c) = f.cause.as_deref() {
        f = c;
    }
    f.message.clone()
}

/// A step id without the `~{n}` of a step scheduled again, and whether it had one.
fn base_step_id(activity_id: &str) -> (&str, bool) {
    match activity_id.rsplit_once('~') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => (base, true),
        _ => (activity_id, false),
    }
}

/// Reads histories into rows, run by run.
#[derive(Default)]
pub(super) struct Reader {
    /// The rows so far, in history order.
    pub rows: Vec<StepRow>,
    /// Row index by the event that opened it (scheduled, started timer, initiated child), for
    /// the current run.
    by_event: HashMap<i64, usize>,
    /// Row index by activity id, for the current run.
    by_activity: HashMap<String, usize>,
    /// The Steadfast workflow, from the first run's input.
    pub workflow: Option<String>,
    /// Its input, from the first run.
    pub input: Option<Value>,
    /// The output of a completed workflow.
    pub output: Option<Value>,
    /// Why the workflow failed, was terminated or timed out.
    pub error: Option<String>,
    /// The failure of the newest run's newest workflow task, if it failed.
    pub task_failure: Option<String>,
    /// Whether cancellation was requested.
    pub cancel_requested: bool,
}

impl Reader {
    fn push(&mut self, event: &HistoryEvent, row: StepRow) -> usize {
        self.rows.push(row);
        let i = self.rows.len() - 1;
        self.by_event.insert(event.event_id, i);
        i
    }

    /// The row opened by event `opened`, finished at `at` with `status`.
    fn finish(&mut self, opened: i64, at: Option<i64>, status: RowStatus) -> Option<&mut StepRow> {
        let row = self.rows.get_mut(*self.by_event.get(&opened)?)?;
        row.status = status;
        if let (Some(from), Some(to)) = (row.at_ms, at) {
            row.duration_us = Some((to - from).max(0) * 1000);
        }
        Some(row)
    }

    fn row(run_id: &str, step_id: String, kind: RowKind, name: String, at: Option<i64>) -> StepRow {
        StepRow {
            step_id,
            kind,
            name,
            run_id: run_id.to_string(),
            attempts: 0,
            at_ms: at,
            duration_us: None,
            status: RowStatus::Running,
            input: None,
            output: None,
            error: None,
            reissued: 0,
        }
    }

    /// Read the events of one run (oldest run first).
    pub fn run(&mut self, run_id: &str, events: &[HistoryEvent]) {
        self.by_event.clear();
        self.by_activity.clear();
        self.task_failure = None;
        for e in events {
            let at = millis!(e.event_time);
            let Some(attributes) = &e.attributes else {
                continue;
            };
            self.event(run_id, e, at, attributes);
        }
    }

    fn event(&mut self, run_id: &str, e: &HistoryEvent, at: Option<i64>, attributes: &Attributes) {
        use Attributes as A;
        match attributes {
            A::WorkflowExecutionStartedEventAttributes(a) if self.input.is_none() => {
                let d: Option<DispatchInput> =
                    decode(&a.input).and_then(|v| serde_json::from_value(v).ok());
                if let Some(d) = d {
                    self.workflow = Some(d.workflow);
                    self.input = Some(d.input);
                }
            }
            A::ActivityTaskScheduledEventAttributes(a) => {
                let name = a.activity_type.as_ref().map(|t| t.name.clone());
                let name = name.unwrap_or_default();
                let (base, reissue) = base_step_id(&a.activity_id);
                let input = decode(&a.input)
                    .and_then(|t| t.get("input").cloned())
                    .filter(|v| !v.is_null());
                let previous = self.by_activity.get(base).copied().filter(|_| reissue);
                let i = match previous {
                    Some(i) => {
                        let row = &mut self.rows[i];
                        row.reissued += 1;
                        row.status = RowStatus::Running;
                        row.duration_us = None;
                        row.error = None;
                        self.by_event.insert(e.event_id, i);
                        i
                    }
                    None => {
                        let kind = RowKind::of_activity(&name);
                        let mut row = Self::row(run_id, base.to_string(), kind, name, at);
                        row.input = input;
                        let i = self.push(e, row);
                        self.by_activity.insert(base.to_string(), i);
                        i
                    }
                };
                self.by_activity.insert(a.activity_id.clone(), i);
            }
            A::ActivityTaskStartedEventAttributes(a) => {
                if let Some(&i) = self.by_event.get(&a.scheduled_event_id) {
                    let row = &mut self.rows[i];
                    row.attempts = u32::try_from(a.attempt).unwrap_or(0);
                    if let Some(f) = &a.last_failure {
                        row.error = Some(innermost(f));
                    }
                }
            }
            A::ActivityTaskCompletedEventAttributes(a) => {
                let output = decode(&a.result).and_then(|d| d.get("output").cloned());
                if let Some(row) = self.finish(a.scheduled_event_id, at, RowStatus::Completed) {
                    row.output = output;
                    row.error = None;
                }
            }
            A::ActivityTaskFailedEventAttributes(a) => {
                if let Some(row) = self.finish(a.scheduled_event_id, at, RowStatus::Failed) {
                    row.error = a.failure.as_ref().map(innermost);
                }
            }
            A::ActivityTaskTimedOutEventAttributes(a) => {
                if let Some(row) = self.finish(a.scheduled_event_id, at, RowStatus::TimedOut) {
                    row.error = a.failure.as_ref().map(innermost);
                }
            }
            // The workflow stops waiting for a step when it asks for the cancellation.
            A::ActivityTaskCancelRequestedEventAttributes(a) => {
                self.finish(a.scheduled_event_id, at, RowStatus::Cancelled);
            }
            A::ActivityTaskCanceledEventAttributes(a) => {
                self.finish(a.scheduled_event_id, at, RowStatus::Cancelled);
            }
            A::TimerStartedEventAttributes(a) => {
                let mut row = Self::row(
                    run_id,
                    a.timer_id.clone(),
                    RowKind::Timer,
                    "timer".into(),
                    at,
                );
                row.input = millis!(a.start_to_fire_timeout)
                    .map(|ms| json!({ "seconds": ms as f64 / 1000.0 }));
                self.push(e, row);
            }
            A::TimerFiredEventAttributes(a) => {
                self.finish(a.started_event_id, at, RowStatus::Completed);
            }
            A::TimerCanceledEventAttributes(a) => {
                self.finish(a.started_event_id, at, RowStatus::Cancelled);
            }
            A::WorkflowExecutionSignaledEventAttributes(a) => {
                let payload = decode(&a.input);
                self.message(e, run_id, RowKind::Signal, &a.signal_name, payload, at);
            }
            A::WorkflowExecutionUpdateAcceptedEventAttributes(a) => {
                let input = a.accepted_request.as_ref().and_then(|r| r.input.as_ref());
                let name = input.map(|i| i.name.clone()).unwrap_or_default();
                let payload = input.and_then(|i| decode(&i.args));
                self.message(e, run_id, RowKind::Update, &name, payload, at);
            }
            A::StartChildWorkflowExecutionInitiatedEventAttributes(a) => {
                let d: Option<DispatchInput> =
                    decode(&a.input).and_then(|v| serde_json::from_value(v).ok());
                let name = match &d {
                    Some(d) => d.workflow.clone(),
                    None => a
                        .workflow_type
                        .as_ref()
                        .map(|t| t.name.clone())
                        .unwrap_or_default(),
                };
                let mut row = Self::row(run_id, a.workflow_id.clone(), RowKind::Child, name, at);
                row.input = d.map(|d| d.input);
                self.push(e, row);
            }
            A::ChildWorkflowExecutionCompletedEventAttributes(a) => {
                let output = decode(&a.result);
                if let Some(row) = self.finish(a.initiated_event_id, at, RowStatus::Completed) {
                    row.output = output;
                }
            }
            A::ChildWorkflowExecutionFailedEventAttributes(a) => {
                if let Some(row) = self.finish(a.initiated_event_id, at, RowStatus::Failed) {
                    row.error = a.failure.as_ref().map(innermost);
                }
            }
            A::ChildWorkflowExecutionCanceledEventAttributes(a) => {
                self.finish(a.initiated_event_id, at, RowStatus::Cancelled);
            }
            A::ChildWorkflowExecutionTimedOutEventAttributes(a) => {
                self.finish(a.initiated_event_id, at, RowStatus::TimedOut);
            }
            A::ChildWorkflowExecutionTerminatedEventAttributes(a) => {
                if let Some(row) = self.finish(a.initiated_event_id, at, RowStatus::Failed) {
                    row.error = Some("terminated".into());
                }
            }
            A::StartChildWorkflowExecutionFailedEventAttributes(a) => {
                if let Some(row) = self.finish(a.initiated_event_id, at, RowStatus::Failed) {
                    row.error = Some("the child workflow could not start (its id is taken)".into());
                }
            }
            A::WorkflowExecutionCancelRequestedEventAttributes(a) => {
                self.cancel_requested = true;
                let mut row = Self::row(
                    run_id,
                    String::new(),
                    RowKind::CancelRequest,
                    "cancel".into(),
                    at,
                );
                row.status = RowStatus::Received;
                row.input = Some(a.cause.clone())
                    .filter(|c| !c.is_empty())
                    .map(Value::String);
                self.push(e, row);
            }
            A::WorkflowTaskFailedEventAttributes(a) => {
                self.task_failure = a.failure.as_ref().map(innermost);
            }
            A::WorkflowTaskCompletedEventAttributes(_) => self.task_failure = None,
            A::WorkflowExecutionCompletedEventAttributes(a) => self.output = decode(&a.result),
            A::WorkflowExecutionFailedEventAttributes(a) => {
                self.error = a.failure.as_ref().map(innermost);
            }
            A::WorkflowExecutionTerminatedEventAttributes(a) => {
                self.error = Some(format!("terminated: {}", a.reason));
            }
            A::WorkflowExecutionTimedOutEventAttributes(_) => {
                self.error = Some("the workflow timed out".into());
            }
            A::WorkflowExecutionContinuedAsNewEventAttributes(a) => {
                let carried = decode(&a.input)
                    .and_then(|v| serde_json::from_value::<DispatchInput>(v).ok())
                    .map_or(0, |d| d.carried.len());
                let mut row = Self::row(
                    run_id,
                    a.new_execution_run_id.clone(),
                    RowKind::ContinueAsNew,
                    "continue_as_new".into(),
                    at,
                );
                row.status = RowStatus::Completed;
                row.input = Some(json!({ "carried": carried }));
                self.push(e, row);
            }
            _ => {}
        }
    }

    /// A received message: a `steadfast.send` signal or `steadfast.deliver` update carries a
    /// topic and a payload; other signals show as they are.
    fn message(
        &mut self,
        e: &HistoryEvent,
        run_id: &str,
        kind: RowKind,
        name: &str,
        payload: Option<Value>,
        at: Option<i64>,
    ) {
        let mail = payload
            .clone()
            .and_then(|v| serde_json::from_value::<Mail>(v).ok());
        let (topic, input) = match mail {
            Some(m) => (m.topic, Some(m.payload)),
            None => (name.to_string(), payload),
        };
        let mut row = Self::row(run_id, name.to_string(), kind, topic, at);
        row.status = RowStatus::Received;
        row.input = input;
        self.push(e, row);
    }

    /// The workflow has ended: what it still waited for was dropped with it.
    pub fn close(&mut self) {
        for row in &mut self.rows {
            if row.status == RowStatus::Running {
                row.status = RowStatus::Cancelled;
            }
        }
    }

    /// Steps still in flight in the newest run: their attempts so far and the last failure.
    pub fn pending(&mut self, pending: &[PendingActivityInfo]) {
        for p in pending {
            let Some(&i) = self.by_activity.get(&p.activity_id) else {
                continue;
            };
            let row = &mut self.rows[i];
            row.status = RowStatus::Running;
            row.attempts = u32::try_from(p.attempt).unwrap_or(0);
            if let Some(f) = &p.last_failure {
                row.error = Some(innermost(f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_kinds_and_reissued_ids() {
        assert_eq!(
            RowKind::of_activity("agent__assistant__model_request"),
            RowKind::ModelRequest
        );
        assert_eq!(
            RowKind::of_activity("agent__assistant__tool__search"),
            RowKind::Tool
        );
        assert_eq!(RowKind::of_activity("fetch_report"), RowKind::Step);
        assert_eq!(
            base_step_id("a#1/model_request#2~3"),
            ("a#1/model_request#2", true)
        );
        assert_eq!(base_step_id("fetch#1"), ("fetch#1", false));
        assert_eq!(base_step_id("odd~name"), ("odd~name", false));
    }
}
