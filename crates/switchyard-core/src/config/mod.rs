//! Typed configuration: TOML in, a validated [`Config`] out.
//!
//! Loading happens in three steps: parse the TOML, interpolate `${VAR}` from the environment, then
//! deserialize into typed tables (unknown keys are errors) and validate cross references. Every
//! error names the file, the key (and line, where it can be found) and a fix.

pub mod default;
pub mod duration;
pub mod env;
pub mod routing;
pub mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use duration::Dur;
pub use routing::{
    AliasRouting, Capabilities, Exhausted, HedgeDelay, HedgeSettings, OneOrMany, Price, RoutingSettings, Rule,
    StrategyKind, StreamPolicy, TargetRouting,
};
pub use settings::{
    BreakerOverride, BreakerSettings, HealthOverride, HealthSettings, Overrides, ProbeKind, Resilience, RetryOverride,
    RetrySettings, TimeoutOverride, TimeoutSettings,
};

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it came from (a file path, or `<built-in default>`), for messages.
    pub origin: String,
    pub server: ServerSettings,
    /// The top-level `[retry]`, `[breaker]` and `[timeouts]` over the built-in defaults.
    pub defaults: Resilience,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    /// `[routing]`.
    pub routing: RoutingSettings,
    /// `[[rules]]`, in order.
    pub rules: Vec<Rule>,
    /// The top-level `[health]` over the built-in defaults (each provider's resolved settings
    /// are in [`ProviderConfig::health`]).
    pub health: HealthSettings,
}

/// `[server]`.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Largest accepted request body (base64 images make bodies large).
    pub max_body_bytes: usize,
    /// How long shutdown waits for open requests and streams before closing them.
    pub shutdown_grace: Duration,
    /// Server threads, each with its own runtime and listener; 0 means one per CPU core.
    pub threads: usize,
    /// How long a keep-alive connection may wait for its next request before it is closed.
    pub idle_timeout: Duration,
    /// How long reading a request's body, or writing an answer, may wait on the caller.
    pub client_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 32 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            threads: 0,
            idle_timeout: Duration::from_secs(75),
            client_timeout: Duration::from_secs(60),
        }
    }
}

/// `[providers.NAME]`.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: String,
    /// The kind-specific keys, validated by that kind's adapter.
    pub options: toml::Table,
    pub overrides: Overrides,
    /// Active health checks of this provider's targets: the top-level `[health]` with
    /// `[providers.NAME.health]` on top.
    pub health: HealthSettings,
}

/// `[models.ALIAS]`: an alias and its ordered fallback chain.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub name: String,
    pub targets: Vec<TargetConfig>,
    pub overrides: Overrides,
    /// Defaults layered with this alias's overrides: `retry.max_attempts` and `timeouts.total`
    /// of the alias come from here.
    pub settings: Resilience,
    pub routing: AliasRouting,
}

/// One `provider/upstream-model` entry of a chain, with its resolved settings
/// (defaults, then the provider's overrides, then the alias's).
#[derive(Clone, Debug)]
pub struct TargetConfig {
    pub provider: String,
    pub model: String,
    pub settings: Resilience,
    pub routing: TargetRouting,
}

impl TargetConfig {
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

/// A config problem: the file, the key, what is wrong and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": key `{}`: {}", self.key, self.message)?;
        }
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    retry: RetryOverride,
    #[serde(default)]
    breaker: BreakerOverride,
    #[serde(default)]
    timeouts: TimeoutOverride,
    #[serde(default)]
    providers: BTreeMap<String, toml::Table>,
    #[serde(default)]
    models: BTreeMap<String, RawModel>,
    #[serde(default)]
    routing: routing::RawRouting,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    health: HealthOverride,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    max_body_bytes: Option<usize>,
    shutdown_grace: Option<Dur>,
    threads: Option<usize>,
    idle_timeout: Option<Dur>,
    client_timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    targets: Vec<routing::RawTarget>,
    #[serde(default)]
    strategy: Option<StrategyKind>,
    #[serde(default)]
    fallback: Option<String>,
    #[serde(default)]
    context_fallback: Option<String>,
    #[serde(default)]
    max_cost: Option<f64>,
    #[serde(default)]
    hedge: Option<routing::RawHedge>,
    #[serde(default)]
    stream: Option<routing::RawStream>,
    #[serde(default)]
    refusal_fallback: Option<bool>,
    #[serde(default)]
    on_exhausted: Option<routing::RawExhausted>,
    #[serde(default)]
    retry: RetryOverride,
    #[serde(default)]
    breaker: BreakerOverride,
    #[serde(default)]
    timeouts: TimeoutOverride,
}

