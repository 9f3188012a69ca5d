//! Shared parts of the crash tests: scratch directories, the seeded RNG, starting and killing
//! `crashy`, reading its logs and the journal, and the audit of executions against the journal.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod mock;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use steadfast::durable::{Json, StepKind, StepRecord};
use steadfast::{Engine, History};

pub use mock::{MockLlm, Request};

/// The path of the `crashy` binary that cargo built for these tests.
pub const CRASHY: &str = env!("CARGO_BIN_EXE_crashy");

/// Milliseconds since the Unix epoch (the clock the engine journals).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A two-thread runtime for the mock server and for reading the store.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A fresh directory under the system temp dir, removed when the test passes (kept on failure,
/// for a look at the logs).
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "steadfast-crashtest-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the scratch directory {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The seed of a test's random choices: `CRASH_SEED` if set, else the clock. Printed at once.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("CRASH_SEED") {
        Ok(s) if !s.trim().is_empty() => s.trim().parse().expect("CRASH_SEED must be a u64"),
        _ => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    println!("{test}: CRASH_SEED={seed} (rerun with CRASH_SEED={seed} to repeat the choices)");
    seed
}

/// xorshift64*: a tiny, good-enough seeded RNG.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Mix the seed so that small seeds give unrelated streams; the state must not be zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Builds a `crashy` command line.
pub struct Crashy {
    cmd: Command,
    label: String,
}

impl Crashy {
    pub fn new(db: &Path, label: &str) -> Crashy {
        let mut cmd = Command::new(CRASHY);
        cmd.arg("--db").arg(db);
        // Nothing from the outer environment may change the run.
        for var in [
            "CRASHY_CRASH",
            "CRASHY_VARIANT",
            "CRASHY_STEP_DELAY_MS",
            "CRASHY_WORKFLOW",
            "CRASHY_START",
        ] {
            cmd.env_remove(var);
        }
        Crashy {
            cmd,
            label: label.to_string(),
        }
    }

    pub fn arg(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Crashy {
        self.cmd.arg(format!("--{name}")).arg(value);
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Crashy {
        self.cmd.env(name, value);
        self
    }

    /// Start it; stdout and stderr go to files in `scratch`.
    pub fn spawn(mut self, scratch: &Scratch) -> Proc {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let out = scratch.path(&format!("{}-{n}.out", self.label));
        let err = scratch.path(&format!("{}-{n}.err", self.label));
        let child = self
            .cmd
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"))
            .spawn()
            .expect("start crashy");
        Proc {
            pid: child.id(),
            child,
            out,
            err,
            started: Instant::now(),
            status: None,
        }
    }
}

/// A running (or finished) `crashy` process.
pub struct Proc {
    pub pid: u32,
    child: Child,
    out: PathBuf,
    err: PathBuf,
    pub started: Instant,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Its exit status, if it has exited (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Wait for it to exit; kill it and fail after `limit`.
    pub fn wait(&mut self, limit: Duration, context: &str) -> ExitStatus {
        // Counted in polls, like `poll_until`, so that a paused machine does not fail the wait.
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        loop {
            if let Some(s) = self.exited() {
                return s;
            }
            if waited >= limit {
                self.kill();
                panic!(
                    "{context}: crashy (pid {}) did not finish within {limit:?}; stderr:\n{}",
                    self.pid,
                    self.stderr()
                );
            }
            std::thread::sleep(step);
            waited += step;
        }
    }

    /// SIGKILL it and reap it (a zombie would still look alive to the engine's dead-worker
    /// check). Returns whether it was still running.
    pub fn kill(&mut self) -> bool {
        if self.exited().is_some() {
            return false;
        }
        let _ = self.child.kill();
        self.status = Some(self.child.wait().expect("wait after kill"));
        true
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// The JSON result lines it printed.
    pub fn results(&self) -> Vec<Value> {
        self.stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad result line {l:?}: {e}"))
            })
            .collect()
    }
}

/// Poll `cond` every 5 ms until it holds; `false` once `limit` has passed in polls (not in
/// wall-clock time alone: a machine paused for a while does not make the wait fail at once).
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let step = Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    loop {
        if cond() {
            return true;
        }
        if waited >= limit {
            return false;
        }
        std::thread::sleep(step);
        waited += step;
    }
}

/// One line of the execution log: `exec <pid>:<n> <idempotency key>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exec {
    pub tag: String,
    pub pid: u32,
    pub key: String,
}

