//! Telemetry beside the request path: the per-request log line, and a count of requests seen.

pub mod log_writer;
pub mod request_log;

use std::sync::atomic::{AtomicU64, Ordering};

static REQUESTS_SEEN: AtomicU64 = AtomicU64::new(0);

/// Counts one incoming HTTP request (called by the request-id layer).
#[inline]
pub fn note_request() {
    REQUESTS_SEEN.fetch_add(1, Ordering::Relaxed);
}

/// HTTP requests received since start, e.g. to tell whether the process has been idle.
pub fn requests_seen() -> u64 {
    REQUESTS_SEEN.load(Ordering::Relaxed)
}
