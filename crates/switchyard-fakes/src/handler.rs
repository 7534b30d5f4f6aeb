//! Routing and the chat-completions handler.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use crate::body::{Abort, FakeBody, Tail};
use crate::script::{DEFAULT_REPLY, Reply, Step};
use crate::upstream::{Connection, Shared};
use crate::{ids, wire};

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const TEXT_EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// OpenAI's answer to a body that is not JSON.
const MALFORMED_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)";

type HandlerResult = Result<Response<FakeBody>, Abort>;

/// Routes one request. An `Err` makes hyper drop the connection without answering.
pub(crate) async fn handle(conn: Arc<Connection>, request: Request<Incoming>) -> HandlerResult {
    match (request.method(), request.uri().path()) {
        // Any path ending in /chat/completions: also Azure's /openai/deployments/{name}/...
        (&Method::POST, path) if path.ends_with("/chat/completions") => chat(&conn, request).await,
        // Also Azure's /openai/deployments/{name}/embeddings.
        (&Method::POST, path) if path.ends_with("/embeddings") => embeddings(&conn, request).await,
        (&Method::GET, "/v1/models" | "/models") => {
            let status = conn.shared.models_request(request.headers().clone());
            match StatusCode::from_u16(status) {
                Ok(StatusCode::OK) => Ok(json_response(
                    StatusCode::OK,
                    FakeBody::full(conn.shared.config.models_body.clone(), None),
                )),
                status => {
                    let status = status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let message = status.canonical_reason().unwrap_or("error");
                    let body = wire::error_body(message, "server_error", None, None);
                    Ok(json_response(status, FakeBody::full(body, None)))
                }
            }
        }
        (method, path) => {
            let message = format!("Invalid URL ({method} {path})");
            let body = wire::error_body(&message, "invalid_request_error", None, None);
            Ok(json_response(
                StatusCode::NOT_FOUND,
                FakeBody::full(body, None),
            ))
        }
    }
}

/// Counts a chat request as cancelled unless disarmed: dropped by hyper mid-flight means the
/// client went away.
struct InFlight<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl InFlight<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.count_cancelled();
        }
    }
}

/// What the handler needs from a chat request.
struct Exchange {
    model: String,
    stream: bool,
    include_usage: bool,
    prompt_tokens: u64,
    /// The last user message's text, when the step echoes it.
    echo: Option<String>,
}

/// A request the fake rejects the way OpenAI would.
struct Invalid {
    message: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

async fn chat(conn: &Connection, request: Request<Incoming>) -> HandlerResult {
    let shared = &*conn.shared;
    shared.count_request();
    let in_flight = InFlight {
        shared,
        armed: true,
    };
    let (parts, body) = request.into_parts();
    // A failed read means the client went away: `in_flight` counts it.
    let bytes = body.collect().await.map_err(|_| Abort)?.to_bytes();

    let (json, parsed) = match serde_json::from_slice::<Value>(&bytes) {
        Ok(json) => {
            let parsed = parse(&json);
            (json, parsed)
        }
        Err(_) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let invalid = Invalid {
                message: MALFORMED_JSON,
                param: None,
                code: None,
            };
            (Value::String(text), Err(invalid))
        }
    };
    let (step, exchange) = match parsed {
        Ok(mut exchange) => {
            let step = shared.next_step();
            if step.needs_echo() {
                exchange.echo = Some(last_user_text(&json));
            }
            (step, exchange)
        }
        Err(invalid) => {
            shared.record(json, parts.headers, parts.uri.path_and_query().map_or_else(String::new, |p| p.to_string()));
            in_flight.disarm();
            let body = wire::error_body(
                invalid.message,
                "invalid_request_error",
                invalid.param,
                invalid.code,
            );
            let body = FakeBody::full(body, Some(conn.shared.clone()));
            return Ok(json_response(StatusCode::BAD_REQUEST, body));
        }
    };
    shared.record(json, parts.headers, parts.uri.path_and_query().map_or_else(String::new, |p| p.to_string()));

