//! `POST /v1/chat/completions`: parse only what routing needs, run the alias's chain, answer in
//! OpenAI's format (JSON, or SSE relayed chunk by chunk).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http::{HeaderValue, header};
use tokio::time::Instant;

use super::error::ApiError;
use super::respond::{chain_failed, ok, rejected, request_body, served_headers};
use super::{AppState, RequestId};
use crate::providers::{Chunk, ProviderError};
use crate::router::chain::{self, Answer, CommittedStream};
use crate::telemetry::request_log::RequestLog;
use crate::wire::openai::ChatRequest;

pub async fn chat_completions(State(state): State<Arc<AppState>>, Extension(id): Extension<RequestId>, body: Body) -> Response {
    let started = Instant::now();
    let limit = state.config.server.max_body_bytes;
    let Some(bytes) = request_body(body, limit).await else {
        return reject(&id, "-", ApiError::body_too_large(limit));
    };
    let request = match ChatRequest::parse(bytes) {
        Ok(r) => r,
        Err(e) => return reject(&id, "-", ApiError::bad_request(e)),
    };
    let Some(alias) = state.routes.alias(&request.model).cloned() else {
        return reject(&id, &request.model, ApiError::model_not_found(&request.model));
    };
    let mut log = RequestLog::new(id.as_str().to_owned(), alias.name.clone(), request.stream, started);
    let deadline = started + alias.total;
    let served = match chain::run(&alias, &request, deadline, &mut log.trace).await {
        Ok(s) => s,
        Err(e) => return chain_failed(&alias.name, e, &mut log, IntoResponse::into_response),
    };
    let target = served.target;
    log.provider = Some(target.provider_name.clone());
    log.upstream_model = Some(target.model.clone());
    log.status = 200;
    let mut headers = served_headers(target, log.trace.sent);
    match served.answer {
        Answer::Complete(c) => {
            log.usage = c.usage;
            log.emit("ok");
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            ok(headers, Body::from(c.body))
        }
        Answer::Stream(s) => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            ok(headers, Body::from_stream(relay(s, log)))
        }
    }
}


const DONE: &[u8] = b"data: [DONE]\n\n";

fn frame(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

struct Relay {
    pending: VecDeque<Bytes>,
    stream: CommittedStream,
    log: RequestLog,
    finished: bool,
    done: bool,
}

impl Relay {
    fn observe(&mut self, chunk: &Chunk) {
        self.finished |= chunk.finish;
        if chunk.usage.is_some() {
            self.log.usage = chunk.usage;
        }
    }

    /// Ends the stream after an upstream failure: an explicit error event, never a clean
    /// `[DONE]` (unless the answer had already finished, in which case it is complete).
    fn fail(&mut self, e: ProviderError) -> Bytes {
        self.done = true;
        if self.finished {
            self.log.emit("ok");
            return Bytes::from_static(DONE);
        }
        self.stream.breaker.record_failure();
        self.log.trace.attempts.push(chain::AttemptRecord {
            target: self.log.provider.clone().unwrap_or_default(),
            outcome: chain::Outcome::Failed(e.clone()),
            duration: self.log.started.elapsed(),
        });
        self.log.emit("stream_error");
        ApiError::mid_stream(&e).sse_event()
    }
}

/// Relays a committed stream as SSE: the held-back preamble, the first content chunk, then each
/// upstream chunk as it arrives, with the idle timeout between chunks and the call's deadline.
/// Dropping the body (the client went away) drops the upstream stream, which cancels it.
fn relay(s: CommittedStream, log: RequestLog) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    let pending: VecDeque<Bytes> =
        s.preamble.iter().chain(std::iter::once(&s.first)).filter(|c| !c.data.is_empty()).map(|c| frame(&c.data)).collect();
    let first = s.first.clone();
    let mut relay = Relay { pending, stream: s, log, finished: false, done: false };
    relay.observe(&first);
    stream::unfold(relay, |mut r| async move {
        if let Some(b) = r.pending.pop_front() {
            return Some((Ok(b), r));
        }
        if r.done {
            return None;
        }
        loop {
            let out = match r.stream.next_chunk().await {
                Ok(Some(Ok(chunk))) => {
                    r.observe(&chunk);
                    if chunk.data.is_empty() {
                        continue; // usage the gateway asked for, not the caller
                    }
                    frame(&chunk.data)
                }
                Ok(None) => {
                    r.done = true;
                    r.log.emit("ok");
                    Bytes::from_static(DONE)
                }
                Ok(Some(Err(e))) => r.fail(e),
                Err(kind) => r.fail(ProviderError::Timeout(kind)),
            };
            return Some((Ok(out), r));
        }
    })
}

/// Logs and renders an error found before routing (bad body, unknown alias).
fn reject(id: &RequestId, alias: &str, err: ApiError) -> Response {
    rejected(id, alias, err, IntoResponse::into_response)
}
