//! The trace of one task run: the agent runs, model requests and tool calls it made, as a tree
//! of spans, and [`SpanQuery`] to look for spans in it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// An agent run (attribute `agent`).
    AgentRun,
    /// A model request (attributes `agent`, `model`, `provider`, `input_tokens`, `output_tokens`).
    ModelRequest,
    /// A tool call (attributes `agent`, `tool`, `args`, and `result` or `retry`).
    ToolCall,
    /// A span the task recorded itself ([`crate::in_span`], [`crate::record_span`]).
    Custom,
}

/// One span of a [`Trace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Its index in the trace.
    pub id: usize,
    /// The enclosing span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<usize>,
    /// What it stands for.
    pub kind: SpanKind,
    /// Its name: `agent__{agent}` for agent runs, `agent__{agent}__model_request` and
    /// `agent__{agent}__tool__{tool}` for steps (the step names of the durable engine), the given
    /// name for custom spans.
    pub name: String,
    /// Seconds from the start of the task to the start of the span.
    pub start: f64,
    /// Seconds the span lasted.
    pub duration: f64,
    /// Facts about it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Value>,
    /// The error it ended with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Span {
    /// An attribute as a string, if it is one.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }
}

/// The spans of one task run, in the order they started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The spans; a span's `id` is its index here.
    pub spans: Vec<Span>,
}

impl Trace {
    /// Whether the trace has no span.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The span with this id.
    pub fn get(&self, id: usize) -> Option<&Span> {
        self.spans.get(id)
    }

    /// The spans directly under `id`.
    pub fn children(&self, id: usize) -> impl Iterator<Item = &Span> {
        self.spans.iter().filter(move |s| s.parent == Some(id))
    }

    /// The spans anywhere under `id`.
    pub fn descendants(&self, id: usize) -> Vec<&Span> {
        let mut out = Vec::new();
        let mut stack = vec![id];
        while let Some(p) = stack.pop() {
            for c in self.children(p) {
                out.push(c);
                stack.push(c.id);
            }
        }
        out
    }

    /// The spans above `id`, nearest first.
    pub fn ancestors(&self, id: usize) -> Vec<&Span> {
        let mut out = Vec::new();
        let mut cur = self.get(id).and_then(|s| s.parent);
        while let Some(p) = cur {
            match self.get(p) {
                Some(s) if !out.iter().any(|o: &&Span| o.id == s.id) => {
                    out.push(s);
                    cur = s.parent;
                }
                _ => break,
            }
        }
        out
    }

    /// How many spans are above `id` (a root span has depth 0).
    pub fn depth(&self, id: usize) -> usize {
        self.ancestors(id).len()
    }

    /// The spans of one kind.
    pub fn of_kind(&self, kind: SpanKind) -> impl Iterator<Item = &Span> {
        self.spans.iter().filter(move |s| s.kind == kind)
    }

    /// The calls of tool `name`.
    pub fn tool_calls(&self, name: &str) -> impl Iterator<Item = &Span> {
        self.of_kind(SpanKind::ToolCall)
            .filter(move |s| s.attr_str("tool") == Some(name))
    }

    /// The spans that match `query`.
    pub fn find<'a>(&'a self, query: &'a SpanQuery) -> impl Iterator<Item = &'a Span> + 'a {
        self.spans.iter().filter(move |s| query.matches(self, s))
    }

    /// Whether some span matches `query`.
    pub fn any(&self, query: &SpanQuery) -> bool {
        self.find(query).next().is_some()
    }
}

/// A predicate on spans, for [`crate::HasMatchingSpan`] and [`Trace::find`]. Every condition
/// that is set must hold.
///
/// ```
/// use steadfast_evals::{SpanKind, SpanQuery};
/// // A call of `ask_question` made inside the `questioner` agent's run.
/// let q = SpanQuery::tool("ask_question")
///     .with_ancestor(SpanQuery::agent_run("questioner"));
/// # let _ = q;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SpanQuery {
    /// The name is exactly this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_equals: Option<String>,
    /// The name contains this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_contains: Option<String>,
    /// The span is of this kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<SpanKind>,
    /// These attributes have these values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub has_attributes: BTreeMap<String, Value>,
    /// These attributes are present.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub has_attribute_keys: Vec<String>,
    /// It lasted at least this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_duration: Option<f64>,
    /// It lasted at most this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<f64>,
    /// It ended with an error (`true`) or without one (`false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_error: Option<bool>,
    /// At least this many spans are above it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_depth: Option<usize>,
    /// At most this many spans are above it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<usize>,
    /// This query does not match it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_: Option<Box<SpanQuery>>,
    /// All of these match it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub and_: Vec<SpanQuery>,
    /// At least one of these matches it (when not empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub or_: Vec<SpanQuery>,
    /// One of its children matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub some_child_has: Option<Box<SpanQuery>>,
    /// All of its children match (true when it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_children_have: Option<Box<SpanQuery>>,
    /// None of its children matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_child_has: Option<Box<SpanQuery>>,
    /// Some span under it matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub some_descendant_has: Option<Box<SpanQuery>>,
    /// No span under it matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_descendant_has: Option<Box<SpanQuery>>,
    /// Some span above it matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub some_ancestor_has: Option<Box<SpanQuery>>,
    /// No span above it matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_ancestor_has: Option<Box<SpanQuery>>,
}

