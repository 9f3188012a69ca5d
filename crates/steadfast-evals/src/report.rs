//! The result of an evaluation: one [`ReportCase`] per run of a case, the failures, and their
//! averages. Reports are plain data: they export to JSON and load back, to serve as a baseline.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use steadfast_core::Usage;

use crate::output::EvaluationResult;
use crate::trace::Trace;

/// Which run of a repeated case this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repeat {
    /// 1-based.
    pub index: u32,
    /// How many runs of the case there are.
    pub count: u32,
}

/// An evaluator that failed on a case (an error or a panic); the case's other results stand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluatorFailure {
    /// The evaluator.
    pub name: String,
    /// What went wrong.
    pub error: String,
}

fn one() -> u32 {
    1
}

/// One successful run of one case, with everything the evaluators said about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportCase {
    /// The run's name: the case name, with ` [i/n]` when cases are repeated.
    pub name: String,
    /// The case's name.
    pub source_case_name: String,
    /// Which run of a repeated case this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
    /// The inputs.
    pub inputs: Value,
    /// The metadata (`null` when none).
    #[serde(default)]
    pub metadata: Value,
    /// The expected output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output: Option<Value>,
    /// What the task returned.
    pub output: Value,
    /// Metrics the task recorded.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Attributes the task recorded.
    #[serde(default)]
    pub attributes: BTreeMap<String, Value>,
    /// Pass/fail results, in evaluator order.
    #[serde(default)]
    pub assertions: Vec<EvaluationResult<bool>>,
    /// Numeric results, in evaluator order.
    #[serde(default)]
    pub scores: Vec<EvaluationResult<f64>>,
    /// Categorical results, in evaluator order.
    #[serde(default)]
    pub labels: Vec<EvaluationResult<String>>,
    /// Evaluators that failed on this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluator_failures: Vec<EvaluatorFailure>,
    /// Tokens, requests, tool calls and cost of the agent runs in the task.
    #[serde(default)]
    pub usage: Usage,
    /// Seconds the task took (its successful attempt).
    pub task_duration: f64,
    /// Seconds for the whole run: every attempt of the task, and the evaluators.
    pub total_duration: f64,
    /// Attempts of the task (more than 1 after retries).
    #[serde(default = "one")]
    pub attempts: u32,
    /// The agent runs, model requests and tool calls in the task.
    #[serde(default, skip_serializing_if = "Trace::is_empty")]
    pub trace: Trace,
}

impl ReportCase {
    /// The assertion named `name`.
    pub fn assertion(&self, name: &str) -> Option<bool> {
        self.assertions
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value)
    }

    /// The score named `name`.
    pub fn score(&self, name: &str) -> Option<f64> {
        self.scores.iter().find(|a| a.name == name).map(|a| a.value)
    }

    /// The label named `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }

    /// Whether every assertion passed (true when there is none).
    pub fn all_passed(&self) -> bool {
        self.assertions.iter().all(|a| a.value)
    }
}

/// A run whose task failed (after its retries): no evaluator ran on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportCaseFailure {
    /// The run's name.
    pub name: String,
    /// The case's name.
    pub source_case_name: String,
    /// Which run of a repeated case this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
    /// The inputs.
    pub inputs: Value,
    /// The metadata.
    #[serde(default)]
    pub metadata: Value,
    /// The expected output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output: Option<Value>,
    /// The error of the last attempt (a panic's message for a panic).
    pub error: String,
    /// Attempts made.
    #[serde(default = "one")]
    pub attempts: u32,
    /// Usage of the agent runs of the last attempt, up to the failure.
    #[serde(default)]
    pub usage: Usage,
    /// The trace of the last attempt, up to the failure.
    #[serde(default, skip_serializing_if = "Trace::is_empty")]
    pub trace: Trace,
}

/// The figures of a report averaged over its cases. Repeated runs of a case are averaged first,
/// then the cases, so a case repeated more often does not weigh more.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportAverages {
    /// Runs averaged.
    pub count: usize,
    /// Mean of each score.
    pub scores: BTreeMap<String, f64>,
    /// Mean of each metric.
    pub metrics: BTreeMap<String, f64>,
    /// Pass rate (0–1) of each assertion.
    pub assertions: BTreeMap<String, f64>,
    /// Pass rate of all assertions together.
    pub assertion_pass_rate: Option<f64>,
    /// Share (0–1) of each value of each label.
    pub labels: BTreeMap<String, BTreeMap<String, f64>>,
    /// Mean model requests.
    pub requests: f64,
    /// Mean tool calls.
    pub tool_calls: f64,
    /// Mean input tokens.
    pub input_tokens: f64,
    /// Mean output tokens.
    pub output_tokens: f64,
    /// Mean cost in US dollars.
    pub cost_usd: f64,
    /// Mean task duration in seconds.
    pub task_duration: f64,
    /// Mean total duration in seconds.
    pub total_duration: f64,
}

impl ReportAverages {
    /// Mean input plus output tokens.
    pub fn total_tokens(&self) -> f64 {
        self.input_tokens + self.output_tokens
    }
}

/// The flat figures of one case, keyed by kind and name, for averaging.
type Figures = BTreeMap<(u8, String), f64>;

