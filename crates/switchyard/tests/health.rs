//! Active health checks and `/admin/providers`, end to end: the real gateway against fake
//! upstreams on loopback whose `GET /v1/models` can be switched to fail.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use switchyard_fakes::{FakeUpstream, Script, Step};

/// Probes every 100 ms, unhealthy after 2 failures, healthy after 1 success.
const HEALTH: &str = "[health]\nenabled = true\ninterval = \"100ms\"\ntimeout = \"100ms\"\n";

/// The `/admin/providers` row of `label`.
async fn row(gw: &TestGateway, label: &str) -> Value {
    let r = gw.get("/admin/providers").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/json");
    assert_no_keys(&r.text());
    let doc = r.json();
    doc["targets"].as_array().unwrap().iter().find(|t| t["target"] == label).unwrap_or_else(|| panic!("no {label} in {doc}")).clone()
}

/// Polls the admin row of `label` until `field` (a JSON pointer) equals `want`; returns how long
/// that took.
async fn wait_for(gw: &TestGateway, label: &str, field: &str, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let r = row(gw, label).await;
        if r.pointer(field).and_then(Value::as_str) == Some(want) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{label}{field} is not {want} after {within:?}: {r}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends a chat request that must succeed; returns the provider that answered.
async fn served_by(gw: &TestGateway) -> String {
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, 200, "a client saw a failure: {}", r.text());
    r.header("x-switchyard-provider").to_owned()
}

#[tokio::test]
async fn a_failing_target_leaves_rotation_without_client_failures_and_comes_back() {
    let a = FakeUpstream::start(Script::new()).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&two_targets(&a, &b, HEALTH)).await;
    wait_for(&gw, "a/model-a", "/health", "healthy", Duration::from_secs(3)).await;
    assert!(a.last_models_headers().unwrap().get("authorization").is_some_and(|v| v == &format!("Bearer {KEY_A}")[..]), "the probe sends the provider's key");
    for _ in 0..3 {
        assert_eq!(served_by(&gw).await, "a");
    }

    // `a` goes down: its listing and its chat both answer 503.
    a.set_models_status(503);
    a.set_default(Step::status(503));
    let went_down = Instant::now();
    // Clients keep being served (by failover) while the checks notice.
    while row(&gw, "a/model-a").await["health"] != "unhealthy" {
        assert_eq!(served_by(&gw).await, "b");
        assert!(went_down.elapsed() < Duration::from_secs(2), "not marked unhealthy in time");
    }
    // Two failed probes 100 ms apart: about two intervals (generous on a shared machine).
    assert!(went_down.elapsed() < Duration::from_millis(1000), "took {:?}", went_down.elapsed());
    let r = row(&gw, "a/model-a").await;
    assert_eq!(r["breaker"]["state"], "open", "{r}");
    assert!(r["health_check"]["last_error"].as_str().unwrap().contains("503"), "{r}");
    assert!(r["health_check"]["consecutive_failures"].as_u64().unwrap() >= 2, "{r}");

    // Out of rotation: no request reaches `a` at all, not even as a last resort.
    let before = a.requests();
    for _ in 0..10 {
        let resp = gw.chat(&chat_body("chat")).await;
        assert_eq!(resp.status, 200);
        assert_eq!((resp.header("x-switchyard-provider"), resp.attempts()), ("b", 1));
    }
    assert_eq!(a.requests(), before, "a target the checks hold down gets no traffic");
    assert_eq!(gw.get("/ready").await.status, 200, "b still serves the alias");

    // `a` recovers: the next probe brings it back and its breaker closes without the 30 s cooldown.
    a.set_models_status(200);
    a.set_default(Step::ok());
    let took = wait_for(&gw, "a/model-a", "/health", "healthy", Duration::from_secs(2)).await;
    assert!(took < Duration::from_millis(1000), "took {took:?}");
    assert_eq!(row(&gw, "a/model-a").await["breaker"]["state"], "closed");
    assert_eq!(served_by(&gw).await, "a");
}

#[tokio::test]
async fn ready_flips_when_every_target_of_an_alias_is_unhealthy() {
    let a = FakeUpstream::start(Script::new()).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&two_targets(&a, &b, HEALTH)).await;
    wait_for(&gw, "b/model-b", "/health", "healthy", Duration::from_secs(3)).await;
    assert_eq!(gw.get("/ready").await.status, 200);

    a.set_models_status(500);
    b.set_models_status(502);
    wait_for(&gw, "a/model-a", "/health", "unhealthy", Duration::from_secs(2)).await;
    wait_for(&gw, "b/model-b", "/health", "unhealthy", Duration::from_secs(2)).await;
    let r = gw.get("/ready").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["unready_aliases"], serde_json::json!(["chat"]));
    // Every target is held out: the call is refused at once, without upstream requests.
    let sent = a.requests() + b.requests();
    let resp = gw.chat(&chat_body("chat")).await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.error()["code"], "no_available_targets");
    assert_eq!(a.requests() + b.requests(), sent);

    b.set_models_status(200);
    wait_for(&gw, "b/model-b", "/health", "healthy", Duration::from_secs(2)).await;
    assert_eq!(gw.get("/ready").await.status, 200);
    assert_eq!(served_by(&gw).await, "b");
}

