//! An incremental decoder for the AWS event-stream binary framing
//! (`application/vnd.amazon.eventstream`), which Bedrock's ConverseStream answers in.
//!
//! A message is: a 12-byte prelude (total length, headers length, both big-endian u32, then the
//! CRC32 of those 8 bytes), the headers, the payload, and the CRC32 of everything before it.
//! A header is a 1-byte name length, the name, a 1-byte value type and the value (types 0-9:
//! true, false, byte, short, int, long, bytes, string, timestamp, uuid). Bytes arrive in
//! arbitrary pieces; a frame is decoded once it is complete, and a bad CRC or a malformed length
//! is an error (the stream cannot be resynchronised after one).

use bytes::{Buf, Bytes, BytesMut};

/// Prelude (12) + message CRC (4).
const MIN_FRAME: usize = 16;
/// Largest frame accepted: AWS allows 16 MiB of payload plus 128 KiB of headers.
pub const MAX_FRAME: usize = 16 * 1024 * 1024 + 128 * 1024 + MIN_FRAME;

/// A header value. Only strings matter to Bedrock's events; the other types are decoded so the
/// headers after them can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Int(i64),
    Bytes(Bytes),
    String(String),
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Bytes,
}

impl Frame {
    /// A string header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| match v {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Why the byte stream is not valid event-stream framing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    PreludeCrc,
    MessageCrc,
    /// A length field out of range.
    Length(usize),
    /// A header that does not parse.
    Header(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::PreludeCrc => f.write_str("event-stream prelude CRC mismatch"),
            FrameError::MessageCrc => f.write_str("event-stream message CRC mismatch"),
            FrameError::Length(n) => write!(f, "event-stream frame length {n} out of range"),
            FrameError::Header(m) => write!(f, "bad event-stream header: {m}"),
        }
    }
}

#[derive(Default)]
pub struct EventStreamDecoder {
    buf: BytesMut,
}

impl EventStreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes of an incomplete frame are buffered (the stream ended mid-frame if it ends now).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete frame, if the buffered bytes hold one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < 12 {
            return Ok(None);
        }
        let total = u32::from_be_bytes(self.buf[0..4].try_into().expect("4 bytes")) as usize;
        let headers_len = u32::from_be_bytes(self.buf[4..8].try_into().expect("4 bytes")) as usize;
        let prelude_crc = u32::from_be_bytes(self.buf[8..12].try_into().expect("4 bytes"));
        if crc32fast::hash(&self.buf[0..8]) != prelude_crc {
            return Err(FrameError::PreludeCrc);
        }
        if !(MIN_FRAME..=MAX_FRAME).contains(&total) || headers_len > total - MIN_FRAME {
            return Err(FrameError::Length(total));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let frame = self.buf.split_to(total).freeze();
        let message_crc = u32::from_be_bytes(frame[total - 4..].try_into().expect("4 bytes"));
        if crc32fast::hash(&frame[..total - 4]) != message_crc {
            return Err(FrameError::MessageCrc);
        }
        let headers = parse_headers(frame.slice(12..12 + headers_len))?;
        let payload = frame.slice(12 + headers_len..total - 4);
        Ok(Some(Frame { headers, payload }))
    }
}

