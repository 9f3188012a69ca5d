//! Twenty questions, durable: two agents play; a flaky tool is retried; kill the process and run
//! the same command with `--id` to resume, with the finished questions answered from the journal.

mod eval;
mod game;
mod knowledge;
#[cfg(feature = "temporal")]
mod temporal;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use game::{Game, GameInput, GameOutcome, Shared, TwentyQuestions};
use steadfast::{
    ClientConfig, FunctionModel, ModelChoice, OpenAIChatModel, StepEventKind, StepKind,
    WorkflowStatus,
};

/// Two agents play twenty questions. Durable by default: kill it, then run the same command with
/// `--id` to resume.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The game's id. A new id starts a game; the id of an unfinished game resumes it; the id of
    /// a finished game prints its result. Without it, a fresh id is printed first.
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
    /// With `--engine temporal`: start or re-attach to the game without running a worker in
    /// this process (workers run as `twenty-questions worker --engine temporal`).
    #[arg(long)]
    no_worker: bool,
    /// The secret object.
    #[arg(long, default_value = "potato")]
    secret: String,
    /// Probability that one `ask_question` call fails (retried under its policy).
    #[arg(long, default_value_t = 0.1)]
    failure_rate: f64,
    /// Seed of the simulated failures.
    #[arg(long, default_value_t = 4)]
    seed: u64,
    /// The questioner's model, `provider:model` (default: from the API keys set, else scripted).
    #[arg(long)]
    questioner_model: Option<String>,
    /// The answerer's model, `provider:model` (default: from the API keys set, else scripted).
    #[arg(long)]
    answerer_model: Option<String>,
    /// An OpenAI-compatible server for both agents (llama.cpp, Ollama, vLLM, ...).
    #[arg(long, env = "OPENAI_BASE_URL")]
    base_url: Option<String>,
    /// The most questions the questioner may ask.
    #[arg(long, default_value_t = 20)]
    max_questions: u32,
    /// Thinking time of the scripted (offline) players per turn, in milliseconds, so that a
    /// person can watch the game and kill it midway.
    #[arg(long, default_value_t = 150)]
    pace: u64,
    /// Print a live span tree (steps, model requests, tools; durations, tokens and cost) on
    /// stderr. `STEADFAST_CONSOLE=1` does the same; `OTEL_EXPORTER_OTLP_ENDPOINT` exports the
    /// spans over OTLP as well.
    #[arg(long, global = true)]
    trace: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Compare questioners (the offline scripted strategies, or models) on six secrets: a table of
    /// question counts, correct guesses, requests, tokens, cost and duration.
    Eval(eval::EvalArgs),
    /// Run a worker as a process of its own (`--engine temporal`): it runs the games that
    /// clients start on its task queue. The embedded engine runs its worker in the game process.
    Worker {
        /// The engine: `temporal`.
        #[arg(long, default_value = "temporal")]
        engine: String,
    },
}

/// Where the Temporal cluster is (`--engine temporal`).
#[derive(clap::Args, Debug, Clone)]
pub struct TemporalArgs {
    /// The Temporal frontend, `host:port`.
    #[arg(
        long,
        env = "STEADFAST_TEMPORAL_ADDRESS",
        default_value = "127.0.0.1:7233",
        global = true
    )]
    pub temporal_address: String,
    /// The Temporal namespace.
    #[arg(
        long,
        env = "STEADFAST_TEMPORAL_NAMESPACE",
        default_value = "default",
        global = true
    )]
    pub namespace: String,
    /// The task queue of the game workflows.
    #[arg(
        long,
        env = "STEADFAST_TASK_QUEUE",
        default_value = "twenty-questions",
        global = true
    )]
    pub task_queue: String,
}

/// The error for `--engine temporal` in a build without it.
#[cfg(not(feature = "temporal"))]
fn no_temporal() -> anyhow::Error {
    anyhow::anyhow!(
        "this build has no Temporal engine; rebuild with it: \
         cargo run -p twenty-questions --features temporal -- --engine temporal"
    )
}

fn has_env(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.trim().is_empty())
}

