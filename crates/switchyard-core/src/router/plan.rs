//! The plan of one call: which targets, in which order. For each pool (the requested alias,
//! then each `fallback` alias in turn): drop the targets that cannot serve the request
//! (capability filters: context window, tools, vision, JSON mode), order the rest with the
//! pool's strategy. Then, across the whole plan: targets marked unhealthy by the active checks
//! (and, under the `usage` strategy, targets kept out after a 429 until their reset) go last
//! (still tried before giving up), and with a budget the
//! targets whose estimated cost fits it go first. When a target was dropped because the prompt
//! did not fit its context window, the alias's `context_fallback` pools follow.
//!
//! The common case (one `priority` pool, no filters) allocates nothing and reads one atomic
//! per target.

use memchr::memmem;
use smallvec::SmallVec;

use super::strategy::{self, Candidate, OrderCx, StrategyKind};
use super::{Alias, Target};
use crate::config::Capabilities;
use crate::wire::openai::ChatRequest;
use crate::wire::openai::features::RequestFeatures;

/// Output tokens assumed for a cost estimate when the request sets no `max_tokens`.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 256;

/// Per-request routing choices (from rules or headers).
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteOptions {
    /// Overrides every pool's strategy (`x-switchyard-strategy`, or a rule).
    pub strategy: Option<StrategyKind>,
    /// Largest estimated cost in USD (`x-switchyard-max-cost`); else the alias's `max_cost`.
    pub max_cost: Option<f64>,
}

/// The request's features, read from its body the first time something needs them.
pub struct Features<'r> {
    request: Option<&'r ChatRequest>,
    parsed: Option<RequestFeatures>,
}

impl<'r> Features<'r> {
    pub fn new(request: Option<&'r ChatRequest>) -> Features<'r> {
        Features { request, parsed: None }
    }

    /// Already parsed features (e.g. by the rules).
    pub fn with(request: &'r ChatRequest, parsed: Option<RequestFeatures>) -> Features<'r> {
        Features { request: Some(request), parsed }
    }

    fn body(&self) -> &[u8] {
        self.request.map_or(&[][..], |r| &r.body[..])
    }

    fn mentions(&self, needle: &[u8]) -> bool {
        memmem::find(self.body(), needle).is_some()
    }

    pub fn get(&mut self) -> Option<&RequestFeatures> {
        let request = self.request?;
        Some(self.parsed.get_or_insert_with(|| RequestFeatures::parse(&request.body)))
    }
}

/// A target left out of the plan, and why.
pub struct Filtered<'a> {
    pub target: &'a Target,
    pub reason: String,
}

pub struct Plan<'a> {
    pub targets: SmallVec<[&'a Target; 8]>,
    pub filtered: Vec<Filtered<'a>>,
    /// The requested alias's strategy as applied.
    pub strategy: StrategyKind,
    /// Prompt tokens, when they were counted.
    pub prompt_tokens: Option<u64>,
}

/// Why `target` cannot serve the request, if it cannot. Reads the body only when the target
/// lacks something the request might use (a cheap byte search decides whether to parse).
fn unfit(caps: &Capabilities, features: &mut Features<'_>, prompt_tokens: &mut Option<u64>, model: &str) -> Option<(String, bool)> {
    if caps.tools == Some(false) && (features.mentions(b"\"tools\"") || features.mentions(b"\"functions\"")) && features.get()?.tools {
        return Some(("does not support tools".into(), false));
    }
    if caps.vision == Some(false) && features.mentions(b"image") && features.get()?.images > 0 {
        return Some(("does not accept images".into(), false));
    }
    if caps.json_mode == Some(false) && features.mentions(b"\"response_format\"") && features.get()?.json_mode {
        return Some(("has no JSON mode".into(), false));
    }
    if let Some(window) = caps.context_window {
        // A token is at least a byte of the body, so a body well under the window fits.
        if features.body().len() as u64 + 4096 > window {
            let f = features.get()?;
            let max_tokens = f.max_tokens.unwrap_or(0);
            let prompt = *prompt_tokens.get_or_insert_with(|| f.prompt_tokens(model));
            if prompt + max_tokens > window {
                return Some((format!("needs {} tokens, more than its context window of {window}", prompt + max_tokens), true));
            }
        }
    }
    None
}

struct Builder<'a, 'f, 'r> {
    plan: Plan<'a>,
    features: &'f mut Features<'r>,
    opts: RouteOptions,
    need_cost: bool,
    costs: SmallVec<[Option<f64>; 8]>,
    context_dropped: bool,
    rng: Option<fastrand::Rng>,
}

