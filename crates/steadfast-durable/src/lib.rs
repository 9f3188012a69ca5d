//! Durable execution for Steadfast.

pub mod memory;
pub mod store;
#[cfg(feature = "test-kit")]
pub mod testkit;

pub use memory::MemoryStore;
pub use store::*;
