//! End to end: the real `deep-research` binary against a local OpenAI-compatible server that
//! counts every request and a local Tavily-compatible search server that counts every query;
//! killed with SIGKILL during the analysis and resumed by id; and offline, over the bundled corpus.

mod common;

use std::time::{Duration, Instant};

use common::{EXTRA_QUERY, PLAN_TERMS, Role};
use steadfast::StepKind;

async fn history(db: &str, id: &str) -> steadfast::History {
    steadfast::sqlite_engine(db)
        .unwrap()
        .history(id)
        .await
        .unwrap()
}

fn history_blocking(db: &str, id: &str) -> steadfast::History {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(history(db, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_the_analysis_resumes_with_plan_and_searches_from_history() {
    let seed = 20251126;
    println!("mock delay seed: {seed}");
    let llm = common::start_llm(seed).await;
    let search = common::start_search().await;
    // The report request takes 3 s, so the kill lands inside it.
    llm.report_delay_ms
        .store(3_000, std::sync::atomic::Ordering::SeqCst);
    let db = common::temp_db("kill");
    let id = "kill-during-analysis";

    let mut child = common::spawn_mocked(&db, id, &llm, &search);
    let first_err = common::tee_stderr(&mut child);
    let started = Instant::now();
    while !llm
        .report_requested
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the analysis:\n{}",
            first_err.lock().unwrap()
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the analysis never came"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL, inside the analysis's report request
    child.wait().unwrap();
    let first_err = first_err.lock().unwrap().clone();
    let (plan_before, search_before, analysis_before) = {
        let st = llm.state.lock().unwrap();
        (
            st.total(Role::Plan),
            st.total(Role::Search),
            st.total(Role::Analysis),
        )
    };
    let queries_before = search.total();
    assert_eq!(plan_before, 1, "{first_err}");
    // Four planned searches and the analyst's extra one, two requests each.
    assert_eq!(search_before, 2 * (PLAN_TERMS.len() + 1), "{first_err}");
    assert_eq!(analysis_before, 2, "{first_err}");
    assert_eq!(queries_before, PLAN_TERMS.len() + 1);
    let h = history(&db, id).await;
    assert!(!h.workflow.status.is_terminal(), "killed before the end");
    assert!(
        h.steps
            .iter()
            .all(|s| s.step_id != "analysis#1/model_request#2")
    );

    // Resume by id; the report request is quick this time.
    llm.report_delay_ms
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let (report, err, ok) = tokio::task::spawn_blocking({
        let (db, llm_url, search_url) = (db.clone(), llm.url.clone(), search.url.clone());
        move || {
            let child = common::command(&db)
                .args(["--id", id, "--base-url", &llm_url, "--search", "tavily"])
                .env("TAVILY_API_KEY", "test-key")
                .env("TAVILY_BASE_URL", &search_url)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            common::finish(child)
        }
    })
    .await
    .unwrap();
    assert!(ok, "the resumed run failed:\n{err}");
    assert!(err.contains(&format!("Resuming {id}")), "{err}");

    {
        let st = llm.state.lock().unwrap();
        // Neither the plan nor any search (the extra one included) was asked again...
        assert_eq!(
            st.total(Role::Plan),
            plan_before,
            "plan requests were sent again:\n{err}"
        );
        assert_eq!(
            st.total(Role::Search),
            search_before,
            "search requests were sent again:\n{err}"
        );
        assert_eq!(
            search.total(),
            queries_before,
            "the search server was asked again"
        );
        assert!(search.queries.lock().unwrap().values().all(|n| *n == 1));
        // ...only the analysis request that was in flight at the kill.
        assert_eq!(st.total(Role::Analysis), analysis_before + 1, "{err}");
        assert_eq!(st.duplicates(), vec![(Role::Analysis, 1)], "{err}");
    }
    let replayed = err.lines().filter(|l| l.contains("replayed")).count();
    assert!(
        replayed >= 12,
        "the resumed run shows its replayed steps:\n{err}"
    );

    // The report is complete: the executive summary and a link for every search.
    assert!(report.contains("## Executive summary"), "{report}");
    assert!(report.contains("## Sources"), "{report}");
    for q in PLAN_TERMS.iter().chain([&EXTRA_QUERY]) {
        let slug: String = q
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        assert!(
            report.contains(&format!("(https://search.example.net/{slug}/1)")),
            "no link for “{q}”:\n{report}"
        );
    }

    let h = history(&db, id).await;
    assert_eq!(h.workflow.status, steadfast::WorkflowStatus::Completed);
    let mut ids: Vec<&str> = h.steps.iter().map(|s| s.step_id.as_str()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "no step is journaled twice");
    assert!(ids.contains(&"analysis#1/tool__extra_search#1/search#1/tool__web_search#1"));
    let _ = std::fs::remove_file(&db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_the_middle_of_the_fan_out_resumes_the_unfinished_searches() {
    let seed = 7;
    println!("mock delay seed: {seed}");
    let llm = common::start_llm(seed).await;
    let search = common::start_search().await;
    let db = common::temp_db("fan-out");
    let id = "kill-mid-fan-out";
    let mut child = common::spawn_mocked(&db, id, &llm, &search);
    let first_err = common::tee_stderr(&mut child);
    let started = Instant::now();
    // Kill once two of the four searches have their summaries: the others are still running.
    while llm.summaries.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{}",
            first_err.lock().unwrap()
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the searches never came"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = history(&db, id).await;
    let done_before: Vec<String> = before.steps.iter().map(|s| s.step_id.clone()).collect();
    println!("journal at the kill: {done_before:?}");

    let child = common::spawn_mocked(&db, id, &llm, &search);
    let (report, err, ok) = tokio::task::spawn_blocking(move || common::finish(child))
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert!(report.contains("## Executive summary"), "{report}");
    // Every step journaled before the kill was replayed, not run again.
    for step in &done_before {
        assert!(
            err.lines()
                .any(|l| l.contains('↺') && l.contains(&format!(" {step} "))),
            "{step} was not replayed:\n{err}"
        );
    }
    {
        let st = llm.state.lock().unwrap();
        assert_eq!(st.total(Role::Plan), 1);
        // At most the requests in flight at the kill were sent twice, and only search requests.
        assert!(
            st.duplicates()
                .iter()
                .all(|(r, n)| *r == Role::Search && *n == 1),
            "{:?}",
            st.duplicates()
        );
    }
    let after = history(&db, id).await;
    let mut ids: Vec<&str> = after.steps.iter().map(|s| s.step_id.as_str()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(n, ids.len(), "no step is journaled twice");
    // The same 21 steps as a run that was never interrupted.
    assert_eq!(n, 1 + 4 * 3 + 2 + 1 + 3, "{ids:?}");
    let _ = std::fs::remove_file(&db);
}

/// The ids of the search agents' steps, and the order in which their final summaries committed.
fn search_steps(h: &steadfast::History) -> (Vec<String>, Vec<String>) {
    let mut ids: Vec<String> = h
        .steps
        .iter()
        .filter(|s| s.step_id.starts_with("search#"))
        .map(|s| s.step_id.clone())
        .collect();
    ids.sort();
    let mut done: Vec<_> = h
        .steps
        .iter()
        .filter(|s| s.step_id.starts_with("search#") && s.step_id.ends_with("/model_request#2"))
        .collect();
    done.sort_by_key(|s| s.seq);
    let order = done
        .iter()
        .map(|s| s.step_id.split('/').next().unwrap_or("").to_string())
        .collect();
    (ids, order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_searches_finish_in_random_order_with_the_same_step_ids() {
    let search = common::start_search().await;
    let mut runs = Vec::new();
    for seed in [1u64, 2, 3] {
        let llm = common::start_llm(seed).await;
        let db = common::temp_db(&format!("parallel-{seed}"));
        let id = format!("parallel-{seed}");
        let child = common::spawn_mocked(&db, &id, &llm, &search);
        let (report, err, ok) = tokio::task::spawn_blocking(move || common::finish(child))
            .await
            .unwrap();
        assert!(ok, "seed {seed}:\n{err}");
        assert!(report.contains("## Executive summary"));
        let h = history(&db, &id).await;
        // Program order: search#k ran the k-th planned search, whatever finished first.
        for (k, terms) in PLAN_TERMS.iter().enumerate() {
            let step = h
                .steps
                .iter()
                .find(|s| s.step_id == format!("search#{}/tool__web_search#1", k + 1))
                .unwrap_or_else(|| panic!("seed {seed}: no search#{}", k + 1));
            assert_eq!(step.kind, StepKind::Tool);
            let input = step.input.as_ref().unwrap().to_value();
            assert_eq!(input["query"], *terms, "seed {seed}");
        }
        let (ids, order) = search_steps(&h);
        println!("seed {seed}: searches committed their summaries in the order {order:?}");
        runs.push((seed, ids, order));
        let _ = std::fs::remove_file(&db);
    }
    let (_, first_ids, _) = &runs[0];
    assert_eq!(
        first_ids.len(),
        4 * 3,
        "three steps for each of the four searches"
    );
    for (seed, ids, order) in &runs {
        assert_eq!(ids, first_ids, "seed {seed}: the step ids differ");
        assert_eq!(order.len(), PLAN_TERMS.len());
    }
    let distinct: std::collections::HashSet<_> = runs.iter().map(|r| r.2.clone()).collect();
    println!(
        "{} distinct completion orders over {} seeds",
        distinct.len(),
        runs.len()
    );
}

#[test]
fn offline_run_writes_a_report_from_the_corpus_documents_it_retrieved() {
    let db = common::temp_db("offline");
    let id = "offline";
    let child = common::command(&db)
        .args(["--id", id, "--pace", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (report, err, ok) = common::finish(child);
    assert!(ok, "{err}");
    assert!(err.contains("offline corpus"), "{err}");
    assert!(
        report.starts_with("# What's the best Rust agent framework"),
        "{report}"
    );
    assert!(report.contains("## Executive summary"), "{report}");
    assert!(report.contains("## Sources"), "{report}");

    // Every linked document came back from a journaled web_search; and the report quotes the
    // text of the documents it cites.
    let h = history_blocking(&db, id);
    let searched: String = h
        .steps
        .iter()
        .filter(|s| s.step_id.contains("tool__web_search"))
        .map(|s| format!("{:?}", s.output))
        .collect();
    let docs = deep_research::corpus::documents();
    let doc = |url: &str| docs.iter().find(|d| d.url == url);
    let mut linked = 0;
    for d in docs
        .iter()
        .filter(|d| report.contains(&format!("]({})", d.url)))
    {
        assert!(
            searched.contains(&d.url),
            "{} is linked but was never retrieved",
            d.url
        );
        linked += 1;
    }
    // Each finding quotes a sentence of the very document it links.
    let mut quoted = 0;
    for line in report.lines().filter(|l| l.starts_with("- **")) {
        let url = line
            .rsplit("([source](")
            .next()
            .unwrap()
            .trim_end_matches("))");
        let d = doc(url).unwrap_or_else(|| panic!("not a corpus link: {line}"));
        let sentence = deep_research::offline::sentences(&d.body)
            .into_iter()
            .find(|s| line.contains(s.as_str()));
        assert!(
            sentence.is_some(),
            "the finding does not quote {url}: {line}"
        );
        quoted += 1;
    }
    assert!(
        linked >= 8 && quoted >= 8,
        "{linked} linked, {quoted} quoted:\n{report}"
    );
    assert!(
        !report.contains("](http") || report.contains(".example."),
        "{report}"
    );
    // The analyst searched more (the extra search is journaled inside its tool step).
    assert!(
        h.steps
            .iter()
            .any(|s| s.step_id == "analysis#1/tool__extra_search#1/search#1/tool__web_search#1"),
        "{err}"
    );

    // The plain run of the same scripted models writes the same report.
    let child = common::command(&db)
        .args(["--plain", "--pace", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (plain, err, ok) = common::finish(child);
    assert!(ok, "{err}");
    assert_eq!(plain, report);

    // A finished id prints its report again without running anything.
    let child = common::command(&db)
        .args(["--id", id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (again, err, ok) = common::finish(child);
    assert!(ok, "{err}");
    assert!(err.contains("is finished"), "{err}");
    assert_eq!(again, report);
    let _ = std::fs::remove_file(&db);
}

#[test]
fn trace_prints_the_span_tree_and_out_writes_a_file() {
    let db = common::temp_db("out");
    let out = std::env::temp_dir().join(format!("deep-research-report-{}.md", std::process::id()));
    let child = common::command(&db)
        .args(["--plain", "--pace", "0", "--trace", "--out"])
        .arg(&out)
        .arg("How do durable timers and signals work?")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, err, ok) = common::finish(child);
    assert!(ok, "{err}");
    // The span tree goes to stderr: the plan agent, the parallel searches and the analysis,
    // each model request as a `chat` span with its tokens.
    for span in [
        "invoke_agent plan",
        "invoke_agent search",
        "invoke_agent analysis",
        "execute_tool web_search",
        "• chat ",
    ] {
        assert!(err.contains(span), "no `{span}` in the tree:\n{err}");
    }
    assert!(stdout.is_empty(), "{stdout}");
    let report = std::fs::read_to_string(&out).unwrap();
    assert!(report.contains("timers-and-signals"), "{report}");
    let _ = std::fs::remove_file(&out);
}
