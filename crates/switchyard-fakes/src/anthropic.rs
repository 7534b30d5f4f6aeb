//! A scriptable fake of Anthropic's Messages API (`POST /v1/messages`) on loopback.
//!
//! [`FakeAnthropic`] answers each request with the next [`AnthropicStep`] of an
//! [`AnthropicScript`]: an answer (text, a tool call, or both; JSON or the SSE event sequence, as
//! the request asks), an error status with Anthropic's error body (529 `overloaded_error`
//! included), an `event: error` after `message_start`, or a stream that drops mid-way. It
//! checks requests the way the API does (auth header, `anthropic-version`, `model`,
//! `messages`, `max_tokens`, roles) and records them so tests can assert what a gateway sent.
//!
//! The bytes follow Anthropic's API reference; `fixtures/anthropic/` holds examples from it,
//! and this crate's tests compare the fake's output with them.
//!
//! ```no_run
//! # async fn demo() {
//! use switchyard_fakes::anthropic::{Answer, AnthropicScript, AnthropicStep, FakeAnthropic};
//!
//! let fake = FakeAnthropic::start(
//!     AnthropicScript::new()
//!         .then(AnthropicStep::status(529))
//!         .then(Answer::tool_use("get_weather", serde_json::json!({"city": "Paris"}))),
//! )
//! .await;
//! // Point an `anthropic` provider's base_url at `fake.base_url()`.
//! # }
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Recorded;
use crate::body::Abort;
use crate::ids;

/// The reply of an [`Answer`] with no text set.
pub const DEFAULT_TEXT: &str = "Hello from the fake Anthropic upstream.";

/// How many requests [`FakeAnthropic::recorded`] keeps.
const RECORD_LIMIT: usize = 1000;

/// The behaviour of a [`FakeAnthropic`]: a queue of steps used one per request in order, then
/// the default step for every later request.
#[derive(Clone, Debug)]
pub struct AnthropicScript {
    queue: VecDeque<AnthropicStep>,
    default: AnthropicStep,
    record: bool,
}

impl Default for AnthropicScript {
    fn default() -> Self {
        AnthropicScript { queue: VecDeque::new(), default: Answer::text(DEFAULT_TEXT).into(), record: true }
    }
}

impl AnthropicScript {
    /// An empty queue with a text answer ([`DEFAULT_TEXT`]) as the default step.
    pub fn new() -> AnthropicScript {
        AnthropicScript::default()
    }

    /// Appends a step to the queue.
    pub fn then(mut self, step: impl Into<AnthropicStep>) -> AnthropicScript {
        self.queue.push_back(step.into());
        self
    }

    /// Appends `n` copies of a step.
    pub fn times(mut self, n: usize, step: impl Into<AnthropicStep>) -> AnthropicScript {
        self.queue.extend(std::iter::repeat_n(step.into(), n));
        self
    }

    /// The step once the queue is exhausted.
    pub fn default_step(mut self, step: impl Into<AnthropicStep>) -> AnthropicScript {
        self.default = step.into();
        self
    }

    /// Whether to keep requests for [`FakeAnthropic::recorded`] (on by default).
    pub fn record(mut self, on: bool) -> AnthropicScript {
        self.record = on;
        self
    }
}

/// One scripted answer to a request.
#[derive(Clone, Debug)]
pub enum AnthropicStep {
    /// A normal answer, as JSON or as the event sequence (the request's `stream` decides).
    Answer(Answer),
    /// An error status with Anthropic's body `{"type":"error","error":{"type","message"},"request_id"}`
    /// and an optional `retry-after` header (seconds).
    Status { code: u16, error_type: String, message: String, retry_after: Option<String> },
    /// Streaming: `message_start`, a `ping`, then `event: error` with this error and the end
    /// of the body. Non-streaming: the same error as an HTTP status (529 for `overloaded_error`,
    /// else 500).
    ErrorEvent { error_type: String, message: String },
    /// Streaming: `message_start`, a text block and `after` text deltas, then `event: error`
    /// with this error and the end of the body, as the API reports a failure after output
    /// began. Non-streaming: the same error as an HTTP status (529 for `overloaded_error`, else
    /// 500).
    ErrorAfter { after: usize, error_type: String, message: String },
    /// Streaming: `message_start`, a text block and `after` text deltas, then the connection is
    /// aborted. Non-streaming: the connection is closed without an answer.
    DropAfter { after: usize },
    /// Sleeps, then performs the inner step.
    Delay(Duration, Box<AnthropicStep>),
}

