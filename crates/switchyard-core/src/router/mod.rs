//! Routing: aliases mapped to pools of targets ordered per request by a strategy and chained
//! to fallback aliases ([`plan`]), each target with its retry policy, timeouts, a circuit
//! breaker and live statistics shared by every request in the process ([`chain`] runs the plan).

pub mod breaker;
pub mod chain;
pub mod health;
pub mod plan;
pub mod recover;
pub mod retry;
pub mod rules;
pub mod stats;
pub mod strategy;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::config::{
    AliasRouting, Config, ConfigError, Exhausted, HealthSettings, ProviderConfig, RetrySettings, Rule, TargetRouting, TimeoutSettings,
};
use crate::providers::{self, Provider};
pub use breaker::Breaker;
pub use stats::TargetStats;

/// One `provider/upstream-model` of a chain.
pub struct Target {
    pub provider_name: Arc<str>,
    pub model: Arc<str>,
    /// `provider/model`, for logs and messages.
    pub label: Arc<str>,
    /// `x-switchyard-provider` / `x-switchyard-model` values, built once.
    pub provider_header: http::HeaderValue,
    pub model_header: http::HeaderValue,
    pub provider: Arc<dyn Provider>,
    pub breaker: Arc<Breaker>,
    /// Live statistics, shared by every alias listing this `provider/model`.
    pub stats: Arc<TargetStats>,
    pub retry: RetrySettings,
    pub timeouts: TimeoutSettings,
    /// Weight, price and capabilities.
    pub routing: TargetRouting,
}

/// A model alias and its chain.
pub struct Alias {
    pub name: Arc<str>,
    pub targets: Vec<Target>,
    /// Upstream requests per call, all targets together.
    pub max_attempts: u32,
    /// Whole-call deadline.
    pub total: Duration,
    pub routing: AliasRouting,
    /// The alias tried after this one's targets (`fallback`).
    pub fallback: Option<Arc<Alias>>,
    /// The alias tried when no target's context window fits (`context_fallback`).
    pub context_fallback: Option<Arc<Alias>>,
    /// The answer of last resort (`on_exhausted = { action = "static" }`).
    pub catch_all: Option<Target>,
    /// Round-robin position.
    pub cursor: AtomicUsize,
}

impl Alias {
    /// At least one target (here or in a fallback alias) is not behind an open breaker and
    /// not marked unhealthy by the active checks, or a static catch-all answers.
    pub fn is_ready(&self) -> bool {
        self.catch_all.is_some()
            || self.targets.iter().any(|t| t.breaker.is_usable() && t.stats.health() != stats::Health::Unhealthy)
            || self.fallback.as_ref().is_some_and(|f| f.is_ready())
    }
}

/// The routing table built from a [`Config`]: providers, breakers and aliases.
pub struct Routes {
    pub aliases: HashMap<Arc<str>, Arc<Alias>>,
    /// Alias names in order, for `/v1/models`.
    pub alias_names: Vec<Arc<str>>,
    pub providers: BTreeMap<String, Arc<dyn Provider>>,
    /// Every `provider/model` target's stats, by label, for `/admin/providers`.
    pub stats: BTreeMap<String, Arc<TargetStats>>,
    /// Every distinct `provider/model` target, by label: the health checks' list and
    /// `/admin/providers`' rows.
    pub targets: BTreeMap<String, TargetInfo>,
    pub rules: Vec<Rule>,
}

/// One distinct `provider/model` target of the whole routing table (the same breaker and
/// stats as every alias's [`Target`] for it).
pub struct TargetInfo {
    pub label: Arc<str>,
    pub provider_name: Arc<str>,
    pub model: Arc<str>,
    /// The provider's `kind`.
    pub kind: String,
    pub provider: Arc<dyn Provider>,
    pub breaker: Arc<Breaker>,
    pub stats: Arc<TargetStats>,
    /// The aliases whose `targets` list it, in name order.
    pub aliases: Vec<Arc<str>>,
    /// The provider's resolved `[health]` settings.
    pub health: HealthSettings,
    /// What the health checks found.
    pub probe: Arc<health::ProbeRecord>,
}

/// A header value for a name; names with bytes a header cannot carry are percent-encoded.
/// The static answer's target: a mock provider with the fixed reply, outside every breaker.
fn catch_all(config: &Config, on_exhausted: &Exhausted) -> Option<Target> {
    let Exhausted::Static { content } = on_exhausted else { return None };
    let mut options = toml::Table::new();
    options.insert("reply".into(), toml::Value::String(content.clone()));
    let pc = ProviderConfig { name: "static".into(), kind: "mock".into(), options, overrides: Default::default(), health: Default::default() };
    let provider = providers::build(&pc, Duration::from_secs(1)).ok()?;
    Some(Target {
        provider_name: "static".into(),
        model: "on_exhausted".into(),
        label: "static/on_exhausted".into(),
        provider_header: http::HeaderValue::from_static("static"),
        model_header: http::HeaderValue::from_static("on_exhausted"),
        provider,
        breaker: Arc::new(Breaker::new(Default::default())),
        stats: Arc::new(TargetStats::new(config.routing.window, config.routing.latency_alpha)),
        retry: config.defaults.retry.clone(),
        timeouts: config.defaults.timeouts.clone(),
        routing: TargetRouting { weight: 1, price: Some(crate::config::Price { input: 0.0, output: 0.0 }), caps: Default::default() },
    })
}

