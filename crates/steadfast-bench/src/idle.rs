//! Idle worker memory: a fresh process (this binary, re-executed with a hidden subcommand)
//! reads its RSS, opens a SQLite engine, starts a worker with one registered workflow, idles for
//! a second and reads its RSS again. A separate process keeps the other measurements' heap out of
//! the figure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use steadfast_durable::Engine;
use steadfast_sqlite::Durability;

use crate::game::{GameWorkflow, scripted_game};
use crate::report::{Figure, Report};
use crate::stats::{open_sqlite, proc_status, rss_kb};

/// Arguments of the hidden `__idle-child` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    /// The database file.
    #[arg(long)]
    pub db: PathBuf,
    /// How long to idle, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub idle_ms: u64,
}

/// What the idle child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleReport {
    /// RSS before the engine was created (the runtime exists), kB.
    pub before_kb: u64,
    /// RSS after idling with the worker running, kB.
    pub idle_kb: u64,
    /// Threads of the process while idle.
    pub threads: u64,
}

/// The child: measure and print one JSON line.
pub fn child_main(args: ChildArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let before_kb = rss_kb().unwrap_or(0);
        let store = open_sqlite(args.db.clone(), Durability::ProcessCrashSafe).await?;
        let engine = Engine::new(store);
        let worker = engine
            .worker()
            .workflow(GameWorkflow {
                questioner: scripted_game(50)?,
            })
            .start();
        tokio::time::sleep(Duration::from_millis(args.idle_ms)).await;
        let report = IdleReport {
            before_kb,
            idle_kb: rss_kb().unwrap_or(0),
            threads: proc_status("Threads").unwrap_or(0),
        };
        worker.shutdown().await;
        anyhow::Ok(report)
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The `idle` section.
pub fn run(quick: bool, dir: &Path, report: &mut Report) -> anyhow::Result<()> {
    let idle_ms: u64 = if quick { 200 } else { 1000 };
    let out = Command::new(std::env::current_exe()?)
        .arg("__idle-child")
        .arg("--db")
        .arg(dir.join("idle.db"))
        .arg("--idle-ms")
        .arg(idle_ms.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "the idle process failed: {}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: IdleReport = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| format!("cannot read the idle process's report: {stdout}"))?;
    let mb = |kb: u64| kb as f64 / 1024.0;
    report.add(
        Figure::new(
            "idle",
            "idle worker RSS (SQLite engine + worker)",
            mb(r.idle_kb),
            "MB",
        )
        .vs("process before the engine", mb(r.before_kb))
        .target("< 20 MB", mb(r.idle_kb) < 20.0)
        .note(format!(
            "fresh process, {idle_ms} ms idle, {} threads; engine adds {:.1} MB",
            r.threads,
            mb(r.idle_kb.saturating_sub(r.before_kb))
        )),
    );
    Ok(())
}
