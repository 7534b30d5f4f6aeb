//! The server: listener, connections and the state shared with the handlers.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::script::{Script, Step};
use crate::{handler, ids, wire};

/// How many chat requests [`FakeUpstream::recorded`] keeps.
const RECORD_LIMIT: usize = 1000;

/// A chat request as the fake upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The parsed JSON body; for a body that is not JSON, its (lossily decoded) text as a
    /// JSON string.
    pub body: serde_json::Value,
    pub headers: http::HeaderMap,
    /// The request's path and query, e.g. `/v1/chat/completions`.
    pub uri: String,
    /// When the request's body had been read.
    pub at: Instant,
}

/// A running fake upstream on loopback. Dropping it (or calling [`FakeUpstream::shutdown`])
/// stops the listener and closes every connection.
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropping the sender tells the accept loop and every connection to stop.
    _stop: watch::Sender<()>,
}

impl FakeUpstream {
    /// Starts serving `script` on `127.0.0.1` with an ephemeral port.
    ///
    /// # Panics
    /// If no loopback port can be bound, or outside a Tokio runtime.
    pub async fn start(script: Script) -> FakeUpstream {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        FakeUpstream::start_on(addr, script)
            .await
            .expect("binding a loopback port for the fake upstream")
    }

    /// Starts serving `script` on `addr`.
    pub async fn start_on(addr: SocketAddr, script: Script) -> io::Result<FakeUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(script));
        let (stop, stopped) = watch::channel(());
        tokio::spawn(accept_loop(listener, shared.clone(), stopped));
        Ok(FakeUpstream {
            addr,
            shared,
            _stop: stop,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Chat-completion requests received so far (malformed ones included).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Chat requests whose client went away before the response (or its body) was complete.
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::Relaxed)
    }

    /// Chat responses sent to the end (error statuses included; aborted and reset ones not).
    pub fn completed(&self) -> usize {
        self.shared.completed.load(Ordering::Relaxed)
    }

    /// The most recent chat request.
    pub fn last_request(&self) -> Option<Recorded> {
        self.shared.recorded().back().cloned()
    }

    /// The last (up to 1000) chat requests, oldest first.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared.recorded().iter().cloned().collect()
    }

    /// Appends `step` to the script's queue.
    pub fn push(&self, step: Step) {
        self.shared.steps().queue.push_back(step);
    }

    /// Replaces the step used once the queue is exhausted.
    pub fn set_default(&self, step: Step) {
        self.shared.steps().default = Arc::new(step);
    }

    /// Sets the status of `GET /v1/models` (and `/models`): 200 answers the model list, any
    /// other status an OpenAI-style error body. For health-check tests.
    pub fn set_models_status(&self, status: u16) {
        self.shared.models_status.store(status, Ordering::Relaxed);
    }

    /// `GET /v1/models` requests received so far.
    pub fn models_requests(&self) -> usize {
        self.shared.models_requests.load(Ordering::Relaxed)
    }

    /// The headers of the most recent `GET /v1/models` request.
    pub fn last_models_headers(&self) -> Option<http::HeaderMap> {
        self.shared.models_headers.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Headers added to every chat response from now on (e.g. OpenAI's
    /// `x-ratelimit-*`), replacing any set before.
    pub fn set_response_headers(&self, headers: &[(&str, &str)]) {
        let parsed = headers
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_bytes(k.as_bytes()).expect("a header name"),
                    http::HeaderValue::from_str(v).expect("a header value"),
                )
            })
            .collect();
        *self.shared.response_headers.lock().unwrap_or_else(PoisonError::into_inner) = parsed;
    }

    /// Stops the server (the same as dropping it).
    pub fn shutdown(self) {}
}

impl std::fmt::Debug for FakeUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeUpstream")
            .field("addr", &self.addr)
            .field("requests", &self.requests())
            .field("completed", &self.completed())
            .field("cancelled", &self.cancelled())
            .finish_non_exhaustive()
    }
}

/// The script's queue and default step.
pub(crate) struct Steps {
    queue: VecDeque<Step>,
    /// Shared so that taking it costs no deep clone.
    default: Arc<Step>,
}

/// Immutable per-server settings.
pub(crate) struct Config {
    pub x_groq: bool,
    pub finish_reason: String,
    pub record: bool,
    pub fingerprint: String,
    pub models_body: Bytes,
}

