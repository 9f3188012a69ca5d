//! Deterministic crash points: a [`Store`] that delegates every call to the real store and
//! aborts the process right before, or right after, the N-th `commit_step` of this process (or
//! the N-th `finish`, or right after the N-th `claim` that handed out work). It also appends one
//! line per committed step to the commit log, so the tests can see progress.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use steadfast::durable::{
    AttemptRecord, Claim, Created, LeaseState, ListFilter, MailMessage, Millis, NewWorkflow,
    Outcome, StepRecord, Store, StoreFuture, WorkflowRecord, WorkflowStatus, WorkflowSummary,
};

use crate::execlog::LineLog;

/// Before or after the store call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Right before the call reaches the store.
    Before,
    /// Right after the call has returned from the store.
    After,
}

/// The store call a crash point counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `commit_step` (a journal entry).
    Commit,
    /// `finish` (the end of a run: completed, failed or suspended).
    Finish,
    /// `claim`, counting only the calls that handed out at least one workflow (so only
    /// `after_claim` makes sense).
    Claim,
}

/// When to abort: `{before|after}_{commit|finish|claim}:N`, N counted from 1 in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPlan {
    /// Before or after.
    pub when: When,
    /// Which call.
    pub op: Op,
    /// The N-th such call.
    pub n: u64,
}

impl CrashPlan {
    /// Parse `before_commit:N`, `after_commit:N`, `before_finish:N`, `after_finish:N` or
    /// `after_claim:N` (N ≥ 1).
    pub fn parse(s: &str) -> anyhow::Result<CrashPlan> {
        let (point, n) = s
            .split_once(':')
            .with_context(|| format!("crash plan `{s}` is not WHEN_OP:N"))?;
        let n: u64 = n
            .parse()
            .with_context(|| format!("crash plan `{s}`: `{n}` is not a number"))?;
        if n == 0 {
            bail!("crash plan `{s}`: N counts from 1");
        }
        let (when, op) = match point {
            "before_commit" => (When::Before, Op::Commit),
            "after_commit" => (When::After, Op::Commit),
            "before_finish" => (When::Before, Op::Finish),
            "after_finish" => (When::After, Op::Finish),
            "after_claim" => (When::After, Op::Claim),
            other => bail!(
                "crash plan `{s}`: `{other}` is not one of before_commit, after_commit, \
                 before_finish, after_finish, after_claim"
            ),
        };
        Ok(CrashPlan { when, op, n })
    }
}

/// A store wrapper with a crash point and a commit log.
pub struct FailpointStore<S> {
    inner: S,
    plan: Option<CrashPlan>,
    commits: AtomicU64,
    finishes: AtomicU64,
    claims: AtomicU64,
    commit_log: LineLog,
}

impl<S: Store> FailpointStore<S> {
    /// Wrap `inner`.
    pub fn new(inner: S, plan: Option<CrashPlan>, commit_log: LineLog) -> Self {
        FailpointStore {
            inner,
            plan,
            commits: AtomicU64::new(0),
            finishes: AtomicU64::new(0),
            claims: AtomicU64::new(0),
            commit_log,
        }
    }

    /// Abort if the plan names this point.
    fn check(&self, when: When, op: Op, n: u64) {
        if self.plan == Some(CrashPlan { when, op, n }) {
            eprintln!(
                "crashy[{}]: failpoint {when:?} {op:?} #{n} reached, aborting",
                std::process::id()
            );
            std::process::abort();
        }
    }
}

