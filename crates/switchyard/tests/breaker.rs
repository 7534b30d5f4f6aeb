//! Circuit breakers: an open breaker skips its target without any network call, a probe after
//! the cooldown closes or re-opens it, and readiness follows the breakers.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use switchyard_fakes::{FakeUpstream, Script, Step};

const COOLDOWN: Duration = Duration::from_millis(400);

/// Breaker opening after 2 failures for 400ms; one try per target.
const BREAKER: &str = "[models.chat.retry]\nattempts_per_target = 1\n[models.chat.breaker]\nfailures = 2\ncooldown = \"400ms\"\n";

/// Opens `a`'s breaker behind alias `chat = [a, b]` (a failing, b healthy).
async fn open_first_breaker(gw: &TestGateway, a: &FakeUpstream) {
    for n in 1..=2 {
        let r = gw.chat(&chat_body("chat")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), "b");
        assert_eq!(r.attempts(), 2);
        assert_eq!(a.requests(), n);
    }
}

#[tokio::test]
async fn open_breaker_skips_the_target_then_a_successful_probe_closes_it() {
    let a = FakeUpstream::start(Script::new().default_step(Step::status(500))).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&two_targets(&a, &b, BREAKER)).await;
    open_first_breaker(&gw, &a).await;

    // Open: nothing is sent to the first target.
    for _ in 0..3 {
        let r = gw.chat(&chat_body("chat")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-switchyard-provider"), "b");
        assert_eq!(r.attempts(), 1);
    }
    assert_eq!(a.requests(), 2, "an open breaker sends nothing");
    assert_eq!(gw.get("/ready").await.status, StatusCode::OK, "the second target is still usable");

    // After the cooldown, one probe goes through; the target has recovered.
    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    a.set_default(Step::ok());
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-switchyard-provider"), "a");
    assert_eq!(r.attempts(), 1);
    assert_eq!(a.requests(), 3);

    // Closed again: traffic returns to the first target.
    for n in 4..=5 {
        let r = gw.chat(&chat_body("chat")).await;
        assert_eq!(r.header("x-switchyard-provider"), "a");
        assert_eq!(a.requests(), n);
    }
}

#[tokio::test]
async fn a_failed_half_open_probe_reopens_the_breaker() {
    let a = FakeUpstream::start(Script::new().default_step(Step::status(500))).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&two_targets(&a, &b, BREAKER)).await;
    open_first_breaker(&gw, &a).await;

    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(r.attempts(), 2, "the probe, then the second target");
    assert_eq!(a.requests(), 3);

    // The probe failed: open again, nothing sent.
    for _ in 0..3 {
        let r = gw.chat(&chat_body("chat")).await;
        assert_eq!(r.header("x-switchyard-provider"), "b");
        assert_eq!(r.attempts(), 1);
    }
    assert_eq!(a.requests(), 3);
}

#[tokio::test]
async fn single_target_alias_with_open_breaker_gets_503_with_retry_after_and_no_attempt() {
    let a = FakeUpstream::start(Script::new().default_step(Step::status(500))).await;
    let gw = start(&one_target(&a, BREAKER)).await;
    for _ in 0..2 {
        let r = gw.chat(&chat_body("chat")).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
        assert_eq!(r.attempts(), 1);
    }

    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.attempts(), 0);
    assert_eq!(r.header("retry-after"), "1", "the 400ms left of the cooldown, rounded up");
    assert_eq!(r.error()["type"], "server_error");
    assert_no_keys(&r.text());
    assert_eq!(a.requests(), 2);
    let ready = gw.get("/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.text());
    assert!(ready.text().contains("chat"), "{}", ready.text());
}

// LiteLLM #40405: every request pays all retries during an outage.
#[tokio::test]
async fn a_dead_target_costs_nothing_per_request_once_its_breaker_is_open() {
    let b = FakeUpstream::start(Script::new()).await;
    let attempts_per_target = 2;
    let extra = format!("[models.chat.retry]\nattempts_per_target = {attempts_per_target}\n[models.chat.breaker]\nfailures = 3\ncooldown = \"30s\"\n");
    let gw = start(&two_targets_at(&dead_base_url(), &b.base_url(), &extra)).await;

    let mut sent = 0;
    for _ in 0..20 {
        let r = gw.chat(&chat_body("chat")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), "b");
        sent += r.attempts();
    }

    assert!(sent <= 20 + 3 * attempts_per_target, "{sent} upstream attempts for 20 requests");
    assert_eq!(b.requests(), 20);
}

#[tokio::test]
async fn only_one_probe_goes_out_while_half_open() {
    let a = FakeUpstream::start(Script::new().default_step(Step::status(500))).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&two_targets(&a, &b, BREAKER)).await;
    open_first_breaker(&gw, &a).await;
    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    a.set_default(Step::ok().delayed(Duration::from_millis(300)));

    let body = chat_body("chat");
    let (probe, others) = tokio::join!(gw.chat(&body), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut served = Vec::new();
        for _ in 0..3 {
            let r = gw.chat(&chat_body("chat")).await;
            served.push((r.header("x-switchyard-provider").to_owned(), r.attempts()));
        }
        served
    });

    assert_eq!(probe.header("x-switchyard-provider"), "a");
    assert_eq!(others, vec![("b".to_owned(), 1); 3], "requests during the probe skip the first target");
    assert_eq!(a.requests(), 3, "exactly one probe");
}

// A short rate-limit burst must not take a target out for the whole cooldown: a breaker opened
// by 429s with Retry-After stays open only for the Retry-After.
#[tokio::test]
async fn a_rate_limit_burst_opens_the_breaker_only_for_its_retry_after() {
    let a = FakeUpstream::start(Script::new().times(2, Step::rate_limited("1"))).await;
    let extra = "[models.chat.retry]\nattempts_per_target = 1\n[models.chat.breaker]\nfailures = 2\ncooldown = \"60s\"\n";
    let gw = start(&one_target(&a, extra)).await;
    for _ in 0..2 {
        assert_eq!(gw.chat(&chat_body("chat")).await.status, StatusCode::TOO_MANY_REQUESTS);
    }
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "open right after the burst: {}", r.text());
    assert_eq!(a.requests(), 2);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "probed after the Retry-After, not the 60s cooldown: {}", r.text());
    assert_eq!(a.requests(), 3);
}
