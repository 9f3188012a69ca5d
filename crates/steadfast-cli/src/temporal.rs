//! `--engine temporal`: the commands against a Temporal cluster. `list`, `show`, `cancel` and
//! `signal` read and steer any Steadfast workflow there (runs of the `steadfast` dispatcher
//! workflow type); `worker` and `run` serve and start the built-in workflow `agent`.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use steadfast_core::Usage;
use steadfast_durable::WorkflowStatus;
use steadfast_temporal::{
    RowKind, RowStatus, RunStatus, StepRow, TemporalClient, TemporalConfig, TemporalHistory,
    TemporalWorker,
};

use crate::agent_workflow::{AgentInput, AgentWorkflow, assistant};
use crate::render::{self, Align, Table};
use crate::totals::Totals;
use crate::{Command, Global, RunArgs};

/// Longest input or output shown in the header.
const HEADER_VALUE: usize = 200;
/// Longest row input shown in the table.
const ROW_INPUT: usize = 60;

/// Run `command` against the cluster in `global`.
pub fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    // Validate the arguments that need no server first.
    let payload = match &command {
        Command::Signal(a) => Some(crate::commands::parse_payload(&a.json)?),
        _ => None,
    };
    let mut config =
        TemporalConfig::at(global.temporal_address.clone()).task_queue(global.task_queue.clone());
    config.namespace = global.namespace.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    // Not locked: the worker's threads may write too.
    let mut out = std::io::stdout();
    runtime.block_on(async {
        if let Command::Worker = command {
            return worker(config, global.trace, &mut out).await;
        }
        let client = TemporalClient::connect(config).await.map_err(unreachable)?;
        match command {
            Command::List(a) => {
                let status = a.status.map(run_status);
                let summaries = client
                    .list(status, (a.limit > 0).then_some(a.limit))
                    .await?;
                list(&client, &mut out, summaries, a.json)
            }
            Command::Show(a) => show(&client, &mut out, &a.id, a.json).await,
            Command::Cancel(a) => cancel(&client, &mut out, &a.id).await,
            Command::Signal(a) => {
                let payload = payload.unwrap_or_default();
                signal(&client, &mut out, &a.id, &a.topic, payload).await
            }
            Command::Run(a) => run_agent(&client, &mut out, a).await,
            Command::Worker | Command::Eval { .. } => Ok(()),
        }
    })?;
    out.flush()?;
    Ok(())
}

/// A connection error, with the usual cause.
fn unreachable(e: steadfast_temporal::TemporalError) -> anyhow::Error {
    match e {
        e @ steadfast_temporal::TemporalError::Connect { .. } => {
            anyhow::anyhow!("{e} (is the server running? `temporal server start-dev`)")
        }
        other => other.into(),
    }
}

/// The Temporal status a `--status` filter means: Temporal has no `pending` or `suspended`; a
/// workflow waiting for anything is `running`.
fn run_status(s: WorkflowStatus) -> RunStatus {
    match s {
        WorkflowStatus::Completed => RunStatus::Completed,
        WorkflowStatus::Failed => RunStatus::Failed,
        WorkflowStatus::Cancelled => RunStatus::Cancelled,
        _ => RunStatus::Running,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One workflow in `list --json`. The field names are stable.
#[derive(Debug, Serialize)]
struct ListRow {
    id: String,
    run_id: String,
    name: Option<String>,
    status: RunStatus,
    /// Events in the newest run's history.
    history_events: u64,
    /// Seconds since the newest run started.
    age_secs: i64,
    started_at: Option<String>,
    started_at_ms: Option<i64>,
    closed_at: Option<String>,
    closed_at_ms: Option<i64>,
    task_queue: String,
    parent_id: Option<String>,
}

fn list(
    client: &TemporalClient,
    out: &mut impl Write,
    summaries: Vec<steadfast_temporal::WorkflowSummary>,
    json: bool,
) -> anyhow::Result<()> {
    let now = now_ms();
    let rows: Vec<ListRow> = summaries
        .into_iter()
        .map(|s| ListRow {
            age_secs: s.started_at_ms.map_or(0, |t| (now - t).max(0) / 1000),
            started_at: s.started_at_ms.map(render::rfc3339),
            closed_at: s.closed_at_ms.map(render::rfc3339),
            id: s.id,
            run_id: s.run_id,
            name: s.workflow,
            status: s.status,
            history_events: s.history_events,
            started_at_ms: s.started_at_ms,
            closed_at_ms: s.closed_at_ms,
            task_queue: s.task_queue,
            parent_id: s.parent_id,
        })
        .collect();
    if json {
        return crate::render::json(out, &rows);
    }
    if rows.is_empty() {
        let c = client.config();
        writeln!(
            out,
            "no Steadfast workflows on Temporal at {} (namespace `{}`)",
            c.address, c.namespace
        )?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("NAME", Align::Left),
        ("STATUS", Align::Left),
        ("EVENTS", Align::Right),
        ("AGE", Align::Right),
    ]);
    for r in &rows {
        table.row(vec![
            r.id.clone(),
            r.name.clone().unwrap_or_else(|| "?".into()),
            r.status.to_string(),
            r.history_events.to_string(),
            render::age(r.age_secs * 1000),
        ]);
    }
    table.write(out)?;
    Ok(())
}

/// `show --json`: the history, plus the usage totals of its finished steps.
#[derive(Serialize)]
struct ShowJson<'a> {
    #[serde(flatten)]
    history: &'a TemporalHistory,
    totals: Totals,
}

