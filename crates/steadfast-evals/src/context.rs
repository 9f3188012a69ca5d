//! What a task records while it runs (metrics, attributes, usage, a trace of its agent runs) and
//! what evaluators see afterwards ([`EvaluatorContext`]).
//!
//! Each case runs inside a task-local collector. The functions here ([`set_attribute`],
//! [`increment_metric`], [`record_usage`], [`record_run`], [`in_span`]) write to it and do
//! nothing outside an evaluation, so task code can call them unconditionally.
//!
//! **Usage and trace.** Every agent run inside the task is recorded with no code: each case runs
//! with the evaluation's [`scope()`] installed as the default scope
//! (`steadfast_core::with_default_scope`), so a plain `agent.run(..)` goes through it. Its driver
//! calls models and tools directly and records every model request (with its tokens and cost)
//! and every tool call, nested agent runs inside tools included. `agent.run_in(&scope(), ..)`
//! does the same explicitly. Runs made elsewhere (a durable workflow on a worker) can be
//! reported with [`record_run`] or [`record_usage`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use steadfast_core::{
    Agent, AgentError, Driver, Message, ModelCall, ModelResponse, PlainDriver, RequestPart,
    RunResult, Scope, ToolCall, ToolExec, ToolOutcome, ToolResult, Usage,
};

use crate::trace::{Span, SpanKind, Trace};

/// A monotonic clock. Evaluations read it to time tasks and spans; tests inject a
/// deterministic one ([`StepClock`]).
pub trait Clock: Send + Sync {
    /// Time since an arbitrary, fixed origin.
    fn now(&self) -> Duration;
}

/// The real clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that advances by a fixed step at every reading: durations become deterministic
/// (with one case at a time), for tests and snapshot tables.
#[derive(Debug, Default)]
pub struct StepClock {
    step: Duration,
    ticks: AtomicU64,
}

impl StepClock {
    /// A clock that moves `step` forward at each reading.
    pub fn new(step: Duration) -> Self {
        StepClock {
            step,
            ticks: AtomicU64::new(0),
        }
    }
}

impl Clock for StepClock {
    fn now(&self) -> Duration {
        let n = self.ticks.fetch_add(1, Ordering::SeqCst);
        self.step * (n as u32)
    }
}

/// Everything an evaluator knows about one run of one case.
#[derive(Debug, Clone)]
pub struct EvaluatorContext<I, O, M = ()> {
    /// The run's name: the case name, with ` [i/n]` when cases are repeated.
    pub name: String,
    /// The case's name.
    pub source_case_name: String,
    /// The case's inputs.
    pub inputs: I,
    /// The case's metadata.
    pub metadata: Option<M>,
    /// The case's expected output.
    pub expected_output: Option<O>,
    /// What the task returned.
    pub output: O,
    /// How long the task took (the successful attempt).
    pub duration: Duration,
    /// Metrics the task recorded ([`increment_metric`], [`set_metric`]).
    pub metrics: BTreeMap<String, f64>,
    /// Attributes the task recorded ([`set_attribute`]).
    pub attributes: BTreeMap<String, Value>,
    /// Tokens, requests, tool calls and cost of the agent runs inside the task.
    pub usage: Usage,
    /// The agent runs, model requests and tool calls inside the task.
    pub trace: Trace,
}

impl<I, O, M> EvaluatorContext<I, O, M> {
    /// A context with nothing recorded, to call evaluators directly (in tests, say).
    pub fn new(name: impl Into<String>, inputs: I, output: O) -> Self {
        let name = name.into();
        EvaluatorContext {
            source_case_name: name.clone(),
            name,
            inputs,
            metadata: None,
            expected_output: None,
            output,
            duration: Duration::ZERO,
            metrics: BTreeMap::new(),
            attributes: BTreeMap::new(),
            usage: Usage::default(),
            trace: Trace::default(),
        }
    }

    /// With an expected output.
    pub fn with_expected_output(mut self, expected: O) -> Self {
        self.expected_output = Some(expected);
        self
    }

    /// With metadata.
    pub fn with_metadata(mut self, metadata: M) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// With a task duration.
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// With a trace.
    pub fn with_trace(mut self, trace: Trace) -> Self {
        self.trace = trace;
        self
    }

    /// With usage.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// With a metric.
    pub fn with_metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(name.into(), value);
        self
    }
}

#[derive(Default)]
pub(crate) struct Recorded {
    pub metrics: BTreeMap<String, f64>,
    pub attributes: BTreeMap<String, Value>,
    pub usage: Usage,
    pub trace: Trace,
}