impl<'a> Builder<'a, '_, '_> {
    fn cost(&mut self, target: &Target) -> Option<f64> {
        if !self.need_cost {
            return None;
        }
        let price = target.routing.price?;
        let f = self.features.get()?;
        let out = f.max_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS);
        let prompt = *self.plan.prompt_tokens.get_or_insert_with(|| f.prompt_tokens(&target.model));
        Some((prompt as f64 * price.input + out as f64 * price.output) / 1e6)
    }

    /// Adds `alias`'s pool, then its fallbacks'.
    fn pool(&mut self, alias: &'a Alias) {
        let mut pool: SmallVec<[Candidate<'a>; 8]> = SmallVec::new();
        for t in &alias.targets {
            if self.plan.targets.iter().any(|p| std::ptr::eq(p.stats.as_ref(), t.stats.as_ref())) {
                continue; // listed by an earlier pool
            }
            if let Some((reason, context)) = unfit(&t.routing.caps, self.features, &mut self.plan.prompt_tokens, &t.model) {
                self.context_dropped |= context;
                self.plan.filtered.push(Filtered { target: t, reason });
                continue;
            }
            let cost = self.cost(t);
            pool.push(Candidate { target: t, cost });
        }
        let kind = self.opts.strategy.unwrap_or(alias.routing.strategy);
        if pool.len() > 1 && kind != StrategyKind::Priority {
            let mut cx = OrderCx { rng: self.rng.get_or_insert_with(fastrand::Rng::new), cursor: &alias.cursor };
            strategy::get(kind).order(&mut pool, &mut cx);
        }
        for c in pool {
            self.plan.targets.push(c.target);
            self.costs.push(c.cost);
        }
        if let Some(next) = &alias.fallback {
            self.pool(next);
        }
    }
}

/// Plans a call to `alias` (`request` is `None` for calls without a chat body, e.g.
/// embeddings).
pub fn plan<'a>(alias: &'a Alias, features: &mut Features<'_>, opts: RouteOptions) -> Plan<'a> {
    plan_with(alias, features, opts, None)
}

/// [`plan`] with the random source of the strategies given (seeded in tests).
pub fn plan_with<'a>(alias: &'a Alias, features: &mut Features<'_>, opts: RouteOptions, rng: Option<fastrand::Rng>) -> Plan<'a> {
    let max_cost = opts.max_cost.or(alias.routing.max_cost);
    let kind = opts.strategy.unwrap_or(alias.routing.strategy);
    let mut b = Builder {
        plan: Plan { targets: SmallVec::new(), filtered: Vec::new(), strategy: kind, prompt_tokens: None },
        features,
        opts,
        need_cost: max_cost.is_some() || kind == StrategyKind::Cost || any_cost_pool(alias),
        costs: SmallVec::new(),
        context_dropped: false,
        rng,
    };
    b.pool(alias);
    if b.context_dropped {
        if let Some(long) = &alias.context_fallback {
            b.pool(long);
        }
    }
    let Builder { mut plan, costs, .. } = b;
    // Unhealthy targets last (and, under `usage`, those kept out after a 429); with a budget,
    // those that fit it first.
    let usage = kind == StrategyKind::Usage;
    let rank = |i: usize, t: &Target| -> u8 {
        let out = t.stats.health() == super::stats::Health::Unhealthy || (usage && t.stats.is_blocked());
        let budget = match (max_cost, costs.get(i).copied().flatten()) {
            (None, _) => 0,
            (Some(max), Some(c)) if c <= max => 0,
            (Some(_), None) => 1,
            (Some(_), Some(_)) => 2,
        };
        (out as u8) * 4 + budget
    };
    if plan.targets.iter().enumerate().any(|(i, t)| rank(i, t) != 0) {
        let mut ranked: SmallVec<[(u8, &Target); 8]> = plan.targets.iter().enumerate().map(|(i, t)| (rank(i, t), *t)).collect();
        ranked.sort_by_key(|(r, _)| *r);
        plan.targets = ranked.into_iter().map(|(_, t)| t).collect();
    }
    plan
}

fn any_cost_pool(alias: &Alias) -> bool {
    alias.routing.strategy == StrategyKind::Cost || alias.fallback.as_deref().is_some_and(any_cost_pool)
}

#[cfg(test)]
mod tests;
