//! HTTP/1.1 on the wire, for both ends of the gateway: the plain-HTTP upstream pool
//! ([`crate::providers::pool`]) writes request heads and reads response heads, the server
//! ([`crate::ingress::server`]) reads request heads. A head is parsed by `httparse` with its
//! header values sharing the read buffer; the body's framing follows RFC 9112 §6.3; a
//! chunked-coding decoder hands out the chunk data as slices of the read buffer, never copied.
//!
//! No I/O happens here: the callers read and write, this module only encodes and decodes bytes.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};

/// Largest head (start line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers accepted in a head.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line or trailer line accepted.
const MAX_LINE: usize = 4 * 1024;

/// A malformed message: the text says what was wrong (never header values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

fn err(msg: impl Into<String>) -> WireError {
    WireError(msg.into())
}

/// Appends the request line and headers of `req` (origin-form target: path and query) and,
/// unless `req` has one, a `content-length` for a body of `body_len` bytes.
pub fn encode_head(req: &http::request::Parts, body_len: usize, out: &mut Vec<u8>) {
    encode_start(&req.method, &req.uri, &req.headers, out);
    let bodiless = body_len == 0 && matches!(req.method, Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS);
    if bodiless || req.headers.contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(b"\r\n");
    } else {
        end_head(body_len, out);
    }
}

/// Appends the request line (origin-form target: path and query) and `headers`, without the
/// blank line that ends the head: the part of a head that is the same for every request to
/// one endpoint, to encode once and finish per request with [`end_head`].
pub fn encode_start<'h>(method: &Method, uri: &http::Uri, headers: impl IntoIterator<Item = (&'h header::HeaderName, &'h HeaderValue)>, out: &mut Vec<u8>) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Ends a head begun with [`encode_start`]: a `content-length` for `body_len` bytes and the
/// blank line.
pub fn end_head(body_len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (1xx, 204, 304).
    Empty,
    /// `content-length` bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request once the body has been read.
    pub keep_alive: bool,
}

/// Parses a response head from the start of `buf`, removing it from `buf`; `Ok(None)` while
/// the head is incomplete. Header values are slices of the head's bytes (no copies); only the
/// headers whose names `keep` accepts go into the map (a header map entry costs ~500
/// instructions, and a provider sends 15 to 25 headers of which a client reads a few).
/// `keep` must accept the framing headers (`content-length`, `transfer-encoding`,
/// `connection`).
pub fn parse_head(buf: &mut BytesMut, keep: impl Fn(&[u8]) -> bool) -> Result<Option<Head>, WireError> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let mut config = httparse::ParserConfig::default();
    config.allow_spaces_after_header_name_in_responses(true);
    let len = match config.parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(err(format!("response head larger than {MAX_HEAD} bytes"))),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(err(format!("invalid response head: {e}"))),
    };
    let status = StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(|_| err("invalid response status"))?;
    let version = if resp.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let at = Offsets::of(buf, resp.headers, keep);
    let head = buf.split_to(len).freeze();
    let map = at.header_map(&head)?;
    let (framing, keep_alive) = framing(status, version, &map)?;
    Ok(Some(Head { status, version, headers: map, framing, keep_alive }))
}

/// Where each name and value of a parsed head sits in its buffer, so the head can be frozen
/// once and the values sliced from it. (Not a zeroed array of MAX_HEADERS: clearing it cost
/// more than the parse.)
struct Offsets(smallvec::SmallVec<[(usize, usize, usize, usize); 24]>);

