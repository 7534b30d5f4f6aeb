//! Routing depth end to end: strategies over real HTTP against fake upstreams whose latency,
//! errors and rate-limit headers follow a script; hedging, refusal fallback, the catch-all,
//! rules and the per-request headers.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use switchyard_fakes::{FakeUpstream, Script, Step};

async fn fake(step: Step) -> FakeUpstream {
    FakeUpstream::start(Script::new().default_step(step)).await
}

fn providers(fakes: &[(&str, &FakeUpstream)]) -> String {
    fakes.iter().map(|(n, f)| openai_provider(n, &f.base_url(), KEY_A)).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn weighted_traffic_follows_the_weights() {
    let (a, b) = (fake(Step::ok()).await, fake(Step::ok()).await);
    let gw = start(&format!(
        "{}\n[models.chat]\nstrategy = \"weighted\"\ntargets = [{{ target = \"a/m\", weight = 1 }}, {{ target = \"b/m\", weight = 3 }}]\n{FAST}",
        providers(&[("a", &a), ("b", &b)])
    ))
    .await;
    for _ in 0..200 {
        assert_eq!(gw.chat(&chat_body("chat")).await.status, 200);
    }
    let share_b = b.requests() as f64 / 200.0;
    assert_eq!(a.requests() + b.requests(), 200);
    assert!((0.62..0.88).contains(&share_b), "b got {share_b}");
}

#[tokio::test]
async fn round_robin_and_the_strategy_header() {
    let (a, b) = (fake(Step::ok()).await, fake(Step::ok()).await);
    let gw = start(&format!("{}\n[models.chat]\ntargets = [\"a/m\", \"b/m\"]\n{FAST}", providers(&[("a", &a), ("b", &b)]))).await;
    // Priority by config: everything to a.
    for _ in 0..4 {
        assert_eq!(gw.chat(&chat_body("chat")).await.header("x-switchyard-provider"), "a");
    }
    // The header switches the strategy for one request at a time.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = gw.chat_with_headers(&chat_body("chat"), &[("x-switchyard-strategy", "round_robin")]).await;
        seen.push(r.header("x-switchyard-provider").to_owned());
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);
    let bad = gw.chat_with_headers(&chat_body("chat"), &[("x-switchyard-strategy", "fastest")]).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error()["code"], "invalid_header");
    assert!(bad.error()["message"].as_str().unwrap().contains("round_robin"), "{}", bad.text());
    let bad = gw.chat_with_headers(&chat_body("chat"), &[("x-switchyard-max-cost", "cheap")]).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn latency_moves_traffic_off_a_slow_target_and_back_when_it_recovers() {
    let a = fake(Step::ok().delayed(Duration::from_millis(60))).await;
    let b = fake(Step::ok().delayed(Duration::from_millis(25))).await;
    let gw = start(&format!("{}\n[models.chat]\nstrategy = \"latency\"\ntargets = [\"a/m\", \"b/m\"]\n{FAST}", providers(&[("a", &a), ("b", &b)]))).await;
    for _ in 0..60 {
        assert_eq!(gw.chat(&chat_body("chat")).await.status, 200);
    }
    assert!(b.requests() >= 45, "slow a still got {} of 60", a.requests());
    // a recovers (now faster than b): the strategy's exploration measures it again.
    a.set_default(Step::ok());
    for _ in 0..150 {
        assert_eq!(gw.chat(&chat_body("chat")).await.status, 200);
    }
    let (a0, b0) = (a.requests(), b.requests());
    for _ in 0..50 {
        assert_eq!(gw.chat(&chat_body("chat")).await.status, 200);
    }
    assert!(a.requests() - a0 >= 35, "a got {} of the last 50 (b {})", a.requests() - a0, b.requests() - b0);
}

#[tokio::test]
async fn least_busy_spreads_concurrent_requests() {
    let slow = || Step::ok().delayed(Duration::from_millis(150));
    let (a, b) = (fake(slow()).await, fake(slow()).await);
    let gw = Arc::new(start(&format!("{}\n[models.chat]\nstrategy = \"least_busy\"\ntargets = [\"a/m\", \"b/m\"]\n{FAST}", providers(&[("a", &a), ("b", &b)]))).await);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10 * i)).await;
            gw.chat(&chat_body("chat")).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!((a.requests(), b.requests()), (5, 5));
}

