//! `steadfast eval DATASET --task NAME`: run a dataset file against a registered task, print the
//! tables, compare models, diff against a baseline, save the reports.
//!
//! Tasks are Rust code, so a binary registers the tasks it knows in a [`TaskRegistry`] and hands
//! the command line to [`run`]:
//!
//! ```no_run
//! use steadfast_evals::cli::{TaskParams, TaskRegistry};
//!
//! # async fn demo() {
//! let mut tasks = TaskRegistry::with_standard_tasks();
//! tasks.task("shout", |text: String, _params: TaskParams| async move {
//!     Ok::<_, std::convert::Infallible>(text.to_uppercase())
//! });
//! let args: Vec<String> = std::env::args().skip(1).collect(); // eval cases.yaml --task shout
//! let outcome = steadfast_evals::cli::run(args, &tasks).await.unwrap_or_else(|e| {
//!     eprintln!("{e}");
//!     std::process::exit(2)
//! });
//! std::process::exit(outcome.exit_code);
//! # }
//! ```
//!
//! The dataset file's inputs, outputs and metadata are JSON values for the runner; a typed task
//! gets its inputs deserialized and its output serialized, and typed evaluators registered with
//! [`TaskRegistry::evaluator`] or attached with [`RegisteredTask::evaluator`] see typed contexts.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use steadfast_core::{Agent, RetryPolicy};

use crate::EvalError;
use crate::context::EvaluatorContext;
use crate::dataset::Dataset;
use crate::evaluate::EvaluateOptions;
use crate::evaluator::{Evaluator, EvaluatorRegistry, EvaluatorSpec};
use crate::output::{BoxError, EvaluatorResult};
use crate::render::{RenderOptions, render_comparison};
use crate::report::EvaluationReport;

/// What the command line passes to a task besides the inputs: the model of this experiment
/// (one of `--models`) and `--param key=value` pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskParams {
    /// The model of this experiment, when `--models` was given.
    pub model: Option<String>,
    /// `--param key=value` pairs.
    pub values: BTreeMap<String, String>,
}

type ErasedTask =
    Arc<dyn Fn(Value, TaskParams) -> BoxFuture<'static, Result<Value, BoxError>> + Send + Sync>;

/// A task the command line can run, with evaluators of its own.
pub struct RegisteredTask {
    description: String,
    run: ErasedTask,
    evaluators: Vec<Arc<dyn Evaluator<Value, Value, Value>>>,
}

impl RegisteredTask {
    /// Describe the task (shown by `--list`).
    pub fn describe(&mut self, text: impl Into<String>) -> &mut Self {
        self.description = text.into();
        self
    }

    /// An evaluator that judges every case run with this task, on top of the dataset's.
    pub fn evaluator<I, O, M, E>(&mut self, e: E) -> &mut Self
    where
        I: DeserializeOwned + Send + Sync + 'static,
        O: DeserializeOwned + Send + Sync + 'static,
        M: DeserializeOwned + Send + Sync + 'static,
        E: Evaluator<I, O, M> + 'static,
    {
        self.evaluators.push(erase(e));
        self
    }
}

/// Turns a typed evaluator into one over JSON values: the context is deserialized first (a
/// mismatch is an evaluator failure of the case).
pub fn erase<I, O, M, E>(e: E) -> Arc<dyn Evaluator<Value, Value, Value>>
where
    I: DeserializeOwned + Send + Sync + 'static,
    O: DeserializeOwned + Send + Sync + 'static,
    M: DeserializeOwned + Send + Sync + 'static,
    E: Evaluator<I, O, M> + 'static,
{
    Arc::new(Typed::<E, I, O, M> {
        inner: e,
        _types: PhantomData,
    })
}

type Types<I, O, M> = PhantomData<fn() -> (I, O, M)>;

struct Typed<E, I, O, M> {
    inner: E,
    _types: Types<I, O, M>,
}

fn typed<T: DeserializeOwned>(what: &str, v: &Value) -> Result<T, BoxError> {
    serde_json::from_value(v.clone())
        .map_err(|e| format!("the {what} do not fit the evaluator's type: {e}").into())
}

