//! `--engine temporal`: the same game on a Temporal cluster. The game command starts (or
//! re-attaches to) the workflow and, unless `--no-worker`, runs a worker in the same process;
//! `twenty-questions worker --engine temporal` runs workers as processes of their own.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use steadfast::Agent;
use steadfast::temporal::{TemporalClient, TemporalConfig, TemporalWorker};

use crate::TemporalArgs;
use crate::game::{Game, GameInput, Shared, TwentyQuestions};

fn config(t: &TemporalArgs) -> TemporalConfig {
    let mut c = TemporalConfig::at(t.temporal_address.clone()).task_queue(&t.task_queue);
    c.namespace = t.namespace.clone();
    c
}

async fn start_worker(
    t: &TemporalArgs,
    questioner: &Agent<Game, String>,
    shared: Arc<Shared>,
) -> Result<TemporalWorker> {
    TemporalWorker::builder(config(t))
        .workflow(TwentyQuestions {
            questioner: questioner.clone(),
        })
        .agent(questioner)
        .deps::<Shared>(shared)
        .start()
        .await
        .with_context(|| format!("starting a worker at {}", t.temporal_address))
}

/// Run a worker until Ctrl-C.
pub async fn worker(
    t: &TemporalArgs,
    questioner: &Agent<Game, String>,
    shared: Arc<Shared>,
) -> Result<()> {
    let mut worker = start_worker(t, questioner, shared).await?;
    println!(
        "Worker on task queue `{}` at {} (steps on `{}`). Ctrl-C to stop.",
        t.task_queue,
        t.temporal_address,
        worker.activity_queue()
    );
    tokio::select! {
        r = worker.wait() => r?,
        _ = tokio::signal::ctrl_c() => {
            println!("Stopping the worker.");
            worker.shutdown().await;
        }
    }
    Ok(())
}

/// Start or re-attach to game `id` and wait for its outcome.
pub async fn play(
    t: &TemporalArgs,
    id: &str,
    secret: &str,
    questioner: &Agent<Game, String>,
    shared: Arc<Shared>,
    with_worker: bool,
    started: Instant,
) -> Result<()> {
    let worker = if with_worker {
        Some(start_worker(t, questioner, shared).await?)
    } else {
        None
    };
    let client = TemporalClient::connect(config(t))
        .await
        .with_context(|| format!("connecting to {}", t.temporal_address))?;
    let handle = client
        .start::<TwentyQuestions>(
            id,
            GameInput {
                secret: secret.to_string(),
            },
        )
        .await?;
    println!(
        "Game {id} on Temporal at {} (task queue `{}`): a new id starts a game, a running \
         one is re-attached.\n",
        t.temporal_address, t.task_queue
    );
    let result = tokio::select! {
        r = handle.result() => r,
        _ = tokio::signal::ctrl_c() => {
            println!("\nInterrupted. The game goes on in Temporal; re-attach with: \
                      twenty-questions --engine temporal --id {id}");
            std::process::exit(130);
        }
    };
    if let Some(w) = worker {
        w.shutdown().await;
    }
    let outcome = result?;
    crate::print_outcome(&outcome, secret, 0, 0, started);
    println!(
        "History: temporal workflow show --workflow-id {id} --address {}",
        t.temporal_address
    );
    Ok(())
}
