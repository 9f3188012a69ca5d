//! # Steadfast: durable AI agents in Rust
//!
//! Write an agent as plain async Rust: a model, instructions, typed tools and a typed output.
//! Run it plainly, or inside a [`Workflow`] where every model request and tool call is a
//! journaled step, so a killed process resumes by workflow id without redoing finished work.
//!
//! ```no_run
//! use steadfast::prelude::*;
//!
//! # async fn demo() -> anyhow::Result<()> {
//! steadfast::install_providers();
//! let agent = Agent::<(), String>::builder("assistant")
//!     .model("openai:gpt-4.1-mini")
//!     .instructions("Answer in one sentence.")
//!     .build()?;
//! let result = agent.run("What is durable execution?", ()).await?;
//! println!("{} (${:.5})", result.output, result.usage.cost_usd);
//! # Ok(()) }
//! ```
//!
//! Features: `models` (default: all providers), `durable`, `sqlite` (default: the embedded
//! engine), `otel` (OpenTelemetry export and the console span tree).

pub use steadfast_core::*;

/// Model providers.
#[cfg(feature = "models")]
pub use steadfast_models as models;
#[cfg(feature = "models")]
pub use steadfast_models::{
    AnthropicModel, ClientConfig, GeminiModel, OpenAIChatModel, OpenAIResponsesModel,
};

/// Install the standard resolver so agents accept `"provider:model"` strings. Idempotent.
#[cfg(feature = "models")]
pub fn install_providers() {
    steadfast_models::install();
}

/// The durable engine.
#[cfg(feature = "durable")]
pub use steadfast_durable as durable;
#[cfg(feature = "durable")]
pub use steadfast_durable::{
    Engine, History, MemoryStore, StepCtx, StepError, StepEvent, StepEventKind, StepKind, Store,
    Worker, WorkerBuilder, WorkerConfig, Workflow, WorkflowCtx, WorkflowError, WorkflowHandle,
    WorkflowStatus,
};

/// The embedded SQLite store.
#[cfg(feature = "sqlite")]
pub use steadfast_sqlite::{Durability, SqliteOptions, SqliteStore};

/// Open (or create) a SQLite database file and return an engine over it.
#[cfg(feature = "sqlite")]
pub fn sqlite_engine(
    path: impl AsRef<std::path::Path>,
) -> Result<Engine, steadfast_durable::StoreError> {
    Ok(Engine::new(SqliteStore::open(path.as_ref())?))
}

/// Observability: `steadfast::otel::init()` sets up OTLP export from the standard `OTEL_*`
/// variables and, with `STEADFAST_CONSOLE=1`, the console span tree.
#[cfg(feature = "otel")]
pub use steadfast_otel as otel;

/// The Temporal engine: the same workflows and agents on a Temporal cluster (feature
/// `temporal`). See [`steadfast_temporal`].
#[cfg(feature = "temporal")]
pub use steadfast_temporal as temporal;

/// The common imports.
pub mod prelude {
    pub use steadfast_core::{
        Agent, AgentError, Message, ModelResponse, OutputMode, RetryPolicy, RunResult, StepPolicy,
        Tool, ToolCtx, ToolError, Usage, UsageLimits,
    };
    #[cfg(feature = "durable")]
    pub use steadfast_durable::{Engine, StepError, Workflow, WorkflowCtx, WorkflowError};
}
