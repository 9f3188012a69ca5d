//! The `game` section: a durable 50-question game with scripted [`FunctionModel`]s (no network)
//! against the same game run plainly. Durable runs on SQLite (the default, process-crash-safe
//! durability, with the step log and without) and, to separate the engine from the database,
//! on the in-memory store.
//!
//! Every configuration plays its games in a task of the runtime, as a server's request
//! handler calls the engine: the caller and the workflow's run then share a worker thread. A
//! caller on the thread that drives `block_on` instead wakes a worker to start each run, and is
//! woken back when it ends; `main_thread` measures that too.
//!
//! **Warm-up.** Each configuration plays `WARMUP` games before those it counts. On SQLite it
//! plays on until the store's WAL has reached its working size and is being reused (see
//! `Warmup::Wal`), some 200 games: a worker on a new database file grows its WAL by some
//! 30 MB first, and a write that extends a file costs more than one that overwrites pages it
//! has. A worker does that once, in its first second; the headline figure is that of a worker
//! that has run for longer. The games of a new file are measured too, as a figure of their own
//! (in a process that the figures before it have warmed up).
//!
//! Before each durable configuration the disk settles ([`settle_disk`]): the pages that the
//! one before wrote are written back first, so that a figure pays for its own writes only. The
//! configuration without the step log, which writes the most, comes last.
//!
//! [`FunctionModel`]: steadfast_core::FunctionModel

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use steadfast_durable::{Engine, MemoryStore, Store};
use steadfast_sqlite::{Durability, SqliteOptions};

use crate::game::{self, GameWorkflow};
use crate::report::{Figure, Report};
use crate::stats::{bytes_written, median, ms, open_sqlite, open_sqlite_with, settle_disk};
use crate::timed_store::{StoreProbe, TimedStore};

const K: u32 = 50;

/// Games played before the counted ones, in each configuration: the first games of a process
/// or a store pay for growing the heap, the database and the log's files, which a running
/// worker has done long before.
const WARMUP: usize = 10;

/// With [`Warmup::Wal`], the WAL counts as reused once its size stayed the same over this many
/// games (while it grows, it grows every few games).
const WAL_STEADY_GAMES: usize = 20;

/// The most warm-up games with [`Warmup::Wal`], should the WAL never stop growing.
const MAX_WARMUP: usize = 3000;

/// Games counted in each configuration: a median of many, since one game is a millisecond on a
/// machine that other processes share.
const GAMES: usize = 101;

/// How a configuration warms up before the games it counts.
enum Warmup {
    /// `WARMUP` games.
    Games,
    /// `WARMUP` games, then more until the WAL at this path (`{db}-wal`) kept its size over
    /// `WAL_STEADY_GAMES` games, at most `MAX_WARMUP` in all. SQLite starts a WAL over from
    /// its beginning once a checkpoint has copied all of it to the database, and keeps the
    /// file: from then on commits overwrite pages that exist instead of adding new ones.
    Wal(PathBuf),
}

impl Warmup {
    /// Warm up on `db`'s WAL.
    fn wal_of(db: &Path) -> Warmup {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Warmup::Wal(PathBuf::from(wal))
    }
}

/// The size of the file at `path`; 0 if there is none.
fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Run `f` in a task of the runtime, as a request handler runs.
async fn in_task<T: Send + 'static>(
    f: impl Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::spawn(f).await?
}

/// What the counted games of one configuration measured.
#[derive(Default)]
struct Played {
    /// Each game's wall time (ms).
    walls: Vec<f64>,
    /// Through a probe: each game's `commit_step` calls and their time (ms), and every call's
    /// time (µs).
    commits: Vec<f64>,
    commit_ms: Vec<f64>,
    commit_samples: Vec<f64>,
    /// The games played to warm up.
    warmup_games: usize,
    /// With [`Warmup::Wal`], the WAL's size when the counted games began (bytes).
    wal_bytes: u64,
    /// Through a probe: every `start_claimed` call's time (µs).
    start_samples: Vec<f64>,
    /// What the process wrote per counted game, by all its threads (KB), where that is known.
    written_kb: Option<f64>,
}