#[tokio::test]
async fn the_completion_probe_asks_for_a_few_tokens_and_is_not_traffic() {
    let a = FakeUpstream::start(Script::new()).await;
    let b = FakeUpstream::start(Script::new()).await;
    let config = format!(
        "{}{}\n[models.chat]\ntargets = [\"a/gpt-4o-mini\"]\n[models.think]\ntargets = [\"b/o3-mini\"]\n{FAST}\n{HEALTH}probe = \"completion\"\nmax_tokens = 24\n",
        openai_provider("a", &a.base_url(), KEY_A),
        openai_provider("b", &b.base_url(), KEY_B),
    );
    let gw = start(&config).await;
    wait_for(&gw, "a/gpt-4o-mini", "/health", "healthy", Duration::from_secs(3)).await;
    wait_for(&gw, "b/o3-mini", "/health", "healthy", Duration::from_secs(3)).await;
    let probe = a.last_request().expect("a completion probe");
    assert_eq!(probe.uri, "/v1/chat/completions");
    assert_eq!(probe.body["model"], "gpt-4o-mini");
    assert_eq!(probe.body["max_tokens"], 24, "{}", probe.body);
    assert_eq!(probe.body["stream"], false);
    assert_eq!(probe.headers["authorization"], format!("Bearer {KEY_A}").as_str());
    let probe = b.last_request().expect("a completion probe");
    assert_eq!(probe.body["max_completion_tokens"], 24, "reasoning models get max_completion_tokens: {}", probe.body);
    assert!(probe.body.get("max_tokens").is_none());
    assert_eq!(a.models_requests(), 0, "the completion probe replaces the listing");
    // Probes are not client traffic.
    let r = row(&gw, "a/gpt-4o-mini").await;
    assert!(r["health_check"]["probes"].as_u64().unwrap() >= 1);
    assert_eq!(r["total"]["requests"], 0, "{r}");
    assert_eq!(r["window"]["requests"], 0);
    assert_eq!(r["health_check"]["probe"], "completion");
}

