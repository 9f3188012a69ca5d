//! The write side: every function runs on the write connection, inside a `BEGIN IMMEDIATE`
//! transaction (see [`crate::writer`] and [`crate::batch`]). Holding the write lock for the
//! whole transaction is what makes the check-then-write of fencing and claiming safe against
//! other processes sharing the file; the conditional `UPDATE`s say the same thing again.

use std::borrow::Cow;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steadfast_durable::{
    AttemptRecord, Claim, Created, Json, LeaseState, Millis, NewWorkflow, Outcome, StepFailure,
    StepKind, StepRecord, StoreError, WorkflowRecord, WorkflowStatus, now_millis,
};

use crate::reads::{WORKFLOW_COLUMNS, encoded, get_workflow, status, workflow};
use crate::schema::map_err;

/// The output stored for a workflow cancelled while it was not running (the engine's own).
fn cancelled_output() -> Value {
    serde_json::json!({ "error": "cancelled" })
}

pub(crate) fn lease_until(now: Millis, lease: Duration) -> Millis {
    now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn create_workflow(conn: &Connection, new: &NewWorkflow) -> Result<Created, StoreError> {
    Ok(create(conn, new, None)?.0)
}

/// Create `new`: pending, or running under `claimed = (owner, lease)`; or report the existing
/// workflow with its id.
pub(crate) fn create(
    conn: &Connection,
    new: &NewWorkflow,
    claimed: Option<(&str, Duration)>,
) -> Result<(Created, Option<Claim>), StoreError> {
    let now = now_millis();
    let input = encoded(serde_json::to_string(&new.input))?;
    let owner = claimed.map(|(owner, _)| owner);
    let until = claimed.map(|(_, lease)| lease_until(now, lease));
    let status = match claimed {
        Some(_) => WorkflowStatus::Running,
        None => WorkflowStatus::Pending,
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO workflows (id, name, input, status, owner, lease_expires_at, parent_id, \
                 created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) ON CONFLICT (id) DO NOTHING",
        )
        .map_err(map_err)?
        .execute(params![
            new.id,
            new.name,
            input,
            status.as_str(),
            owner,
            until,
            new.parent_id,
            now
        ])
        .map_err(map_err)?;
    if inserted == 1 {
        let claim = claimed.map(|(owner, _)| Claim {
            record: WorkflowRecord {
                id: new.id.clone(),
                name: new.name.clone(),
                input: new.input.clone(),
                status,
                output: None,
                owner: Some(owner.to_owned()),
                lease_expires_at: until,
                wake_at: None,
                cancel_requested: false,
                parent_id: new.parent_id.clone(),
                created_at: now,
                updated_at: now,
            },
        });
        return Ok((Created::New, claim));
    }
    match get_workflow(conn, &new.id)? {
        Some(existing) => Ok((Created::Existing(existing), None)),
        None => Err(StoreError::Backend(format!(
            "workflow `{}` neither inserted nor found",
            new.id
        ))),
    }
}

/// Fail unless `owner` holds the lease of workflow `id`.
fn fence(conn: &Connection, id: &str, owner: &str) -> Result<(), StoreError> {
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT status, owner FROM workflows WHERE id = ?1")
        .map_err(map_err)?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(map_err)?;
    match row {
        None => Err(StoreError::NotFound(id.to_owned())),
        Some((status, holder)) if status == "running" && holder.as_deref() == Some(owner) => Ok(()),
        Some(_) => Err(StoreError::LeaseLost(id.to_owned())),
    }
}

pub(crate) fn claim(
    conn: &Connection,
    owner: &str,
    names: &str,
    limit: usize,
    lease: Duration,
    dead_owners: &str,
) -> Result<Vec<Claim>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let now = now_millis();
    let until = lease_until(now, lease);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Select, then update by rowid: both run under the write lock. (An `UPDATE … WHERE rowid
    // IN (subquery) RETURNING` would build three temporary tables on every call.)
    let mut picked = Vec::new();
    {
        let mut pick = conn
            .prepare_cached(&format!(
                "SELECT rowid, {WORKFLOW_COLUMNS} FROM workflows AS w \
                 WHERE EXISTS (SELECT 1 FROM json_each(?1) WHERE value = w.name) \
                   AND (status = 'pending' \
                     OR (status = 'suspended' AND wake_at <= ?2) \
                     OR (status = 'running' AND (lease_expires_at IS NULL \
                         OR lease_expires_at <= ?2 \
                         OR EXISTS (SELECT 1 FROM json_each(?3) WHERE value = w.owner)))) \
                 ORDER BY rowid LIMIT ?4"
            ))
            .map_err(map_err)?;
        let mut rows = pick
            .query(params![names, now, dead_owners, limit])
            .map_err(map_err)?;
        while let Some(row) = rows.next().map_err(map_err)? {
            let rowid: i64 = row.get(0).map_err(map_err)?;
            picked.push((rowid, workflow(row, 1)?));
        }
    }
    let mut take = conn
        .prepare_cached(
            "UPDATE workflows \
             SET status = 'running', owner = ?1, lease_expires_at = ?2, wake_at = NULL, \
                 updated_at = ?3 \
             WHERE rowid = ?4",
        )
        .map_err(map_err)?;
    let mut claimed = Vec::with_capacity(picked.len());
    for (rowid, mut record) in picked {
        take.execute(params![owner, until, now, rowid])
            .map_err(map_err)?;
        record.status = WorkflowStatus::Running;
        record.owner = Some(owner.to_owned());
        record.lease_expires_at = Some(until);
        record.wake_at = None;
        record.updated_at = now;
        claimed.push(Claim { record });
    }
    Ok(claimed)
}

