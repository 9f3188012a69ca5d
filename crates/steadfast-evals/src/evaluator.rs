//! The [`Evaluator`] trait, closure evaluators, and the
//! serialized form of evaluators in dataset files ([`EvaluatorSpec`], [`EvaluatorRegistry`]).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::context::EvaluatorContext;
use crate::output::{BoxError, EvaluatorResult, IntoEvaluatorResult};

/// Judges one run of one case.
///
/// Implement [`Evaluator::evaluate_sync`] for a plain check, or [`Evaluator::evaluate`] when the
/// check awaits something (a model, as [`crate::LLMJudge`] does). The return value converts from
/// a `bool` (an assertion), a number (a score), a string (a label), an
/// [`crate::EvaluationReason`] or an [`crate::EvaluatorOutput`] with several named values.
///
/// ```
/// use steadfast_evals::{Evaluator, EvaluatorContext, EvaluatorResult};
///
/// /// Passes when the output is shorter than the input.
/// struct Shorter;
///
/// impl Evaluator<String, String> for Shorter {
///     fn evaluate_sync(&self, ctx: &EvaluatorContext<String, String>) -> EvaluatorResult {
///         Ok((ctx.output.len() < ctx.inputs.len()).into())
///     }
/// }
/// ```
///
/// An asynchronous one:
///
/// ```
/// use futures::future::BoxFuture;
/// use steadfast_evals::{Evaluator, EvaluatorContext, EvaluatorResult};
///
/// struct LooksUp;
///
/// impl Evaluator<String, String> for LooksUp {
///     fn evaluate<'a>(&'a self, ctx: &'a EvaluatorContext<String, String>) -> BoxFuture<'a, EvaluatorResult> {
///         Box::pin(async move {
///             tokio::task::yield_now().await; // ask a service, a model, ...
///             Ok(ctx.output.is_empty().into())
///         })
///     }
/// }
/// ```
pub trait Evaluator<I, O, M = ()>: Send + Sync {
    /// The evaluator's name: the default name of its results, and its name in dataset files.
    /// Defaults to the type's name.
    fn name(&self) -> String {
        short_type_name(std::any::type_name::<Self>())
    }

    /// Judge the run. The default calls [`Evaluator::evaluate_sync`].
    fn evaluate<'a>(
        &'a self,
        ctx: &'a EvaluatorContext<I, O, M>,
    ) -> BoxFuture<'a, EvaluatorResult> {
        Box::pin(std::future::ready(self.evaluate_sync(ctx)))
    }

    /// Judge the run without awaiting anything. Implement this or [`Evaluator::evaluate`].
    fn evaluate_sync(&self, _ctx: &EvaluatorContext<I, O, M>) -> EvaluatorResult {
        Err(format!(
            "evaluator `{}` implements neither evaluate nor evaluate_sync",
            self.name()
        )
        .into())
    }

    /// How the evaluator is written in a dataset file. Defaults to its bare name; evaluators with
    /// arguments return them too.
    fn spec(&self) -> EvaluatorSpec {
        EvaluatorSpec::bare(self.name())
    }
}

/// `steadfast_evals::builtins::Contains<T>` → `Contains`.
pub(crate) fn short_type_name(full: &str) -> String {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_string()
}

type SyncFn<I, O, M> = Arc<dyn Fn(&EvaluatorContext<I, O, M>) -> EvaluatorResult + Send + Sync>;
type AsyncFn<I, O, M> =
    Arc<dyn Fn(EvaluatorContext<I, O, M>) -> BoxFuture<'static, EvaluatorResult> + Send + Sync>;

enum Body<I, O, M> {
    Sync(SyncFn<I, O, M>),
    Async(AsyncFn<I, O, M>),
}

/// An evaluator made of a closure ([`evaluator_fn`], [`async_evaluator_fn`]).
pub struct FnEvaluator<I, O, M = ()> {
    name: String,
    body: Body<I, O, M>,
}

