//! The plan's limit of five searches: in the schema the model sees, and enforced by sending a plan
//! that breaks it back to the model as a retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deep_research::plan::{DeepResearchPlan, MAX_SEARCHES};
use deep_research::research::{Research, plan_agent};
use deep_research::search::OfflineSearch;
use serde_json::{Value, json};
use steadfast::{
    AgentError, FunctionModel, Message, ModelChoice, ModelResponse, OUTPUT_TOOL_NAME, RequestPart,
};

fn plan_json(steps: usize) -> Value {
    json!({
        "executive_summary": "Look into durable execution.",
        "web_search_steps": (1..=steps).map(|i| json!({"search_terms": format!("topic {i}")})).collect::<Vec<_>>(),
        "analysis_instructions": "Compare."
    })
}

fn retry_prompts(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|r| r.parts.iter())
        .filter_map(|p| match p {
            RequestPart::RetryPrompt { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect()
}

fn deps() -> Arc<Research> {
    Arc::new(Research::new(Arc::new(OfflineSearch::new())))
}

#[test]
fn the_limit_and_the_doc_comments_are_in_the_schema() {
    let agent = plan_agent(ModelChoice::from(FunctionModel::new(|_, _| {
        Ok(ModelResponse::text("unused"))
    })))
    .unwrap();
    let params = agent.request_params();
    let tool = params.output_tools.first().expect("tool output mode");
    assert_eq!(tool.name, OUTPUT_TOOL_NAME);
    let props = &tool.parameters["properties"];
    let steps = &props["web_search_steps"];
    assert_eq!(steps["maxItems"], MAX_SEARCHES as u64, "{steps}");
    assert_eq!(steps["minItems"], 1, "{steps}");
    assert!(
        steps["description"]
            .as_str()
            .unwrap()
            .contains("at most five")
    );
    assert!(
        props["executive_summary"]["description"]
            .as_str()
            .unwrap()
            .contains("summary")
    );
    assert!(
        steps["items"]["properties"]["search_terms"]["description"]
            .as_str()
            .unwrap()
            .contains("search box")
    );
    // The type's doc comment describes the output tool.
    assert!(
        tool.description
            .as_deref()
            .unwrap()
            .contains("plan for deep research")
    );
}

#[tokio::test]
async fn a_six_step_plan_goes_back_to_the_model_as_a_retry() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen_retry = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, r) = (calls.clone(), seen_retry.clone());
    let model = FunctionModel::new(move |messages, _| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        r.lock().unwrap().extend(retry_prompts(messages));
        let steps = if n == 0 { 6 } else { 5 };
        Ok(ModelResponse::tool_call(OUTPUT_TOOL_NAME, plan_json(steps)))
    });
    let agent = plan_agent(ModelChoice::from(model)).unwrap();
    let result = agent
        .run("How do durable agents work?", deps())
        .await
        .unwrap();
    let plan: DeepResearchPlan = result.output;
    assert_eq!(plan.web_search_steps.len(), 5);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let retries = seen_retry.lock().unwrap();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert!(
        retries[0].contains("has 6 items") && retries[0].contains("at most 5"),
        "{}",
        retries[0]
    );
}

#[tokio::test]
async fn a_model_that_keeps_planning_too_much_fails_after_its_retries() {
    let model =
        FunctionModel::new(|_, _| Ok(ModelResponse::tool_call(OUTPUT_TOOL_NAME, plan_json(6))));
    let agent = plan_agent(ModelChoice::from(model)).unwrap();
    match agent.run("Q?", deps()).await {
        Err(AgentError::OutputRetriesExceeded { last_error, .. }) => {
            assert!(last_error.contains("at most 5"), "{last_error}")
        }
        other => panic!(
            "expected OutputRetriesExceeded, got {:?}",
            other.map(|r| r.output)
        ),
    }
}

#[tokio::test]
async fn the_offline_planner_plans_for_the_question() {
    let (planner, _, _) = deep_research::offline::scripted_models(std::time::Duration::ZERO);
    let agent = plan_agent(ModelChoice::from(planner)).unwrap();
    let plan = agent
        .run("What's the best Rust agent framework to use if I care about durable execution and type safety?", deps())
        .await
        .unwrap()
        .output;
    let terms: Vec<&str> = plan
        .web_search_steps
        .iter()
        .map(|s| s.search_terms.as_str())
        .collect();
    assert_eq!(
        terms,
        [
            "rust agent framework",
            "durable execution",
            "type safety",
            "rust agent framework durable execution"
        ]
    );
}
