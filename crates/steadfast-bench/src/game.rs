//! The benchmark's twenty-questions game: a questioner agent asks through an `ask_question`
//! tool, whose handler runs a nested answerer agent. The scripted models play exactly like
//! `mockllm.py`: K calls of `ask_question`, then the final text `potato`; the answerer picks one
//! of five answers by a hash of the question.
//!
//! One K-question game is 2K + 1 model requests and K tool calls; durably, that is 3K + 1
//! journaled steps (the answerer's request is a step inside the tool's step).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use steadfast_core::{
    Agent, AgentError, FunctionModel, Message, ModelRef, ModelRequest, ModelResponse, RequestPart,
    ResponsePart, RunResult, Tool, ToolCtx, ToolError, UsageLimits,
};
use steadfast_durable::{Workflow, WorkflowCtx, WorkflowError};

/// The answers, as `mockllm.py` gives them.
pub const ANSWERS: [&str; 5] = ["yes", "kind of", "not really", "no", "completely wrong"];

#[derive(Deserialize, JsonSchema)]
/// Ask the other player a yes/no question about the secret object.
struct AskQuestion {
    /// The question, e.g. "Is it alive?".
    question: String,
}

/// The answerer's instructions.
pub const ANSWERER_INSTRUCTIONS: &str = "You are playing twenty questions. The secret object is \
     a potato. Answer each question with one of: yes, kind of, not really, no, completely wrong.";

/// The answerer: plain text answers.
pub fn answerer(model: ModelRef) -> Result<Agent<(), String>, AgentError> {
    Agent::<(), String>::builder("answerer")
        .model(model)
        .instructions(ANSWERER_INSTRUCTIONS)
        .build()
}

/// The questioner: asks `k` questions through `ask_question`, then names the object.
pub fn questioner(
    model: ModelRef,
    answerer: Agent<(), String>,
    k: u32,
) -> Result<Agent<(), String>, AgentError> {
    let ask = Tool::new("ask_question", move |ctx: ToolCtx<()>, a: AskQuestion| {
        let answerer = answerer.clone();
        async move {
            let r = answerer.run_in(&ctx, a.question, ()).await?;
            Ok::<String, ToolError>(r.output)
        }
    });
    Agent::<(), String>::builder("questioner")
        .model(model)
        .instructions(
            "You are playing twenty questions. Find the secret object by asking yes/no \
             questions with the ask_question tool, one at a time. When you know it, reply with \
             just its name.",
        )
        .tool(ask)
        // The answerer's requests count too: a run's usage includes its tools' nested runs.
        .usage_limits(UsageLimits {
            request_limit: Some(2 * k + 5),
            ..UsageLimits::default()
        })
        .build()
}

/// Tool results in the conversation so far.
pub fn tool_returns(messages: &[Message]) -> u32 {
    messages
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|r| r.parts.iter())
        .filter(|p| matches!(p, RequestPart::ToolReturn { .. }))
        .count() as u32
}

/// The scripted questioner's turn: like `mockllm.py`.
pub fn questioner_turn(messages: &[Message], k: u32) -> ModelResponse {
    let answered = tool_returns(messages);
    if answered >= k {
        return ModelResponse::text("potato");
    }
    let n = answered + 1;
    let args = serde_json::json!({ "question": format!("Question number {n}?") });
    ModelResponse {
        parts: vec![ResponsePart::tool_call(
            "ask_question",
            args.to_string(),
            format!("call_q{n}"),
        )],
        ..ModelResponse::default()
    }
}

/// A stable FNV-1a hash.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The scripted answerer's turn: one of [`ANSWERS`] by a hash of the last user prompt.
pub fn answerer_turn(messages: &[Message]) -> ModelResponse {
    let last_user = messages
        .iter()
        .rev()
        .filter_map(Message::as_request)
        .flat_map(|r| r.parts.iter().rev())
        .find_map(|p| match p {
            RequestPart::UserPrompt { content } => Some(content.as_str()),
            _ => None,
        })
        .unwrap_or("");
    ModelResponse::text(ANSWERS[(fnv(last_user) % ANSWERS.len() as u64) as usize])
}

/// The scripted questioner as a model (no IO).
pub fn scripted_questioner(k: u32) -> ModelRef {
    Arc::new(
        FunctionModel::new(move |m, _| Ok(questioner_turn(m, k))).named(format!("questioner-{k}")),
    )
}

/// The scripted answerer as a model (no IO).
pub fn scripted_answerer() -> ModelRef {
    Arc::new(FunctionModel::new(|m, _| Ok(answerer_turn(m))).named("answerer"))
}

/// Both agents over the scripted models.
pub fn scripted_game(k: u32) -> Result<Agent<(), String>, AgentError> {
    questioner(scripted_questioner(k), answerer(scripted_answerer())?, k)
}

/// How a game ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GameResult {
    /// The questioner's final answer.
    pub guess: String,
    /// Questions asked.
    pub questions: u32,
    /// Model requests of both agents.
    pub requests: u32,
}

impl GameResult {
    fn of(r: &RunResult<String>) -> Self {
        GameResult {
            guess: r.output.clone(),
            questions: r.usage.tool_calls,
            requests: r.usage.requests,
        }
    }

    /// Fail unless the game went as scripted: `k` questions, 2k + 1 requests, `potato`.
    pub fn check(&self, k: u32) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.guess == "potato" && self.questions == k && self.requests == 2 * k + 1,
            "the game did not go as scripted: {self:?} (expected {k} questions, {} requests)",
            2 * k + 1
        );
        Ok(())
    }
}

/// Play a game plainly.
pub async fn play_plain(questioner: &Agent<(), String>) -> Result<GameResult, AgentError> {
    let r = questioner.run("start", ()).await?;
    Ok(GameResult::of(&r))
}

/// Play a game plainly; the result and the questioner's conversation.
pub async fn play_plain_messages(
    questioner: &Agent<(), String>,
) -> Result<(GameResult, Vec<Message>), AgentError> {
    let r = questioner.run("start", ()).await?;
    Ok((GameResult::of(&r), r.messages))
}

/// The answerer's conversation for `question`, as the agent sends it.
pub fn answerer_messages(question: &str) -> Vec<Message> {
    vec![Message::Request(ModelRequest {
        parts: vec![RequestPart::UserPrompt {
            content: question.to_string(),
        }],
        instructions: Some(ANSWERER_INSTRUCTIONS.to_string()),
    })]
}

/// The durable game: every model request and tool call is a journaled step.
pub struct GameWorkflow {
    /// The questioner (its tool runs the answerer).
    pub questioner: Agent<(), String>,
}

impl Workflow for GameWorkflow {
    const NAME: &'static str = "bench_twenty_questions";
    type Input = ();
    type Output = GameResult;

    async fn run(&self, ctx: &WorkflowCtx, _input: ()) -> Result<GameResult, WorkflowError> {
        let r = self.questioner.run_in(ctx, "start", ()).await?;
        Ok(GameResult::of(&r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_scripted_game_goes_as_the_mock_plays_it() {
        let q = scripted_game(5).unwrap();
        let r = play_plain(&q).await.unwrap();
        r.check(5).unwrap();
    }
}
