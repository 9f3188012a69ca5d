//! The resume test of the side-by-side workload: a durable K = 50 game runs in a child process
//! (this binary, re-executed with a hidden subcommand) against `mockllm.py` with
//! `MOCK_LATENCY_MS=100`. When the mock has received the questioner's 26th request (request
//! 2·25 + 1 of the conversation: 25 questions are finished), the child is killed with SIGKILL
//! 50 ms later, and a new child is started on the same database. It replays the 25 finished
//! questions from the journal and re-sends only the request that was in flight.
//!
//! Figures: the replay (inside the new child, from its worker start to its first model request,
//! and the span of its `Replayed` events), restart → first new request (from spawning the new
//! process to the mock's arrival time of its first request), the duplicates `/stats` counts, and
//! the new child's peak RSS.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steadfast_core::{
    Message, Model, ModelError, ModelProfile, ModelRef, ModelRequestParams, ModelResponse,
    ModelSettings,
};
use steadfast_durable::{Engine, StepEventKind, StepKind};
use steadfast_sqlite::Durability;

use crate::game::{self, GameResult, GameWorkflow};
use crate::mock::{Mock, script_path};
use crate::mockllm::{K, mock_model};
use crate::report::{Figure, Report};
use crate::stats::{ms, open_sqlite, peak_rss_kb, rss_kb};

/// Arguments of the hidden `__resume-child` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    /// The database file.
    #[arg(long)]
    pub db: PathBuf,
    /// The mock's base URL.
    #[arg(long)]
    pub base_url: String,
    /// The conversation id sent to the mock.
    #[arg(long)]
    pub conv: String,
    /// The workflow id of the game.
    #[arg(long)]
    pub id: String,
    /// Questions per game.
    #[arg(long, default_value_t = K)]
    pub k: u32,
}

/// What a child reports on its last stdout line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChildReport {
    /// From `main` to the first model request.
    pub main_to_first_request_ms: f64,
    /// Opening the SQLite store.
    pub open_ms: f64,
    /// From starting the worker to the first model request: claim, journal load, replay.
    pub worker_to_first_request_ms: f64,
    /// From the first to the last `Replayed` step event.
    pub replay_span_ms: f64,
    /// Steps answered from the journal.
    pub replayed_steps: u64,
    /// `ask_question` calls answered from the journal.
    pub replayed_questions: u64,
    /// RSS when `main` started, kB.
    pub rss_start_kb: u64,
    /// Peak RSS, kB.
    pub peak_rss_kb: u64,
    /// The game's result.
    pub result: Option<GameResult>,
}

/// A model that notes when it was first called.
struct FirstCall {
    inner: ModelRef,
    first: Arc<OnceLock<Instant>>,
}

type ModelFuture<'a> = Pin<Box<dyn Future<Output = Result<ModelResponse, ModelError>> + Send + 'a>>;

impl Model for FirstCall {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn profile(&self) -> ModelProfile {
        self.inner.profile()
    }

    fn request<'a>(
        &'a self,
        messages: &'a [Message],
        params: &'a ModelRequestParams,
        settings: &'a ModelSettings,
    ) -> ModelFuture<'a> {
        self.first.get_or_init(Instant::now);
        self.inner.request(messages, params, settings)
    }
}

#[derive(Default)]
struct Replays {
    first: Option<Instant>,
    last: Option<Instant>,
    steps: u64,
    questions: u64,
}