async fn show(
    client: &TemporalClient,
    out: &mut impl Write,
    id: &str,
    json: bool,
) -> anyhow::Result<()> {
    let history = client.history(id).await?;
    let totals = totals(&history.steps);
    if json {
        return crate::render::json(
            out,
            &ShowJson {
                history: &history,
                totals,
            },
        );
    }
    header(out, &history, &totals)?;
    writeln!(out)?;
    rows(out, &history.steps)?;
    Ok(())
}

/// The usage of the finished model requests and tool calls. A tool's usage covers the agents it
/// ran, whose requests run inside the tool's activity, so nothing counts twice.
fn totals(steps: &[StepRow]) -> Totals {
    let mut sum = Usage::default();
    for s in steps {
        let counted = matches!(s.kind, RowKind::ModelRequest | RowKind::Tool);
        let Some(output) = s.output.as_ref().filter(|_| counted) else {
            continue;
        };
        let usage = output.get("usage").cloned().unwrap_or(Value::Null);
        let mut usage: Usage = serde_json::from_value(usage).unwrap_or_default();
        if s.kind == RowKind::ModelRequest {
            usage.requests = usage.requests.max(1);
        }
        sum += &usage;
    }
    Totals {
        cost_usd: sum.cost_usd,
        requests: u64::from(sum.requests),
        input_tokens: sum.input_tokens,
        output_tokens: sum.output_tokens,
        unpriced_requests: u64::from(sum.unpriced_requests),
    }
}

fn header(out: &mut impl Write, h: &TemporalHistory, totals: &Totals) -> std::io::Result<()> {
    let w = &h.workflow;
    let now = now_ms();
    let when = |ms: i64| format!("{} ({} ago)", render::datetime(ms), render::age(now - ms));
    let mut status = w.status.to_string();
    if h.cancel_requested && !w.status.is_terminal() {
        status.push_str(" (cancellation requested)");
    }
    let mut fields: Vec<(&str, String)> = vec![
        ("Workflow", w.id.clone()),
        ("Name", w.workflow.clone().unwrap_or_else(|| "?".into())),
        ("Status", status),
    ];
    if let Some(f) = &h.task_failure {
        fields.push((
            "Task failure",
            format!(
                "{} (the workflow waits for a worker whose code matches its history)",
                render::shorten(f, HEADER_VALUE)
            ),
        ));
    }
    let run = if h.runs.len() > 1 {
        format!(
            "{} (run {} of its chain: it continued as new {} time(s))",
            w.run_id,
            h.runs.len(),
            h.runs.len() - 1
        )
    } else {
        w.run_id.clone()
    };
    fields.push(("Run", run));
    fields.push(("Task queue", w.task_queue.clone()));
    if let Some(p) = &w.parent_id {
        fields.push(("Parent", p.clone()));
    }
    if let Some(t) = w.started_at_ms {
        fields.push(("Started", when(t)));
    }
    if let Some(t) = w.closed_at_ms {
        fields.push(("Closed", when(t)));
    }
    if let Some(v) = &h.input {
        fields.push(("Input", render::shorten(&render::compact(v), HEADER_VALUE)));
    }
    if let Some(v) = &h.output {
        fields.push(("Output", render::shorten(&render::compact(v), HEADER_VALUE)));
    }
    if let Some(e) = &h.error {
        fields.push(("Error", render::shorten(e, HEADER_VALUE)));
    }
    fields.push(("Usage", totals.describe()));
    fields.push((
        "Events",
        format!("{} in the newest run's history", w.history_events),
    ));
    let width = fields.iter().map(|f| f.0.len()).max().unwrap_or(0);
    for (k, v) in fields {
        writeln!(out, "{k:width$}  {v}")?;
    }
    Ok(())
}

