//! An incremental Server-Sent Events parser (the WHATWG event-stream format).
//!
//! Bytes arrive in arbitrary pieces: an event, a line, a CRLF pair or a multi-byte UTF-8
//! character may be split across reads. The parser buffers bytes, never decodes text until an
//! event is complete, and accepts LF, CRLF and CR line endings and `data:` with or without a space.

use bytes::{Bytes, BytesMut};

/// `data: {data}\n\n`: one SSE event carrying `data` (one line: JSON has no raw newlines).
pub fn data_event(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: Bytes,
}

#[derive(Default)]
pub struct SseParser {
    buf: BytesMut,
    /// Bytes of `buf` already scanned for a line end.
    scanned: usize,
    data: Option<Bytes>,
    multi: Option<Vec<u8>>,
    event: Option<String>,
    /// Longest event accepted, to bound memory.
    limit: usize,
}

/// An event grew past the parser's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge;

impl SseParser {
    pub fn new() -> Self {
        SseParser { limit: 16 * 1024 * 1024, ..Default::default() }
    }

    /// Sets the largest event (in bytes) accepted.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the buffered bytes hold one.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, TooLarge> {
        loop {
            let Some((line_len, term_len)) = self.find_line() else {
                if self.buf.len() + self.pending_len() > self.limit {
                    return Err(TooLarge);
                }
                return Ok(None);
            };
            if let Some(value_at) = self.lone_data_line(line_len, term_len) {
                // The usual event, `data: …\n\n` (or `\r\n\r\n`) with nothing pending: taken
                // in one split.
                let data = self.buf.split_to(line_len + 2 * term_len).freeze().slice(value_at..line_len);
                self.scanned = 0;
                return Ok(Some(SseEvent { event: None, data }));
            }
            let line = self.buf.split_to(line_len + term_len).freeze().slice(..line_len);
            self.scanned = 0;
            if line.is_empty() {
                if let Some(ev) = self.dispatch() {
                    return Ok(Some(ev));
                }
                continue;
            }
            self.field(line)?;
        }
    }

    /// Where the value starts when the first line (`line_len` bytes and an LF or a CRLF) is a
    /// `data:` line followed by the blank line that ends the event (the same line end again),
    /// with no field of the event before it: then the event is that value, as [`Self::field`]
    /// and [`Self::dispatch`] would make it.
    fn lone_data_line(&self, line_len: usize, term_len: usize) -> Option<usize> {
        let b = &self.buf[..];
        let end: &[u8] = if term_len == 1 { b"\n\n" } else { b"\r\n\r\n" };
        if b[line_len..].get(..end.len()) != Some(end) || line_len > self.limit {
            return None;
        }
        if self.data.is_some() || self.multi.is_some() || self.event.is_some() || !b.starts_with(b"data:") {
            return None;
        }
        Some(if b[5] == b' ' { 6 } else { 5 })
    }

    /// At the end of the stream: the last event if it lacked its closing blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buf.is_empty() {
            let line = self.buf.split().freeze();
            let line = match line.last() {
                Some(b'\r') => line.slice(..line.len() - 1),
                _ => line,
            };
            if !line.is_empty() {
                let _ = self.field(line);
            }
        }
        self.dispatch()
    }

    fn pending_len(&self) -> usize {
        self.data.as_ref().map_or(0, Bytes::len) + self.multi.as_ref().map_or(0, Vec::len)
    }

    /// (line length, terminator length) of the first complete line.
    fn find_line(&mut self) -> Option<(usize, usize)> {
        let bytes = &self.buf[..];
        let from = self.scanned;
        match memchr::memchr2(b'\n', b'\r', &bytes[from..]) {
            None => {
                self.scanned = bytes.len();
                None
            }
            Some(p) => {
                let at = from + p;
                if bytes[at] == b'\n' {
                    Some((at, 1))
                } else if at + 1 < bytes.len() {
                    Some((at, if bytes[at + 1] == b'\n' { 2 } else { 1 }))
                } else {
                    // A CR at the end of the buffer: wait to see whether LF follows.
                    self.scanned = at;
                    None
                }
            }
        }
    }

    fn field(&mut self, line: Bytes) -> Result<(), TooLarge> {
        if line[0] == b':' {
            return Ok(()); // a comment, e.g. a keep-alive
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = if line.get(c + 1) == Some(&b' ') { c + 2 } else { c + 1 };
                (line.slice(..c), line.slice(v..))
            }
            None => (line.clone(), Bytes::new()),
        };
        match &name[..] {
            b"data" => {
                if self.pending_len() + value.len() > self.limit {
                    return Err(TooLarge);
                }
                if let Some(multi) = &mut self.multi {
                    multi.push(b'\n');
                    multi.extend_from_slice(&value);
                } else if let Some(first) = self.data.take() {
                    let mut multi = Vec::with_capacity(first.len() + 1 + value.len());
                    multi.extend_from_slice(&first);
                    multi.push(b'\n');
                    multi.extend_from_slice(&value);
                    self.multi = Some(multi);
                } else {
                    self.data = Some(value);
                }
            }
            b"event" => self.event = Some(String::from_utf8_lossy(&value).into_owned()),
            _ => {} // id, retry and unknown fields are not used by LLM providers
        }
        Ok(())
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let data = match (self.multi.take(), self.data.take()) {
            (Some(m), _) => Bytes::from(m),
            (None, Some(d)) => d,
            (None, None) => {
                // An event with no data is not dispatched (but its name is reset).
                self.event = None;
                return None;
            }
        };
        Some(SseEvent { event: self.event.take(), data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut SseParser) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = p.next_event().unwrap() {
            out.push(e);
        }
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent { event: event.map(str::to_owned), data: Bytes::copy_from_slice(data.as_bytes()) }
    }

    const STREAM: &str = "data: {\"a\":\"h\u{e9}llo \u{1F600}\"}\n\n: keep-alive\n\nevent: error\ndata:{\"b\":1}\r\n\r\ndata: line1\rdata: line2\r\rdata:tight\n\ndata: a\ndata: b\n\nevent: e\ndata: y\n\ndata: \n\ndata: crlf\r\n\r\ndata: mixed\r\n\ndata: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            ev(None, "{\"a\":\"h\u{e9}llo \u{1F600}\"}"),
            ev(Some("error"), "{\"b\":1}"),
            ev(None, "line1\nline2"),
            ev(None, "tight"),
            ev(None, "a\nb"),
            ev(Some("e"), "y"),
            ev(None, ""),
            ev(None, "crlf"),
            ev(None, "mixed"),
            ev(None, "[DONE]"),
        ]
    }

    #[test]
    fn parses_a_whole_stream() {
        let mut p = SseParser::new();
        p.push(STREAM.as_bytes());
        assert_eq!(all(&mut p), expected());
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            let mut p = SseParser::new();
            p.push(&bytes[..cut]);
            let mut got = all(&mut p);
            p.push(&bytes[cut..]);
            got.extend(all(&mut p));
            assert_eq!(got, expected(), "split at {cut}");
        }
    }

    #[test]
    fn byte_by_byte() {
        let mut p = SseParser::new();
        let mut got = Vec::new();
        for b in STREAM.as_bytes() {
            p.push(&[*b]);
            got.extend(all(&mut p));
        }
        assert_eq!(got, expected());
    }

    #[test]
    fn last_event_without_blank_line_is_flushed_at_end() {
        let mut p = SseParser::new();
        p.push(b"data: tail\r");
        assert!(all(&mut p).is_empty());
        assert_eq!(p.finish(), Some(ev(None, "tail")));
    }

    #[test]
    fn bounded() {
        let mut p = SseParser::new().with_limit(16);
        p.push(&[b'x'; 64]);
        assert_eq!(p.next_event(), Err(TooLarge));
    }
}
