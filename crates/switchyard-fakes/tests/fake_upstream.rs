//! Each step of a script, checked on the wire with a plain hyper client.

use std::io::BufRead;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use switchyard_fakes::{FakeUpstream, Reply, Script, Step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn chat_body(stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the gateway"},
        ],
    });
    if stream {
        body["stream"] = json!(true);
    }
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn request(up: &FakeUpstream, method: Method, path: &str, body: Bytes) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", up.addr()))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .body(Full::new(body))
        .unwrap()
}

/// Sends a raw request and reads the whole response.
async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
    let response = client.request(req).await.expect("response head");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("response body").to_bytes();
    (parts.status, parts.headers, bytes)
}

async fn chat(up: &FakeUpstream, body: &Value) -> (StatusCode, HeaderMap, Bytes) {
    let req = request(
        up,
        Method::POST,
        "/v1/chat/completions",
        body.to_string().into(),
    );
    send(&client(), req).await
}

fn json(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes).expect("a JSON body")
}

/// The `data:` payloads of an SSE body, in order.
fn sse_events(bytes: &Bytes) -> Vec<String> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(
        text.ends_with("\n\n"),
        "events end with a blank line: {text:?}"
    );
    text.split_terminator("\n\n")
        .map(|event| event.strip_prefix("data: ").expect("data event").to_owned())
        .collect()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn assert_usage(usage: &Value, prompt: u64, completion: u64) {
    assert_eq!(usage["prompt_tokens"], prompt);
    assert_eq!(usage["completion_tokens"], completion);
    assert_eq!(usage["total_tokens"], prompt + completion);
    assert_eq!(
        usage["prompt_tokens_details"],
        json!({"cached_tokens": 0, "audio_tokens": 0})
    );
    assert_eq!(
        usage["completion_tokens_details"],
        json!({"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0})
    );
}

#[tokio::test]
async fn ok_json_completion() {
    let up = FakeUpstream::start(Script::new()).await;
    assert!(up.base_url().starts_with("http://127.0.0.1:") && up.base_url().ends_with("/v1"));
    let (status, headers, bytes) = chat(&up, &chat_body(false, false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["content-length"], bytes.len().to_string().as_str());
    assert!(
        headers["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );

    let body = json(&bytes);
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 8, "{keys:?}");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["service_tier"], "default");
    assert!(
        body["system_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("fp_")
    );
    assert_eq!(
        body["choices"],
        json!([{
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from the fake upstream.", "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop",
        }])
    );
    // "You are terse." + "Say hello to the gateway" = 8 words; the reply has 5.
    assert_usage(&body["usage"], 8, 5);
    assert!(body.get("x_groq").is_none());

    assert_eq!((up.requests(), up.completed(), up.cancelled()), (1, 1, 0));
    let recorded = up.last_request().unwrap();
    assert_eq!(recorded.body, chat_body(false, false));
    assert_eq!(recorded.headers["authorization"], "Bearer sk-test");
    assert_eq!(up.recorded().len(), 1);
}

#[tokio::test]
async fn ok_stream_with_usage() {
    let up = FakeUpstream::start(Script::new()).await;
    let (status, headers, bytes) = chat(&up, &chat_body(true, true)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert!(headers.get("content-length").is_none());

    let events = sse_events(&bytes);
    // Preamble, 5 content chunks, finish, usage, [DONE].
    assert_eq!(events.len(), 9, "{events:#?}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..8]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for chunk in &chunks {
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-4o-mini");
        assert_eq!(chunk["created"], chunks[0]["created"]);
        assert_eq!(chunk["service_tier"], "default");
        assert!(
            chunk["system_fingerprint"]
                .as_str()
                .unwrap()
                .starts_with("fp_")
        );
    }
    assert_eq!(
        chunks[0]["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}])
    );
    let content: String = chunks[1..6]
        .iter()
        .map(|c| {
            assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
            c["choices"][0]["delta"]["content"].as_str().unwrap()
        })
        .collect();
    assert_eq!(content, "Hello from the fake upstream.");
    assert_eq!(
        chunks[1]["choices"][0]["delta"],
        json!({"content": "Hello "})
    );
    assert_eq!(
        chunks[6]["choices"],
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}])
    );
    for chunk in &chunks[..7] {
        assert_eq!(chunk["usage"], Value::Null);
        assert!(chunk.as_object().unwrap().contains_key("usage"));
    }
    assert_eq!(chunks[7]["choices"], json!([]));
    assert_usage(&chunks[7]["usage"], 8, 5);
    assert_eq!((up.requests(), up.completed(), up.cancelled()), (1, 1, 0));
}

#[tokio::test]
async fn stream_without_usage_and_custom_chunks() {
    let step = Step::Ok {
        reply: Reply::Fixed("one two three four five six seven".into()),
        chunks: 3,
        chunk_delay: Duration::from_millis(20),
    };
    let up = FakeUpstream::start(Script::new().then(step.clone()).then(step)).await;
    let started = Instant::now();
    let (_, _, bytes) = chat(&up, &chat_body(true, false)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "paced by chunk_delay"
    );
    let events = sse_events(&bytes);
    assert_eq!(events.len(), 6, "{events:#?}");
    assert!(events.iter().all(|e| !e.contains("usage")));
    let pieces: Vec<String> = events[1..4]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(pieces, ["one two three ", "four five ", "six seven"]);

    // Non-streaming answers take as long as the stream would have.
    let started = Instant::now();
    let (_, _, bytes) = chat(&up, &chat_body(false, false)).await;
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_usage(&json(&bytes)["usage"], 8, 7);
}

#[tokio::test]
async fn error_statuses() {
    let up = FakeUpstream::start(
        Script::new()
            .then(Step::rate_limited("2"))
            .then(Step::context_length())
            .then(Step::Status {
                code: 503,
                message: "overloaded".into(),
                error_type: "server_error".into(),
                error_code: None,
                retry_after: None,
                retry_after_ms: Some("150".into()),
            })
            .then(Step::status(401)),
    )
    .await;
    let body = chat_body(false, false);

    let (status, headers, bytes) = chat(&up, &body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["retry-after"], "2");
    assert!(headers.get("retry-after-ms").is_none());
    let error = json(&bytes);
    assert_eq!(error.as_object().unwrap().len(), 1);
    assert_eq!(error["error"]["type"], "requests");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert_eq!(error["error"]["param"], Value::Null);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit reached")
    );

    let (status, _, bytes) = chat(&up, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        json(&bytes),
        json!({"error": {
            "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": null,
            "code": "context_length_exceeded",
        }})
    );

    let (status, headers, bytes) = chat(&up, &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after-ms"], "150");
    assert_eq!(
        json(&bytes),
        json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}})
    );

    let (status, _, bytes) = chat(&up, &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&bytes)["error"]["code"], "invalid_api_key");

    // The queue is exhausted: back to the default.
    let (status, _, _) = chat(&up, &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((up.requests(), up.completed()), (5, 5));
}

