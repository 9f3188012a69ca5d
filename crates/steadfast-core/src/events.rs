//! Live events of a streamed run.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::channel::mpsc::UnboundedReceiver;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};

use crate::error::AgentError;
use crate::messages::ToolCallPart;
use crate::model::StreamEvent;
use crate::run::RunResult;
use crate::tool::ToolResult;

/// Something that happened during a streamed run.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// A delta of the model's response (text, reasoning, tool-call arguments).
    Model(StreamEvent),
    /// A tool is about to be called.
    ToolCall(ToolCallPart),
    /// A tool returned.
    ToolResult {
        /// The call.
        call: ToolCallPart,
        /// What it returned.
        result: ToolResult,
    },
}

pub(crate) type AgentSink = Arc<dyn Fn(AgentEvent) + Send + Sync>;

/// A streamed run: a [`Stream`] of [`AgentEvent`]s; then [`RunStream::output`] gives the result.
pub struct RunStream<O> {
    run: Option<BoxFuture<'static, Result<RunResult<O>, AgentError>>>,
    result: Option<Result<RunResult<O>, AgentError>>,
    events: UnboundedReceiver<AgentEvent>,
}

impl<O> RunStream<O> {
    pub(crate) fn new(
        run: BoxFuture<'static, Result<RunResult<O>, AgentError>>,
        events: UnboundedReceiver<AgentEvent>,
    ) -> Self {
        RunStream {
            run: Some(run),
            result: None,
            events,
        }
    }

    /// Drain the remaining events and return the run's result.
    pub async fn output(mut self) -> Result<RunResult<O>, AgentError> {
        while self.next().await.is_some() {}
        self.result.take().unwrap_or_else(|| {
            Err(AgentError::Config(
                "the streamed run ended without a result".into(),
            ))
        })
    }

    /// Collect the text deltas into a stream of strings, then return the result.
    pub async fn text_deltas(
        mut self,
        mut on_delta: impl FnMut(&str),
    ) -> Result<RunResult<O>, AgentError> {
        while let Some(ev) = self.next().await {
            if let AgentEvent::Model(StreamEvent::TextDelta { delta, .. }) = &ev {
                on_delta(delta);
            }
        }
        self.output().await
    }
}

// The output is never pinned in place: it is moved out whole once the run ends.
impl<O> Unpin for RunStream<O> {}

impl<O> Stream for RunStream<O> {
    type Item = AgentEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AgentEvent>> {
        let this = &mut *self;
        if let Some(run) = &mut this.run
            && let Poll::Ready(r) = run.poll_unpin(cx)
        {
            this.result = Some(r);
            // Dropping the run drops the sender, so the receiver ends after the last event.
            this.run = None;
        }
        match this.events.poll_next_unpin(cx) {
            Poll::Ready(Some(e)) => Poll::Ready(Some(e)),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.run.is_none() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
