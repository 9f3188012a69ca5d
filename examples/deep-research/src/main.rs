//! `deep-research "QUESTION"`: plan, parallel search, analysis, durable. Kill it during the
//! analysis, run it again with `--id`, and only the analysis runs again.
//!
//! Progress goes to stderr; the report goes to stdout (or to `--out FILE`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[cfg(feature = "temporal")]
mod temporal;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use deep_research::offline;
use deep_research::research::{
    Agents, DeepResearch, Models, Research, ResearchInput, ResearchReport, research,
};
use deep_research::search::{self, SearchBackend, TAVILY_DEFAULT_URL};
use steadfast::{
    ClientConfig, Model, ModelChoice, OpenAIChatModel, PlainDriver, StepEvent, StepEventKind,
    StepKind, WorkflowStatus,
};

/// The question of the pydantic-ai demo, asked about Rust.
const DEFAULT_QUESTION: &str = "What's the best Rust agent framework to use if I care about durable execution and type safety?";

/// Deep research: a plan agent, up to five search agents in parallel, and an analysis agent.
/// Durable by default: kill it, then run the same command with `--id` to resume.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The question (default: which Rust agent framework to use for durable execution and type
    /// safety). Ignored when `--id` names an existing run, which keeps its own question.
    question: Option<String>,
    /// The run's id. A new id starts a run; the id of an unfinished run resumes it; the id of a
    /// finished run prints its report. Without it, a fresh id is printed first.
    #[arg(long)]
    id: Option<String>,
    /// The database file of the embedded engine.
    #[arg(long, env = "STEADFAST_DB", default_value = "steadfast.db")]
    db: String,
    /// Run the same agents without durability, to compare.
    #[arg(long)]
    plain: bool,
    /// The durable engine: `sqlite` (embedded) or `temporal` (a Temporal cluster; build with
    /// `--features temporal`).
    #[arg(long, default_value = "sqlite")]
    engine: String,
    #[command(flatten)]
    temporal: TemporalArgs,
    /// With `--engine temporal`: start or re-attach to the run without a worker in this process.
    #[arg(long)]
    no_worker: bool,
    /// With `--engine temporal`: run only a worker, until Ctrl-C (workers as processes of their
    /// own; start runs with `--no-worker`).
    #[arg(long)]
    worker_only: bool,
    /// The plan agent's model, `provider:model` (default: from the API keys set, else scripted).
    #[arg(long)]
    plan_model: Option<String>,
    /// The search agents' model, `provider:model` (default: from the API keys set, else scripted).
    #[arg(long)]
    search_model: Option<String>,
    /// The analysis agent's model, `provider:model` (default: from the API keys set, else
    /// scripted).
    #[arg(long)]
    analysis_model: Option<String>,
    /// An OpenAI-compatible server for all three agents (llama.cpp, Ollama, vLLM, ...); the
    /// model names are taken from the `--*-model` flags (default `plan`, `search`, `analysis`).
    #[arg(long, env = "OPENAI_BASE_URL")]
    base_url: Option<String>,
    /// The search backend: Tavily when `TAVILY_API_KEY` is set, else the bundled corpus.
    #[arg(long, value_enum, default_value_t = SearchChoice::Auto)]
    search: SearchChoice,
    /// Tavily's base URL.
    #[arg(long, env = "TAVILY_BASE_URL", default_value = TAVILY_DEFAULT_URL)]
    tavily_url: String,
    /// Results per search.
    #[arg(long, default_value_t = deep_research::research::MAX_RESULTS)]
    max_results: usize,
    /// Thinking time of the scripted (offline) models per turn, in milliseconds, so that a
    /// person can watch the run and kill it midway.
    #[arg(long, default_value_t = 150)]
    pace: u64,
    /// Write the report to this file instead of stdout.
    #[arg(long)]
    out: Option<String>,
    /// Print a live span tree (steps, model requests, tools; durations, tokens and cost) on
    /// stderr. `STEADFAST_CONSOLE=1` does the same; `OTEL_EXPORTER_OTLP_ENDPOINT` exports the
    /// spans over OTLP as well.
    #[arg(long)]
    trace: bool,
}

