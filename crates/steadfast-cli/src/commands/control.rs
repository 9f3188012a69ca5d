//! `steadfast cancel` and `steadfast signal`.

use std::io::Write;

use anyhow::Context;
use serde_json::Value;
use steadfast_durable::WorkflowStatus;

use crate::db::Db;

/// Parse a signal payload, with a hint for the usual mistake (an unquoted string).
pub fn parse_payload(text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| {
        format!(
            "the message is not valid JSON: `{}` (to send a string, quote it: '\"{}\"')",
            crate::render::shorten(text, 60),
            crate::render::shorten(text, 30)
        )
    })
}

/// Cancel workflow `id` and print the status that results.
pub async fn cancel(db: &Db, out: &mut impl Write, id: &str) -> anyhow::Result<()> {
    let before = db.workflow(id).await?;
    if before.status.is_terminal() {
        writeln!(
            out,
            "{id}: {} (it had already finished; nothing to cancel)",
            before.status
        )?;
        return Ok(());
    }
    let status = db.engine.cancel(id).await.map_err(|e| db.error(e))?;
    match status {
        WorkflowStatus::Running => writeln!(
            out,
            "{id}: running, cancellation requested (its worker stops it at its next step)"
        )?,
        other => writeln!(out, "{id}: {other}")?,
    }
    Ok(())
}

/// Send `payload` on `topic` to workflow `id`.
pub async fn signal(
    db: &Db,
    out: &mut impl Write,
    id: &str,
    topic: &str,
    payload: Value,
) -> anyhow::Result<()> {
    let record = db.workflow(id).await?;
    db.engine
        .send(id, topic, payload)
        .await
        .map_err(|e| db.error(e))?;
    writeln!(out, "sent `{topic}` to {id}")?;
    if record.status.is_terminal() {
        eprintln!(
            "warning: {id} is {}; nothing will read the message",
            record.status
        );
    }
    Ok(())
}
