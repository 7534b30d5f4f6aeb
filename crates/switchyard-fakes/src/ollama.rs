//! A fake Ollama server speaking its native API: `POST /api/chat` (JSON, or NDJSON streaming by
//! default, as Ollama does), `POST /api/embed`, `GET /api/tags`, and `{"error": "..."}` bodies.
//! Shapes follow Ollama's API reference (docs.ollama.com/api/chat); see
//! `fixtures/ollama/README.md` for recorded examples.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Recorded;
use crate::server::{Exchange, FakeResponse, ScriptedServer, StreamEnd, full, streamed};

const CREATED_AT: &str = "2024-07-22T20:33:28.123648Z";

/// What the fake does with one POST.
#[derive(Clone, Debug)]
pub enum OllamaStep {
    /// Answer with this text (streamed one word per line when `stream` is not false).
    Text(String),
    /// Answer with a tool call (`arguments` is a JSON object, as Ollama sends it).
    ToolCall { name: String, arguments: Value },
    /// Answer this text but stop with `done_reason: "length"`.
    Length(String),
    /// An HTTP error with Ollama's `{"error": "..."}` body.
    Status(u16, String),
    /// Stream `after` words, then an `{"error": "..."}` line.
    StreamError { after: usize, message: String },
    /// Stream `after` words, then break the connection.
    DropAfter(usize),
    /// Wait, then do the inner step.
    Delay(Duration, Box<OllamaStep>),
}

impl OllamaStep {
    pub fn text(t: &str) -> OllamaStep {
        OllamaStep::Text(t.to_owned())
    }
}

/// A running fake Ollama.
pub struct FakeOllama {
    server: ScriptedServer<OllamaStep>,
}

impl FakeOllama {
    /// Starts with `steps` queued; later requests answer "Hello from the fake Ollama."
    pub async fn start(steps: Vec<OllamaStep>) -> FakeOllama {
        let server = ScriptedServer::start(steps, OllamaStep::text("Hello from the fake Ollama."), |step, ex| async move {
            handle(step, ex).await
        })
        .await;
        FakeOllama { server }
    }

