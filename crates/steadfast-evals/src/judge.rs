//! `LLMJudge`: a rubric judged by a model, which returns a reason, a pass/fail verdict and a
//! score.

use std::sync::RwLock;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steadfast_core::{Agent, AgentError, ModelChoice, ModelRef, ModelSettings};

use crate::context::EvaluatorContext;
use crate::evaluator::{Evaluator, EvaluatorSpec};
use crate::json::to_json;
use crate::output::{EvalValue, EvaluatorOutput, EvaluatorResult};

/// The judge's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GradingOutput {
    /// Why, in a sentence or two.
    pub reason: String,
    /// Whether the output satisfies the rubric.
    pub pass: bool,
    /// How well it satisfies the rubric, from 0.0 to 1.0.
    pub score: f64,
}

/// How one result of the judge (its verdict or its score) is reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// The result's name (default: `LLMJudge` for the verdict, `LLMJudge_score` for the score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_name: Option<String>,
    /// Attach the judge's reason to the result.
    #[serde(default)]
    pub include_reason: bool,
}

/// The judge model used when an [`LLMJudge`] names none.
const DEFAULT_JUDGE_MODEL: &str = "openai:gpt-4.1";

static DEFAULT_JUDGE: RwLock<Option<ModelChoice>> = RwLock::new(None);

/// Set the model of judges that name none (default `openai:gpt-4.1`).
pub fn set_default_judge_model(model: impl Into<ModelChoice>) {
    let mut g = DEFAULT_JUDGE.write().unwrap_or_else(|e| e.into_inner());
    *g = Some(model.into());
}

fn default_judge_model() -> ModelChoice {
    DEFAULT_JUDGE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(|| ModelChoice::from(DEFAULT_JUDGE_MODEL))
}

fn default_assertion() -> Option<OutputConfig> {
    Some(OutputConfig {
        evaluation_name: None,
        include_reason: true,
    })
}

/// A rubric judged by a model: "the answer is polite", "the summary mentions the price".
///
/// By default it gives an assertion (the verdict, with the judge's reason); set `score` to get
/// the judge's 0–1 score too. The judge sees the output and the rubric, and the inputs and the
/// expected output when asked to.
///
/// ```
/// use steadfast_evals::LLMJudge;
/// let judge = LLMJudge::new("The answer names a vegetable")
///     .model("anthropic:claude-haiku-4-5")
///     .include_input()
///     .with_score();
/// # let _ = judge;
/// ```
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LLMJudge {
    /// What the output must satisfy.
    pub rubric: String,
    /// The judge model, `provider:model` (default: [`set_default_judge_model`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Show the judge the case's inputs.
    #[serde(default)]
    pub include_input: bool,
    /// Show the judge the case's expected output.
    #[serde(default)]
    pub include_expected_output: bool,
    /// Sampling settings of the judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Value>")]
    pub model_settings: Option<ModelSettings>,
    /// Report the score (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<OutputConfig>,
    /// Report the verdict (by default, with the reason). `null` turns it off.
    #[serde(default = "default_assertion")]
    pub assertion: Option<OutputConfig>,
    #[serde(skip)]
    #[schemars(skip)]
    model_value: Option<ModelRef>,
}

impl std::fmt::Debug for LLMJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LLMJudge")
            .field("rubric", &self.rubric)
            .field("model", &self.model)
            .field(
                "model_value",
                &self.model_value.as_ref().map(|m| m.name().to_string()),
            )
            .field("score", &self.score)
            .field("assertion", &self.assertion)
            .finish()
    }
}

impl LLMJudge {
    /// A judge of `rubric` that reports a verdict with its reason.
    pub fn new(rubric: impl Into<String>) -> Self {
        LLMJudge {
            rubric: rubric.into(),
            model: None,
            include_input: false,
            include_expected_output: false,
            model_settings: None,
            score: None,
            assertion: default_assertion(),
            model_value: None,
        }
    }

    /// Judge with the model `provider:model`.
    pub fn model(mut self, spec: impl Into<String>) -> Self {
        self.model = Some(spec.into());
        self
    }

    /// Judge with a model value (a [`steadfast_core::FunctionModel`] in tests, say). It is not
    /// written to dataset files.
    pub fn with_model(mut self, model: ModelRef) -> Self {
        self.model_value = Some(model);
        self
    }

    /// Show the judge the inputs.
    pub fn include_input(mut self) -> Self {
        self.include_input = true;
        self
    }

    /// Show the judge the expected output.
    pub fn include_expected_output(mut self) -> Self {
        self.include_expected_output = true;
        self
    }

    /// Also report the score, with the reason.
    pub fn with_score(mut self) -> Self {
        self.score = Some(OutputConfig {
            evaluation_name: None,
            include_reason: true,
        });
        self
    }

    /// Report only the score, not the verdict.
    pub fn score_only(mut self) -> Self {
        self = self.with_score();
        self.assertion = None;
        self
    }

