//! Live statistics of one `provider/model` target, shared by every alias that lists it and by
//! every server thread: requests in flight, latency (EWMA and a sliding-window p95), error ratio
//! and traffic over the window, rate-limit headroom from the provider's headers, active health,
//! hedges and spend. Everything on the request path is a relaxed atomic: no locks, no
//! allocation (only the last failure's reason, written on failures, sits behind a mutex).

use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use tokio::time::Instant;

/// Slots of the sliding window.
const SLOTS: usize = 10;
/// Latency histogram buckets: 8 per power of two from 1 µs to ~2^28 µs (log-linear, ≤ 12.5% wide).
const SUB: u32 = 8;
const BUCKETS: usize = (SUB as usize) * 30;

/// Health as seen by the active checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not checked (active checks off, or no result yet).
    Unknown,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// The last failure of a target.
#[derive(Clone, Debug)]
pub struct Failure {
    pub at: SystemTime,
    pub reason: String,
}

struct Slot {
    /// Which slot of time this holds (time since the origin / slot length).
    epoch: AtomicU64,
    requests: AtomicU32,
    errors: AtomicU32,
    latency: [AtomicU32; BUCKETS],
}

impl Slot {
    fn new() -> Slot {
        Slot { epoch: AtomicU64::new(u64::MAX), requests: AtomicU32::new(0), errors: AtomicU32::new(0), latency: std::array::from_fn(|_| AtomicU32::new(0)) }
    }

    fn reset(&self) {
        self.requests.store(0, Relaxed);
        self.errors.store(0, Relaxed);
        for b in &self.latency {
            b.store(0, Relaxed);
        }
    }
}

fn bucket(us: u64) -> usize {
    let us = us.max(1);
    if us < SUB as u64 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros(); // ≥ 3
    let sub = (us >> (octave - 3)) & (SUB as u64 - 1);
    ((SUB + (octave - 3) * SUB) as u64 + sub).min(BUCKETS as u64 - 1) as usize
}

/// The middle of a bucket, in µs.
fn bucket_value(i: usize) -> u64 {
    if i < SUB as usize {
        return i as u64;
    }
    let octave = (i as u32 - SUB) / SUB + 3;
    let sub = (i as u32 - SUB) % SUB;
    let low = ((SUB + sub) as u64) << (octave - 3);
    low + (1u64 << (octave - 3)) / 2
}

/// Rate-limit state learned from response headers, times in ms since the stats' origin.
#[derive(Default)]
struct Limits {
    /// `u64::MAX`: not reported.
    remaining_requests: AtomicU64,
    limit_requests: AtomicU64,
    remaining_tokens: AtomicU64,
    limit_tokens: AtomicU64,
    /// When the reported window resets (0: not reported).
    reset_ms: AtomicU64,
    /// Kept out of rotation until then after a 429 (0: not blocked).
    blocked_until_ms: AtomicU64,
}

/// A snapshot of the rate-limit headroom, for `/admin/providers`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Headroom {
    pub remaining_requests: Option<u64>,
    pub limit_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub reset_in: Option<Duration>,
    pub blocked_for: Option<Duration>,
}

pub struct TargetStats {
    origin: Instant,
    slot_len: Duration,
    alpha: f64,
    inflight: AtomicU32,
    /// f64 bits of the latency EWMA in µs; 0: no sample yet.
    ewma_us: AtomicU64,
    slots: [Slot; SLOTS],
    limits: Limits,
    health: AtomicU8,
    requests: AtomicU64,
    errors: AtomicU64,
    hedges: AtomicU64,
    hedge_wins: AtomicU64,
    /// Estimated spend in micro-USD: answered requests, and hedges that lost.
    spend_micros: AtomicU64,
    hedge_spend_micros: AtomicU64,
    last_failure: Mutex<Option<Failure>>,
}

