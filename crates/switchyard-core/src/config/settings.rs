//! Resilience settings (`[retry]`, `[breaker]`, `[timeouts]`): their documented defaults, and the
//! partial tables that override them under a provider or a model alias.

use std::time::Duration;

use serde::Deserialize;

use super::duration::{Dur, format_duration};

/// Declares a resolved settings struct, its all-optional override table, and their merge.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        $name:ident / $over:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $raw:ty, $default:expr ; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        /// An override table: every key is optional and replaces the inherited value.
        #[derive(Clone, Debug, Default, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct $over {
            $( #[serde(default)] pub $field: Option<$raw>, )*
        }

        impl $over {
            /// Returns `base` with every key set here replaced.
            pub fn apply(&self, base: &$name) -> $name {
                let mut out = base.clone();
                $( if let Some(v) = &self.$field { out.$field = Convert::convert(v.clone()); } )*
                out
            }

            /// True when no key is set.
            pub fn is_empty(&self) -> bool {
                true $( && self.$field.is_none() )*
            }
        }
    };
}

trait Convert<T> {
    fn convert(self) -> T;
}
impl Convert<Duration> for Dur {
    fn convert(self) -> Duration {
        self.0
    }
}
impl Convert<u32> for u32 {
    fn convert(self) -> u32 {
        self
    }
}
impl Convert<f64> for f64 {
    fn convert(self) -> f64 {
        self
    }
}
impl Convert<bool> for bool {
    fn convert(self) -> bool {
        self
    }
}
impl Convert<ProbeKind> for ProbeKind {
    fn convert(self) -> ProbeKind {
        self
    }
}

/// What an active health check sends.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// The provider's unbilled model listing (`GET /models` and its equivalents).
    #[default]
    Models,
    /// A minimal chat completion through the normal request path (billed: a few tokens).
    Completion,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Models => "models",
            ProbeKind::Completion => "completion",
        }
    }
}

settings! {
    /// How one request retries a target and moves along its chain.
    RetrySettings / RetryOverride {
        /// Tries on one target before moving on to the next.
        attempts_per_target: u32 = u32, 2;
        /// Upstream requests for one call, all targets together.
        max_attempts: u32 = u32, 6;
        /// First backoff ceiling; doubles per retry (full jitter: a random wait up to it).
        backoff_initial: Duration = Dur, Duration::from_millis(100);
        /// Largest backoff ceiling.
        backoff_max: Duration = Dur, Duration::from_secs(2);
        /// Longest `Retry-After` honoured; a longer one moves on to the next target at once.
        retry_after_cap: Duration = Dur, Duration::from_secs(10);
    }
}

settings! {
    /// The circuit breaker of one (provider, upstream model) target.
    BreakerSettings / BreakerOverride {
        /// Consecutive failures that open it.
        failures: u32 = u32, 3;
        /// How long it stays open before letting probes through.
        cooldown: Duration = Dur, Duration::from_secs(30);
        /// Concurrent probe requests allowed while half-open.
        half_open_probes: u32 = u32, 1;
        /// Failure ratio over `window` that also opens it (with at least `min_requests`).
        failure_ratio: f64 = f64, 0.5;
        /// Length of the sliding window for `failure_ratio`.
        window: Duration = Dur, Duration::from_secs(60);
        /// Requests in the window before `failure_ratio` is considered.
        min_requests: u32 = u32, 20;
    }
}

settings! {
    /// Time limits for upstream requests.
    TimeoutSettings / TimeoutOverride {
        /// TCP (and TLS) connection establishment.
        connect: Duration = Dur, Duration::from_secs(2);
        /// Until response headers, and for streams until the first chunk with content.
        first_byte: Duration = Dur, Duration::from_secs(60);
        /// Longest gap between two chunks of a response body or stream.
        idle: Duration = Dur, Duration::from_secs(30);
        /// Whole-request deadline across every attempt, including a stream's whole length.
        total: Duration = Dur, Duration::from_secs(300);
    }
}

settings! {
    /// Active health checks of a provider's targets (`[health]`, `[providers.NAME.health]`).
    HealthSettings / HealthOverride {
        /// Probe the targets in the background.
        enabled: bool = bool, false;
        /// Time between two probes of one target.
        interval: Duration = Dur, Duration::from_secs(30);
        /// Longest a probe may take; a slower one is a failure.
        timeout: Duration = Dur, Duration::from_secs(5);
        /// `models` (unbilled listing) or `completion` (a minimal chat).
        probe: ProbeKind = ProbeKind, ProbeKind::Models;
        /// Output tokens a completion probe asks for (reasoning models reject very small limits).
        max_tokens: u32 = u32, 16;
        /// Consecutive failed probes that mark a target unhealthy.
        unhealthy_after: u32 = u32, 2;
        /// Consecutive successful probes that mark an unhealthy target healthy again.
        healthy_after: u32 = u32, 1;
    }
}

