//! An incremental newline-delimited JSON splitter (Ollama's stream format): lines may arrive
//! split anywhere, including inside a multi-byte UTF-8 character or between `\r` and `\n`.

use bytes::{Bytes, BytesMut};

pub use super::sse::TooLarge;

#[derive(Default)]
pub struct NdjsonParser {
    buf: BytesMut,
    scanned: usize,
    limit: usize,
}

impl NdjsonParser {
    pub fn new() -> Self {
        NdjsonParser { limit: 16 * 1024 * 1024, ..Default::default() }
    }

    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete, non-blank line (without its line ending).
    pub fn next_line(&mut self) -> Result<Option<Bytes>, TooLarge> {
        loop {
            let Some(p) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.limit {
                    return Err(TooLarge);
                }
                return Ok(None);
            };
            let end = self.scanned + p;
            let line = self.buf.split_to(end + 1).freeze();
            self.scanned = 0;
            let line = trim(line.slice(..end));
            if !line.is_empty() {
                return Ok(Some(line));
            }
        }
    }

    /// At the end of the stream: a last line that had no newline.
    pub fn finish(&mut self) -> Option<Bytes> {
        let line = trim(self.buf.split().freeze());
        (!line.is_empty()).then_some(line)
    }
}

fn trim(line: Bytes) -> Bytes {
    let start = line.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(line.len());
    let end = line.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    line.slice(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = "{\"a\":\"h\u{e9}\u{1F600}\"}\r\n\n{\"b\":2}\n  \n{\"c\":3}";

    fn expected() -> Vec<Bytes> {
        vec![Bytes::from("{\"a\":\"h\u{e9}\u{1F600}\"}"), Bytes::from("{\"b\":2}"), Bytes::from("{\"c\":3}")]
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let bytes = INPUT.as_bytes();
        for cut in 0..=bytes.len() {
            let mut p = NdjsonParser::new();
            let mut got = Vec::new();
            for part in [&bytes[..cut], &bytes[cut..]] {
                p.push(part);
                while let Some(l) = p.next_line().unwrap() {
                    got.push(l);
                }
            }
            got.extend(p.finish());
            assert_eq!(got, expected(), "split at {cut}");
        }
    }

    #[test]
    fn bounded() {
        let mut p = NdjsonParser::new().with_limit(8);
        p.push(b"0123456789");
        assert_eq!(p.next_line(), Err(TooLarge));
    }
}
