//! loadgen: an HTTP/1.1 load generator for OpenAI-compatible chat endpoints.
//!
//! ```text
//! loadgen --url http://127.0.0.1:8080/v1/chat/completions [--model M]
//!     [--concurrency N] [--requests M | --duration 10s] [--warmup 1s]
//!     [--rate R --duration D]                 fixed rate, latency from the intended send time
//!     [--stream] [--header 'name: value']... [--timeout 30s] [--threads 1] [--body-file F]
//!     [--ramp 1s]                              start the workers spread over this long
//! ```
//!
//! One keep-alive connection (TCP_NODELAY) per concurrent worker, written directly on hyper's
//! connection API so the client adds as little as possible. Prints a JSON summary on stdout:
//! counts, errors by kind, throughput and HdrHistogram latency percentiles in microseconds; for
//! streams also time-to-first-chunk (the first SSE `data:` event whose delta carries non-empty
//! content), every gap between content chunks, and chunks per stream.
//!
//! Fixed-concurrency mode: every worker sends its next request as soon as the previous answer
//! is complete; latency runs from just before the send (a reconnect, if needed, included).
//! Fixed-rate mode: request `i` is due at `start + i / rate`; the first free worker takes it,
//! waits until it is due and sends it. A request taken late because every connection was still
//! busy has its latency measured from its due time, so a server that stalls is charged for the
//! requests it kept waiting (no coordinated omission); one sent by an idle worker is measured
//! from when it was sent, so the runtime timer's ~1 ms granularity is not charged to the server.
//! `--concurrency` is then the number of connections, the most requests in flight at once;
//! requests still unsent when the window ends are reported as `unsent` errors.
//!
//! Requests that start during the warm-up are sent but not counted.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use switchyard_bench::{fixtures, sse};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "HTTP/1.1 load generator for OpenAI-compatible chat endpoints; prints a JSON summary."
)]
struct Args {
    /// Target URL (http only), e.g. http://127.0.0.1:8080/v1/chat/completions.
    #[arg(long)]
    url: String,
    /// The `model` field of the request body.
    #[arg(long, default_value = "gpt-4o-mini")]
    model: String,
    /// Concurrent workers, one keep-alive connection each (in --rate mode: the connection pool,
    /// i.e. the most requests in flight).
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Counted requests (after the warm-up).
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Measurement duration after the warm-up (e.g. 10s, 500ms, 1m). Default 10s when neither
    /// --requests nor --duration is given.
    #[arg(long, short = 'd', value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Warm-up before measuring: requests started in it are sent but not counted.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Fixed-rate mode: requests per second, latency measured from each intended send time.
    #[arg(long)]
    rate: Option<f64>,
    /// Send `"stream": true` and measure time-to-first-chunk and inter-chunk gaps.
    #[arg(long)]
    stream: bool,
    /// Extra request header, `name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Per-request timeout (the whole exchange, streamed body included).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Runtime threads (1 = a current-thread runtime, the cheapest client).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Send this file as the body instead of the built-in typical request.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Start the workers evenly over this long instead of all at once (e.g. to open 1,000
    /// connections without overflowing a listener's accept queue).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    ramp: Duration,
    /// A label copied into the JSON output.
    #[arg(long)]
    label: Option<String>,
    /// Paired mode (closed loop only): every worker alternates its requests between --url and
    /// this URL, one keep-alive connection to each, and the output gives this URL's latency
    /// apart (`paired`; with --stream also its time to first chunk). Two targets measured request
    /// by request in turn see the same machine, so the difference between them is not drift
    /// between two runs.
    #[arg(long)]
    paired_url: Option<String>,
    /// The `model` of the requests to --paired-url (default: --model).
    #[arg(long)]
    paired_model: Option<String>,
}

/// Parses `250ms`, `10s`, `1.5s`, `2m`, `100us`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} in {s:?}")),
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Everything the workers share.
/// Where requests go and what they carry.
struct Endpoint {
    addr: SocketAddr,
    host: HeaderValue,
    path: Uri,
    body: Bytes,
}

