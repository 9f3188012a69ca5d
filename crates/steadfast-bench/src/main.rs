//! `steadfast-bench`: measures Steadfast and prints a table of figures, each with a baseline
//! measured in the same run and their ratio.
//!
//! ```text
//! cargo run --release -p steadfast-bench                 # every section
//! cargo run --release -p steadfast-bench -- commit       # one section
//! cargo run --release -p steadfast-bench -- --quick      # smoke mode (CI)
//! cargo run --release -p steadfast-bench -- --json out.json
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use steadfast_bench::report::Report;
use steadfast_bench::{commit, idle, mockllm, overhead, parallel, replay, resume, scripted};

/// Benchmarks of Steadfast. Without a subcommand, every section runs.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// The section to run (default: all).
    #[command(subcommand)]
    section: Option<Section>,
    /// Smoke mode: every measurement with tiny iteration counts (the figures mean little).
    #[arg(long, global = true)]
    quick: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long, global = true, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Scratch directory for the database files (default: a new one under the temp dir,
    /// removed at the end).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug, Clone)]
enum Section {
    /// Every section.
    All,
    /// Framework overhead per model round trip (FunctionModel, no network).
    Overhead,
    /// Time of one durable step commit on SQLite in each durability mode.
    Commit,
    /// Throughput of 64 parallel branch steps against 64 sequential ones (group commit).
    Parallel,
    /// Replay of a 100-step and a 10,000-step history by a fresh worker.
    Replay,
    /// RSS of an idle worker on SQLite.
    Idle,
    /// A durable 50-question game with FunctionModel against the plain game.
    Game,
    /// The side-by-side workload against mockllm.py, and the kill/resume test.
    Mockllm,
    /// The game on a Temporal dev server against the embedded engine, and its history size
    /// (build with `--features temporal`; needs the `temporal` CLI). Not part of `all`.
    Temporal,
    /// (internal) The game process of the resume test.
    #[command(name = "__resume-child", hide = true)]
    ResumeChild(resume::ChildArgs),
    /// (internal) The idle-memory process.
    #[command(name = "__idle-child", hide = true)]
    IdleChild(idle::ChildArgs),
}

const ALL: [&str; 7] = [
    "overhead", "commit", "parallel", "replay", "idle", "game", "mockllm",
];

/// A scratch directory, removed on drop when we made it.
struct Scratch {
    path: PathBuf,
    remove: bool,
}

impl Scratch {
    fn new(given: Option<PathBuf>) -> anyhow::Result<Self> {
        let (path, remove) = match given {
            Some(p) => (p, false),
            None => (
                std::env::temp_dir().join(format!("steadfast-bench-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)?;
        Ok(Scratch { path, remove })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn run_section(
    name: &str,
    quick: bool,
    scratch: &Scratch,
    rt: &tokio::runtime::Runtime,
    report: &mut Report,
) -> anyhow::Result<()> {
    let dir = scratch.path.join(name);
    std::fs::create_dir_all(&dir)?;
    match name {
        "overhead" => rt.block_on(overhead::run(quick, report)),
        "commit" => rt.block_on(commit::run(quick, &dir, report)),
        "parallel" => rt.block_on(parallel::run(quick, &dir, report)),
        "replay" => rt.block_on(replay::run(quick, &dir, report)),
        "idle" => idle::run(quick, &dir, report),
        "game" => rt.block_on(scripted::run(quick, &dir, report)),
        "mockllm" => mockllm::run(quick, &dir, rt, report),
        #[cfg(feature = "temporal")]
        "temporal" => rt.block_on(steadfast_bench::temporal::run(quick, &dir, report)),
        #[cfg(not(feature = "temporal"))]
        "temporal" => anyhow::bail!(
            "this build has no Temporal section: cargo run --release -p steadfast-bench \
             --features temporal -- temporal"
        ),
        other => anyhow::bail!("unknown section {other}"),
    }
}

fn main() -> ExitCode {
    let main_start = Instant::now();
    let cli = Cli::parse();
    let sections: Vec<&str> = match &cli.section {
        Some(Section::ResumeChild(a)) => return exit(resume::child_main(a.clone(), main_start)),
        Some(Section::IdleChild(a)) => return exit(idle::child_main(a.clone())),
        None | Some(Section::All) => ALL.to_vec(),
        Some(Section::Overhead) => vec!["overhead"],
        Some(Section::Commit) => vec!["commit"],
        Some(Section::Parallel) => vec!["parallel"],
        Some(Section::Replay) => vec!["replay"],
        Some(Section::Idle) => vec!["idle"],
        Some(Section::Game) => vec!["game"],
        Some(Section::Mockllm) => vec!["mockllm"],
        Some(Section::Temporal) => vec!["temporal"],
    };
    exit(run(&cli, &sections))
}

fn exit(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli, sections: &[&str]) -> anyhow::Result<()> {
    let scratch = Scratch::new(cli.dir.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = Report::new(cli.quick);
    eprintln!(
        "steadfast-bench{}: {} on {} cores, scratch {}",
        if cli.quick { " --quick" } else { "" },
        sections.join(", "),
        report.cores,
        scratch.path.display()
    );
    for name in sections {
        eprintln!("[{name}]");
        // The sections before this one wrote databases of their own.
        steadfast_bench::stats::settle_disk();
        let t = Instant::now();
        if let Err(e) = run_section(name, cli.quick, &scratch, &rt, &mut report) {
            report.error(name, &e);
        }
        eprintln!("  ({:.1} s)", t.elapsed().as_secs_f64());
    }
    println!("\n{}", report.table());
    println!("{}", report.markdown());
    if let Some(path) = &cli.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    anyhow::ensure!(
        report.errors.is_empty(),
        "{} section(s) failed",
        report.errors.len()
    );
    Ok(())
}
