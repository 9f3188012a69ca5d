//! The bundled corpus: short documents about agent frameworks and durable execution, written for
//! this example and compiled into the binary, so the demo searches something real offline.
//!
//! Each file in `corpus/` starts with a small header:
//!
//! ```text
//! ---
//! title: What durable execution means
//! url: https://docs.example.org/durable/what-is-durable-execution
//! ---
//! The text...
//! ```

use std::sync::OnceLock;

/// One document of the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The title.
    pub title: String,
    /// Where it (notionally) lives.
    pub url: String,
    /// The text, paragraphs joined by blank lines.
    pub body: String,
}

macro_rules! corpus_files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../corpus/", $name)))),*]
    };
}

/// The files, by name.
const FILES: &[(&str, &str)] = corpus_files![
    "01-durable-execution.md",
    "02-journal-and-replay.md",
    "03-deterministic-workflow-code.md",
    "04-temporal-overview.md",
    "05-temporal-activities.md",
    "06-temporal-workflow-ids.md",
    "07-temporal-signals-timers.md",
    "08-dbos-overview.md",
    "09-library-vs-server.md",
    "10-restate-overview.md",
    "11-prefect-overview.md",
    "12-step-functions.md",
    "13-airflow-batch.md",
    "14-idempotency-keys.md",
    "15-at-least-once.md",
    "16-retry-backoff.md",
    "17-timeouts.md",
    "18-sagas.md",
    "19-sqlite-checkpoints.md",
    "20-postgres-queues.md",
    "21-leases-failover.md",
    "22-workflow-versioning.md",
    "23-what-is-an-agent.md",
    "24-tool-calling.md",
    "25-structured-output.md",
    "26-type-safety-agents.md",
    "27-pydantic-ai.md",
    "28-langgraph.md",
    "29-rust-for-agents.md",
    "30-rust-agent-libraries.md",
    "31-steadfast.md",
    "32-parallel-fan-out.md",
    "33-human-in-the-loop.md",
    "34-otel-genai.md",
    "35-agent-evals.md",
    "36-mcp.md",
    "37-token-cost.md",
    "38-bm25.md",
    "39-deep-research-pattern.md",
];

/// Parse one corpus file.
pub fn parse(name: &str, text: &str) -> Result<Document, String> {
    let rest = text
        .strip_prefix("---\n")
        .ok_or_else(|| format!("{name}: no `---` header"))?;
    let (header, body) = rest
        .split_once("\n---\n")
        .ok_or_else(|| format!("{name}: the header is not closed"))?;
    let field = |key: &str| {
        header
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .strip_prefix(':')
                    .map(|v| v.trim().to_string())
            })
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{name}: no `{key}` in the header"))
    };
    let body = body
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    if body.is_empty() {
        return Err(format!("{name}: empty body"));
    }
    Ok(Document {
        title: field("title")?,
        url: field("url")?,
        body,
    })
}

/// Every document of the corpus, in file order.
pub fn documents() -> &'static [Document] {
    static DOCS: OnceLock<Vec<Document>> = OnceLock::new();
    DOCS.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, text)| parse(name, text).unwrap_or_else(|e| panic!("bundled corpus: {e}")))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_parses_with_a_unique_url_on_an_example_domain() {
        let docs = documents();
        assert!((30..=40).contains(&docs.len()), "{}", docs.len());
        let mut urls: Vec<&str> = docs.iter().map(|d| d.url.as_str()).collect();
        urls.sort();
        urls.dedup();
        assert_eq!(urls.len(), docs.len(), "duplicate urls");
        for d in docs {
            assert!(
                d.url.starts_with("https://")
                    && [".example.org/", ".example.com/", ".example.net/"]
                        .iter()
                        .any(|s| d.url.contains(s)),
                "{}",
                d.url
            );
            let words = d.body.split_whitespace().count();
            assert!((50..=260).contains(&words), "{}: {words} words", d.title);
        }
    }

    #[test]
    fn the_header_is_required() {
        assert!(parse("x", "no header").is_err());
        assert!(parse("x", "---\ntitle: T\n---\nbody").is_err(), "no url");
        let d = parse(
            "x",
            "---\ntitle: T\nurl: https://a.example.org/x\n---\nline one\nline two\n\nsecond",
        )
        .unwrap();
        assert_eq!(d.body, "line one line two\n\nsecond");
    }
}
