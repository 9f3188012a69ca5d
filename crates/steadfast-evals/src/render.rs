//! The terminal table of a report, of a report against a baseline, and of several experiments
//! side by side. Plain text (box-drawing characters, no colours), so it can be pasted into a
//! README and compared in snapshot tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;
use unicode_width::UnicodeWidthStr;

use crate::report::{EvaluationReport, ReportAverages, ReportCase};

/// What a rendered table shows. The defaults follow pydantic-evals: no inputs, metadata,
/// expected outputs or outputs; durations, usage, averages, errors and evaluator failures on.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderOptions {
    /// A column with the inputs.
    pub include_input: bool,
    /// A column with the metadata.
    pub include_metadata: bool,
    /// A column with the expected output.
    pub include_expected_output: bool,
    /// A column with the output.
    pub include_output: bool,
    /// The task duration column.
    pub include_durations: bool,
    /// Also the total duration (retries and evaluators included).
    pub include_total_duration: bool,
    /// Requests, tokens and cost columns (each hidden when it is zero everywhere).
    pub include_usage: bool,
    /// The averages row.
    pub include_averages: bool,
    /// The table of failed runs.
    pub include_errors: bool,
    /// The evaluator failures column.
    pub include_evaluator_failures: bool,
    /// The evaluators' reasons, after assertions and scores.
    pub include_reasons: bool,
    /// In a diff, the cases that only the baseline has.
    pub include_removed_cases: bool,
    /// One row per case with the averages of its repeats, instead of one row per run.
    pub aggregate_repeats: bool,
    /// Longer cell text is cut with `…`.
    pub max_cell_width: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            include_input: false,
            include_metadata: false,
            include_expected_output: false,
            include_output: false,
            include_durations: true,
            include_total_duration: false,
            include_usage: true,
            include_averages: true,
            include_errors: true,
            include_evaluator_failures: true,
            include_reasons: false,
            include_removed_cases: false,
            aggregate_repeats: false,
            max_cell_width: 40,
        }
    }
}

