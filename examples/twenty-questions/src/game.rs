//! The game: two agents, a flaky tool between them, and the durable workflow that runs them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use steadfast::prelude::*;
use steadfast::{ModelChoice, ToolResult};

/// A graded answer to a yes/no question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Answer {
    /// Yes.
    #[serde(rename = "yes")]
    Yes,
    /// Partly.
    #[serde(rename = "kind of")]
    KindOf,
    /// Mostly not.
    #[serde(rename = "not really")]
    NotReally,
    /// No.
    #[serde(rename = "no")]
    No,
    /// Not even close.
    #[serde(rename = "complete wrong")]
    CompleteWrong,
}

/// Worker-local state shared by every game the worker runs: never journaled.
pub struct Shared {
    /// Probability that one call of `ask_question` fails (a simulated unreliable dependency).
    pub failure_rate: f64,
    rng: Mutex<u64>,
    /// Questions shown so far (asked or replayed), for numbering.
    pub shown: AtomicU32,
}

impl Shared {
    /// Shared state with a seeded failure generator.
    pub fn new(failure_rate: f64, seed: u64) -> Self {
        Shared {
            failure_rate,
            rng: Mutex::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            shown: AtomicU32::new(0),
        }
    }

    /// A uniform number in [0, 1) from a xorshift generator.
    fn next_unit(&self) -> f64 {
        let mut s = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The deps of one game: its secret and the worker's shared state.
pub struct Game {
    /// The secret object.
    pub secret: String,
    /// Worker-local state.
    pub shared: Arc<Shared>,
}

#[derive(Deserialize, JsonSchema)]
/// Ask the other player a yes/no question about the secret object.
struct AskQuestion {
    /// The question, e.g. "Is it alive?" or, to guess, "Is it a potato?".
    question: String,
}

/// The answerer: knows the secret, answers with a graded [`Answer`].
pub fn answerer(model: ModelChoice) -> Result<Agent<Game, Answer>, AgentError> {
    Agent::builder("answerer")
        .model(model)
        .instructions(
            "You are playing twenty questions. You know the secret object. Answer each question \
             about it truthfully with one of: yes, kind of, not really, no, complete wrong.",
        )
        .instructions_fn(|g: &Game| format!("THE SECRET OBJECT IS: {}", g.secret))
        .output_retries(3)
        .build()
}

/// The questioner: asks through `ask_question` and ends with its guess.
pub fn questioner(
    model: ModelChoice,
    answerer: Agent<Game, Answer>,
    max_questions: u32,
) -> Result<Agent<Game, String>, AgentError> {
    let ask = Tool::new("ask_question", move |ctx: ToolCtx<Game>, a: AskQuestion| {
        let answerer = answerer.clone();
        async move {
            let shared = ctx.deps.shared.clone();
            if shared.next_unit() < shared.failure_rate {
                println!("    ✗ the answerer did not pick up (simulated failure); retrying");
                return Err(ToolError::failed(
                    "the answerer is unreachable (simulated failure)",
                ));
            }
            let started = std::time::Instant::now();
            let answer = answerer
                .run_in(&ctx, a.question.clone(), ctx.deps.clone())
                .await?
                .output;
            // Durable runs number the question from its step id (`tool__ask_question#6`): right
            // on a resumed run too, whatever the engine replayed.
            let shown = shared.shown.fetch_add(1, Ordering::SeqCst) + 1;
            let n = question_number(&ctx.idempotency_key).unwrap_or(shown);
            println!(
                "{n:>3}. {:<44} → {}   ({})",
                a.question,
                answer_text(answer),
                human(started.elapsed())
            );
            Ok(answer)
        }
    })
    // The failure is retried under this policy; the questioner's model never sees it.
    .retry(RetryPolicy {
        max_attempts: 15,
        initial_interval: Duration::from_millis(20),
        backoff_coefficient: 2.0,
        max_interval: Duration::from_millis(500),
    });
    Agent::builder("questioner")
        .model(model)
        .instructions(format!(
            "You are playing twenty questions. Find the secret object by asking yes/no \
             questions with the ask_question tool, one at a time, at most {max_questions}. Start \
             broad and narrow down. To guess, ask \"Is it [object]?\". When a guess is answered \
             yes, reply with just the name of the object."
        ))
        .tool(ask)
        // Every question costs two requests: the questioner's, and the answerer's inside the
        // tool (nested usage counts against the limit).
        .usage_limits(UsageLimits {
            request_limit: Some(2 * max_questions + 5),
            ..Default::default()
        })
        .build()
}

/// The call number in a durable step id such as `wf/questioner#1/tool__ask_question#6`.
fn question_number(idempotency_key: &str) -> Option<u32> {
    let (_, last) = idempotency_key.rsplit_once("tool__ask_question#")?;
    last.parse().ok()
}

/// The answer as the game says it.
pub fn answer_text(a: Answer) -> &'static str {
    match a {
        Answer::Yes => "yes",
        Answer::KindOf => "kind of",
        Answer::NotReally => "not really",
        Answer::No => "no",
        Answer::CompleteWrong => "complete wrong",
    }
}

/// A duration for people: µs, ms or s.
pub fn human(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// The workflow's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GameInput {
    /// The secret object.
    pub secret: String,
}

/// How a game ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GameOutcome {
    /// The questioner's final answer.
    pub guess: String,
    /// Whether it names the secret.
    pub correct: bool,
    /// Questions asked (guesses included).
    pub questions: u32,
    /// Tokens, requests and cost of both agents.
    pub usage: Usage,
}

