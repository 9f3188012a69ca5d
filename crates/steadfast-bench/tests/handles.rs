//! A handle waiting for a workflow that a worker of its own process runs gets the result from
//! the worker, without reading the store back; a handle on a workflow that ended before it
//! waited reads the store. Counted through the timing wrapper, on a SQLite file and in memory.

use steadfast_bench::game::{self, GameWorkflow};
use steadfast_bench::stats::open_sqlite;
use steadfast_bench::timed_store::TimedStore;
use steadfast_durable::{Engine, MemoryStore, Store};
use steadfast_sqlite::Durability;

const K: u32 = 3;

async fn games_read_nothing_back(store: impl Store) -> anyhow::Result<()> {
    let timed = TimedStore::new(store);
    let probe = timed.probe();
    let engine = Engine::new(timed);
    let worker = engine
        .worker()
        .workflow(GameWorkflow {
            questioner: game::scripted_game(K)?,
        })
        .start();
    for g in 0..5 {
        let h = engine.start::<GameWorkflow>(&format!("g-{g}"), ()).await?;
        h.result().await?.check(K)?;
    }
    assert_eq!(
        probe.get("get_workflow").calls,
        0,
        "the worker handed each result over"
    );
    // The same id again: the workflow ended long ago, so its handle reads the store.
    let again = engine.start::<GameWorkflow>("g-0", ()).await?;
    again.result().await?.check(K)?;
    assert_eq!(probe.get("get_workflow").calls, 1);
    worker.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_runs_result_reaches_its_handle_without_a_store_read() -> anyhow::Result<()> {
    games_read_nothing_back(MemoryStore::new()).await?;

    let dir = std::env::temp_dir().join(format!("steadfast-handles-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = open_sqlite(dir.join("h.db"), Durability::ProcessCrashSafe).await?;
    let result = games_read_nothing_back(store).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
