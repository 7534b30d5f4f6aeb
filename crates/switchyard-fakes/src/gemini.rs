//! A fake Gemini API (`generativelanguage.googleapis.com`) speaking Google's wire format:
//! `POST /{version}/models/{model}:generateContent` (a pretty-printed JSON body, as Google
//! sends it), `...:streamGenerateContent?alt=sse` (`data: <json>\r\n\r\n` events whose JSON is
//! written `"key": value` with no space after commas, as Google's server writes it), the same
//! without `alt=sse` (a JSON array), `...:embedContent` / `...:batchEmbedContents`,
//! `GET /{version}/models`, and Google's error bodies
//! (`{"error": {"code", "message", "status", "details"}}`).
//!
//! Like the real API it rejects what Gemini rejects: unknown request fields ("Invalid JSON
//! payload received. Unknown name ..."), invalid roles, empty parts, `OBJECT` schemas with empty
//! `properties`, `required` naming undefined properties, unsupported string formats, a wrong or
//! missing API key (when one is configured), and, with [`GeminiConfig::strict_signatures`] (as
//! Gemini 3 does), function calls replayed without the `thoughtSignature` this fake issued.
//!
//! Shapes follow Google's API reference (ai.google.dev/api/generate-content) and public captures;
//! see `fixtures/gemini/README.md`.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::Recorded;
use crate::server::{Exchange, FakeResponse, ScriptedServer, StreamEnd, full, streamed};

const JSON: &str = "application/json; charset=UTF-8";
const SSE: &str = "text/event-stream";

/// The signature Google documents for function calls it did not generate; accepted in strict mode.
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// The text of [`GeminiStep::Auto`]'s plain answers.
pub const DEFAULT_TEXT: &str = "Hello from the fake Gemini.";

// ---------------------------------------------------------------------------------------------
// Script
// ---------------------------------------------------------------------------------------------

/// What the fake does with one `generateContent` / `streamGenerateContent` request.
#[derive(Clone, Debug)]
pub enum GeminiStep {
    /// Decides from the request: a call of the first declared function when the request declares
    /// tools (and does not forbid them) and its last turn is the user's text; a sentence quoting
    /// the function results when the last turn holds them; otherwise [`DEFAULT_TEXT`].
    Auto,
    /// This answer.
    Answer(Answer),
    /// No candidates: `promptFeedback.blockReason` is this reason (e.g. `SAFETY`).
    PromptBlocked(String),
    /// An HTTP error with Google's error body.
    Error(GeminiError),
    /// Streaming: this many text events, then the connection breaks. Not streaming: half the
    /// body, then the connection breaks.
    DropAfter(usize),
    /// Streaming: this many text events, then a clean end without any `finishReason`.
    EndWithoutFinish(usize),
    /// Streaming: `after` text events, then this error as an in-band event, then the end.
    ErrorEvent { after: usize, error: GeminiError },
    /// Waits, then performs the inner step.
    Delay(Duration, Box<GeminiStep>),
    /// Never answers (until the client goes away).
    Hang,
    /// Closes the connection without an answer.
    Reset,
}

/// A successful answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub parts: Vec<AnswerPart>,
    /// `STOP`, `MAX_TOKENS`, `SAFETY`, `RECITATION`, ...
    pub finish_reason: String,
    /// Streaming: events the text is split into (at most one per word).
    pub chunks: usize,
    /// Streaming: the pause before each event after the first.
    pub chunk_delay: Duration,
    /// `usageMetadata.thoughtsTokenCount`.
    pub thoughts_tokens: u64,
    /// `usageMetadata.cachedContentTokenCount`.
    pub cached_tokens: u64,
}

/// A part of an answer.
#[derive(Clone, Debug)]
pub enum AnswerPart {
    Text(String),
    /// A thought summary (`"thought": true`), not part of the visible answer.
    Thought(String),
    /// A function call; a signature is issued (and then accepted in strict mode) unless `None`.
    Call { name: String, args: Value, thought_signature: Option<String> },
}

/// Google's error: HTTP code, canonical status name, message, and an optional `RetryInfo` delay
/// (e.g. `"7s"`).
#[derive(Clone, Debug)]
pub struct GeminiError {
    pub code: u16,
    pub status: String,
    pub message: String,
    pub retry_delay: Option<String>,
}

impl GeminiError {
    /// The status name and message Google sends with `code`.
    pub fn new(code: u16) -> GeminiError {
        let (status, message) = match code {
            400 => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
            401 => ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
            403 => ("PERMISSION_DENIED", "The caller does not have permission"),
            404 => ("NOT_FOUND", "Requested entity was not found."),
            429 => ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
            500 => ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
            503 => ("UNAVAILABLE", "The model is overloaded. Please try again later."),
            504 => ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
            _ if code >= 500 => ("INTERNAL", "An internal error has occurred."),
            _ => ("FAILED_PRECONDITION", "Precondition check failed."),
        };
        GeminiError { code, status: status.to_owned(), message: message.to_owned(), retry_delay: None }
    }
}

impl GeminiStep {
    /// A text answer, streamed in up to 4 events.
    pub fn text(text: impl Into<String>) -> GeminiStep {
        GeminiStep::answer(vec![AnswerPart::Text(text.into())])
    }

    /// An answer of these parts finishing with `STOP`.
    pub fn answer(parts: Vec<AnswerPart>) -> GeminiStep {
        GeminiStep::Answer(Answer {
            parts,
            finish_reason: "STOP".to_owned(),
            chunks: 4,
            chunk_delay: Duration::ZERO,
            thoughts_tokens: 0,
            cached_tokens: 0,
        })
    }

    /// A call of `name` with `args`, with a freshly issued `thoughtSignature`.
    pub fn function_call(name: &str, args: Value) -> GeminiStep {
        GeminiStep::answer(vec![call(name, args)])
    }

    /// A candidate stopped by the safety filter: no content, `finishReason: "SAFETY"`.
    pub fn safety_block() -> GeminiStep {
        GeminiStep::answer(Vec::new()).finish("SAFETY")
    }

    /// The prompt refused: no candidates, `promptFeedback.blockReason: "SAFETY"`.
    pub fn prompt_blocked() -> GeminiStep {
        GeminiStep::PromptBlocked("SAFETY".to_owned())
    }

    /// An error status with Google's usual status name and message.
    pub fn error(code: u16) -> GeminiStep {
        GeminiStep::Error(GeminiError::new(code))
    }

