//! The built-in evaluators. All compare through JSON, so they work on any serializable output,
//! and all can be written in dataset files.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::EvaluatorContext;
use crate::evaluator::{Evaluator, EvaluatorSpec};
use crate::json::{json_eq, text, to_json, type_name};
use crate::output::{EvalValue, EvaluationReason, EvaluatorOutput, EvaluatorResult};
use crate::trace::SpanQuery;

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// Passes when the output equals the case's expected output (compared as JSON, so `1` equals
/// `1.0`). Gives no result for cases without an expected output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EqualsExpected {
    /// The name of the result (default `EqualsExpected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_name: Option<String>,
}

impl<I, O: Serialize, M> Evaluator<I, O, M> for EqualsExpected {
    fn name(&self) -> String {
        self.evaluation_name
            .clone()
            .unwrap_or_else(|| "EqualsExpected".into())
    }

    fn evaluate_sync(&self, ctx: &EvaluatorContext<I, O, M>) -> EvaluatorResult {
        let Some(expected) = &ctx.expected_output else {
            return Ok(EvaluatorOutput::new());
        };
        let (out, exp) = (to_json(&ctx.output), to_json(expected));
        if json_eq(&out, &exp) {
            Ok(true.into())
        } else {
            let why = format!(
                "expected {}, got {}",
                truncate(&text(&exp), 60),
                truncate(&text(&out), 60)
            );
            Ok(EvaluationReason::new(false, why).into())
        }
    }

    fn spec(&self) -> EvaluatorSpec {
        EvaluatorSpec::with_args("EqualsExpected", self)
    }
}

/// Passes when the output equals `value` (compared as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Equals {
    /// The value the output must equal.
    pub value: Value,
    /// The name of the result (default `Equals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_name: Option<String>,
}

impl Equals {
    /// Passes when the output equals `value`.
    pub fn new(value: impl Serialize) -> Self {
        Equals {
            value: to_json(&value),
            evaluation_name: None,
        }
    }
}

impl<I, O: Serialize, M> Evaluator<I, O, M> for Equals {
    fn name(&self) -> String {
        self.evaluation_name
            .clone()
            .unwrap_or_else(|| "Equals".into())
    }

    fn evaluate_sync(&self, ctx: &EvaluatorContext<I, O, M>) -> EvaluatorResult {
        let out = to_json(&ctx.output);
        Ok(if json_eq(&out, &self.value) {
            true.into()
        } else {
            EvaluationReason::new(
                false,
                format!(
                    "expected {}, got {}",
                    truncate(&text(&self.value), 60),
                    truncate(&text(&out), 60)
                ),
            )
            .into()
        })
    }

    fn spec(&self) -> EvaluatorSpec {
        EvaluatorSpec::with_args("Equals", self)
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Passes when the output contains `value`: a substring of a string output, an element of a
/// list, a key of a map (or, when `value` is a map, a sub-map of it). With `as_strings`, both are
/// compared as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Contains {
    /// What the output must contain.
    pub value: Value,
    /// Whether text comparisons respect case (default true).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub case_sensitive: bool,
    /// Compare the output and the value as text.
    #[serde(default, skip_serializing_if = "is_false")]
    pub as_strings: bool,
    /// The name of the result (default `Contains`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_name: Option<String>,
}

impl Contains {
    /// Passes when the output contains `value`.
    pub fn new(value: impl Serialize) -> Self {
        Contains {
            value: to_json(&value),
            case_sensitive: true,
            as_strings: false,
            evaluation_name: None,
        }
    }

    /// Ignore case in text comparisons.
    pub fn case_insensitive(mut self) -> Self {
        self.case_sensitive = false;
        self
    }

    /// Compare as text.
    pub fn as_strings(mut self) -> Self {
        self.as_strings = true;
        self
    }

