//! The journal side of a step: its span, its replay check against the history, its commit
//! (write-ahead) and what is reported once it is committed.

use super::*;

/// What is reported of a step once it is committed (see [`WorkflowCtx::report`]).
pub(super) struct Committed {
    /// Boxed, so that a step's future, which holds it across the commit, stays small.
    event: Option<Box<StepEvent>>,
    usage: Option<Usage>,
}

/// Counts a step as in flight while alive; the worker never suspends a run with steps in flight.
pub(super) struct InFlight<'a>(&'a RunShared);

impl<'a> InFlight<'a> {
    pub(super) fn new(run: &'a RunShared) -> Self {
        run.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(run)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // The worker waits for the last step in flight only once a suspension was asked for
        // (`request_suspend` notifies by itself); waking it for every step would re-poll the
        // whole workflow future once per step for nothing.
        let run = self.0;
        if run.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && run.suspend_requested.load(Ordering::SeqCst)
        {
            run.notify.notify_one();
        }
    }
}

impl WorkflowCtx {
    /// Whether this run resumed from a journal (its history holds steps of earlier runs).
    pub(crate) fn resumed(&self) -> bool {
        !self
            .run
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Write-ahead: commit the record (the store takes it); once that is done,
    /// [`WorkflowCtx::committed`] reports it. (The store's future is awaited as it is, so a
    /// step's future holds no more than it.)
    pub(super) fn commit(&self, record: StepRecord, consume: Option<i64>) -> StoreFuture<'_, ()> {
        let run = &self.run;
        run.store.commit_step(&run.id, &run.owner, record, consume)
    }

    /// What to report of `record` once it is committed: its event, if an observer listens,
    /// and its usage, if the workflow span records it. Taken before the store takes the record.
    pub(super) fn report(&self, record: &StepRecord) -> Committed {
        let run = &self.run;
        let event = run.observer.as_ref().map(|_| {
            Box::new(StepEvent {
                workflow_id: run.id.clone(),
                step_id: record.step_id.clone(),
                kind: record.kind,
                name: record.name.clone(),
                event: match &record.output {
                    Ok(_) => StepEventKind::Completed,
                    Err(f) => StepEventKind::Failed {
                        error: f.message.clone(),
                    },
                },
                attempts: record.attempts,
                duration: Duration::from_micros(record.duration_us.max(0) as u64),
                input: record.input.as_ref().map(Json::to_value),
                output: record.output.as_ref().ok().map(Json::to_value),
            })
        });
        let usage = run.executed_usage.as_ref().and_then(|_| usage_of(record));
        Committed { event, usage }
    }

    /// Report a committed record.
    ///
    /// The record is not kept in this run's journal: a run never looks up a position it ran
    /// itself (positions only grow). Only its usage is kept, for the workflow span, when that
    /// span is recorded.
    pub(super) fn committed(&self, report: Committed) {
        let run = &self.run;
        if let (Some(o), Some(event)) = (&run.observer, &report.event) {
            o(event);
        }
        if let (Some(total), Some(u)) = (&run.executed_usage, &report.usage) {
            *total.lock().unwrap_or_else(|e| e.into_inner()) += u;
        }
    }

    /// The recorded result at `position`, if the journal has one; a mismatch is non-determinism.
    ///
    /// A hit marks `span` as replayed (`steadfast.replayed = true`, the recorded attempts).
    pub(super) fn replay<T: DeserializeOwned>(
        &self,
        spec: &StepSpec,
        position: &str,
        step_id: &str,
        span: &Span,
    ) -> Result<Option<Result<T, WorkflowError>>, WorkflowError> {
        let run = &self.run;
        let clock = run.observer.as_ref().map(|_| Instant::now());
        // Everything is read under the lock, from the record in place: a replayed step clones
        // nothing but what it reports.
        let journal = run.journal.lock().unwrap_or_else(|e| e.into_inner());
        let Some(record) = journal.get(position) else {
            return Ok(None);
        };
        if record.kind != spec.kind
            || record.name != spec.name
            || (record.input_hash != spec.input_hash
                && spec.legacy_hash.as_ref() != Some(&record.input_hash))
            || record.step_id != step_id
        {
            return Err(WorkflowError::NonDeterminism {
                workflow_id: run.id.clone(),
                position: position.to_string(),
                expected: describe(
                    record.kind,
                    &record.name,
                    &record.step_id,
                    &record.input_hash,
                ),
                actual: describe(spec.kind, &spec.name, step_id, &spec.input_hash),
            });
        }
        let value = match &record.output {
            Ok(v) => Ok(v.decode::<T>()?),
            Err(f) => Err(WorkflowError::StepFailed {
                step: record.step_id.clone(),
                message: f.message.clone(),
                attempts: record.attempts,
            }),
        };
        let attempts = record.attempts;
        let event = run.observer.as_ref().map(|_| StepEvent {
            workflow_id: run.id.clone(),
            step_id: record.step_id.clone(),
            kind: record.kind,
            name: record.name.clone(),
            event: StepEventKind::Replayed,
            attempts,
            duration: Duration::ZERO,
            input: record.input.as_ref().map(Json::to_value),
            output: record.output.as_ref().ok().map(Json::to_value),
        });
        drop(journal);
        run.replayed.fetch_add(1, Ordering::Relaxed);
        if !span.is_disabled() {
            span.record(STEADFAST_REPLAYED, true);
            span.record(STEADFAST_STEP_ATTEMPT, i64::from(attempts));
            if let Err(e) = &value {
                record_step_error(span, e);
            }
        }
        if let Some(mut event) = event {
            event.duration = clock.map_or(Duration::ZERO, |c| c.elapsed());
            run.emit(|| event);
        }
        Ok(Some(value))
    }
}

