//! Opening a database file: pragmas, the schema version and its migrations, error mapping.
//!
//! The file is marked as a Steadfast store with `PRAGMA application_id`, and its schema
//! version is `PRAGMA user_version`: version `n` means `MIGRATIONS[..n]` have been applied.
//! Migrations run inside `BEGIN IMMEDIATE`, so two processes opening a new file at once do not
//! both migrate it.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use steadfast_durable::StoreError;

use crate::{Durability, SqliteOptions};

/// `PRAGMA application_id` of a Steadfast store: "STDF".
pub(crate) const APPLICATION_ID: i32 = 0x5354_4446;

/// The schema, one migration per version. Never edit a released migration; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: workflows, journal, attempts, mailbox.
    "
    CREATE TABLE workflows (
        id               TEXT PRIMARY KEY NOT NULL,
        name             TEXT NOT NULL,
        input            TEXT NOT NULL,
        status           TEXT NOT NULL,
        output           TEXT,
        owner            TEXT,
        lease_expires_at INTEGER,
        wake_at          INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        parent_id        TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
    );
    CREATE INDEX workflows_runnable ON workflows (status, name, wake_at);
    CREATE INDEX workflows_leases ON workflows (status, lease_expires_at);
    CREATE INDEX workflows_owner ON workflows (owner) WHERE owner IS NOT NULL;
    CREATE INDEX workflows_parent ON workflows (parent_id) WHERE parent_id IS NOT NULL;
    CREATE INDEX workflows_created ON workflows (created_at);

    CREATE TABLE journal (
        workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
        position    TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        step_id     TEXT NOT NULL,
        kind        TEXT NOT NULL,
        name        TEXT NOT NULL,
        input_hash  TEXT NOT NULL,
        input       TEXT,
        output      TEXT NOT NULL,
        ok          INTEGER NOT NULL,
        attempts    INTEGER NOT NULL,
        started_at  INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, position)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX journal_order ON journal (workflow_id, seq);

    CREATE TABLE attempts (
        id          INTEGER PRIMARY KEY,
        workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
        position    TEXT NOT NULL,
        step_id     TEXT NOT NULL,
        attempt     INTEGER NOT NULL,
        error       TEXT NOT NULL,
        at          INTEGER NOT NULL
    );
    CREATE INDEX attempts_workflow ON attempts (workflow_id, id);

    CREATE TABLE mailbox (
        workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        topic       TEXT NOT NULL,
        payload     TEXT NOT NULL,
        consumed    INTEGER NOT NULL DEFAULT 0,
        sent_at     INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX mailbox_unconsumed ON mailbox (workflow_id, topic, seq) WHERE consumed = 0;
    ",
    // 2: the journal keyed by its order. A workflow's steps arrive in `seq` order, so its rows
    // are appended to its range of the table rather than scattered over it, as positions
    // ("agent#1/1", "agent#1/10", "agent#1/2", ...) would scatter them: a flush writes fewer
    // pages, and a replay reads the rows in the table's own order. Positions stay unique
    // through an index.
    "
    CREATE TABLE journal_by_seq (
        workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
        position    TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        step_id     TEXT NOT NULL,
        kind        TEXT NOT NULL,
        name        TEXT NOT NULL,
        input_hash  TEXT NOT NULL,
        input       TEXT,
        output      TEXT NOT NULL,
        ok          INTEGER NOT NULL,
        attempts    INTEGER NOT NULL,
        started_at  INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, seq)
    ) WITHOUT ROWID;
    INSERT INTO journal_by_seq
        SELECT workflow_id, position, seq, step_id, kind, name, input_hash, input, output, ok,
               attempts, started_at, duration_us
        FROM journal ORDER BY workflow_id, seq;
    DROP TABLE journal;
    ALTER TABLE journal_by_seq RENAME TO journal;
    CREATE UNIQUE INDEX journal_position ON journal (workflow_id, position);
    ",
];

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// The newest schema version this build knows.
pub(crate) fn supported_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Map a SQLite error to a store error.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                StoreError::Locked(format!("{e} (another process holds the write lock)"))
            }
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        },
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(format!("unexpected data: {e}")),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Open a connection and set its per-connection pragmas.
pub(crate) fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Backend(format!("cannot open `{}`: {e}", path.display())))?;
    conn.busy_timeout(options.busy_timeout).map_err(map_err)?;
    // Every statement the store runs stays prepared (rusqlite keeps 16 by default, fewer than
    // the writer uses).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let synchronous = match options.durability {
        Durability::ProcessCrashSafe => "NORMAL",
        Durability::PowerLossSafe => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = {synchronous};"
    ))
    .map_err(map_err)?;
    // Keep one query plan per statement. Without it, the bundled SQLite (built with STAT4)
    // re-prepares the journal insert, whose subquery depends on a binding, on every commit.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(map_err)?;
    Ok(conn)
}