    fn check(&self, out: &Value) -> Result<(), String> {
        let norm = |s: String| {
            if self.case_sensitive {
                s
            } else {
                s.to_lowercase()
            }
        };
        if self.as_strings || out.is_string() {
            let (hay, needle) = (norm(text(out)), norm(text(&self.value)));
            return if hay.contains(&needle) {
                Ok(())
            } else {
                Err(format!(
                    "{:?} does not contain {:?}",
                    truncate(&hay, 60),
                    truncate(&needle, 60)
                ))
            };
        }
        match (out, &self.value) {
            (Value::Object(o), Value::Object(want)) => {
                for (k, v) in want {
                    match o.get(k) {
                        None => return Err(format!("key `{k}` is missing")),
                        Some(actual) if !json_eq(actual, v) => {
                            return Err(format!("`{k}` is {actual}, not {v}"));
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            (Value::Object(o), v) => {
                let key = norm(text(v));
                if o.keys().any(|k| norm(k.clone()) == key) {
                    Ok(())
                } else {
                    Err(format!("key `{key}` is missing"))
                }
            }
            (Value::Array(items), v) => {
                if items.iter().any(|i| json_eq(i, v)) {
                    Ok(())
                } else {
                    Err(format!("{} is not an element", truncate(&text(v), 60)))
                }
            }
            (other, _) => Err(format!(
                "a {} cannot contain anything (use as_strings)",
                type_name(other)
            )),
        }
    }
}

impl<I, O: Serialize, M> Evaluator<I, O, M> for Contains {
    fn name(&self) -> String {
        self.evaluation_name
            .clone()
            .unwrap_or_else(|| "Contains".into())
    }

    fn evaluate_sync(&self, ctx: &EvaluatorContext<I, O, M>) -> EvaluatorResult {
        Ok(match self.check(&to_json(&ctx.output)) {
            Ok(()) => true.into(),
            Err(why) => EvaluationReason::new(false, why).into(),
        })
    }

    fn spec(&self) -> EvaluatorSpec {
        EvaluatorSpec::with_args("Contains", self)
    }
}

/// Passes when the output, as JSON, is of type `type_name`: `string`, `number`, `integer`,
/// `boolean`, `array`, `object` or `null` (the `IsInstance` of pydantic-evals, for JSON types).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IsInstance {
    /// The JSON type.
    pub type_name: String,
    /// The name of the result (default `IsInstance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_name: Option<String>,
}

impl IsInstance {
    /// Passes when the output is a JSON `type_name`.
    pub fn new(type_name: impl Into<String>) -> Self {
        IsInstance {
            type_name: type_name.into(),
            evaluation_name: None,
        }
    }
}

impl<I, O: Serialize, M> Evaluator<I, O, M> for IsInstance {
    fn name(&self) -> String {
        self.evaluation_name
            .clone()
            .unwrap_or_else(|| "IsInstance".into())
    }

    fn evaluate_sync(&self, ctx: &EvaluatorContext<I, O, M>) -> EvaluatorResult {
        let out = to_json(&ctx.output);
        let actual = type_name(&out);
        let ok = actual == self.type_name || (self.type_name == "number" && actual == "integer");
        Ok(if ok {
            true.into()
        } else {
            EvaluationReason::new(
                false,
                format!("the output is a {actual}, not a {}", self.type_name),
            )
            .into()
        })
    }

    fn spec(&self) -> EvaluatorSpec {
        EvaluatorSpec::with_args("IsInstance", self)
    }
}

/// Passes when the output, as JSON, satisfies a JSON Schema; the reason lists what is wrong.
/// A string output that holds JSON is parsed first when `parse_strings` is set (for agents that
/// answer in text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchesSchema {
    /// The schema.
    pub schema: Value,
    /// Parse a string output as JSON before checking it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub parse_strings: bool,
    /// The name of the result (default `MatchesSchema`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_name: Option<String>,
}

impl MatchesSchema {
    /// Check against `schema`.
    pub fn new(schema: Value) -> Self {
        MatchesSchema {
            schema,
            parse_strings: false,
            evaluation_name: None,
        }
    }

    /// Check against the JSON Schema of the Rust type `T`.
    pub fn of<T: JsonSchema>() -> Self {
        Self::new(steadfast_core::schema::schema_of::<T>())
    }

    /// Parse a string output as JSON first.
    pub fn parsing_strings(mut self) -> Self {
        self.parse_strings = true;
        self
    }
}

impl<I, O: Serialize, M> Evaluator<I, O, M> for MatchesSchema {
    fn name(&self) -> String {
        self.evaluation_name
            .clone()
            .unwrap_or_else(|| "MatchesSchema".into())
    }

    fn evaluate_sync(&self, ctx: &EvaluatorContext<I, O, M>) -> EvaluatorResult {
        let mut out = to_json(&ctx.output);
        if self.parse_strings
            && let Value::String(s) = &out
        {
            match serde_json::from_str(s) {
                Ok(v) => out = v,
                Err(e) => {
                    return Ok(EvaluationReason::new(
                        false,
                        format!("the output is not JSON: {e}"),
                    )
                    .into());
                }
            }
        }
        let errors = crate::schema_check::validate(&self.schema, &out);
        Ok(if errors.is_empty() {
            true.into()
        } else {
            EvaluationReason::new(false, errors.join("; ")).into()
        })
    }

    fn spec(&self) -> EvaluatorSpec {
        EvaluatorSpec::with_args("MatchesSchema", self)
    }
}

/// Passes when the task took at most `seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxDuration {
    /// The limit, in seconds.
    pub seconds: f64,
    /// The name of the result (default `MaxDuration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_name: Option<String>,
}

impl MaxDuration {
    /// Passes when the task took at most `limit`.
    pub fn new(limit: std::time::Duration) -> Self {
        MaxDuration {
            seconds: limit.as_secs_f64(),
            evaluation_name: None,
        }
    }
}

impl<I, O, M> Evaluator<I, O, M> for MaxDuration {
    fn name(&self) -> String {
        self.evaluation_name
            .clone()
            .unwrap_or_else(|| "MaxDuration".into())
    }

