//! `POST /v1/chat/completions`: parse only what routing needs, run the alias's chain, answer in
//! OpenAI's format (JSON, or SSE relayed chunk by chunk).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, header};
use tokio::time::Instant;

use super::error::ApiError;
use super::respond::{Leftovers, chain_failed, complete_json, ok, rejected, request_body, served_by, served_headers, settle_after_write};
use super::route::route;
use super::{AppState, RequestId};
use crate::router::chain::{self, Answer};
use crate::router::plan::plan;
use crate::router::recover::LiveStream;
use crate::telemetry::request_log::RequestLog;
use crate::wire::openai::ChatRequest;

pub async fn chat_completions(State(state): State<Arc<AppState>>, Extension(id): Extension<RequestId>, req: axum::extract::Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let body = request_body(body, state.config.server.max_body_bytes).await;
    answer(state, id, parts, body, started).await
}

/// [`chat_completions`] once the body is read (`None`: it was longer than
/// `server.max_body_bytes`); the server calls it with the bytes it read
/// ([`super::FastPath::answer`]).
pub async fn answer(state: Arc<AppState>, id: RequestId, parts: http::request::Parts, body: Option<Bytes>, started: Instant) -> Response {
    let Some(bytes) = body else {
        return reject(&id, "-", ApiError::body_too_large(state.config.server.max_body_bytes));
    };
    let request = match ChatRequest::parse(bytes) {
        Ok(r) => r,
        Err(e) => return reject(&id, "-", ApiError::bad_request(e)),
    };
    let mut routed = match route(&state, &parts.headers, &request.model, Some(&request)) {
        Ok(r) => r,
        Err(e) => return reject(&id, &request.model, e),
    };
    let alias = routed.alias.clone();
    let plan = plan(&alias, &mut routed.features, routed.opts);
    let mut log = RequestLog::new(id.0.clone(), alias.name.clone(), request.stream, started);
    let deadline = started + alias.total;
    let served = match chain::run(&alias, &plan, &request, deadline, &mut log.trace).await {
        Ok(s) => s,
        Err(e) => return chain_failed(&alias, e, &mut log, IntoResponse::into_response),
    };
    let target = served.target;
    served_by(&mut log, target);
    log.status = 200;
    let mut headers = served_headers(target, log.trace.sent, matches!(served.answer, Answer::Stream(_)));
    match served.answer {
        Answer::Complete(c) => {
            log.usage = c.usage;
            drop((plan, routed));
            complete_json(headers, c.body, log, (parts, request))
        }
        Answer::Stream(s) => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            let live = LiveStream::new(s, &alias, &plan, target, &request, log.trace.sent, log.started);
            drop(routed);
            ok(headers, Body::from_stream(relay(live, log, (parts, request))))
        }
    }
}


const DONE: &[u8] = b"data: [DONE]\n\n";

struct Relay {
    stream: LiveStream,
    log: RequestLog,
    /// The outcome, once the last event is out.
    ended: Option<&'static str>,
    leftovers: Leftovers<(http::request::Parts, ChatRequest)>,
}

/// Relays a committed stream as SSE: the held-back chunks, then each upstream chunk as it
/// arrives ([`LiveStream`]: idle timeout, deadline, mid-stream recovery). A stream that breaks
/// for good ends with an explicit error event, never a clean `[DONE]`. Dropping the body (the
/// client went away) drops the upstream stream, which cancels it.
fn relay(stream: LiveStream, log: RequestLog, leftovers: (http::request::Parts, ChatRequest)) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    // Boxed: the state moves into and out of each item's future, 8 bytes rather than the
    // whole stream and log line.
    stream::unfold(Box::new(Relay { stream, log, ended: None, leftovers: Leftovers::new(leftovers) }), |mut r| async move {
        if let Some(outcome) = r.ended {
            let Relay { stream, log, .. } = *r;
            settle_after_write(stream, log, outcome);
            return None;
        }
        loop {
            r.leftovers.free_once_written(r.stream.has_pending()).await;
            let out = match r.stream.next().await {
                Some(Ok(chunk)) => {
                    if chunk.usage.is_some() {
                        r.log.usage = chunk.usage;
                    }
                    if chunk.data.is_empty() {
                        continue; // usage the gateway asked for, not the caller
                    }
                    chunk.into_sse_event()
                }
                None => {
                    r.ended = Some("ok");
                    Bytes::from_static(DONE)
                }
                Some(Err(e)) => {
                    r.ended = Some("stream_error");
                    ApiError::mid_stream(&e).sse_event()
                }
            };
            return Some((Ok(out), r));
        }
    })
}

/// Logs and renders an error found before routing (bad body, unknown alias).
fn reject(id: &RequestId, alias: &str, err: ApiError) -> Response {
    rejected(id, alias, err, IntoResponse::into_response)
}