    let mut response = perform(conn, &step, &exchange).await;
    in_flight.disarm();
    if let Ok(r) = &mut response {
        shared.add_response_headers(r.headers_mut());
    }
    response
}

/// Extracts what the handler needs, rejecting what OpenAI rejects.
fn parse(json: &Value) -> Result<Exchange, Invalid> {
    let Some(model) = json.get("model").and_then(Value::as_str) else {
        return Err(Invalid {
            message: "you must provide a model parameter",
            param: None,
            code: None,
        });
    };
    let Some(messages) = json.get("messages").and_then(Value::as_array) else {
        return Err(Invalid {
            message: "Missing required parameter: 'messages'.",
            param: Some("messages"),
            code: Some("missing_required_parameter"),
        });
    };
    let prompt_words: usize = messages
        .iter()
        .map(|message| message_text(message).map(count_words).sum::<usize>())
        .sum();
    Ok(Exchange {
        model: model.to_owned(),
        stream: json.get("stream").and_then(Value::as_bool) == Some(true),
        include_usage: json
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true),
        prompt_tokens: prompt_words.max(1) as u64,
        echo: None,
    })
}

/// The text pieces of a message: its string content, or the `text` of its content parts.
fn message_text(message: &Value) -> impl Iterator<Item = &str> {
    let content = message.get("content");
    let whole = content.and_then(Value::as_str);
    let parts = content
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|part| part.get("text").and_then(Value::as_str));
    whole.into_iter().chain(parts)
}

/// The text of the last user message (empty if there is none).
fn last_user_text(json: &Value) -> String {
    json.get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| {
            messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .map(|message| message_text(message).collect())
        .unwrap_or_default()
}

fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Splits `text` into at most `pieces` pieces of whole words (each with the whitespace that
/// follows it), spreading the words evenly; always at least one piece.
fn split_words(text: &str, pieces: usize) -> Vec<&str> {
    let mut starts = Vec::new();
    let mut after_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if !space && after_space {
            starts.push(i);
        }
        after_space = space;
    }
    let words = starts.len();
    if words == 0 {
        return vec![text];
    }
    let pieces = pieces.clamp(1, words);
    let (per_piece, extra) = (words / pieces, words % pieces);
    let mut out = Vec::with_capacity(pieces);
    let (mut begin, mut word) = (0, 0);
    for piece in 0..pieces {
        word += per_piece + usize::from(piece < extra);
        let end = starts.get(word).copied().unwrap_or(text.len());
        out.push(&text[begin..end]);
        begin = end;
    }
    out
}

/// `text` cut into at most `pieces` pieces of about equal length, on character boundaries
/// (always at least one piece).
fn split_evenly(text: &str, pieces: usize) -> Vec<&str> {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len())).collect();
    let chars = bounds.len() - 1;
    let pieces = pieces.clamp(1, chars.max(1));
    (0..pieces).map(|p| &text[bounds[p * chars / pieces]..bounds[(p + 1) * chars / pieces]]).collect()
}

/// `n` content pieces for the failure steps: the words of the default reply, cycled.
fn filler_pieces(n: usize) -> impl Iterator<Item = &'static str> {
    const WORDS: [&str; 5] = ["Hello ", "from ", "the ", "fake ", "upstream. "];
    WORDS.into_iter().cycle().take(n)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Performs `step` (after any delays it wraps) for the exchange.