impl<E, I, O, M> Evaluator<Value, Value, Value> for Typed<E, I, O, M>
where
    I: DeserializeOwned + Send + Sync + 'static,
    O: DeserializeOwned + Send + Sync + 'static,
    M: DeserializeOwned + Send + Sync + 'static,
    E: Evaluator<I, O, M>,
{
    fn name(&self) -> String {
        self.inner.name()
    }

    fn evaluate<'a>(
        &'a self,
        ctx: &'a EvaluatorContext<Value, Value, Value>,
    ) -> BoxFuture<'a, EvaluatorResult> {
        Box::pin(async move {
            let t = EvaluatorContext::<I, O, M> {
                name: ctx.name.clone(),
                source_case_name: ctx.source_case_name.clone(),
                inputs: typed("inputs", &ctx.inputs)?,
                metadata: match ctx.metadata.as_ref().filter(|m| !m.is_null()) {
                    Some(m) => Some(typed("metadata", m)?),
                    None => None,
                },
                expected_output: match &ctx.expected_output {
                    Some(o) => Some(typed("expected output", o)?),
                    None => None,
                },
                output: typed("outputs", &ctx.output)?,
                duration: ctx.duration,
                metrics: ctx.metrics.clone(),
                attributes: ctx.attributes.clone(),
                usage: ctx.usage.clone(),
                trace: ctx.trace.clone(),
            };
            self.inner.evaluate(&t).await
        })
    }

    fn spec(&self) -> EvaluatorSpec {
        self.inner.spec()
    }
}

/// The tasks (and extra evaluators) a binary offers to `eval`.
pub struct TaskRegistry {
    tasks: BTreeMap<String, RegisteredTask>,
    evaluators: EvaluatorRegistry<Value, Value, Value>,
}

impl Default for TaskRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskRegistry {
    /// No tasks; the built-in evaluators.
    pub fn new() -> Self {
        TaskRegistry {
            tasks: BTreeMap::new(),
            evaluators: EvaluatorRegistry::with_builtins(),
        }
    }

    /// The tasks every `steadfast` binary can run:
    ///
    /// * `echo` returns the inputs (to check a dataset and its evaluators);
    /// * `prompt` sends the inputs (as text) to the model of the experiment (`--models`, or
    ///   `--param model=...`) and returns its text answer; `--param instructions=...` sets the
    ///   instructions. Model strings need the providers installed by the binary.
    pub fn with_standard_tasks() -> Self {
        let mut r = Self::new();
        r.task("echo", |v: Value, _p: TaskParams| async move {
            Ok::<_, std::convert::Infallible>(v)
        })
        .describe("returns the inputs unchanged");
        r.task("prompt", |v: Value, p: TaskParams| async move {
            let model = p
                .model
                .clone()
                .or_else(|| p.values.get("model").cloned())
                .ok_or("the prompt task needs a model: pass --models provider:model")?;
            let mut b = Agent::<(), String>::builder("prompt").model(model.as_str());
            if let Some(i) = p.values.get("instructions") {
                b = b.instructions(i.clone());
            }
            let agent = b.build()?;
            let prompt = crate::json::text(&v);
            let out = agent.run_in(&crate::scope(), prompt, ()).await?;
            Ok::<_, BoxError>(out.output)
        })
        .describe("sends the inputs to the model and returns its answer");
        r
    }