impl Offsets {
    /// The offsets of the `headers` (parsed from `buf`) whose names `keep` accepts.
    fn of(buf: &[u8], headers: &[httparse::Header<'_>], keep: impl Fn(&[u8]) -> bool) -> Offsets {
        let base = buf.as_ptr() as usize;
        Offsets(
            headers
                .iter()
                .filter(|h| keep(h.name.as_bytes()))
                .map(|h| (h.name.as_ptr() as usize - base, h.name.len(), h.value.as_ptr() as usize - base, h.value.len()))
                .collect(),
        )
    }

    /// The header map of `head`, the bytes the offsets were taken in.
    fn header_map(&self, head: &Bytes) -> Result<HeaderMap, WireError> {
        let mut map = HeaderMap::with_capacity(self.0.len());
        for &(name_at, name_len, value_at, value_len) in &self.0 {
            let raw = &head[name_at..name_at + name_len];
            let name = match known_name(raw) {
                Some(name) => name.clone(),
                None => HeaderName::from_bytes(raw).map_err(|_| err("invalid header name"))?,
            };
            let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len)).map_err(|_| err("invalid header value"))?;
            map.append(name, value);
        }
        Ok(map)
    }
}

/// How a request's body is delimited (RFC 9112 §6.3: a request without either header has
/// none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestBody {
    /// `content-length` bytes (0 without the header).
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub uri: http::Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: RequestBody,
    /// Whether the connection may carry another request after this one's answer.
    pub keep_alive: bool,
    /// `expect: 100-continue`: the caller waits for a `100 Continue` before sending the body.
    pub expect_continue: bool,
}

/// A request head that cannot be served: the status to answer with (then close) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRequest(pub StatusCode, pub WireError);

/// Parses a request head from the start of `buf`, removing it from `buf`; `Ok(None)` while the
/// head is incomplete. Header values and the target are slices of the head's bytes (no copies).
pub fn parse_request_head(buf: &mut BytesMut) -> Result<Option<RequestHead>, BadRequest> {
    let bad = |msg: String| BadRequest(StatusCode::BAD_REQUEST, err(msg));
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Complete(_)) => {
            return Err(BadRequest(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, err(format!("request head larger than {MAX_HEAD} bytes"))));
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(BadRequest(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, err(format!("request head larger than {MAX_HEAD} bytes"))));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(BadRequest(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, err(format!("more than {MAX_HEADERS} request headers"))));
        }
        Err(e) => return Err(bad(format!("invalid request head: {e}"))),
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes()).map_err(|_| bad("invalid method".into()))?;
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let target = req.path.unwrap_or_default();
    let target_at = target.as_ptr() as usize - buf.as_ptr() as usize..target.as_ptr() as usize - buf.as_ptr() as usize + target.len();
    let at = Offsets::of(buf, req.headers, |_| true);
    let head = buf.split_to(len).freeze();
    let headers = at.header_map(&head).map_err(|e| BadRequest(StatusCode::BAD_REQUEST, e))?;
    let uri = http::Uri::from_maybe_shared(head.slice(target_at)).map_err(|_| bad("invalid request target".into()))?;
    let mut keep_alive = version == Version::HTTP_11;
    for token in tokens(&headers, &header::CONNECTION) {
        if token.eq_ignore_ascii_case("close") {
            keep_alive = false;
        } else if token.eq_ignore_ascii_case("keep-alive") && version == Version::HTTP_10 {
            keep_alive = true;
        }
    }
    let body = if headers.contains_key(header::TRANSFER_ENCODING) {
        // RFC 9112 §6.3: a request whose final coding is not chunked cannot be delimited;
        // with a content-length as well it is a smuggling attempt: both are refused.
        let chunked = tokens(&headers, &header::TRANSFER_ENCODING).last().is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        if !chunked || headers.contains_key(header::CONTENT_LENGTH) || version == Version::HTTP_10 {
            return Err(bad("unsupported transfer-encoding".into()));
        }
        RequestBody::Chunked
    } else {
        RequestBody::Length(content_length(&headers).map_err(|e| BadRequest(StatusCode::BAD_REQUEST, e))?.unwrap_or(0))
    };
    let expect_continue = headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    Ok(Some(RequestHead { method, uri, version, headers, body, keep_alive, expect_continue }))
}

