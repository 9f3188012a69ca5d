//! A [`Store`] wrapper that times every call: how often each method ran, how long it took in
//! total, and when its last call started and ended. It shows where a durable run spends its
//! time, and brackets a resume from its `load_journal` to its `finish`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use steadfast_durable::{
    AttemptRecord, Claim, Created, LeaseState, ListFilter, MailMessage, Millis, NewWorkflow,
    Outcome, StepRecord, Store, StoreError, StoreFuture, WorkflowRecord, WorkflowStatus,
    WorkflowSummary,
};

/// Figures of one store method.
#[derive(Debug, Clone, Copy, Default)]
pub struct MethodStats {
    /// Calls.
    pub calls: u64,
    /// Total time awaited, over all calls.
    pub total: Duration,
    /// When the last call started.
    pub last_start: Option<Instant>,
    /// When the last call ended.
    pub last_end: Option<Instant>,
}

/// The figures of a [`TimedStore`], shared with whoever reads them.
#[derive(Debug, Default)]
pub struct StoreProbe {
    methods: Mutex<HashMap<&'static str, MethodStats>>,
    samples: Mutex<HashMap<&'static str, Vec<f64>>>,
}

impl StoreProbe {
    fn record(&self, method: &'static str, start: Instant, end: Instant) {
        let mut m = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        let s = m.entry(method).or_default();
        s.calls += 1;
        s.total += end - start;
        s.last_start = Some(start);
        s.last_end = Some(end);
        drop(m);
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples
            .entry(method)
            .or_default()
            .push((end - start).as_secs_f64() * 1e6);
    }

    /// Every call's duration of `method`, µs, since the last reset.
    pub fn samples(&self, method: &str) -> Vec<f64> {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        s.get(method).cloned().unwrap_or_default()
    }

    /// The figures of `method` (`commit_step`, `load_journal`, ...).
    pub fn get(&self, method: &str) -> MethodStats {
        let m = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        m.get(method).copied().unwrap_or_default()
    }

    /// Forget everything.
    pub fn reset(&self) {
        self.methods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// A store that times the calls to `inner`.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    probe: Arc<StoreProbe>,
}

impl TimedStore {
    /// Wrap `inner`.
    pub fn new(inner: impl Store) -> Self {
        TimedStore {
            inner: Arc::new(inner),
            probe: Arc::new(StoreProbe::default()),
        }
    }

    /// The figures.
    pub fn probe(&self) -> Arc<StoreProbe> {
        self.probe.clone()
    }

    fn timed<'a, T: 'a>(
        &'a self,
        method: &'static str,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'a,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            let start = Instant::now();
            let r = fut.await;
            self.probe.record(method, start, Instant::now());
            r
        })
    }
}

impl Store for TimedStore {
    fn create_workflow(&self, new: NewWorkflow) -> StoreFuture<'_, Created> {
        self.timed("create_workflow", self.inner.create_workflow(new))
    }

    fn start_claimed<'a>(
        &'a self,
        new: NewWorkflow,
        owner: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, (Created, Option<Claim>)> {
        self.timed("start_claimed", self.inner.start_claimed(new, owner, lease))
    }

    fn get_workflow<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<WorkflowRecord>> {
        self.timed("get_workflow", self.inner.get_workflow(id))
    }

    fn list_workflows(&self, filter: ListFilter) -> StoreFuture<'_, Vec<WorkflowSummary>> {
        self.timed("list_workflows", self.inner.list_workflows(filter))
    }

    fn claim<'a>(
        &'a self,
        owner: &'a str,
        names: &'a [String],
        limit: usize,
        lease: Duration,
        dead_owners: &'a [String],
    ) -> StoreFuture<'a, Vec<Claim>> {
        let fut = self.inner.claim(owner, names, limit, lease, dead_owners);
        self.timed("claim", fut)
    }

    fn running_owners(&self) -> StoreFuture<'_, Vec<String>> {
        self.timed("running_owners", self.inner.running_owners())
    }

    fn renew<'a>(
        &'a self,
        owner: &'a str,
        ids: &'a [String],
        lease: Duration,
    ) -> StoreFuture<'a, Vec<LeaseState>> {
        self.timed("renew", self.inner.renew(owner, ids, lease))
    }

    fn load_journal<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<StepRecord>> {
        self.timed("load_journal", self.inner.load_journal(id))
    }

    fn commit_step<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        step: StepRecord,
        consume: Option<i64>,
    ) -> StoreFuture<'a, ()> {
        self.timed(
            "commit_step",
            self.inner.commit_step(id, owner, step, consume),
        )
    }

    fn record_attempt<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        attempt: AttemptRecord,
    ) -> StoreFuture<'a, ()> {
        self.timed(
            "record_attempt",
            self.inner.record_attempt(id, owner, attempt),
        )
    }

    fn load_attempts<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<AttemptRecord>> {
        self.timed("load_attempts", self.inner.load_attempts(id))
    }

    fn finish<'a>(&'a self, id: &'a str, owner: &'a str, outcome: Outcome) -> StoreFuture<'a, ()> {
        self.timed("finish", self.inner.finish(id, owner, outcome))
    }

    fn send<'a>(&'a self, id: &'a str, topic: &'a str, payload: Value) -> StoreFuture<'a, i64> {
        self.timed("send", self.inner.send(id, topic, payload))
    }

    fn next_message<'a>(
        &'a self,
        id: &'a str,
        topic: &'a str,
    ) -> StoreFuture<'a, Option<MailMessage>> {
        self.timed("next_message", self.inner.next_message(id, topic))
    }

    fn request_cancel<'a>(&'a self, id: &'a str) -> StoreFuture<'a, WorkflowStatus> {
        self.timed("request_cancel", self.inner.request_cancel(id))
    }

    fn next_wake<'a>(&'a self, names: &'a [String]) -> StoreFuture<'a, Option<Millis>> {
        self.timed("next_wake", self.inner.next_wake(names))
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        self.timed("flush", self.inner.flush())
    }
}
