//! `cost`: cheapest estimated cost first (prompt tokens × input price + `max_tokens` × output
//! price); targets without a price last, in config order.

use super::{Candidate, OrderCx, Strategy, StrategyKind};

pub struct Cost;

impl Strategy for Cost {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Cost
    }

    fn order(&self, pool: &mut [Candidate<'_>], _cx: &mut OrderCx<'_>) {
        pool.sort_by(|a, b| match (a.cost, b.cost) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
    }
}
