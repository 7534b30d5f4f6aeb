//! The gateway's HTTP/1.1 server: accepts connections, reads requests with
//! [`crate::wire::h1`], hands each to the application ([`super::FastPath`]: a tower service of
//! `http` requests and responses, the axum router behind it) and writes the answer, one
//! request after another per connection (keep-alive, pipelining).
//!
//! Our own rather than hyper's server connection: the gateway needs little of it (requests
//! that fit in memory, answers that are one buffer or a stream of SSE events), and hyper's
//! general machinery (a dispatcher and a body channel per request, its header encoder, the
//! auto-detection of HTTP/2 wrapped around every read) cost ~9k instructions per request, a
//! fifth of a proxied request (callgrind, `bench/callgrind.sh`). Here a request costs its
//! head's parse, one header map, and one `writev` of the answer's head and body.
//!
//! What it does, as a client of an HTTP/1.1 server expects:
//! - Request bodies by `content-length` or chunked coding (RFC 9112 §6.3; anything else is a
//!   400 and the connection closes), read whole before the application sees the request, up
//!   to `server.max_body_bytes`: a longer body is not read, the application gets a body that
//!   fails (the handlers answer 413 in the caller's protocol) and the connection closes.
//! - `expect: 100-continue` answered with `100 Continue` before the body is read.
//! - Keep-alive by default on HTTP/1.1, `connection: close` honoured, HTTP/1.0 closed unless
//!   it asks for keep-alive; pipelined requests are read ahead and answered in order.
//! - Answers framed by `content-length` when the body's size is known, otherwise chunked
//!   (close-delimited to an HTTP/1.0 caller); a stream's events are written as they come, the
//!   ones ready together in one write; `date` added; nothing sent for `HEAD`.
//! - A caller that closes its connection while its request is in flight (waiting for the
//!   upstream, or between a stream's events) is seen at once: the application's future or
//!   the body is dropped, which cancels the upstream call.
//! - Graceful shutdown: no new connections, idle ones closed, each busy one closed after its
//!   answer, for at most the grace period.
//! - A head that cannot be parsed is answered 400 (431 when too large) as OpenAI-style error
//!   JSON, and the connection closes; one that has begun must arrive whole within 30 s
//!   ([`Limits::head_timeout`]), or the connection closes.
//! - A keep-alive connection idle for `server.idle_timeout` is closed; so is one whose caller
//!   stalls its body, or stops reading its answer (a stream whose events back up), for
//!   `server.client_timeout` ([`Limits`]). Neither costs a request a timer: the idle timer is
//!   one per connection, moved on when it fires early, and a read or write that is ready at
//!   once sets none.
//!
//! HTTP/2 is served on TLS-less connections that start with its preface (prior knowledge,
//! h2c), by hyper's HTTP/2 server; such a connection is shut down (GOAWAY) once it has had no
//! request in flight or begun for an idle timeout.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode, Version, header};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Sleep;
use tower::ServiceExt as _;

use super::FastPath;
use super::after_write;
use super::error::ApiError;
use crate::wire::h1::{self, BadRequest, RequestBody, RequestHead, Step};

/// Bytes read at a time (grown for a longer request).
const READ_SIZE: usize = 8 * 1024;
/// Most bytes read ahead of the request in flight (pipelined requests): past this the socket
/// is not read until the answer is out.
const MAX_READ_AHEAD: usize = 64 * 1024;
/// Body frames up to this size are copied into the write buffer (one `write` for the head and
/// a stream's ready events); a longer one is written from where it is.
const COPY_FRAME: usize = 16 * 1024;
/// Ready frames are written once this many bytes are waiting (a stream whose upstream
/// sent many events at once is not gathered whole).
const FLUSH_AT: usize = 64 * 1024;
/// A write buffer grown past this (a long answer's frames) is freed after its write, so an
/// idle or slowly streaming connection holds little.
const KEEP_OUT: usize = 16 * 1024;
/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the server accepts from a caller, and how long it waits on one.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The longest request body read (`server.max_body_bytes`).
    pub max_body: usize,
    /// How long a request head may take to arrive once its first byte has (a caller that
    /// trickles a head, as a slowloris attack does, is closed after it).
    pub head_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request (`server.idle_timeout`).
    pub idle_timeout: Duration,
    /// How long one read of a request body, or one write of an answer, may wait on the caller
    /// (`server.client_timeout`): a caller that stops sending its body, or stops reading a
    /// stream, is closed after it (and the request's upstream work dropped).
    pub client_timeout: Duration,
}

