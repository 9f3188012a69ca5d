//! Replay: the time a fresh worker needs to bring a workflow with a long history back to where
//! it waits. The journal is built once (N steps, then a `ctx.recv` that suspends the workflow);
//! each measurement sends a message, and a fresh worker claims the workflow, loads its journal,
//! replays the N steps (and the receipts of earlier messages), consumes the message and suspends
//! at the next `recv`.
//!
//! Two figures per size: the replay alone (first to last `Replayed` step event) and the whole
//! resume (from `load_journal` to the `finish` that suspends it again, timed in the store).
//! The baseline is executing the same N steps live, when the journal was built.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use steadfast_durable::{
    Engine, StepError, StepEventKind, StepKind, Workflow, WorkflowCtx, WorkflowError,
    WorkflowStatus,
};
use steadfast_sqlite::Durability;

use crate::report::{Figure, Report};
use crate::stats::{median, ms, open_sqlite};
use crate::timed_store::TimedStore;

/// N steps, then wait for messages forever.
struct ReplayWorkflow;

impl Workflow for ReplayWorkflow {
    const NAME: &'static str = "bench_replay";
    type Input = u32;
    type Output = u32;

    async fn run(&self, ctx: &WorkflowCtx, n: u32) -> Result<u32, WorkflowError> {
        for i in 0..n {
            ctx.step("s", &i, move |_| async move { Ok::<u32, StepError>(i) })
                .await?;
        }
        loop {
            let _message: Option<u32> = ctx.recv("go", None).await?;
        }
    }
}

/// What the step observer saw during one resume.
#[derive(Debug, Default)]
struct Seen {
    first: Option<Instant>,
    last: Option<Instant>,
    replayed_steps: u64,
}

/// Wait until workflow `id` has status `want`.
pub async fn wait_status(engine: &Engine, id: &str, want: WorkflowStatus) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(rec) = engine.store().get_workflow(id).await? {
            if rec.status == want {
                return Ok(());
            }
            anyhow::ensure!(
                !rec.status.is_terminal(),
                "workflow `{id}` ended: {:?}",
                rec.output
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "workflow `{id}` never reached {want}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Figures of one history size (ms).
struct Sizes {
    build: f64,
    replay: f64,
    resume: f64,
    load: f64,
}

async fn measure(dir: &Path, n: u32, iterations: u32) -> anyhow::Result<Sizes> {
    let store = open_sqlite(
        dir.join(format!("replay-{n}.db")),
        Durability::ProcessCrashSafe,
    )
    .await?;
    let timed = TimedStore::new(store);
    let probe = timed.probe();
    let engine = Engine::new(timed);
    let id = format!("replay-{n}");

    let worker = engine.worker().workflow(ReplayWorkflow).start();
    let t = Instant::now();
    engine.start::<ReplayWorkflow>(&id, n).await?;
    wait_status(&engine, &id, WorkflowStatus::Suspended).await?;
    let build = ms(t.elapsed());
    worker.shutdown().await;

    let (mut replay, mut resume, mut load) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..iterations {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let worker = engine
            .worker()
            .workflow(ReplayWorkflow)
            .on_step(move |e| {
                if e.event == StepEventKind::Replayed {
                    let now = Instant::now();
                    let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                    s.first.get_or_insert(now);
                    s.last = Some(now);
                    if e.kind == StepKind::Step {
                        s.replayed_steps += 1;
                    }
                }
            })
            .start();
        probe.reset();
        engine.send(&id, "go", i).await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while worker.runs_ended() == 0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the resume of `{id}` never ended"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        worker.shutdown().await;
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        anyhow::ensure!(
            s.replayed_steps == u64::from(n),
            "replayed {} steps, expected {n}",
            s.replayed_steps
        );
        if let (Some(a), Some(b)) = (s.first, s.last) {
            replay.push(ms(b - a));
        }
        let (lj, fin) = (probe.get("load_journal"), probe.get("finish"));
        if let (Some(a), Some(b)) = (lj.last_start, fin.last_end) {
            resume.push(ms(b - a));
        }
        load.push(ms(lj.total));
    }
    Ok(Sizes {
        build,
        replay: median(replay),
        resume: median(resume),
        load: median(load),
    })
}

/// The `replay` section.
pub async fn run(quick: bool, dir: &Path, report: &mut Report) -> anyhow::Result<()> {
    let cases: &[(u32, u32)] = if quick {
        &[(100, 2), (1_000, 1)]
    } else {
        &[(100, 30), (10_000, 7)]
    };
    for &(n, iterations) in cases {
        let s = measure(dir, n, iterations).await?;
        let note = format!("SQLite NORMAL, median of {iterations} fresh workers");
        let mut f = Figure::new(
            "replay",
            format!("replay {n} steps (first→last replayed)"),
            s.replay,
            "ms",
        )
        .vs(format!("executing the {n} steps live"), s.build)
        .note(note.clone());
        if n == 100 {
            f = f.target("< 10 ms", s.replay < 10.0);
        }
        report.add(f);
        let mut f = Figure::new(
            "replay",
            format!("resume {n} steps (load_journal→suspended again)"),
            s.resume,
            "ms",
        )
        .vs(format!("executing the {n} steps live"), s.build)
        .note(format!(
            "{note}; load_journal alone {:.2} ms; includes one recv commit",
            s.load
        ));
        if n == 100 {
            f = f.target("< 10 ms", s.resume < 10.0);
        }
        report.add(f);
    }
    Ok(())
}