impl From<Answer> for AnthropicStep {
    fn from(a: Answer) -> Self {
        AnthropicStep::Answer(a)
    }
}

impl AnthropicStep {
    /// An error status with the type and message Anthropic sends for it.
    pub fn status(code: u16) -> AnthropicStep {
        let (error_type, message) = match code {
            400 => ("invalid_request_error", "Invalid request."),
            401 => ("authentication_error", "invalid x-api-key"),
            402 => ("billing_error", "Your credit balance is too low to access the Anthropic API."),
            403 => ("permission_error", "Your API key does not have permission to use the specified resource."),
            404 => ("not_found_error", "The requested resource could not be found."),
            413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
            429 => ("rate_limit_error", "This request would exceed the rate limit for your organization of 50 requests per minute."),
            529 => ("overloaded_error", "Overloaded"),
            500..=599 => ("api_error", "Internal server error"),
            _ => ("invalid_request_error", "The request failed."),
        };
        AnthropicStep::Status { code, error_type: error_type.into(), message: message.into(), retry_after: None }
    }

    /// HTTP 529 `overloaded_error`.
    pub fn overloaded() -> AnthropicStep {
        AnthropicStep::status(529)
    }

    /// HTTP 429 `rate_limit_error` with `retry-after`.
    pub fn rate_limited(retry_after_secs: &str) -> AnthropicStep {
        match AnthropicStep::status(429) {
            AnthropicStep::Status { code, error_type, message, .. } => {
                AnthropicStep::Status { code, error_type, message, retry_after: Some(retry_after_secs.into()) }
            }
            other => other,
        }
    }

    /// HTTP 400 for a prompt longer than the context window, worded as the API words it.
    pub fn prompt_too_long() -> AnthropicStep {
        AnthropicStep::Status {
            code: 400,
            error_type: "invalid_request_error".into(),
            message: "prompt is too long: 215987 tokens > 200000 maximum".into(),
            retry_after: None,
        }
    }

    /// An `event: error` of this type after `message_start` (see [`AnthropicStep::ErrorEvent`]).
    pub fn error_event(error_type: &str) -> AnthropicStep {
        let message = if error_type == "overloaded_error" { "Overloaded" } else { "Internal server error" };
        AnthropicStep::ErrorEvent { error_type: error_type.into(), message: message.into() }
    }

    /// `after` text deltas, then an `event: error` of this type (see [`AnthropicStep::ErrorAfter`]).
    pub fn error_after(after: usize, error_type: &str) -> AnthropicStep {
        match AnthropicStep::error_event(error_type) {
            AnthropicStep::ErrorEvent { error_type, message } => AnthropicStep::ErrorAfter { after, error_type, message },
            other => other,
        }
    }

    /// This step after a delay.
    pub fn delayed(self, d: Duration) -> AnthropicStep {
        AnthropicStep::Delay(d, Box::new(self))
    }
}

/// A tool call the fake makes.
#[derive(Clone, Debug)]
pub struct ToolCall {
    /// `None`: the tool the request names in `tool_choice`, else its first tool.
    pub name: Option<String>,
    pub input: Value,
}

