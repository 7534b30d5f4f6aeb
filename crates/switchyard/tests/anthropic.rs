//! Anthropic end to end: the OpenAI ingress served by an `anthropic` provider (translation both
//! ways, streams, tool calls, usage, stop reasons, failover on 529 and on error events), and the
//! `/v1/messages` ingress served by an OpenAI-compatible provider (translation) and by an
//! `anthropic` provider (native passthrough), with Anthropic's error JSON.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use switchyard_fakes::anthropic::{Answer, AnthropicScript, AnthropicStep, FakeAnthropic, Usage};
use switchyard_fakes::{FakeUpstream, Script, Step};

const ANTHROPIC_KEY: &str = "sk-ant-secret-test-key-0123456789";

fn anthropic_provider(name: &str, base_url: &str) -> String {
    format!("[providers.{name}]\nkind = \"anthropic\"\nbase_url = \"{base_url}\"\napi_key = \"{ANTHROPIC_KEY}\"\n")
}

/// Providers, alias `chat` over `targets`, the fast settings, then `extra`.
fn config(providers: &[String], targets: &[&str], extra: &str) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!("{}\n[models.chat]\ntargets = [{}]\n{FAST}\n{extra}", providers.concat(), targets.join(", "))
}

/// A gateway whose alias `chat` is served by one Anthropic fake as `claude/claude-up`.
async fn claude_only(fake: &FakeAnthropic) -> TestGateway {
    start(&config(&[anthropic_provider("claude", &fake.base_url())], &["claude/claude-up"], "")).await
}

fn assert_clean(r: &Resp) {
    assert_no_keys(&r.text());
    assert!(!r.text().contains(ANTHROPIC_KEY), "the Anthropic key leaked: {}", r.text());
}

/// (text, [(id, name, arguments)], finish_reason) assembled from OpenAI chunks.
fn assemble(chunks: &[Value]) -> (String, Vec<(String, String, String)>, Option<String>) {
    let mut text = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = None;
    for c in chunks {
        let Some(choice) = c["choices"].get(0) else { continue };
        text.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
        for call in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = call["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push((call["id"].as_str().unwrap().into(), call["function"]["name"].as_str().unwrap().into(), String::new()));
            }
            calls[i].2.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    (text, calls, finish)
}

// ---------------------------------------------------------------------------------------------
// /v1/chat/completions → anthropic provider

#[tokio::test]
async fn a_completion_is_translated_to_anthropic_and_back() {
    let fake = FakeAnthropic::start(AnthropicScript::new().then(Answer::text("Hello there, gateway."))).await;
    let gw = claude_only(&fake).await;

    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!((r.header("x-switchyard-provider"), r.header("x-switchyard-model"), r.attempts()), ("claude", "claude-up", 1));
    let v = r.json();
    assert_eq!((v["object"].as_str(), v["model"].as_str()), (Some("chat.completion"), Some("chat")));
    assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": "Hello there, gateway."}));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], v["usage"]["prompt_tokens"].as_u64().unwrap() + 3);
    let sent = fake.last_request().unwrap();
    assert_eq!(
        sent.body,
        json!({"model": "claude-up", "system": "You are terse.", "max_tokens": 4096,
               "messages": [{"role": "user", "content": "Say hello to the gateway"}]})
    );
    assert_eq!(sent.headers["x-api-key"], ANTHROPIC_KEY);
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(sent.headers.get("authorization").is_none(), "the caller's auth is not forwarded");
    assert_clean(&r);
}

#[tokio::test]
async fn a_stream_is_translated_into_openai_chunks_with_usage() {
    let fake = FakeAnthropic::start(AnthropicScript::new().then(Answer::text("one two three four five").chunks(5))).await;
    let gw = claude_only(&fake).await;
    let mut body = stream_body("chat");
    body["stream_options"] = json!({"include_usage": true});

    let r = gw.chat(&body).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.header("content-type").starts_with("text/event-stream"));
    let events = r.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = chunks(&events);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let (text, calls, finish) = assemble(&chunks);
    assert_eq!((text.as_str(), calls.len(), finish.as_deref()), ("one two three four five", 0, Some("stop")));
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    for c in &chunks {
        assert_eq!((c["model"].as_str(), c["object"].as_str()), (Some("chat"), Some("chat.completion.chunk")));
    }
    assert_eq!(fake.last_request().unwrap().body["stream"], true);
    assert!(fake.last_request().unwrap().body.get("stream_options").is_none(), "not an Anthropic field");
}

