//! Benchmarks of Steadfast, shared by the `steadfast-bench` binary and `cargo bench`.
//!
//! Each section measures something and a baseline in the same run, and reports both with their
//! ratio: [`overhead`] (the agent loop per model round trip), [`commit`] (one durable step),
//! [`parallel`] (group commit), [`replay`], [`idle`] (memory), [`scripted`] (a durable game with
//! scripted models), and [`mockllm`] with [`resume`] (the side-by-side workload against
//! `mockllm.py`).

pub mod commit;
pub mod game;
pub mod idle;
pub mod mock;
pub mod mockllm;
pub mod overhead;
pub mod parallel;
pub mod replay;
pub mod report;
pub mod resume;
pub mod scripted;
pub mod stats;
#[cfg(feature = "temporal")]
pub mod temporal;
pub mod timed_store;
