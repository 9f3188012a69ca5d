//! Recovery: the segments of stores that are gone (a killed process), found by their free
//! `flock`, imported into the tables, then deleted.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;
use steadfast_durable::StoreError;

use super::record::decode_segment;
use super::{Entry, StepLog, apply_all, lock};
use crate::writer::Writer;

impl StepLog {
    /// The segments of stores that are gone, locked by this one, with their steps.
    pub(crate) fn orphans(&self) -> Vec<Orphan> {
        let own = lock(&self.state).segment.as_ref().map(|s| s.path.clone());
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "log") || Some(&path) == own.as_ref() {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot lock a step log");
                    continue;
                }
            }
            // Read record by record: the segment is mostly empty space past its last record.
            let entries = decode_segment(std::io::BufReader::new(&file), &path);
            found.push(Orphan {
                path,
                _file: file,
                entries,
            });
        }
        // Oldest first: a process's segments, and processes, in the order they were made.
        found.sort_by(|a, b| a.path.cmp(&b.path));
        found
    }
}

/// A segment of a store that is gone, locked while it is imported.
pub(crate) struct Orphan {
    path: PathBuf,
    _file: File,
    entries: Vec<Entry>,
}

/// Import `orphans` into the database inside the caller's transaction.
pub(crate) fn import(conn: &Connection, orphans: &[Orphan]) -> Result<usize, StoreError> {
    apply_all(conn, orphans.iter().flat_map(|o| o.entries.iter()))
}

/// Import `orphans` in a write of `writer` (after this store's own log), then delete them.
pub(crate) async fn import_by(writer: &Writer, orphans: Vec<Orphan>) -> Result<(), StoreError> {
    if orphans.is_empty() {
        return Ok(());
    }
    let orphans = Arc::new(orphans);
    let held = orphans.clone();
    writer.write(true, move |c| import(c, &held)).await?;
    if let Ok(orphans) = Arc::try_unwrap(orphans) {
        remove(orphans);
    }
    Ok(())
}

/// Delete imported segments (their transaction committed).
pub(crate) fn remove(orphans: Vec<Orphan>) {
    for o in orphans {
        match std::fs::remove_file(&o.path) {
            // Another process imported and deleted it first (importing twice changes nothing).
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %o.path.display(), error = %e, "cannot delete an imported step log");
            }
            _ => {}
        }
    }
}

/// Import the segments of stores that are gone, on `conn` (outside any transaction); whether
/// that is done. While another connection keeps the database locked past the busy timeout, they
/// are left for later.
pub(crate) fn recover(conn: &Connection, db: &Path) -> Result<bool, StoreError> {
    let log = StepLog::new(db);
    let orphans = log.orphans();
    if orphans.is_empty() {
        return Ok(true);
    }
    let map = crate::schema::map_err;
    match conn.execute_batch("BEGIN IMMEDIATE").map_err(map) {
        Err(StoreError::Locked(e)) => {
            tracing::warn!(error = %e, "the step logs of stopped workers are imported later");
            return Ok(false);
        }
        other => other?,
    }
    let imported = import(conn, &orphans).and_then(|n| {
        conn.execute_batch("COMMIT").map_err(map)?;
        Ok(n)
    });
    match imported {
        Ok(n) => {
            tracing::info!(
                steps = n,
                segments = orphans.len(),
                "imported the step logs of stopped workers"
            );
            remove(orphans);
            Ok(true)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
