//! `weighted`: a random order in which each target comes first in proportion to its `weight`
//! (weighted sampling without replacement, so the rest of the order is weighted too).

use super::{Candidate, OrderCx, Strategy, StrategyKind};

pub struct Weighted;

impl Strategy for Weighted {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Weighted
    }

    fn order(&self, pool: &mut [Candidate<'_>], cx: &mut OrderCx<'_>) {
        for i in 0..pool.len() {
            let total: u64 = pool[i..].iter().map(|c| c.target.routing.weight as u64).sum();
            if total == 0 {
                return;
            }
            let mut pick = cx.rng.u64(0..total);
            let mut j = i;
            for (k, c) in pool.iter().enumerate().skip(i) {
                let w = c.target.routing.weight as u64;
                if pick < w {
                    j = k;
                    break;
                }
                pick -= w;
            }
            pool.swap(i, j);
        }
    }
}
