//! Reading rows: the queries of the read side, and row conversions shared with the writer.
//!
//! Bad data in the file (an unknown status, JSON that does not parse, a negative attempt
//! count) is reported as [`StoreError::Corrupt`], never a panic.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use steadfast_durable::{
    AttemptRecord, Json, ListFilter, MailMessage, Millis, StepFailure, StepKind, StepRecord,
    StoreError, WorkflowRecord, WorkflowStatus, WorkflowSummary,
};

use crate::schema::map_err;

/// The columns of a [`WorkflowRecord`], in the order [`workflow`] reads them.
pub(crate) const WORKFLOW_COLUMNS: &str = "id, name, input, status, output, owner, \
     lease_expires_at, wake_at, cancel_requested, parent_id, created_at, updated_at";

pub(crate) fn json(text: &str, what: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what} is not JSON: {e}")))
}

/// A step's input or output: `text`, checked to be JSON and kept as it is.
pub(crate) fn raw_json(text: String, what: &str) -> Result<Json, StoreError> {
    Json::from_string(text).map_err(|e| StoreError::Corrupt(format!("{what} is not JSON: {e}")))
}

/// The result of encoding JSON, as a store result.
pub(crate) fn encoded<T>(text: serde_json::Result<T>) -> Result<T, StoreError> {
    text.map_err(|e| StoreError::Backend(format!("cannot encode JSON: {e}")))
}

pub(crate) fn status(text: &str) -> Result<WorkflowStatus, StoreError> {
    WorkflowStatus::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown workflow status `{text}`")))
}

/// A workflow record from columns `offset..offset + 12` in [`WORKFLOW_COLUMNS`] order.
pub(crate) fn workflow(row: &Row<'_>, offset: usize) -> Result<WorkflowRecord, StoreError> {
    let get_text = |i: usize| row.get::<_, String>(offset + i).map_err(map_err);
    let id = get_text(0)?;
    let input = json(&get_text(2)?, &format!("the input of `{id}`"))?;
    let output = match row.get::<_, Option<String>>(offset + 4).map_err(map_err)? {
        Some(text) => Some(json(&text, &format!("the output of `{id}`"))?),
        None => None,
    };
    Ok(WorkflowRecord {
        name: get_text(1)?,
        input,
        status: status(&get_text(3)?)?,
        output,
        owner: row.get(offset + 5).map_err(map_err)?,
        lease_expires_at: row.get(offset + 6).map_err(map_err)?,
        wake_at: row.get(offset + 7).map_err(map_err)?,
        cancel_requested: row.get(offset + 8).map_err(map_err)?,
        parent_id: row.get(offset + 9).map_err(map_err)?,
        created_at: row.get(offset + 10).map_err(map_err)?,
        updated_at: row.get(offset + 11).map_err(map_err)?,
        id,
    })
}

pub(crate) fn get_workflow(
    conn: &Connection,
    id: &str,
) -> Result<Option<WorkflowRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = ?1"
        ))
        .map_err(map_err)?;
    let mut rows = stmt.query([id]).map_err(map_err)?;
    match rows.next().map_err(map_err)? {
        Some(row) => Ok(Some(workflow(row, 0)?)),
        None => Ok(None),
    }
}

pub(crate) fn list_workflows(
    conn: &Connection,
    filter: &ListFilter,
) -> Result<Vec<WorkflowSummary>, StoreError> {
    let limit = filter
        .limit
        .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {WORKFLOW_COLUMNS}, \
                 (SELECT count(*) FROM journal j WHERE j.workflow_id = w.id) \
             FROM workflows w \
             WHERE ?1 IS NULL OR status = ?1 \
             ORDER BY created_at DESC, rowid DESC LIMIT ?2"
        ))
        .map_err(map_err)?;
    let mut rows = stmt
        .query(params![filter.status.map(WorkflowStatus::as_str), limit])
        .map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        let steps: i64 = row.get(12).map_err(map_err)?;
        out.push(WorkflowSummary {
            record: workflow(row, 0)?,
            steps: u64::try_from(steps).unwrap_or(0),
        });
    }
    Ok(out)
}

pub(crate) fn running_owners(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT DISTINCT owner FROM workflows \
             WHERE status = 'running' AND owner IS NOT NULL ORDER BY owner",
        )
        .map_err(map_err)?;
    let owners = stmt
        .query_map([], |r| r.get(0))
        .map_err(map_err)?
        .collect::<Result<Vec<String>, _>>()
        .map_err(map_err)?;
    Ok(owners)
}

