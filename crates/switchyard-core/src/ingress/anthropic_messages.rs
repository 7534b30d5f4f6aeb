//! `POST /v1/messages`: Anthropic's Messages API, routed through the same aliases and chains as
//! `/v1/chat/completions` to any provider, so the Anthropic SDKs and the tools built on them work
//! unchanged.
//!
//! The caller's body is translated into the canonical OpenAI request and kept beside it as the
//! native body. A target that speaks Anthropic natively takes the native body (only `model`
//! rewritten) and answers in Anthropic's format, relayed as it is; any other target answers in
//! OpenAI's, translated back here: JSON into a `message`, chunks into Anthropic's event sequence.
//! Errors are Anthropic's error JSON (or an `event: error` once a stream has started). Auth
//! headers (`x-api-key` or `Authorization: Bearer`) and any `anthropic-version` are accepted.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http::{HeaderValue, StatusCode, header};
use tokio::time::Instant;

use super::error::ApiError;
use super::respond::{Leftovers, chain_failed, complete_json, ok, rejected, request_body, served_by, served_headers, settle_after_write};
use super::{AppState, RequestId};
use crate::providers::{Chunk, ProviderError, answer_format};
use crate::router::Alias;
use super::route::route;
use crate::router::chain::{self, Answer};
use crate::router::recover::LiveStream;
use crate::router::plan::plan;
use crate::telemetry::request_log::RequestLog;
use crate::wire::Format;
use crate::wire::anthropic::types::{ErrorResponse, MessagesRequest, sse_frame};
use crate::wire::anthropic::{self as wire, ToAnthropic};
use crate::wire::openai::types::{ChatCompletion, ChatCompletionChunk};
use crate::wire::openai::{ChatRequest, NativeBody, RequestError};

pub async fn messages(State(state): State<Arc<AppState>>, Extension(id): Extension<RequestId>, req: axum::extract::Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let limit = state.config.server.max_body_bytes;
    let Some(bytes) = request_body(body, limit).await else {
        return reject(&id, "-", ApiError::body_too_large(limit));
    };
    let native = match NativeBody::parse(Format::AnthropicMessages, bytes) {
        Ok(n) => n,
        Err(e) => return reject(&id, "-", ApiError::bad_request(e)),
    };
    let typed: MessagesRequest = match parse_typed(&native.body) {
        Ok(t) => t,
        Err(e) => return reject(&id, "-", ApiError::bad_request(e)),
    };
    let alias = match route(&state, &parts.headers, &typed.model, None) {
        Ok(r) => r.alias,
        Err(e) => return reject(&id, &typed.model, e),
    };
    let request = match canonical(&typed, native, &alias) {
        Ok(r) => r,
        Err(e) => return reject(&id, &typed.model, ApiError::bad_request(e)),
    };
    // Rules on `user` / `metadata` read the canonical request: route again with it.
    let mut routed = match route(&state, &parts.headers, &typed.model, Some(&request)) {
        Ok(r) => r,
        Err(e) => return reject(&id, &typed.model, e),
    };
    let alias = routed.alias.clone();
    let plan = plan(&alias, &mut routed.features, routed.opts);
    let mut log = RequestLog::new(id.0.clone(), alias.name.clone(), request.stream, started);
    let served = match chain::run(&alias, &plan, &request, started + alias.total, &mut log.trace).await {
        Ok(s) => s,
        Err(e) => return chain_failed(&alias, e, &mut log, ApiError::into_anthropic_response),
    };
    let target = served.target;
    let native = answer_format(&*target.provider, &request) == Format::AnthropicMessages;
    served_by(&mut log, target);
    let mut headers = served_headers(target, log.trace.sent, matches!(served.answer, Answer::Stream(_)));
    match served.answer {
        Answer::Complete(c) => {
            log.usage = c.usage;
            let body = if native { Ok(c.body) } else { translate_completion(&c.body, &typed.model) };
            match body {
                Ok(body) => {
                    drop((plan, routed));
                    complete_json(headers, body, log, (parts, typed, request))
                }
                Err(message) => {
                    let err = ApiError::new(StatusCode::BAD_GATEWAY, "server_error", Some("upstream_error"), message);
                    log.status = err.status.as_u16();
                    log.emit("error");
                    let mut resp = err.into_anthropic_response();
                    resp.headers_mut().extend(headers);
                    resp
                }
            }
        }
        Answer::Stream(s) => {
            log.status = 200;
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            let translate = (!native).then(|| ToAnthropic::new(&typed.model));
            let live = LiveStream::new(s, &alias, &plan, target, &request, log.trace.sent, log.started);
            drop(routed);
            let leftovers = Leftovers::new((parts, typed, request));
            ok(headers, Body::from_stream(relay(live, log, translate, leftovers)))
        }
    }
}

/// The body as typed Anthropic shapes; a mismatch names the offending field.
fn parse_typed(body: &[u8]) -> Result<MessagesRequest, RequestError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| RequestError {
        message: format!("{}: {}", e.path(), e.inner()),
        param: None,
        code: Some("invalid_request_error"),
    })
}