struct Plan {
    target: Endpoint,
    /// Paired mode: the other endpoint, and its latencies.
    paired: Option<(Endpoint, Mutex<PairedStats>)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    stream: bool,
    timeout: Duration,
    rate: Option<f64>,
    requests: Option<u64>,
    start: Instant,
    measure_start: Instant,
    /// No request is started (due, in rate mode) at or after this.
    end: Option<Instant>,
    /// Counted requests handed out.
    tickets: AtomicU64,
    /// Rate mode: the next request's sequence number.
    seq: AtomicU64,
    stats: Mutex<Stats>,
}

/// What paired mode records of the requests to --paired-url.
struct PairedStats {
    latency: Histogram<u64>,
    /// Streams: time to the first content chunk.
    ttfc: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

struct Stats {
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// The first message seen for each error kind.
    error_samples: BTreeMap<String, String>,
    latency: Histogram<u64>,
    ttfc: Histogram<u64>,
    gaps: Histogram<u64>,
    /// Per content chunk: from the upstream's send (its stamp) to this read, when stamped.
    delivery: Histogram<u64>,
    chunks: Histogram<u64>,
    /// Per stream: from the first to the last content chunk.
    span: Histogram<u64>,
    bytes: u64,
    connects: u64,
    /// Keep-alive connections found closed before a send (not counted as errors).
    reconnects: u64,
    last_end: Option<Instant>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            ok: 0,
            errors: BTreeMap::new(),
            error_samples: BTreeMap::new(),
            latency: histogram(),
            ttfc: histogram(),
            gaps: histogram(),
            delivery: histogram(),
            chunks: Histogram::new_with_bounds(1, 1_000_000, 3).expect("valid histogram bounds"),
            span: histogram(),
            bytes: 0,
            connects: 0,
            reconnects: 0,
            last_end: None,
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// One failed exchange.
struct Failure {
    kind: String,
    message: String,
}

impl Failure {
    fn new(kind: impl Into<String>, message: impl std::fmt::Display) -> Failure {
        Failure {
            kind: kind.into(),
            message: message.to_string(),
        }
    }
}

/// One completed exchange.
struct Done {
    end: Instant,
    first_chunk: Option<Instant>,
    last_chunk: Option<Instant>,
    chunks: u64,
    bytes: u64,
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(to: &Endpoint) -> Result<Sender, Failure> {
    let stream = TcpStream::connect(to.addr)
        .await
        .map_err(|e| Failure::new("connect", e))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::new("handshake", e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A ready connection: the worker's, or a new one if it has none or it was closed.
async fn ready<'a>(
    to: &Endpoint,
    conn: &'a mut Option<Sender>,
    connects: &mut u64,
    reconnects: &mut u64,
) -> Result<&'a mut Sender, Failure> {
    for _ in 0..2 {
        if let Some(sender) = conn {
            if !sender.is_closed() && sender.ready().await.is_ok() {
                break;
            }
            *reconnects += 1;
            *conn = None;
        }
        *connects += 1;
        *conn = Some(connect(to).await?);
    }
    conn.as_mut()
        .ok_or_else(|| Failure::new("connect", "no connection"))
}

/// Sends one request and reads the whole answer.
async fn exchange(
    plan: &Plan,
    to: &Endpoint,
    conn: &mut Option<Sender>,
    times: &mut ChunkTimes,
    connects: &mut u64,
    reconnects: &mut u64,
) -> Result<Done, Failure> {
    let sender = ready(to, conn, connects, reconnects).await?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(to.path.clone())
        .header(HOST, to.host.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if plan.stream {
        request = request.header(ACCEPT, HeaderValue::from_static("text/event-stream"));
    }
    let mut request = request
        .body(Full::new(to.body.clone()))
        .map_err(|e| Failure::new("request", e))?;
    for (name, value) in &plan.headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(e) => {
            *conn = None;
            return Err(Failure::new("send", e));
        }
    };
    let status = response.status();
    let mut body = response.into_body();
    if status != http::StatusCode::OK {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        return Err(Failure::new(format!("status_{}", status.as_u16()), text));
    }
    let result = if plan.stream {
        read_stream(&mut body, times).await
    } else {
        read_json(&mut body).await
    };
    if result.is_err() {
        *conn = None;
    }
    result
}

async fn read_json(body: &mut Incoming) -> Result<Done, Failure> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::new("body", e))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
    let end = Instant::now();
    if sse::find(&buf, b"\"choices\"").is_none() {
        let text = String::from_utf8_lossy(&buf[..buf.len().min(300)]).into_owned();
        return Err(Failure::new("bad_body", text));
    }
    Ok(Done {
        end,
        first_chunk: None,
        last_chunk: None,
        chunks: 0,
        bytes: buf.len() as u64,
    })
}

/// One stream's per-chunk figures (µs): the gaps between content chunks, and each stamped
/// chunk's delivery time (see `switchyard-fake-upstream --stamp-chunks`).
#[derive(Default)]
struct ChunkTimes {
    gaps: Vec<u64>,
    delivery: Vec<u64>,
}

async fn read_stream(body: &mut Incoming, times: &mut ChunkTimes) -> Result<Done, Failure> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut first = None;
    let mut last: Option<Instant> = None;
    let mut chunks = 0;
    let mut bytes = 0;
    let mut done = false;
    let mut error: Option<String> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::new("body", e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        let wall = std::time::SystemTime::now();
        bytes += data.len() as u64;
        buf.extend_from_slice(&data);
        let consumed = sse::drain_events(&buf, |payload| match sse::classify(payload) {
            sse::EventKind::Content => {
                chunks += 1;
                if let Some(sent) = sse::stamp(payload) {
                    let read = wall.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
                    times.delivery.push((read.saturating_sub(sent) / 1000).max(1));
                }
                match last {
                    Some(previous) => times.gaps.push(micros(now - previous)),
                    None => first = Some(now),
                }
                last = Some(now);
            }
            sse::EventKind::Done => done = true,
            sse::EventKind::Error => {
                error.get_or_insert_with(|| {
                    String::from_utf8_lossy(&payload[..payload.len().min(300)]).into_owned()
                });
            }
            sse::EventKind::Other => {}
        });
        buf.drain(..consumed);
    }
    let end = Instant::now();
    if let Some(message) = error {
        return Err(Failure::new("stream_error", message));
    }
    if !done {
        return Err(Failure::new(
            "stream_incomplete",
            "the stream ended without [DONE]",
        ));
    }
    if chunks == 0 {
        return Err(Failure::new(
            "stream_no_content",
            "no content chunk before [DONE]",
        ));
    }
    Ok(Done {
        end,
        first_chunk: first,
        last_chunk: last,
        chunks,
        bytes,
    })
}