pub(crate) fn renew(
    conn: &Connection,
    owner: &str,
    ids: &[String],
    lease: Duration,
) -> Result<Vec<LeaseState>, StoreError> {
    let until = lease_until(now_millis(), lease);
    let mut extend = conn
        .prepare_cached(
            "UPDATE workflows SET lease_expires_at = ?1 \
             WHERE id = ?2 AND status = 'running' AND owner = ?3 RETURNING cancel_requested",
        )
        .map_err(map_err)?;
    let mut look = conn
        .prepare_cached("SELECT cancel_requested FROM workflows WHERE id = ?1")
        .map_err(map_err)?;
    let mut states = Vec::with_capacity(ids.len());
    for id in ids {
        let renewed: Option<bool> = extend
            .query_row(params![until, id, owner], |r| r.get(0))
            .optional()
            .map_err(map_err)?;
        let state = match renewed {
            Some(cancel_requested) => LeaseState {
                id: id.clone(),
                held: true,
                cancel_requested,
            },
            None => LeaseState {
                id: id.clone(),
                held: false,
                cancel_requested: look
                    .query_row([id], |r| r.get(0))
                    .optional()
                    .map_err(map_err)?
                    .unwrap_or(false),
            },
        };
        states.push(state);
    }
    Ok(states)
}

/// A step record as the journal stores it, with its JSON encoded. It is also the record of the
/// step log (see [`crate::steplog`]), where `input` and `output` are embedded as JSON values
/// (not as strings holding them): the log writes their text as it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EncodedStep {
    pub(crate) id: String,
    pub(crate) owner: String,
    pub(crate) position: String,
    pub(crate) step_id: String,
    pub(crate) kind: StepKind,
    pub(crate) name: String,
    pub(crate) input_hash: String,
    pub(crate) input: Option<Json>,
    /// The step's value when `ok`, else its [`StepFailure`].
    pub(crate) output: Json,
    pub(crate) ok: bool,
    pub(crate) attempts: u32,
    pub(crate) started_at: Millis,
    pub(crate) duration_us: i64,
}

impl EncodedStep {
    /// Step `step` of workflow `id`, committed by `owner`: its fields moved, the input and
    /// output texts as they are.
    pub(crate) fn new(id: &str, owner: &str, step: StepRecord) -> Result<Self, StoreError> {
        let (output, ok) = match step.output {
            Ok(v) => (v, true),
            Err(f) => (encoded(Json::encode(&f))?, false),
        };
        Ok(EncodedStep {
            id: id.to_owned(),
            owner: owner.to_owned(),
            position: step.position,
            step_id: step.step_id,
            kind: step.kind,
            name: step.name,
            input_hash: step.input_hash,
            input: step.input,
            output,
            ok,
            attempts: step.attempts,
            started_at: step.started_at,
            duration_us: step.duration_us,
        })
    }

