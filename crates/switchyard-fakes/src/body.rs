//! The response body: pre-serialized frames, optionally paced, with a scripted ending.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::precise::PreciseSleep;
use crate::upstream::Shared;

/// The error that makes hyper abort a connection: a failed body, or a service answering
/// [`Step::Reset`](crate::Step::Reset).
#[derive(Debug)]
pub(crate) struct Abort;

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection aborted by the script")
    }
}

impl std::error::Error for Abort {}

/// What happens once every frame has been sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The body ends normally.
    End,
    /// The body fails, so hyper aborts the connection.
    Abort,
    /// Nothing more is ever sent; the connection stays open.
    Stall,
}

/// A response body of pre-serialized frames, each sent after its delay.
///
/// When it tracks a chat request, dropping it counts the response as completed if it was sent
/// to the end, or as cancelled if the client went away first.
pub(crate) struct FakeBody {
    frames: VecDeque<(Duration, Bytes)>,
    /// A frame waiting for `sleep` to elapse.
    pending: Option<Bytes>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Used instead of `sleep` when the precise timer is on ([`crate::use_precise_timer`]).
    precise: Option<PreciseSleep>,
    tail: Tail,
    /// Bytes still to come, when a `content-length` is announced.
    remaining: Option<u64>,
    /// Set once every frame is out and the body is about to fail.
    aborted: bool,
    tracker: Option<Arc<Shared>>,
}

impl FakeBody {
    /// A body sent in one frame, with a `content-length`.
    pub(crate) fn full(data: Bytes, tracker: Option<Arc<Shared>>) -> FakeBody {
        let len = data.len() as u64;
        FakeBody::new(
            VecDeque::from([(Duration::ZERO, data)]),
            Tail::End,
            Some(len),
            tracker,
        )
    }

    /// A body announcing `content-length: announced` but sending only `data`, then `tail`.
    pub(crate) fn truncated(
        data: Bytes,
        announced: u64,
        tail: Tail,
        tracker: Arc<Shared>,
    ) -> FakeBody {
        FakeBody::new(
            VecDeque::from([(Duration::ZERO, data)]),
            tail,
            Some(announced),
            Some(tracker),
        )
    }

    /// A chunked body of `(delay before, frame)` pairs, then `tail`.
    pub(crate) fn stream(
        frames: VecDeque<(Duration, Bytes)>,
        tail: Tail,
        tracker: Arc<Shared>,
    ) -> FakeBody {
        FakeBody::new(frames, tail, None, Some(tracker))
    }

    fn new(
        frames: VecDeque<(Duration, Bytes)>,
        tail: Tail,
        remaining: Option<u64>,
        tracker: Option<Arc<Shared>>,
    ) -> FakeBody {
        FakeBody {
            frames,
            pending: None,
            sleep: None,
            precise: None,
            tail,
            remaining,
            aborted: false,
            tracker,
        }
    }

    fn emit(&mut self, data: Bytes) -> Poll<Option<Result<Frame<Bytes>, Abort>>> {
        let data = if crate::stamp::enabled() { crate::stamp::apply(data) } else { data };
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.saturating_sub(data.len() as u64);
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = Abort;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Abort>>> {
        let this = self.get_mut();
        loop {
            if let Some(data) = this.pending.take() {
                if let Some(precise) = &mut this.precise {
                    if Pin::new(precise).poll(cx).is_pending() {
                        this.pending = Some(data);
                        return Poll::Pending;
                    }
                    this.precise = None;
                } else if let Some(sleep) = &mut this.sleep {
                    if sleep.as_mut().poll(cx).is_pending() {
                        this.pending = Some(data);
                        return Poll::Pending;
                    }
                }
                return this.emit(data);
            }
            match this.frames.pop_front() {
                Some((delay, data)) if delay.is_zero() => return this.emit(data),
                Some((delay, data)) if crate::precise::enabled() => {
                    this.precise = Some(PreciseSleep::until(std::time::Instant::now() + delay));
                    this.pending = Some(data);
                }
                Some((delay, data)) => {
                    let deadline = Instant::now() + delay;
                    match &mut this.sleep {
                        Some(sleep) => sleep.as_mut().reset(deadline),
                        None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    this.pending = Some(data);
                }
                None => {
                    return match this.tail {
                        Tail::End => Poll::Ready(None),
                        // Yield once first: hyper flushes what it buffered when the body is
                        // pending, but drops its buffer when the body fails.
                        Tail::Abort if !this.aborted => {
                            this.aborted = true;
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                        Tail::Abort => Poll::Ready(Some(Err(Abort))),
                        // Never woken: the connection task lives on until the client leaves.
                        Tail::Stall => Poll::Pending,
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.tail == Tail::End && self.pending.is_none() && self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining.map(SizeHint::with_exact).unwrap_or_default()
    }
}

impl Drop for FakeBody {
    fn drop(&mut self) {
        if let Some(shared) = &self.tracker {
            if self.is_end_stream() {
                shared.count_completed();
            } else if !self.aborted {
                shared.count_cancelled();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn paced_frames_in_order() {
        let frames = VecDeque::from([
            (Duration::ZERO, Bytes::from_static(b"a")),
            (Duration::from_millis(5), Bytes::from_static(b"b")),
            (Duration::from_millis(5), Bytes::from_static(b"c")),
        ]);
        let body = FakeBody::new(frames, Tail::End, None, None);
        let start = Instant::now();
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "abc");
        assert!(start.elapsed() >= Duration::from_millis(10));
    }

    #[tokio::test]
    async fn abort_tail_errors() {
        let body = FakeBody::new(
            VecDeque::from([(Duration::ZERO, Bytes::from_static(b"a"))]),
            Tail::Abort,
            None,
            None,
        );
        assert!(body.collect().await.is_err());
    }

    #[test]
    fn full_body_has_exact_size() {
        let body = FakeBody::full(Bytes::from_static(b"abc"), None);
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
    }
}
