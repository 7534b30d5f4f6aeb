//! Routing: aliases mapped to ordered chains of targets, each target with its retry policy,
//! timeouts and a circuit breaker shared by every request in the process.

pub mod breaker;
pub mod chain;
pub mod retry;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError, RetrySettings, TimeoutSettings};
use crate::providers::{self, Provider};
pub use breaker::Breaker;

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
    pub retry: RetrySettings,
    pub timeouts: TimeoutSettings,
}

/// A model alias and its chain.
pub struct Alias {
    pub name: Arc<str>,
    pub targets: Vec<Target>,
    /// Upstream requests per call, all targets together.
    pub max_attempts: u32,
    /// Whole-call deadline.
    pub total: Duration,
}

impl Alias {
    /// At least one target is not behind an open breaker.
    pub fn is_ready(&self) -> bool {
        self.targets.iter().any(|t| t.breaker.is_usable())
    }
}

/// The routing table built from a [`Config`]: providers, breakers and aliases.
pub struct Routes {
    pub aliases: HashMap<Arc<str>, Arc<Alias>>,
    /// Alias names in order, for `/v1/models`.
    pub alias_names: Vec<Arc<str>>,
    pub providers: BTreeMap<String, Arc<dyn Provider>>,
}

/// A header value for a name; names with bytes a header cannot carry are percent-encoded.
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
        let mut aliases = HashMap::new();
        let mut alias_names = Vec::new();
        for (name, mc) in &config.models {
            let targets = mc
                .targets
                .iter()
                .map(|tc| {
                    let breaker = breakers
                        .entry((tc.provider.clone(), tc.model.clone()))
                        .or_insert_with(|| Arc::new(Breaker::new(tc.settings.breaker.clone())))
                        .clone();
                    Target {
                        provider_header: header_value(&tc.provider),
                        model_header: header_value(&tc.model),
                        provider_name: tc.provider.as_str().into(),
                        model: tc.model.as_str().into(),
                        label: tc.label().into(),
                        provider: providers[&tc.provider].clone(),
                        breaker,
                        retry: tc.settings.retry.clone(),
                        timeouts: tc.settings.timeouts.clone(),
                    }
                })
                .collect();
            let name: Arc<str> = name.as_str().into();
            alias_names.push(name.clone());
            aliases.insert(
                name.clone(),
                Arc::new(Alias {
                    name,
                    targets,
                    max_attempts: mc.settings.retry.max_attempts,
                    total: mc.settings.timeouts.total,
                }),
            );
        }
        Ok(Routes { aliases, alias_names, providers })
    }

    pub fn alias(&self, name: &str) -> Option<&Arc<Alias>> {
        self.aliases.get(name)
    }
}
