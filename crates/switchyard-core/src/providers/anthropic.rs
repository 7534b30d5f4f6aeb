//! `kind = "anthropic"`: Anthropic's Messages API (`POST /v1/messages`).
//!
//! An OpenAI chat request is translated into a Messages request and the answer back into
//! OpenAI's shapes (see [`crate::wire::anthropic`]). A request that arrived on the
//! `/v1/messages` ingress carries the caller's own Anthropic body: it goes upstream as it is
//! (only `model` rewritten) and the answer comes back as Anthropic JSON and events, relabelled
//! with the alias, with no lossy round trip through OpenAI's shape.
//!
//! Failures the chain must see as transient: HTTP 529 `overloaded_error` (retried like 503), and
//! an `error` event in the stream before any content (the chain fails over invisibly).

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Uri};
use hyper::body::Body;
use super::http::UpstreamBody;
use serde::Deserialize;

use super::http::{FixedPost, HttpClient, MAX_BODY, client, extra_headers, get_request, post_checked, probe_get, read_body, redact, upstream_status};
use super::openai::{parse_url, secret_header};
use super::{Call, Chunk, Completion, Kind, OptionError, ProbeCall, Provider, ProviderError, Reply, Spec, UpstreamStatus, completion_probe, options};
use crate::config::ProbeKind;
#[cfg(test)]
use super::Usage;
use crate::wire::Format;
use crate::wire::anthropic::types::{ContentBlock, ErrorBody, ErrorResponse, Message, StreamEvent};
use crate::wire::anthropic::{self as wire, ToOpenAi};
use crate::wire::openai::types::ChatCompletionRequest;
use crate::wire::sse::{SseEvent, SseParser};

pub const KIND: Kind = Kind { name: "anthropic", build };

const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const DEFAULT_VERSION: &str = "2023-06-01";
const DEFAULT_MAX_TOKENS: u64 = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// `https://api.anthropic.com` by default; `/v1/messages` is appended (just `/messages` when
    /// the URL already ends in `/v1`).
    #[serde(default)]
    base_url: Option<String>,
    /// Sent as `x-api-key`.
    #[serde(default)]
    api_key: Option<String>,
    /// The `anthropic-version` header.
    #[serde(default)]
    version: Option<String>,
    /// Extra request headers (e.g. `anthropic-beta`).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// `max_tokens` for translated requests that set none (Anthropic requires one).
    #[serde(default)]
    default_max_tokens: Option<u64>,
}

pub struct Anthropic {
    base_url: String,
    /// `GET /v1/models`, for the health checks.
    models_url: Uri,
    api_key: Option<HeaderValue>,
    secret: Option<String>,
    version: HeaderValue,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// `POST {base}/v1/messages` with the headers above: `[answer, stream]`.
    posts: [FixedPost; 2],
    default_max_tokens: u64,
    client: HttpClient,
}

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

fn build(spec: &Spec<'_>) -> Result<Arc<dyn Provider>, OptionError> {
    let o: Options = options(spec.options)?;
    let base = o.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL).trim_end_matches('/').to_owned();
    let url = messages_url(&base)?;
    let models_url = models_url(&base)?;
    let version = o.version.as_deref().unwrap_or(DEFAULT_VERSION);
    let version = HeaderValue::from_str(version).map_err(|_| {
        ("version".to_owned(), "is not a valid header value".to_owned(), format!("use a date like \"{DEFAULT_VERSION}\""))
    })?;
    let default_max_tokens = o.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if default_max_tokens == 0 {
        return Err(("default_max_tokens".to_owned(), "must be at least 1".to_owned(), format!("use e.g. {DEFAULT_MAX_TOKENS}")));
    }
    let secret = o.api_key.filter(|k| !k.is_empty());
    let api_key = secret.as_deref().map(secret_header).transpose()?;
    let headers = extra_headers(&o.headers)?;
    let posts = [false, true].map(|stream| FixedPost::new(url.clone(), message_headers(stream, &version, api_key.as_ref(), &headers)));
    Ok(Arc::new(Anthropic {
        base_url: base,
        models_url,
        api_key,
        secret,
        version,
        headers,
        posts,
        default_max_tokens,
        client: client(spec.connect_timeout),
    }))
}

/// The headers of a Messages request: content type, what it accepts, API version, key, extras.
fn message_headers(stream: bool, version: &HeaderValue, api_key: Option<&HeaderValue>, extra: &[(HeaderName, HeaderValue)]) -> Vec<(HeaderName, HeaderValue)> {
    let accept = HeaderValue::from_static(if stream { "text/event-stream" } else { "application/json" });
    let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/json")), (ACCEPT, accept), (ANTHROPIC_VERSION.clone(), version.clone())];
    headers.extend(api_key.map(|k| (X_API_KEY.clone(), k.clone())));
    headers.extend(extra.iter().cloned());
    headers
}