#[tokio::test]
async fn hedging_cuts_the_p99_of_a_bimodal_upstream() {
    // One request in five takes 400 ms on a.
    let bimodal = || {
        let mut s = Script::new().default_step(Step::ok());
        for i in 0..40 {
            s = s.then(if i % 5 == 4 { Step::ok().delayed(Duration::from_millis(400)) } else { Step::ok() });
        }
        s
    };
    let run = |hedge: &'static str| async move {
        let a = FakeUpstream::start(bimodal()).await;
        let b = fake(Step::ok().delayed(Duration::from_millis(5))).await;
        let gw = start(&format!("{}\n[models.chat]\ntargets = [\"a/m\", \"b/m\"]\n{hedge}\n{FAST}", providers(&[("a", &a), ("b", &b)]))).await;
        let mut times = Vec::new();
        for _ in 0..40 {
            let t = Instant::now();
            let r = gw.chat(&chat_body("chat")).await;
            assert_eq!(r.status, 200, "{}", r.text());
            times.push(t.elapsed());
        }
        times.sort();
        (times[39], a, b)
    };
    let (p99_plain, _, b_plain) = run("").await;
    assert_eq!(b_plain.requests(), 0);
    let (p99_hedged, a, b) = run("[models.chat.hedge]\nafter = \"50ms\"").await;
    assert!(p99_plain >= Duration::from_millis(400), "{p99_plain:?}");
    assert!(p99_hedged < Duration::from_millis(250), "hedged p99 {p99_hedged:?}");
    // The eight slow answers were hedged to b and the slow requests on a cancelled.
    assert_eq!(b.requests(), 8);
    eventually("the losing requests to be cancelled", Duration::from_secs(2), || a.cancelled() == 8).await;
}

#[tokio::test]
async fn a_hedged_stream_races_to_the_first_token() {
    // a takes 600 ms to its first token; b starts after the 50 ms hedge delay and wins.
    let a = fake(Step::reply("slow answer").delayed(Duration::from_millis(600))).await;
    let b = fake(Step::reply("fast answer")).await;
    let gw = start(&format!(
        "{}\n[models.chat]\ntargets = [\"a/m\", \"b/m\"]\n[models.chat.hedge]\nafter = \"50ms\"\n{FAST}",
        providers(&[("a", &a), ("b", &b)])
    ))
    .await;
    let t = Instant::now();
    let r = gw.chat(&stream_body("chat")).await;
    assert!(t.elapsed() < Duration::from_millis(400), "{:?}", t.elapsed());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(streamed_text(&chunks(&r.events())), "fast answer");
    assert_eq!(r.attempts(), 2);
    eventually("the slow stream to be cancelled", Duration::from_secs(2), || a.cancelled() == 1).await;
    // The hedge is counted on the target it was sent to, with its win.
    let admin = gw.get("/admin/providers").await.json();
    let target = |label: &str| admin["targets"].as_array().unwrap().iter().find(|t| t["target"] == label).cloned().unwrap();
    assert_eq!((target("b/m")["hedges"]["started"].as_u64(), target("b/m")["hedges"]["won"].as_u64()), (Some(1), Some(1)), "{admin}");
    assert_eq!(target("a/m")["hedges"]["started"], 0);
}

#[tokio::test]
async fn a_refusal_moves_on_when_asked_and_is_the_answer_when_all_refuse() {
    let refusing = || FakeUpstream::start(Script::new().finish_reason("content_filter"));
    let (a, b) = (refusing().await, fake(Step::reply("here you go")).await);
    let gw = start(&format!(
        "{}\n[models.chat]\ntargets = [\"a/m\", \"b/m\"]\nrefusal_fallback = true\n[models.plain]\ntargets = [\"a/m\", \"b/m\"]\n[models.all]\ntargets = [\"a/m\"]\nrefusal_fallback = true\n{FAST}",
        providers(&[("a", &a), ("b", &b)])
    ))
    .await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(r.json()["choices"][0]["message"]["content"], "here you go");
    let r = gw.chat(&chat_body("plain")).await;
    assert_eq!((r.header("x-switchyard-provider"), r.json()["choices"][0]["finish_reason"].as_str().unwrap()), ("a", "content_filter"));
    let r = gw.chat(&chat_body("all")).await;
    assert_eq!(r.status, 200, "the refusal is still an answer: {}", r.text());
    assert_eq!(r.json()["choices"][0]["finish_reason"], "content_filter");
}

