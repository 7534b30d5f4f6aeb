//! Mid-stream recovery (`[models.ALIAS.stream] recover = true`) and the stream commit threshold
//! (`commit_chunks` / `commit_within`), end to end against fake upstreams: a stream that breaks
//! after content continues on the next target as one coherent stream (OpenAI and Anthropic
//! ingress), the continuation request carries the partial answer, usage is summed, and without
//! `recover` (or when recovery fails) the stream still ends with an explicit error event.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use switchyard_core::router::recover::CONTINUE_INSTRUCTION;
use switchyard_core::wire::openai::features::RequestFeatures;
use switchyard_fakes::anthropic::{Answer, AnthropicScript, AnthropicStep, FakeAnthropic};
use switchyard_fakes::{FakeUpstream, Reply, Script, Step};

const RECOVER: &str = "[models.chat.stream]\nrecover = true\n";
/// What a broken `DropAfter { after: 2 }` / `ErrorAfter` / `StallAfter` stream said first.
const PART_A: &str = "Hello from ";
const PART_B: &str = "the other side.";

fn with_usage(mut body: Value) -> Value {
    body["stream_options"] = json!({"include_usage": true});
    body
}

/// The fake's usage count for a request: every whitespace-separated word of the messages.
fn fake_prompt_tokens(body: &Value) -> u64 {
    body["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap_or("").split_whitespace().count() as u64).sum()
}

/// The gateway's estimate of the broken part: the caller's prompt and the partial text.
fn estimated_part_a(caller_body: &Value) -> (u64, u64) {
    let prompt = RequestFeatures::parse(caller_body.to_string().as_bytes()).prompt_tokens("model-a");
    (prompt, switchyard_core::tokens::count("model-a", PART_A))
}

/// A (`a/model-a`) drops its stream after [`PART_A`]; B (`b/model-b`) performs `b_step`; the
/// gateway's alias `chat` is `[a, b]` with `extra` settings.
async fn a_breaks_then(b_step: Step, extra: &str) -> (FakeUpstream, FakeUpstream, TestGateway) {
    let a = FakeUpstream::start(Script::new().default_step(Step::DropAfter { after: 2 })).await;
    let b = FakeUpstream::start(Script::new().default_step(b_step)).await;
    let gw = start(&two_targets(&a, &b, extra)).await;
    (a, b, gw)
}

fn marker() -> Value {
    json!({"recovered": true, "from": "a/model-a", "to": "b/model-b"})
}

/// Asserts `events` are one clean OpenAI stream: a single role preamble, one id and model, the
/// text, a finish chunk and `[DONE]`. Returns the chunks.
fn assert_one_stream(events: &[String], text: &str) -> Vec<Value> {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:#?}");
    let chunks = chunks(events);
    assert!(chunks.iter().all(|c| c.get("error").is_none()), "{events:#?}");
    assert_eq!(streamed_text(&chunks), text);
    let id = chunks[0]["id"].as_str().unwrap();
    for c in &chunks {
        assert_eq!((c["id"].as_str(), c["model"].as_str(), &c["created"]), (Some(id), Some("chat"), &chunks[0]["created"]), "{c}");
    }
    let roles = chunks.iter().filter(|c| c["choices"][0]["delta"].get("role").is_some()).count();
    assert_eq!(roles, 1, "one role preamble: {events:#?}");
    let finishes: Vec<&Value> = chunks.iter().filter(|c| c["choices"][0]["finish_reason"].is_string()).collect();
    assert_eq!(finishes.len(), 1, "{events:#?}");
    chunks
}

// Each way a committed stream breaks (an error event, a dropped connection, an idle stall) is
// recovered on the next target; the client sees one stream with A's part then B's.
#[tokio::test]
async fn a_stream_broken_after_content_continues_on_the_next_target() {
    let breaks = [
        ("error event", Step::ErrorAfter { after: 2, message: "model crashed".into() }),
        ("dropped connection", Step::DropAfter { after: 2 }),
        ("idle stall", Step::StallAfter { after: 2 }),
    ];
    for (how, step) in breaks {
        let a = FakeUpstream::start(Script::new().default_step(step)).await;
        let b = FakeUpstream::start(Script::new().default_step(Step::reply(PART_B))).await;
        let gw = start(&two_targets(&a, &b, &format!("{RECOVER}[models.chat.timeouts]\nidle = \"300ms\"\n"))).await;

        let body = stream_body("chat");
        let r = gw.chat(&body).await;

        assert_eq!(r.status, StatusCode::OK, "{how}");
        let chunks = assert_one_stream(&r.events(), &format!("{PART_A}{PART_B}"));
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "stop", "{how}");
        assert_eq!(last["switchyard"], marker(), "{how}: the end is marked");
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c.get("switchyard").is_none()), "{how}");
        assert_eq!((r.header("x-switchyard-provider"), r.attempts()), ("a", 1), "{how}: headers went out with A's stream");
        assert_eq!((a.requests(), b.requests()), (1, 1), "{how}");

        // B was asked to continue the conversation from the partial answer.
        let sent = b.last_request().unwrap().body;
        assert_eq!(sent["model"], "model-b");
        assert_eq!(sent["stream"], true);
        assert_eq!(
            sent["messages"],
            json!([
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hello to the gateway"},
                {"role": "assistant", "content": PART_A},
                {"role": "user", "content": CONTINUE_INSTRUCTION},
            ]),
            "{how}"
        );
    }
}

