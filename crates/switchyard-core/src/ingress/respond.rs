//! Response plumbing shared by the API handlers: the `x-switchyard-*` headers, and the log
//! line plus error response for a request rejected before routing.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use axum::response::Response;
use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use super::error::ApiError;
use super::{RequestId, X_ATTEMPTS, X_MODEL, X_PROVIDER};
use crate::router::{Alias, Target};
use crate::router::chain::ChainError;
use crate::router::recover::LiveStream;
use crate::telemetry::request_log::RequestLog;

/// Reads a request body of at most `limit` bytes, as `axum::body::to_bytes` does (`None` when
/// it is longer or cannot be read), without that function's collecting buffer for the usual
/// body that arrives in one frame.
pub async fn request_body(mut body: Body, limit: usize) -> Option<Bytes> {
    use http_body::Body as _;
    use http_body_util::BodyExt as _;
    let mut buf: Option<BytesMut> = None;
    loop {
        let Some(frame) = body.frame().await else {
            return Some(buf.map_or_else(Bytes::new, BytesMut::freeze));
        };
        let Ok(data) = frame.ok()?.into_data() else { continue };
        match &mut buf {
            None if data.len() <= limit && body.is_end_stream() => return Some(data),
            None if data.len() <= limit => buf = Some(BytesMut::from(&data[..])),
            Some(b) if b.len() + data.len() <= limit => b.extend_from_slice(&data),
            _ => return None,
        }
    }
}

/// What a streamed answer's request left behind (its head, its parsed bodies), freed once the
/// held chunks are written rather than before: that memory has gone cold while the upstream
/// thought, and the caller's time to first chunk need not wait for it.
pub struct Leftovers<T>(Option<T>);

impl<T> Leftovers<T> {
    pub fn new(leftovers: T) -> Self {
        Leftovers(Some(leftovers))
    }

    /// Called by a relay before it waits on its stream, with
    /// [`LiveStream::has_pending`](crate::router::recover::LiveStream::has_pending): once
    /// the held chunks are out of it, yields once, so the server writes them, then frees the
    /// leftovers.
    pub async fn free_once_written(&mut self, held_chunks_left: bool) {
        if self.0.is_some() && !held_chunks_left {
            tokio::task::yield_now().await;
            self.0 = None;
        }
    }
}

/// Sets `x-switchyard-attempts` (small counts from static strings: `HeaderValue::from(u32)`
/// allocates).
pub fn set_attempts(headers: &mut HeaderMap, sent: u32) {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    let value = match SMALL.get(sent as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(sent),
    };
    headers.insert(X_ATTEMPTS.clone(), value);
}

/// A 200 answer with `headers` (from [`served_headers`], content type set) and `body`. Built
/// directly: `(StatusCode, HeaderMap, body).into_response()` gives the body's own headers first
/// and then merges `headers` into them one by one.
pub fn ok(headers: HeaderMap, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.headers_mut() = headers;
    resp
}

/// A complete JSON answer: 200 with `headers` and `body`, the request's log line emitted and
/// `leftovers` (its head, its parsed bodies) freed once the answer is written
/// ([`super::after_write`]), not before.
pub fn complete_json<T: Send + Unpin + 'static>(mut headers: HeaderMap, body: Bytes, mut log: RequestLog, leftovers: T) -> Response {
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    log.status = 200;
    ok(headers, Body::new(super::after_write::AfterWrite::new(body, move || {
        log.emit("ok");
        drop(leftovers);
    })))
}

/// Ends a relayed stream's log line once its last event is written ([`super::after_write`]):
/// the attempts after the commit, then the line with `outcome`; the upstream stream is
/// dropped then too.
pub fn settle_after_write(mut stream: LiveStream, mut log: RequestLog, outcome: &'static str) {
    super::after_write::defer(move || {
        stream.settle(&mut log);
        log.emit(outcome);
        drop(stream);
    });
}

/// The headers of an answer from `target` after `sent` upstream attempts, in a map sized for
/// the headers an answer gets (these three, the content type and `x-request-id`; a stream's
/// two more): room for 8 would take a 16-slot map whose entries (~1.2 KiB) are past the sizes
/// the allocator serves from its per-thread cache, ~400 instructions a request instead of ~80.
pub fn served_headers(target: &Target, sent: u32, stream: bool) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(if stream { 7 } else { 5 });
    headers.insert(X_PROVIDER.clone(), target.provider_header.clone());
    headers.insert(X_MODEL.clone(), target.model_header.clone());
    set_attempts(&mut headers, sent);
    headers
}

/// Notes in the log which target answered (provider, model, and its price for the spend).
pub fn served_by(log: &mut RequestLog, target: &Target) {
    log.provider = Some(target.provider_name.clone());
    log.upstream_model = Some(target.model.clone());
    log.spend = target.routing.price.map(|p| (target.stats.clone(), p));
}

/// Logs a request rejected before routing (bad body, unknown alias) and renders its error
/// with `render` (the caller's protocol).
pub fn rejected(id: &RequestId, alias: &str, err: ApiError, render: fn(ApiError) -> Response) -> Response {
    let mut log = RequestLog::new(id.0.clone(), alias.into(), false, Instant::now());
    log.status = err.status.as_u16();
    log.emit("rejected");
    let mut resp = render(err);
    set_attempts(resp.headers_mut(), 0);
    resp
}

/// Logs a call whose chain produced no answer and renders its error with `render`.
pub fn chain_failed(alias: &Alias, e: ChainError, log: &mut RequestLog, render: fn(ApiError) -> Response) -> Response {
    let err = ApiError::from_chain(alias, e, &log.trace);
    log.status = err.status.as_u16();
    log.emit("error");
    let mut resp = render(err);
    set_attempts(resp.headers_mut(), log.trace.sent);
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    use super::Leftovers;
    use std::future::Future as _;

    struct Flag(Arc<AtomicBool>);

    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, SeqCst);
        }
    }

    #[tokio::test]
    async fn leftovers_are_freed_after_one_yield_once_no_held_chunk_is_left() {
        let freed = Arc::new(AtomicBool::new(false));
        let mut leftovers = Leftovers::new(Flag(freed.clone()));
        leftovers.free_once_written(true).await;
        assert!(!freed.load(SeqCst), "held chunks are left: nothing is written yet");
        let mut free = std::pin::pin!(leftovers.free_once_written(false));
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(free.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "yields first, for the server to write");
        assert!(!freed.load(SeqCst));
        free.await;
        assert!(freed.load(SeqCst));
    }
}
