//! The fields of a span, as the console and metrics layers keep them.

use std::fmt;

use tracing::field::{Field, Visit};

/// One recorded value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// The recorded fields of one span, by name (a handful each, so a vector).
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields(Vec<(&'static str, Val)>);

impl Fields {
    fn set(&mut self, name: &'static str, v: Val) {
        use steadfast_core::semconv::*;
        // Content is for exporters only: the console and the metrics never show it.
        if matches!(
            name,
            GEN_AI_INPUT_MESSAGES
                | GEN_AI_OUTPUT_MESSAGES
                | GEN_AI_SYSTEM_INSTRUCTIONS
                | GEN_AI_TOOL_CALL_ARGUMENTS
                | GEN_AI_TOOL_CALL_RESULT
        ) {
            return;
        }
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = v,
            None => self.0.push((name, v)),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Val> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    pub(crate) fn str(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn u64(&self, name: &str) -> Option<u64> {
        match self.get(name)? {
            Val::U64(n) => Some(*n),
            Val::I64(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    pub(crate) fn f64(&self, name: &str) -> Option<f64> {
        match self.get(name)? {
            Val::F64(n) => Some(*n),
            Val::U64(n) => Some(*n as f64),
            Val::I64(n) => Some(*n as f64),
            _ => None,
        }
    }

    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            Val::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Val::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Val::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Val::U64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Val::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Val::Str(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), Val::Str(format!("{value:?}")));
    }
}
