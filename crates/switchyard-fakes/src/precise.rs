//! A timer accurate to microseconds, for paced stream chunks in benchmarks.
//!
//! Tokio's timer rounds deadlines to whole milliseconds and its runtime parks for whole
//! milliseconds, so a 1 ms chunk delay takes anywhere from 1 to 2 ms: a spread that hides what a
//! gateway adds per chunk (and makes time to first chunk depend on where each request falls on
//! the millisecond grid). Here one thread keeps the deadlines in a heap and waits for the
//! earliest on a condition variable, with its timer slack set to 1 µs so the kernel does not
//! defer the wake-up by its default 50 µs; at a deadline it wakes the waiting task.
//! [`use_precise_timer`] turns it on for every paced body of the process.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Paces stream chunks with this timer instead of tokio's, from now on, in this process.
/// Meant for the benchmark upstream; tests keep tokio's timer (and its paused clock).
pub fn use_precise_timer() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Resolves at `deadline`, to within the wake-up latency of a thread.
pub(crate) struct PreciseSleep {
    deadline: Instant,
}

impl PreciseSleep {
    pub(crate) fn until(deadline: Instant) -> PreciseSleep {
        PreciseSleep { deadline }
    }
}

impl Future for PreciseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        // Registered on every poll that is early: a spurious wake-up only costs a re-check.
        timers().add(self.deadline, cx.waker().clone());
        Poll::Pending
    }
}

struct Entry {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

struct Timers {
    heap: Mutex<Heap>,
    changed: Condvar,
}

fn timers() -> &'static Timers {
    static TIMERS: OnceLock<&'static Timers> = OnceLock::new();
    TIMERS.get_or_init(|| {
        let timers: &'static Timers = Box::leak(Box::new(Timers { heap: Mutex::default(), changed: Condvar::new() }));
        std::thread::Builder::new()
            .name("precise-timer".into())
            .spawn(move || timers.run())
            .expect("spawning the timer thread");
        timers
    })
}

impl Timers {
    fn add(&self, at: Instant, waker: Waker) {
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        heap.seq += 1;
        let seq = heap.seq;
        let earliest = heap.entries.peek().is_none_or(|Reverse(e)| at < e.at);
        heap.entries.push(Reverse(Entry { at, seq, waker }));
        drop(heap);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        // The kernel may defer a timed wait by the thread's timer slack (50 µs by default).
        // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects this thread.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        }
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            while heap.entries.peek().is_some_and(|Reverse(e)| e.at <= now) {
                if let Some(Reverse(e)) = heap.entries.pop() {
                    e.waker.wake();
                }
            }
            heap = match heap.entries.peek() {
                None => self.changed.wait(heap).unwrap_or_else(|e| e.into_inner()),
                Some(Reverse(e)) => {
                    let wait = e.at - now;
                    self.changed.wait_timeout(heap, wait).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_at_the_deadline_not_before() {
        for micros in [0u64, 150, 700, 1300] {
            let start = Instant::now();
            PreciseSleep::until(start + Duration::from_micros(micros)).await;
            assert!(start.elapsed() >= Duration::from_micros(micros));
        }
    }
}