/// `games` durable games on `store`, after a warm-up, played in a task of the runtime (or,
/// with `main_thread`, by the caller); with `probe`, the store's commits per game.
async fn play<S: Store + 'static>(
    store: S,
    label: &str,
    games: usize,
    warmup: Warmup,
    main_thread: bool,
    probe: Option<Arc<StoreProbe>>,
) -> anyhow::Result<Played> {
    let engine = Engine::new(store);
    let worker = engine
        .worker()
        .workflow(GameWorkflow {
            questioner: game::scripted_game(K)?,
        })
        .start();
    let games = play_games(engine, label.to_owned(), games, warmup, probe);
    let played = if main_thread {
        games.await
    } else {
        in_task(games).await
    };
    worker.shutdown().await;
    played
}

/// One durable game, started as `id`; its wall time.
async fn play_one(engine: &Engine, id: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let h = engine.start::<GameWorkflow>(id, ()).await?;
    let r = h.result().await?;
    let wall = t.elapsed();
    r.check(K)?;
    Ok(wall)
}

async fn play_games(
    engine: Engine,
    label: String,
    games: usize,
    warmup: Warmup,
    probe: Option<Arc<StoreProbe>>,
) -> anyhow::Result<Played> {
    let mut played = Played::default();
    let mut g = 0;
    let (mut wal_bytes, mut steady) = (None, 0);
    loop {
        play_one(&engine, &format!("{label}-{g}")).await?;
        g += 1;
        if g < WARMUP {
            continue;
        }
        let Warmup::Wal(wal) = &warmup else { break };
        let size = file_size(wal);
        if wal_bytes == Some(size) {
            steady += 1;
        } else {
            (wal_bytes, steady) = (Some(size), 0);
        }
        if steady >= WAL_STEADY_GAMES || g >= MAX_WARMUP {
            played.wal_bytes = size;
            break;
        }
    }
    played.warmup_games = g;
    let written = bytes_written();
    for _ in 0..games {
        if let Some(p) = &probe {
            p.reset();
        }
        let wall = play_one(&engine, &format!("{label}-{g}")).await?;
        g += 1;
        played.walls.push(ms(wall));
        if let Some(p) = &probe {
            let c = p.get("commit_step");
            played.commits.push(c.calls as f64);
            played.commit_ms.push(ms(c.total));
            played.commit_samples.extend(p.samples("commit_step"));
            played.start_samples.extend(p.samples("start_claimed"));
        }
    }
    if let (Some(before), Some(after)) = (written, bytes_written()) {
        played.written_kb = Some(after.saturating_sub(before) as f64 / 1e3 / games.max(1) as f64);
    }
    Ok(played)
}

/// What [`wall_games`] measured.
struct Walls {
    /// The counted games' wall times (ms).
    summary: crate::stats::Summary,
    /// The games played to warm up.
    warmup_games: usize,
    /// With [`Warmup::Wal`], the WAL's size when the counted games began (bytes).
    wal_bytes: u64,
    /// What the process wrote per counted game (KB), where that is known.
    written_kb: Option<f64>,
}

/// The wall times of `games` durable games on `store`, with nothing between the engine and
/// the store, after `warmup`.
async fn wall_games(
    store: impl Store + 'static,
    label: &str,
    games: usize,
    warmup: Warmup,
    main_thread: bool,
) -> anyhow::Result<Walls> {
    let played = play(store, label, games, warmup, main_thread, None).await?;
    Ok(Walls {
        summary: crate::stats::summarize(played.walls),
        warmup_games: played.warmup_games,
        wal_bytes: played.wal_bytes,
        written_kb: played.written_kb,
    })
}