impl Limits {
    /// The limits of `[server]`, and 30 s for a head (hyper's default header read timeout).
    pub fn of(server: &crate::config::ServerSettings) -> Limits {
        Limits { max_body: server.max_body_bytes, head_timeout: Duration::from_secs(30), idle_timeout: server.idle_timeout, client_timeout: server.client_timeout }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open connections finish
/// for at most `grace`.
pub async fn serve(listener: TcpListener, app: FastPath, limits: Limits, grace: Duration, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let (stop_tx, stop) = watch::channel(false);
    // Every connection holds a clone of `open`; `open_tx.closed()` resolves when all are gone.
    let (open_tx, open) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    let conn = Conn::new(tcp, app.clone(), limits, stop.clone(), open.clone());
                    tokio::spawn(conn.run());
                }
                // The peer gave up before the accept: nothing to do.
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted) => {}
                // Out of file descriptors or memory: wait for some to be freed, as axum does.
                Err(e) => {
                    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop((open, stop));
    tokio::select! {
        () = open_tx.closed() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period elapsed; closing the remaining connections"),
    }
    Ok(())
}

/// One connection.
struct Conn {
    io: TcpStream,
    /// What has been read and not yet parsed.
    buf: BytesMut,
    /// The answer's head and the body frames copied behind it, to write.
    out: Vec<u8>,
    app: FastPath,
    limits: Limits,
    /// The idle timer, made at the first wait for a next request and re-armed (not remade)
    /// for later ones, so a request costs no timer of its own.
    idle: Option<Pin<Box<Sleep>>>,
    stop: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
}

/// What reading a request's body gave.
enum ReadBody {
    Body(Bytes),
    /// Longer than the limit: not read (the connection closes after the answer).
    TooLarge,
    /// Malformed chunked coding.
    Bad(h1::WireError),
}

/// How an answer's body is delimited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 caller, length unknown).
    Close,
}

impl Conn {
    fn new(io: TcpStream, app: FastPath, limits: Limits, stop: watch::Receiver<bool>, open: watch::Receiver<()>) -> Conn {
        Conn { io, buf: BytesMut::with_capacity(READ_SIZE), out: Vec::new(), app, limits, idle: None, stop, _open: open }
    }

    async fn run(mut self) {
        if let Ok(true) = self.serve().await {
            let _ = self.serve_h2().await;
        }
        // Whatever the answers deferred (see `after_write`) runs now if no write ran it.
        after_write::drain();
    }