    /// Register a task: an async function of the case inputs (deserialized from the file) and
    /// the [`TaskParams`].
    pub fn task<I, O, F, Fut, E>(&mut self, name: impl Into<String>, f: F) -> &mut RegisteredTask
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I, TaskParams) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let f = Arc::new(f);
        let run: ErasedTask = Arc::new(move |v, params| {
            let f = f.clone();
            Box::pin(async move {
                let input: I = serde_json::from_value(v).map_err(|e| -> BoxError {
                    format!("the inputs do not fit the task: {e}").into()
                })?;
                let out = f(input, params).await.map_err(Into::into)?;
                Ok(crate::json::to_json(&out))
            })
        });
        let name = name.into();
        self.tasks.insert(
            name.clone(),
            RegisteredTask {
                description: String::new(),
                run,
                evaluators: Vec::new(),
            },
        );
        self.tasks.get_mut(&name).expect("just inserted")
    }

    /// Let dataset files name a typed evaluator: `ctor` builds it from the arguments in the file.
    pub fn evaluator<I, O, M, E, C>(&mut self, name: impl Into<String>, ctor: C) -> &mut Self
    where
        I: DeserializeOwned + Send + Sync + 'static,
        O: DeserializeOwned + Send + Sync + 'static,
        M: DeserializeOwned + Send + Sync + 'static,
        E: Evaluator<I, O, M> + 'static,
        C: Fn(Option<Value>) -> Result<E, BoxError> + Send + Sync + 'static,
    {
        self.evaluators.register(name, move |args| {
            let e = ctor(args)?;
            Ok(Erased(erase(e)))
        });
        self
    }

    /// The evaluators dataset files may name.
    pub fn evaluators(&self) -> &EvaluatorRegistry<Value, Value, Value> {
        &self.evaluators
    }

    /// The evaluators dataset files may name, to register untyped ones.
    pub fn evaluators_mut(&mut self) -> &mut EvaluatorRegistry<Value, Value, Value> {
        &mut self.evaluators
    }

    /// The task names, with their descriptions.
    pub fn list(&self) -> Vec<(String, String)> {
        self.tasks
            .iter()
            .map(|(k, v)| (k.clone(), v.description.clone()))
            .collect()
    }
}

struct Erased(Arc<dyn Evaluator<Value, Value, Value>>);

impl Evaluator<Value, Value, Value> for Erased {
    fn name(&self) -> String {
        self.0.name()
    }

    fn evaluate<'a>(
        &'a self,
        ctx: &'a EvaluatorContext<Value, Value, Value>,
    ) -> BoxFuture<'a, EvaluatorResult> {
        self.0.evaluate(ctx)
    }

    fn spec(&self) -> EvaluatorSpec {
        self.0.spec()
    }
}

/// The arguments of `eval`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalArgs {
    /// The dataset file (`.yaml`, `.yml`, `.json`).
    pub dataset: Option<PathBuf>,
    /// The task's name (optional when only one task is registered).
    pub task: Option<String>,
    /// One experiment per model; none: one experiment without a model.
    pub models: Vec<String>,
    /// Runs of each case.
    pub repeat: u32,
    /// Runs at once.
    pub concurrency: Option<usize>,
    /// Retries of a failed task.
    pub retries: u32,
    /// Timeout of one attempt of the task, in seconds.
    pub timeout: Option<f64>,
    /// A report (JSON) to diff against.
    pub baseline: Option<PathBuf>,
    /// Where to save the report (with `-{experiment}` before the extension when there are
    /// several).
    pub save: Option<PathBuf>,
    /// Print the reports as JSON instead of tables.
    pub json: bool,
    /// Render options.
    pub include_input: bool,
    /// Render options.
    pub include_output: bool,
    /// Render options.
    pub no_durations: bool,
    /// One row per case with the averages of its repeats.
    pub aggregate: bool,
    /// `--param key=value` for the task.
    pub params: BTreeMap<String, String>,
    /// Exit with 1 when a run failed or an assertion did not pass.
    pub strict: bool,
    /// Hide the progress bar.
    pub no_progress: bool,
    /// List the tasks and exit.
    pub list: bool,
    /// Print the usage and exit.
    pub help: bool,
}

/// The usage text of `eval`.
pub const USAGE: &str = "\
usage: eval DATASET [--task NAME] [options]

Runs every case of DATASET (.yaml, .yml or .json) through a registered task and prints a table:
assertions as ✔/✗, scores, labels, metrics, requests, tokens, cost and duration, with averages.

options:
  --task NAME            the task to run (optional when only one is registered; --list shows them)
  --models A,B,...       one experiment per model, compared side by side (repeatable)
  --repeat N             runs of each case (default 1)
  --concurrency N        runs at once (default: all)
  --retries N            retries of a failed task (default 0)
  --timeout SECS         timeout of one attempt of the task
  --baseline FILE        a saved report to diff against (a Δ column per figure)
  --save FILE            save the report as JSON (FILE-<experiment>.json when there are several)
  --json                 print the reports as JSON instead of tables
  --include-input        show the inputs
  --include-output       show the outputs
  --no-durations         hide durations (stable output, for snapshots)
  --aggregate            one row per case with the averages of its repeats
  --param KEY=VALUE      a parameter for the task (repeatable)
  --strict               exit with 1 when a run failed or an assertion did not pass
  --no-progress          hide the progress bar
  --list                 list the tasks