fn figures(c: &ReportCase) -> Figures {
    let mut f = BTreeMap::new();
    for s in &c.scores {
        f.insert((0, s.name.clone()), s.value);
    }
    for (k, v) in &c.metrics {
        f.insert((1, k.clone()), *v);
    }
    for a in &c.assertions {
        f.insert((2, a.name.clone()), if a.value { 1.0 } else { 0.0 });
    }
    if !c.assertions.is_empty() {
        let passed = c.assertions.iter().filter(|a| a.value).count() as f64;
        f.insert((3, String::new()), passed / c.assertions.len() as f64);
    }
    let u = &c.usage;
    for (k, v) in [
        ("requests", u.requests as f64),
        ("tool_calls", u.tool_calls as f64),
        ("input_tokens", u.input_tokens as f64),
        ("output_tokens", u.output_tokens as f64),
        ("cost_usd", u.cost_usd),
        ("task_duration", c.task_duration),
        ("total_duration", c.total_duration),
    ] {
        f.insert((4, k.to_string()), v);
    }
    f
}

fn mean_of(maps: &[Figures]) -> Figures {
    let mut sums: BTreeMap<(u8, String), (f64, usize)> = BTreeMap::new();
    for m in maps {
        for (k, v) in m {
            let e = sums.entry(k.clone()).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}

/// Averages of `cases`, two-level over their source cases.
pub fn averages_of(cases: &[&ReportCase]) -> Option<ReportAverages> {
    if cases.is_empty() {
        return None;
    }
    let mut groups: Vec<(&str, Vec<Figures>)> = Vec::new();
    for c in cases {
        match groups.iter_mut().find(|(n, _)| *n == c.source_case_name) {
            Some((_, g)) => g.push(figures(c)),
            None => groups.push((&c.source_case_name, vec![figures(c)])),
        }
    }
    let group_means: Vec<_> = groups.iter().map(|(_, g)| mean_of(g)).collect();
    let m = mean_of(&group_means);
    let mut a = ReportAverages {
        count: cases.len(),
        ..Default::default()
    };
    for ((kind, name), v) in m {
        match kind {
            0 => {
                a.scores.insert(name, v);
            }
            1 => {
                a.metrics.insert(name, v);
            }
            2 => {
                a.assertions.insert(name, v);
            }
            3 => a.assertion_pass_rate = Some(v),
            _ => match name.as_str() {
                "requests" => a.requests = v,
                "tool_calls" => a.tool_calls = v,
                "input_tokens" => a.input_tokens = v,
                "output_tokens" => a.output_tokens = v,
                "cost_usd" => a.cost_usd = v,
                "task_duration" => a.task_duration = v,
                "total_duration" => a.total_duration = v,
                _ => {}
            },
        }
    }
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for c in cases {
        for l in &c.labels {
            *counts
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default() += 1;
        }
    }
    for (name, values) in counts {
        let total: usize = values.values().sum();
        a.labels.insert(
            name,
            values
                .into_iter()
                .map(|(v, n)| (v, n as f64 / total as f64))
                .collect(),
        );
    }
    Some(a)
}

/// The result of evaluating a dataset with a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    /// The experiment's name (a model, a strategy, a prompt version).
    pub name: String,
    /// Facts about the experiment (the model, its settings, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    /// The runs that finished, in case order.
    pub cases: Vec<ReportCase>,
    /// The runs whose task failed.
    #[serde(default)]
    pub failures: Vec<ReportCaseFailure>,
}

/// Errors reading or writing a report file.
#[derive(Debug, thiserror::Error)]
pub enum ReportFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a report.
    #[error("{path}: not an evaluation report: {source}")]
    Json {
        /// The file.
        path: String,
        /// The error.
        source: serde_json::Error,
    },
}

impl EvaluationReport {
    /// An empty report named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        EvaluationReport {
            name: name.into(),
            metadata: BTreeMap::new(),
            cases: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// The run named `name`.
    pub fn case(&self, name: &str) -> Option<&ReportCase> {
        self.cases.iter().find(|c| c.name == name)
    }

    /// The failed run named `name`.
    pub fn failure(&self, name: &str) -> Option<&ReportCaseFailure> {
        self.failures.iter().find(|c| c.name == name)
    }

    /// The averages over the successful runs (`None` when there is none).
    pub fn averages(&self) -> Option<ReportAverages> {
        averages_of(&self.cases.iter().collect::<Vec<_>>())
    }

    /// The runs grouped by case, in case order, with each group's averages: one entry per case
    /// whatever the repeat count.
    pub fn case_groups(&self) -> Vec<(String, ReportAverages)> {
        let mut names: Vec<&str> = Vec::new();
        for c in &self.cases {
            if !names.contains(&c.source_case_name.as_str()) {
                names.push(&c.source_case_name);
            }
        }
        names
            .into_iter()
            .filter_map(|n| {
                let runs: Vec<&ReportCase> = self
                    .cases
                    .iter()
                    .filter(|c| c.source_case_name == n)
                    .collect();
                averages_of(&runs).map(|a| (n.to_string(), a))
            })
            .collect()
    }

    /// Whether every run succeeded and passed every assertion.
    pub fn all_passed(&self) -> bool {
        self.failures.is_empty()
            && self
                .cases
                .iter()
                .all(|c| c.all_passed() && c.evaluator_failures.is_empty())
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A report from JSON.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Write the report to a JSON file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ReportFileError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json() + "\n").map_err(|source| ReportFileError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Read a report from a JSON file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ReportFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ReportFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text).map_err(|source| ReportFileError::Json {
            path: path.display().to_string(),
            source,
        })
    }
}