/// State shared by the [`FakeUpstream`] handle and the connection tasks. No lock is ever held
/// across an await.
pub(crate) struct Shared {
    requests: AtomicUsize,
    cancelled: AtomicUsize,
    completed: AtomicUsize,
    steps: Mutex<Steps>,
    recorded: Mutex<VecDeque<Recorded>>,
    /// Status of `GET /v1/models` (200: the list).
    pub models_status: AtomicU16,
    pub models_requests: AtomicUsize,
    pub models_headers: Mutex<Option<http::HeaderMap>>,
    /// Added to chat responses.
    pub response_headers: Mutex<Vec<(http::HeaderName, http::HeaderValue)>>,
    pub config: Config,
}

impl Shared {
    fn new(script: Script) -> Shared {
        Shared {
            requests: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            steps: Mutex::new(Steps {
                queue: script.queue,
                default: Arc::new(script.default),
            }),
            recorded: Mutex::new(VecDeque::new()),
            models_status: AtomicU16::new(200),
            models_requests: AtomicUsize::new(0),
            models_headers: Mutex::new(None),
            response_headers: Mutex::new(Vec::new()),
            config: Config {
                x_groq: script.x_groq,
                finish_reason: script.finish_reason,
                record: script.record,
                fingerprint: if crate::stamp::enabled() { crate::stamp::PLACEHOLDER.to_owned() } else { ids::fingerprint() },
                models_body: wire::models_body(),
            },
        }
    }

    fn steps(&self) -> MutexGuard<'_, Steps> {
        self.steps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn recorded(&self) -> MutexGuard<'_, VecDeque<Recorded>> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The step for the next chat request: the head of the queue, else the default.
    pub(crate) fn next_step(&self) -> Arc<Step> {
        let mut steps = self.steps();
        match steps.queue.pop_front() {
            Some(step) => Arc::new(step),
            None => steps.default.clone(),
        }
    }

    /// Keeps a chat request for [`FakeUpstream::recorded`], if recording is on.
    pub(crate) fn record(&self, body: serde_json::Value, headers: http::HeaderMap, uri: String) {
        if !self.config.record {
            return;
        }
        let request = Recorded {
            body,
            headers,
            uri,
            at: Instant::now(),
        };
        let mut recorded = self.recorded();
        if recorded.len() == RECORD_LIMIT {
            recorded.pop_front();
        }
        recorded.push_back(request);
    }

    /// A `GET /v1/models` request: counts it, keeps its headers and returns the status to
    /// answer.
    pub(crate) fn models_request(&self, headers: http::HeaderMap) -> u16 {
        self.models_requests.fetch_add(1, Ordering::Relaxed);
        *self.models_headers.lock().unwrap_or_else(PoisonError::into_inner) = Some(headers);
        self.models_status.load(Ordering::Relaxed)
    }

    /// Adds the configured extra headers to a chat response.
    pub(crate) fn add_response_headers(&self, headers: &mut http::HeaderMap) {
        for (k, v) in self.response_headers.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            headers.insert(k.clone(), v.clone());
        }
    }

    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_completed(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Per-connection state handed to every request on it.
pub(crate) struct Connection {
    pub shared: Arc<Shared>,
    /// Set by [`Step::Reset`]: close the socket with a TCP reset rather than a FIN.
    pub reset: AtomicBool,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                // Best effort: a socket that refuses the option still works.
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, shared.clone(), stop.clone()));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, mut stop: watch::Receiver<()>) {
    let conn = Arc::new(Connection {
        shared,
        reset: AtomicBool::new(false),
    });
    let io = TokioIo::new(ConnIo {
        stream,
        conn: conn.clone(),
    });
    let service = service_fn(move |request| handler::handle(conn.clone(), request));
    // hyper notices a client that hangs up mid-request (half-close is off) and then drops the
    // in-flight service future and response body, which is how cancellations get counted.
    let serving = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(io, service);
    tokio::select! {
        _ = serving => {}
        _ = stop.changed() => {}
    }
}

/// The accepted socket; on drop after [`Step::Reset`] it sets `SO_LINGER` to zero so that
/// closing it sends a TCP reset.
struct ConnIo {
    stream: TcpStream,
    conn: Arc<Connection>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.conn.reset.load(Ordering::Relaxed) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
