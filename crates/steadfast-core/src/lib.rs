//! The sans-IO core of Steadfast.
//!
//! An [`Agent`] pairs a [`Model`] with instructions, typed [`Tool`]s and a typed output. Its loop
//! is a state machine ([`AgentRun`]) that never performs IO: it asks a [`Driver`] to call the
//! model and the tools. [`PlainDriver`] calls them directly; the durable engines journal each call
//! as a step. Agent code is the same either way.
//!
//! ```
//! use steadfast_core::{Agent, FunctionModel, ModelResponse};
//!
//! # tokio_test();
//! # fn tokio_test() { let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap(); rt.block_on(async {
//! let model = FunctionModel::new(|_messages, _params| Ok(ModelResponse::text("Hello, world!")));
//! let agent = Agent::<(), String>::builder("greeter")
//!     .model(model)
//!     .instructions("Be brief.")
//!     .build()
//!     .unwrap();
//! let result = agent.run("Say hello", ()).await.unwrap();
//! assert_eq!(result.output, "Hello, world!");
//! # }) }
//! ```

mod agent;
pub mod driver;
mod error;
mod events;
pub mod messages;
pub mod model;
mod output;
pub mod policy;
mod run;
pub mod schema;
pub mod semconv;
pub mod stream;
mod testing;
mod tool;
mod usage;
mod xml;

pub use agent::{Agent, AgentBuilder, ModelChoice, RunOptions, resolve_model, set_model_resolver};
pub use driver::{
    Driver, ModelCall, PlainDriver, Scope, SharedScope, ToolCall, default_scope, with_default_scope,
};
pub use error::{AgentError, ToolError};
pub use events::{AgentEvent, RunStream};
pub use messages::{
    FinishReason, Message, ModelRequest, ModelResponse, RequestPart, ResponsePart, ToolCallPart,
};
pub use model::{
    Model, ModelError, ModelProfile, ModelRef, ModelRequestParams, ModelResolver, ModelSettings,
    ModelStream, OutputMode, OutputSchema, StreamEvent, ToolDefinition,
};
pub use output::{OUTPUT_TOOL_NAME, OutputSpec};
pub use policy::{RetryPolicy, StepPolicy};
pub use run::{Action, AgentRun, RunResult};
pub use stream::ResponseAssembler;
pub use testing::{FunctionModel, TestModel, estimate_usage};
pub use tool::{CallInfo, Tool, ToolCtx, ToolExec, ToolOutcome, ToolResult};
pub use usage::{Usage, UsageLimits};
pub use xml::format_as_xml;
