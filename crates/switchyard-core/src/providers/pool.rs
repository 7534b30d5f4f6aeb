//! The connection pool and HTTP/1.1 client for plain-HTTP upstreams (`http://`: vLLM, Ollama,
//! TGI, LocalAI, sidecars and internal proxies), which always speak HTTP/1.1 here.
//!
//! hyper's client drives each connection from a task of its own and hands every response head
//! and body frame to the request's task through channels: a task wake-up and a channel hop per
//! read, on the hot path of every request and every stream chunk. Here, as in pingora, the
//! request's own task does the I/O: it writes the request head and body in one `write`, reads
//! and parses the response head ([`crate::wire::h1`]), and the response body ([`H1Body`]) reads the
//! socket when polled, handing out slices of the read buffer. With one pool per server thread
//! and one authority per provider, a checkout pops the most recently used idle connection; a
//! body read to its end puts its connection back at once (before the caller even asks for the
//! end). An idle connection the upstream closed is noticed at checkout without a syscall (the
//! runtime marked it readable) and dropped; if the close comes too late to be noticed, the
//! request, which no upstream answered, is sent again on a new connection. A body dropped
//! before its end closes its connection. `https://` upstreams keep hyper-util's client (TLS,
//! HTTP/2 by ALPN).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::uri::Authority;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt as _, Full};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use super::ProviderError;
use crate::wire::h1::{self, Step, WireError};

/// Idle connections kept per authority and server thread.
const MAX_IDLE: usize = 256;
/// Bytes read from the socket at a time (at most).
const READ_SIZE: usize = 8 * 1024;
/// Request bodies up to this size are written with the head in one `write`.
const INLINE_BODY: usize = 64 * 1024;

/// One upstream connection and the bytes read from it that are not consumed yet.
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
}

impl Conn {
    fn new(io: TcpStream) -> Conn {
        Conn { io, buf: BytesMut::new() }
    }

