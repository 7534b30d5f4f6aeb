//! The HTTP plumbing shared by adapters that call an upstream over HTTP: a pooled client with
//! TCP_NODELAY and a connect timeout, body reads bounded by an idle timeout, and error bodies
//! turned into [`UpstreamStatus`] without leaking secrets.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::{ProviderError, TimeoutKind, UpstreamStatus};

type PoolClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Most server threads a process runs (see [`crate::ingress::serve_threads`]).
pub const MAX_WORKERS: usize = 256;

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The connection pool of the active health checks, apart from every server thread's.
pub const HEALTH_POOL: usize = MAX_WORKERS;

/// Marks the current thread as server thread `index`: upstream requests made on it use that
/// thread's own connection pool. Threads never marked share pool 0.
pub fn set_worker_index(index: usize) {
    WORKER.with(|w| w.set(index % MAX_WORKERS));
}

/// Runs `fut` with its upstream requests on pool `index` (e.g. [`HEALTH_POOL`]), whichever
/// thread polls it: the pool index is swapped in for each poll and restored after.
pub fn on_pool<F: std::future::Future>(index: usize, fut: F) -> impl std::future::Future<Output = F::Output> {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(move |cx| {
        let before = WORKER.with(|w| w.replace(index));
        let out = fut.as_mut().poll(cx);
        WORKER.with(|w| w.set(before));
        out
    })
}

/// A pooled HTTP client with one connection pool per server thread. With one runtime per
/// thread, a request, its pooled connection and that connection's task all stay on one thread:
/// no cross-thread hand-off (and wake-up) per request. Plain-HTTP upstreams use our own
/// HTTP/1.1 pool ([`super::pool`]); `https://` ones hyper-util's client (TLS, HTTP/2 by ALPN).
pub struct HttpClient {
    pools: Vec<std::sync::OnceLock<PoolClient>>,
    h1: Vec<std::sync::OnceLock<std::sync::Arc<super::pool::H1Pool>>>,
    connect_timeout: Duration,
    /// The `Host` header of the first plain-http authority requested (an adapter calls one).
    host: std::sync::OnceLock<(http::uri::Authority, HeaderValue)>,
}

impl HttpClient {
    /// Sends a request on the current thread's pool.
    pub async fn send(&self, mut req: http::Request<Full<Bytes>>) -> Result<http::Response<UpstreamBody>, ProviderError> {
        let index = WORKER.with(std::cell::Cell::get);
        if req.uri().scheme() == Some(&http::uri::Scheme::HTTP) {
            if let Some(host) = self.host_header(req.uri()) {
                req.headers_mut().entry(http::header::HOST).or_insert(host);
            }
            let resp = self.h1[index].get_or_init(Default::default).send(req, self.settings()).await?;
            return Ok(resp.map(UpstreamBody::H1));
        }
        let resp = self.pools[index].get_or_init(|| pool_client(self.connect_timeout)).request(req).await.map_err(client_error)?;
        Ok(resp.map(UpstreamBody::Hyper))
    }

    /// The `Host` header for an `http://` URI, computed once for the first authority (an
    /// adapter calls one), anew for any other.
    fn host_header(&self, uri: &http::Uri) -> Option<HeaderValue> {
        let authority = uri.authority()?;
        let cached = self.host.get_or_init(|| (authority.clone(), host_value(authority).unwrap_or_else(|| HeaderValue::from_static(""))));
        if cached.0 == *authority && !cached.1.is_empty() {
            return Some(cached.1.clone());
        }
        host_value(authority)
    }

    /// Sends `body` to the fixed endpoint `post` on the current thread's pool.
    pub async fn post(&self, post: &FixedPost, body: Bytes) -> Result<http::Response<UpstreamBody>, ProviderError> {
        let Some((authority, start)) = &post.h1 else {
            return self.send(post.request(body)?).await;
        };
        let index = WORKER.with(std::cell::Cell::get);
        let resp = self.h1[index].get_or_init(Default::default).post(authority, start, body, self.settings()).await?;
        Ok(resp.map(UpstreamBody::H1))
    }

