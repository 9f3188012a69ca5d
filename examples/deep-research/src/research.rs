//! The three agents, the research pipeline that runs them, and the durable workflow around it.
//!
//! The pipeline is one generic function over [`Scope`]: given the plain driver it calls models and
//! tools directly; given a [`WorkflowCtx`] every model request and tool call becomes a journaled
//! step. There is no `if durable` anywhere in it.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use steadfast::prelude::*;
use steadfast::{ModelChoice, RequestPart, Scope, format_as_xml};

use crate::plan::{DeepResearchPlan, check_plan};
use crate::search::{SearchBackend, SearchHit};

/// How long one step of the analysis agent may take: its model requests write a long report, and
/// its `extra_search` tool runs a whole search agent. The other agents keep the default 60 s.
pub const ANALYSIS_STEP_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Results per search.
pub const MAX_RESULTS: usize = 5;

/// Receives progress lines for people.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// The deps of every agent: worker-local, never journaled (the search client holds the API key).
pub struct Research {
    /// The search engine behind `web_search`.
    pub backend: Arc<dyn SearchBackend>,
    /// Results per search.
    pub max_results: usize,
    /// Where progress lines go, if anywhere.
    pub progress: Option<Progress>,
}

impl Research {
    /// Deps with `backend` and no progress output.
    pub fn new(backend: Arc<dyn SearchBackend>) -> Self {
        Research {
            backend,
            max_results: MAX_RESULTS,
            progress: None,
        }
    }

    fn say(&self, line: &str) {
        if let Some(p) = &self.progress {
            p(line);
        }
    }
}

#[derive(Deserialize, JsonSchema)]
/// Search the web. Returns the best results with their titles, URLs and text.
struct WebSearch {
    /// The search terms.
    query: String,
}

#[derive(Deserialize, JsonSchema)]
/// Run one more web search, done by a search agent, to fill a gap in the results you were given.
/// Returns its summary and its sources.
struct ExtraSearch {
    /// What to search for.
    query: String,
}

/// A source the search agent found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    /// Its title.
    pub title: String,
    /// Its address.
    pub url: String,
    /// Its text, shortened.
    pub snippet: String,
}

/// What one search agent found: its summary, and the sources its searches returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Findings {
    /// The terms searched for.
    pub search_terms: String,
    /// The search agent's summary.
    pub summary: String,
    /// The results of its `web_search` calls, without duplicates.
    #[serde(default)]
    pub sources: Vec<Source>,
}

/// The models of the three agents.
pub struct Models {
    /// Turns the question into a plan.
    pub plan: ModelChoice,
    /// Runs one search and summarizes it.
    pub search: ModelChoice,
    /// Writes the report.
    pub analysis: ModelChoice,
}

/// The three agents.
#[derive(Clone)]
pub struct Agents {
    /// The plan agent.
    pub plan: Agent<Research, DeepResearchPlan>,
    /// The search agent (one run per planned search, in parallel).
    pub search: Agent<Research, String>,
    /// The analysis agent.
    pub analysis: Agent<Research, String>,
}

impl Agents {
    /// Build the agents on `models`.
    pub fn new(models: Models) -> Result<Self, AgentError> {
        let plan = plan_agent(models.plan)?;
        let search = search_agent(models.search)?;
        let analysis = analysis_agent(models.analysis, search.clone())?;
        Ok(Agents {
            plan,
            search,
            analysis,
        })
    }
}

/// The plan agent: structured output, the plan's limits checked by a validator.
pub fn plan_agent(model: ModelChoice) -> Result<Agent<Research, DeepResearchPlan>, AgentError> {
    Agent::builder("plan")
        .model(model)
        .instructions(
            "Analyze the user's query and design a plan for deep research to answer it. Write a \
             short executive summary of the plan, choose up to five web searches (each a few \
             search terms) that together cover the question, and write instructions for the \
             analyst who will read the search results and write the report.",
        )
        .output_validator(|_, plan: &DeepResearchPlan| check_plan(plan))
        .output_retries(2)
        .build()
}

