//! Failure classification and backoff.

use std::time::Duration;

use crate::config::RetrySettings;
use crate::providers::ProviderError;

/// What the chain does after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: retry this target (after a backoff) while its tries last, then move on.
    Retry,
    /// This target cannot serve the request: move on without retrying it. `counts` says whether
    /// it is the provider's fault (and so counts against its breaker).
    NextTarget { counts: bool },
    /// The caller's fault: answer the caller now; no retry, no failover.
    Fail,
}

/// Classifies a failed attempt.
pub fn classify(e: &ProviderError) -> Disposition {
    match e {
        ProviderError::Connect(_) | ProviderError::Timeout(_) | ProviderError::Protocol(_) | ProviderError::Stream(_) => {
            Disposition::Retry
        }
        ProviderError::Unsupported(_) | ProviderError::Refused(_) => Disposition::NextTarget { counts: false },
        ProviderError::Status(s) => match s.status {
            408 | 409 | 429 | 500 | 502..=504 | 529 => Disposition::Retry,
            400 | 413 | 422 if s.context_length => Disposition::NextTarget { counts: false },
            401..=404 => Disposition::NextTarget { counts: true },
            500..=599 => Disposition::NextTarget { counts: true },
            _ => Disposition::Fail,
        },
    }
}

/// The wait before retry number `retry` (1 for the first retry): "full jitter", a uniform random
/// wait between zero and `min(backoff_max, backoff_initial * 2^(retry-1))`.
pub fn backoff(settings: &RetrySettings, retry: u32, rng: &mut fastrand::Rng) -> Duration {
    let exp = retry.saturating_sub(1).min(20);
    let ceiling = settings.backoff_initial.saturating_mul(1u32 << exp).min(settings.backoff_max);
    let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
    Duration::from_nanos(if nanos == 0 { 0 } else { rng.u64(0..=nanos) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{TimeoutKind, UpstreamStatus};

    fn status(code: u16) -> ProviderError {
        ProviderError::Status(UpstreamStatus { status: code, ..Default::default() })
    }

    #[test]
    fn classification_follows_the_table() {
        for code in [408, 409, 429, 500, 502, 503, 504, 529] {
            assert_eq!(classify(&status(code)), Disposition::Retry, "{code}");
        }
        for code in [400, 422, 413, 405] {
            assert_eq!(classify(&status(code)), Disposition::Fail, "{code}");
        }
        for code in [401, 403, 404] {
            assert_eq!(classify(&status(code)), Disposition::NextTarget { counts: true }, "{code}");
        }
        let ctx = ProviderError::Status(UpstreamStatus { status: 400, context_length: true, ..Default::default() });
        assert_eq!(classify(&ctx), Disposition::NextTarget { counts: false });
        assert_eq!(classify(&ProviderError::Connect("refused".into())), Disposition::Retry);
        assert_eq!(classify(&ProviderError::Unsupported("image links".into())), Disposition::NextTarget { counts: false });
        assert_eq!(classify(&ProviderError::Timeout(TimeoutKind::FirstByte)), Disposition::Retry);
    }

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let s = RetrySettings { backoff_initial: Duration::from_millis(100), backoff_max: Duration::from_millis(400), ..Default::default() };
        let mut rng = fastrand::Rng::with_seed(7);
        let mut max_seen = [Duration::ZERO; 5];
        for _ in 0..2000 {
            for retry in 1..=5u32 {
                let d = backoff(&s, retry, &mut rng);
                let ceiling = Duration::from_millis((100u64 << (retry - 1)).min(400));
                assert!(d <= ceiling, "retry {retry}: {d:?} > {ceiling:?}");
                max_seen[retry as usize - 1] = max_seen[retry as usize - 1].max(d);
            }
        }
        // Jitter spreads over the whole range.
        assert!(max_seen[0] > Duration::from_millis(90));
        assert!(max_seen[4] > Duration::from_millis(360));
    }
}