// LiteLLM #36262: streamed tool-call arguments lost in translation.
#[tokio::test]
async fn streamed_tool_call_arguments_arrive_whole() {
    let input = json!({"city": "Zürich", "days": 3, "units": {"temp": "celsius"}});
    let fake = FakeAnthropic::start(AnthropicScript::new().then(Answer::tool_use("get_weather", input.clone()).with_text("Let me look.").fragments(6))).await;
    let gw = claude_only(&fake).await;
    let mut body = stream_body("chat");
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    body["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});

    let r = gw.chat(&body).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let chunks = chunks(&r.events());
    let (text, calls, finish) = assemble(&chunks);
    assert_eq!(text, "Let me look.");
    assert_eq!(calls.len(), 1);
    assert!(calls[0].0.starts_with("toolu_01"));
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(serde_json::from_str::<Value>(&calls[0].2).unwrap(), input, "every fragment arrived, in order");
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    let fragments = chunks.iter().filter(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().is_some_and(|a| !a.is_empty())).count();
    assert_eq!(fragments, 6, "fragments are relayed as they come, not buffered");
    let sent = fake.last_request().unwrap().body;
    assert_eq!(sent["tools"], json!([{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]));
    assert_eq!(sent["tool_choice"], json!({"type": "tool", "name": "get_weather"}));
}

#[tokio::test]
async fn a_tool_call_answer_and_the_tool_results_round_trip() {
    let fake = FakeAnthropic::start(AnthropicScript::new().then(Answer::tool_use("get_time", json!({"tz": "UTC"})))).await;
    let gw = claude_only(&fake).await;
    let body = json!({"model": "chat", "parallel_tool_calls": false, "messages": [
        {"role": "user", "content": "Weather and time?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "toolu_b", "type": "function", "function": {"name": "get_date", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": "Monday"}
    ], "tools": [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]});

    let r = gw.chat(&body).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!((call["type"].as_str(), call["function"]["name"].as_str()), (Some("function"), Some("get_time")));
    assert_eq!(serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(), json!({"tz": "UTC"}));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let sent = fake.last_request().unwrap().body;
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "user", "content": "Weather and time?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_date", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "Monday"}]}
        ]),
        "consecutive tool results share one user turn"
    );
    assert_eq!(sent["tool_choice"], json!({"type": "auto", "disable_parallel_tool_use": true}));
}

#[tokio::test]
async fn image_input_is_sent_as_anthropic_image_sources() {
    let fake = FakeAnthropic::start(AnthropicScript::new().default_step(Answer::text("A cat."))).await;
    let gw = claude_only(&fake).await;
    let body = json!({"model": "chat", "max_tokens": 50, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What are these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}]}]});

    for stream in [false, true] {
        let mut body = body.clone();
        body["stream"] = json!(stream);
        let r = gw.chat(&body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let sent = fake.last_request().unwrap().body;
        assert_eq!(sent["max_tokens"], 50);
        assert_eq!(
            sent["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What are these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgoAAAANSUhEUg=="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ])
        );
    }
}

#[tokio::test]
async fn usage_counts_cache_reads_and_writes() {
    let usage = Usage { input_tokens: 10, output_tokens: 7, cache_creation_input_tokens: 200, cache_read_input_tokens: 1000 };
    let fake = FakeAnthropic::start(AnthropicScript::new().default_step(Answer::text("cached answer").usage(usage))).await;
    let gw = claude_only(&fake).await;

    let v = gw.chat(&chat_body("chat")).await.json();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 1210, "completion_tokens": 7, "total_tokens": 1217,
               "prompt_tokens_details": {"cached_tokens": 1000, "cache_creation_tokens": 200}})
    );

    let mut body = stream_body("chat");
    body["stream_options"] = json!({"include_usage": true});
    let chunks = chunks(&gw.chat(&body).await.events());
    assert_eq!(chunks.last().unwrap()["usage"], v["usage"], "the stream reports the same usage");
}