    fn settings(&self) -> super::pool::Settings {
        super::pool::Settings { connect_timeout: self.connect_timeout, keepalive: KEEPALIVE, idle: POOL_IDLE }
    }
}

/// The `Host` header for `authority` (`host[:port]`, the port only when not 80).
fn host_value(a: &http::uri::Authority) -> Option<HeaderValue> {
    let host = a.host();
    let value = match a.port().filter(|p| p.as_u16() != 80) {
        Some(port) => HeaderValue::from_str(&format!("{host}:{}", port.as_str())),
        None => HeaderValue::from_str(host),
    };
    value.ok()
}

/// A `POST` endpoint whose URL and headers are the same for every request (an adapter's chat
/// endpoint with its auth and extra headers). For a plain-HTTP upstream its HTTP/1.1 head is
/// encoded once: a request appends only its length and body, where building an
/// `http::Request` (a header map, its values cloned in and dropped again) and encoding it cost
/// several thousand instructions per request. Holds the credentials in its head: no `Debug`.
pub struct FixedPost {
    uri: http::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `http://` only: the authority and the head up to its length, `Host` included.
    h1: Option<(http::uri::Authority, Box<[u8]>)>,
}

impl FixedPost {
    pub fn new(uri: http::Uri, headers: Vec<(HeaderName, HeaderValue)>) -> FixedPost {
        let h1 = (uri.scheme() == Some(&http::uri::Scheme::HTTP)).then(|| uri.authority().cloned()).flatten().map(|authority| {
            let host = headers.iter().all(|(k, _)| k != http::header::HOST).then(|| host_value(&authority)).flatten();
            let mut start = Vec::with_capacity(256);
            let host = host.as_ref().map(|h| (&http::header::HOST, h));
            crate::wire::h1::encode_start(&http::Method::POST, &uri, headers.iter().map(|(k, v)| (k, v)).chain(host), &mut start);
            (authority, start.into_boxed_slice())
        });
        FixedPost { uri, headers, h1 }
    }

    /// The request as hyper-util's client takes it (`https://`).
    fn request(&self, body: Bytes) -> Result<http::Request<Full<Bytes>>, ProviderError> {
        let mut req = http::Request::post(self.uri.clone());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req.body(Full::new(body)).map_err(|e| ProviderError::Protocol(format!("building the request: {e}")))
    }
}

/// An upstream response body: read by our HTTP/1.1 client (`http://` upstreams) or by
/// hyper-util's (`https://`).
pub enum UpstreamBody {
    H1(super::pool::H1Body),
    Hyper(Incoming),
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    /// How the body broke off (never header values).
    type Error = crate::wire::h1::WireError;

    fn poll_frame(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpstreamBody::H1(b) => std::pin::Pin::new(b).poll_frame(cx),
            UpstreamBody::Hyper(b) => std::pin::Pin::new(b).poll_frame(cx).map_err(|e| crate::wire::h1::WireError(super::pool::error_chain(&e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H1(b) => b.is_end_stream(),
            UpstreamBody::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::H1(b) => b.size_hint(),
            UpstreamBody::Hyper(b) => b.size_hint(),
        }
    }
}

/// TCP keep-alive probes on upstream connections start after this much silence.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Idle pooled connections are closed after this, below the usual upstream keep-alive (60-75 s),
/// so the pool rarely hands out a connection the server has just closed. The pool checks every
/// `POOL_IDLE`, so an idle connection lives 50 to 100 s.
const POOL_IDLE: Duration = Duration::from_secs(50);

/// Largest non-streaming upstream body read.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// A pooled HTTP/1.1 + HTTP/2 (ALPN) client with rustls and the bundled web PKI roots; pools
/// are created on first use, per server thread.
pub fn client(connect_timeout: Duration) -> HttpClient {
    HttpClient {
        pools: (0..=HEALTH_POOL).map(|_| std::sync::OnceLock::new()).collect(),
        h1: (0..=HEALTH_POOL).map(|_| std::sync::OnceLock::new()).collect(),
        connect_timeout,
        host: std::sync::OnceLock::new(),
    }
}

fn pool_client(connect_timeout: Duration) -> PoolClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(KEEPALIVE));
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        // Without a timer hyper-util only drops an expired connection when a request finds it,
        // so after a burst the idle connections (and their buffers) stayed open for good.
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(256)
        .build(https)
}