/// `{base}/v1/messages`, or `{base}/messages` when the base already ends in `/v1` (as people
/// used to OpenAI-style base URLs write it).
fn messages_url(base: &str) -> Result<Uri, OptionError> {
    let path = if base.ends_with("/v1") { "/messages" } else { "/v1/messages" };
    parse_url(&format!("{base}{path}"), base)
}

/// `{base}/v1/models` (or `{base}/models` after a `/v1`): the unbilled model listing.
fn models_url(base: &str) -> Result<Uri, OptionError> {
    let path = if base.ends_with("/v1") { "/models" } else { "/v1/models" };
    parse_url(&format!("{base}{path}"), base)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A request the adapter cannot express for Anthropic (audio input, `n > 1`, ...): another
/// target of the chain may still serve it.
fn unsupported(message: String) -> ProviderError {
    ProviderError::Unsupported(message)
}

impl Anthropic {
    fn secrets(&self) -> Vec<&str> {
        self.secret.as_deref().into_iter().collect()
    }

    /// The caller's OpenAI request as a Messages request body.
    fn translate(&self, call: &Call<'_>) -> Result<Bytes, ProviderError> {
        let req: ChatCompletionRequest = crate::wire::json::from_slice(&call.request.body)
            .map_err(|e| unsupported(format!("the request cannot be translated for an Anthropic model: {e}")))?;
        let out = wire::to_anthropic(&req, call.upstream_model, self.default_max_tokens).map_err(|e| unsupported(e.0))?;
        serde_json::to_vec(&out).map(Bytes::from).map_err(|e| ProviderError::Protocol(format!("serializing the request: {e}")))
    }

    /// A whole (non-streaming) answer: relabelled as it is when native, else translated.
    fn complete(&self, bytes: &[u8], alias: &str, native: bool) -> Result<Completion, ProviderError> {
        let message: Message = crate::wire::json::from_slice(bytes).map_err(|e| self.bad_body(bytes, &e.to_string()))?;
        let usage = wire::usage_to_openai(&message.usage).summary();
        if native {
            let body = wire::relabel_model(bytes, alias).ok_or_else(|| ProviderError::Protocol("a message without `model`".into()))?;
            return Ok(Completion { body, usage: Some(usage) });
        }
        let completion = wire::completion_from_message(&message, alias, now_secs());
        let body = serde_json::to_vec(&completion).map_err(|e| ProviderError::Protocol(format!("serializing the answer: {e}")))?;
        Ok(Completion { body: Bytes::from(body), usage: Some(usage) })
    }

    /// A 200 body that is not a message: an error object, or something else.
    fn bad_body(&self, bytes: &[u8], parse_error: &str) -> ProviderError {
        match crate::wire::json::from_slice::<ErrorResponse>(bytes) {
            Ok(e) => ProviderError::Protocol(format!("upstream error in a 200 response: {}", redact(&e.error.message, &self.secrets()))),
            Err(_) => ProviderError::Protocol(format!("not an Anthropic message: {parse_error}")),
        }
    }
}

impl Provider for Anthropic {
    fn chat<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            let stream = call.request.stream;
            let native = call.request.native_in(Format::AnthropicMessages);
            let body = match native {
                Some(n) => n.body_with_model(call.upstream_model),
                None => self.translate(&call)?,
            };
            let (parts, body) = post_checked(&self.client, &self.posts[usize::from(stream)], body, call.timeouts.idle, |status, headers, bytes| upstream_status(status, headers, bytes, &self.secrets())).await?;
            let is_json = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
            if stream && !is_json {
                let mode = match native {
                    Some(_) => Mode::Native { alias: call.alias.into(), usage: Default::default() },
                    None => Mode::Translate(ToOpenAi::new(call.alias, call.request.include_usage, now_secs())),
                };
                return Ok(Reply::Stream(Box::pin(Events::new(body, mode, self.secret.clone()))));
            }
            let bytes = read_body(body, call.timeouts.idle, MAX_BODY).await?;
            if stream {
                return Err(ProviderError::Protocol(format!(
                    "expected an event stream, got JSON: {}",
                    redact(&String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>(), &self.secrets())
                )));
            }
            Ok(Reply::Complete(self.complete(&bytes, call.alias, native.is_some())?))
        })
    }

    /// `models`: `GET /v1/models` with `x-api-key`, `anthropic-version` and the extra headers.
    fn probe<'a>(&'a self, probe: ProbeCall<'a>) -> BoxFuture<'a, Result<(), ProviderError>> {
        match probe.kind {
            ProbeKind::Completion => completion_probe(self, probe),
            ProbeKind::Models => Box::pin(async move {
                let auth = self.api_key.as_ref().map(|v| (&X_API_KEY, v));
                let headers = auth.into_iter().chain([(&ANTHROPIC_VERSION, &self.version)]).chain(self.headers.iter().map(|(k, v)| (k, v)));
                let req = get_request(self.models_url.clone(), headers)?;
                probe_get(&self.client, req, probe.timeout, &self.secrets()).await.map(drop)
            }),
        }
    }

    fn describe(&self) -> String {
        let key = if self.secret.is_some() { "api_key=<redacted>" } else { "api_key=none" };
        let extra = if self.headers.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
            format!(" headers=[{}]", names.join(", "))
        };
        let version = self.version.to_str().unwrap_or("?");
        format!(
            "kind=anthropic base_url={} {key} version={version} default_max_tokens={}{extra}",
            self.base_url, self.default_max_tokens
        )
    }

    fn prefills_assistant(&self) -> bool {
        true
    }

    fn native_format(&self) -> Option<Format> {
        Some(Format::AnthropicMessages)
    }
}