/// The `step {id}` span of one step, run or replayed.
pub(super) fn step_span(run: &RunShared, spec: &StepSpec, step_id: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        SPAN_STEP,
        { OTEL_NAME } = format!("{SPAN_STEP} {step_id}"),
        { STEADFAST_STEP_ID } = step_id,
        { STEADFAST_STEP_NAME } = spec.name.as_str(),
        { STEADFAST_STEP_KIND } = spec.kind.as_str(),
        { STEADFAST_WORKFLOW_ID } = run.id.as_str(),
        { STEADFAST_REPLAYED } = Empty,
        { STEADFAST_STEP_ATTEMPT } = Empty,
        { ERROR_TYPE } = Empty,
        { OTEL_STATUS_CODE } = Empty,
        { OTEL_STATUS_DESCRIPTION } = Empty,
    )
}

/// Records a step's failure on its span. Suspension is not a failure: a suspended step's
/// future is dropped, and its span simply ends.
pub(super) fn record_step_error(span: &Span, e: &WorkflowError) {
    if span.is_disabled() {
        return;
    }
    let kind = match e {
        WorkflowError::Agent(_) => "agent",
        WorkflowError::StepFailed { .. } => "step_failed",
        WorkflowError::NonDeterminism { .. } => "non_determinism",
        WorkflowError::Cancelled(_) => "cancelled",
        WorkflowError::Store(_) => "store",
        WorkflowError::MissingDeps(_) => "missing_deps",
        WorkflowError::Serde(_) => "serde",
        WorkflowError::Config(_) => "config",
        WorkflowError::Failed(_) => "failed",
        WorkflowError::Remote { .. } => "remote",
        WorkflowError::LeaseLost(_) => "lease_lost",
    };
    span.record(ERROR_TYPE, kind);
    span.record(OTEL_STATUS_CODE, "error");
    span.record(OTEL_STATUS_DESCRIPTION, redact_secrets(&e.to_string()));
}

/// The usage of a model request, as its recorded output has it. Only the output's `usage`
/// field is deserialized; the rest of the text (the response's parts) is skipped.
pub(crate) fn usage_of(step: &StepRecord) -> Option<Usage> {
    if step.kind != StepKind::ModelRequest {
        return None;
    }
    step.output.as_ref().ok()?.field::<Usage>("usage").ok()?
}

/// The error text of a failed workflow's stored output.
pub(crate) fn error_text(output: Option<&Value>) -> String {
    match output {
        Some(Value::Object(m)) => m
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| Value::Object(m.clone()).to_string()),
        Some(v) => v.to_string(),
        None => "no error recorded".to_string(),
    }
}

/// A step as the non-determinism error names it: "`name` (kind step, id name#1, input h)".
pub(super) fn describe(kind: StepKind, name: &str, step_id: &str, input_hash: &str) -> String {
    format!(
        "`{name}` (kind {}, id {step_id}, input {input_hash})",
        kind.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_request(output: Result<Json, StepFailure>) -> StepRecord {
        StepRecord {
            position: "0".into(),
            step_id: "a#1/model_request#1".into(),
            kind: StepKind::ModelRequest,
            name: "agent__a__model_request".into(),
            input_hash: String::new(),
            input: None,
            output,
            attempts: 1,
            started_at: 0,
            duration_us: 0,
            seq: 0,
        }
    }

    #[test]
    fn usage_of_reads_the_usage_of_a_raw_model_response() {
        let usage = Usage {
            requests: 1,
            input_tokens: 12,
            output_tokens: 3,
            cost_usd: 0.25,
            ..Usage::default()
        };
        let response = steadfast_core::ModelResponse {
            usage: usage.clone(),
            ..steadfast_core::ModelResponse::text("the \"usage\": {} is in here too")
        };
        let record = model_request(Ok(Json::encode(&response).unwrap()));
        assert_eq!(usage_of(&record), Some(usage.clone()));
        // Text as a store hands it back: any key order, spaces, nested `usage` keys elsewhere.
        let text = r#"{ "parts": [{"kind": "text", "content": "x", "usage": 5}],
            "usage": {"cost_usd": 0.25, "output_tokens": 3, "input_tokens": 12, "requests": 1},
            "model_name": "m" }"#;
        let record = model_request(Ok(Json::from_string(text.into()).unwrap()));
        assert_eq!(usage_of(&record), Some(usage));
        // No usage, a usage that is not one, a failed step, another kind: none.
        for text in [
            r#"{"parts": []}"#,
            r#"{"usage": null}"#,
            r#"{"usage": 3}"#,
            "[]",
        ] {
            let record = model_request(Ok(Json::from_string(text.into()).unwrap()));
            assert_eq!(usage_of(&record), None, "{text}");
        }
        let failed = model_request(Err(StepFailure {
            message: "x".into(),
            retryable: false,
        }));
        assert_eq!(usage_of(&failed), None);
        let tool = StepRecord {
            kind: StepKind::Tool,
            ..model_request(Ok(Json::encode(&response).unwrap()))
        };
        assert_eq!(usage_of(&tool), None);
    }
}
