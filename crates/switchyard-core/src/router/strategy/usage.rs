//! `usage`: most rate-limit headroom first, from the providers' `x-ratelimit-*` (or
//! `anthropic-ratelimit-*`) headers, so a target is deprioritised before it answers 429. After
//! a 429 a target stays out until its reset time (the plan puts blocked targets last for every
//! strategy). Ties keep config order.

use super::{Candidate, OrderCx, Strategy, StrategyKind};

pub struct Usage;

impl Strategy for Usage {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Usage
    }

    fn order(&self, pool: &mut [Candidate<'_>], _cx: &mut OrderCx<'_>) {
        pool.sort_by(|a, b| b.target.stats.headroom().total_cmp(&a.target.stats.headroom()));
    }
}