    /// The record again, with sequence number `seq`.
    pub(crate) fn decode(&self, seq: i64) -> Result<StepRecord, StoreError> {
        let what =
            |field: &str| format!("the {field} of step `{}` of `{}`", self.position, self.id);
        let output = if self.ok {
            Ok(self.output.clone())
        } else {
            Err(self.output.decode::<StepFailure>().map_err(|e| {
                StoreError::Corrupt(format!("{} is not a failure: {e}", what("error")))
            })?)
        };
        Ok(StepRecord {
            position: self.position.clone(),
            step_id: self.step_id.clone(),
            kind: self.kind,
            name: self.name.clone(),
            input_hash: self.input_hash.clone(),
            input: self.input.clone(),
            output,
            attempts: self.attempts,
            started_at: self.started_at,
            duration_us: self.duration_us,
            seq,
        })
    }

    /// Its fields, borrowed.
    pub(crate) fn fields(&self) -> StepFields<'_> {
        StepFields {
            id: &self.id,
            owner: &self.owner,
            position: &self.position,
            step_id: &self.step_id,
            kind: self.kind,
            name: &self.name,
            input_hash: &self.input_hash,
            input: self.input.as_ref().map(Json::get),
            output: self.output.get(),
            ok: self.ok,
            attempts: self.attempts,
            started_at: self.started_at,
            duration_us: self.duration_us,
        }
    }

    pub(crate) fn duplicate(&self) -> StoreError {
        StoreError::DuplicateStep {
            workflow_id: self.id.clone(),
            position: self.position.clone(),
        }
    }
}

/// A step's fields, borrowed, as an [`EncodedStep`] holds them: what the step log writes,
/// without copying a step's texts first, and what a flush reads back.
#[derive(Debug)]
pub(crate) struct StepFields<'a> {
    pub(crate) id: &'a str,
    pub(crate) owner: &'a str,
    pub(crate) position: &'a str,
    pub(crate) step_id: &'a str,
    pub(crate) kind: StepKind,
    pub(crate) name: &'a str,
    pub(crate) input_hash: &'a str,
    pub(crate) input: Option<&'a str>,
    /// The step's value when `ok`, else its [`StepFailure`].
    pub(crate) output: &'a str,
    pub(crate) ok: bool,
    pub(crate) attempts: u32,
    pub(crate) started_at: Millis,
    pub(crate) duration_us: i64,
}

impl<'a> StepFields<'a> {
    /// Step `step` of workflow `id`, committed by `owner`, with its output as
    /// [`output_of`] gives it.
    pub(crate) fn of(
        id: &'a str,
        owner: &'a str,
        step: &'a StepRecord,
        (output, ok): &'a (Cow<'a, Json>, bool),
    ) -> Self {
        StepFields {
            id,
            owner,
            position: &step.position,
            step_id: &step.step_id,
            kind: step.kind,
            name: &step.name,
            input_hash: &step.input_hash,
            input: step.input.as_ref().map(Json::get),
            output: output.get(),
            ok: *ok,
            attempts: step.attempts,
            started_at: step.started_at,
            duration_us: step.duration_us,
        }
    }
}

/// The output of `step` as the journal holds it: its value, or else its [`StepFailure`]
/// encoded; and whether it is a value.
pub(crate) fn output_of(step: &StepRecord) -> Result<(Cow<'_, Json>, bool), StoreError> {
    match &step.output {
        Ok(v) => Ok((Cow::Borrowed(v), true)),
        Err(f) => Ok((Cow::Owned(encoded(Json::encode(f))?), false)),
    }
}