#[tokio::test]
async fn a_recovered_stream_reports_the_usage_of_both_parts() {
    let (_a, b, gw) = a_breaks_then(Step::reply(PART_B), RECOVER).await;

    let body = with_usage(stream_body("chat"));
    let r = gw.chat(&body).await;

    let events = r.events();
    let chunks = chunks(&events);
    assert_eq!(streamed_text(&chunks), format!("{PART_A}{PART_B}"));
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]), "the usage chunk comes last: {events:#?}");
    let (a_prompt, a_completion) = estimated_part_a(&body);
    let b_prompt = fake_prompt_tokens(&b.last_request().unwrap().body);
    let usage = &usage_chunk["usage"];
    assert_eq!(usage["prompt_tokens"], a_prompt + b_prompt, "{usage}");
    assert_eq!(usage["completion_tokens"], a_completion + 3, "{usage}");
    assert_eq!(usage["total_tokens"], a_prompt + b_prompt + a_completion + 3, "{usage}");
    assert_eq!(usage_chunk["switchyard"], marker());
    let finish = chunks.iter().find(|c| c["choices"][0]["finish_reason"].is_string()).unwrap();
    assert_eq!(finish["switchyard"], marker());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

// A broken target's failure still counts against its breaker: the next call skips it.
#[tokio::test]
async fn the_broken_target_is_charged_a_failure() {
    let (a, b, gw) = a_breaks_then(Step::reply(PART_B), &format!("{RECOVER}[models.chat.breaker]\nfailures = 1\ncooldown = \"60s\"\n")).await;

    let first = gw.chat(&stream_body("chat")).await;
    assert_one_stream(&first.events(), &format!("{PART_A}{PART_B}"));
    let second = gw.chat(&stream_body("chat")).await;

    assert_eq!(second.header("x-switchyard-provider"), "b");
    assert_eq!(streamed_text(&chunks(&second.events())), PART_B);
    assert_eq!((a.requests(), b.requests()), (1, 2), "A's breaker opened on the mid-stream failure");
}

// Anthropic continues an assistant prefill itself: no instruction, no trailing whitespace.
#[tokio::test]
async fn a_prefilling_provider_gets_the_partial_answer_as_the_last_message() {
    let a = FakeUpstream::start(Script::new().default_step(Step::DropAfter { after: 2 })).await;
    let claude = FakeAnthropic::start(AnthropicScript::new().default_step(Answer::text(PART_B))).await;
    let toml = format!(
        "{}[providers.b]\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"k\"\n\n[models.chat]\ntargets = [\"a/model-a\", \"b/model-b\"]\n{FAST}\n{RECOVER}",
        openai_provider("a", &a.base_url(), KEY_A),
        claude.base_url()
    );
    let gw = start(&toml).await;

    let r = gw.chat(&stream_body("chat")).await;

    assert_one_stream(&r.events(), &format!("{PART_A}{PART_B}"));
    let sent = claude.last_request().unwrap().body;
    assert_eq!(sent["system"], "You are terse.");
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{sent}");
    assert_eq!(messages[1]["role"], "assistant");
    assert!(serde_json::to_string(&messages[1]["content"]).unwrap().contains("Hello from\""), "no trailing whitespace: {sent}");
    assert!(!sent.to_string().contains(CONTINUE_INSTRUCTION));
}

