//! Placeholder: the in-memory store.

/// An in-memory store.
#[derive(Debug, Default)]
pub struct MemoryStore;
