//! A circuit breaker per (provider, upstream model), shared by every request in the process.
//!
//! Closed: requests flow; it opens after `failures` consecutive failures, or when the failure
//! ratio over a sliding window reaches `failure_ratio` (with at least `min_requests`).
//! Open: the target is skipped without any network call until `cooldown` has passed.
//! Half-open: up to `half_open_probes` requests go through; a success closes it, a failure opens
//! it again. A [`Permit`] dropped without an outcome (client cancel, caller's own error) releases
//! its probe slot and counts as nothing.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerSettings;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32 },
}

const BUCKETS: usize = 10;

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped on every phase change, so a stale permit cannot touch a newer phase's counters.
    epoch: u64,
    consecutive: u32,
    /// Ring of (bucket index, failures, total) for the ratio window.
    window: [(u64, u32, u32); BUCKETS],
    opened: u64,
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    bucket: Duration,
    origin: Instant,
    inner: Mutex<Inner>,
}

/// Permission to send one request; report its outcome with [`Permit::success`] or
/// [`Permit::failure`], or drop it to report nothing.
#[must_use]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    epoch: u64,
    done: bool,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        let bucket = (settings.window / BUCKETS as u32).max(Duration::from_millis(1));
        Breaker {
            settings,
            bucket,
            origin: Instant::now(),
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                epoch: 0,
                consecutive: 0,
                window: [(u64::MAX, 0, 0); BUCKETS],
                opened: 0,
            }),
        }
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The critical sections cannot panic half-way, so a poisoned lock still holds valid state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks to send a request. `Err(until)` while open: skip this target; it may be tried again
    /// at `until`.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Instant> {
        let now = Instant::now();
        let mut g = self.lock();
        let probe = match g.phase {
            Phase::Closed => false,
            Phase::Open { until } if now < until => return Err(until),
            Phase::Open { .. } => {
                g.phase = Phase::HalfOpen { in_flight: 1 };
                g.epoch += 1;
                true
            }
            Phase::HalfOpen { ref mut in_flight } => {
                if *in_flight >= self.settings.half_open_probes {
                    return Err(now + self.settings.cooldown.min(Duration::from_secs(1)));
                }
                *in_flight += 1;
                true
            }
        };
        Ok(Permit { breaker: self, probe, epoch: g.epoch, done: false })
    }

    /// The state as seen now (an open breaker whose cooldown has passed reads as half-open).
    pub fn state(&self) -> State {
        let g = self.lock();
        match g.phase {
            Phase::Closed => State::Closed,
            Phase::Open { until } if Instant::now() < until => State::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// False only while open and cooling down.
    pub fn is_usable(&self) -> bool {
        self.state() != State::Open
    }

    /// How many times it has opened.
    pub fn times_opened(&self) -> u64 {
        self.lock().opened
    }

    /// The active health checks found the target down: opens the breaker for `cooldown`, or
    /// for `at_least` if longer, from now, whatever its state (an open one keeps a later end it
    /// already had). Half-open probe requests in flight can no longer close it (their permits
    /// belong to the old phase).
    pub fn trip(&self, at_least: Duration) {
        let now = Instant::now();
        let open_for = self.settings.cooldown.max(at_least);
        let mut g = self.lock();
        match g.phase {
            Phase::Open { ref mut until } if *until > now => *until = (*until).max(now + open_for),
            _ => {
                self.open(&mut g, None);
                g.phase = Phase::Open { until: now + open_for };
            }
        }
    }

    /// The active health checks found the target healthy again after they had tripped it:
    /// closes the breaker at once (counters cleared) instead of waiting out the cooldown.
    pub fn reset(&self) {
        let mut g = self.lock();
        if !matches!(g.phase, Phase::Closed) {
            g.phase = Phase::Closed;
            g.epoch += 1;
        }
        g.consecutive = 0;
        g.window = [(u64::MAX, 0, 0); BUCKETS];
    }

    /// Records a failure that happened outside a permit (e.g. a stream that broke after it was
    /// committed to the client).
    pub fn record_failure(&self) {
        let mut g = self.lock();
        self.failure_locked(&mut g, false, 0, None);
    }

    fn bucket_index(&self, now: Instant) -> u64 {
        (now.duration_since(self.origin).as_nanos() / self.bucket.as_nanos().max(1)) as u64
    }

    fn record(&self, g: &mut Inner, failed: bool) -> (u32, u32) {
        let idx = self.bucket_index(Instant::now());
        let slot = &mut g.window[(idx % BUCKETS as u64) as usize];
        if slot.0 != idx {
            *slot = (idx, 0, 0);
        }
        slot.2 += 1;
        if failed {
            slot.1 += 1;
        }
        let oldest = idx.saturating_sub(BUCKETS as u64 - 1);
        g.window
            .iter()
            .filter(|(i, _, _)| *i != u64::MAX && *i >= oldest && *i <= idx)
            .fold((0, 0), |(f, t), (_, bf, bt)| (f + bf, t + bt))
    }

    /// Opens for `cooldown`, or for a shorter `hint` (the upstream's Retry-After) when given.
    fn open(&self, g: &mut Inner, hint: Option<Duration>) {
        let open_for = hint.map_or(self.settings.cooldown, |h| h.min(self.settings.cooldown));
        g.phase = Phase::Open { until: Instant::now() + open_for };
        g.epoch += 1;
        g.opened += 1;
        g.window = [(u64::MAX, 0, 0); BUCKETS];
    }

    fn success_locked(&self, g: &mut Inner, probe: bool, epoch: u64) {
        g.consecutive = 0;
        match g.phase {
            Phase::HalfOpen { .. } if probe && epoch == g.epoch => {
                g.phase = Phase::Closed;
                g.epoch += 1;
                g.window = [(u64::MAX, 0, 0); BUCKETS];
            }
            Phase::Closed => {
                self.record(g, false);
            }
            _ => {}
        }
    }

    fn failure_locked(&self, g: &mut Inner, probe: bool, epoch: u64, hint: Option<Duration>) {
        g.consecutive = g.consecutive.saturating_add(1);
        match g.phase {
            Phase::HalfOpen { .. } if probe && epoch == g.epoch => self.open(g, hint),
            Phase::Closed => {
                let (failures, total) = self.record(g, true);
                let ratio_trips = total >= self.settings.min_requests.max(1)
                    && failures as f64 / total as f64 >= self.settings.failure_ratio;
                if g.consecutive >= self.settings.failures || ratio_trips {
                    self.open(g, hint);
                }
            }
            _ => {}
        }
    }

    fn release_locked(&self, g: &mut Inner, epoch: u64) {
        if let Phase::HalfOpen { ref mut in_flight } = g.phase {
            if epoch == g.epoch {
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }
}

impl Permit<'_> {
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    pub fn success(mut self) {
        self.done = true;
        let mut g = self.breaker.lock();
        self.breaker.success_locked(&mut g, self.probe, self.epoch);
    }

    pub fn failure(self) {
        self.failure_with_hint(None);
    }

    /// A failure that says when the target expects to recover (a rate limit's Retry-After):
    /// if it opens the breaker, it stays open only that long (at most `cooldown`), so a short
    /// rate-limit burst does not take the target out for the whole cooldown.
    pub fn failure_with_hint(mut self, retry_after: Option<Duration>) {
        self.done = true;
        let mut g = self.breaker.lock();
        self.breaker.failure_locked(&mut g, self.probe, self.epoch, retry_after);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            let mut g = self.breaker.lock();
            self.breaker.release_locked(&mut g, self.epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(failures: u32, probes: u32) -> BreakerSettings {
        BreakerSettings { failures, half_open_probes: probes, cooldown: Duration::from_secs(30), ..Default::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_skips_while_open() {
        let b = Breaker::new(settings(3, 1));
        for _ in 0..2 {
            b.try_acquire().unwrap().failure();
        }
        assert_eq!(b.state(), State::Closed);
        b.try_acquire().unwrap().success(); // resets the streak
        for _ in 0..3 {
            b.try_acquire().unwrap().failure();
        }
        assert_eq!(b.state(), State::Open);
        assert!(b.try_acquire().is_err());
        assert!(!b.is_usable());
        assert_eq!(b.times_opened(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_probe_success_closes_failure_reopens() {
        let b = Breaker::new(settings(1, 1));
        b.try_acquire().unwrap().failure();
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(b.state(), State::HalfOpen);
        let probe = b.try_acquire().unwrap();
        assert!(probe.is_probe());
        assert!(b.try_acquire().is_err(), "only one probe at a time");
        probe.failure();
        assert_eq!(b.state(), State::Open);
        tokio::time::advance(Duration::from_secs(31)).await;
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), State::Closed);
        assert!(!b.try_acquire().unwrap().is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_releases_its_slot() {
        let b = Breaker::new(settings(1, 1));
        b.try_acquire().unwrap().failure();
        tokio::time::advance(Duration::from_secs(31)).await;
        drop(b.try_acquire().unwrap()); // e.g. the client went away
        assert_eq!(b.state(), State::HalfOpen);
        let again = b.try_acquire().expect("the slot was released");
        again.success();
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_probe_cannot_touch_a_newer_phase() {
        let b = Breaker::new(settings(1, 2));
        b.try_acquire().unwrap().failure();
        tokio::time::advance(Duration::from_secs(31)).await;
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        p1.failure(); // re-opens
        tokio::time::advance(Duration::from_secs(31)).await;
        let p3 = b.try_acquire().unwrap();
        drop(p2); // stale: must not free p3's phase a slot twice or close anything
        let p4 = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err(), "two probes in flight: p3 and p4");
        p3.success();
        drop(p4);
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_opens_it_only_for_its_retry_after() {
        let b = Breaker::new(settings(2, 1));
        b.try_acquire().unwrap().failure_with_hint(Some(Duration::from_secs(2)));
        b.try_acquire().unwrap().failure_with_hint(Some(Duration::from_secs(2)));
        assert_eq!(b.state(), State::Open);
        tokio::time::advance(Duration::from_millis(2100)).await;
        assert_eq!(b.state(), State::HalfOpen, "open for the Retry-After, not the 30s cooldown");
        // A Retry-After longer than the cooldown is capped by it.
        b.try_acquire().unwrap().failure_with_hint(Some(Duration::from_secs(600)));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(b.state(), State::Open);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.state(), State::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_failure_ratio() {
        let s = BreakerSettings { failures: 100, failure_ratio: 0.5, min_requests: 10, ..Default::default() };
        let b = Breaker::new(s);
        for i in 0..9 {
            let p = b.try_acquire().unwrap();
            if i % 2 == 0 { p.failure() } else { p.success() }
        }
        assert_eq!(b.state(), State::Closed, "below min_requests");
        b.try_acquire().unwrap().failure(); // 6 of 10 failed
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn old_outcomes_leave_the_window() {
        let s = BreakerSettings { failures: 100, failure_ratio: 0.5, min_requests: 4, window: Duration::from_secs(10), ..Default::default() };
        let b = Breaker::new(s);
        for _ in 0..3 {
            b.try_acquire().unwrap().failure();
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        for _ in 0..3 {
            b.try_acquire().unwrap().success();
        }
        b.try_acquire().unwrap().failure(); // 1 of 4 in the window
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn health_checks_trip_and_reset_it() {
        let b = Breaker::new(settings(3, 1));
        b.trip(Duration::from_secs(1));
        assert_eq!((b.state(), b.times_opened()), (State::Open, 1));
        tokio::time::advance(Duration::from_secs(20)).await;
        b.trip(Duration::ZERO); // still down: the open period restarts from now
        assert_eq!(b.times_opened(), 1, "extending is not a new opening");
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(b.state(), State::Open, "40s after the first trip, 20s after the second");
        // A half-open probe request in flight when the checks trip it cannot close it.
        tokio::time::advance(Duration::from_secs(11)).await;
        let probe = b.try_acquire().unwrap();
        b.trip(Duration::from_secs(60));
        probe.success();
        assert_eq!((b.state(), b.times_opened()), (State::Open, 2));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(b.state(), State::Open, "held for the longer `at_least`");
        b.reset();
        assert_eq!(b.state(), State::Closed);
        assert!(!b.try_acquire().unwrap().is_probe());
        // Reset clears the consecutive count: it takes `failures` new failures to open.
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        b.reset();
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), State::Closed);
    }
}