/// An evaluator from a closure of the context. It may return a `bool` (an assertion), a number
/// (a score), a string (a label), an [`crate::EvaluationReason`], an [`crate::EvaluatorOutput`],
/// or a `Result` of any of these.
///
/// ```
/// use steadfast_evals::{EvaluatorContext, evaluator_fn};
/// let short = evaluator_fn("Short", |ctx: &EvaluatorContext<String, String>| ctx.output.len() < 20);
/// # let _ = short;
/// ```
pub fn evaluator_fn<I, O, M, R, F>(name: impl Into<String>, f: F) -> FnEvaluator<I, O, M>
where
    F: Fn(&EvaluatorContext<I, O, M>) -> R + Send + Sync + 'static,
    R: IntoEvaluatorResult,
{
    FnEvaluator {
        name: name.into(),
        body: Body::Sync(Arc::new(move |ctx| f(ctx).into_evaluator_result())),
    }
}

/// An evaluator from an async closure. The closure gets its own copy of the context.
pub fn async_evaluator_fn<I, O, M, R, F, Fut>(name: impl Into<String>, f: F) -> FnEvaluator<I, O, M>
where
    F: Fn(EvaluatorContext<I, O, M>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoEvaluatorResult,
{
    FnEvaluator {
        name: name.into(),
        body: Body::Async(Arc::new(move |ctx| {
            let fut = f(ctx);
            Box::pin(async move { fut.await.into_evaluator_result() })
        })),
    }
}

impl<I, O, M> Evaluator<I, O, M> for FnEvaluator<I, O, M>
where
    I: Clone + Send + Sync,
    O: Clone + Send + Sync,
    M: Clone + Send + Sync,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn evaluate<'a>(
        &'a self,
        ctx: &'a EvaluatorContext<I, O, M>,
    ) -> BoxFuture<'a, EvaluatorResult> {
        match &self.body {
            Body::Sync(f) => Box::pin(std::future::ready(f(ctx))),
            Body::Async(f) => f(ctx.clone()),
        }
    }
}

/// An evaluator as a dataset file writes it: a bare name (`EqualsExpected`), a name with one
/// argument (`{MaxDuration: 2.5}`), or a name with named arguments
/// (`{Contains: {value: potato, case_sensitive: false}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatorSpec {
    /// The registered name.
    pub name: String,
    /// The arguments: an object of named arguments, or one positional value.
    pub arguments: Option<Value>,
}

impl EvaluatorSpec {
    /// A spec without arguments.
    pub fn bare(name: impl Into<String>) -> Self {
        EvaluatorSpec {
            name: name.into(),
            arguments: None,
        }
    }

    /// A spec with arguments (the serialized form of `args`); an empty object becomes no
    /// arguments.
    pub fn with_args(name: impl Into<String>, args: &impl Serialize) -> Self {
        let v = crate::json::to_json(args);
        let arguments = match &v {
            Value::Object(m) if m.is_empty() => None,
            Value::Null => None,
            _ => Some(v),
        };
        EvaluatorSpec {
            name: name.into(),
            arguments,
        }
    }
}

impl Serialize for EvaluatorSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.arguments {
            None => s.serialize_str(&self.name),
            Some(args) => {
                let mut m = Map::new();
                m.insert(self.name.clone(), args.clone());
                Value::Object(m).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for EvaluatorSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(name) => Ok(EvaluatorSpec::bare(name)),
            Value::Object(m) if m.len() == 1 => {
                let Some((name, args)) = m.into_iter().next() else {
                    return Err(D::Error::custom("empty evaluator"));
                };
                Ok(EvaluatorSpec {
                    name,
                    arguments: (!args.is_null()).then_some(args),
                })
            }
            other => Err(D::Error::custom(format!(
                "an evaluator is a name or a map with one key (name: arguments), not {other}"
            ))),
        }
    }
}

/// Deserialize evaluator arguments: an object is taken as named arguments; any other value is
/// the positional argument `positional` (when the evaluator has one); none is `{}`.
pub fn from_args<T: DeserializeOwned>(
    args: Option<Value>,
    positional: Option<&str>,
) -> Result<T, BoxError> {
    let v = match (args, positional) {
        (None, _) => Value::Object(Map::new()),
        (Some(v @ Value::Object(_)), _) => v,
        (Some(v), Some(field)) => {
            let mut m = Map::new();
            m.insert(field.to_string(), v);
            Value::Object(m)
        }
        (Some(v), None) => return Err(format!("expected named arguments (a map), got {v}").into()),
    };
    Ok(serde_json::from_value(v)?)
}