/// Header names that plain-HTTP upstreams (vLLM, Ollama, llama.cpp, OpenAI-compatible servers
/// and proxies) send in most answers, that the gateway reads (rate limits, `Retry-After`,
/// request ids), and that callers (the official SDKs, curl) send with most requests. A custom
/// name read with `HeaderName::from_bytes` is lower-cased into a new allocation, and even a
/// standard one goes through a lookup of every standard name; these are found by a scan that
/// compares lengths first (the commonest names first), and cloned from a constant.
static KNOWN_NAMES: [(&[u8], HeaderName); 39] = [
    (b"content-type", header::CONTENT_TYPE),
    (b"content-length", header::CONTENT_LENGTH),
    (b"host", header::HOST),
    (b"date", header::DATE),
    (b"authorization", header::AUTHORIZATION),
    (b"accept", header::ACCEPT),
    (b"user-agent", header::USER_AGENT),
    (b"x-request-id", HeaderName::from_static("x-request-id")),
    (b"server", header::SERVER),
    (b"transfer-encoding", header::TRANSFER_ENCODING),
    (b"connection", header::CONNECTION),
    (b"keep-alive", HeaderName::from_static("keep-alive")),
    (b"accept-encoding", header::ACCEPT_ENCODING),
    (b"cache-control", header::CACHE_CONTROL),
    (b"retry-after", header::RETRY_AFTER),
    (b"vary", header::VARY),
    (b"access-control-allow-origin", header::ACCESS_CONTROL_ALLOW_ORIGIN),
    (b"request-id", HeaderName::from_static("request-id")),
    (b"retry-after-ms", HeaderName::from_static("retry-after-ms")),
    (b"openai-processing-ms", HeaderName::from_static("openai-processing-ms")),
    (b"openai-version", HeaderName::from_static("openai-version")),
    (b"openai-organization", HeaderName::from_static("openai-organization")),
    (b"x-ratelimit-limit-requests", HeaderName::from_static("x-ratelimit-limit-requests")),
    (b"x-ratelimit-limit-tokens", HeaderName::from_static("x-ratelimit-limit-tokens")),
    (b"x-ratelimit-remaining-requests", HeaderName::from_static("x-ratelimit-remaining-requests")),
    (b"x-ratelimit-remaining-tokens", HeaderName::from_static("x-ratelimit-remaining-tokens")),
    (b"x-ratelimit-reset-requests", HeaderName::from_static("x-ratelimit-reset-requests")),
    (b"x-ratelimit-reset-tokens", HeaderName::from_static("x-ratelimit-reset-tokens")),
    (b"x-accel-buffering", HeaderName::from_static("x-accel-buffering")),
    (b"x-api-key", HeaderName::from_static("x-api-key")),
    (b"anthropic-version", HeaderName::from_static("anthropic-version")),
    (b"x-stainless-lang", HeaderName::from_static("x-stainless-lang")),
    (b"x-stainless-package-version", HeaderName::from_static("x-stainless-package-version")),
    (b"x-stainless-os", HeaderName::from_static("x-stainless-os")),
    (b"x-stainless-arch", HeaderName::from_static("x-stainless-arch")),
    (b"x-stainless-runtime", HeaderName::from_static("x-stainless-runtime")),
    (b"x-stainless-runtime-version", HeaderName::from_static("x-stainless-runtime-version")),
    (b"x-stainless-retry-count", HeaderName::from_static("x-stainless-retry-count")),
    (b"x-stainless-read-timeout", HeaderName::from_static("x-stainless-read-timeout")),
];

/// The constant of [`KNOWN_NAMES`] that `raw` spells: as it is written there (lower case, as
/// most servers send it) or in any other case.
fn known_name(raw: &[u8]) -> Option<&'static HeaderName> {
    KNOWN_NAMES.iter().find(|(n, _)| n.len() == raw.len() && (*n == raw || n.eq_ignore_ascii_case(raw))).map(|(_, name)| name)
}