";

impl EvalArgs {
    /// Parse the arguments after `eval`.
    pub fn parse<S: Into<String>>(
        args: impl IntoIterator<Item = S>,
    ) -> Result<EvalArgs, EvalError> {
        let mut a = EvalArgs {
            repeat: 1,
            ..Default::default()
        };
        let mut it = args.into_iter().map(Into::into).peekable();
        let bad = |m: String| EvalError::Usage(format!("{m}\n\n{USAGE}"));
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String, EvalError> {
                match inline.clone().or_else(|| it.next()) {
                    Some(v) => Ok(v),
                    None => Err(bad(format!("{name} needs a value"))),
                }
            };
            let number = |name: &str, v: String| -> Result<u64, EvalError> {
                v.parse()
                    .map_err(|_| bad(format!("{name}: `{v}` is not a number")))
            };
            match flag.as_str() {
                "--task" => a.task = Some(value("--task")?),
                "--models" | "--model" => {
                    let v = value("--models")?;
                    a.models.extend(
                        v.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from),
                    );
                }
                "--repeat" => a.repeat = number("--repeat", value("--repeat")?)?.max(1) as u32,
                "--concurrency" => {
                    a.concurrency = Some(number("--concurrency", value("--concurrency")?)? as usize)
                }
                "--retries" => a.retries = number("--retries", value("--retries")?)? as u32,
                "--timeout" => {
                    let v = value("--timeout")?;
                    a.timeout = Some(
                        v.parse()
                            .map_err(|_| bad(format!("--timeout: `{v}` is not a number")))?,
                    );
                }
                "--baseline" => a.baseline = Some(value("--baseline")?.into()),
                "--save" => a.save = Some(value("--save")?.into()),
                "--param" => {
                    let v = value("--param")?;
                    let (k, val) = v
                        .split_once('=')
                        .ok_or_else(|| bad(format!("--param: `{v}` is not KEY=VALUE")))?;
                    a.params.insert(k.to_string(), val.to_string());
                }
                "--json" => a.json = true,
                "--include-input" => a.include_input = true,
                "--include-output" => a.include_output = true,
                "--no-durations" => a.no_durations = true,
                "--aggregate" => a.aggregate = true,
                "--strict" => a.strict = true,
                "--no-progress" => a.no_progress = true,
                "--list" => a.list = true,
                "-h" | "--help" => a.help = true,
                other if other.starts_with('-') => {
                    return Err(bad(format!("unknown option {other}")));
                }
                _ if a.dataset.is_none() => a.dataset = Some(arg.into()),
                other => return Err(bad(format!("unexpected argument {other}"))),
            }
        }
        Ok(a)
    }

    /// The render options the flags ask for.
    pub fn render_options(&self) -> RenderOptions {
        RenderOptions {
            include_input: self.include_input,
            include_output: self.include_output,
            include_durations: !self.no_durations,
            aggregate_repeats: self.aggregate,
            ..Default::default()
        }
    }
}

/// What [`run`] did.
#[derive(Debug, Clone)]
pub struct CliOutcome {
    /// One report per experiment.
    pub reports: Vec<EvaluationReport>,
    /// 0, or 1 under `--strict` when a run failed or an assertion did not pass.
    pub exit_code: i32,
}

/// Run `eval` with these arguments (those after `eval`), printing to stdout.
pub async fn run<S: Into<String>>(
    args: impl IntoIterator<Item = S>,
    registry: &TaskRegistry,
) -> Result<CliOutcome, EvalError> {
    let args = EvalArgs::parse(args)?;
    let mut out = std::io::stdout();
    run_with(&args, registry, &mut out).await
}

/// `save` with `-{experiment}` before the extension.
pub fn save_path(save: &std::path::Path, experiment: &str) -> PathBuf {
    let slug: String = experiment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let stem = save
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("report");
    let ext = save.extension().and_then(|s| s.to_str()).unwrap_or("json");
    save.with_file_name(format!("{stem}-{slug}.{ext}"))
}

