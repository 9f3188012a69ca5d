//! Deep research, durable: a plan agent turns a question into a structured plan, up to five
//! search agents run in parallel, and an analysis agent writes the report, searching more if it
//! must. Under durability a kill during the analysis resumes with the plan and every search
//! answered from the journal; only the analysis runs again.
//!
//! - [`plan`]: the plan agent's typed output, its schema limits and their validator.
//! - [`search`]: the search backends (Tavily over HTTP, BM25 over the bundled corpus).
//! - [`research`]: the agents, the pipeline (one code path, plain or durable), the workflow.
//! - [`offline`]: scripted models that play the three roles from what they are sent.
//! - [`corpus`], [`bm25`]: the bundled documents and their ranking.

pub mod bm25;
pub mod corpus;
pub mod offline;
pub mod plan;
pub mod research;
pub mod search;
