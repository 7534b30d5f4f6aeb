//! Routing keys of the config: an alias's strategy and pool settings (`strategy`, `fallback`,
//! `context_fallback`, `max_cost`, `hedge`, `stream`, `refusal_fallback`, `on_exhausted`),
//! per-target keys (`weight`, `price`, capabilities), the top-level `[routing]` table and the
//! conditional `[[rules]]`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::Dur;

/// How an alias orders its targets for each request.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// In the order listed.
    #[default]
    Priority,
    /// At random, in proportion to each target's `weight`.
    Weighted,
    /// Each request starts at the next target.
    RoundRobin,
    /// Fewest requests (and open streams) in flight first.
    LeastBusy,
    /// Lowest latency first (EWMA of the time to answer, or to the first token of a stream).
    Latency,
    /// Cheapest first, from the prompt's token count, `max_tokens` and the price table.
    Cost,
    /// Most rate-limit headroom first (the providers' `x-ratelimit-*` headers); a target that
    /// answered 429 stays out until its reset time.
    Usage,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 7] = [
        StrategyKind::Priority,
        StrategyKind::Weighted,
        StrategyKind::RoundRobin,
        StrategyKind::LeastBusy,
        StrategyKind::Latency,
        StrategyKind::Cost,
        StrategyKind::Usage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Priority => "priority",
            StrategyKind::Weighted => "weighted",
            StrategyKind::RoundRobin => "round_robin",
            StrategyKind::LeastBusy => "least_busy",
            StrategyKind::Latency => "latency",
            StrategyKind::Cost => "cost",
            StrategyKind::Usage => "usage",
        }
    }

    pub fn parse(name: &str) -> Option<StrategyKind> {
        StrategyKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn names() -> String {
        StrategyKind::ALL.map(StrategyKind::name).join(", ")
    }
}

/// Price of a target in USD per 1M tokens.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

/// What a target can serve. `None` means unknown: the target is not filtered on it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Context window in tokens (prompt plus output).
    pub context_window: Option<u64>,
    pub tools: Option<bool>,
    pub vision: Option<bool>,
    pub json_mode: Option<bool>,
}

impl Capabilities {
    /// `self` with unknown entries taken from `fallback`.
    pub fn or(&self, fallback: &Capabilities) -> Capabilities {
        Capabilities {
            context_window: self.context_window.or(fallback.context_window),
            tools: self.tools.or(fallback.tools),
            vision: self.vision.or(fallback.vision),
            json_mode: self.json_mode.or(fallback.json_mode),
        }
    }
}

/// A target written as a table: `{ target = "provider/model", weight = 2, ... }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTargetTable {
    pub target: String,
    pub weight: Option<u32>,
    pub price: Option<Price>,
    pub context_window: Option<u64>,
    pub tools: Option<bool>,
    pub vision: Option<bool>,
    pub json_mode: Option<bool>,
}

/// `targets = ["provider/model", { target = "provider/model", weight = 2 }]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawTarget {
    Short(String),
    Table(RawTargetTable),
}

impl RawTarget {
    pub fn spec(&self) -> &str {
        match self {
            RawTarget::Short(s) => s,
            RawTarget::Table(t) => &t.target,
        }
    }
}

/// Per-target routing keys, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetRouting {
    /// Share under the `weighted` strategy (default 1).
    pub weight: u32,
    /// From the target's `price`, else the bundled price table, else unknown.
    pub price: Option<Price>,
    /// From the target's keys, then the bundled model table.
    pub caps: Capabilities,
}

