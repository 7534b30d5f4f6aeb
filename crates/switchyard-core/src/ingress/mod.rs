//! Ingress: the HTTP APIs callers talk to (OpenAI- and Anthropic-compatible), their middleware
//! and the server.

pub mod admin;
pub mod after_write;
pub mod anthropic_messages;
pub mod embeddings;
pub mod error;
pub mod models;
pub mod openai_chat;
pub mod request_id;
pub mod respond;
pub mod route;
pub mod server;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::routing::{get, post};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::config::Config;
use crate::router::Routes;
use error::ApiError;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
pub static X_MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");
pub static X_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");

/// Shared state of the HTTP handlers.
pub struct AppState {
    pub config: Config,
    pub routes: Routes,
    /// Pre-rendered `/v1/models` body.
    pub models_json: bytes::Bytes,
}

/// The request id of the current request (from the caller's `x-request-id`, or generated).
#[derive(Clone, Debug)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("-")
    }
}

/// Builds the HTTP application.
pub fn app(state: Arc<AppState>) -> Router {
    routes(state).layer(request_id::RequestIdLayer)
}

/// The application as the server runs it: [`app`], with `POST /v1/chat/completions` (and
/// `/chat/completions`) handed straight to its handler rather than through the router, whose
/// path matching, boxed route services and per-request clones cost about 5k instructions per
/// request, and with the request id passed to it as an argument rather than through the
/// request's extensions (a map allocated per request); every other request goes through the
/// request-id layer's logic and the router as before.
pub fn served(state: Arc<AppState>) -> Served {
    FastPath { router: routes(state.clone()), state }
}

/// What [`served`] builds.
pub type Served = FastPath;

/// See [`served`].
#[derive(Clone)]
pub struct FastPath {
    state: Arc<AppState>,
    router: Router,
}

impl FastPath {
    /// The answer to a request whose body the server has read (`None`: it was longer than
    /// `server.max_body_bytes`), with its `x-request-id`: `POST /v1/chat/completions` (and
    /// `/chat/completions`) straight to its handler with the body's bytes, every other request
    /// through the router. Unboxed: the server keeps this future in its connection's own (see
    /// [`server`]).
    pub fn answer(&mut self, parts: http::request::Parts, body: Option<bytes::Bytes>) -> impl Future<Output = axum::response::Response> + Send + 'static {
        use futures_util::FutureExt as _;
        crate::telemetry::note_request();
        let id = request_id::of(&parts.headers);
        let chat = parts.method == http::Method::POST && matches!(parts.uri.path(), "/v1/chat/completions" | "/chat/completions");
        let inner = if chat {
            let answer = openai_chat::answer(self.state.clone(), RequestId(id.clone()), parts, body, tokio::time::Instant::now());
            futures_util::future::Either::Left(answer.map(Ok::<_, std::convert::Infallible>))
        } else {
            let body = match body {
                Some(b) if b.is_empty() => axum::body::Body::empty(),
                Some(b) => axum::body::Body::from(b),
                None => axum::body::Body::new(server::TooLarge),
            };
            let mut req = Request::from_parts(parts, body);
            req.extensions_mut().insert(RequestId(id.clone()));
            futures_util::future::Either::Right(tower::Service::call(&mut self.router, req))
        };
        request_id::RequestIdFuture::new(inner, id).map(|r| match r {
            Ok(resp) => resp,
            Err(never) => match never {},
        })
    }
}

/// [`FastPath::answer`] as a tower service (boxed; the body read first), for hyper's HTTP/2
/// server.
impl tower::Service<Request> for FastPath {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<axum::response::Response, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let mut this = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = respond::request_body(body, this.state.config.server.max_body_bytes).await;
            Ok(this.answer(parts, body).await)
        })
    }
}

/// The routes, without the request-id layer.
fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai_chat::chat_completions))
        .route("/chat/completions", post(openai_chat::chat_completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/embeddings", post(embeddings::embeddings))
        .route("/v1/messages", post(anthropic_messages::messages))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::retrieve))
        .route("/health", get(models::health))
        .route("/ready", get(models::ready))
        .route("/admin/providers", get(admin::providers))
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("unknown_url"),
        format!("Unknown request URL: {} {}.", req.method(), req.uri().path()),
    )
}

/// A random 128-bit id as 32 hex digits.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    // One allocation that clones share: a value copied from a slice allocates again at its
    // first clone (the request's extension and the answer's header each hold one).
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf)).expect("hex digits are a valid header value")
}

/// Serves `app` (from [`served`]) on `listener` with our HTTP/1.1 server ([`server`]) until
/// `shutdown` resolves, then drains open requests and streams for at most `grace` before
/// closing them.
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Served,
    grace: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = server::Limits::of(&app.state.config.server);
    server::serve(listener, app, limits, grace, shutdown).await
}


/// Serves `app` on `addr` with `threads` server threads, each running its own single-threaded
/// runtime and its own `SO_REUSEPORT` listener (the kernel spreads connections over them), like
/// nginx's worker processes. A request is then handled start to end on one thread, with its
/// own upstream connection pool, so nothing on the hot path crosses threads. Returns once
/// `shutdown` resolves and every thread has drained (at most `grace`).
///
/// `listener` comes from [`bind_reuseport`]; the other threads' listeners are bound to its
/// address.
pub async fn serve_threads(
    listener: std::net::TcpListener,
    threads: usize,
    app: Served,
    grace: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let threads = threads.clamp(1, crate::providers::http::MAX_WORKERS);
    let bound = listener.local_addr()?;
    let mut first = Some(listener);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let std_listener = match first.take() {
            Some(l) => l,
            None => bind_reuseport(bound)?,
        };
        let app = app.clone();
        let mut stop = stop_rx.clone();
        let handle = std::thread::Builder::new().name(format!("switchyard-{index}")).spawn(move || {
            crate::providers::http::set_worker_index(index);
            // One runtime on this thread, every connection of it served by `serve_app`.
            after_write::enable_on_this_thread();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener)?;
                let signal = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                serve_app(listener, app, grace, signal).await
            })
        })?;
        handles.push(handle);
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    let joined = tokio::task::spawn_blocking(move || {
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(std::io::Error::other("a server thread panicked")))).collect::<Vec<_>>()
    })
    .await
    .map_err(std::io::Error::other)?;
    for r in joined {
        r?;
    }
    Ok(())
}

/// A non-blocking listener on `addr` with `SO_REUSEPORT` (several may share one port).
pub fn bind_reuseport(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    let std_listener = listener.into_std()?;
    std_listener.set_nonblocking(true)?;
    Ok(std_listener)
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let a = super::new_request_id();
        let b = super::new_request_id();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.len(), 32);
            assert!(id.as_bytes().iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)), "{id:?}");
        }
        assert_eq!(a.clone(), a);
    }
}