/// The models: flags first, then an OpenAI-compatible base URL, then API keys, else scripted.
fn choose_models(args: &Args) -> Result<(ModelChoice, ModelChoice, String)> {
    steadfast::install_providers();
    if let Some(base) = &args.base_url {
        let name = |flag: &Option<String>, default: &str| {
            let m = flag.clone().unwrap_or_else(|| default.to_string());
            m.split_once(':').map(|(_, n)| n.to_string()).unwrap_or(m)
        };
        let mut cfg = ClientConfig::new(base.clone());
        cfg.api_key = std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        let q = name(&args.questioner_model, "questioner");
        let a = name(&args.answerer_model, "answerer");
        let label = format!("{q} / {a} at {base}");
        return Ok((
            ModelChoice::from(
                OpenAIChatModel::with_config(&q, cfg.clone())?
                    .with_provider_name("openai-compatible"),
            ),
            ModelChoice::from(
                OpenAIChatModel::with_config(&a, cfg)?.with_provider_name("openai-compatible"),
            ),
            label,
        ));
    }
    let defaults = if has_env("ANTHROPIC_API_KEY") {
        Some(("anthropic:claude-sonnet-4-5", "anthropic:claude-haiku-4-5"))
    } else if has_env("OPENAI_API_KEY") {
        Some(("openai:gpt-4.1", "openai:gpt-4.1-mini"))
    } else if has_env("GEMINI_API_KEY") || has_env("GOOGLE_API_KEY") {
        Some(("google:gemini-2.5-flash", "google:gemini-2.5-flash"))
    } else {
        None
    };
    let pick = |flag: &Option<String>, default: Option<&str>, scripted: FunctionModel| match (
        flag, default,
    ) {
        (Some(m), _) => (ModelChoice::from(m.as_str()), m.clone()),
        (None, Some(d)) => (ModelChoice::from(d), d.to_string()),
        (None, None) => {
            let name = scripted_name(&scripted);
            (ModelChoice::from(scripted), name)
        }
    };
    let pace = std::time::Duration::from_millis(args.pace);
    let scripted = |turn: fn(&[steadfast::Message]) -> steadfast::ModelResponse, name: &str| {
        FunctionModel::new_async(move |m, _| async move {
            tokio::time::sleep(pace).await;
            Ok(turn(&m))
        })
        .named(name)
    };
    let (q, qn) = pick(
        &args.questioner_model,
        defaults.map(|d| d.0),
        scripted(knowledge::questioner_turn, "scripted-questioner"),
    );
    let (a, an) = pick(
        &args.answerer_model,
        defaults.map(|d| d.1),
        scripted(knowledge::answerer_turn, "scripted-answerer"),
    );
    Ok((q, a, format!("{qn} asks, {an} answers")))
}

fn scripted_name(m: &FunctionModel) -> String {
    use steadfast::Model;
    m.name().to_string()
}

fn new_game_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("twenty-questions-{:08x}", h.finish() as u32)
}

