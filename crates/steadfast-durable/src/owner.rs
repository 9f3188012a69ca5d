//! Worker identity and liveness: a worker id names its host and process, so a worker on the same
//! host can tell at once that a lease's owner has died (kill -9, OOM) instead of waiting for the
//! lease to expire.

use std::sync::atomic::{AtomicU64, Ordering};

fn host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
        .replace(':', "_")
}

/// The start time of live process `pid` in clock ticks since boot (Linux), to tell a live
/// process from a later one that reused its pid. A zombie (killed, not yet reaped) is not live.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

static NONCE: AtomicU64 = AtomicU64::new(0);

/// A fresh worker id: `host:pid:start_time:n`.
pub(crate) fn new_owner_id() -> String {
    let pid = std::process::id();
    format!(
        "{}:{pid}:{}:{}",
        host(),
        start_time(pid).unwrap_or(0),
        NONCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether `owner` is a worker of a process on this host that no longer exists.
pub(crate) fn is_dead(owner: &str) -> bool {
    let mut parts = owner.split(':');
    let (Some(h), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if h != host() || start == "0" {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    match start_time(pid) {
        None => true,
        Some(t) => t.to_string() != start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_gone_one_is_dead() {
        let me = new_owner_id();
        assert!(!is_dead(&me), "{me}");
        let mut parts: Vec<&str> = me.split(':').collect();
        parts[2] = "1"; // another start time: a reused pid
        assert!(is_dead(&parts.join(":")));
        assert!(!is_dead("otherhost:1:5:0"));
        assert!(!is_dead("garbage"));
    }
}