/// A normal answer: an optional text block, then an optional `tool_use` block.
#[derive(Clone, Debug)]
pub struct Answer {
    text: Option<String>,
    echo: bool,
    tool: Option<ToolCall>,
    /// Call the tool only when the request offers tools and its last turn is not a tool result.
    tool_when_offered: bool,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    usage: Option<Usage>,
    chunks: usize,
    fragments: usize,
    chunk_delay: Duration,
}

/// Token counts to report instead of the computed ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Answer {
    fn base() -> Answer {
        Answer {
            text: None,
            echo: false,
            tool: None,
            tool_when_offered: false,
            stop_reason: None,
            stop_sequence: None,
            usage: None,
            chunks: 5,
            fragments: 3,
            chunk_delay: Duration::ZERO,
        }
    }

    /// A text answer (`end_turn`), streamed in up to 5 deltas.
    pub fn text(text: impl Into<String>) -> Answer {
        Answer { text: Some(text.into()), ..Answer::base() }
    }

    /// A text answer repeating the last user message's text.
    pub fn echo() -> Answer {
        Answer { echo: true, ..Answer::base() }
    }

    /// A `tool_use` answer (`stop_reason: tool_use`) calling `name` with `input`, streamed as 3
    /// `input_json_delta` fragments after an empty one.
    pub fn tool_use(name: &str, input: Value) -> Answer {
        Answer { tool: Some(ToolCall { name: Some(name.into()), input }), ..Answer::base() }
    }

    /// Calls the request's tool (the one `tool_choice` names, else the first) with `input` when
    /// the request offers tools and its last turn is not a tool result; answers a tool result
    /// with `Done: <its text>`; otherwise answers [`DEFAULT_TEXT`]. Lets one fake serve a whole
    /// tool-use loop.
    pub fn tools_when_offered(input: Value) -> Answer {
        Answer { tool: Some(ToolCall { name: None, input }), tool_when_offered: true, ..Answer::base() }
    }

    /// Adds a text block before the tool call.
    pub fn with_text(mut self, text: impl Into<String>) -> Answer {
        self.text = Some(text.into());
        self
    }

    /// The `stop_reason` (default: `tool_use` with a tool call, else `end_turn`).
    pub fn stop_reason(mut self, reason: &str) -> Answer {
        self.stop_reason = Some(reason.into());
        self
    }

    /// `stop_reason: stop_sequence` with the sequence that matched.
    pub fn stop_sequence(mut self, sequence: &str) -> Answer {
        self.stop_reason = Some("stop_sequence".into());
        self.stop_sequence = Some(sequence.into());
        self
    }

    pub fn usage(mut self, usage: Usage) -> Answer {
        self.usage = Some(usage);
        self
    }

    /// At most this many text deltas (one per word at most).
    pub fn chunks(mut self, n: usize) -> Answer {
        self.chunks = n.max(1);
        self
    }

    /// The tool input in this many non-empty fragments.
    pub fn fragments(mut self, n: usize) -> Answer {
        self.fragments = n.max(1);
        self
    }

    /// Delay before each text delta and tool fragment.
    pub fn chunk_delay(mut self, d: Duration) -> Answer {
        self.chunk_delay = d;
        self
    }
}

/// A running fake on loopback. Dropping it stops the listener and closes every connection.
pub struct FakeAnthropic {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: watch::Sender<()>,
}