#[tokio::test]
async fn when_everything_fails_the_static_answer_or_a_503_with_retry_after() {
    let dead = dead_base_url();
    let gw = start(&format!(
        "{}\n[models.chat]\ntargets = [\"a/m\"]\n[models.chat.on_exhausted]\naction = \"static\"\ncontent = \"We are busy; please retry in a minute.\"\n\
         [models.busy]\ntargets = [\"a/m\"]\n[models.busy.on_exhausted]\naction = \"unavailable\"\nretry_after = \"45s\"\n{FAST}",
        openai_provider("a", &dead, KEY_A)
    ))
    .await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-switchyard-provider"), "static");
    assert_eq!(r.json()["choices"][0]["message"]["content"], "We are busy; please retry in a minute.");
    let s = gw.chat(&stream_body("chat")).await;
    assert_eq!(streamed_text(&chunks(&s.events())), "We are busy; please retry in a minute.");
    let m = gw.post_raw("/v1/messages", r#"{"model":"chat","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}"#).await;
    assert_eq!(m.status, 200, "{}", m.text());
    assert_eq!(m.json()["content"][0]["text"], "We are busy; please retry in a minute.");
    let r = gw.chat(&chat_body("busy")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), "45");
    assert_eq!(r.error()["code"], "no_available_targets");
}

#[tokio::test]
async fn rules_pick_the_alias_by_header_user_and_metadata() {
    let (a, b, c) = (fake(Step::ok()).await, fake(Step::ok()).await, fake(Step::ok()).await);
    let gw = start(&format!(
        "{}\n[models.chat]\ntargets = [\"a/m\"]\n[models.cheap]\ntargets = [\"b/m\"]\n[models.eu]\ntargets = [\"c/m\"]\n\
         [[rules]]\nname = \"free tier\"\nheaders = {{ \"x-user-tier\" = \"free\" }}\nalias = \"cheap\"\n\
         [[rules]]\nmodels = [\"chat\"]\nmetadata = {{ region = [\"eu\", \"ch\"] }}\nalias = \"eu\"\n\
         [[rules]]\nuser = \"intern\"\nalias = \"cheap\"\n{FAST}",
        providers(&[("a", &a), ("b", &b), ("c", &c)])
    ))
    .await;
    let who = |r: &Resp| r.header("x-switchyard-provider").to_owned();
    assert_eq!(who(&gw.chat(&chat_body("chat")).await), "a");
    assert_eq!(who(&gw.chat_with_headers(&chat_body("chat"), &[("x-user-tier", "free")]).await), "b");
    assert_eq!(who(&gw.chat_with_headers(&chat_body("chat"), &[("x-user-tier", "pro")]).await), "a");
    let mut eu = chat_body("chat");
    eu["metadata"] = json!({"region": "ch"});
    assert_eq!(who(&gw.chat(&eu).await), "c");
    let mut intern = chat_body("chat");
    intern["user"] = json!("intern");
    assert_eq!(who(&gw.chat(&intern).await), "b");
    // The answer names the alias that served it (as OpenAI names the snapshot behind an alias).
    assert_eq!(gw.chat(&intern).await.json()["model"], "cheap");
}

#[tokio::test]
async fn under_usage_a_429_keeps_the_target_out_until_its_retry_after() {
    let a = FakeUpstream::start(Script::new().then(Step::rate_limited("30")).default_step(Step::ok())).await;
    let b = fake(Step::ok()).await;
    let gw = start(&format!(
        "{}\n[models.chat]\nstrategy = \"usage\"\ntargets = [\"a/m\", \"b/m\"]\n[models.chat.retry]\nattempts_per_target = 1\n{FAST}",
        providers(&[("a", &a), ("b", &b)])
    ))
    .await;
    assert_eq!(gw.chat(&chat_body("chat")).await.header("x-switchyard-provider"), "b");
    for _ in 0..5 {
        assert_eq!(gw.chat(&chat_body("chat")).await.header("x-switchyard-provider"), "b");
    }
    assert_eq!(a.requests(), 1, "a stays out for its Retry-After, not only until the next request");
}