impl RenderOptions {
    /// The defaults without durations: what snapshot tests compare.
    pub fn without_durations() -> Self {
        RenderOptions {
            include_durations: false,
            include_total_duration: false,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
    Center,
}

#[derive(Debug, Clone, PartialEq)]
enum Col {
    Inputs,
    Metadata,
    Expected,
    Output,
    Score(String),
    Label(String),
    Metric(String),
    Assertion(String),
    EvalFailures,
    Requests,
    Tokens,
    Cost,
    Duration,
    TotalDuration,
}

impl Col {
    fn header(&self) -> String {
        match self {
            Col::Inputs => "Inputs".into(),
            Col::Metadata => "Metadata".into(),
            Col::Expected => "Expected Output".into(),
            Col::Output => "Outputs".into(),
            Col::Score(n) | Col::Label(n) | Col::Metric(n) | Col::Assertion(n) => n.clone(),
            Col::EvalFailures => "Evaluator Failures".into(),
            Col::Requests => "Requests".into(),
            Col::Tokens => "Tokens".into(),
            Col::Cost => "Cost".into(),
            Col::Duration => "Duration".into(),
            Col::TotalDuration => "Total".into(),
        }
    }

    fn align(&self) -> Align {
        match self {
            Col::Inputs
            | Col::Metadata
            | Col::Expected
            | Col::Output
            | Col::Label(_)
            | Col::EvalFailures => Align::Left,
            Col::Assertion(_) => Align::Center,
            _ => Align::Right,
        }
    }

    fn numeric(&self) -> bool {
        matches!(
            self,
            Col::Score(_)
                | Col::Metric(_)
                | Col::Requests
                | Col::Tokens
                | Col::Cost
                | Col::Duration
                | Col::TotalDuration
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Check {
    Pass(bool, Option<String>),
    Rate(f64),
}

/// One row's figures, from a run, a group of runs or the averages.
#[derive(Debug, Clone, Default)]
struct Row {
    name: String,
    inputs: Option<Value>,
    metadata: Option<Value>,
    expected: Option<Value>,
    output: Option<Value>,
    scores: BTreeMap<String, (f64, Option<String>)>,
    labels: BTreeMap<String, String>,
    metrics: BTreeMap<String, f64>,
    checks: BTreeMap<String, Check>,
    failures: Vec<String>,
    requests: f64,
    tokens: f64,
    cost: f64,
    unpriced: bool,
    duration: f64,
    total: f64,
}

impl Row {
    fn of_case(c: &ReportCase) -> Row {
        Row {
            name: c.name.clone(),
            inputs: Some(c.inputs.clone()),
            metadata: Some(c.metadata.clone()),
            expected: c.expected_output.clone(),
            output: Some(c.output.clone()),
            scores: c
                .scores
                .iter()
                .map(|s| (s.name.clone(), (s.value, s.reason.clone())))
                .collect(),
            labels: c
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
            metrics: c.metrics.clone(),
            checks: c
                .assertions
                .iter()
                .map(|a| (a.name.clone(), Check::Pass(a.value, a.reason.clone())))
                .collect(),
            failures: c
                .evaluator_failures
                .iter()
                .map(|f| format!("{}: {}", f.name, f.error))
                .collect(),
            requests: c.usage.requests as f64,
            tokens: c.usage.total_tokens() as f64,
            cost: c.usage.cost_usd,
            unpriced: c.usage.unpriced_requests > 0,
            duration: c.task_duration,
            total: c.total_duration,
        }
    }

    fn of_averages(name: &str, a: &ReportAverages) -> Row {
        Row {
            name: name.to_string(),
            scores: a
                .scores
                .iter()
                .map(|(k, v)| (k.clone(), (*v, None)))
                .collect(),
            labels: a
                .labels
                .iter()
                .map(|(k, dist)| (k.clone(), label_distribution(dist)))
                .collect(),
            metrics: a.metrics.clone(),
            checks: a
                .assertions
                .iter()
                .map(|(k, v)| (k.clone(), Check::Rate(*v)))
                .collect(),
            requests: a.requests,
            tokens: a.total_tokens(),
            cost: a.cost_usd,
            duration: a.task_duration,
            total: a.total_duration,
            ..Default::default()
        }
    }

    fn number(&self, col: &Col) -> Option<f64> {
        match col {
            Col::Score(n) => self.scores.get(n).map(|s| s.0),
            Col::Metric(n) => self.metrics.get(n).copied(),
            Col::Requests => Some(self.requests),
            Col::Tokens => Some(self.tokens),
            Col::Cost => Some(self.cost),
            Col::Duration => Some(self.duration),
            Col::TotalDuration => Some(self.total),
            _ => None,
        }
    }
}

fn label_distribution(dist: &BTreeMap<String, f64>) -> String {
    let mut items: Vec<(&String, &f64)> = dist.iter().collect();
    items.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
    items
        .iter()
        .map(|(v, share)| format!("{v} {:.0}%", *share * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A number for people: whole numbers as they are, others with two decimals (three below 0.1).
pub fn fmt_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return group_thousands(&format!("{v:.0}"));
    }
    if v.abs() < 0.1 {
        format!("{v:.3}")
    } else {
        group_thousands(&format!("{v:.2}"))
    }
}

fn group_thousands(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map(|r| ("-", r)).unwrap_or(("", s));
    let (int, frac) = rest
        .split_once('.')
        .map(|(i, f)| (i, Some(f)))
        .unwrap_or((rest, None));
    if int.len() <= 3 {
        return s.to_string();
    }
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// A count (or an average of counts): whole numbers as they are, others with one decimal.
fn fmt_count(v: f64) -> String {
    if v.fract() == 0.0 || !v.is_finite() {
        fmt_number(v)
    } else {
        group_thousands(&format!("{v:.1}"))
    }
}

/// A duration in seconds for people: µs, ms, s or minutes.
pub fn fmt_duration(secs: f64) -> String {
    if secs < 0.001 {
        format!("{:.0}µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.1}ms", secs * 1e3)
    } else if secs < 60.0 {
        format!("{secs:.2}s")
    } else {
        format!("{}m{:02.0}s", (secs / 60.0).floor(), secs % 60.0)
    }
}

/// A cost in US dollars.
pub fn fmt_cost(usd: f64) -> String {
    if usd == 0.0 {
        "$0".into()
    } else if usd.abs() < 0.001 {
        format!("${usd:.6}")
    } else {
        format!("${usd:.4}")
    }
}

fn fmt_rate(r: f64) -> String {
    format!("{:.0}%", r * 100.0)
}

fn cut(s: &str, width: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c == '\n' || c == '\r' || c == '\t' {
                ' '
            } else {
                c
            }
        })
        .collect();
    if s.width() <= width {
        return s;
    }
    let mut out = String::new();
    let mut w = 0;
    for ch in s.chars() {
        let cw = unicode_width::UnicodeWidthChar::width(ch).unwrap_or(0);
        if w + cw + 1 > width {
            break;
        }
        out.push(ch);
        w += cw;
    }
    out.push('…');
    out
}

fn value_text(v: &Option<Value>, width: usize) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(v) => cut(&crate::json::text(v), width),
    }
}

/// The score and metric columns where some case has a fractional value: their whole numbers get
/// decimals too, so the column lines up.
fn fractional_columns(cols: &[Col], rows: &[&Row]) -> Vec<Col> {
    cols.iter()
        .filter(|c| matches!(c, Col::Score(_) | Col::Metric(_)))
        .filter(|c| {
            rows.iter()
                .any(|r| r.number(c).is_some_and(|v| v.fract() != 0.0))
        })
        .cloned()
        .collect()
}

fn fmt_in_column(v: f64, fractional: bool) -> String {
    if fractional && v.fract() == 0.0 && v.abs() < 1e15 {
        group_thousands(&format!("{v:.2}"))
    } else {
        fmt_number(v)
    }
}

fn fmt_col(col: &Col, row: &Row, opts: &RenderOptions, fractional: &[Col]) -> String {
    let frac = fractional.contains(col);
    let w = opts.max_cell_width;
    let with_reason = |text: String, reason: &Option<String>| match reason {
        Some(r) if opts.include_reasons => cut(&format!("{text} {r}"), w),
        _ => text,
    };
    match col {
        Col::Inputs => value_text(&row.inputs, w),
        Col::Metadata => value_text(&row.metadata, w),
        Col::Expected => value_text(&row.expected, w),
        Col::Output => value_text(&row.output, w),
        Col::Score(n) => match row.scores.get(n) {
            Some((v, reason)) => with_reason(fmt_in_column(*v, frac), reason),
            None => String::new(),
        },
        Col::Label(n) => cut(row.labels.get(n).map(String::as_str).unwrap_or(""), w),
        Col::Metric(n) => row
            .metrics
            .get(n)
            .map(|v| fmt_number(*v))
            .unwrap_or_default(),
        Col::Assertion(n) => match row.checks.get(n) {
            Some(Check::Pass(p, reason)) => with_reason(mark(*p).to_string(), reason),
            Some(Check::Rate(r)) => fmt_rate(*r),
            None => String::new(),
        },
        Col::EvalFailures => cut(&row.failures.join("; "), w),
        Col::Requests => fmt_count(row.requests),
        Col::Tokens => fmt_count(row.tokens),
        Col::Cost => {
            let c = fmt_cost(row.cost);
            if row.unpriced { format!("{c}*") } else { c }
        }
        Col::Duration => fmt_duration(row.duration),
        Col::TotalDuration => fmt_duration(row.total),
    }
}

fn mark(pass: bool) -> &'static str {
    if pass { "✔" } else { "✗" }
}

fn push_unique(v: &mut Vec<String>, name: &str) {
    if !v.iter().any(|x| x == name) {
        v.push(name.to_string());
    }
}

/// The columns the rows need, in a fixed order of groups.
fn columns(rows: &[&Row], opts: &RenderOptions) -> Vec<Col> {
    let mut cols = Vec::new();
    let has = |f: &dyn Fn(&Row) -> bool| rows.iter().any(|r| f(r));
    let present = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
    if opts.include_input && has(&|r| present(&r.inputs)) {
        cols.push(Col::Inputs);
    }
    if opts.include_metadata && has(&|r| present(&r.metadata)) {
        cols.push(Col::Metadata);
    }
    if opts.include_expected_output && has(&|r| present(&r.expected)) {
        cols.push(Col::Expected);
    }
    if opts.include_output && has(&|r| present(&r.output)) {
        cols.push(Col::Output);
    }
    let (mut scores, mut labels, mut metrics, mut checks) = (vec![], vec![], vec![], vec![]);
    for r in rows {
        r.scores.keys().for_each(|k| push_unique(&mut scores, k));
        r.labels.keys().for_each(|k| push_unique(&mut labels, k));
        r.metrics.keys().for_each(|k| push_unique(&mut metrics, k));
        r.checks.keys().for_each(|k| push_unique(&mut checks, k));
    }
    cols.extend(scores.into_iter().map(Col::Score));
    cols.extend(labels.into_iter().map(Col::Label));
    cols.extend(metrics.into_iter().map(Col::Metric));
    cols.extend(checks.into_iter().map(Col::Assertion));
    if opts.include_evaluator_failures && has(&|r| !r.failures.is_empty()) {
        cols.push(Col::EvalFailures);
    }
    if opts.include_usage {
        if has(&|r| r.requests > 0.0) {
            cols.push(Col::Requests);
        }
        if has(&|r| r.tokens > 0.0) {
            cols.push(Col::Tokens);
        }
        if has(&|r| r.cost > 0.0 || r.unpriced) {
            cols.push(Col::Cost);
        }
    }
    if opts.include_durations {
        cols.push(Col::Duration);
        if opts.include_total_duration {
            cols.push(Col::TotalDuration);
        }
    }
    cols
}

/// The assertions of the case rows keep the evaluators' order; sort the other groups by the
/// order the first row has them in (the maps sort names alphabetically already).
fn case_rows(report: &EvaluationReport, opts: &RenderOptions) -> Vec<Row> {
    if opts.aggregate_repeats {
        report
            .case_groups()
            .iter()
            .map(|(name, avg)| {
                let mut row = Row::of_averages(name, avg);
                // Inputs and the rest are the same for every run of a case.
                if let Some(first) = report.cases.iter().find(|c| &c.source_case_name == name) {
                    row.inputs = Some(first.inputs.clone());
                    row.metadata = Some(first.metadata.clone());
                    row.expected = first.expected_output.clone();
                    row.output = Some(first.output.clone());
                    row.failures = report
                        .cases
                        .iter()
                        .filter(|c| &c.source_case_name == name)
                        .flat_map(|c| {
                            c.evaluator_failures
                                .iter()
                                .map(|f| format!("{}: {}", f.name, f.error))
                        })
                        .collect();
                }
                row
            })
            .collect()
    } else {
        report.cases.iter().map(Row::of_case).collect()
    }
}

/// Assertion columns follow the order the evaluators produced them in, not the alphabet.
fn order_checks(cols: &mut [Col], report: &EvaluationReport) {
    let mut order: Vec<String> = Vec::new();
    for c in &report.cases {
        for a in &c.assertions {
            push_unique(&mut order, &a.name);
        }
    }
    let positions: Vec<usize> = cols
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, Col::Assertion(_)))
        .map(|(i, _)| i)
        .collect();
    let mut checks: Vec<Col> = positions.iter().map(|i| cols[*i].clone()).collect();
    checks.sort_by_key(|c| match c {
        Col::Assertion(n) => order.iter().position(|o| o == n).unwrap_or(usize::MAX),
        _ => usize::MAX,
    });
    for (i, c) in positions.into_iter().zip(checks) {
        cols[i] = c;
    }
}

