//! `twenty-questions eval`: the game's questioner, evaluated on six secrets (Potato, Man, Woman,
//! Child, Bicycle, House) and compared across models.
//!
//! Offline it compares three scripted questioners: `binary-search` (asks the question that splits
//! the remaining objects most evenly), `naive` (asks "Is it a potato?", "Is it a carrot?", ... in
//! turn) and `cheater` (asks a few questions, then announces a guess it never checked). With API
//! keys, pass models instead: `--models openai:gpt-4.1,anthropic:claude-sonnet-4-5`.
//!
//! The evaluators: `QuestionCount` (a score: `ask_question` calls in the run's trace),
//! `CorrectGuess` (an assertion: the final answer names the secret) and `GuessConfirmed` (an
//! assertion: the answerer said "yes" to that guess). Fewer questions look better, which is how a
//! questioner that invents its answer "wins" until `CorrectGuess` checks the answer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use steadfast::prelude::*;
use steadfast::{FunctionModel, ModelChoice, ModelResponse, ResponsePart};
use steadfast_evals::{
    Case, Dataset, EvaluateOptions, EvaluationReason, EvaluationReport, Evaluator,
    EvaluatorContext, EvaluatorResult, RenderOptions, render_comparison,
};

use crate::game::{self, Game, GameOutcome, Shared};
use crate::knowledge::{self, guess_question, positive, transcript};

/// The secrets of the talk's eval.
pub const SECRETS: [&str; 6] = ["Potato", "Man", "Woman", "Child", "Bicycle", "House"];

/// The scripted (offline) questioners.
pub const SCRIPTED: [&str; 3] = ["binary-search", "naive", "cheater"];

/// Compare questioners on the six secrets.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Questioners to compare, comma-separated: the scripted `binary-search`, `naive` and
    /// `cheater`, or models as `provider:model`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "binary-search,naive,cheater"
    )]
    pub models: Vec<String>,
    /// The answerer's model (default: the scripted answerer when every questioner is scripted,
    /// else a model chosen from the API keys that are set).
    #[arg(long)]
    pub answerer_model: Option<String>,
    /// Games per secret and questioner.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Games played at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// A saved report to diff each questioner against.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Save the reports as JSON (`FILE` for one questioner, `FILE-<questioner>.json` for several).
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// The most questions a questioner may ask.
    #[arg(long, default_value_t = 20)]
    pub max_questions: u32,
    /// Probability that one `ask_question` call fails (retried under its policy).
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Thinking time of the scripted players per turn, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub pace: u64,
    /// Hide durations (stable output).
    #[arg(long)]
    pub no_durations: bool,
    /// Show each game's outcome (the guess).
    #[arg(long)]
    pub include_output: bool,
}

impl Default for EvalArgs {
    fn default() -> Self {
        EvalArgs {
            models: SCRIPTED.iter().map(|s| s.to_string()).collect(),
            answerer_model: None,
            repeat: 1,
            concurrency: 1,
            baseline: None,
            save: None,
            max_questions: 20,
            failure_rate: 0.0,
            pace: 0,
            no_durations: false,
            include_output: false,
        }
    }
}

/// Passes when the final answer names the secret. A questioner that invents its answer fails it.
pub struct CorrectGuess;

impl Evaluator<String, GameOutcome> for CorrectGuess {
    fn evaluate_sync(&self, ctx: &EvaluatorContext<String, GameOutcome>) -> EvaluatorResult {
        let guess = ctx.output.guess.trim();
        let right = game::is_correct(guess, &ctx.inputs);
        let why = match ctx.attributes.get("gave_up").and_then(|v| v.as_str()) {
            Some(limit) => format!("gave up ({limit}); the secret was {}", ctx.inputs),
            None => format!("guessed {guess:?}; the secret was {}", ctx.inputs),
        };
        Ok(EvaluationReason::new(right, why).into())
    }
}

/// The questions asked: the `ask_question` calls in the run's trace (what happened, not what the
/// questioner says happened).
pub struct QuestionCount;

impl Evaluator<String, GameOutcome> for QuestionCount {
    fn evaluate_sync(&self, ctx: &EvaluatorContext<String, GameOutcome>) -> EvaluatorResult {
        Ok((ctx.trace.tool_calls("ask_question").count() as f64).into())
    }
}

/// Passes when the answerer said "yes" to a question naming the final guess: the guess was
/// checked, not just announced.
pub struct GuessConfirmed;