async fn perform(conn: &Connection, mut step: &Step, exchange: &Exchange) -> HandlerResult {
    let shared = &conn.shared;
    let config = &shared.config;
    loop {
        match step {
            Step::Delay(delay, inner) => {
                tokio::time::sleep(*delay).await;
                step = inner;
                continue;
            }
            Step::Hang => std::future::pending::<()>().await,
            Step::Reset => {
                conn.reset.store(true, Ordering::Relaxed);
                return Err(Abort);
            }
            _ => break,
        }
    }

    let meta = wire::Meta {
        id: if config.x_groq {
            ids::groq_completion_id()
        } else {
            ids::openai_completion_id()
        },
        created: unix_now(),
        model: &exchange.model,
        fingerprint: &config.fingerprint,
        finish_reason: match step {
            Step::Finish { finish_reason, .. } => finish_reason,
            Step::ToolCall { .. } => "tool_calls",
            _ => &config.finish_reason,
        },
        groq_id: config.x_groq.then(ids::groq_request_id),
        include_usage: exchange.include_usage,
    };
    let tracker = shared.clone();

    let response = match step {
        Step::Ok { .. } | Step::Finish { .. } => {
            let (text, chunks, chunk_delay) = match step {
                Step::Ok { reply: Reply::Fixed(text), chunks, chunk_delay } => (text.as_str(), *chunks, chunk_delay),
                Step::Ok { reply: Reply::Echo, chunks, chunk_delay } => (exchange.echo.as_deref().unwrap_or_default(), *chunks, chunk_delay),
                Step::Finish { reply, .. } => (reply.as_str(), 5, &Duration::ZERO),
                _ => unreachable!("matched above"),
            };
            let pieces = split_words(text, chunks);
            let usage = wire::Usage::new(exchange.prompt_tokens, count_words(text) as u64);
            if exchange.stream {
                let mut frames = VecDeque::with_capacity(pieces.len() + 4);
                frames.push_back((Duration::ZERO, meta.chunk_preamble()));
                for piece in &pieces {
                    frames.push_back((*chunk_delay, meta.chunk_content(piece)));
                }
                answer_stream(&meta, frames, &usage, tracker)
            } else {
                // Generation takes as long as the stream would have.
                let generation = chunk_delay.saturating_mul(pieces.len() as u32);
                if !generation.is_zero() {
                    tokio::time::sleep(generation).await;
                }
                let body = FakeBody::full(meta.completion(text, &usage), Some(tracker));
                json_response(StatusCode::OK, body)
            }
        }
        Step::Status {
            code,
            message,
            error_type,
            error_code,
            retry_after,
            retry_after_ms,
        } => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = wire::error_body(message, error_type, None, error_code.as_deref());
            let mut response = json_response(status, FakeBody::full(body, Some(tracker)));
            let headers = response.headers_mut();
            for (name, value) in [(RETRY_AFTER, retry_after), (RETRY_AFTER_MS, retry_after_ms)] {
                if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                    headers.insert(name, value);
                }
            }
            response
        }
        Step::ToolCall { name, arguments, fragments } => {
            let call_id = ids::openai_tool_call_id();
            // About four characters of arguments per token.
            let usage = wire::Usage::new(exchange.prompt_tokens, arguments.len().div_ceil(4) as u64);
            if exchange.stream {
                let pieces = split_evenly(arguments, *fragments);
                let mut frames = VecDeque::with_capacity(pieces.len() + 4);
                frames.push_back((Duration::ZERO, meta.chunk_tool_start(&call_id, name)));
                frames.extend(pieces.iter().map(|p| (Duration::ZERO, meta.chunk_tool_args(p))));
                answer_stream(&meta, frames, &usage, tracker)
            } else {
                let body = FakeBody::full(meta.tool_completion(&call_id, name, arguments, &usage), Some(tracker));
                json_response(StatusCode::OK, body)
            }
        }
        Step::PreambleThenError { message } | Step::ErrorAfter { message, .. } if !exchange.stream => {
            let body = wire::error_body(message, "server_error", None, None);
            json_response(StatusCode::INTERNAL_SERVER_ERROR, FakeBody::full(body, Some(tracker)))
        }
        Step::ErrorAfter { after, message } => {
            let mut frames = VecDeque::with_capacity(after + 2);
            frames.push_back((Duration::ZERO, meta.chunk_preamble()));
            frames.extend(filler_pieces(*after).map(|p| (Duration::ZERO, meta.chunk_content(p))));
            frames.push_back((Duration::ZERO, wire::sse_error(message)));
            sse_response(FakeBody::stream(frames, Tail::End, tracker))
        }
        Step::PreambleThenError { message } => {
            let frames = VecDeque::from([
                (Duration::ZERO, meta.chunk_preamble()),
                (Duration::ZERO, wire::sse_error(message)),
            ]);
            sse_response(FakeBody::stream(frames, Tail::End, tracker))
        }
        Step::DropAfter { after } | Step::StallAfter { after } => {
            let tail = if matches!(step, Step::DropAfter { .. }) {
                Tail::Abort
            } else {
                Tail::Stall
            };
            if exchange.stream {
                let mut frames = VecDeque::with_capacity(after + 1);
                frames.push_back((Duration::ZERO, meta.chunk_preamble()));
                frames
                    .extend(filler_pieces(*after).map(|p| (Duration::ZERO, meta.chunk_content(p))));
                sse_response(FakeBody::stream(frames, tail, tracker))
            } else {
                let usage =
                    wire::Usage::new(exchange.prompt_tokens, count_words(DEFAULT_REPLY) as u64);
                let full = meta.completion(DEFAULT_REPLY, &usage);
                let half = full.slice(..full.len() / 2);
                json_response(
                    StatusCode::OK,
                    FakeBody::truncated(half, full.len() as u64, tail, tracker),
                )
            }
        }
        Step::Delay(..) | Step::Hang | Step::Reset => unreachable!("handled above"),
    };
    Ok(response)
}