struct Shared {
    requests: AtomicUsize,
    steps: Mutex<(VecDeque<AnthropicStep>, AnthropicStep)>,
    recorded: Mutex<VecDeque<Recorded>>,
    record: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeAnthropic {
    /// Starts serving `script` on `127.0.0.1` with an ephemeral port.
    ///
    /// # Panics
    /// If no loopback port can be bound, or outside a Tokio runtime.
    pub async fn start(script: AnthropicScript) -> FakeAnthropic {
        FakeAnthropic::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), script)
            .await
            .expect("binding a loopback port for the fake Anthropic upstream")
    }

    /// Starts serving `script` on `addr`.
    pub async fn start_on(addr: SocketAddr, script: AnthropicScript) -> io::Result<FakeAnthropic> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            requests: AtomicUsize::new(0),
            steps: Mutex::new((script.queue, script.default)),
            recorded: Mutex::new(VecDeque::new()),
            record: script.record,
        });
        let (stop, stopped) = watch::channel(());
        tokio::spawn(accept_loop(listener, shared.clone(), stopped));
        Ok(FakeAnthropic { addr, shared, _stop: stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL as Anthropic's SDKs take it, `http://127.0.0.1:PORT` (`/v1/messages` is
    /// appended by clients).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `POST /v1/messages` requests received so far (rejected ones included).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<Recorded> {
        lock(&self.shared.recorded).back().cloned()
    }

    /// The last (up to 1000) requests, oldest first.
    pub fn recorded(&self) -> Vec<Recorded> {
        lock(&self.shared.recorded).iter().cloned().collect()
    }

    /// Appends a step to the queue.
    pub fn push(&self, step: impl Into<AnthropicStep>) {
        lock(&self.shared.steps).0.push_back(step.into());
    }

    /// Replaces the default step.
    pub fn set_default(&self, step: impl Into<AnthropicStep>) {
        lock(&self.shared.steps).1 = step.into();
    }
}

impl Shared {
    fn next_step(&self) -> AnthropicStep {
        let mut steps = lock(&self.steps);
        match steps.0.pop_front() {
            Some(step) => step,
            None => steps.1.clone(),
        }
    }

    fn record(&self, body: Value, headers: HeaderMap, uri: String) {
        if !self.record {
            return;
        }
        let mut recorded = lock(&self.recorded);
        if recorded.len() == RECORD_LIMIT {
            recorded.pop_front();
        }
        recorded.push_back(Recorded { body, headers, uri, at: Instant::now() });
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            let serving = http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                _ = serving => {}
                _ = stop.changed() => {}
            }
        });
    }
}

type FakeBody = UnsyncBoxBody<Bytes, Abort>;

fn full(bytes: Bytes) -> FakeBody {
    Full::new(bytes).map_err(|e: Infallible| match e {}).boxed_unsync()
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<FakeBody>, Abort> {
    if !(req.method() == Method::POST && req.uri().path() == "/v1/messages") {
        let message = format!("Not found: {} {}", req.method(), req.uri().path());
        return Ok(error_response(404, "not_found_error", &message, None));
    }
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map_err(|_| Abort)?.to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    shared.record(json.clone(), parts.headers.clone(), parts.uri.to_string());
    if let Err((code, kind, message)) = validate(&parts.headers, &json) {
        return Ok(error_response(code, kind, &message, None));
    }
    let mut step = shared.next_step();
    while let AnthropicStep::Delay(d, inner) = step {
        tokio::time::sleep(d).await;
        step = *inner;
    }
    perform(step, &json)
}

/// Rejects what the API rejects, with its status, error type and wording.
fn validate(headers: &HeaderMap, json: &Value) -> Result<(), (u16, &'static str, String)> {
    if !headers.contains_key("x-api-key") && !headers.contains_key("authorization") {
        return Err((401, "authentication_error", "x-api-key header is required".into()));
    }
    if !headers.contains_key("anthropic-version") {
        return Err((400, "invalid_request_error", "anthropic-version: header is required".into()));
    }
    let Some(obj) = json.as_object() else {
        return Err((400, "invalid_request_error", "There was an issue with the format of your request: not valid JSON".into()));
    };
    for field in ["model", "messages", "max_tokens"] {
        if !obj.contains_key(field) {
            return Err((400, "invalid_request_error", format!("{field}: Field required")));
        }
    }
    let messages = obj["messages"].as_array().ok_or((400, "invalid_request_error", "messages: Input should be a valid list".to_owned()))?;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err((400, "invalid_request_error", format!("messages.{i}.role: Input should be 'user' or 'assistant'")));
        }
    }
    Ok(())
}

