//! One structured log line per request: request id, alias, each attempt (target, outcome,
//! status, duration), the provider that answered, total latency and token usage. Emitted when
//! the request ends, including when the client goes away first. Never contains an API key:
//! attempt outcomes carry only redacted upstream messages.

use std::io::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use tokio::time::Instant;

use super::log_writer::BatchWriter;
use crate::providers::Usage;
use crate::config::Price;
use crate::router::TargetStats;
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
    /// The request's id (`x-request-id`): shares the request's bytes, no copy.
    pub request_id: http::HeaderValue,
    pub alias: Arc<str>,
    pub stream: bool,
    pub started: Instant,
    pub trace: Trace,
    pub provider: Option<Arc<str>>,
    pub upstream_model: Option<Arc<str>>,
    pub usage: Option<Usage>,
    pub status: u16,
    /// The serving target's stats and price: the request's cost is added to its spend and
    /// logged as `cost_usd`.
    pub spend: Option<(Arc<TargetStats>, Price)>,
    emitted: bool,
}

impl RequestLog {
    pub fn new(request_id: http::HeaderValue, alias: Arc<str>, stream: bool, started: Instant) -> Self {
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
            spend: None,
            emitted: false,
        }
    }

    /// Writes the line now with `outcome` (`ok`, `error`, `stream_error`, `client_closed`, ...).
    pub fn emit(&mut self, outcome: &'static str) {
        if self.emitted {
            return;
        }
        self.emitted = true;
        super::note_request_done();
        if let (Some((stats, _)), Some(cost)) = (&self.spend, self.cost()) {
            stats.add_spend(cost);
        }
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
            request_id = self.request_id(),
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
            cost_usd = self.cost(),
            "request"
        );
    }
}

impl RequestLog {
    /// The request id as text (ids are visible ASCII: see `ingress::request_id`).
    pub fn request_id(&self) -> &str {
        std::str::from_utf8(self.request_id.as_bytes()).unwrap_or("-")
    }

    /// The request's cost in USD, from its usage and the serving target's price.
    pub fn cost(&self) -> Option<f64> {
        let (_, price) = self.spend.as_ref()?;
        let u = self.usage?;
        Some((u.prompt_tokens as f64 * price.input + u.completion_tokens as f64 * price.output) / 1e6)
    }