/// How stream events reach the caller.
enum Mode {
    /// Relayed as Anthropic events (only `message_start`'s model relabelled), usage tracked for
    /// the gateway.
    Native { alias: Box<str>, usage: wire::types::Usage },
    /// Translated into OpenAI chunks.
    Translate(ToOpenAi),
}

/// An Anthropic SSE body turned into chunks (see [`Mode`]).
struct Events {
    body: UpstreamBody,
    parser: SseParser,
    mode: Mode,
    queue: VecDeque<Chunk>,
    secret: Option<String>,
    /// The error that ends the stream after the queued chunks.
    failed: Option<ProviderError>,
    finished: bool,
    done: bool,
}

impl Events {
    fn new(body: UpstreamBody, mode: Mode, secret: Option<String>) -> Self {
        Events { body, parser: SseParser::new(), mode, queue: VecDeque::new(), secret, failed: None, finished: false, done: false }
    }

    /// Queues what one SSE event yields; an error event or a malformed event is the error.
    fn on_event(&mut self, ev: SseEvent) -> Result<(), ProviderError> {
        if let Mode::Translate(t) = &mut self.mode {
            if let Some(chunk) = t.text_delta(&ev.data) {
                self.queue.extend(chunk);
                return Ok(());
            }
        }
        let event: StreamEvent = crate::wire::json::from_slice(&ev.data).map_err(|e| {
            ProviderError::Protocol(format!("bad stream event `{}`: {e}", String::from_utf8_lossy(ev.event.as_deref().unwrap_or(b"?"))))
        })?;
        let secret = self.secret.as_deref();
        if let StreamEvent::Error { error } = event {
            return Err(error_event(error, secret));
        }
        match &mut self.mode {
            Mode::Translate(t) => {
                let chunks = t.on_event(event).map_err(|e| error_event(e, secret))?;
                self.finished = t.finished();
                self.queue.extend(chunks);
            }
            Mode::Native { alias, usage } => {
                let chunk = native_chunk(ev.data, event, alias, usage)?;
                self.finished |= chunk.finish;
                self.queue.push_back(chunk);
            }
        }
        Ok(())
    }

    fn feed(&mut self, ev: SseEvent) {
        if let Err(e) = self.on_event(ev) {
            self.fail(e);
        }
    }

    /// Ends the stream with `e` once the queued chunks are out.
    fn fail(&mut self, e: ProviderError) {
        if !self.done {
            self.done = true;
            self.failed = Some(e);
        }
    }

    /// The body ended (cleanly, or with `lost`): a failure unless the answer had finished.
    fn end(&mut self, lost: Option<String>) {
        if self.finished {
            self.done = true;
        } else {
            self.fail(ProviderError::Stream(lost.unwrap_or_else(|| "the upstream closed the stream before it finished".into())));
        }
    }
}

