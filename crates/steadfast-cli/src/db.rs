//! Opening the database: only an existing file, with one-line errors that name it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use steadfast_durable::{Engine, StoreError, WorkflowError, WorkflowRecord};
use steadfast_sqlite::{SqliteOptions, SqliteStore};

/// An open database and the engine over it.
pub struct Db {
    pub engine: Engine,
    path: PathBuf,
}

impl Db {
    /// Open the store at `path`, which must exist: a mistyped path is an error, not a new,
    /// empty database.
    pub fn open(path: &Path, lock_timeout_ms: u64) -> anyhow::Result<Self> {
        let shown = path.display();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("no database at {shown} (give the path with --db or STEADFAST_DB)")
            }
            Err(e) => bail!("cannot read {shown}: {e}"),
        };
        if !meta.is_file() {
            bail!("{shown} is not a database file");
        }
        if meta.len() == 0 {
            // SQLite would happily turn an empty file into a new database.
            bail!("{shown} is empty, not a Steadfast database");
        }
        let options = SqliteOptions {
            busy_timeout: Duration::from_millis(lock_timeout_ms),
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open_with(path, options)
            .map_err(|e| anyhow::anyhow!("cannot open {shown}: {}", store_error(&e)))?;
        Ok(Db {
            engine: Engine::new(store),
            path: path.to_path_buf(),
        })
    }

    /// The file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Workflow `id`, or an error saying it is not in this database.
    pub async fn workflow(&self, id: &str) -> anyhow::Result<WorkflowRecord> {
        let found = self
            .engine
            .store()
            .get_workflow(id)
            .await
            .map_err(|e| self.error(e.into()))?;
        found.with_context(|| format!("no workflow `{id}` in {}", self.path.display()))
    }

    /// An engine error as a one-line message that names the file where it helps.
    pub fn error(&self, e: WorkflowError) -> anyhow::Error {
        match e {
            WorkflowError::Store(StoreError::NotFound(id)) => {
                anyhow::anyhow!("no workflow `{id}` in {}", self.path.display())
            }
            WorkflowError::Store(s) => {
                anyhow::anyhow!("{}: {}", self.path.display(), store_error(&s))
            }
            other => anyhow::anyhow!("{other}"),
        }
    }
}

/// A store error, with a hint for the ones a user can act on.
fn store_error(e: &StoreError) -> String {
    match e {
        StoreError::Locked(_) => format!(
            "{e}; a worker or another process holds the database; retry, or raise --lock-timeout-ms"
        ),
        other => other.to_string(),
    }
}
