//! `x-request-id` as a tower layer: take the caller's id when it is sane, otherwise make one,
//! put it in the request's extensions for the handlers and the log, and echo it on every
//! response. A hand-written layer rather than `middleware::from_fn`, which boxes a future per
//! request on the hot path.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use super::{RequestId, X_REQUEST_ID};

#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        crate::telemetry::note_request();
        let id = of(req.headers());
        req.extensions_mut().insert(RequestId(id.clone()));
        RequestIdFuture::new(self.inner.call(req), id)
    }
}

/// The request's id: the caller's `x-request-id` when it is sane (1 to 128 visible ASCII
/// characters), otherwise a new one.
pub fn of(headers: &http::HeaderMap) -> HeaderValue {
    headers
        .get(&X_REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
        .cloned()
        .unwrap_or_else(super::new_request_id)
}

pin_project_lite::pin_project! {
    /// The inner service's future; sets `x-request-id` on its response.
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F> RequestIdFuture<F> {
    /// `inner`, with `x-request-id: id` set on its response.
    pub fn new(inner: F, id: HeaderValue) -> Self {
        RequestIdFuture { inner, id: Some(id) }
    }
}

impl<F, R, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            resp.headers_mut().insert(X_REQUEST_ID.clone(), id);
        }
        Poll::Ready(Ok(resp))
    }
}
