//! An incremental parser for server-sent events (the `text/event-stream` format).
//!
//! Bytes go in as they arrive, in chunks of any size; complete events come out. Lines may end in
//! `\n`, `\r\n` or `\r`; events end at a blank line. It never panics, whatever the input.

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if present.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Feeds bytes, yields events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
    has_data: bool,
    /// The previous chunk ended in `\r`, so a leading `\n` belongs to that line ending.
    skip_lf: bool,
}

impl SseParser {
    /// A new parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed a chunk; returns the events it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        if self.skip_lf && chunk.first() == Some(&b'\n') {
            start = 1;
            i = 1;
        }
        self.skip_lf = false;
        while i < chunk.len() {
            let b = chunk[i];
            if b == b'\n' || b == b'\r' {
                self.buf.extend_from_slice(&chunk[start..i]);
                let line = std::mem::take(&mut self.buf);
                self.line(&line, &mut out);
                if b == b'\r' {
                    if i + 1 < chunk.len() {
                        if chunk[i + 1] == b'\n' {
                            i += 1;
                        }
                    } else {
                        self.skip_lf = true;
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        self.buf.extend_from_slice(&chunk[start.min(chunk.len())..]);
        out
    }

    /// The end of the stream: a last event without its blank line is still delivered.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.line(&line, &mut out);
        }
        self.dispatch(&mut out);
        out.pop()
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent {
                event: self.event.take(),
                data: self.data.join("\n"),
            });
        }
        self.event = None;
        self.data.clear();
        self.has_data = false;
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // a comment
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(p) => {
                let v = &text[p + 1..];
                (&text[..p], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                self.data.push(value.to_string());
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_across_chunk_boundaries_and_line_endings() {
        let input = b"event: a\r\ndata: {\"x\":1}\r\n\r\ndata: two\ndata: lines\n\n: comment\ndata: [DONE]\r\r";
        for split in 0..input.len() {
            let mut p = SseParser::new();
            let mut evs = p.feed(&input[..split]);
            evs.extend(p.feed(&input[split..]));
            evs.extend(p.finish());
            assert_eq!(evs.len(), 3, "split at {split}: {evs:?}");
            assert_eq!(evs[0].event.as_deref(), Some("a"));
            assert_eq!(evs[0].data, "{\"x\":1}");
            assert_eq!(evs[1].data, "two\nlines");
            assert_eq!(evs[2].data, "[DONE]");
        }
    }

    #[test]
    fn last_event_without_blank_line_is_delivered() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: tail").is_empty());
        assert_eq!(p.finish().map(|e| e.data), Some("tail".to_string()));
    }
}
