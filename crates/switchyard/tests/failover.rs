//! Retries and failover along a chain: which upstream failures are retried, which move on to the
//! next target, which go straight back to the caller, and what the caller gets when every
//! target fails.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use switchyard_fakes::{FakeUpstream, Script, Step};

#[tokio::test]
async fn server_error_is_retried_then_fails_over_to_the_next_target() {
    let a = FakeUpstream::start(Script::new().default_step(Step::status(500))).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&two_targets(&a, &b, "[models.chat.retry]\nattempts_per_target = 2\n")).await;

    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(r.header("x-switchyard-model"), "model-b");
    assert_eq!(r.attempts(), 3);
    assert_eq!(r.json()["model"], "chat");
    assert_eq!((a.requests(), b.requests()), (2, 1));
}

#[tokio::test]
async fn connection_refused_fails_over() {
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&two_targets_at(&dead_base_url(), &b.base_url(), "[models.chat.retry]\nattempts_per_target = 2\n")).await;

    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(r.attempts(), 3, "two refused connections, then the answer");
    assert_eq!(b.requests(), 1);
}

#[tokio::test]
async fn connection_reset_is_retried_on_the_same_target() {
    let a = FakeUpstream::start(Script::new().then(Step::Reset)).await;
    let gw = start(&one_target(&a, "[models.chat.retry]\nattempts_per_target = 2\n")).await;

    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "a");
    assert_eq!(r.attempts(), 2);
    assert_eq!(a.requests(), 2);
}

#[tokio::test]
async fn bad_request_goes_back_to_the_caller_once_without_failover() {
    for code in [400u16, 422] {
        let a = FakeUpstream::start(Script::new().default_step(Step::status(code))).await;
        let b = FakeUpstream::start(Script::new()).await;
        let gw = start(&two_targets(&a, &b, "[models.chat.retry]\nattempts_per_target = 3\n")).await;

        let r = gw.chat(&chat_body("chat")).await;

        assert_eq!(r.status.as_u16(), code, "{}", r.text());
        let e = r.error();
        let expected = if code == 400 { "Invalid request." } else { "The request failed." };
        assert_eq!(e["message"], expected, "the upstream's own message");
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(r.attempts(), 1);
        assert_eq!((a.requests(), b.requests()), (1, 0), "{code}: sent once, no retry, no failover");
    }
}

#[tokio::test]
async fn context_length_error_moves_on_without_retrying() {
    let a = FakeUpstream::start(Script::new().default_step(Step::context_length())).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&two_targets(&a, &b, "[models.chat.retry]\nattempts_per_target = 3\n")).await;

    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(r.attempts(), 2);
    assert_eq!((a.requests(), b.requests()), (1, 1));
}

#[tokio::test]
async fn auth_and_not_found_errors_move_on_without_retrying() {
    for code in [401u16, 403, 404] {
        let a = FakeUpstream::start(Script::new().default_step(Step::status(code))).await;
        let b = FakeUpstream::start(Script::new()).await;
        let gw = start(&two_targets(&a, &b, "[models.chat.retry]\nattempts_per_target = 3\n")).await;

        let r = gw.chat(&chat_body("chat")).await;

        assert_eq!(r.status, StatusCode::OK, "{code}: {}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), "b");
        assert_eq!(r.attempts(), 2, "{code}");
        assert_eq!((a.requests(), b.requests()), (1, 1), "{code}: no retry of the first target");
    }
}

#[tokio::test]
async fn retry_after_is_honoured_before_retrying() {
    let a = FakeUpstream::start(Script::new().then(Step::rate_limited("1"))).await;
    let gw = start(&one_target(&a, "[models.chat.retry]\nattempts_per_target = 2\n")).await;

    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.attempts(), 2);
    let rec = a.recorded();
    assert_eq!(rec.len(), 2);
    let gap = rec[1].at - rec[0].at;
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}, before the 1 s Retry-After");
}

#[tokio::test]
async fn retry_after_ms_is_honoured_before_retrying() {
    let limited = Step::Status {
        code: 429,
        message: "slow down".into(),
        error_type: "requests".into(),
        error_code: Some("rate_limit_exceeded".into()),
        retry_after: None,
        retry_after_ms: Some("300".into()),
    };
    let a = FakeUpstream::start(Script::new().then(limited)).await;
    let gw = start(&one_target(&a, "[models.chat.retry]\nattempts_per_target = 2\n")).await;

    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let rec = a.recorded();
    assert_eq!(rec.len(), 2);
    let gap = rec[1].at - rec[0].at;
    // The configured backoff is at most 20ms, so only retry-after-ms explains the wait.
    assert!(gap >= Duration::from_millis(280), "retried after {gap:?}, before retry-after-ms 300");
}

#[tokio::test]
async fn retry_after_beyond_the_cap_moves_on_immediately() {
    let a = FakeUpstream::start(Script::new().default_step(Step::rate_limited("5"))).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&two_targets(&a, &b, "[models.chat.retry]\nattempts_per_target = 3\nretry_after_cap = \"500ms\"\n")).await;

    let started = Instant::now();
    let r = gw.chat(&chat_body("chat")).await;
    let took = started.elapsed();

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!((a.requests(), b.requests()), (1, 1));
    assert!(took < Duration::from_millis(500), "took {took:?}: waited for a Retry-After above the cap");
}