pub(crate) fn commit_step(
    conn: &Connection,
    step: &EncodedStep,
    consume: Option<i64>,
) -> Result<(), StoreError> {
    let (id, owner) = (step.id.as_str(), step.owner.as_str());
    if let Some(seq) = consume {
        fence(conn, id, owner)?;
        if journaled(conn, id, &step.position)? {
            return Err(step.duplicate());
        }
        let consumed = conn
            .prepare_cached(
                "UPDATE mailbox SET consumed = 1 \
                 WHERE workflow_id = ?1 AND seq = ?2 AND consumed = 0",
            )
            .map_err(map_err)?
            .execute(params![id, seq])
            .map_err(map_err)?;
        if consumed != 1 {
            return Err(StoreError::Backend(format!(
                "message {seq} of workflow `{id}` does not exist or was consumed already"
            )));
        }
    }
    // One statement: the fence (no sequence number, so a NOT NULL failure, unless `owner`
    // holds the lease), the next sequence number, and the unique index that refuses a second
    // record at the same position. SQLite checks NOT NULL before uniqueness, as `fence` comes
    // before the duplicate check above.
    let inserted = conn
        .prepare_cached(
            "INSERT INTO journal (workflow_id, position, seq, step_id, kind, name, input_hash, \
                 input, output, ok, attempts, started_at, duration_us) \
             VALUES (?1, ?2, \
                 CASE WHEN EXISTS (SELECT 1 FROM workflows \
                         WHERE id = ?1 AND status = 'running' AND owner = ?3) \
                     THEN (SELECT coalesce(max(seq), 0) + 1 FROM journal WHERE workflow_id = ?1) \
                 END, \
                 ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .map_err(map_err)?
        .execute(params![
            id,
            step.position,
            owner,
            step.step_id,
            step.kind.as_str(),
            step.name,
            step.input_hash,
            step.input.as_ref().map(Json::get),
            step.output.get(),
            step.ok,
            step.attempts,
            step.started_at,
            step.duration_us,
        ]);
    let e = match inserted {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    match e.sqlite_error().map(|f| f.extended_code) {
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL) => {
            fence(conn, id, owner)?;
            Err(StoreError::Backend(format!(
                "step `{}` of workflow `{id}` has no sequence number",
                step.position
            )))
        }
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => Err(step.duplicate()),
        _ => Err(map_err(e)),
    }
}

/// Whether workflow `id` has a journal entry at `position`.
fn journaled(conn: &Connection, id: &str, position: &str) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM journal WHERE workflow_id = ?1 AND position = ?2")
        .map_err(map_err)?
        .exists([id, position])
        .map_err(map_err)
}

pub(crate) fn record_attempt(
    conn: &Connection,
    id: &str,
    owner: &str,
    attempt: &AttemptRecord,
) -> Result<(), StoreError> {
    fence(conn, id, owner)?;
    conn.prepare_cached(
        "INSERT INTO attempts (workflow_id, position, step_id, attempt, error, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .map_err(map_err)?
    .execute(params![
        id,
        attempt.position,
        attempt.step_id,
        attempt.attempt,
        attempt.error,
        attempt.at,
    ])
    .map_err(map_err)?;
    Ok(())
}

/// Make workflow `id` terminal, release its lease, and wake its suspended parent.
fn terminate(
    conn: &Connection,
    id: &str,
    status: WorkflowStatus,
    output: &Value,
    now: Millis,
) -> Result<(), StoreError> {
    let output = encoded(serde_json::to_string(output))?;
    conn.prepare_cached(
        "UPDATE workflows SET status = ?2, output = ?3, owner = NULL, lease_expires_at = NULL, \
             wake_at = NULL, updated_at = ?4 \
         WHERE id = ?1",
    )
    .map_err(map_err)?
    .execute(params![id, status.as_str(), output, now])
    .map_err(map_err)?;
    conn.prepare_cached(
        "UPDATE workflows SET status = 'pending', wake_at = NULL, updated_at = ?2 \
         WHERE status = 'suspended' AND id = (SELECT parent_id FROM workflows WHERE id = ?1)",
    )
    .map_err(map_err)?
    .execute(params![id, now])
    .map_err(map_err)?;
    Ok(())
}

pub(crate) fn finish(
    conn: &Connection,
    id: &str,
    owner: &str,
    outcome: &Outcome,
) -> Result<(), StoreError> {
    finish_at(conn, id, owner, outcome, now_millis())
}

/// [`finish`] at time `now` (a logged end is applied later than it happened).
pub(crate) fn finish_at(
    conn: &Connection,
    id: &str,
    owner: &str,
    outcome: &Outcome,
    now: Millis,
) -> Result<(), StoreError> {
    fence(conn, id, owner)?;
    match outcome {
        Outcome::Finished { status, output } => {
            if !status.is_terminal() {
                return Err(StoreError::Backend(format!(
                    "cannot finish workflow `{id}` with non-terminal status `{status}`"
                )));
            }
            terminate(conn, id, *status, output, now)
        }
        Outcome::Suspended {
            wake_at,
            waiting_on,
        } => {
            let cancel_requested: bool = conn
                .prepare_cached("SELECT cancel_requested FROM workflows WHERE id = ?1")
                .map_err(map_err)?
                .query_row([id], |r| r.get(0))
                .map_err(map_err)?;
            let mut has_mail = false;
            if !waiting_on.is_empty() {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT DISTINCT topic FROM mailbox WHERE workflow_id = ?1 AND consumed = 0",
                    )
                    .map_err(map_err)?;
                let topics = stmt
                    .query_map([id], |r| r.get::<_, String>(0))
                    .map_err(map_err)?;
                for t in topics {
                    if waiting_on.contains(&t.map_err(map_err)?) {
                        has_mail = true;
                    }
                }
            }
            if cancel_requested {
                return terminate(
                    conn,
                    id,
                    WorkflowStatus::Cancelled,
                    &cancelled_output(),
                    now,
                );
            }
            let (status, wake_at) = if has_mail {
                (WorkflowStatus::Pending, None)
            } else {
                (WorkflowStatus::Suspended, *wake_at)
            };
            conn.prepare_cached(
                "UPDATE workflows SET status = ?2, wake_at = ?3, owner = NULL, \
                     lease_expires_at = NULL, updated_at = ?4 \
                 WHERE id = ?1",
            )
            .map_err(map_err)?
            .execute(params![id, status.as_str(), wake_at, now])
            .map_err(map_err)?;
            Ok(())
        }
    }
}