/// `[models.ALIAS.hedge]`: start the next target too when the first is slow.
#[derive(Clone, Debug, PartialEq)]
pub struct HedgeSettings {
    pub after: HedgeDelay,
    /// Extra requests at most (default 1).
    pub max: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HedgeDelay {
    Fixed(Duration),
    /// The target's current p95 latency (time to first token for streams), or `fallback` while
    /// it has too few samples.
    P95 { fallback: Duration },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHedge {
    /// `"300ms"` or `"p95"`.
    pub after: String,
    pub max: Option<u32>,
    /// With `after = "p95"`: the delay while a target has too few samples (default 1s).
    pub initial: Option<Dur>,
}

/// `[models.ALIAS.stream]`: when a stream is committed to the caller, and what happens when
/// it breaks after that.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamPolicy {
    /// `commit = "head"`: send the response head as soon as a target's upstream answers 200,
    /// before any content, as a plain reverse proxy does (the lowest time to first chunk). A
    /// failure after that reaches the caller as an error event in the stream, or with
    /// `recover` continues on the next target; a target that sent no content yet is then tried
    /// again from the start. Off (the default, `"content"`): the head waits for the first
    /// content chunk, so such a failure fails over invisibly, with the right HTTP status if
    /// every target fails.
    pub commit_on_head: bool,
    /// Hold back the first N content chunks before committing (0: commit on the first).
    pub commit_chunks: u32,
    /// ... but never longer than this after the first content chunk.
    pub commit_within: Option<Duration>,
    /// Continue a committed stream that breaks on the next target (mid-stream recovery).
    pub recover: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStream {
    /// `"content"` (default) or `"head"`.
    pub commit: Option<String>,
    pub commit_chunks: Option<u32>,
    pub commit_within: Option<Dur>,
    pub recover: Option<bool>,
}

/// `[models.ALIAS.on_exhausted]`: the answer when every target failed.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Exhausted {
    /// The error of the last attempt (429, 5xx or 504), with every attempt listed.
    #[default]
    LastError,
    /// 503 with `Retry-After`.
    Unavailable { retry_after: Duration },
    /// A fixed assistant answer (HTTP 200, `x-switchyard-fallback: static`).
    Static { content: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExhausted {
    /// `"error"` (default), `"unavailable"` or `"static"`.
    pub action: String,
    pub retry_after: Option<Dur>,
    pub content: Option<String>,
}

/// An alias's routing, resolved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AliasRouting {
    pub strategy: StrategyKind,
    /// Alias tried after this one's targets (a downgrade tier).
    pub fallback: Option<String>,
    /// Alias tried when no target's context window fits the prompt.
    pub context_fallback: Option<String>,
    /// Largest estimated cost of one request in USD; targets that fit it are preferred.
    pub max_cost: Option<f64>,
    pub hedge: Option<HedgeSettings>,
    pub stream: StreamPolicy,
    /// A content-filter finish or a refusal moves on to the next target.
    pub refusal_fallback: bool,
    pub on_exhausted: Exhausted,
}

/// `[routing]`: settings shared by every alias.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingSettings {
    /// Smoothing of the latency EWMA: weight of the newest sample (default 0.3).
    pub latency_alpha: f64,
    /// Sliding window of the p95 latency, error ratio and traffic counts (default 5m).
    pub window: Duration,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings { latency_alpha: 0.3, window: Duration::from_secs(300) }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    pub latency_alpha: Option<f64>,
    pub window: Option<Dur>,
}

/// One value or a list of accepted values.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            OneOrMany::One(v) => v == value,
            OneOrMany::Many(vs) => vs.iter().any(|v| v == value),
        }
    }
}

/// `[[rules]]`: when a request matches every condition given, route it to `alias` and/or with
/// `strategy`. The first matching rule wins.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// For logs.
    #[serde(default)]
    pub name: Option<String>,
    /// The requested aliases it applies to (default: every request).
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Request headers (names case-insensitive) and their accepted values.
    #[serde(default)]
    pub headers: BTreeMap<String, OneOrMany>,
    /// The OpenAI `user` field.
    #[serde(default)]
    pub user: Option<OneOrMany>,
    /// Keys of the request's `metadata` object and their accepted values.
    #[serde(default)]
    pub metadata: BTreeMap<String, OneOrMany>,
    /// Route to this alias instead of the requested one.
    #[serde(default)]
    pub alias: Option<String>,
    /// Use this strategy.
    #[serde(default)]
    pub strategy: Option<StrategyKind>,
}

impl Rule {
    pub fn label(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("rules[{index}]"))
    }
}

/// Kinds that run models locally, priced at zero unless a target says otherwise.
const LOCAL_KINDS: &[&str] = &["ollama", "vllm"];