impl Evaluator<String, GameOutcome> for GuessConfirmed {
    fn evaluate_sync(&self, ctx: &EvaluatorContext<String, GameOutcome>) -> EvaluatorResult {
        let guess = ctx
            .output
            .guess
            .trim()
            .trim_end_matches(['.', '!'])
            .to_lowercase();
        if guess.is_empty() {
            return Ok(EvaluationReason::new(false, "no guess").into());
        }
        let confirmed = ctx.trace.tool_calls("ask_question").any(|s| {
            let q = s
                .attributes
                .get("args")
                .and_then(|a| a.get("question"))
                .and_then(|q| q.as_str());
            let yes = s.attributes.get("result").and_then(|r| r.as_str()) == Some("yes");
            yes && q.is_some_and(|q| q.to_lowercase().contains(&guess))
        });
        Ok(if confirmed {
            true.into()
        } else {
            EvaluationReason::new(false, format!("nobody said yes to {guess:?}")).into()
        })
    }
}

/// The dataset: one case per secret, judged by the three evaluators.
pub fn dataset() -> Dataset<String, GameOutcome> {
    let mut ds = Dataset::new("twenty questions")
        .evaluator(QuestionCount)
        .evaluator(CorrectGuess)
        .evaluator(GuessConfirmed);
    for s in SECRETS {
        ds.add_case(Case::new(s, s.to_string()));
    }
    ds
}

fn ask(question: String, n: usize) -> ModelResponse {
    ModelResponse {
        parts: vec![ResponsePart::tool_call(
            "ask_question",
            json!({ "question": question }).to_string(),
            format!("q{n}"),
        )],
        ..Default::default()
    }
}

/// The naive questioner: guesses every object it knows, in turn, until one is right.
pub fn naive_turn(messages: &[Message]) -> ModelResponse {
    let qa = transcript(messages);
    let objects: Vec<&str> = knowledge::known_objects().collect();
    if let Some((_, a)) = qa.last()
        && a == "yes"
    {
        return ModelResponse::text(objects[qa.len() - 1]);
    }
    match objects.get(qa.len()) {
        Some(next) => ask(guess_question(next), qa.len() + 1),
        None => ModelResponse::text("I give up"),
    }
}

/// The cheating questioner: asks like the binary-search one, but once three or fewer objects
/// are left it announces the first of them as the answer without asking.
pub fn cheater_turn(messages: &[Message]) -> ModelResponse {
    let qa = transcript(messages);
    let candidates: Vec<&str> = knowledge::known_objects()
        .filter(|o| {
            qa.iter()
                .all(|(q, a)| positive(knowledge::answer(o, q)) == positive(a))
        })
        .collect();
    if candidates.len() <= 3
        && let Some(first) = candidates.first()
    {
        return ModelResponse::text(*first);
    }
    knowledge::questioner_turn(messages)
}

fn scripted(name: &str, turn: fn(&[Message]) -> ModelResponse, pace: Duration) -> ModelChoice {
    ModelChoice::from(
        FunctionModel::new_async(move |m, _| async move {
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
            Ok(turn(&m))
        })
        .named(name),
    )
}

fn has_env(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
}

/// The questioner model a `--models` entry names.
fn questioner_model(name: &str, pace: Duration) -> ModelChoice {
    match name {
        "binary-search" => scripted(name, knowledge::questioner_turn, pace),
        "naive" => scripted(name, naive_turn, pace),
        "cheater" => scripted(name, cheater_turn, pace),
        spec => ModelChoice::from(spec),
    }
}

/// The answerer: the flag, else scripted for scripted questioners, else from the API keys.
fn answerer_model(args: &EvalArgs) -> Result<(ModelChoice, String)> {
    let pace = Duration::from_millis(args.pace);
    if let Some(m) = &args.answerer_model {
        return Ok((ModelChoice::from(m.as_str()), m.clone()));
    }
    if args.models.iter().all(|m| SCRIPTED.contains(&m.as_str())) {
        return Ok((
            scripted("scripted-answerer", knowledge::answerer_turn, pace),
            "scripted answerer".into(),
        ));
    }
    let from_keys = if has_env("ANTHROPIC_API_KEY") {
        "anthropic:claude-haiku-4-5"
    } else if has_env("OPENAI_API_KEY") {
        "openai:gpt-4.1-mini"
    } else if has_env("GEMINI_API_KEY") || has_env("GOOGLE_API_KEY") {
        "google:gemini-2.5-flash"
    } else {
        bail!(
            "a model questioner needs a model answerer (the scripted one only understands the scripted \
             questions): set an API key or pass --answerer-model provider:model"
        );
    };
    Ok((ModelChoice::from(from_keys), from_keys.to_string()))
}