    /// Whether an idle connection can carry a request: the upstream has neither closed it nor
    /// sent anything unasked. No syscall unless the runtime saw the socket become readable.
    fn is_usable(&self) -> bool {
        let mut probe = [0u8; 1];
        self.buf.is_empty() && matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Reads what the socket has into the buffer; `Ok(0)` at the upstream's close.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

#[derive(Default)]
struct State {
    /// Per authority, most recently used last (a provider calls one, so this stays tiny).
    conns: Vec<(Authority, Vec<Idle>)>,
    /// Whether a task is sweeping expired idle connections.
    sweeping: bool,
}

/// One server thread's HTTP/1 connections to plain-HTTP upstreams.
#[derive(Default)]
pub struct H1Pool {
    state: Mutex<State>,
}

/// How a connection is opened: connect timeout, TCP keep-alive, idle expiry.
#[derive(Clone, Copy)]
pub struct Settings {
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    pub idle: Duration,
}

/// Why an exchange failed, and whether the upstream can have seen the request at all.
struct Failed {
    /// Nothing came back and the connection was found closed: on a reused connection, the
    /// upstream closed it while idle, so the request can go again on a new one.
    unanswered: bool,
    message: String,
}

impl H1Pool {
    /// Sends `req` (its URI absolute: `http://host:port/path`; its `Host` header set) on a
    /// pooled connection to its authority, or a new one.
    pub async fn send(self: &Arc<Self>, req: http::Request<Full<Bytes>>, settings: Settings) -> Result<http::Response<H1Body>, ProviderError> {
        let Some(authority) = req.uri().authority().cloned() else {
            return Err(ProviderError::Protocol("an upstream URL without a host".into()));
        };
        let (parts, body) = req.into_parts();
        // A `Full` body is ready at once.
        let body = match body.collect().now_or_never() {
            Some(Ok(collected)) => collected.to_bytes(),
            Some(Err(never)) => match never {},
            None => Bytes::new(),
        };
        let inline = body.len() <= INLINE_BODY;
        let mut wire = Vec::with_capacity(256 + parts.headers.len() * 64 + if inline { body.len() } else { 0 });
        h1::encode_head(&parts, body.len(), &mut wire);
        self.send_wire(&authority, wire, body, settings).await
    }

    /// Sends a `POST` whose head up to its length (`start`, from [`h1::encode_start`], its
    /// `Host` header included) is the same for every request to the endpoint, with `body`.
    pub async fn post(self: &Arc<Self>, authority: &Authority, start: &[u8], body: Bytes, settings: Settings) -> Result<http::Response<H1Body>, ProviderError> {
        let inline = body.len() <= INLINE_BODY;
        let mut wire = Vec::with_capacity(start.len() + 40 + if inline { body.len() } else { 0 });
        wire.extend_from_slice(start);
        h1::end_head(body.len(), &mut wire);
        self.send_wire(authority, wire, body, settings).await
    }

    /// Sends the encoded head `wire` and `body` (appended to `wire` when small enough to go in
    /// the same write).
    async fn send_wire(self: &Arc<Self>, authority: &Authority, mut wire: Vec<u8>, body: Bytes, settings: Settings) -> Result<http::Response<H1Body>, ProviderError> {
        let inline = body.len() <= INLINE_BODY;
        if inline {
            wire.extend_from_slice(&body);
        }
        let rest = if inline { None } else { Some(&body) };
        loop {
            let (mut conn, reused) = match self.checkout(authority) {
                Some(conn) => (conn, true),
                None => (connect(authority, settings).await?, false),
            };
            match exchange(&mut conn, &wire, rest).await {
                Ok(head) => return Ok(self.response(conn, head, authority.clone(), settings.idle)),
                // The upstream closed the pooled connection before it could answer (its
                // keep-alive timeout): send the request on a new one.
                Err(Failed { unanswered: true, .. }) if reused => continue,
                Err(f) => return Err(ProviderError::Connect(format!("{authority}: {}", f.message))),
            }
        }
    }

    fn response(self: &Arc<Self>, conn: Conn, head: h1::Head, authority: Authority, expiry: Duration) -> http::Response<H1Body> {
        let kind = match head.framing {
            h1::Framing::Empty => Kind::Length(0),
            h1::Framing::Length(n) => Kind::Length(n),
            h1::Framing::Chunked => Kind::Chunked(h1::Chunked::default()),
            h1::Framing::Close => Kind::Close,
        };
        let home = head.keep_alive.then(|| Home { pool: self.clone(), authority, expiry });
        let mut body = H1Body { conn: Some(conn), kind, home };
        body.settle();
        let mut resp = http::Response::new(body);
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        resp
    }

    fn checkout(&self, authority: &Authority) -> Option<Conn> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (_, idle) = state.conns.iter_mut().find(|(a, _)| a == authority)?;
        // Most recent first; a connection the upstream closed is dropped.
        while let Some(c) = idle.pop() {
            if c.conn.is_usable() {
                return Some(c.conn);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, authority: Authority, mut conn: Conn, expiry: Duration) {
        // An idle connection keeps no buffer: after a burst, hundreds of idle connections
        // would otherwise pin 8 KiB each, scattered over the heap where no trim reaches.
        conn.buf = BytesMut::new();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let entry = match state.conns.iter().position(|(a, _)| *a == authority) {
            Some(i) => &mut state.conns[i].1,
            None => {
                state.conns.push((authority, Vec::new()));
                &mut state.conns.last_mut().expect("just pushed").1
            }
        };
        if entry.len() >= MAX_IDLE {
            entry.remove(0);
        }
        entry.push(Idle { conn, since: Instant::now() });
        if !state.sweeping && tokio::runtime::Handle::try_current().is_ok() {
            state.sweeping = true;
            tokio::spawn(sweep(Arc::downgrade(self), expiry));
        }
    }

    /// Idle connections in the pool (for tests).
    #[cfg(test)]
    fn idle(&self) -> usize {
        let state = self.state.lock().unwrap();
        state.conns.iter().map(|(_, v)| v.len()).sum()
    }
}

/// Writes the request (`wire`: its head, and its body unless `rest` holds it) and reads the
/// response head, skipping interim (1xx) responses.
async fn exchange(conn: &mut Conn, wire: &[u8], rest: Option<&Bytes>) -> Result<h1::Head, Failed> {
    let written = async {
        conn.io.write_all(wire).await?;
        if let Some(body) = rest {
            conn.io.write_all(body).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    if let Err(e) = written.await {
        let unanswered = matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted);
        return Err(Failed { unanswered, message: format!("writing the request: {e}") });
    }
    let mut answered = false;
    std::future::poll_fn(|cx| {
        loop {
            match h1::parse_head(&mut conn.buf, read_by_the_gateway) {
                Ok(Some(head)) if head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                    return Poll::Ready(Err(Failed { unanswered: false, message: "the upstream switched protocols".into() }));
                }
                Ok(Some(head)) if head.status.is_informational() => continue, // 100, 103: the answer follows
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(Failed { unanswered: false, message: e.0 })),
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    let message = if answered { "the upstream closed the connection in the middle of the response head" } else { "the upstream closed the connection before answering" };
                    return Poll::Ready(Err(Failed { unanswered: !answered, message: message.into() }));
                }
                Ok(_) => answered = true,
                Err(e) => {
                    let reset = matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted);
                    return Poll::Ready(Err(Failed { unanswered: reset && !answered, message: format!("reading the response: {e}") }));
                }
            }
        }
    })
    .await
}