    /// 429 `RESOURCE_EXHAUSTED` with a quota failure and a `RetryInfo` of `retry_delay` (`"7s"`).
    pub fn rate_limited(retry_delay: &str) -> GeminiStep {
        let mut e = GeminiError::new(429);
        e.message = "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.".to_owned();
        e.retry_delay = Some(retry_delay.to_owned());
        GeminiStep::Error(e)
    }

    /// 400 for a prompt longer than the model's context window, worded as Gemini words it.
    pub fn context_length() -> GeminiStep {
        let mut e = GeminiError::new(400);
        e.message = "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).".to_owned();
        GeminiStep::Error(e)
    }

    /// Sets the `finishReason` of an answer.
    pub fn finish(self, reason: &str) -> GeminiStep {
        self.map_answer(|a| a.finish_reason = reason.to_owned())
    }

    /// Sets how many events an answer's text is streamed in.
    pub fn chunks(self, n: usize) -> GeminiStep {
        self.map_answer(|a| a.chunks = n)
    }

    /// Sets the pause between an answer's stream events.
    pub fn chunk_delay(self, d: Duration) -> GeminiStep {
        self.map_answer(|a| a.chunk_delay = d)
    }

    /// Sets an answer's `thoughtsTokenCount`.
    pub fn thoughts(self, tokens: u64) -> GeminiStep {
        self.map_answer(|a| a.thoughts_tokens = tokens)
    }

    /// Sets an answer's `cachedContentTokenCount`.
    pub fn cached(self, tokens: u64) -> GeminiStep {
        self.map_answer(|a| a.cached_tokens = tokens)
    }

    /// This step after a delay.
    pub fn delayed(self, d: Duration) -> GeminiStep {
        GeminiStep::Delay(d, Box::new(self))
    }

    fn map_answer(mut self, f: impl FnOnce(&mut Answer)) -> GeminiStep {
        if let GeminiStep::Answer(a) = &mut self {
            f(a);
        }
        self
    }
}

/// A function-call part with a freshly issued signature.
pub fn call(name: &str, args: Value) -> AnswerPart {
    AnswerPart::Call { name: name.to_owned(), args, thought_signature: Some(signature()) }
}

/// Fake-wide behaviour.
#[derive(Clone, Debug)]
pub struct GeminiConfig {
    /// When set, requests must carry this key (`x-goog-api-key` or `?key=`), as Google checks it.
    pub api_key: Option<String>,
    /// Reject function calls replayed without a signature this fake issued (or
    /// [`SKIP_SIGNATURE`]), as Gemini 3 does.
    pub strict_signatures: bool,
    /// The step used once the queue is empty.
    pub default: GeminiStep,
    /// Events [`GeminiStep::Auto`] streams its text in.
    pub chunks: usize,
}

impl Default for GeminiConfig {
    fn default() -> Self {
        GeminiConfig { api_key: None, strict_signatures: false, default: GeminiStep::Auto, chunks: 4 }
    }
}

/// What every request shares: the config and the signatures issued so far.
struct State {
    config: GeminiConfig,
    issued: Mutex<HashSet<String>>,
}

/// Signatures kept for strict mode; older ones are forgotten past this.
const ISSUED_LIMIT: usize = 10_000;

impl State {
    fn issue(&self, signature: &str) {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if issued.len() >= ISSUED_LIMIT {
            issued.clear();
        }
        issued.insert(signature.to_owned());
    }

    fn knows(&self, signature: &str) -> bool {
        signature == SKIP_SIGNATURE || self.issued.lock().unwrap_or_else(|p| p.into_inner()).contains(signature)
    }
}

/// A running fake Gemini API on loopback; dropping it stops it.
pub struct FakeGemini {
    server: ScriptedServer<GeminiStep>,
}

impl FakeGemini {
    /// Starts with `steps` queued and the default config ([`GeminiStep::Auto`] afterwards).
    pub async fn start(steps: Vec<GeminiStep>) -> FakeGemini {
        FakeGemini::start_with(GeminiConfig::default(), steps).await
    }

    pub async fn start_with(config: GeminiConfig, steps: Vec<GeminiStep>) -> FakeGemini {
        let default = config.default.clone();
        let state = Arc::new(State { config, issued: Mutex::new(HashSet::new()) });
        let server = ScriptedServer::start(steps, default, move |step, ex| {
            let state = state.clone();
            async move { handle(&state, step, ex).await }
        })
        .await;
        FakeGemini { server }
    }

    /// `http://127.0.0.1:PORT/v1beta`, the base URL of the `gemini` provider kind.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1beta", self.server.addr())
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// POST requests received (rejected ones included).
    pub fn requests(&self) -> usize {
        self.server.requests()
    }

    /// Requests whose client went away before the answer was complete.
    pub fn cancelled(&self) -> usize {
        self.server.cancelled()
    }

    /// Every POST, oldest first: path and query (`uri`), headers and JSON body.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.server.recorded()
    }

    pub fn last_request(&self) -> Option<Recorded> {
        self.server.last_request()
    }

    pub fn push(&self, step: GeminiStep) {
        self.server.push(step);
    }

    pub fn set_default(&self, step: GeminiStep) {
        self.server.set_default(step);
    }
}

// ---------------------------------------------------------------------------------------------
// Handling
// ---------------------------------------------------------------------------------------------

