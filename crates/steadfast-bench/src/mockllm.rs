//! The side-by-side workload of `/work/shared/bench/README.md`: K = 50 twenty-questions games
//! against `mockllm.py` with the OpenAI Chat client, plainly and durably on SQLite, in the same
//! run. "ms per step" is a game's wall time / 101 model requests; CPU time comes from
//! `/proc/self/stat`. The baseline of the plain game is the client's own floor: the same model
//! requests sent directly, one after the other, on a keep-alive connection.
//!
//! The resume test (SIGKILL mid-game, restart) is in [`crate::resume`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steadfast::{ClientConfig, OpenAIChatModel};
use steadfast_core::{Message, ModelRef, ModelSettings};
use steadfast_durable::Engine;
use steadfast_sqlite::Durability;
use tokio::runtime::Runtime;

use crate::game::{self, GameWorkflow};
use crate::mock::{Mock, script_path};
use crate::report::{Figure, Report};
use crate::stats::{cpu_time, median, ms, open_sqlite};
use crate::timed_store::TimedStore;

/// Questions per game.
pub const K: u32 = 50;

/// Model requests per game.
pub const REQUESTS: u32 = 2 * K + 1;

/// A model served by the mock, tagging its requests with conversation `conv`.
pub fn mock_model(base_url: &str, name: &str, conv: &str) -> anyhow::Result<ModelRef> {
    let mut cfg = ClientConfig::new(base_url);
    cfg.headers
        .push(("x-conversation-id".to_string(), conv.to_string()));
    Ok(Arc::new(
        OpenAIChatModel::with_config(name, cfg)?.with_provider_name("mockllm"),
    ))
}

/// The questioner (with its answerer) over the mock, for conversation `conv`.
pub fn mock_game(
    base_url: &str,
    conv: &str,
    k: u32,
) -> anyhow::Result<steadfast_core::Agent<(), String>> {
    let a = game::answerer(mock_model(base_url, "answerer", conv)?)?;
    Ok(game::questioner(
        mock_model(base_url, &format!("questioner-{k}"), conv)?,
        a,
        k,
    )?)
}

/// Whether `mockllm.py` and python3 are there; the reason to skip if not.
pub fn unavailable() -> Option<String> {
    let script = script_path();
    if !script.is_file() {
        return Some(format!(
            "mockllm: {} not found (set STEADFAST_BENCH_DIR to the directory of mockllm.py)",
            script.display()
        ));
    }
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    match python {
        Ok(o) if o.status.success() => None,
        _ => Some("mockllm: python3 is not available".to_string()),
    }
}

#[derive(Default)]
struct Side {
    wall_ms_per_step: Vec<f64>,
    cpu: Duration,
    games: u32,
    convs: Vec<String>,
}

/// The floor: the 101 requests of a game sent directly, one after the other, with the same
/// client (the questioner's conversation prefixes and the answerer's questions), `reps` times.
/// Returns ms per request (median over the repetitions) and CPU ms per request.
async fn floor(base_url: &str, reps: usize) -> anyhow::Result<(f64, f64)> {
    let q = mock_game(base_url, "floor-game", K)?;
    let (r, messages) = game::play_plain_messages(&q).await?;
    r.check(K)?;
    let questioner = mock_model(base_url, &format!("questioner-{K}"), "floor")?;
    let answerer = mock_model(base_url, "answerer", "floor")?;
    let a = game::answerer(answerer.clone())?;
    let (q_params, a_params) = (q.request_params(), a.request_params());
    let settings = ModelSettings::default();
    let questions: Vec<Vec<Message>> = (1..=K)
        .map(|n| game::answerer_messages(&format!("Question number {n}?")))
        .collect();
    let mut samples = Vec::with_capacity(reps);
    let cpu0 = cpu_time().unwrap_or_default();
    for _ in 0..reps {
        let t = Instant::now();
        for k in 0..=K as usize {
            questioner
                .request(&messages[..2 * k + 1], &q_params, &settings)
                .await?;
            if let Some(m) = questions.get(k) {
                answerer.request(m, &a_params, &settings).await?;
            }
        }
        samples.push(ms(t.elapsed()) / f64::from(REQUESTS));
    }
    let cpu = cpu_time().unwrap_or_default().saturating_sub(cpu0);
    let requests = (reps as f64) * f64::from(REQUESTS);
    Ok((median(samples), ms(cpu) / requests))
}