struct Table {
    title: String,
    headers: Vec<String>,
    aligns: Vec<Align>,
    body: Vec<Vec<String>>,
    footer: Vec<Vec<String>>,
}

fn pad(s: &str, width: usize, align: Align) -> String {
    let w = s.width();
    let gap = width.saturating_sub(w);
    match align {
        Align::Left => format!("{s}{}", " ".repeat(gap)),
        Align::Right => format!("{}{s}", " ".repeat(gap)),
        Align::Center => {
            let left = gap / 2;
            format!("{}{s}{}", " ".repeat(left), " ".repeat(gap - left))
        }
    }
}

impl Table {
    fn draw(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.width()).collect();
        for row in self.body.iter().chain(&self.footer) {
            for (i, cell) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(cell.width());
            }
        }
        let line = |l: &str, fill: &str, mid: &str, r: &str| {
            let parts: Vec<String> = widths.iter().map(|w| fill.repeat(w + 2)).collect();
            format!("{l}{}{r}\n", parts.join(mid))
        };
        let row_text = |cells: &[String], sep: &str, aligns: &[Align]| {
            let parts: Vec<String> = (0..n)
                .map(|i| {
                    let cell = cells.get(i).map(String::as_str).unwrap_or("");
                    format!(" {} ", pad(cell, widths[i], aligns[i]))
                })
                .collect();
            format!("{sep}{}{sep}\n", parts.join(sep))
        };
        let total: usize = widths.iter().map(|w| w + 3).sum::<usize>() + 1;
        let mut out = String::new();
        if !self.title.is_empty() {
            let tw = self.title.width();
            let left = total.saturating_sub(tw) / 2;
            let _ = writeln!(out, "{}{}", " ".repeat(left), self.title);
        }
        out.push_str(&line("┏", "━", "┳", "┓"));
        let header_aligns = vec![Align::Center; n];
        let mut header_aligns = header_aligns;
        header_aligns[0] = Align::Left;
        out.push_str(&row_text(&self.headers, "┃", &header_aligns));
        out.push_str(&line("┡", "━", "╇", "┩"));
        for r in &self.body {
            out.push_str(&row_text(r, "│", &self.aligns));
        }
        if !self.footer.is_empty() {
            if !self.body.is_empty() {
                out.push_str(&line("├", "─", "┼", "┤"));
            }
            for r in &self.footer {
                out.push_str(&row_text(r, "│", &self.aligns));
            }
        }
        out.push_str(&line("└", "─", "┴", "┘"));
        out
    }
}