/// What a request asks for.
enum Route {
    ListModels,
    Generate { model: String, stream: Option<StreamMode> },
    /// `:embedContent` (one) or `:batchEmbedContents` (`batch`).
    Embed { model: String, batch: bool },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamMode {
    Sse,
    JsonArray,
}

async fn handle(state: &State, step: Option<GeminiStep>, ex: Exchange) -> Option<FakeResponse> {
    let (model, stream) = match route(&ex) {
        Some(Route::ListModels) => return Some(full(StatusCode::OK, JSON, pretty(&models_list()))),
        Some(Route::Generate { model, stream }) => (model, stream),
        Some(Route::Embed { model, batch }) => {
            if let Err(resp) = authorize(state, &ex) {
                return Some(*resp);
            }
            return embed(step.unwrap_or(GeminiStep::Auto), &ex.json, &model, batch).await;
        }
        None => return Some(error_response(&GeminiError { message: "Method not found.".into(), ..GeminiError::new(404) }, &[])),
    };
    let step = step.unwrap_or(GeminiStep::Auto);
    if let Err(resp) = authorize(state, &ex) {
        return Some(*resp);
    }
    if let Err(message) = validate::request(&ex.json) {
        let details = field_violation(&message).into_iter().collect::<Vec<_>>();
        return Some(error_response(&GeminiError { message, ..GeminiError::new(400) }, &details));
    }
    if state.config.strict_signatures {
        if let Err(message) = check_signatures(state, &ex.json) {
            return Some(error_response(&GeminiError { message, ..GeminiError::new(400) }, &[]));
        }
    }
    perform(state, step, &ex.json, &model, stream).await
}

/// The `google.rpc.BadRequest` detail Google adds to an "Unknown name ... at 'PATH'" error.
fn field_violation(message: &str) -> Option<Ordered> {
    let field = message.strip_prefix("Invalid JSON payload received.")?.split_once(" at '")?.1.split_once('\'')?.0;
    Some(obj(&[
        ("@type", text("type.googleapis.com/google.rpc.BadRequest")),
        ("fieldViolations", Ordered::List(vec![obj(&[("field", text(field)), ("description", text(message))])])),
    ]))
}

/// `/{version}/models` or `/{version}/{models|tunedModels}/{name}:{method}`.
fn route(ex: &Exchange) -> Option<Route> {
    let path = ex.uri.path().strip_prefix('/')?;
    let (_version, rest) = path.split_once('/')?;
    if ex.method == Method::GET {
        return (rest == "models").then_some(Route::ListModels);
    }
    if ex.method != Method::POST || !(rest.starts_with("models/") || rest.starts_with("tunedModels/")) {
        return None;
    }
    let (name, method) = rest.rsplit_once(':')?;
    let model = name.split_once('/').map_or(name, |(_, m)| m).to_owned();
    let alt_sse = ex.uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    let stream = match method {
        "embedContent" => return Some(Route::Embed { model, batch: false }),
        "batchEmbedContents" => return Some(Route::Embed { model, batch: true }),
        "generateContent" => None,
        "streamGenerateContent" if alt_sse => Some(StreamMode::Sse),
        "streamGenerateContent" => Some(StreamMode::JsonArray),
        _ => return None,
    };
    Some(Route::Generate { model, stream })
}

/// Google's answers to a missing (403) or wrong (400 `API_KEY_INVALID`) key.
fn authorize(state: &State, ex: &Exchange) -> Result<(), Box<FakeResponse>> {
    let Some(expected) = &state.config.api_key else { return Ok(()) };
    let header = ex.headers.get("x-goog-api-key").and_then(|v| v.to_str().ok());
    let query = ex.uri.query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("key=")));
    match header.or(query) {
        Some(k) if k == expected => Ok(()),
        Some(_) => {
            let e = GeminiError { message: "API key not valid. Please pass a valid API key.".into(), ..GeminiError::new(400) };
            let details = [
                obj(&[
                    ("@type", text("type.googleapis.com/google.rpc.ErrorInfo")),
                    ("reason", text("API_KEY_INVALID")),
                    ("domain", text("googleapis.com")),
                    ("metadata", obj(&[("service", text("generativelanguage.googleapis.com"))])),
                ]),
                obj(&[("@type", text("type.googleapis.com/google.rpc.LocalizedMessage")), ("locale", text("en-US")), ("message", text(&e.message))]),
            ];
            Err(Box::new(error_response(&e, &details)))
        }
        None => {
            let message = "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.";
            Err(Box::new(error_response(&GeminiError { message: message.into(), ..GeminiError::new(403) }, &[])))
        }
    }
}

/// Gemini 3's rule: the first function call of every model turn carries a signature, one this
/// server issued.
fn check_signatures(state: &State, body: &Value) -> Result<(), String> {
    let contents = body.get("contents").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (i, content) in contents.iter().enumerate().filter(|(_, c)| c.get("role").and_then(Value::as_str) == Some("model")) {
        let parts = content.get("parts").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let Some(first) = parts.iter().find(|p| p.get("functionCall").is_some() || p.get("function_call").is_some()) else { continue };
        let name = first.pointer("/functionCall/name").or_else(|| first.pointer("/function_call/name")).and_then(Value::as_str).unwrap_or("");
        match first.get("thoughtSignature").or_else(|| first.get("thought_signature")).and_then(Value::as_str) {
            None => {
                return Err(format!(
                    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.",
                    i + 1
                ));
            }
            Some(sig) if !state.knows(sig) => return Err("Corrupted thought signature.".to_owned()),
            Some(_) => {}
        }
    }
    Ok(())
}

async fn perform(state: &State, mut step: GeminiStep, body: &Value, model: &str, stream: Option<StreamMode>) -> Option<FakeResponse> {
    loop {
        match step {
            GeminiStep::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                step = *inner;
            }
            GeminiStep::Hang => std::future::pending::<()>().await,
            GeminiStep::Reset => return None,
            GeminiStep::Auto => step = GeminiStep::Answer(auto_answer(body, state.config.chunks)),
            _ => break,
        }
    }
    let meta = Meta { model, response_id: response_id(), prompt_tokens: prompt_tokens(body) };
    let response = match step {
        GeminiStep::Answer(answer) => {
            issue_signatures(state, &answer);
            let events = meta.answer_events(&answer);
            match stream {
                Some(mode) => stream_response(mode, events, answer.chunk_delay, StreamEnd::Clean),
                None => {
                    let delay = answer.chunk_delay.saturating_mul(events.len().saturating_sub(1) as u32);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    full(StatusCode::OK, JSON, pretty(&meta.whole(&answer)))
                }
            }
        }
        GeminiStep::PromptBlocked(reason) => {
            let blocked = meta.prompt_blocked(&reason);
            match stream {
                Some(mode) => stream_response(mode, vec![blocked], Duration::ZERO, StreamEnd::Clean),
                None => full(StatusCode::OK, JSON, pretty(&blocked)),
            }
        }
        GeminiStep::Error(e) => error_response(&e, &[]),
        GeminiStep::DropAfter(n) => match stream {
            Some(mode) => stream_response(mode, meta.filler_events(n), Duration::ZERO, StreamEnd::Abort),
            None => {
                let whole = pretty(&meta.whole(&filler_answer(n.max(2))));
                let half = Bytes::copy_from_slice(&whole[..whole.len() / 2]);
                streamed(StatusCode::OK, JSON, vec![(Duration::ZERO, half)], StreamEnd::Abort)
            }
        },
        GeminiStep::EndWithoutFinish(n) => stream_response(stream.unwrap_or(StreamMode::Sse), meta.filler_events(n), Duration::ZERO, StreamEnd::Clean),
        GeminiStep::ErrorEvent { after, error } => {
            let mut pieces: Vec<(Duration, Bytes)> = meta.filler_events(after).iter().map(|e| (Duration::ZERO, sse_event(e))).collect();
            pieces.push((Duration::ZERO, sse_event(&error_body(&error, &[]))));
            streamed(StatusCode::OK, SSE, pieces, StreamEnd::Clean)
        }
        GeminiStep::Delay(..) | GeminiStep::Hang | GeminiStep::Reset | GeminiStep::Auto => unreachable!("resolved above"),
    };
    Some(response)
}