pub(super) fn target_routing(cx: &super::Ctx<'_>, key: &str, raw: &RawTarget, kind: &str, model: &str) -> Result<TargetRouting, super::ConfigError> {
    let known = crate::catalog::lookup(model);
    let (weight, price, caps) = match raw {
        RawTarget::Short(_) => (None, None, Capabilities::default()),
        RawTarget::Table(t) => (
            t.weight,
            t.price,
            Capabilities { context_window: t.context_window, tools: t.tools, vision: t.vision, json_mode: t.json_mode },
        ),
    };
    if let Some(p) = price {
        if !(p.input >= 0.0 && p.output >= 0.0 && p.input.is_finite() && p.output.is_finite()) {
            return Err(cx.err(format!("{key}.price"), "prices must be finite and not negative", "write USD per 1M tokens, e.g. price = { input = 2.5, output = 10 }"));
        }
    }
    if caps.context_window == Some(0) {
        return Err(cx.err(format!("{key}.context_window"), "must be more than 0", "write the model's context window in tokens, or remove the key"));
    }
    let local = LOCAL_KINDS.contains(&kind).then_some(Price { input: 0.0, output: 0.0 });
    Ok(TargetRouting {
        weight: weight.unwrap_or(1),
        price: price.or(local).or_else(|| known.and_then(|k| k.price)),
        caps: known.map_or(caps.clone(), |k| caps.or(&k.caps)),
    })
}

pub(super) fn alias_routing(cx: &super::Ctx<'_>, prefix: &str, rm: &super::RawModel) -> Result<AliasRouting, super::ConfigError> {
    if let Some(c) = rm.max_cost {
        if !(c > 0.0 && c.is_finite()) {
            return Err(cx.err(format!("{prefix}.max_cost"), "must be a positive number of USD", "write e.g. max_cost = 0.01, or remove it"));
        }
    }
    let hedge = match &rm.hedge {
        None => None,
        Some(h) => {
            let after = if h.after.trim() == "p95" {
                HedgeDelay::P95 { fallback: h.initial.map_or(Duration::from_secs(1), |d| d.0) }
            } else {
                let d = super::duration::parse_duration(&h.after).map_err(|m| cx.err(format!("{prefix}.hedge.after"), m, "write a delay such as \"300ms\", or \"p95\""))?;
                if h.initial.is_some() {
                    return Err(cx.err(format!("{prefix}.hedge.initial"), "only applies with after = \"p95\"", "remove it, or set after = \"p95\""));
                }
                HedgeDelay::Fixed(d)
            };
            let max = h.max.unwrap_or(1);
            if max == 0 {
                return Err(cx.err(format!("{prefix}.hedge.max"), "0 extra requests turns hedging off", "use 1 or more, or remove the [hedge] table"));
            }
            Some(HedgeSettings { after, max })
        }
    };
    let commit_on_head = match rm.stream.as_ref().and_then(|s| s.commit.as_deref()) {
        None | Some("content") => false,
        Some("head") => true,
        Some(other) => return Err(cx.err(format!("{prefix}.stream.commit"), format!("unknown commit point \"{other}\""), "use \"content\" (hold the head until the first content chunk, the default) or \"head\" (send it as soon as an upstream answers)")),
    };
    let stream = rm.stream.as_ref().map_or(StreamPolicy::default(), |s| StreamPolicy {
        commit_on_head,
        commit_chunks: s.commit_chunks.unwrap_or(0),
        commit_within: s.commit_within.map(|d| d.0),
        recover: s.recover.unwrap_or(false),
    });
    if stream.commit_within.is_some() && stream.commit_chunks == 0 {
        return Err(cx.err(format!("{prefix}.stream.commit_within"), "bounds how long commit_chunks are held, but commit_chunks is 0", "set commit_chunks (e.g. 5), or remove commit_within"));
    }
    if stream.commit_on_head {
        let held = if stream.commit_chunks > 0 {
            Some(("stream.commit_chunks", "holds content chunks before the commit"))
        } else if rm.refusal_fallback == Some(true) {
            Some(("refusal_fallback", "needs a stream held until its first chunk, to see a content_filter finish before the commit"))
        } else if hedge.is_some() {
            Some(("hedge", "races targets to their first content chunk, which needs the head held until then"))
        } else {
            None
        };
        if let Some((key, why)) = held {
            return Err(cx.err(format!("{prefix}.stream.commit"), format!("\"head\" sends the response head before any content, but {key} {why}"), format!("remove {key}, or set commit = \"content\"")));
        }
    }
    let on_exhausted = match &rm.on_exhausted {
        None => Exhausted::LastError,
        Some(e) => {
            let key = format!("{prefix}.on_exhausted");
            match e.action.as_str() {
                "error" => {
                    if e.retry_after.is_some() || e.content.is_some() {
                        return Err(cx.err(&key, "action \"error\" takes no other keys", "remove retry_after / content"));
                    }
                    Exhausted::LastError
                }
                "unavailable" => {
                    if e.content.is_some() {
                        return Err(cx.err(format!("{key}.content"), "only applies to action \"static\"", "remove it"));
                    }
                    Exhausted::Unavailable { retry_after: e.retry_after.map_or(Duration::from_secs(30), |d| d.0) }
                }
                "static" => {
                    let content = e.content.clone().filter(|c| !c.is_empty()).ok_or_else(|| {
                        cx.err(format!("{key}.content"), "a static answer needs its text", "add content = \"...\" (the assistant message to send)")
                    })?;
                    if e.retry_after.is_some() {
                        return Err(cx.err(format!("{key}.retry_after"), "only applies to action \"unavailable\"", "remove it"));
                    }
                    Exhausted::Static { content }
                }
                other => {
                    return Err(cx.err(format!("{key}.action"), format!("unknown action \"{other}\""), "use \"error\", \"unavailable\" or \"static\""));
                }
            }
        }
    };
    Ok(AliasRouting {
        strategy: rm.strategy.unwrap_or_default(),
        fallback: rm.fallback.clone(),
        context_fallback: rm.context_fallback.clone(),
        max_cost: rm.max_cost,
        hedge,
        stream,
        refusal_fallback: rm.refusal_fallback.unwrap_or(false),
        on_exhausted,
    })
}