fn parse_headers(mut b: Bytes) -> Result<Vec<(String, HeaderValue)>, FrameError> {
    let mut out = Vec::new();
    let need = |b: &Bytes, n: usize| if b.remaining() < n { Err(FrameError::Header("truncated")) } else { Ok(()) };
    while b.has_remaining() {
        let name_len = b.get_u8() as usize;
        need(&b, name_len + 1)?;
        let name = String::from_utf8(b.split_to(name_len).to_vec()).map_err(|_| FrameError::Header("name is not UTF-8"))?;
        let value = match b.get_u8() {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => {
                need(&b, 1)?;
                HeaderValue::Int(b.get_i8().into())
            }
            3 => {
                need(&b, 2)?;
                HeaderValue::Int(b.get_i16().into())
            }
            4 => {
                need(&b, 4)?;
                HeaderValue::Int(b.get_i32().into())
            }
            5 => {
                need(&b, 8)?;
                HeaderValue::Int(b.get_i64())
            }
            t @ (6 | 7) => {
                need(&b, 2)?;
                let len = b.get_u16() as usize;
                need(&b, len)?;
                let v = b.split_to(len);
                if t == 6 {
                    HeaderValue::Bytes(v)
                } else {
                    HeaderValue::String(String::from_utf8(v.to_vec()).map_err(|_| FrameError::Header("string is not UTF-8"))?)
                }
            }
            8 => {
                need(&b, 8)?;
                HeaderValue::Timestamp(b.get_i64())
            }
            9 => {
                need(&b, 16)?;
                let mut u = [0u8; 16];
                b.copy_to_slice(&mut u);
                HeaderValue::Uuid(u)
            }
            _ => return Err(FrameError::Header("unknown value type")),
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Encodes a frame with string headers (for tests of the decoder and its users).
#[cfg(test)]
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = (MIN_FRAME + h.len() + payload.len()) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        encode(&[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")], payload.as_bytes())
    }

    fn decode_all(d: &mut EventStreamDecoder) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn known_frame_from_the_aws_spec_decodes() {
        // "Empty message" and "int32 header" vectors of the event-stream test suite published
        // with the AWS SDKs (awslabs/aws-c-event-stream test/encoded/positive).
        let empty = [0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff];
        let mut d = EventStreamDecoder::new();
        d.push(&empty);
        assert_eq!(d.next_frame().unwrap(), Some(Frame { headers: vec![], payload: Bytes::new() }));
        assert!(!d.has_partial());
        let int32 = [
            0x00, 0x00, 0x00, 0x2d, 0x00, 0x00, 0x00, 0x10, 0x41, 0xc4, 0x24, 0xb8, 0x0a, 0x65, 0x76, 0x65, 0x6e, 0x74, 0x2d, 0x74,
            0x79, 0x70, 0x65, 0x04, 0x00, 0x00, 0xa0, 0x0c, 0x7b, 0x27, 0x66, 0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27,
            0x7d, 0x36, 0xf4, 0x80, 0xa0,
        ];
        d.push(&int32);
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(f.headers, vec![("event-type".to_owned(), HeaderValue::Int(0xa00c))]);
        assert_eq!(&f.payload[..], b"{'foo':'bar'}");
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let mut bytes = event("messageStart", r#"{"role":"assistant"}"#);
        bytes.extend(event("contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"h\u{e9}\u{1F600}\"}}"));
        bytes.extend(event("messageStop", r#"{"stopReason":"end_turn"}"#));
        let mut whole = EventStreamDecoder::new();
        whole.push(&bytes);
        let expected = decode_all(&mut whole);
        assert_eq!(expected.len(), 3);
        assert_eq!(expected[1].header(":event-type"), Some("contentBlockDelta"));
        assert_eq!(expected[2].payload, Bytes::from_static(br#"{"stopReason":"end_turn"}"#));
        for cut in 0..=bytes.len() {
            let mut d = EventStreamDecoder::new();
            let mut got = Vec::new();
            for part in [&bytes[..cut], &bytes[cut..]] {
                d.push(part);
                got.extend(decode_all(&mut d));
            }
            assert_eq!(got, expected, "split at {cut}");
            assert!(!d.has_partial());
        }
        // One byte at a time.
        let mut d = EventStreamDecoder::new();
        let mut got = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            got.extend(decode_all(&mut d));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn corruption_is_an_error() {
        let good = event("messageStart", r#"{"role":"assistant"}"#);
        let mut bad_payload = good.clone();
        let n = bad_payload.len();
        bad_payload[n - 6] ^= 0x01;
        let mut d = EventStreamDecoder::new();
        d.push(&bad_payload);
        assert_eq!(d.next_frame(), Err(FrameError::MessageCrc));

        let mut bad_prelude = good.clone();
        bad_prelude[3] ^= 0x01;
        let mut d = EventStreamDecoder::new();
        d.push(&bad_prelude);
        assert_eq!(d.next_frame(), Err(FrameError::PreludeCrc));

        // A length that is out of range but has a valid prelude CRC.
        let mut huge = Vec::new();
        huge.extend_from_slice(&(u32::MAX).to_be_bytes());
        huge.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&huge);
        huge.extend_from_slice(&crc.to_be_bytes());
        let mut d = EventStreamDecoder::new();
        d.push(&huge);
        assert!(matches!(d.next_frame(), Err(FrameError::Length(_))));

        // An incomplete frame is not an error, only pending.
        let mut d = EventStreamDecoder::new();
        d.push(&good[..good.len() - 1]);
        assert_eq!(d.next_frame(), Ok(None));
        assert!(d.has_partial());
    }
}