#[tokio::test]
async fn each_stop_reason_maps_to_its_finish_reason() {
    for (answer, finish) in [
        (Answer::text("done"), "stop"),
        (Answer::text("done").stop_sequence("END"), "stop"),
        (Answer::text("cut off").stop_reason("max_tokens"), "length"),
        (Answer::tool_use("f", json!({})), "tool_calls"),
        (Answer::text("I can't help with that.").stop_reason("refusal"), "content_filter"),
    ] {
        let fake = FakeAnthropic::start(AnthropicScript::new().default_step(answer.clone())).await;
        let gw = claude_only(&fake).await;
        let v = gw.chat(&chat_body("chat")).await.json();
        assert_eq!(v["choices"][0]["finish_reason"], finish, "{answer:?}");
        let chunks = chunks(&gw.chat(&stream_body("chat")).await.events());
        assert_eq!(assemble(&chunks).2.as_deref(), Some(finish), "streamed {answer:?}");
    }
}

#[tokio::test]
async fn overloaded_529_is_retried_then_fails_over_to_the_next_target() {
    let claude = FakeAnthropic::start(AnthropicScript::new().default_step(AnthropicStep::overloaded())).await;
    let backup = FakeUpstream::start(Script::new().default_step(Step::reply("from the backup"))).await;
    let gw = start(&config(
        &[anthropic_provider("claude", &claude.base_url()), openai_provider("b", &backup.base_url(), KEY_B)],
        &["claude/claude-up", "b/model-b"],
        // A high breaker threshold: this test is about retries, not the breaker opening.
        "[models.chat.retry]\nattempts_per_target = 2\n[breaker]\nfailures = 100\n",
    ))
    .await;

    for body in [chat_body("chat"), stream_body("chat")] {
        let before = claude.requests();
        let r = gw.chat(&body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), "b");
        assert_eq!(r.attempts(), 3, "529 is retried once on the same target, then the chain moves on");
        assert_eq!(claude.requests() - before, 2);
        assert!(r.text().contains("from"), "{}", r.text());
        assert_clean(&r);
    }
}

#[tokio::test]
async fn an_error_event_before_content_fails_over_invisibly() {
    let flaky = FakeAnthropic::start(AnthropicScript::new().default_step(AnthropicStep::error_event("overloaded_error"))).await;
    let healthy = FakeAnthropic::start(AnthropicScript::new().default_step(Answer::text("from the healthy one"))).await;
    let gw = start(&config(
        &[anthropic_provider("flaky", &flaky.base_url()), anthropic_provider("healthy", &healthy.base_url())],
        &["flaky/claude-up", "healthy/claude-up"],
        "[models.chat.retry]\nattempts_per_target = 1\n",
    ))
    .await;

    let r = gw.chat(&stream_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!((r.header("x-switchyard-provider"), r.attempts()), ("healthy", 2));
    assert!(!r.text().contains("error") && !r.text().contains("Overloaded"), "{}", r.text());
    let chunks = chunks(&r.events());
    assert_eq!(assemble(&chunks).0, "from the healthy one");
    assert_eq!(chunks.iter().filter(|c| c["choices"][0]["delta"]["role"] == "assistant").count(), 1, "one preamble only");
}

#[tokio::test]
async fn a_stream_broken_after_content_ends_with_an_error_event() {
    let fake = FakeAnthropic::start(AnthropicScript::new().default_step(AnthropicStep::DropAfter { after: 3 })).await;
    let gw = claude_only(&fake).await;

    let r = gw.chat(&stream_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK);
    let events = r.events();
    assert_ne!(events.last().unwrap(), "[DONE]", "never a clean end after a failure");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    assert_eq!(assemble(&chunks(&events[..events.len() - 1])).0, "word0 word1 word2 ");
}

#[tokio::test]
async fn prompt_too_long_moves_on_without_a_retry_and_bad_requests_go_back() {
    let claude = FakeAnthropic::start(AnthropicScript::new().then(AnthropicStep::prompt_too_long()).then(AnthropicStep::status(400))).await;
    let backup = FakeUpstream::start(Script::new()).await;
    let gw = start(&config(
        &[anthropic_provider("claude", &claude.base_url()), openai_provider("b", &backup.base_url(), KEY_B)],
        &["claude/claude-up", "b/model-b"],
        "[models.chat.retry]\nattempts_per_target = 3\n",
    ))
    .await;

    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!((r.status, r.header("x-switchyard-provider"), r.attempts()), (StatusCode::OK, "b", 2));

    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "the caller's mistake goes back at once");
    assert_eq!(r.error()["message"], "Invalid request.");
    assert_eq!(r.error()["type"], "invalid_request_error");
    assert_eq!((claude.requests(), backup.requests()), (2, 1));
}

