//! OpenAI ingress → `kind = "gemini"` egress, end to end: the real gateway against the fake
//! Gemini API (which rejects what Gemini rejects: unknown fields, a wrong key, and, in strict
//! mode as on Gemini 3, function calls replayed without their thought signature).

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use switchyard_fakes::gemini::{AnswerPart, FakeGemini, GeminiConfig, GeminiStep, SKIP_SIGNATURE};
use switchyard_fakes::{FakeUpstream, Script, Step};

/// A distinctive Gemini key, asserted never to reach a client or a URL.
const GKEY: &str = "AIzaSyTEST-gemini-key-0123456789abcdef";
const MODEL: &str = "gemini-2.5-flash";

/// A strict fake Gemini that checks the key and replayed thought signatures.
async fn fake(steps: Vec<GeminiStep>) -> FakeGemini {
    FakeGemini::start_with(GeminiConfig { api_key: Some(GKEY.into()), strict_signatures: true, ..GeminiConfig::default() }, steps).await
}

fn gemini_provider(name: &str, base_url: &str, key: &str) -> String {
    format!("[providers.{name}]\nkind = \"gemini\"\nbase_url = \"{base_url}\"\napi_key = \"{key}\"\n")
}

/// Alias `chat = [g/gemini-2.5-flash]`.
fn one_gemini(g: &FakeGemini, extra: &str) -> String {
    format!("{}\n[models.chat]\ntargets = [\"g/{MODEL}\"]\n{FAST}\n{extra}", gemini_provider("g", &g.base_url(), GKEY))
}

/// Alias `chat = [g/gemini-2.5-flash, b/model-b]`, `b` an OpenAI-compatible fake.
fn gemini_then_openai(g: &FakeGemini, b: &FakeUpstream, extra: &str) -> String {
    format!(
        "{}{}\n[models.chat]\ntargets = [\"g/{MODEL}\", \"b/model-b\"]\n{FAST}\n{extra}",
        gemini_provider("g", &g.base_url(), GKEY),
        openai_provider("b", &b.base_url(), KEY_B)
    )
}

fn weather_request() -> Value {
    json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "What is the weather in Lisbon?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather", "strict": true,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"], "enum": ["c", "f"]}},
                           "required": ["city"], "additionalProperties": false, "$schema": "http://json-schema.org/draft-07/schema#"}}}],
        "tool_choice": "required"
    })
}

fn assert_no_gemini_key(text: &str) {
    assert!(!text.contains(GKEY), "the Gemini key leaked: {text}");
}

#[tokio::test]
async fn plain_completion_is_translated_both_ways() {
    let g = fake(vec![GeminiStep::text("Hello from Gemini, translated.")]).await;
    let gw = start(&one_gemini(&g, "")).await;

    let r = gw
        .chat(&json!({"model": "chat", "temperature": 0.3, "max_tokens": 64, "stop": "END", "user": "u1",
            "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]}))
        .await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "g");
    assert_eq!(r.header("x-switchyard-model"), MODEL);
    assert_eq!(r.attempts(), 1);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "chat");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": "Hello from Gemini, translated."}));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let usage = &v["usage"];
    assert_eq!(usage["completion_tokens"], 4);
    assert_eq!(usage["total_tokens"].as_u64(), Some(usage["prompt_tokens"].as_u64().unwrap() + 4));

    let rec = g.last_request().unwrap();
    assert_eq!(rec.uri, format!("/v1beta/models/{MODEL}:generateContent"));
    assert!(!rec.uri.contains("key"), "the key is never in the URL: {}", rec.uri);
    assert_eq!(rec.headers["x-goog-api-key"], GKEY);
    assert!(rec.headers.get("authorization").is_none());
    assert_eq!(
        rec.body,
        json!({
            "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
            "systemInstruction": {"parts": [{"text": "You are terse."}]},
            "generationConfig": {"temperature": 0.3, "maxOutputTokens": 64, "stopSequences": ["END"]}
        })
    );
    assert_no_gemini_key(&r.text());
}

#[tokio::test]
async fn stream_is_translated_with_usage_and_done() {
    let g = fake(vec![GeminiStep::text("one two three four five six").chunks(3).chunk_delay(Duration::from_millis(5))]).await;
    let gw = start(&one_gemini(&g, "")).await;
    let mut body = stream_body("chat");
    body["stream_options"] = json!({"include_usage": true});

    let r = gw.chat(&body).await;

    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("text/event-stream"));
    let events = r.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = chunks(&events);
    // Preamble, three text deltas, finish, usage.
    assert_eq!(chunks.len(), 6, "{events:#?}");
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(streamed_text(&chunks), "one two three four five six");
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 6);
    for c in &chunks {
        assert_eq!(c["model"], "chat");
        assert_eq!(c["id"], chunks[0]["id"], "one id for the whole stream");
    }
    for c in &chunks[..5] {
        assert_eq!(c["usage"], Value::Null);
    }
    let rec = g.last_request().unwrap();
    assert_eq!(rec.uri, format!("/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"));
    assert!(rec.body.get("stream").is_none() && rec.body.get("stream_options").is_none(), "{}", rec.body);
}