/// A successful stream: `frames` (the preamble and the content), then the finish chunk, the
/// usage chunk if the request asked for it, and `[DONE]`.
fn answer_stream(meta: &wire::Meta<'_>, mut frames: VecDeque<(Duration, Bytes)>, usage: &wire::Usage, tracker: Arc<Shared>) -> Response<FakeBody> {
    frames.push_back((Duration::ZERO, meta.chunk_finish(usage)));
    if meta.include_usage {
        frames.push_back((Duration::ZERO, meta.chunk_usage(usage)));
    }
    frames.push_back((Duration::ZERO, Bytes::from_static(wire::SSE_DONE)));
    sse_response(FakeBody::stream(frames, Tail::End, tracker))
}

/// What the handler needs from an embeddings request.
struct EmbedExchange {
    model: String,
    /// The inputs, token-id arrays written as their numbers joined by spaces.
    inputs: Vec<String>,
    prompt_tokens: u64,
    dimensions: usize,
    base64: bool,
}

/// OpenAI's `text-embedding-3-small` size, used unless the request asks for `dimensions`.
pub(crate) const DEFAULT_DIMENSIONS: usize = 1536;

/// Extracts what the embeddings handler needs, rejecting what OpenAI rejects.
fn parse_embeddings(json: &Value) -> Result<EmbedExchange, Invalid> {
    let Some(model) = json.get("model").and_then(Value::as_str) else {
        return Err(Invalid { message: "you must provide a model parameter", param: None, code: None });
    };
    let invalid_input = Invalid { message: "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", param: None, code: None };
    let tokens = |v: &Value| -> Option<String> {
        let ids: Option<Vec<String>> = v.as_array()?.iter().map(|t| t.as_u64().map(|n| n.to_string())).collect();
        ids.filter(|ids| !ids.is_empty()).map(|ids| ids.join(" "))
    };
    let (inputs, prompt_tokens) = match json.get("input") {
        None | Some(Value::Null) => {
            return Err(Invalid { message: "Missing required parameter: 'input'.", param: Some("input"), code: Some("missing_required_parameter") });
        }
        Some(Value::String(s)) => (vec![s.clone()], count_words(s).max(1) as u64),
        Some(Value::Array(items)) if items.is_empty() => return Err(invalid_input),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            let texts: Vec<String> = items.iter().filter_map(Value::as_str).map(str::to_owned).collect();
            let words = texts.iter().map(|t| count_words(t).max(1) as u64).sum();
            (texts, words)
        }
        Some(v @ Value::Array(items)) if items.iter().all(Value::is_u64) => {
            (vec![tokens(v).unwrap_or_default()], items.len() as u64)
        }
        Some(Value::Array(items)) => {
            let batches: Option<Vec<String>> = items.iter().map(tokens).collect();
            let Some(batches) = batches else { return Err(invalid_input) };
            let n = items.iter().filter_map(Value::as_array).map(|a| a.len() as u64).sum();
            (batches, n)
        }
        Some(_) => return Err(invalid_input),
    };
    let base64 = match json.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(Invalid { message: "Invalid value for 'encoding_format': must be 'float' or 'base64'.", param: Some("encoding_format"), code: Some("invalid_value") });
        }
    };
    let dimensions = match json.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(d) => match d.as_u64() {
            Some(n) if n >= 1 => n as usize,
            _ => return Err(Invalid { message: "Invalid value for 'dimensions': must be a positive integer.", param: Some("dimensions"), code: Some("invalid_value") }),
        },
    };
    Ok(EmbedExchange { model: model.to_owned(), inputs, prompt_tokens, dimensions, base64 })
}

