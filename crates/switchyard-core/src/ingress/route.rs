//! From a request to its plan: `[[rules]]`, the `x-switchyard-strategy` and
//! `x-switchyard-max-cost` headers, the alias lookup, then the router's [`plan`].

use std::sync::Arc;

use http::HeaderMap;

use super::AppState;
use super::error::ApiError;
use crate::config::StrategyKind;
use crate::router::Alias;
use crate::router::plan::{Features, RouteOptions};
use crate::router::rules;
use crate::wire::openai::ChatRequest;

use http::HeaderName;

/// Per-request strategy override. Static names: a lookup by `&str` would parse the name first.
pub static X_STRATEGY: HeaderName = HeaderName::from_static("x-switchyard-strategy");
/// Per-request budget in USD.
pub static X_MAX_COST: HeaderName = HeaderName::from_static("x-switchyard-max-cost");

/// The alias to run, the per-request options, and the request's features (parsed only if a
/// rule needed them, else on the plan's first need).
pub struct Routed<'r> {
    pub alias: Arc<Alias>,
    pub opts: RouteOptions,
    pub features: Features<'r>,
}

/// Resolves the alias for `requested` (after the rules) and the per-request options.
/// `request` is the chat body, `None` for calls without one (embeddings).
pub fn route<'r>(state: &AppState, headers: &HeaderMap, requested: &str, request: Option<&'r ChatRequest>) -> Result<Routed<'r>, ApiError> {
    let mut features = Features::new(request);
    let mut opts = RouteOptions::default();
    let mut name = requested;
    let routes = &state.routes;
    if !routes.rules.is_empty() {
        if let Some((_, rule)) = rules::first_match(&routes.rules, requested, headers, &mut features) {
            if let Some(a) = &rule.alias {
                name = a;
            }
            opts.strategy = rule.strategy;
        }
    }
    if let Some(v) = headers.get(&X_STRATEGY) {
        let text = v.to_str().unwrap_or("").trim();
        opts.strategy = Some(StrategyKind::parse(text).ok_or_else(|| {
            ApiError::invalid_header(X_STRATEGY.as_str(), format!("unknown strategy \"{text}\"; use one of: {}", StrategyKind::names()))
        })?);
    }
    if let Some(v) = headers.get(&X_MAX_COST) {
        let text = v.to_str().unwrap_or("").trim();
        let cost = text.parse::<f64>().ok().filter(|c| *c > 0.0 && c.is_finite());
        opts.max_cost = Some(cost.ok_or_else(|| ApiError::invalid_header(X_MAX_COST.as_str(), format!("\"{text}\" is not a positive amount of USD")))?);
    }
    let alias = routes.alias(name).cloned().ok_or_else(|| ApiError::model_not_found(requested))?;
    Ok(Routed { alias, opts, features })
}