/// Collects errors with the source text at hand, so each can point at a line.
struct Ctx<'a> {
    origin: &'a str,
    src: &'a str,
}

impl Ctx<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        let key = key.into();
        ConfigError {
            origin: self.origin.to_owned(),
            line: locate(self.src, &key),
            key,
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// Deserializes `value` into `T`, naming the offending key on failure.
    fn typed<T: for<'de> Deserialize<'de>>(&self, prefix: &str, value: toml::Value) -> Result<T, ConfigError> {
        deserialize_table(prefix, value).map_err(|(key, message, fix)| self.err(key, message, fix))
    }
}

/// Deserializes a TOML value into `T`; on failure returns (full key, message, fix).
pub(crate) fn deserialize_table<T: for<'de> Deserialize<'de>>(
    prefix: &str,
    value: toml::Value,
) -> Result<T, (String, String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut key = join_key(prefix, &e.path().to_string());
        let message = e.inner().message().trim().to_owned();
        let fix = if let Some(field) = unknown_field(&message) {
            if !key.ends_with(field) {
                key = join_key(&key, field);
            }
            "remove the key or correct its spelling (unknown keys are errors, not ignored)".to_owned()
        } else if message.starts_with("missing field") {
            "add the missing key".to_owned()
        } else {
            "correct the value".to_owned()
        };
        (key, message, fix)
    })
}

fn join_key(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty() || rest == ".") {
        (true, _) => rest.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

impl Config {
    /// Reads and validates a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read the file: {e}"),
            fix: "check the path given to --config".into(),
        })?;
        Config::from_toml_str(&src, &origin)
    }

    /// Parses and validates config text; `origin` names it in errors. Reads `${VAR}`s from the
    /// process environment.
    pub fn from_toml_str(src: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str_with_env(src, origin, &|name| std::env::var(name).ok())
    }

    /// As [`Config::from_toml_str`], with the environment given by `env`.
    pub fn from_toml_str_with_env(
        src: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let cx = Ctx { origin, src };
        let mut table: toml::Table = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| src[..s.start.min(src.len())].lines().count().max(1));
            ConfigError {
                origin: origin.to_owned(),
                line,
                key: String::new(),
                message: format!("invalid TOML: {}", e.message().trim()),
                fix: "correct the TOML syntax at that line".into(),
            }
        })?;
        interpolate_table(&cx, "", &mut table, env)?;
        let raw: RawConfig = cx.typed("", toml::Value::Table(table))?;
        build(&cx, raw)
    }
}

fn interpolate_table(
    cx: &Ctx<'_>,
    prefix: &str,
    table: &mut toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (k, v) in table.iter_mut() {
        interpolate_value(cx, &join_key(prefix, k), v, env)?;
    }
    Ok(())
}

