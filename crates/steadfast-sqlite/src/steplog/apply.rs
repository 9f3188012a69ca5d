//! Applying logged entries to the database: at a flush, and when the log of a process that is
//! gone is imported.

use rusqlite::{CachedStatement, Connection, OptionalExtension, params};
use steadfast_durable::{Outcome, StoreError};

use super::{Entry, FinishEntry, StartEntry};
use crate::writes::{self, StepFields};

/// Apply logged entries to the database, in order (see [`Applier`]). Returns how many steps
/// were inserted.
pub(crate) fn apply_all<'a>(
    conn: &Connection,
    entries: impl Iterator<Item = &'a Entry>,
) -> Result<usize, StoreError> {
    let mut applier = Applier::new(conn)?;
    for entry in entries {
        applier.entry(entry)?;
    }
    Ok(applier.inserted)
}

/// Applies logged entries to the database, one by one, in order: inserts each step unless its
/// workflow changed hands or has it already, ends each workflow its owner still holds. The
/// lease and the last sequence number are read once per run of steps of one workflow and
/// owner.
pub(crate) struct Applier<'c> {
    conn: &'c Connection,
    lease: CachedStatement<'c>,
    last: CachedStatement<'c>,
    insert: CachedStatement<'c>,
    /// The workflow and owner of the current run of steps; its next `seq`, if it holds the
    /// lease.
    run: Option<(String, String, Option<i64>)>,
    /// Steps inserted so far.
    pub(crate) inserted: usize,
}

impl<'c> Applier<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Result<Self, StoreError> {
        let map = crate::schema::map_err;
        Ok(Applier {
            conn,
            lease: conn
                .prepare_cached(
                    "SELECT status = 'running' AND owner IS ?2 FROM workflows WHERE id = ?1",
                )
                .map_err(map)?,
            last: conn
                .prepare_cached("SELECT coalesce(max(seq), 0) FROM journal WHERE workflow_id = ?1")
                .map_err(map)?,
            insert: conn
                .prepare_cached(
                    "INSERT INTO journal (workflow_id, position, seq, step_id, kind, name, \
                         input_hash, input, output, ok, attempts, started_at, duration_us) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                     ON CONFLICT DO NOTHING",
                )
                .map_err(map)?,
            run: None,
            inserted: 0,
        })
    }

    /// Apply `entry`.
    pub(crate) fn entry(&mut self, entry: &Entry) -> Result<(), StoreError> {
        match entry {
            Entry::Step(step) => self.step(&step.fields()),
            Entry::Start(s) => self.start(s),
            Entry::Finish(f) => self.finish(f),
        }
    }

    /// Insert a workflow that the log started. A row of that id is there already only if the
    /// entry was flushed before its process died.
    fn start(&mut self, s: &StartEntry) -> Result<(), StoreError> {
        self.run = None;
        let map = crate::schema::map_err;
        let input = serde_json::to_string(&s.input)
            .map_err(|e| StoreError::Backend(format!("cannot encode an input: {e}")))?;
        self.conn
            .prepare_cached(
                "INSERT INTO workflows (id, name, input, status, owner, lease_expires_at, \
                     created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?6) ON CONFLICT (id) DO NOTHING",
            )
            .map_err(map)?
            .execute(params![
                s.id,
                s.name,
                input,
                s.owner,
                s.lease_expires_at,
                s.at
            ])
            .map_err(map)?;
        Ok(())
    }

    /// End a workflow as its log says, unless its owner no longer holds it.
    pub(crate) fn finish(&mut self, f: &FinishEntry) -> Result<(), StoreError> {
        self.run = None;
        finish(self.conn, f)
    }

    /// Insert `step`, unless its workflow changed hands or has it already.
    pub(crate) fn step(&mut self, step: &StepFields<'_>) -> Result<(), StoreError> {
        let map = crate::schema::map_err;
        let next = match &mut self.run {
            Some((id, owner, next)) if id == step.id && owner == step.owner => next,
            _ => {
                let held: Option<bool> = self
                    .lease
                    .query_row([step.id, step.owner], |r| r.get(0))
                    .optional()
                    .map_err(map)?;
                let next = if held == Some(true) {
                    Some(
                        self.last
                            .query_row([step.id], |r| r.get::<_, i64>(0))
                            .map_err(map)?
                            + 1,
                    )
                } else {
                    None
                };
                let run = (step.id.to_owned(), step.owner.to_owned(), next);
                &mut self.run.insert(run).2
            }
        };
        let Some(seq) = next else {
            // A step flushed just before its process died is in the journal already.
            let there = self
                .conn
                .prepare_cached("SELECT 1 FROM journal WHERE workflow_id = ?1 AND position = ?2")
                .map_err(map)?
                .exists([step.id, step.position])
                .map_err(map)?;
            if !there {
                tracing::warn!(
                    workflow_id = %step.id,
                    step = %step.step_id,
                    "a logged step was dropped: its worker lost the workflow's lease before it \
                     reached the journal, so the workflow's new worker runs the step again"
                );
            }
            return Ok(());
        };
        let n = self
            .insert
            .execute(params![
                step.id,
                step.position,
                *seq,
                step.step_id,
                step.kind.as_str(),
                step.name,
                step.input_hash,
                step.input,
                step.output,
                step.ok,
                step.attempts,
                step.started_at,
                step.duration_us,
            ])
            .map_err(map)?;
        if n == 1 {
            *seq += 1;
            self.inserted += 1;
        }
        Ok(())
    }
}

/// End a workflow as its log says, unless its owner no longer holds it.
fn finish(conn: &Connection, f: &FinishEntry) -> Result<(), StoreError> {
    let outcome = Outcome::Finished {
        status: f.status,
        output: f.output.clone(),
    };
    match writes::finish_at(conn, &f.id, &f.owner, &outcome, f.at) {
        Ok(()) => Ok(()),
        Err(StoreError::LeaseLost(_) | StoreError::NotFound(_)) => {
            // Ended already (flushed just before its process died), or taken over.
            let status: Option<String> = conn
                .prepare_cached("SELECT status FROM workflows WHERE id = ?1")
                .map_err(crate::schema::map_err)?
                .query_row([&f.id], |r| r.get(0))
                .optional()
                .map_err(crate::schema::map_err)?;
            if status.as_deref() != Some(f.status.as_str()) {
                tracing::warn!(
                    workflow_id = %f.id,
                    "a logged workflow end was dropped: its worker lost the lease before it \
                     reached the database"
                );
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}