#[tokio::test]
async fn tool_call_round_trip_carries_the_thought_signature_back() {
    let g = fake(Vec::new()).await; // Auto: calls the tool, then reports its result
    let gw = start(&one_gemini(&g, "")).await;

    let r = gw.chat(&weather_request()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let message = v["choices"][0]["message"].clone();
    assert_eq!(message["content"], Value::Null);
    let call = &message["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(), json!({"city": "example", "unit": "c"}));
    let signature = call["extra_content"]["google"]["thought_signature"].as_str().expect("the signature rides along").to_owned();

    // What Gemini got: a cleaned schema (the fake rejects unknown fields) and ANY mode.
    let rec = g.last_request().unwrap();
    assert_eq!(rec.body["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
    assert_eq!(
        rec.body["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "nullable": true, "enum": ["c", "f"]}}, "required": ["city"]})
    );

    // Turn two: the client sends the assistant message back as it got it, plus the result.
    let mut turn2 = weather_request();
    turn2["tool_choice"] = json!("auto");
    turn2["messages"].as_array_mut().unwrap().extend([
        message.clone(),
        json!({"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 21}"}),
    ]);
    let r = gw.chat(&turn2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "The function get_weather returned {\"temp_c\":21}.");
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
    let rec = g.last_request().unwrap();
    let contents = rec.body["contents"].as_array().unwrap();
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(contents[1]["parts"][0]["thoughtSignature"], signature.as_str());
    assert_eq!(contents[2]["parts"][0], json!({"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}));
}

#[tokio::test]
async fn streamed_tool_call_is_one_whole_delta_and_its_signature_comes_back() {
    let g = fake(Vec::new()).await;
    let gw = start(&one_gemini(&g, "")).await;
    let mut body = weather_request();
    body["stream"] = json!(true);

    let r = gw.chat(&body).await;

    assert_eq!(r.status, StatusCode::OK);
    let events = r.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = chunks(&events);
    let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(deltas.len(), 1, "{events:#?}");
    let call = deltas[0];
    assert_eq!(call["index"], 0);
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap()["city"], "example");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");

    let assistant = json!({"role": "assistant", "content": null, "tool_calls": [{"id": call["id"], "type": "function",
        "function": call["function"], "extra_content": call["extra_content"]}]});
    let mut turn2 = body.clone();
    turn2["tool_choice"] = json!("auto");
    turn2["messages"].as_array_mut().unwrap().extend([assistant, json!({"role": "tool", "tool_call_id": call["id"], "content": "sunny"})]);
    let r = gw.chat(&turn2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(streamed_text(&chunks_of(&r)), "The function get_weather returned {\"content\":\"sunny\"}.");
    assert_eq!(g.last_request().unwrap().body["contents"][1]["parts"][0]["thoughtSignature"], call["extra_content"]["google"]["thought_signature"]);
}

fn chunks_of(r: &Resp) -> Vec<Value> {
    chunks(&r.events())
}

#[tokio::test]
async fn a_history_from_another_provider_passes_strict_validation_and_a_forged_signature_is_the_callers_error() {
    let g = fake(Vec::new()).await;
    let gw = start(&one_gemini(&g, "")).await;
    let history = |extra: Option<Value>| {
        let mut call = json!({"id": "call_from_openai", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Lisbon\"}"}});
        if let Some(e) = extra {
            call["extra_content"] = e;
        }
        let mut body = weather_request();
        body["tool_choice"] = json!("auto");
        body["messages"].as_array_mut().unwrap().extend([
            json!({"role": "assistant", "content": null, "tool_calls": [call]}),
            json!({"role": "tool", "tool_call_id": "call_from_openai", "content": "{\"temp_c\": 19}"}),
        ]);
        body
    };

    let r = gw.chat(&history(None)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(g.last_request().unwrap().body["contents"][1]["parts"][0]["thoughtSignature"], SKIP_SIGNATURE);

    let r = gw.chat(&history(Some(json!({"google": {"thought_signature": "Cforged-signature"}})))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.error()["message"], "Corrupted thought signature.");
    assert_eq!(r.error()["code"], "INVALID_ARGUMENT");
    assert_eq!(r.attempts(), 1, "the caller's error is not retried");
}

#[tokio::test]
async fn images_become_inline_data_and_file_references() {
    let g = fake(Vec::new()).await;
    let gw = start(&one_gemini(&g, "")).await;
    let r = gw
        .chat(&json!({"model": "chat", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare these"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/photo.png"}}
        ]}]}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        g.last_request().unwrap().body["contents"][0]["parts"],
        json!([
            {"text": "Compare these"},
            {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
            {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/photo.png"}}
        ])
    );
}

#[tokio::test]
async fn usage_counts_thinking_and_cached_tokens_streamed_or_not() {
    let step = || GeminiStep::text("three words here").thoughts(100).cached(2);
    let g = fake(vec![step(), step()]).await;
    let gw = start(&one_gemini(&g, "")).await;

    let u = gw.chat(&chat_body("chat")).await.json()["usage"].clone();
    let mut body = stream_body("chat");
    body["stream_options"] = json!({"include_usage": true});
    let streamed = chunks_of(&gw.chat(&body).await).last().unwrap()["usage"].clone();

    for usage in [&u, &streamed] {
        assert_eq!(usage["completion_tokens"], 103, "{usage}");
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 100);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 2);
        assert_eq!(usage["total_tokens"].as_u64(), Some(usage["prompt_tokens"].as_u64().unwrap() + 103));
    }
    assert_eq!(u, streamed);
}

#[tokio::test]
async fn each_finish_reason_maps_streamed_or_not() {
    let cases = [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("OTHER", "stop")];
    let g = fake(Vec::new()).await;
    let gw = start(&one_gemini(&g, "")).await;
    for (gemini, openai) in cases {
        g.push(GeminiStep::text("some text").finish(gemini));
        let r = gw.chat(&chat_body("chat")).await;
        assert_eq!(r.json()["choices"][0]["finish_reason"], openai, "{gemini}");
        g.push(GeminiStep::text("some text").finish(gemini));
        let chunks = chunks_of(&gw.chat(&stream_body("chat")).await);
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], openai, "streamed {gemini}");
    }
}

#[tokio::test]
async fn safety_blocks_are_content_filter_answers_not_errors() {
    let g = fake(vec![GeminiStep::safety_block(), GeminiStep::safety_block(), GeminiStep::prompt_blocked(), GeminiStep::prompt_blocked()]).await;
    let gw = start(&one_gemini(&g, "")).await;

    for stream in [false, true] {
        for what in ["candidate", "prompt"] {
            let r = gw.chat(&if stream { stream_body("chat") } else { chat_body("chat") }).await;
            assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.text());
            assert_eq!(r.attempts(), 1);
            if stream {
                let events = r.events();
                assert_eq!(events.last().unwrap(), "[DONE]");
                let chunks = chunks(&events);
                assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "content_filter", "{what}");
                assert_eq!(streamed_text(&chunks), "");
            } else {
                let v = r.json();
                assert_eq!(v["choices"][0]["finish_reason"], "content_filter", "{what}");
                assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
            }
        }
        g.push(GeminiStep::safety_block());
        g.push(GeminiStep::prompt_blocked());
    }
}

