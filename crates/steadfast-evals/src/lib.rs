//! Evals for Steadfast agents: run a [`Dataset`] of [`Case`]s through a task, judge each output
//! with [`Evaluator`]s, and read the [`EvaluationReport`] as a terminal table, as a diff against
//! a baseline, or as JSON.
//!
//! ```
//! use steadfast_evals::{Case, Dataset, EvaluateOptions, EvaluatorContext, RenderOptions, evaluator_fn};
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
//! # rt.block_on(async {
//! let dataset = Dataset::<u32, u32>::new("double")
//!     .case(Case::new("one", 1).expected_output(2))
//!     .case(Case::new("two", 2).expected_output(4))
//!     .evaluator(steadfast_evals::EqualsExpected::default())
//!     .evaluator(evaluator_fn("Small", |ctx: &EvaluatorContext<u32, u32>| ctx.output < 10));
//! let report = dataset
//!     .evaluate(
//!         |n: u32| async move {
//!             steadfast_evals::increment_metric("additions", 1.0);
//!             Ok::<_, std::convert::Infallible>(n + n)
//!         },
//!         EvaluateOptions::new().progress(false),
//!     )
//!     .await;
//! assert!(report.all_passed());
//! println!("{}", report.render(&RenderOptions::default()));
//! # });
//! ```
//!
//! * **Evaluators** return assertions (`bool`, shown ✔/✗), scores (numbers) or labels
//!   (strings), with reasons. Built in: [`EqualsExpected`], [`Equals`], [`Contains`],
//!   [`IsInstance`], [`MatchesSchema`], [`MaxDuration`], [`HasMatchingSpan`], [`ToolCalled`] and
//!   [`LLMJudge`]. Write your own as an [`Evaluator`] impl (sync or async), or a
//!   closure ([`evaluator_fn`], [`async_evaluator_fn`]).
//! * **While the task runs** it can record metrics and attributes ([`increment_metric`],
//!   [`set_attribute`]). Agent runs made with [`scope()`] (`agent.run_in(&scope(), ..)`) report
//!   their requests, tokens, cost and a trace of their model requests and tool calls by
//!   themselves. A plain `agent.run(..)` is not seen (the core has no observer hook yet): report
//!   it with [`record_run`]. A workflow run by a worker reports its usage with [`record_usage`].
//! * **Options** ([`EvaluateOptions`]): concurrency, repeats, task retries and timeouts,
//!   evaluator retries, a progress bar. Errors and panics of tasks and evaluators are captured
//!   per case.
//! * **Reports** render as a table ([`EvaluationReport::render`]), against a baseline
//!   ([`EvaluationReport::render_diff`]), side by side ([`render_comparison`]), and export to
//!   JSON.
//! * **Files**: datasets load from and save to YAML and JSON, with a generated JSON Schema
//!   ([`Dataset::to_file`], [`Dataset::from_file`]).
//! * **CLI**: [`cli::run`] is `steadfast eval DATASET --task NAME` for any binary that
//!   registers its tasks.

mod builtins;
pub mod cli;
mod context;
mod dataset;
mod evaluate;
mod evaluator;
mod json;
mod judge;
mod output;
mod render;
mod report;
pub mod schema_check;
mod tasks;
mod trace;

pub use builtins::{
    Contains, Equals, EqualsExpected, HasMatchingSpan, IsInstance, MatchesSchema, MaxDuration,
    ToolCalled,
};
pub use context::{
    Clock, EvalScope, EvaluatorContext, StepClock, SystemClock, in_eval, in_span, increment_metric,
    record_run, record_span, record_usage, scope, set_attribute, set_metric,
};
pub use dataset::{Case, Dataset, Format, schema_path};
pub use evaluate::EvaluateOptions;
pub use evaluator::{
    Evaluator, EvaluatorRegistry, EvaluatorSpec, FnEvaluator, async_evaluator_fn, evaluator_fn,
    from_args,
};
pub use json::json_eq;
pub use judge::{
    GradingOutput, LLMJudge, OutputConfig, grade, judge_input_output, judge_output, judge_prompt,
    set_default_judge_model,
};
pub use output::{
    BoxError, EvalValue, EvaluationReason, EvaluationResult, EvaluatorOutput, EvaluatorResult,
    IntoEvaluatorResult, OutputItem,
};
pub use render::{RenderOptions, fmt_cost, fmt_duration, fmt_number, render_comparison};
pub use report::{
    EvaluationReport, EvaluatorFailure, Repeat, ReportAverages, ReportCase, ReportCaseFailure,
    ReportFileError, averages_of,
};
pub use tasks::{agent_task, agent_task_with};
pub use trace::{Span, SpanKind, SpanQuery, Trace};

/// Errors of dataset files, evaluator specs and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The dataset is invalid (parse errors, repeated case names, ...).
    #[error("dataset: {0}")]
    Dataset(String),
    /// A file names an evaluator that is not registered.
    #[error(
        "unknown evaluator `{name}`; known: {known} (register custom evaluators with EvaluatorRegistry::register)"
    )]
    UnknownEvaluator {
        /// The name.
        name: String,
        /// The registered names.
        known: String,
    },
    /// An evaluator's arguments in a file are invalid.
    #[error("evaluator `{name}`: {message}")]
    EvaluatorArguments {
        /// The evaluator.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A report file could not be read or written.
    #[error(transparent)]
    Report(#[from] ReportFileError),
    /// Bad command-line arguments.
    #[error("{0}")]
    Usage(String),
}
