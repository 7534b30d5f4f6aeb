//! OpenAI ingress → AWS Bedrock's Converse / ConverseStream (`kind = "bedrock"`), against a fake
//! Bedrock runtime that checks the SigV4 headers and answers in the AWS event-stream framing.

mod common;

use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use switchyard_fakes::bedrock::{BedrockStep, Expect, FakeBedrock};
use switchyard_fakes::{FakeUpstream, Script};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION: &str = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn bedrock_provider(fake: &FakeBedrock, extra: &str) -> String {
    format!(
        "[providers.aws]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nbase_url = \"{}\"\naccess_key_id = \"{AKID}\"\nsecret_access_key = \"{SECRET}\"\n{extra}\n",
        fake.base_url()
    )
}

fn config(fake: &FakeBedrock, backup: Option<&FakeUpstream>, extra: &str) -> String {
    let mut toml = bedrock_provider(fake, "");
    let mut targets = vec![format!("\"aws/{MODEL}\"")];
    if let Some(b) = backup {
        toml.push_str(&openai_provider("b", &b.base_url(), KEY_B));
        targets.push("\"b/model-b\"".to_owned());
    }
    format!("{toml}\n[models.chat]\ntargets = [{}]\n{FAST}\n{extra}", targets.join(", "))
}

/// No credential or signature material in what the caller got.
fn assert_no_credentials(r: &Resp) {
    let text = r.text();
    for secret in [SECRET, SESSION, AKID, "AWS4-HMAC-SHA256", "Signature="] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    for (name, value) in &r.headers {
        let v = value.to_str().unwrap_or("");
        assert!(!v.contains(SECRET) && !v.contains(AKID), "header {name} leaked credentials");
    }
}

#[tokio::test]
async fn plain_completion_is_translated_and_signed() {
    let fake = FakeBedrock::start(vec![BedrockStep::text("Hi from Bedrock")]).await;
    let gw = start(&config(&fake, None, "")).await;
    let mut body = chat_body("chat");
    body["max_tokens"] = json!(50);
    body["temperature"] = json!(0.2);
    body["stop"] = json!(["END"]);
    let r = gw.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "aws");
    assert_eq!(r.header("x-switchyard-model"), MODEL);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "chat");
    assert_eq!(v["choices"][0]["message"]["content"], "Hi from Bedrock");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_no_credentials(&r);

    let sent = fake.last_request().unwrap();
    assert_eq!(sent.uri, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
    assert_eq!(
        sent.body,
        json!({
            "system": [{"text": "You are terse."}],
            "messages": [{"role": "user", "content": [{"text": "Say hello to the gateway"}]}],
            "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "stopSequences": ["END"]}
        })
    );
    let auth = sent.headers["authorization"].to_str().unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
    assert!(auth.contains("/us-east-1/bedrock/aws4_request, SignedHeaders="), "{auth}");
    let date = sent.headers["x-amz-date"].to_str().unwrap();
    assert!(auth.contains(&format!("Credential=AKIDEXAMPLE/{}/", &date[..8])), "{auth} {date}");
    assert!(!sent.headers.contains_key("x-amz-security-token"));
}

#[tokio::test]
async fn event_streams_become_openai_chunks_with_usage() {
    let fake = FakeBedrock::start(vec![BedrockStep::text("one two three four")]).await;
    let gw = start(&config(&fake, None, "")).await;
    let mut body = stream_body("chat");
    body["stream_options"] = json!({"include_usage": true});
    let r = gw.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), "text/event-stream");
    let events = r.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks(&events);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&chunks), "one two three four");
    let finish: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0)).map(|c| &c["finish_reason"]).filter(|f| !f.is_null()).collect();
    assert_eq!(finish, [&json!("stop")]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 4);
    assert!(chunks.iter().all(|c| c["model"] == "chat"));
    assert_eq!(fake.last_request().unwrap().uri, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream");
    assert_no_credentials(&r);

    // Without include_usage, no usage chunk reaches the caller.
    fake.push(BedrockStep::text("five six"));
    let r = gw.chat(&stream_body("chat")).await;
    let plain = common::chunks(&r.events());
    assert_eq!(streamed_text(&plain), "five six");
    assert!(plain.iter().all(|c| c.get("usage").is_none()), "{plain:?}");
}