/// Run `eval` with parsed arguments, printing to `out`.
pub async fn run_with(
    args: &EvalArgs,
    registry: &TaskRegistry,
    out: &mut dyn Write,
) -> Result<CliOutcome, EvalError> {
    let io = |e: std::io::Error| EvalError::Io {
        path: "<output>".into(),
        source: e,
    };
    if args.help {
        out.write_all(USAGE.as_bytes()).map_err(io)?;
        return Ok(CliOutcome {
            reports: vec![],
            exit_code: 0,
        });
    }
    if args.list {
        for (name, description) in registry.list() {
            writeln!(out, "{name:<16} {description}").map_err(io)?;
        }
        return Ok(CliOutcome {
            reports: vec![],
            exit_code: 0,
        });
    }
    let path = args
        .dataset
        .as_ref()
        .ok_or_else(|| EvalError::Usage(format!("which dataset?\n\n{USAGE}")))?;
    let names: Vec<String> = registry.tasks.keys().cloned().collect();
    let task_name = match (&args.task, names.as_slice()) {
        (Some(t), _) => t.clone(),
        (None, [only]) => only.clone(),
        (None, _) => {
            return Err(EvalError::Usage(format!(
                "which task? pass --task NAME; registered: {}",
                names.join(", ")
            )));
        }
    };
    let task = registry.tasks.get(&task_name).ok_or_else(|| {
        EvalError::Usage(format!(
            "no task `{task_name}`; registered: {}",
            names.join(", ")
        ))
    })?;
    let mut dataset = Dataset::<Value, Value, Value>::from_file_with(path, &registry.evaluators)?;
    dataset.evaluators.extend(task.evaluators.iter().cloned());
    let baseline = match &args.baseline {
        Some(p) => Some(EvaluationReport::load(p)?),
        None => None,
    };
    let experiments: Vec<Option<String>> = if args.models.is_empty() {
        vec![None]
    } else {
        args.models.iter().cloned().map(Some).collect()
    };
    let render = args.render_options();
    let mut reports = Vec::new();
    for model in experiments {
        let mut opts = EvaluateOptions::new()
            .name(model.clone().unwrap_or_else(|| task_name.clone()))
            .metadata("task", &task_name)
            .repeat(args.repeat)
            .progress(!args.no_progress && !args.json);
        if let Some(m) = &model {
            opts = opts.metadata("model", m);
        }
        if let Some(n) = args.concurrency {
            opts = opts.max_concurrency(n);
        }
        if args.retries > 0 {
            opts = opts.retry_task(
                RetryPolicy::attempts(args.retries + 1)
                    .with_initial_interval(Duration::from_millis(200)),
            );
        }
        if let Some(t) = args.timeout {
            opts = opts.task_timeout(Duration::from_secs_f64(t.max(0.0)));
        }
        let params = TaskParams {
            model: model.clone(),
            values: args.params.clone(),
        };
        let run = task.run.clone();
        let report = dataset
            .evaluate(
                |input: Value| {
                    let (run, params) = (run.clone(), params.clone());
                    async move { run(input, params).await }
                },
                opts,
            )
            .await;
        if !args.json {
            writeln!(out, "{}", report.render(&render)).map_err(io)?;
            if let Some(b) = &baseline {
                writeln!(out, "{}", report.render_diff(b, &render)).map_err(io)?;
            }
        }
        reports.push(report);
    }
    if args.json {
        let text = if reports.len() == 1 {
            reports[0].to_json()
        } else {
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        };
        writeln!(out, "{text}").map_err(io)?;
    } else if reports.len() > 1 {
        let refs: Vec<&EvaluationReport> = reports.iter().collect();
        writeln!(out, "{}", render_comparison(&refs, &render)).map_err(io)?;
    }
    if let Some(save) = &args.save {
        for r in &reports {
            let p = if reports.len() == 1 {
                save.clone()
            } else {
                save_path(save, &r.name)
            };
            r.save(&p)?;
            if !args.json {
                writeln!(out, "Saved {}", p.display()).map_err(io)?;
            }
        }
    }
    let ok = reports.iter().all(EvaluationReport::all_passed);
    Ok(CliOutcome {
        exit_code: if args.strict && !ok { 1 } else { 0 },
        reports,
    })
}