/// Where a connection goes back to once its response body has been read.
struct Home {
    pool: Arc<H1Pool>,
    authority: Authority,
    expiry: Duration,
}

enum Kind {
    /// This many bytes left.
    Length(u64),
    Chunked(h1::Chunked),
    /// Until the upstream closes.
    Close,
    /// Broken: the error is reported once, then the body ends.
    Failed(WireError),
    Done,
}

/// A response body read straight from the upstream connection by whoever polls it; its data
/// frames are slices of the connection's read buffer.
pub struct H1Body {
    conn: Option<Conn>,
    kind: Kind,
    /// Where the connection goes back to (none when it cannot carry another request).
    home: Option<Home>,
}

impl H1Body {
    /// Puts the connection back as soon as the body's end is buffered, so a reader that stops
    /// at [`http_body::Body::is_end_stream`] (or drops the body after the last data) does not
    /// cost the connection.
    fn settle(&mut self) {
        let ended = match (&mut self.kind, self.conn.as_mut()) {
            (Kind::Length(0), _) => Ok(true),
            (Kind::Chunked(dec), Some(conn)) => dec.skip_framing(&mut conn.buf).map(|()| dec.is_done()),
            _ => Ok(false),
        };
        match ended {
            Err(e) => self.fail(e),
            Ok(false) => {}
            Ok(true) => {
                self.kind = Kind::Done;
                let (Some(conn), Some(home)) = (self.conn.take(), self.home.take()) else { return };
                // Bytes past the end of the answer: the connection is out of step, close it.
                if conn.buf.is_empty() {
                    home.pool.put(home.authority, conn, home.expiry);
                }
            }
        }
    }

    fn fail(&mut self, e: WireError) {
        self.conn = None;
        self.kind = Kind::Failed(e);
    }

