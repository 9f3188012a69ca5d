//! Retry policies and step policies: how often, how patiently and how long a step may run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a failed step is retried: exponential backoff with a cap.
///
/// Only retryable errors are retried (see [`crate::ModelError::is_retryable`] and
/// [`crate::ToolError`]); a `Retry-After` from the provider wins over the computed delay when it
/// is longer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. `1` means no retry.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_interval: Duration,
    /// Each further delay is the previous one times this.
    pub backoff_coefficient: f64,
    /// The delay never exceeds this.
    pub max_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_interval: Duration::from_millis(200),
            backoff_coefficient: 2.0,
            max_interval: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn no_retry() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// `max_attempts` attempts with the default backoff.
    pub fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            ..Default::default()
        }
    }

    /// The same policy with another initial interval.
    pub fn with_initial_interval(mut self, d: Duration) -> Self {
        self.initial_interval = d;
        self
    }

    /// The delay after failed attempt number `attempt` (1-based), or `None` when no attempt is left.
    pub fn delay_after(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exp = self
            .backoff_coefficient
            .max(1.0)
            .powi(attempt.saturating_sub(1) as i32);
        let secs = (self.initial_interval.as_secs_f64() * exp).min(self.max_interval.as_secs_f64());
        let computed = Duration::from_secs_f64(secs.max(0.0));
        Some(match retry_after {
            Some(ra) if ra > computed => ra,
            _ => computed,
        })
    }
}

/// The policy of one kind of step: its retries and its start-to-close timeout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepPolicy {
    /// How failures are retried.
    pub retry: RetryPolicy,
    /// How long one attempt may take (start to close). `None`: no limit.
    pub timeout: Option<Duration>,
}

impl Default for StepPolicy {
    fn default() -> Self {
        StepPolicy {
            retry: RetryPolicy::default(),
            timeout: Some(Duration::from_secs(60)),
        }
    }
}

impl StepPolicy {
    /// The same policy with another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The same policy with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_stops() {
        let p = RetryPolicy {
            max_attempts: 4,
            initial_interval: Duration::from_millis(100),
            backoff_coefficient: 3.0,
            max_interval: Duration::from_millis(500),
        };
        assert_eq!(p.delay_after(1, None), Some(Duration::from_millis(100)));
        assert_eq!(p.delay_after(2, None), Some(Duration::from_millis(300)));
        assert_eq!(p.delay_after(3, None), Some(Duration::from_millis(500)));
        assert_eq!(p.delay_after(4, None), None);
        assert_eq!(
            p.delay_after(1, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
    }
}
