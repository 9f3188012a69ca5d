//! The cost of committing one durable step, sequentially, on SQLite in each durability mode
//! (process-crash safe with and without the step log): `Store::commit_step` called directly
//! (one workflow claimed by one owner), and one `ctx.step` end to end inside a workflow. The
//! baseline is the same on the in-memory store.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use steadfast_durable::{
    Engine, Json, MemoryStore, NewWorkflow, StepError, StepKind, StepRecord, Store, Workflow,
    WorkflowCtx, WorkflowError, now_millis,
};
use steadfast_sqlite::{Durability, SqliteOptions};

use crate::report::{Figure, Report};
use crate::stats::{
    Summary, durability_name, durability_short, open_sqlite, open_sqlite_with, summarize, us,
};

/// Samples (µs) collected by a workflow through its deps.
#[derive(Debug, Default)]
pub struct Samples(pub Mutex<Vec<f64>>);

impl Samples {
    fn push(&self, v: f64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(v);
    }

    fn take(&self) -> Vec<f64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// `n` sequential user steps, each timed from the call to the result.
struct StepLoop;

impl Workflow for StepLoop {
    const NAME: &'static str = "bench_step_loop";
    type Input = u32;
    type Output = u32;

    async fn run(&self, ctx: &WorkflowCtx, n: u32) -> Result<u32, WorkflowError> {
        let samples = ctx.deps::<Samples>()?;
        let mut sum = 0;
        for i in 0..n {
            let t = Instant::now();
            let v: u32 = ctx
                .step("s", &i, move |_| async move { Ok::<u32, StepError>(i) })
                .await?;
            samples.push(us(t.elapsed()));
            sum += v;
        }
        Ok(sum)
    }
}

/// A step record like the ones a user step writes.
fn record(i: usize) -> StepRecord {
    StepRecord {
        position: (i + 1).to_string(),
        step_id: format!("s#{}", i + 1),
        kind: StepKind::Step,
        name: "s".into(),
        input_hash: format!("{i:016x}"),
        input: Some(Json::from(json!(i))),
        output: Ok(Json::from(json!(i))),
        attempts: 1,
        started_at: now_millis(),
        duration_us: 3,
        seq: 0,
    }
}

/// Commit `n` steps directly; µs per commit, after `warmup` unmeasured ones. With `idle`, wait
/// that long before each commit, so the threads involved have gone to sleep (as between the
/// model requests of a real agent).
pub async fn direct_commits(
    store: &dyn Store,
    n: usize,
    warmup: usize,
    idle: Option<Duration>,
) -> anyhow::Result<Vec<f64>> {
    let id = "bench-commit-direct";
    let owner = "bench-owner";
    store
        .create_workflow(NewWorkflow {
            id: id.into(),
            name: "bench_commit".into(),
            input: json!(null),
            parent_id: None,
        })
        .await?;
    let claims = store
        .claim(
            owner,
            &["bench_commit".to_string()],
            1,
            Duration::from_secs(3600),
            &[],
        )
        .await?;
    anyhow::ensure!(claims.len() == 1, "cannot claim the benchmark workflow");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + warmup {
        let rec = record(i);
        if let Some(d) = idle {
            tokio::time::sleep(d).await;
        }
        let t = Instant::now();
        store.commit_step(id, owner, rec, None).await?;
        if i >= warmup {
            samples.push(us(t.elapsed()));
        }
    }
    Ok(samples)
}

/// Run `n` sequential `ctx.step`s in a workflow; µs per step (the first `warmup` dropped).
pub async fn step_commits(engine: &Engine, n: u32, warmup: usize) -> anyhow::Result<Vec<f64>> {
    let samples = Arc::new(Samples::default());
    let worker = engine
        .worker()
        .workflow(StepLoop)
        .deps::<Samples>(samples.clone())
        .start();
    let h = engine.start::<StepLoop>("bench-step-loop", n).await?;
    h.result().await?;
    worker.shutdown().await;
    let mut s = samples.take();
    s.drain(..warmup.min(s.len()));
    Ok(s)
}

struct Both {
    direct: Summary,
    step: Summary,
}

async fn measure_memory(n: usize) -> anyhow::Result<Both> {
    let direct = direct_commits(&MemoryStore::new(), n, 50, None).await?;
    let step = step_commits(&Engine::new(MemoryStore::new()), n as u32 + 50, 50).await?;
    Ok(Both {
        direct: summarize(direct),
        step: summarize(step),
    })
}

async fn measure_sqlite(dir: &Path, options: SqliteOptions, n: usize) -> anyhow::Result<Both> {
    let name = mode_name(&options).to_lowercase().replace([' ', ','], "-");
    let path = |what: &str| dir.join(format!("commit-{what}-{name}.db"));
    let store = open_sqlite_with(path("direct"), options.clone()).await?;
    let direct = direct_commits(&store, n, 20, None).await?;
    drop(store);
    let store = open_sqlite_with(path("step"), options).await?;
    let step = step_commits(&Engine::new(store), n as u32 + 20, 20).await?;
    Ok(Both {
        direct: summarize(direct),
        step: summarize(step),
    })
}

/// A mode's name in the report: the durability, and whether steps go through the step log.
fn mode_name(options: &SqliteOptions) -> String {
    let d = durability_short(options.durability);
    match (options.durability, options.step_log) {
        (Durability::ProcessCrashSafe, false) => format!("{d}, no step log"),
        _ => d.to_string(),
    }
}

/// `commit_step` after 1 ms of idling each time (threads parked), on its own file.
async fn measure_idle(dir: &Path, d: Durability, n: usize) -> anyhow::Result<Summary> {
    let name = durability_short(d).to_lowercase();
    let store = open_sqlite(dir.join(format!("commit-idle-{name}.db")), d).await?;
    let s = direct_commits(&store, n, 5, Some(Duration::from_millis(1))).await?;
    Ok(summarize(s))
}

/// The `commit` section.
pub async fn run(quick: bool, dir: &Path, report: &mut Report) -> anyhow::Result<()> {
    let mem = measure_memory(if quick { 20 } else { 5000 }).await?;
    report.add(
        Figure::new(
            "commit",
            "MemoryStore commit_step median",
            mem.direct.median,
            "µs",
        )
        .note(format!(
            "baseline; p90 {:.2} µs, n={}",
            mem.direct.p90, mem.direct.n
        )),
    );
    report.add(
        Figure::new(
            "commit",
            "MemoryStore ctx.step median",
            mem.step.median,
            "µs",
        )
        .vs("MemoryStore commit_step", mem.direct.median)
        .note(format!("p90 {:.2} µs, n={}", mem.step.p90, mem.step.n)),
    );
    let modes = [
        (Durability::ProcessCrashSafe, true),
        (Durability::ProcessCrashSafe, false),
        (Durability::PowerLossSafe, true),
    ];
    for (d, step_log) in modes {
        let n = match (quick, d) {
            (true, _) => 20,
            (false, Durability::ProcessCrashSafe) => 3000,
            (false, Durability::PowerLossSafe) => 500,
        };
        let options = SqliteOptions {
            durability: d,
            step_log,
            ..SqliteOptions::default()
        };
        let mode = mode_name(&options);
        let s = measure_sqlite(dir, options, n).await?;
        let target = (d == Durability::ProcessCrashSafe && step_log).then_some(100.0);
        for (what, sum, base_name, base) in [
            (
                "commit_step",
                s.direct,
                "MemoryStore commit_step",
                mem.direct,
            ),
            ("ctx.step", s.step, "MemoryStore ctx.step", mem.step),
        ] {
            let mut f = Figure::new(
                "commit",
                format!("SQLite {mode} {what} median"),
                sum.median,
                "µs",
            )
            .vs(base_name, base.median)
            .note(format!(
                "{}{}, n={}",
                durability_name(d),
                if step_log {
                    ""
                } else {
                    ", every step a transaction"
                },
                sum.n
            ));
            if let Some(t) = target {
                f = f.target(format!("≤ {t} µs"), sum.median <= t);
            }
            report.add(f);
            report.add(
                Figure::new("commit", format!("SQLite {mode} {what} p90"), sum.p90, "µs")
                    .vs(format!("{base_name} p90"), base.p90),
            );
        }
        if d == Durability::ProcessCrashSafe && step_log {
            let idle = measure_idle(dir, d, if quick { 10 } else { 500 }).await?;
            report.add(
                Figure::new(
                    "commit",
                    format!("SQLite {mode} commit_step median after 1 ms idle"),
                    idle.median,
                    "µs",
                )
                .vs("back-to-back commit_step", s.direct.median)
                .note(format!(
                    "threads parked between commits, as between model requests; p90 {:.1} µs, n={}",
                    idle.p90, idle.n
                )),
            );
        }
    }
    Ok(())
}