/// Maps a client error to a [`ProviderError`] (never includes request headers).
pub fn client_error(e: hyper_util::client::legacy::Error) -> ProviderError {
    ProviderError::Connect(super::pool::error_chain(&e))
}

/// Sends `req` on `client`. A non-2xx answer becomes [`ProviderError::Status`], built by
/// `on_error` from its status, headers and (at most 1 MiB of) body; a 2xx answer is returned
/// for the adapter to read.
pub async fn send_checked(
    client: &HttpClient,
    req: http::Request<Full<Bytes>>,
    idle: Duration,
    on_error: impl FnOnce(StatusCode, &HeaderMap, &[u8]) -> UpstreamStatus,
) -> Result<(http::response::Parts, UpstreamBody), ProviderError> {
    checked(client.send(req).await?, idle, on_error).await
}

/// [`send_checked`] for a request to a [`FixedPost`] endpoint.
pub async fn post_checked(
    client: &HttpClient,
    post: &FixedPost,
    body: Bytes,
    idle: Duration,
    on_error: impl FnOnce(StatusCode, &HeaderMap, &[u8]) -> UpstreamStatus,
) -> Result<(http::response::Parts, UpstreamBody), ProviderError> {
    checked(client.post(post, body).await?, idle, on_error).await
}

async fn checked(
    resp: http::Response<UpstreamBody>,
    idle: Duration,
    on_error: impl FnOnce(StatusCode, &HeaderMap, &[u8]) -> UpstreamStatus,
) -> Result<(http::response::Parts, UpstreamBody), ProviderError> {
    let (parts, body) = resp.into_parts();
    crate::router::stats::observe_response(&parts.headers);
    if !parts.status.is_success() {
        let bytes = read_body(body, idle, 1024 * 1024).await.unwrap_or_default();
        return Err(ProviderError::Status(on_error(parts.status, &parts.headers, &bytes)));
    }
    Ok((parts, body))
}

/// A health probe's `GET`: sends `req` (its headers carry the provider's auth) and reads the
/// answer (at most 16 MiB, `idle` between frames); a non-2xx answer is an error with the
/// `secrets` redacted from its message.
pub async fn probe_get(client: &HttpClient, req: http::Request<Full<Bytes>>, idle: Duration, secrets: &[&str]) -> Result<Bytes, ProviderError> {
    let (_, body) = send_checked(client, req, idle, |status, headers, bytes| upstream_status(status, headers, bytes, secrets)).await?;
    read_body(body, idle, 16 * 1024 * 1024).await
}

/// A `GET` of `uri` with `headers` (auth first, then the provider's extra headers).
pub fn get_request<'h>(uri: http::Uri, headers: impl IntoIterator<Item = (&'h HeaderName, &'h HeaderValue)>) -> Result<http::Request<Full<Bytes>>, ProviderError> {
    let mut req = http::Request::get(uri).header(http::header::ACCEPT, HeaderValue::from_static("application/json"));
    for (k, v) in headers {
        req = req.header(k, v.clone());
    }
    req.body(Full::new(Bytes::new())).map_err(|e| ProviderError::Protocol(format!("building the request: {e}")))
}