fn failures_table(report: &EvaluationReport, opts: &RenderOptions) -> Option<String> {
    if !opts.include_errors || report.failures.is_empty() {
        return None;
    }
    let mut headers = vec!["Case ID".to_string()];
    let mut aligns = vec![Align::Left];
    if opts.include_input {
        headers.push("Inputs".into());
        aligns.push(Align::Left);
    }
    headers.push("Error".into());
    aligns.push(Align::Left);
    let body = report
        .failures
        .iter()
        .map(|f| {
            let mut row = vec![f.name.clone()];
            if opts.include_input {
                row.push(value_text(&Some(f.inputs.clone()), opts.max_cell_width));
            }
            let attempts = if f.attempts > 1 {
                format!(" (after {} attempts)", f.attempts)
            } else {
                String::new()
            };
            row.push(cut(
                &format!("{}{attempts}", f.error),
                opts.max_cell_width.max(60) * 2,
            ));
            row
        })
        .collect();
    Some(
        Table {
            title: "Case Failures".into(),
            headers,
            aligns,
            body,
            footer: vec![],
        }
        .draw(),
    )
}

impl EvaluationReport {
    /// The report as a table: a row per run, a column per figure, an averages row; then a table
    /// of the failed runs.
    pub fn render(&self, opts: &RenderOptions) -> String {
        let rows = case_rows(self, opts);
        let avg = self.averages().map(|a| Row::of_averages("Averages", &a));
        let all: Vec<&Row> = rows.iter().chain(avg.iter()).collect();
        let mut cols = columns(&all, opts);
        order_checks(&mut cols, self);
        let mut headers = vec!["Case ID".to_string()];
        let mut aligns = vec![Align::Left];
        for c in &cols {
            headers.push(c.header());
            aligns.push(c.align());
        }
        let frac = fractional_columns(&cols, &rows.iter().collect::<Vec<_>>());
        let to_cells = |r: &Row| {
            let mut cells = vec![r.name.clone()];
            cells.extend(cols.iter().map(|c| fmt_col(c, r, opts, &frac)));
            cells
        };
        let body: Vec<Vec<String>> = rows.iter().map(to_cells).collect();
        let footer: Vec<Vec<String>> = match (&avg, opts.include_averages) {
            (Some(a), true) => vec![to_cells(a)],
            _ => vec![],
        };
        let mut out = Table {
            title: format!("Evaluation Summary: {}", self.name),
            headers,
            aligns,
            body,
            footer,
        }
        .draw();
        if let Some(f) = failures_table(self, opts) {
            out.push('\n');
            out.push_str(&f);
        }
        out
    }