/// The child: run (or resume) the durable game and report.
pub async fn child(args: ChildArgs, main_start: Instant, rss_start_kb: u64) -> anyhow::Result<()> {
    let t = Instant::now();
    let store = open_sqlite(args.db.clone(), Durability::ProcessCrashSafe).await?;
    let open_ms = ms(t.elapsed());
    let engine = Engine::new(store);
    let first = Arc::new(OnceLock::new());
    let probed = |name: &str| -> anyhow::Result<ModelRef> {
        Ok(Arc::new(FirstCall {
            inner: mock_model(&args.base_url, name, &args.conv)?,
            first: first.clone(),
        }))
    };
    let answerer = game::answerer(probed("answerer")?)?;
    let questioner =
        game::questioner(probed(&format!("questioner-{}", args.k))?, answerer, args.k)?;
    let replays = Arc::new(Mutex::new(Replays::default()));
    let r = replays.clone();
    let worker_start = Instant::now();
    let worker = engine
        .worker()
        .workflow(GameWorkflow { questioner })
        .on_step(move |e| {
            if e.event == StepEventKind::Replayed {
                let now = Instant::now();
                let mut r = r.lock().unwrap_or_else(|e| e.into_inner());
                r.first.get_or_insert(now);
                r.last = Some(now);
                r.steps += 1;
                if e.kind == StepKind::Tool {
                    r.questions += 1;
                }
            }
        })
        .start();
    let h = engine.start::<GameWorkflow>(&args.id, ()).await?;
    let result = h.result().await?;
    worker.shutdown().await;
    let first = first.get().copied().context("no model request was sent")?;
    let r = replays.lock().unwrap_or_else(|e| e.into_inner());
    let report = ChildReport {
        main_to_first_request_ms: ms(first - main_start),
        open_ms,
        worker_to_first_request_ms: ms(first - worker_start),
        replay_span_ms: match (r.first, r.last) {
            (Some(a), Some(b)) => ms(b - a),
            _ => 0.0,
        },
        replayed_steps: r.steps,
        replayed_questions: r.questions,
        rss_start_kb,
        peak_rss_kb: peak_rss_kb().unwrap_or(0),
        result: Some(result),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Seconds since the Unix epoch, as the mock's `time.time()`.
fn epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Arrival times (`t_start`, epoch seconds) of the mock's finished requests of `conv`, sorted.
fn arrivals(mock: &Mock, conv: &str) -> anyhow::Result<Vec<f64>> {
    let s = mock.stats(conv, true)?;
    let mut t: Vec<f64> = s["records"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["t_start"].as_f64()).collect())
        .unwrap_or_default();
    t.sort_by(f64::total_cmp);
    Ok(t)
}

/// Poll `/stats` until `started` of `conv` reaches `n`; fail if `child` exits first.
fn wait_started(
    mock: &Mock,
    conv: &str,
    n: u64,
    child: &mut std::process::Child,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if mock.counter(conv, "started")? >= n {
            return Ok(Instant::now());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the game process exited before request {n}: {status}");
        }
        anyhow::ensure!(Instant::now() < deadline, "request {n} never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The resume test.
pub fn run(quick: bool, dir: &Path, report: &mut Report) -> anyhow::Result<()> {
    // Quick mode keeps the same shape at a fifth of the latency.
    let (latency_ms, kill_after) = if quick { (20, 10) } else { (100, 50) };
    let finished = 25u64;
    let mock = Mock::start(&script_path(), latency_ms)?;
    let db = dir.join("resume.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let conv = "resume";
    let exe = std::env::current_exe()?;
    let command = || {
        let mut c = Command::new(&exe);
        c.arg("__resume-child")
            .arg("--db")
            .arg(&db)
            .arg("--base-url")
            .arg(mock.base_url())
            .arg("--conv")
            .arg(conv)
            .arg("--id")
            .arg("resume-game")
            .arg("--k")
            .arg(K.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        c
    };

    // The first run, killed 50 ms into the questioner's 26th request.
    let spawn1 = epoch_secs();
    let mut c1 = command().stdout(Stdio::null()).spawn()?;
    let in_flight = 2 * finished + 1;
    let seen = wait_started(&mock, conv, in_flight, &mut c1)?;
    std::thread::sleep(
        (seen + Duration::from_millis(kill_after)).saturating_duration_since(Instant::now()),
    );
    c1.kill()?;
    c1.wait()?;
    let started_at_kill = mock.counter(conv, "started")?;
    anyhow::ensure!(
        started_at_kill == in_flight,
        "{started_at_kill} requests had arrived at the kill, expected {in_flight}"
    );

    // The restart.
    let spawn2 = epoch_secs();
    let c2 = command().stdout(Stdio::piped()).spawn()?;
    let out = c2.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "the restarted game failed: {}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let child: ChildReport = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| format!("cannot read the child's report: {stdout}"))?;
    let result = child
        .result
        .clone()
        .context("the child reported no result")?;
    result.check(K)?;

    let all = arrivals(&mock, conv)?;
    let stats = mock.stats(conv, false)?;
    let conv_stats: &Value = &stats["conversations"][conv];
    let duplicates = conv_stats["duplicates"].as_u64().unwrap_or(0);
    let requests = conv_stats["requests"].as_u64().unwrap_or(0);
    let first_new = all
        .iter()
        .copied()
        .find(|t| *t >= spawn2)
        .context("the mock saw no request from the restarted process")?;
    let restart_ms = (first_new - spawn2) * 1e3;
    // The first process's requests, the killed one included (the mock records it when its
    // latency has passed).
    let live: Vec<f64> = all.iter().copied().filter(|t| *t < spawn2).collect();
    let fresh_ms = live.first().map_or(0.0, |t| (t - spawn1) * 1e3);
    // Executing the 25 questions live: from the first request to the arrival of the 26th
    // question's request.
    let live_ms = match (live.first(), live.get(2 * finished as usize)) {
        (Some(a), Some(b)) => (b - a) * 1e3,
        _ => 0.0,
    };
    let note = format!(
        "MOCK_LATENCY_MS={latency_ms}, SIGKILL {kill_after} ms into request {in_flight} (the questioner's 26th)"
    );
    report.add(
        Figure::new(
            "resume",
            "replay of 25 finished questions (worker start→first new request)",
            child.worker_to_first_request_ms,
            "ms",
        )
        .vs("executing them live", live_ms)
        .target("< 10 ms", child.worker_to_first_request_ms < 10.0)
        .note(format!(
            "{note}; claim + journal load + replay of {} steps ({} questions)",
            child.replayed_steps, child.replayed_questions
        )),
    );
    report.add(
        Figure::new(
            "resume",
            "replay span (first→last replayed step)",
            child.replay_span_ms,
            "ms",
        )
        .vs("executing them live", live_ms)
        .target("< 10 ms", child.replay_span_ms < 10.0),
    );
    report.add(
        Figure::new("resume", "restart → first new request", restart_ms, "ms")
            .vs("fresh start → first request", fresh_ms)
            .target("< 100 ms", restart_ms < 100.0)
            .note(format!(
                "spawn to the mock's arrival time; in the child: main→request {:.1} ms, store open {:.1} ms",
                child.main_to_first_request_ms, child.open_ms
            )),
    );
    report.add(
        Figure::new(
            "resume",
            "duplicate requests (re-sent)",
            duplicates as f64,
            "",
        )
        .vs("requests in flight at the kill", 1.0)
        .target("= 1", duplicates == 1)
        .note(format!(
            "{requests} requests in the conversation (one game is {})",
            2 * K + 1
        )),
    );
    report.add(
        Figure::new(
            "resume",
            "peak RSS of the restarted process",
            child.peak_rss_kb as f64 / 1024.0,
            "MB",
        )
        .vs("its RSS at start", child.rss_start_kb as f64 / 1024.0),
    );
    Ok(())
}

/// The hidden subcommand's entry: run the child on its own runtime.
pub fn child_main(args: ChildArgs, main_start: Instant) -> anyhow::Result<()> {
    let rss = rss_kb().unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(child(args, main_start, rss))
}