/// Reads a whole body, failing if any gap between frames exceeds `idle`.
pub async fn read_body(mut body: UpstreamBody, idle: Duration, limit: usize) -> Result<Bytes, ProviderError> {
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(ProviderError::Timeout(TimeoutKind::Idle)),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => return Err(ProviderError::Connect(format!("reading the response body: {e}"))),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if buf.is_empty() && body.is_end_stream() {
                        return Ok(data);
                    }
                    if buf.len() + data.len() > limit {
                        return Err(ProviderError::Protocol(format!("response body larger than {limit} bytes")));
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

/// `retry-after-ms` (OpenAI) or `retry-after` (seconds or an HTTP date).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Builds an [`UpstreamStatus`] from an error response. Only the error's message, type, code
/// and param are kept; `secrets` (the provider's key) and key-like tokens are redacted.
pub fn upstream_status(status: StatusCode, headers: &HeaderMap, body: &[u8], secrets: &[&str]) -> UpstreamStatus {
    #[derive(Deserialize)]
    struct Envelope {
        error: Option<ErrorBody>,
        message: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorBody {
        Object {
            message: Option<String>,
            #[serde(rename = "type")]
            error_type: Option<String>,
            code: Option<serde_json::Value>,
            param: Option<String>,
            /// Google's canonical status name (`RESOURCE_EXHAUSTED`, ...) beside a numeric `code`.
            status: Option<serde_json::Value>,
            /// Google's error details (`google.rpc.RetryInfo`, ...).
            details: Option<serde_json::Value>,
        },
        Text(String),
    }
    let mut out = UpstreamStatus { status: status.as_u16(), retry_after: retry_after(headers), ..Default::default() };
    match crate::wire::json::from_slice::<Envelope>(body) {
        Ok(Envelope { error: Some(ErrorBody::Object { message, error_type, code, param, status: google_status, details }), .. }) => {
            out.message = message.unwrap_or_default();
            out.error_type = error_type;
            out.code = match (code, google_status) {
                // Google: `"code": 429, "status": "RESOURCE_EXHAUSTED"`; the name says more.
                (Some(serde_json::Value::Number(_)) | None, Some(serde_json::Value::String(s))) => Some(s),
                (Some(serde_json::Value::String(s)), _) => Some(s),
                (Some(other), _) => Some(other.to_string()),
                (None, _) => None,
            };
            out.param = param;
            if out.retry_after.is_none() {
                out.retry_after = details.as_ref().and_then(google_retry_delay);
            }
        }
        Ok(Envelope { error: Some(ErrorBody::Text(m)), .. }) | Ok(Envelope { error: None, message: Some(m) }) => {
            out.message = m;
        }
        _ => {
            out.message = status.canonical_reason().unwrap_or("error").to_owned();
        }
    }
    out.message = redact(&out.message, secrets);
    if out.message.chars().count() > 500 {
        out.message = out.message.chars().take(500).collect::<String>() + "…";
    }
    out.context_length = is_context_length(status, &out);
    out
}

/// The `retryDelay` of a `google.rpc.RetryInfo` error detail (a protobuf duration, `"22s"`).
fn google_retry_delay(details: &serde_json::Value) -> Option<Duration> {
    let info = details.as_array()?.iter().find(|d| {
        d.get("@type").and_then(|t| t.as_str()).is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
    })?;
    let secs: f64 = info.get("retryDelay")?.as_str()?.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn is_context_length(status: StatusCode, s: &UpstreamStatus) -> bool {
    if !(status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::PAYLOAD_TOO_LARGE) {
        return false;
    }
    if matches!(s.code.as_deref(), Some("context_length_exceeded" | "string_above_max_length")) {
        return true;
    }
    let m = s.message.to_ascii_lowercase();
    ["context length", "context_length", "context window", "maximum context", "prompt is too long", "too many tokens", "reduce the length", "input is too long",
     "exceeds the maximum number of tokens"]
        .iter()
        .any(|p| m.contains(p))
}

/// Removes the given secrets and anything that looks like an API key from `text`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if s.len() >= 6 {
            out = out.replace(s, "[REDACTED]");
        }
    }
    // Key-like tokens: sk-..., gsk_..., AIza..., long opaque strings with a key prefix.
    let mut result = String::with_capacity(out.len());
    for (i, word) in out.split(' ').enumerate() {
        if i > 0 {
            result.push(' ');
        }
        let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
        let keyish = bare.len() >= 20
            && ["sk-", "sk_", "gsk_", "AIza", "xai-", "pk-", "rk-", "key-", "Bearer"].iter().any(|p| bare.starts_with(p));
        if keyish {
            result.push_str(&word.replace(bare, "[REDACTED]"));
        } else {
            result.push_str(word);
        }
    }
    result
}

/// Headers that frame an HTTP/1.1 message or manage its connection (RFC 9112 §6, RFC 9110
/// §7.6.1): the gateway sets them per request, so a provider's extra headers may not.
const FRAMING: [&str; 7] = ["content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade"];

/// Parses `headers = { name = "value" }` extra headers.
pub fn extra_headers(map: &std::collections::BTreeMap<String, String>) -> Result<Vec<(HeaderName, HeaderValue)>, (String, String, String)> {
    map.iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                (format!("headers.{k}"), "is not a valid HTTP header name".to_owned(), "use letters, digits and '-'".to_owned())
            })?;
            if FRAMING.contains(&name.as_str()) {
                return Err((
                    format!("headers.{k}"),
                    "frames the message, which the gateway does for each request".to_owned(),
                    "remove it".to_owned(),
                ));
            }
            let value = HeaderValue::from_str(v).map_err(|_| {
                (format!("headers.{k}"), "is not a valid HTTP header value".to_owned(), "remove control characters".to_owned())
            })?;
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_headers_may_not_frame_the_message() {
        let map = |k: &str| std::collections::BTreeMap::from([(k.to_owned(), "1".to_owned())]);
        assert_eq!(extra_headers(&map("X-Title")).unwrap().len(), 1);
        for k in ["Content-Length", "transfer-encoding", "Connection", "upgrade"] {
            let (key, problem, fix) = extra_headers(&map(k)).unwrap_err();
            assert_eq!(key, format!("headers.{k}"));
            assert!(problem.contains("frames the message"), "{problem}");
            assert_eq!(fix, "remove it");
        }
    }

    fn fixed(url: &str, headers: &[(&'static str, &'static str)]) -> FixedPost {
        FixedPost::new(url.parse().unwrap(), headers.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect())
    }

    fn start(post: &FixedPost) -> Option<String> {
        post.h1.as_ref().map(|(_, start)| String::from_utf8(start.to_vec()).unwrap())
    }

    #[test]
    fn fixed_posts_encode_their_head_once_with_a_host() {
        let post = fixed("http://up:8000/v1/chat/completions?v=1", &[("content-type", "application/json"), ("authorization", "Bearer k")]);
        assert_eq!(
            start(&post).unwrap(),
            "POST /v1/chat/completions?v=1 HTTP/1.1\r\ncontent-type: application/json\r\nauthorization: Bearer k\r\nhost: up:8000\r\n"
        );
        // The default port is left out; a Host the config sets is kept, not doubled.
        assert_eq!(start(&fixed("http://up/v1/chat/completions", &[])).unwrap(), "POST /v1/chat/completions HTTP/1.1\r\nhost: up\r\n");
        assert_eq!(start(&fixed("http://up:8000/x", &[("host", "gateway.internal")])).unwrap(), "POST /x HTTP/1.1\r\nhost: gateway.internal\r\n");
        // TLS upstreams go through hyper-util's client with a built request.
        let tls = fixed("https://api.example.com/v1/chat/completions", &[("authorization", "Bearer k")]);
        assert!(tls.h1.is_none());
        let req = tls.request(Bytes::from_static(b"{}")).unwrap();
        assert_eq!(req.uri(), "https://api.example.com/v1/chat/completions");
        assert_eq!(req.headers()["authorization"], "Bearer k");
    }

    #[tokio::test]
    async fn a_fixed_post_sends_its_head_length_and_body_in_one_request() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.ends_with(b"}") {
                    let n = sock.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await.unwrap();
                seen.push(String::from_utf8(got).unwrap());
            }
            seen
        });
        let client = client(Duration::from_secs(2));
        let post = fixed(&format!("http://{addr}/v1/chat/completions"), &[("authorization", "Bearer k")]);
        for body in [&b"{\"a\":1}"[..], &b"{}"[..]] {
            let (parts, body) = post_checked(&client, &post, Bytes::from_static(body), Duration::from_secs(2), |_, _, _| unreachable!()).await.unwrap();
            assert_eq!(parts.status, 200);
            assert_eq!(read_body(body, Duration::from_secs(2), 1024).await.unwrap(), "ok");
        }
        let seen = server.await.unwrap();
        let head = format!("POST /v1/chat/completions HTTP/1.1\r\nauthorization: Bearer k\r\nhost: {addr}\r\n");
        assert_eq!(seen, [format!("{head}content-length: 7\r\n\r\n{{\"a\":1}}"), format!("{head}content-length: 2\r\n\r\n{{}}")]);
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        h.insert("retry-after", httpdate::fmt_http_date(later).parse().unwrap());
        let got = retry_after(&h).unwrap();
        assert!(got > Duration::from_secs(27) && got <= Duration::from_secs(30), "{got:?}");
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn error_bodies_are_parsed_and_redacted() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-abcdefghijklmnopqrstuvwxyz123456. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let s = upstream_status(StatusCode::UNAUTHORIZED, &HeaderMap::new(), body, &[]);
        assert_eq!(s.status, 401);
        assert_eq!(s.code.as_deref(), Some("invalid_api_key"));
        assert!(!s.message.contains("sk-abc"), "{}", s.message);
        assert!(s.message.contains("[REDACTED]"));
        let s = upstream_status(StatusCode::BAD_REQUEST, &HeaderMap::new(), b"my secret is hunter2-secret", &["hunter2-secret"]);
        assert_eq!(s.message, "Bad Request");
        assert_eq!(redact("key=hunter2-secret!", &["hunter2-secret"]), "key=[REDACTED]!");
    }

    #[test]
    fn context_length_errors_are_recognised() {
        let body = br#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        assert!(upstream_status(StatusCode::BAD_REQUEST, &HeaderMap::new(), body, &[]).context_length);
        let body = br#"{"error":{"message":"Please reduce the length of the messages or completion.","type":"invalid_request_error"}}"#;
        assert!(upstream_status(StatusCode::BAD_REQUEST, &HeaderMap::new(), body, &[]).context_length);
        let body = br#"{"error":{"message":"'messages' must contain the word 'json'","type":"invalid_request_error"}}"#;
        assert!(!upstream_status(StatusCode::BAD_REQUEST, &HeaderMap::new(), body, &[]).context_length);
        assert!(!upstream_status(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), b"context length", &[]).context_length);
        // Gemini's wording.
        let body = br#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#;
        assert!(upstream_status(StatusCode::BAD_REQUEST, &HeaderMap::new(), body, &[]).context_length);
    }

    #[test]
    fn google_errors_give_their_status_name_and_retry_delay() {
        let body = br#"{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota. Please retry in 7.5s.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
      {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7.5s"}
    ]
  }
}"#;
        let s = upstream_status(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body, &[]);
        assert_eq!(s.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(s.retry_after, Some(Duration::from_millis(7500)));
        assert!(s.message.starts_with("You exceeded your current quota"));
        // A Retry-After header wins over the detail.
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(upstream_status(StatusCode::TOO_MANY_REQUESTS, &h, body, &[]).retry_after, Some(Duration::from_secs(2)));
        // Unusual `details` / `status` shapes do not break parsing.
        let odd = br#"{"error":{"message":"m","status":5,"details":"text"}}"#;
        let s = upstream_status(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), odd, &[]);
        assert_eq!((s.message.as_str(), s.code, s.retry_after), ("m", None, None));
    }
}