/// Open the writer's connection: WAL mode, and the schema brought up to date.
pub(crate) fn open_writer(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    let conn = connect(path, options)?;
    // The first statement that reads the file: garbage fails here with "not a database".
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(map_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "cannot switch `{}` to WAL mode (journal mode is `{mode}`)",
            path.display()
        )));
    }
    if check(&conn)? < supported_version() {
        migrate(&conn)?;
    }
    Ok(conn)
}

/// Check that the file is a Steadfast store this build can use; its schema version.
fn check(conn: &Connection) -> Result<i64, StoreError> {
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(map_err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(map_err)?;
    if app != APPLICATION_ID {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(map_err)?;
        if app != 0 || version != 0 || tables != 0 {
            return Err(StoreError::Corrupt(format!(
                "the file is an SQLite database of another application \
                 (application_id {app:#x}, user_version {version}, {tables} schema objects)"
            )));
        }
    }
    if version < 0 {
        return Err(StoreError::Corrupt(format!(
            "invalid schema version {version}"
        )));
    }
    if version > supported_version() {
        return Err(StoreError::NewerSchema {
            found: version,
            supported: supported_version(),
        });
    }
    Ok(version)
}

/// Apply the missing migrations in one write transaction.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
    let applied = (|| {
        // Another process may have migrated while we waited for the lock.
        let from = check(conn)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            conn.execute_batch(sql).map_err(|e| {
                StoreError::Backend(format!("migration to schema version {}: {e}", i + 1))
            })?;
        }
        conn.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
            supported_version()
        ))
        .map_err(map_err)
    })();
    match applied {
        Ok(()) => conn.execute_batch("COMMIT").map_err(map_err),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rusqlite::params;
    use steadfast_durable::Store;

    use super::*;
    use crate::SqliteStore;
    use crate::batch::tests::step;

    /// A database file of schema version 1 (as earlier builds wrote it) with two workflows of
    /// name `w`: `done`, completed with 12 steps, and `live`, pending with 3. Positions
    /// (`1`, `10`, `11`, `12`, `2`, ...) sort apart from the steps' order.
    fn version_1(path: &Path) {
        let conn = Connection::open(path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;"
        ))
        .unwrap();
        for (id, status, steps) in [("done", "completed", 12), ("live", "pending", 3)] {
            let output = (status == "completed").then_some("\"out\"");
            conn.execute(
                "INSERT INTO workflows (id, name, input, status, output, created_at, updated_at) \
                 VALUES (?1, 'w', 'null', ?2, ?3, 1, 2)",
                params![id, status, output],
            )
            .unwrap();
            for seq in 1..=steps {
                conn.execute(
                    "INSERT INTO journal (workflow_id, position, seq, step_id, kind, name, \
                         input_hash, input, output, ok, attempts, started_at, duration_us) \
                     VALUES (?1, ?2, ?3, ?4, 'step', 's', 'h', NULL, ?5, 1, 1, ?3, 7)",
                    params![
                        id,
                        seq.to_string(),
                        seq,
                        format!("s#{seq}"),
                        seq.to_string()
                    ],
                )
                .unwrap();
            }
        }
    }

    fn names(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_version_1_file_opens_migrated_with_its_journal() {
        let dir = std::env::temp_dir().join(format!("steadfast-schema-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v1.db");
        version_1(&path);

        let store = SqliteStore::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, supported_version());
        let key = names(
            &conn,
            "SELECT name FROM pragma_table_info('journal') WHERE pk > 0 ORDER BY pk",
        );
        assert_eq!(key, ["workflow_id", "seq"]);
        let indexes = names(
            &conn,
            "SELECT name FROM pragma_index_list('journal') WHERE origin = 'c'",
        );
        assert_eq!(indexes, ["journal_position"]);

        // The journal reads back as it was written, in order.
        let done = store.load_journal("done").await.unwrap();
        assert_eq!(done.len(), 12);
        for (i, s) in done.iter().enumerate() {
            let n = i as i64 + 1;
            assert_eq!((s.seq, s.position.as_str()), (n, n.to_string().as_str()));
            assert_eq!(s.output.as_ref().unwrap().get(), n.to_string());
            assert_eq!((s.started_at, s.duration_us), (n, 7));
        }

        // A new step follows the migrated ones, and a position taken is refused.
        let names_w = ["w".to_string()];
        let claims = store
            .claim("w2", &names_w, 10, Duration::from_secs(60), &[])
            .await
            .unwrap();
        assert_eq!(claims.len(), 1);
        store
            .commit_step("live", "w2", step(4), None)
            .await
            .unwrap();
        let err = store
            .commit_step("live", "w2", step(2), None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::DuplicateStep { .. }), "{err:?}");
        store.flush().await.unwrap();
        let live = store.load_journal("live").await.unwrap();
        let order: Vec<(i64, &str)> = live.iter().map(|s| (s.seq, s.position.as_str())).collect();
        assert_eq!(order, [(1, "1"), (2, "2"), (3, "3"), (4, "4")]);
        let in_table: i64 = conn
            .query_row(
                "SELECT count(*) FROM journal WHERE workflow_id = 'live'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(in_table, 4);

        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