/// The next request's reference time, or `None` when the worker should stop.
/// Returns (counted, reference time).
async fn next_slot(plan: &Plan) -> Option<(bool, Instant)> {
    let take_ticket = || match plan.requests {
        Some(n) => plan.tickets.fetch_add(1, Ordering::Relaxed) < n,
        None => true,
    };
    match plan.rate {
        None => {
            let now = Instant::now();
            if now < plan.measure_start {
                return Some((false, now));
            }
            if plan.end.is_some_and(|end| now >= end) || !take_ticket() {
                return None;
            }
            Some((true, now))
        }
        Some(rate) => {
            // A server that falls behind the schedule does not stretch the run: once the
            // measurement window is over, requests not yet sent are given up (and counted as
            // `unsent` errors).
            if plan.end.is_some_and(|end| Instant::now() >= end) {
                return None;
            }
            let i = plan.seq.fetch_add(1, Ordering::Relaxed);
            let due = plan.start + Duration::from_secs_f64(i as f64 / rate);
            let counted = due >= plan.measure_start;
            if counted && (plan.end.is_some_and(|end| due >= end) || !take_ticket()) {
                return None;
            }
            if due > Instant::now() {
                // The worker was idle: it waits for the due time, and the (up to ~1 ms) lateness
                // of the runtime's timer is the client's, not the server's.
                tokio::time::sleep_until(due.into()).await;
                Some((counted, Instant::now()))
            } else {
                // Every connection was busy past the due time: that wait is the server's.
                Some((counted, due))
            }
        }
    }
}