    /// Formats the line as the `tracing` text or JSON formatter would (same fields and order),
    /// by pushing bytes: this runs once per request, and `core::fmt` with a dozen arguments
    /// cost several thousand instructions.
    pub fn format(&self, format: LineFormat, outcome: &str, now: SystemTime, out: &mut Vec<u8>) {
        let usage = self.usage.unwrap_or_default();
        let micros = self.started.elapsed().as_micros() as u64;
        let provider = self.provider.as_deref().unwrap_or("-");
        let model = self.upstream_model.as_deref().unwrap_or("-");
        let mut ts = [0u8; 27];
        let ts = rfc3339_micros(now, &mut ts);
        let json = format == LineFormat::Json;
        // A field's name as it is written before its value: text is `name=value`, JSON
        // `"name":value` (each spelling a constant: one copy per field).
        macro_rules! field {
            ($out:expr, $name:literal) => {
                $out.extend_from_slice(if json { concat!(",\"", $name, "\":").as_bytes() } else { concat!(" ", $name, "=").as_bytes() })
            };
        }
        if json {
            out.extend_from_slice(b"{\"timestamp\":\"");
            out.extend_from_slice(ts);
            out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\"");
        } else {
            out.extend_from_slice(ts);
            out.extend_from_slice(b"  INFO switchyard::request: request");
        }
        // Plain text values are written bare in text lines, as tracing's Display does.
        let text = |out: &mut Vec<u8>, v: &str| if json { write_str(out, v) } else { out.extend_from_slice(v.as_bytes()) };
        field!(out, "request_id");
        text(out, self.request_id());
        field!(out, "alias");
        text(out, &self.alias);
        field!(out, "stream");
        out.extend_from_slice(if self.stream { b"true" } else { b"false" });
        field!(out, "status");
        push_u64(out, u64::from(self.status));
        field!(out, "outcome");
        write_str(out, outcome);
        field!(out, "provider");
        write_str(out, provider);
        field!(out, "upstream_model");
        write_str(out, model);
        field!(out, "attempts_sent");
        push_u64(out, u64::from(self.trace.sent));
        field!(out, "attempts");
        if json {
            let mut attempts = String::new();
            self.trace.write_summary(&mut attempts);
            write_str(out, &attempts);
        } else {
            self.trace.push_summary(out);
        }
        field!(out, "latency_ms");
        push_u64(out, micros / 1000);
        out.push(b'.');
        let frac = micros % 1000;
        out.extend_from_slice(&[b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8]);
        field!(out, "prompt_tokens");
        push_u64(out, usage.prompt_tokens);
        field!(out, "completion_tokens");
        push_u64(out, usage.completion_tokens);
        field!(out, "total_tokens");
        push_u64(out, usage.total_tokens);
        if let Some(cost) = self.cost() {
            // Eight decimals, written by hand (float formatting costs more than the rest).
            field!(out, "cost_usd");
            let units = (cost * 1e8).round() as u64;
            push_u64(out, units / 100_000_000);
            out.push(b'.');
            let frac = units % 100_000_000;
            let start = out.len();
            push_u64(out, frac);
            let digits = out.len() - start;
            out.splice(start..start, std::iter::repeat_n(b'0', 8 - digits));
        }
        if json {
            out.extend_from_slice(b",\"target\":\"switchyard::request\"}");
        }
        out.push(b'\n');
    }
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), written into `buf`.
pub(crate) fn rfc3339_micros(t: SystemTime, buf: &mut [u8; 27]) -> &[u8] {
    thread_local! {
        /// The last second formatted, and its `YYYY-MM-DDTHH:MM:SS`: lines come many a second.
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (cached, text) = SECOND.get();
    if cached == secs {
        buf[..19].copy_from_slice(&text);
    } else {
        civil_second(secs, buf);
        SECOND.set((secs, buf[..19].try_into().expect("19 bytes")));
    }
    let mut micros = d.subsec_micros();
    for k in (20..26).rev() {
        buf[k] = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    buf[19] = b'.';
    buf[26] = b'Z';
    &buf[..]
}

/// Writes `YYYY-MM-DDTHH:MM:SS` (UTC) of `secs` since the epoch into `buf[..19]`.
fn civil_second(secs: u64, buf: &mut [u8; 27]) {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u64;
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999) as u64;
    let mut put = |at: usize, width: usize, mut v: u64| {
        for k in (0..width).rev() {
            buf[at + k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    for (at, sep) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        buf[at] = sep;
    }
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
        assert_eq!(rfc3339_micros(t, &mut buf), b"2026-11-22T01:53:41.129663Z");
        // The same second again (its date and time taken from the cache), then the next one.
        let t = UNIX_EPOCH + Duration::from_micros(1_795_312_421_000_007);
        assert_eq!(rfc3339_micros(t, &mut buf), b"2026-11-22T01:53:41.000007Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_795_312_422_999_999);
        assert_eq!(rfc3339_micros(t, &mut buf), b"2026-11-22T01:53:42.999999Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_micros(t, &mut buf), b"2000-02-29T00:00:00.000000Z");
    }

    fn sample() -> RequestLog {
        let mut log = RequestLog::new(http::HeaderValue::from_static("req-1"), "chat".into(), true, Instant::now());
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
    fn a_priced_target_adds_the_cost_to_the_line_and_its_spend() {
        let stats = Arc::new(TargetStats::new(Duration::from_secs(60), 0.3));
        let mut log = sample();
        log.usage = Some(Usage { prompt_tokens: 1_000, completion_tokens: 2_000, total_tokens: 3_000 });
        log.spend = Some((stats.clone(), Price { input: 2.5, output: 10.0 }));
        assert_eq!(log.cost(), Some(0.0225));
        let mut out = Vec::new();
        log.format(LineFormat::Json, "ok", UNIX_EPOCH, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cost_usd"].as_f64(), Some(0.0225));
        let mut text = Vec::new();
        log.format(LineFormat::Text, "ok", UNIX_EPOCH, &mut text);
        assert!(String::from_utf8(text).unwrap().ends_with(" cost_usd=0.02250000\n"));
        log.usage = Some(Usage { prompt_tokens: 1, completion_tokens: 0, total_tokens: 1 });
        let mut text = Vec::new();
        log.format(LineFormat::Text, "ok", UNIX_EPOCH, &mut text);
        assert!(String::from_utf8(text).unwrap().ends_with(" cost_usd=0.00000250\n"));
        log.usage = Some(Usage { prompt_tokens: 1_000, completion_tokens: 2_000, total_tokens: 3_000 });
        log.emitted = false;
        log.emit("ok");
        assert!((stats.spend() - 0.0225).abs() < 1e-9);
    }

    #[test]
    fn the_fast_summary_matches_the_display_one() {
        let mut log = sample();
        log.trace.attempts.push(AttemptRecord {
            target: "b/y".into(),
            outcome: Outcome::Failed(crate::providers::ProviderError::Connect("refused".into())),
            duration: Duration::from_millis(3),
        });
        let mut fast = Vec::new();
        log.trace.push_summary(&mut fast);
        assert_eq!(String::from_utf8(fast).unwrap(), log.trace.summary());
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
