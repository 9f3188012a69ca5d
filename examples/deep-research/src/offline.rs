//! The offline models: three scripted [`FunctionModel`]s that play the roles honestly from what
//! they are sent, with no hidden channel to the program.
//!
//! - The **planner** reads the question and plans searches for its key phrases.
//! - The **searcher** calls `web_search` with the terms it was given, then summarizes the results
//!   it got back, quoting their most relevant sentences with links.
//! - The **analyst** reads the XML prompt (the question, the findings, the instructions), may call
//!   `extra_search` once when no search covered the whole question, and composes a Markdown report from the
//!   retrieved text: an executive summary, findings per search, an analysis per key phrase, and
//!   the sources.
//!
//! They are plain functions of the conversation, so they replay like any model's journaled
//! answers.

use std::time::Duration;

use serde_json::{Map, Value, json};
use steadfast::{FunctionModel, Message, ModelRequestParams, ModelResponse, RequestPart};

use crate::bm25;
use crate::plan::{DeepResearchPlan, MAX_SEARCHES, WebSearchStep};
use crate::research::{Findings, Source};

/// Words of a question that say how to answer, not what about.
const FILLER: &[&str] = &[
    "best",
    "better",
    "care",
    "choose",
    "choosing",
    "compare",
    "comparing",
    "do",
    "explain",
    "good",
    "i'd",
    "i'm",
    "know",
    "like",
    "need",
    "pick",
    "recommend",
    "should",
    "tell",
    "use",
    "used",
    "using",
    "want",
    "way",
    "ways",
    "what's",
    "whats",
    "which",
    "work",
    "works",
];

/// The key phrases of a question: runs of consecutive words that are neither stop words nor
/// filler, at most four words each, without repeats.
pub fn key_phrases(question: &str) -> Vec<String> {
    let mut phrases: Vec<String> = Vec::new();
    let mut run: Vec<String> = Vec::new();
    let mut flush = |run: &mut Vec<String>| {
        if !run.is_empty() {
            let p = run.join(" ");
            if !phrases.contains(&p) {
                phrases.push(p);
            }
            run.clear();
        }
    };
    for w in bm25::words(question) {
        if bm25::is_stop_word(&w) || FILLER.contains(&w.as_str()) || w.len() < 2 {
            flush(&mut run);
        } else {
            run.push(w);
            if run.len() == 4 {
                flush(&mut run);
            }
        }
    }
    flush(&mut run);
    phrases
}

/// The offline planner's plan for `question`: one search per key phrase, plus the first two
/// phrases together (at most [`MAX_SEARCHES`]).
pub fn plan_for(question: &str) -> DeepResearchPlan {
    let phrases = key_phrases(question);
    let mut terms: Vec<String> = phrases.iter().take(MAX_SEARCHES).cloned().collect();
    match phrases.len() {
        0 => terms.push(question.trim().to_string()),
        1 => terms.push(format!("{} comparison", phrases[0])),
        n if n < MAX_SEARCHES => terms.push(format!("{} {}", phrases[0], phrases[1])),
        _ => {}
    }
    let topics = if phrases.is_empty() {
        format!("“{}”", question.trim())
    } else {
        join_and(&phrases.iter().map(|p| format!("“{p}”")).collect::<Vec<_>>())
    };
    DeepResearchPlan {
        executive_summary: format!(
            "To answer “{}”, search for {topics}, then read what the sources say about each and \
             compare them.",
            question.trim()
        ),
        web_search_steps: terms
            .into_iter()
            .map(|search_terms| WebSearchStep { search_terms })
            .collect(),
        analysis_instructions: format!(
            "Answer the question “{}”. Start with an executive summary. Then report what the \
             sources say about {topics}, citing each source with its link, and end with the list \
             of sources.",
            question.trim()
        ),
    }
}

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The first user prompt of the conversation.
fn prompt(messages: &[Message]) -> String {
    messages
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|r| r.parts.iter())
        .find_map(|p| match p {
            RequestPart::UserPrompt { content } => Some(content.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// What the tool `name` returned so far, in order.
fn tool_returns(messages: &[Message], name: &str) -> Vec<Value> {
    messages
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|r| r.parts.iter())
        .filter_map(|p| match p {
            RequestPart::ToolReturn {
                tool_name, content, ..
            } if tool_name == name => Some(content.clone()),
            _ => None,
        })
        .collect()
}

fn offers(params: &ModelRequestParams, tool: &str) -> bool {
    params.all_tools().any(|t| t.name == tool)
}

/// The sentences of `text`.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        cur.push(*c);
        let end =
            matches!(c, '.' | '?' | '!') && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if end || *c == '\n' {
            let s = cur.trim().to_string();
            if s.len() > 1 {
                out.push(s);
            }
            cur.clear();
        }
    }
    let s = cur.trim().to_string();
    if s.len() > 1 {
        out.push(s);
    }
    out
}

