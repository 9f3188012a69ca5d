//! End to end: the real `twenty-questions` binary against a local OpenAI-compatible server that
//! plays the game deterministically and counts every request; killed with SIGKILL mid-game and
//! resumed by id.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{K, collect_until_exit, lines, start_server};

fn temp_db(tag: &str) -> String {
    let p = std::env::temp_dir().join(format!("tq-e2e-{tag}-{}.db", std::process::id()));
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", p.display()));
    }
    p.display().to_string()
}

fn game(db: &str, url: &str, id: &str, failure_rate: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_twenty-questions"))
        .args([
            "--db",
            db,
            "--id",
            id,
            "--base-url",
            url,
            "--failure-rate",
            failure_rate,
            "--seed",
            "7",
        ])
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn twenty-questions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_question_five_resumes_by_id() {
    let (url, counts) = start_server().await;
    let db = temp_db("kill");
    let mut child = game(&db, &url, "kill-test", "0.1");
    let rx = lines(&mut child);
    let mut first = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("question 5 never came:\n{first}"));
        first.push_str(&line);
        first.push('\n');
        if line.trim_start().starts_with("5.") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = counts.lock().unwrap().total;
    assert!(
        !first.contains("Guess:"),
        "the game ended before the kill:\n{first}"
    );

    let (second, ok) = tokio::task::spawn_blocking({
        let (db, url) = (db.clone(), url.clone());
        move || collect_until_exit(game(&db, &url, "kill-test", "0.1"))
    })
    .await
    .unwrap();
    assert!(ok, "the resumed game failed:\n{second}");
    assert!(second.contains("Resuming game kill-test"), "{second}");
    assert!(second.contains("Guess: potato  ✔ right"), "{second}");
    let replayed = second.lines().filter(|l| l.contains("(replayed,")).count();
    assert!(
        replayed >= 4,
        "the resumed run shows the replayed questions:\n{second}"
    );
    assert!(second.contains("replayed from the journal"), "{second}");

    let c = counts.lock().unwrap();
    assert!(c.total > before, "the resumed run sent new requests");
    // Every request reached the server once, except at most the one in flight at the kill.
    assert!(
        c.duplicates() <= 1,
        "{} duplicated requests:\nfirst run:\n{first}\nsecond run:\n{second}",
        c.duplicates()
    );
    // K questions and a guess: (K + 1) answerer requests and K + 2 questioner requests.
    assert_eq!(c.seen.len(), 2 * K + 3, "distinct requests");
    let _ = std::fs::remove_file(&db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_calls_fail_and_the_game_still_completes() {
    let (url, counts) = start_server().await;
    let db = temp_db("flaky");
    let (out, ok) = tokio::task::spawn_blocking({
        let (db, url) = (db.clone(), url.clone());
        move || collect_until_exit(game(&db, &url, "flaky-test", "0.5"))
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("Guess: potato  ✔ right"), "{out}");
    let failures = out
        .lines()
        .filter(|l| l.contains("simulated failure"))
        .count();
    assert!(failures > 0, "{out}");
    // The history shows the retries: attempts recorded against the tool steps.
    let engine = steadfast::sqlite_engine(&db).unwrap();
    let h = engine.history("flaky-test").await.unwrap();
    assert_eq!(
        h.attempts.len(),
        failures,
        "every failure is in the history"
    );
    assert!(
        h.attempts
            .iter()
            .all(|a| a.step_id.contains("tool__ask_question"))
    );
    let retried = h.steps.iter().filter(|s| s.attempts > 1).count();
    assert!(retried > 0);
    // Failures happen before the answerer is called: no request was sent twice.
    assert_eq!(counts.lock().unwrap().duplicates(), 0);
    let _ = std::fs::remove_file(&db);
}
