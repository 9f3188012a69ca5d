//! End to end on a real Temporal dev server: the `twenty-questions` binary's worker killed with
//! SIGKILL after question 5 and replaced, and the server restarted mid-game. The local
//! OpenAI-compatible server counts every request.

#![cfg(feature = "temporal")]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{K, collect_until_exit, lines, start_server};
use steadfast::temporal::dev::{DevServer, test_server};

/// A dev server, or `None` (after a note) when there is no Temporal CLI outside CI.
fn dev_server(tag: &str) -> Option<DevServer> {
    test_server(&format!("tq-{tag}")).expect("the Temporal dev server starts")
}

fn tq(server: &DevServer, queue: &str, url: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_twenty-questions"))
        .args([
            "--engine",
            "temporal",
            "--temporal-address",
            &server.address(),
        ])
        .args(["--task-queue", queue, "--base-url", url])
        .args(["--failure-rate", "0.1", "--seed", "7"])
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn twenty-questions")
}

/// Read `child`'s lines until one starts with `prefix`; the lines so far.
fn read_until(rx: &std::sync::mpsc::Receiver<String>, prefix: &str) -> String {
    let mut seen = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|_| panic!("`{prefix}` never came:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.trim_start().starts_with(prefix) {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_question_five_is_replaced_and_the_game_finishes() {
    let Some(server) = dev_server("kill") else {
        return;
    };
    let (url, counts) = start_server().await;
    let mut first = tq(&server, "tq-kill", &url, &["worker"]);
    let worker_out = lines(&mut first);
    let client = tq(&server, "tq-kill", &url, &["--id", "kill-1", "--no-worker"]);
    let seen = read_until(&worker_out, "5.");
    first.kill().expect("SIGKILL the worker");
    first.wait().expect("reap the worker");
    let before = counts.lock().unwrap().total;

    let mut second = tq(&server, "tq-kill", &url, &["worker"]);
    let second_out = lines(&mut second);
    let (out, ok) = tokio::task::spawn_blocking(move || collect_until_exit(client))
        .await
        .unwrap();
    let _ = second.kill();
    let _ = second.wait();
    let resumed: Vec<String> = second_out.try_iter().collect();
    assert!(ok, "the client failed:\n{out}");
    assert!(out.contains("Guess: potato  ✔ right"), "{out}");
    assert!(
        resumed
            .iter()
            .any(|l| l.trim_start().starts_with(&format!("{}.", K + 1))),
        "the new worker asked the last questions: {resumed:?}"
    );
    let c = counts.lock().unwrap();
    assert!(c.total > before, "the new worker sent requests");
    // Each completed request reached the server once; only the one in flight may repeat.
    assert!(
        c.duplicates() <= 1,
        "{} duplicated requests\nfirst worker:\n{seen}\nsecond worker: {resumed:?}",
        c.duplicates()
    );
    assert_eq!(c.seen.len(), 2 * K + 3, "distinct requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_restarts_mid_game_and_the_client_re_attaches() {
    let Some(mut server) = dev_server("restart") else {
        return;
    };
    let (url, counts) = start_server().await;
    // Slow answers keep the game going while the server is down.
    counts.lock().unwrap().latency_ms = 100;
    let mut game = tq(&server, "tq-restart", &url, &["--id", "restart-1"]);
    let out = lines(&mut game);
    let seen = read_until(&out, "3.");
    server.kill();
    let at_kill = counts.lock().unwrap().total;
    server
        .restart()
        .expect("the server restarts on its database");
    let mut rest = String::new();
    while let Ok(l) = out.recv_timeout(Duration::from_secs(90)) {
        rest.push_str(&l);
        rest.push('\n');
    }
    let ok = game.wait().unwrap().success();
    assert!(
        ok,
        "the game failed:\nbefore the restart:\n{seen}\nafter:\n{rest}"
    );
    assert!(rest.contains("Guess: potato  ✔ right"), "{seen}{rest}");
    let c = counts.lock().unwrap();
    assert!(c.total > at_kill, "the game went on after the restart");
    assert_eq!(c.seen.len(), 2 * K + 3, "distinct requests");
    // At least once: a completion lost with the server may run its step again.
    assert!(
        c.duplicates() <= 2,
        "{} duplicated requests",
        c.duplicates()
    );
}