/// The execution log, in write order.
pub fn exec_log(path: &Path) -> Vec<Exec> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut it = l.split(' ');
            let (Some("exec"), Some(tag), Some(key), None) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                panic!("malformed execution log line {l:?}");
            };
            let pid = tag
                .split(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad execution tag in {l:?}"));
            Exec {
                tag: tag.to_string(),
                pid,
                key: key.to_string(),
            }
        })
        .collect()
}

/// One line of the commit log: `<pid> <workflow>/<step id> <kind>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub pid: u32,
    pub key: String,
    pub kind: String,
}

pub fn commit_log(path: &Path) -> Vec<Commit> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let mut it = l.split(' ');
            Some(Commit {
                pid: it.next()?.parse().ok()?,
                key: it.next()?.to_string(),
                kind: it.next()?.to_string(),
            })
        })
        .collect()
}

/// Commits logged by process `pid`.
pub fn commits_by(path: &Path, pid: u32) -> usize {
    let prefix = format!("{pid} ");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .count()
}

/// The history of workflow `id`.
pub fn history(rt: &tokio::runtime::Runtime, engine: &Engine, id: &str) -> History {
    rt.block_on(engine.history(id))
        .unwrap_or_else(|e| panic!("history of `{id}`: {e}"))
}

/// The idempotency key of a journal entry.
pub fn key_of(workflow_id: &str, step: &StepRecord) -> String {
    format!("{workflow_id}/{}", step.step_id)
}

