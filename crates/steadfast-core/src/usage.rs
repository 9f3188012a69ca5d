//! Token usage, cost, and the limits a run must stay within.

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

/// Tokens, requests and cost, for one request or summed over a run.
///
/// Usage is data inside every model response and every tool result, so it survives journaling and
/// replay: a resumed run reports the same totals as an uninterrupted one. Its JSON leaves out
/// the counts that are zero (a missing field reads as zero), which keeps journaled steps small.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Model requests made.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requests: u32,
    /// Tool calls executed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tool_calls: u32,
    /// Input (prompt) tokens.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub input_tokens: u64,
    /// Output (completion) tokens.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_tokens: u64,
    /// Input tokens read from the provider's cache (included in `input_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_read_tokens: u64,
    /// Input tokens written to the provider's cache (included in `input_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    /// Reasoning tokens (included in `output_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    /// Cost in US dollars, from the price table.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub cost_usd: f64,
    /// Requests whose model has no known price, so `cost_usd` leaves them out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unpriced_requests: u32,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

impl Usage {
    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

impl AddAssign<&Usage> for Usage {
    fn add_assign(&mut self, o: &Usage) {
        self.requests += o.requests;
        self.tool_calls += o.tool_calls;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.cost_usd += o.cost_usd;
        self.unpriced_requests += o.unpriced_requests;
    }
}

/// Limits on a run. Exceeding one ends the run with [`crate::AgentError::UsageLimitExceeded`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageLimits {
    /// Model requests (default 50).
    pub request_limit: Option<u32>,
    /// Tool calls.
    pub tool_calls_limit: Option<u32>,
    /// Input tokens.
    pub input_tokens_limit: Option<u64>,
    /// Output tokens.
    pub output_tokens_limit: Option<u64>,
    /// Input plus output tokens.
    pub total_tokens_limit: Option<u64>,
}

impl Default for UsageLimits {
    fn default() -> Self {
        UsageLimits {
            request_limit: Some(50),
            tool_calls_limit: None,
            input_tokens_limit: None,
            output_tokens_limit: None,
            total_tokens_limit: None,
        }
    }
}

impl UsageLimits {
    /// No limits at all.
    pub fn unlimited() -> Self {
        UsageLimits {
            request_limit: None,
            ..Default::default()
        }
    }

    /// Checked before a request: would one more request break the request limit?
    pub(crate) fn check_before_request(&self, u: &Usage) -> Result<(), String> {
        if let Some(limit) = self.request_limit
            && u.requests >= limit
        {
            return Err(format!(
                "the next request would exceed the request limit of {limit}"
            ));
        }
        self.check_tokens(u)
    }

    /// Checked before tools run: would these calls break the tool-call limit?
    pub(crate) fn check_tool_calls(&self, u: &Usage, more: u32) -> Result<(), String> {
        if let Some(limit) = self.tool_calls_limit
            && u.tool_calls + more > limit
        {
            return Err(format!(
                "{} tool calls would exceed the tool-call limit of {limit}",
                u.tool_calls + more
            ));
        }
        Ok(())
    }

    /// Checked after each response: token limits.
    pub(crate) fn check_tokens(&self, u: &Usage) -> Result<(), String> {
        let checks = [
            (self.input_tokens_limit, u.input_tokens, "input"),
            (self.output_tokens_limit, u.output_tokens, "output"),
            (self.total_tokens_limit, u.total_tokens(), "total"),
        ];
        for (limit, used, what) in checks {
            if let Some(limit) = limit
                && used > limit
            {
                return Err(format!(
                    "{used} {what} tokens exceed the {what}-token limit of {limit}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_counts_are_left_out_of_the_json_and_read_back_as_zero() {
        assert_eq!(serde_json::to_string(&Usage::default()).unwrap(), "{}");
        let u = Usage {
            requests: 1,
            output_tokens: 7,
            cost_usd: 0.25,
            ..Usage::default()
        };
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(json, r#"{"requests":1,"output_tokens":7,"cost_usd":0.25}"#);
        assert_eq!(serde_json::from_str::<Usage>(&json).unwrap(), u);
        // Usage written with every field, as older builds did, reads the same.
        let full = r#"{"requests":1,"tool_calls":0,"input_tokens":0,"output_tokens":7,
            "cache_read_tokens":0,"cache_write_tokens":0,"reasoning_tokens":0,
            "cost_usd":0.25,"unpriced_requests":0}"#;
        assert_eq!(serde_json::from_str::<Usage>(full).unwrap(), u);
    }
}
