//! The ends of workflows that a worker of this process ran, handed to the handles of this
//! process that wait for them, so that a handle learns a local run's result without reading it
//! back from the store (a round trip to a database server, with PostgreSQL).
//!
//! An end is kept only for a workflow that a handle waits for, and only until that handle
//! takes it or stops waiting: a worker that nobody waits on keeps nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::store::WorkflowStatus;

/// How a workflow ended: its status and its output (or error).
pub(crate) type End = (WorkflowStatus, Value);

#[derive(Default)]
struct Waits {
    /// Handles waiting, per workflow.
    waiters: HashMap<String, usize>,
    /// Ends that a waiting handle has not taken yet.
    ends: HashMap<String, End>,
}

/// The ends of local runs that handles wait for. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct LocalEnds(Arc<Mutex<Waits>>);

impl LocalEnds {
    fn lock(&self) -> MutexGuard<'_, Waits> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle waits for workflow `id` until the returned guard is dropped.
    pub(crate) fn wait<'a>(&'a self, id: &'a str) -> Waiting<'a> {
        *self.lock().waiters.entry(id.to_owned()).or_default() += 1;
        Waiting { ends: self, id }
    }

    /// Whether a handle waits for workflow `id`.
    pub(crate) fn awaited(&self, id: &str) -> bool {
        self.lock().waiters.contains_key(id)
    }

    /// A local run of workflow `id` ended for good, as the store has recorded: kept if a
    /// handle waits for it.
    pub(crate) fn ended(&self, id: &str, end: End) {
        let mut w = self.lock();
        if w.waiters.contains_key(id) {
            w.ends.insert(id.to_owned(), end);
        }
    }
}

/// A handle's wait for one workflow's end.
pub(crate) struct Waiting<'a> {
    ends: &'a LocalEnds,
    id: &'a str,
}

impl Waiting<'_> {
    /// The end, if a local run has reported it.
    pub(crate) fn take(&self) -> Option<End> {
        self.ends.lock().ends.remove(self.id)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut w = self.ends.lock();
        if let Some(n) = w.waiters.get_mut(self.id) {
            *n -= 1;
            if *n == 0 {
                w.waiters.remove(self.id);
                w.ends.remove(self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_is_kept_only_while_a_handle_waits_for_it() {
        let ends = LocalEnds::default();
        let end = || (WorkflowStatus::Completed, Value::from(1));
        ends.ended("a", end());
        let a = ends.wait("a");
        assert_eq!(a.take(), None, "nobody waited when `a` ended");

        let b = ends.wait("b");
        let b2 = ends.wait("b");
        assert!(ends.awaited("b"));
        ends.ended("b", end());
        assert_eq!(b.take(), Some(end()));
        assert_eq!(b2.take(), None, "taken by the first");
        drop((b, b2));

        let c = ends.wait("c");
        ends.ended("c", end());
        drop(c);
        assert!(!ends.awaited("c"));
        drop(a);
        let w = ends.lock();
        assert!(w.waiters.is_empty() && w.ends.is_empty(), "nothing left");
    }
}
