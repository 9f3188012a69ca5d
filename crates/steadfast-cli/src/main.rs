//! `steadfast`: inspect and steer the durable workflows in a Steadfast SQLite database, or on a
//! Temporal cluster.
//!
//! With the embedded engine (`--engine sqlite`, the default) the commands read and write the
//! same file the workers use; they can run while workers run. With `--engine temporal` (a build
//! with the cargo feature `temporal`) `list`, `show`, `cancel` and `signal` work on the Steadfast
//! workflows of a Temporal cluster, `steadfast worker` runs a worker for the built-in workflow
//! `agent`, and `steadfast run` starts it. Errors are one line on stderr and exit code 1.

#[cfg(feature = "temporal")]
mod agent_workflow;
mod commands;
mod db;
mod render;
#[cfg(feature = "temporal")]
mod temporal;
mod totals;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use steadfast_durable::WorkflowStatus;

/// Inspect and steer the durable workflows in a Steadfast database, or on a Temporal cluster.
///
/// With the embedded engine (the default), every command works on an existing database file (it
/// never creates one), and workers may run against the same file at the same time. With
/// `--engine temporal`, the commands talk to a Temporal cluster instead: `list`, `show`,
/// `cancel` and `signal` work on its Steadfast workflows, `worker` runs a worker for the built-in
/// workflow `agent`, and `run` starts one.
#[derive(Debug, Parser)]
#[command(name = "steadfast", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options shared by all commands.
#[derive(Debug, Args)]
struct Global {
    /// The SQLite database of the durable engine.
    #[arg(
        long,
        global = true,
        env = "STEADFAST_DB",
        default_value = "steadfast.db",
        value_name = "PATH"
    )]
    db: PathBuf,

    /// How long to wait for a lock held by a worker or another process before giving up, in
    /// milliseconds.
    #[arg(
        long,
        global = true,
        env = "STEADFAST_LOCK_TIMEOUT_MS",
        default_value_t = 5000,
        value_name = "MS"
    )]
    lock_timeout_ms: u64,

    /// Print a live span tree of the agent runs (`steadfast --trace eval ...`) on stderr:
    /// model requests and tool calls with durations, tokens and cost. `STEADFAST_CONSOLE=1` does
    /// the same; `OTEL_EXPORTER_OTLP_ENDPOINT` exports the spans over OTLP.
    #[arg(long, global = true)]
    trace: bool,

    /// The durable engine: `sqlite` (the embedded engine: a database file, `--db`) or
    /// `temporal` (a Temporal cluster, `--temporal-address`; needs a build with the cargo
    /// feature `temporal`).
    #[arg(
        long,
        global = true,
        env = "STEADFAST_ENGINE",
        value_enum,
        default_value_t = EngineKind::Sqlite
    )]
    engine: EngineKind,

    /// With `--engine temporal`: the Temporal frontend, `host:port`.
    #[arg(
        long,
        global = true,
        env = "STEADFAST_TEMPORAL_ADDRESS",
        default_value = "127.0.0.1:7233",
        value_name = "HOST:PORT"
    )]
    temporal_address: String,

    /// With `--engine temporal`: the Temporal namespace.
    #[arg(long, global = true, default_value = "default", value_name = "NAME")]
    namespace: String,

    /// With `--engine temporal`: the task queue of the workflows (`worker` polls it, `run`
    /// starts workflows on it).
    #[arg(
        long,
        global = true,
        env = "STEADFAST_TASK_QUEUE",
        default_value = "steadfast",
        value_name = "QUEUE"
    )]
    task_queue: String,
}

