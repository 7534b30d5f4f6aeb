//! The fake Anthropic upstream on the wire: its bodies and event streams have the shapes of the
//! API reference's examples (the fixtures), it rejects what the API rejects, and each scripted
//! step behaves as documented.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use switchyard_fakes::anthropic::{Answer, AnthropicScript, AnthropicStep, FakeAnthropic, Usage};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/anthropic/");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap()
}

fn body(stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
           "system": "Be brief.", "messages": [{"role": "user", "content": "What is the weather in Paris?"}]})
}

/// (status, headers, body) of a POST to `/v1/messages`.
async fn post(fake: &FakeAnthropic, body: &Value, headers: &[(&str, &str)]) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::post(format!("{}/v1/messages", fake.base_url())).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts.status, parts.headers, bytes))
}

const AUTH: &[(&str, &str)] = &[("x-api-key", "sk-ant-test"), ("anthropic-version", "2023-06-01")];

async fn messages(fake: &FakeAnthropic, body: &Value) -> (StatusCode, HeaderMap, Bytes) {
    post(fake, body, AUTH).await.unwrap()
}

/// The (name, JSON) of each event, checking the framing: `event: NAME\ndata: JSON\n\n` with
/// NAME equal to the JSON's `type`.
fn events(sse: &str) -> Vec<(String, Value)> {
    assert!(sse.ends_with("\n\n"), "{sse:?}");
    sse.split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e.strip_prefix("event: ").and_then(|e| e.split_once("\ndata: ")).unwrap_or_else(|| panic!("framing: {e:?}"));
            let json: Value = serde_json::from_str(data).unwrap();
            assert_eq!(json["type"], name, "event name = type");
            (name.to_owned(), json)
        })
        .collect()
}

/// A value's shape: its keys and value kinds, recursively (array shapes from their first item).
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!(null),
    }
}

/// The fixture event of the same name (and, for blocks and deltas, the same inner type).
fn fixture_event<'a>(fixture: &'a [(String, Value)], name: &str, inner: Option<&str>) -> &'a Value {
    let inner_type = |v: &Value| v.pointer("/content_block/type").or(v.pointer("/delta/type")).and_then(Value::as_str).map(str::to_owned);
    &fixture
        .iter()
        .find(|(n, v)| n == name && (inner.is_none() || inner_type(v).as_deref() == inner))
        .unwrap_or_else(|| panic!("no {name} {inner:?} in the fixture"))
        .1
}