/// `POST .../embeddings`: scripted like chat (the same [`Step`]s; a normal answer is the
/// embeddings list, whatever its reply text).
async fn embeddings(conn: &Connection, request: Request<Incoming>) -> HandlerResult {
    let shared = &*conn.shared;
    shared.count_request();
    let in_flight = InFlight { shared, armed: true };
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.map_err(|_| Abort)?.to_bytes();
    let uri = parts.uri.path_and_query().map_or_else(String::new, |p| p.to_string());
    let (json, parsed) = match serde_json::from_slice::<Value>(&bytes) {
        Ok(json) => {
            let parsed = parse_embeddings(&json);
            (json, parsed)
        }
        Err(_) => (Value::String(String::from_utf8_lossy(&bytes).into_owned()), Err(Invalid { message: MALFORMED_JSON, param: None, code: None })),
    };
    shared.record(json, parts.headers, uri);
    let exchange = match parsed {
        Ok(e) => e,
        Err(invalid) => {
            in_flight.disarm();
            let body = wire::error_body(invalid.message, "invalid_request_error", invalid.param, invalid.code);
            return Ok(json_response(StatusCode::BAD_REQUEST, FakeBody::full(body, Some(conn.shared.clone()))));
        }
    };
    let step = shared.next_step();
    let mut step: &Step = &step;
    loop {
        match step {
            Step::Delay(delay, inner) => {
                tokio::time::sleep(*delay).await;
                step = inner;
            }
            Step::Hang => std::future::pending::<()>().await,
            Step::Reset => {
                conn.reset.store(true, Ordering::Relaxed);
                return Err(Abort);
            }
            _ => break,
        }
    }
    let tracker = conn.shared.clone();
    let answer = || {
        let vectors: Vec<Vec<f32>> = exchange.inputs.iter().map(|t| wire::fake_vector(t, exchange.dimensions)).collect();
        wire::embedding_list(&exchange.model, &vectors, exchange.base64, exchange.prompt_tokens)
    };
    let response = match step {
        Step::Ok { .. } | Step::Finish { .. } | Step::ToolCall { .. } => json_response(StatusCode::OK, FakeBody::full(answer(), Some(tracker))),
        Step::Status { code, message, error_type, error_code, retry_after, retry_after_ms } => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = wire::error_body(message, error_type, None, error_code.as_deref());
            let mut response = json_response(status, FakeBody::full(body, Some(tracker)));
            let headers = response.headers_mut();
            for (name, value) in [(RETRY_AFTER, retry_after), (RETRY_AFTER_MS, retry_after_ms)] {
                if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                    headers.insert(name, value);
                }
            }
            response
        }
        Step::PreambleThenError { message } | Step::ErrorAfter { message, .. } => {
            let body = wire::error_body(message, "server_error", None, None);
            json_response(StatusCode::INTERNAL_SERVER_ERROR, FakeBody::full(body, Some(tracker)))
        }
        Step::DropAfter { .. } | Step::StallAfter { .. } => {
            let tail = if matches!(step, Step::DropAfter { .. }) { Tail::Abort } else { Tail::Stall };
            let full = answer();
            let half = full.slice(..full.len() / 2);
            json_response(StatusCode::OK, FakeBody::truncated(half, full.len() as u64, tail, tracker))
        }
        Step::Delay(..) | Step::Hang | Step::Reset => unreachable!("handled above"),
    };
    in_flight.disarm();
    Ok(response)
}

