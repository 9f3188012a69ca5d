//! Ready-made tasks: an agent run per case, recorded with [`crate::scope()`].

use std::future::Future;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use steadfast_core::{Agent, AgentError};

/// A task that runs `agent` on each case's inputs as the prompt, and returns its output. Usage
/// and the trace are recorded.
///
/// ```
/// # use steadfast_core::{Agent, TestModel};
/// # use steadfast_evals::{Case, Dataset, EvaluateOptions, agent_task};
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// let agent = Agent::<(), String>::builder("echo").model(TestModel::new()).build().unwrap();
/// let report = Dataset::<String, String>::new("smoke")
///     .case(Case::new("hello", "hello".to_string()))
///     .evaluate(agent_task(agent), EvaluateOptions::new().progress(false))
///     .await;
/// assert_eq!(report.cases[0].usage.requests, 1);
/// # });
/// ```
pub fn agent_task<I, O>(
    agent: Agent<(), O>,
) -> impl Fn(I) -> std::pin::Pin<Box<dyn Future<Output = Result<O, AgentError>> + Send>>
where
    I: Into<String>,
    O: DeserializeOwned + JsonSchema + Send + 'static,
{
    agent_task_with(agent, |input: I| (input.into(), ()))
}

/// A task that runs `agent` with the prompt and deps `prepare` makes from each case's inputs.
pub fn agent_task_with<I, D, O, P>(
    agent: Agent<D, O>,
    prepare: P,
) -> impl Fn(I) -> std::pin::Pin<Box<dyn Future<Output = Result<O, AgentError>> + Send>>
where
    D: Send + Sync + 'static,
    O: DeserializeOwned + JsonSchema + Send + 'static,
    P: Fn(I) -> (String, D),
{
    move |input: I| {
        let agent = agent.clone();
        let (prompt, deps) = prepare(input);
        Box::pin(async move {
            let scope = crate::scope();
            agent.run_in(&scope, prompt, deps).await.map(|r| r.output)
        })
    }
}