#[tokio::test]
async fn tool_calls_round_trip_streamed_and_not() {
    let call = || BedrockStep::ToolUse { text: Some("Checking.".into()), name: "get_weather".into(), input: json!({"city": "Paris", "unit": "celsius"}) };
    let fake = FakeBedrock::start(vec![call(), call()]).await;
    let gw = start(&config(&fake, None, "")).await;
    let mut body = chat_body("chat");
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}]);
    body["tool_choice"] = json!("required");

    let v = gw.chat(&body).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["choices"][0]["message"]["content"], "Checking.");
    let tc = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(tc["id"], "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(tc["function"]["name"], "get_weather");
    assert_eq!(serde_json::from_str::<Value>(tc["function"]["arguments"].as_str().unwrap()).unwrap(), json!({"city": "Paris", "unit": "celsius"}));
    let sent = fake.last_request().unwrap().body;
    assert_eq!(
        sent["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather by city",
            "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}}],
            "toolChoice": {"any": {}}})
    );

    body["stream"] = json!(true);
    let r = gw.chat(&body).await;
    let chunks = chunks(&r.events());
    let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).collect();
    assert!(deltas.len() >= 4, "one delta per input fragment: {deltas:?}");
    assert_eq!(deltas[0][0]["id"], "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(deltas[0][0]["function"]["name"], "get_weather");
    assert!(deltas.iter().all(|d| d[0]["index"] == 0));
    let args: String = deltas.iter().filter_map(|d| d[0]["function"]["arguments"].as_str()).collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(streamed_text(&chunks), "Checking.");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));

    // The next turn carries the call and its result back as toolUse / toolResult blocks.
    let next = json!({"model": "chat", "tools": body["tools"], "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": "sunny"}
    ]});
    assert_eq!(gw.chat(&next).await.status, StatusCode::OK);
    let sent = fake.last_request().unwrap().body;
    assert_eq!(sent["messages"][1], json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]}));
    assert_eq!(sent["messages"][2], json!({"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sunny"}]}}]}));
}

#[tokio::test]
async fn images_go_inline_and_links_move_on() {
    let fake = FakeBedrock::start(vec![]).await;
    let backup = FakeUpstream::start(Script::new()).await;
    let gw = start(&config(&fake, Some(&backup), "")).await;
    let inline = json!({"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
    let r = gw.chat(&inline).await;
    assert_eq!(r.header("x-switchyard-provider"), "aws");
    assert_eq!(
        fake.last_request().unwrap().body["messages"][0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}})
    );

    let link = json!({"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let r = gw.chat(&link).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(fake.requests(), 1, "nothing was sent to Bedrock for the link");
}

#[tokio::test]
async fn usage_with_cache_and_stop_reasons() {
    let fake = FakeBedrock::start(vec![
        BedrockStep::Cached { text: "cached answer".into(), read: 100, write: 20 },
        BedrockStep::Stop { text: "cut".into(), reason: "max_tokens".into() },
        BedrockStep::Stop { text: "blocked".into(), reason: "guardrail_intervened".into() },
        BedrockStep::Stop { text: "sequence".into(), reason: "stop_sequence".into() },
        BedrockStep::Stop { text: "cut streamed".into(), reason: "max_tokens".into() },
    ])
    .await;
    let gw = start(&config(&fake, None, "")).await;
    let v = gw.chat(&chat_body("chat")).await.json();
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 120, "cache reads and writes count in the prompt: {v}");
    assert_eq!(v["usage"]["prompt_tokens_details"], json!({"cached_tokens": 100, "cache_creation_tokens": 20}));
    assert_eq!(v["usage"]["total_tokens"].as_u64().unwrap(), prompt + 2);
    for finish in ["length", "content_filter", "stop"] {
        assert_eq!(gw.chat(&chat_body("chat")).await.json()["choices"][0]["finish_reason"], finish);
    }
    let chunks = chunks(&gw.chat(&stream_body("chat")).await.events());
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "length"), "{chunks:?}");
}

