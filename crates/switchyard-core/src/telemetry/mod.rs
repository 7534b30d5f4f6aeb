//! Telemetry beside the request path: the per-request log line, and a count of request activity.

pub mod log_writer;
pub mod request_log;

use std::sync::atomic::{AtomicU64, Ordering};

static ACTIVITY: AtomicU64 = AtomicU64::new(0);

/// Counts one incoming HTTP request (called by the request-id layer).
#[inline]
pub fn note_request() {
    ACTIVITY.fetch_add(1, Ordering::Relaxed);
}

/// Counts one finished call (its log line written): a stream that ran for minutes frees its
/// memory only now, long after its request arrived.
#[inline]
pub fn note_request_done() {
    ACTIVITY.fetch_add(1, Ordering::Relaxed);
}

/// Requests received plus calls finished since start: unchanged over an interval means the
/// process was idle during it (nothing arrived, nothing ended).
pub fn activity() -> u64 {
    ACTIVITY.load(Ordering::Relaxed)
}