#[tokio::test]
async fn without_recover_a_broken_stream_still_ends_with_an_error_event() {
    let (_a, b, gw) = a_breaks_then(Step::reply(PART_B), "").await;

    let r = gw.chat(&stream_body("chat")).await;

    let events = r.events();
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:#?}");
    let error: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "upstream_stream_error");
    assert_eq!(streamed_text(&chunks(&events[..events.len() - 1])), PART_A);
    assert_eq!(b.requests(), 0, "no recovery unless asked for");
}

#[tokio::test]
async fn a_recovery_that_fails_everywhere_ends_with_an_error_event() {
    let (_a, b, gw) = a_breaks_then(Step::status(503), &format!("{RECOVER}[models.chat.retry]\nattempts_per_target = 2\n")).await;

    let r = gw.chat(&stream_body("chat")).await;

    let events = r.events();
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:#?}");
    let error: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "upstream_stream_error", "{error}");
    let before: Vec<Value> = chunks(&events[..events.len() - 1]);
    assert_eq!(streamed_text(&before), PART_A);
    assert!(before.iter().all(|c| c.get("switchyard").is_none()));
    assert_eq!(b.requests(), 2, "B was retried as any target is");
}

// The attempt budget covers recovery too: with one attempt left nothing more is sent.
#[tokio::test]
async fn recovery_respects_the_attempt_budget() {
    let (_a, b, gw) = a_breaks_then(Step::reply(PART_B), &format!("{RECOVER}[models.chat.retry]\nmax_attempts = 1\n")).await;

    let r = gw.chat(&stream_body("chat")).await;

    let events = r.events();
    let error: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "upstream_stream_error");
    assert_eq!(b.requests(), 0);
}

// ---------------------------------------------------------------------------------------------
// /v1/messages

async fn post_messages(gw: &TestGateway, body: &Value) -> Resp {
    let headers = [("x-api-key", "client-key"), ("anthropic-version", "2023-06-01")];
    gw.send(gw.post_request("/v1/messages", Bytes::from(body.to_string()), &headers)).await
}

fn messages_body() -> Value {
    json!({"model": "chat", "max_tokens": 256, "stream": true, "system": "You are terse.",
           "messages": [{"role": "user", "content": "Say hello to the gateway"}]})
}

/// (name, JSON) of each Anthropic SSE event.
fn anthropic_events(r: &Resp) -> Vec<(String, Value)> {
    r.text()
        .split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e.strip_prefix("event: ").and_then(|e| e.split_once("\ndata: ")).unwrap_or_else(|| panic!("framing: {e:?}"));
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_messages_stream_is_recovered_as_one_anthropic_message() {
    let a = FakeUpstream::start(Script::new().default_step(Step::ErrorAfter { after: 2, message: "model crashed".into() })).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::reply(PART_B))).await;
    let gw = start(&two_targets(&a, &b, RECOVER)).await;

    let r = post_messages(&gw, &messages_body()).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let events = anthropic_events(&r);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.iter().filter(|n| **n == "message_start").count(), 1, "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "content_block_start").count(), 1, "one text block: {names:?}");
    assert_eq!(&names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    let text: String = events.iter().filter_map(|(_, e)| e.pointer("/delta/text").and_then(Value::as_str)).collect();
    assert_eq!(text, format!("{PART_A}{PART_B}"));
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["delta"]["switchyard"], marker(), "{delta}");
    let b_sent = b.last_request().unwrap().body;
    let b_prompt = fake_prompt_tokens(&b_sent);
    assert_eq!(delta["usage"]["output_tokens"], switchyard_core::tokens::count("model-a", PART_A) + 3, "{delta}");
    assert!(delta["usage"]["input_tokens"].as_u64().unwrap() > b_prompt, "both prompts count: {delta}");
    let messages = b_sent["messages"].as_array().unwrap();
    assert_eq!(messages[messages.len() - 2], json!({"role": "assistant", "content": PART_A}));
}

