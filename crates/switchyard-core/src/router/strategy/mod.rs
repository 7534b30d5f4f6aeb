//! Routing strategies: each orders one pool's targets for one request, best first. The chain
//! then tries them in that order (with retries, breakers and failover as for any chain).
//! Adding a strategy is one file here plus one line in [`get`] (and its name in
//! [`StrategyKind`]).

mod cost;
mod latency;
mod least_busy;
mod priority;
mod round_robin;
mod usage;
mod weighted;

use std::sync::atomic::AtomicUsize;

use super::Target;
pub use crate::config::StrategyKind;

/// A target of the pool being ordered, with what this request would cost on it.
#[derive(Clone, Copy)]
pub struct Candidate<'a> {
    pub target: &'a Target,
    /// Estimated USD cost of this request on the target, when it has a price and the request's
    /// tokens were counted.
    pub cost: Option<f64>,
}

/// Per-request inputs a strategy may use.
pub struct OrderCx<'r> {
    pub rng: &'r mut fastrand::Rng,
    /// The pool's round-robin cursor.
    pub cursor: &'r AtomicUsize,
}

/// A routing strategy.
pub trait Strategy: Sync {
    fn kind(&self) -> StrategyKind;
    /// Reorders `pool` (a pool's usable targets, in config order), best first.
    fn order(&self, pool: &mut [Candidate<'_>], cx: &mut OrderCx<'_>);
}

/// The strategy for `kind`.
pub fn get(kind: StrategyKind) -> &'static dyn Strategy {
    match kind {
        StrategyKind::Priority => &priority::Priority,
        StrategyKind::Weighted => &weighted::Weighted,
        StrategyKind::RoundRobin => &round_robin::RoundRobin,
        StrategyKind::LeastBusy => &least_busy::LeastBusy,
        StrategyKind::Latency => &latency::Latency,
        StrategyKind::Cost => &cost::Cost,
        StrategyKind::Usage => &usage::Usage,
    }
}

/// Shuffles `pool` so that a stable sort after it breaks ties at random.
fn shuffle(pool: &mut [Candidate<'_>], rng: &mut fastrand::Rng) {
    rng.shuffle(pool);
}
