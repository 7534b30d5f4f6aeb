//! Streaming: chunks relayed in order and relabelled, failover that stays invisible while no
//! content has been sent, and an explicit error event (never a clean end) once it has.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use switchyard_fakes::{FakeUpstream, Reply, Script, Step};

#[tokio::test]
async fn stream_is_relayed_in_order_with_the_alias_and_done() {
    let step = Step::Ok { reply: Reply::Fixed("one two three four five".into()), chunks: 5, chunk_delay: Duration::from_millis(5) };
    let up = FakeUpstream::start(Script::new().default_step(step)).await;
    let gw = start(&one_target(&up, "")).await;

    let r = gw.chat(&stream_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("text/event-stream"), "{:?}", r.headers);
    assert_eq!(r.header("x-switchyard-provider"), "a");
    assert_eq!(r.header("x-switchyard-model"), "model-a");
    assert_eq!(r.attempts(), 1);
    let events = r.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1);
    let chunks = chunks(&events);
    // Preamble, 5 content chunks, the finish chunk.
    assert_eq!(chunks.len(), 7, "{events:#?}");
    let pieces: Vec<&str> = chunks[1..6].iter().map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap()).collect();
    assert_eq!(pieces, ["one ", "two ", "three ", "four ", "five"]);
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
    for c in &chunks {
        assert_eq!(c["model"], "chat", "every chunk carries the alias: {c}");
        assert_eq!(c["object"], "chat.completion.chunk");
    }
    assert_eq!(up.last_request().unwrap().body["model"], "model-a");
    assert_eq!(up.last_request().unwrap().body["stream"], true);
}

#[tokio::test]
async fn stream_with_include_usage_delivers_the_usage_chunk() {
    let up = FakeUpstream::start(Script::new()).await;
    let gw = start(&one_target(&up, "")).await;
    let mut body = stream_body("chat");
    body["stream_options"] = json!({"include_usage": true});

    let r = gw.chat(&body).await;

    assert_eq!(r.status, StatusCode::OK);
    let events = r.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = chunks(&events);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));
    assert_eq!(usage["prompt_tokens"], 8);
    assert_eq!(usage["completion_tokens"], 5);
    assert_eq!(usage["total_tokens"], 13);
    assert_eq!(up.last_request().unwrap().body["stream_options"], json!({"include_usage": true}));
}

// Bifrost #5395: a stream that fails before any content must fail over invisibly.
#[tokio::test]
async fn stream_error_after_preamble_fails_over_invisibly() {
    let a = FakeUpstream::start(Script::new().default_step(Step::PreambleThenError { message: "model crashed".into() })).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::reply("from the backup"))).await;
    let gw = start(&two_targets(&a, &b, "[models.chat.retry]\nattempts_per_target = 2\n")).await;

    let r = gw.chat(&stream_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(r.attempts(), 3);
    assert_eq!((a.requests(), b.requests()), (2, 1));
    let events = r.events();
    assert!(!r.text().contains("error") && !r.text().contains("crashed"), "{events:#?}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = chunks(&events);
    let preambles = chunks.iter().filter(|c| c["choices"][0]["delta"].get("role").is_some()).count();
    assert_eq!(preambles, 1, "one clean stream, not the failed attempt's preamble too: {events:#?}");
    assert_eq!(streamed_text(&chunks), "from the backup");
}

#[tokio::test]
async fn stream_request_answered_with_500_fails_over() {
    let a = FakeUpstream::start(Script::new().default_step(Step::status(500))).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&two_targets(&a, &b, "[models.chat.retry]\nattempts_per_target = 1\n")).await;

    let r = gw.chat(&stream_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("text/event-stream"));
    assert_eq!(r.header("x-switchyard-provider"), "b");
    let events = r.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(streamed_text(&chunks(&events)), "Hello from the fake upstream.");
    assert_eq!((a.requests(), b.requests()), (1, 1));
}

/// Asserts a stream that broke after content: the content so far, then one error event, and no
/// `[DONE]`. Returns the error object.
fn assert_broken_stream(events: &[String], content_chunks: usize, text: &str) -> Value {
    assert!(!events.iter().any(|e| e == "[DONE]"), "a broken stream must not end cleanly: {events:#?}");
    let (last, rest) = events.split_last().expect("events");
    let rest = chunks(rest);
    assert_eq!(rest.len(), 1 + content_chunks, "preamble and content before the error: {events:#?}");
    assert_eq!(streamed_text(&rest), text);
    let error: Value = serde_json::from_str(last).unwrap();
    let e = &error["error"];
    assert!(e["message"].is_string() && e["type"].is_string() && e["code"].is_string(), "{error}");
    e.clone()
}

// Portkey #1142: a stream that breaks mid-way must end with an error, not look complete.
#[tokio::test]
async fn mid_stream_drop_ends_with_an_error_event_and_no_done() {
    let a = FakeUpstream::start(Script::new().default_step(Step::DropAfter { after: 2 })).await;
    let gw = start(&one_target(&a, "[models.chat.retry]\nattempts_per_target = 2\n")).await;

    let r = gw.chat(&stream_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK);
    let e = assert_broken_stream(&r.events(), 2, "Hello from ");
    assert_eq!(e["type"], "server_error");
    assert_eq!(e["code"], "upstream_stream_error");
    assert_eq!(a.requests(), 1, "content was already sent: no retry");
}

// Portkey #1142, idle variant: a stream that stalls must end with an error once idle runs out.
#[tokio::test]
async fn mid_stream_stall_ends_with_an_idle_timeout_error_event() {
    let a = FakeUpstream::start(Script::new().default_step(Step::StallAfter { after: 2 })).await;
    let gw = start(&one_target(&a, "[models.chat.timeouts]\nidle = \"300ms\"\n")).await;

    let started = std::time::Instant::now();
    let r = gw.chat(&stream_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK);
    let e = assert_broken_stream(&r.events(), 2, "Hello from ");
    assert_eq!(e["code"], "upstream_idle_timeout");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(280) && took < Duration::from_secs(2), "took {took:?}");
    eventually("the stalled upstream to be cancelled", Duration::from_secs(1), || a.cancelled() == 1).await;
}
