//! `priority`: the targets in the order the config lists them.

use super::{Candidate, OrderCx, Strategy, StrategyKind};

pub struct Priority;

impl Strategy for Priority {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Priority
    }

    fn order(&self, _pool: &mut [Candidate<'_>], _cx: &mut OrderCx<'_>) {}
}