/// The per-run collector the task-local points at.
pub(crate) struct Collector {
    clock: Arc<dyn Clock>,
    origin: Duration,
    state: Mutex<Recorded>,
}

impl Collector {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        let origin = clock.now();
        Collector {
            clock,
            origin,
            state: Mutex::new(Recorded::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Recorded) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s)
    }

    fn elapsed(&self) -> f64 {
        self.clock.now().saturating_sub(self.origin).as_secs_f64()
    }

    fn start_span(
        &self,
        kind: SpanKind,
        name: String,
        parent: Option<usize>,
        attributes: BTreeMap<String, Value>,
    ) -> usize {
        let start = self.elapsed();
        self.with(|s| {
            let id = s.trace.spans.len();
            s.trace.spans.push(Span {
                id,
                parent,
                kind,
                name,
                start,
                duration: 0.0,
                attributes,
                error: None,
            });
            id
        })
    }

    fn end_span(&self, id: usize, error: Option<String>, attributes: BTreeMap<String, Value>) {
        let end = self.elapsed();
        self.with(|s| {
            let spans = &mut s.trace.spans;
            let Some(span) = spans.get_mut(id) else {
                return;
            };
            span.duration = (end - span.start).max(0.0);
            span.error = error;
            span.attributes.extend(attributes);
            // Spans that have no explicit end (agent runs) last until their last child ends.
            let mut parent = span.parent;
            let mut guard = 0;
            while let Some(p) = parent
                && guard < spans.len()
            {
                let Some(ps) = spans.get_mut(p) else { break };
                ps.duration = ps.duration.max(end - ps.start);
                parent = ps.parent;
                guard += 1;
            }
        })
    }

    pub(crate) fn take(&self) -> Recorded {
        self.with(std::mem::take)
    }
}

tokio::task_local! {
    static COLLECTOR: Arc<Collector>;
    static CURRENT_SPAN: Option<usize>;
}

pub(crate) async fn collect<F: Future>(collector: Arc<Collector>, fut: F) -> F::Output {
    // Plain `agent.run(..)` calls inside the task go through the evaluation's scope too, so
    // their usage and trace are recorded with no code in the task.
    let recorded = async move {
        let default: steadfast_core::SharedScope = Arc::new(scope());
        steadfast_core::with_default_scope(default, fut).await
    };
    COLLECTOR
        .scope(collector, CURRENT_SPAN.scope(None, recorded))
        .await
}

fn current() -> Option<Arc<Collector>> {
    COLLECTOR.try_with(Arc::clone).ok()
}

fn current_span() -> Option<usize> {
    CURRENT_SPAN.try_with(|s| *s).ok().flatten()
}

/// Whether the caller runs inside an evaluation's task.
pub fn in_eval() -> bool {
    current().is_some()
}

/// Record an attribute of the current run (shown in the JSON report, given to evaluators).
/// Does nothing outside an evaluation.
pub fn set_attribute(name: impl Into<String>, value: impl Serialize) {
    if let Some(c) = current() {
        let v = crate::json::to_json(&value);
        c.with(|s| s.attributes.insert(name.into(), v));
    }
}

/// Add `by` to a metric of the current run (a column of the report). Does nothing outside an
/// evaluation.
pub fn increment_metric(name: impl Into<String>, by: f64) {
    if let Some(c) = current() {
        c.with(|s| *s.metrics.entry(name.into()).or_default() += by);
    }
}

/// Set a metric of the current run. Does nothing outside an evaluation.
pub fn set_metric(name: impl Into<String>, value: f64) {
    if let Some(c) = current() {
        c.with(|s| s.metrics.insert(name.into(), value));
    }
}

/// Add usage to the current run: for runs that [`scope()`] does not see, such as a durable
/// workflow executed by a worker, whose output carries its usage. Does nothing outside an
/// evaluation.
pub fn record_usage(usage: &Usage) {
    if let Some(c) = current() {
        c.with(|s| s.usage += usage);
    }
}