/// An OpenAI-compatible upstream that reports its rate limits in `x-ratelimit-*` headers:
/// `remaining` requests of 100, counting down per request.
async fn rate_limited_upstream(remaining: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let count = count.clone();
            async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let left = remaining.saturating_sub(n + 1);
                let body = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
                (
                    [
                        ("content-type", "application/json".to_owned()),
                        ("x-ratelimit-limit-requests", "100".to_owned()),
                        ("x-ratelimit-remaining-requests", left.to_string()),
                        ("x-ratelimit-reset-requests", "30s".to_owned()),
                    ],
                    body.to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, served)
}

#[tokio::test]
async fn usage_prefers_the_target_with_rate_limit_headroom() {
    let (a, a_served) = rate_limited_upstream(5).await;
    let (b, b_served) = rate_limited_upstream(100).await;
    let gw = start(&format!(
        "{}{}\n[models.chat]\nstrategy = \"usage\"\ntargets = [\"a/m\", \"b/m\"]\n{FAST}",
        openai_provider("a", &format!("http://{a}/v1"), KEY_A),
        openai_provider("b", &format!("http://{b}/v1"), KEY_B)
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(gw.chat(&chat_body("chat")).await.status, 200);
    }
    // a answered first (headroom unknown: config order) and said 4 of 100 left; b, with
    // 99 of 100, then had more headroom for every request.
    assert_eq!(a_served.load(Ordering::SeqCst), 1);
    assert_eq!(b_served.load(Ordering::SeqCst), 19);
}

#[tokio::test]
async fn a_prompt_too_long_for_a_target_goes_to_the_long_context_alias() {
    let (a, b) = (fake(Step::ok()).await, fake(Step::ok()).await);
    let gw = start(&format!(
        "{}\n[models.chat]\ntargets = [{{ target = \"a/m\", context_window = 2000 }}]\ncontext_fallback = \"long\"\n[models.long]\ntargets = [{{ target = \"b/m\", context_window = 1000000 }}]\n{FAST}",
        providers(&[("a", &a), ("b", &b)])
    ))
    .await;
    assert_eq!(gw.chat(&chat_body("chat")).await.header("x-switchyard-provider"), "a");
    let mut long = chat_body("chat");
    long["messages"][1]["content"] = json!("the quick brown fox jumps over the lazy dog ".repeat(500));
    let r = gw.chat(&long).await;
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(a.requests(), 1, "a was never sent the long prompt");
    // Without a long-context alias, the caller learns why.
    let gw = start(&format!("{}\n[models.chat]\ntargets = [{{ target = \"a/m\", context_window = 2000 }}]\n{FAST}", providers(&[("a", &a)]))).await;
    let r = gw.chat(&long).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error()["code"], "unsupported_by_targets");
    assert!(r.error()["message"].as_str().unwrap().contains("context window of 2000"), "{}", r.text());
}

#[tokio::test]
async fn no_client_request_fails_while_one_target_is_healthy() {
    // a fails two requests in three, in every way it can; b is healthy.
    let mut script = Script::new().default_step(Step::ok());
    for i in 0..300 {
        script = script.then(match i % 6 {
            0 => Step::status(500),
            1 => Step::Reset,
            2 => Step::status(503),
            3 => Step::rate_limited("1"),
            _ => Step::ok(),
        });
    }
    let a = FakeUpstream::start(script).await;
    let b = fake(Step::ok()).await;
    for strategy in ["priority", "round_robin", "least_busy", "latency", "weighted"] {
        let gw = start(&format!(
            "{}\n[models.chat]\nstrategy = \"{strategy}\"\ntargets = [\"a/m\", \"b/m\"]\n[models.chat.breaker]\nfailures = 1000\n{FAST}",
            providers(&[("a", &a), ("b", &b)])
        ))
        .await;
        for i in 0..40 {
            let body = if i % 2 == 0 { chat_body("chat") } else { stream_body("chat") };
            let r = gw.chat(&body).await;
            assert_eq!(r.status, 200, "{strategy}: {}", r.text());
            if i % 2 == 1 {
                assert_eq!(streamed_text(&chunks(&r.events())), "Hello from the fake upstream.");
            }
        }
    }
}