    /// Name the verdict (and the score `{name}_score`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        let a = self.assertion.get_or_insert_with(OutputConfig::default);
        a.evaluation_name = Some(name);
        self
    }

    /// Sampling settings of the judge.
    pub fn settings(mut self, settings: ModelSettings) -> Self {
        self.model_settings = Some(settings);
        self
    }

    fn model_choice(&self) -> ModelChoice {
        match (&self.model_value, &self.model) {
            (Some(m), _) => ModelChoice::Model(m.clone()),
            (None, Some(spec)) => ModelChoice::from(spec.as_str()),
            (None, None) => default_judge_model(),
        }
    }

    fn base_name(&self) -> String {
        self.assertion
            .as_ref()
            .and_then(|a| a.evaluation_name.clone())
            .unwrap_or_else(|| "LLMJudge".into())
    }

    /// Ask the judge about one output.
    pub async fn grade(
        &self,
        input: Option<&Value>,
        output: &Value,
        expected: Option<&Value>,
    ) -> Result<GradingOutput, AgentError> {
        grade(
            &self.rubric,
            input,
            output,
            expected,
            self.model_choice(),
            self.model_settings.clone(),
        )
        .await
    }
}

const JUDGE_INSTRUCTIONS: &str = "You grade an output against a rubric. The output passes when \
what the rubric says is true of it. Give a short reason first (one or two sentences), then \
`pass`, then a `score` from 0.0 (fails completely) to 1.0 (satisfies the rubric fully). Judge \
only what the rubric asks; do not reward or punish anything else.";

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// The prompt the judge gets.
pub fn judge_prompt(
    rubric: &str,
    input: Option<&Value>,
    output: &Value,
    expected: Option<&Value>,
) -> String {
    let mut p = String::new();
    if let Some(i) = input {
        p.push_str(&format!("<Input>\n{}\n</Input>\n", as_text(i)));
    }
    p.push_str(&format!("<Output>\n{}\n</Output>\n", as_text(output)));
    if let Some(e) = expected {
        p.push_str(&format!(
            "<ExpectedOutput>\n{}\n</ExpectedOutput>\n",
            as_text(e)
        ));
    }
    p.push_str(&format!("<Rubric>\n{rubric}\n</Rubric>"));
    p
}

/// Ask a judge model whether `output` (with `input` and `expected`, when given) satisfies
/// `rubric`.
pub async fn grade(
    rubric: &str,
    input: Option<&Value>,
    output: &Value,
    expected: Option<&Value>,
    model: ModelChoice,
    settings: Option<ModelSettings>,
) -> Result<GradingOutput, AgentError> {
    let mut b = Agent::<(), GradingOutput>::builder("judge")
        .model(model)
        .instructions(JUDGE_INSTRUCTIONS)
        .output_retries(2);
    if let Some(s) = settings {
        b = b.settings(s);
    }
    let agent = b.build()?;
    let prompt = judge_prompt(rubric, input, output, expected);
    Ok(agent.run(prompt, ()).await?.output)
}

/// Judge an output alone (with the default judge model unless `model` is given).
pub async fn judge_output(
    output: &impl Serialize,
    rubric: &str,
    model: Option<ModelChoice>,
) -> Result<GradingOutput, AgentError> {
    grade(
        rubric,
        None,
        &to_json(output),
        None,
        model.unwrap_or_else(default_judge_model),
        None,
    )
    .await
}

/// Judge an output with its input.
pub async fn judge_input_output(
    input: &impl Serialize,
    output: &impl Serialize,
    rubric: &str,
    model: Option<ModelChoice>,
) -> Result<GradingOutput, AgentError> {
    grade(
        rubric,
        Some(&to_json(input)),
        &to_json(output),
        None,
        model.unwrap_or_else(default_judge_model),
        None,
    )
    .await
}

impl<I, O, M> Evaluator<I, O, M> for LLMJudge
where
    I: Serialize + Sync,
    O: Serialize + Sync,
    M: Sync,
{
    fn name(&self) -> String {
        self.base_name()
    }

    fn evaluate<'a>(
        &'a self,
        ctx: &'a EvaluatorContext<I, O, M>,
    ) -> BoxFuture<'a, EvaluatorResult> {
        Box::pin(async move {
            let input = self.include_input.then(|| to_json(&ctx.inputs));
            let expected = if self.include_expected_output {
                ctx.expected_output.as_ref().map(to_json)
            } else {
                None
            };
            let g = self
                .grade(input.as_ref(), &to_json(&ctx.output), expected.as_ref())
                .await?;
            let base = self.base_name();
            let mut out = EvaluatorOutput::new();
            let mut items = Vec::new();
            if let Some(a) = &self.assertion {
                let name = a.evaluation_name.clone().unwrap_or_else(|| base.clone());
                items.push((name, EvalValue::Assertion(g.pass), a.include_reason));
            }
            if let Some(s) = &self.score {
                let name = s
                    .evaluation_name
                    .clone()
                    .unwrap_or_else(|| format!("{base}_score"));
                items.push((name, EvalValue::Score(g.score), s.include_reason));
            }
            for (name, value, with_reason) in items {
                out.push(name, value);
                if with_reason {
                    out = out.with_reason(g.reason.clone());
                }
            }
            Ok(out)
        })
    }

    fn spec(&self) -> EvaluatorSpec {
        EvaluatorSpec::with_args("LLMJudge", self)
    }
}