fn rows(out: &mut impl Write, steps: &[StepRow]) -> std::io::Result<()> {
    let mut table = Table::new(&[
        ("STEP", Align::Left),
        ("KIND", Align::Left),
        ("NAME", Align::Left),
        ("ATTEMPTS", Align::Right),
        ("DURATION", Align::Right),
        ("STATUS", Align::Left),
        ("INPUT", Align::Left),
    ]);
    for s in steps {
        let activity = matches!(
            s.kind,
            RowKind::ModelRequest | RowKind::Tool | RowKind::Step
        );
        table.row(vec![
            s.step_id.clone(),
            s.kind.to_string(),
            s.name.clone(),
            if activity {
                s.attempts.to_string()
            } else {
                String::new()
            },
            s.duration_us.map(render::duration_us).unwrap_or_default(),
            s.status.to_string(),
            s.input
                .as_ref()
                .map(|v| render::shorten(&render::compact(v), ROW_INPUT))
                .unwrap_or_default(),
        ]);
        if s.reissued > 0 {
            table.note(format!(
                "  scheduled again {} time(s): the worker that held it went away",
                s.reissued
            ));
        }
        if let Some(e) = &s.error {
            let line = match s.status {
                RowStatus::Running => format!("  the last attempt failed: {e}"),
                _ => format!("  {}: {e}", s.status),
            };
            table.note(render::shorten(&line, 200));
        }
    }
    table.write(out)
}

async fn cancel(client: &TemporalClient, out: &mut impl Write, id: &str) -> anyhow::Result<()> {
    let before = client.describe(id).await?;
    if before.status.is_terminal() {
        writeln!(
            out,
            "{id}: {} (it had already finished; nothing to cancel)",
            before.status
        )?;
        return Ok(());
    }
    client
        .cancel(id, "requested with `steadfast cancel`")
        .await?;
    writeln!(
        out,
        "{id}: running, cancellation requested (Temporal cancels its running steps and timers; \
         the workflow ends when its worker next runs it)"
    )?;
    Ok(())
}

async fn signal(
    client: &TemporalClient,
    out: &mut impl Write,
    id: &str,
    topic: &str,
    payload: Value,
) -> anyhow::Result<()> {
    let s = client.describe(id).await?;
    if s.status.is_terminal() {
        anyhow::bail!(
            "{id} is {}; a finished workflow takes no messages",
            s.status
        );
    }
    client.send(id, topic, payload).await?;
    writeln!(out, "sent `{topic}` to {id}")?;
    Ok(())
}

/// `steadfast run`: start (or re-attach to) the `agent` workflow and print its output.
async fn run_agent(
    client: &TemporalClient,
    out: &mut impl Write,
    a: RunArgs,
) -> anyhow::Result<()> {
    let id =
        a.id.unwrap_or_else(|| format!("agent-{}-{}", now_ms(), std::process::id()));
    let input = AgentInput {
        model: a.model,
        instructions: a.instructions,
        prompt: a.prompt,
    };
    let handle = client.start::<AgentWorkflow>(&id, input).await?;
    if a.no_wait {
        writeln!(out, "{id}")?;
        return Ok(());
    }
    let result = tokio::select! {
        r = handle.result() => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted; the workflow goes on in Temporal: steadfast --engine temporal show {id}");
            std::process::exit(130);
        }
    };
    let done = result?;
    if a.json {
        let v = json!({ "id": id, "output": done.output, "usage": done.usage });
        crate::render::json(out, &v)?;
    } else {
        writeln!(out, "{}", done.output)?;
        let u = &done.usage;
        eprintln!(
            "({id}: {} model request(s), {} input + {} output tokens, {})",
            u.requests,
            u.input_tokens,
            u.output_tokens,
            render::usd(u.cost_usd)
        );
    }
    Ok(())
}

/// `steadfast worker`: a worker for the `agent` workflow until Ctrl-C.
async fn worker(config: TemporalConfig, trace: bool, out: &mut impl Write) -> anyhow::Result<()> {
    steadfast_models::install();
    let mut telemetry = steadfast_otel::Config::from_env()?;
    telemetry.console |= trace;
    let _otel = steadfast_otel::init_with(telemetry)?;
    // Registers the agent's activity names; each run builds the agent with its own model.
    let template = assistant("test", None)?;
    let mut worker = TemporalWorker::builder(config.clone())
        .workflow(AgentWorkflow)
        .agent(&template)
        .start()
        .await
        .map_err(unreachable)?;
    writeln!(
        out,
        "Worker on task queue `{}` at {} (namespace `{}`), running the workflow `agent`; its \
         steps run on `{}`. Ctrl-C to stop.",
        config.task_queue,
        config.address,
        config.namespace,
        worker.activity_queue()
    )?;
    out.flush()?;
    tokio::select! {
        r = worker.wait() => r.context("the worker stopped")?,
        _ = tokio::signal::ctrl_c() => {
            writeln!(out, "Stopping the worker.")?;
            out.flush()?;
            worker.shutdown().await;
        }
    }
    Ok(())
}