    /// Serves requests until the caller closes, asks to close, or a request cannot be
    /// served; `Ok(true)` when the caller speaks HTTP/2 instead.
    async fn serve(&mut self) -> io::Result<bool> {
        loop {
            let head = match self.next_head().await? {
                Next::Head(head) => head,
                Next::Bad(BadRequest(status, e)) => {
                    let err = ApiError::new(status, "invalid_request_error", None, format!("Malformed HTTP request: {e}."));
                    self.write_response(err.into_response(), false, Version::HTTP_11, true).await?;
                    return Ok(false);
                }
                Next::H2 => return Ok(true),
                Next::Closed => return Ok(false),
            };
            let RequestHead { method, uri, version, headers, body, keep_alive, expect_continue } = head;
            let mut close = !keep_alive;
            let body = match self.read_body(body, expect_continue).await? {
                ReadBody::Body(body) => Some(body),
                ReadBody::TooLarge => {
                    close = true;
                    None
                }
                ReadBody::Bad(e) => {
                    let err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, format!("Malformed HTTP request body: {e}."));
                    self.write_response(err.into_response(), false, version, true).await?;
                    return Ok(false);
                }
            };
            let head_only = method == Method::HEAD;
            let mut req = Request::new(());
            *req.method_mut() = method;
            *req.uri_mut() = uri;
            *req.version_mut() = version;
            *req.headers_mut() = headers;
            let (parts, ()) = req.into_parts();
            // The answer's future is built in place and polled here (not moved into a helper's
            // future: ~3 KB copied per request), and gone before the answer is written.
            let resp = {
                let mut answer = pin!(self.app.answer(parts, body));
                poll_fn(|cx| {
                    if let Poll::Ready(resp) = answer.as_mut().poll(cx) {
                        return Poll::Ready(Some(resp));
                    }
                    // While the answer is pending, a caller that closes drops it.
                    if poll_closed(&mut self.io, &mut self.buf, cx) {
                        return Poll::Ready(None);
                    }
                    Poll::Pending
                })
                .await
            };
            let Some(resp) = resp else {
                return Ok(false); // the caller left: the request's work was dropped
            };
            let stopping = self.stop.has_changed().unwrap_or(true);
            if !self.write_response(resp, head_only, version, close || stopping).await? || close || stopping {
                return Ok(false);
            }
        }
    }

    /// Waits for the next request's head.
    async fn next_head(&mut self) -> io::Result<Next> {
        // Once part of a head is here, the rest must come within the head timeout.
        let mut deadline = None;
        loop {
            if !self.buf.is_empty() {
                // "PRI " and on: the HTTP/2 preface so far (no HTTP/1 method is PRI).
                if self.buf.len() >= 4 && self.buf.starts_with(&H2_PREFACE[..self.buf.len().min(H2_PREFACE.len())]) {
                    if self.buf.len() >= H2_PREFACE.len() {
                        return Ok(Next::H2);
                    }
                } else {
                    match h1::parse_request_head(&mut self.buf) {
                        Ok(Some(head)) => return Ok(Next::Head(head)),
                        Ok(None) => {}
                        Err(bad) => return Ok(Next::Bad(bad)),
                    }
                }
            }
            let n = if self.buf.is_empty() {
                match self.wait_idle().await? {
                    Some(n) => n,
                    None => return Ok(Next::Closed),
                }
            } else {
                let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.limits.head_timeout);
                match tokio::time::timeout_at(deadline, read_more(&mut self.io, &mut self.buf)).await {
                    Ok(n) => n?,
                    Err(_) => return Ok(Next::Closed),
                }
            };
            if n == 0 {
                return Ok(Next::Closed);
            }
        }
    }

    /// Reads the start of the next request; `None` when the connection has been idle for the
    /// idle timeout or the server stops.
    async fn wait_idle(&mut self) -> io::Result<Option<usize>> {
        let Conn { io, buf, stop, idle, limits, .. } = self;
        let mut read = pin!(read_more(io, buf));
        let mut stopped = pin!(stop.wait_for(|s| *s));
        // When the wait began: taken only once the read has to wait (a pipelined or already
        // sent request costs no clock read).
        let mut since = None;
        poll_fn(|cx| {
            if let Poll::Ready(n) = read.as_mut().poll(cx) {
                return Poll::Ready(n.map(Some));
            }
            if stopped.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(None));
            }
            let due = *since.get_or_insert_with(tokio::time::Instant::now) + limits.idle_timeout;
            let timer = idle.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            // The timer may be set for an earlier wait's end: moved on to this one's when it
            // fires, so it fires at most once per idle period, not once per request.
            while timer.as_mut().poll(cx).is_ready() {
                if tokio::time::Instant::now() >= due {
                    return Poll::Ready(Ok(None));
                }
                timer.as_mut().reset(due);
            }
            Poll::Pending
        })
        .await
    }

    /// Reads the body `framing` announces.
    async fn read_body(&mut self, framing: RequestBody, expect_continue: bool) -> io::Result<ReadBody> {
        match framing {
            RequestBody::Length(0) => Ok(ReadBody::Body(Bytes::new())),
            RequestBody::Length(n) if n > self.limits.max_body as u64 => Ok(ReadBody::TooLarge),
            RequestBody::Length(n) => {
                let n = n as usize;
                if self.buf.len() < n {
                    self.continue_if(expect_continue).await?;
                    self.buf.reserve(n - self.buf.len());
                    while self.buf.len() < n {
                        if within(self.limits.client_timeout, read_more(&mut self.io, &mut self.buf)).await? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                }
                Ok(ReadBody::Body(self.buf.split_to(n).freeze()))
            }
            RequestBody::Chunked => {
                self.continue_if(expect_continue).await?;
                let mut decoder = h1::Chunked::default();
                let mut body = BytesMut::new();
                loop {
                    match decoder.decode(&mut self.buf) {
                        Ok(Step::Data(data)) if body.len() + data.len() > self.limits.max_body => return Ok(ReadBody::TooLarge),
                        Ok(Step::Data(data)) => body.extend_from_slice(&data),
                        Ok(Step::Done) => return Ok(ReadBody::Body(body.freeze())),
                        Ok(Step::More) => {
                            if within(self.limits.client_timeout, read_more(&mut self.io, &mut self.buf)).await? == 0 {
                                return Err(io::ErrorKind::UnexpectedEof.into());
                            }
                        }
                        Err(e) => return Ok(ReadBody::Bad(e)),
                    }
                }
            }
        }
    }

    /// Sends `100 Continue` when the caller waits for it.
    async fn continue_if(&mut self, expect_continue: bool) -> io::Result<()> {
        if expect_continue {
            within(self.limits.client_timeout, self.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")).await?;
        }
        Ok(())
    }

    /// Writes `resp`; `Ok(false)` when the connection cannot carry another request (the body
    /// failed or was cut short, or it was delimited by the close).
    async fn write_response(&mut self, resp: Response, head_only: bool, version: Version, close: bool) -> io::Result<bool> {
        let (parts, mut body) = resp.into_parts();
        let status = parts.status;
        let framing = if head_only || status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::None
        } else if let Some(n) = body.size_hint().exact() {
            Framing::Length(n)
        } else if version == Version::HTTP_11 {
            Framing::Chunked
        } else {
            Framing::Close
        };
        let close = close || framing == Framing::Close;
        self.out.clear();
        encode_head(&mut self.out, status, &parts.headers, framing, head_only.then(|| body.size_hint().exact()).flatten(), version, close);
        drop(parts);
        if framing == Framing::None {
            drop(body);
            self.write(None).await?;
            return Ok(!close);
        }
        let mut sent = 0u64;
        loop {
            let Conn { io, buf, out, .. } = self;
            let step = poll_fn(|cx| {
                loop {
                    match Pin::new(&mut body).poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => {
                            let Ok(data) = frame.into_data() else { continue }; // trailers: not sent
                            if data.is_empty() {
                                continue;
                            }
                            sent += data.len() as u64;
                            if framing == Framing::Chunked {
                                chunk_size_line(out, data.len());
                            }
                            if data.len() > COPY_FRAME {
                                return Poll::Ready(Frames::Big(data));
                            }
                            out.extend_from_slice(&data);
                            if framing == Framing::Chunked {
                                out.extend_from_slice(b"\r\n");
                            }
                            if out.len() >= FLUSH_AT {
                                return Poll::Ready(Frames::Ready);
                            }
                        }
                        Poll::Ready(Some(Err(_))) => return Poll::Ready(Frames::Failed),
                        Poll::Ready(None) => return Poll::Ready(Frames::End),
                        // Write what is ready; while nothing is, watch for the caller leaving.
                        Poll::Pending if !out.is_empty() => return Poll::Ready(Frames::Ready),
                        Poll::Pending if poll_closed(io, buf, cx) => return Poll::Ready(Frames::Failed),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            })
            .await;
            if let Framing::Length(n) = framing
                && sent > n
            {
                return Err(io::Error::other("response body longer than its length"));
            }
            match step {
                Frames::Ready => self.write(None).await?,
                Frames::Big(data) => self.write(Some((&data, framing == Framing::Chunked))).await?,
                Frames::End => {
                    if framing == Framing::Chunked {
                        self.out.extend_from_slice(b"0\r\n\r\n");
                    }
                    drop(body); // an `AfterWrite` body defers its work to after this write
                    self.write(None).await?;
                    return Ok(!close && framing.is_complete(sent));
                }
                // A failed body ends the connection without a clean end, so the caller sees
                // the answer cut short.
                Frames::Failed => {
                    self.write(None).await?;
                    return Ok(false);
                }
            }
        }
    }

    /// Writes `out` and then `big` (with the CRLF that ends a chunk when the flag is set), and
    /// runs the work deferred to after a write.
    async fn write(&mut self, big: Option<(&Bytes, bool)>) -> io::Result<()> {
        let parts = match big {
            None => [&self.out[..], b"", b""],
            Some((data, crlf)) => [&self.out[..], &data[..], if crlf { b"\r\n" } else { b"" }],
        };
        let r = write_all_vectored(&mut self.io, parts, self.limits.client_timeout).await;
        self.out.clear();
        if self.out.capacity() > KEEP_OUT {
            self.out = Vec::new();
        }
        after_write::drain();
        r
    }

    /// Hands the connection, its preface read, to hyper's HTTP/2 server. It is closed
    /// (gracefully: GOAWAY, then the streams in flight finish) when the server stops, or when
    /// no request was in flight or began for a whole idle timeout (so after one to two of
    /// them).
    async fn serve_h2(self) -> io::Result<()> {
        let Conn { io, buf, app, limits, mut stop, _open, .. } = self;
        let activity = Arc::new(Activity::default());
        let seen = activity.clone();
        let service = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
            let guard = InFlight::begin(&seen);
            let answer = app.clone().oneshot(req.map(Body::new));
            async move {
                let resp = answer.await?;
                Ok::<_, std::convert::Infallible>(resp.map(|body| Body::new(Tracked { body, _in_flight: guard })))
            }
        });
        let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(hyper_util::rt::TokioIo::new(Prefixed { read: buf.freeze(), io }), hyper_util::service::TowerToHyperService::new(service));
        let mut conn = pin!(conn);
        let mut started = 0;
        loop {
            tokio::select! {
                r = conn.as_mut() => return r.map_err(io::Error::other),
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(limits.idle_timeout) => {
                    let now = activity.started.load(Ordering::Relaxed);
                    if now == started && activity.active.load(Ordering::Relaxed) == 0 {
                        break;
                    }
                    started = now;
                }
            }
        }
        conn.as_mut().graceful_shutdown();
        conn.await.map_err(io::Error::other)
    }
}