#[tokio::test]
async fn admin_providers_reports_scripted_traffic() {
    let a = FakeUpstream::start(Script::new().then(Step::status(500))).await;
    a.set_response_headers(&[
        ("x-ratelimit-limit-requests", "100"),
        ("x-ratelimit-remaining-requests", "40"),
        ("x-ratelimit-reset-requests", "20s"),
        ("x-ratelimit-limit-tokens", "10000"),
        ("x-ratelimit-remaining-tokens", "2500"),
        ("x-ratelimit-reset-tokens", "6s"),
    ]);
    let b = FakeUpstream::start(Script::new()).await;
    let dead = dead_base_url();
    let config = format!(
        "{}{}{}[providers.c.breaker]\nfailures = 1\n\
         [models.chat]\ntargets = [\"a/model-a\", \"b/model-b\"]\n[models.chat.retry]\nattempts_per_target = 1\n\
         [models.dead]\ntargets = [\"c/model-c\", \"b/model-b\"]\n[models.dead.retry]\nattempts_per_target = 1\n{FAST}",
        openai_provider("a", &a.base_url(), KEY_A),
        openai_provider("b", &b.base_url(), KEY_B),
        openai_provider("c", &dead, KEY_A),
    );
    let gw = start(&config).await;
    // chat: a fails (500), b answers; then a answers twice. dead: c refuses, b answers.
    assert_eq!(served_by(&gw).await, "b");
    assert_eq!(served_by(&gw).await, "a");
    assert_eq!(served_by(&gw).await, "a");
    let r = gw.chat(&chat_body("dead")).await;
    assert_eq!((r.status.as_u16(), r.header("x-switchyard-provider")), (200, "b"));

    let resp = gw.get("/admin/providers").await;
    let doc = resp.json();
    assert_eq!(doc["window_requests"], 6);
    assert_eq!(doc["window_seconds"], 300.0);
    let labels: Vec<&str> = doc["targets"].as_array().unwrap().iter().map(|t| t["target"].as_str().unwrap()).collect();
    assert_eq!(labels, ["a/model-a", "b/model-b", "c/model-c"]);

    let ra = row(&gw, "a/model-a").await;
    assert_eq!((ra["provider"].as_str(), ra["model"].as_str(), ra["kind"].as_str()), (Some("a"), Some("model-a"), Some("openai")));
    assert_eq!(ra["aliases"], serde_json::json!(["chat"]));
    assert_eq!(ra["health"], "unknown", "no active checks configured");
    assert_eq!(ra["health_check"]["enabled"], false);
    assert_eq!(ra["health_check"]["probes"], 0);
    assert_eq!(ra["breaker"]["state"], "closed");
    assert_eq!(ra["in_flight"], 0);
    assert_eq!((ra["window"]["requests"].as_u64(), ra["window"]["errors"].as_u64()), (Some(3), Some(1)));
    assert_eq!((ra["total"]["requests"].as_u64(), ra["total"]["errors"].as_u64()), (Some(3), Some(1)));
    assert_eq!(ra["window"]["error_ratio"], 0.333333);
    assert_eq!(ra["window"]["traffic_share"], 0.5);
    assert!(ra["latency_ms"]["ewma"].as_f64().unwrap() > 0.0, "{ra}");
    assert!(ra["latency_ms"]["p95"].as_f64().unwrap() > 0.0, "{ra}");
    let rl = &ra["rate_limit"];
    assert_eq!((rl["remaining_requests"].as_u64(), rl["limit_requests"].as_u64()), (Some(40), Some(100)));
    assert_eq!((rl["remaining_tokens"].as_u64(), rl["limit_tokens"].as_u64()), (Some(2500), Some(10000)));
    assert_eq!(rl["headroom"], 0.25, "the tighter of 40% of requests and 25% of tokens");
    let reset = rl["reset_in_ms"].as_f64().unwrap();
    assert!(reset > 10_000.0 && reset <= 20_000.0, "the later reset: {reset}");
    assert_eq!(rl["blocked_for_ms"], Value::Null);
    assert_eq!(ra["hedges"], serde_json::json!({"started": 0, "won": 0, "lost_spend_usd": 0.0}));
    assert!(ra["spend_usd"].is_number());
    let failure = &ra["last_failure"];
    assert!(failure["reason"].as_str().unwrap().starts_with("HTTP 500"), "{failure}");
    let at = failure["at"].as_str().unwrap();
    assert!(at.len() == 27 && at.as_bytes()[10] == b'T' && at.ends_with('Z'), "RFC 3339: {at}");

    let rb = row(&gw, "b/model-b").await;
    assert_eq!(rb["aliases"], serde_json::json!(["chat", "dead"]));
    assert_eq!((rb["total"]["requests"].as_u64(), rb["total"]["errors"].as_u64()), (Some(2), Some(0)));
    assert_eq!(rb["window"]["error_ratio"], 0.0);
    assert_eq!(rb["last_failure"], Value::Null);
    assert_eq!(rb["rate_limit"]["headroom"], 1.0, "b sends no rate-limit headers");
    assert_eq!(rb["rate_limit"]["remaining_requests"], Value::Null);

    let rc = row(&gw, "c/model-c").await;
    assert_eq!(rc["breaker"]["state"], "open", "one refused connection opens c's breaker (failures = 1)");
    assert_eq!(rc["breaker"]["times_opened"], 1);
    assert_eq!(rc["window"]["error_ratio"], 1.0);
    assert!(rc["last_failure"]["reason"].as_str().unwrap().starts_with("connection failed"), "{rc}");
    let shares: f64 = ["a/model-a", "b/model-b", "c/model-c"].iter().map(|l| doc["targets"].as_array().unwrap().iter().find(|t| t["target"] == *l).unwrap()["window"]["traffic_share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-5, "{shares}");
}

#[tokio::test]
async fn checks_run_only_when_enabled_and_stop_with_the_gateway() {
    let a = FakeUpstream::start(Script::new()).await;
    let b = FakeUpstream::start(Script::new()).await;
    let config = two_targets(&a, &b, &format!("{HEALTH}[providers.b.health]\nenabled = false\n"));
    let config = switchyard_core::Config::from_toml_str(&config, "test.toml").unwrap();
    let gateway = switchyard_core::Gateway::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.serve(listener, async move {
        let _ = stopped.await;
    }));
    eventually("a few probes of a", Duration::from_secs(3), || a.models_requests() >= 3).await;
    assert_eq!(b.models_requests(), 0, "health checks disabled for b");
    assert_eq!(a.requests() + b.requests(), 0, "the listing probe sends no chat request");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("the gateway stops").unwrap().unwrap();
    let after = a.models_requests();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(a.models_requests() <= after + 1, "probes went on after shutdown: {after} -> {}", a.models_requests());
    let settled = a.models_requests();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(a.models_requests(), settled, "probes went on after shutdown");
}

#[tokio::test]
async fn nothing_is_probed_by_default() {
    let a = FakeUpstream::start(Script::new()).await;
    let gw = start(&one_target(&a, "")).await;
    assert_eq!(served_by(&gw).await, "a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.models_requests(), 0);
    assert_eq!(row(&gw, "a/model-a").await["health_check"]["active"], false);
}
