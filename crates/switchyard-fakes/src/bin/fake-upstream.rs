//! A standalone fake OpenAI-compatible upstream, for benchmarks and manual testing.
//!
//! ```text
//! switchyard-fake-upstream --listen 127.0.0.1:9001 [--latency-ms N] [--chunks N]
//!     [--chunk-delay-ms N | --chunk-delay-us N] [--stamp-chunks] [--groq-quirks] [--fail-status CODE]
//!     [--openai-headers]
//! ```
//!
//! `--openai-headers` adds to every chat answer the headers api.openai.com sends (its
//! `openai-*`, `x-request-id` and `x-ratelimit-*`, and its CDN's `cf-ray`, `set-cookie`, ...):
//! by default an answer carries only `content-type`, `x-request-id`, `content-length` and `date`.
//!
//! `--stamp-chunks` writes each chunk's send time into its `system_fingerprint` (`fp_t` and the
//! nanoseconds since the Unix epoch), for a client to measure each chunk's delivery time.
//!
//! `--chunk-delay-us` paces stream chunks with a timer accurate to microseconds (a thread
//! waiting with 1 µs timer slack) instead of tokio's millisecond timer, whose 1-2 ms spread
//! hides what a gateway adds per chunk.
//!
//! Prints `listening on http://ADDR` once bound, then serves until killed.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use switchyard_fakes::{FakeUpstream, Reply, Script, Step};

const USAGE: &str = "usage: switchyard-fake-upstream --listen ADDR [--latency-ms N] [--chunks N] \
[--chunk-delay-ms N | --chunk-delay-us N] [--stamp-chunks] [--groq-quirks] [--fail-status CODE] [--openai-headers]";

/// The headers api.openai.com adds to a chat completion's answer (besides `content-type`,
/// `date`, `content-length` or `transfer-encoding`, and `x-request-id`).
const OPENAI_HEADERS: [(&str, &str); 17] = [
    ("connection", "keep-alive"),
    ("access-control-expose-headers", "X-Request-ID"),
    ("openai-organization", "user-abc123"),
    ("openai-processing-ms", "412"),
    ("openai-project", "proj_abc123"),
    ("openai-version", "2020-10-01"),
    ("x-envoy-upstream-service-time", "415"),
    ("x-ratelimit-limit-requests", "10000"),
    ("x-ratelimit-limit-tokens", "30000000"),
    ("x-ratelimit-remaining-requests", "9999"),
    ("x-ratelimit-remaining-tokens", "29999979"),
    ("x-ratelimit-reset-requests", "6ms"),
    ("x-ratelimit-reset-tokens", "0s"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
    ("cf-cache-status", "DYNAMIC"),
    ("set-cookie", "__cf_bm=Yq1o2aQ3mJ7x.Lk4d9f0FZbV6w-1765140000-1.0.1.1-abcDEF; path=/; expires=Mon, 07-Dec-26 23:00:00 GMT; domain=.api.openai.com; HttpOnly; Secure; SameSite=None"),
    ("cf-ray", "9a1b2c3d4e5f6a7b-LAX"),
];

/// Command-line options.
struct Options {
    listen: SocketAddr,
    latency: Duration,
    chunks: usize,
    chunk_delay: Duration,
    /// Pace chunks with the microsecond timer.
    precise: bool,
    /// Stamp chunks with their send time.
    stamp: bool,
    groq_quirks: bool,
    fail_status: Option<u16>,
    openai_headers: bool,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut listen = None;
        let mut options = Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
            chunks: 5,
            chunk_delay: Duration::ZERO,
            precise: false,
            stamp: false,
            groq_quirks: false,
            fail_status: None,
            openai_headers: false,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--listen" => listen = Some(parse_value(&flag, &value()?)?),
                "--latency-ms" => {
                    options.latency = Duration::from_millis(parse_value(&flag, &value()?)?)
                }
                "--chunks" => options.chunks = parse_value(&flag, &value()?)?,
                "--chunk-delay-ms" => {
                    options.chunk_delay = Duration::from_millis(parse_value(&flag, &value()?)?)
                }
                "--chunk-delay-us" => {
                    options.chunk_delay = Duration::from_micros(parse_value(&flag, &value()?)?);
                    options.precise = true;
                }
                "--fail-status" => options.fail_status = Some(parse_value(&flag, &value()?)?),
                "--groq-quirks" => options.groq_quirks = true,
                "--stamp-chunks" => options.stamp = true,
                "--openai-headers" => options.openai_headers = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        options.listen = listen.ok_or("--listen is required")?;
        Ok(options)
    }

    fn script(&self) -> Script {
        let mut step = match self.fail_status {
            Some(code) => Step::status(code),
            None => {
                // Enough words for every requested chunk.
                let reply = if self.chunks > 5 {
                    Reply::Fixed(
                        (0..self.chunks)
                            .map(|i| format!("word{i}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                } else {
                    Reply::Fixed("Hello from the fake upstream.".to_owned())
                };
                Step::Ok {
                    reply,
                    chunks: self.chunks,
                    chunk_delay: self.chunk_delay,
                }
            }
        };
        if !self.latency.is_zero() {
            step = step.delayed(self.latency);
        }
        Script::new()
            .default_step(step)
            .groq_quirks(self.groq_quirks)
            .record(false)
    }
}

fn parse_value<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("invalid value {value:?} for {flag}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(args.into_iter()) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("switchyard-fake-upstream: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if options.precise {
        switchyard_fakes::use_precise_timer();
    }
    if options.stamp {
        switchyard_fakes::stamp_chunks();
    }
    let upstream = match FakeUpstream::start_on(options.listen, options.script()).await {
        Ok(upstream) => upstream,
        Err(error) => {
            eprintln!(
                "switchyard-fake-upstream: cannot listen on {}: {error}",
                options.listen
            );
            return ExitCode::FAILURE;
        }
    };
    if options.openai_headers {
        upstream.set_response_headers(&OPENAI_HEADERS);
    }
    let mut stdout = std::io::stdout().lock();
    // Scripts wait for this line; if stdout is gone there is no one to tell.
    let _ = writeln!(stdout, "listening on http://{}", upstream.addr());
    let _ = stdout.flush();
    drop(stdout);

    let _ = tokio::signal::ctrl_c().await;
    upstream.shutdown();
    ExitCode::SUCCESS
}