/// The execution tag a user step or tool result carries in the journal.
pub fn exec_tag(step: &StepRecord) -> Option<String> {
    let out = step.output.as_ref().ok()?.to_value();
    out.get("exec")
        .or_else(|| out.pointer("/result/value/exec"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The shape of a journal: (step id, kind, name) of every entry.
pub fn shape(h: &History) -> BTreeSet<(String, String, String)> {
    h.steps
        .iter()
        .map(|s| {
            (
                s.step_id.clone(),
                s.kind.as_str().to_string(),
                s.name.clone(),
            )
        })
        .collect()
}

/// What the reference run (no kills) gave, per topic.
pub struct Reference {
    pub outputs: HashMap<String, String>,
    pub shapes: HashMap<String, BTreeSet<(String, String, String)>>,
}

/// Run `crashy` once, undisturbed, on a fresh database and a fresh mock, for one workflow per
/// topic; check that it ran cleanly (every request and execution exactly once) and return the
/// outputs and journal shapes.
pub fn reference(rt: &tokio::runtime::Runtime, scratch: &Scratch, topics: &[&str]) -> Reference {
    let mock = MockLlm::start(rt, Duration::ZERO);
    let db = scratch.path("reference.db");
    let exec = scratch.path("reference-exec.log");
    let ids: Vec<String> = topics.iter().map(|t| format!("ref-{t}")).collect();
    let start: Vec<String> = ids
        .iter()
        .zip(topics)
        .map(|(i, t)| format!("{i}={t}"))
        .collect();
    let mut p = Crashy::new(&db, "reference")
        .arg("llm-url", mock.url())
        .arg("exec-log", &exec)
        .arg("concurrency", topics.len().to_string())
        .arg("start", start.join(","))
        .spawn(scratch);
    let status = p.wait(Duration::from_secs(60), "reference run");
    assert!(
        status.success(),
        "reference run failed ({status}):\n{}",
        p.stderr()
    );
    let results = p.results();
    assert_eq!(
        results.len(),
        topics.len(),
        "reference results: {results:?}"
    );
    let engine = steadfast::sqlite_engine(&db).expect("open the reference db");
    let mut outputs = HashMap::new();
    let mut shapes = HashMap::new();
    let mut histories = Vec::new();
    for (id, topic) in ids.iter().zip(topics) {
        let r = results
            .iter()
            .find(|r| r["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no reference result for {id}"));
        assert_eq!(r["status"], "completed", "reference {id}: {r}");
        let out = r["output"].as_str().expect("string output").to_string();
        let h = history(rt, &engine, id);
        assert_eq!(h.workflow.output, Some(Value::String(out.clone())));
        shapes.insert(topic.to_string(), shape(&h));
        outputs.insert(topic.to_string(), out);
        histories.push(h);
    }
    let audit = audit(&histories, &mock.requests(), &exec_log(&exec));
    assert!(
        audit.problems.is_empty(),
        "reference run: {:#?}",
        audit.problems
    );
    assert!(
        audit.wasted_requests.is_empty() && audit.wasted_execs.is_empty() && mock.duplicates() == 0,
        "an undisturbed run repeated work: {audit:#?}"
    );
    reference_sanity(&outputs, &shapes);
    Reference { outputs, shapes }
}

/// The pipeline's shape, checked once on the reference: ≥ 30 steps, the planner's lookups, five
/// branches each with an agent and user steps.
fn reference_sanity(
    outputs: &HashMap<String, String>,
    shapes: &HashMap<String, BTreeSet<(String, String, String)>>,
) {
    for (topic, shape) in shapes {
        assert!(shape.len() >= 30, "{topic}: only {} steps", shape.len());
        let count = |name: &str| shape.iter().filter(|(_, _, n)| n == name).count();
        assert_eq!(
            count("agent__planner__tool__lookup"),
            mock::LOOKUPS,
            "{shape:#?}"
        );
        assert_eq!(count("agent__planner__model_request"), mock::LOOKUPS + 1);
        assert_eq!(count("agent__analyst__model_request"), 10);
        assert_eq!(count("fetch"), 5);
        assert_eq!(count("refine"), 5);
        assert!(
            shape
                .iter()
                .any(|(id, _, _)| id.starts_with("part4#1/analyst#1/")),
            "branch namespaces: {shape:#?}"
        );
        let out = &outputs[topic];
        assert!(out.contains(&format!("plan[T-{topic}]")), "{out}");
        assert_eq!(out.matches("analysis[").count(), 5, "{out}");
    }
}

/// What the journals say about every request the mock saw and every execution in the log.
#[derive(Debug, Default)]
pub struct Audit {
    /// Model requests committed in the journals.
    pub committed_requests: usize,
    /// Requests whose answer was never committed (their step was in flight when its process
    /// died, and ran again).
    pub wasted_requests: Vec<Request>,
    /// Executions (user steps and tools) committed in the journals.
    pub committed_execs: usize,
    /// Executions whose result was never committed.
    pub wasted_execs: Vec<Exec>,
    /// The most executions of one idempotency key.
    pub max_execs_per_key: usize,
    /// Broken guarantees, in words.
    pub problems: Vec<String>,
}

/// The line of execution an idempotency key belongs to: `{workflow}/{branch}` for a step in a
/// pipeline branch (`w/part3#1/...` is `w/part3`), else `{workflow}/root`. Steps of one line run
/// one after the other, so at most one of them is in flight at any time.
pub fn line_of(key: &str) -> String {
    let mut parts = key.split('/');
    let wf = parts.next().unwrap_or("");
    let branch = parts
        .next()
        .filter(|p| p.starts_with("part") && key.matches('/').count() > 1)
        .and_then(|p| p.split('#').next())
        .unwrap_or("root");
    format!("{wf}/{branch}")
}

impl Audit {
    /// Wasted requests and executions per process and line of execution.
    pub fn wasted_by_line(&self) -> HashMap<(u32, String), usize> {
        let mut m = HashMap::new();
        for r in &self.wasted_requests {
            *m.entry((r.pid.unwrap_or(0), r.line.clone())).or_insert(0) += 1;
        }
        for e in &self.wasted_execs {
            *m.entry((e.pid, line_of(&e.key))).or_insert(0) += 1;
        }
        m
    }

    /// Wasted requests and executions per process.
    pub fn wasted_by_pid(&self) -> HashMap<u32, usize> {
        let mut m = HashMap::new();
        for r in &self.wasted_requests {
            *m.entry(r.pid.unwrap_or(0)).or_insert(0) += 1;
        }
        for e in &self.wasted_execs {
            *m.entry(e.pid).or_insert(0) += 1;
        }
        m
    }
}

/// Check the mock's requests and the execution log against the journals of finished workflows:
/// * every committed model answer was given by the mock, each distinct request (fingerprint)
///   was committed exactly once, and never sent again after that;
/// * every committed user step and tool was logged, its committed execution is the last
///   execution of its idempotency key (a completed step never runs again), and every logged key
///   ended up committed.
///
/// Requests and executions that were not committed are returned as wasted: the test decides
/// which processes may have wasted work (only killed ones).
pub fn audit(histories: &[History], requests: &[Request], execs: &[Exec]) -> Audit {
    let mut a = Audit::default();
    // Model requests.
    let mut committed_ids: HashMap<String, String> = HashMap::new();
    for h in histories {
        for s in h.steps.iter().filter(|s| s.kind == StepKind::ModelRequest) {
            let output = s.output.as_ref().ok().map(Json::to_value);
            let rid = output
                .as_ref()
                .and_then(|o| o.get("response_id"))
                .and_then(Value::as_str);
            match rid {
                Some(rid) => {
                    committed_ids.insert(rid.to_string(), key_of(&h.workflow.id, s));
                }
                None => a.problems.push(format!(
                    "{}: no response id in the journal",
                    key_of(&h.workflow.id, s)
                )),
            }
        }
    }
    a.committed_requests = committed_ids.len();
    let seen: HashSet<&str> = requests.iter().map(|r| r.response_id.as_str()).collect();
    for (rid, key) in &committed_ids {
        if !seen.contains(rid.as_str()) {
            a.problems.push(format!(
                "{key}: committed answer {rid} was never given by the mock"
            ));
        }
    }
    let mut by_fp: HashMap<&str, Vec<&Request>> = HashMap::new();
    for r in requests {
        by_fp.entry(r.fp.as_str()).or_default().push(r);
    }
    for (fp, rs) in &by_fp {
        let committed: Vec<&&Request> = rs
            .iter()
            .filter(|r| committed_ids.contains_key(&r.response_id))
            .collect();
        match committed.as_slice() {
            [c] => {
                let last = rs.iter().map(|r| r.seq).max().unwrap_or(0);
                if c.seq != last {
                    a.problems.push(format!(
                        "request {fp} was sent again after its answer {} was committed (for {})",
                        c.response_id, committed_ids[&c.response_id]
                    ));
                }
            }
            [] => a.problems.push(format!(
                "request {fp} was sent {} time(s) but no answer was ever committed",
                rs.len()
            )),
            many => a.problems.push(format!(
                "request {fp} has {} committed answers: {:?}",
                many.len(),
                many.iter()
                    .map(|r| committed_ids[&r.response_id].clone())
                    .collect::<Vec<_>>()
            )),
        }
        for r in rs {
            if !committed_ids.contains_key(&r.response_id) {
                a.wasted_requests.push((*r).clone());
            }
        }
    }
    a.wasted_requests.sort_by_key(|r| r.seq);

    // Executions of user steps and tools.
    let mut committed_tags: HashMap<String, String> = HashMap::new();
    for h in histories {
        for s in h
            .steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::Step | StepKind::Tool))
        {
            let key = key_of(&h.workflow.id, s);
            match exec_tag(s) {
                Some(tag) => {
                    committed_tags.insert(key, tag);
                }
                None => a.problems.push(format!(
                    "{key}: no execution tag in the journal: {:?}",
                    s.output
                )),
            }
        }
    }
    a.committed_execs = committed_tags.len();
    let mut by_key: HashMap<&str, Vec<&Exec>> = HashMap::new();
    for e in execs {
        by_key.entry(e.key.as_str()).or_default().push(e);
    }
    for (key, tag) in &committed_tags {
        match by_key.get(key.as_str()) {
            None => a.problems.push(format!(
                "{key}: committed, but its execution was never logged"
            )),
            Some(es) => {
                if !es.iter().any(|e| &e.tag == tag) {
                    a.problems.push(format!(
                        "{key}: the committed execution {tag} is not in the log ({:?})",
                        es.iter().map(|e| &e.tag).collect::<Vec<_>>()
                    ));
                } else if &es.last().map(|e| e.tag.clone()).unwrap_or_default() != tag {
                    a.problems.push(format!(
                        "{key}: executed again after its result ({tag}) was committed: {:?}",
                        es.iter().map(|e| &e.tag).collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    for (key, es) in &by_key {
        a.max_execs_per_key = a.max_execs_per_key.max(es.len());
        match committed_tags.get(*key) {
            None => a.problems.push(format!(
                "{key}: executed {} time(s) but never committed",
                es.len()
            )),
            Some(tag) => a
                .wasted_execs
                .extend(es.iter().filter(|e| &e.tag != tag).map(|e| (*e).clone())),
        }
    }
    a.problems.sort();
    a
}

/// The topics the test workflows research, one per workflow in turn.
pub const TOPICS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

/// `n` workflow ids `{prefix}{i}` with their topics, and the `--start` list `id=topic,...`.
pub fn workflow_ids(prefix: &str, n: usize) -> (Vec<(String, &'static str)>, String) {
    let ids: Vec<(String, &'static str)> = (0..n)
        .map(|i| (format!("{prefix}{i}"), TOPICS[i % TOPICS.len()]))
        .collect();
    let start = ids
        .iter()
        .map(|(id, t)| format!("{id}={t}"))
        .collect::<Vec<_>>()
        .join(",");
    (ids, start)
}
