//! Health probes of every kind against a loopback server that records what it receives: the
//! URL each probe builds, the auth it sends, and how answers become verdicts.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{ProbeCall, Provider, ProviderError, build, is_reasoning_model};
use crate::config::{ProbeKind, ProviderConfig};

/// The head (request line and headers, lower-cased names) and body of one request.
#[derive(Debug)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Answers every request with `status` and `body`, reporting each request on the channel.
async fn recorder(status: u16, body: &'static str) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let line = lines.next().unwrap_or_default().to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                while buf.len() < head_end + 4 + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let received = String::from_utf8_lossy(&buf[head_end + 4..]).into_owned();
                let _ = tx.send(Seen { line, headers, body: received });
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    (base, rx)
}

fn provider(kind: &str, options: &str) -> Arc<dyn Provider> {
    let options: toml::Table = toml::from_str(options).unwrap();
    let pc = ProviderConfig { name: "p".into(), kind: kind.into(), options, overrides: Default::default(), health: Default::default() };
    build(&pc, Duration::from_secs(1)).unwrap_or_else(|e| panic!("{e:?}"))
}

fn models_probe(model: &str) -> ProbeCall<'_> {
    ProbeCall { kind: ProbeKind::Models, model, timeout: Duration::from_secs(2), max_tokens: 16 }
}

async fn seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.expect("a request").expect("the recorder runs")
}