// Native passthrough (an Anthropic target answering /v1/messages in its own events) is not
// recovered: the stream ends with an error event as without `recover`.
#[tokio::test]
async fn a_native_anthropic_stream_is_not_recovered() {
    let claude = FakeAnthropic::start(AnthropicScript::new().default_step(AnthropicStep::DropAfter { after: 2 })).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::reply(PART_B))).await;
    let toml = format!(
        "[providers.a]\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"k\"\n{}\n[models.chat]\ntargets = [\"a/model-a\", \"b/model-b\"]\n{FAST}\n{RECOVER}",
        claude.base_url(),
        openai_provider("b", &b.base_url(), KEY_B),
    );
    let gw = start(&toml).await;

    let r = post_messages(&gw, &messages_body()).await;

    let events = anthropic_events(&r);
    assert_eq!(events.last().unwrap().0, "error", "{}", r.text());
    assert_eq!(b.requests(), 0);
}

// ---------------------------------------------------------------------------------------------
// The commit threshold

// A failure within `commit_chunks` content chunks fails over invisibly: nothing of A reaches
// the client.
#[tokio::test]
async fn a_failure_inside_the_commit_threshold_fails_over_invisibly() {
    for step in [Step::DropAfter { after: 2 }, Step::ErrorAfter { after: 2, message: "model crashed".into() }] {
        let a = FakeUpstream::start(Script::new().default_step(step)).await;
        let b = FakeUpstream::start(Script::new().default_step(Step::ok())).await;
        let gw = start(&two_targets(&a, &b, "[models.chat.stream]\ncommit_chunks = 5\n[models.chat.retry]\nattempts_per_target = 1\n")).await;

        let r = gw.chat(&stream_body("chat")).await;

        assert_eq!(r.header("x-switchyard-provider"), "b");
        assert_eq!(r.attempts(), 2);
        let chunks = assert_one_stream(&r.events(), "Hello from the fake upstream.");
        assert!(chunks.iter().all(|c| c.get("switchyard").is_none()));
        assert_eq!((a.requests(), b.requests()), (1, 1));
    }
}

// A short answer that ends inside the threshold is relayed whole.
#[tokio::test]
async fn an_answer_shorter_than_the_commit_threshold_is_relayed_whole() {
    let a = FakeUpstream::start(Script::new().default_step(Step::reply("Just two."))).await;
    let gw = start(&one_target(&a, "[models.chat.stream]\ncommit_chunks = 5\n")).await;

    let r = gw.chat(&with_usage(stream_body("chat"))).await;

    let chunks = assert_one_stream(&r.events(), "Just two.");
    assert!(chunks.last().unwrap()["usage"]["completion_tokens"].as_u64().is_some());
}

// `commit_within` bounds the hold: an upstream that sends one content chunk and then stalls is
// committed after `commit_within`, not after `first_byte`.
#[tokio::test]
async fn commit_within_bounds_how_long_chunks_are_held() {
    let a = FakeUpstream::start(Script::new().default_step(Step::StallAfter { after: 1 })).await;
    let gw = start(&one_target(&a, "[models.chat.stream]\ncommit_chunks = 5\ncommit_within = \"200ms\"\n[models.chat.timeouts]\nfirst_byte = \"3s\"\nidle = \"3s\"\n")).await;

    let started = Instant::now();
    let resp = gw.open(&stream_body("chat")).await;
    let head = started.elapsed();
    let mut body = resp.into_body();
    let events = read_events(&mut body, 2).await;
    let took = started.elapsed();

    assert!(head >= Duration::from_millis(180), "the stream was held for commit_within: {head:?}");
    assert!(took < Duration::from_secs(2), "held past commit_within: {took:?}");
    assert_eq!(streamed_text(&chunks(&events)), "Hello ");
}