/// Where the Temporal cluster is (`--engine temporal`).
#[derive(clap::Args, Debug, Clone)]
pub struct TemporalArgs {
    /// The Temporal frontend, `host:port`.
    #[arg(
        long,
        env = "STEADFAST_TEMPORAL_ADDRESS",
        default_value = "127.0.0.1:7233"
    )]
    pub temporal_address: String,
    /// The Temporal namespace.
    #[arg(long, env = "STEADFAST_TEMPORAL_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// The task queue of the research workflows.
    #[arg(long, env = "STEADFAST_TASK_QUEUE", default_value = "deep-research")]
    pub task_queue: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SearchChoice {
    /// Tavily if `TAVILY_API_KEY` is set, else offline.
    Auto,
    /// Tavily (needs `TAVILY_API_KEY`).
    Tavily,
    /// BM25 over the bundled corpus.
    Offline,
}

fn env_var(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// The models: flags first, then an OpenAI-compatible base URL, then API keys, else scripted.
fn choose_models(args: &Args) -> Result<(Models, String)> {
    steadfast::install_providers();
    if let Some(base) = &args.base_url {
        let name = |flag: &Option<String>, default: &str| {
            let m = flag.clone().unwrap_or_else(|| default.to_string());
            m.split_once(':').map(|(_, n)| n.to_string()).unwrap_or(m)
        };
        let mut cfg = ClientConfig::new(base.clone());
        cfg.api_key = env_var("OPENAI_API_KEY");
        let model = |n: &str| -> Result<ModelChoice> {
            Ok(ModelChoice::from(
                OpenAIChatModel::with_config(n, cfg.clone())?
                    .with_provider_name("openai-compatible"),
            ))
        };
        let (p, s, a) = (
            name(&args.plan_model, "plan"),
            name(&args.search_model, "search"),
            name(&args.analysis_model, "analysis"),
        );
        let label = format!("{p} / {s} / {a} at {base}");
        return Ok((
            Models {
                plan: model(&p)?,
                search: model(&s)?,
                analysis: model(&a)?,
            },
            label,
        ));
    }
    let defaults = if env_var("ANTHROPIC_API_KEY").is_some() {
        Some((
            "anthropic:claude-sonnet-4-5",
            "anthropic:claude-haiku-4-5",
            "anthropic:claude-sonnet-4-5",
        ))
    } else if env_var("OPENAI_API_KEY").is_some() {
        Some(("openai:gpt-4.1", "openai:gpt-4.1-mini", "openai:gpt-4.1"))
    } else if env_var("GEMINI_API_KEY").is_some() || env_var("GOOGLE_API_KEY").is_some() {
        Some((
            "google:gemini-2.5-flash",
            "google:gemini-2.5-flash",
            "google:gemini-2.5-flash",
        ))
    } else {
        None
    };
    let (sp, ss, sa) = offline::scripted_models(Duration::from_millis(args.pace));
    let pick = |flag: &Option<String>,
                default: Option<&str>,
                scripted: steadfast::FunctionModel| match (flag, default) {
        (Some(m), _) => (ModelChoice::from(m.as_str()), m.clone()),
        (None, Some(d)) => (ModelChoice::from(d), d.to_string()),
        (None, None) => {
            let name = scripted.name().to_string();
            (ModelChoice::from(scripted), name)
        }
    };
    let (plan, pn) = pick(&args.plan_model, defaults.map(|d| d.0), sp);
    let (search, sn) = pick(&args.search_model, defaults.map(|d| d.1), ss);
    let (analysis, an) = pick(&args.analysis_model, defaults.map(|d| d.2), sa);
    Ok((
        Models {
            plan,
            search,
            analysis,
        },
        format!("{pn} plans, {sn} searches, {an} writes"),
    ))
}

fn choose_backend(args: &Args) -> Result<Arc<dyn SearchBackend>> {
    let key = env_var("TAVILY_API_KEY");
    let key = match (args.search, key) {
        (SearchChoice::Offline, _) => None,
        (SearchChoice::Tavily, None) => bail!("--search tavily needs TAVILY_API_KEY"),
        (_, k) => k,
    };
    Ok(search::choose(key.as_deref(), &args.tavily_url)?)
}

fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("deep-research-{:08x}", h.finish() as u32)
}