impl HealthSettings {
    /// Checks ranges; returns (key within `health`, message, fix) for the first problem.
    pub fn validate(&self) -> Result<(), (&'static str, String, String)> {
        if self.interval < Duration::from_millis(10) {
            return Err(("interval", format!("{} is shorter than 10ms", format_duration(self.interval)), "use e.g. \"30s\" (the default)".into()));
        }
        if self.timeout.is_zero() {
            return Err(("timeout", "must be longer than 0s".into(), "use e.g. \"5s\" (the default)".into()));
        }
        if self.timeout > self.interval {
            return Err((
                "timeout",
                format!("{} is longer than interval ({})", format_duration(self.timeout), format_duration(self.interval)),
                "make timeout <= interval, so one probe ends before the next is due".into(),
            ));
        }
        for (key, n, default) in [("unhealthy_after", self.unhealthy_after, 2), ("healthy_after", self.healthy_after, 1), ("max_tokens", self.max_tokens, 16)] {
            if n == 0 {
                return Err((key, "must be at least 1".into(), format!("set {key} = {default} (the default)")));
            }
        }
        Ok(())
    }
}

/// The three override tables as they appear under `[providers.X]` or `[models.Y]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub retry: RetryOverride,
    pub breaker: BreakerOverride,
    pub timeouts: TimeoutOverride,
}

/// A complete set of resolved settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resilience {
    pub retry: RetrySettings,
    pub breaker: BreakerSettings,
    pub timeouts: TimeoutSettings,
}

impl Resilience {
    /// Layers `over` on top of `self`.
    pub fn with(&self, over: &Overrides) -> Resilience {
        Resilience {
            retry: over.retry.apply(&self.retry),
            breaker: over.breaker.apply(&self.breaker),
            timeouts: over.timeouts.apply(&self.timeouts),
        }
    }

    /// Checks ranges; returns (key, message, fix) for the first problem.
    pub fn validate(&self) -> Result<(), (&'static str, String, String)> {
        let r = &self.retry;
        let b = &self.breaker;
        let t = &self.timeouts;
        if r.attempts_per_target == 0 {
            return Err(("retry.attempts_per_target", "must be at least 1".into(), "set attempts_per_target = 1 for no retries".into()));
        }
        if r.max_attempts == 0 {
            return Err(("retry.max_attempts", "must be at least 1".into(), "set max_attempts to 1 or more".into()));
        }
        if r.backoff_initial > r.backoff_max {
            return Err((
                "retry.backoff_initial",
                format!(
                    "{} is longer than backoff_max ({})",
                    format_duration(r.backoff_initial),
                    format_duration(r.backoff_max)
                ),
                "make backoff_initial <= backoff_max".into(),
            ));
        }
        if b.failures == 0 {
            return Err(("breaker.failures", "must be at least 1".into(), "set failures = 3 (the default)".into()));
        }
        if b.half_open_probes == 0 {
            return Err(("breaker.half_open_probes", "must be at least 1".into(), "set half_open_probes = 1".into()));
        }
        if !(b.failure_ratio > 0.0 && b.failure_ratio <= 1.0) {
            return Err((
                "breaker.failure_ratio",
                format!("{} is not in (0, 1]", b.failure_ratio),
                "use a fraction such as 0.5".into(),
            ));
        }
        if b.window.is_zero() {
            return Err(("breaker.window", "must be longer than 0s".into(), "use e.g. \"60s\"".into()));
        }
        for (key, d) in [
            ("timeouts.connect", t.connect),
            ("timeouts.first_byte", t.first_byte),
            ("timeouts.idle", t.idle),
            ("timeouts.total", t.total),
        ] {
            if d.is_zero() {
                return Err((key, "must be longer than 0s".into(), "use a duration such as \"30s\"".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let r = RetrySettings::default();
        assert_eq!((r.attempts_per_target, r.max_attempts), (2, 6));
        assert_eq!(r.backoff_initial, Duration::from_millis(100));
        assert_eq!(r.retry_after_cap, Duration::from_secs(10));
        let b = BreakerSettings::default();
        assert_eq!((b.failures, b.half_open_probes), (3, 1));
        assert_eq!(b.cooldown, Duration::from_secs(30));
        let t = TimeoutSettings::default();
        assert_eq!(t.total, Duration::from_secs(300));
    }

    #[test]
    fn health_defaults_match_the_documentation_and_validate() {
        let h = HealthSettings::default();
        assert!(!h.enabled);
        assert_eq!((h.interval, h.timeout), (Duration::from_secs(30), Duration::from_secs(5)));
        assert_eq!((h.probe, h.max_tokens, h.unhealthy_after, h.healthy_after), (ProbeKind::Models, 16, 2, 1));
        assert_eq!(h.validate(), Ok(()));
        let bad = |h: HealthSettings| h.validate().unwrap_err().0;
        assert_eq!(bad(HealthSettings { interval: Duration::from_secs(2), ..Default::default() }), "timeout");
        assert_eq!(bad(HealthSettings { interval: Duration::from_millis(1), timeout: Duration::from_millis(1), ..Default::default() }), "interval");
        assert_eq!(bad(HealthSettings { timeout: Duration::ZERO, ..Default::default() }), "timeout");
        assert_eq!(bad(HealthSettings { unhealthy_after: 0, ..Default::default() }), "unhealthy_after");
        assert_eq!(bad(HealthSettings { healthy_after: 0, ..Default::default() }), "healthy_after");
        assert_eq!(bad(HealthSettings { max_tokens: 0, ..Default::default() }), "max_tokens");
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let over = RetryOverride { attempts_per_target: Some(5), ..Default::default() };
        let merged = over.apply(&RetrySettings::default());
        assert_eq!(merged.attempts_per_target, 5);
        assert_eq!(merged.max_attempts, 6);
        assert!(!over.is_empty());
        assert!(RetryOverride::default().is_empty());
    }
}