/// The requests of an HTTP/2 connection: begun, and in flight (until the answer's body is
/// done or dropped).
#[derive(Default)]
struct Activity {
    started: AtomicU64,
    active: AtomicUsize,
}

/// One HTTP/2 request in flight.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> InFlight {
        activity.started.fetch_add(1, Ordering::Relaxed);
        activity.active.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An HTTP/2 answer's body, its request in flight until it is dropped.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

enum Next {
    Head(RequestHead),
    Bad(BadRequest),
    /// The HTTP/2 preface.
    H2,
    /// The caller closed (or the server stops) between requests.
    Closed,
}

/// What polling an answer's body gave.
enum Frames {
    /// Frames copied into the write buffer; none ready after them.
    Ready,
    /// A frame too long to copy, its chunk-size line (if chunked) in the write buffer.
    Big(Bytes),
    End,
    Failed,
}

impl Framing {
    /// Whether `sent` bytes complete a body of this framing.
    fn is_complete(self, sent: u64) -> bool {
        match self {
            Framing::Length(n) => sent == n,
            Framing::None | Framing::Chunked => true,
            Framing::Close => false,
        }
    }
}

/// `io` (one read or write), failed with `TimedOut` once it has waited `limit` on the caller
/// (the timer is made only when it has to wait: a read or write that is ready at once costs
/// none).
async fn within<T>(limit: Duration, io: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    let mut io = pin!(io);
    let mut timer = pin!(None::<Sleep>);
    poll_fn(|cx| {
        if let Poll::Ready(r) = io.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if timer.is_none() {
            timer.set(Some(tokio::time::sleep(limit)));
        }
        match timer.as_mut().as_pin_mut().map(|t| t.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the caller did not keep up"))),
            _ => Poll::Pending,
        }
    })
    .await
}

/// Reads into `buf` (at least [`READ_SIZE`] free); the bytes read, 0 at the end.
async fn read_more(io: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        buf.reserve(READ_SIZE);
    }
    tokio::io::AsyncReadExt::read_buf(io, buf).await
}