    fn evaluate_sync(&self, ctx: &EvaluatorContext<I, O, M>) -> EvaluatorResult {
        let took = ctx.duration.as_secs_f64();
        Ok(if took <= self.seconds {
            true.into()
        } else {
            EvaluationReason::new(
                false,
                format!("took {took:.3}s, more than {}s", self.seconds),
            )
            .into()
        })
    }

    fn spec(&self) -> EvaluatorSpec {
        if self.evaluation_name.is_none() {
            EvaluatorSpec {
                name: "MaxDuration".into(),
                arguments: Some(Value::from(self.seconds)),
            }
        } else {
            EvaluatorSpec::with_args("MaxDuration", self)
        }
    }
}

/// Passes when some span of the run's trace matches the query (a tool was called, an agent ran,
/// a request failed, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HasMatchingSpan {
    /// The query.
    pub query: SpanQuery,
    /// The name of the result (default `HasMatchingSpan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_name: Option<String>,
}

impl HasMatchingSpan {
    /// Passes when some span matches `query`.
    pub fn new(query: SpanQuery) -> Self {
        HasMatchingSpan {
            query,
            evaluation_name: None,
        }
    }

    /// Name the result.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.evaluation_name = Some(name.into());
        self
    }
}

impl<I, O, M> Evaluator<I, O, M> for HasMatchingSpan {
    fn name(&self) -> String {
        self.evaluation_name
            .clone()
            .unwrap_or_else(|| "HasMatchingSpan".into())
    }

    fn evaluate_sync(&self, ctx: &EvaluatorContext<I, O, M>) -> EvaluatorResult {
        Ok(if ctx.trace.any(&self.query) {
            true.into()
        } else {
            EvaluationReason::new(
                false,
                format!("no span matches among {} spans", ctx.trace.spans.len()),
            )
            .into()
        })
    }

    fn spec(&self) -> EvaluatorSpec {
        EvaluatorSpec::with_args("HasMatchingSpan", self)
    }
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Passes when the tool `tool` was called at least `min_times` (default 1) and at most
/// `max_times` times during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCalled {
    /// The tool.
    pub tool: String,
    /// The fewest calls that pass (default 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub min_times: u32,
    /// The most calls that pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_times: Option<u32>,
    /// The name of the result (default `ToolCalled(tool)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_name: Option<String>,
}

impl ToolCalled {
    /// Passes when `tool` was called at least once.
    pub fn new(tool: impl Into<String>) -> Self {
        ToolCalled {
            tool: tool.into(),
            min_times: 1,
            max_times: None,
            evaluation_name: None,
        }
    }

