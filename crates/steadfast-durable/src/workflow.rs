//! The `Workflow` trait and its type-erased form for the worker's registry.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ctx::WorkflowCtx;
use crate::error::WorkflowError;

/// A durable workflow: plain async Rust whose effects all go through the [`WorkflowCtx`].
///
/// Workflow code must be deterministic: the same input and the same step results must lead to
/// the same steps in the same order. Read the clock, draw random numbers, sleep and wait for
/// messages only through the context (`ctx.now()`, `ctx.random()`, `ctx.uuid()`, `ctx.sleep()`,
/// `ctx.recv()`); do IO only inside steps (`ctx.step`, agent runs with `run_in`). Never call
/// `tokio::spawn`, `tokio::time::sleep` or the network directly from workflow code.
///
/// ```
/// use steadfast_durable::{Workflow, WorkflowCtx, WorkflowError, StepError};
///
/// struct Greet;
/// impl Workflow for Greet {
///     const NAME: &'static str = "greet";
///     type Input = String;
///     type Output = String;
///     async fn run(&self, ctx: &WorkflowCtx, name: String) -> Result<String, WorkflowError> {
///         // A step's body may run again (retries), and outlives this call: it owns its data.
///         let who = name.clone();
///         let greeting: String = ctx
///             .step("compose", &name, move |_| {
///                 let who = who.clone();
///                 async move { Ok::<_, StepError>(format!("Hello, {who}!")) }
///             })
///             .await?;
///         Ok(greeting)
///     }
/// }
/// ```
pub trait Workflow: Send + Sync + 'static {
    /// The registered name. Keep it stable: running workflows are found by it.
    const NAME: &'static str;
    /// The input.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The output.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Run the workflow.
    fn run(
        &self,
        ctx: &WorkflowCtx,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, WorkflowError>> + Send;
}

/// A workflow with its types erased to JSON.
pub(crate) trait ErasedWorkflow: Send + Sync {
    fn run(
        self: Arc<Self>,
        ctx: WorkflowCtx,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, WorkflowError>>;
}

pub(crate) struct Erased<W>(pub W);

impl<W: Workflow> ErasedWorkflow for Erased<W> {
    fn run(
        self: Arc<Self>,
        ctx: WorkflowCtx,
        input: Value,
    ) -> BoxFuture<'static, Result<Value, WorkflowError>> {
        Box::pin(async move {
            let input: W::Input = serde_json::from_value(input).map_err(|e| {
                WorkflowError::Serde(format!(
                    "the input of workflow `{}` does not decode: {e}",
                    W::NAME
                ))
            })?;
            let output = self.0.run(&ctx, input).await?;
            Ok(serde_json::to_value(output)?)
        })
    }
}
