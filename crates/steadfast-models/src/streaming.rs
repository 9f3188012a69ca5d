//! Adapting a provider's SSE events to the core's [`ModelStream`].

use futures::{Stream, StreamExt};
use steadfast_core::{ModelError, ModelResponse, ModelStream, StreamEvent};

use crate::sse::SseEvent;

/// A provider's stream decoder: SSE events in, core stream events out.
///
/// Decoders are plain state machines with no IO, so tests and fuzzers drive them directly.
pub trait StreamDecoder: Send + 'static {
    /// Handle one SSE event.
    fn on_event(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ModelError>;

    /// Whether the provider has signalled the end (a `[DONE]`, a final event).
    fn is_done(&self) -> bool;

    /// The assembled response, once the stream has ended.
    fn finish(self: Box<Self>) -> Result<ModelResponse, ModelError>;
}

/// Drive `decoder` over `events`, yielding its stream events and finally [`StreamEvent::Done`].
pub fn decode_stream<S>(events: S, decoder: Box<dyn StreamDecoder>) -> ModelStream
where
    S: Stream<Item = Result<SseEvent, ModelError>> + Send + 'static,
{
    let state = (
        Box::pin(events),
        Some(decoder),
        std::collections::VecDeque::new(),
    );
    let stream =
        futures::stream::unfold(state, |(mut events, mut decoder, mut queue)| async move {
            loop {
                if let Some(ev) = queue.pop_front() {
                    return Some((Ok(ev), (events, decoder, queue)));
                }
                let dec = decoder.as_mut()?;
                let next = if dec.is_done() {
                    None
                } else {
                    events.next().await
                };
                match next {
                    Some(Ok(sse)) => match dec.on_event(&sse) {
                        Ok(evs) => queue.extend(evs),
                        Err(e) => {
                            decoder = None;
                            return Some((Err(e), (events, decoder, queue)));
                        }
                    },
                    Some(Err(e)) => {
                        decoder = None;
                        return Some((Err(e), (events, decoder, queue)));
                    }
                    None => {
                        let dec = decoder.take()?;
                        let item = dec.finish().map(StreamEvent::Done);
                        return Some((item, (events, decoder, queue)));
                    }
                }
            }
        });
    Box::pin(stream)
}

/// Run a decoder over a complete SSE body, for tests and fuzzing: all events, then the response.
pub fn decode_body(
    body: &[u8],
    mut decoder: Box<dyn StreamDecoder>,
) -> Result<(Vec<StreamEvent>, ModelResponse), ModelError> {
    let mut parser = crate::sse::SseParser::new();
    let mut events: Vec<SseEvent> = parser.feed(body);
    events.extend(parser.finish());
    let mut out = Vec::new();
    for ev in &events {
        if decoder.is_done() {
            break;
        }
        out.extend(decoder.on_event(ev)?);
    }
    let response = decoder.finish()?;
    Ok((out, response))
}