type Ctor<I, O, M> =
    Arc<dyn Fn(Option<Value>) -> Result<Arc<dyn Evaluator<I, O, M>>, BoxError> + Send + Sync>;

struct Entry<I, O, M> {
    ctor: Ctor<I, O, M>,
    schema: Option<Value>,
}

impl<I, O, M> Clone for Entry<I, O, M> {
    fn clone(&self) -> Self {
        Entry {
            ctor: self.ctor.clone(),
            schema: self.schema.clone(),
        }
    }
}

/// The evaluators a dataset file may name, by name. [`EvaluatorRegistry::with_builtins`] knows
/// the built-in evaluators; register your own with [`EvaluatorRegistry::register`].
pub struct EvaluatorRegistry<I, O, M = ()> {
    entries: BTreeMap<String, Entry<I, O, M>>,
}

impl<I, O, M> Clone for EvaluatorRegistry<I, O, M> {
    fn clone(&self) -> Self {
        EvaluatorRegistry {
            entries: self.entries.clone(),
        }
    }
}

impl<I, O, M> Default for EvaluatorRegistry<I, O, M> {
    fn default() -> Self {
        EvaluatorRegistry {
            entries: BTreeMap::new(),
        }
    }
}

impl<I, O, M> fmt::Debug for EvaluatorRegistry<I, O, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.entries.keys()).finish()
    }
}

impl<I, O, M> EvaluatorRegistry<I, O, M> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `name`: `ctor` builds the evaluator from the arguments in the file.
    pub fn register<E, F>(&mut self, name: impl Into<String>, ctor: F) -> &mut Self
    where
        E: Evaluator<I, O, M> + 'static,
        F: Fn(Option<Value>) -> Result<E, BoxError> + Send + Sync + 'static,
    {
        self.register_with_schema(name, None, ctor)
    }

    /// Register `name` with the JSON Schema of its arguments (used in the dataset file's schema).
    pub fn register_with_schema<E, F>(
        &mut self,
        name: impl Into<String>,
        schema: Option<Value>,
        ctor: F,
    ) -> &mut Self
    where
        E: Evaluator<I, O, M> + 'static,
        F: Fn(Option<Value>) -> Result<E, BoxError> + Send + Sync + 'static,
    {
        let ctor: Ctor<I, O, M> = Arc::new(move |args| {
            let e: Arc<dyn Evaluator<I, O, M>> = Arc::new(ctor(args)?);
            Ok(e)
        });
        self.entries.insert(name.into(), Entry { ctor, schema });
        self
    }

    /// Register an evaluator that takes no arguments, under its own name.
    pub fn register_unit<E>(&mut self, make: impl Fn() -> E + Send + Sync + 'static) -> &mut Self
    where
        E: Evaluator<I, O, M> + 'static,
    {
        let name = make().name();
        self.register(name, move |args| match args {
            None => Ok(make()),
            Some(a) => Err(format!("takes no arguments, got {a}").into()),
        })
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Build the evaluator a spec names.
    pub fn build(
        &self,
        spec: &EvaluatorSpec,
    ) -> Result<Arc<dyn Evaluator<I, O, M>>, crate::EvalError> {
        let entry =
            self.entries
                .get(&spec.name)
                .ok_or_else(|| crate::EvalError::UnknownEvaluator {
                    name: spec.name.clone(),
                    known: self.entries.keys().cloned().collect::<Vec<_>>().join(", "),
                })?;
        (entry.ctor)(spec.arguments.clone()).map_err(|e| crate::EvalError::EvaluatorArguments {
            name: spec.name.clone(),
            message: e.to_string(),
        })
    }

    /// The JSON Schema of one evaluator entry in a dataset file.
    pub fn spec_schema(&self) -> Value {
        let names: Vec<&str> = self.names().collect();
        let mut with_args = Vec::new();
        for (name, entry) in &self.entries {
            let mut props = Map::new();
            props.insert(
                name.clone(),
                entry.schema.clone().unwrap_or(Value::Bool(true)),
            );
            with_args.push(serde_json::json!({
                "type": "object",
                "properties": Value::Object(props),
                "required": [name],
                "additionalProperties": false,
            }));
        }
        let mut any_of = vec![serde_json::json!({ "type": "string", "enum": names })];
        any_of.extend(with_args);
        serde_json::json!({ "anyOf": any_of })
    }
}
