//! Tokens and cost of a workflow, summed from its journal.
//!
//! A `model_request` step's output is a `ModelResponse` whose `usage` is that one request. A
//! `tool` step's output is a `ToolOutcome` whose `usage` covers the agents the tool ran. Under
//! the durable engine those nested agents' model requests are journaled too, under the tool's
//! step id (`researcher#1/tool__ask#1/helper#1/model_request#1`). Summing both would count them
//! twice, so a step counts only when no finished tool step encloses it: a finished tool's
//! usage already covers everything inside it, journaled or not. Nested steps of a tool still in
//! flight (or failed, which leaves no usage) count on their own.

use std::collections::HashSet;

use serde::Serialize;
use steadfast_core::Usage;
use steadfast_durable::{StepKind, StepRecord};

/// Usage totals of one workflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Cost in US dollars (requests of models without a known price count as zero).
    pub cost_usd: f64,
    /// Model requests.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Model requests whose model had no known price.
    pub unpriced_requests: u64,
}

impl Totals {
    /// One line for people: cost, requests, tokens, and the requests left out of the cost.
    pub fn describe(&self) -> String {
        let mut line = format!(
            "{} over {} model request(s), {} input + {} output tokens",
            crate::render::usd(self.cost_usd),
            self.requests,
            self.input_tokens,
            self.output_tokens
        );
        if self.unpriced_requests > 0 {
            line.push_str(&format!(
                " ({} request(s) of models without a known price are not in the cost)",
                self.unpriced_requests
            ));
        }
        line
    }

    /// The totals of a journal.
    pub fn of(steps: &[StepRecord]) -> Self {
        let enclosing: HashSet<String> = steps
            .iter()
            .filter(|s| s.kind == StepKind::Tool && usage_of(s).is_some())
            .map(|s| format!("{}/", s.step_id))
            .collect();
        let mut sum = Usage::default();
        for step in steps {
            if matches!(step.kind, StepKind::ModelRequest | StepKind::Tool)
                && !is_enclosed(&step.step_id, &enclosing)
                && let Some(usage) = usage_of(step)
            {
                sum += &usage;
            }
        }
        Totals {
            cost_usd: sum.cost_usd,
            requests: u64::from(sum.requests),
            input_tokens: sum.input_tokens,
            output_tokens: sum.output_tokens,
            unpriced_requests: u64::from(sum.unpriced_requests),
        }
    }
}

/// The `usage` of a finished model request or tool step (zero when the output has none). Only
/// the output's `usage` field is deserialized.
fn usage_of(step: &StepRecord) -> Option<Usage> {
    let output = step.output.as_ref().ok()?;
    let mut usage: Usage = output.field("usage").ok().flatten().unwrap_or_default();
    if step.kind == StepKind::ModelRequest {
        // A response is one request, whatever its usage says.
        usage.requests = usage.requests.max(1);
    }
    Some(usage)
}

/// Whether an ancestor of `step_id` (a prefix ending at a `/`) is in `enclosing`.
fn is_enclosed(step_id: &str, enclosing: &HashSet<String>) -> bool {
    step_id
        .match_indices('/')
        .any(|(i, _)| enclosing.contains(&step_id[..=i]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use steadfast_durable::Json;

    fn step(step_id: &str, kind: StepKind, output: Value) -> StepRecord {
        StepRecord {
            position: step_id.into(),
            step_id: step_id.into(),
            kind,
            name: step_id.into(),
            input_hash: String::new(),
            input: None,
            output: Ok(Json::from(output)),
            attempts: 1,
            started_at: 0,
            duration_us: 0,
            seq: 0,
        }
    }

    fn usage(cost: f64, input: u64) -> Value {
        json!({ "requests": 1, "input_tokens": input, "output_tokens": 1, "cost_usd": cost })
    }

    #[test]
    fn nested_requests_inside_a_finished_tool_count_once() {
        let mr = StepKind::ModelRequest;
        let steps = vec![
            step(
                "a#1/model_request#1",
                mr,
                json!({ "parts": [], "usage": usage(0.5, 10) }),
            ),
            step(
                "a#1/tool__t#1/b#1/model_request#1",
                mr,
                json!({ "parts": [], "usage": usage(0.25, 5) }),
            ),
            step(
                "a#1/tool__t#1",
                StepKind::Tool,
                json!({ "result": { "kind": "return", "value": 1 }, "usage": usage(0.25, 5) }),
            ),
            step("a#1/model_request#2", mr, json!({ "parts": [] })),
            step(
                "fetch#1",
                StepKind::Step,
                json!({ "usage": usage(100.0, 1) }),
            ),
        ];
        let t = Totals::of(&steps);
        assert_eq!(t.cost_usd, 0.75);
        assert_eq!(t.requests, 3);
        assert_eq!(t.input_tokens, 15);
    }

    #[test]
    fn nested_requests_of_a_tool_in_flight_count_on_their_own() {
        let steps = vec![step(
            "a#1/tool__t#1/b#1/model_request#1",
            StepKind::ModelRequest,
            json!({ "parts": [], "usage": usage(0.25, 5) }),
        )];
        assert_eq!(Totals::of(&steps).cost_usd, 0.25);
    }
}