impl TargetStats {
    /// Stats over a sliding `window`, with EWMA weight `alpha` for the newest latency sample.
    pub fn new(window: Duration, alpha: f64) -> TargetStats {
        let limits = Limits::default();
        for a in [&limits.remaining_requests, &limits.limit_requests, &limits.remaining_tokens, &limits.limit_tokens] {
            a.store(u64::MAX, Relaxed);
        }
        TargetStats {
            origin: Instant::now(),
            slot_len: (window / SLOTS as u32).max(Duration::from_millis(10)),
            alpha,
            inflight: AtomicU32::new(0),
            ewma_us: AtomicU64::new(0),
            slots: std::array::from_fn(|_| Slot::new()),
            limits,
            health: AtomicU8::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            hedge_wins: AtomicU64::new(0),
            spend_micros: AtomicU64::new(0),
            hedge_spend_micros: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn slot(&self) -> &Slot {
        let epoch = (self.origin.elapsed().as_nanos() / self.slot_len.as_nanos()) as u64;
        let slot = &self.slots[epoch as usize % SLOTS];
        let seen = slot.epoch.load(Relaxed);
        if seen != epoch && slot.epoch.compare_exchange(seen, epoch, Relaxed, Relaxed).is_ok() {
            slot.reset();
        }
        slot
    }

    /// The slots inside the window now.
    fn live_slots(&self) -> impl Iterator<Item = &Slot> {
        let epoch = (self.origin.elapsed().as_nanos() / self.slot_len.as_nanos()) as u64;
        self.slots.iter().filter(move |s| {
            let e = s.epoch.load(Relaxed);
            e <= epoch && epoch - e < SLOTS as u64
        })
    }

    /// Marks a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    pub fn in_flight(&self) -> u32 {
        self.inflight.load(Relaxed)
    }

    /// A successful attempt that took `latency` (to the answer, or to a stream's first token).
    pub fn record_success(&self, latency: Duration) {
        self.record_answered();
        self.record_latency(latency);
    }

    /// A successful attempt whose latency comes later ([`TargetStats::record_latency`]): a
    /// stream committed on its response head, timed to its first token.
    pub fn record_answered(&self) {
        self.slot().requests.fetch_add(1, Relaxed);
        self.requests.fetch_add(1, Relaxed);
    }

    /// The latency of a successful attempt.
    pub fn record_latency(&self, latency: Duration) {
        let us = latency.as_micros().min(u64::MAX as u128) as u64;
        self.slot().latency[bucket(us)].fetch_add(1, Relaxed);
        self.ewma_sample(us as f64);
    }

    fn ewma_sample(&self, us: f64) {
        let old = f64::from_bits(self.ewma_us.load(Relaxed));
        let new = if old == 0.0 { us.max(1.0) } else { self.alpha * us + (1.0 - self.alpha) * old };
        self.ewma_us.store(new.to_bits(), Relaxed);
    }

    /// A failed attempt that took `took`, with its reason for `/admin/providers`. The latency
    /// EWMA takes a penalty sample (the time it took, and at least twice the current EWMA), so
    /// the `latency` strategy moves off a target that times out or fails fast.
    pub fn record_failure_after(&self, reason: &dyn std::fmt::Display, took: Duration) {
        let old = f64::from_bits(self.ewma_us.load(Relaxed));
        self.ewma_sample((took.as_micros() as f64).max(2.0 * old));
        self.record_failure(reason);
    }

    /// A failed attempt, with its reason for `/admin/providers`.
    pub fn record_failure(&self, reason: &dyn std::fmt::Display) {
        let slot = self.slot();
        slot.requests.fetch_add(1, Relaxed);
        slot.errors.fetch_add(1, Relaxed);
        self.requests.fetch_add(1, Relaxed);
        self.errors.fetch_add(1, Relaxed);
        let failure = Failure { at: SystemTime::now(), reason: reason.to_string() };
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(failure);
        }
    }

    /// Latency EWMA, once there is a sample.
    pub fn ewma(&self) -> Option<Duration> {
        let v = f64::from_bits(self.ewma_us.load(Relaxed));
        (v > 0.0).then(|| Duration::from_micros(v as u64))
    }

    /// The `q` quantile (0..1) of successful latencies in the window, with at least
    /// `min_samples` samples.
    pub fn quantile(&self, q: f64, min_samples: u32) -> Option<Duration> {
        let mut counts = [0u32; BUCKETS];
        let mut total = 0u64;
        for s in self.live_slots() {
            for (c, b) in counts.iter_mut().zip(&s.latency) {
                let n = b.load(Relaxed);
                *c += n;
                total += n as u64;
            }
        }
        if total == 0 || total < min_samples as u64 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in counts.iter().enumerate() {
            seen += *c as u64;
            if seen >= rank {
                return Some(Duration::from_micros(bucket_value(i)));
            }
        }
        None
    }

    pub fn p95(&self) -> Option<Duration> {
        self.quantile(0.95, 1)
    }