#[tokio::test]
async fn all_targets_rate_limited_gives_429_listing_every_target() {
    let a = FakeUpstream::start(Script::new().default_step(Step::status(429))).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::status(429))).await;
    let gw = start(&two_targets(&a, &b, "[models.chat.retry]\nattempts_per_target = 2\n")).await;

    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.attempts(), 4);
    assert_eq!((a.requests(), b.requests()), (2, 2));
    let e = r.error();
    assert_eq!(e["type"], "rate_limit_error");
    assert_eq!(e["code"], "rate_limit_exceeded");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("a/model-a") && message.contains("b/model-b"), "{message}");
    assert_no_keys(&r.text());
}

#[tokio::test]
async fn all_targets_failing_with_server_errors_gives_5xx() {
    for (upstream, expected) in [(500u16, 502u16), (503, 503)] {
        let a = FakeUpstream::start(Script::new().default_step(Step::status(upstream))).await;
        let b = FakeUpstream::start(Script::new().default_step(Step::status(upstream))).await;
        let gw = start(&two_targets(&a, &b, "[models.chat.retry]\nattempts_per_target = 1\n")).await;

        let r = gw.chat(&chat_body("chat")).await;

        assert_eq!(r.status.as_u16(), expected, "upstream {upstream}: {}", r.text());
        let e = r.error();
        assert_eq!(e["type"], "server_error");
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("a/model-a") && message.contains("b/model-b"), "{message}");
        assert_eq!(r.attempts(), 2);
        assert_no_keys(&r.text());
    }
}

#[tokio::test]
async fn all_targets_hanging_past_first_byte_gives_504() {
    let a = FakeUpstream::start(Script::new().default_step(Step::Hang)).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::Hang)).await;
    let extra = "[models.chat.retry]\nattempts_per_target = 1\n[models.chat.timeouts]\nfirst_byte = \"200ms\"\n";
    let gw = start(&two_targets(&a, &b, extra)).await;

    let started = Instant::now();
    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
    assert_eq!(r.error()["type"], "server_error");
    assert_eq!(r.attempts(), 2);
    assert_no_keys(&r.text());
    assert!(started.elapsed() < Duration::from_secs(2));
    // The abandoned upstream requests were cancelled, not left running.
    eventually("both hung requests to be cancelled", Duration::from_secs(1), || a.cancelled() + b.cancelled() == 2).await;
}

#[tokio::test]
async fn max_attempts_bounds_attempts_across_targets() {
    let a = FakeUpstream::start(Script::new().default_step(Step::status(500))).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::status(500))).await;
    let extra = "[models.chat.retry]\nattempts_per_target = 2\nmax_attempts = 3\n";
    let gw = start(&two_targets(&a, &b, extra)).await;

    let r = gw.chat(&chat_body("chat")).await;

    assert!(r.status.is_server_error(), "{}", r.text());
    assert_eq!(r.attempts(), 3);
    assert_eq!((a.requests(), b.requests()), (2, 1));
}

#[tokio::test]
async fn total_timeout_bounds_the_whole_call() {
    let a = FakeUpstream::start(Script::new().default_step(Step::Hang)).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::Hang)).await;
    // Without `total`, 2 targets x 3 tries x 400ms would take 2.4 s; the second try must be cut
    // short at the deadline, not run its full first_byte (which would end at 800ms).
    let extra = "[models.chat.retry]\nattempts_per_target = 3\n[models.chat.timeouts]\nfirst_byte = \"400ms\"\ntotal = \"500ms\"\n";
    let gw = start(&two_targets(&a, &b, extra)).await;

    let started = Instant::now();
    let r = gw.chat(&chat_body("chat")).await;
    let took = started.elapsed();

    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(750), "took {took:?}");
}

#[tokio::test]
async fn upstream_error_messages_that_echo_the_key_are_redacted() {
    let echo_key = |code: u16, key: &str| Step::Status {
        code,
        message: format!("Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."),
        error_type: "invalid_request_error".into(),
        error_code: Some("invalid_api_key".into()),
        retry_after: None,
        retry_after_ms: None,
    };
    // Every target fails: the summary quotes each upstream message.
    let a = FakeUpstream::start(Script::new().default_step(echo_key(401, KEY_A))).await;
    let b = FakeUpstream::start(Script::new().default_step(echo_key(401, KEY_B))).await;
    let gw = start(&two_targets(&a, &b, "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert!(r.status.is_server_error(), "{}", r.text());
    assert!(r.text().contains("Incorrect API key provided"), "{}", r.text());
    assert_no_keys(&r.text());

    // A caller error is passed through with the upstream's message: redacted too.
    let a = FakeUpstream::start(Script::new().default_step(echo_key(400, KEY_A))).await;
    let gw = start(&one_target(&a, "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_no_keys(&r.text());
}

#[tokio::test]
async fn provider_level_retry_settings_apply_to_its_targets() {
    let a = FakeUpstream::start(Script::new().default_step(Step::status(503))).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&two_targets(&a, &b, "[providers.a.retry]\nattempts_per_target = 3\n")).await;

    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.attempts(), 4);
    assert_eq!((a.requests(), b.requests()), (3, 1));
}