/// Play the dataset once per questioner and return one report per questioner.
pub async fn compare(args: &EvalArgs) -> Result<Vec<EvaluationReport>> {
    steadfast::install_providers();
    let (answerer_choice, answerer_name) = answerer_model(args)?;
    let answerer = game::answerer(answerer_choice)?;
    let dataset = dataset();
    let mut reports = Vec::new();
    for name in &args.models {
        println!("▶ {name} asks, the {answerer_name} answers");
        let questioner = game::questioner(
            questioner_model(name, Duration::from_millis(args.pace)),
            answerer.clone(),
            args.max_questions,
        )
        .with_context(|| format!("building the questioner for {name}"))?;
        let (failure_rate, max_questions) = (args.failure_rate, args.max_questions);
        let options = EvaluateOptions::new()
            .name(name.clone())
            .metadata("questioner", name)
            .metadata("answerer", &answerer_name)
            .repeat(args.repeat)
            .max_concurrency(args.concurrency)
            // The games print their questions; a progress bar would only garble them.
            .progress(false);
        let report = dataset
            .evaluate(
                |secret: String| {
                    let questioner = questioner.clone();
                    async move {
                        println!("── {secret}");
                        play(&questioner, secret, failure_rate, max_questions).await
                    }
                },
                options,
            )
            .await;
        reports.push(report);
    }
    Ok(reports)
}

/// One game, recorded for the evaluation. A questioner that runs out of requests loses the game
/// (as in the talk's eval) instead of failing the case.
async fn play(
    questioner: &Agent<Game, String>,
    secret: String,
    failure_rate: f64,
    max_questions: u32,
) -> Result<GameOutcome, AgentError> {
    let game = Game {
        secret: secret.clone(),
        shared: Arc::new(Shared::new(failure_rate, 42)),
    };
    let scope = steadfast_evals::scope();
    match questioner.run_in(&scope, "start", game).await {
        Ok(r) => Ok(GameOutcome {
            correct: game::is_correct(&r.output, &secret),
            guess: r.output,
            questions: r.usage.tool_calls,
            usage: r.usage,
        }),
        Err(AgentError::UsageLimitExceeded(why)) => {
            steadfast_evals::set_attribute("gave_up", &why);
            Ok(GameOutcome {
                guess: String::new(),
                correct: false,
                questions: max_questions,
                usage: Usage::default(),
            })
        }
        Err(e) => Err(e),
    }
}

/// The lesson, when the data shows it: the questioner with the fewest questions is wrong.
pub fn lesson(reports: &[EvaluationReport]) -> Option<String> {
    if reports.len() < 2 {
        return None;
    }
    let averages: Vec<(&str, f64, f64)> = reports
        .iter()
        .filter_map(|r| {
            let a = r.averages()?;
            Some((
                r.name.as_str(),
                *a.scores.get("QuestionCount")?,
                *a.assertions.get("CorrectGuess")?,
            ))
        })
        .collect();
    let (name, questions, correct) = averages.iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
    if *correct >= 1.0 {
        return None;
    }
    let wrong = reports
        .iter()
        .find(|r| r.name == *name)
        .map(|r| {
            r.cases
                .iter()
                .filter(|c| c.assertion("CorrectGuess") == Some(false))
                .count()
        })
        .unwrap_or(0);
    Some(format!(
        "{name} asks the fewest questions ({questions:.1} a game) but its answer is wrong in {wrong} of \
         {} games: judged by question count alone it would win; CorrectGuess catches it.",
        reports
            .iter()
            .find(|r| r.name == *name)
            .map(|r| r.cases.len())
            .unwrap_or(0)
    ))
}

/// The render options the flags ask for.
pub fn render_options(args: &EvalArgs) -> RenderOptions {
    RenderOptions {
        include_durations: !args.no_durations,
        include_output: args.include_output,
        ..Default::default()
    }
}