fn perform(step: AnthropicStep, request: &Value) -> Result<Response<FakeBody>, Abort> {
    let streaming = request.get("stream").and_then(Value::as_bool) == Some(true);
    let model = request.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(match step {
        AnthropicStep::Answer(answer) => {
            let plan = Plan::new(&answer, request, model);
            if streaming { sse_response(plan.events(), Tail::End) } else { json_response(200, plan.message(), None) }
        }
        AnthropicStep::Status { code, error_type, message, retry_after } => error_response(code, &error_type, &message, retry_after.as_deref()),
        AnthropicStep::ErrorEvent { error_type, message } if streaming => {
            let plan = Plan::new(&Answer::text(""), request, model);
            let frames = vec![(Duration::ZERO, plan.message_start()), (Duration::ZERO, ping()), (Duration::ZERO, error_event(&error_type, &message))];
            sse_response(frames, Tail::End)
        }
        AnthropicStep::ErrorAfter { after, error_type, message } if streaming => {
            let words: Vec<String> = (0..after).map(|i| format!("word{i} ")).collect();
            let plan = Plan::new(&Answer::text(words.concat()).chunks(after.max(1)), request, model);
            let mut frames = vec![(Duration::ZERO, plan.message_start()), (Duration::ZERO, plan.text_start(0))];
            frames.extend(words.iter().map(|w| (Duration::ZERO, text_delta(0, w))));
            frames.push((Duration::ZERO, error_event(&error_type, &message)));
            sse_response(frames, Tail::End)
        }
        AnthropicStep::ErrorEvent { error_type, message } | AnthropicStep::ErrorAfter { error_type, message, .. } => {
            let code = if error_type == "overloaded_error" { 529 } else { 500 };
            error_response(code, &error_type, &message, None)
        }
        AnthropicStep::DropAfter { after } if streaming => {
            let words: Vec<String> = (0..after).map(|i| format!("word{i} ")).collect();
            let plan = Plan::new(&Answer::text(words.concat()).chunks(after.max(1)), request, model);
            let mut frames = vec![(Duration::ZERO, plan.message_start()), (Duration::ZERO, plan.text_start(0))];
            frames.extend(words.iter().map(|w| (Duration::ZERO, text_delta(0, w))));
            sse_response(frames, Tail::Abort)
        }
        AnthropicStep::DropAfter { .. } => return Err(Abort),
        AnthropicStep::Delay(..) => unreachable!("delays are taken before performing"),
    })
}

/// What an answer will say, worked out from the step and the request.
struct Plan {
    id: String,
    model: String,
    text: Option<String>,
    tool: Option<(String, String, Value)>,
    stop_reason: String,
    stop_sequence: Option<String>,
    usage: Usage,
    chunks: usize,
    fragments: usize,
    delay: Duration,
}

impl Plan {
    fn new(a: &Answer, request: &Value, model: String) -> Plan {
        let tool = a.tool.as_ref().and_then(|t| {
            if a.tool_when_offered && !tool_wanted(request) {
                return None;
            }
            let name = t.name.clone().or_else(|| requested_tool(request))?;
            Some((tool_id(), name, t.input.clone()))
        });
        let text = match (&a.text, a.echo, &tool) {
            (Some(t), _, _) => Some(t.clone()),
            (None, true, _) => Some(last_user_text(request)),
            (None, false, None) if a.tool_when_offered && answering_tool_result(request) => {
                Some(format!("Done: {}", last_user_text(request)))
            }
            (None, false, None) => Some(DEFAULT_TEXT.to_owned()),
            (None, false, Some(_)) => None,
        };
        let default_stop = if tool.is_some() { "tool_use" } else { "end_turn" };
        let output = text.as_deref().map_or(0, count_words) + tool.as_ref().map_or(0, |t| t.2.to_string().len().div_ceil(4));
        let usage = a.usage.unwrap_or(Usage { input_tokens: prompt_words(request).max(1), output_tokens: output.max(1) as u64, ..Usage::default() });
        Plan {
            id: format!("msg_01{}", &ids::request_id()[4..26]),
            model,
            text,
            tool,
            stop_reason: a.stop_reason.clone().unwrap_or_else(|| default_stop.into()),
            stop_sequence: a.stop_sequence.clone(),
            usage,
            chunks: a.chunks,
            fragments: a.fragments,
            delay: a.chunk_delay,
        }
    }

