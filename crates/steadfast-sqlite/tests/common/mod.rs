//! Temporary database files for the tests: unique names in the temp dir, removed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use steadfast_sqlite::{SqliteOptions, SqliteStore};

/// A database path in `std::env::temp_dir()`, unique to this process and call; the file and
/// its `-wal` and `-shm` companions are removed on drop (also when a test panics).
pub struct TempDb {
    path: PathBuf,
}

impl TempDb {
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "steadfast-test-{}-{n}-{nanos}-{label}.db",
            std::process::id()
        ));
        let db = TempDb { path };
        db.remove();
        db
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path).expect("open the store")
    }

    pub fn open_with(&self, options: SqliteOptions) -> SqliteStore {
        SqliteStore::open_with(&self.path, options).expect("open the store")
    }

    fn remove(&self) {
        remove_db(&self.path);
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Remove database `path`: the file, its `-wal`, `-shm` and `-journal` companions, and its
/// step log folder.
pub fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.to_path_buf().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let mut log = path.to_path_buf().into_os_string();
    log.push("-steplog");
    let _ = std::fs::remove_dir_all(log);
}
