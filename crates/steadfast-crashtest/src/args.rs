//! Command-line arguments of `crashy` (each option also reads an environment variable).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::failpoint::CrashPlan;

/// Which workflow `--start` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `crash_pipeline`: a planner agent, a fan-out of five branches, user steps.
    Pipeline,
    /// `sleeper`: a durable sleep between two steps.
    Sleeper,
    /// `approval`: a step, a wait for a mailbox message, a step.
    Approval,
}

/// The parsed arguments.
#[derive(Debug, Clone)]
pub struct Args {
    pub db: PathBuf,
    pub llm_url: Option<String>,
    pub exec_log: Option<PathBuf>,
    pub commit_log: Option<PathBuf>,
    /// `(workflow id, topic)`; the topic defaults to the id.
    pub start: Vec<(String, String)>,
    pub kind: Kind,
    pub concurrency: usize,
    pub sleep_ms: u64,
    pub step_delay: Duration,
    pub variant_alt: bool,
    pub lease: Duration,
    pub crash: Option<CrashPlan>,
}

pub const USAGE: &str = "\
crashy: a Steadfast worker process for crash tests

USAGE: crashy --db PATH [--llm-url URL] --start ID[=TOPIC][,ID[=TOPIC]..] [options]

Starts the given workflows (idempotently), runs a worker until all of them have finished, prints
each result as one JSON line ({\"id\", \"status\", \"output\" | \"error\"}) and exits: 0 when all
completed, 2 when any failed or was cancelled, 1 on an error.

OPTIONS (environment variable in brackets)
  --db PATH              SQLite file [CRASHY_DB]
  --llm-url URL          OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1 [CRASHY_LLM_URL]
  --start LIST           workflow ids, each optionally `=TOPIC` (pipeline input) [CRASHY_START]
  --workflow NAME        crash_pipeline (default) | sleeper | approval [CRASHY_WORKFLOW]
  --concurrency N        workflows run at once by this process (default 8) [CRASHY_CONCURRENCY]
  --exec-log PATH        append `exec <pid>:<n> <idempotency key>` per step execution [CRASHY_EXEC_LOG]
  --commit-log PATH      append `<pid> <workflow>/<step id> <kind>` per committed step [CRASHY_COMMIT_LOG]
  --sleep-ms N           the sleeper's sleep (default 3000) [CRASHY_SLEEP_MS]
  --step-delay-ms N      each user step and tool waits this long after logging (default 0) [CRASHY_STEP_DELAY_MS]
  --variant alt          changed workflow code: `approval` runs another first step [CRASHY_VARIANT]
  --lease-ms N           worker lease (default 5000) [CRASHY_LEASE_MS]
  --crash POINT:N        abort the process at the N-th such point of this process: before_commit,
                         after_commit (commit_step), before_finish, after_finish (the end of a
                         run), after_claim (a claim that handed out work) [CRASHY_CRASH]
";

impl Args {
    /// Parse `argv` (without the program name), falling back to the environment.
    pub fn parse(argv: impl IntoIterator<Item = String>) -> anyhow::Result<Args> {
        let mut opts: Vec<(String, String)> = Vec::new();
        let mut it = argv.into_iter();
        while let Some(a) = it.next() {
            if a == "-h" || a == "--help" {
                print!("{USAGE}");
                std::process::exit(0);
            }
            let Some(name) = a.strip_prefix("--") else {
                bail!("unexpected argument `{a}`\n\n{USAGE}");
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let v = it
                        .next()
                        .with_context(|| format!("option --{name} needs a value"))?;
                    (name.to_string(), v)
                }
            };
            opts.push((name, value));
        }
        let get = |name: &str, env: &str| -> Option<String> {
            opts.iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(env).ok().filter(|s| !s.is_empty()))
        };
        const KNOWN: [&str; 13] = [
            "db",
            "llm-url",
            "start",
            "workflow",
            "concurrency",
            "exec-log",
            "commit-log",
            "sleep-ms",
            "step-delay-ms",
            "variant",
            "lease-ms",
            "crash",
            "help",
        ];
        if let Some((n, _)) = opts.iter().find(|(n, _)| !KNOWN.contains(&n.as_str())) {
            bail!("unknown option --{n}\n\n{USAGE}");
        }
        let num = |name: &str, env: &str, default: u64| -> anyhow::Result<u64> {
            match get(name, env) {
                Some(v) => v
                    .parse()
                    .with_context(|| format!("--{name} wants a number, not `{v}`")),
                None => Ok(default),
            }
        };
        let db = get("db", "CRASHY_DB").context("--db is required")?;
        let start = get("start", "CRASHY_START")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.split_once('=') {
                Some((id, topic)) => (id.to_string(), topic.to_string()),
                None => (s.to_string(), s.to_string()),
            })
            .collect::<Vec<_>>();
        if start.is_empty() {
            bail!("--start names no workflow\n\n{USAGE}");
        }
        let kind = match get("workflow", "CRASHY_WORKFLOW").as_deref() {
            None | Some("crash_pipeline") => Kind::Pipeline,
            Some("sleeper") => Kind::Sleeper,
            Some("approval") => Kind::Approval,
            Some(other) => bail!("unknown workflow `{other}`"),
        };
        let variant_alt = match get("variant", "CRASHY_VARIANT").as_deref() {
            None | Some("base") => false,
            Some("alt") => true,
            Some(other) => bail!("unknown variant `{other}` (base or alt)"),
        };
        let crash = get("crash", "CRASHY_CRASH")
            .map(|s| CrashPlan::parse(&s))
            .transpose()?;
        Ok(Args {
            db: PathBuf::from(db),
            llm_url: get("llm-url", "CRASHY_LLM_URL"),
            exec_log: get("exec-log", "CRASHY_EXEC_LOG").map(PathBuf::from),
            commit_log: get("commit-log", "CRASHY_COMMIT_LOG").map(PathBuf::from),
            start,
            kind,
            concurrency: num("concurrency", "CRASHY_CONCURRENCY", 8)?.max(1) as usize,
            sleep_ms: num("sleep-ms", "CRASHY_SLEEP_MS", 3000)?,
            step_delay: Duration::from_millis(num("step-delay-ms", "CRASHY_STEP_DELAY_MS", 0)?),
            variant_alt,
            lease: Duration::from_millis(num("lease-ms", "CRASHY_LEASE_MS", 5000)?.max(100)),
            crash,
        })
    }
}
