//! One structured log line per request: request id, alias, each attempt (target, outcome,
//! status, duration), the provider that answered, total latency and token usage. Emitted when
//! the request ends, including when the client goes away first. Never contains an API key:
//! attempt outcomes carry only redacted upstream messages.

use std::sync::Arc;

use tokio::time::Instant;

use crate::providers::Usage;
use crate::router::chain::Trace;

pub struct RequestLog {
    pub request_id: String,
    pub alias: Arc<str>,
    pub stream: bool,
    pub started: Instant,
    pub trace: Trace,
    pub provider: Option<Arc<str>>,
    pub upstream_model: Option<Arc<str>>,
    pub usage: Option<Usage>,
    pub status: u16,
    emitted: bool,
}

impl RequestLog {
    pub fn new(request_id: String, alias: Arc<str>, stream: bool, started: Instant) -> Self {
        RequestLog {
            request_id,
            alias,
            stream,
            started,
            trace: Trace::default(),
            provider: None,
            upstream_model: None,
            usage: None,
            status: 0,
            emitted: false,
        }
    }

    /// Writes the line now with `outcome` (`ok`, `error`, `stream_error`, `client_closed`, ...).
    pub fn emit(&mut self, outcome: &'static str) {
        if self.emitted {
            return;
        }
        self.emitted = true;
        let usage = self.usage.unwrap_or_default();
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            target: "switchyard::request",
            request_id = %self.request_id,
            alias = %self.alias,
            stream = self.stream,
            status = self.status,
            outcome,
            provider = self.provider.as_deref().unwrap_or("-"),
            upstream_model = self.upstream_model.as_deref().unwrap_or("-"),
            attempts_sent = self.trace.sent,
            attempts = %self.trace.summary(),
            latency_ms = (latency_ms * 1000.0).round() / 1000.0,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            total_tokens = usage.total_tokens,
            "request"
        );
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        if !self.emitted {
            self.emit("client_closed");
        }
    }
}