impl SpanQuery {
    /// Spans named exactly `name`.
    pub fn name(name: impl Into<String>) -> Self {
        SpanQuery {
            name_equals: Some(name.into()),
            ..Default::default()
        }
    }

    /// Spans of kind `kind`.
    pub fn kind(kind: SpanKind) -> Self {
        SpanQuery {
            kind: Some(kind),
            ..Default::default()
        }
    }

    /// Calls of the tool `tool`.
    pub fn tool(tool: impl Into<String>) -> Self {
        Self::kind(SpanKind::ToolCall).with_attribute("tool", Value::String(tool.into()))
    }

    /// Runs of the agent `agent`.
    pub fn agent_run(agent: impl Into<String>) -> Self {
        Self::kind(SpanKind::AgentRun).with_attribute("agent", Value::String(agent.into()))
    }

    /// Model requests (of any agent).
    pub fn model_request() -> Self {
        Self::kind(SpanKind::ModelRequest)
    }

    /// Also require attribute `key` to equal `value`.
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.has_attributes.insert(key.into(), value.into());
        self
    }

    /// Also require some span above to match `q`.
    pub fn with_ancestor(mut self, q: SpanQuery) -> Self {
        self.some_ancestor_has = Some(Box::new(q));
        self
    }

    /// Also require some span under it to match `q`.
    pub fn with_descendant(mut self, q: SpanQuery) -> Self {
        self.some_descendant_has = Some(Box::new(q));
        self
    }

    /// Also require the span to have (or not have) ended with an error.
    pub fn with_error(mut self, error: bool) -> Self {
        self.has_error = Some(error);
        self
    }

    /// Whether `span` of `trace` matches.
    pub fn matches(&self, trace: &Trace, span: &Span) -> bool {
        if let Some(n) = &self.name_equals
            && span.name != *n
        {
            return false;
        }
        if let Some(n) = &self.name_contains
            && !span.name.contains(n.as_str())
        {
            return false;
        }
        if let Some(k) = self.kind
            && span.kind != k
        {
            return false;
        }
        for (k, v) in &self.has_attributes {
            match span.attributes.get(k) {
                Some(actual) if crate::json::json_eq(actual, v) => {}
                _ => return false,
            }
        }
        if self
            .has_attribute_keys
            .iter()
            .any(|k| !span.attributes.contains_key(k))
        {
            return false;
        }
        if self.min_duration.is_some_and(|d| span.duration < d)
            || self.max_duration.is_some_and(|d| span.duration > d)
        {
            return false;
        }
        if self.has_error.is_some_and(|e| e != span.error.is_some()) {
            return false;
        }
        if self.min_depth.is_some() || self.max_depth.is_some() {
            let depth = trace.depth(span.id);
            if self.min_depth.is_some_and(|d| depth < d)
                || self.max_depth.is_some_and(|d| depth > d)
            {
                return false;
            }
        }
        if self.not_.as_ref().is_some_and(|q| q.matches(trace, span)) {
            return false;
        }
        if !self.and_.iter().all(|q| q.matches(trace, span)) {
            return false;
        }
        if !self.or_.is_empty() && !self.or_.iter().any(|q| q.matches(trace, span)) {
            return false;
        }
        let children = || trace.children(span.id);
        if let Some(q) = &self.some_child_has
            && !children().any(|c| q.matches(trace, c))
        {
            return false;
        }
        if let Some(q) = &self.all_children_have
            && !children().all(|c| q.matches(trace, c))
        {
            return false;
        }
        if let Some(q) = &self.no_child_has
            && children().any(|c| q.matches(trace, c))
        {
            return false;
        }
        if self.some_descendant_has.is_some() || self.no_descendant_has.is_some() {
            let descendants = trace.descendants(span.id);
            if let Some(q) = &self.some_descendant_has
                && !descendants.iter().any(|d| q.matches(trace, d))
            {
                return false;
            }
            if let Some(q) = &self.no_descendant_has
                && descendants.iter().any(|d| q.matches(trace, d))
            {
                return false;
            }
        }
        if self.some_ancestor_has.is_some() || self.no_ancestor_has.is_some() {
            let ancestors = trace.ancestors(span.id);
            if let Some(q) = &self.some_ancestor_has
                && !ancestors.iter().any(|a| q.matches(trace, a))
            {
                return false;
            }
            if let Some(q) = &self.no_ancestor_has
                && ancestors.iter().any(|a| q.matches(trace, a))
            {
                return false;
            }
        }
        true
    }
}