/// An `error` event as the chain's error: overload, rate limit and server errors as their HTTP
/// statuses (so they are retried and reported as such), anything else as a broken stream (also
/// retried while nothing was sent to the caller).
fn error_event(error: ErrorBody, secret: Option<&str>) -> ProviderError {
    let secrets: Vec<&str> = secret.into_iter().collect();
    let message = redact(&error.message, &secrets);
    let status = match error.kind.as_str() {
        "overloaded_error" => 529,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        _ => return ProviderError::Stream(format!("{}: {message}", error.kind)),
    };
    ProviderError::Status(UpstreamStatus { status, message, error_type: Some(error.kind), ..Default::default() })
}

/// One native event as a chunk: content is a `content_block_delta` or the start of a tool call
/// (or of a non-empty text block); the `message_delta` with the stop reason finishes and carries
/// the usage.
fn native_chunk(data: Bytes, event: StreamEvent, alias: &str, usage: &mut wire::types::Usage) -> Result<Chunk, ProviderError> {
    let mut chunk = Chunk::new(data, false, false, None);
    match event {
        StreamEvent::MessageStart { message } => {
            *usage = message.usage;
            chunk.data = wire::relabel_model(&chunk.data, alias).ok_or_else(|| ProviderError::Protocol("message_start without a model".into()))?;
        }
        StreamEvent::ContentBlockStart { content_block, .. } => {
            chunk.content = match &content_block {
                ContentBlock::Text(t) => !t.text.is_empty(),
                ContentBlock::Thinking(t) => !t.thinking.is_empty(),
                ContentBlock::ToolUse(_) | ContentBlock::Other(_) => true,
                _ => false,
            };
        }
        StreamEvent::ContentBlockDelta { .. } => chunk.content = true,
        StreamEvent::MessageDelta { delta, usage: delta_usage } => {
            wire::merge_usage(usage, delta_usage);
            chunk.finish = delta.stop_reason.is_some();
            chunk.usage = Some(wire::usage_to_openai(usage).summary());
        }
        _ => {}
    }
    Ok(chunk)
}