/// Per-game medians of a durable store, and the store's time per game, measured through a
/// [`TimedStore`] (whose clock readings add a little to every call).
struct Durable {
    wall_ms: f64,
    commits_per_game: f64,
    commit_ms_per_game: f64,
    commit_mean_us: f64,
    commit: crate::stats::Summary,
    /// Each game's `start_claimed` (µs).
    start: crate::stats::Summary,
}

async fn durable_games(
    store: impl Store + 'static,
    label: &str,
    games: usize,
    warmup: Warmup,
) -> anyhow::Result<Durable> {
    let timed = TimedStore::new(store);
    let probe: Arc<StoreProbe> = timed.probe();
    let played = play(timed, label, games, warmup, false, Some(probe)).await?;
    let (n, t) = (median(played.commits), median(played.commit_ms));
    Ok(Durable {
        wall_ms: median(played.walls),
        commits_per_game: n,
        commit_ms_per_game: t,
        commit_mean_us: if n > 0.0 { t * 1e3 / n } else { 0.0 },
        commit: crate::stats::summarize(played.commit_samples),
        start: crate::stats::summarize(played.start_samples),
    })
}

/// The wall times (ms) of `games` plain games, after `WARMUP` others, played in a task of the
/// runtime (or, with `main_thread`, by the caller).
async fn plain_games(games: usize, main_thread: bool) -> anyhow::Result<Vec<f64>> {
    let play = async move {
        let q = game::scripted_game(K)?;
        let mut walls = Vec::new();
        for g in 0..games + WARMUP {
            let t = Instant::now();
            let r = game::play_plain(&q).await?;
            let wall = t.elapsed();
            r.check(K)?;
            if g >= WARMUP {
                walls.push(ms(wall));
            }
        }
        Ok(walls)
    };
    if main_thread {
        play.await
    } else {
        in_task(play).await
    }
}