/// The search agent: calls `web_search`, then summarizes what it found, with links.
pub fn search_agent(model: ModelChoice) -> Result<Agent<Research, String>, AgentError> {
    let web_search = Tool::new(
        "web_search",
        |ctx: ToolCtx<Research>, a: WebSearch| async move {
            let hits = ctx
                .deps
                .backend
                .search(&a.query, ctx.deps.max_results)
                .await?;
            Ok(hits)
        },
    );
    Agent::builder("search")
        .model(model)
        .instructions(
            "Perform a web search for the given terms with the web_search tool, then write a \
             concise summary of what the results say. Include the links of the results you \
             use. Do not invent anything the results do not say.",
        )
        .tool(web_search)
        .build()
}

/// The analysis agent: writes the report, and may search more with `extra_search`. Its steps may
/// take an hour each.
pub fn analysis_agent(
    model: ModelChoice,
    search: Agent<Research, String>,
) -> Result<Agent<Research, String>, AgentError> {
    let extra_search = Tool::new(
        "extra_search",
        move |ctx: ToolCtx<Research>, a: ExtraSearch| {
            let search = search.clone();
            async move {
                ctx.deps.say(&format!("Extra search: {}", a.query));
                // Inside a workflow, this nested run's steps are journaled under the tool's step.
                let run = search
                    .run_in(&ctx, a.query.clone(), ctx.deps.clone())
                    .await?;
                Ok(findings_of(&a.query, &run))
            }
        },
    );
    Agent::builder("analysis")
        .model(model)
        .instructions(
            "You are a research analyst. You get a question, the results of web searches planned \
             for it, and instructions. Write a report in Markdown that answers the question: \
             start with a section `## Executive summary`, then the analysis, then a `## Sources` \
             section. Link every source you use, as [title](url). If the results leave a gap, you \
             may call extra_search to search more.",
        )
        .tool(extra_search)
        .step_timeout(ANALYSIS_STEP_TIMEOUT)
        .build()
}

/// The findings of a search run: its summary and the hits of its `web_search` calls.
pub fn findings_of(search_terms: &str, run: &RunResult<String>) -> Findings {
    let mut sources: Vec<Source> = Vec::new();
    for part in run
        .new_messages()
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|r| r.parts.iter())
    {
        if let RequestPart::ToolReturn {
            tool_name, content, ..
        } = part
            && tool_name == "web_search"
            && let Ok(hits) = serde_json::from_value::<Vec<SearchHit>>(content.clone())
        {
            for h in hits {
                if !sources.iter().any(|s| s.url == h.url) {
                    sources.push(Source {
                        title: h.title,
                        url: h.url,
                        snippet: shorten(&h.content, 700),
                    });
                }
            }
        }
    }
    Findings {
        search_terms: search_terms.to_string(),
        summary: run.output.clone(),
        sources,
    }
}

/// `text` cut at a word boundary to at most about `max` characters.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    match cut.rfind(' ') {
        Some(i) => format!("{}…", &cut[..i]),
        None => format!("{cut}…"),
    }
}

/// What the analysis agent reads.
#[derive(Serialize)]
struct AnalysisInput<'a> {
    query: &'a str,
    search_results: &'a [Findings],
    instructions: &'a str,
}

/// The analysis agent's prompt: the question, the findings and the plan's instructions, as XML.
pub fn analysis_prompt(question: &str, findings: &[Findings], instructions: &str) -> String {
    format_as_xml(
        &AnalysisInput {
            query: question,
            search_results: findings,
            instructions,
        },
        "deep_research",
    )
}

/// The workflow's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResearchInput {
    /// The question.
    pub question: String,
}

/// The result of a research run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResearchReport {
    /// The question.
    pub question: String,
    /// The plan.
    pub plan: DeepResearchPlan,
    /// The report, in Markdown.
    pub report: String,
    /// Distinct sources the planned searches found.
    pub sources_found: usize,
    /// Tokens, requests and cost of all agents, nested runs included.
    pub usage: Usage,
}