    /// `http://127.0.0.1:PORT` (Ollama's API lives under `/api`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn requests(&self) -> usize {
        self.server.requests()
    }

    pub fn cancelled(&self) -> usize {
        self.server.cancelled()
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.server.recorded()
    }

    pub fn last_request(&self) -> Option<Recorded> {
        self.server.last_request()
    }

    pub fn push(&self, step: OllamaStep) {
        self.server.push(step);
    }

    /// The step for requests once the queue is empty.
    pub fn set_default(&self, step: OllamaStep) {
        self.server.set_default(step);
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

fn prompt_tokens(req: &Value) -> u64 {
    req["messages"].as_array().map_or(1, |m| {
        m.iter().map(|msg| words(msg["content"].as_str().unwrap_or(""))).sum::<u64>().max(1)
    })
}

fn final_fields(model: &str, done_reason: &str, prompt: u64, eval: u64, message: Value) -> Value {
    json!({
        "model": model, "created_at": CREATED_AT, "message": message, "done": true,
        "done_reason": done_reason, "total_duration": 4883583458u64, "load_duration": 1334875,
        "prompt_eval_count": prompt, "prompt_eval_duration": 342546000, "eval_count": eval,
        "eval_duration": 4535599000u64
    })
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn error(status: u16, message: &str) -> FakeResponse {
    full(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "application/json; charset=utf-8", json!({"error": message}).to_string())
}

async fn handle(step: Option<OllamaStep>, ex: Exchange) -> Option<FakeResponse> {
    let path = ex.uri.path().to_owned();
    match (&ex.method, path.as_str(), step) {
        (&Method::GET, "/api/tags", _) => Some(full(
            StatusCode::OK,
            "application/json; charset=utf-8",
            json!({"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest", "modified_at": CREATED_AT,
                "size": 2019393189u64, "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}}]})
            .to_string(),
        )),
        (&Method::POST, "/api/chat", Some(step)) => Some(chat(step, &ex.json).await),
        (&Method::POST, "/api/embed", Some(step)) => Some(embed(step, &ex.json).await),
        _ => Some(error(404, "404 page not found")),
    }
}

/// Dimensions of the fake's embeddings unless the request asks for `dimensions`
/// (`nomic-embed-text`'s size).
pub const EMBED_DIMENSIONS: usize = 768;

/// `POST /api/embed`: `{model, input (a string or an array of strings), truncate?, dimensions?,
/// options?, keep_alive?}` → `{model, embeddings: [[...]], total_duration, load_duration,
/// prompt_eval_count}`. Scripted errors and delays apply; any other step answers.
fn embed(step: OllamaStep, req: &Value) -> std::pin::Pin<Box<dyn std::future::Future<Output = FakeResponse> + Send + '_>> {
    Box::pin(async move {
        match step {
            OllamaStep::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                return embed(*inner, req).await;
            }
            OllamaStep::Status(code, msg) => return error(code, &msg),
            _ => {}
        }
        let Some(model) = req["model"].as_str().filter(|m| !m.is_empty()) else {
            return error(400, "model is required");
        };
        let inputs: Vec<String> = match &req["input"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) if a.iter().all(Value::is_string) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Value::Null => vec![],
            _ => return error(400, "invalid input type"),
        };
        let dims = match &req["dimensions"] {
            Value::Null => EMBED_DIMENSIONS,
            d => match d.as_u64() {
                Some(n) if n >= 1 => n as usize,
                _ => return error(400, "dimensions must be a positive integer"),
            },
        };
        let embeddings: Vec<Vec<f32>> = inputs.iter().map(|t| crate::wire::fake_vector(t, dims)).collect();
        let tokens: u64 = inputs.iter().map(|t| words(t)).sum();
        full(
            StatusCode::OK,
            "application/json; charset=utf-8",
            json!({"model": model, "embeddings": embeddings, "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": tokens})
                .to_string(),
        )
    })
}

fn chat(step: OllamaStep, req: &Value) -> std::pin::Pin<Box<dyn std::future::Future<Output = FakeResponse> + Send + '_>> {
    Box::pin(async move {
        let model = req["model"].as_str().unwrap_or("unknown").to_owned();
        let stream = req["stream"].as_bool().unwrap_or(true);
        let prompt = prompt_tokens(req);
        match step {
            OllamaStep::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                chat(*inner, req).await
            }
            OllamaStep::Status(code, msg) => error(code, &msg),
            OllamaStep::Text(text) => answer(&model, stream, prompt, &text, "stop", None, StreamEnd::Clean),
            OllamaStep::Length(text) => answer(&model, stream, prompt, &text, "length", None, StreamEnd::Clean),
            OllamaStep::ToolCall { name, arguments } => {
                let calls = json!([{"function": {"name": name, "arguments": arguments}}]);
                answer(&model, stream, prompt, "", "stop", Some(calls), StreamEnd::Clean)
            }
            OllamaStep::StreamError { after, message } => {
                let mut pieces = word_lines(&model, "one two three four five six seven eight", after);
                pieces.push((Duration::ZERO, line(&json!({"error": message}))));
                streamed(StatusCode::OK, "application/x-ndjson", pieces, StreamEnd::Clean)
            }
            OllamaStep::DropAfter(after) => {
                let pieces = word_lines(&model, "one two three four five six seven eight", after);
                streamed(StatusCode::OK, "application/x-ndjson", pieces, StreamEnd::Abort)
            }
        }
    })
}

fn word_lines(model: &str, text: &str, limit: usize) -> Vec<(Duration, Bytes)> {
    text.split_inclusive(' ')
        .take(limit)
        .map(|w| {
            let v = json!({"model": model, "created_at": CREATED_AT, "message": {"role": "assistant", "content": w}, "done": false});
            (Duration::ZERO, line(&v))
        })
        .collect()
}

fn answer(model: &str, stream: bool, prompt: u64, text: &str, done_reason: &str, tool_calls: Option<Value>, end: StreamEnd) -> FakeResponse {
    let eval = if text.is_empty() { 12 } else { words(text) };
    if !stream {
        let mut message = json!({"role": "assistant", "content": text});
        if let Some(calls) = tool_calls {
            message["tool_calls"] = calls;
        }
        return full(StatusCode::OK, "application/json; charset=utf-8", final_fields(model, done_reason, prompt, eval, message).to_string());
    }
    let mut pieces = word_lines(model, text, usize::MAX);
    if let Some(calls) = tool_calls {
        let v = json!({"model": model, "created_at": CREATED_AT, "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": false});
        pieces.push((Duration::ZERO, line(&v)));
    }
    let last = final_fields(model, done_reason, prompt, eval, json!({"role": "assistant", "content": ""}));
    pieces.push((Duration::ZERO, line(&last)));
    streamed(StatusCode::OK, "application/x-ndjson", pieces, end)
}
