//! What evaluators return: assertions (pass/fail), scores (numbers) and labels (strings),
//! each with an optional reason.

use serde::{Deserialize, Serialize};

/// A boxed error, so that evaluators and tasks can use `?` on any error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One value an evaluator produced. Its kind decides the report column it goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum EvalValue {
    /// Pass or fail, shown as ✔ or ✗.
    Assertion(bool),
    /// A number, averaged over the cases.
    Score(f64),
    /// A category, counted over the cases.
    Label(String),
}

impl From<bool> for EvalValue {
    fn from(v: bool) -> Self {
        EvalValue::Assertion(v)
    }
}

impl From<String> for EvalValue {
    fn from(v: String) -> Self {
        EvalValue::Label(v)
    }
}

impl From<&str> for EvalValue {
    fn from(v: &str) -> Self {
        EvalValue::Label(v.to_string())
    }
}

macro_rules! score_from {
    ($($t:ty),*) => {$(
        impl From<$t> for EvalValue {
            fn from(v: $t) -> Self {
                EvalValue::Score(v as f64)
            }
        }
        impl From<$t> for EvaluatorOutput {
            fn from(v: $t) -> Self {
                EvaluatorOutput::single(EvalValue::Score(v as f64), None)
            }
        }
    )*};
}
score_from!(f64, f32, i32, i64, u32, u64, usize);

/// A value with the reason for it (the `EvaluationReason` of pydantic-evals).
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationReason {
    /// The value.
    pub value: EvalValue,
    /// Why.
    pub reason: Option<String>,
}

impl EvaluationReason {
    /// A value with a reason.
    pub fn new(value: impl Into<EvalValue>, reason: impl Into<String>) -> Self {
        EvaluationReason {
            value: value.into(),
            reason: Some(reason.into()),
        }
    }
}

/// One named result, as stored in a report. `T` is `bool` for assertions, `f64` for scores and
/// `String` for labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationResult<T> {
    /// The name of the result (the column).
    pub name: String,
    /// The value.
    pub value: T,
    /// Why, when the evaluator said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The evaluator that produced it.
    pub source: String,
}

/// One item of an [`EvaluatorOutput`]: an optional name (the evaluator's name when absent), a
/// value and an optional reason.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputItem {
    /// The name; `None` takes the evaluator's name.
    pub name: Option<String>,
    /// The value.
    pub value: EvalValue,
    /// Why.
    pub reason: Option<String>,
}

/// What one evaluator returns: one or several named values.
///
/// A `bool`, a number, a string or an [`EvaluationReason`] converts into a single value named
/// after the evaluator; the builder methods add several named ones:
///
/// ```
/// use steadfast_evals::EvaluatorOutput;
/// let out = EvaluatorOutput::new()
///     .assertion("correct", true)
///     .with_reason("the guess names the secret")
///     .score("questions", 7.0)
///     .label("strategy", "binary search");
/// assert_eq!(out.items().len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvaluatorOutput {
    items: Vec<OutputItem>,
}

impl EvaluatorOutput {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// One value named after the evaluator.
    pub fn single(value: EvalValue, reason: Option<String>) -> Self {
        EvaluatorOutput {
            items: vec![OutputItem {
                name: None,
                value,
                reason,
            }],
        }
    }

    /// Add a named value.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<EvalValue>) {
        self.items.push(OutputItem {
            name: Some(name.into()),
            value: value.into(),
            reason: None,
        });
    }

    /// Add a named assertion.
    pub fn assertion(mut self, name: impl Into<String>, pass: bool) -> Self {
        self.push(name, EvalValue::Assertion(pass));
        self
    }

    /// Add a named score.
    pub fn score(mut self, name: impl Into<String>, value: f64) -> Self {
        self.push(name, EvalValue::Score(value));
        self
    }

    /// Add a named label.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.push(name, EvalValue::Label(value.into()));
        self
    }

    /// Set the reason of the value added last.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        if let Some(last) = self.items.last_mut() {
            last.reason = Some(reason.into());
        }
        self
    }

    /// The values.
    pub fn items(&self) -> &[OutputItem] {
        &self.items
    }

    pub(crate) fn into_items(self) -> Vec<OutputItem> {
        self.items
    }
}

impl From<EvalValue> for EvaluatorOutput {
    fn from(v: EvalValue) -> Self {
        EvaluatorOutput::single(v, None)
    }
}

impl From<bool> for EvaluatorOutput {
    fn from(v: bool) -> Self {
        EvaluatorOutput::single(EvalValue::Assertion(v), None)
    }
}

impl From<String> for EvaluatorOutput {
    fn from(v: String) -> Self {
        EvaluatorOutput::single(EvalValue::Label(v), None)
    }
}

impl From<&str> for EvaluatorOutput {
    fn from(v: &str) -> Self {
        EvaluatorOutput::single(EvalValue::Label(v.to_string()), None)
    }
}

impl From<EvaluationReason> for EvaluatorOutput {
    fn from(v: EvaluationReason) -> Self {
        EvaluatorOutput::single(v.value, v.reason)
    }
}

impl<K: Into<String>, V: Into<EvalValue>> FromIterator<(K, V)> for EvaluatorOutput {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut out = EvaluatorOutput::new();
        for (k, v) in iter {
            out.push(k, v);
        }
        out
    }
}

impl<K: Into<String>, V: Into<EvalValue>> From<Vec<(K, V)>> for EvaluatorOutput {
    fn from(v: Vec<(K, V)>) -> Self {
        v.into_iter().collect()
    }
}

impl<K: Into<String>, V: Into<EvalValue>> From<std::collections::BTreeMap<K, V>>
    for EvaluatorOutput
{
    fn from(v: std::collections::BTreeMap<K, V>) -> Self {
        v.into_iter().collect()
    }
}

/// What an evaluator's `evaluate` returns.
pub type EvaluatorResult = Result<EvaluatorOutput, BoxError>;

/// Anything a closure evaluator may return: a value, an [`EvaluatorOutput`], or a `Result` of
/// either.
pub trait IntoEvaluatorResult {
    /// The result.
    fn into_evaluator_result(self) -> EvaluatorResult;
}

impl<T: Into<EvaluatorOutput>> IntoEvaluatorResult for T {
    fn into_evaluator_result(self) -> EvaluatorResult {
        Ok(self.into())
    }
}

impl<T: Into<EvaluatorOutput>, E: Into<BoxError>> IntoEvaluatorResult for Result<T, E> {
    fn into_evaluator_result(self) -> EvaluatorResult {
        self.map(Into::into).map_err(Into::into)
    }
}
