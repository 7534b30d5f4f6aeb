//! One structured log line per request: request id, alias, each attempt (target, outcome,
//! status, duration), the provider that answered, total latency and token usage. Emitted when
//! the request ends, including when the client goes away first. Never contains an API key:
//! attempt outcomes carry only redacted upstream messages.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use tokio::time::Instant;

use super::log_writer::BatchWriter;
use crate::providers::Usage;
use crate::router::chain::Trace;
use crate::wire::json::write_str;

/// Where request lines go when set: formatted by hand (a fraction of the cost of a `tracing`
/// event with a dozen fields) straight into a [`BatchWriter`]. When unset, lines are `tracing`
/// events (target `switchyard::request`), for programs that embed the library.
static SINK: OnceLock<LineSink> = OnceLock::new();

/// The line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    Text,
    Json,
}

/// A destination for request lines.
pub struct LineSink {
    pub writer: BatchWriter,
    pub format: LineFormat,
    /// False when the log level leaves request lines out.
    pub enabled: bool,
}

/// Sends request lines to `sink` from now on (once per process; later calls are ignored).
pub fn set_sink(sink: LineSink) {
    let _ = SINK.set(sink);
}

thread_local! {
    static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
}

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
        if let Some(sink) = SINK.get() {
            if sink.enabled {
                LINE.with(|line| {
                    let mut line = line.borrow_mut();
                    line.clear();
                    self.format(sink.format, outcome, SystemTime::now(), &mut line);
                    let _ = sink.writer.clone().write_all(&line);
                });
            }
            return;
        }
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

impl RequestLog {
    /// Formats the line as the `tracing` text or JSON formatter would (same fields and order).
    pub fn format(&self, format: LineFormat, outcome: &str, now: SystemTime, out: &mut Vec<u8>) {
        let usage = self.usage.unwrap_or_default();
        let latency_ms = (self.started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
        let provider = self.provider.as_deref().unwrap_or("-");
        let model = self.upstream_model.as_deref().unwrap_or("-");
        let mut attempts = String::new();
        self.trace.write_summary(&mut attempts);
        let mut ts = [0u8; 27];
        let ts = rfc3339_micros(now, &mut ts);
        match format {
            LineFormat::Text => {
                let mut line = String::with_capacity(256 + attempts.len());
                let _ = write!(
                    line,
                    "{ts}  INFO switchyard::request: request request_id={} alias={} stream={} status={} outcome={outcome:?} provider={provider:?} upstream_model={model:?} attempts_sent={} attempts={attempts} latency_ms={latency_ms} prompt_tokens={} completion_tokens={} total_tokens={}\n",
                    self.request_id, self.alias, self.stream, self.status, self.trace.sent, usage.prompt_tokens, usage.completion_tokens, usage.total_tokens,
                );
                out.extend_from_slice(line.as_bytes());
            }
            LineFormat::Json => {
                out.extend_from_slice(b"{\"timestamp\":\"");
                out.extend_from_slice(ts.as_bytes());
                out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"request_id\":");
                write_str(out, &self.request_id);
                out.extend_from_slice(b",\"alias\":");
                write_str(out, &self.alias);
                let _ = write!(out, ",\"stream\":{},\"status\":{},\"outcome\":", self.stream, self.status);
                write_str(out, outcome);
                out.extend_from_slice(b",\"provider\":");
                write_str(out, provider);
                out.extend_from_slice(b",\"upstream_model\":");
                write_str(out, model);
                let _ = write!(out, ",\"attempts_sent\":{},\"attempts\":", self.trace.sent);
                write_str(out, &attempts);
                let _ = writeln!(
                    out,
                    ",\"latency_ms\":{latency_ms},\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{},\"target\":\"switchyard::request\"}}",
                    usage.prompt_tokens, usage.completion_tokens, usage.total_tokens
                );
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), written into `buf`.
fn rfc3339_micros(t: SystemTime, buf: &mut [u8; 27]) -> &str {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(
        cursor,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    );
    std::str::from_utf8(&buf[..]).unwrap_or("")
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        if !self.emitted {
            self.emit("client_closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::router::chain::{AttemptRecord, Outcome};

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut buf = [0u8; 27];
        let t = UNIX_EPOCH + Duration::from_micros(1_795_312_421_129_663);
        assert_eq!(rfc3339_micros(t, &mut buf), "2026-11-22T01:53:41.129663Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_micros(t, &mut buf), "2000-02-29T00:00:00.000000Z");
    }

    fn sample() -> RequestLog {
        let mut log = RequestLog::new("req-1".into(), "chat".into(), true, Instant::now());
        log.status = 200;
        log.provider = Some("groq".into());
        log.upstream_model = Some("llama".into());
        log.usage = Some(Usage { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
        log.trace.sent = 2;
        log.trace.attempts.push(AttemptRecord { target: "a/x".into(), outcome: Outcome::Skipped, duration: Duration::ZERO });
        log.trace.attempts.push(AttemptRecord { target: "groq/llama \"q\"".into(), outcome: Outcome::Ok, duration: Duration::from_millis(12) });
        log.emitted = true; // keep the test from logging on drop
        log
    }

    #[test]
    fn text_lines_carry_every_field() {
        let mut out = Vec::new();
        sample().format(LineFormat::Text, "ok", UNIX_EPOCH, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with("1970-01-01T00:00:00.000000Z  INFO switchyard::request: request request_id=req-1 alias=chat stream=true status=200 outcome=\"ok\" provider=\"groq\" upstream_model=\"llama\" attempts_sent=2 attempts=a/x: skipped, circuit breaker open; groq/llama \"q\": ok (12ms) latency_ms="), "{line}");
        assert!(line.ends_with(" prompt_tokens=3 completion_tokens=4 total_tokens=7\n"), "{line}");
    }

    #[test]
    fn json_lines_are_valid_json() {
        let mut out = Vec::new();
        sample().format(LineFormat::Json, "ok", UNIX_EPOCH, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["provider"], "groq");
        assert_eq!(v["attempts"], "a/x: skipped, circuit breaker open; groq/llama \"q\": ok (12ms)");
        assert_eq!(v["total_tokens"], 7);
        assert_eq!(v["target"], "switchyard::request");
    }
}