// Chunks arriving steadily inside `commit_within` are held until `commit_chunks` is reached,
// then relayed in order.
#[tokio::test]
async fn chunks_are_held_until_the_threshold_then_relayed_in_order() {
    let a = FakeUpstream::start(Script::new().default_step(Step::Ok {
        reply: Reply::Fixed("one two three four five six".into()),
        chunks: 6,
        chunk_delay: Duration::from_millis(30),
    }))
    .await;
    let gw = start(&one_target(&a, "[models.chat.stream]\ncommit_chunks = 3\ncommit_within = \"2s\"\n")).await;

    let started = Instant::now();
    let resp = gw.open(&stream_body("chat")).await;
    let head = started.elapsed();
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        if let Ok(data) = frame.unwrap().into_data() {
            buf.extend_from_slice(&data);
        }
    }

    assert!(head >= Duration::from_millis(80), "three chunks 30 ms apart were held: {head:?}");
    assert_one_stream(&sse_data(&buf), "one two three four five six");
}

// An upstream that stalls longer than `idle` while its chunks are held is dead before anything
// reached the client: it fails over invisibly instead of being committed and then broken.
#[tokio::test]
async fn a_stall_inside_the_commit_threshold_fails_over_invisibly() {
    let a = FakeUpstream::start(Script::new().default_step(Step::StallAfter { after: 1 })).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::ok())).await;
    let gw = start(&two_targets(&a, &b, "[models.chat.stream]\ncommit_chunks = 5\n[models.chat.timeouts]\nidle = \"300ms\"\nfirst_byte = \"3s\"\n[models.chat.retry]\nattempts_per_target = 1\n")).await;

    let started = Instant::now();
    let r = gw.chat(&stream_body("chat")).await;

    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_one_stream(&r.events(), "Hello from the fake upstream.");
    assert!(started.elapsed() < Duration::from_secs(2), "failed over after idle, not first_byte: {:?}", started.elapsed());
    eventually("the stalled upstream to be cancelled", Duration::from_secs(1), || a.cancelled() == 1).await;
}

// ---------------------------------------------------------------------------------------------
// Committing on the upstream's head (`commit = "head"`)

const ON_HEAD: &str = "[models.chat.stream]\ncommit = \"head\"\n";

/// A stream whose 5 content chunks come 300 ms apart (the preamble at once).
fn slow_content() -> Step {
    Step::Ok { reply: Reply::Fixed("Hello from the fake upstream.".into()), chunks: 5, chunk_delay: Duration::from_millis(300) }
}

// The default holds the head until the first content chunk; `commit = "head"` sends it (and the
// preamble) as soon as the upstream answered, as a plain reverse proxy does.
#[tokio::test]
async fn a_stream_committed_on_the_head_reaches_the_caller_before_its_content() {
    for (extra, held) in [("", true), (ON_HEAD, false)] {
        let a = FakeUpstream::start(Script::new().default_step(slow_content())).await;
        let gw = start(&one_target(&a, extra)).await;

        let started = Instant::now();
        let resp = gw.open(&stream_body("chat")).await;
        let head = started.elapsed();
        assert_eq!(resp.status(), StatusCode::OK);
        if held {
            assert!(head >= Duration::from_millis(250), "held until the first content chunk: {head:?}");
        } else {
            assert!(head < Duration::from_millis(200), "sent on the upstream's head: {head:?}");
            let mut body = resp.into_body();
            let preamble = read_events(&mut body, 1).await;
            assert!(started.elapsed() < Duration::from_millis(200), "the preamble is relayed at once too");
            let first: Value = serde_json::from_str(&preamble[0]).unwrap();
            assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        }
    }
}

// What `commit = "head"` gives up: a target that answers 200 and then fails before any
// content cannot be retried invisibly; without `recover` the caller gets the error event.
#[tokio::test]
async fn a_stream_committed_on_the_head_that_breaks_before_content_ends_with_an_error_event() {
    let a = FakeUpstream::start(Script::new().default_step(Step::PreambleThenError { message: "overloaded".into() })).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::ok())).await;
    let gw = start(&two_targets(&a, &b, ON_HEAD)).await;

    let r = gw.chat(&stream_body("chat")).await;

    assert_eq!((r.status, r.header("x-switchyard-provider")), (StatusCode::OK, "a"));
    let events = r.events();
    let error: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "upstream_stream_error", "{events:#?}");
    assert_eq!((a.requests(), b.requests()), (1, 0));
}