    /// (requests, errors) in the window.
    pub fn window_counts(&self) -> (u64, u64) {
        self.live_slots().fold((0, 0), |(r, e), s| (r + s.requests.load(Relaxed) as u64, e + s.errors.load(Relaxed) as u64))
    }

    /// Errors / requests in the window (0 without traffic).
    pub fn error_ratio(&self) -> f64 {
        let (r, e) = self.window_counts();
        if r == 0 { 0.0 } else { e as f64 / r as f64 }
    }

    /// (requests, errors) since start.
    pub fn totals(&self) -> (u64, u64) {
        (self.requests.load(Relaxed), self.errors.load(Relaxed))
    }

    pub fn health(&self) -> Health {
        match self.health.load(Relaxed) {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    pub fn set_health(&self, h: Health) {
        self.health.store(
            match h {
                Health::Unknown => 0,
                Health::Healthy => 1,
                Health::Unhealthy => 2,
            },
            Relaxed,
        );
    }

    /// Reads the provider's rate-limit headers from a response: OpenAI-style
    /// `x-ratelimit-{remaining,limit}-{requests,tokens}` with `x-ratelimit-reset-*` durations
    /// (`"1s"`, `"6m0s"`, `"20ms"`), Anthropic's `anthropic-ratelimit-*` with RFC 3339 resets,
    /// and the IETF `ratelimit-remaining` / `ratelimit-limit` / `ratelimit-reset` (seconds).
    pub fn observe_headers(&self, headers: &HeaderMap) {
        // One pass over the headers (a lookup by name hashes it: a dozen of them cost more
        // than the rest of the response's handling); the first value of a name counts.
        let mut v: [Option<&str>; RATE_HEADERS] = [None; RATE_HEADERS];
        for (name, value) in headers {
            if let Some(i) = rate_header(name.as_str()) {
                if v[i].is_none() {
                    v[i] = value.to_str().ok();
                }
            }
        }
        let num = |i: usize| v[i].and_then(|s| s.trim().parse::<u64>().ok());
        let l = &self.limits;
        let mut reset: Option<Duration> = None;
        let mut seen = false;
        if let Some(r) = num(OPENAI_REMAINING_REQUESTS) {
            seen = true;
            l.remaining_requests.store(r, Relaxed);
            if let Some(n) = num(OPENAI_LIMIT_REQUESTS) {
                l.limit_requests.store(n, Relaxed);
            }
            reset = v[OPENAI_RESET_REQUESTS].and_then(parse_go_duration);
        }
        if let Some(r) = num(OPENAI_REMAINING_TOKENS) {
            seen = true;
            l.remaining_tokens.store(r, Relaxed);
            if let Some(n) = num(OPENAI_LIMIT_TOKENS) {
                l.limit_tokens.store(n, Relaxed);
            }
            reset = max_opt(reset, v[OPENAI_RESET_TOKENS].and_then(parse_go_duration));
        }
        if let Some(r) = num(ANTHROPIC_REQUESTS_REMAINING) {
            seen = true;
            l.remaining_requests.store(r, Relaxed);
            if let Some(n) = num(ANTHROPIC_REQUESTS_LIMIT) {
                l.limit_requests.store(n, Relaxed);
            }
            reset = max_opt(reset, v[ANTHROPIC_REQUESTS_RESET].and_then(until_rfc3339));
        }
        if let Some(r) = num(ANTHROPIC_TOKENS_REMAINING) {
            seen = true;
            l.remaining_tokens.store(r, Relaxed);
            if let Some(n) = num(ANTHROPIC_TOKENS_LIMIT) {
                l.limit_tokens.store(n, Relaxed);
            }
            reset = max_opt(reset, v[ANTHROPIC_TOKENS_RESET].and_then(until_rfc3339));
        }
        if !seen {
            if let Some(r) = num(IETF_REMAINING) {
                seen = true;
                l.remaining_requests.store(r, Relaxed);
                if let Some(n) = num(IETF_LIMIT) {
                    l.limit_requests.store(n, Relaxed);
                }
                reset = num(IETF_RESET).map(Duration::from_secs);
            }
        }
        if seen {
            l.reset_ms.store(reset.map_or(0, |d| self.now_ms() + d.as_millis() as u64), Relaxed);
        }
    }

    /// After a 429: keep the target out of rotation for `retry_after`, or until the reset the
    /// provider reported; returns whether it is now blocked.
    pub fn rate_limited(&self, retry_after: Option<Duration>) -> bool {
        let now = self.now_ms();
        let until = match retry_after {
            Some(d) => now + d.as_millis() as u64,
            None => match self.limits.reset_ms.load(Relaxed) {
                r if r > now => r,
                _ => return false,
            },
        };
        self.limits.blocked_until_ms.fetch_max(until, Relaxed);
        true
    }

    /// Kept out of rotation after a 429.
    pub fn is_blocked(&self) -> bool {
        let until = self.limits.blocked_until_ms.load(Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Remaining share of the tighter of the request and token limits (1.0: unknown or reset).
    pub fn headroom(&self) -> f64 {
        if self.is_blocked() {
            return 0.0;
        }
        let l = &self.limits;
        let reset = l.reset_ms.load(Relaxed);
        if reset != 0 && self.now_ms() >= reset {
            return 1.0;
        }
        let share = |rem: &AtomicU64, lim: &AtomicU64| {
            let (r, l) = (rem.load(Relaxed), lim.load(Relaxed));
            match (r, l) {
                (u64::MAX, _) => 1.0,
                (r, u64::MAX) => if r == 0 { 0.0 } else { 1.0 },
                (_, 0) => 1.0,
                (r, l) => (r as f64 / l as f64).min(1.0),
            }
        };
        share(&l.remaining_requests, &l.limit_requests).min(share(&l.remaining_tokens, &l.limit_tokens))
    }

    pub fn headroom_snapshot(&self) -> Headroom {
        let l = &self.limits;
        let opt = |a: &AtomicU64| Some(a.load(Relaxed)).filter(|v| *v != u64::MAX);
        let now = self.now_ms();
        let ahead = |ms: u64| (ms > now).then(|| Duration::from_millis(ms - now));
        Headroom {
            remaining_requests: opt(&l.remaining_requests),
            limit_requests: opt(&l.limit_requests),
            remaining_tokens: opt(&l.remaining_tokens),
            limit_tokens: opt(&l.limit_tokens),
            reset_in: ahead(l.reset_ms.load(Relaxed)),
            blocked_for: ahead(l.blocked_until_ms.load(Relaxed)),
        }
    }

    /// A hedge request was started on this target.
    pub fn record_hedge(&self) {
        self.hedges.fetch_add(1, Relaxed);
    }

    /// A hedge request on this target won.
    pub fn record_hedge_win(&self) {
        self.hedge_wins.fetch_add(1, Relaxed);
    }

    /// (hedges started, hedges won, estimated USD spent on hedges that lost).
    pub fn hedge_totals(&self) -> (u64, u64, f64) {
        (self.hedges.load(Relaxed), self.hedge_wins.load(Relaxed), self.hedge_spend_micros.load(Relaxed) as f64 / 1e6)
    }

    /// Adds an answered request's cost in USD.
    pub fn add_spend(&self, usd: f64) {
        self.spend_micros.fetch_add((usd * 1e6).round() as u64, Relaxed);
    }

    /// Adds the estimated cost of a cancelled hedge.
    pub fn add_hedge_spend(&self, usd: f64) {
        self.hedge_spend_micros.fetch_add((usd * 1e6).round() as u64, Relaxed);
    }

    pub fn spend(&self) -> f64 {
        self.spend_micros.load(Relaxed) as f64 / 1e6
    }

    pub fn last_failure(&self) -> Option<Failure> {
        self.last_failure.lock().ok().and_then(|f| f.clone())
    }
}

fn max_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Parses OpenAI's reset durations, Go style: `"1s"`, `"6m0s"`, `"1h2m3.5s"`, `"20ms"`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Some(Duration::from_secs_f64(total))
}

/// Time from now until an RFC 3339 instant (zero if past).
fn until_rfc3339(s: &str) -> Option<Duration> {
    let at = httpdate_rfc3339(s)?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac]Z` (what Anthropic sends).
fn httpdate_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    if !s.ends_with('Z') {
        return None;
    }
    // Days since 1970-01-01 (civil calendar).
    let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + mi * 60 + sec;
    u64::try_from(secs).ok().map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

tokio::task_local! {
    /// The stats of the target an attempt is talking to, while its request is sent.
    static CURRENT: Arc<TargetStats>;
}

/// Runs `fut` (an adapter's request) with `stats` as the target that
/// [`observe_response`] reports to.
pub async fn observing<F: std::future::Future>(stats: &Arc<TargetStats>, fut: F) -> F::Output {
    CURRENT.scope(stats.clone(), fut).await
}

// The rate-limit headers [`TargetStats::observe_headers`] reads, by index.
const OPENAI_LIMIT_REQUESTS: usize = 0;
const OPENAI_LIMIT_TOKENS: usize = 1;
const OPENAI_REMAINING_REQUESTS: usize = 2;
const OPENAI_REMAINING_TOKENS: usize = 3;
const OPENAI_RESET_REQUESTS: usize = 4;
const OPENAI_RESET_TOKENS: usize = 5;
const ANTHROPIC_REQUESTS_LIMIT: usize = 6;
const ANTHROPIC_REQUESTS_REMAINING: usize = 7;
const ANTHROPIC_REQUESTS_RESET: usize = 8;
const ANTHROPIC_TOKENS_LIMIT: usize = 9;
const ANTHROPIC_TOKENS_REMAINING: usize = 10;
const ANTHROPIC_TOKENS_RESET: usize = 11;
const IETF_LIMIT: usize = 12;
const IETF_REMAINING: usize = 13;
const IETF_RESET: usize = 14;
const RATE_HEADERS: usize = 15;

/// The index of a rate-limit header `name` (lower case, as a `HeaderName` is).
fn rate_header(name: &str) -> Option<usize> {
    if let Some(rest) = name.strip_prefix("x-ratelimit-") {
        return match rest {
            "limit-requests" => Some(OPENAI_LIMIT_REQUESTS),
            "limit-tokens" => Some(OPENAI_LIMIT_TOKENS),
            "remaining-requests" => Some(OPENAI_REMAINING_REQUESTS),
            "remaining-tokens" => Some(OPENAI_REMAINING_TOKENS),
            "reset-requests" => Some(OPENAI_RESET_REQUESTS),
            "reset-tokens" => Some(OPENAI_RESET_TOKENS),
            _ => None,
        };
    }
    if let Some(rest) = name.strip_prefix("anthropic-ratelimit-") {
        return match rest {
            "requests-limit" => Some(ANTHROPIC_REQUESTS_LIMIT),
            "requests-remaining" => Some(ANTHROPIC_REQUESTS_REMAINING),
            "requests-reset" => Some(ANTHROPIC_REQUESTS_RESET),
            "tokens-limit" => Some(ANTHROPIC_TOKENS_LIMIT),
            "tokens-remaining" => Some(ANTHROPIC_TOKENS_REMAINING),
            "tokens-reset" => Some(ANTHROPIC_TOKENS_RESET),
            _ => None,
        };
    }
    match name.strip_prefix("ratelimit-")? {
        "limit" => Some(IETF_LIMIT),
        "remaining" => Some(IETF_REMAINING),
        "reset" => Some(IETF_RESET),
        _ => None,
    }
}

/// Offers an upstream response's headers to the current attempt's target (rate-limit
/// headroom); adapters call it through `providers::http::send_checked`.
pub fn observe_response(headers: &HeaderMap) {
    let _ = CURRENT.try_with(|s| s.observe_headers(headers));
}

/// A request in flight on a target; dropping it ends it.
pub struct InFlight(Arc<TargetStats>);

impl InFlight {
    pub fn stats(&self) -> &Arc<TargetStats> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> TargetStats {
        TargetStats::new(Duration::from_secs(60), 0.3)
    }

    #[test]
    fn buckets_round_trip_within_an_eighth() {
        for us in [1u64, 7, 8, 9, 100, 1000, 12_345, 1_000_000, 30_000_000] {
            let v = bucket_value(bucket(us));
            assert!((v as f64 - us as f64).abs() <= us as f64 / 8.0 + 1.0, "{us} -> {v}");
        }
        assert!(bucket(u64::MAX) < BUCKETS);
    }

    #[tokio::test(start_paused = true)]
    async fn ewma_and_p95_follow_samples() {
        let s = stats();
        assert_eq!(s.ewma(), None);
        s.record_success(Duration::from_millis(100));
        assert_eq!(s.ewma(), Some(Duration::from_millis(100)));
        s.record_success(Duration::from_millis(200));
        assert_eq!(s.ewma(), Some(Duration::from_millis(130)));
        for _ in 0..94 {
            s.record_success(Duration::from_millis(10));
        }
        for _ in 0..6 {
            s.record_success(Duration::from_secs(2));
        }
        let p95 = s.p95().unwrap();
        assert!(p95 >= Duration::from_millis(1800), "{p95:?}");
        let p50 = s.quantile(0.5, 1).unwrap();
        assert!(p50 >= Duration::from_millis(9) && p50 <= Duration::from_millis(11), "{p50:?}");
    }

    #[test]
    fn failures_make_the_ewma_worse() {
        let s = stats();
        s.record_success(Duration::from_millis(100));
        s.record_failure_after(&"HTTP 503", Duration::from_millis(2));
        assert_eq!(s.ewma(), Some(Duration::from_millis(130)), "0.3 × 200 ms + 0.7 × 100 ms");
        s.record_failure_after(&"timeout", Duration::from_secs(5));
        assert!(s.ewma().unwrap() > Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_forgets_old_traffic() {
        let s = stats();
        s.record_failure(&"boom");
        s.record_success(Duration::from_millis(5));
        assert_eq!(s.window_counts(), (2, 1));
        assert_eq!(s.error_ratio(), 0.5);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(s.window_counts(), (0, 0));
        assert_eq!(s.p95(), None);
        assert_eq!(s.totals(), (2, 1));
        assert_eq!(s.last_failure().unwrap().reason, "boom");
    }

    #[test]
    fn in_flight_counts_guards() {
        let s = Arc::new(stats());
        let a = s.begin();
        let b = s.begin();
        assert_eq!(s.in_flight(), 2);
        drop(a);
        assert_eq!(s.in_flight(), 1);
        drop(b);
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(Duration::from_secs_f64(3723.5)));
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(httpdate_rfc3339("1970-01-02T00:00:01Z"), Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86401)));
        assert_eq!(httpdate_rfc3339("2024-03-01T12:00:00.5Z").map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()), Some(1709294400));
        assert_eq!(httpdate_rfc3339("yesterday"), None);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[tokio::test(start_paused = true)]
    async fn openai_rate_limit_headers_set_headroom_until_reset() {
        let s = stats();
        assert_eq!(s.headroom(), 1.0);
        s.observe_headers(&headers(&[
            ("x-ratelimit-limit-requests", "100"),
            ("x-ratelimit-remaining-requests", "10"),
            ("x-ratelimit-reset-requests", "2s"),
            ("x-ratelimit-limit-tokens", "1000"),
            ("x-ratelimit-remaining-tokens", "500"),
            ("x-ratelimit-reset-tokens", "1s"),
        ]));
        assert!((s.headroom() - 0.1).abs() < 1e-9);
        let snap = s.headroom_snapshot();
        assert_eq!(snap.remaining_tokens, Some(500));
        assert_eq!(snap.reset_in, Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_millis(2001)).await;
        assert_eq!(s.headroom(), 1.0);
    }

    #[test]
    fn each_rate_limit_header_has_its_own_slot_and_its_first_value_counts() {
        let names = [
            "x-ratelimit-limit-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-requests",
            "x-ratelimit-reset-tokens",
            "anthropic-ratelimit-requests-limit",
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
            "anthropic-ratelimit-tokens-limit",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
        ];
        let slots: Vec<usize> = names.iter().map(|n| rate_header(n).unwrap()).collect();
        assert_eq!(slots, (0..RATE_HEADERS).collect::<Vec<_>>());
        for other in ["x-ratelimit-limit", "ratelimit", "anthropic-ratelimit-input-tokens-limit", "x-request-id", "retry-after"] {
            assert_eq!(rate_header(other), None, "{other}");
        }
        let s = stats();
        let mut h = headers(&[("x-ratelimit-limit-requests", "100")]);
        h.append("x-ratelimit-remaining-requests", "25".parse().unwrap());
        h.append("x-ratelimit-remaining-requests", "99".parse().unwrap());
        s.observe_headers(&h);
        assert!((s.headroom() - 0.25).abs() < 1e-9, "{}", s.headroom());
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_blocks_until_retry_after_or_the_reset() {
        let s = stats();
        assert!(!s.rate_limited(None), "no reset known: not blocked");
        assert!(s.rate_limited(Some(Duration::from_secs(3))));
        assert!(s.is_blocked());
        assert_eq!(s.headroom(), 0.0);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!s.is_blocked());
        s.observe_headers(&headers(&[("anthropic-ratelimit-requests-remaining", "0"), ("anthropic-ratelimit-requests-limit", "50")]));
        assert_eq!(s.headroom(), 0.0);
        s.observe_headers(&headers(&[("ratelimit-remaining", "5"), ("ratelimit-limit", "10"), ("ratelimit-reset", "4")]));
        assert!(s.rate_limited(None));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(s.is_blocked());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!s.is_blocked());
    }
}