#[tokio::test]
async fn resource_exhausted_fails_over_to_the_next_target() {
    // A quota error whose RetryInfo (30s) exceeds the retry-after cap moves on at once.
    let g = fake(vec![GeminiStep::rate_limited("30s")]).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::reply("from the backup"))).await;
    let gw = start(&gemini_then_openai(&g, &b, "")).await;

    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(r.attempts(), 2);
    assert_eq!((g.requests(), b.requests()), (1, 1));
    assert_eq!(r.json()["choices"][0]["message"]["content"], "from the backup");
}

#[tokio::test]
async fn short_quota_waits_and_unavailable_are_retried_on_gemini() {
    let g = fake(vec![GeminiStep::rate_limited("0.05s"), GeminiStep::error(503), GeminiStep::text("third time lucky")]).await;
    let gw = start(&one_gemini(&g, "[models.chat.retry]\nattempts_per_target = 3\n")).await;

    let started = std::time::Instant::now();
    let r = gw.chat(&chat_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.attempts(), 3);
    assert!(started.elapsed() >= Duration::from_millis(50), "the RetryInfo delay was honoured");
    assert_eq!(r.json()["choices"][0]["message"]["content"], "third time lucky");
}

#[tokio::test]
async fn exhausted_chain_reports_gemini_errors_without_the_key() {
    let g = fake(vec![GeminiStep::rate_limited("30s")]).await;
    let gw = start(&one_gemini(&g, "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.get("retry-after").is_some());
    let message = r.error()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("You exceeded your current quota"), "{message}");
    assert_no_gemini_key(&r.text());
}

#[tokio::test]
async fn a_wrong_key_and_a_long_prompt_move_on_but_a_bad_request_does_not() {
    let wrong = FakeGemini::start_with(GeminiConfig { api_key: Some("AIza-some-other-key".into()), ..GeminiConfig::default() }, Vec::new()).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&gemini_then_openai(&wrong, &b, "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "an invalid key (HTTP 400 from Google) is not the caller's fault: {}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(wrong.requests(), 1, "not retried");

    let g = fake(vec![GeminiStep::context_length(), GeminiStep::error(400)]).await;
    let b = FakeUpstream::start(Script::new()).await;
    let gw = start(&gemini_then_openai(&g, &b, "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.header("x-switchyard-provider"), "b", "a context-length error moves on");
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error()["code"], "INVALID_ARGUMENT");
    assert_eq!(r.error()["message"], "Request contains an invalid argument.");
    assert_eq!(b.requests(), 1, "the caller's error is not failed over");
}

#[tokio::test]
async fn content_gemini_cannot_take_fails_over() {
    let g = fake(Vec::new()).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::reply("openai took the file"))).await;
    let gw = start(&gemini_then_openai(&g, &b, "")).await;
    let r = gw
        .chat(&json!({"model": "chat", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc123"}}]}]}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(g.requests(), 0, "nothing was sent to Gemini");
}

#[tokio::test]
async fn a_stream_that_breaks_before_content_fails_over_invisibly() {
    let g = fake(vec![GeminiStep::DropAfter(0), GeminiStep::ErrorEvent { after: 0, error: switchyard_fakes::gemini::GeminiError::new(503) }]).await;
    let b = FakeUpstream::start(Script::new().default_step(Step::reply("from the backup"))).await;
    let gw = start(&gemini_then_openai(&g, &b, "")).await;

    let r = gw.chat(&stream_body("chat")).await;

    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(r.attempts(), 3);
    assert_eq!(streamed_text(&chunks_of(&r)), "from the backup");
    assert!(!r.text().contains("error"), "{}", r.text());
}

#[tokio::test]
async fn a_stream_that_breaks_after_content_ends_with_an_error_event() {
    for step in [GeminiStep::DropAfter(2), GeminiStep::EndWithoutFinish(2), GeminiStep::ErrorEvent { after: 2, error: switchyard_fakes::gemini::GeminiError::new(500) }] {
        let g = fake(vec![step.clone()]).await;
        let gw = start(&one_gemini(&g, "")).await;

        let r = gw.chat(&stream_body("chat")).await;

        assert_eq!(r.status, StatusCode::OK);
        let events = r.events();
        assert!(!events.iter().any(|e| e == "[DONE]"), "{step:?}: {events:#?}");
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert_eq!(last["error"]["code"], "upstream_stream_error", "{step:?}: {last}");
        assert_eq!(streamed_text(&chunks(&events[..events.len() - 1])), "Hello from ", "{step:?}");
        assert_no_gemini_key(&r.text());
    }
}

#[tokio::test]
async fn thought_summaries_are_not_shown_as_content() {
    let g = fake(vec![GeminiStep::answer(vec![AnswerPart::Thought("The user wants a greeting.".into()), AnswerPart::Text("Hi!".into())])]).await;
    let gw = start(&one_gemini(&g, "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Hi!");
}

#[tokio::test]
async fn config_accepts_gemini_options_and_names_a_bad_one() {
    let config = switchyard_core::Config::from_toml_str(
        &format!("{}\n[models.chat]\ntargets = [\"g/{MODEL}\"]\n", gemini_provider("g", "https://generativelanguage.googleapis.com/v1beta", GKEY)),
        "t.toml",
    )
    .unwrap();
    let gateway = switchyard_core::Gateway::new(config).unwrap();
    drop(gateway);
    let bad = switchyard_core::Config::from_toml_str("[providers.g]\nkind = \"gemini\"\nsafety_settings = [{ category = \"X\" }]\n[models.chat]\ntargets = [\"g/m\"]\n", "t.toml");
    let Err(e) = bad else { panic!("a safety setting needs a threshold") };
    let e = e.to_string();
    assert!(e.contains("safety_settings"), "{e}");
}
