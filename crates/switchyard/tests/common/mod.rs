//! Shared helpers for the end-to-end tests: a real gateway served in-process on loopback, a
//! plain hyper client to talk to it, and SSE parsing.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use switchyard_fakes::FakeUpstream;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A distinctive provider key, asserted never to reach a client.
pub const KEY_A: &str = "sk-secret-test-key-123456789";
pub const KEY_B: &str = "sk-secret-test-key-987654321";

/// A gateway serving on an ephemeral loopback port for the rest of the test.
pub struct TestGateway {
    pub addr: SocketAddr,
    client: HttpClient,
}

/// Starts the real gateway from config text. The server task lives as long as the test's
/// runtime.
pub async fn start(toml: &str) -> TestGateway {
    let config = switchyard_core::Config::from_toml_str(toml, "test.toml").unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
    let gateway = switchyard_core::Gateway::new(config).expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway.serve(listener, std::future::pending()));
    TestGateway { addr, client: client() }
}

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `[providers.NAME]` of kind openai pointing at `base_url`.
pub fn openai_provider(name: &str, base_url: &str, api_key: &str) -> String {
    format!("[providers.{name}]\nkind = \"openai\"\nbase_url = \"{base_url}\"\napi_key = \"{api_key}\"\n")
}

/// Two fake-backed providers `a` (KEY_A) and `b` (KEY_B), alias `chat = [a/model-a, b/model-b]`,
/// the [`FAST`] settings, then `extra` (typically `[models.chat.retry]` and the like).
pub fn two_targets(a: &FakeUpstream, b: &FakeUpstream, extra: &str) -> String {
    two_targets_at(&a.base_url(), &b.base_url(), extra)
}

/// As [`two_targets`], with base URLs.
pub fn two_targets_at(a: &str, b: &str, extra: &str) -> String {
    format!(
        "{}{}\n[models.chat]\ntargets = [\"a/model-a\", \"b/model-b\"]\n{FAST}\n{extra}",
        openai_provider("a", a, KEY_A),
        openai_provider("b", b, KEY_B),
    )
}

/// One fake-backed provider `a` (KEY_A), alias `chat = [a/model-a]`, [`FAST`], then `extra`.
pub fn one_target(a: &FakeUpstream, extra: &str) -> String {
    format!("{}\n[models.chat]\ntargets = [\"a/model-a\"]\n{FAST}\n{extra}", openai_provider("a", &a.base_url(), KEY_A))
}

/// Fast top-level resilience settings for tests; tests override per alias
/// (`[models.chat.retry]`, ...).
pub const FAST: &str = r#"
[retry]
backoff_initial = "10ms"
backoff_max = "20ms"

[timeouts]
connect = "300ms"
first_byte = "2s"
idle = "1s"
total = "10s"
"#;

/// A `http://127.0.0.1:PORT/v1` where nothing listens.
pub fn dead_base_url() -> String {
    format!("http://127.0.0.1:{}/v1", free_port())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn chat_body(model: &str) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the gateway"},
        ],
    })
}

pub fn stream_body(model: &str) -> Value {
    let mut b = chat_body(model);
    b["stream"] = json!(true);
    b
}

/// A whole HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as a string; panics when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    pub fn attempts(&self) -> u32 {
        self.header("x-switchyard-attempts").parse().unwrap()
    }

    /// The `data:` payloads of an SSE body.
    pub fn events(&self) -> Vec<String> {
        sse_data(&self.body)
    }

    /// The error object of an OpenAI error body.
    pub fn error(&self) -> Value {
        let v = self.json();
        assert!(v["error"].is_object(), "not an OpenAI error: {v}");
        v["error"].clone()
    }
}

impl TestGateway {
    /// A client for a gateway already listening on `addr` (e.g. a child process).
    pub fn at(addr: SocketAddr) -> TestGateway {
        TestGateway { addr, client: client() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A POST of `body` to `/v1/chat/completions`.
    pub fn chat_request(&self, body: &Value) -> Request<Full<Bytes>> {
        self.post_request("/v1/chat/completions", Bytes::from(body.to_string()), &[])
    }

    pub fn post_request(&self, path: &str, body: Bytes, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
        let mut req = Request::post(self.url(path)).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(Full::new(body)).unwrap()
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Resp {
        let resp = tokio::time::timeout(Duration::from_secs(15), self.client.request(req))
            .await
            .expect("response head in time")
            .expect("response head");
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(15), body.collect())
            .await
            .expect("response body in time")
            .expect("response body")
            .to_bytes();
        Resp { status: parts.status, headers: parts.headers, body }
    }

    /// POSTs a chat request (streaming or not, as the body says) and reads the whole answer.
    pub async fn chat(&self, body: &Value) -> Resp {
        self.send(self.chat_request(body)).await
    }

    /// POSTs a chat request with extra headers.
    pub async fn chat_with_headers(&self, body: &Value, headers: &[(&str, &str)]) -> Resp {
        self.send(self.post_request("/v1/chat/completions", Bytes::from(body.to_string()), headers)).await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> Resp {
        self.send(self.post_request(path, Bytes::from(body.to_owned()), &[])).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        let req = Request::get(self.url(path)).body(Full::new(Bytes::new())).unwrap();
        self.send(req).await
    }

    /// Sends a chat request and returns the response head with its body still open.
    pub async fn open(&self, body: &Value) -> http::Response<Incoming> {
        self.open_request(self.chat_request(body)).await
    }

    /// Sends `req` and returns the response head with its body still open.
    pub async fn open_request(&self, req: Request<Full<Bytes>>) -> http::Response<Incoming> {
        self.client.request(req).await.expect("response head")
    }

    /// Sends a chat request and gives up (dropping it, which closes the connection) after
    /// `after`. Panics if an answer arrives first.
    pub async fn send_and_abandon(&self, body: &Value, after: Duration) {
        let r = tokio::time::timeout(after, self.client.request(self.chat_request(body))).await;
        assert!(r.is_err(), "expected no answer within {after:?}, got {r:?}");
    }
}

/// Reads `body` until at least `n` complete SSE events have arrived; returns their payloads.
pub async fn read_events(body: &mut Incoming, n: usize) -> Vec<String> {
    let mut buf = Vec::new();
    loop {
        let events = sse_data(&buf);
        if events.len() >= n {
            return events;
        }
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("an event in time")
            .expect("the stream ended early")
            .expect("a body frame");
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
}

/// The `data:` payloads of the complete events in an SSE body, in order.
pub fn sse_data(bytes: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(bytes).expect("UTF-8 event stream");
    let complete = match text.rfind("\n\n") {
        Some(end) => &text[..end + 2],
        None => return Vec::new(),
    };
    complete
        .split_terminator("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let data: Vec<&str> = e
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d)))
                .collect();
            assert!(!data.is_empty(), "an event without data: {e:?}");
            data.join("\n")
        })
        .collect()
}

/// Parses every event but a final `[DONE]` as JSON.
pub fn chunks(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("bad chunk {e:?}: {err}")))
        .collect()
}

/// The concatenated `delta.content` of stream chunks.
pub fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// Polls `condition` every 5 ms until it holds, failing after `within`.
pub async fn eventually(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts no provider key appears in `text`.
pub fn assert_no_keys(text: &str) {
    for key in [KEY_A, KEY_B] {
        assert!(!text.contains(key), "a provider API key leaked: {text}");
    }
}
