//! Telemetry beside the request path: the per-request log line.

pub mod request_log;