/// Dimensions of the fake's embeddings unless `outputDimensionality` asks for fewer
/// (`gemini-embedding-001` gives 3072; the fake keeps answers small).
pub const EMBED_DIMENSIONS: usize = 768;

/// `:embedContent` / `:batchEmbedContents`: scripted errors, delays, resets and hangs apply;
/// any other step answers `{"embedding": {"values": [...]}}` / `{"embeddings": [{"values"}]}`
/// (deterministic unit vectors of the text, `outputDimensionality` long). Gemini reports no
/// token usage for embeddings, and neither does the fake.
async fn embed(mut step: GeminiStep, body: &Value, model: &str, batch: bool) -> Option<FakeResponse> {
    loop {
        match step {
            GeminiStep::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                step = *inner;
            }
            GeminiStep::Hang => std::future::pending::<()>().await,
            GeminiStep::Reset => return None,
            _ => break,
        }
    }
    if let GeminiStep::Error(e) | GeminiStep::ErrorEvent { error: e, .. } = &step {
        return Some(error_response(e, &[]));
    }
    let requests: Vec<&Value> = if batch {
        if let Err(message) = validate::batch_embed(body, model) {
            return Some(error_response(&GeminiError { message, ..GeminiError::new(400) }, &[]));
        }
        body["requests"].as_array().map(|r| r.iter().collect()).unwrap_or_default()
    } else {
        if let Err(message) = validate::embed(body, "") {
            return Some(error_response(&GeminiError { message, ..GeminiError::new(400) }, &[]));
        }
        vec![body]
    };
    let vectors: Vec<Value> = requests
        .iter()
        .map(|r| {
            let text: String = r.pointer("/content/parts").and_then(Value::as_array).into_iter().flatten().filter_map(|p| p["text"].as_str()).collect();
            let dims = r.get("outputDimensionality").and_then(Value::as_u64).map_or(EMBED_DIMENSIONS, |d| d as usize);
            json!({"values": embed_vector(&text, dims)})
        })
        .collect();
    let answer = if batch { json!({"embeddings": vectors}) } else { json!({"embedding": vectors[0]}) };
    match step {
        GeminiStep::DropAfter(_) => {
            let whole = pretty(&answer);
            let half = Bytes::copy_from_slice(&whole[..whole.len() / 2]);
            Some(streamed(StatusCode::OK, JSON, vec![(Duration::ZERO, half)], StreamEnd::Abort))
        }
        _ => Some(full(StatusCode::OK, JSON, pretty(&answer))),
    }
}

/// A deterministic unit vector of `dims` dimensions for `text`.
fn embed_vector(text: &str, dims: usize) -> Vec<f64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f64> = (0..dims as u64)
        .map(|i| {
            let mut z = h ^ (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
            z ^= z >> 33;
            // Rounded to float precision, as Google's values are.
            f64::from(((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x = f64::from((*x / norm) as f32));
    }
    v
}

fn issue_signatures(state: &State, answer: &Answer) {
    for part in &answer.parts {
        if let AnswerPart::Call { thought_signature: Some(sig), .. } = part {
            state.issue(sig);
        }
    }
}

/// [`GeminiStep::Auto`]'s answer to `body`.
fn auto_answer(body: &Value, chunks: usize) -> Answer {
    let last_parts = body
        .get("contents")
        .and_then(Value::as_array)
        .and_then(|c| c.last())
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let results: Vec<&Value> = last_parts.iter().filter_map(|p| p.get("functionResponse").or_else(|| p.get("function_response"))).collect();
    let step = if !results.is_empty() {
        let quoted: Vec<String> = results.iter().map(|r| format!("{} returned {}", r["name"].as_str().unwrap_or("?"), r["response"])).collect();
        GeminiStep::text(format!("The function {}.", quoted.join(", and ")))
    } else if let Some((name, schema)) = callable_function(body) {
        GeminiStep::function_call(&name, example_args(&schema))
    } else {
        GeminiStep::text(DEFAULT_TEXT)
    };
    match step.chunks(chunks) {
        GeminiStep::Answer(a) => a,
        _ => unreachable!("text and function_call are answers"),
    }
}

/// The function [`GeminiStep::Auto`] calls: the first allowed declared one, unless the request
/// sets function calling to `NONE`.
fn callable_function(body: &Value) -> Option<(String, Value)> {
    let config = body.pointer("/toolConfig/functionCallingConfig");
    if config.and_then(|c| c.get("mode")).and_then(Value::as_str) == Some("NONE") {
        return None;
    }
    let allowed: Option<Vec<&str>> =
        config.and_then(|c| c.get("allowedFunctionNames")).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect());
    let declarations = body.get("tools")?.as_array()?.iter().filter_map(|t| t.get("functionDeclarations")?.as_array()).flatten();
    for d in declarations {
        let name = d.get("name").and_then(Value::as_str)?;
        if allowed.as_ref().is_none_or(|a| a.contains(&name)) {
            return Some((name.to_owned(), d.get("parameters").cloned().unwrap_or(Value::Null)));
        }
    }
    None
}

/// Arguments that fit `schema`: one example value per property.
fn example_args(schema: &Value) -> Value {
    let mut args = Map::new();
    for (name, prop) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
        let kind = prop.get("type").and_then(Value::as_str).unwrap_or("string").to_ascii_lowercase();
        let value = match kind.as_str() {
            "integer" | "number" => json!(1),
            "boolean" => json!(true),
            "array" => json!([]),
            "object" => json!({}),
            _ => match prop.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
                Some(first) => first.clone(),
                None => json!("example"),
            },
        };
        args.insert(name.clone(), value);
    }
    Value::Object(args)
}