#[tokio::test]
async fn a_request_anthropic_cannot_take_moves_on_to_a_target_that_can() {
    let claude = FakeAnthropic::start(AnthropicScript::new()).await;
    let backup = FakeUpstream::start(Script::new()).await;
    let gw = start(&config(
        &[anthropic_provider("claude", &claude.base_url()), openai_provider("b", &backup.base_url(), KEY_B)],
        &["claude/claude-up", "b/model-b"],
        "",
    ))
    .await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]});

    let r = gw.chat(&body).await;

    assert_eq!((r.status, r.header("x-switchyard-provider")), (StatusCode::OK, "b"), "{}", r.text());
    assert_eq!(claude.requests(), 0, "nothing was sent to Anthropic");
}

// ---------------------------------------------------------------------------------------------
// /v1/messages

fn messages_body(stream: bool) -> Value {
    json!({"model": "chat", "max_tokens": 256, "stream": stream, "system": "You are terse.",
           "messages": [{"role": "user", "content": "Say hello to the gateway"}]})
}

async fn post_messages(gw: &TestGateway, body: &Value) -> Resp {
    let headers = [("x-api-key", "client-key"), ("anthropic-version", "2023-06-01")];
    gw.send(gw.post_request("/v1/messages", Bytes::from(body.to_string()), &headers)).await
}

/// (name, JSON) of each Anthropic SSE event, checking `event:` names match the JSON `type`.
fn anthropic_events(r: &Resp) -> Vec<(String, Value)> {
    let text = r.text();
    assert!(text.ends_with("\n\n"), "{text:?}");
    text.split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e.strip_prefix("event: ").and_then(|e| e.split_once("\ndata: ")).unwrap_or_else(|| panic!("framing: {e:?}"));
            let json: Value = serde_json::from_str(data).unwrap();
            assert_eq!(json["type"], name);
            (name.to_owned(), json)
        })
        .collect()
}