/// The `game` section.
pub async fn run(quick: bool, dir: &Path, report: &mut Report) -> anyhow::Result<()> {
    let games = if quick { 1 } else { GAMES };
    // A smoke run (`--quick`) does not wait for the WAL.
    let steady = |db: &Path| {
        if quick {
            Warmup::Games
        } else {
            Warmup::wal_of(db)
        }
    };
    let plain = median(plain_games(games, false).await?);
    let note = format!("K={K} (101 model requests, 151 journaled steps), median of {games} games");
    report.add(
        Figure::new("game", "plain game, FunctionModel", plain, "ms").note(format!(
            "baseline; {note}; {:.1} µs per request",
            plain * 1e3 / 101.0
        )),
    );
    // The headline figures run on the bare stores; the breakdowns in their notes come from
    // the same games on other stores of the same kind, through the timing wrapper.
    settle_disk();
    let db = dir.join("game.db");
    let store = open_sqlite(db.clone(), Durability::ProcessCrashSafe).await?;
    let sqlite_games = wall_games(store, "sqlite-game", games, steady(&db), false).await?;
    let sqlite_wall = sqlite_games.summary.median;
    settle_disk();
    let db = dir.join("game-timed.db");
    let store = open_sqlite(db.clone(), Durability::ProcessCrashSafe).await?;
    let sqlite = durable_games(store, "sqlite-timed-game", games, steady(&db)).await?;
    report.add(
        Figure::new("game", "durable game, SQLite NORMAL", sqlite_wall, "ms")
            .vs("plain game", plain)
            .target("≤ 2× plain", sqlite_wall <= 2.0 * plain)
            .note(format!(
                "{note}, after {} warm-up games (the WAL at its working size, {:.1} MB); mean \
                 {:.3} ms, p90 {:.3} (a game that overlaps a flush of the step log into the \
                 tables takes longer); through the timing wrapper {:.3} ms, of which {:.0} \
                 commit_step awaits: {:.2} ms (mean {:.1} µs, median {:.1}, p90 {:.1}) and \
                 the start (by the step log: the store has the file to itself): median \
                 {:.0} µs, mean {:.0}, p90 {:.0}{}",
                sqlite_games.warmup_games,
                sqlite_games.wal_bytes as f64 / 1e6,
                sqlite_games.summary.mean,
                sqlite_games.summary.p90,
                sqlite.wall_ms,
                sqlite.commits_per_game,
                sqlite.commit_ms_per_game,
                sqlite.commit_mean_us,
                sqlite.commit.median,
                sqlite.commit.p90,
                sqlite.start.median,
                sqlite.start.mean,
                sqlite.start.p90,
                sqlite_games.written_kb.map_or(String::new(), |kb| format!(
                    "; {kb:.0} KB written per game (step log, WAL and checkpoints)"
                ))
            )),
    );
    // The first games of a new database file, while its WAL grows.
    settle_disk();
    let store = open_sqlite(dir.join("game-new.db"), Durability::ProcessCrashSafe).await?;
    let new_file = wall_games(store, "sqlite-new-game", games, Warmup::Games, false).await?;
    report.add(
        Figure::new(
            "game",
            "durable game, SQLite NORMAL, new database file",
            new_file.summary.median,
            "ms",
        )
        .vs("plain game", plain)
        .note(format!(
            "{note}, after {WARMUP} warm-up games: its WAL still grows, as in the first \
             second of a worker (here in a process that the figures before have warmed up)"
        )),
    );
    settle_disk();
    let mem_wall = wall_games(
        MemoryStore::new(),
        "memory-game",
        games,
        Warmup::Games,
        false,
    )
    .await?
    .summary
    .median;
    let mem = durable_games(
        MemoryStore::new(),
        "memory-timed-game",
        games,
        Warmup::Games,
    )
    .await?;
    report.add(
        Figure::new("game", "durable game, MemoryStore", mem_wall, "ms")
            .vs("plain game", plain)
            .note(format!(
                "engine without a database; commit_step {:.2} ms per game",
                mem.commit_ms_per_game
            )),
    );
    let per_step = (sqlite_wall - plain) * 1e3 / sqlite.commits_per_game.max(1.0);
    report.add(
        Figure::new(
            "game",
            "durable cost per journaled step, SQLite",
            per_step,
            "µs",
        )
        .vs("of which awaiting commit_step", sqlite.commit_mean_us)
        .note("(durable − plain) / commits"),
    );
    // The same games with the caller on the thread that drives `block_on`, as in a program
    // whose `main` awaits the engine: each run is started on a worker thread woken for it.
    settle_disk();
    let plain_main = median(plain_games(games, true).await?);
    let db = dir.join("game-main.db");
    let store = open_sqlite(db.clone(), Durability::ProcessCrashSafe).await?;
    let sqlite_main = wall_games(store, "sqlite-main-game", games, steady(&db), true)
        .await?
        .summary
        .median;
    report.add(
        Figure::new(
            "game",
            "durable game, SQLite NORMAL, caller on the main thread",
            sqlite_main,
            "ms",
        )
        .vs("plain game on the main thread", plain_main)
        .note(format!(
            "{note}; the caller awaits in `block_on`, not in a task of the runtime"
        )),
    );
    // Last: every step a transaction writes far more than the step log, and the write-back of
    // those pages would otherwise overlap the figures after it.
    settle_disk();
    let options = SqliteOptions {
        step_log: false,
        ..SqliteOptions::default()
    };
    let db = dir.join("game-no-log.db");
    let store = open_sqlite_with(db.clone(), options.clone()).await?;
    let unlogged_wall = wall_games(store, "sqlite-no-log-game", games, steady(&db), false)
        .await?
        .summary
        .median;
    settle_disk();
    let db = dir.join("game-no-log-timed.db");
    let store = open_sqlite_with(db.clone(), options).await?;
    let unlogged = durable_games(store, "sqlite-no-log-timed-game", games, steady(&db)).await?;
    report.add(
        Figure::new(
            "game",
            "durable game, SQLite NORMAL, no step log",
            unlogged_wall,
            "ms",
        )
        .vs("plain game", plain)
        .note(format!(
            "every step a transaction; commit_step median {:.1} µs",
            unlogged.commit.median
        )),
    );
    Ok(())
}
