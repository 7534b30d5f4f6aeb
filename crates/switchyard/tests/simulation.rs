//! A day of traffic in a few seconds: the router (plan + chain, as the ingress runs them) under
//! Tokio's paused clock, against four mock providers whose latency, prices and outages follow a
//! script, once per strategy. Prints requests per provider, failovers by reason, cost and
//! latency percentiles per strategy (`cargo test -p switchyard --test simulation -- --nocapture`)
//! and checks what the routing model promises: no client request fails while a target is up,
//! `cost` is the cheapest, `latency` the fastest.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_core::providers::{ProviderError, Usage};
use switchyard_core::router::chain::{self, Answer, Outcome, Trace};
use switchyard_core::router::plan::{Features, RouteOptions, plan};
use switchyard_core::wire::openai::ChatRequest;
use switchyard_core::{Config, Routes};
use tokio::time::Instant;

const HOUR: u64 = 3600;
/// One request every this many simulated seconds, on average.
const EVERY_SECS: f64 = 20.0;

/// Four providers: a flagship with an outage in the morning, a second flagship that is rate
/// limited at noon, a fast cheap one that is flaky and slow in the evening, and a free local
/// model that is slow and down for the first hour.
fn config(strategy: &str, extra: &str) -> String {
    format!(
        r#"
[providers.openai]
kind = "mock"
latency = "900ms"
schedule = [{{ from = "6h", to = "450m", failure = "unavailable" }}]

[providers.anthropic]
kind = "mock"
latency = "1200ms"
schedule = [{{ from = "12h", to = "13h", failure = "rate_limit" }}]

[providers.groq]
kind = "mock"
latency = "300ms"
failure_rate = 0.03
seed = 7
schedule = [{{ from = "18h", to = "20h", latency = "7s" }}]

[providers.local]
kind = "mock"
latency = "2500ms"
schedule = [{{ from = "0s", to = "1h", failure = "reset" }}]

[timeouts]
first_byte = "5s"
total = "30s"

[retry]
backoff_initial = "200ms"
backoff_max = "2s"

[models.chat]
strategy = "{strategy}"
targets = [
  "openai/gpt-4o",
  "anthropic/claude-sonnet-4",
  "groq/llama-3.3-70b-versatile",
  {{ target = "local/llama3.2", price = {{ input = 0, output = 0 }} }},
]
{extra}
"#
    )
}

#[derive(Default)]
struct Tally {
    served: BTreeMap<String, u64>,
    failovers: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
    cost: f64,
    failed: u64,
}

fn reason(e: &ProviderError) -> String {
    match e {
        ProviderError::Status(s) => format!("HTTP {}", s.status),
        ProviderError::Timeout(_) => "timeout".into(),
        ProviderError::Connect(_) => "connection".into(),
        other => format!("{other}"),
    }
}

async fn one_request(routes: Arc<Routes>, tally: Arc<Mutex<Tally>>, prices: Arc<BTreeMap<String, (f64, f64)>>) {
    let started = Instant::now();
    let body = r#"{"model":"chat","messages":[{"role":"user","content":"Summarise the meeting notes in three bullet points please"}],"max_tokens":300}"#;
    let request = ChatRequest::parse(body.into()).unwrap();
    let alias = routes.alias("chat").unwrap().clone();
    let mut features = Features::new(Some(&request));
    let p = plan(&alias, &mut features, RouteOptions::default());
    let mut trace = Trace::default();
    let result = chain::run(&alias, &p, &request, started + alias.total, &mut trace).await;
    let mut t = tally.lock().unwrap();
    for a in &trace.attempts {
        if let Outcome::Failed(e) = &a.outcome {
            *t.failovers.entry(reason(e)).or_default() += 1;
        }
    }
    match result {
        Ok(served) => {
            let label = served.target.label.to_string();
            let usage: Usage = match served.answer {
                Answer::Complete(c) => c.usage.unwrap_or_default(),
                Answer::Stream(_) => unreachable!("not streamed"),
            };
            let (pin, pout) = prices[&label];
            t.cost += (usage.prompt_tokens as f64 * pin + usage.completion_tokens as f64 * pout) / 1e6;
            *t.served.entry(label).or_default() += 1;
            t.latencies.push(started.elapsed());
        }
        Err(_) => t.failed += 1,
    }
}

