//! `--engine temporal`: the same research on a Temporal cluster. The command starts (or
//! re-attaches to) the run and, unless `--no-worker`, runs a worker in the same process;
//! `--worker-only` runs a worker as a process of its own.

use std::sync::Arc;

use anyhow::{Context, Result};
use deep_research::research::{Agents, DeepResearch, Research, ResearchInput, ResearchReport};
use steadfast::temporal::{TemporalClient, TemporalConfig, TemporalWorker};

use crate::TemporalArgs;

fn config(t: &TemporalArgs) -> TemporalConfig {
    let mut c = TemporalConfig::at(t.temporal_address.clone()).task_queue(&t.task_queue);
    c.namespace = t.namespace.clone();
    c
}

async fn start_worker(
    t: &TemporalArgs,
    agents: &Agents,
    deps: Arc<Research>,
) -> Result<TemporalWorker> {
    TemporalWorker::builder(config(t))
        .workflow(DeepResearch {
            agents: agents.clone(),
        })
        .agent(&agents.plan)
        .agent(&agents.search)
        .agent(&agents.analysis)
        .deps::<Research>(deps)
        .start()
        .await
        .with_context(|| format!("starting a worker at {}", t.temporal_address))
}

/// Run a worker until Ctrl-C.
pub async fn worker(t: &TemporalArgs, agents: &Agents, deps: Arc<Research>) -> Result<()> {
    let mut worker = start_worker(t, agents, deps).await?;
    eprintln!(
        "Worker on task queue `{}` at {} (steps on `{}`). Ctrl-C to stop.",
        t.task_queue,
        t.temporal_address,
        worker.activity_queue()
    );
    tokio::select! {
        r = worker.wait() => r?,
        _ = tokio::signal::ctrl_c() => worker.shutdown().await,
    }
    Ok(())
}

/// Start or re-attach to run `id` and wait for its report.
pub async fn research(
    t: &TemporalArgs,
    id: &str,
    question: String,
    agents: &Agents,
    deps: Arc<Research>,
    with_worker: bool,
) -> Result<ResearchReport> {
    let worker = if with_worker {
        Some(start_worker(t, agents, deps).await?)
    } else {
        None
    };
    let client = TemporalClient::connect(config(t))
        .await
        .with_context(|| format!("connecting to {}", t.temporal_address))?;
    let handle = client
        .start::<DeepResearch>(id, ResearchInput { question })
        .await?;
    eprintln!(
        "Run {id} on Temporal at {} (task queue `{}`): a new id starts a run, a running one is \
         re-attached.\n",
        t.temporal_address, t.task_queue
    );
    let result = tokio::select! {
        r = handle.result() => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nInterrupted. The run goes on in Temporal; re-attach with: \
                       deep-research --engine temporal --id {id}");
            std::process::exit(130);
        }
    };
    if let Some(w) = worker {
        w.shutdown().await;
    }
    Ok(result?)
}