/// Every `fallback` / `context_fallback` names an alias, and following them never loops.
pub(super) fn check_alias_references(cx: &super::Ctx<'_>, models: &BTreeMap<String, super::ModelConfig>) -> Result<(), super::ConfigError> {
    for (name, m) in models {
        for (key, target) in [("fallback", &m.routing.fallback), ("context_fallback", &m.routing.context_fallback)] {
            let Some(target) = target else { continue };
            if !models.contains_key(target) {
                let known: Vec<&str> = models.keys().map(String::as_str).collect();
                return Err(cx.err(format!("models.{name}.{key}"), format!("alias \"{target}\" is not defined"), format!("use one of: {}", known.join(", "))));
            }
        }
        // Follow every path from `name`; a path that comes back to an alias on it is a loop.
        let mut stack = vec![(name.as_str(), vec![name.as_str()])];
        while let Some((at, path)) = stack.pop() {
            let r = &models[at].routing;
            for next in [&r.fallback, &r.context_fallback].into_iter().flatten() {
                if path.contains(&next.as_str()) {
                    return Err(cx.err(
                        format!("models.{name}.fallback"),
                        format!("fallbacks loop: {} -> {next}", path.join(" -> ")),
                        "make the chain of fallback / context_fallback aliases end somewhere",
                    ));
                }
                let mut p = path.clone();
                p.push(next);
                stack.push((next, p));
            }
        }
    }
    Ok(())
}

pub(super) fn routing_settings(cx: &super::Ctx<'_>, raw: &RawRouting) -> Result<RoutingSettings, super::ConfigError> {
    let mut s = RoutingSettings::default();
    if let Some(a) = raw.latency_alpha {
        if !(a > 0.0 && a <= 1.0) {
            return Err(cx.err("routing.latency_alpha", format!("{a} is not in (0, 1]"), "use a weight for the newest sample such as 0.3"));
        }
        s.latency_alpha = a;
    }
    if let Some(w) = raw.window {
        if w.0 < Duration::from_secs(1) {
            return Err(cx.err("routing.window", "is shorter than 1s", "use e.g. \"5m\""));
        }
        s.window = w.0;
    }
    Ok(s)
}

pub(super) fn check_rules(cx: &super::Ctx<'_>, rules: &[Rule], models: &BTreeMap<String, super::ModelConfig>) -> Result<(), super::ConfigError> {
    let known = || models.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
    for (i, r) in rules.iter().enumerate() {
        let key = format!("rules[{i}]");
        if r.alias.is_none() && r.strategy.is_none() {
            return Err(cx.err(&key, "the rule changes nothing", "give it alias = \"...\" and/or strategy = \"...\""));
        }
        if let Some(a) = &r.alias {
            if !models.contains_key(a) {
                return Err(cx.err(format!("{key}.alias"), format!("alias \"{a}\" is not defined"), format!("use one of: {}", known())));
            }
        }
        for m in r.models.iter().flatten() {
            if !models.contains_key(m) {
                return Err(cx.err(format!("{key}.models"), format!("alias \"{m}\" is not defined"), format!("use one of: {}", known())));
            }
        }
        for name in r.headers.keys() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(cx.err(format!("{key}.headers"), format!("\"{name}\" is not a header name"), "write header names such as \"x-user-tier\""));
            }
        }
    }
    Ok(())
}