/// `twenty-questions eval`.
pub async fn run(args: &EvalArgs) -> Result<()> {
    let baseline = match &args.baseline {
        Some(p) => Some(EvaluationReport::load(p)?),
        None => None,
    };
    let reports = compare(args).await?;
    let opts = render_options(args);
    println!();
    for r in &reports {
        println!("{}", r.render(&opts));
        if let Some(b) = &baseline {
            println!("{}", r.render_diff(b, &opts));
        }
    }
    if reports.len() > 1 {
        let refs: Vec<&EvaluationReport> = reports.iter().collect();
        println!("{}", render_comparison(&refs, &opts));
    }
    if let Some(l) = lesson(&reports) {
        println!("{l}\n");
    }
    if let Some(save) = &args.save {
        for r in &reports {
            let p = if reports.len() == 1 {
                save.clone()
            } else {
                steadfast_evals::cli::save_path(save, &r.name)
            };
            r.save(&p)?;
            println!("Saved {}", p.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn offline_comparison_catches_the_cheater() {
        let args = EvalArgs {
            no_durations: true,
            ..Default::default()
        };
        let reports = compare(&args).await.unwrap();
        let opts = render_options(&args);
        let tables: Vec<String> = reports.iter().map(|r| r.render(&opts)).collect();
        let refs: Vec<&EvaluationReport> = reports.iter().collect();
        let comparison = render_comparison(&refs, &opts);
        let expected_binary = "                        Evaluation Summary: binary-search
┏━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━┓
┃ Case ID  ┃ QuestionCount ┃ CorrectGuess ┃ GuessConfirmed ┃ Requests ┃ Tokens  ┃
┡━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━┩
│ Potato   │             6 │      ✔       │       ✔        │       13 │   1,986 │
│ Man      │             6 │      ✔       │       ✔        │       13 │   1,978 │
│ Woman    │             5 │      ✔       │       ✔        │       11 │   1,500 │
│ Child    │             6 │      ✔       │       ✔        │       13 │   1,978 │
│ Bicycle  │             5 │      ✔       │       ✔        │       11 │   1,515 │
│ House    │             5 │      ✔       │       ✔        │       11 │   1,514 │
├──────────┼───────────────┼──────────────┼────────────────┼──────────┼─────────┤
│ Averages │          5.50 │     100%     │      100%      │       12 │ 1,745.2 │
└──────────┴───────────────┴──────────────┴────────────────┴──────────┴─────────┘
";
        assert_eq!(tables[0], expected_binary, "\n{}", tables[0]);
        let expected_cheater = "                          Evaluation Summary: cheater
┏━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┓
┃ Case ID  ┃ QuestionCount ┃ CorrectGuess ┃ GuessConfirmed ┃ Requests ┃ Tokens ┃
┡━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━┩
│ Potato   │             4 │      ✔       │       ✗        │        9 │  1,087 │
│ Man      │             3 │      ✔       │       ✗        │        7 │    735 │
│ Woman    │             3 │      ✗       │       ✗        │        7 │    735 │
│ Child    │             3 │      ✗       │       ✗        │        7 │    735 │
│ Bicycle  │             3 │      ✔       │       ✗        │        7 │    742 │
│ House    │             3 │      ✔       │       ✗        │        7 │    739 │
├──────────┼───────────────┼──────────────┼────────────────┼──────────┼────────┤
│ Averages │          3.17 │     67%      │       0%       │      7.3 │  795.5 │
└──────────┴───────────────┴──────────────┴────────────────┴──────────┴────────┘
";
        assert_eq!(tables[2], expected_cheater, "\n{}", tables[2]);
        let expected_comparison = "                                Comparison (averages per case)
┏━━━━━━━━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━┓
┃ Experiment    ┃ Cases ┃ QuestionCount ┃ CorrectGuess ┃ GuessConfirmed ┃ Requests ┃ Tokens  ┃
┡━━━━━━━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━┩
│ binary-search │   6/6 │          5.50 │     100%     │      100%      │       12 │ 1,745.2 │
│ naive         │   6/6 │         11.33 │     100%     │      100%      │     23.7 │   6,485 │
│ cheater       │   6/6 │          3.17 │     67%      │       0%       │      7.3 │   795.5 │
└───────────────┴───────┴───────────────┴──────────────┴────────────────┴──────────┴─────────┘
";
        assert_eq!(comparison, expected_comparison, "\n{comparison}");
        assert!(
            lesson(&reports)
                .unwrap()
                .starts_with("cheater asks the fewest questions")
        );
    }

    #[test]
    fn the_scripted_strategies_play_as_described() {
        // The naive questioner asks about each object in turn.
        let first = naive_turn(&[Message::Request(steadfast::ModelRequest::user("start"))]);
        assert_eq!(
            first.tool_calls().next().unwrap().args_object()["question"],
            json!("Is it a potato?")
        );
        assert_eq!(guess_question("apple"), "Is it an apple?");
    }
}
