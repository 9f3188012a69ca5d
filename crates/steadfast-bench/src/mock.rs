//! `mockllm.py` as a child process, and a tiny blocking HTTP/1.1 client for its bookkeeping
//! endpoints (`/health`, `/stats`, `/reset`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Where `mockllm.py` lives: `$STEADFAST_BENCH_DIR`, else `../shared/bench` next to the
/// workspace root.
pub fn script_path() -> PathBuf {
    let dir = match std::env::var_os("STEADFAST_BENCH_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_root().join("../shared/bench"),
    };
    dir.join("mockllm.py")
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A free TCP port on the loopback interface.
fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// One request with `Connection: close`; the status and the body.
pub fn http(port: u16, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let (head, body) = buf
        .split_once("\r\n\r\n")
        .context("the mock's answer has no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the mock's answer has no status")?;
    Ok((status, body.to_string()))
}

/// A running `mockllm.py`; killed when dropped.
pub struct Mock {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Mock {
    /// Start `script` with `MOCK_LATENCY_MS=latency_ms` and wait until it answers.
    pub fn start(script: &Path, latency_ms: u64) -> anyhow::Result<Mock> {
        let port = free_port()?;
        let child = Command::new("python3")
            .arg(script)
            .arg("--port")
            .arg(port.to_string())
            .env("MOCK_LATENCY_MS", latency_ms.to_string())
            .env_remove("MOCK_LOG")
            .env_remove("MOCK_VERBOSE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start python3")?;
        let mut mock = Mock { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = http(port, "GET", "/health") {
                return Ok(mock);
            }
            if let Some(status) = mock.child.try_wait()? {
                bail!("mockllm.py exited at start-up: {status}");
            }
            if Instant::now() > deadline {
                bail!("mockllm.py did not answer on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its OpenAI-compatible base URL.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// `GET /stats` for one conversation, with the request records if `detail`.
    pub fn stats(&self, conv: &str, detail: bool) -> anyhow::Result<Value> {
        let path = format!(
            "/stats?conv={conv}{}",
            if detail { "&detail=1" } else { "" }
        );
        let (status, body) = http(self.port, "GET", &path)?;
        anyhow::ensure!(status == 200, "GET {path}: HTTP {status}");
        Ok(serde_json::from_str(&body)?)
    }

    /// A counter of one conversation in `/stats` (`requests`, `started`, `duplicates`, ...).
    pub fn counter(&self, conv: &str, field: &str) -> anyhow::Result<u64> {
        let s = self.stats(conv, false)?;
        Ok(s["conversations"][conv][field].as_u64().unwrap_or(0))
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
