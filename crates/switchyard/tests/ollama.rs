//! OpenAI ingress → Ollama's native API (`kind = "ollama"`), against a fake Ollama.

mod common;

use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use switchyard_fakes::ollama::{FakeOllama, OllamaStep};
use switchyard_fakes::{FakeUpstream, Script};

fn ollama_then_openai(ollama: &FakeOllama, backup: Option<&FakeUpstream>, extra: &str) -> String {
    let mut toml = format!("[providers.local]\nkind = \"ollama\"\nbase_url = \"{}\"\nkeep_alive = \"10m\"\n", ollama.base_url());
    let mut targets = vec!["\"local/llama3.2\"".to_owned()];
    if let Some(b) = backup {
        toml.push_str(&openai_provider("b", &b.base_url(), KEY_B));
        targets.push("\"b/model-b\"".to_owned());
    }
    format!("{toml}\n[models.chat]\ntargets = [{}]\n{FAST}\n{extra}", targets.join(", "))
}

#[tokio::test]
async fn plain_completion_is_translated_both_ways() {
    let ollama = FakeOllama::start(vec![OllamaStep::text("Hi from llama")]).await;
    let gw = start(&ollama_then_openai(&ollama, None, "")).await;
    let mut body = chat_body("chat");
    body["max_tokens"] = json!(50);
    body["temperature"] = json!(0.1);
    let r = gw.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "local");
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "chat");
    assert_eq!(v["choices"][0]["message"]["content"], "Hi from llama");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let sent = ollama.last_request().unwrap();
    assert_eq!(sent.uri, "/api/chat");
    assert_eq!(sent.body["model"], "llama3.2");
    assert_eq!(sent.body["stream"], false);
    assert_eq!(sent.body["keep_alive"], "10m");
    assert_eq!(sent.body["options"], json!({"temperature": 0.1, "num_predict": 50}));
    assert_eq!(sent.body["messages"][0], json!({"role": "system", "content": "You are terse."}));
}

#[tokio::test]
async fn ndjson_streams_become_openai_chunks_with_usage() {
    let ollama = FakeOllama::start(vec![OllamaStep::text("one two three")]).await;
    let gw = start(&ollama_then_openai(&ollama, None, "")).await;
    let mut body = stream_body("chat");
    body["stream_options"] = json!({"include_usage": true});
    let r = gw.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), "text/event-stream");
    let events = r.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks(&events);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&chunks), "one two three");
    let finish: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0)).map(|c| &c["finish_reason"]).filter(|f| !f.is_null()).collect();
    assert_eq!(finish, [&json!("stop")]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 3);
    assert_eq!(ollama.last_request().unwrap().body["stream"], true);
}

#[tokio::test]
async fn tool_calls_round_trip_streamed_and_not() {
    let call = || OllamaStep::ToolCall { name: "get_weather".into(), arguments: json!({"city": "Paris"}) };
    let ollama = FakeOllama::start(vec![call(), call()]).await;
    let gw = start(&ollama_then_openai(&ollama, None, "")).await;
    let mut body = chat_body("chat");
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);

    let v = gw.chat(&body).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let tc = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(tc["function"]["name"], "get_weather");
    assert_eq!(serde_json::from_str::<Value>(tc["function"]["arguments"].as_str().unwrap()).unwrap(), json!({"city": "Paris"}));
    assert_eq!(ollama.last_request().unwrap().body["tools"], body["tools"]);

    body["stream"] = json!(true);
    let r = gw.chat(&body).await;
    let chunks = chunks(&r.events());
    let delta_calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).collect();
    assert_eq!(delta_calls.len(), 1, "{chunks:?}");
    assert_eq!(delta_calls[0][0]["index"], 0);
    assert_eq!(delta_calls[0][0]["id"], "call_0");
    assert_eq!(delta_calls[0][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));

    // The next turn carries the call and its result back in Ollama's shape.
    let next = json!({"model": "chat", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"}
    ]});
    assert_eq!(gw.chat(&next).await.status, StatusCode::OK);
    let sent = ollama.last_request().unwrap().body;
    assert_eq!(sent["messages"][1]["tool_calls"][0]["function"]["arguments"], json!({"city": "Paris"}));
    assert_eq!(sent["messages"][2], json!({"role": "tool", "content": "sunny", "tool_name": "get_weather"}));
}

#[tokio::test]
async fn length_stops_are_mapped() {
    let ollama = FakeOllama::start(vec![OllamaStep::Length("cut short".into())]).await;
    let gw = start(&ollama_then_openai(&ollama, None, "")).await;
    assert_eq!(gw.chat(&chat_body("chat")).await.json()["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn a_missing_model_fails_over_without_retry() {
    let ollama = FakeOllama::start(vec![OllamaStep::Status(404, "model \"llama3.2\" not found, try pulling it first".into())]).await;
    let backup = FakeUpstream::start(Script::new()).await;
    let gw = start(&ollama_then_openai(&ollama, Some(&backup), "")).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(ollama.requests(), 1);
    assert_eq!(r.attempts(), 2);
}

#[tokio::test]
async fn a_stream_error_before_content_fails_over_and_after_content_ends_with_an_error_event() {
    let ollama = FakeOllama::start(vec![
        OllamaStep::StreamError { after: 0, message: "out of memory".into() },
        OllamaStep::StreamError { after: 0, message: "out of memory".into() },
    ])
    .await;
    let backup = FakeUpstream::start(Script::new()).await;
    let gw = start(&ollama_then_openai(&ollama, Some(&backup), "")).await;
    let r = gw.chat(&stream_body("chat")).await;
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert!(!r.text().contains("\"error\""), "{}", r.text());

    let ollama = FakeOllama::start(vec![OllamaStep::DropAfter(3)]).await;
    let gw = start(&ollama_then_openai(&ollama, None, "")).await;
    let r = gw.chat(&stream_body("chat")).await;
    let events = r.events();
    assert_ne!(events.last().map(String::as_str), Some("[DONE]"));
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    assert_eq!(streamed_text(&chunks(&events[..events.len() - 1])), "one two three ");
}

#[tokio::test]
async fn image_links_move_on_to_a_target_that_can_fetch_them() {
    let ollama = FakeOllama::start(vec![]).await;
    let backup = FakeUpstream::start(Script::new()).await;
    let gw = start(&ollama_then_openai(&ollama, Some(&backup), "")).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let r = gw.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "b");
    assert_eq!(ollama.requests(), 0, "nothing was sent to Ollama");
    assert_eq!(r.attempts(), 1, "a target that cannot serve the request is not an attempt");

    let gw = start(&ollama_then_openai(&ollama, None, "")).await;
    let r = gw.chat(&body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.error()["code"], "unsupported_by_targets");
}
