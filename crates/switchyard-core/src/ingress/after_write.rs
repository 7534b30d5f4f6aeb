//! Work that need not delay an answer: its log line, and freeing what its request left behind,
//! done once the answer is written rather than before.
//!
//! The server ([`super::server`]) drops a response body once its last frame is taken, before
//! it writes it. [`AfterWrite`] is such a body: its drop hands the work to a per-thread queue
//! ([`defer`]), and the server runs the queue ([`drain`]) after each write to a socket, i.e.
//! right after the answer went out. A server thread opts in with [`enable_on_this_thread`]
//! (the server threads of [`serve_threads`](super::serve_threads), each one runtime);
//! elsewhere the work runs at once.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

type Work = Box<dyn FnOnce()>;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static QUEUE: RefCell<VecDeque<Work>> = const { RefCell::new(VecDeque::new()) };
    static PENDING: Cell<bool> = const { Cell::new(false) };
}

/// Lets [`defer`] queue work on this thread: call it only on a thread whose every connection
/// is served by [`super::server`], which runs [`drain`] after each write.
pub fn enable_on_this_thread() {
    ENABLED.with(|e| e.set(true));
}

/// Runs `work` after this thread's next socket write, or now when the thread does not defer.
pub fn defer(work: impl FnOnce() + 'static) {
    if !ENABLED.with(Cell::get) {
        work();
        return;
    }
    QUEUE.with(|q| q.borrow_mut().push_back(Box::new(work)));
    PENDING.with(|p| p.set(true));
}

/// Runs the queued work, if any (cheap when there is none).
#[inline]
pub fn drain() {
    if !PENDING.with(Cell::get) {
        return;
    }
    PENDING.with(|p| p.set(false));
    // One at a time, the queue not borrowed while it runs: work may defer more. The queue
    // keeps its capacity, so deferring allocates only the work's box.
    while let Some(w) = QUEUE.with(|q| q.borrow_mut().pop_front()) {
        w();
    }
}

/// A body of `data` that runs `then` once it is written (see the module docs), or dropped
/// unwritten.
pub struct AfterWrite<F: FnOnce() + Send + Unpin + 'static> {
    data: Option<Bytes>,
    then: Option<F>,
}

impl<F: FnOnce() + Send + Unpin + 'static> AfterWrite<F> {
    pub fn new(data: Bytes, then: F) -> Self {
        AfterWrite { data: Some(data), then: Some(then) }
    }
}

impl<F: FnOnce() + Send + Unpin + 'static> http_body::Body for AfterWrite<F> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

impl<F: FnOnce() + Send + Unpin + 'static> Drop for AfterWrite<F> {
    fn drop(&mut self) {
        if let Some(then) = self.then.take() {
            if self.data.is_some() {
                then(); // never handed to the server: nothing will be written
            } else {
                defer(then);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use http_body_util::BodyExt as _;

    use super::*;

    #[test]
    fn without_opting_in_work_runs_at_once() {
        std::thread::spawn(|| {
            let ran = Rc::new(Cell::new(false));
            let r = ran.clone();
            defer(move || r.set(true));
            assert!(ran.get());
        })
        .join()
        .unwrap();
    }

    /// Runs `test` on a fresh thread that defers, as a server thread does.
    fn on_a_server_thread<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F + Send + 'static) {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            enable_on_this_thread();
            rt.block_on(test());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn deferred_work_waits_for_a_drain() {
        on_a_server_thread(|| async {
            let ran = Rc::new(Cell::new(0));
            let r = ran.clone();
            defer(move || r.set(r.get() + 1));
            assert_eq!(ran.get(), 0, "deferred until a drain");
            drain();
            assert_eq!(ran.get(), 1, "ran at the drain");
            drain();
            assert_eq!(ran.get(), 1, "once");
        });
    }

    #[test]
    fn the_body_defers_once_taken_and_runs_at_once_when_never_taken() {
        on_a_server_thread(|| async {
            let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let count = || ran.load(std::sync::atomic::Ordering::SeqCst);

            let r = ran.clone();
            let mut body = AfterWrite::new(Bytes::from_static(b"{}"), move || {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
            assert_eq!(http_body::Body::size_hint(&body).exact(), Some(2));
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"{}"));
            assert!(http_body::Body::is_end_stream(&body));
            drop(body);
            assert_eq!(count(), 0, "taken: waits for the write");
            drain();
            assert_eq!(count(), 1);

            let r = ran.clone();
            drop(AfterWrite::new(Bytes::from_static(b"{}"), move || {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }));
            assert_eq!(count(), 2, "never taken: runs at once");
        });
    }
}