    /// The next piece of data already buffered, if any (and settles the end).
    fn buffered(&mut self) -> Option<Bytes> {
        let conn = self.conn.as_mut()?;
        let data = match &mut self.kind {
            Kind::Length(left) if *left > 0 && !conn.buf.is_empty() => {
                let n = (*left).min(conn.buf.len() as u64);
                *left -= n;
                Ok(Some(conn.buf.split_to(n as usize).freeze()))
            }
            Kind::Chunked(dec) => dec.decode(&mut conn.buf).map(|step| match step {
                Step::Data(d) => Some(d),
                Step::More | Step::Done => None,
            }),
            Kind::Close if !conn.buf.is_empty() => Ok(Some(conn.buf.split().freeze())),
            _ => Ok(None),
        };
        match data {
            Ok(data) => {
                self.settle();
                data
            }
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }
}

impl http_body::Body for H1Body {
    type Data = Bytes;
    type Error = WireError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, WireError>>> {
        let this = self.get_mut();
        loop {
            if let Some(data) = this.buffered() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(match std::mem::replace(&mut this.kind, Kind::Done) {
                    Kind::Failed(e) => Some(Err(e)),
                    _ => None,
                });
            };
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.kind, Kind::Close) => {
                    this.conn = None;
                    this.kind = Kind::Done;
                }
                Ok(0) => this.fail(WireError("the upstream closed the connection before the body ended".into())),
                Ok(_) => {}
                Err(e) => this.fail(WireError(format!("reading the response body: {e}"))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Done | Kind::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.kind {
            Kind::Length(n) => SizeHint::with_exact(n),
            Kind::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Closes connections idle for longer than `expiry`, checking every `expiry`, until the pool
/// is empty (the next connection put back starts a new sweep): after a burst the pool's
/// connections and their buffers are released without waiting for a request.
async fn sweep(pool: std::sync::Weak<H1Pool>, expiry: Duration) {
    loop {
        tokio::time::sleep(expiry).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut state = pool.state.lock().unwrap_or_else(|p| p.into_inner());
        for (_, idle) in &mut state.conns {
            idle.retain(|c| c.since.elapsed() < expiry);
        }
        state.conns.retain(|(_, v)| !v.is_empty());
        if state.conns.is_empty() {
            state.sweeping = false;
            return;
        }
    }
}

async fn connect(authority: &Authority, settings: Settings) -> Result<Conn, ProviderError> {
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let fail = |what: &str, e: &dyn std::fmt::Display| ProviderError::Connect(format!("{what} {authority}: {e}"));
    let open = async {
        let addrs: Vec<std::net::SocketAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![(ip, port).into()],
            Err(_) => tokio::net::lookup_host((host, port)).await.map_err(|e| fail("resolving", &e))?.collect(),
        };
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => fail("tcp connect error:", &e),
            None => fail("resolving", &"no addresses"),
        })
    };
    let stream = tokio::time::timeout(settings.connect_timeout, open)
        .await
        .map_err(|_| ProviderError::Connect(format!("connecting to {authority}: timed out after {:?}", settings.connect_timeout)))??;
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(settings.keepalive));
    Ok(Conn::new(stream))
}