    fn usage_json(&self, output_tokens: u64) -> UsageJson {
        UsageJson {
            input_tokens: self.usage.input_tokens,
            cache_creation_input_tokens: self.usage.cache_creation_input_tokens,
            cache_read_input_tokens: self.usage.cache_read_input_tokens,
            cache_creation: CacheCreation { ephemeral_5m_input_tokens: self.usage.cache_creation_input_tokens, ephemeral_1h_input_tokens: 0 },
            output_tokens,
            service_tier: "standard",
        }
    }

    fn envelope<'a>(&'a self, content: Vec<Block<'a>>, done: bool, output_tokens: u64) -> MessageJson<'a> {
        MessageJson {
            model: &self.model,
            id: &self.id,
            kind: "message",
            role: "assistant",
            content,
            stop_reason: done.then_some(self.stop_reason.as_str()),
            stop_sequence: self.stop_sequence.as_deref().filter(|_| done),
            usage: self.usage_json(output_tokens),
        }
    }

    /// The non-streaming message.
    fn message(&self) -> Bytes {
        let mut content = Vec::new();
        if let Some(text) = &self.text {
            content.push(Block::Text { text });
        }
        if let Some((id, name, input)) = &self.tool {
            content.push(Block::ToolUse { id, name, input });
        }
        to_bytes(&self.envelope(content, true, self.usage.output_tokens))
    }

    fn message_start(&self) -> Bytes {
        Event::MessageStart { message: self.envelope(Vec::new(), false, 1) }.frame()
    }

    fn text_start(&self, index: u32) -> Bytes {
        Event::ContentBlockStart { index, content_block: Block::Text { text: "" } }.frame()
    }

    /// The whole event sequence, each event with the delay before it.
    fn events(&self) -> Vec<(Duration, Bytes)> {
        let mut frames = vec![(Duration::ZERO, self.message_start())];
        let mut index = 0;
        if let Some(text) = &self.text {
            frames.push((Duration::ZERO, self.text_start(index)));
            frames.push((Duration::ZERO, ping()));
            frames.extend(split_words(text, self.chunks).into_iter().map(|w| (self.delay, text_delta(index, w))));
            frames.push((Duration::ZERO, Event::ContentBlockStop { index }.frame()));
            index += 1;
        }
        if let Some((id, name, input)) = &self.tool {
            let empty = json!({});
            let start = Event::ContentBlockStart { index, content_block: Block::ToolUse { id, name, input: &empty } };
            frames.push((Duration::ZERO, start.frame()));
            let json_text = input.to_string();
            let fragments = std::iter::once("").chain(split_evenly(&json_text, self.fragments));
            frames.extend(fragments.map(|partial_json| {
                (self.delay, Event::ContentBlockDelta { index, delta: Delta::InputJsonDelta { partial_json } }.frame())
            }));
            frames.push((Duration::ZERO, Event::ContentBlockStop { index }.frame()));
        }
        let usage = DeltaUsageJson {
            input_tokens: self.usage.input_tokens,
            cache_creation_input_tokens: self.usage.cache_creation_input_tokens,
            cache_read_input_tokens: self.usage.cache_read_input_tokens,
            output_tokens: self.usage.output_tokens,
        };
        let delta = StopJson { stop_reason: &self.stop_reason, stop_sequence: self.stop_sequence.as_deref() };
        frames.push((Duration::ZERO, Event::MessageDelta { delta, usage }.frame()));
        frames.push((Duration::ZERO, Event::MessageStop.frame()));
        frames
    }
}

