//! `steadfast list`.

use std::io::Write;

use serde::Serialize;
use steadfast_durable::{ListFilter, WorkflowStatus, now_millis};

use crate::db::Db;
use crate::render::{self, Align, Table};
use crate::totals::Totals;

/// One workflow in `list --json`. The field names are stable.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    name: String,
    status: WorkflowStatus,
    /// Steps in the journal.
    steps: u64,
    /// Seconds since creation.
    age_secs: i64,
    #[serde(flatten)]
    totals: Totals,
    created_at: String,
    created_at_ms: i64,
    updated_at: String,
    updated_at_ms: i64,
    parent_id: Option<String>,
}

/// List workflows, newest first; `limit` 0 means all.
pub async fn list(
    db: &Db,
    out: &mut impl Write,
    status: Option<WorkflowStatus>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let filter = ListFilter {
        status,
        limit: (limit > 0).then_some(limit),
    };
    let summaries = db.engine.list(filter).await.map_err(|e| db.error(e))?;
    let now = now_millis();
    let mut rows = Vec::with_capacity(summaries.len());
    for s in summaries {
        let journal = db
            .engine
            .store()
            .load_journal(&s.record.id)
            .await
            .map_err(|e| db.error(e.into()))?;
        let r = s.record;
        rows.push(Row {
            steps: s.steps,
            age_secs: (now - r.created_at).max(0) / 1000,
            totals: Totals::of(&journal),
            created_at: render::rfc3339(r.created_at),
            created_at_ms: r.created_at,
            updated_at: render::rfc3339(r.updated_at),
            updated_at_ms: r.updated_at,
            id: r.id,
            name: r.name,
            status: r.status,
            parent_id: r.parent_id,
        });
    }
    if json {
        return crate::render::json(out, &rows);
    }
    if rows.is_empty() {
        let which = status.map(|s| format!("{s} ")).unwrap_or_default();
        writeln!(out, "no {which}workflows in {}", db.path().display())?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("NAME", Align::Left),
        ("STATUS", Align::Left),
        ("STEPS", Align::Right),
        ("AGE", Align::Right),
        ("COST", Align::Right),
    ]);
    for r in &rows {
        table.row(vec![
            r.id.clone(),
            r.name.clone(),
            r.status.to_string(),
            r.steps.to_string(),
            render::age(r.age_secs * 1000),
            render::usd(r.totals.cost_usd),
        ]);
    }
    table.write(out)?;
    Ok(())
}
