//! The built-in workflow `agent` that `steadfast run` starts and `steadfast worker` runs: one
//! agent, `assistant`, answers a prompt with the model its input names. The model is resolved
//! on the worker from its `provider:model` string, so the worker's environment (API keys,
//! `OPENAI_BASE_URL`, ...) applies.

use serde::{Deserialize, Serialize};
use steadfast_core::{Agent, AgentError, ModelChoice, Usage};
use steadfast_durable::{Workflow, WorkflowCtx, WorkflowError};

/// The agent's name: its model requests are the activity `agent__assistant__model_request`.
pub const AGENT: &str = "assistant";

/// The input of the `agent` workflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentInput {
    /// The model, `provider:model` (`openai:gpt-4.1`, `anthropic:claude-haiku-4-5`, ...).
    pub model: String,
    /// Instructions (a system prompt), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The prompt.
    pub prompt: String,
}

/// The output of the `agent` workflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentOutput {
    /// The agent's text output.
    pub output: String,
    /// Tokens, requests and cost of the run.
    pub usage: Usage,
}

/// The agent, with `model` and optional `instructions`.
pub fn assistant(
    model: impl Into<ModelChoice>,
    instructions: Option<&str>,
) -> Result<Agent<(), String>, AgentError> {
    let mut builder = Agent::builder(AGENT).model(model);
    if let Some(i) = instructions {
        builder = builder.instructions(i);
    }
    builder.build()
}

/// The workflow: one run of [`assistant`] on the prompt, each model request a durable step.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentWorkflow;

impl Workflow for AgentWorkflow {
    const NAME: &'static str = "agent";
    type Input = AgentInput;
    type Output = AgentOutput;

    async fn run(
        &self,
        ctx: &WorkflowCtx,
        input: AgentInput,
    ) -> Result<AgentOutput, WorkflowError> {
        let agent = assistant(input.model.as_str(), input.instructions.as_deref())?;
        let r = agent.run_in(ctx, input.prompt, ()).await?;
        Ok(AgentOutput {
            output: r.output,
            usage: r.usage,
        })
    }
}