/// An error and its sources, `: `-separated (never request headers).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Whether the gateway reads a response header of this name: the framing, the content type,
/// retry hints, rate limits (OpenAI's, Anthropic's, the IETF draft's) and Bedrock's error type.
/// Only these go into a response's header map; the rest of what a provider sends (OpenAI's
/// `openai-processing-ms`, `x-request-id`, `cf-ray`, `set-cookie`, ... about 20 in all) is not
/// copied, and the gateway's own answers never carry an upstream's headers.
pub fn read_by_the_gateway(name: &[u8]) -> bool {
    // Most servers send lower case: compared as it is first, then in any case.
    let is = |n: &[u8]| n == name || n.eq_ignore_ascii_case(name);
    let starts = |p: &[u8]| name.get(..p.len()).is_some_and(|start| start == p || start.eq_ignore_ascii_case(p));
    // By the first letter: most of the names a provider sends are ruled out by it alone.
    match name.first().map(u8::to_ascii_lowercase) {
        Some(b'c') => is(b"content-type") || is(b"content-length") || is(b"connection") || is(b"content-encoding"),
        Some(b't') => is(b"transfer-encoding"),
        Some(b'r') => is(b"retry-after") || is(b"retry-after-ms") || starts(b"ratelimit-"),
        Some(b'x') => starts(b"x-ratelimit-") || starts(b"x-amzn-"),
        Some(b'a') => starts(b"anthropic-ratelimit-"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SETTINGS: Settings = Settings { connect_timeout: Duration::from_secs(2), keepalive: Duration::from_secs(30), idle: Duration::from_secs(50) };

    /// A keep-alive HTTP/1.1 server answering `ok` to each request; counts connections. With
    /// `close_after_one`, it closes each connection after its first answer (as a server whose
    /// keep-alive timeout ran out would).
    async fn server(close_after_one: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", close_after_one).await
    }

    /// As [`server`], answering each request with `answer` (raw bytes).
    async fn answering(answer: &'static [u8], close_after_one: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut have = Vec::new();
                    loop {
                        let n = match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        have.extend_from_slice(&buf[..n]);
                        while let Some(end) = memchr::memmem::find(&have, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&have[..end]).to_ascii_lowercase();
                            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
                            if have.len() < end + 4 + len {
                                break;
                            }
                            assert!(head.starts_with("post /v1/x http/1.1"), "origin-form request line: {head}");
                            assert!(head.contains("\r\nhost: "), "a Host header: {head}");
                            have.drain(..end + 4 + len);
                            if s.write_all(answer).await.is_err() {
                                return;
                            }
                            if close_after_one {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, conns)
    }

    fn request(addr: std::net::SocketAddr) -> http::Request<Full<Bytes>> {
        http::Request::post(format!("http://{addr}/v1/x"))
            .header(http::header::HOST, addr.to_string())
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    }

    async fn body(resp: http::Response<H1Body>) -> Bytes {
        try_body(resp).await.unwrap()
    }

    async fn try_body(resp: http::Response<H1Body>) -> Result<Bytes, WireError> {
        Ok(resp.into_body().collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let (addr, conns) = server(false).await;
        let pool = Arc::new(H1Pool::default());
        for _ in 0..5 {
            let resp = pool.send(request(addr), SETTINGS).await.unwrap();
            assert_eq!(body(resp).await, "ok");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_open_one_connection_each_then_reuse_them() {
        let (addr, conns) = server(false).await;
        let pool = Arc::new(H1Pool::default());
        for _ in 0..2 {
            let all = (0..4).map(|_| {
                let pool = pool.clone();
                async move { body(pool.send(request(addr), SETTINGS).await.unwrap()).await }
            });
            for b in futures_util::future::join_all(all).await {
                assert_eq!(b, "ok");
            }
        }
        assert_eq!(conns.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_reused() {
        let (addr, conns) = server(true).await;
        let pool = Arc::new(H1Pool::default());
        for _ in 0..3 {
            let resp = pool.send(request(addr), SETTINGS).await.unwrap();
            assert_eq!(body(resp).await, "ok");
            // Let the connection task see the close, as an idle pooled connection would.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_close_not_yet_seen_costs_no_request() {
        // Back to back, the pooled connection's close may not have been noticed at checkout:
        // the request is then sent again on a new connection, never failed.
        let (addr, conns) = server(true).await;
        let pool = Arc::new(H1Pool::default());
        for _ in 0..20 {
            let resp = pool.send(request(addr), SETTINGS).await.unwrap();
            assert_eq!(body(resp).await, "ok");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 20);
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert_connect_error(addr, "tcp connect error").await;
    }

    /// Sends one request to `addr` on a new pool and expects a connect error mentioning `what`.
    async fn assert_connect_error(addr: std::net::SocketAddr, what: &str) {
        let pool = Arc::new(H1Pool::default());
        match pool.send(request(addr), SETTINGS).await {
            Err(ProviderError::Connect(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("expected a connect error, got {:?}", other.map(|r| r.status())),
        }
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (addr, _) = server(false).await;
        let pool = Arc::new(H1Pool::default());
        let settings = Settings { idle: Duration::from_millis(100), ..SETTINGS };
        body(pool.send(request(addr), settings).await.unwrap()).await;
        assert_eq!(pool.idle(), 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn chunked_answers_are_decoded_and_their_connection_reused() {
        let (addr, conns) = answering(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-t: 1\r\n\r\n", false).await;
        let pool = Arc::new(H1Pool::default());
        for _ in 0..3 {
            assert_eq!(body(pool.send(request(addr), SETTINGS).await.unwrap()).await, "hello world");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_gives_its_connection_back_before_the_reader_asks_again() {
        let (addr, _) = server(false).await;
        let pool = Arc::new(H1Pool::default());
        let resp = pool.send(request(addr), SETTINGS).await.unwrap();
        let mut b = resp.into_body();
        let frame = b.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ok");
        assert!(http_body::Body::is_end_stream(&b));
        assert_eq!(pool.idle(), 1, "back in the pool with the last data");
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_closes_its_connection() {
        // Promises 10 bytes, sends 5 and keeps the connection open.
        let (addr, conns) = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello", false).await;
        let pool = Arc::new(H1Pool::default());
        for _ in 0..2 {
            let mut b = pool.send(request(addr), SETTINGS).await.unwrap().into_body();
            assert_eq!(b.frame().await.unwrap().unwrap().into_data().unwrap(), "hello");
            drop(b);
            assert_eq!(pool.idle(), 0);
        }
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn bodies_without_a_length_run_to_the_close() {
        let (addr, conns) = answering(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end", true).await;
        let pool = Arc::new(H1Pool::default());
        for _ in 0..2 {
            assert_eq!(body(pool.send(request(addr), SETTINGS).await.unwrap()).await, "until the end");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error() {
        let (addr, _) = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello", true).await;
        let pool = Arc::new(H1Pool::default());
        let err = try_body(pool.send(request(addr), SETTINGS).await.unwrap()).await.unwrap_err();
        assert!(err.0.contains("before the body ended"), "{err}");
        let (addr, _) = answering(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel", true).await;
        assert!(try_body(pool.send(request(addr), SETTINGS).await.unwrap()).await.is_err());
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_heads_keep_the_headers_the_gateway_reads() {
        let (addr, _) = answering(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many Requests\r\nDate: Mon, 07 Dec 2026 22:00:00 GMT\r\nContent-Type: application/json\r\nRetry-After: 2\r\nopenai-processing-ms: 12\r\nX-Ratelimit-Remaining-Requests: 0\r\nset-cookie: __cf_bm=secret\r\ncf-ray: 1-LAX\r\ncontent-length: 2\r\n\r\n{}",
            false,
        )
        .await;
        let pool = Arc::new(H1Pool::default());
        let resp = pool.send(request(addr), SETTINGS).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::TOO_MANY_REQUESTS);
        let names: Vec<&str> = resp.headers().keys().map(http::HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "retry-after", "x-ratelimit-remaining-requests", "content-length"]);
        assert_eq!(resp.headers()["retry-after"], "2");
        assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
        assert_eq!(body(resp).await, "{}");
    }

    #[test]
    fn the_headers_the_gateway_reads_are_kept_in_any_case() {
        for name in [
            "content-type",
            "Content-Length",
            "transfer-encoding",
            "connection",
            "content-encoding",
            "retry-after",
            "Retry-After-Ms",
            "x-ratelimit-reset-tokens",
            "anthropic-ratelimit-requests-remaining",
            "ratelimit-reset",
            "X-Amzn-ErrorType",
        ] {
            assert!(read_by_the_gateway(name.as_bytes()), "{name}");
        }
        for name in ["date", "server", "x-request-id", "openai-processing-ms", "set-cookie", "cf-ray", "x-ratelimit", "retry", "content-typo", ""] {
            assert!(!read_by_the_gateway(name.as_bytes()), "{name}");
        }
    }

    #[tokio::test]
    async fn a_garbled_answer_is_a_connect_error_that_names_no_header() {
        let (addr, _) = answering(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", true).await;
        assert_connect_error(addr, "invalid response head").await;
    }

    #[tokio::test]
    async fn a_large_body_follows_its_head_and_the_connection_stays_in_step() {
        // Larger than INLINE_BODY: written after the head, not copied into one buffer. The
        // server checks each request's length; a second request on the same connection shows
        // that no byte was lost or left over.
        let (addr, conns) = server(false).await;
        let pool = Arc::new(H1Pool::default());
        for _ in 0..2 {
            let big = http::Request::post(format!("http://{addr}/v1/x"))
                .header(http::header::HOST, addr.to_string())
                .body(Full::new(Bytes::from(vec![b'x'; INLINE_BODY * 3 + 7])))
                .unwrap();
            assert_eq!(body(pool.send(big, SETTINGS).await.unwrap()).await, "ok");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }
}