/// The message an Anthropic SDK builds from the events: (content blocks, stop_reason, usage).
fn accumulate(events: &[(String, Value)]) -> (Vec<Value>, Option<String>, Value) {
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    let (mut stop, mut usage) = (None, Value::Null);
    for (name, e) in events {
        match name.as_str() {
            "message_start" => usage = e["message"]["usage"].clone(),
            "content_block_start" => {
                assert_eq!(e["index"], blocks.len(), "blocks start in order");
                blocks.push(e["content_block"].clone());
                partial.push(String::new());
            }
            "content_block_delta" => {
                let i = e["index"].as_u64().unwrap() as usize;
                match e["delta"]["type"].as_str().unwrap() {
                    "text_delta" => {
                        let t = blocks[i]["text"].as_str().unwrap().to_owned() + e["delta"]["text"].as_str().unwrap();
                        blocks[i]["text"] = json!(t);
                    }
                    "input_json_delta" => partial[i].push_str(e["delta"]["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = e["index"].as_u64().unwrap() as usize;
                if blocks[i]["type"] == "tool_use" && !partial[i].is_empty() {
                    blocks[i]["input"] = serde_json::from_str(&partial[i]).unwrap();
                }
            }
            "message_delta" => {
                stop = e["delta"]["stop_reason"].as_str().map(str::to_owned);
                for (k, v) in e["usage"].as_object().unwrap() {
                    usage[k] = v.clone();
                }
            }
            _ => {}
        }
    }
    (blocks, stop, usage)
}

#[tokio::test]
async fn messages_are_translated_for_an_openai_target() {
    let up = FakeUpstream::start(Script::new().default_step(Step::reply("Hello from OpenAI land."))).await;
    let gw = start(&one_target(&up, "")).await;
    let mut body = messages_body(false);
    body["tools"] = json!([{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    body["tool_choice"] = json!({"type": "auto"});
    body["metadata"] = json!({"user_id": "u-7"});
    body["stop_sequences"] = json!(["END"]);

    let r = post_messages(&gw, &body).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!((r.header("x-switchyard-provider"), r.header("x-switchyard-model"), r.attempts()), ("a", "model-a", 1));
    assert!(!r.header("x-request-id").is_empty());
    let m = r.json();
    assert_eq!((m["type"].as_str(), m["role"].as_str(), m["model"].as_str()), (Some("message"), Some("assistant"), Some("chat")));
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(m["content"], json!([{"type": "text", "text": "Hello from OpenAI land."}]));
    assert_eq!((m["stop_reason"].as_str(), m["stop_sequence"].clone()), (Some("end_turn"), Value::Null));
    assert_eq!(m["usage"]["output_tokens"], 4);
    assert!(m["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let sent = up.last_request().unwrap().body;
    assert_eq!(
        sent,
        json!({"model": "model-a", "max_tokens": 256, "user": "u-7", "stop": ["END"], "tool_choice": "auto",
               "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello to the gateway"}],
               "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]})
    );
}

#[tokio::test]
async fn a_messages_stream_from_an_openai_target_is_anthropics_event_sequence() {
    let up = FakeUpstream::start(Script::new().default_step(Step::Ok {
        reply: switchyard_fakes::Reply::Fixed("one two three".into()),
        chunks: 3,
        chunk_delay: Duration::from_millis(2),
    }))
    .await;
    let gw = start(&one_target(&up, "")).await;

    let r = post_messages(&gw, &messages_body(true)).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.header("content-type").starts_with("text/event-stream"));
    let events = anthropic_events(&r);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta",
         "content_block_stop", "message_delta", "message_stop"]
    );
    assert_eq!(events[0].1["message"]["model"], "chat");
    let (blocks, stop, usage) = accumulate(&events);
    assert_eq!(blocks, [json!({"type": "text", "text": "one two three"})]);
    assert_eq!(stop.as_deref(), Some("end_turn"));
    assert_eq!(usage["output_tokens"], 3, "usage reaches the caller's message_delta");
    assert!(usage["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(up.last_request().unwrap().body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn messages_pass_through_natively_to_an_anthropic_target() {
    let fake = FakeAnthropic::start(AnthropicScript::new().default_step(Answer::text("Native hello.").usage(Usage {
        input_tokens: 12,
        output_tokens: 3,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 100,
    })))
    .await;
    let gw = claude_only(&fake).await;
    // Fields no OpenAI shape could carry: they must reach Anthropic untouched.
    let body = json!({
        "max_tokens": 300, "model": "chat", "top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "system": [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        "service_tier": "auto", "container": null
    });

    let r = post_messages(&gw, &body).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let mut expected = body.clone();
    expected["model"] = json!("claude-up");
    assert_eq!(fake.last_request().unwrap().body, expected, "exactly the client's body but `model`");
    let m = r.json();
    assert_eq!(m["model"], "chat", "relabelled with the alias");
    assert_eq!(m["content"], json!([{"type": "text", "text": "Native hello."}]));
    assert_eq!(m["usage"]["cache_read_input_tokens"], 100);
    assert_eq!(m["usage"]["service_tier"], "standard", "Anthropic's own fields come through");
    assert!(r.text().starts_with(r#"{"model":"chat","id":"msg_01"#), "the upstream's bytes, in its order: {}", r.text());
}

#[tokio::test]
async fn a_native_stream_relays_anthropic_events_with_tool_input_fragments() {
    let input = json!({"query": "weather in Zürich"});
    let fake = FakeAnthropic::start(AnthropicScript::new().default_step(Answer::tool_use("search", input.clone()).with_text("Searching.").fragments(4))).await;
    let gw = claude_only(&fake).await;
    let mut body = messages_body(true);
    body["tools"] = json!([{"name": "search", "input_schema": {"type": "object"}}]);

    let r = gw.send(gw.post_request("/v1/messages", Bytes::from(body.to_string()), &[("authorization", "Bearer client-key"), ("anthropic-version", "2024-10-22")])).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let events = anthropic_events(&r);
    assert_eq!(events[0].1["message"]["model"], "chat");
    assert!(events.iter().any(|(n, _)| n == "ping"), "the upstream's pings are relayed");
    assert_eq!(events.iter().filter(|(_, e)| e["delta"]["type"] == "input_json_delta").count(), 5, "an empty fragment and four more");
    let (blocks, stop, _) = accumulate(&events);
    assert_eq!(blocks[0], json!({"type": "text", "text": "Searching."}));
    assert_eq!((blocks[1]["type"].as_str(), blocks[1]["name"].as_str()), (Some("tool_use"), Some("search")));
    assert_eq!(blocks[1]["input"], input);
    assert_eq!(stop.as_deref(), Some("tool_use"));
    assert_eq!(events.last().unwrap().0, "message_stop");
    let mut expected = body.clone();
    expected["model"] = json!("claude-up");
    assert_eq!(fake.last_request().unwrap().body, expected);
}

#[tokio::test]
async fn messages_fail_over_between_native_and_translated_targets() {
    let claude = FakeAnthropic::start(AnthropicScript::new().then(AnthropicStep::overloaded()).default_step(Answer::text("native answer"))).await;
    let openai = FakeUpstream::start(Script::new().default_step(Step::reply("translated answer"))).await;
    let gw = start(&config(
        &[anthropic_provider("claude", &claude.base_url()), openai_provider("b", &openai.base_url(), KEY_B)],
        &["claude/claude-up", "b/model-b"],
        "[models.chat.retry]\nattempts_per_target = 1\n",
    ))
    .await;

    // Anthropic overloaded → the OpenAI target, translated.
    let r = post_messages(&gw, &messages_body(true)).await;
    assert_eq!((r.status, r.header("x-switchyard-provider"), r.attempts()), (StatusCode::OK, "b", 2), "{}", r.text());
    let (blocks, stop, _) = accumulate(&anthropic_events(&r));
    assert_eq!(blocks, [json!({"type": "text", "text": "translated answer"})]);
    assert_eq!(stop.as_deref(), Some("end_turn"));

    // A second gateway with the order reversed: OpenAI 500 → Anthropic, natively.
    let gw = start(&config(
        &[anthropic_provider("claude", &claude.base_url()), openai_provider("b", &openai.base_url(), KEY_B)],
        &["b/model-b", "claude/claude-up"],
        "[models.chat.retry]\nattempts_per_target = 1\n",
    ))
    .await;
    openai.push(Step::status(500));
    let r = post_messages(&gw, &messages_body(false)).await;
    assert_eq!((r.status, r.header("x-switchyard-provider"), r.attempts()), (StatusCode::OK, "claude", 2), "{}", r.text());
    assert_eq!(r.json()["content"], json!([{"type": "text", "text": "native answer"}]));
    let mut expected = messages_body(false);
    expected["model"] = json!("claude-up");
    assert_eq!(claude.last_request().unwrap().body, expected);
}

// The full round trip: Anthropic events → OpenAI chunks (gateway 1) → Anthropic events (gateway 2).
#[tokio::test]
async fn a_tool_call_streams_whole_through_both_translations() {
    let input = json!({"city": "Zürich", "when": ["today", "tomorrow"]});
    let fake = FakeAnthropic::start(AnthropicScript::new().default_step(Answer::tool_use("get_weather", input.clone()).with_text("On it.").fragments(7))).await;
    let inner = claude_only(&fake).await;
    let outer = start(&config(&[openai_provider("gw", &format!("http://{}/v1", inner.addr), KEY_A)], &["gw/chat"], "")).await;
    let mut body = messages_body(true);
    body["tools"] = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);

    let r = post_messages(&outer, &body).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let (blocks, stop, usage) = accumulate(&anthropic_events(&r));
    assert_eq!(blocks[0], json!({"type": "text", "text": "On it."}));
    assert_eq!(blocks[1]["name"], "get_weather");
    assert!(blocks[1]["id"].as_str().unwrap().starts_with("toolu_01"), "the upstream's tool id survives");
    assert_eq!(blocks[1]["input"], input);
    assert_eq!(stop.as_deref(), Some("tool_use"));
    assert!(usage["output_tokens"].as_u64().unwrap() > 0);
    let sent = fake.last_request().unwrap().body;
    assert_eq!(sent["tools"], json!([{"name": "get_weather", "input_schema": {"type": "object"}}]));
}

#[tokio::test]
async fn messages_errors_are_anthropic_error_json() {
    let claude = FakeAnthropic::start(AnthropicScript::new().then(AnthropicStep::status(400)).default_step(AnthropicStep::overloaded())).await;
    let gw = claude_only(&claude).await;
    let error = |r: &Resp| {
        let v = r.json();
        assert_eq!(v["type"], "error", "{v}");
        (v["error"]["type"].as_str().unwrap().to_owned(), v["error"]["message"].as_str().unwrap().to_owned())
    };

    let mut unknown = messages_body(false);
    unknown["model"] = json!("no-such-model");
    let r = post_messages(&gw, &unknown).await;
    assert_eq!((r.status, error(&r).0.as_str()), (StatusCode::NOT_FOUND, "not_found_error"));
    assert!(!r.header("x-request-id").is_empty());

    let r = gw.send(gw.post_request("/v1/messages", Bytes::from_static(b"{\"model\": \"chat\", "), &[])).await;
    assert_eq!((r.status, error(&r).0.as_str()), (StatusCode::BAD_REQUEST, "invalid_request_error"));
    let r = post_messages(&gw, &json!({"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]})).await;
    let (kind, message) = error(&r);
    assert_eq!((r.status, kind.as_str()), (StatusCode::BAD_REQUEST, "invalid_request_error"));
    assert!(message.contains("messages[0].content"), "{message}");
    // Says what the member may be (an untagged enum could only say that nothing matched).
    assert!(message.contains("invalid type: integer `5`, expected a string or an array of content blocks"), "{message}");

    let r = post_messages(&gw, &messages_body(false)).await;
    assert_eq!((r.status, error(&r)), (StatusCode::BAD_REQUEST, ("invalid_request_error".into(), "Invalid request.".into())));

    let r = post_messages(&gw, &messages_body(true)).await;
    assert_eq!((r.status.as_u16(), error(&r).0.as_str()), (529, "overloaded_error"), "Anthropic's own overload status: {}", r.text());
    assert_clean(&r);
}

#[tokio::test]
async fn untranslatable_messages_are_refused_unless_every_target_is_native() {
    let up = FakeUpstream::start(Script::new()).await;
    let claude = FakeAnthropic::start(AnthropicScript::new()).await;
    let mut body = messages_body(false);
    body["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);

    let mixed = start(&config(
        &[anthropic_provider("claude", &claude.base_url()), openai_provider("a", &up.base_url(), KEY_A)],
        &["claude/claude-up", "a/model-a"],
        "",
    ))
    .await;
    let r = post_messages(&mixed, &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("web_search_20250305"), "{}", r.text());

    let native_only = claude_only(&claude).await;
    let r = post_messages(&native_only, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(claude.last_request().unwrap().body["tools"], body["tools"]);
}

#[tokio::test]
async fn a_messages_stream_broken_after_content_ends_with_an_error_event() {
    let up = FakeUpstream::start(Script::new().default_step(Step::DropAfter { after: 2 })).await;
    let gw = start(&one_target(&up, "")).await;

    let r = post_messages(&gw, &messages_body(true)).await;

    assert_eq!(r.status, StatusCode::OK);
    let events = anthropic_events(&r);
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(last["error"]["type"], "api_error");
    assert!(last["error"]["message"].as_str().unwrap().contains("failed after it had started"));
    assert!(!events.iter().any(|(n, _)| n == "message_stop"), "never a clean end after a failure");
    assert_eq!(accumulate(&events[..events.len() - 1]).0[0]["text"], "Hello from ");
}

#[tokio::test]
async fn messages_work_with_the_built_in_mock_provider() {
    let gw = start("[providers.local]\nkind = \"mock\"\nreply = \"echo\"\n[models.demo]\ntargets = [\"local/mock-1\"]\n").await;
    let mut body = messages_body(false);
    body["model"] = json!("demo");

    let m = post_messages(&gw, &body).await.json();
    assert_eq!(m["content"], json!([{"type": "text", "text": "Say hello to the gateway"}]));
    assert_eq!((m["model"].as_str(), m["stop_reason"].as_str()), (Some("demo"), Some("end_turn")));

    body["stream"] = json!(true);
    let r = post_messages(&gw, &body).await;
    let (blocks, stop, usage) = accumulate(&anthropic_events(&r));
    assert_eq!(blocks, [json!({"type": "text", "text": "Say hello to the gateway"})]);
    assert_eq!(stop.as_deref(), Some("end_turn"));
    assert_eq!(usage["output_tokens"], 5);
}

// ---------------------------------------------------------------------------------------------
// /v1/messages × the other egress kinds: the Anthropic ingress works whatever answers.

/// A one-target `chat` alias on `provider_toml`'s provider `p` with upstream model `model`.
fn single(provider_toml: String, model: &str) -> String {
    format!("{provider_toml}\n[models.chat]\ntargets = [\"p/{model}\"]\n{FAST}\n")
}

async fn messages_plain_and_streamed(gw: &TestGateway, expect_text: &str) {
    let r = post_messages(gw, &messages_body(false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let m = r.json();
    assert_eq!(m["type"], "message");
    assert_eq!(m["model"], "chat");
    assert_eq!(m["content"][0]["type"], "text");
    assert_eq!(m["content"][0]["text"], expect_text);
    assert_eq!(m["stop_reason"], "end_turn");
    assert!(m["usage"]["output_tokens"].as_u64().unwrap() > 0, "{m}");

    let r = post_messages(gw, &messages_body(true)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let events = anthropic_events(&r);
    assert_eq!(events.first().map(|e| e.0.as_str()), Some("message_start"));
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("message_stop"));
    let (blocks, stop, usage) = accumulate(&events);
    assert_eq!(blocks[0]["text"].as_str().unwrap().trim(), expect_text.trim());
    assert_eq!(stop.as_deref(), Some("end_turn"));
    assert!(usage["output_tokens"].as_u64().unwrap() > 0, "{usage}");
}

#[tokio::test]
async fn messages_through_an_ollama_target() {
    use switchyard_fakes::ollama::{FakeOllama, OllamaStep};
    let fake = FakeOllama::start(vec![OllamaStep::text("Hi from llama"), OllamaStep::text("Hi from llama")]).await;
    let gw = start(&single(format!("[providers.p]\nkind = \"ollama\"\nbase_url = \"{}\"\n", fake.base_url()), "llama3.2")).await;
    messages_plain_and_streamed(&gw, "Hi from llama").await;
    let sent = fake.last_request().unwrap().body;
    assert_eq!(sent["messages"][0], json!({"role": "system", "content": "You are terse."}));
    assert_eq!(sent["options"]["num_predict"], 256);
}

#[tokio::test]
async fn messages_through_a_gemini_target() {
    use switchyard_fakes::gemini::{FakeGemini, GeminiStep};
    let fake = FakeGemini::start(vec![GeminiStep::text("Hi from Gemini"), GeminiStep::text("Hi from Gemini")]).await;
    let toml = format!("[providers.p]\nkind = \"gemini\"\nbase_url = \"{}\"\napi_key = \"AIza-test-key-0123456789\"\n", fake.base_url());
    let gw = start(&single(toml, "gemini-2.5-flash")).await;
    messages_plain_and_streamed(&gw, "Hi from Gemini").await;
}

#[tokio::test]
async fn messages_with_a_streamed_tool_call_through_a_bedrock_target() {
    use switchyard_fakes::bedrock::{BedrockStep, FakeBedrock};
    let fake = FakeBedrock::start(vec![
        BedrockStep::text("Hi from Bedrock"),
        BedrockStep::text("Hi from Bedrock"),
        BedrockStep::ToolUse { text: None, name: "get_weather".into(), input: json!({"city": "Paris", "days": 3}) },
    ])
    .await;
    let toml = format!(
        "[providers.p]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nbase_url = \"{}\"\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"secret-example-key\"\n",
        fake.base_url()
    );
    let gw = start(&single(toml, "anthropic.claude-3-5-sonnet-20240620-v1:0")).await;
    messages_plain_and_streamed(&gw, "Hi from Bedrock").await;

    let mut body = messages_body(true);
    body["tools"] = json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}]);
    let r = post_messages(&gw, &body).await;
    let (blocks, stop, _) = accumulate(&anthropic_events(&r));
    let tool = blocks.iter().find(|b| b["type"] == "tool_use").unwrap_or_else(|| panic!("{blocks:?}"));
    assert_eq!(tool["name"], "get_weather");
    assert_eq!(tool["input"], json!({"city": "Paris", "days": 3}), "fragments reassembled");
    assert_eq!(stop.as_deref(), Some("tool_use"));
}
