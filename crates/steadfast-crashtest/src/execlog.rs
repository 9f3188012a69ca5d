//! Append-only line logs shared by concurrent processes, and the execution log that user steps
//! and tools write to: one line per execution (not per replay), with the idempotency key.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;

/// A file opened with `O_APPEND`. Each line goes out in one `write`, so lines of several
/// processes never interleave. Without a path, lines are dropped.
pub struct LineLog {
    file: Option<Mutex<File>>,
}

impl LineLog {
    /// Open (or create) `path` for appending; `None` gives a log that drops everything.
    pub fn open(path: Option<&Path>) -> anyhow::Result<LineLog> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open log {}", p.display()))?,
            )),
            None => None,
        };
        Ok(LineLog { file })
    }

    /// Append `line` (which ends with a newline). A log that cannot be written is fatal: the
    /// tests that read it would draw wrong conclusions.
    pub fn append(&self, line: &str) {
        debug_assert!(line.ends_with('\n'));
        if let Some(f) = &self.file {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = f.write_all(line.as_bytes()) {
                eprintln!("crashy: cannot write a log line: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// The worker's deps: the execution log, and the delay that keeps a step in flight for a while.
pub struct ExecLog {
    log: LineLog,
    pid: u32,
    seq: AtomicU64,
    delay: Duration,
}

impl ExecLog {
    /// An execution log writing to `log`; each execution waits `delay` after logging.
    pub fn new(log: LineLog, delay: Duration) -> Self {
        ExecLog {
            log,
            pid: std::process::id(),
            seq: AtomicU64::new(0),
            delay,
        }
    }

    /// Log one execution of the step with idempotency key `key`, and return its execution tag
    /// `pid:n`, unique over all processes. Steps return the tag in their result, so the journal
    /// tells which execution was the one committed.
    pub fn record(&self, key: &str) -> String {
        let tag = format!(
            "{}:{}",
            self.pid,
            self.seq.fetch_add(1, Ordering::SeqCst) + 1
        );
        self.log.append(&format!("exec {tag} {key}\n"));
        tag
    }

    /// Wait the configured step delay (widens the window in which a step is in flight).
    pub async fn delay(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}