fn header_value(s: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(s).unwrap_or_else(|_| {
        let encoded: String = s
            .bytes()
            .map(|b| if b.is_ascii_graphic() || b == b' ' { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        http::HeaderValue::from_str(&encoded).unwrap_or_else(|_| http::HeaderValue::from_static("invalid"))
    })
}

impl Routes {
    pub fn build(config: &Config) -> Result<Routes, ConfigError> {
        let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        for (name, pc) in &config.providers {
            let connect = config.defaults.with(&pc.overrides).timeouts.connect;
            let p = providers::build(pc, connect).map_err(|(key, message, fix)| ConfigError {
                origin: config.origin.clone(),
                line: None,
                key: format!("providers.{name}.{key}"),
                message,
                fix,
            })?;
            providers.insert(name.clone(), p);
        }
        let mut breakers: HashMap<(String, String), Arc<Breaker>> = HashMap::new();
        let mut stats: BTreeMap<String, Arc<TargetStats>> = BTreeMap::new();
        let mut aliases: HashMap<Arc<str>, Arc<Alias>> = HashMap::new();
        let alias_names = config.models.keys().map(|n| Arc::<str>::from(n.as_str())).collect();
        // Fallbacks first: the config has no loops, so building each alias after the ones it
        // falls back to terminates.
        let mut pending: Vec<&String> = config.models.keys().collect();
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|name| {
                let mc = &config.models[*name];
                let deps = [&mc.routing.fallback, &mc.routing.context_fallback];
                if deps.iter().any(|d| d.as_ref().is_some_and(|d| !aliases.contains_key(d.as_str()))) {
                    return true;
                }
                let targets = mc
                    .targets
                    .iter()
                    .map(|tc| {
                        let breaker = breakers
                            .entry((tc.provider.clone(), tc.model.clone()))
                            .or_insert_with(|| Arc::new(Breaker::new(tc.settings.breaker.clone())))
                            .clone();
                        let label = tc.label();
                        let stats = stats
                            .entry(label.clone())
                            .or_insert_with(|| Arc::new(TargetStats::new(config.routing.window, config.routing.latency_alpha)))
                            .clone();
                        Target {
                            provider_header: header_value(&tc.provider),
                            model_header: header_value(&tc.model),
                            provider_name: tc.provider.as_str().into(),
                            model: tc.model.as_str().into(),
                            label: label.into(),
                            provider: providers[&tc.provider].clone(),
                            breaker,
                            stats,
                            retry: tc.settings.retry.clone(),
                            timeouts: tc.settings.timeouts.clone(),
                            routing: tc.routing.clone(),
                        }
                    })
                    .collect();
                let lookup = |d: &Option<String>| d.as_ref().map(|d| aliases[d.as_str()].clone());
                let name: Arc<str> = name.as_str().into();
                let alias = Alias {
                    name: name.clone(),
                    targets,
                    max_attempts: mc.settings.retry.max_attempts,
                    total: mc.settings.timeouts.total,
                    routing: mc.routing.clone(),
                    fallback: lookup(&mc.routing.fallback),
                    context_fallback: lookup(&mc.routing.context_fallback),
                    catch_all: catch_all(config, &mc.routing.on_exhausted),
                    cursor: AtomicUsize::new(0),
                };
                aliases.insert(name, Arc::new(alias));
                false
            });
            assert!(pending.len() < before, "the config's fallbacks were checked for loops");
        }
        let mut targets: BTreeMap<String, TargetInfo> = BTreeMap::new();
        for name in config.models.keys() {
            let alias = &aliases[name.as_str()];
            for t in &alias.targets {
                let info = targets.entry(t.label.to_string()).or_insert_with(|| {
                    let pc = &config.providers[t.provider_name.as_ref()];
                    TargetInfo {
                        label: t.label.clone(),
                        provider_name: t.provider_name.clone(),
                        model: t.model.clone(),
                        kind: pc.kind.clone(),
                        provider: t.provider.clone(),
                        breaker: t.breaker.clone(),
                        stats: t.stats.clone(),
                        aliases: Vec::new(),
                        health: pc.health.clone(),
                        probe: Arc::default(),
                    }
                });
                if !info.aliases.contains(&alias.name) {
                    info.aliases.push(alias.name.clone());
                }
            }
        }
        Ok(Routes { aliases, alias_names, providers, stats, targets, rules: config.rules.clone() })
    }

    pub fn alias(&self, name: &str) -> Option<&Arc<Alias>> {
        self.aliases.get(name)
    }
}
