//! Active health checks: each distinct `provider/model` target whose provider has
//! `[health] enabled = true` is probed every `interval` in the background ([`HealthChecks`]),
//! outside the request path, on its own connection pool.
//!
//! What a verdict does:
//! - `unhealthy_after` consecutive failed probes (an error status, a connection failure, or no
//!   answer within `timeout`) mark the target [`Health::Unhealthy`] and trip its circuit
//!   breaker: it opens for the breaker's `cooldown` or `interval + timeout`, whichever is
//!   longer, and every further failed probe restarts that, so it stays open for as long as the
//!   probes fail and no request is sent to the target meanwhile (it is not even tried last).
//!   `/ready` reports an alias unready when none of its targets is usable.
//! - `healthy_after` consecutive successful probes mark it [`Health::Healthy`]; a target that
//!   was unhealthy has its breaker closed at once (traffic returns without waiting out the
//!   cooldown). A breaker opened by failing requests alone is left to its own half-open probes.
//! - A probe is not a client request: it is not in the request log, the traffic stats
//!   (requests, errors, latency, share) or the spend; rate-limit headers on its answer do update
//!   the target's headroom.
//! - A provider with no probe of the configured kind (`bedrock` with `probe = "models"`) is not
//!   probed: its targets stay [`Health::Unknown`], with passive health only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::time::{Instant, MissedTickBehavior};

use super::stats::{self, Health};
use super::{Breaker, TargetStats};
use crate::config::HealthSettings;
use crate::providers::{ProbeCall, Provider, ProviderError, TimeoutKind, http};

/// What the checks know of one target, for `/admin/providers`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeState {
    /// Probed in the background (enabled, and the provider has a probe of that kind).
    pub active: bool,
    pub probes: u64,
    pub failures: u64,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_at: Option<SystemTime>,
    /// The last probe's error (`None` after a success); secrets redacted.
    pub last_error: Option<String>,
}

/// The checks' record of one target, shared with `/admin/providers`.
#[derive(Debug, Default)]
pub struct ProbeRecord(Mutex<ProbeState>);