#[tokio::test]
async fn script_queue_and_runtime_changes() {
    let up = FakeUpstream::start(
        Script::new()
            .times(2, Step::status(500))
            .default_step(Step::status(404)),
    )
    .await;
    let body = chat_body(false, false);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(chat(&up, &body).await.0.as_u16());
    }
    assert_eq!(statuses, [500, 500, 404]);

    up.push(Step::status(502));
    up.set_default(Step::echo());
    assert_eq!(chat(&up, &body).await.0, StatusCode::BAD_GATEWAY);
    let (status, _, bytes) = chat(&up, &body).await;
    assert_eq!(status, StatusCode::OK);
    let answer = json(&bytes);
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "Say hello to the gateway"
    );
    assert_usage(&answer["usage"], 8, 5);
    assert_eq!(up.recorded().len(), 5);
}

#[tokio::test]
async fn delay_then_answer() {
    let up = FakeUpstream::start(Script::new().then(Step::ok().delayed(Duration::from_millis(80))))
        .await;
    let started = Instant::now();
    let (status, _, _) = chat(&up, &chat_body(false, false)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(80));
}

#[tokio::test]
async fn reset_is_a_client_error() {
    let up = FakeUpstream::start(Script::new().then(Step::Reset)).await;
    let req = request(
        &up,
        Method::POST,
        "/v1/chat/completions",
        chat_body(false, false).to_string().into(),
    );
    let error = client().request(req).await.expect_err("no response");
    assert!(!error.is_connect(), "{error:?}");
    assert_eq!((up.requests(), up.completed(), up.cancelled()), (1, 0, 0));
    // The next request gets the default answer on a fresh connection.
    assert_eq!(chat(&up, &chat_body(false, false)).await.0, StatusCode::OK);
}

/// Writes a chat request on a raw socket.
async fn raw_request(up: &FakeUpstream, body: &Value) -> TcpStream {
    let mut socket = TcpStream::connect(up.addr()).await.unwrap();
    let body = body.to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        up.addr(),
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    socket
}