fn filler_answer(words: usize) -> Answer {
    let text: Vec<&str> = ["Hello ", "from ", "the ", "fake ", "Gemini. "].into_iter().cycle().take(words).collect();
    match GeminiStep::text(text.concat()).chunks(words) {
        GeminiStep::Answer(a) => a,
        _ => unreachable!("text is an answer"),
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering. Typed structs, serialized directly (never through `serde_json::Value`, whose map
// would sort the keys), keep Google's field order.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<Candidate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: UsageMetadata,
    model_version: String,
    response_id: String,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<ContentOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<String>,
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_ratings: Option<Vec<SafetyRating>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_message: Option<&'static str>,
}

#[derive(Clone, Serialize)]
struct ContentOut {
    parts: Vec<PartOut>,
    role: &'static str,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct PartOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<FunctionCallOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought_signature: Option<String>,
}

#[derive(Clone, Serialize)]
struct FunctionCallOut {
    name: String,
    args: Value,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: String,
    safety_ratings: Vec<SafetyRating>,
}

#[derive(Clone, Serialize)]
struct SafetyRating {
    category: &'static str,
    probability: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    blocked: bool,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    candidates_token_count: u64,
    total_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    cached_content_token_count: u64,
    prompt_tokens_details: [ModalityTokens; 1],
    #[serde(skip_serializing_if = "is_zero")]
    thoughts_token_count: u64,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModalityTokens {
    modality: &'static str,
    token_count: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Google's error body, fields in Google's order.
#[derive(Clone, Serialize)]
struct ErrorResponse {
    error: ErrorOut,
}

#[derive(Clone, Serialize)]
struct ErrorOut {
    code: u16,
    message: String,
    status: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<Ordered>,
}

/// One piece of an answer: what a stream event holds (all of them, merged, the whole body).
enum Piece<'a> {
    Text(&'a str),
    Thought(&'a str),
    Call(&'a str, &'a Value, Option<&'a str>),
}

impl Piece<'_> {
    fn part(&self) -> PartOut {
        let mut part = PartOut { text: None, function_call: None, thought: None, thought_signature: None };
        match *self {
            Piece::Text(t) => part.text = Some(t.to_owned()),
            Piece::Thought(t) => {
                part.text = Some(t.to_owned());
                part.thought = Some(true);
            }
            Piece::Call(name, args, sig) => {
                part.function_call = Some(FunctionCallOut { name: name.to_owned(), args: args.clone() });
                part.thought_signature = sig.map(str::to_owned);
            }
        }
        part
    }

    fn tokens(&self) -> u64 {
        match self {
            Piece::Text(t) => words(t),
            Piece::Thought(_) => 0,
            Piece::Call(name, args, _) => 1 + words(name) + words(&args.to_string()),
        }
    }
}

/// What every message of one answer shares.
struct Meta<'a> {
    model: &'a str,
    response_id: String,
    prompt_tokens: u64,
}

impl Meta<'_> {
    fn usage(&self, candidates: u64, answer: Option<&Answer>) -> UsageMetadata {
        let thoughts = answer.map_or(0, |a| a.thoughts_tokens);
        UsageMetadata {
            prompt_token_count: self.prompt_tokens,
            candidates_token_count: candidates,
            total_token_count: self.prompt_tokens + candidates + thoughts,
            cached_content_token_count: answer.map_or(0, |a| a.cached_tokens),
            prompt_tokens_details: [ModalityTokens { modality: "TEXT", token_count: self.prompt_tokens }],
            thoughts_token_count: thoughts,
        }
    }

    fn response(&self, candidate: Candidate, usage: UsageMetadata) -> Response {
        Response {
            candidates: vec![candidate],
            prompt_feedback: None,
            usage_metadata: usage,
            model_version: self.model.to_owned(),
            response_id: self.response_id.clone(),
        }
    }

    /// The non-streaming body: every part in one candidate.
    fn whole(&self, answer: &Answer) -> Response {
        let pieces = pieces(answer, 1);
        let tokens = pieces.iter().map(Piece::tokens).sum();
        self.response(candidate(&pieces, answer, true), self.usage(tokens, Some(answer)))
    }

    /// The stream events: one per piece, the last with the finish reason; usage (cumulative, as
    /// Gemini reports it) on each.
    fn answer_events(&self, answer: &Answer) -> Vec<Response> {
        let pieces = pieces(answer, answer.chunks);
        if pieces.is_empty() {
            return vec![self.response(candidate(&[], answer, true), self.usage(0, Some(answer)))];
        }
        let mut so_far = 0;
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                so_far += piece.tokens();
                let last = i + 1 == pieces.len();
                self.response(candidate(std::slice::from_ref(piece), answer, last), self.usage(so_far, Some(answer)))
            })
            .collect()
    }

    /// `n` text events of filler, none finished.
    fn filler_events(&self, n: usize) -> Vec<Response> {
        let mut events = self.answer_events(&filler_answer(n.max(1)));
        events.truncate(n);
        for e in &mut events {
            for c in &mut e.candidates {
                c.finish_reason = None;
            }
        }
        events
    }

    fn prompt_blocked(&self, reason: &str) -> Response {
        Response {
            candidates: Vec::new(),
            prompt_feedback: Some(PromptFeedback { block_reason: reason.to_owned(), safety_ratings: safety_ratings(true) }),
            usage_metadata: self.usage(0, None),
            model_version: self.model.to_owned(),
            response_id: self.response_id.clone(),
        }
    }
}

/// An answer's pieces: each text split into up to `chunks` word runs, thoughts and calls whole.
fn pieces(answer: &Answer, chunks: usize) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    for part in &answer.parts {
        match part {
            AnswerPart::Text(t) => out.extend(split_words(t, chunks).into_iter().map(Piece::Text)),
            AnswerPart::Thought(t) => out.push(Piece::Thought(t)),
            AnswerPart::Call { name, args, thought_signature } => out.push(Piece::Call(name, args, thought_signature.as_deref())),
        }
    }
    out
}

