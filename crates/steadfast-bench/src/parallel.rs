//! Throughput of parallel steps: a workflow fans out N `ctx.branch(..)` steps at once and joins
//! them, then runs the same number of steps one after the other. The SQLite writer commits
//! whatever requests wait in its queue in one transaction (group commit), so parallel steps
//! share disk syncs; its [`steadfast_sqlite::WriterStats`] show how many commits each
//! transaction carried. With the step log (process-crash safe, the default) a step needs no
//! transaction at all, so there is nothing to group: the mode without it shows group commit
//! on the same durability.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use steadfast_durable::{Engine, StepError, Workflow, WorkflowCtx, WorkflowError};
use steadfast_sqlite::{Durability, SqliteOptions, SqliteStore};

use crate::report::{Figure, Report};
use crate::stats::{durability_name, durability_short, open_sqlite_with};

/// One phase of a round: N steps, in parallel or in sequence.
#[derive(Debug, Clone, Copy)]
struct Phase {
    parallel: bool,
    elapsed: Duration,
    steps: u32,
    transactions: u64,
    requests: u64,
}

/// What the fan-out workflow reads and writes through its deps.
struct Probe {
    store: SqliteStore,
    phases: Mutex<Vec<Phase>>,
}

impl Probe {
    fn writer(&self) -> (u64, u64) {
        let s = self.store.stats();
        (s.transactions, s.requests)
    }

    fn push(&self, parallel: bool, elapsed: Duration, steps: u32, before: (u64, u64)) {
        let after = self.writer();
        self.phases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Phase {
                parallel,
                elapsed,
                steps,
                transactions: after.0 - before.0,
                requests: after.1 - before.1,
            });
    }
}

/// `rounds` rounds of N parallel branch steps, then N sequential steps.
struct Fanout;

impl Workflow for Fanout {
    const NAME: &'static str = "bench_fanout";
    type Input = (u32, u32);
    type Output = u32;

    async fn run(&self, ctx: &WorkflowCtx, (n, rounds): (u32, u32)) -> Result<u32, WorkflowError> {
        let probe = ctx.deps::<Probe>()?;
        let mut total = 0;
        for r in 0..rounds {
            let before = probe.writer();
            let t = Instant::now();
            // The step futures borrow their context and input (edition 2024 captures), so both
            // live in vectors for the duration of the join.
            let branches: Vec<WorkflowCtx> = (0..n).map(|_| ctx.branch("fan")).collect();
            let inputs: Vec<(u32, u32)> = (0..n).map(|i| (r, i)).collect();
            let steps: Vec<_> = branches
                .iter()
                .zip(&inputs)
                .map(|(b, input)| {
                    let i = input.1;
                    b.step("p", input, move |_| async move { Ok::<u32, StepError>(i) })
                })
                .collect();
            for s in ctx.join_all(steps).await {
                total += s?;
            }
            probe.push(true, t.elapsed(), n, before);

            let before = probe.writer();
            let t = Instant::now();
            for i in 0..n {
                total += ctx
                    .step(
                        "q",
                        &(r, i),
                        move |_| async move { Ok::<u32, StepError>(i) },
                    )
                    .await?;
            }
            probe.push(false, t.elapsed(), n, before);
        }
        Ok(total)
    }
}

/// Steps per second and commits per transaction over the phases of one kind.
fn rates(phases: &[Phase], parallel: bool) -> (f64, f64, u32) {
    let (mut secs, mut steps, mut tx, mut req) = (0.0, 0u32, 0u64, 0u64);
    for p in phases.iter().filter(|p| p.parallel == parallel) {
        secs += p.elapsed.as_secs_f64();
        steps += p.steps;
        tx += p.transactions;
        req += p.requests;
    }
    let per_tx = if tx == 0 { 0.0 } else { req as f64 / tx as f64 };
    (f64::from(steps) / secs.max(1e-9), per_tx, steps)
}

async fn measure(
    dir: &Path,
    options: SqliteOptions,
    n: u32,
    rounds: u32,
) -> anyhow::Result<Vec<Phase>> {
    let name = format!(
        "{}{}",
        durability_short(options.durability).to_lowercase(),
        if options.step_log { "" } else { "-nolog" }
    );
    let store = open_sqlite_with(dir.join(format!("parallel-{name}.db")), options).await?;
    let probe = std::sync::Arc::new(Probe {
        store: store.clone(),
        phases: Mutex::new(Vec::new()),
    });
    let engine = Engine::new(store);
    let worker = engine
        .worker()
        .workflow(Fanout)
        .deps::<Probe>(probe.clone())
        .start();
    let h = engine
        .start::<Fanout>(&format!("fanout-{name}"), (n, rounds))
        .await?;
    h.result().await?;
    worker.shutdown().await;
    let phases = probe
        .phases
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(phases)
}

/// The `parallel` section.
pub async fn run(quick: bool, dir: &Path, report: &mut Report) -> anyhow::Result<()> {
    let n = if quick { 8 } else { 64 };
    let modes = [
        (Durability::ProcessCrashSafe, true),
        (Durability::ProcessCrashSafe, false),
        (Durability::PowerLossSafe, true),
    ];
    for (d, step_log) in modes {
        let rounds = match (quick, d) {
            (true, _) => 1,
            (false, Durability::ProcessCrashSafe) => 30,
            (false, Durability::PowerLossSafe) => 10,
        };
        let options = SqliteOptions {
            durability: d,
            step_log,
            ..SqliteOptions::default()
        };
        let phases = measure(dir, options, n, rounds).await?;
        let (par, par_tx, steps) = rates(&phases, true);
        let (seq, seq_tx, _) = rates(&phases, false);
        let mode = match (d, step_log) {
            (Durability::ProcessCrashSafe, false) => "NORMAL, no step log",
            _ => durability_short(d),
        };
        let note = format!(
            "{}{}; N={n}, {rounds} rounds, {steps} steps each way",
            durability_name(d),
            match (d, step_log) {
                (Durability::ProcessCrashSafe, true) => ", steps through the step log",
                _ => "",
            }
        );
        report.add(
            Figure::new(
                "parallel",
                format!("SQLite {mode} {n} parallel branch steps"),
                par,
                "steps/s",
            )
            .vs(format!("{n} sequential steps"), seq)
            .note(note),
        );
        report.add(
            Figure::new(
                "parallel",
                format!("SQLite {mode} commits per transaction, parallel"),
                par_tx,
                "commits/tx",
            )
            .vs("sequential", seq_tx)
            .note("WriterStats requests / transactions during the phase"),
        );
    }
    Ok(())
}