/// The body's framing and whether the connection stays open, from the status and headers.
fn framing(status: StatusCode, version: Version, headers: &HeaderMap) -> Result<(Framing, bool), WireError> {
    let mut keep_alive = version == Version::HTTP_11;
    for token in tokens(headers, &header::CONNECTION) {
        if token.eq_ignore_ascii_case("close") {
            keep_alive = false;
        } else if token.eq_ignore_ascii_case("keep-alive") && version == Version::HTTP_10 {
            keep_alive = true;
        }
    }
    if status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Empty, keep_alive));
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // Chunked only when it is the final coding; otherwise the body runs to the close.
        let chunked = tokens(headers, &header::TRANSFER_ENCODING).last().is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        return Ok(if chunked { (Framing::Chunked, keep_alive) } else { (Framing::Close, false) });
    }
    Ok(match content_length(headers)? {
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::Close, false),
    })
}

/// The `content-length`, if any (repeated values must agree).
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, WireError> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).into_iter();
    let (Some(one), None) = (values.next(), values.next()) else {
        return content_length_list(headers);
    };
    // The usual one value of digits, read without splitting it into a list.
    let digits = one.as_bytes();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return content_length_list(headers);
    }
    Ok(Some(digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))))
}

/// [`content_length`] of repeated or comma-separated values (RFC 9110 §8.6: they must agree).
fn content_length_list(headers: &HeaderMap) -> Result<Option<u64>, WireError> {
    let mut length = None;
    for token in tokens(headers, &header::CONTENT_LENGTH) {
        if !token.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("invalid content-length"));
        }
        let n: u64 = token.parse().map_err(|_| err("invalid content-length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(err("conflicting content-length values"));
        }
        length = Some(n);
    }
    Ok(length)
}

/// The comma-separated tokens of every `name` header, trimmed.
fn tokens<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Where a chunked body's decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

/// What decoding the buffered bytes gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Some of the body's data.
    Data(Bytes),
    /// More bytes are needed.
    More,
    /// The body has ended (the last chunk and the trailers were read).
    Done,
}

/// A decoder of the chunked transfer coding (RFC 9112 §7.1); extensions and trailers are
/// read and dropped.
#[derive(Clone, Debug)]
pub struct Chunked {
    state: State,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked { state: State::Size }
    }
}

impl Chunked {
    /// Decodes from the front of `buf`: the next piece of data (as much of the current chunk
    /// as is buffered), or the end, or a need for more bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, WireError> {
        self.skip_framing(buf)?;
        match self.state {
            State::Done => Ok(Step::Done),
            State::Data(left) if !buf.is_empty() => {
                let n = left.min(buf.len() as u64) as usize;
                self.state = if n as u64 == left { State::DataEnd } else { State::Data(left - n as u64) };
                Ok(Step::Data(buf.split_to(n).freeze()))
            }
            _ => Ok(Step::More),
        }
    }

    /// Whether the last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads what lies between chunks' data (size lines, CRLFs, the trailers) as far as the
    /// buffered bytes go, stopping at data or at the end.
    pub fn skip_framing(&mut self, buf: &mut BytesMut) -> Result<(), WireError> {
        loop {
            match self.state {
                State::Data(_) | State::Done => return Ok(()),
                State::DataEnd => match buf.first() {
                    None => return Ok(()),
                    Some(b'\n') => {
                        buf.advance(1);
                        self.state = State::Size;
                    }
                    Some(b'\r') if buf.len() < 2 => return Ok(()),
                    Some(b'\r') if buf[1] == b'\n' => {
                        buf.advance(2);
                        self.state = State::Size;
                    }
                    Some(_) => return Err(err("chunk data longer than its size")),
                },
                State::Size => {
                    let Some(line) = take_line(buf)? else { return Ok(()) };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 { State::Trailers } else { State::Data(size) };
                }
                State::Trailers => {
                    let Some(line) = take_line(buf)? else { return Ok(()) };
                    if line.is_empty() {
                        self.state = State::Done;
                    }
                }
            }
        }
    }
}

