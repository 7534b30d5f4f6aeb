//! `least_busy`: fewest requests in flight first (open streams count until they end); ties at
//! random.

use super::{Candidate, OrderCx, Strategy, StrategyKind, shuffle};

pub struct LeastBusy;

impl Strategy for LeastBusy {
    fn kind(&self) -> StrategyKind {
        StrategyKind::LeastBusy
    }

    fn order(&self, pool: &mut [Candidate<'_>], cx: &mut OrderCx<'_>) {
        shuffle(pool, cx.rng);
        pool.sort_by_key(|c| c.target.stats.in_flight());
    }
}