/// Reads from `socket` until `needle` has been seen.
async fn read_until(socket: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buf))
            .await
            .expect("data in time")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(seen).unwrap()
}

#[tokio::test]
async fn hang_counts_cancelled_when_the_client_leaves() {
    let up = FakeUpstream::start(
        Script::new()
            .then(Step::Hang)
            .then(Step::ok().delayed(Duration::from_secs(30))),
    )
    .await;
    for _ in 0..2 {
        let socket = raw_request(&up, &chat_body(false, false)).await;
        let before = up.requests();
        eventually("the request to arrive", || up.requests() == before + 1).await;
        drop(socket);
    }
    eventually("both cancellations", || up.cancelled() == 2).await;
    assert_eq!(up.completed(), 0);
}

#[tokio::test]
async fn stall_after_keeps_the_connection_open() {
    let up = FakeUpstream::start(Script::new().then(Step::StallAfter { after: 2 })).await;
    let mut socket = raw_request(&up, &chat_body(true, false)).await;
    let seen = read_until(&mut socket, "from ").await;
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(seen.contains("transfer-encoding: chunked"));
    assert!(seen.contains(r#""delta":{"role":"assistant","content":"","refusal":null}"#));
    // Nothing more comes, and the connection stays open.
    let mut buf = [0; 64];
    let more = tokio::time::timeout(Duration::from_millis(100), socket.read(&mut buf)).await;
    assert!(more.is_err(), "stalled");
    assert_eq!(up.cancelled(), 0);
    drop(socket);
    eventually("the stalled stream to be cancelled", || up.cancelled() == 1).await;
    assert_eq!(up.completed(), 0);
}

#[tokio::test]
async fn drop_after_aborts_mid_body() {
    let up = FakeUpstream::start(
        Script::new()
            .then(Step::DropAfter { after: 3 })
            .then(Step::DropAfter { after: 3 }),
    )
    .await;
    let client = client();
    for stream in [true, false] {
        let req = request(
            &up,
            Method::POST,
            "/v1/chat/completions",
            chat_body(stream, false).to_string().into(),
        );
        let response = client.request(req).await.expect("response head");
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let mut received = Vec::new();
        let error = loop {
            match body.frame().await {
                Some(Ok(frame)) => received.extend_from_slice(&frame.into_data().unwrap()),
                Some(Err(error)) => break error,
                None => panic!("the body ended cleanly"),
            }
        };
        assert!(
            error.is_incomplete_message() || error.to_string().contains("body"),
            "{error:?}"
        );
        let received = String::from_utf8(received).unwrap();
        if stream {
            assert!(
                received.contains(r#""delta":{"content":"the "}"#),
                "{received}"
            );
            assert!(!received.contains("[DONE]") && !received.contains("finish_reason\":\"stop"));
        } else {
            assert!(received.starts_with(r#"{"id":"chatcmpl-"#));
        }
    }
    assert_eq!((up.requests(), up.completed(), up.cancelled()), (2, 0, 0));
}

#[tokio::test]
async fn preamble_then_error_event() {
    let up = FakeUpstream::start(
        Script::new()
            .then(Step::PreambleThenError {
                message: "model crashed".into(),
            })
            .then(Step::PreambleThenError {
                message: "model crashed".into(),
            }),
    )
    .await;
    let (status, headers, bytes) = chat(&up, &chat_body(true, true)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = sse_events(&bytes);
    assert_eq!(events.len(), 2, "{events:#?}");
    let preamble: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(preamble["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        events[1],
        r#"{"error":{"message":"model crashed","type":"server_error","param":null,"code":null}}"#
    );
    // Non-streaming requests get a 500 instead.
    let (status, _, bytes) = chat(&up, &chat_body(false, false)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json(&bytes)["error"]["message"], "model crashed");
    assert_eq!(up.completed(), 2);
}

#[tokio::test]
async fn tool_call_answers_stream_their_arguments_in_fragments() {
    let args = json!({"city": "Zürich", "unit": "c"});
    let step = Step::tool_call("get_weather", &args, 3);
    let up = FakeUpstream::start(Script::new().then(step.clone()).then(step)).await;

    let (status, _, bytes) = chat(&up, &chat_body(false, false)).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&bytes);
    let message = &v["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    let call = &message["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
    assert_eq!((call["type"].as_str(), call["function"]["name"].as_str()), (Some("function"), Some("get_weather")));
    assert_eq!(call["function"]["arguments"], args.to_string());
    assert!(call.get("index").is_none(), "no index outside streams: {call}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    // 29 bytes of arguments, a token per 4.
    assert_usage(&v["usage"], 8, 8);

    let (_, _, bytes) = chat(&up, &chat_body(true, true)).await;
    let events = sse_events(&bytes);
    assert_eq!(events.len(), 7, "start, 3 fragments, finish, usage, [DONE]: {events:#?}");
    let chunks: Vec<Value> = events[..6].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert_eq!(first["content"], Value::Null);
    let start = &first["tool_calls"][0];
    assert_eq!((start["index"].as_u64(), start["type"].as_str(), start["function"]["arguments"].as_str()), (Some(0), Some("function"), Some("")));
    let fragments: Vec<&str> = chunks[1..4]
        .iter()
        .map(|c| {
            let call = &c["choices"][0]["delta"]["tool_calls"][0];
            assert!(call.get("id").is_none() && call["function"].get("name").is_none(), "{c}");
            call["function"]["arguments"].as_str().unwrap()
        })
        .collect();
    assert!(fragments.iter().all(|f| !f.is_empty()), "{fragments:?}");
    assert_eq!(fragments.concat(), args.to_string());
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
    assert_usage(&chunks[5]["usage"], 8, 8);
    assert_eq!(events[6], "[DONE]");
}

#[tokio::test]
async fn finish_and_error_after_steps() {
    let up = FakeUpstream::start(
        Script::new()
            .then(Step::finish("cut short", "length"))
            .then(Step::ErrorAfter { after: 2, message: "model crashed".into() })
            .then(Step::ErrorAfter { after: 2, message: "model crashed".into() }),
    )
    .await;
    let (_, _, bytes) = chat(&up, &chat_body(false, false)).await;
    let v = json(&bytes);
    assert_eq!((v["choices"][0]["message"]["content"].as_str(), v["choices"][0]["finish_reason"].as_str()), (Some("cut short"), Some("length")));

    let (status, _, bytes) = chat(&up, &chat_body(true, false)).await;
    assert_eq!(status, StatusCode::OK);
    let events = sse_events(&bytes);
    assert_eq!(events.len(), 4, "preamble, 2 content chunks, the error: {events:#?}");
    let text: String = events[1..3].iter().map(|e| serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"].as_str().unwrap().to_owned()).collect();
    assert_eq!(text, "Hello from ");
    assert_eq!(events[3], r#"{"error":{"message":"model crashed","type":"server_error","param":null,"code":null}}"#);

    let (status, _, bytes) = chat(&up, &chat_body(false, false)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json(&bytes)["error"]["message"], "model crashed");
}

#[tokio::test]
async fn groq_quirks() {
    let up = FakeUpstream::start(Script::new().groq_quirks(true)).await;
    let (_, _, bytes) = chat(&up, &chat_body(false, false)).await;
    let body = json(&bytes);
    assert_eq!(body["choices"][0]["finish_reason"], "eos");
    let request_id = body["x_groq"]["id"].as_str().unwrap();
    assert!(request_id.starts_with("req_") && request_id.len() == 30);

    let (_, _, bytes) = chat(&up, &chat_body(true, true)).await;
    let events = sse_events(&bytes);
    assert_eq!(events.len(), 9);
    let chunks: Vec<Value> = events[..8]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let request_id = chunks[0]["x_groq"]["id"].as_str().unwrap();
    assert!(request_id.starts_with("req_"));
    assert!(chunks[0]["x_groq"].get("usage").is_none());
    assert!(chunks[1..6].iter().all(|c| c.get("x_groq").is_none()));
    let finish = &chunks[6];
    assert_eq!(finish["choices"][0]["finish_reason"], "eos");
    assert_eq!(finish["x_groq"]["id"], request_id);
    assert_eq!(finish["x_groq"]["usage"]["prompt_tokens"], 8);
    assert_eq!(finish["x_groq"]["usage"]["completion_tokens"], 5);
    assert_eq!(finish["x_groq"]["usage"]["total_tokens"], 13);
    assert!(finish["x_groq"]["usage"]["queue_time"].is_f64());
    assert_usage(&chunks[7]["usage"], 8, 5);

    let up = FakeUpstream::start(Script::new().finish_reason("length")).await;
    let (_, _, bytes) = chat(&up, &chat_body(false, false)).await;
    let body = json(&bytes);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert!(body.get("x_groq").is_none());
}

#[tokio::test]
async fn routes_and_malformed_bodies() {
    let up = FakeUpstream::start(Script::new().then(Step::status(500))).await;
    let client = client();

    let (status, headers, bytes) = send(
        &client,
        request(&up, Method::GET, "/v1/models", Bytes::new()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let models = json(&bytes);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["object"], "model");
    assert!(models["data"][0]["id"].is_string());

    let (status, _, bytes) =
        send(&client, request(&up, Method::GET, "/v1/nope", Bytes::new())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        json(&bytes),
        json!({"error": {"message": "Invalid URL (GET /v1/nope)", "type": "invalid_request_error", "param": null, "code": null}})
    );
    assert_eq!(up.requests(), 0);

    let (status, _, bytes) = send(
        &client,
        request(
            &up,
            Method::POST,
            "/v1/chat/completions",
            "{not json".into(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = json(&bytes);
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("We could not parse the JSON body")
    );
    assert_eq!(up.last_request().unwrap().body, json!("{not json"));

    let (status, _, bytes) = send(
        &client,
        request(
            &up,
            Method::POST,
            "/chat/completions",
            r#"{"messages":[]}"#.into(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        json(&bytes)["error"]["message"],
        "you must provide a model parameter"
    );

    // Rejected requests did not use up the queued step.
    let (status, _, _) = send(
        &client,
        request(
            &up,
            Method::POST,
            "/chat/completions",
            chat_body(false, false).to_string().into(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!((up.requests(), up.completed()), (3, 3));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let up = FakeUpstream::start(Script::new().then(Step::Hang)).await;
    let addr = up.addr();
    let socket = raw_request(&up, &chat_body(false, false)).await;
    eventually("the request to arrive", || up.requests() == 1).await;
    up.shutdown();
    // The hanging connection is closed and the port no longer accepts.
    let mut socket = socket;
    let mut buf = [0; 16];
    let read = tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)));
    let deadline = Instant::now() + Duration::from_secs(1);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn many_concurrent_requests() {
    let up = FakeUpstream::start(Script::new().record(false)).await;
    let client = client();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let req = request(
            &up,
            Method::POST,
            "/v1/chat/completions",
            chat_body(i % 2 == 0, true).to_string().into(),
        );
        let client = client.clone();
        tasks.push(tokio::spawn(async move { send(&client, req).await.0 }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!((up.requests(), up.completed(), up.cancelled()), (64, 64, 0));
    assert!(up.last_request().is_none());
}

#[test]
fn binary_serves_a_script() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-fake-upstream"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--fail-status",
            "503",
            "--latency-ms",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .expect("the banner")
        .to_owned();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let req = Request::post(format!("http://{addr}/v1/chat/completions"))
            .body(Full::new(Bytes::from(chat_body(false, false).to_string())))
            .unwrap();
        send(&client(), req).await.0
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard-fake-upstream"))
        .args(["--chunks", "x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn reset_sends_a_tcp_reset() {
    let up = FakeUpstream::start(Script::new().then(Step::Reset)).await;
    let mut socket = raw_request(&up, &chat_body(false, false)).await;
    let mut buf = [0; 64];
    let read = tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buf))
        .await
        .expect("closed in time");
    assert_eq!(
        read.expect_err("a reset, not a clean close").kind(),
        std::io::ErrorKind::ConnectionReset
    );
}

#[tokio::test]
async fn hyper_client_giving_up_counts_as_cancelled() {
    let slow = Step::Ok {
        reply: Reply::Fixed("a b c d".into()),
        chunks: 4,
        chunk_delay: Duration::from_millis(200),
    };
    let up = FakeUpstream::start(Script::new().then(Step::Hang).then(slow)).await;
    let client = client();

    // Waiting for headers: the client times out and drops the request future.
    let req = request(
        &up,
        Method::POST,
        "/v1/chat/completions",
        chat_body(false, false).to_string().into(),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(50), client.request(req))
            .await
            .is_err()
    );
    eventually("the hung request to be cancelled", || up.cancelled() == 1).await;

    // Mid-stream: the client reads the preamble, then drops the body.
    let req = request(
        &up,
        Method::POST,
        "/v1/chat/completions",
        chat_body(true, false).to_string().into(),
    );
    let mut body = client.request(req).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"data: {"));
    drop(body);
    eventually("the stream to be cancelled", || up.cancelled() == 2).await;
    assert_eq!(up.completed(), 0);
}
