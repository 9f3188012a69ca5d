//! The console tree: a live, indented view of Steadfast's spans with durations, tokens and cost.
//!
//! ```text
//! ▸ workflow research  id=wf-1
//!   ▸ invoke_agent planner  model=gpt-4.1
//!     ↺ step planner#1/model_request#1  replayed  14 µs
//!     • chat gpt-4.1  (step planner#1/model_request#2)  in 812 · out 35 tokens  $0.001904  1.21 s
//!     ▸ execute_tool search  (step planner#1/tool__search#1)
//!       ▸ invoke_agent searcher  model=gpt-4.1-mini
//!         • chat gpt-4.1-mini  (step planner#1/tool__search#1/searcher#1/model_request#1)  ...
//!       ✓ invoke_agent searcher  1 request · in 120 · out 40 tokens · $0.000112  0.8 s
//!     ✓ execute_tool search  0.8 s
//!   ✓ invoke_agent planner  3 requests · in 2400 · out 160 tokens · $0.006120  3.4 s
//! ✓ workflow research  completed · 2 replayed, 5 run · in 2520 · out 200 tokens · $0.006232  3.5 s
//! ```
//!
//! A span with children prints a `▸` line when its first child shows, and a `✓` (or `✗`) line
//! with its totals when it closes; a span without children prints one `•` line when it closes.
//! Steps never print a header of their own: what runs inside a step shows at the step's depth,
//! tagged with the step id; a step answered from the journal shows as `↺ … replayed` with its
//! (microsecond) replay time, and a step left unfinished (the workflow suspended, or the worker
//! stopped) as `… unfinished`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use steadfast_core::semconv::*;
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use crate::fields::Fields;

type Out = Arc<Mutex<Box<dyn Write + Send>>>;

/// A `tracing` layer that prints Steadfast's spans as a live, indented tree.
#[derive(Clone)]
pub struct ConsoleLayer {
    out: Out,
    durations: bool,
}

impl std::fmt::Debug for ConsoleLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleLayer")
            .field("durations", &self.durations)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Workflow,
    Agent,
    Chat,
    Tool,
    Step,
}

impl Kind {
    fn of(name: &str) -> Option<Kind> {
        Some(match name {
            SPAN_WORKFLOW => Kind::Workflow,
            SPAN_INVOKE_AGENT => Kind::Agent,
            SPAN_CHAT => Kind::Chat,
            SPAN_EXECUTE_TOOL => Kind::Tool,
            SPAN_STEP => Kind::Step,
            _ => return None,
        })
    }
}

/// What the layer keeps about one span.
struct Node {
    kind: Kind,
    fields: Fields,
    start: Instant,
    /// Indentation level.
    depth: usize,
    /// The id of the step this span runs in, when its display parent is a step.
    in_step: Option<String>,
    /// The `▸` line is out (a child showed).
    opened: bool,
    /// A shown span started inside this one.
    children: bool,
}

impl Node {
    fn label(&self) -> String {
        let f = &self.fields;
        match self.kind {
            Kind::Workflow => format!("workflow {}", f.str(STEADFAST_WORKFLOW_NAME).unwrap_or("?")),
            Kind::Agent => format!("invoke_agent {}", f.str(GEN_AI_AGENT_NAME).unwrap_or("?")),
            Kind::Chat => format!("chat {}", f.str(GEN_AI_REQUEST_MODEL).unwrap_or("?")),
            Kind::Tool => format!("execute_tool {}", f.str(GEN_AI_TOOL_NAME).unwrap_or("?")),
            Kind::Step => format!("step {}", f.str(STEADFAST_STEP_ID).unwrap_or("?")),
        }
    }

    fn in_step(&self) -> String {
        match &self.in_step {
            Some(id) => format!("  (step {id})"),
            None => String::new(),
        }
    }

    /// What the `▸` line says besides the label.
    fn opening(&self) -> String {
        let f = &self.fields;
        match self.kind {
            Kind::Workflow => format!("  id={}", f.str(STEADFAST_WORKFLOW_ID).unwrap_or("?")),
            Kind::Agent => format!("  model={}", f.str(GEN_AI_REQUEST_MODEL).unwrap_or("?")),
            _ => self.in_step(),
        }
    }

    fn error(&self) -> Option<String> {
        let f = &self.fields;
        if f.str(OTEL_STATUS_CODE) != Some("error") && f.get(ERROR_TYPE).is_none() {
            return None;
        }
        Some(format!("error: {}", f.str(ERROR_TYPE).unwrap_or("failed")))
    }

    /// Totals of a run or a workflow.
    fn totals(&self) -> Option<String> {
        let f = &self.fields;
        let requests = f.u64(STEADFAST_REQUESTS)?;
        let mut s = format!(
            "{requests} request{} · in {} · out {} tokens · {}",
            if requests == 1 { "" } else { "s" },
            f.u64(GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS).unwrap_or(0),
            f.u64(GEN_AI_AGGREGATED_USAGE_OUTPUT_TOKENS).unwrap_or(0),
            usd(f.f64(STEADFAST_COST_USD).unwrap_or(0.0)),
        );
        if let Some(n) = f.u64(STEADFAST_UNPRICED_REQUESTS) {
            s.push_str(&format!(" ({n} unpriced)"));
        }
        Some(s)
    }

