//! `latency`: lowest latency EWMA first (time to the answer, or to a stream's first token).
//! Targets without a sample yet go first, so each gets measured; and one request in
//! [`EXPLORE`] starts at a random target, so a target that was slow is measured again and
//! traffic comes back to it once it has recovered.

use std::time::Duration;

use super::{Candidate, OrderCx, Strategy, StrategyKind, shuffle};

/// Share of requests that start at a random target.
pub const EXPLORE: f64 = 0.05;

pub struct Latency;

impl Strategy for Latency {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Latency
    }

    fn order(&self, pool: &mut [Candidate<'_>], cx: &mut OrderCx<'_>) {
        shuffle(pool, cx.rng);
        pool.sort_by_key(|c| c.target.stats.ewma().unwrap_or(Duration::ZERO));
        if pool.len() > 1 && cx.rng.f64() < EXPLORE {
            let pick = cx.rng.usize(1..pool.len());
            pool[..=pick].rotate_right(1);
        }
    }
}
