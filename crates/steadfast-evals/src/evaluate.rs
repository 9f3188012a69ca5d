//! Running a dataset against a task: concurrency, repeats, retries, timeouts, error capture,
//! progress, and the evaluators.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde::Serialize;
use serde_json::Value;
use steadfast_core::RetryPolicy;

use crate::context::{Clock, Collector, EvaluatorContext, Recorded, SystemClock, collect};
use crate::dataset::Dataset;
use crate::evaluator::Evaluator;
use crate::json::to_json;
use crate::output::{BoxError, EvalValue, EvaluationResult};
use crate::report::{EvaluationReport, EvaluatorFailure, Repeat, ReportCase, ReportCaseFailure};

/// How [`Dataset::evaluate`] runs.
#[derive(Clone)]
pub struct EvaluateOptions {
    /// The report's name (default: the dataset's name, else `evaluation`).
    pub name: Option<String>,
    /// Facts about the experiment, stored in the report (the model, say).
    pub metadata: BTreeMap<String, Value>,
    /// Runs at once. `None`: all of them. `Some(0)` counts as 1 (it never hangs).
    pub max_concurrency: Option<usize>,
    /// Runs of each case (default 1). Repeated runs are named `case [i/n]`.
    pub repeat: u32,
    /// Retry a failed task (an error, a panic or a timeout) under this policy.
    pub retry_task: Option<RetryPolicy>,
    /// Retry a failed evaluator under this policy.
    pub retry_evaluators: Option<RetryPolicy>,
    /// Fail an attempt of the task that takes longer than this.
    pub task_timeout: Option<Duration>,
    /// Show a progress bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
    /// The clock that times tasks and spans.
    pub clock: Arc<dyn Clock>,
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        EvaluateOptions {
            name: None,
            metadata: BTreeMap::new(),
            max_concurrency: None,
            repeat: 1,
            retry_task: None,
            retry_evaluators: None,
            task_timeout: None,
            progress: true,
            clock: Arc::new(SystemClock::default()),
        }
    }
}

impl std::fmt::Debug for EvaluateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvaluateOptions")
            .field("name", &self.name)
            .field("metadata", &self.metadata)
            .field("max_concurrency", &self.max_concurrency)
            .field("repeat", &self.repeat)
            .field("retry_task", &self.retry_task)
            .field("retry_evaluators", &self.retry_evaluators)
            .field("task_timeout", &self.task_timeout)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl EvaluateOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Name the report.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Add a fact about the experiment.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        self.metadata.insert(key.into(), to_json(&value));
        self
    }

    /// Run at most `n` at once.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some(n);
        self
    }

    /// Run each case `n` times.
    pub fn repeat(mut self, n: u32) -> Self {
        self.repeat = n;
        self
    }

    /// Retry failed tasks under `policy`.
    pub fn retry_task(mut self, policy: RetryPolicy) -> Self {
        self.retry_task = Some(policy);
        self
    }

    /// Retry failed evaluators under `policy`.
    pub fn retry_evaluators(mut self, policy: RetryPolicy) -> Self {
        self.retry_evaluators = Some(policy);
        self
    }

    /// Time out each attempt of the task after `t`.
    pub fn task_timeout(mut self, t: Duration) -> Self {
        self.task_timeout = Some(t);
        self
    }

    /// Show or hide the progress bar.
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Time with `clock`.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

enum Outcome<O> {
    Done {
        output: O,
        duration: Duration,
        recorded: Recorded,
        attempts: u32,
    },
    Failed {
        error: String,
        recorded: Recorded,
        attempts: u32,
    },
}

enum RunResult {
    Case(Box<ReportCase>),
    Failure(Box<ReportCaseFailure>),
}

fn unique(name: String, taken: &mut Vec<String>) -> String {
    if !taken.contains(&name) {
        taken.push(name.clone());
        return name;
    }
    let mut i = 2;
    loop {
        let n = format!("{name}_{i}");
        if !taken.contains(&n) {
            taken.push(n.clone());
            return n;
        }
        i += 1;
    }
}