fn candidate(pieces: &[Piece<'_>], answer: &Answer, last: bool) -> Candidate {
    let content = (!pieces.is_empty()).then(|| ContentOut { parts: pieces.iter().map(Piece::part).collect(), role: "model" });
    let has_calls = answer.parts.iter().any(|p| matches!(p, AnswerPart::Call { .. }));
    let filtered = last && ["SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"].contains(&answer.finish_reason.as_str());
    Candidate {
        content,
        finish_reason: last.then(|| answer.finish_reason.clone()),
        index: 0,
        safety_ratings: filtered.then(|| safety_ratings(true)),
        finish_message: (last && has_calls && answer.finish_reason == "STOP").then_some("Model generated function call(s)."),
    }
}

fn safety_ratings(blocked: bool) -> Vec<SafetyRating> {
    let rating = |category, probability, blocked| SafetyRating { category, probability, blocked };
    vec![
        rating("HARM_CATEGORY_SEXUALLY_EXPLICIT", "NEGLIGIBLE", false),
        rating("HARM_CATEGORY_HATE_SPEECH", "NEGLIGIBLE", false),
        rating("HARM_CATEGORY_HARASSMENT", "NEGLIGIBLE", false),
        rating("HARM_CATEGORY_DANGEROUS_CONTENT", if blocked { "HIGH" } else { "NEGLIGIBLE" }, blocked),
    ]
}

fn models_list() -> Value {
    let model = |name: &str, display: &str| {
        json!({
            "name": format!("models/{name}"),
            "version": "001",
            "displayName": display,
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"],
        })
    };
    json!({ "models": [model("gemini-2.5-flash", "Gemini 2.5 Flash"), model("gemini-2.5-pro", "Gemini 2.5 Pro")] })
}

fn error_body(e: &GeminiError, extra_details: &[Ordered]) -> ErrorResponse {
    let mut details: Vec<Ordered> = extra_details.to_vec();
    if let Some(delay) = &e.retry_delay {
        details.push(obj(&[
            ("@type", text("type.googleapis.com/google.rpc.QuotaFailure")),
            (
                "violations",
                Ordered::List(vec![obj(&[
                    ("quotaMetric", text("generativelanguage.googleapis.com/generate_content_free_tier_requests")),
                    ("quotaId", text("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")),
                    ("quotaDimensions", obj(&[("location", text("global")), ("model", text("gemini-2.5-flash"))])),
                    ("quotaValue", text("10")),
                ])]),
            ),
        ]));
        details.push(obj(&[
            ("@type", text("type.googleapis.com/google.rpc.Help")),
            (
                "links",
                Ordered::List(vec![obj(&[
                    ("description", text("Learn more about Gemini API quotas")),
                    ("url", text("https://ai.google.dev/gemini-api/docs/rate-limits")),
                ])]),
            ),
        ]));
        details.push(obj(&[("@type", text("type.googleapis.com/google.rpc.RetryInfo")), ("retryDelay", text(delay))]));
    }
    ErrorResponse { error: ErrorOut { code: e.code, message: e.message.clone(), status: e.status.clone(), details } }
}

/// JSON of strings, lists and objects that keeps object keys in the order written (serde_json's
/// map sorts them), for Google's error details.
#[derive(Clone, Debug)]
enum Ordered {
    Str(String),
    List(Vec<Ordered>),
    Obj(Vec<(&'static str, Ordered)>),
}

fn text(s: &str) -> Ordered {
    Ordered::Str(s.to_owned())
}

fn obj(pairs: &[(&'static str, Ordered)]) -> Ordered {
    Ordered::Obj(pairs.to_vec())
}

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Ordered::Str(v) => s.serialize_str(v),
            Ordered::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Ordered::Obj(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

fn error_response(e: &GeminiError, extra_details: &[Ordered]) -> FakeResponse {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    full(status, JSON, pretty(&error_body(e, extra_details)))
}

fn stream_response(mode: StreamMode, events: Vec<Response>, delay: Duration, end: StreamEnd) -> FakeResponse {
    match mode {
        StreamMode::Sse => {
            let pieces = events.iter().enumerate().map(|(i, e)| (if i == 0 { Duration::ZERO } else { delay }, sse_event(e))).collect();
            streamed(StatusCode::OK, SSE, pieces, end)
        }
        StreamMode::JsonArray => {
            let mut pieces: Vec<(Duration, Bytes)> = Vec::with_capacity(events.len() + 1);
            for (i, e) in events.iter().enumerate() {
                let mut piece = Vec::from(if i == 0 { &b"["[..] } else { &b",\r\n"[..] });
                piece.extend_from_slice(&pretty(e));
                pieces.push((if i == 0 { Duration::ZERO } else { delay }, Bytes::from(piece)));
            }
            if end == StreamEnd::Clean {
                pieces.push((Duration::ZERO, Bytes::from_static(b"]")));
            }
            streamed(StatusCode::OK, JSON, pieces, end)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Byte formats
// ---------------------------------------------------------------------------------------------

/// serde_json's compact output with `": "` after keys: how Google's server writes SSE events.
struct GoogleCompact;

impl serde_json::ser::Formatter for GoogleCompact {
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

/// `data: <json>\r\n\r\n`, Google's SSE framing.
fn sse_event(value: &impl Serialize) -> Bytes {
    let mut out = b"data: ".to_vec();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoogleCompact);
    value.serialize(&mut ser).expect("serializing to memory cannot fail");
    out.extend_from_slice(b"\r\n\r\n");
    Bytes::from(out)
}

/// Two-space indented JSON with a final newline: how Google writes whole bodies.
fn pretty(value: &impl Serialize) -> Bytes {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"  "));
    value.serialize(&mut ser).expect("serializing to memory cannot fail");
    out.push(b'\n');
    Bytes::from(out)
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Prompt tokens: the words of every text part (at least 1).
fn prompt_tokens(body: &Value) -> u64 {
    fn count(v: &Value) -> u64 {
        match v {
            Value::Object(m) => m.iter().map(|(k, v)| if k == "text" { v.as_str().map_or(0, words) } else { count(v) }).sum(),
            Value::Array(a) => a.iter().map(count).sum(),
            _ => 0,
        }
    }
    let texts = count(body.get("contents").unwrap_or(&Value::Null)) + count(body.get("systemInstruction").unwrap_or(&Value::Null));
    texts.max(1)
}

/// Splits `text` into at most `pieces` runs of whole words (each with its following space).
fn split_words(text: &str, pieces: usize) -> Vec<&str> {
    let starts: Vec<usize> = text
        .char_indices()
        .filter(|&(i, c)| !c.is_whitespace() && (i == 0 || text[..i].ends_with(char::is_whitespace)))
        .map(|(i, _)| i)
        .collect();
    if starts.is_empty() {
        return if text.is_empty() { Vec::new() } else { vec![text] };
    }
    let pieces = pieces.clamp(1, starts.len());
    let (per, extra) = (starts.len() / pieces, starts.len() % pieces);
    let mut out = Vec::with_capacity(pieces);
    let (mut begin, mut word) = (0, 0);
    for piece in 0..pieces {
        word += per + usize::from(piece < extra);
        let end = starts.get(word).copied().unwrap_or(text.len());
        out.push(&text[begin..end]);
        begin = end;
    }
    out
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut bits = 0u64;
    for i in 0..len {
        if i % 8 == 0 {
            bits = random_u64();
        }
        out.push(alphabet[(bits % alphabet.len() as u64) as usize] as char);
        bits >>= 8;
    }
    out
}

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A fresh opaque signature shaped like Gemini's (base64).
fn signature() -> String {
    format!("Ci{}", random_string(BASE64, 126))
}

/// A `responseId` shaped like Gemini's (23 URL-safe characters).
fn response_id() -> String {
    random_string(&BASE64[..62], 23)
}

/// Request validation: what Gemini rejects with a 400 before generating anything.
mod validate {
    use serde_json::Value;

    /// The messages of the request body that Switchyard may send, and what each field holds.
    #[derive(Clone, Copy)]
    enum Shape {
        Msg(Msg),
        List(Msg),
        /// A map of names to messages (a schema's `properties`).
        Map(Msg),
        /// Any JSON (scalars, free-form structs such as `args`).
        Free,
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Msg {
        Request,
        Content,
        Part,
        Blob,
        FileData,
        FunctionCall,
        FunctionResponse,
        Tool,
        FunctionDeclaration,
        Schema,
        ToolConfig,
        FunctionCallingConfig,
        GenerationConfig,
        ThinkingConfig,
        SafetySetting,
        EmbedRequest,
        BatchEmbedRequest,
    }

    use Msg::*;
    use Shape::{Free, List, Map};

    fn fields(msg: Msg) -> &'static [(&'static str, Shape)] {
        match msg {
            Request => &[
                ("contents", List(Content)),
                ("systemInstruction", Shape::Msg(Content)),
                ("tools", List(Tool)),
                ("toolConfig", Shape::Msg(ToolConfig)),
                ("generationConfig", Shape::Msg(GenerationConfig)),
                ("safetySettings", List(SafetySetting)),
                ("cachedContent", Free),
            ],
            Content => &[("role", Free), ("parts", List(Part))],
            Part => &[
                ("text", Free),
                ("inlineData", Shape::Msg(Blob)),
                ("fileData", Shape::Msg(FileData)),
                ("functionCall", Shape::Msg(FunctionCall)),
                ("functionResponse", Shape::Msg(FunctionResponse)),
                ("thought", Free),
                ("thoughtSignature", Free),
                ("executableCode", Free),
                ("codeExecutionResult", Free),
                ("videoMetadata", Free),
            ],
            Blob => &[("mimeType", Free), ("data", Free)],
            FileData => &[("mimeType", Free), ("fileUri", Free)],
            FunctionCall => &[("id", Free), ("name", Free), ("args", Free)],
            FunctionResponse => &[("id", Free), ("name", Free), ("response", Free), ("willContinue", Free), ("scheduling", Free)],
            Tool => &[
                ("functionDeclarations", List(FunctionDeclaration)),
                ("googleSearch", Free),
                ("googleSearchRetrieval", Free),
                ("codeExecution", Free),
                ("urlContext", Free),
            ],
            FunctionDeclaration => &[
                ("name", Free),
                ("description", Free),
                ("parameters", Shape::Msg(Schema)),
                ("parametersJsonSchema", Free),
                ("response", Shape::Msg(Schema)),
                ("responseJsonSchema", Free),
                ("behavior", Free),
            ],
            Schema => &[
                ("type", Free),
                ("format", Free),
                ("title", Free),
                ("description", Free),
                ("nullable", Free),
                ("enum", Free),
                ("maxItems", Free),
                ("minItems", Free),
                ("properties", Map(Schema)),
                ("required", Free),
                ("minProperties", Free),
                ("maxProperties", Free),
                ("minLength", Free),
                ("maxLength", Free),
                ("pattern", Free),
                ("example", Free),
                ("anyOf", List(Schema)),
                ("propertyOrdering", Free),
                ("default", Free),
                ("items", Shape::Msg(Schema)),
                ("minimum", Free),
                ("maximum", Free),
            ],
            ToolConfig => &[("functionCallingConfig", Shape::Msg(FunctionCallingConfig))],
            FunctionCallingConfig => &[("mode", Free), ("allowedFunctionNames", Free)],
            GenerationConfig => &[
                ("stopSequences", Free),
                ("responseMimeType", Free),
                ("responseSchema", Shape::Msg(Schema)),
                ("responseJsonSchema", Free),
                ("responseModalities", Free),
                ("candidateCount", Free),
                ("maxOutputTokens", Free),
                ("temperature", Free),
                ("topP", Free),
                ("topK", Free),
                ("seed", Free),
                ("presencePenalty", Free),
                ("frequencyPenalty", Free),
                ("responseLogprobs", Free),
                ("logprobs", Free),
                ("enableEnhancedCivicAnswers", Free),
                ("speechConfig", Free),
                ("thinkingConfig", Shape::Msg(ThinkingConfig)),
                ("mediaResolution", Free),
            ],
            ThinkingConfig => &[("includeThoughts", Free), ("thinkingBudget", Free), ("thinkingLevel", Free)],
            SafetySetting => &[("category", Free), ("threshold", Free)],
            EmbedRequest => &[
                ("model", Free),
                ("content", Shape::Msg(Content)),
                ("taskType", Free),
                ("title", Free),
                ("outputDimensionality", Free),
            ],
            BatchEmbedRequest => &[("requests", List(EmbedRequest))],
        }
    }

    /// Checks a request body as Gemini does; `Err` holds Gemini's message.
    pub(super) fn request(body: &Value) -> Result<(), String> {
        if !body.is_object() {
            return Err("Invalid JSON payload received. Expected an object.".to_owned());
        }
        message(body, Request, "")?;
        let contents = body.get("contents").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if contents.is_empty() {
            return Err("* GenerateContentRequest.contents: contents is not specified\n".to_owned());
        }
        for (i, c) in contents.iter().enumerate() {
            if let Some(role) = c.get("role").and_then(Value::as_str) {
                if role != "user" && role != "model" {
                    return Err("Please use a valid role: user, model.".to_owned());
                }
            }
            if c.get("parts").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                return Err(format!("* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"));
            }
        }
        Ok(())
    }

    /// Checks an `EmbedContentRequest` (`path` locates it within a batch) as Gemini does.
    pub(super) fn embed(body: &Value, path: &str) -> Result<(), String> {
        message(body, EmbedRequest, path)?;
        let parts = body.pointer("/content/parts").and_then(Value::as_array);
        if parts.is_none_or(|p| p.is_empty()) {
            let at = if path.is_empty() { String::new() } else { format!("{path}.") };
            return Err(format!("* EmbedContentRequest.{at}content.parts: contents.parts must not be empty.\n"));
        }
        Ok(())
    }

    /// Checks a `BatchEmbedContentsRequest` for the model in the URL: every request names that
    /// model (`models/{model}`).
    pub(super) fn batch_embed(body: &Value, model: &str) -> Result<(), String> {
        message(body, BatchEmbedRequest, "")?;
        let requests = body.get("requests").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if requests.is_empty() {
            return Err("* BatchEmbedContentsRequest.requests: requests is not specified\n".to_owned());
        }
        let expected = format!("models/{model}");
        for (i, r) in requests.iter().enumerate() {
            embed(r, &format!("requests[{i}]"))?;
            if r.get("model").and_then(Value::as_str) != Some(expected.as_str()) {
                return Err(format!("* BatchEmbedContentsRequest.requests[{i}].model: Model name in the request does not match the model name in the URL ({expected}).\n"));
            }
        }
        Ok(())
    }

    /// proto JSON accepts `lowerCamel` and `snake_case` names; fields are listed in lowerCamel.
    fn camel(name: &str) -> String {
        let mut out = String::with_capacity(name.len());
        let mut upper = false;
        for c in name.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.push(c.to_ascii_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }

    /// The proto field name used in Google's error paths.
    fn snake(name: &str) -> String {
        let mut out = String::with_capacity(name.len() + 4);
        for c in name.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    fn join(path: &str, field: &str) -> String {
        if path.is_empty() { snake(field) } else { format!("{path}.{}", snake(field)) }
    }

    fn message(value: &Value, msg: Msg, path: &str) -> Result<(), String> {
        let Some(obj) = value.as_object() else {
            return Err(format!("Invalid value at '{path}', expected an object."));
        };
        let known = fields(msg);
        for (key, v) in obj {
            let name = camel(key);
            let Some((_, shape)) = known.iter().find(|(f, _)| *f == name) else {
                let at = if path.is_empty() { String::new() } else { format!(" at '{path}'") };
                return Err(format!("Invalid JSON payload received. Unknown name \"{key}\"{at}: Cannot find field."));
            };
            let here = join(path, &name);
            match *shape {
                Shape::Msg(m) => message(v, m, &here)?,
                List(m) => {
                    let Some(items) = v.as_array() else { return Err(format!("Invalid value at '{here}', expected a list.")) };
                    for (i, item) in items.iter().enumerate() {
                        message(item, m, &format!("{here}[{i}]"))?;
                    }
                }
                Map(m) => {
                    let Some(entries) = v.as_object() else { return Err(format!("Invalid value at '{here}', expected a map.")) };
                    for (k, item) in entries {
                        message(item, m, &format!("{here}[{k}]"))?;
                    }
                }
                Free => {}
            }
        }
        if msg == Schema {
            schema_rules(obj, path)?;
        }
        Ok(())
    }

    /// The semantic checks Gemini applies to a `Schema`.
    fn schema_rules(obj: &serde_json::Map<String, Value>, path: &str) -> Result<(), String> {
        let kind = obj.get("type").and_then(Value::as_str).map(str::to_ascii_uppercase);
        let props = obj.get("properties").and_then(Value::as_object);
        if kind.as_deref() == Some("OBJECT") && props.is_some_and(|p| p.is_empty()) {
            return Err(format!("* GenerateContentRequest.{path}.properties: should be non-empty for OBJECT type\n"));
        }
        if let Some(required) = obj.get("required").and_then(Value::as_array) {
            for (i, r) in required.iter().enumerate() {
                let defined = r.as_str().is_some_and(|name| props.is_some_and(|p| p.contains_key(name)));
                if !defined {
                    return Err(format!("* GenerateContentRequest.{path}.required[{i}]: property is not defined\n"));
                }
            }
        }
        if kind.as_deref() == Some("STRING") {
            if let Some(format) = obj.get("format").and_then(Value::as_str) {
                if format != "enum" && format != "date-time" {
                    return Err(format!("* GenerateContentRequest.{path}.format: only 'enum' and 'date-time' are supported for STRING type\n"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words() {
        assert_eq!(split_words("one two three four five", 2), ["one two three ", "four five"]);
        assert_eq!(split_words("a", 4), ["a"]);
        assert!(split_words("", 3).is_empty());
    }

    #[test]
    fn sse_events_are_written_as_google_writes_them() {
        let e = json!({"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "index": 0}]});
        assert_eq!(&sse_event(&e)[..], &b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"},\"index\": 0}]}\r\n\r\n"[..]);
        assert_eq!(&pretty(&json!({"a": [1]}))[..], b"{\n  \"a\": [\n    1\n  ]\n}\n");
    }

    #[test]
    fn validation_names_unknown_fields_like_gemini() {
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}]}]});
        assert_eq!(
            validate::request(&body).unwrap_err(),
            "Invalid JSON payload received. Unknown name \"additionalProperties\" at 'tools[0].function_declarations[0].parameters': Cannot find field."
        );
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generation_config": {"max_output_tokens": 5}});
        assert!(validate::request(&body).is_ok(), "snake_case names are accepted");
        let body = json!({"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]});
        assert_eq!(validate::request(&body).unwrap_err(), "Please use a valid role: user, model.");
        let body = json!({"contents": [], "model": "x"});
        assert!(validate::request(&body).unwrap_err().contains("Unknown name \"model\""));
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "properties": {}}}]}]});
        assert!(validate::request(&body).unwrap_err().contains("should be non-empty for OBJECT type"));
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string", "format": "uri"}}, "required": ["a"]}}]}]});
        assert!(validate::request(&body).unwrap_err().contains("only 'enum' and 'date-time'"));
    }

    #[test]
    fn auto_calls_the_first_allowed_function_then_reports_its_result() {
        let body = json!({"contents": [{"role": "user", "parts": [{"text": "weather?"}]}],
            "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}});
        let answer = auto_answer(&body, 4);
        match &answer.parts[..] {
            [AnswerPart::Call { name, args, thought_signature: Some(_) }] => {
                assert_eq!(name, "get_weather");
                assert_eq!(args, &json!({"city": "example", "days": 1}));
            }
            other => panic!("{other:?}"),
        }
        let body = json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"t": 21}}}]}]});
        match &auto_answer(&body, 4).parts[..] {
            [AnswerPart::Text(t)] => assert_eq!(t, "The function get_weather returned {\"t\":21}."),
            other => panic!("{other:?}"),
        }
    }
}
