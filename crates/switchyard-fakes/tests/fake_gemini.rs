//! The fake Gemini API against the recorded wire fixtures (`fixtures/gemini/`) and its scripted
//! behaviours, checked on the wire with a plain hyper client.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use switchyard_fakes::gemini::{AnswerPart, FakeGemini, GeminiConfig, GeminiStep, SKIP_SIGNATURE};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/gemini");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The JSON text with every string value blanked to `""` and every number to `0`, keys, order
/// and whitespace kept: two bodies with equal templates are byte-identical but for values.
fn template(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            let start = i;
            i += 1;
            while chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            if chars.get(j) == Some(&':') {
                out.extend(&chars[start..i]);
            } else {
                out.push_str("\"\"");
            }
        } else if c == '-' || c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_digit() || "-+.eE".contains(chars[i])) {
                i += 1;
            }
            out.push('0');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The SSE events, each with its `data: ` prefix and `\r\n\r\n` terminator.
    fn events(&self) -> Vec<String> {
        let text = self.text();
        assert!(text.ends_with("\r\n\r\n"), "{text:?}");
        text.split_inclusive("\r\n\r\n").map(str::to_owned).collect()
    }
}

async fn post(url: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
    let mut req = Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client().request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    Resp { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

fn generate(fake: &FakeGemini) -> String {
    format!("{}/models/gemini-2.5-flash:generateContent", fake.base_url())
}

fn stream(fake: &FakeGemini) -> String {
    format!("{}/models/gemini-2.5-flash:streamGenerateContent?alt=sse", fake.base_url())
}

fn hello() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Explain failover in one line"}]}]})
}

#[tokio::test]
async fn whole_answers_match_the_fixtures_byte_for_byte_but_values() {
    let fake = FakeGemini::start(vec![
        GeminiStep::text("A gateway sends each request to the first healthy provider.").thoughts(392),
        GeminiStep::function_call("get_weather", json!({"city": "Lisbon", "unit": "celsius"})).thoughts(68),
        GeminiStep::safety_block(),
        GeminiStep::prompt_blocked(),
    ])
    .await;
    for name in ["generate-content.json", "generate-content-function-call.json", "safety.json", "prompt-blocked.json"] {
        let r = post(&generate(&fake), &hello(), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-type"], "application/json; charset=UTF-8");
        assert_eq!(template(r.text()), template(&fixture(name)), "{name}:\n{}", r.text());
    }
}

#[tokio::test]
async fn streams_match_the_fixtures_byte_for_byte_but_values() {
    let fake = FakeGemini::start(vec![
        GeminiStep::text("Failover keeps answers coming when a provider fails.").chunks(3),
        GeminiStep::function_call("get_weather", json!({"city": "Lisbon"})).thoughts(64),
    ])
    .await;
    for name in ["stream.sse", "stream-function-call.sse"] {
        let r = post(&stream(&fake), &hello(), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-type"], "text/event-stream");
        let expected: Vec<String> = fixture(name).split_inclusive("\r\n\r\n").map(template).collect();
        let got: Vec<String> = r.events().iter().map(|e| template(e)).collect();
        assert_eq!(got, expected, "{name}:\n{}", r.text());
    }
}

#[tokio::test]
async fn errors_match_the_fixtures() {
    let fake = FakeGemini::start_with(GeminiConfig { api_key: Some("AIza-fake-key".into()), ..GeminiConfig::default() }, vec![GeminiStep::rate_limited("7s")])
        .await;
    let key = [("x-goog-api-key", "AIza-fake-key")];
    let r = post(&generate(&fake), &hello(), &key).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(template(r.text()), template(&fixture("error-429.json")), "{}", r.text());

    let mut bad = hello();
    bad["tools"] = json!([{"functionDeclarations": [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}]}]);
    let r = post(&generate(&fake), &bad, &key).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(template(r.text()), template(&fixture("error-400-unknown-field.json")), "{}", r.text());
    assert_eq!(r.json(), serde_json::from_str::<Value>(&fixture("error-400-unknown-field.json")).unwrap());

    let r = post(&generate(&fake), &hello(), &[("x-goog-api-key", "wrong")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json(), serde_json::from_str::<Value>(&fixture("error-400-api-key.json")).unwrap());
    assert_eq!(template(r.text()), template(&fixture("error-400-api-key.json")));

    let r = post(&generate(&fake), &hello(), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"]["status"], "PERMISSION_DENIED");
    // Google also takes the key as a query parameter.
    let r = post(&format!("{}?key=AIza-fake-key", generate(&fake)), &hello(), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn requests_are_recorded_with_path_headers_and_body() {
    let fake = FakeGemini::start(Vec::new()).await;
    post(&stream(&fake), &hello(), &[("x-goog-api-key", "k1")]).await;
    let rec = fake.last_request().unwrap();
    assert_eq!(rec.uri, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    assert_eq!(rec.headers["x-goog-api-key"], "k1");
    assert_eq!(rec.body, hello());
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn strict_mode_demands_the_issued_signature_back() {
    let fake = FakeGemini::start_with(GeminiConfig { strict_signatures: true, ..GeminiConfig::default() }, Vec::new()).await;
    let mut turn1 = hello();
    turn1["tools"] = json!([{"functionDeclarations": [{"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]}]);
    let r = post(&generate(&fake), &turn1, &[]).await;
    let part = r.json()["candidates"][0]["content"]["parts"][0].clone();
    let signature = part["thoughtSignature"].as_str().unwrap().to_owned();
    assert_eq!(part["functionCall"], json!({"name": "lookup", "args": {"q": "example"}}));

    let turn2 = |sig: Option<&str>| {
        let mut call = json!({"functionCall": {"name": "lookup", "args": {"q": "example"}}});
        if let Some(sig) = sig {
            call["thoughtSignature"] = json!(sig);
        }
        let mut body = turn1.clone();
        body["contents"].as_array_mut().unwrap().extend([
            json!({"role": "model", "parts": [call]}),
            json!({"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"answer": 42}}}]}),
        ]);
        body
    };
    let r = post(&generate(&fake), &turn2(Some(&signature)), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["candidates"][0]["content"]["parts"][0]["text"], "The function lookup returned {\"answer\":42}.");

    let r = post(&generate(&fake), &turn2(None), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("Function call is missing a thought_signature"), "{}", r.text());
    let r = post(&generate(&fake), &turn2(Some("Cforged")), &[]).await;
    assert_eq!(r.json()["error"]["message"], "Corrupted thought signature.");
    let r = post(&generate(&fake), &turn2(Some(SKIP_SIGNATURE)), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn failing_streams_break_end_early_or_report_in_band() {
    let fake = FakeGemini::start(vec![
        GeminiStep::DropAfter(2),
        GeminiStep::EndWithoutFinish(2),
        GeminiStep::ErrorEvent { after: 1, error: switchyard_fakes::gemini::GeminiError::new(503) },
        GeminiStep::error(503),
        GeminiStep::Reset,
    ])
    .await;
    let resp = client()
        .request(Request::post(stream(&fake)).body(Full::new(Bytes::from(hello().to_string()))).unwrap())
        .await
        .unwrap();
    assert!(resp.into_body().collect().await.is_err(), "the connection breaks mid-body");

    let r = post(&stream(&fake), &hello(), &[]).await;
    assert_eq!(r.events().len(), 2);
    assert!(!r.text().contains("finishReason"));

    let r = post(&stream(&fake), &hello(), &[]).await;
    let events = r.events();
    assert_eq!(events.len(), 2);
    assert!(events[1].starts_with("data: {\"error\": {\"code\": 503,\"message\": "), "{}", events[1]);

    let r = post(&generate(&fake), &hello(), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"]["status"], "UNAVAILABLE");

    let sent = client().request(Request::post(generate(&fake)).body(Full::new(Bytes::from(hello().to_string()))).unwrap()).await;
    assert!(sent.is_err(), "reset without an answer");
}

#[tokio::test]
async fn streaming_without_alt_sse_answers_a_json_array() {
    let fake = FakeGemini::start(vec![GeminiStep::answer(vec![
        AnswerPart::Thought("thinking...".into()),
        AnswerPart::Text("one two".into()),
    ])
    .chunks(2)])
    .await;
    let r = post(&format!("{}/models/gemini-2.5-flash:streamGenerateContent", fake.base_url()), &hello(), &[]).await;
    let events = r.json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["candidates"][0]["content"]["parts"][0], json!({"text": "thinking...", "thought": true}));
    assert_eq!(events[2]["candidates"][0]["finishReason"], "STOP");
}

#[test]
fn the_binary_prints_its_address_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard-fake-gemini"))
        .args(["--chunks", "2", "--api-key", "k"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line:?}")).to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(post(&format!("http://{addr}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"), &hello(), &[("x-goog-api-key", "k")]));
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.events().len(), 2);
}