/// A duration for people: µs, ms or s.
fn human(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// One line per step event, on stderr.
fn show_step(e: &StepEvent) {
    let what = match (&e.kind, &e.input) {
        (StepKind::Tool, Some(input)) => input
            .get("query")
            .and_then(|q| q.as_str())
            .map(|q| format!("  “{q}”"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    match &e.event {
        StepEventKind::Completed => {
            eprintln!("  ✓ {:<60} {:>9}{what}", e.step_id, human(e.duration))
        }
        StepEventKind::Replayed => {
            eprintln!(
                "  ↺ {:<60} {:>9}  replayed{what}",
                e.step_id,
                human(e.duration)
            )
        }
        StepEventKind::Retrying {
            attempt,
            error,
            delay,
        } => eprintln!(
            "  ✗ {} attempt {attempt} failed: {error}; retrying in {}",
            e.step_id,
            human(*delay)
        ),
        StepEventKind::Failed { error } => eprintln!("  ✗ {} failed: {error}", e.step_id),
    }
}

fn links_in(report: &str) -> usize {
    let mut urls: Vec<&str> = report
        .match_indices("](")
        .filter_map(|(i, _)| report[i + 2..].split(')').next())
        .collect();
    urls.sort_unstable();
    urls.dedup();
    urls.len()
}

fn deliver(
    args: &Args,
    r: &ResearchReport,
    sent: u64,
    replayed: u64,
    started: Instant,
) -> Result<()> {
    let target = match &args.out {
        Some(path) => {
            std::fs::write(path, &r.report).with_context(|| format!("writing {path}"))?;
            path.clone()
        }
        None => "stdout".to_string(),
    };
    eprintln!();
    eprintln!(
        "Report: {} characters, {} distinct links, from {} searches ({} sources) → {target}",
        r.report.chars().count(),
        links_in(&r.report),
        r.plan.web_search_steps.len(),
        r.sources_found
    );
    if sent + replayed > 0 {
        eprintln!("Model requests: {sent} sent, {replayed} replayed from the journal");
    } else {
        eprintln!("Model requests: {}", r.usage.requests);
    }
    eprintln!(
        "Tokens: {} in, {} out   Cost: ${:.4}{}",
        r.usage.input_tokens,
        r.usage.output_tokens,
        r.usage.cost_usd,
        if r.usage.unpriced_requests > 0 {
            " (some models have no price)"
        } else {
            ""
        }
    );
    eprintln!("Wall time: {}", human(started.elapsed()));
    if args.out.is_none() {
        println!("{}", r.report.trim_end());
    }
    Ok(())
}

/// `--engine temporal`.
#[cfg(feature = "temporal")]
async fn on_temporal(
    args: &Args,
    agents: &Agents,
    deps: Arc<Research>,
    started: Instant,
) -> Result<()> {
    if args.worker_only {
        return temporal::worker(&args.temporal, agents, deps).await;
    }
    let id = args.id.clone().unwrap_or_else(|| {
        let id = new_id();
        eprintln!("Research id: {id}   (re-attach with --id {id})");
        id
    });
    let question = args
        .question
        .clone()
        .unwrap_or_else(|| DEFAULT_QUESTION.to_string());
    let r =
        temporal::research(&args.temporal, &id, question, agents, deps, !args.no_worker).await?;
    deliver(args, &r, 0, 0, started)?;
    eprintln!(
        "History: temporal workflow show --workflow-id {id} --address {}",
        args.temporal.temporal_address
    );
    Ok(())
}

/// `--engine temporal` in a build without it.
#[cfg(not(feature = "temporal"))]
async fn on_temporal(_: &Args, _: &Agents, _: Arc<Research>, _: Instant) -> Result<()> {
    bail!(
        "this build has no Temporal engine; rebuild with it: \
         cargo run -p deep-research --features temporal -- --engine temporal"
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let mut telemetry = steadfast::otel::Config::from_env()?;
    telemetry.console |= args.trace;
    let _otel = steadfast::otel::init_with(telemetry)?;
    let (models, label) = choose_models(&args)?;
    let backend = choose_backend(&args)?;
    let agents = Agents::new(models)?;
    eprintln!("Deep research: {label}. Search: {}.", backend.describe());
    let progress: deep_research::research::Progress = Arc::new(|line: &str| eprintln!("{line}"));
    let deps = Arc::new(Research {
        backend,
        max_results: args.max_results,
        progress: Some(progress),
    });

    if args.plain {
        let question = args
            .question
            .clone()
            .unwrap_or_else(|| DEFAULT_QUESTION.to_string());
        eprintln!("Plain run (no durability): {question}\n");
        let r = research(&agents, &PlainDriver, &question, deps).await?;
        return deliver(&args, &r, 0, 0, started);
    }
    match args.engine.as_str() {
        "sqlite" if args.worker_only || args.no_worker => {
            bail!(
                "--worker-only and --no-worker are for --engine temporal; the embedded engine runs its worker in this process"
            )
        }
        "sqlite" => {}
        "temporal" => return on_temporal(&args, &agents, deps, started).await,
        other => bail!("unknown engine `{other}`: use sqlite or temporal"),
    }

    let engine =
        steadfast::sqlite_engine(&args.db).with_context(|| format!("opening {}", args.db))?;
    let id = match &args.id {
        Some(id) => id.clone(),
        None => {
            let id = new_id();
            eprintln!("Research id: {id}   (resume with --id {id})");
            id
        }
    };
    let question = match engine.store().get_workflow(&id).await? {
        Some(rec) => {
            let input: ResearchInput =
                serde_json::from_value(rec.input.clone()).context("reading the run's input")?;
            if args.question.as_ref().is_some_and(|q| *q != input.question) {
                eprintln!(
                    "Run {id} already researches “{}”; the question given is ignored.",
                    input.question
                );
            }
            match rec.status {
                WorkflowStatus::Completed => eprintln!("Run {id} is finished; its report:"),
                s if s.is_terminal() => bail!("run {id} ended: {s}"),
                _ => eprintln!("Resuming {id}: finished steps are answered from the journal.\n"),
            }
            input.question
        }
        None => {
            let q = args
                .question
                .clone()
                .unwrap_or_else(|| DEFAULT_QUESTION.to_string());
            eprintln!("New run {id} in {}: {q}\n", args.db);
            q
        }
    };

    let sent = Arc::new(AtomicU64::new(0));
    let replayed = Arc::new(AtomicU64::new(0));
    let (s, r) = (sent.clone(), replayed.clone());
    let worker = engine
        .worker()
        .workflow(DeepResearch { agents })
        .deps::<Research>(deps)
        .on_step(move |e| {
            if e.kind == StepKind::ModelRequest {
                match e.event {
                    StepEventKind::Completed => s.fetch_add(1, Ordering::Relaxed),
                    StepEventKind::Replayed => r.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
            show_step(e);
        })
        .start();

    let handle = engine
        .start::<DeepResearch>(&id, ResearchInput { question })
        .await?;
    let result = tokio::select! {
        r = handle.result() => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nInterrupted. Resume with: deep-research --id {id} --db {}", args.db);
            std::process::exit(130);
        }
    };
    worker.shutdown().await;
    let report = result?;
    deliver(
        &args,
        &report,
        sent.load(Ordering::Relaxed),
        replayed.load(Ordering::Relaxed),
        started,
    )?;
    eprintln!("History: steadfast show {id} --db {}", args.db);
    Ok(())
}