/// Polls the socket while a request is in flight: reads what the caller sends ahead into
/// `buf` (at most [`MAX_READ_AHEAD`]); true once it has closed its side or the connection
/// failed.
fn poll_closed(io: &mut TcpStream, buf: &mut BytesMut, cx: &mut Context<'_>) -> bool {
    loop {
        if buf.len() >= MAX_READ_AHEAD {
            return false;
        }
        if buf.capacity() == buf.len() {
            buf.reserve(READ_SIZE);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return true,
            Poll::Ready(Ok(_)) => continue,
            Poll::Pending => return false,
        }
    }
}

/// Appends the status line, `headers` and the framing's headers of an answer.
fn encode_head(out: &mut Vec<u8>, status: StatusCode, headers: &http::HeaderMap, framing: Framing, head_length: Option<u64>, version: Version, close: bool) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        // The framing and the connection's fate are the server's to say.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        date::append(out);
    }
    match (framing, head_length) {
        (Framing::Length(n), _) | (Framing::None, Some(n)) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        (Framing::Chunked, _) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        (Framing::None | Framing::Close, _) => {}
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a chunk-size line for `len` bytes.
fn chunk_size_line(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Writes all of `parts`, in as few writes as the socket takes, each waiting at most `limit`
/// for the caller to make room.
async fn write_all_vectored(io: &mut TcpStream, mut parts: [&[u8]; 3], limit: Duration) -> io::Result<()> {
    while parts.iter().any(|p| !p.is_empty()) {
        let mut n = if parts[1].is_empty() && parts[2].is_empty() {
            within(limit, io.write(parts[0])).await?
        } else {
            let slices = parts.map(IoSlice::new);
            within(limit, io.write_vectored(&slices)).await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        for p in &mut parts {
            let take = n.min(p.len());
            *p = &p[take..];
            n -= take;
        }
    }
    Ok(())
}

/// A request body longer than `server.max_body_bytes`, for the router's handlers: it fails
/// when read, so they answer 413 (see [`super::respond::request_body`]).
pub(super) struct TooLarge;

impl http_body::Body for TooLarge {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        Poll::Ready(Some(Err(io::Error::other("request body over server.max_body_bytes"))))
    }
}

/// The socket with bytes already read from it in front (the HTTP/2 preface).
struct Prefixed {
    read: Bytes,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(out.remaining());
            out.put_slice(&self.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The `date` header, formatted once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }

    /// Appends `date: <IMF-fixdate>\r\n` for now.
    pub fn append(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs {
                c.1.clear();
                c.1.extend_from_slice(b"date: ");
                c.1.extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
                c.1.extend_from_slice(b"\r\n");
                c.0 = secs;
            }
            out.extend_from_slice(&c.1);
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::wire::h1::Chunked;

    /// A gateway on the mock provider (its reply echoes the last user message), served on a
    /// loopback port until the returned sender fires.
    async fn start(extra: &str) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<io::Result<()>>) {
        let reply = if extra.contains("reply") { "" } else { "reply = \"echo\"\n" };
        let toml = format!("[server]\nmax_body_bytes = 2048\n[providers.local]\nkind = \"mock\"\n{reply}{extra}\n[models.chat]\ntargets = [\"local/m\"]\n");
        let config = crate::Config::from_toml_str(&toml, "test.toml").unwrap();
        let gateway = crate::Gateway::new(config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = super::super::served(gateway.state.clone());
        let limits = Limits { max_body: 2048, head_timeout: Duration::from_millis(300), idle_timeout: Duration::from_millis(600), client_timeout: Duration::from_millis(300) };
        let served = tokio::spawn(serve(listener, app, limits, Duration::from_secs(5), async move {
            let _ = rx.await;
        }));
        (addr, tx, served)
    }

    fn chat(text: &str, stream: bool) -> String {
        serde_json::json!({"model": "chat", "stream": stream, "messages": [{"role": "user", "content": text}]}).to_string()
    }

    fn post(body: &str, extra_headers: &str) -> String {
        format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}", body.len())
    }

    /// A connection to the server at `addr` and its read buffer.
    async fn connect(addr: std::net::SocketAddr) -> (TcpStream, BytesMut) {
        (TcpStream::connect(addr).await.unwrap(), BytesMut::new())
    }

    /// The text of a stream's SSE chunks, joined.
    fn streamed_content(sse: &str) -> String {
        sse.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
            .collect()
    }

    #[derive(Debug)]
    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }

        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    /// Reads one answer (by its length or chunked coding; without either, to the close).
    async fn read_answer(tcp: &mut TcpStream, buf: &mut BytesMut, head_only: bool) -> Answer {
        let (status, headers, len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut slots);
            if let httparse::Status::Complete(n) = resp.parse(buf).unwrap() {
                let headers: Vec<(String, String)> =
                    resp.headers.iter().map(|h| (h.name.to_owned(), String::from_utf8(h.value.to_vec()).unwrap())).collect();
                break (resp.code.unwrap(), headers, n);
            }
            assert!(tcp.read_buf(buf).await.unwrap() > 0, "closed before a head");
        };
        let _ = buf.split_to(len);
        let mut answer = Answer { status, headers, body: Vec::new() };
        if head_only || status == 100 || status == 204 {
            return answer;
        }
        if answer.header("transfer-encoding") == Some("chunked") {
            let mut decoder = Chunked::default();
            loop {
                match decoder.decode(buf).unwrap() {
                    Step::Data(d) => answer.body.extend_from_slice(&d),
                    Step::Done => return answer,
                    Step::More => assert!(tcp.read_buf(buf).await.unwrap() > 0, "closed inside a chunked body"),
                }
            }
        }
        match answer.header("content-length").map(|v| v.parse::<usize>().unwrap()) {
            Some(n) => {
                while buf.len() < n {
                    assert!(tcp.read_buf(buf).await.unwrap() > 0, "closed inside a body");
                }
                answer.body = buf.split_to(n).to_vec();
            }
            None => while tcp.read_buf(buf).await.unwrap() > 0 {},
        }
        if answer.body.is_empty() {
            answer.body = std::mem::take(buf).to_vec();
        }
        answer
    }

    /// Whether the server closed the connection (nothing more to read).
    async fn closed(tcp: &mut TcpStream) -> bool {
        let mut rest = [0u8; 64];
        matches!(tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut rest)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    #[tokio::test]
    async fn keep_alive_and_pipelined_requests_are_answered_in_order() {
        let (addr, _stop, _) = start("").await;
        let (mut tcp, mut buf) = connect(addr).await;
        // Two requests in one write, then a third on the same connection.
        let two = format!("{}{}", post(&chat("first", false), ""), post(&chat("second", false), ""));
        tcp.write_all(two.as_bytes()).await.unwrap();
        for expected in ["first", "second"] {
            let a = read_answer(&mut tcp, &mut buf, false).await;
            assert_eq!(a.status, 200);
            assert_eq!(a.json()["choices"][0]["message"]["content"], expected);
            assert_eq!(a.header("content-type"), Some("application/json"));
            assert!(a.header("date").is_some_and(|d| d.ends_with(" GMT")), "{a:?}");
            assert!(a.header("x-request-id").is_some());
            assert_eq!(a.header("connection"), None);
        }
        tcp.write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let a = read_answer(&mut tcp, &mut buf, false).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["data"][0]["id"], "chat");
    }

    #[tokio::test]
    async fn request_bodies_arrive_in_pieces_with_a_length_or_chunked() {
        let (addr, _stop, _) = start("").await;
        let (mut tcp, mut buf) = connect(addr).await;
        let body = chat("in pieces", false);
        let req = post(&body, "");
        for piece in req.as_bytes().chunks(7) {
            tcp.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        let a = read_answer(&mut tcp, &mut buf, false).await;
        assert_eq!(a.json()["choices"][0]["message"]["content"], "in pieces");

        let body = chat("chunked", false);
        let (one, two) = body.split_at(10);
        let req = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{one}\r\n{:x};ext=1\r\n{two}\r\n0\r\nx-trailer: y\r\n\r\n", one.len(), two.len());
        tcp.write_all(req.as_bytes()).await.unwrap();
        let a = read_answer(&mut tcp, &mut buf, false).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.json()["choices"][0]["message"]["content"], "chunked");
    }

    #[tokio::test]
    async fn expect_100_continue_is_answered_before_the_body_is_sent() {
        let (addr, _stop, _) = start("").await;
        let (mut tcp, mut buf) = connect(addr).await;
        let body = chat("after continue", false);
        let req = post(&body, "expect: 100-continue\r\n");
        let head_len = req.len() - body.len();
        tcp.write_all(&req.as_bytes()[..head_len]).await.unwrap();
        let interim = read_answer(&mut tcp, &mut buf, false).await;
        assert_eq!(interim.status, 100);
        tcp.write_all(body.as_bytes()).await.unwrap();
        let a = read_answer(&mut tcp, &mut buf, false).await;
        assert_eq!(a.json()["choices"][0]["message"]["content"], "after continue");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_unread_and_the_connection_closed() {
        let (addr, _stop, _) = start("").await;
        for chunked in [false, true] {
            let (mut tcp, mut buf) = connect(addr).await;
            let body = chat(&"x".repeat(3000), false);
            let req = if chunked {
                format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
            } else {
                post(&body, "")
            };
            tcp.write_all(req.as_bytes()).await.unwrap();
            let a = read_answer(&mut tcp, &mut buf, false).await;
            assert_eq!(a.status, 413, "{a:?}");
            assert_eq!(a.json()["error"]["type"], "invalid_request_error");
            assert_eq!(a.header("connection"), Some("close"));
            assert!(closed(&mut tcp).await);
        }
    }

    #[tokio::test]
    async fn malformed_requests_get_a_json_400_and_the_connection_closes() {
        let (addr, _stop, _) = start("").await;
        for bad in [
            "GARBAGE\r\n\r\n".to_owned(),
            "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello".to_owned(),
            "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n".to_owned(),
            "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n".to_owned(),
            "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_owned(),
        ] {
            let (mut tcp, mut buf) = connect(addr).await;
            tcp.write_all(bad.as_bytes()).await.unwrap();
            let a = read_answer(&mut tcp, &mut buf, false).await;
            assert_eq!(a.status, 400, "{bad:?}: {a:?}");
            assert!(a.json()["error"]["message"].as_str().unwrap().starts_with("Malformed HTTP request"), "{a:?}");
            assert_eq!(a.header("connection"), Some("close"));
            assert!(closed(&mut tcp).await, "{bad:?}");
        }
        let (mut tcp, mut buf) = connect(addr).await;
        let huge = format!("GET /health HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(70 * 1024));
        tcp.write_all(huge.as_bytes()).await.unwrap();
        assert_eq!(read_answer(&mut tcp, &mut buf, false).await.status, 431);
    }

    #[tokio::test]
    async fn a_head_that_trickles_in_is_cut_off_at_the_head_timeout() {
        let (addr, _stop, _) = start("").await;
        // In pieces, each well inside the timeout, all within it: served.
        let (mut tcp, mut buf) = connect(addr).await;
        for piece in ["GET /health HTTP/1.1\r\n", "host: x\r\n", "\r\n"] {
            tcp.write_all(piece.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(read_answer(&mut tcp, &mut buf, false).await.status, 200);
        // Idle between requests is not a head in progress: still open after the timeout.
        tokio::time::sleep(Duration::from_millis(400)).await;
        tcp.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert_eq!(read_answer(&mut tcp, &mut buf, false).await.status, 200);
        // A head begun and not finished within the timeout: closed.
        tcp.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        let started = std::time::Instant::now();
        assert!(closed(&mut tcp).await);
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let (addr, _stop, _) = start("").await;
        let (mut tcp, mut buf) = connect(addr).await;
        // Requests 400 ms apart, 1.6 s in all (past the 600 ms timeout): each wait is its own.
        for _ in 0..4 {
            tcp.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
            assert_eq!(read_answer(&mut tcp, &mut buf, false).await.status, 200);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        // Then idle: closed once 600 ms have passed since the last answer.
        let waited = std::time::Instant::now();
        assert!(closed(&mut tcp).await);
        let idle = waited.elapsed() + Duration::from_millis(400);
        assert!(idle >= Duration::from_millis(550) && idle < Duration::from_millis(1500), "closed after {idle:?} idle");
    }

    #[tokio::test]
    async fn a_caller_that_stalls_its_body_is_closed_after_the_client_timeout() {
        let (addr, _stop, _) = start("").await;
        let body = chat("slow", false);
        let head = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", body.len());
        // A body in pieces 200 ms apart (600 ms in all, past the 300 ms timeout): each read
        // waits less than the timeout, so it is served.
        let (mut tcp, mut buf) = connect(addr).await;
        tcp.write_all(head.as_bytes()).await.unwrap();
        for piece in body.as_bytes().chunks(body.len() / 3 + 1) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tcp.write_all(piece).await.unwrap();
        }
        let a = read_answer(&mut tcp, &mut buf, false).await;
        assert_eq!(a.json()["choices"][0]["message"]["content"], "slow");
        // A body that stops coming: closed, unanswered.
        let (mut tcp, _) = connect(addr).await;
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&body.as_bytes()[..10]).await.unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let end = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
        assert!(matches!(end, Ok(Ok(0)) | Ok(Err(_))), "still open: {end:?}");
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_caller_that_stops_reading_is_closed_after_the_client_timeout() {
        // An answer of 16 MB, more than the socket buffers on both sides hold.
        let reply = "x".repeat(16 << 20);
        let (addr, _stop, _) = start(&format!("reply = \"{reply}\"")).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut tcp = socket.connect(addr).await.unwrap();
        tcp.write_all(post(&chat("hi", false), "").as_bytes()).await.unwrap();
        // The answer's first bytes (it is being written), then nothing read for a while: the
        // server's write waits past the timeout and gives up.
        let mut got = vec![0; 1024];
        let n = tcp.read(&mut got).await.unwrap();
        got.truncate(n);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let end = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got)).await;
        assert!(matches!(end, Ok(Ok(_)) | Ok(Err(_))), "the connection stayed open");
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(got.len() < reply.len(), "the whole answer arrived ({} bytes)", got.len());
    }

    #[tokio::test]
    async fn http_1_0_and_connection_close_end_the_connection_after_the_answer() {
        let (addr, _stop, _) = start("").await;
        for (req, keep) in [
            ("GET /v1/models HTTP/1.0\r\n\r\n", false),
            ("GET /v1/models HTTP/1.1\r\nconnection: close\r\n\r\n", false),
            ("GET /v1/models HTTP/1.0\r\nconnection: keep-alive\r\n\r\n", true),
        ] {
            let (mut tcp, mut buf) = connect(addr).await;
            tcp.write_all(req.as_bytes()).await.unwrap();
            let a = read_answer(&mut tcp, &mut buf, false).await;
            assert_eq!(a.status, 200);
            assert_eq!(a.json()["object"], "list");
            if keep {
                assert_eq!(a.header("connection"), Some("keep-alive"));
                tcp.write_all(req.as_bytes()).await.unwrap();
                assert_eq!(read_answer(&mut tcp, &mut buf, false).await.status, 200);
            } else {
                assert_eq!(a.header("connection"), Some("close"));
                assert!(closed(&mut tcp).await, "{req:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_stream_to_an_http_1_0_caller_ends_with_the_connection() {
        let (addr, _stop, _) = start("").await;
        let (mut tcp, mut buf) = connect(addr).await;
        let body = chat("old client", true);
        let req = format!("POST /v1/chat/completions HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        tcp.write_all(req.as_bytes()).await.unwrap();
        let a = read_answer(&mut tcp, &mut buf, false).await;
        assert_eq!(a.status, 200);
        assert_eq!((a.header("transfer-encoding"), a.header("content-length")), (None, None), "{a:?}");
        assert_eq!(a.header("connection"), Some("close"));
        let text = String::from_utf8(a.body).unwrap();
        assert!(text.contains("\"old \"") && text.contains("\"client\"") && text.ends_with("data: [DONE]\n\n"), "{text}");
    }

    #[tokio::test]
    async fn streams_are_chunked_and_head_requests_get_no_body() {
        let (addr, _stop, _) = start("").await;
        let (mut tcp, mut buf) = connect(addr).await;
        tcp.write_all(post(&chat("one two three", true), "").as_bytes()).await.unwrap();
        let a = read_answer(&mut tcp, &mut buf, false).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("transfer-encoding"), Some("chunked"));
        assert_eq!(a.header("content-type"), Some("text/event-stream"));
        let text = String::from_utf8(a.body).unwrap();
        assert!(text.starts_with("data: {") && text.ends_with("data: [DONE]\n\n"), "{text}");
        let content = streamed_content(&text);
        assert_eq!(content, "one two three");

        tcp.write_all(b"HEAD /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let a = read_answer(&mut tcp, &mut buf, true).await;
        assert_eq!(a.status, 200);
        tcp.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let a = read_answer(&mut tcp, &mut buf, false).await;
        assert_eq!(a.status, 200, "the HEAD answer left no body bytes behind");
    }

    #[tokio::test]
    async fn long_answers_and_streams_of_many_ready_events_arrive_whole() {
        let reply = "word ".repeat(8000);
        let (addr, _stop, _) = start(&format!("reply = \"{reply}\"")).await;
        let (mut tcp, mut buf) = connect(addr).await;
        // One answer of 40 KB: a frame written from where it is, not copied.
        tcp.write_all(post(&chat("hi", false), "").as_bytes()).await.unwrap();
        let a = read_answer(&mut tcp, &mut buf, false).await;
        assert!(a.body.len() > COPY_FRAME);
        assert_eq!(a.json()["choices"][0]["message"]["content"], reply.as_str());
        // 8,000 events ready at once: written in several writes of at most ~FLUSH_AT.
        tcp.write_all(post(&chat("hi", true), "").as_bytes()).await.unwrap();
        let a = read_answer(&mut tcp, &mut buf, false).await;
        let text = String::from_utf8(a.body).unwrap();
        let content = streamed_content(&text);
        assert_eq!(content, reply);
        // The connection is still good for the next request.
        tcp.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert_eq!(read_answer(&mut tcp, &mut buf, false).await.status, 200);
    }

    #[tokio::test]
    async fn shutdown_finishes_the_answer_in_flight_then_closes() {
        let (addr, stop, served) = start("latency = \"300ms\"").await;
        let mut busy = TcpStream::connect(addr).await.unwrap();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut buf = BytesMut::new();
        busy.write_all(post(&chat("last one", false), "").as_bytes()).await.unwrap();
        idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut idle_buf = BytesMut::new();
        assert_eq!(read_answer(&mut idle, &mut idle_buf, false).await.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(()).unwrap();
        assert!(closed(&mut idle).await, "an idle connection closes at once");
        let a = read_answer(&mut busy, &mut buf, false).await;
        assert_eq!(a.json()["choices"][0]["message"]["content"], "last one");
        assert_eq!(a.header("connection"), Some("close"));
        assert!(closed(&mut busy).await);
        tokio::time::timeout(Duration::from_secs(5), served).await.unwrap().unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
    }

    #[tokio::test]
    async fn http2_with_prior_knowledge_is_served() {
        let (addr, _stop, _) = start("").await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(chat("over h2", false))))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), Version::HTTP_2);
        let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["choices"][0]["message"]["content"], "over h2");
    }

    #[tokio::test]
    async fn an_http2_connection_outlives_a_long_request_and_closes_once_idle() {
        // Answers take 1.3 s, more than two 600 ms idle timeouts: a request in flight keeps
        // the connection open for the next one.
        let (addr, _stop, _) = start("latency = \"1300ms\"").await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
        let conn = tokio::spawn(conn);
        for _ in 0..2 {
            let req = Request::post(format!("http://{addr}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(Bytes::from(chat("slow", false))))
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
        }
        // Then idle: the server ends the connection within two idle timeouts.
        let idle = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), conn).await.expect("the connection stayed open").unwrap().unwrap();
        assert!(idle.elapsed() < Duration::from_millis(1500), "{:?}", idle.elapsed());
    }

    #[test]
    fn chunk_size_lines_are_lower_case_hex() {
        for (len, line) in [(1, "1\r\n"), (15, "f\r\n"), (16, "10\r\n"), (4096, "1000\r\n"), (0xabcdef, "abcdef\r\n")] {
            let mut out = Vec::new();
            chunk_size_line(&mut out, len);
            assert_eq!(String::from_utf8(out).unwrap(), line);
        }
    }
}