/// The side-by-side games (async part).
async fn games(
    base_url: &str,
    dir: &Path,
    quick: bool,
    report: &mut Report,
) -> anyhow::Result<(Side, Side)> {
    let games = if quick { 1 } else { 7 };
    let store = open_sqlite(dir.join("mockllm.db"), Durability::ProcessCrashSafe).await?;
    let timed = TimedStore::new(store);
    let probe = timed.probe();
    let engine = Engine::new(timed);
    let (mut plain, mut durable) = (Side::default(), Side::default());
    let (mut commits, mut commit_time) = (0u64, Duration::ZERO);
    let mut commit_samples = Vec::new();
    // Game 0 warms both paths up (connections, page cache) and is not counted.
    for g in 0..=games {
        let conv = format!("plain-{g}");
        let q = mock_game(base_url, &conv, K)?;
        let cpu0 = cpu_time().unwrap_or_default();
        let t = Instant::now();
        let r = game::play_plain(&q).await?;
        let wall = t.elapsed();
        let cpu = cpu_time().unwrap_or_default().saturating_sub(cpu0);
        r.check(K)?;
        if g > 0 {
            plain.wall_ms_per_step.push(ms(wall) / f64::from(REQUESTS));
            plain.cpu += cpu;
            plain.games += 1;
            plain.convs.push(conv);
        }

        let conv = format!("durable-{g}");
        let q = mock_game(base_url, &conv, K)?;
        let worker = engine
            .worker()
            .workflow(GameWorkflow { questioner: q })
            .start();
        // Let the worker's first pass over the store finish before the clock starts.
        tokio::time::sleep(Duration::from_millis(20)).await;
        probe.reset();
        let cpu0 = cpu_time().unwrap_or_default();
        let t = Instant::now();
        let h = engine
            .start::<GameWorkflow>(&format!("mock-game-{g}"), ())
            .await?;
        let r = h.result().await?;
        let wall = t.elapsed();
        let cpu = cpu_time().unwrap_or_default().saturating_sub(cpu0);
        worker.shutdown().await;
        r.check(K)?;
        if g > 0 {
            durable
                .wall_ms_per_step
                .push(ms(wall) / f64::from(REQUESTS));
            durable.cpu += cpu;
            durable.games += 1;
            durable.convs.push(conv);
            let c = probe.get("commit_step");
            commits += c.calls;
            commit_time += c.total;
            commit_samples.extend(probe.samples("commit_step"));
        }
    }
    let (floor_ms, floor_cpu) = floor(base_url, if quick { 1 } else { 5 }).await?;

    let commit = crate::stats::summarize(commit_samples);
    let p = median(plain.wall_ms_per_step.clone());
    let d = median(durable.wall_ms_per_step.clone());
    let steps = |s: &Side| f64::from(s.games * REQUESTS);
    let (pc, dc) = (
        ms(plain.cpu) / steps(&plain),
        ms(durable.cpu) / steps(&durable),
    );
    let paired = median(
        durable
            .wall_ms_per_step
            .iter()
            .zip(&plain.wall_ms_per_step)
            .map(|(d, p)| d / p)
            .collect(),
    );
    let note = format!("K={K}, median of {games} games, wall / {REQUESTS}");
    report.add(
        Figure::new("mockllm", "plain game, ms per step", p, "ms")
            .vs("the same 101 requests sent directly (floor)", floor_ms)
            .note(note.clone()),
    );
    report.add(
        Figure::new(
            "mockllm",
            "durable game (SQLite NORMAL), ms per step",
            d,
            "ms",
        )
        .vs("plain game", p)
        .target("< 1 ms and ≤ 1.2× plain", d < 1.0 && d <= 1.2 * p)
        .note(format!(
            "{note}; paired ratio (each durable game / the plain game before it) median \
             {paired:.2}×; commit_step: {:.1} per game, await mean {:.1} µs, median {:.1}, p90 {:.1}",
            commits as f64 / f64::from(durable.games.max(1)),
            crate::stats::us(commit_time) / commits.max(1) as f64,
            commit.median,
            commit.p90
        )),
    );
    report.add(
        Figure::new("mockllm", "plain game, CPU ms per step", pc, "ms")
            .vs("the same requests sent directly", floor_cpu)
            .note("utime+stime over all counted games (10 ms ticks)"),
    );
    report.add(
        Figure::new("mockllm", "durable game, CPU ms per step", dc, "ms")
            .vs("plain game CPU", pc)
            .note("utime+stime over all counted games (10 ms ticks)"),
    );
    Ok((plain, durable))
}

/// The `mockllm` section: the side-by-side games, then the resume test.
pub fn run(quick: bool, dir: &Path, rt: &Runtime, report: &mut Report) -> anyhow::Result<()> {
    if let Some(why) = unavailable() {
        report.skip(why);
        return Ok(());
    }
    let mock = Mock::start(&script_path(), 0)?;
    let base = mock.base_url();
    let (plain, durable) = rt.block_on(games(&base, dir, quick, report))?;
    // Every game sent each request once: no duplicates, REQUESTS requests per conversation.
    for conv in plain.convs.iter().chain(durable.convs.iter()) {
        let (req, dup) = (
            mock.counter(conv, "requests")?,
            mock.counter(conv, "duplicates")?,
        );
        anyhow::ensure!(
            req == u64::from(REQUESTS) && dup == 0,
            "conversation {conv}: {req} requests, {dup} duplicates"
        );
    }
    drop(mock);
    crate::resume::run(quick, dir, report)
}