/// Whether `guess` names `secret` ("a potato.", "Potato" and "potato" all do).
pub fn is_correct(guess: &str, secret: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim().trim_end_matches(['.', '!', '?']).to_lowercase();
        let s = s.strip_prefix("it is ").unwrap_or(&s).to_string();
        let s = s
            .strip_prefix("a ")
            .or_else(|| s.strip_prefix("an "))
            .unwrap_or(&s)
            .to_string();
        s.strip_prefix("the ").unwrap_or(&s).trim().to_string()
    };
    norm(guess) == norm(secret)
}

/// Play one game plainly (no durability).
pub async fn play(questioner: &Agent<Game, String>, game: Game) -> Result<GameOutcome, AgentError> {
    let secret = game.secret.clone();
    let r = questioner.run("start", game).await?;
    Ok(outcome(&secret, r))
}

fn outcome(secret: &str, r: RunResult<String>) -> GameOutcome {
    GameOutcome {
        correct: is_correct(&r.output, secret),
        guess: r.output,
        questions: r.usage.tool_calls,
        usage: r.usage,
    }
}

/// The durable game: the questioner runs inside the workflow, so every model request and every
/// `ask_question` call (with the answerer's requests inside it) is a journaled step.
pub struct TwentyQuestions {
    /// The questioner agent.
    pub questioner: Agent<Game, String>,
}

impl Workflow for TwentyQuestions {
    const NAME: &'static str = "twenty_questions";
    type Input = GameInput;
    type Output = GameOutcome;

    async fn run(&self, ctx: &WorkflowCtx, input: GameInput) -> Result<GameOutcome, WorkflowError> {
        let game = Game {
            secret: input.secret.clone(),
            shared: ctx.deps::<Shared>()?,
        };
        let r = self.questioner.run_in(ctx, "start", game).await?;
        Ok(outcome(&input.secret, r))
    }
}

/// The question and answer of a journaled `ask_question` step, for showing replays.
pub fn replayed_question(
    input: Option<&serde_json::Value>,
    output: Option<&serde_json::Value>,
) -> Option<(String, String)> {
    let q = input?.get("question")?.as_str()?.to_string();
    let outcome: steadfast::ToolOutcome = serde_json::from_value(output?.clone()).ok()?;
    let a = match outcome.result {
        ToolResult::Return(v) => v.as_str().unwrap_or("?").to_string(),
        ToolResult::Retry(m) => format!("retry: {m}"),
    };
    Some((q, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_are_compared_loosely() {
        assert!(is_correct("A potato.", "potato"));
        assert!(is_correct("It is an apple", "Apple"));
        assert!(!is_correct("carrot", "potato"));
    }

    #[test]
    fn failures_follow_the_rate() {
        let s = Shared::new(0.5, 7);
        let fails = (0..10_000).filter(|_| s.next_unit() < 0.5).count();
        assert!((4_500..5_500).contains(&fails), "{fails}");
    }
}
