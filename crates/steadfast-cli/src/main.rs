//! `steadfast`: inspect and steer the durable workflows in a Steadfast SQLite database.
//!
//! The commands read and write the same file the workers use; they can run while workers run.
//! Errors are one line on stderr and exit code 1.

mod commands;
mod db;
mod render;
mod totals;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use steadfast_durable::WorkflowStatus;

/// Inspect and steer the durable workflows in a Steadfast database.
///
/// Every command works on an existing database file (it never creates one). Workers may run
/// against the same file at the same time.
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
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List workflows, newest first, with their journal size, age and cost.
    ///
    /// COST is the US-dollar cost of the model requests in the workflow's journal, including
    /// those of agents run inside tools. AGE is the time since the workflow was created.
    List(ListArgs),

    /// Show a workflow and its history: one row per journaled step, in commit order.
    ///
    /// Each row is a step that ran (with all its attempts) exactly once. Whenever the workflow
    /// resumed later (after a restart, a sleep or a wait for a message), the step was answered
    /// from the journal without running again, so replays do not add rows. Failed attempts that
    /// were retried are listed under their step. INPUT shows the arguments of tool calls and
    /// the inputs of user steps, shortened; use --json for everything.
    Show(ShowArgs),

    /// Cancel a workflow.
    ///
    /// A pending or suspended workflow is cancelled at once. A running one is cancelled by its
    /// worker at its next step; the command then reports `running` with cancellation requested.
    Cancel(CancelArgs),

    /// Send a message to a workflow's mailbox, waking it if it waits for one.
    ///
    /// The workflow receives it with `ctx.recv(TOPIC, ..)`. A suspended workflow becomes
    /// pending, and a worker that registers it picks it up.
    Signal(SignalArgs),

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
    /// Only workflows with this status.
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

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Eval { args } = cli.command {
        return eval(args, cli.global.trace);
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
            Command::Eval { .. } => Ok(()),
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
