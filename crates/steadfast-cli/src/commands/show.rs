//! `steadfast show`.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use serde::Serialize;
use serde_json::Value;
use steadfast_durable::{
    AttemptRecord, History, StepKind, StepRecord, WorkflowRecord, WorkflowStatus, now_millis,
};

use crate::db::Db;
use crate::render::{self, Align, Table};
use crate::totals::Totals;

/// Longest input or output shown in the header.
const HEADER_VALUE: usize = 200;
/// Longest step input shown in the table.
const STEP_INPUT: usize = 60;

/// `show --json`: the history as the engine returns it, plus the usage totals.
#[derive(Serialize)]
struct ShowJson<'a> {
    #[serde(flatten)]
    history: &'a History,
    totals: Totals,
}

/// Show workflow `id` and its journal.
pub async fn show(db: &Db, out: &mut impl Write, id: &str, json: bool) -> anyhow::Result<()> {
    // Checked first, for a clear "no workflow" message.
    db.workflow(id).await?;
    let history = db.engine.history(id).await.map_err(|e| db.error(e))?;
    let totals = Totals::of(&history.steps);
    if json {
        return crate::render::json(
            out,
            &ShowJson {
                history: &history,
                totals,
            },
        );
    }
    header(out, &history, &totals)?;
    writeln!(out)?;
    steps(out, &history.steps, &history.attempts)?;
    Ok(())
}

fn header(out: &mut impl Write, h: &History, totals: &Totals) -> std::io::Result<()> {
    let w: &WorkflowRecord = &h.workflow;
    let now = now_millis();
    let when = |ms| format!("{} ({} ago)", render::datetime(ms), render::age(now - ms));
    let mut fields: Vec<(&str, String)> = vec![
        ("Workflow", w.id.clone()),
        ("Name", w.name.clone()),
        ("Status", status_line(w)),
        ("Created", when(w.created_at)),
        ("Updated", when(w.updated_at)),
    ];
    if let Some(p) = &w.parent_id {
        fields.push(("Parent", p.clone()));
    }
    if let (WorkflowStatus::Suspended, Some(at)) = (w.status, w.wake_at) {
        fields.push(("Wakes", render::datetime(at)));
    }
    fields.push((
        "Input",
        render::shorten(&render::compact(&w.input), HEADER_VALUE),
    ));
    match (w.status, &w.output) {
        (WorkflowStatus::Completed, Some(v)) => {
            fields.push(("Output", render::shorten(&render::compact(v), HEADER_VALUE)));
        }
        (_, Some(v)) => fields.push(("Error", render::shorten(&error_text(v), HEADER_VALUE))),
        (_, None) => {}
    }
    fields.push(("Usage", totals.describe()));
    fields.push((
        "Steps",
        format!(
            "{} in the journal (each ran once; every resume answered it from the journal)",
            h.steps.len()
        ),
    ));
    let width = fields.iter().map(|f| f.0.len()).max().unwrap_or(0);
    for (k, v) in fields {
        writeln!(out, "{k:width$}  {v}")?;
    }
    Ok(())
}

fn status_line(w: &WorkflowRecord) -> String {
    let mut s = w.status.to_string();
    if w.cancel_requested && !w.status.is_terminal() {
        s.push_str(" (cancellation requested)");
    }
    if let (WorkflowStatus::Running, Some(owner)) = (w.status, &w.owner) {
        s.push_str(&format!(" by worker {owner}"));
    }
    s
}

fn steps(
    out: &mut impl Write,
    steps: &[StepRecord],
    attempts: &[AttemptRecord],
) -> std::io::Result<()> {
    let mut by_position: HashMap<&str, Vec<&AttemptRecord>> = HashMap::new();
    for a in attempts {
        by_position.entry(a.position.as_str()).or_default().push(a);
    }
    let mut table = Table::new(&[
        ("STEP", Align::Left),
        ("KIND", Align::Left),
        ("NAME", Align::Left),
        ("ATTEMPTS", Align::Right),
        ("DURATION", Align::Right),
        ("STATUS", Align::Left),
        ("INPUT", Align::Left),
    ]);
    for s in steps {
        let input = match (s.kind, &s.input) {
            // Through a `Value`, so that arguments a model wrote on several lines show on one.
            (StepKind::Tool | StepKind::Step, Some(v)) => {
                render::shorten(&render::compact(&v.to_value()), STEP_INPUT)
            }
            _ => String::new(),
        };
        table.row(vec![
            s.step_id.clone(),
            s.kind.as_str().to_string(),
            s.name.clone(),
            s.attempts.to_string(),
            render::duration_us(s.duration_us),
            if s.output.is_ok() { "ok" } else { "failed" }.to_string(),
            input,
        ]);
        for a in by_position.get(s.position.as_str()).into_iter().flatten() {
            table.note(format!(
                "  attempt {} failed: {}",
                a.attempt,
                one_line(&a.error)
            ));
        }
        if let Err(f) = &s.output {
            table.note(format!(
                "  attempt {} failed: {} (gave up)",
                s.attempts,
                one_line(&f.message)
            ));
        }
    }
    // Retries of a step still in flight: it is not in the journal yet.
    let journaled: HashSet<&str> = steps.iter().map(|s| s.position.as_str()).collect();
    for a in attempts
        .iter()
        .filter(|a| !journaled.contains(a.position.as_str()))
    {
        table.note(format!(
            "{} (in flight): attempt {} failed: {}",
            a.step_id,
            a.attempt,
            one_line(&a.error)
        ));
    }
    table.write(out)
}

/// The message of a recorded error (`{"error": "..."}`), or the JSON as is.
fn error_text(v: &Value) -> String {
    match v.get("error") {
        Some(Value::String(s)) => s.clone(),
        _ => render::compact(v),
    }
}

fn one_line(s: &str) -> String {
    render::shorten(s, 200)
}