fn interpolate_value(
    cx: &Ctx<'_>,
    key: &str,
    value: &mut toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) => {
            *s = env::interpolate(s, env).map_err(|name| {
                if name.contains(' ') {
                    cx.err(key, name, "write variables as ${NAME} or ${NAME:-default}")
                } else {
                    cx.err(
                        key,
                        format!("environment variable {name} is not set"),
                        format!("export {name}, give a default with ${{{name}:-value}}, or remove this entry"),
                    )
                }
            })?;
        }
        toml::Value::Table(t) => interpolate_table(cx, key, t, env)?,
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(cx, &format!("{key}[{i}]"), item, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn build(cx: &Ctx<'_>, raw: RawConfig) -> Result<Config, ConfigError> {
    let mut server = ServerSettings::default();
    if let Some(listen) = &raw.server.listen {
        server.listen = listen.parse().map_err(|_| {
            cx.err(
                "server.listen",
                format!("\"{listen}\" is not a socket address"),
                "write it as \"IP:PORT\", e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\"",
            )
        })?;
    }
    if let Some(max) = raw.server.max_body_bytes {
        if max < 1024 {
            return Err(cx.err("server.max_body_bytes", format!("{max} is too small"), "use at least 1024 (the default is 33554432, 32 MiB)"));
        }
        server.max_body_bytes = max;
    }
    if let Some(grace) = raw.server.shutdown_grace {
        server.shutdown_grace = grace.0;
    }
    if let Some(threads) = raw.server.threads {
        if threads > crate::providers::http::MAX_WORKERS {
            return Err(cx.err("server.threads", format!("{threads} is more than {}", crate::providers::http::MAX_WORKERS), "use 0 (one per CPU core) or a smaller number"));
        }
        server.threads = threads;
    }
    for (key, value, default, slot) in [
        ("server.idle_timeout", raw.server.idle_timeout, "75s", &mut server.idle_timeout),
        ("server.client_timeout", raw.server.client_timeout, "60s", &mut server.client_timeout),
    ] {
        if let Some(Dur(d)) = value {
            if d < Duration::from_millis(1) {
                return Err(cx.err(key, format!("{d:?} is too short"), format!("use at least \"1ms\" (the default is \"{default}\")")));
            }
            *slot = d;
        }
    }

    let global = Overrides { retry: raw.retry, breaker: raw.breaker, timeouts: raw.timeouts };
    let defaults = Resilience::default().with(&global);
    check_settings(cx, "", &defaults)?;
    let health = raw.health.apply(&HealthSettings::default());
    check_health(cx, "health", &health)?;

    let mut providers = BTreeMap::new();
    for (name, table) in raw.providers {
        let provider = provider_config(cx, &name, table, &health)?;
        check_settings(cx, &format!("providers.{name}"), &defaults.with(&provider.overrides))?;
        reject_call_wide_keys(cx, &format!("providers.{name}"), &provider.overrides)?;
        crate::providers::validate(&provider).map_err(|(key, message, fix)| {
            cx.err(join_key(&format!("providers.{name}"), &key), message, fix)
        })?;
        providers.insert(name, provider);
    }

    let mut models = BTreeMap::new();
    // (provider, model) -> (alias that set its breaker, settings), to catch conflicting breakers.
    let mut breakers: BTreeMap<(String, String), (String, BreakerSettings)> = BTreeMap::new();
    for (alias, rm) in raw.models {
        let prefix = format!("models.{alias}");
        if rm.targets.is_empty() {
            return Err(cx.err(format!("{prefix}.targets"), "the chain is empty", "list at least one \"provider/upstream-model\""));
        }
        let alias_routing = routing::alias_routing(cx, &prefix, &rm)?;
        let overrides = Overrides { retry: rm.retry, breaker: rm.breaker, timeouts: rm.timeouts };
        if overrides.timeouts.connect.is_some() {
            return Err(cx.err(
                format!("{prefix}.timeouts.connect"),
                "the connect timeout belongs to a provider's connection pool, not to an alias",
                "set it under [providers.NAME.timeouts] or the top-level [timeouts]",
            ));
        }
        let settings = defaults.with(&overrides);
        check_settings(cx, &prefix, &settings)?;
        let mut targets = Vec::with_capacity(rm.targets.len());
        for (i, raw_target) in rm.targets.iter().enumerate() {
            let spec = raw_target.spec();
            let key = format!("{prefix}.targets[{i}]");
            let (pname, model) = spec.split_once('/').filter(|(p, m)| !p.is_empty() && !m.is_empty()).ok_or_else(|| {
                cx.err(&key, format!("\"{spec}\" is not of the form \"provider/upstream-model\""), "write the provider's name, a slash, then the model name the provider expects")
            })?;
            let provider = providers.get(pname).ok_or_else(|| {
                let known: Vec<&str> = providers.keys().map(String::as_str).collect();
                cx.err(
                    &key,
                    format!("provider \"{pname}\" is not defined"),
                    if known.is_empty() {
                        format!("add a [providers.{pname}] table")
                    } else {
                        format!("add a [providers.{pname}] table or use one of: {}", known.join(", "))
                    },
                )
            })?;
            let resolved = defaults.with(&provider.overrides).with(&overrides);
            check_settings(cx, &prefix, &resolved)?;
            let id = (pname.to_owned(), model.to_owned());
            if let Some((other, prev)) = breakers.get(&id) {
                if *prev != resolved.breaker {
                    return Err(cx.err(
                        format!("{prefix}.breaker"),
                        format!("target {spec} is also in alias \"{other}\" with different breaker settings, but one breaker guards each provider/model"),
                        format!("set the breaker under [providers.{pname}.breaker] instead, or make both aliases agree"),
                    ));
                }
            } else {
                breakers.insert(id, (alias.clone(), resolved.breaker.clone()));
            }
            let target_routing = routing::target_routing(cx, &key, raw_target, &provider.kind, model)?;
            targets.push(TargetConfig { provider: pname.to_owned(), model: model.to_owned(), settings: resolved, routing: target_routing });
        }
        models.insert(alias.clone(), ModelConfig { name: alias, targets, overrides, settings, routing: alias_routing });
    }
    routing::check_alias_references(cx, &models)?;
    let routing_settings = routing::routing_settings(cx, &raw.routing)?;
    routing::check_rules(cx, &raw.rules, &models)?;

    Ok(Config { origin: cx.origin.to_owned(), server, defaults, providers, models, routing: routing_settings, rules: raw.rules, health })
}

fn check_health(cx: &Ctx<'_>, prefix: &str, h: &HealthSettings) -> Result<(), ConfigError> {
    h.validate().map_err(|(key, message, fix)| cx.err(join_key(prefix, key), message, fix))
}

/// `retry.max_attempts` and `timeouts.total` bound a whole call across providers, so a
/// provider table cannot set them; say so instead of silently ignoring them.
fn reject_call_wide_keys(cx: &Ctx<'_>, prefix: &str, o: &Overrides) -> Result<(), ConfigError> {
    for (set, key) in [(o.retry.max_attempts.is_some(), "retry.max_attempts"), (o.timeouts.total.is_some(), "timeouts.total")] {
        if set {
            return Err(cx.err(
                format!("{prefix}.{key}"),
                "applies to a whole call across all of an alias's targets, so it cannot be set per provider",
                format!("set it in the top-level [{0}] or under [models.ALIAS.{0}]", key.split('.').next().unwrap_or(key)),
            ));
        }
    }
    Ok(())
}

fn check_settings(cx: &Ctx<'_>, prefix: &str, r: &Resilience) -> Result<(), ConfigError> {
    r.validate().map_err(|(key, message, fix)| cx.err(join_key(prefix, key), message, fix))
}

fn provider_config(cx: &Ctx<'_>, name: &str, mut table: toml::Table, health: &HealthSettings) -> Result<ProviderConfig, ConfigError> {
    let prefix = format!("providers.{name}");
    if name.is_empty() || name.contains('/') {
        return Err(cx.err(&prefix, "provider names may not be empty or contain '/'", "rename the provider"));
    }
    let kind = match table.remove("kind") {
        Some(toml::Value::String(k)) => k,
        Some(_) => return Err(cx.err(format!("{prefix}.kind"), "must be a string", "write kind = \"openai\"")),
        None => {
            return Err(cx.err(
                format!("{prefix}.kind"),
                "missing",
                format!("add kind = one of: {}", crate::providers::kind_names().join(", ")),
            ));
        }
    };
    let mut take = |key: &str| table.remove(key).unwrap_or_else(|| toml::Value::Table(Default::default()));
    let retry = take("retry");
    let breaker = take("breaker");
    let timeouts = take("timeouts");
    let health_table = take("health");
    let overrides = Overrides {
        retry: cx.typed(&format!("{prefix}.retry"), retry)?,
        breaker: cx.typed(&format!("{prefix}.breaker"), breaker)?,
        timeouts: cx.typed(&format!("{prefix}.timeouts"), timeouts)?,
    };
    let health_override: HealthOverride = cx.typed(&format!("{prefix}.health"), health_table)?;
    let health = health_override.apply(health);
    check_health(cx, &format!("{prefix}.health"), &health)?;
    Ok(ProviderConfig { name: name.to_owned(), kind, options: table, overrides, health })
}

/// Best-effort line number (1-based) of a dotted key such as `models.chat.targets[1]`.
fn locate(src: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    let segs: Vec<&str> = key.split('.').map(|s| s.split('[').next().unwrap_or(s)).collect();
    let lines: Vec<String> = src.lines().map(|l| l.replace(['"', '\'', ' '], "")).collect();
    for n in (0..=segs.len()).rev() {
        let (start, end) = if n == 0 {
            (0, lines.iter().position(|l| l.starts_with('[')).unwrap_or(lines.len()))
        } else {
            let header = format!("[{}]", segs[..n].join("."));
            let Some(at) = lines.iter().position(|l| l.starts_with(&header)) else { continue };
            let end = lines[at + 1..].iter().position(|l| l.starts_with('[')).map_or(lines.len(), |p| at + 1 + p);
            (at, end)
        };
        let Some(next) = segs.get(n) else { return Some(start + 1) };
        let found = (start..end).find(|&i| {
            lines[i].starts_with(&format!("{next}=")) || lines[i].starts_with(&format!("{next}."))
        });
        return Some(found.map_or(start, |i| i) + 1).filter(|_| n > 0 || found.is_some());
    }
    None
}

#[cfg(test)]
mod tests;
