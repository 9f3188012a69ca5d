//! Web search behind one trait: Tavily's API over HTTP, or BM25 over the bundled corpus.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steadfast::models::http::HttpClient;
use steadfast::{ClientConfig, ToolError};

use crate::bm25;
use crate::corpus::{self, Document};

/// One search result, as the search agent's `web_search` tool returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchHit {
    /// The page title.
    pub title: String,
    /// The page address.
    pub url: String,
    /// The relevant text of the page.
    pub content: String,
    /// The backend's relevance score (higher is better; scales differ between backends).
    pub score: f64,
}

/// A search engine.
pub trait SearchBackend: Send + Sync {
    /// A short description for people ("Tavily", "offline corpus (39 documents)").
    fn describe(&self) -> String;

    /// Search for `query`; at most `max_results` hits, best first.
    ///
    /// Failures are [`ToolError`]s: a retryable one (a timeout, HTTP 429 or 5xx) is retried under
    /// the tool's step policy; a fatal one (a bad key) ends the run.
    fn search<'a>(
        &'a self,
        query: &'a str,
        max_results: usize,
    ) -> BoxFuture<'a, Result<Vec<SearchHit>, ToolError>>;
}

/// BM25 over the bundled corpus: no network, no key.
pub struct OfflineSearch {
    docs: &'static [Document],
    index: bm25::Index,
}

impl OfflineSearch {
    /// The backend over the bundled corpus.
    pub fn new() -> Self {
        let docs = corpus::documents();
        // Titles count twice: a term in the title says more about the document.
        let texts: Vec<String> = docs
            .iter()
            .map(|d| format!("{t}\n{t}\n{}", d.body, t = d.title))
            .collect();
        OfflineSearch {
            docs,
            index: bm25::Index::new(&texts),
        }
    }

    /// Search synchronously.
    pub fn search_now(&self, query: &str, max_results: usize) -> Vec<SearchHit> {
        self.index
            .search(query, max_results)
            .into_iter()
            .map(|(i, score)| {
                let d = &self.docs[i];
                SearchHit {
                    title: d.title.clone(),
                    url: d.url.clone(),
                    content: d.body.clone(),
                    score: (score * 1000.0).round() / 1000.0,
                }
            })
            .collect()
    }
}

impl Default for OfflineSearch {
    fn default() -> Self {
        Self::new()
    }
}

impl SearchBackend for OfflineSearch {
    fn describe(&self) -> String {
        format!("offline corpus ({} documents, BM25)", self.docs.len())
    }

    fn search<'a>(
        &'a self,
        query: &'a str,
        max_results: usize,
    ) -> BoxFuture<'a, Result<Vec<SearchHit>, ToolError>> {
        let hits = self.search_now(query, max_results);
        Box::pin(async move { Ok(hits) })
    }
}

/// Tavily's search API (`POST {base}/search`, `Authorization: Bearer KEY`).
///
/// It reuses the providers' HTTP client, so it gets their error mapping (429 and 5xx retryable,
/// 4xx not), `Retry-After` handling and timeouts.
pub struct TavilySearch {
    client: HttpClient,
    key: String,
}

/// Tavily's public endpoint; `TAVILY_BASE_URL` overrides it (the tests point it at a local server).
pub const TAVILY_DEFAULT_URL: &str = "https://api.tavily.com";

impl TavilySearch {
    /// A client for the API at `base_url` with `key`.
    pub fn new(base_url: &str, key: &str) -> Result<Self, ToolError> {
        let config = ClientConfig::new(base_url)
            .with_timeout(Duration::from_secs(30))
            .with_max_retries(2);
        let client = HttpClient::new("tavily", config).map_err(ToolError::fatal)?;
        Ok(TavilySearch {
            client,
            key: key.to_string(),
        })
    }

    /// Parse Tavily's answer.
    pub fn parse(body: &Value) -> Result<Vec<SearchHit>, ToolError> {
        let results = body
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ToolError::fatal(format!("tavily answered without `results`: {body}"))
            })?;
        Ok(results
            .iter()
            .filter_map(|r| {
                Some(SearchHit {
                    title: r.get("title")?.as_str()?.to_string(),
                    url: r.get("url")?.as_str()?.to_string(),
                    content: r
                        .get("content")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    score: r.get("score").and_then(Value::as_f64).unwrap_or(0.0),
                })
            })
            .collect())
    }
}

impl SearchBackend for TavilySearch {
    fn describe(&self) -> String {
        format!("Tavily at {}", self.client.config.base_url)
    }

    fn search<'a>(
        &'a self,
        query: &'a str,
        max_results: usize,
    ) -> BoxFuture<'a, Result<Vec<SearchHit>, ToolError>> {
        Box::pin(async move {
            let body = json!({
                "query": query,
                "max_results": max_results,
                "search_depth": "basic",
                "include_answer": false,
            });
            let auth = [("authorization", format!("Bearer {}", self.key))];
            let answer = self
                .client
                .post_json(&self.client.url("/search"), &auth, &body)
                .await
                .map_err(|e| ToolError::Failed {
                    retryable: e.is_retryable(),
                    message: e.to_string(),
                })?;
            Self::parse(&answer)
        })
    }
}

/// The backend to use: Tavily when a key is given, else the offline corpus.
pub fn choose(
    tavily_key: Option<&str>,
    tavily_url: &str,
) -> Result<Arc<dyn SearchBackend>, ToolError> {
    Ok(match tavily_key {
        Some(key) => Arc::new(TavilySearch::new(tavily_url, key)?),
        None => Arc::new(OfflineSearch::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_search_finds_the_documents_about_the_query() {
        let s = OfflineSearch::new();
        let hits = s.search_now("Temporal activities retry policy", 3);
        assert_eq!(hits.len(), 3);
        assert!(hits[0].title.contains("Temporal"), "{:?}", hits[0].title);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        let hits = s.search_now("BM25 ranking", 5);
        assert!(hits[0].title.contains("BM25"), "{:?}", hits[0].title);
        assert!(s.search_now("zzzz qqqq", 5).is_empty());
    }

    #[test]
    fn tavily_answers_are_parsed() {
        let body = json!({
            "query": "q",
            "results": [
                {"title": "A", "url": "https://a.example.org", "content": "text", "score": 0.9},
                {"title": "no url"}
            ]
        });
        let hits = TavilySearch::parse(&body).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].url, "https://a.example.org");
        assert!(TavilySearch::parse(&json!({"error": "x"})).is_err());
    }
}