#[tokio::test]
async fn a_streamed_tool_call_has_the_fixture_event_sequence_and_shapes() {
    let fake = FakeAnthropic::start(AnthropicScript::new().then(
        Answer::tool_use("get_weather", json!({"location": "Zürich, CH", "unit": "celsius"})).with_text("Okay, let's check the weather.").chunks(2).fragments(3),
    ))
    .await;
    let (status, headers, bytes) = messages(&fake, &body(true)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let ours = events(std::str::from_utf8(&bytes).unwrap());
    let theirs = events(&fixture("stream_tool_use.sse"));
    let names = |evs: &[(String, Value)]| evs.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let mut expected = names(&theirs);
    // The fixture pings after the first delta, the fake right after the block start: both allowed.
    expected.retain(|n| n != "ping");
    let mut got = names(&ours);
    got.retain(|n| n != "ping");
    assert_eq!(got.iter().filter(|n| *n == "content_block_delta").count(), 2 + 4, "2 text deltas, an empty fragment and 3 more: {got:?}");
    got.dedup();
    expected.dedup();
    assert_eq!(got, expected);
    for (name, json) in &ours {
        let inner = json.pointer("/content_block/type").or(json.pointer("/delta/type")).and_then(Value::as_str);
        if name == "ping" {
            continue;
        }
        assert_eq!(shape(json), shape(fixture_event(&theirs, name, inner)), "{name} {inner:?}");
    }
    let fragments: String = ours.iter().filter_map(|(_, v)| v.pointer("/delta/partial_json").and_then(Value::as_str)).collect();
    assert_eq!(serde_json::from_str::<Value>(&fragments).unwrap(), json!({"location": "Zürich, CH", "unit": "celsius"}));
    let first_fragment = ours.iter().find_map(|(_, v)| v.pointer("/delta/partial_json")).unwrap();
    assert_eq!(first_fragment, "", "the API opens with an empty fragment");
    assert_eq!(ours.last().unwrap().0, "message_stop");
    assert_eq!(ours[ours.len() - 2].1["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn a_text_message_has_the_fixture_shape() {
    let usage = Usage { input_tokens: 21, output_tokens: 393, cache_creation_input_tokens: 188_086, cache_read_input_tokens: 1024 };
    let fake = FakeAnthropic::start(AnthropicScript::new().then(Answer::text("Hi! My name is Claude.").usage(usage))).await;
    let (status, headers, bytes) = messages(&fake, &body(false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.contains_key("request-id"));
    let ours: Value = serde_json::from_slice(&bytes).unwrap();
    let theirs: Value = serde_json::from_str(&fixture("message_tool_use.json")).unwrap();
    let mut want = shape(&theirs);
    // Fields the current API adds to usage.
    want["usage"]["cache_creation"] = json!({"ephemeral_5m_input_tokens": "number", "ephemeral_1h_input_tokens": "number"});
    want["usage"]["service_tier"] = json!("string");
    assert_eq!(shape(&ours), want);
    assert_eq!(ours["content"], json!([{"type": "text", "text": "Hi! My name is Claude."}]));
    assert_eq!(ours["model"], "claude-sonnet-4-5");
    assert!(ours["id"].as_str().unwrap().starts_with("msg_01"));
    assert_eq!(ours["stop_reason"], "end_turn");
    assert_eq!((ours["usage"]["cache_read_input_tokens"].as_u64(), ours["usage"]["output_tokens"].as_u64()), (Some(1024), Some(393)));
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with(r#"{"model":"claude-sonnet-4-5","id":"msg_01"#), "field order as the API sends it: {text}");
}

#[tokio::test]
async fn error_statuses_carry_anthropics_error_body() {
    let fake = FakeAnthropic::start(
        AnthropicScript::new().then(AnthropicStep::overloaded()).then(AnthropicStep::rate_limited("7")).then(AnthropicStep::prompt_too_long()),
    )
    .await;
    let (status, _, bytes) = messages(&fake, &body(false)).await;
    assert_eq!(status.as_u16(), 529);
    let ours: Value = serde_json::from_slice(&bytes).unwrap();
    let theirs: Value = serde_json::from_str(&fixture("error_overloaded.json")).unwrap();
    assert_eq!(shape(&ours), shape(&theirs));
    assert_eq!(ours["error"], theirs["error"]);
    let (status, headers, bytes) = messages(&fake, &body(true)).await;
    assert_eq!((status.as_u16(), headers["retry-after"].to_str().unwrap()), (429, "7"));
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap()["error"]["type"], "rate_limit_error");
    let (status, _, bytes) = messages(&fake, &body(false)).await;
    assert_eq!(status.as_u16(), 400);
    assert!(serde_json::from_slice::<Value>(&bytes).unwrap()["error"]["message"].as_str().unwrap().starts_with("prompt is too long"));
}

#[tokio::test]
async fn an_error_event_follows_message_start() {
    let fake = FakeAnthropic::start(AnthropicScript::new().default_step(AnthropicStep::error_event("overloaded_error"))).await;
    let (status, _, bytes) = messages(&fake, &body(true)).await;
    assert_eq!(status, StatusCode::OK);
    let ours = events(std::str::from_utf8(&bytes).unwrap());
    let theirs = events(&fixture("stream_error_overloaded.sse"));
    let names: Vec<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["message_start", "ping", "error"]);
    assert_eq!(ours[2].1, theirs[2].1);
    let (status, _, bytes) = messages(&fake, &body(false)).await;
    assert_eq!(status.as_u16(), 529, "non-streaming: the same error as a status");
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap()["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn a_drop_after_content_aborts_the_connection() {
    let fake = FakeAnthropic::start(AnthropicScript::new().default_step(AnthropicStep::DropAfter { after: 2 })).await;
    let err = post(&fake, &body(true), AUTH).await.expect_err("the body fails");
    assert!(!err.is_empty());
    assert!(post(&fake, &body(false), AUTH).await.is_err(), "non-streaming: closed without an answer");
}

#[tokio::test]
async fn requests_are_checked_like_the_api_does() {
    let fake = FakeAnthropic::start(AnthropicScript::new()).await;
    let (status, _, bytes) = post(&fake, &body(false), &[("anthropic-version", "2023-06-01")]).await.unwrap();
    assert_eq!(status.as_u16(), 401);
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap()["error"]["type"], "authentication_error");
    let (status, _, _) = post(&fake, &body(false), &[("authorization", "Bearer sk-ant-test")]).await.unwrap();
    assert_eq!(status.as_u16(), 400, "anthropic-version is required");
    let (status, _, _) = post(&fake, &body(false), &[("authorization", "Bearer sk-ant-test"), ("anthropic-version", "2023-06-01")]).await.unwrap();
    assert_eq!(status, StatusCode::OK, "Bearer auth is accepted");
    for (field, bad) in [("max_tokens", json!(null)), ("messages", json!([{"role": "system", "content": "x"}]))] {
        let mut b = body(false);
        if bad.is_null() {
            b.as_object_mut().unwrap().remove(field);
        } else {
            b[field] = bad;
        }
        let (status, _, bytes) = messages(&fake, &b).await;
        assert_eq!(status.as_u16(), 400, "{field}");
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap()["error"]["type"], "invalid_request_error");
    }
    assert_eq!(fake.requests(), 5);
    let last = fake.last_request().unwrap();
    assert_eq!(last.uri, "/v1/messages");
    assert_eq!(last.headers["x-api-key"], "sk-ant-test");
    assert_eq!(last.body["messages"][0]["role"], "system");
}

#[tokio::test]
async fn tools_are_called_when_offered_and_results_answered() {
    let fake = FakeAnthropic::start(AnthropicScript::new().default_step(Answer::tools_when_offered(json!({"city": "Paris"})))).await;
    let mut b = body(false);
    b["tools"] = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    let (_, _, bytes) = messages(&fake, &b).await;
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(m["content"][0]["name"], "get_weather");
    assert_eq!(m["content"][0]["input"], json!({"city": "Paris"}));
    let id = m["content"][0]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("toolu_01"));
    b["messages"] = json!([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": m["content"].clone()},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "18C and sunny"}]}
    ]);
    let (_, _, bytes) = messages(&fake, &b).await;
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["content"][0]["text"], "Done: 18C and sunny");
    let (_, _, bytes) = messages(&fake, &body(false)).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap()["content"],
        json!([{"type": "text", "text": "Hello from the fake Anthropic upstream."}]),
        "no tools offered: the default text"
    );
}