async fn simulate_day(strategy: &str, extra: &str) -> Tally {
    let config = Config::from_toml_str(&config(strategy, extra), "simulation.toml").unwrap();
    let routes = Arc::new(Routes::build(&config).unwrap());
    let prices: BTreeMap<String, (f64, f64)> = routes.aliases["chat"]
        .targets
        .iter()
        .map(|t| (t.label.to_string(), t.routing.price.map_or((0.0, 0.0), |p| (p.input, p.output))))
        .collect();
    let prices = Arc::new(prices);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut rng = fastrand::Rng::with_seed(42);
    let end = Instant::now() + Duration::from_secs(24 * HOUR);
    let mut tasks = Vec::new();
    loop {
        // Poisson arrivals.
        let gap = -EVERY_SECS * (1.0 - rng.f64()).ln();
        tokio::time::sleep(Duration::from_secs_f64(gap)).await;
        if Instant::now() >= end {
            break;
        }
        tasks.push(tokio::spawn(one_request(routes.clone(), tally.clone(), prices.clone())));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap()
}

fn pct(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64()
}

#[tokio::test(start_paused = true)]
async fn a_day_of_traffic_with_scripted_outages() {
    let strategies = ["priority", "weighted", "round_robin", "least_busy", "latency", "cost", "usage"];
    // Each strategy alone, then latency with hedging at the target's p95.
    let runs = strategies.iter().map(|s| (*s, *s, "")).chain([("latency+hedge", "latency", "[models.chat.hedge]\nafter = \"p95\"\ninitial = \"1s\"")]);
    let mut report = String::from("\nA simulated day (one request every ~20 s; openai down 06:00-07:30, anthropic 429 12:00-13:00, groq 3% errors and 7 s slow 18:00-20:00, local down 00:00-01:00)\n");
    let _ = writeln!(report, "{:<14} {:>6} {:>6}  {:>7} {:>7} {:>7}  {:>9}  served by                                   failovers by reason", "strategy", "ok", "failed", "p50 s", "p95 s", "p99 s", "cost USD");
    let mut results = BTreeMap::new();
    for (s, strategy, extra) in runs {
        let mut t = simulate_day(strategy, extra).await;
        t.latencies.sort();
        let served = t.served.iter().map(|(k, v)| format!("{}={v}", k.split('/').next().unwrap())).collect::<Vec<_>>().join(" ");
        let failovers = t.failovers.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ");
        let ok = t.latencies.len();
        let _ = writeln!(
            report,
            "{s:<14} {ok:>6} {:>6}  {:>7.2} {:>7.2} {:>7.2}  {:>9.4}  {served:<43} {failovers}",
            t.failed,
            pct(&t.latencies, 0.5),
            pct(&t.latencies, 0.95),
            pct(&t.latencies, 0.99),
            t.cost
        );
        results.insert(s, t);
    }
    println!("{report}");
    for (s, t) in &results {
        assert_eq!(t.failed, 0, "{s}: a client request failed while targets were up\n{report}");
        assert!(t.latencies.len() > 4000, "{s}: a day of traffic\n{report}");
    }
    let cost = |s: &str| results[s].cost;
    let p50 = |s: &str| pct(&results[s].latencies, 0.5);
    for s in strategies {
        assert!(cost("cost") <= cost(s), "cost is the cheapest\n{report}");
        assert!(p50("latency") <= p50(s) + 1e-9, "latency has the lowest median\n{report}");
    }
    // Priority sends everything it can to the first target, and fails over during its outage.
    let priority = &results["priority"];
    assert!(priority.served["anthropic/claude-sonnet-4"] > 100, "{report}");
    assert!(priority.failovers.get("HTTP 503").copied().unwrap_or(0) > 0, "{report}");
    // Hedging at the p95 cuts the tail that groq's slow evening puts on the latency strategy.
    assert!(pct(&results["latency+hedge"].latencies, 0.99) < pct(&results["latency"].latencies, 0.99), "{report}");
    // Cost goes to the free local model except while it is down.
    assert!(results["cost"].served["local/llama3.2"] > 4000, "{report}");
}
