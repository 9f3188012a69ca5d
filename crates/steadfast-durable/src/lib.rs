//! Durable execution for Steadfast.
//!
//! A [`Workflow`] is plain async Rust. Inside it, every model request and tool call of an agent
//! run with [`steadfast_core::Agent::run_in`], and every [`WorkflowCtx::step`], is a journaled
//! step. If the process dies, the workflow resumes by its id: finished steps are answered from the
//! journal, and only unfinished work runs again.
//!
//! The guarantees, in order of importance:
//! - **Write-ahead.** A step's result is committed to the [`Store`] before the workflow sees it.
//!   A step runs at least once; a completed step never runs again.
//! - **Deterministic step ids.** Ids follow program order, never completion order. Agent runs and
//!   [`WorkflowCtx::branch`]es take their own namespace when they are created.
//! - **Replay checks.** Each journal entry records its kind, name and input hash; replay that meets
//!   a different step fails with [`WorkflowError::NonDeterminism`], leaving the history intact.
//! - **Suspension is dropping the future.** Long sleeps and waits for messages or children leave
//!   memory; timers and mailboxes are rows in the store.
//! - **Deps live in the worker** ([`WorkerBuilder::deps`]); they are never serialized.
//!
//! Workflow code must be deterministic. Use `ctx.now()`, `ctx.random()`, `ctx.uuid()`,
//! `ctx.sleep()` and `ctx.recv()` instead of the clock, random numbers, timers and channels.

mod agents;
mod ctx;
mod deps;
mod ends;
mod engine;
mod error;
mod events;
mod hashing;
mod json;
pub mod memory;
mod owner;
mod poll_again;
pub mod remote;
pub mod store;
#[cfg(feature = "test-kit")]
pub mod testkit;
mod worker;
mod workflow;

pub use ctx::{StepCtx, WorkflowCtx};
pub use deps::Deps;
pub use engine::{Engine, History, WorkflowHandle};
pub use error::{StepError, WorkflowError};
pub use events::{Observer, StepEvent, StepEventKind};
pub use json::Json;
pub use memory::MemoryStore;
pub use remote::{RemoteCall, RemoteEngine, RemoteOp, RemoteStep, StepBody, WorkflowSet};
pub use store::*;
pub use worker::{Worker, WorkerBuilder, WorkerConfig};
pub use workflow::Workflow;