pub(crate) fn send(
    conn: &Connection,
    id: &str,
    topic: &str,
    payload: &Value,
) -> Result<i64, StoreError> {
    let now = now_millis();
    let found = conn
        .prepare_cached("SELECT 1 FROM workflows WHERE id = ?1")
        .map_err(map_err)?
        .exists([id])
        .map_err(map_err)?;
    if !found {
        return Err(StoreError::NotFound(id.to_owned()));
    }
    let payload = encoded(serde_json::to_string(payload))?;
    let seq: i64 = conn
        .prepare_cached(
            "INSERT INTO mailbox (workflow_id, seq, topic, payload, sent_at) \
             VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM mailbox WHERE workflow_id = ?1), \
                 ?2, ?3, ?4) \
             RETURNING seq",
        )
        .map_err(map_err)?
        .query_row(params![id, topic, payload, now], |r| r.get(0))
        .map_err(map_err)?;
    conn.prepare_cached(
        "UPDATE workflows SET status = 'pending', wake_at = NULL, updated_at = ?2 \
         WHERE id = ?1 AND status = 'suspended'",
    )
    .map_err(map_err)?
    .execute(params![id, now])
    .map_err(map_err)?;
    Ok(seq)
}

pub(crate) fn request_cancel(conn: &Connection, id: &str) -> Result<WorkflowStatus, StoreError> {
    let now = now_millis();
    let current: Option<String> = conn
        .prepare_cached("SELECT status FROM workflows WHERE id = ?1")
        .map_err(map_err)?
        .query_row([id], |r| r.get(0))
        .optional()
        .map_err(map_err)?;
    let current = status(&current.ok_or_else(|| StoreError::NotFound(id.to_owned()))?)?;
    if current.is_terminal() {
        return Ok(current);
    }
    conn.prepare_cached("UPDATE workflows SET cancel_requested = 1, updated_at = ?2 WHERE id = ?1")
        .map_err(map_err)?
        .execute(params![id, now])
        .map_err(map_err)?;
    if current == WorkflowStatus::Running {
        return Ok(current);
    }
    terminate(
        conn,
        id,
        WorkflowStatus::Cancelled,
        &cancelled_output(),
        now,
    )?;
    Ok(WorkflowStatus::Cancelled)
}
