//! Crash anywhere: `crashy` runs the 36-step pipeline for four workflows at once while the test
//! kills it with SIGKILL at random moments and lets it abort at chosen points (right before or
//! right after the N-th `commit_step`, around the end of a run, right after a claim), restarting
//! it each time, until every workflow has finished; then again with new workflows, until enough
//! kills have happened. Then every output must equal the undisturbed reference, and the journals
//! must account for every request the mock model saw and every execution in the log:
//! * a completed step never runs again, and a committed answer is never asked for again;
//! * work is repeated only where it was in flight in a process that died: at most one step per
//!   line of execution (a workflow's main line or one of its five branches) per death.
//!
//! A bound of "one repeated step per kill" would not hold here: one process runs four workflows
//! with five branches each, so up to 24 steps can be in flight when it dies. The test prints
//! how much work was repeated.
//!
//! The random choices come from `CRASH_SEED` (or the clock); the seed is printed first and is
//! part of every assertion message.

mod common;

use std::collections::{HashMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::*;
use steadfast::WorkflowStatus;

/// Workflows each `crashy` process runs side by side.
const PER_ROUND: usize = 4;
/// Parallel branches of the pipeline: at most this many steps of one workflow are in flight.
const BRANCHES: usize = 5;
/// Kills in total (SIGKILLs plus failpoint aborts), at least.
const MIN_KILLS: usize = 50;
/// Of which random SIGKILLs, at least.
const MIN_RANDOM_KILLS: usize = 80;
/// The longest random wait, after a fresh process has made progress, before it is killed.
const MAX_KILL_DELAY_MS: u64 = 80;
/// The longest random wait after the start, for the kills that do not wait for progress.
const EARLY_KILL_MS: u64 = 60;
const MAX_ROUNDS: usize = 80;
/// Deterministic crash points: abort right before / right after the N-th commit of a process
/// (and a few at the end of a run, and right after a claim).
const FAILPOINTS: [&str; 21] = [
    "before_commit:1",
    "after_commit:1",
    "before_commit:2",
    "after_commit:3",
    "before_commit:5",
    "after_commit:8",
    "before_commit:13",
    "after_commit:21",
    "before_commit:34",
    "after_commit:4",
    "before_commit:9",
    "after_commit:15",
    "before_commit:27",
    "after_commit:40",
    "before_commit:60",
    "after_commit:90",
    "after_claim:1",
    "before_finish:1",
    "after_finish:1",
    "after_claim:2",
    "before_finish:3",
];

#[derive(Debug)]
#[allow(dead_code)] // the fields are for the Debug output of failure messages
enum Death {
    /// `early`: `delay_ms` after the start; else `delay_ms` after its first commit.
    Sigkill {
        early: bool,
        delay_ms: u64,
    },
    Failpoint(&'static str),
}

#[test]
fn crash_anywhere() {
    let seed = seed("crash_anywhere");
    let began = Instant::now();
    let ctx = format!("[CRASH_SEED={seed}]");
    let rt = runtime();
    let scratch = Scratch::new("crash-anywhere");

    // 1. The reference: the same pipeline, undisturbed.
    let reference = reference(&rt, &scratch, &TOPICS);
    println!(
        "{ctx} reference: {} topics, {} steps per workflow, in {:?}",
        TOPICS.len(),
        reference.shapes["alpha"].len(),
        began.elapsed()
    );

    // 2. Rounds of workflows, each driven to the end through kills and restarts.
    let mock = MockLlm::start(&rt, Duration::from_millis(3));
    let db = scratch.path("crash.db");
    let exec = scratch.path("exec.log");
    let commits = scratch.path("commits.log");
    let mut rng = Rng::new(seed);
    let mut failpoints: VecDeque<&'static str> = FAILPOINTS.into_iter().collect();
    let mut deaths: Vec<(u32, Death)> = Vec::new();
    let mut clean_exits: Vec<u32> = Vec::new();
    let mut workflows: Vec<(String, &'static str)> = Vec::new();
    let mut lives = 0usize;
    let mut round = 0usize;
    let random_kills = |d: &[(u32, Death)]| {
        d.iter()
            .filter(|(_, d)| matches!(d, Death::Sigkill { .. }))
            .count()
    };
    while deaths.len() < MIN_KILLS
        || random_kills(&deaths) < MIN_RANDOM_KILLS
        || !failpoints.is_empty()
    {
        assert!(
            round < MAX_ROUNDS,
            "{ctx} {round} rounds did not give the kills wanted: {} deaths, {} failpoints left",
            deaths.len(),
            failpoints.len()
        );
        let (ids, start) = workflow_ids(&format!("r{round}-w"), PER_ROUND);
        workflows.extend(ids.iter().cloned());
        loop {
            lives += 1;
            let failpoint = (!failpoints.is_empty() && rng.below(3) == 0)
                .then(|| failpoints.front().copied())
                .flatten();
            let mut cmd = Crashy::new(&db, &format!("r{round}"))
                .arg("llm-url", mock.url())
                .arg("exec-log", &exec)
                .arg("commit-log", &commits)
                .arg("concurrency", PER_ROUND.to_string())
                .arg("step-delay-ms", "1")
                .arg("start", &start);
            if let Some(fp) = failpoint {
                cmd = cmd.env("CRASHY_CRASH", fp);
            }
            let mut p = cmd.spawn(&scratch);
            if let Some(fp) = failpoint {
                let status = p.wait(Duration::from_secs(60), &ctx);
                if status.success() {
                    // The round finished before this process reached its N-th commit; the
                    // crash point stays for a later round.
                    clean_exits.push(p.pid);
                    check_round(&ctx, &p, &ids, &reference);
                    break;
                }
                assert_eq!(
                    status.signal(),
                    Some(6),
                    "{ctx} crashy with {fp} should abort (SIGABRT), got {status}; stderr:\n{}",
                    p.stderr()
                );
                deaths.push((p.pid, Death::Failpoint(fp)));
                failpoints.pop_front();
                continue;
            }
            // Random kill. Mostly: wait until this process has committed a step (so lives make
            // progress), then a random delay. Sometimes: a random delay from the start, which
            // lands in opening the store, claiming, or replaying the journal.
            let early = lives == 1 || rng.below(6) == 0;
            if !early {
                let progressed = poll_until(Duration::from_secs(60), || {
                    p.exited().is_some() || commits_by(&commits, p.pid) > 0
                });
                assert!(
                    progressed,
                    "{ctx} crashy (pid {}) committed nothing in 60 s; stderr:\n{}",
                    p.pid,
                    p.stderr()
                );
            }
            let delay = rng.below(
                if early {
                    EARLY_KILL_MS
                } else {
                    MAX_KILL_DELAY_MS
                } + 1,
            );
            std::thread::sleep(Duration::from_millis(delay));
            if p.kill() {
                deaths.push((
                    p.pid,
                    Death::Sigkill {
                        early,
                        delay_ms: delay,
                    },
                ));
                continue;
            }
            let status = p.exited().expect("exited");
            assert!(
                status.success(),
                "{ctx} crashy (pid {}) failed: {status}; stderr:\n{}",
                p.pid,
                p.stderr()
            );
            clean_exits.push(p.pid);
            check_round(&ctx, &p, &ids, &reference);
            break;
        }
        round += 1;
    }

    // 3. Every workflow finished, with the reference output and the reference journal shape.
    let engine = steadfast::sqlite_engine(&db).expect("open the crash db");
    let mut histories = Vec::new();
    for (id, topic) in &workflows {
        let h = history(&rt, &engine, id);
        assert_eq!(
            h.workflow.status,
            WorkflowStatus::Completed,
            "{ctx} {id} did not complete: {:?}",
            h.workflow.output
        );
        assert_eq!(
            h.workflow.output.as_ref().and_then(|o| o.as_str()),
            Some(reference.outputs[*topic].as_str()),
            "{ctx} {id} ({topic}) differs from the reference"
        );
        assert_eq!(
            shape(&h),
            reference.shapes[*topic],
            "{ctx} the journal of {id} has another shape than the reference"
        );
        histories.push(h);
    }

    // 4. The journals account for every request and execution.
    let requests = mock.requests();
    let execs = exec_log(&exec);
    let audit = audit(&histories, &requests, &execs);
    assert!(
        audit.problems.is_empty(),
        "{ctx} broken guarantees:\n{}",
        audit.problems.join("\n")
    );
    let killed: HashMap<u32, &Death> = deaths.iter().map(|(p, d)| (*p, d)).collect();
    for r in &audit.wasted_requests {
        assert!(
            r.pid.is_some_and(|p| killed.contains_key(&p)),
            "{ctx} request {} (pid {:?}) was repeated, but its process was not killed",
            r.fp,
            r.pid
        );
    }
    for e in &audit.wasted_execs {
        assert!(
            killed.contains_key(&e.pid),
            "{ctx} {} ran again after execution {} by pid {}, which was not killed",
            e.key,
            e.tag,
            e.pid
        );
    }
    // Only the steps in flight when a process died may repeat. Steps of one line of execution
    // (a workflow's main line, or one of its branches) run one after the other, so a kill
    // leaves at most one step per line to repeat.
    for ((pid, line), n) in audit.wasted_by_line() {
        assert!(
            n <= 1,
            "{ctx} pid {pid} ({:?}) left {n} steps of {line} to repeat; at most one can be in \
             flight",
            killed.get(&pid)
        );
    }
    let per_process = PER_ROUND * (1 + BRANCHES);
    let wasted = audit.wasted_by_pid();
    for (pid, n) in &wasted {
        assert!(
            *n <= per_process,
            "{ctx} pid {pid} ({:?}) left {n} steps to repeat; at most {per_process} can be in flight",
            killed.get(pid)
        );
    }
    let kills = deaths.len();
    assert!(
        audit.max_execs_per_key <= 1 + kills,
        "{ctx} a key ran {} times with {kills} kills",
        audit.max_execs_per_key
    );
    assert!(
        (mock.max_repeats() as usize) <= 1 + kills,
        "{ctx} a request was seen {} times with {kills} kills",
        mock.max_repeats()
    );
    assert_eq!(
        mock.duplicates(),
        audit.wasted_requests.len(),
        "{ctx} every duplicate request is one whose answer was lost"
    );
    assert!(
        mock.duplicates() + audit.wasted_execs.len() <= kills * per_process,
        "{ctx} too much repeated work"
    );
    assert!(kills >= MIN_KILLS, "{ctx} only {kills} kills");

    let early_kills = deaths
        .iter()
        .filter(|(_, d)| matches!(d, Death::Sigkill { early: true, .. }))
        .count();
    let fp_kills = deaths
        .iter()
        .filter(|(_, d)| matches!(d, Death::Failpoint(_)))
        .count();
    let lost_processes = wasted.len();
    println!(
        "{ctx} {} workflows in {round} rounds, {lives} processes: {kills} killed ({} SIGKILL, \
         {early_kills} of them early, {fp_kills} failpoint aborts), {} exited cleanly",
        workflows.len(),
        random_kills(&deaths),
        clean_exits.len()
    );
    println!(
        "{ctx} mock: {} requests, {} distinct, {} repeated (max {} sends of one request); \
         executions: {} logged, {} committed, {} repeated (max {} per key); {lost_processes} \
         of {kills} dead processes had work in flight",
        requests.len(),
        mock.distinct(),
        mock.duplicates(),
        mock.max_repeats(),
        execs.len(),
        audit.committed_execs,
        audit.wasted_execs.len(),
        audit.max_execs_per_key
    );
    println!(
        "{ctx} repeated work: {} requests + {} executions over {kills} kills, at most {} from \
         one dead process and at most 1 per line of execution per kill (asserted); one per kill \
         overall {}; {:?} in all",
        mock.duplicates(),
        audit.wasted_execs.len(),
        wasted.values().max().copied().unwrap_or(0),
        if mock.duplicates() + audit.wasted_execs.len() <= kills {
            "held"
        } else {
            "did not hold: branches and side-by-side workflows have several steps in flight"
        },
        began.elapsed()
    );
}

/// The last process of a round printed every workflow of the round, completed, with the
/// reference output.
fn check_round(ctx: &str, p: &Proc, ids: &[(String, &'static str)], reference: &Reference) {
    let results = p.results();
    assert_eq!(results.len(), ids.len(), "{ctx} results: {results:?}");
    for ((id, topic), r) in ids.iter().zip(&results) {
        assert_eq!(r["id"], id.as_str(), "{ctx} {r}");
        assert_eq!(r["status"], "completed", "{ctx} {r}");
        assert_eq!(
            r["output"].as_str(),
            Some(reference.outputs[*topic].as_str()),
            "{ctx} {id} printed another output than the reference"
        );
    }
}
