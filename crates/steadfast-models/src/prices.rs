//! Prices per model, in US dollars per million tokens, with their source and date.

use steadfast_core::Usage;

/// The price of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Input tokens, USD per million.
    pub input_per_mtok: f64,
    /// Output tokens, USD per million.
    pub output_per_mtok: f64,
    /// Cached input read, USD per million (`None`: same as input).
    pub cache_read_per_mtok: Option<f64>,
    /// Where the price comes from.
    pub source: &'static str,
    /// When it was read.
    pub as_of: &'static str,
}

const OPENAI: &str = "https://openai.com/api/pricing";
const ANTHROPIC: &str = "https://docs.anthropic.com/en/docs/about-claude/pricing";
const GOOGLE: &str = "https://ai.google.dev/gemini-api/docs/pricing";

/// (model-name prefix, price). The longest matching prefix wins, so dated snapshots
/// (`gpt-4.1-2025-04-14`) find their family.
const TABLE: &[(&str, Price)] = &[
    (
        "claude-haiku-4-5",
        p(1.0, 5.0, Some(0.10), ANTHROPIC, "2025-10-15"),
    ),
    (
        "claude-3-5-haiku",
        p(0.80, 4.0, Some(0.08), ANTHROPIC, "2025-10-15"),
    ),
    (
        "claude-sonnet-4-5",
        p(3.0, 15.0, Some(0.30), ANTHROPIC, "2025-10-15"),
    ),
    (
        "claude-sonnet-4",
        p(3.0, 15.0, Some(0.30), ANTHROPIC, "2025-10-15"),
    ),
    (
        "claude-opus-4",
        p(15.0, 75.0, Some(1.50), ANTHROPIC, "2025-10-15"),
    ),
    (
        "gpt-4.1-mini",
        p(0.40, 1.60, Some(0.10), OPENAI, "2025-10-15"),
    ),
    (
        "gpt-4.1-nano",
        p(0.10, 0.40, Some(0.025), OPENAI, "2025-10-15"),
    ),
    ("gpt-4.1", p(2.0, 8.0, Some(0.50), OPENAI, "2025-10-15")),
    (
        "gpt-4o-mini",
        p(0.15, 0.60, Some(0.075), OPENAI, "2025-10-15"),
    ),
    ("gpt-4o", p(2.50, 10.0, Some(1.25), OPENAI, "2025-10-15")),
    (
        "gpt-5-mini",
        p(0.25, 2.0, Some(0.025), OPENAI, "2025-10-15"),
    ),
    (
        "gpt-5-nano",
        p(0.05, 0.40, Some(0.005), OPENAI, "2025-10-15"),
    ),
    ("gpt-5", p(1.25, 10.0, Some(0.125), OPENAI, "2025-10-15")),
    (
        "gemini-2.5-flash-lite",
        p(0.10, 0.40, Some(0.025), GOOGLE, "2025-10-15"),
    ),
    (
        "gemini-2.5-flash",
        p(0.30, 2.50, Some(0.075), GOOGLE, "2025-10-15"),
    ),
    (
        "gemini-2.5-pro",
        p(1.25, 10.0, Some(0.31), GOOGLE, "2025-10-15"),
    ),
];

const fn p(
    input: f64,
    output: f64,
    cache: Option<f64>,
    source: &'static str,
    as_of: &'static str,
) -> Price {
    Price {
        input_per_mtok: input,
        output_per_mtok: output,
        cache_read_per_mtok: cache,
        source,
        as_of,
    }
}

/// The price of `model`, if the table knows it. A `provider/` or `models/` prefix is ignored.
pub fn price_of(model: &str) -> Option<Price> {
    let name = model.rsplit('/').next().unwrap_or(model);
    TABLE
        .iter()
        .filter(|(prefix, _)| name.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, price)| *price)
}

/// Fill in `usage.cost_usd` (or count the request as unpriced) for a request to `model`.
pub fn apply_cost(model: &str, usage: &mut Usage) {
    match price_of(model) {
        Some(pr) => {
            let cached = usage.cache_read_tokens.min(usage.input_tokens) as f64;
            let fresh = usage.input_tokens as f64 - cached;
            usage.cost_usd = (fresh * pr.input_per_mtok
                + cached * pr.cache_read_per_mtok.unwrap_or(pr.input_per_mtok)
                + usage.output_tokens as f64 * pr.output_per_mtok)
                / 1e6;
        }
        None => usage.unpriced_requests = usage.requests.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_cost_is_computed() {
        assert_eq!(
            price_of("gpt-4.1-mini-2025-04-14").unwrap().input_per_mtok,
            0.40
        );
        assert_eq!(price_of("gpt-4.1-2025-04-14").unwrap().input_per_mtok, 2.0);
        assert_eq!(
            price_of("models/gemini-2.5-flash").unwrap().output_per_mtok,
            2.50
        );
        assert!(price_of("my-local-model").is_none());
        let mut u = Usage {
            requests: 1,
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            ..Default::default()
        };
        apply_cost("claude-haiku-4-5", &mut u);
        assert!((u.cost_usd - 1.5).abs() < 1e-9, "{}", u.cost_usd);
        let mut u2 = Usage {
            requests: 1,
            ..Default::default()
        };
        apply_cost("unknown", &mut u2);
        assert_eq!(u2.unpriced_requests, 1);
    }
}
