//! Okapi BM25 ranking over a small in-memory collection, with a tokenizer to match.
//!
//! The offline search backend ranks the bundled corpus with this. It is a plain implementation of
//! the classic formula: for each query term `t` in document `d`,
//!
//! ```text
//! idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
//! idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))
//! ```
//!
//! summed over the query's distinct terms (`k1 = 1.2`, `b = 0.75`). Ties are broken by document
//! order, so rankings are deterministic.

use std::collections::HashMap;

/// Words too common to say anything about a document.
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "because",
    "been", "before", "being", "between", "both", "but", "by", "can", "could", "did", "do", "does",
    "doing", "each", "few", "for", "from", "had", "has", "have", "having", "he", "her", "here",
    "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me",
    "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "one", "only",
    "or", "other", "our", "out", "over", "own", "same", "she", "should", "so", "some", "such",
    "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
];

/// Whether `word` (lowercase) is a stop word.
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// Reduce a lowercase word to a crude stem so that plurals and simple verb forms match:
/// `workflows` → `workflow`, `retries` → `retry`, `agents'` → `agent`.
pub fn stem(word: &str) -> String {
    let w = word.trim_end_matches('\'');
    let w = w.strip_suffix("'s").unwrap_or(w);
    if w.len() > 4 && w.ends_with("ies") {
        return format!("{}y", &w[..w.len() - 3]);
    }
    if w.len() > 3
        && w.ends_with('s')
        && !w.ends_with("ss")
        && !w.ends_with("us")
        && !w.ends_with("is")
    {
        return w[..w.len() - 1].to_string();
    }
    w.to_string()
}

/// The words of `text`, lowercase, in order, stop words included (`'` stays inside words).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The index terms of `text`: its words without stop words, stemmed.
pub fn tokenize(text: &str) -> Vec<String> {
    words(text)
        .into_iter()
        .filter(|w| !is_stop_word(w))
        .map(|w| stem(&w))
        .collect()
}

/// BM25 parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Term-frequency saturation.
    pub k1: f64,
    /// Length normalization (0: none, 1: full).
    pub b: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params { k1: 1.2, b: 0.75 }
    }
}

/// An index of documents given as text.
#[derive(Debug, Clone)]
pub struct Index {
    params: Params,
    /// Term frequencies of each document.
    docs: Vec<HashMap<String, u32>>,
    lengths: Vec<f64>,
    avg_len: f64,
    /// Documents containing each term.
    doc_freq: HashMap<String, u32>,
}

impl Index {
    /// Index `texts` with the default parameters; document `i` is `texts[i]`.
    pub fn new<S: AsRef<str>>(texts: &[S]) -> Self {
        Self::with_params(texts, Params::default())
    }

    /// Index `texts` with `params`.
    pub fn with_params<S: AsRef<str>>(texts: &[S], params: Params) -> Self {
        let mut docs = Vec::with_capacity(texts.len());
        let mut lengths = Vec::with_capacity(texts.len());
        let mut doc_freq: HashMap<String, u32> = HashMap::new();
        for t in texts {
            let mut tf: HashMap<String, u32> = HashMap::new();
            let terms = tokenize(t.as_ref());
            lengths.push(terms.len() as f64);
            for term in terms {
                *tf.entry(term).or_default() += 1;
            }
            for term in tf.keys() {
                *doc_freq.entry(term.clone()).or_default() += 1;
            }
            docs.push(tf);
        }
        let avg_len = if lengths.is_empty() {
            0.0
        } else {
            lengths.iter().sum::<f64>() / lengths.len() as f64
        };
        Index {
            params,
            docs,
            lengths,
            avg_len,
            doc_freq,
        }
    }

    /// The number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether the index holds no document.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    fn idf(&self, term: &str) -> f64 {
        let n = self.docs.len() as f64;
        let df = f64::from(self.doc_freq.get(term).copied().unwrap_or(0));
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// The BM25 score of document `doc` for `query`.
    pub fn score(&self, query: &str, doc: usize) -> f64 {
        let mut terms = tokenize(query);
        terms.sort();
        terms.dedup();
        self.score_terms(&terms, doc)
    }