#[tokio::test]
async fn openai_compatible_probes_get_models_with_their_auth() {
    let (base, mut rx) = recorder(200, r#"{"object":"list","data":[]}"#).await;
    let p = provider("openai", &format!("base_url = \"{base}/v1/\"\napi_key = \"sk-probe-key\"\nheaders = {{ \"x-title\" = \"t\" }}"));
    p.probe(models_probe("gpt-4o-mini")).await.unwrap();
    let s = seen(&mut rx).await;
    assert_eq!(s.line, "GET /v1/models HTTP/1.1");
    assert_eq!(s.header("authorization"), Some("Bearer sk-probe-key"));
    assert_eq!(s.header("x-title"), Some("t"));
    // Presets too.
    let p = provider("groq", &format!("base_url = \"{base}/openai/v1\""));
    p.probe(models_probe("llama")).await.unwrap();
    assert_eq!(seen(&mut rx).await.line, "GET /openai/v1/models HTTP/1.1");
}

#[tokio::test]
async fn azure_probes_its_model_listing_with_the_api_version() {
    let (base, mut rx) = recorder(200, r#"{"data":[]}"#).await;
    let p = provider("azure", &format!("base_url = \"{base}\"\napi_key = \"azure-key-123\"\napi_version = \"2024-06-01\""));
    p.probe(models_probe("my-deployment")).await.unwrap();
    let s = seen(&mut rx).await;
    assert_eq!(s.line, "GET /openai/models?api-version=2024-06-01 HTTP/1.1");
    assert_eq!(s.header("api-key"), Some("azure-key-123"));
    assert_eq!(s.header("authorization"), None);
}

#[tokio::test]
async fn anthropic_probes_v1_models_with_key_and_version() {
    let (base, mut rx) = recorder(200, r#"{"data":[]}"#).await;
    for b in [base.clone(), format!("{base}/v1")] {
        let p = provider("anthropic", &format!("base_url = \"{b}\"\napi_key = \"ant-key-123\""));
        p.probe(models_probe("claude-sonnet-4-5")).await.unwrap();
        let s = seen(&mut rx).await;
        assert_eq!(s.line, "GET /v1/models HTTP/1.1", "base {b}");
        assert_eq!(s.header("x-api-key"), Some("ant-key-123"));
        assert_eq!(s.header("anthropic-version"), Some("2023-06-01"));
    }
}

#[tokio::test]
async fn gemini_probes_the_model_with_the_key_in_a_header() {
    let (base, mut rx) = recorder(200, r#"{"name":"models/gemini-2.5-flash"}"#).await;
    let p = provider("gemini", &format!("base_url = \"{base}/v1beta\"\napi_key = \"AIza-probe-key\""));
    p.probe(models_probe("gemini-2.5-flash")).await.unwrap();
    let s = seen(&mut rx).await;
    assert_eq!(s.line, "GET /v1beta/models/gemini-2.5-flash HTTP/1.1");
    assert_eq!(s.header("x-goog-api-key"), Some("AIza-probe-key"));
    p.probe(models_probe("tunedModels/mine?key=x")).await.unwrap();
    assert_eq!(seen(&mut rx).await.line, "GET /v1beta/tunedModels/mine%3Fkey%3Dx HTTP/1.1", "the model cannot add a query");
}

#[tokio::test]
async fn ollama_probes_tags_and_wants_the_model_pulled() {
    let (base, mut rx) = recorder(200, r#"{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest"},{"name":"qwen3:8b"}]}"#).await;
    let p = provider("ollama", &format!("base_url = \"{base}\""));
    p.probe(models_probe("llama3.2")).await.unwrap();
    assert_eq!(seen(&mut rx).await.line, "GET /api/tags HTTP/1.1");
    p.probe(models_probe("qwen3:8b")).await.unwrap();
    let e = p.probe(models_probe("qwen3")).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    assert!(e.to_string().contains("\"qwen3\" is not among the server's models"), "{e}");
    let e = p.probe(models_probe("mistral:7b")).await.unwrap_err();
    assert_eq!(e.status(), Some(404));
}

#[tokio::test]
async fn error_answers_fail_the_probe_with_secrets_redacted() {
    let (base, _rx) = recorder(401, r#"{"error":{"message":"Incorrect API key provided: sk-probe-key-abcdefghijklmnop","type":"invalid_request_error"}}"#).await;
    let p = provider("openai", &format!("base_url = \"{base}/v1\"\napi_key = \"sk-probe-key-abcdefghijklmnop\""));
    let e = p.probe(models_probe("m")).await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(!e.to_string().contains("sk-probe-key"), "{e}");
    // Nothing listening: a connection failure.
    let dead = format!("http://127.0.0.1:{}/v1", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let p = provider("openai", &format!("base_url = \"{dead}\""));
    assert!(matches!(p.probe(models_probe("m")).await, Err(ProviderError::Connect(_))));
}

#[tokio::test]
async fn bedrock_has_no_unbilled_probe_but_a_completion_probe() {
    let (base, mut rx) = recorder(500, r#"{"message":"boom"}"#).await;
    let p = provider("bedrock", &format!("base_url = \"{base}\"\nregion = \"us-east-1\"\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"secret-example\""));
    assert!(matches!(p.probe(models_probe("anthropic.claude")).await, Err(ProviderError::Unsupported(_))));
    assert!(rx.try_recv().is_err(), "no request for an unsupported probe");
    let call = ProbeCall { kind: ProbeKind::Completion, model: "anthropic.claude", timeout: Duration::from_secs(2), max_tokens: 16 };
    let e = p.probe(call).await.unwrap_err();
    assert_eq!(e.status(), Some(500));
    let s = seen(&mut rx).await;
    assert_eq!(s.line, "POST /model/anthropic.claude/converse HTTP/1.1");
    let body: serde_json::Value = serde_json::from_str(&s.body).unwrap();
    assert_eq!(body["inferenceConfig"]["maxTokens"], 16);
}

#[tokio::test]
async fn completion_probes_ask_for_a_few_tokens_in_the_models_own_terms() {
    let answer = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":16,"total_tokens":17}}"#;
    let (base, mut rx) = recorder(200, answer).await;
    let p = provider("openai", &format!("base_url = \"{base}/v1\""));
    for (model, key, absent) in [("gpt-4o-mini", "max_tokens", "max_completion_tokens"), ("o3-mini", "max_completion_tokens", "max_tokens")] {
        let call = ProbeCall { kind: ProbeKind::Completion, model, timeout: Duration::from_secs(2), max_tokens: 16 };
        p.probe(call).await.unwrap();
        let s = seen(&mut rx).await;
        assert_eq!(s.line, "POST /v1/chat/completions HTTP/1.1");
        let body: serde_json::Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(body["model"], model);
        assert_eq!(body[key], 16, "{body}");
        assert!(body.get(absent).is_none(), "{body}");
        assert_eq!(body["stream"], false);
    }
}

#[tokio::test]
async fn the_mock_fails_its_probe_as_configured() {
    let ok = provider("mock", "");
    ok.probe(models_probe("m")).await.unwrap();
    let down = provider("mock", "failure_rate = 1.0\nfailure = \"unavailable\"");
    assert_eq!(down.probe(models_probe("m")).await.unwrap_err().status(), Some(503));
    let call = ProbeCall { kind: ProbeKind::Completion, model: "m", timeout: Duration::from_secs(1), max_tokens: 16 };
    assert_eq!(down.probe(call).await.unwrap_err().status(), Some(503));
    ok.probe(call).await.unwrap();
}

#[test]
fn reasoning_models_are_recognised() {
    for m in ["o1", "o3-mini", "o4-mini-2025-04-16", "gpt-5", "gpt-5-mini", "openai/o3"] {
        assert!(is_reasoning_model(m), "{m}");
    }
    for m in ["gpt-4o", "omni-moderation", "llama-3.1-8b", "claude-opus-4", "ollama"] {
        assert!(!is_reasoning_model(m), "{m}");
    }
}