/// How many of `terms` occur in `sentence` (as index terms).
fn overlap(sentence: &str, terms: &[String]) -> usize {
    let words = bm25::tokenize(sentence);
    terms.iter().filter(|t| words.contains(t)).count()
}

/// The sentence of `text` that shares the most terms with `query` (the first on ties), and how
/// many it shares.
pub fn best_sentence(text: &str, query: &str) -> Option<(String, usize)> {
    let mut terms = bm25::tokenize(query);
    terms.dedup();
    let mut best: Option<(String, usize)> = None;
    // A sentence cut short by a snippet's end is not quoted.
    for s in sentences(text).into_iter().filter(|s| !s.ends_with('…')) {
        let n = overlap(&s, &terms);
        if best.as_ref().is_none_or(|(_, b)| n > *b) {
            best = Some((s, n));
        }
    }
    best
}

fn link(title: &str, url: &str) -> String {
    format!("[{}]({url})", title.replace(['[', ']'], ""))
}

/// The planner's turn: the plan, through the output tool.
pub fn plan_turn(messages: &[Message], _params: &ModelRequestParams) -> ModelResponse {
    let plan = plan_for(&prompt(messages));
    ModelResponse::tool_call(
        steadfast::OUTPUT_TOOL_NAME,
        serde_json::to_value(plan).unwrap_or_default(),
    )
}

/// The searcher's turn: search for the terms, then summarize the results.
pub fn search_turn(messages: &[Message], params: &ModelRequestParams) -> ModelResponse {
    let terms = prompt(messages);
    let returns = tool_returns(messages, "web_search");
    if returns.is_empty() && offers(params, "web_search") {
        return ModelResponse::tool_call("web_search", json!({ "query": terms }));
    }
    let hits: Vec<(String, String, String)> = returns
        .iter()
        .flat_map(|r| r.as_array().cloned().unwrap_or_default())
        .filter_map(|h| {
            Some((
                h.get("title")?.as_str()?.to_string(),
                h.get("url")?.as_str()?.to_string(),
                h.get("content")?.as_str().unwrap_or("").to_string(),
            ))
        })
        .collect();
    if hits.is_empty() {
        return ModelResponse::text(format!("The search for “{terms}” found nothing."));
    }
    let mut text = format!(
        "The search for “{terms}” found {} results. The most relevant:\n",
        hits.len()
    );
    for (title, url, content) in hits.iter().take(3) {
        let (sentence, _) = best_sentence(content, &terms).unwrap_or_default();
        text.push_str(&format!("- {}: {sentence}\n", link(title, url)));
    }
    ModelResponse::text(text.trim_end())
}

/// The analyst's turn: maybe one extra search, then the report.
pub fn analysis_turn(messages: &[Message], params: &ModelRequestParams) -> ModelResponse {
    let input = read_xml(&prompt(messages));
    let question = input
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let instructions = input
        .get("instructions")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut findings: Vec<Findings> = input
        .get("search_results")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let extra: Vec<Findings> = tool_returns(messages, "extra_search")
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    if let Some(query) = follow_up(&question, &findings)
        && tool_returns(messages, "extra_search").is_empty()
        && offers(params, "extra_search")
    {
        return ModelResponse::tool_call("extra_search", json!({ "query": query }));
    }
    let planned = findings.len();
    findings.extend(extra);
    ModelResponse::text(compose_report(&question, &instructions, &findings, planned))
}

