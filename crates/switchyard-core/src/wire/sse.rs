//! An incremental Server-Sent Events parser (the WHATWG event-stream format).
//!
//! Bytes arrive in arbitrary pieces: an event, a line, a CRLF pair or a multi-byte UTF-8
//! character may be split across reads. The parser buffers bytes, never decodes text until an
//! event is complete, and accepts LF, CRLF and CR line endings and `data:` with or without a space.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// `data: {data}\n\n`: one SSE event carrying `data` (one line: JSON has no raw newlines).
pub fn data_event(data: &[u8]) -> Bytes {
    use super::chunk::{EVENT_END, EVENT_START};
    let mut out = BytesMut::with_capacity(EVENT_START.len() + data.len() + EVENT_END.len());
    out.extend_from_slice(EVENT_START);
    out.extend_from_slice(data);
    out.extend_from_slice(EVENT_END);
    out.freeze()
}

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any (its bytes: every name a provider sends is ASCII).
    pub event: Option<Bytes>,
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
    event: Option<Bytes>,
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
            if let Some((name, value, len)) = self.one_cut(line_len, term_len) {
                let whole = self.buf.split_to(len).freeze();
                self.scanned = 0;
                return Ok(Some(SseEvent { event: name.map(|n| whole.slice(n)), data: whole.slice(value) }));
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

    /// The usual events, taken from the buffer in one cut when they are complete and nothing
    /// of an event is pending: a `data:` line, or an `event:` line and a `data:` line, then the
    /// blank line, every line ended alike by LF or by CRLF (`line_len` and `term_len`: the first
    /// line). Returns where the name and the value are and the event's length; the event is
    /// what [`Self::field`] and [`Self::dispatch`] would make of it line by line.
    fn one_cut(&self, line_len: usize, term_len: usize) -> Option<(Option<Range<usize>>, Range<usize>, usize)> {
        if self.data.is_some() || self.multi.is_some() || self.event.is_some() {
            return None;
        }
        let b = &self.buf[..];
        // A line that ends at `at` and the blank line after it, both ended like the first line.
        let ended_twice = |at: usize| match term_len {
            1 => b.get(at..at + 2) == Some(b"\n\n".as_slice()),
            _ => b.get(at..at + 4) == Some(b"\r\n\r\n".as_slice()),
        };
        if b.starts_with(b"data:") {
            if !ended_twice(line_len) || line_len > self.limit {
                return None;
            }
            let value = if b[5] == b' ' { 6 } else { 5 };
            return Some((None, value..line_len, line_len + 2 * term_len));
        }
        if !b.starts_with(b"event:") || (term_len == 1 && b[line_len] != b'\n') {
            return None;
        }
        let at = line_len + term_len;
        let line = &b[at..];
        if !line.starts_with(b"data:") {
            return None;
        }
        let len = memchr::memchr2(b'\n', b'\r', line)?;
        if !ended_twice(at + len) || len > self.limit {
            return None;
        }
        let name = if b[6] == b' ' { 7 } else { 6 }..line_len;
        let value = at + if line[5] == b' ' { 6 } else { 5 };
        Some((Some(name), value..at + len, at + len + 2 * term_len))
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
            b"event" => self.event = Some(value),
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
        SseEvent { event: event.map(|e| Bytes::copy_from_slice(e.as_bytes())), data: Bytes::copy_from_slice(data.as_bytes()) }
    }

    const STREAM: &str = "data: {\"a\":\"h\u{e9}llo \u{1F600}\"}\n\n: keep-alive\n\nevent: error\ndata:{\"b\":1}\r\n\r\ndata: line1\rdata: line2\r\rdata:tight\n\ndata: a\ndata: b\n\nevent: e\ndata: y\n\ndata: \n\ndata: crlf\r\n\r\ndata: mixed\r\n\nevent: n1\ndata: one\n\nevent:n2\r\ndata:two\r\n\r\nevent: n3\ndata: x\ndata: y\n\nevent:\ndata: z\n\ndata: [DONE]\n\n";

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
            ev(Some("n1"), "one"),
            ev(Some("n2"), "two"),
            ev(Some("n3"), "x\ny"),
            ev(Some(""), "z"),
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