    /// The report against a `baseline` (an earlier run, another model): the same table, where
    /// each figure is followed by a `Δ` column with its change, and changed assertions and labels
    /// show `old→new`. Cases match by name.
    pub fn render_diff(&self, baseline: &EvaluationReport, opts: &RenderOptions) -> String {
        let new_rows = case_rows(self, opts);
        let old_rows = case_rows(baseline, opts);
        let new_avg = self.averages().map(|a| Row::of_averages("Averages", &a));
        let old_avg = baseline
            .averages()
            .map(|a| Row::of_averages("Averages", &a));
        let mut pairs: Vec<(Option<&Row>, Option<&Row>)> = new_rows
            .iter()
            .map(|r| (Some(r), old_rows.iter().find(|o| o.name == r.name)))
            .collect();
        if opts.include_removed_cases {
            for o in &old_rows {
                if !new_rows.iter().any(|r| r.name == o.name) {
                    pairs.push((None, Some(o)));
                }
            }
        }
        let all: Vec<&Row> = new_rows
            .iter()
            .chain(old_rows.iter())
            .chain(new_avg.iter())
            .chain(old_avg.iter())
            .collect();
        let mut cols = columns(&all, opts);
        order_checks(&mut cols, self);
        let body_rows: Vec<&Row> = new_rows.iter().chain(old_rows.iter()).collect();
        let frac = fractional_columns(&cols, &body_rows);
        let mut headers = vec!["Case ID".to_string()];
        let mut aligns = vec![Align::Left];
        for c in &cols {
            headers.push(c.header());
            aligns.push(c.align());
            if c.numeric() {
                headers.push("Δ".into());
                aligns.push(Align::Right);
            }
        }
        let cells = |new: Option<&Row>, old: Option<&Row>| {
            let name = match (new, old) {
                (Some(n), Some(_)) => n.name.clone(),
                (Some(n), None) if n.name == "Averages" => n.name.clone(),
                (Some(n), None) => format!("{} (new)", n.name),
                (None, Some(o)) => format!("{} (removed)", o.name),
                (None, None) => String::new(),
            };
            let mut out = vec![name];
            for c in &cols {
                let now = new.map(|r| fmt_col(c, r, opts, &frac)).unwrap_or_default();
                let before = old.map(|r| fmt_col(c, r, opts, &frac)).unwrap_or_default();
                if c.numeric() {
                    out.push(now);
                    out.push(
                        match (new.and_then(|r| r.number(c)), old.and_then(|r| r.number(c))) {
                            (Some(a), Some(b)) if new.is_some() => fmt_delta(c, a, b),
                            _ => String::new(),
                        },
                    );
                } else if new.is_some()
                    && old.is_some()
                    && now != before
                    && !before.is_empty()
                    && !now.is_empty()
                    && matches!(c, Col::Assertion(_) | Col::Label(_))
                {
                    out.push(format!("{before}→{now}"));
                } else {
                    out.push(now);
                }
            }
            out
        };
        let body: Vec<Vec<String>> = pairs.iter().map(|(n, o)| cells(*n, *o)).collect();
        let footer = match (&new_avg, opts.include_averages) {
            (Some(a), true) => vec![cells(Some(a), old_avg.as_ref())],
            _ => vec![],
        };
        let mut out = Table {
            title: format!("Evaluation Diff: {} → {}", baseline.name, self.name),
            headers,
            aligns,
            body,
            footer,
        }
        .draw();
        if let Some(f) = failures_table(self, opts) {
            out.push('\n');
            out.push_str(&f);
        }
        out
    }
}

