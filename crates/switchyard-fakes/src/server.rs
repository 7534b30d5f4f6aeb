//! A small scripted HTTP/1.1 server for provider fakes whose wire formats differ from OpenAI's:
//! each POST takes the next step of a script (or the default step), is recorded, and is answered
//! by the fake's handler. Requests or response bodies dropped before they finish (the client
//! went away) are counted as cancelled.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Recorded;

pub type FakeResponse = Response<BoxBody<Bytes, io::Error>>;

/// A request as the handler sees it.
pub struct Exchange {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub json: serde_json::Value,
}

type Handler<S> = dyn Fn(Option<S>, Exchange) -> Pin<Box<dyn Future<Output = Option<FakeResponse>> + Send>> + Send + Sync;

struct Shared<S> {
    queue: Mutex<VecDeque<S>>,
    default: Mutex<S>,
    recorded: Mutex<Vec<Recorded>>,
    requests: AtomicUsize,
    cancelled: AtomicUsize,
    handler: Box<Handler<S>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running scripted server; dropping it stops it.
pub struct ScriptedServer<S> {
    addr: SocketAddr,
    shared: Arc<Shared<S>>,
    _stop: watch::Sender<()>,
}

impl<S: Clone + Send + Sync + 'static> ScriptedServer<S> {
    /// Binds 127.0.0.1:0. `handler` gets the step for a POST (`None` for other methods) and
    /// returns the response, or `None` to close the connection without one.
    pub async fn start<H, F>(queue: Vec<S>, default: S, handler: H) -> ScriptedServer<S>
    where
        H: Fn(Option<S>, Exchange) -> F + Send + Sync + 'static,
        F: Future<Output = Option<FakeResponse>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue.into()),
            default: Mutex::new(default),
            recorded: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            handler: Box::new(move |s, e| Box::pin(handler(s, e))),
        });
        let (stop, rx) = watch::channel(());
        tokio::spawn(accept(listener, shared.clone(), rx));
        ScriptedServer { addr, shared, _stop: stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// POST requests received.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests or response bodies dropped before they completed.
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        lock(&self.shared.recorded).clone()
    }

    pub fn last_request(&self) -> Option<Recorded> {
        lock(&self.shared.recorded).last().cloned()
    }

    pub fn push(&self, step: S) {
        lock(&self.shared.queue).push_back(step);
    }

    pub fn set_default(&self, step: S) {
        *lock(&self.shared.default) = step;
    }
}

async fn accept<S: Clone + Send + Sync + 'static>(listener: TcpListener, shared: Arc<Shared<S>>, mut stop: watch::Receiver<()>) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r { Ok(s) => s, Err(_) => { tokio::time::sleep(Duration::from_millis(5)).await; continue } },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { serve(shared, req).await }
            });
            let conn = http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(stream), service);
            tokio::select! { _ = conn => {}, _ = stop.changed() => {} }
        });
    }
}

/// Closes the connection without a response (hyper drops it on a service error).
#[derive(Debug)]
struct Reset;
impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset")
    }
}
impl std::error::Error for Reset {}

async fn serve<S: Clone + Send + Sync + 'static>(shared: Arc<Shared<S>>, req: Request<Incoming>) -> Result<FakeResponse, Reset> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let step = if parts.method == Method::POST {
        shared.requests.fetch_add(1, Ordering::SeqCst);
        lock(&shared.recorded).push(Recorded {
            body: json.clone(),
            headers: parts.headers.clone(),
            uri: parts.uri.path_and_query().map_or_else(String::new, |p| p.to_string()),
            at: Instant::now(),
        });
        let next = lock(&shared.queue).pop_front();
        Some(next.unwrap_or_else(|| lock(&shared.default).clone()))
    } else {
        None
    };
    let exchange = Exchange { method: parts.method, uri: parts.uri, headers: parts.headers, body, json };
    let guard = CancelGuard { shared: Some(shared.clone()) };
    let resp = (shared.handler)(step, exchange).await;
    match resp {
        None => {
            guard.disarm();
            Err(Reset)
        }
        Some(resp) => {
            guard.disarm();
            let (parts, body) = resp.into_parts();
            let tracked = Tracked { inner: body, guard: Some(CancelGuard { shared: Some(shared) }) };
            Ok(Response::from_parts(parts, BoxBody::new(tracked)))
        }
    }
}

/// Counts a cancellation when dropped while armed.
struct CancelGuard<S> {
    shared: Option<Arc<Shared<S>>>,
}

impl<S> CancelGuard<S> {
    fn disarm(mut self) {
        self.shared = None;
    }
}

impl<S> Drop for CancelGuard<S> {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A response body that counts a cancellation if dropped before its end.
struct Tracked<S> {
    inner: BoxBody<Bytes, io::Error>,
    guard: Option<CancelGuard<S>>,
}

impl<S> Body for Tracked<S> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(g) = this.guard.take() {
                    g.disarm();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                // An abort the script asked for is not a client cancellation.
                if let Some(g) = this.guard.take() {
                    g.disarm();
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// A complete response with a JSON (or other) body.
pub fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> FakeResponse {
    let body = http_body_util::Full::new(body.into()).map_err(|e: Infallible| match e {});
    let mut resp = Response::new(BoxBody::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A streamed response: each piece is sent after its delay; with `abort` the connection is
/// broken after the last piece instead of ending the body cleanly. With `stall` the body never
/// ends after the last piece.
pub fn streamed(status: StatusCode, content_type: &'static str, pieces: Vec<(Duration, Bytes)>, end: StreamEnd) -> FakeResponse {
    let body_stream = stream::iter(pieces)
        .then(|(delay, bytes)| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, io::Error>(Frame::data(bytes))
        })
        .chain(stream::once(async move {
            match end {
                StreamEnd::Clean => None,
                StreamEnd::Abort => {
                    // Give hyper time to write what was sent: an error frame makes it drop the
                    // connection at once, unsent bytes included.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Some(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "scripted mid-stream drop")))
                }
                StreamEnd::Stall => {
                    std::future::pending::<()>().await;
                    None
                }
            }
        })
        .filter_map(|x| async move { x }));
    let mut resp = Response::new(BoxBody::new(http_body_util::StreamBody::new(body_stream)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// How a streamed body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    Clean,
    Abort,
    Stall,
}
