//! Telemetry beside the request path: the per-request log line.

pub mod log_writer;
pub mod request_log;