    /// The `✓`/`✗` line of a span that had children, or the `•` line of one that had none.
    fn closing(&self, leaf: bool) -> (char, String) {
        let f = &self.fields;
        let mut parts: Vec<String> = Vec::new();
        let mut mark = if leaf { '•' } else { '✓' };
        match self.kind {
            Kind::Workflow => {
                parts.push(
                    f.str(STEADFAST_WORKFLOW_STATUS)
                        .unwrap_or("unfinished")
                        .to_string(),
                );
                if let (Some(r), Some(e)) = (
                    f.u64(STEADFAST_STEPS_REPLAYED),
                    f.u64(STEADFAST_STEPS_EXECUTED),
                ) {
                    parts.push(format!("{r} replayed, {e} run"));
                }
                parts.extend(self.totals());
            }
            Kind::Agent => parts.extend(self.totals()),
            Kind::Chat => {
                if let (Some(i), Some(o)) = (
                    f.u64(GEN_AI_USAGE_INPUT_TOKENS),
                    f.u64(GEN_AI_USAGE_OUTPUT_TOKENS),
                ) {
                    parts.push(format!("in {i} · out {o} tokens"));
                    parts.push(usd(f.f64(OPERATION_COST).unwrap_or(0.0)));
                } else if self.error().is_none() {
                    mark = '…';
                    parts.push("unfinished".into());
                }
            }
            Kind::Tool => {}
            Kind::Step => match f.bool(STEADFAST_REPLAYED) {
                Some(true) => {
                    mark = '↺';
                    parts.push("replayed".into());
                }
                Some(false) => {
                    if let Some(a) = f.u64(STEADFAST_STEP_ATTEMPT).filter(|a| *a > 1) {
                        parts.push(format!("attempt {a}"));
                    }
                }
                None => {
                    mark = '…';
                    parts.push("unfinished".into());
                }
            },
        }
        if let Some(e) = self.error() {
            mark = '✗';
            parts.push(e);
        }
        let head = if leaf && self.kind != Kind::Step {
            format!("{}{}", self.label(), self.in_step())
        } else {
            self.label()
        };
        let text = if parts.is_empty() {
            head
        } else {
            format!("{head}  {}", parts.join(" · "))
        };
        (mark, text)
    }
}

fn usd(c: f64) -> String {
    format!("${c:.6}")
}

/// A duration as people read it: `14 µs`, `3.2 ms`, `1.21 s`.
pub(crate) fn human(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

impl ConsoleLayer {
    /// Print to stderr.
    pub fn stderr() -> Self {
        Self::with_writer(std::io::stderr())
    }

    /// Print to `w` (a file, a buffer in tests).
    pub fn with_writer(w: impl Write + Send + 'static) -> Self {
        ConsoleLayer {
            out: Arc::new(Mutex::new(Box::new(w))),
            durations: true,
        }
    }

    /// Show durations (default), or leave them out so that the output of a fixed run is the
    /// same every time (snapshot tests).
    pub fn with_durations(mut self, on: bool) -> Self {
        self.durations = on;
        self
    }

    fn line(&self, depth: usize, mark: char, text: &str, took: Option<Duration>) {
        let mut s = String::with_capacity(text.len() + 2 * depth + 16);
        for _ in 0..depth {
            s.push_str("  ");
        }
        s.push(mark);
        s.push(' ');
        s.push_str(text);
        if let Some(d) = took.filter(|_| self.durations) {
            s.push_str("  ");
            s.push_str(&human(d));
        }
        s.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    }

    /// Print the `▸` lines of the ancestors that have not shown yet, outermost first.
    fn open_ancestors<S>(&self, span: &SpanRef<'_, S>)
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut pending = Vec::new();
        for ancestor in span.scope().skip(1) {
            let ext = ancestor.extensions();
            let Some(node) = ext.get::<Node>() else {
                continue;
            };
            if node.kind == Kind::Step {
                continue;
            }
            if node.opened {
                break;
            }
            pending.push(ancestor.id());
        }
        for id in pending.into_iter().rev() {
            let Some(a) = span.scope().find(|s| s.id() == id) else {
                continue;
            };
            let mut ext = a.extensions_mut();
            if let Some(node) = ext.get_mut::<Node>() {
                node.opened = true;
                let text = format!("{}{}", node.label(), node.opening());
                self.line(node.depth, '▸', &text, None);
            }
        }
    }
}

impl<S> Layer<S> for ConsoleLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        if meta.target() != TARGET {
            return;
        }
        let Some(kind) = Kind::of(meta.name()) else {
            return;
        };
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        // The nearest shown ancestor decides the depth; a step passes its depth on.
        let (mut depth, mut in_step) = (0, None);
        for ancestor in span.scope().skip(1) {
            let mut ext = ancestor.extensions_mut();
            let Some(p) = ext.get_mut::<Node>() else {
                continue;
            };
            p.children = true;
            if p.kind == Kind::Step {
                depth = p.depth;
                in_step = p.fields.str(STEADFAST_STEP_ID).map(str::to_string);
            } else {
                depth = p.depth + 1;
            }
            break;
        }
        span.extensions_mut().insert(Node {
            kind,
            fields,
            start: Instant::now(),
            depth,
            in_step,
            opened: false,
            children: false,
        });
        // A child is about to show: its ancestors show first.
        self.open_ancestors(&span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(node) = span.extensions_mut().get_mut::<Node>() {
            values.record(&mut node.fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(node) = span.extensions_mut().remove::<Node>() else {
            return;
        };
        let took = node.start.elapsed();
        // What ran inside a step showed in its place; only a step without any prints a line.
        if node.kind == Kind::Step && node.children {
            return;
        }
        let (mark, text) = node.closing(!node.opened);
        self.line(node.depth, mark, &text, Some(took));
    }
}
