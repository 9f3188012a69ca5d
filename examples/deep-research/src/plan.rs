//! The plan agent's structured output.
//!
//! Doc comments become descriptions in the JSON Schema the model sees, and the limit of
//! [`MAX_SEARCHES`] steps is in the schema (`maxItems`) and is checked again by
//! [`check_plan`], because a model may ignore the schema: a plan that breaks it goes back to the
//! model as a retry.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use steadfast::ToolError;

/// The most web searches a plan may ask for.
pub const MAX_SEARCHES: usize = 5;

/// One web search of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WebSearchStep {
    /// The terms to search the web for: a few words, as you would type them into a search box.
    pub search_terms: String,
}

/// A plan for deep research: what to look for and how to analyse what is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeepResearchPlan {
    /// A summary of the research plan, for the person who asked: what will be looked into and
    /// why.
    pub executive_summary: String,
    /// The web searches to run, in parallel; at least one and at most five.
    #[schemars(length(min = 1, max = 5))]
    pub web_search_steps: Vec<WebSearchStep>,
    /// Instructions for the analysis agent: what to compare, what to conclude, how to structure
    /// the report.
    pub analysis_instructions: String,
}

/// The output validator of the plan agent: the schema's limits, enforced.
pub fn check_plan(plan: &DeepResearchPlan) -> Result<(), ToolError> {
    let n = plan.web_search_steps.len();
    if n > MAX_SEARCHES {
        return Err(ToolError::retry(format!(
            "web_search_steps has {n} items; a plan may have at most {MAX_SEARCHES}. Merge or drop \
             the least useful searches."
        )));
    }
    if n == 0 {
        return Err(ToolError::retry(
            "web_search_steps is empty; plan at least one search.",
        ));
    }
    if let Some(i) = plan
        .web_search_steps
        .iter()
        .position(|s| s.search_terms.trim().is_empty())
    {
        return Err(ToolError::retry(format!(
            "web_search_steps[{i}].search_terms is empty."
        )));
    }
    Ok(())
}