    /// Passes when `tool` was called between `min` and `max` times.
    pub fn between(tool: impl Into<String>, min: u32, max: u32) -> Self {
        ToolCalled {
            min_times: min,
            max_times: Some(max),
            ..Self::new(tool)
        }
    }
}

impl<I, O, M> Evaluator<I, O, M> for ToolCalled {
    fn name(&self) -> String {
        self.evaluation_name
            .clone()
            .unwrap_or_else(|| format!("ToolCalled({})", self.tool))
    }

    fn evaluate_sync(&self, ctx: &EvaluatorContext<I, O, M>) -> EvaluatorResult {
        let n = ctx.trace.tool_calls(&self.tool).count() as u32;
        let ok = n >= self.min_times && self.max_times.is_none_or(|m| n <= m);
        let bounds = match self.max_times {
            Some(m) => format!("{}..={m}", self.min_times),
            None => format!("at least {}", self.min_times),
        };
        Ok(EvaluatorOutput::single(
            EvalValue::Assertion(ok),
            Some(format!("`{}` called {n} times; wanted {bounds}", self.tool)),
        ))
    }

    fn spec(&self) -> EvaluatorSpec {
        if self.min_times == 1 && self.max_times.is_none() && self.evaluation_name.is_none() {
            EvaluatorSpec {
                name: "ToolCalled".into(),
                arguments: Some(Value::String(self.tool.clone())),
            }
        } else {
            EvaluatorSpec::with_args("ToolCalled", self)
        }
    }
}

impl<I, O, M> crate::evaluator::EvaluatorRegistry<I, O, M>
where
    I: Serialize + Send + Sync + 'static,
    O: Serialize + Send + Sync + 'static,
    M: Send + Sync + 'static,
{
    /// A registry of the built-in evaluators: `EqualsExpected`, `Equals`, `Contains`,
    /// `IsInstance`, `MatchesSchema`, `MaxDuration`, `HasMatchingSpan`, `ToolCalled` and
    /// `LLMJudge`.
    pub fn with_builtins() -> Self {
        use crate::evaluator::from_args;
        use crate::judge::LLMJudge;
        use serde_json::json;
        use steadfast_core::schema::schema_of;

        fn schema<T: JsonSchema>(positional: Option<Value>) -> Option<Value> {
            let s = schema_of::<T>();
            Some(match positional {
                Some(p) => json!({ "anyOf": [s, p] }),
                None => s,
            })
        }
        let mut r = Self::new();
        r.register_with_schema("EqualsExpected", schema::<EqualsExpected>(None), |a| {
            from_args::<EqualsExpected>(a, None)
        });
        r.register_with_schema("Equals", schema::<Equals>(Some(json!({}))), |a| {
            from_args::<Equals>(a, Some("value"))
        });
        r.register_with_schema("Contains", schema::<Contains>(Some(json!({}))), |a| {
            from_args::<Contains>(a, Some("value"))
        });
        r.register_with_schema(
            "IsInstance",
            schema::<IsInstance>(Some(json!({ "type": "string" }))),
            |a| from_args::<IsInstance>(a, Some("type_name")),
        );
        r.register_with_schema("MatchesSchema", schema::<MatchesSchema>(None), |a| {
            from_args::<MatchesSchema>(a, None)
        });
        r.register_with_schema(
            "MaxDuration",
            schema::<MaxDuration>(Some(json!({ "type": "number" }))),
            |a| from_args::<MaxDuration>(a, Some("seconds")),
        );
        r.register_with_schema("HasMatchingSpan", schema::<HasMatchingSpan>(None), |a| {
            from_args::<HasMatchingSpan>(a, None)
        });
        r.register_with_schema(
            "ToolCalled",
            schema::<ToolCalled>(Some(json!({ "type": "string" }))),
            |a| from_args::<ToolCalled>(a, Some("tool")),
        );
        r.register_with_schema(
            "LLMJudge",
            schema::<LLMJudge>(Some(json!({ "type": "string" }))),
            |a| from_args::<LLMJudge>(a, Some("rubric")),
        );
        r
    }
}
