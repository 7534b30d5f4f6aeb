//! Plans built from real configs: each strategy's order (distributions checked over many
//! seeded plans), pools chained to fallback aliases, capability filters, budgets, and the
//! demotion of unhealthy or rate-limited targets.

use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::router::Routes;
use crate::router::stats::Health;

fn routes(models: &str) -> Routes {
    let toml = format!(
        r#"
[providers.a]
kind = "mock"
[providers.b]
kind = "mock"
[providers.c]
kind = "mock"
[providers.local]
kind = "ollama"
{models}
"#
    );
    let config = Config::from_toml_str(&toml, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    Routes::build(&config).unwrap()
}

fn chat(body: &str) -> ChatRequest {
    ChatRequest::parse(body.to_owned().into()).unwrap()
}

const HI: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

/// The labels of the plan for `alias`.
fn order(r: &Routes, alias: &str, body: &str, opts: RouteOptions, seed: u64) -> Vec<String> {
    let request = chat(body);
    let mut f = Features::new(Some(&request));
    let p = plan_with(r.alias(alias).unwrap(), &mut f, opts, Some(fastrand::Rng::with_seed(seed)));
    p.targets.iter().map(|t| t.label.to_string()).collect()
}

fn first_counts(r: &Routes, alias: &str, n: u64) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for seed in 0..n {
        *counts.entry(order(r, alias, HI, RouteOptions::default(), seed)[0].clone()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn priority_keeps_the_config_order_and_chains_fallback_pools() {
    let r = routes(
        r#"
[models.big]
targets = ["a/x", "b/x"]
fallback = "small"
[models.small]
targets = ["b/x", "c/y"]
"#,
    );
    // b/x is in both pools: tried once, where it first appears.
    assert_eq!(order(&r, "big", HI, RouteOptions::default(), 1), ["a/x", "b/x", "c/y"]);
}

#[test]
fn weighted_picks_in_proportion_to_weight() {
    let r = routes(
        r#"
[models.w]
strategy = "weighted"
targets = [{ target = "a/x", weight = 1 }, { target = "b/x", weight = 3 }]
"#,
    );
    let counts = first_counts(&r, "w", 4000);
    let share = counts["b/x"] as f64 / 4000.0;
    assert!((0.72..0.78).contains(&share), "{counts:?}");
    // Every plan still holds both targets (the other one is the fallback).
    assert_eq!(order(&r, "w", HI, RouteOptions::default(), 7).len(), 2);
}

#[test]
fn round_robin_rotates() {
    let r = routes(
        r#"
[models.rr]
strategy = "round_robin"
targets = ["a/x", "b/x", "c/x"]
"#,
    );
    let firsts: Vec<String> = (0..6).map(|s| order(&r, "rr", HI, RouteOptions::default(), s)[0].clone()).collect();
    assert_eq!(firsts, ["a/x", "b/x", "c/x", "a/x", "b/x", "c/x"]);
}

#[test]
fn least_busy_prefers_fewest_in_flight() {
    let r = routes(
        r#"
[models.lb]
strategy = "least_busy"
targets = ["a/x", "b/x", "c/x"]
"#,
    );
    let alias = r.alias("lb").unwrap();
    let _a = [alias.targets[0].stats.begin(), alias.targets[0].stats.begin()];
    let _c = alias.targets[2].stats.begin();
    for seed in 0..20 {
        assert_eq!(order(&r, "lb", HI, RouteOptions::default(), seed), ["b/x", "c/x", "a/x"]);
    }
}

#[tokio::test(start_paused = true)]
async fn latency_prefers_the_fastest_and_still_explores() {
    let r = routes(
        r#"
[models.fast]
strategy = "latency"
targets = ["a/x", "b/x"]
"#,
    );
    let alias = r.alias("fast").unwrap();
    // Unmeasured targets go first, so each gets measured.
    alias.targets[0].stats.record_success(Duration::from_millis(5));
    assert_eq!(order(&r, "fast", HI, RouteOptions::default(), 3)[0], "b/x");
    alias.targets[1].stats.record_success(Duration::from_millis(80));
    let counts = first_counts(&r, "fast", 2000);
    let explored = counts.get("b/x").copied().unwrap_or(0) as f64 / 2000.0;
    assert!(explored > 0.03 && explored < 0.075, "about EXPLORE: {counts:?}");
    // The slow one recovers: its EWMA falls below the other's and it leads.
    for _ in 0..10 {
        alias.targets[1].stats.record_success(Duration::from_millis(1));
    }
    let counts = first_counts(&r, "fast", 1000);
    assert!(counts["b/x"] > 920, "all but the explored share: {counts:?}");
}

#[test]
fn cost_orders_by_estimated_price_and_budgets_prefer_what_fits() {
    let r = routes(
        r#"
[models.cheap]
strategy = "cost"
targets = [
  { target = "a/x", price = { input = 10.0, output = 30.0 } },
  "b/unpriced-model",
  "c/gpt-4o-mini",
  "local/llama3.2",
]
[models.budget]
targets = [{ target = "a/x", price = { input = 10.0, output = 30.0 } }, "b/unpriced-model", "c/gpt-4o-mini"]
"#,
    );
    // local (free), gpt-4o-mini from the bundled table, then the priced one, unpriced last.
    assert_eq!(order(&r, "cheap", HI, RouteOptions::default(), 1), ["local/llama3.2", "c/gpt-4o-mini", "a/x", "b/unpriced-model"]);
    // 1000 output tokens: a/x costs ≈ 0.03 USD, gpt-4o-mini ≈ 0.0006 USD.
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":1000}"#;
    let opts = RouteOptions { max_cost: Some(0.001), ..Default::default() };
    assert_eq!(order(&r, "budget", body, opts, 1), ["c/gpt-4o-mini", "b/unpriced-model", "a/x"]);
    let roomy = RouteOptions { max_cost: Some(1.0), ..Default::default() };
    assert_eq!(order(&r, "budget", body, roomy, 1), ["a/x", "c/gpt-4o-mini", "b/unpriced-model"]);
    // The strategy override applies per request.
    let by_cost = RouteOptions { strategy: Some(StrategyKind::Cost), ..Default::default() };
    assert_eq!(order(&r, "budget", body, by_cost, 1), ["c/gpt-4o-mini", "a/x", "b/unpriced-model"]);
}

#[test]
fn usage_prefers_headroom() {
    let r = routes(
        r#"
[models.u]
strategy = "usage"
targets = ["a/x", "b/x"]
"#,
    );
    let alias = r.alias("u").unwrap();
    let mut h = http::HeaderMap::new();
    h.insert("x-ratelimit-limit-requests", "100".parse().unwrap());
    h.insert("x-ratelimit-remaining-requests", "3".parse().unwrap());
    h.insert("x-ratelimit-reset-requests", "1m".parse().unwrap());
    alias.targets[0].stats.observe_headers(&h);
    assert_eq!(order(&r, "u", HI, RouteOptions::default(), 1), ["b/x", "a/x"]);
}

#[test]
fn unhealthy_targets_go_last_and_rate_limited_ones_under_usage() {
    let r = routes(
        r#"
[models.p]
targets = ["a/x", "b/x", "c/x"]
"#,
    );
    let alias = r.alias("p").unwrap();
    alias.targets[0].stats.set_health(Health::Unhealthy);
    alias.targets[1].stats.rate_limited(Some(Duration::from_secs(60)));
    // A 429 keeps a target out under `usage`; other strategies leave 429s to the breaker.
    assert_eq!(order(&r, "p", HI, RouteOptions::default(), 1), ["b/x", "c/x", "a/x"]);
    let usage = RouteOptions { strategy: Some(StrategyKind::Usage), ..Default::default() };
    assert_eq!(order(&r, "p", HI, usage, 1), ["c/x", "a/x", "b/x"]);
    alias.targets[0].stats.set_health(Health::Healthy);
    assert_eq!(order(&r, "p", HI, usage, 1), ["a/x", "c/x", "b/x"]);
}

#[test]
fn capability_filters_skip_with_a_reason() {
    let r = routes(
        r#"
[models.caps]
targets = [
  { target = "a/x", tools = false },
  { target = "b/x", vision = false },
  { target = "c/x", json_mode = false },
]
"#,
    );
    let alias = r.alias("caps").unwrap();
    let reasons = |body: &str| {
        let request = chat(body);
        let mut f = Features::new(Some(&request));
        let p = plan(alias, &mut f, RouteOptions::default());
        (p.targets.iter().map(|t| t.label.to_string()).collect::<Vec<_>>(), p.filtered.iter().map(|f| format!("{}: {}", f.target.label, f.reason)).collect::<Vec<_>>())
    };
    let (targets, filtered) = reasons(r#"{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f"}}]}"#);
    assert_eq!(targets, ["b/x", "c/x"]);
    assert_eq!(filtered, ["a/x: does not support tools"]);
    let (_, filtered) = reasons(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AA"}}]}]}"#);
    assert_eq!(filtered, ["b/x: does not accept images"]);
    let (_, filtered) = reasons(r#"{"model":"m","messages":[],"response_format":{"type":"json_object"}}"#);
    assert_eq!(filtered, ["c/x: has no JSON mode"]);
    // "tools" mentioned only inside the text: nothing filtered.
    let (targets, filtered) = reasons(r#"{"model":"m","messages":[{"role":"user","content":"\"tools\" and image"}]}"#);
    assert_eq!((targets.len(), filtered.len()), (3, 0));
}

#[test]
fn a_prompt_longer_than_the_window_goes_to_the_context_fallback() {
    let r = routes(
        r#"
[models.short]
targets = [{ target = "a/x", context_window = 5000 }, "b/gpt-3.5-turbo"]
context_fallback = "long"
[models.long]
targets = ["c/gpt-4.1"]
"#,
    );
    let short = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(order(&r, "short", short, RouteOptions::default(), 1), ["a/x", "b/gpt-3.5-turbo"]);
    let long = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#, "lorem ipsum dolor sit amet ".repeat(2000));
    assert_eq!(order(&r, "short", &long, RouteOptions::default(), 1), ["b/gpt-3.5-turbo", "c/gpt-4.1"], "10k tokens fit gpt-3.5's 16k window; the long pool follows");
    let longer = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#, "lorem ipsum dolor sit amet ".repeat(4000));
    assert_eq!(order(&r, "short", &longer, RouteOptions::default(), 1), ["c/gpt-4.1"]);
    // max_tokens counts against the window too.
    let with_output = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}],"max_tokens":8000}}"#, "lorem ipsum dolor sit amet ".repeat(2000));
    assert_eq!(order(&r, "short", &with_output, RouteOptions::default(), 1), ["c/gpt-4.1"]);
}

#[test]
fn embeddings_plans_read_no_body() {
    let r = routes(
        r#"
[models.e]
strategy = "cost"
targets = ["a/x", "c/gpt-4o-mini"]
"#,
    );
    let mut f = Features::new(None);
    let p = plan(r.alias("e").unwrap(), &mut f, RouteOptions::default());
    assert_eq!(p.targets.len(), 2);
    assert_eq!(p.prompt_tokens, None);
}