fn step(row: &Row<'_>, workflow_id: &str) -> Result<StepRecord, StoreError> {
    let position: String = row.get(0).map_err(map_err)?;
    let what = |field: &str| format!("the {field} of step `{position}` of `{workflow_id}`");
    let kind: String = row.get(3).map_err(map_err)?;
    let kind = StepKind::parse(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("{} `{kind}` is unknown", what("kind"))))?;
    let input = match row.get::<_, Option<String>>(6).map_err(map_err)? {
        Some(text) => Some(raw_json(text, &what("input"))?),
        None => None,
    };
    let output_text: String = row.get(7).map_err(map_err)?;
    let ok: bool = row.get(8).map_err(map_err)?;
    let output = if ok {
        Ok(raw_json(output_text, &what("output"))?)
    } else {
        Err(serde_json::from_str::<StepFailure>(&output_text)
            .map_err(|e| StoreError::Corrupt(format!("{} is not a failure: {e}", what("error"))))?)
    };
    let attempts: i64 = row.get(9).map_err(map_err)?;
    let attempts = u32::try_from(attempts)
        .map_err(|_| StoreError::Corrupt(format!("{} is {attempts}", what("attempt count"))))?;
    Ok(StepRecord {
        step_id: row.get(1).map_err(map_err)?,
        seq: row.get(2).map_err(map_err)?,
        kind,
        name: row.get(4).map_err(map_err)?,
        input_hash: row.get(5).map_err(map_err)?,
        input,
        output,
        attempts,
        started_at: row.get(10).map_err(map_err)?,
        duration_us: row.get(11).map_err(map_err)?,
        position,
    })
}

pub(crate) fn load_journal(conn: &Connection, id: &str) -> Result<Vec<StepRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT position, step_id, seq, kind, name, input_hash, input, output, ok, attempts, \
                 started_at, duration_us \
             FROM journal WHERE workflow_id = ?1 ORDER BY seq",
        )
        .map_err(map_err)?;
    let mut rows = stmt.query([id]).map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        out.push(step(row, id)?);
    }
    Ok(out)
}

pub(crate) fn load_attempts(conn: &Connection, id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT position, step_id, attempt, error, at FROM attempts \
             WHERE workflow_id = ?1 ORDER BY id",
        )
        .map_err(map_err)?;
    let mut rows = stmt.query([id]).map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        let attempt: i64 = row.get(2).map_err(map_err)?;
        out.push(AttemptRecord {
            position: row.get(0).map_err(map_err)?,
            step_id: row.get(1).map_err(map_err)?,
            attempt: u32::try_from(attempt)
                .map_err(|_| StoreError::Corrupt(format!("attempt number {attempt} of `{id}`")))?,
            error: row.get(3).map_err(map_err)?,
            at: row.get(4).map_err(map_err)?,
        });
    }
    Ok(out)
}

pub(crate) fn next_message(
    conn: &Connection,
    id: &str,
    topic: &str,
) -> Result<Option<MailMessage>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, payload FROM mailbox \
             WHERE workflow_id = ?1 AND topic = ?2 AND consumed = 0 ORDER BY seq LIMIT 1",
        )
        .map_err(map_err)?;
    let found: Option<(i64, String)> = stmt
        .query_row([id, topic], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(map_err)?;
    match found {
        Some((seq, payload)) => Ok(Some(MailMessage {
            seq,
            topic: topic.to_owned(),
            payload: json(&payload, &format!("message {seq} of `{id}`"))?,
        })),
        None => Ok(None),
    }
}

pub(crate) fn next_wake(conn: &Connection, names: &str) -> Result<Option<Millis>, StoreError> {
    // A join rather than `name IN (SELECT …)`, which would build a temporary table per call.
    conn.prepare_cached(
        "SELECT min(w.wake_at) FROM json_each(?1) AS n \
         JOIN workflows AS w ON w.status = 'suspended' AND w.name = n.value",
    )
    .map_err(map_err)?
    .query_row([names], |r| r.get(0))
    .map_err(map_err)
}

/// The positions in workflow `id`'s journal.
pub(crate) fn positions(
    conn: &Connection,
    id: &str,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT position FROM journal WHERE workflow_id = ?1")
        .map_err(map_err)?;
    let rows = stmt
        .query_map([id], |r| r.get::<_, String>(0))
        .map_err(map_err)?;
    rows.map(|r| r.map_err(map_err)).collect()
}
