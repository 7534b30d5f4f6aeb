//! `round_robin`: each request starts one target further along the pool than the last.

use std::sync::atomic::Ordering::Relaxed;

use super::{Candidate, OrderCx, Strategy, StrategyKind};

pub struct RoundRobin;

impl Strategy for RoundRobin {
    fn kind(&self) -> StrategyKind {
        StrategyKind::RoundRobin
    }

    fn order(&self, pool: &mut [Candidate<'_>], cx: &mut OrderCx<'_>) {
        if pool.len() > 1 {
            let start = cx.cursor.fetch_add(1, Relaxed) % pool.len();
            pool.rotate_left(start);
        }
    }
}