/// Plan, search in parallel, analyse. The same code runs plainly (`scope` = [`steadfast::PlainDriver`])
/// and durably (`scope` = the [`WorkflowCtx`]).
///
/// Each search agent run takes its step-id namespace (`search#1`, `search#2`, ...) when
/// `run_in` is called, which happens in plan order while the futures are collected; so the ids
/// do not depend on which search finishes first.
pub async fn research<S: Scope + Sync + ?Sized>(
    agents: &Agents,
    scope: &S,
    question: &str,
    deps: Arc<Research>,
) -> Result<ResearchReport, AgentError> {
    let planned = agents.plan.run_in(scope, question, deps.clone()).await?;
    let plan = planned.output;
    let mut usage = planned.usage;
    deps.say(&format!(
        "Plan: {} searches: {}",
        plan.web_search_steps.len(),
        plan.web_search_steps
            .iter()
            .map(|s| format!("“{}”", s.search_terms))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // The fan-out: one search agent per planned search, all at once. (Inside a workflow this is
    // what `ctx.join_all` does; the generic scope keeps one code path for both modes.)
    let runs = futures::future::join_all(plan.web_search_steps.iter().map(|s| {
        agents
            .search
            .run_in(scope, s.search_terms.clone(), deps.clone())
    }))
    .await;
    let mut findings = Vec::with_capacity(runs.len());
    for (step, run) in plan.web_search_steps.iter().zip(runs) {
        let run = run?;
        usage += &run.usage;
        findings.push(findings_of(&step.search_terms, &run));
    }
    let mut urls: Vec<&str> = findings
        .iter()
        .flat_map(|f| f.sources.iter().map(|s| s.url.as_str()))
        .collect();
    urls.sort_unstable();
    urls.dedup();
    let sources_found = urls.len();
    deps.say(&format!(
        "Searches done: {sources_found} distinct sources. Analysis…"
    ));

    let prompt = analysis_prompt(question, &findings, &plan.analysis_instructions);
    let analysed = agents.analysis.run_in(scope, prompt, deps.clone()).await?;
    usage += &analysed.usage;
    Ok(ResearchReport {
        question: question.to_string(),
        plan,
        report: analysed.output,
        sources_found,
        usage,
    })
}

/// The durable workflow: [`research`] inside a [`WorkflowCtx`]. Deps come from the worker.
pub struct DeepResearch {
    /// The agents.
    pub agents: Agents,
}

impl Workflow for DeepResearch {
    const NAME: &'static str = "deep_research";
    type Input = ResearchInput;
    type Output = ResearchReport;

    async fn run(
        &self,
        ctx: &WorkflowCtx,
        input: ResearchInput,
    ) -> Result<ResearchReport, WorkflowError> {
        let deps = ctx.deps::<Research>()?;
        Ok(research(&self.agents, ctx, &input.question, deps).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::scripted_models;

    #[test]
    fn only_the_analysis_agent_gets_the_long_step_timeout() {
        let (p, s, a) = scripted_models(Duration::ZERO);
        let agents = Agents::new(Models {
            plan: p.into(),
            search: s.into(),
            analysis: a.into(),
        })
        .unwrap();
        let minute = Some(Duration::from_secs(60));
        assert_eq!(agents.plan.model_policy().timeout, minute);
        assert_eq!(agents.search.model_policy().timeout, minute);
        assert_eq!(agents.search.tool_policy("web_search").timeout, minute);
        assert_eq!(
            agents.analysis.model_policy().timeout,
            Some(ANALYSIS_STEP_TIMEOUT)
        );
        assert_eq!(
            agents.analysis.tool_policy("extra_search").timeout,
            Some(ANALYSIS_STEP_TIMEOUT)
        );
    }

    #[test]
    fn snippets_are_cut_at_a_word() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("one two three four", 10), "one two…");
    }
}