async fn worker(plan: Arc<Plan>) {
    let mut conn: Option<Sender> = None;
    let mut paired_conn: Option<Sender> = None;
    let mut turn = 0u64;
    let mut times = ChunkTimes::default();
    let (mut connects, mut reconnects) = (0, 0);
    while let Some((counted, reference)) = next_slot(&plan).await {
        times.gaps.clear();
        times.delivery.clear();
        turn += 1;
        let (to, conn, paired) = match &plan.paired {
            Some((endpoint, latency)) if turn % 2 == 0 => (endpoint, &mut paired_conn, Some(latency)),
            _ => (&plan.target, &mut conn, None),
        };
        let result = tokio::time::timeout(
            plan.timeout,
            exchange(&plan, to, conn, &mut times, &mut connects, &mut reconnects),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Failure::new(
                "timeout",
                format!("no complete answer within {:?}", plan.timeout),
            ))
        });
        let failed = result.is_err();
        if let Err(Failure { kind, .. }) = &result {
            if kind == "timeout" {
                *conn = None;
            }
        }
        if let (true, Some(paired), Ok(done)) = (counted, paired, &result) {
            let mut paired = paired.lock().unwrap_or_else(PoisonError::into_inner);
            paired.latency.saturating_record(micros(done.end - reference));
            if let Some(first) = done.first_chunk {
                paired.ttfc.saturating_record(micros(first - reference));
            }
        } else if counted {
            let mut stats = plan.stats.lock().unwrap_or_else(PoisonError::into_inner);
            match result {
                Ok(done) => {
                    stats.ok += 1;
                    stats.bytes += done.bytes;
                    stats
                        .latency
                        .saturating_record(micros(done.end - reference));
                    if let Some(first) = done.first_chunk {
                        stats.ttfc.saturating_record(micros(first - reference));
                        stats.chunks.saturating_record(done.chunks);
                        if let Some(last) = done.last_chunk {
                            stats.span.saturating_record(micros(last - first));
                        }
                        for d in &times.delivery {
                            stats.delivery.saturating_record(*d);
                        }
                        for gap in &times.gaps {
                            stats.gaps.saturating_record(*gap);
                        }
                    }
                    stats.last_end = stats.last_end.max(Some(done.end));
                }
                Err(failure) => {
                    *stats.errors.entry(failure.kind.clone()).or_default() += 1;
                    stats
                        .error_samples
                        .entry(failure.kind)
                        .or_insert(failure.message);
                    stats.last_end = stats.last_end.max(Some(Instant::now()));
                }
            }
        }
        if failed && conn.is_none() {
            // A refused or broken connection: do not spin.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut stats = plan.stats.lock().unwrap_or_else(PoisonError::into_inner);
    stats.connects += connects;
    stats.reconnects += reconnects;
}

fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0, "min": null, "mean": null, "p50": null, "p90": null,
                      "p99": null, "p999": null, "max": null});
    }
    json!({
        "count": h.len(),
        "min": h.min(),
        "mean": (h.mean() * 10.0).round() / 10.0,
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

/// The endpoint of `url`, sent `model` (or the --body-file).
fn endpoint(args: &Args, url: &str, model: &str) -> Result<Endpoint, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url:?} is not an http:// URL"));
    }
    let authority = uri.authority().ok_or("--url has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let addr = (authority.host().trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {authority}"))?;
    let path: Uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|e| format!("invalid path: {e}"))?;
    let host = HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
    let body = match &args.body_file {
        Some(path) => Bytes::from(
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
        None => Bytes::from(fixtures::chat_request(model, args.stream)),
    };
    Ok(Endpoint { addr, host, path, body })
}

fn build_plan(args: &Args) -> Result<Plan, String> {
    let target = endpoint(args, &args.url, &args.model)?;
    let paired = match &args.paired_url {
        Some(_) if args.rate.is_some() => return Err("--paired-url works in the closed loop only (no --rate)".into()),
        Some(url) => Some((
            endpoint(args, url, args.paired_model.as_deref().unwrap_or(&args.model))?,
            Mutex::new(PairedStats { latency: histogram(), ttfc: histogram() }),
        )),
        None => None,
    };
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?} is not `name: value`"))?;
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| format!("{h:?}: {e}"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|e| format!("{h:?}: {e}"))?;
        headers.push((name, value));
    }
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err("--rate must be positive".into());
        }
        if args.duration.is_none() && args.requests.is_none() {
            return Err("--rate needs --duration (or --requests)".into());
        }
    }
    let duration = match (args.duration, args.requests) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d,
    };
    let start = Instant::now();
    let measure_start = start + args.warmup;
    Ok(Plan {
        target,
        paired,
        headers,
        stream: args.stream,
        timeout: args.timeout,
        rate: args.rate,
        requests: args.requests,
        start,
        measure_start,
        end: duration.map(|d| measure_start + d),
        tickets: AtomicU64::new(0),
        seq: AtomicU64::new(0),
        stats: Mutex::new(Stats::new()),
    })
}

