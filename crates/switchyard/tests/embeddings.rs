//! `POST /v1/embeddings` end to end: OpenAI-compatible passthrough, Ollama and Gemini
//! translation, the mock, failover along the alias's chain (errors, refused connections,
//! targets without an embeddings API), rate limits and unknown aliases.

mod common;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use switchyard_fakes::gemini::{FakeGemini, GeminiConfig, GeminiError, GeminiStep};
use switchyard_fakes::ollama::FakeOllama;
use switchyard_fakes::{FakeUpstream, Script, Step};

const GKEY: &str = "AIza-test-gemini-key-0123456789";

async fn embed(gw: &TestGateway, body: &Value) -> Resp {
    gw.send(gw.post_request("/v1/embeddings", Bytes::from(body.to_string()), &[])).await
}

/// Little-endian f32s from standard base64.
fn decode_f32(b64: &str) -> Vec<f32> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut bytes = Vec::new();
    for c in b64.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {b64}"),
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            bytes.push((bits >> n) as u8);
        }
    }
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn vectors(v: &Value) -> Vec<Vec<f64>> {
    v["data"].as_array().unwrap().iter().map(|d| d["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect()
}

fn assert_list(v: &Value, n: usize) {
    assert_eq!(v["object"], "list", "{v}");
    assert_eq!(v["model"], "emb", "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), n, "{v}");
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
    }
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["usage"]["total_tokens"], v["usage"]["prompt_tokens"]);
}

fn openai_alias(targets: &[&str]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!("\n[models.emb]\ntargets = [{}]\n{FAST}\n", list.join(", "))
}

#[tokio::test]
async fn openai_passthrough_rewrites_only_the_model() {
    let up = FakeUpstream::start(Script::new()).await;
    let gw = start(&format!("{}{}", openai_provider("a", &up.base_url(), KEY_A), openai_alias(&["a/text-embedding-3-small"]))).await;
    let raw = r#"{ "input" : ["hello world", "second"],"model":"emb", "dimensions": 4, "user": "u-1", "encoding_format": "float" }"#;
    let r = gw.send(gw.post_request("/v1/embeddings", Bytes::from(raw), &[("x-request-id", "emb-req-1")])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-request-id"), "emb-req-1");
    assert_eq!(r.header("x-switchyard-provider"), "a");
    assert_eq!(r.header("x-switchyard-model"), "text-embedding-3-small");
    assert_eq!(r.attempts(), 1);
    let v = r.json();
    assert_list(&v, 2);
    assert_eq!(vectors(&v)[0].len(), 4);
    assert_eq!(v["usage"]["prompt_tokens"], 3);

    let sent = up.last_request().unwrap();
    assert_eq!(sent.uri, "/v1/embeddings");
    assert_eq!(sent.headers["authorization"], format!("Bearer {KEY_A}").as_str());
    let expected: Value = serde_json::from_str(&raw.replace("\"emb\"", "\"text-embedding-3-small\"")).unwrap();
    assert_eq!(sent.body, expected);

    // base64 passes through as the upstream sent it; `/embeddings` works too.
    let r = gw.post_raw("/embeddings", r#"{"model": "emb", "input": "hi", "encoding_format": "base64", "dimensions": 3}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_list(&v, 1);
    assert_eq!(decode_f32(v["data"][0]["embedding"].as_str().unwrap()).len(), 3);
    assert_no_keys(&r.text());
}

#[tokio::test]
async fn azure_deployments_get_their_embeddings_url() {
    let up = FakeUpstream::start(Script::new()).await;
    let toml = format!(
        "[providers.az]\nkind = \"azure\"\nbase_url = \"{}\"\napi_key = \"{KEY_A}\"\n{}",
        up.base_url().trim_end_matches("/v1"),
        openai_alias(&["az/my-embedder"])
    );
    let gw = start(&toml).await;
    let r = embed(&gw, &json!({"model": "emb", "input": "x"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let sent = up.last_request().unwrap();
    assert_eq!(sent.uri, "/openai/deployments/my-embedder/embeddings?api-version=2024-10-21");
    assert_eq!(sent.headers["api-key"], KEY_A);
}

#[tokio::test]
async fn ollama_translation_single_batch_dimensions_and_base64() {
    let ollama = FakeOllama::start(vec![]).await;
    let toml = format!(
        "[providers.local]\nkind = \"ollama\"\nbase_url = \"{}\"\nkeep_alive = \"10m\"\n{}",
        ollama.base_url(),
        openai_alias(&["local/nomic-embed-text"])
    );
    let gw = start(&toml).await;
    let r = embed(&gw, &json!({"model": "emb", "input": "why is the sky blue"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "local");
    let v = r.json();
    assert_list(&v, 1);
    assert_eq!(vectors(&v)[0].len(), switchyard_fakes::ollama::EMBED_DIMENSIONS);
    assert_eq!(v["usage"]["prompt_tokens"], 5, "prompt_eval_count");
    let sent = ollama.last_request().unwrap();
    assert_eq!(sent.uri, "/api/embed");
    assert_eq!(sent.body, json!({"model": "nomic-embed-text", "input": "why is the sky blue", "keep_alive": "10m"}));

    let r = embed(&gw, &json!({"model": "emb", "input": ["a", "b c"], "dimensions": 16})).await;
    let v = r.json();
    assert_list(&v, 2);
    assert_eq!(vectors(&v)[1].len(), 16);
    assert_eq!(ollama.last_request().unwrap().body["input"], json!(["a", "b c"]));
    assert_eq!(ollama.last_request().unwrap().body["dimensions"], 16);

    let r = embed(&gw, &json!({"model": "emb", "input": ["a", "b c"], "dimensions": 16, "encoding_format": "base64"})).await;
    let b = r.json();
    assert_list(&b, 2);
    let decoded = decode_f32(b["data"][1]["embedding"].as_str().unwrap());
    let floats: Vec<f32> = vectors(&v)[1].iter().map(|x| *x as f32).collect();
    assert_eq!(decoded, floats, "base64 carries the same f32s");
}

#[tokio::test]
async fn gemini_translation_single_batch_dimensions_and_base64() {
    let gemini = FakeGemini::start_with(GeminiConfig { api_key: Some(GKEY.into()), ..GeminiConfig::default() }, vec![]).await;
    let toml = format!(
        "[providers.g]\nkind = \"gemini\"\nbase_url = \"{}\"\napi_key = \"{GKEY}\"\n{}",
        gemini.base_url(),
        openai_alias(&["g/gemini-embedding-001"])
    );
    let gw = start(&toml).await;
    let r = embed(&gw, &json!({"model": "emb", "input": "hello there", "dimensions": 32})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_list(&v, 1);
    assert_eq!(vectors(&v)[0].len(), 32);
    assert_eq!(v["usage"]["prompt_tokens"], 2, "counted (cl100k_base): \"hello\", \" there\"");
    let sent = gemini.last_request().unwrap();
    assert_eq!(sent.uri, "/v1beta/models/gemini-embedding-001:embedContent");
    assert_eq!(sent.headers["x-goog-api-key"], GKEY);
    assert_eq!(
        sent.body,
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello there"}]}, "outputDimensionality": 32})
    );

    let r = embed(&gw, &json!({"model": "emb", "input": ["one", "two", "three"], "encoding_format": "base64"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_list(&v, 3);
    let first = decode_f32(v["data"][0]["embedding"].as_str().unwrap());
    assert_eq!(first.len(), switchyard_fakes::gemini::EMBED_DIMENSIONS);
    let sent = gemini.last_request().unwrap();
    assert_eq!(sent.uri, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
    assert_eq!(sent.body["requests"].as_array().unwrap().len(), 3);
    assert_eq!(sent.body["requests"][2]["content"]["parts"][0]["text"], "three");
    assert!(!r.text().contains(GKEY));
}

#[tokio::test]
async fn fails_over_on_500_refused_and_unsupported() {
    // 1: an upstream answering 500 (retried once, then the next target).
    let broken = FakeUpstream::start(Script::new().default_step(Step::status(500))).await;
    let ollama = FakeOllama::start(vec![]).await;
    let toml = format!(
        "{}{}[providers.local]\nkind = \"ollama\"\nbase_url = \"{}\"\n[providers.claude]\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"{KEY_B}\"\n{}",
        openai_provider("broken", &broken.base_url(), KEY_A),
        openai_provider("dead", &dead_base_url(), KEY_A),
        ollama.base_url(),
        dead_base_url(),
        openai_alias(&["broken/e", "dead/e", "claude/claude-sonnet-4", "local/nomic-embed-text"])
    );
    let gw = start(&toml).await;
    let r = embed(&gw, &json!({"model": "emb", "input": ["x", "y"]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-provider"), "local");
    // broken: 2 tries, dead: 2 tries, claude: skipped without sending (not an attempt), local: 1.
    assert_eq!(r.attempts(), 5);
    assert_eq!(broken.requests(), 2);
    assert_eq!(ollama.requests(), 1);
    assert_list(&r.json(), 2);
}

#[tokio::test]
async fn an_anthropic_only_chain_says_unsupported() {
    let toml = format!(
        "[providers.claude]\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"{KEY_B}\"\n{}",
        dead_base_url(),
        openai_alias(&["claude/claude-sonnet-4"])
    );
    let gw = start(&toml).await;
    let r = embed(&gw, &json!({"model": "emb", "input": "x"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let e = r.error();
    assert_eq!(e["code"], "unsupported_by_targets");
    assert!(e["message"].as_str().unwrap().contains("embeddings"), "{e}");
}

#[tokio::test]
async fn rate_limits_everywhere_give_429_with_retry_after() {
    let a = FakeUpstream::start(Script::new().default_step(Step::rate_limited("1"))).await;
    let gemini = FakeGemini::start(vec![]).await;
    gemini.set_default(GeminiStep::Error(GeminiError { retry_delay: Some("1s".into()), ..GeminiError::new(429) }));
    let toml = format!(
        "{}[providers.g]\nkind = \"gemini\"\nbase_url = \"{}\"\n{}\n[models.emb.retry]\nattempts_per_target = 1\n",
        openai_provider("a", &a.base_url(), KEY_A),
        gemini.base_url(),
        openai_alias(&["a/e", "g/gemini-embedding-001"])
    );
    let gw = start(&toml).await;
    let r = embed(&gw, &json!({"model": "emb", "input": "x"})).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.header("retry-after"), "1");
    assert_eq!(r.error()["code"], "rate_limit_exceeded");
    assert_eq!(r.attempts(), 2);
}

#[tokio::test]
async fn requests_are_validated_and_aliases_resolved() {
    let gw = start(&format!("[providers.m]\nkind = \"mock\"\n{}", openai_alias(&["m/any"]))).await;
    let r = embed(&gw, &json!({"model": "nope", "input": "x"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error()["code"], "model_not_found");
    assert_eq!(r.attempts(), 0);
    let r = embed(&gw, &json!({"model": "emb"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error()["param"], "input");
    let r = embed(&gw, &json!({"input": "x"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error()["param"], "model");
    let r = gw.post_raw("/v1/embeddings", "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error()["code"], "invalid_json");
    assert!(r.headers.contains_key("x-request-id"));
    // The mock answers deterministically.
    let one = embed(&gw, &json!({"model": "emb", "input": ["same", "other", "same"]})).await.json();
    assert_list(&one, 3);
    let v = vectors(&one);
    assert_eq!(v[0], v[2]);
    assert_ne!(v[0], v[1]);
}