/// The analyst's follow-up search: when the question has several key phrases and no search
/// covered them all at once, one search for all of them together, to find sources that address
/// the whole question rather than one side of it.
pub fn follow_up(question: &str, findings: &[Findings]) -> Option<String> {
    let phrases = key_phrases(question);
    let covered = findings.iter().any(|f| {
        phrases
            .iter()
            .all(|p| f.search_terms.to_lowercase().contains(p.as_str()))
    });
    (phrases.len() >= 2 && !covered).then(|| phrases.join(" "))
}

fn distinct_sources<'a>(findings: impl Iterator<Item = &'a Findings>) -> Vec<&'a Source> {
    let mut out: Vec<&Source> = Vec::new();
    for f in findings {
        for s in &f.sources {
            if !out.iter().any(|o| o.url == s.url) {
                out.push(s);
            }
        }
    }
    out
}

/// The report, composed from the retrieved text. `planned` findings came from the plan; the
/// rest from follow-up searches.
pub fn compose_report(
    question: &str,
    instructions: &str,
    findings: &[Findings],
    planned: usize,
) -> String {
    let sources = distinct_sources(findings.iter());
    let mut out = format!("# {}\n\n## Executive summary\n\n", question.trim());
    if sources.is_empty() {
        out.push_str(
            "The searches found no sources, so this question cannot be answered from them.\n",
        );
        return out;
    }
    // The sentences most relevant to the whole question, from different sources.
    let mut ranked: Vec<(usize, usize, String, &Source)> = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| best_sentence(&s.snippet, question).map(|(t, n)| (n, i, t, *s)))
        .filter(|(n, ..)| *n > 0)
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    out.push_str(&format!(
        "{} searches found {} distinct sources{}. The points most relevant to the question:\n\n",
        findings.len(),
        sources.len(),
        if findings.len() > planned {
            format!(
                " ({} planned, {} follow-up)",
                planned,
                findings.len() - planned
            )
        } else {
            String::new()
        }
    ));
    for (_, _, sentence, s) in ranked.iter().take(3) {
        out.push_str(&format!("- {sentence} ({})\n", link(&s.title, &s.url)));
    }
    out.push_str(
        "\nThe sections below group what the sources say by search and by key phrase of the \
         question; every statement is quoted from the source it links.\n",
    );

    out.push_str("\n## Findings\n");
    for (i, f) in findings.iter().enumerate() {
        let label = if i < planned {
            "Search"
        } else {
            "Follow-up search"
        };
        out.push_str(&format!("\n### {label}: {}\n\n", f.search_terms));
        if f.sources.is_empty() {
            out.push_str("Nothing found.\n");
        }
        for s in f.sources.iter().take(3) {
            let (sentence, _) = best_sentence(&s.snippet, &f.search_terms).unwrap_or_default();
            out.push_str(&format!(
                "- **{}**: {sentence} ({})\n",
                s.title,
                link("source", &s.url)
            ));
        }
    }

    out.push_str("\n## Analysis\n\n");
    if !instructions.trim().is_empty() {
        out.push_str(&format!("The plan asked: _{}_\n", instructions.trim()));
    }
    for phrase in key_phrases(question) {
        let mut best: Vec<(usize, usize, String, &Source)> = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| best_sentence(&s.snippet, &phrase).map(|(t, n)| (n, i, t, *s)))
            .filter(|(n, ..)| *n > 0)
            .collect();
        best.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        out.push_str(&format!("\n**{}.** ", capitalize(&phrase)));
        if best.is_empty() {
            out.push_str("None of the sources addresses this directly.\n");
            continue;
        }
        let parts: Vec<String> = best
            .iter()
            .take(2)
            .map(|(_, _, t, s)| format!("{t} ({})", link(&s.title, &s.url)))
            .collect();
        out.push_str(&parts.join(" "));
        let others: Vec<String> = best
            .iter()
            .skip(2)
            .take(3)
            .map(|(_, _, _, s)| link(&s.title, &s.url))
            .collect();
        if !others.is_empty() {
            out.push_str(&format!(" See also {}.", join_and(&others)));
        }
        out.push('\n');
    }

    out.push_str("\n## Sources\n\n");
    for (i, s) in sources.iter().enumerate() {
        out.push_str(&format!("{}. {}\n", i + 1, link(&s.title, &s.url)));
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Read XML written by [`steadfast::format_as_xml`] back into JSON: an element whose children are
/// all `<item>`s is an array, other elements with children are objects, and leaves are strings.
/// An element holding only a line break is an empty array (how an empty list is written).
pub fn read_xml(xml: &str) -> Value {
    let mut pos = 0;
    match parse_element(xml, &mut pos) {
        Some((_, v)) => v,
        None => Value::Null,
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn parse_element(xml: &str, pos: &mut usize) -> Option<(String, Value)> {
    let rest = &xml[*pos..];
    let open = rest.find('<')?;
    let close = rest[open..].find('>')? + open;
    let name = rest[open + 1..close].to_string();
    if name.starts_with('/') {
        return None;
    }
    *pos += close + 1;
    let end_tag = format!("</{name}>");
    let mut children: Vec<(String, Value)> = Vec::new();
    let mut text = String::new();
    loop {
        let rest = &xml[*pos..];
        let next = rest.find('<')?;
        text.push_str(&rest[..next]);
        if rest[next..].starts_with(&end_tag) {
            *pos += next + end_tag.len();
            break;
        }
        *pos += next;
        children.push(parse_element(xml, pos)?);
    }
    let value = if children.is_empty() {
        if text.starts_with('\n') && text.trim().is_empty() {
            Value::Array(Vec::new())
        } else {
            Value::String(unescape(&text))
        }
    } else if children.iter().all(|(n, _)| n == "item") {
        Value::Array(children.into_iter().map(|(_, v)| v).collect())
    } else {
        Value::Object(children.into_iter().collect::<Map<String, Value>>())
    };
    Some((name, value))
}

/// The three scripted models, each answering after `pace` (so a person can watch, and kill).
pub fn scripted_models(pace: Duration) -> (FunctionModel, FunctionModel, FunctionModel) {
    let paced = |turn: fn(&[Message], &ModelRequestParams) -> ModelResponse, name: &str| {
        FunctionModel::new_async(move |m, p| async move {
            tokio::time::sleep(pace).await;
            Ok(turn(&m, &p))
        })
        .named(name)
    };
    (
        paced(plan_turn, "scripted-planner"),
        paced(search_turn, "scripted-searcher"),
        paced(analysis_turn, "scripted-analyst"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::research::analysis_prompt;

    #[test]
    fn key_phrases_are_runs_of_content_words() {
        assert_eq!(
            key_phrases(
                "What's the best Rust agent framework to use if I care about durable execution and type safety?"
            ),
            ["rust agent framework", "durable execution", "type safety"]
        );
        assert!(key_phrases("what is the best?").is_empty());
    }

    #[test]
    fn plans_stay_within_the_limit() {
        let p = plan_for(
            "a b c d e f g h i j k l m n o p q r s t u v w x y z aa bb cc dd ee ff gg hh ii jj kk ll",
        );
        assert!(p.web_search_steps.len() <= MAX_SEARCHES);
        let p = plan_for("durable execution");
        assert_eq!(p.web_search_steps.len(), 2);
        let p = plan_for("why?");
        assert_eq!(p.web_search_steps[0].search_terms, "why?");
        crate::plan::check_plan(&p).unwrap();
    }

    #[test]
    fn sentences_split_on_stops_not_on_dots_inside_words() {
        assert_eq!(
            sentences("Use serde_json.to_value here. Then stop! Ok? Last"),
            ["Use serde_json.to_value here.", "Then stop!", "Ok?", "Last"]
        );
    }

    #[test]
    fn the_prompt_xml_reads_back() {
        let findings = vec![
            Findings {
                search_terms: "a & b".into(),
                summary: "line one\nline <two>".into(),
                sources: vec![Source {
                    title: "T".into(),
                    url: "https://x.example.org/t".into(),
                    snippet: "S.".into(),
                }],
            },
            Findings {
                search_terms: "none".into(),
                summary: "nothing".into(),
                sources: vec![],
            },
        ];
        let xml = analysis_prompt("Q?", &findings, "Do it.");
        let v = read_xml(&xml);
        assert_eq!(v["query"], "Q?");
        assert_eq!(v["instructions"], "Do it.");
        let back: Vec<Findings> = serde_json::from_value(v["search_results"].clone()).unwrap();
        assert_eq!(back, findings);
    }
}