    fn score_terms(&self, terms: &[String], doc: usize) -> f64 {
        let Params { k1, b } = self.params;
        let norm = if self.avg_len > 0.0 {
            1.0 - b + b * self.lengths[doc] / self.avg_len
        } else {
            1.0
        };
        terms
            .iter()
            .map(|t| {
                let tf = f64::from(self.docs[doc].get(t).copied().unwrap_or(0));
                if tf == 0.0 {
                    0.0
                } else {
                    self.idf(t) * tf * (k1 + 1.0) / (tf + k1 * norm)
                }
            })
            .sum()
    }

    /// The `limit` best documents for `query` as `(document, score)`, best first; documents
    /// that share no term with the query are left out.
    pub fn search(&self, query: &str, limit: usize) -> Vec<(usize, f64)> {
        let mut terms = tokenize(query);
        terms.sort();
        terms.dedup();
        let mut hits: Vec<(usize, f64)> = (0..self.docs.len())
            .map(|d| (d, self.score_terms(&terms, d)))
            .filter(|(_, s)| *s > 0.0)
            .collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(limit);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(docs: &[&str], query: &str) -> Vec<usize> {
        Index::new(docs)
            .search(query, 10)
            .into_iter()
            .map(|(d, _)| d)
            .collect()
    }

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        let mut sorted = STOP_WORDS.to_vec();
        sorted.sort();
        assert_eq!(sorted, STOP_WORDS);
        assert!(is_stop_word("the") && !is_stop_word("workflow"));
    }

    #[test]
    fn tokenizer_drops_stop_words_and_stems() {
        assert_eq!(
            tokenize("The workflows' retries, and Temporal's activities!"),
            ["workflow", "retry", "temporal", "activity"]
        );
        assert_eq!(
            tokenize("class status process"),
            ["class", "status", "process"]
        );
        assert!(tokenize("what is the").is_empty());
    }

    #[test]
    fn only_matching_documents_are_returned() {
        let docs = [
            "durable execution survives crashes",
            "a recipe for soup",
            "crashes happen",
        ];
        assert_eq!(ranked(&docs, "durable crashes"), [0, 2]);
        assert!(ranked(&docs, "the of and").is_empty());
        assert!(ranked(&docs, "").is_empty());
    }

    #[test]
    fn rare_terms_weigh_more_than_common_ones() {
        // "workflow" is in every document, "lease" in one: the lease document wins although the
        // others mention "workflow" twice.
        let docs = [
            "workflow workflow engine",
            "workflow lease engine",
            "workflow workflow engine",
        ];
        assert_eq!(ranked(&docs, "workflow lease")[0], 1);
        let idx = Index::new(&docs);
        assert!(idx.idf("lease") > idx.idf("workflow"));
        assert!(idx.idf("workflow") > 0.0, "the +1 keeps idf positive");
    }

    #[test]
    fn term_frequency_helps_but_saturates() {
        let docs = [
            "replay replay replay journal",
            "replay journal steps engine",
            "unrelated text about gardening tools",
        ];
        let idx = Index::new(&docs);
        assert!(idx.score("replay", 0) > idx.score("replay", 1));
        // Saturation: three occurrences score less than three times one occurrence.
        assert!(idx.score("replay", 0) < 3.0 * idx.score("replay", 1));
    }

    #[test]
    fn longer_documents_are_normalized() {
        let long = format!("timeout {}", "padding words here ".repeat(20));
        let docs = ["timeout policy", long.as_str(), "nothing relevant"];
        assert_eq!(ranked(&docs, "timeout"), [0, 1]);
        let flat = Index::with_params(&docs, Params { k1: 1.2, b: 0.0 });
        assert!((flat.score("timeout", 0) - flat.score("timeout", 1)).abs() < 1e-12);
    }

    #[test]
    fn ties_keep_document_order_and_limit_applies() {
        let docs = ["same words", "same words", "same words"];
        assert_eq!(ranked(&docs, "words"), [0, 1, 2]);
        assert_eq!(Index::new(&docs).search("words", 2).len(), 2);
    }
}