impl ProbeRecord {
    pub fn snapshot(&self) -> ProbeState {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update<R>(&self, f: impl FnOnce(&mut ProbeState) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A health transition a probe result caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed.
    Same,
    BecameHealthy { was_unhealthy: bool },
    BecameUnhealthy,
}

/// Counts a probe result against the thresholds; returns the transition, if any.
pub fn judge(state: &mut ProbeState, health: Health, ok: bool, settings: &HealthSettings) -> Verdict {
    state.probes += 1;
    state.last_at = Some(SystemTime::now());
    if ok {
        state.consecutive_failures = 0;
        state.consecutive_successes = state.consecutive_successes.saturating_add(1);
        state.last_error = None;
        if health != Health::Healthy && state.consecutive_successes >= settings.healthy_after {
            return Verdict::BecameHealthy { was_unhealthy: health == Health::Unhealthy };
        }
    } else {
        state.failures += 1;
        state.consecutive_successes = 0;
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if health != Health::Unhealthy && state.consecutive_failures >= settings.unhealthy_after {
            return Verdict::BecameUnhealthy;
        }
    }
    Verdict::Same
}

/// One target the checks probe.
pub struct Probed {
    pub label: Arc<str>,
    pub provider_name: Arc<str>,
    pub model: Arc<str>,
    pub provider: Arc<dyn Provider>,
    pub breaker: Arc<Breaker>,
    pub stats: Arc<TargetStats>,
    pub record: Arc<ProbeRecord>,
    pub settings: HealthSettings,
}

/// The background health checks of a gateway's targets.
pub struct HealthChecks {
    targets: Vec<Probed>,
}

impl HealthChecks {
    /// The checks of `routes`' targets whose provider enables them; `None` when there are none
    /// (nothing is then spawned or probed).
    pub fn new(routes: &super::Routes) -> Option<HealthChecks> {
        let targets: Vec<Probed> = routes
            .targets
            .values()
            .filter(|t| t.health.enabled)
            .map(|t| Probed {
                label: t.label.clone(),
                provider_name: t.provider_name.clone(),
                model: t.model.clone(),
                provider: t.provider.clone(),
                breaker: t.breaker.clone(),
                stats: t.stats.clone(),
                record: t.probe.clone(),
                settings: t.health.clone(),
            })
            .collect();
        (!targets.is_empty()).then_some(HealthChecks { targets })
    }

    /// Probes every target, each on its own schedule, until dropped. The first probes go out
    /// at once; upstream requests use the health checks' own connection pool.
    pub async fn run(self) {
        let loops = self.targets.into_iter().map(|t| http::on_pool(http::HEALTH_POOL, check_forever(t)));
        futures_util::future::join_all(loops).await;
    }
}

/// Probes one target every `interval` (a probe that overruns delays the next, never overlaps).
async fn check_forever(t: Probed) {
    t.record.update(|s| s.active = true);
    let mut ticks = tokio::time::interval(t.settings.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A distinct phase per target, so that many targets do not probe in lockstep.
    let offset = t.settings.interval.mul_f64(fastrand::f64() * 0.1);
    tokio::time::sleep(offset).await;
    loop {
        ticks.tick().await;
        if !check_once(&t).await {
            return;
        }
    }
}

/// One probe and its consequences; false when the provider has no such probe (stop probing).
pub async fn check_once(t: &Probed) -> bool {
    let call = ProbeCall { kind: t.settings.probe, model: &t.model, timeout: t.settings.timeout, max_tokens: t.settings.max_tokens };
    let started = Instant::now();
    let outcome = match tokio::time::timeout(t.settings.timeout, stats::observing(&t.stats, t.provider.probe(call))).await {
        Ok(r) => r,
        Err(_) => Err(ProviderError::Timeout(TimeoutKind::Total)),
    };
    if let Err(ProviderError::Unsupported(why)) = &outcome {
        t.record.update(|s| s.active = false);
        tracing::info!(
            target: "switchyard::health",
            target_label = %t.label,
            probe = t.settings.probe.as_str(),
            "no active health check for this target ({why}); it keeps passive health only (breaker and stats); probe = \"completion\" checks it with a minimal chat"
        );
        return false;
    }
    let error = outcome.err().map(|e| http::redact(&e.to_string(), &[]));
    let health = t.stats.health();
    let verdict = t.record.update(|s| {
        let v = judge(s, health, error.is_none(), &t.settings);
        s.last_error = error.clone();
        v
    });
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    match verdict {
        Verdict::BecameUnhealthy => {
            t.stats.set_health(Health::Unhealthy);
            t.breaker.trip(hold(&t.settings));
            tracing::warn!(
                target: "switchyard::health",
                target_label = %t.label,
                probe = t.settings.probe.as_str(),
                error = error.as_deref().unwrap_or(""),
                "target marked unhealthy after {} failed probes; its breaker is held open",
                t.settings.unhealthy_after
            );
        }
        Verdict::BecameHealthy { was_unhealthy } => {
            t.stats.set_health(Health::Healthy);
            if was_unhealthy {
                t.breaker.reset();
                tracing::info!(target: "switchyard::health", target_label = %t.label, took_ms, "target healthy again; its breaker is closed");
            } else {
                tracing::debug!(target: "switchyard::health", target_label = %t.label, took_ms, "target healthy");
            }
        }
        Verdict::Same => {
            if error.is_some() && health == Health::Unhealthy {
                // Still down: keep it out of rotation until the next probe.
                t.breaker.trip(hold(&t.settings));
            }
            tracing::trace!(target: "switchyard::health", target_label = %t.label, ok = error.is_none(), took_ms, "probe");
        }
    }
    true
}

/// How long a failed probe keeps an unhealthy target's breaker open at least: past the next
/// probe's verdict.
fn hold(settings: &HealthSettings) -> std::time::Duration {
    settings.interval + settings.timeout
}

/// Which labels are probed, by provider, for start-up logs.
pub fn summary(checks: &HealthChecks) -> BTreeMap<&str, usize> {
    let mut out = BTreeMap::new();
    for t in &checks.targets {
        *out.entry(t.provider_name.as_ref()).or_insert(0) += 1;
    }
    out
}

/// Spawns [`HealthChecks::run`] on the current Tokio runtime; the checks stop when the guard
/// is dropped (a task never keeps the process alive).
pub fn spawn(checks: HealthChecks) -> HealthGuard {
    let count = checks.targets.len();
    tracing::info!(target: "switchyard::health", targets = count, by_provider = ?summary(&checks), "active health checks started");
    HealthGuard(tokio::spawn(checks.run()).abort_handle())
}

/// Stops the health checks when dropped.
#[must_use = "the health checks stop when the guard is dropped"]
pub struct HealthGuard(tokio::task::AbortHandle);

impl HealthGuard {
    /// Whether the checks are still running.
    pub fn is_running(&self) -> bool {
        !self.0.is_finished()
    }
}

impl Drop for HealthGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(unhealthy_after: u32, healthy_after: u32) -> HealthSettings {
        HealthSettings { enabled: true, unhealthy_after, healthy_after, ..Default::default() }
    }

    #[test]
    fn thresholds_need_consecutive_results() {
        let s = settings(2, 2);
        let mut st = ProbeState::default();
        assert_eq!(judge(&mut st, Health::Unknown, false, &s), Verdict::Same);
        assert_eq!(judge(&mut st, Health::Unknown, true, &s), Verdict::Same, "a success breaks the run of failures");
        assert_eq!(judge(&mut st, Health::Unknown, true, &s), Verdict::BecameHealthy { was_unhealthy: false });
        assert_eq!(judge(&mut st, Health::Healthy, false, &s), Verdict::Same);
        assert_eq!(judge(&mut st, Health::Healthy, false, &s), Verdict::BecameUnhealthy);
        assert_eq!(judge(&mut st, Health::Unhealthy, false, &s), Verdict::Same);
        assert_eq!(judge(&mut st, Health::Unhealthy, true, &s), Verdict::Same);
        assert_eq!(judge(&mut st, Health::Unhealthy, true, &s), Verdict::BecameHealthy { was_unhealthy: true });
        assert_eq!((st.probes, st.failures, st.consecutive_successes), (8, 4, 2));
        assert!(st.last_at.is_some());
    }

    fn checks(toml: &str) -> (super::super::Routes, HealthChecks) {
        let config = crate::Config::from_toml_str(toml, "t.toml").unwrap();
        let routes = super::super::Routes::build(&config).unwrap();
        let checks = HealthChecks::new(&routes).expect("checks enabled");
        (routes, checks)
    }

    #[test]
    fn nothing_is_checked_unless_enabled() {
        let config = crate::Config::from_toml_str("[providers.m]\nkind = \"mock\"\n[models.a]\ntargets = [\"m/x\"]\n", "t.toml").unwrap();
        assert!(HealthChecks::new(&super::super::Routes::build(&config).unwrap()).is_none());
        let (_, c) = checks(
            "[health]\nenabled = true\n[providers.m]\nkind = \"mock\"\n[providers.off]\nkind = \"mock\"\n\
             [providers.off.health]\nenabled = false\n[models.a]\ntargets = [\"m/x\", \"off/y\", \"m/x\"]\n[models.b]\ntargets = [\"m/x\"]\n",
        );
        let labels: Vec<&str> = c.targets.iter().map(|t| t.label.as_ref()).collect();
        assert_eq!(labels, ["m/x"], "one check per distinct provider/model, none for disabled providers");
    }

    #[tokio::test]
    async fn failed_probes_mark_the_target_unhealthy_and_trip_its_breaker() {
        let (routes, c) = checks(
            "[providers.m]\nkind = \"mock\"\nfailure_rate = 1.0\nfailure = \"unavailable\"\n[providers.m.health]\nenabled = true\n\
             [models.a]\ntargets = [\"m/x\"]\n",
        );
        let t = &c.targets[0];
        assert!(check_once(t).await);
        assert_eq!((t.stats.health(), t.breaker.state().as_str()), (Health::Unknown, "closed"), "one failure of the two needed");
        assert!(routes.aliases["a"].is_ready());
        assert!(check_once(t).await);
        assert_eq!((t.stats.health(), t.breaker.state().as_str()), (Health::Unhealthy, "open"));
        assert!(!routes.aliases["a"].is_ready());
        let st = t.record.snapshot();
        assert_eq!((st.active, st.probes, st.failures, st.consecutive_failures), (false, 2, 2, 2), "active is set by the loop, not one check");
        assert!(st.last_error.as_deref().unwrap().contains("HTTP 503"), "{st:?}");
        assert_eq!(t.stats.totals(), (0, 0), "probes are not traffic");
    }

    #[tokio::test]
    async fn a_provider_without_such_a_probe_is_left_to_passive_health() {
        let (_, c) = checks(
            "[providers.aws]\nkind = \"bedrock\"\nbase_url = \"http://127.0.0.1:9\"\nregion = \"us-east-1\"\naccess_key_id = \"AKIDEXAMPLE\"\n\
             secret_access_key = \"secret-example\"\n[providers.aws.health]\nenabled = true\n[models.a]\ntargets = [\"aws/model\"]\n",
        );
        let t = &c.targets[0];
        t.record.update(|s| s.active = true);
        assert!(!check_once(t).await, "stop probing");
        assert_eq!(t.stats.health(), Health::Unknown);
        assert!(!t.record.snapshot().active);
        assert_eq!(t.record.snapshot().probes, 0);
    }
}