impl<I, O, M> Dataset<I, O, M>
where
    I: Clone + Serialize + Send + Sync,
    O: Clone + Serialize + Send + Sync,
    M: Clone + Serialize + Send + Sync,
{
    /// Run every case through `task` (each `options.repeat` times) and judge the outputs with
    /// the evaluators. A task that fails, panics or times out (after its retries) becomes a
    /// failure of its case in the report; an evaluator that fails becomes an evaluator failure
    /// of its case. Neither stops the evaluation.
    ///
    /// The task is any async function of the inputs: an agent run, a workflow started on an
    /// engine, plain code. Agent runs made with [`crate::scope()`] inside it report their usage
    /// and trace to the case.
    pub async fn evaluate<F, Fut, E>(&self, task: F, options: EvaluateOptions) -> EvaluationReport
    where
        F: Fn(I) -> Fut,
        Fut: Future<Output = Result<O, E>>,
        E: Into<BoxError>,
    {
        let repeat = options.repeat.max(1);
        let runs: Vec<(usize, u32)> = (0..self.cases.len())
            .flat_map(|c| (1..=repeat).map(move |r| (c, r)))
            .collect();
        let total = runs.len();
        let limit = options.max_concurrency.unwrap_or(total).max(1);
        let name = options
            .name
            .clone()
            .or_else(|| self.name.clone())
            .unwrap_or_else(|| "evaluation".into());
        let bar = progress_bar(options.progress, total as u64, &name);
        let task = &task;
        let opts = &options;
        let mut results: Vec<(usize, RunResult)> =
            futures::stream::iter(runs.into_iter().enumerate())
                .map(|(i, (case, rep))| async move {
                    (i, self.run_one(case, rep, repeat, task, opts).await)
                })
                .buffer_unordered(limit)
                .inspect(|_| bar.inc(1))
                .collect()
                .await;
        bar.finish_and_clear();
        results.sort_by_key(|(i, _)| *i);
        let mut report = EvaluationReport::new(name);
        report.metadata = options.metadata.clone();
        for (_, r) in results {
            match r {
                RunResult::Case(c) => report.cases.push(*c),
                RunResult::Failure(f) => report.failures.push(*f),
            }
        }
        report
    }

    async fn run_task<F, Fut, E>(&self, inputs: &I, task: &F, opts: &EvaluateOptions) -> Outcome<O>
    where
        F: Fn(I) -> Fut,
        Fut: Future<Output = Result<O, E>>,
        E: Into<BoxError>,
    {
        let clock = opts.clock.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let collector = Arc::new(Collector::new(clock.clone()));
            let started = clock.now();
            let input = inputs.clone();
            let run = AssertUnwindSafe(async move { task(input).await }).catch_unwind();
            let run = collect(collector.clone(), run);
            let result: Result<O, String> = match opts.task_timeout {
                Some(t) => match tokio::time::timeout(t, run).await {
                    Ok(r) => flatten(r),
                    Err(_) => Err(format!(
                        "timed out after {}",
                        crate::render::fmt_duration(t.as_secs_f64())
                    )),
                },
                None => flatten(run.await),
            };
            let duration = clock.now().saturating_sub(started);
            let recorded = collector.take();
            match result {
                Ok(output) => {
                    return Outcome::Done {
                        output,
                        duration,
                        recorded,
                        attempts: attempt,
                    };
                }
                Err(error) => match opts.retry_task.and_then(|p| p.delay_after(attempt, None)) {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => {
                        return Outcome::Failed {
                            error,
                            recorded,
                            attempts: attempt,
                        };
                    }
                },
            }
        }
    }

    async fn run_one<F, Fut, E>(
        &self,
        case_index: usize,
        rep: u32,
        repeat: u32,
        task: &F,
        opts: &EvaluateOptions,
    ) -> RunResult
    where
        F: Fn(I) -> Fut,
        Fut: Future<Output = Result<O, E>>,
        E: Into<BoxError>,
    {
        let case = &self.cases[case_index];
        let started = opts.clock.now();
        let (name, repeat_info) = if repeat > 1 {
            (
                format!("{} [{rep}/{repeat}]", case.name),
                Some(Repeat {
                    index: rep,
                    count: repeat,
                }),
            )
        } else {
            (case.name.clone(), None)
        };
        let metadata = case.metadata.as_ref().map(to_json).unwrap_or(Value::Null);
        let expected = case.expected_output.as_ref().map(to_json);
        match self.run_task(&case.inputs, task, opts).await {
            Outcome::Failed {
                error,
                recorded,
                attempts,
            } => RunResult::Failure(Box::new(ReportCaseFailure {
                name,
                source_case_name: case.name.clone(),
                repeat: repeat_info,
                inputs: to_json(&case.inputs),
                metadata,
                expected_output: expected,
                error,
                attempts,
                usage: recorded.usage,
                trace: recorded.trace,
            })),
            Outcome::Done {
                output,
                duration,
                recorded,
                attempts,
            } => {
                let ctx = EvaluatorContext {
                    name: name.clone(),
                    source_case_name: case.name.clone(),
                    inputs: case.inputs.clone(),
                    metadata: case.metadata.clone(),
                    expected_output: case.expected_output.clone(),
                    output,
                    duration,
                    metrics: recorded.metrics,
                    attributes: recorded.attributes,
                    usage: recorded.usage,
                    trace: recorded.trace,
                };
                let evaluators: Vec<&Arc<dyn Evaluator<I, O, M>>> = self
                    .evaluators
                    .iter()
                    .chain(case.evaluators.iter())
                    .collect();
                let outputs = futures::future::join_all(
                    evaluators
                        .iter()
                        .map(|e| run_evaluator(e.as_ref(), &ctx, opts.retry_evaluators)),
                )
                .await;
                let mut rc = ReportCase {
                    name,
                    source_case_name: case.name.clone(),
                    repeat: repeat_info,
                    inputs: to_json(&ctx.inputs),
                    metadata,
                    expected_output: expected,
                    output: to_json(&ctx.output),
                    metrics: ctx.metrics.clone(),
                    attributes: ctx.attributes.clone(),
                    assertions: Vec::new(),
                    scores: Vec::new(),
                    labels: Vec::new(),
                    evaluator_failures: Vec::new(),
                    usage: ctx.usage.clone(),
                    task_duration: duration.as_secs_f64(),
                    total_duration: 0.0,
                    attempts,
                    trace: ctx.trace.clone(),
                };
                let mut taken: [Vec<String>; 3] = Default::default();
                for (e, out) in evaluators.iter().zip(outputs) {
                    let source = e.name();
                    match out {
                        Err(error) => rc.evaluator_failures.push(EvaluatorFailure {
                            name: source,
                            error,
                        }),
                        Ok(items) => {
                            for item in items {
                                let n = item.name.unwrap_or_else(|| source.clone());
                                match item.value {
                                    EvalValue::Assertion(v) => {
                                        rc.assertions.push(EvaluationResult {
                                            name: unique(n, &mut taken[0]),
                                            value: v,
                                            reason: item.reason,
                                            source: source.clone(),
                                        })
                                    }
                                    EvalValue::Score(v) => rc.scores.push(EvaluationResult {
                                        name: unique(n, &mut taken[1]),
                                        value: v,
                                        reason: item.reason,
                                        source: source.clone(),
                                    }),
                                    EvalValue::Label(v) => rc.labels.push(EvaluationResult {
                                        name: unique(n, &mut taken[2]),
                                        value: v,
                                        reason: item.reason,
                                        source: source.clone(),
                                    }),
                                }
                            }
                        }
                    }
                }
                rc.total_duration = opts.clock.now().saturating_sub(started).as_secs_f64();
                RunResult::Case(Box::new(rc))
            }
        }
    }
}

fn flatten<O, E: Into<BoxError>>(
    r: Result<Result<O, E>, Box<dyn Any + Send>>,
) -> Result<O, String> {
    match r {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(e)) => Err(e.into().to_string()),
        Err(p) => Err(panic_message(p.as_ref())),
    }
}

async fn run_evaluator<I, O, M>(
    e: &dyn Evaluator<I, O, M>,
    ctx: &EvaluatorContext<I, O, M>,
    retry: Option<RetryPolicy>,
) -> Result<Vec<crate::output::OutputItem>, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = AssertUnwindSafe(async { e.evaluate(ctx).await })
            .catch_unwind()
            .await;
        let r = match r {
            Ok(Ok(out)) => return Ok(out.into_items()),
            Ok(Err(err)) => err.to_string(),
            Err(p) => panic_message(p.as_ref()),
        };
        match retry.and_then(|p| p.delay_after(attempt, None)) {
            Some(d) => tokio::time::sleep(d).await,
            None => return Err(r),
        }
    }
}

fn progress_bar(on: bool, total: u64, name: &str) -> indicatif::ProgressBar {
    if !on {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} cases [{elapsed}]")
    {
        bar.set_style(style);
    }
    bar.set_message(format!("Evaluating {name}"));
    bar
}