fn response(status: StatusCode, content_type: HeaderValue, body: FakeBody) -> Response<FakeBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    if let Ok(id) = HeaderValue::try_from(ids::request_id()) {
        headers.insert(X_REQUEST_ID, id);
    }
    response
}

fn json_response(status: StatusCode, body: FakeBody) -> Response<FakeBody> {
    response(status, APPLICATION_JSON, body)
}

fn sse_response(body: FakeBody) -> Response<FakeBody> {
    response(StatusCode::OK, TEXT_EVENT_STREAM, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splits_words_evenly() {
        assert_eq!(
            split_words("Hello from the fake upstream.", 5),
            ["Hello ", "from ", "the ", "fake ", "upstream."]
        );
        assert_eq!(split_words("a b c d e", 2), ["a b c ", "d e"]);
        assert_eq!(split_words("a b", 10), ["a ", "b"]);
        assert_eq!(split_words("  lead  trail ", 1), ["  lead  trail "]);
        assert_eq!(split_words("", 3), [""]);
        assert_eq!(split_words("x", 0), ["x"]);
        assert_eq!(split_words("héllo wörld", 2), ["héllo ", "wörld"]);
    }

    #[test]
    fn parses_requests() {
        let json = json!({
            "model": "m",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "one two"}, {"type": "text", "text": " three"}]},
                {"role": "assistant", "content": null},
            ],
        });
        let exchange = parse(&json).ok().unwrap();
        assert_eq!(exchange.model, "m");
        assert!(exchange.stream && exchange.include_usage);
        assert_eq!(exchange.prompt_tokens, 5);
        assert_eq!(last_user_text(&json), "one two three");

        let empty = parse(&json!({"model": "m", "messages": []})).ok().unwrap();
        assert_eq!(empty.prompt_tokens, 1);
        assert!(!empty.stream && !empty.include_usage);
        assert!(parse(&json!({"messages": []})).is_err());
        assert_eq!(
            parse(&json!({"model": "m"})).err().unwrap().param,
            Some("messages")
        );
    }

    #[test]
    fn parses_embeddings_requests() {
        let e = parse_embeddings(&json!({"model": "m", "input": ["a b", "c"], "dimensions": 4, "encoding_format": "base64"})).ok().unwrap();
        assert_eq!((e.inputs.len(), e.prompt_tokens, e.dimensions, e.base64), (2, 3, 4, true));
        let e = parse_embeddings(&json!({"model": "m", "input": [[1, 2], [3]]})).ok().unwrap();
        assert_eq!((e.inputs, e.prompt_tokens, e.dimensions), (vec!["1 2".to_owned(), "3".to_owned()], 3, DEFAULT_DIMENSIONS));
        assert_eq!(parse_embeddings(&json!({"model": "m"})).err().unwrap().param, Some("input"));
        assert!(parse_embeddings(&json!({"model": "m", "input": []})).is_err());
        assert!(parse_embeddings(&json!({"model": "m", "input": ["a", 1]})).is_err());
        assert!(parse_embeddings(&json!({"model": "m", "input": "a", "encoding_format": "int8"})).is_err());
        assert!(parse_embeddings(&json!({"input": "a"})).is_err());
    }

    #[test]
    fn splits_evenly() {
        assert_eq!(split_evenly(r#"{"city":"Zürich"}"#, 3).concat(), r#"{"city":"Zürich"}"#);
        assert_eq!(split_evenly(r#"{"a":1}"#, 3), [r#"{""#, r#"a""#, ":1}"]);
        assert_eq!(split_evenly("ab", 5), ["a", "b"]);
        assert_eq!(split_evenly("", 2), [""]);
    }

    #[test]
    fn filler_cycles() {
        let pieces: String = filler_pieces(6).collect();
        assert_eq!(pieces, "Hello from the fake upstream. Hello ");
    }
}