/// The durable engine the commands work on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineKind {
    /// The embedded engine: a Steadfast SQLite database.
    Sqlite,
    /// A Temporal cluster.
    Temporal,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List workflows, newest first, with their journal size, age and cost.
    ///
    /// COST is the US-dollar cost of the model requests in the workflow's journal, including
    /// those of agents run inside tools. AGE is the time since the workflow was created.
    ///
    /// With `--engine temporal`: the Steadfast workflows on the cluster (runs of the Temporal
    /// workflow type `steadfast`; a chain of continue-as-new runs shows as its newest run),
    /// with EVENTS, the size of the newest run's history, instead of STEPS and COST.
    List(ListArgs),

    /// Show a workflow and its history: one row per journaled step, in commit order.
    ///
    /// Each row is a step that ran (with all its attempts) exactly once. Whenever the workflow
    /// resumed later (after a restart, a sleep or a wait for a message), the step was answered
    /// from the journal without running again, so replays do not add rows. Failed attempts that
    /// were retried are listed under their step. INPUT shows the arguments of tool calls and
    /// the inputs of user steps, shortened; use --json for everything.
    ///
    /// With `--engine temporal`: the workflow's Temporal history, across its continue-as-new
    /// runs: one row per step (an activity named like the step; ATTEMPTS is its newest
    /// attempt), and the timers, messages (signals and updates), child workflows, cancellation
    /// requests and continue-as-new between them. A running workflow whose newest workflow task
    /// failed (a non-determinism error, a workflow no worker registers) shows the failure.
    Show(ShowArgs),

    /// Cancel a workflow.
    ///
    /// A pending or suspended workflow is cancelled at once. A running one is cancelled by its
    /// worker at its next step; the command then reports `running` with cancellation requested.
    ///
    /// With `--engine temporal`: requests the cancellation of the workflow on the cluster.
    Cancel(CancelArgs),

    /// Send a message to a workflow's mailbox, waking it if it waits for one.
    ///
    /// The workflow receives it with `ctx.recv(TOPIC, ..)`. A suspended workflow becomes
    /// pending, and a worker that registers it picks it up.
    ///
    /// With `--engine temporal`: the signal `steadfast.send`, which fills the mailbox the same
    /// way.
    Signal(SignalArgs),

    /// Run a Temporal worker for the built-in workflow `agent` until Ctrl-C (`--engine
    /// temporal`).
    ///
    /// It polls `--task-queue` and runs the `agent` workflows that `steadfast run` starts. Models
    /// are resolved here, from each run's `provider:model` string, with this process's
    /// environment (`OPENAI_API_KEY`, `OPENAI_BASE_URL`, `ANTHROPIC_API_KEY`, ...). Run as many
    /// workers as you like. The embedded engine has no such command: it runs its workers
    /// in-process, inside your program.
    Worker,

    /// Run the built-in workflow `agent` on Temporal (`--engine temporal`) and print its output.
    ///
    /// One agent, `assistant`, answers PROMPT with --model; each model request is a durable step
    /// (the activity `agent__assistant__model_request`) run by a `steadfast worker`. The same
    /// --id never runs twice: running the command again re-attaches to the workflow, or prints
    /// the output of the finished one.
    Run(RunArgs),

    /// Evaluate a dataset file (YAML or JSON) against a registered task, print the report
    /// table, compare models, diff against a baseline: `steadfast eval cases.yaml --task prompt
    /// --models openai:gpt-4.1,anthropic:claude-haiku-4-5`. Run `steadfast eval --help` for the
    /// options. The built-in tasks are `echo` and `prompt` (one agent answers each case's input);
    /// a program registers its own tasks with `steadfast_evals::cli::TaskRegistry`.
    #[command(disable_help_flag = true)]
    Eval {
        /// The arguments of the evaluation (see `steadfast eval --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only workflows with this status. On Temporal, `pending` and `suspended` mean `running`.
    #[arg(long, short, value_parser = parse_status, value_name = "STATUS")]
    status: Option<WorkflowStatus>,

    /// At most this many workflows (the newest); 0 lists all of them.
    #[arg(long, short = 'n', default_value_t = 100, value_name = "N")]
    limit: usize,

    /// Print a JSON array instead of a table (stable field names, for scripts).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The workflow id.
    id: String,

    /// Print the whole history as JSON (the workflow, its steps, its failed attempts, and the
    /// usage totals) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CancelArgs {
    /// The workflow id.
    id: String,
}

#[derive(Debug, Args)]
struct SignalArgs {
    /// The workflow id.
    id: String,
    /// The mailbox topic (the workflow waits with `ctx.recv(TOPIC, ..)`).
    topic: String,
    /// The message, as JSON: `true`, `42`, `'{"approved": true}'`, or a string in quotes:
    /// `'"yes"'`.
    json: String,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The model, `provider:model` (`openai:gpt-4.1`, `anthropic:claude-haiku-4-5`, ...),
    /// resolved on the worker.
    #[arg(long, short, value_name = "PROVIDER:MODEL")]
    model: String,