impl Stream for Events {
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(chunk) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            if this.done {
                return Poll::Ready(this.failed.take().map(Err));
            }
            match this.parser.next_event() {
                Ok(Some(ev)) => {
                    this.feed(ev);
                    continue;
                }
                Ok(None) => {}
                Err(_) => {
                    this.fail(ProviderError::Protocol("a stream event exceeded 16 MiB".into()));
                    continue;
                }
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.parser.push(data);
                    }
                }
                Some(Err(e)) => this.end(Some(format!("connection lost mid-stream: {e}"))),
                None => {
                    if let Some(ev) = this.parser.finish() {
                        this.feed(ev);
                    }
                    this.end(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::router::retry::{Disposition, classify};

    fn spec_of(toml_text: &str) -> Result<Arc<dyn Provider>, OptionError> {
        let options: toml::Table = toml::from_str(toml_text).unwrap();
        build(&Spec { name: "claude", options: &options, connect_timeout: Duration::from_secs(1) })
    }

    #[test]
    fn options_have_anthropics_defaults() {
        let p = spec_of("api_key = \"sk-ant-secret-0123456789abcdef\"").unwrap();
        let d = p.describe();
        assert_eq!(d, "kind=anthropic base_url=https://api.anthropic.com api_key=<redacted> version=2023-06-01 default_max_tokens=4096");
        assert!(!d.contains("sk-ant"), "no key in descriptions");
        assert_eq!(p.native_format(), Some(Format::AnthropicMessages));
        assert_eq!(messages_url(DEFAULT_BASE_URL).unwrap().to_string(), "https://api.anthropic.com/v1/messages");
        assert_eq!(messages_url("http://127.0.0.1:9").unwrap().to_string(), "http://127.0.0.1:9/v1/messages");
        assert_eq!(messages_url("https://proxy.example/anthropic/v1").unwrap().to_string(), "https://proxy.example/anthropic/v1/messages");
        assert!(spec_of("base_url = \"http://127.0.0.1:9/\"").unwrap().describe().contains("base_url=http://127.0.0.1:9 "));
        let custom = spec_of("version = \"2024-01-01\"\ndefault_max_tokens = 100\nheaders = { \"anthropic-beta\" = \"x\" }").unwrap();
        assert!(custom.describe().contains("version=2024-01-01 default_max_tokens=100 headers=[anthropic-beta]"));
    }

    #[test]
    fn only_a_native_body_in_its_format_makes_a_native_answer() {
        use crate::providers::answer_format;
        use crate::wire::openai::{ChatRequest, NativeBody};
        let claude = spec_of("").unwrap();
        let mock = (crate::providers::mock::KIND.build)(&Spec { name: "m", options: &toml::Table::new(), connect_timeout: Duration::from_secs(1) }).unwrap();
        let body = || Bytes::from_static(br#"{"model":"chat","max_tokens":5,"messages":[]}"#);
        let plain = ChatRequest::parse(body()).unwrap();
        let native = ChatRequest::parse(body()).unwrap().with_native(NativeBody::parse(Format::AnthropicMessages, body()).unwrap());
        assert_eq!(answer_format(&*claude, &native), Format::AnthropicMessages);
        assert_eq!(answer_format(&*claude, &plain), Format::OpenAiChat);
        assert_eq!(answer_format(&*mock, &native), Format::OpenAiChat, "providers without a native format answer in OpenAI's");
    }

    #[test]
    fn bad_options_name_their_key() {
        for (toml_text, key) in [
            ("base_url = \"ftp://x\"", "base_url"),
            ("default_max_tokens = 0", "default_max_tokens"),
            ("version = \"a\\nb\"", "version"),
            ("headers = { \"bad header\" = \"x\" }", "headers.bad header"),
            ("model = \"claude\"", "model"),
        ] {
            let err = spec_of(toml_text).err().unwrap_or_else(|| panic!("{toml_text} accepted"));
            assert!(err.0.contains(key), "{toml_text}: {err:?}");
        }
    }

    #[test]
    fn anthropic_error_bodies_become_upstream_statuses() {
        let fixture = |name: &str| std::fs::read(format!("{}/../switchyard-fakes/fixtures/anthropic/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let s = upstream_status(StatusCode::from_u16(529).unwrap(), &HeaderMap::new(), &fixture("error_overloaded.json"), &[]);
        assert_eq!((s.status, s.message.as_str(), s.error_type.as_deref()), (529, "Overloaded", Some("overloaded_error")));
        assert_eq!(classify(&ProviderError::Status(s)), Disposition::Retry, "529 overloaded is retried");
        let s = upstream_status(StatusCode::BAD_REQUEST, &HeaderMap::new(), &fixture("error_prompt_too_long.json"), &[]);
        assert!(s.context_length, "Anthropic's 'prompt is too long' is a context-length error");
        assert_eq!(classify(&ProviderError::Status(s)), Disposition::NextTarget { counts: false });
        let body = br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key sk-ant-api03-abcdefghijklmnopqrstuvwxyz"}}"#;
        let s = upstream_status(StatusCode::UNAUTHORIZED, &HeaderMap::new(), body, &["sk-ant-api03-abcdefghijklmnopqrstuvwxyz"]);
        assert!(!s.message.contains("sk-ant"), "{}", s.message);
    }

    #[test]
    fn error_events_are_classified_for_the_chain() {
        let e = |kind: &str| error_event(ErrorBody { kind: kind.into(), message: format!("{kind} with sk-ant-secret-0123456789") }, Some("sk-ant-secret-0123456789"));
        for (kind, status) in [("overloaded_error", 529), ("rate_limit_error", 429), ("api_error", 500), ("timeout_error", 504)] {
            let err = e(kind);
            assert_eq!(err.status(), Some(status), "{kind}");
            assert_eq!(classify(&err), Disposition::Retry, "{kind}");
            assert!(!err.to_string().contains("sk-ant"), "{err}");
        }
        let other = e("invalid_request_error");
        assert!(matches!(&other, ProviderError::Stream(m) if m.starts_with("invalid_request_error:")));
        assert_eq!(classify(&other), Disposition::Retry);
    }

    #[test]
    fn native_events_are_classified_and_relabelled() {
        let mut usage = wire::types::Usage::default();
        let mut chunk = |json: &str| {
            let data = Bytes::copy_from_slice(json.as_bytes());
            native_chunk(data.clone(), serde_json::from_slice(&data).unwrap(), "chat", &mut usage).unwrap()
        };
        let start = chunk(r#"{"type":"message_start","message":{"model":"claude-x","id":"m","type":"message","role":"assistant","content":[],"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#);
        assert!(!start.content && !start.finish);
        assert_eq!(&start.data[..], br#"{"type":"message_start","message":{"model":"chat","id":"m","type":"message","role":"assistant","content":[],"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#);
        assert!(!chunk(r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#).content);
        assert!(!chunk(r#"{"type": "ping"}"#).content);
        assert!(chunk(r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#).content);
        assert!(chunk(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#).content);
        let done = chunk(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}"#);
        assert!(done.finish && !done.content);
        assert_eq!(done.usage, Some(Usage { prompt_tokens: 15, completion_tokens: 7, total_tokens: 22 }));
        assert!(!chunk(r#"{"type":"message_stop"}"#).finish);
    }
}