async fn run(mut plan: Plan, concurrency: usize, ramp: Duration) -> Plan {
    // Start the clock when the workers start.
    let warmup = plan.measure_start - plan.start;
    let length = plan.end.map(|end| end - plan.measure_start);
    plan.start = Instant::now();
    plan.measure_start = plan.start + warmup;
    plan.end = length.map(|d| plan.measure_start + d);
    let plan = Arc::new(plan);
    let workers: Vec<_> = (0..concurrency)
        .map(|i| {
            let plan = plan.clone();
            let delay = ramp.mul_f64(i as f64 / concurrency as f64);
            tokio::spawn(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                worker(plan).await
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    Arc::try_unwrap(plan).unwrap_or_else(|_| unreachable!("every worker has finished"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match build_plan(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = runtime.block_on(run(plan, args.concurrency, args.ramp));
    let mut stats = plan
        .stats
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    if let (Some(rate), Some(end)) = (plan.rate, plan.end) {
        // Requests due in the measurement window that were never sent.
        let window = (end - plan.measure_start).as_secs_f64();
        let mut due = (window * rate).round() as u64;
        if let Some(n) = plan.requests {
            due = due.min(n);
        }
        let sent = stats.ok + stats.errors.values().sum::<u64>();
        if due > sent {
            stats.errors.insert("unsent".into(), due - sent);
            stats.error_samples.insert(
                "unsent".into(),
                "due in the measurement window but not sent by its end: the target fell behind the schedule".into(),
            );
        }
    }
    let errors_total: u64 = stats.errors.values().sum();
    let elapsed = stats.last_end.map_or(Duration::ZERO, |end| {
        end.saturating_duration_since(plan.measure_start)
    });
    let seconds = elapsed.as_secs_f64();
    let throughput = if seconds > 0.0 {
        stats.ok as f64 / seconds
    } else {
        0.0
    };
    let stream = if args.stream {
        let chunks = &stats.chunks;
        json!({
            "ttfc_us": summary(&stats.ttfc),
            "chunk_gap_us": summary(&stats.gaps),
            "chunk_delivery_us": if stats.delivery.is_empty() { Value::Null } else { summary(&stats.delivery) },
            "span_us": summary(&stats.span),
            "chunks_per_stream": {
                "mean": if chunks.is_empty() { Value::Null } else { json!((chunks.mean() * 10.0).round() / 10.0) },
                "min": if chunks.is_empty() { Value::Null } else { json!(chunks.min()) },
                "max": if chunks.is_empty() { Value::Null } else { json!(chunks.max()) },
            },
        })
    } else {
        Value::Null
    };
    let output = json!({
        "label": args.label,
        "url": args.url,
        "mode": if args.rate.is_some() { "rate" } else { "concurrency" },
        "stream": args.stream,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "threads": args.threads.max(1),
        "warmup_s": args.warmup.as_secs_f64(),
        "ramp_s": args.ramp.as_secs_f64(),
        "request_bytes": plan.target.body.len(),
        "requests": stats.ok + errors_total,
        "ok": stats.ok,
        "errors": {
            "total": errors_total,
            "by_kind": stats.errors,
            "samples": stats.error_samples,
        },
        "duration_s": (seconds * 1e4).round() / 1e4,
        "throughput_rps": (throughput * 10.0).round() / 10.0,
        "latency_us": summary(&stats.latency),
        "stream_stats": stream,
        "connections": stats.connects,
        "reconnects": stats.reconnects,
        "bytes_received": stats.bytes,
        "paired": plan.paired.as_ref().map(|(to, paired)| {
            let paired = paired.lock().unwrap_or_else(PoisonError::into_inner);
            json!({
                "url": args.paired_url,
                "request_bytes": to.body.len(),
                "ok": paired.latency.len(),
                "latency_us": summary(&paired.latency),
                "ttfc_us": if args.stream { summary(&paired.ttfc) } else { Value::Null },
            })
        }),
    });
    println!("{output}");
    ExitCode::SUCCESS
}