#[tokio::test]
async fn throttling_fails_over_to_the_next_target() {
    let fake = FakeBedrock::start(vec![BedrockStep::throttled(), BedrockStep::throttled()]).await;
    let backup = FakeUpstream::start(Script::new()).await;
    let gw = start(&config(&fake, Some(&backup), "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(fake.requests(), 2, "429 is retried on the same target first");
    assert_eq!(r.attempts(), 3);

    // With Bedrock alone, the caller gets a 429.
    let fake = FakeBedrock::start(vec![BedrockStep::throttled(), BedrockStep::throttled()]).await;
    let gw = start(&config(&fake, None, "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert!(r.text().contains("Too many requests"), "{}", r.text());
    assert_no_credentials(&r);
}

#[tokio::test]
async fn errors_map_to_the_chain() {
    // A validation error is the caller's: answered at once, no failover.
    let fake = FakeBedrock::start(vec![BedrockStep::Status { status: 400, error_type: "ValidationException".into(), message: "temperature: must be <= 1".into() }]).await;
    let backup = FakeUpstream::start(Script::new()).await;
    let gw = start(&config(&fake, Some(&backup), "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(backup.requests(), 0);

    // "Input is too long" moves on; so does a missing model.
    fake.push(BedrockStep::Status { status: 400, error_type: "ValidationException".into(), message: "Input is too long for requested model.".into() });
    assert_eq!(gw.chat(&chat_body("chat")).await.header("x-switchyard-provider"), "b");
    fake.push(BedrockStep::Status { status: 404, error_type: "ResourceNotFoundException".into(), message: "Could not resolve the foundation model".into() });
    assert_eq!(gw.chat(&chat_body("chat")).await.header("x-switchyard-provider"), "b");
}

#[tokio::test]
async fn an_exception_frame_before_content_fails_over_and_after_content_ends_with_an_error_event() {
    let before = || BedrockStep::Exception { after: 0, exception_type: "throttlingException".into(), message: "Too many tokens, please wait.".into() };
    let fake = FakeBedrock::start(vec![before(), before()]).await;
    let backup = FakeUpstream::start(Script::new()).await;
    let gw = start(&config(&fake, Some(&backup), "")).await;
    let r = gw.chat(&stream_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert!(!r.text().contains("\"error\""), "{}", r.text());
    assert_eq!(fake.requests(), 2);

    let fake = FakeBedrock::start(vec![BedrockStep::Exception {
        after: 3,
        exception_type: "modelStreamErrorException".into(),
        message: "The model stream failed.".into(),
    }])
    .await;
    let gw = start(&config(&fake, Some(&backup), "")).await;
    let r = gw.chat(&stream_body("chat")).await;
    assert_eq!(r.header("x-switchyard-provider"), "aws");
    let events = r.events();
    assert_ne!(events.last().map(String::as_str), Some("[DONE]"));
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    assert!(last["error"]["message"].as_str().unwrap().contains("modelStreamErrorException"), "{last}");
    assert_eq!(streamed_text(&chunks(&events[..events.len() - 1])), "one two three ");
    assert_no_credentials(&r);

    let fake = FakeBedrock::start(vec![BedrockStep::DropAfter(2)]).await;
    let gw = start(&config(&fake, None, "")).await;
    let events = gw.chat(&stream_body("chat")).await.events();
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    assert_eq!(streamed_text(&chunks(&events[..events.len() - 1])), "one two ");
}

#[tokio::test]
async fn session_tokens_are_sent_and_wrong_credentials_move_on() {
    let expect = Expect { session_token: Some(SESSION.into()), ..Expect::default() };
    let fake = FakeBedrock::start_expecting(vec![], expect.clone()).await;
    let toml = format!("{}\n[models.chat]\ntargets = [\"aws/{MODEL}\"]\n{FAST}", bedrock_provider(&fake, &format!("session_token = \"{SESSION}\"")));
    let gw = start(&toml).await;
    let r = gw.chat(&stream_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(streamed_text(&chunks(&r.events())), "Hello from the fake Bedrock.");
    let sent = fake.last_request().unwrap();
    assert_eq!(sent.headers["x-amz-security-token"], SESSION);
    assert!(sent.headers["authorization"].to_str().unwrap().contains("x-amz-security-token"));
    assert_no_credentials(&r);

    // The fake rejects a request without the token (AWS: UnrecognizedClientException, 403),
    // and the chain moves to the next target.
    let backup = FakeUpstream::start(Script::new()).await;
    let gw = start(&config(&fake, Some(&backup), "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_no_credentials(&r);
    let gw = start(&config(&fake, None, "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(r.text().contains("security token included in the request is invalid"), "{}", r.text());
    assert_no_credentials(&r);
}
