//! Small measuring helpers: order statistics, process memory and CPU time from `/proc`, and
//! opening a SQLite store off the async executor.

use std::path::PathBuf;
use std::time::Duration;

use steadfast_sqlite::{Durability, SqliteOptions, SqliteStore};

/// Order statistics of a sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// The median.
    pub median: f64,
    /// The 90th percentile (nearest rank).
    pub p90: f64,
    /// The smallest sample.
    pub min: f64,
    /// The mean.
    pub mean: f64,
}

/// Summarize `samples` (any unit).
pub fn summarize(mut samples: Vec<f64>) -> Summary {
    if samples.is_empty() {
        return Summary::default();
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let median = if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    };
    let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n);
    Summary {
        n,
        median,
        p90: samples[rank - 1],
        min: samples[0],
        mean: samples.iter().sum::<f64>() / n as f64,
    }
}

/// Wait until what ran before has its writes on the disk (`sync`), so that a measurement
/// does not share the disk with the write-back of another one's files; its own writes still
/// count. Nothing happens where `sync` cannot run.
pub fn settle_disk() {
    let _ = std::process::Command::new("sync").status();
}

/// The bytes this process has passed to `write` calls so far (`wchar` of `/proc/self/io`), on
/// systems that count them.
pub fn bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The median of `samples`.
pub fn median(samples: Vec<f64>) -> f64 {
    summarize(samples).median
}

/// A duration in microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A field of `/proc/self/status` in kB (`VmRSS`, `VmHWM`), or a count (`Threads`).
pub fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The resident set size in kB.
pub fn rss_kb() -> Option<u64> {
    proc_status("VmRSS")
}

/// The peak resident set size in kB.
pub fn peak_rss_kb() -> Option<u64> {
    proc_status("VmHWM")
}

/// Clock ticks per second of `/proc/self/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// CPU time of this process so far (user + system, all threads, including those that ended), from
/// `/proc/self/stat`. Its resolution is one clock tick (10 ms), so take it over long runs.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // Fields 14 (utime) and 15 (stime); the first field after `)` is field 3.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / CLK_TCK))
}

/// Open a SQLite store on a blocking thread (opening does file IO and migrations).
pub async fn open_sqlite(path: PathBuf, durability: Durability) -> anyhow::Result<SqliteStore> {
    let options = SqliteOptions {
        durability,
        ..SqliteOptions::default()
    };
    open_sqlite_with(path, options).await
}

/// Open a SQLite store with `options` on a blocking thread.
pub async fn open_sqlite_with(
    path: PathBuf,
    options: SqliteOptions,
) -> anyhow::Result<SqliteStore> {
    let store =
        tokio::task::spawn_blocking(move || SqliteStore::open_with(path, options)).await??;
    Ok(store)
}

/// The name of a durability mode, as the report shows it.
pub fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::ProcessCrashSafe => "ProcessCrashSafe (synchronous=NORMAL)",
        Durability::PowerLossSafe => "PowerLossSafe (synchronous=FULL)",
    }
}

/// A short name of a durability mode.
pub fn durability_short(d: Durability) -> &'static str {
    match d {
        Durability::ProcessCrashSafe => "NORMAL",
        Durability::PowerLossSafe => "FULL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics() {
        let s = summarize((1..=10).map(f64::from).collect());
        assert_eq!(s.median, 5.5);
        assert_eq!(s.p90, 9.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(summarize(vec![3.0, 1.0, 2.0]).median, 2.0);
    }

    #[test]
    fn proc_figures_are_readable() {
        assert!(rss_kb().unwrap_or(0) > 0);
        assert!(cpu_time().is_some());
    }
}