/// Removes one line (up to LF, the CR before it dropped) from the front of `buf`.
fn take_line(buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
    let Some(eol) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > MAX_LINE { Err(err("chunk line too long")) } else { Ok(None) };
    };
    let mut line = buf.split_to(eol + 1).freeze();
    line.truncate(if line.len() >= 2 && line[line.len() - 2] == b'\r' { line.len() - 2 } else { line.len() - 1 });
    Ok(Some(line))
}

/// The hex size at the start of a chunk-size line (extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return Err(err("invalid chunk size"));
    }
    let mut size = 0u64;
    for &b in digits {
        let d = (b as char).to_digit(16).ok_or_else(|| err("invalid chunk size"))?;
        size = size << 4 | u64::from(d);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>, WireError> {
        parse_head(&mut BytesMut::from(raw), |_| true)
    }

    #[test]
    fn request_heads_are_origin_form_with_a_length() {
        let req = http::Request::post("http://up:8000/v1/chat/completions?x=1")
            .header("host", "up:8000")
            .header("authorization", "Bearer k")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        encode_head(&req.into_parts().0, 12, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: up:8000\r\nauthorization: Bearer k\r\ncontent-length: 12\r\n\r\n"
        );
        let get = http::Request::get("http://up/v1/models").body(()).unwrap();
        let mut out = Vec::new();
        encode_head(&get.into_parts().0, 0, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "GET /v1/models HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn request_heads_parse_with_their_framing() {
        let req = |raw: &str| parse_request_head(&mut BytesMut::from(raw));
        let mut buf = BytesMut::from("POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer k\r\nX-Stainless-Lang: python\r\nContent-Length: 2\r\n");
        assert!(parse_request_head(&mut buf).unwrap().is_none(), "incomplete");
        buf.extend_from_slice(b"\r\n{}GET");
        let head = parse_request_head(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..], b"{}GET", "the body and what follows stay in the buffer");
        assert_eq!((head.method.clone(), head.version, head.body, head.keep_alive, head.expect_continue), (Method::POST, Version::HTTP_11, RequestBody::Length(2), true, false));
        assert_eq!(head.uri.path(), "/v1/chat/completions");
        assert_eq!(head.uri.query(), Some("x=1"));
        assert_eq!(head.headers["authorization"], "Bearer k");
        assert_eq!(head.headers["x-stainless-lang"], "python");

        let h = req("GET /v1/models HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.body, h.keep_alive), (RequestBody::Length(0), false));
        let h = req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(h.keep_alive);
        let h = req("POST / HTTP/1.1\r\nconnection: close\r\ntransfer-encoding: gzip, chunked\r\nexpect: 100-Continue\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.body, h.keep_alive, h.expect_continue), (RequestBody::Chunked, false, true));

        let status = |raw: &str| req(raw).unwrap_err().0;
        assert_eq!(status("POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"), StatusCode::BAD_REQUEST);
        assert_eq!(status("POST / HTTP/1.1\r\ncontent-length: +1\r\n\r\n"), StatusCode::BAD_REQUEST);
        assert_eq!(status("POST / HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n"), StatusCode::BAD_REQUEST);
        assert_eq!(status("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n"), StatusCode::BAD_REQUEST);
        assert_eq!(status("POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n"), StatusCode::BAD_REQUEST);
        assert_eq!(status("G@T / HTTP/1.1\r\n\r\n"), StatusCode::BAD_REQUEST);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\n{many}\r\n")), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let long = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(status(&long), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(status(&long[..MAX_HEAD + 10]), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "incomplete and already too long");
    }

    #[test]
    fn response_heads_parse_once_complete() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 2\r\nx-a: 1\r\nx-a: 2\r\n");
        assert!(parse_head(&mut buf, |_| true).unwrap().is_none());
        buf.extend_from_slice(b"\r\nok");
        let h = parse_head(&mut buf, |_| true).unwrap().unwrap();
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.framing, Framing::Length(2));
        assert!(h.keep_alive);
        assert_eq!(h.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(h.headers["content-type"], "application/json");
        assert_eq!(&buf[..], b"ok", "the body stays in the buffer");
    }

    #[test]
    fn known_names_are_the_names_from_bytes_gives_in_any_case() {
        for (spelled, name) in &KNOWN_NAMES {
            assert_eq!(*spelled, name.as_str().as_bytes());
            for raw in [name.as_str().to_owned(), name.as_str().to_ascii_uppercase(), title_case(name.as_str())] {
                assert_eq!(known_name(raw.as_bytes()), Some(name), "{raw}");
                assert_eq!(HeaderName::from_bytes(raw.as_bytes()).unwrap(), *name);
            }
        }
        assert_eq!(known_name(b"x-request-ic"), None);
        assert_eq!(known_name(b"x-custom"), None);
        let h = head("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nX-Ratelimit-Remaining-Requests: 0\r\nRetry-After-Ms: 20\r\nX-Custom: 1\r\ncontent-length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        let names: Vec<&str> = h.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "x-ratelimit-remaining-requests", "retry-after-ms", "x-custom", "content-length"]);
        assert_eq!(h.headers["retry-after-ms"], "20");
    }

    fn title_case(name: &str) -> String {
        name.split('-').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect::<Vec<_>>().join("-")
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |raw: &str| head(raw).unwrap().map(|h| (h.framing, h.keep_alive)).unwrap();
        assert_eq!(f("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"), (Framing::Chunked, true));
        assert_eq!(f("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 5\r\n\r\n"), (Framing::Chunked, true));
        assert_eq!(f("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"), (Framing::Close, false));
        assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n"), (Framing::Close, false));
        assert_eq!(f("HTTP/1.1 204 No Content\r\n\r\n"), (Framing::Empty, true));
        assert_eq!(f("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"), (Framing::Length(3), false));
        assert_eq!(f("HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\n"), (Framing::Length(3), false));
        assert_eq!(f("HTTP/1.0 200 OK\r\ncontent-length: 3\r\nconnection: keep-alive\r\n\r\n"), (Framing::Length(3), true));
        assert_eq!(f("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n"), (Framing::Length(3), true));
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n").is_err());
        assert!(head("HTTX/1.1 200 OK\r\n\r\n").is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert!(head(&huge).is_err());
    }

    /// Feeds `wire` to a decoder `split` bytes at a time; returns the data and whether it ended.
    fn decode_in_pieces(wire: &[u8], split: usize) -> Result<(Vec<u8>, bool), WireError> {
        let mut dec = Chunked::default();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        for piece in wire.chunks(split) {
            buf.extend_from_slice(piece);
            loop {
                match dec.decode(&mut buf)? {
                    Step::Data(d) => data.extend_from_slice(&d),
                    Step::More => break,
                    Step::Done => return Ok((data, true)),
                }
            }
        }
        Ok((data, false))
    }

    #[test]
    fn chunked_bodies_decode_however_the_bytes_arrive() {
        let wire = b"6\r\nhello \r\n1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: t\r\n\r\n";
        for split in [1, 2, 3, 7, 64, wire.len()] {
            let (data, done) = decode_in_pieces(wire, split).unwrap();
            assert_eq!(data, b"hello abcdefghijklmnopqrstuvwxyz", "split {split}");
            assert!(done, "split {split}");
        }
        let (data, done) = decode_in_pieces(b"3\r\nabc\r\n", 4).unwrap();
        assert_eq!((data.as_slice(), done), (&b"abc"[..], false));
        // Lenient about a bare LF, as servers in the wild send.
        assert_eq!(decode_in_pieces(b"3\nabc\n0\n\n", 1).unwrap(), (b"abc".to_vec(), true));
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [&b"zz\r\n"[..], b"3\r\nabcd\r\n", b"\r\n", b"11111111111111111\r\n"] {
            assert!(decode_in_pieces(bad, 64).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(decode_in_pieces(&[b'1'; MAX_LINE + 10], 64).is_err());
    }
}