#[tokio::test]
async fn steps_are_taken_in_order_then_the_default() {
    let fake = FakeAnthropic::start(
        AnthropicScript::new()
            .then(AnthropicStep::status(500).delayed(Duration::from_millis(20)))
            .then(Answer::text("one two three").stop_sequence("END"))
            .default_step(Answer::echo().stop_reason("max_tokens")),
    )
    .await;
    let started = std::time::Instant::now();
    assert_eq!(messages(&fake, &body(false)).await.0.as_u16(), 500);
    assert!(started.elapsed() >= Duration::from_millis(20));
    let (_, _, bytes) = messages(&fake, &body(true)).await;
    let evs = events(std::str::from_utf8(&bytes).unwrap());
    let text: String = evs.iter().filter_map(|(_, v)| v.pointer("/delta/text").and_then(Value::as_str)).collect();
    assert_eq!(text, "one two three");
    let delta = &evs[evs.len() - 2].1;
    assert_eq!((delta["delta"]["stop_reason"].as_str(), delta["delta"]["stop_sequence"].as_str()), (Some("stop_sequence"), Some("END")));
    let (_, _, bytes) = messages(&fake, &body(false)).await;
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!((m["content"][0]["text"].as_str(), m["stop_reason"].as_str()), (Some("What is the weather in Paris?"), Some("max_tokens")));
    fake.push(AnthropicStep::status(404));
    assert_eq!(messages(&fake, &body(false)).await.0.as_u16(), 404);
    assert_eq!(fake.recorded().len(), 4);
}