/// Report a finished run that the evaluation did not see to the current case: its usage, and an
/// agent-run span with its model requests and tool calls (without timings). Plain runs
/// (`agent.run(..)`) and runs made with [`scope()`] are recorded already; use this for runs made
/// elsewhere, such as inside a durable workflow on a worker. Does nothing outside an evaluation.
pub fn record_run<D, O>(agent: &Agent<D, O>, result: &RunResult<O>)
where
    D: Send + Sync + 'static,
    O: DeserializeOwned + JsonSchema + Send + 'static,
{
    let Some(c) = current() else { return };
    c.with(|s| s.usage += &result.usage);
    let name = agent.name().to_string();
    let run = c.start_span(
        SpanKind::AgentRun,
        format!("agent__{name}"),
        current_span(),
        attrs([("agent", Value::String(name.clone()))]),
    );
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for m in result.new_messages() {
        match m {
            Message::Response(r) => {
                let id = c.start_span(
                    SpanKind::ModelRequest,
                    format!("agent__{name}__model_request"),
                    Some(run),
                    model_attrs(
                        &name,
                        r.model_name.as_deref().unwrap_or(""),
                        r.provider.as_deref(),
                    ),
                );
                c.end_span(id, None, usage_attrs(r));
                for call in r.tool_calls() {
                    let id = c.start_span(
                        SpanKind::ToolCall,
                        format!("agent__{name}__tool__{}", call.tool_name),
                        Some(run),
                        tool_attrs(&name, &call.tool_name, &call.args),
                    );
                    open.insert(call.tool_call_id.clone(), id);
                }
            }
            Message::Request(r) => {
                for p in &r.parts {
                    match p {
                        RequestPart::ToolReturn {
                            tool_call_id,
                            content,
                            ..
                        } => {
                            if let Some(id) = open.remove(tool_call_id) {
                                c.end_span(id, None, attrs([("result", content.clone())]));
                            }
                        }
                        RequestPart::RetryPrompt {
                            tool_call_id: Some(tool_call_id),
                            content,
                            ..
                        } => {
                            if let Some(id) = open.remove(tool_call_id) {
                                c.end_span(
                                    id,
                                    None,
                                    attrs([("retry", Value::String(content.clone()))]),
                                );
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    for (_, id) in open {
        c.end_span(id, None, BTreeMap::new());
    }
    c.end_span(run, None, BTreeMap::new());
}

/// Run `fut` inside a custom span named `name`; spans recorded inside it (agent runs made with a
/// [`scope()`] created inside it, nested custom spans) become its children.
pub async fn in_span<F: Future>(name: impl Into<String>, fut: F) -> F::Output {
    let Some(c) = current() else { return fut.await };
    let id = c.start_span(
        SpanKind::Custom,
        name.into(),
        current_span(),
        BTreeMap::new(),
    );
    let out = CURRENT_SPAN.scope(Some(id), fut).await;
    c.end_span(id, None, BTreeMap::new());
    out
}

/// Record an instant custom span with attributes (an event). Does nothing outside an evaluation.
pub fn record_span(name: impl Into<String>, attributes: BTreeMap<String, Value>) {
    if let Some(c) = current() {
        let id = c.start_span(SpanKind::Custom, name.into(), current_span(), attributes);
        c.end_span(id, None, BTreeMap::new());
    }
}

fn attrs<const N: usize>(items: [(&str, Value); N]) -> BTreeMap<String, Value> {
    items.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn model_attrs(agent: &str, model: &str, provider: Option<&str>) -> BTreeMap<String, Value> {
    let mut a = attrs([
        ("agent", Value::String(agent.to_string())),
        ("model", Value::String(model.to_string())),
    ]);
    if let Some(p) = provider {
        a.insert("provider".into(), Value::String(p.to_string()));
    }
    a
}

fn usage_attrs(r: &ModelResponse) -> BTreeMap<String, Value> {
    let mut a = attrs([
        ("input_tokens", Value::from(r.usage.input_tokens)),
        ("output_tokens", Value::from(r.usage.output_tokens)),
    ]);
    if r.usage.cost_usd > 0.0 {
        a.insert("cost_usd".into(), Value::from(r.usage.cost_usd));
    }
    a
}

fn tool_attrs(agent: &str, tool: &str, args: &str) -> BTreeMap<String, Value> {
    let args = serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_string()));
    attrs([
        ("agent", Value::String(agent.to_string())),
        ("tool", Value::String(tool.to_string())),
        ("args", args),
    ])
}

/// A [`Scope`] for agent runs inside an evaluation's task: `agent.run_in(&scope(), ..)` records
/// the run's usage and trace into the current case. Outside an evaluation it behaves like a plain
/// run. A scope made outside the task (once, and cloned into it) records each case's runs into
/// that case; one made inside a [`in_span`] nests its runs under that span.
pub fn scope() -> EvalScope {
    EvalScope::over(Arc::new(PlainDriver))
}

/// The scope [`scope()`] returns. [`EvalScope::over`] wraps another driver.
#[derive(Clone)]
pub struct EvalScope {
    driver: Arc<EvalDriver>,
}

impl EvalScope {
    /// Record the runs of `inner` (which still calls the models and tools).
    pub fn over(inner: Arc<dyn Driver>) -> Self {
        EvalScope {
            driver: Arc::new(EvalDriver {
                inner,
                collector: current(),
                parent: current_span(),
            }),
        }
    }
}

impl Scope for EvalScope {
    fn driver(&self) -> Arc<dyn Driver> {
        self.driver.clone()
    }

    /// Nothing to do: the driver already counted every request and tool call of the run.
    fn record_usage(&self, _usage: &Usage) {}
}

/// Calls `inner`, recording spans and usage into the collector.
struct EvalDriver {
    inner: Arc<dyn Driver>,
    collector: Option<Arc<Collector>>,
    parent: Option<usize>,
}

impl EvalDriver {
    /// The collector captured when the scope was made, else the current case's (a scope made
    /// outside the task still records the runs made inside it).
    fn collector(&self) -> Option<Arc<Collector>> {
        self.collector.clone().or_else(current)
    }
}

impl Driver for EvalDriver {
    fn child(&self, name: &str) -> Arc<dyn Driver> {
        let inner = self.inner.child(name);
        let collector = self.collector();
        let parent = collector.as_ref().map(|c| {
            c.start_span(
                SpanKind::AgentRun,
                format!("agent__{name}"),
                self.parent,
                attrs([("agent", Value::String(name.to_string()))]),
            )
        });
        Arc::new(EvalDriver {
            inner,
            collector,
            parent: parent.or(self.parent),
        })
    }

    fn model_request<'a>(
        &'a self,
        call: ModelCall<'a>,
    ) -> BoxFuture<'a, Result<ModelResponse, AgentError>> {
        let Some(c) = self.collector() else {
            return self.inner.model_request(call);
        };
        let id = c.start_span(
            SpanKind::ModelRequest,
            format!("agent__{}__model_request", call.agent),
            self.parent,
            model_attrs(call.agent, call.model.name(), Some(call.model.provider())),
        );
        let fut = self.inner.model_request(call);
        Box::pin(async move {
            let result = fut.await;
            match &result {
                Ok(r) => {
                    let mut u = r.usage.clone();
                    u.requests = u.requests.max(1);
                    c.with(|s| s.usage += &u);
                    c.end_span(id, None, usage_attrs(r));
                }
                Err(e) => c.end_span(id, Some(e.to_string()), BTreeMap::new()),
            }
            result
        })
    }

    fn tool_call<'a>(
        &'a self,
        call: ToolCall<'a>,
    ) -> BoxFuture<'a, Result<ToolOutcome, AgentError>> {
        let Some(c) = self.collector() else {
            return self.inner.tool_call(call);
        };
        let id = c.start_span(
            SpanKind::ToolCall,
            format!("agent__{}__tool__{}", call.agent, call.call.tool_name),
            self.parent,
            tool_attrs(call.agent, &call.call.tool_name, &call.call.args),
        );
        let attempts = Arc::new(AtomicU32::new(0));
        let exec = call.exec.clone();
        let (cc, n) = (c.clone(), attempts.clone());
        // Nested agent runs inside the tool get a recording driver whose parent is this span.
        let wrapped: ToolExec = Arc::new(move |driver, key| {
            n.fetch_add(1, Ordering::SeqCst);
            let driver: Arc<dyn Driver> = Arc::new(EvalDriver {
                inner: driver,
                collector: Some(cc.clone()),
                parent: Some(id),
            });
            exec(driver, key)
        });
        let fut = self.inner.tool_call(ToolCall {
            agent: call.agent,
            call: call.call,
            policy: call.policy,
            exec: wrapped,
        });
        Box::pin(async move {
            let result = fut.await;
            let mut extra = BTreeMap::new();
            let tries = attempts.load(Ordering::SeqCst);
            if tries > 1 {
                extra.insert("attempts".to_string(), Value::from(tries));
            }
            match &result {
                Ok(outcome) => {
                    c.with(|s| s.usage.tool_calls += 1);
                    match &outcome.result {
                        ToolResult::Return(v) => extra.insert("result".into(), v.clone()),
                        ToolResult::Retry(m) => {
                            extra.insert("retry".into(), Value::String(m.clone()))
                        }
                    };
                    c.end_span(id, None, extra);
                }
                Err(e) => c.end_span(id, Some(e.to_string()), extra),
            }
            result
        })
    }
}
