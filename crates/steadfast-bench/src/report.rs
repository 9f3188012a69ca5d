//! Figures and how they are shown: one line each as they are measured, then an aligned table,
//! a Markdown table, and JSON.
//!
//! Every figure carries a baseline measured in the same run, because these machines are noisy:
//! the ratio is the number to compare between runs, the absolute value the one to read.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The section (`overhead`, `commit`, ...).
    pub section: String,
    /// What was measured.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit (`µs`, `ms`, `steps/s`, `MB`, ...).
    pub unit: String,
    /// What the baseline is.
    pub baseline_name: Option<String>,
    /// The baseline, in the same unit.
    pub baseline: Option<f64>,
    /// `value / baseline`.
    pub ratio: Option<f64>,
    /// The target, as text (`≤ 100 µs`).
    pub target: Option<String>,
    /// Whether the target is met.
    pub met: Option<bool>,
    /// A remark (sample counts, checks).
    pub note: Option<String>,
}

impl Figure {
    /// A figure without baseline.
    pub fn new(section: &str, name: impl Into<String>, value: f64, unit: &str) -> Self {
        Figure {
            section: section.to_string(),
            name: name.into(),
            value,
            unit: unit.to_string(),
            baseline_name: None,
            baseline: None,
            ratio: None,
            target: None,
            met: None,
            note: None,
        }
    }

    /// Set the baseline (in the same unit) and the ratio.
    pub fn vs(mut self, name: impl Into<String>, baseline: f64) -> Self {
        self.baseline_name = Some(name.into());
        self.baseline = Some(baseline);
        self.ratio = (baseline != 0.0).then(|| self.value / baseline);
        self
    }

    /// Set the target and whether it is met.
    pub fn target(mut self, text: impl Into<String>, met: bool) -> Self {
        self.target = Some(text.into());
        self.met = Some(met);
        self
    }

    /// Add a remark.
    pub fn note(mut self, text: impl Into<String>) -> Self {
        self.note = Some(text.into());
        self
    }

    fn value_text(&self) -> String {
        format!("{} {}", num(self.value), self.unit)
    }

    fn baseline_text(&self) -> String {
        match (&self.baseline_name, self.baseline) {
            (Some(n), Some(b)) => format!("{n}: {} {}", num(b), self.unit),
            _ => String::new(),
        }
    }

    fn ratio_text(&self) -> String {
        self.ratio.map(|r| format!("{r:.2}×")).unwrap_or_default()
    }

    fn target_text(&self) -> String {
        match (&self.target, self.met) {
            (Some(t), Some(true)) => format!("{t} ✔"),
            (Some(t), Some(false)) => format!("{t} ✘"),
            (Some(t), None) => t.clone(),
            _ => String::new(),
        }
    }

    fn cells(&self) -> [String; 7] {
        [
            self.section.clone(),
            self.name.clone(),
            self.value_text(),
            self.baseline_text(),
            self.ratio_text(),
            self.target_text(),
            self.note.clone().unwrap_or_default(),
        ]
    }
}

/// A number with about three significant digits.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// All figures of a run, plus skipped sections and errors.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Whether this was a `--quick` run (tiny iteration counts: the figures mean little).
    pub quick: bool,
    /// CPU cores available.
    pub cores: usize,
    /// The figures, in measurement order.
    pub figures: Vec<Figure>,
    /// Sections skipped, with why.
    pub skipped: Vec<String>,
    /// Sections that failed, with the error.
    pub errors: Vec<String>,
}

const HEADERS: [&str; 7] = [
    "section",
    "measurement",
    "value",
    "baseline (same run)",
    "ratio",
    "target",
    "note",
];

impl Report {
    /// An empty report.
    pub fn new(quick: bool) -> Self {
        Report {
            quick,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            ..Report::default()
        }
    }

    /// Add a figure and print it at once (to stderr, as progress).
    pub fn add(&mut self, f: Figure) {
        let c = f.cells();
        eprintln!(
            "  {:<9} {:<52} {:>14}  {:>8}  {}",
            c[0], c[1], c[2], c[4], c[5]
        );
        self.figures.push(f);
    }

    /// Note a skipped section.
    pub fn skip(&mut self, why: impl Into<String>) {
        let why = why.into();
        eprintln!("  skipped: {why}");
        self.skipped.push(why);
    }

    /// Note a failed section.
    pub fn error(&mut self, section: &str, e: &anyhow::Error) {
        let text = format!("{section}: {e:#}");
        eprintln!("  ERROR {text}");
        self.errors.push(text);
    }

    /// The aligned plain-text table.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 7]> = self.figures.iter().map(Figure::cells).collect();
        let mut widths = HEADERS.map(|h| h.chars().count());
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
                let pad = w - c.chars().count();
                // Numbers right-aligned, text left-aligned.
                if i == 2 || i == 4 {
                    let _ = write!(out, "{}{c}  ", " ".repeat(pad));
                } else {
                    let _ = write!(out, "{c}{}  ", " ".repeat(pad));
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        };
        line(&mut out, &HEADERS.map(str::to_string));
        line(&mut out, &widths.map(|w| "-".repeat(w)));
        for r in &rows {
            line(&mut out, r);
        }
        self.footer(&mut out);
        out
    }

    /// The Markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(HEADERS.len()));
        for f in &self.figures {
            let cells = f.cells().map(|c| c.replace('|', "\\|"));
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        self.footer(&mut out);
        out
    }

    fn footer(&self, out: &mut String) {
        for s in &self.skipped {
            let _ = writeln!(out, "\nskipped: {s}");
        }
        for e in &self.errors {
            let _ = writeln!(out, "\nERROR: {e}");
        }
    }

    /// Write the report as JSON.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")?;
        Ok(())
    }
}