/// The canonical OpenAI request with the caller's body attached as its native body.
///
/// A request with parts no OpenAI-shaped request can hold (server tools, Files-API sources)
/// is refused, unless every target of the alias takes Anthropic bodies natively: the
/// translation is then never sent, and a minimal one carries the routing fields.
fn canonical(typed: &MessagesRequest, native: NativeBody, alias: &Alias) -> Result<ChatRequest, RequestError> {
    let stream = typed.stream.unwrap_or(false);
    let openai = match wire::to_openai(typed) {
        Ok(r) => serde_json::to_vec(&r).map_err(|e| invalid(e.to_string()))?,
        Err(e) if all_native(alias) => {
            tracing::debug!(reason = %e, "untranslatable request served by native targets only");
            serde_json::to_vec(&serde_json::json!({"model": typed.model, "messages": [], "stream": stream})).map_err(|e| invalid(e.to_string()))?
        }
        Err(e) => return Err(invalid(e.0)),
    };
    Ok(ChatRequest::parse(Bytes::from(openai))?.with_native(native))
}

fn invalid(message: String) -> RequestError {
    RequestError { message, param: None, code: Some("invalid_request_error") }
}

fn all_native(alias: &Alias) -> bool {
    alias.targets.iter().all(|t| t.provider.native_format() == Some(Format::AnthropicMessages))
}

/// An OpenAI `chat.completion` as an Anthropic message for `model`.
fn translate_completion(body: &[u8], model: &str) -> Result<Bytes, String> {
    let completion: ChatCompletion =
        crate::wire::json::from_slice(body).map_err(|e| format!("The upstream answer could not be translated: {e}"))?;
    let message = wire::message_from_completion(&completion, model);
    serde_json::to_vec(&message).map(Bytes::from).map_err(|e| e.to_string())
}


/// A committed stream on its way to the caller as Anthropic events.
struct Relay {
    stream: LiveStream,
    log: RequestLog,
    /// Translates OpenAI chunks; `None` when the target answers in Anthropic's events natively.
    translate: Option<ToAnthropic>,
    /// The outcome, once the last event is out.
    ended: Option<&'static str>,
    leftovers: Leftovers<(http::request::Parts, MessagesRequest, ChatRequest)>,
}

impl Relay {
    /// The SSE bytes for one chunk (possibly none: usage meant for the gateway only).
    fn render(&mut self, chunk: &Chunk) -> Result<Bytes, ProviderError> {
        if chunk.usage.is_some() {
            self.log.usage = chunk.usage;
        }
        let Some(t) = &mut self.translate else {
            return Ok(native_frame(&chunk.data));
        };
        if let Some(usage) = chunk.usage {
            t.fallback_usage(usage);
        }
        if chunk.data.is_empty() {
            return Ok(Bytes::new());
        }
        if let Some(frame) = t.text_chunk(&chunk.data) {
            return Ok(frame); // the text continues: no need to parse the chunk whole
        }
        let parsed: ChatCompletionChunk =
            crate::wire::json::from_slice(&chunk.data).map_err(|e| ProviderError::Protocol(format!("bad chunk to translate: {e}")))?;
        Ok(frames(t.on_chunk(&parsed)))
    }

    /// The clean end: the closing events of a translated stream.
    fn end(&mut self) -> Bytes {
        self.ended = Some("ok");
        self.translate.as_mut().map(|t| frames(t.finish())).unwrap_or_default()
    }

    /// Ends the stream after an upstream failure (already recorded) with an explicit
    /// `event: error`.
    fn fail(&mut self, e: ProviderError) -> Bytes {
        self.ended = Some("stream_error");
        let kind = if matches!(e.status(), Some(503 | 529)) { "overloaded_error" } else { "api_error" };
        let body = ErrorResponse::new(kind, ApiError::mid_stream(&e).message);
        sse_frame("error", &serde_json::to_vec(&body).expect("serializing an error cannot fail"))
    }
}

/// A native event's JSON framed with its `event:` name.
fn native_frame(data: &[u8]) -> Bytes {
    if data.is_empty() {
        return Bytes::new();
    }
    let name = wire::event_type(data).unwrap_or_else(|| "message".to_owned());
    sse_frame(&name, data)
}

fn frames(events: Vec<wire::types::StreamEvent>) -> Bytes {
    let mut out = BytesMut::new();
    for ev in &events {
        out.extend_from_slice(&ev.to_sse());
    }
    out.freeze()
}

/// Relays a committed stream as Anthropic events: the held-back chunks, then each chunk as it
/// arrives ([`LiveStream`]: idle timeout, deadline, mid-stream recovery of translated streams).
/// Dropping the body (the client went away) drops the upstream stream, cancelling it.
fn relay(
    stream: LiveStream,
    log: RequestLog,
    translate: Option<ToAnthropic>,
    leftovers: Leftovers<(http::request::Parts, MessagesRequest, ChatRequest)>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    // Boxed, as in the OpenAI relay: only a pointer moves through each item's future.
    stream::unfold(Box::new(Relay { stream, log, translate, ended: None, leftovers }), |mut r| async move {
        loop {
            if let Some(outcome) = r.ended {
                let Relay { stream, log, .. } = *r;
                settle_after_write(stream, log, outcome);
                return None;
            }
            r.leftovers.free_once_written(r.stream.has_pending()).await;
            let out = match r.stream.next().await {
                Some(Ok(chunk)) => match r.render(&chunk) {
                    Ok(b) => b,
                    Err(_) if r.stream.finished() => r.end(),
                    Err(e) => {
                        r.stream.broke(&e);
                        r.fail(e)
                    }
                },
                None => r.end(),
                Some(Err(e)) => r.fail(e),
            };
            if !out.is_empty() {
                return Some((Ok(out), r));
            }
        }
    })
}

/// Logs and renders an error found before routing (bad body, unknown alias).
fn reject(id: &RequestId, alias: &str, err: ApiError) -> Response {
    rejected(id, alias, err, ApiError::into_anthropic_response)
}
