//! OpenAI-compatible services beyond plain `kind = "openai"`: stream usage the gateway asks
//! for itself, servers that reject `stream_options`, presets and Azure deployments.

mod common;

use common::*;
use http::StatusCode;
use serde_json::json;
use switchyard_fakes::{FakeUpstream, Script};

fn provider(name: &str, kind: &str, body: &str) -> String {
    format!("[providers.{name}]\nkind = \"{kind}\"\n{body}\n")
}

// LiteLLM #23847 / Portkey #1259: usage missing from streams. The gateway asks the upstream for
// usage on every stream, and the caller who did not ask sees no trace of it.
#[tokio::test]
async fn the_gateway_asks_for_stream_usage_and_hides_it_from_callers_who_did_not() {
    let up = FakeUpstream::start(Script::new()).await;
    let gw = start(&one_target(&up, "")).await;
    let r = gw.chat(&stream_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let sent = up.last_request().unwrap().body;
    assert_eq!(sent["stream_options"], json!({"include_usage": true}), "asked upstream for usage");
    let events = r.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    for chunk in chunks(&events) {
        assert!(chunk.get("usage").is_none(), "usage key leaked to the caller: {chunk}");
        assert!(!chunk["choices"].as_array().unwrap().is_empty(), "a usage-only chunk leaked: {chunk}");
    }
}

#[tokio::test]
async fn callers_who_ask_for_usage_get_the_upstreams() {
    let up = FakeUpstream::start(Script::new()).await;
    let gw = start(&one_target(&up, "")).await;
    let mut body = stream_body("chat");
    body["stream_options"] = json!({"include_usage": true});
    let r = gw.chat(&body).await;
    let chunks = chunks(&r.events());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0, "{last}");
    assert_eq!(up.last_request().unwrap().body["stream_options"], json!({"include_usage": true}));
}

// Some servers reject `stream_options` (LESSONS: do not forward it blindly): with
// `stream_usage = false` it is never sent, and a caller who asked still gets a usage chunk,
// estimated by the gateway.
#[tokio::test]
async fn stream_options_are_not_sent_to_servers_that_reject_them() {
    let up = FakeUpstream::start(Script::new()).await;
    let toml = format!(
        "{}[models.chat]\ntargets = [\"strict/m\"]\n{FAST}",
        provider("strict", "openai", &format!("base_url = \"{}\"\nstream_usage = false", up.base_url()))
    );
    let gw = start(&toml).await;
    let mut body = stream_body("chat");
    body["stream_options"] = json!({"include_usage": true});
    let r = gw.chat(&body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let sent = up.last_request().unwrap().body;
    assert!(sent.get("stream_options").is_none(), "stream_options forwarded: {sent}");
    assert_eq!(sent["model"], "m");
    let events = r.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks(&events);
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0, "estimated usage chunk: {usage}");
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn presets_are_openai_compatible_services_by_name() {
    let up = FakeUpstream::start(Script::new().groq_quirks(true)).await;
    let toml = format!(
        "{}[models.chat]\ntargets = [\"fast/llama-3.1-8b-instant\"]\n{FAST}",
        provider("fast", "groq", &format!("base_url = \"{}\"\napi_key = \"{KEY_A}\"", up.base_url()))
    );
    let gw = start(&toml).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "fast");
    let v = r.json();
    assert!(v.get("x_groq").is_none());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let sent = up.last_request().unwrap();
    assert_eq!(sent.headers["authorization"], format!("Bearer {KEY_A}").as_str());
    assert_eq!(sent.uri, "/v1/chat/completions");
}

#[tokio::test]
async fn azure_calls_the_deployment_url_with_an_api_key_header() {
    let up = FakeUpstream::start(Script::new()).await;
    let root = format!("http://{}", up.addr());
    let toml = format!(
        "{}[models.chat]\ntargets = [\"az/my-gpt4o\"]\n{FAST}",
        provider("az", "azure", &format!("base_url = \"{root}\"\napi_key = \"{KEY_A}\"\napi_version = \"2024-10-21\""))
    );
    let gw = start(&toml).await;
    let r = gw.chat(&chat_body("chat")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-model"), "my-gpt4o");
    let sent = up.last_request().unwrap();
    assert_eq!(sent.uri, "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21");
    assert_eq!(sent.headers["api-key"], KEY_A);
    assert!(sent.headers.get("authorization").is_none(), "the client's or a bearer header leaked");
    assert_no_keys(&r.text());
}

#[tokio::test]
async fn unknown_kinds_list_the_presets() {
    let err = switchyard_core::Config::from_toml_str("[providers.p]\nkind = \"grok\"\n", "t.toml").unwrap_err();
    let text = err.to_string();
    for kind in ["openai", "azure", "groq", "openrouter", "xai", "vllm"] {
        assert!(text.contains(kind), "{text}");
    }
}