impl<S: Store> Store for FailpointStore<S> {
    fn create_workflow(&self, new: NewWorkflow) -> StoreFuture<'_, Created> {
        self.inner.create_workflow(new)
    }

    fn start_claimed<'a>(
        &'a self,
        new: NewWorkflow,
        owner: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, (Created, Option<Claim>)> {
        self.inner.start_claimed(new, owner, lease)
    }

    fn get_workflow<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<WorkflowRecord>> {
        self.inner.get_workflow(id)
    }

    fn list_workflows(&self, filter: ListFilter) -> StoreFuture<'_, Vec<WorkflowSummary>> {
        self.inner.list_workflows(filter)
    }

    fn claim<'a>(
        &'a self,
        owner: &'a str,
        names: &'a [String],
        limit: usize,
        lease: Duration,
        dead_owners: &'a [String],
    ) -> StoreFuture<'a, Vec<Claim>> {
        Box::pin(async move {
            let claims = self
                .inner
                .claim(owner, names, limit, lease, dead_owners)
                .await?;
            if !claims.is_empty() {
                let n = self.claims.fetch_add(1, Ordering::SeqCst) + 1;
                self.check(When::After, Op::Claim, n);
            }
            Ok(claims)
        })
    }

    fn running_owners(&self) -> StoreFuture<'_, Vec<String>> {
        self.inner.running_owners()
    }

    fn renew<'a>(
        &'a self,
        owner: &'a str,
        ids: &'a [String],
        lease: Duration,
    ) -> StoreFuture<'a, Vec<LeaseState>> {
        self.inner.renew(owner, ids, lease)
    }

    fn load_journal<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<StepRecord>> {
        self.inner.load_journal(id)
    }

    fn commit_step<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        step: StepRecord,
        consume: Option<i64>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
            self.check(When::Before, Op::Commit, n);
            let line = format!(
                "{} {id}/{} {}\n",
                std::process::id(),
                step.step_id,
                step.kind.as_str()
            );
            self.inner.commit_step(id, owner, step, consume).await?;
            self.commit_log.append(&line);
            self.check(When::After, Op::Commit, n);
            Ok(())
        })
    }

    fn record_attempt<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        attempt: AttemptRecord,
    ) -> StoreFuture<'a, ()> {
        self.inner.record_attempt(id, owner, attempt)
    }

    fn load_attempts<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<AttemptRecord>> {
        self.inner.load_attempts(id)
    }

    fn finish<'a>(&'a self, id: &'a str, owner: &'a str, outcome: Outcome) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let n = self.finishes.fetch_add(1, Ordering::SeqCst) + 1;
            self.check(When::Before, Op::Finish, n);
            self.inner.finish(id, owner, outcome).await?;
            self.check(When::After, Op::Finish, n);
            Ok(())
        })
    }

    fn send<'a>(
        &'a self,
        id: &'a str,
        topic: &'a str,
        payload: serde_json::Value,
    ) -> StoreFuture<'a, i64> {
        self.inner.send(id, topic, payload)
    }

    fn next_message<'a>(
        &'a self,
        id: &'a str,
        topic: &'a str,
    ) -> StoreFuture<'a, Option<MailMessage>> {
        self.inner.next_message(id, topic)
    }

    fn request_cancel<'a>(&'a self, id: &'a str) -> StoreFuture<'a, WorkflowStatus> {
        self.inner.request_cancel(id)
    }

    fn next_wake<'a>(&'a self, names: &'a [String]) -> StoreFuture<'a, Option<Millis>> {
        self.inner.next_wake(names)
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_plans_parse() {
        let plan = |when, op, n| CrashPlan { when, op, n };
        assert_eq!(
            CrashPlan::parse("before_commit:3").unwrap(),
            plan(When::Before, Op::Commit, 3)
        );
        assert_eq!(
            CrashPlan::parse("after_commit:12").unwrap(),
            plan(When::After, Op::Commit, 12)
        );
        assert_eq!(
            CrashPlan::parse("before_finish:1").unwrap(),
            plan(When::Before, Op::Finish, 1)
        );
        assert_eq!(
            CrashPlan::parse("after_claim:2").unwrap(),
            plan(When::After, Op::Claim, 2)
        );
        assert!(CrashPlan::parse("after_commit:0").is_err());
        assert!(CrashPlan::parse("during_commit:1").is_err());
        assert!(CrashPlan::parse("before_claim:1").is_err());
        assert!(CrashPlan::parse("before_commit").is_err());
    }
}