pub(crate) fn print_outcome(
    o: &GameOutcome,
    secret: &str,
    sent: u64,
    replayed: u64,
    started: Instant,
) {
    let verdict = if o.correct { "✔ right" } else { "✘ wrong" };
    println!();
    println!("Guess: {}  {verdict} (the secret was {secret})", o.guess);
    println!("Questions: {}", o.questions);
    if sent + replayed > 0 {
        println!("Model requests: {sent} sent, {replayed} replayed from the journal");
    } else {
        println!("Model requests: {}", o.usage.requests);
    }
    println!(
        "Tokens: {} in, {} out   Cost: ${:.4}{}",
        o.usage.input_tokens,
        o.usage.output_tokens,
        o.usage.cost_usd,
        if o.usage.unpriced_requests > 0 {
            " (some models have no price)"
        } else {
            ""
        }
    );
    println!("Wall time: {}", game::human(started.elapsed()));
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut telemetry = steadfast::otel::Config::from_env()?;
    telemetry.console |= args.trace;
    let otel = steadfast::otel::init_with(telemetry)?;
    if let Some(Command::Eval(e)) = &args.command {
        return eval::run(e).await;
    }
    if let Some(Command::Worker { engine }) = &args.command
        && engine != "temporal"
    {
        bail!(
            "`worker` runs Temporal workers (--engine temporal); the embedded engine runs its \
             worker inside the game command"
        );
    }
    let started = Instant::now();
    let (qm, am, label) = choose_models(&args)?;
    let answerer = game::answerer(am)?;
    let questioner = game::questioner(qm, answerer, args.max_questions)?;
    let shared = Arc::new(Shared::new(args.failure_rate, args.seed));
    println!(
        "Twenty questions: {label}. Failure rate {:.0}%.",
        args.failure_rate * 100.0
    );

    if args.plain {
        println!(
            "Plain run (no durability); the secret is {}.\n",
            args.secret
        );
        let outcome = game::play(
            &questioner,
            Game {
                secret: args.secret.clone(),
                shared,
            },
        )
        .await?;
        print_outcome(&outcome, &args.secret, 0, 0, started);
        return Ok(());
    }
    if let Some(Command::Worker { .. }) = &args.command {
        #[cfg(feature = "temporal")]
        return temporal::worker(&args.temporal, &questioner, shared).await;
        #[cfg(not(feature = "temporal"))]
        return Err(no_temporal());
    }
    match args.engine.as_str() {
        "sqlite" => {}
        "temporal" => {
            let id = args.id.clone().unwrap_or_else(|| {
                let id = new_game_id();
                println!("Game id: {id}   (re-attach with --id {id})");
                id
            });
            #[cfg(feature = "temporal")]
            return temporal::play(
                &args.temporal,
                &id,
                &args.secret,
                &questioner,
                shared,
                !args.no_worker,
                started,
            )
            .await;
            #[cfg(not(feature = "temporal"))]
            {
                let _ = id;
                return Err(no_temporal());
            }
        }
        other => bail!("unknown engine `{other}`: use sqlite or temporal"),
    }

    let engine =
        steadfast::sqlite_engine(&args.db).with_context(|| format!("opening {}", args.db))?;
    let id = match &args.id {
        Some(id) => id.clone(),
        None => {
            let id = new_game_id();
            println!("Game id: {id}   (resume with --id {id})");
            id
        }
    };
    let existing = engine.store().get_workflow(&id).await?;
    let secret = match &existing {
        Some(rec) => {
            let input: GameInput =
                serde_json::from_value(rec.input.clone()).context("reading the game's input")?;
            match rec.status {
                WorkflowStatus::Completed => println!("Game {id} is over; its result:"),
                s if s.is_terminal() => println!("Game {id} ended: {s}"),
                _ => println!(
                    "Resuming game {id}: finished questions are answered from the journal.\n"
                ),
            }
            input.secret
        }
        None => {
            println!(
                "New game {id} in {}; the secret is {}.\n",
                args.db, args.secret
            );
            args.secret.clone()
        }
    };

    let sent = Arc::new(AtomicU64::new(0));
    let replayed = Arc::new(AtomicU64::new(0));
    let (s, r, sh) = (sent.clone(), replayed.clone(), shared.clone());
    let worker = engine
        .worker()
        .workflow(TwentyQuestions { questioner })
        .deps::<Shared>(shared.clone())
        .on_step(move |e| {
            if e.kind == StepKind::ModelRequest {
                match e.event {
                    StepEventKind::Completed => s.fetch_add(1, Ordering::Relaxed),
                    StepEventKind::Replayed => r.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
            if e.event == StepEventKind::Replayed
                && e.name.ends_with("__tool__ask_question")
                && let Some((q, a)) = game::replayed_question(e.input.as_ref(), e.output.as_ref())
            {
                let n = sh.shown.fetch_add(1, Ordering::SeqCst) + 1;
                println!(
                    "{n:>3}. {q:<44} → {a}   (replayed, {})",
                    game::human(e.duration)
                );
            }
        })
        .start();

    let handle = engine
        .start::<TwentyQuestions>(
            &id,
            GameInput {
                secret: secret.clone(),
            },
        )
        .await?;
    let result = tokio::select! {
        r = handle.result() => r,
        _ = tokio::signal::ctrl_c() => {
            println!("\nInterrupted. Resume with: twenty-questions --id {id} --db {}", args.db);
            let _ = otel.flush();
            std::process::exit(130);
        }
    };
    worker.shutdown().await;
    let outcome = result?;
    print_outcome(
        &outcome,
        &secret,
        sent.load(Ordering::Relaxed),
        replayed.load(Ordering::Relaxed),
        started,
    );
    println!("History: steadfast show {id} --db {}", args.db);
    Ok(())
}