    /// Instructions (a system prompt) for the agent.
    #[arg(long, short, value_name = "TEXT")]
    instructions: Option<String>,

    /// The prompt.
    prompt: String,

    /// The workflow id (default: a new `agent-...` id). An id that exists is not started again:
    /// the command waits for that workflow instead.
    #[arg(long)]
    id: Option<String>,

    /// Print the workflow id and return without waiting for the output.
    #[arg(long)]
    no_wait: bool,

    /// Print `{"id", "output", "usage"}` as JSON instead of the text output.
    #[arg(long)]
    json: bool,
}

fn parse_status(s: &str) -> Result<WorkflowStatus, String> {
    WorkflowStatus::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
        format!(
            "unknown status `{s}`; use pending, running, suspended, completed, failed or cancelled"
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                // `steadfast list | head`: the reader left; that is not an error.
                return ExitCode::SUCCESS;
            }
            let message = format!("{e:#}").replace(['\n', '\r'], " ");
            let _ = writeln!(std::io::stderr(), "error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let pipe = Some(std::io::ErrorKind::BrokenPipe);
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().map(|io| io.kind()) == pipe
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                == pipe
    })
}

/// `steadfast eval`: needs no database; the evaluation's own runner parses the arguments.
fn eval(args: Vec<String>, trace: bool) -> anyhow::Result<()> {
    steadfast_models::install();
    let mut telemetry = steadfast_otel::Config::from_env()?;
    telemetry.console |= trace;
    let otel = steadfast_otel::init_with(telemetry)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let tasks = steadfast_evals::cli::TaskRegistry::with_standard_tasks();
    let outcome = runtime.block_on(steadfast_evals::cli::run(args, &tasks))?;
    drop(otel);
    if outcome.exit_code != 0 {
        std::process::exit(outcome.exit_code);
    }
    Ok(())
}

/// `--engine temporal` in a build without the feature.
#[cfg(not(feature = "temporal"))]
fn on_temporal(_global: &Global, _command: Command) -> anyhow::Result<()> {
    anyhow::bail!(
        "this `steadfast` was built without Temporal support; build it with the `temporal` \
         feature: `cargo install steadfast-cli --features temporal` (or `cargo run -p \
         steadfast-cli --features temporal -- --engine temporal ...`)"
    )
}

#[cfg(feature = "temporal")]
fn on_temporal(global: &Global, command: Command) -> anyhow::Result<()> {
    temporal::run(global, command)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Eval { args } = cli.command {
        return eval(args, cli.global.trace);
    }
    if cli.global.engine == EngineKind::Temporal {
        return on_temporal(&cli.global, cli.command);
    }
    if let Command::Worker | Command::Run(_) = cli.command {
        anyhow::bail!(
            "`steadfast worker` and `steadfast run` are for Temporal (--engine temporal); the \
             embedded SQLite engine runs its workers in-process, inside your program \
             (`Engine::worker`), so there is no worker to start from the command line"
        );
    }
    // Validate the arguments that need no database first.
    let payload = match &cli.command {
        Command::Signal(a) => Some(commands::parse_payload(&a.json)?),
        _ => None,
    };
    let db = db::Db::open(&cli.global.db, cli.global.lock_timeout_ms)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let mut out = std::io::stdout().lock();
    runtime.block_on(async {
        match cli.command {
            Command::List(a) => commands::list(&db, &mut out, a.status, a.limit, a.json).await,
            Command::Show(a) => commands::show(&db, &mut out, &a.id, a.json).await,
            Command::Cancel(a) => commands::cancel(&db, &mut out, &a.id).await,
            Command::Signal(a) => {
                let payload = payload.unwrap_or_default();
                commands::signal(&db, &mut out, &a.id, &a.topic, payload).await
            }
            Command::Eval { .. } | Command::Worker | Command::Run(_) => Ok(()),
        }
    })?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn statuses_parse_case_insensitively() {
        assert_eq!(parse_status("Suspended"), Ok(WorkflowStatus::Suspended));
        assert!(
            parse_status("sleeping")
                .unwrap_err()
                .contains("unknown status")
        );
    }
}