// The wire shapes, as borrowed structs so fields come out in the order Anthropic sends them.

#[derive(Serialize)]
struct MessageJson<'a> {
    model: &'a str,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    content: Vec<Block<'a>>,
    stop_reason: Option<&'a str>,
    stop_sequence: Option<&'a str>,
    usage: UsageJson,
}

#[derive(Serialize)]
struct UsageJson {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation: CacheCreation,
    output_tokens: u64,
    service_tier: &'static str,
}

#[derive(Serialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: u64,
    ephemeral_1h_input_tokens: u64,
}

/// `message_delta` usage: cumulative counts, as the current API reports them.
#[derive(Serialize)]
struct DeltaUsageJson {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text { text: &'a str },
    ToolUse { id: &'a str, name: &'a str, input: &'a Value },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct StopJson<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct ErrorResponseJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorJson<'a>,
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart { message: MessageJson<'a> },
    ContentBlockStart { index: u32, content_block: Block<'a> },
    ContentBlockDelta { index: u32, delta: Delta<'a> },
    ContentBlockStop { index: u32 },
    MessageDelta { delta: StopJson<'a>, usage: DeltaUsageJson },
    MessageStop,
    Error { error: ErrorJson<'a> },
}

impl Event<'_> {
    /// `event: NAME\ndata: JSON\n\n`.
    fn frame(&self) -> Bytes {
        let name = match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
            Event::Error { .. } => "error",
        };
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        serde_json::to_writer(&mut out, self).expect("serializing to memory cannot fail");
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

fn to_bytes(value: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("serializing to memory cannot fail"))
}

/// The keep-alive event, spaced as the API reference shows it.
fn ping() -> Bytes {
    Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n")
}

fn text_delta(index: u32, text: &str) -> Bytes {
    Event::ContentBlockDelta { index, delta: Delta::TextDelta { text } }.frame()
}

fn error_event(kind: &str, message: &str) -> Bytes {
    Event::Error { error: ErrorJson { kind, message } }.frame()
}

fn error_body(kind: &str, message: &str) -> Bytes {
    let request_id = format!("req_011C{}", &ids::request_id()[4..24]);
    to_bytes(&ErrorResponseJson { kind: "error", error: ErrorJson { kind, message }, request_id: &request_id })
}

fn error_response(code: u16, kind: &str, message: &str, retry_after: Option<&str>) -> Response<FakeBody> {
    json_response(code, error_body(kind, message), retry_after)
}

fn json_response(code: u16, body: Bytes, retry_after: Option<&str>) -> Response<FakeBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::try_from(ids::request_id()) {
        h.insert("request-id", id);
    }
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(v).ok()) {
        h.insert(RETRY_AFTER, v);
    }
    resp
}

/// How a streamed body ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tail {
    End,
    /// The body fails, so hyper aborts the connection (after flushing what it has).
    Abort,
}

fn sse_response(frames: Vec<(Duration, Bytes)>, tail: Tail) -> Response<FakeBody> {
    let state = (VecDeque::from(frames), tail, false);
    let body = stream::unfold(state, |(mut frames, tail, failed)| async move {
        if let Some((delay, data)) = frames.pop_front() {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            return Some((Ok(Frame::data(data)), (frames, tail, failed)));
        }
        if tail == Tail::End || failed {
            return None;
        }
        // Let hyper flush what it buffered before the body fails (it drops the buffer then).
        tokio::time::sleep(Duration::from_millis(5)).await;
        Some((Err(Abort), (frames, tail, true)))
    });
    let mut resp = Response::new(StreamBody::new(body).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    if let Ok(id) = HeaderValue::try_from(ids::request_id()) {
        h.insert("request-id", id);
    }
    resp
}

/// Whether the request offers tools the model may call now: tools present, `tool_choice` not
/// `none`, and the last turn is not answering a tool call.
fn tool_wanted(request: &Value) -> bool {
    let offered = request.get("tools").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
    let none = request.pointer("/tool_choice/type").and_then(Value::as_str) == Some("none");
    offered && !none && !answering_tool_result(request)
}

/// The last turn carries a tool result.
fn answering_tool_result(request: &Value) -> bool {
    request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .is_some_and(|blocks| blocks.iter().any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result")))
}

/// The tool `tool_choice` names, else the first tool offered.
fn requested_tool(request: &Value) -> Option<String> {
    if let Some(name) = request.pointer("/tool_choice/name").and_then(Value::as_str) {
        return Some(name.to_owned());
    }
    request.pointer("/tools/0/name").and_then(Value::as_str).map(str::to_owned)
}

fn tool_id() -> String {
    format!("toolu_01{}", &ids::request_id()[4..26])
}

/// The text of a message's content: a string, or its text blocks (and tool results' text).
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b.get("text").and_then(Value::as_str).unwrap_or_default().to_owned(),
                Some("tool_result") => content_text(b.get("content")),
                _ => String::new(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn last_user_text(request: &Value) -> String {
    request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")))
        .map(|m| content_text(m.get("content")))
        .unwrap_or_default()
}

fn prompt_words(request: &Value) -> u64 {
    let system = content_text(request.get("system"));
    let messages: usize = request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |m| m.iter().map(|m| count_words(&content_text(m.get("content")))).sum());
    (count_words(&system) + messages) as u64
}

fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// At most `pieces` pieces of whole words (each with its following whitespace); at least one.
fn split_words(text: &str, pieces: usize) -> Vec<&str> {
    let starts: Vec<usize> = text
        .char_indices()
        .filter(|&(i, c)| !c.is_whitespace() && (i == 0 || text[..i].ends_with(char::is_whitespace)))
        .map(|(i, _)| i)
        .collect();
    if starts.is_empty() {
        return vec![text];
    }
    let pieces = pieces.clamp(1, starts.len());
    let (per, extra) = (starts.len() / pieces, starts.len() % pieces);
    let (mut out, mut begin, mut word) = (Vec::with_capacity(pieces), 0, 0);
    for piece in 0..pieces {
        word += per + usize::from(piece < extra);
        let end = starts.get(word).copied().unwrap_or(text.len());
        out.push(&text[begin..end]);
        begin = end;
    }
    out
}

/// `text` cut into `pieces` pieces of about equal length, on character boundaries.
fn split_evenly(text: &str, pieces: usize) -> Vec<&str> {
    let chars: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let pieces = pieces.clamp(1, chars.len().max(1));
    (0..pieces)
        .map(|p| {
            let from = chars.get(p * chars.len() / pieces).copied().unwrap_or(text.len());
            let to = chars.get((p + 1) * chars.len() / pieces).copied().unwrap_or(text.len());
            &text[from..to]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(split_words("one two three", 2), ["one two ", "three"]);
        assert_eq!(split_words("", 3), [""]);
        assert_eq!(split_evenly(r#"{"city":"Zürich"}"#, 3).concat(), r#"{"city":"Zürich"}"#);
        assert_eq!(split_evenly("ab", 5), ["a", "b"]);
    }

    #[test]
    fn tool_wanted_only_when_offered_and_not_answering() {
        let offered = json!({"tools": [{"name": "t"}], "messages": [{"role": "user", "content": "hi"}]});
        assert!(tool_wanted(&offered));
        assert_eq!(requested_tool(&offered).as_deref(), Some("t"));
        let answering = json!({"tools": [{"name": "t"}], "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "22C"}]}]});
        assert!(!tool_wanted(&answering));
        assert_eq!(last_user_text(&answering), "22C");
        let none = json!({"tools": [{"name": "t"}], "tool_choice": {"type": "none"}, "messages": []});
        assert!(!tool_wanted(&none));
    }
}