fn fmt_delta(col: &Col, new: f64, old: f64) -> String {
    let d = new - old;
    if d == 0.0 || (d.abs() < 1e-12) {
        return "=".into();
    }
    let sign = if d > 0.0 { "+" } else { "-" };
    match col {
        Col::Duration | Col::TotalDuration => {
            if old > 0.0 {
                format!("{sign}{:.0}%", (d / old * 100.0).abs())
            } else {
                format!("{sign}{}", fmt_duration(d.abs()))
            }
        }
        Col::Cost => format!("{sign}{}", fmt_cost(d.abs())),
        Col::Requests | Col::Tokens => format!("{sign}{}", fmt_count(d.abs())),
        _ => format!("{sign}{}", fmt_number(d.abs())),
    }
}

/// Several experiments side by side (models, strategies, prompt versions): a row per report
/// with its averages, the number of runs that succeeded, and its assertion pass rates.
pub fn render_comparison(reports: &[&EvaluationReport], opts: &RenderOptions) -> String {
    let rows: Vec<(Row, String)> = reports
        .iter()
        .map(|r| {
            let done = r.cases.len();
            let total = done + r.failures.len();
            let row = match r.averages() {
                Some(a) => Row::of_averages(&r.name, &a),
                None => Row {
                    name: r.name.clone(),
                    ..Default::default()
                },
            };
            (row, format!("{done}/{total}"))
        })
        .collect();
    let refs: Vec<&Row> = rows.iter().map(|(r, _)| r).collect();
    let mut cols = columns(&refs, opts);
    cols.retain(|c| {
        !matches!(
            c,
            Col::Inputs | Col::Metadata | Col::Expected | Col::Output | Col::EvalFailures
        )
    });
    let frac = fractional_columns(&cols, &refs);
    let mut headers = vec!["Experiment".to_string(), "Cases".to_string()];
    let mut aligns = vec![Align::Left, Align::Right];
    for c in &cols {
        headers.push(c.header());
        aligns.push(c.align());
    }
    let body = rows
        .iter()
        .map(|(r, cases)| {
            let mut cells = vec![r.name.clone(), cases.clone()];
            cells.extend(cols.iter().map(|c| fmt_col(c, r, opts, &frac)));
            cells
        })
        .collect();
    Table {
        title: "Comparison (averages per case)".into(),
        headers,
        aligns,
        body,
        footer: vec![],
    }
    .draw()
}

impl std::fmt::Display for EvaluationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(&RenderOptions::default()))
    }
}
