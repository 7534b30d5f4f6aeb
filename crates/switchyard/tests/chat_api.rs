//! The OpenAI-compatible surface: a successful call end to end, answer normalization, request
//! validation, the model list and health, and the built-in mock provider.

mod common;

use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use switchyard_fakes::{FakeUpstream, Script};

#[tokio::test]
async fn non_streaming_success_relabels_the_answer_and_rewrites_only_the_model_upstream() {
    let up = FakeUpstream::start(Script::new()).await;
    let gw = start(&one_target(&up, "")).await;
    let body = json!({
        "model": "chat",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Say hello"}]},
        ],
        "temperature": 0.25,
        "max_tokens": 64,
        "user": "user-42",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        "metadata": {"nested": [1, 2.5, null, "x"]},
    });

    let r = gw
        .chat_with_headers(&body, &[("authorization", "Bearer client-token-must-not-be-forwarded"), ("x-request-id", "client-req-123")])
        .await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-request-id"), "client-req-123");
    assert_eq!(r.header("x-switchyard-provider"), "a");
    assert_eq!(r.header("x-switchyard-model"), "model-a");
    assert_eq!(r.attempts(), 1);
    let answer = r.json();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "chat", "the caller sees the alias, not the upstream model");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from the fake upstream.");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    // "You are terse." + "Say hello" = 5 prompt words; the reply has 5. Usage passes through as sent.
    assert_eq!(answer["usage"]["prompt_tokens"], 5);
    assert_eq!(answer["usage"]["completion_tokens"], 5);
    assert_eq!(answer["usage"]["total_tokens"], 10);
    assert_eq!(answer["usage"]["completion_tokens_details"]["reasoning_tokens"], 0);

    assert_eq!(up.requests(), 1);
    let sent = up.last_request().unwrap();
    let mut expected = body.clone();
    expected["model"] = json!("model-a");
    assert_eq!(sent.body, expected, "only `model` may change on the way upstream");
    let auth: Vec<_> = sent.headers.get_all("authorization").iter().collect();
    assert_eq!(auth, [format!("Bearer {KEY_A}").as_str()], "the provider's key, and never the caller's");
}

#[tokio::test]
async fn a_request_id_is_generated_when_the_client_sends_none() {
    let up = FakeUpstream::start(Script::new()).await;
    let gw = start(&one_target(&up, "")).await;
    let r1 = gw.chat(&chat_body("chat")).await;
    let r2 = gw.chat(&chat_body("chat")).await;
    for r in [&r1, &r2] {
        assert_eq!(r.status, StatusCode::OK);
        let id = r.header("x-request-id");
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(r1.header("x-request-id"), r2.header("x-request-id"));
    // Errors carry one too.
    let r = gw.chat(&chat_body("no-such-alias")).await;
    assert_eq!(r.header("x-request-id").len(), 32);
}

#[tokio::test]
async fn groq_quirks_are_normalized_away() {
    let up = FakeUpstream::start(Script::new().groq_quirks(true)).await;
    let gw = start(&one_target(&up, "")).await;

    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK);
    let answer = r.json();
    assert!(answer.get("x_groq").is_none(), "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "Groq's \"eos\" is mapped to \"stop\"");
    assert_eq!(answer["model"], "chat");

    let mut body = stream_body("chat");
    body["stream_options"] = json!({"include_usage": true});
    let r = gw.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK);
    let events = r.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = chunks(&events);
    assert!(chunks.len() >= 7, "{events:#?}");
    for c in &chunks {
        assert!(c.get("x_groq").is_none(), "x_groq leaked in a chunk: {c}");
        assert_eq!(c["model"], "chat");
    }
    let finishes: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
    assert_eq!(finishes, [&json!("stop")]);
}

#[tokio::test]
async fn malformed_json_is_a_400_invalid_request_error() {
    let up = FakeUpstream::start(Script::new()).await;
    let gw = start(&one_target(&up, "")).await;
    let r = gw.post_raw("/v1/chat/completions", "{\"model\": \"chat\", \"messages\": [").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.error()["type"], "invalid_request_error");
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn missing_messages_is_a_400_naming_the_param() {
    let up = FakeUpstream::start(Script::new()).await;
    let gw = start(&one_target(&up, "")).await;
    let r = gw.chat(&json!({"model": "chat"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = r.error();
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["param"], "messages");
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn unknown_alias_is_a_404_model_not_found() {
    let up = FakeUpstream::start(Script::new()).await;
    let gw = start(&one_target(&up, "")).await;
    let r = gw.chat(&chat_body("gpt-unknown")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let e = r.error();
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["type"], "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("gpt-unknown"));
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn models_list_and_health() {
    let toml = r#"
        [providers.m]
        kind = "mock"
        [models.fast]
        targets = ["m/one"]
        [models.chat]
        targets = ["m/two", "m/one"]
    "#;
    let gw = start(toml).await;

    let r = gw.get("/v1/models").await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json();
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().unwrap();
    let mut ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["chat", "fast"]);
    for m in data {
        assert_eq!(m["object"], "model");
        assert!(m["owned_by"].is_string() && m["created"].is_number(), "{m}");
    }

    let r = gw.get("/health").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = gw.get("/ready").await;
    assert_eq!(r.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// The built-in mock provider, through the whole gateway.

#[tokio::test]
async fn mock_provider_echoes_the_last_user_message() {
    let gw = start("[providers.m]\nkind = \"mock\"\nreply = \"echo\"\n[models.chat]\ntargets = [\"m/echo-1\"]\n").await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "m");
    assert_eq!(r.header("x-switchyard-model"), "echo-1");
    let answer = r.json();
    assert_eq!(answer["model"], "chat");
    assert_eq!(answer["choices"][0]["message"]["content"], "Say hello to the gateway");
    assert!(answer["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn mock_provider_streams_word_chunks() {
    let gw = start("[providers.m]\nkind = \"mock\"\nreply = \"one two three\"\nchunk_delay = \"1ms\"\n[models.chat]\ntargets = [\"m/x\"]\n").await;
    let mut body = stream_body("chat");
    body["stream_options"] = json!({"include_usage": true});
    let r = gw.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("text/event-stream"));
    let events = r.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = chunks(&events);
    let pieces: Vec<&str> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).filter(|s| !s.is_empty()).collect();
    assert_eq!(pieces, ["one ", "two ", "three"]);
    assert!(chunks.iter().all(|c| c["model"] == "chat"));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn mock_rate_limit_gives_429_with_retry_after_once_all_attempts_fail() {
    let toml = r#"
        [providers.m]
        kind = "mock"
        failure_rate = 1.0
        failure = "rate_limit"
        retry_after = "50ms"
        [models.chat]
        targets = ["m/x"]
        [models.chat.retry]
        attempts_per_target = 2
    "#;
    let gw = start(toml).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.attempts(), 2);
    assert_eq!(r.header("retry-after"), "1", "sub-second Retry-After rounds up to 1");
    let e = r.error();
    assert_eq!(e["type"], "rate_limit_error");
    assert_eq!(e["code"], "rate_limit_exceeded");
}