// A failure before the upstream's head (a refused connection, a 5xx) still fails over before
// anything reaches the caller, headers and all.
#[tokio::test]
async fn a_stream_committed_on_the_head_still_fails_over_before_the_head() {
    let a = FakeUpstream::start(Script::new().default_step(Step::status(503))).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::ok())).await;
    let gw = start(&two_targets(&a, &b, &format!("{ON_HEAD}[models.chat.retry]\nattempts_per_target = 1\n"))).await;

    let r = gw.chat(&stream_body("chat")).await;

    assert_eq!((r.header("x-switchyard-provider"), r.attempts()), ("b", 2));
    assert_one_stream(&r.events(), "Hello from the fake upstream.");
    let dead = start(&two_targets_at(&dead_base_url(), &b.base_url(), ON_HEAD)).await;
    let r = dead.chat(&stream_body("chat")).await;
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_one_stream(&r.events(), "Hello from the fake upstream.");
}

// With `recover`, a stream committed on its head that breaks before any content starts over on
// the next target, in the same stream: the caller's request as it was (nothing to continue),
// one role preamble, the end marked.
#[tokio::test]
async fn with_recover_a_stream_broken_before_content_starts_over_on_the_next_target() {
    let a = FakeUpstream::start(Script::new().default_step(Step::PreambleThenError { message: "overloaded".into() })).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::reply(PART_B))).await;
    let gw = start(&two_targets(&a, &b, "[models.chat.stream]\ncommit = \"head\"\nrecover = true\n")).await;

    let body = stream_body("chat");
    let r = gw.chat(&body).await;

    assert_eq!(r.header("x-switchyard-provider"), "a", "the head went out with A's answer");
    let chunks = assert_one_stream(&r.events(), PART_B);
    assert_eq!(chunks.last().unwrap()["switchyard"], marker());
    assert_eq!((a.requests(), b.requests()), (1, 1));
    let sent = b.last_request().unwrap().body;
    assert_eq!(sent["messages"], body["messages"], "B answers the request itself");
}

// `/v1/messages` commits on the head the same way: the caller's head comes before the content,
// and a restart before content still reads as one Anthropic message.
#[tokio::test]
async fn a_messages_stream_committed_on_the_head() {
    let a = FakeUpstream::start(Script::new().default_step(slow_content())).await;
    let gw = start(&one_target(&a, ON_HEAD)).await;
    let started = Instant::now();
    let headers = [("x-api-key", "client-key"), ("anthropic-version", "2023-06-01")];
    let resp = gw.open_request(gw.post_request("/v1/messages", Bytes::from(messages_body().to_string()), &headers)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(200), "sent on the upstream's head: {:?}", started.elapsed());

    let a = FakeUpstream::start(Script::new().default_step(Step::PreambleThenError { message: "overloaded".into() })).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::reply(PART_B))).await;
    let gw = start(&two_targets(&a, &b, "[models.chat.stream]\ncommit = \"head\"\nrecover = true\n")).await;
    let r = post_messages(&gw, &messages_body()).await;
    let events = anthropic_events(&r);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!((names.first(), names.iter().filter(|n| **n == "message_start").count()), (Some(&"message_start"), 1), "{names:?}");
    assert_eq!(&names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    let text: String = events.iter().filter_map(|(_, e)| e.pointer("/delta/text").and_then(Value::as_str)).collect();
    assert_eq!(text, PART_B);
    assert_eq!(events[events.len() - 2].1["delta"]["switchyard"], marker());
}

// A stream committed on its head is still timed to its first token in the target's latency
// statistics (the latency strategy and hedging read them), not to its response head.
#[tokio::test]
async fn a_stream_committed_on_the_head_is_timed_to_its_first_token() {
    let a = FakeUpstream::start(Script::new().default_step(slow_content())).await;
    let gw = start(&one_target(&a, ON_HEAD)).await;

    let r = gw.chat(&stream_body("chat")).await;
    assert_one_stream(&r.events(), "Hello from the fake upstream.");

    let doc = gw.get("/admin/providers").await.json();
    let row = doc["targets"].as_array().unwrap().iter().find(|t| t["target"] == "a/model-a").unwrap().clone();
    assert_eq!(row["total"]["requests"], 1, "{row}");
    let ewma = row["latency_ms"]["ewma"].as_f64().unwrap();
    assert!((250.0..2000.0).contains(&ewma), "timed to the first content chunk, 300 ms in: {row}");
}
