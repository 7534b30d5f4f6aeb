//! The translation matrix: every ingress (OpenAI chat, Anthropic messages) × every egress kind
//! (openai, the groq preset with Groq's quirks, azure, anthropic, gemini, ollama, bedrock) ×
//! {non-stream, stream} × every case (plain
//! text, a tool call with streamed arguments, image input, usage, each finish reason, each error
//! class, a mid-stream error), generated from the tables below. Each cell drives the real gateway
//! against the fake upstream of its egress kind and asserts what the client sees: the whole
//! translated answer (text, tool call and its arguments, finish reason, usage) or error (status,
//! the ingress's error JSON, `Retry-After`), event by event for streams.
//!
//! One gateway and one fake serve every cell of an egress (one `#[tokio::test]` per egress, so
//! they run in parallel); cells run one after another because each queues its upstream step
//! just before its request. A failing cell is reported by name,
//! `ingress/egress/mode/case: message`, after every other cell has run.
//!
//! Cells a provider cannot express are declared in [`not_applicable`] with the reason; the
//! README's "Translation matrix" section lists the same cells (checked by
//! `readme_lists_every_not_applicable_cell`).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use switchyard_fakes::anthropic::{Answer, AnthropicScript, AnthropicStep, FakeAnthropic};
use switchyard_fakes::bedrock::{BedrockStep, FakeBedrock};
use switchyard_fakes::gemini::{FakeGemini, GeminiConfig, GeminiError, GeminiStep};
use switchyard_fakes::ollama::{FakeOllama, OllamaStep};
use switchyard_fakes::{FakeUpstream, Script, Step};

// ---------------------------------------------------------------------------------------------
// The tables
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ingress {
    /// `POST /v1/chat/completions`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Egress {
    OpenAi,
    /// The `groq` preset of `openai`, against a fake with Groq's quirks (a top-level `x_groq`,
    /// `finish_reason: "eos"`), which the gateway must normalize away.
    Groq,
    Azure,
    Anthropic,
    Gemini,
    Ollama,
    Bedrock,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Json,
    Stream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// A text answer, finish `stop` / `end_turn`.
    Text,
    /// A tool call whose arguments the upstream streams in several fragments; finish
    /// `tool_calls` / `tool_use`.
    ToolCall,
    /// A user turn with a base64 image: the provider's image part upstream, a text answer back.
    Image,
    /// Token counts reach the client (OpenAI ingress streams ask with
    /// `stream_options.include_usage`).
    Usage,
    /// Finish `length` / `max_tokens`.
    Length,
    /// Finish `content_filter` / `refusal`.
    ContentFilter,
    Err400,
    Err401,
    Err403,
    Err429,
    Err500,
    Err503,
    /// Anthropic's HTTP 529 `overloaded_error`.
    Err529,
    /// The upstream stream fails after content was sent.
    MidStream,
}

const INGRESSES: [Ingress; 2] = [Ingress::OpenAi, Ingress::Anthropic];
const EGRESSES: [Egress; 7] = [Egress::OpenAi, Egress::Groq, Egress::Azure, Egress::Anthropic, Egress::Gemini, Egress::Ollama, Egress::Bedrock];
const MODES: [Mode; 2] = [Mode::Json, Mode::Stream];
const CASES: [Case; 14] = [
    Case::Text,
    Case::ToolCall,
    Case::Image,
    Case::Usage,
    Case::Length,
    Case::ContentFilter,
    Case::Err400,
    Case::Err401,
    Case::Err403,
    Case::Err429,
    Case::Err500,
    Case::Err503,
    Case::Err529,
    Case::MidStream,
];

/// Why a cell cannot exist, or `None` when it runs. Every reason is a property of the provider's
/// API (or of non-streaming answers), not of the gateway.
fn not_applicable(egress: Egress, mode: Mode, case: Case) -> Option<&'static str> {
    match (egress, mode, case) {
        (_, Mode::Json, Case::MidStream) => Some("a non-streaming answer arrives whole or as an HTTP error: there is no stream to break"),
        (Egress::Ollama, _, Case::ContentFilter) => Some("Ollama has no content filter: its done_reason is only stop, length, load or unload"),
        (Egress::Bedrock, _, Case::Err401) => Some("AWS answers bad or missing credentials with 403 (UnrecognizedClientException, AccessDeniedException), never 401"),
        (e, _, Case::Err529) if e != Egress::Anthropic => Some("HTTP 529 is Anthropic's own status; other providers report overload as 503 (the error-503 cells)"),
        _ => None,
    }
}

/// How many argument fragments a streamed tool call arrives in from each provider (the
/// gateway forwards them one for one). Gemini and Ollama send a function call whole, in one
/// event or line, so their calls reach the client as one fragment.
fn upstream_fragments(egress: Egress) -> usize {
    match egress {
        // As the fakes are scripted below: 3 fragments, and Bedrock's fake cuts 4.
        Egress::OpenAi | Egress::Groq | Egress::Azure | Egress::Anthropic => 3,
        Egress::Bedrock => 4,
        Egress::Gemini | Egress::Ollama => 1,
    }
}

const REPLY: &str = "The gateway says hello back.";
const SYSTEM: &str = "You are terse.";
const PROMPT: &str = "Say hello to the gateway";
const IMAGE_PROMPT: &str = "What is in this picture?";
/// A 1×1 PNG.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const BACKUP_REPLY: &str = "Answered by the backup.";

fn args() -> Value {
    // Non-ASCII, so fragments may end mid-character in bytes but never in chars.
    json!({"city": "Zürich", "unit": "c"})
}

/// The (prompt, completion) tokens each fake reports for a case: words of the prompt's text
/// (the system turn's 3 and the user's 5; Bedrock counts a non-text block as 1), words of the
/// reply; for tool calls, each fake's own count.
fn expected_usage(egress: Egress, case: Case) -> (u64, u64) {
    let prompt = match (egress, case) {
        (Egress::Bedrock, Case::Image) => 9,
        _ => 8,
    };
    let completion = match (egress, case) {
        // OpenAI and Anthropic fakes: a token per 4 bytes of the 29-byte arguments JSON.
        (Egress::OpenAi | Egress::Groq | Egress::Azure | Egress::Anthropic, Case::ToolCall) => 8,
        // 1 + the words of the name and of the arguments JSON.
        (Egress::Gemini, Case::ToolCall) => 3,
        (Egress::Ollama, Case::ToolCall) => 12,
        (Egress::Bedrock, Case::ToolCall) => 20,
        // Gemini's safety block has no candidate content.
        (Egress::Gemini, Case::ContentFilter) => 0,
        _ => 5,
    };
    (prompt, completion)
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

impl Ingress {
    fn name(self) -> &'static str {
        match self {
            Ingress::OpenAi => "openai-chat",
            Ingress::Anthropic => "anthropic-messages",
        }
    }
}

impl Egress {
    fn name(self) -> &'static str {
        match self {
            Egress::OpenAi => "openai",
            Egress::Groq => "groq",
            Egress::Azure => "azure",
            Egress::Anthropic => "anthropic",
            Egress::Gemini => "gemini",
            Egress::Ollama => "ollama",
            Egress::Bedrock => "bedrock",
        }
    }

    fn model(self) -> &'static str {
        match self {
            Egress::OpenAi => "gpt-4o-mini",
            // A multimodal Groq model: the bundled table marks llama-3.1-8b-instant as text-only,
            // and the gateway would (rightly) not send it the image cells.
            Egress::Groq => "meta-llama/llama-4-scout-17b-16e-instruct",
            Egress::Azure => "my-gpt-4o-deployment",
            Egress::Anthropic => "claude-sonnet-4-5",
            Egress::Gemini => "gemini-2.5-flash",
            Egress::Ollama => "llama3.2",
            Egress::Bedrock => "anthropic.claude-3-5-sonnet-20240620-v1:0",
        }
    }
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Json => "json",
            Mode::Stream => "stream",
        }
    }
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Text => "text",
            Case::ToolCall => "tool-call",
            Case::Image => "image",
            Case::Usage => "usage",
            Case::Length => "finish-length",
            Case::ContentFilter => "finish-content-filter",
            Case::Err400 => "error-400",
            Case::Err401 => "error-401",
            Case::Err403 => "error-403",
            Case::Err429 => "error-429",
            Case::Err500 => "error-500",
            Case::Err503 => "error-503",
            Case::Err529 => "error-529",
            Case::MidStream => "mid-stream-error",
        }
    }

    fn error_status(self) -> Option<u16> {
        Some(match self {
            Case::Err400 => 400,
            Case::Err401 => 401,
            Case::Err403 => 403,
            Case::Err429 => 429,
            Case::Err500 => 500,
            Case::Err503 => 503,
            Case::Err529 => 529,
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The fakes, one per egress
// ---------------------------------------------------------------------------------------------

enum Fake {
    OpenAi(FakeUpstream),
    Anthropic(FakeAnthropic),
    Gemini(FakeGemini),
    Ollama(FakeOllama),
    Bedrock(FakeBedrock),
}

const GEMINI_KEY: &str = "AIza-matrix-test-key-0123456789";
const AKID: &str = "AKIDEXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

impl Fake {
    async fn start(egress: Egress) -> Fake {
        match egress {
            Egress::OpenAi | Egress::Azure => Fake::OpenAi(FakeUpstream::start(Script::new()).await),
            Egress::Groq => Fake::OpenAi(FakeUpstream::start(Script::new().groq_quirks(true)).await),
            Egress::Anthropic => Fake::Anthropic(FakeAnthropic::start(AnthropicScript::new()).await),
            Egress::Gemini => {
                let config = GeminiConfig { api_key: Some(GEMINI_KEY.into()), ..GeminiConfig::default() };
                Fake::Gemini(FakeGemini::start_with(config, Vec::new()).await)
            }
            Egress::Ollama => Fake::Ollama(FakeOllama::start(Vec::new()).await),
            Egress::Bedrock => Fake::Bedrock(FakeBedrock::start(Vec::new()).await),
        }
    }

    /// `[providers.up]` for this fake.
    fn provider(&self, egress: Egress) -> String {
        let body = match (self, egress) {
            (Fake::OpenAi(f), Egress::Azure) => {
                format!("kind = \"azure\"\nbase_url = \"http://{}\"\napi_key = \"{KEY_A}\"\napi_version = \"2024-10-21\"", f.addr())
            }
            (Fake::OpenAi(f), Egress::Groq) => format!("kind = \"groq\"\nbase_url = \"{}\"\napi_key = \"{KEY_A}\"", f.base_url()),
            (Fake::OpenAi(f), _) => format!("kind = \"openai\"\nbase_url = \"{}\"\napi_key = \"{KEY_A}\"", f.base_url()),
            (Fake::Anthropic(f), _) => format!("kind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"{KEY_A}\"", f.base_url()),
            (Fake::Gemini(f), _) => format!("kind = \"gemini\"\nbase_url = \"{}\"\napi_key = \"{GEMINI_KEY}\"", f.base_url()),
            (Fake::Ollama(f), _) => format!("kind = \"ollama\"\nbase_url = \"{}\"", f.base_url()),
            (Fake::Bedrock(f), _) => format!(
                "kind = \"bedrock\"\nregion = \"us-east-1\"\nbase_url = \"{}\"\naccess_key_id = \"{AKID}\"\nsecret_access_key = \"{AWS_SECRET}\"",
                f.base_url()
            ),
        };
        format!("[providers.up]\n{body}\n")
    }

    fn requests(&self) -> usize {
        match self {
            Fake::OpenAi(f) => f.requests(),
            Fake::Anthropic(f) => f.requests(),
            Fake::Gemini(f) => f.requests(),
            Fake::Ollama(f) => f.requests(),
            Fake::Bedrock(f) => f.requests(),
        }
    }

    /// The body of the last request the upstream received.
    fn last_body(&self) -> Value {
        let last = match self {
            Fake::OpenAi(f) => f.last_request(),
            Fake::Anthropic(f) => f.last_request(),
            Fake::Gemini(f) => f.last_request(),
            Fake::Ollama(f) => f.last_request(),
            Fake::Bedrock(f) => f.last_request(),
        };
        last.expect("the upstream saw a request").body
    }

    /// Queues the upstream's answer for one cell.
    fn push(&self, case: Case) {
        match self {
            Fake::OpenAi(f) => f.push(match case {
                Case::Text | Case::Image | Case::Usage => Step::reply(REPLY),
                Case::ToolCall => Step::tool_call("get_weather", &args(), 3),
                Case::Length => Step::finish(REPLY, "length"),
                Case::ContentFilter => Step::finish(REPLY, "content_filter"),
                Case::Err429 => Step::rate_limited("2"),
                Case::MidStream => Step::ErrorAfter { after: 2, message: "The server had an error while processing your request.".into() },
                c => Step::status(c.error_status().expect("an error case")),
            }),
            Fake::Anthropic(f) => f.push(match case {
                Case::Text | Case::Image | Case::Usage => Answer::text(REPLY).into(),
                Case::ToolCall => Answer::tool_use("get_weather", args()).fragments(3).into(),
                Case::Length => Answer::text(REPLY).stop_reason("max_tokens").into(),
                Case::ContentFilter => Answer::text(REPLY).stop_reason("refusal").into(),
                Case::Err429 => AnthropicStep::rate_limited("2"),
                Case::MidStream => AnthropicStep::error_after(2, "overloaded_error"),
                c => AnthropicStep::status(c.error_status().expect("an error case")),
            }),
            Fake::Gemini(f) => f.push(match case {
                Case::Text | Case::Image | Case::Usage => GeminiStep::text(REPLY),
                Case::ToolCall => GeminiStep::function_call("get_weather", args()),
                Case::Length => GeminiStep::text(REPLY).finish("MAX_TOKENS"),
                Case::ContentFilter => GeminiStep::safety_block(),
                Case::Err429 => GeminiStep::rate_limited("7s"),
                Case::MidStream => GeminiStep::ErrorEvent { after: 2, error: GeminiError::new(500) },
                c => GeminiStep::error(c.error_status().expect("an error case")),
            }),
            Fake::Ollama(f) => f.push(match case {
                Case::Text | Case::Image | Case::Usage => OllamaStep::text(REPLY),
                Case::ToolCall => OllamaStep::ToolCall { name: "get_weather".into(), arguments: args() },
                Case::Length => OllamaStep::Length(REPLY.into()),
                Case::MidStream => OllamaStep::StreamError { after: 2, message: "an error was encountered while running the model: unexpected EOF".into() },
                c => {
                    let status = c.error_status().expect("an error case");
                    OllamaStep::Status(status, ollama_error(status).into())
                }
            }),
            Fake::Bedrock(f) => f.push(match case {
                Case::Text | Case::Image | Case::Usage => BedrockStep::text(REPLY),
                Case::ToolCall => BedrockStep::ToolUse { text: None, name: "get_weather".into(), input: args() },
                Case::Length => BedrockStep::Stop { text: REPLY.into(), reason: "max_tokens".into() },
                Case::ContentFilter => BedrockStep::Stop { text: REPLY.into(), reason: "guardrail_intervened".into() },
                Case::Err429 => BedrockStep::throttled(),
                Case::MidStream => BedrockStep::Exception {
                    after: 2,
                    exception_type: "modelStreamErrorException".into(),
                    message: "The model stream failed.".into(),
                },
                c => {
                    let status = c.error_status().expect("an error case");
                    let (error_type, message) = bedrock_error(status);
                    BedrockStep::Status { status, error_type: error_type.into(), message: message.into() }
                }
            }),
        }
    }
}

/// Ollama's error messages (its server's own wording where it has one).
fn ollama_error(status: u16) -> &'static str {
    match status {
        400 => "invalid options: frobnicate",
        401 => "unauthorized",
        403 => "forbidden",
        429 => "too many requests",
        503 => "server busy, please try again.  maximum pending requests exceeded",
        _ => "llama runner process has terminated: exit status 2",
    }
}

/// Bedrock's error names and messages (Amazon Bedrock API reference, "Common Errors").
fn bedrock_error(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("ValidationException", "The provided request is not valid"),
        403 => ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
        503 => ("ServiceUnavailableException", "Bedrock is unable to process your request."),
        _ => ("InternalServerException", "The server encountered an internal error while processing the request."),
    }
}

/// The message the upstream sent with a 400, which the caller must see.
fn upstream_400_message(egress: Egress) -> &'static str {
    match egress {
        Egress::OpenAi | Egress::Groq | Egress::Azure | Egress::Anthropic => "Invalid request.",
        Egress::Gemini => "Request contains an invalid argument.",
        Egress::Ollama => ollama_error(400),
        Egress::Bedrock => bedrock_error(400).1,
    }
}

/// The text streamed before a mid-stream error, as each fake writes it.
fn text_before_error(egress: Egress) -> &'static str {
    match egress {
        Egress::OpenAi | Egress::Groq | Egress::Azure | Egress::Gemini => "Hello from ",
        Egress::Anthropic => "word0 word1 ",
        Egress::Ollama | Egress::Bedrock => "one two ",
    }
}

/// The `Retry-After` a client gets for the upstream's 429 (`None`: the provider sends none).
fn retry_after(egress: Egress) -> Option<&'static str> {
    match egress {
        Egress::OpenAi | Egress::Groq | Egress::Azure | Egress::Anthropic => Some("2"),
        // Google's RetryInfo `retryDelay: "7s"`.
        Egress::Gemini => Some("7"),
        Egress::Ollama | Egress::Bedrock => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

fn request(ingress: Ingress, mode: Mode, case: Case, alias: &str) -> Value {
    let stream = mode == Mode::Stream;
    let mut body = match ingress {
        Ingress::OpenAi => {
            let user = if case == Case::Image {
                json!([{"type": "text", "text": IMAGE_PROMPT}, {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}}])
            } else {
                json!(PROMPT)
            };
            json!({
                "model": alias,
                "max_tokens": 100,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
            })
        }
        Ingress::Anthropic => {
            let user = if case == Case::Image {
                json!([{"type": "text", "text": IMAGE_PROMPT}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}])
            } else {
                json!(PROMPT)
            };
            json!({"model": alias, "max_tokens": 100, "system": SYSTEM, "messages": [{"role": "user", "content": user}]})
        }
    };
    if stream {
        body["stream"] = json!(true);
        if ingress == Ingress::OpenAi && case == Case::Usage {
            body["stream_options"] = json!({"include_usage": true});
        }
    }
    if case == Case::ToolCall {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]});
        let description = "The current weather in a city";
        body["tools"] = match ingress {
            Ingress::OpenAi => json!([{"type": "function", "function": {"name": "get_weather", "description": description, "parameters": schema}}]),
            Ingress::Anthropic => json!([{"name": "get_weather", "description": description, "input_schema": schema}]),
        };
    }
    body
}

// ---------------------------------------------------------------------------------------------
// What the client saw, in one shape for both ingresses
// ---------------------------------------------------------------------------------------------

/// A successful answer as the client received it.
#[derive(Debug, PartialEq)]
struct Said {
    text: String,
    /// (name, arguments) of each tool call; the arguments are the fragments joined, parsed.
    tools: Vec<(String, Value)>,
    /// The ingress's own finish value (`finish_reason` / `stop_reason`).
    finish: String,
    /// (prompt, completion) tokens, when the client was given them.
    usage: Option<(u64, u64)>,
}

/// Extra facts about a streamed answer.
#[derive(Debug, Default)]
struct StreamFacts {
    /// Non-empty argument fragments per tool call.
    fragments: Vec<usize>,
    /// The stream's error event, if it ended with one.
    error: Option<Value>,
}

/// The fields of OpenAI's completion and chunk objects and of their choices: anything else (a
/// provider's own, like Groq's `x_groq`) must not reach the client.
const OPENAI_FIELDS: [&str; 8] = ["id", "object", "created", "model", "choices", "usage", "service_tier", "system_fingerprint"];
const OPENAI_CHOICE_FIELDS: [&str; 5] = ["index", "message", "delta", "logprobs", "finish_reason"];

fn assert_openai_fields(v: &Value) {
    let unknown: Vec<&String> = v.as_object().expect("an object").keys().filter(|k| !OPENAI_FIELDS.contains(&k.as_str())).collect();
    assert!(unknown.is_empty(), "non-OpenAI fields {unknown:?} in {v}");
    for choice in v["choices"].as_array().into_iter().flatten() {
        let unknown: Vec<&String> = choice.as_object().expect("a choice").keys().filter(|k| !OPENAI_CHOICE_FIELDS.contains(&k.as_str())).collect();
        assert!(unknown.is_empty(), "non-OpenAI choice fields {unknown:?} in {v}");
    }
}

/// A `chat.completion` as [`Said`], checking its envelope.
fn said_openai_json(v: &Value, alias: &str) -> Said {
    assert_openai_fields(v);
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["model"], alias, "{v}");
    assert!(v["id"].as_str().is_some_and(|id| !id.is_empty()), "no id: {v}");
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 1, "{v}");
    let choice = &choices[0];
    assert_eq!(choice["index"], 0);
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant", "{v}");
    let text = match &message["content"] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => panic!("content is neither null nor a string: {other}"),
    };
    let mut tools = Vec::new();
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()), "a tool call without an id: {v}");
        assert_eq!(call["type"], "function", "{v}");
        let arguments = call["function"]["arguments"].as_str().expect("arguments are a JSON string");
        let parsed: Value = serde_json::from_str(arguments).unwrap_or_else(|e| panic!("arguments are not JSON ({e}): {arguments}"));
        tools.push((call["function"]["name"].as_str().expect("a name").to_owned(), parsed));
    }
    let usage = openai_usage(&v["usage"]);
    Said { text, tools, finish: choice["finish_reason"].as_str().expect("a finish_reason").to_owned(), usage: Some(usage) }
}

fn openai_usage(u: &Value) -> (u64, u64) {
    let (p, c, t) = (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64(), u["total_tokens"].as_u64());
    let (Some(p), Some(c), Some(t)) = (p, c, t) else { panic!("incomplete usage: {u}") };
    assert_eq!(t, p + c, "total_tokens: {u}");
    (p, c)
}

/// OpenAI chunks as [`Said`], checking every chunk's envelope, the tool-call protocol (id, type
/// and name first, then argument fragments) and where usage may appear.
fn said_openai_stream(r: &Resp, alias: &str, include_usage: bool) -> (Said, StreamFacts) {
    let events = r.events();
    let mut facts = StreamFacts::default();
    let last = events.last().expect("at least one event");
    let body: Vec<&String> = if last == "[DONE]" {
        events[..events.len() - 1].iter().collect()
    } else {
        let error: Value = serde_json::from_str(last).expect("the last event is JSON");
        assert!(error["error"].is_object(), "the stream ended without [DONE] or an error event: {last}");
        facts.error = Some(error);
        events[..events.len() - 1].iter().collect()
    };
    assert!(!body.iter().any(|e| e.as_str() == "[DONE]"), "[DONE] before the end");
    let mut text = String::new();
    let mut calls: BTreeMap<u64, (String, String, usize)> = BTreeMap::new();
    let mut finish = Vec::new();
    let mut usage = Vec::new();
    let mut id = None;
    for (i, e) in body.iter().enumerate() {
        let c: Value = serde_json::from_str(e).unwrap_or_else(|err| panic!("bad chunk {e}: {err}"));
        assert!(c.get("error").is_none(), "an error event before the end: {e}");
        assert_openai_fields(&c);
        assert_eq!(c["object"], "chat.completion.chunk", "{e}");
        assert_eq!(c["model"], alias, "{e}");
        let this_id = c["id"].as_str().expect("a chunk id").to_owned();
        assert_eq!(id.get_or_insert_with(|| this_id.clone()), &this_id, "chunk ids differ");
        match c.get("usage") {
            None | Some(Value::Null) => {}
            Some(u) => {
                assert!(include_usage, "usage shown to a client that did not ask for it: {e}");
                assert_eq!(c["choices"], json!([]), "the usage chunk has no choices: {e}");
                assert_eq!(i, body.len() - 1, "the usage chunk is the last before [DONE]");
                usage.push(openai_usage(u));
            }
        }
        for choice in c["choices"].as_array().expect("choices") {
            assert_eq!(choice["index"], 0, "{e}");
            let delta = &choice["delta"];
            if let Some(t) = delta["content"].as_str() {
                text.push_str(t);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().expect("a tool call delta has an index");
                let fragment = call["function"]["arguments"].as_str().unwrap_or_default();
                match calls.get_mut(&index) {
                    None => {
                        assert!(call["id"].as_str().is_some_and(|id| !id.is_empty()), "a call's first delta has its id: {e}");
                        assert_eq!(call["type"], "function", "{e}");
                        let name = call["function"]["name"].as_str().unwrap_or_else(|| panic!("a call's first delta has its name: {e}"));
                        calls.insert(index, (name.to_owned(), fragment.to_owned(), usize::from(!fragment.is_empty())));
                    }
                    Some((_, arguments, n)) => {
                        assert!(call.get("id").is_none_or(Value::is_null), "only a call's first delta has the id: {e}");
                        assert!(call["function"].get("name").is_none_or(Value::is_null), "only a call's first delta has the name: {e}");
                        arguments.push_str(fragment);
                        *n += usize::from(!fragment.is_empty());
                    }
                }
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish.push(f.to_owned());
            }
        }
    }
    let tools = calls
        .into_values()
        .map(|(name, arguments, n)| {
            facts.fragments.push(n);
            let parsed: Value = serde_json::from_str(&arguments).unwrap_or_else(|e| panic!("streamed arguments are not whole JSON ({e}): {arguments}"));
            (name, parsed)
        })
        .collect();
    assert!(finish.len() <= 1, "more than one finish_reason: {finish:?}");
    assert!(usage.len() <= 1, "more than one usage chunk");
    let said = Said { text, tools, finish: finish.pop().unwrap_or_default(), usage: usage.pop() };
    (said, facts)
}

/// The fields of Anthropic's `message` object.
const ANTHROPIC_FIELDS: [&str; 8] = ["id", "type", "role", "content", "model", "stop_reason", "stop_sequence", "usage"];

fn assert_anthropic_fields(message: &Value) {
    let unknown: Vec<&String> = message.as_object().expect("an object").keys().filter(|k| !ANTHROPIC_FIELDS.contains(&k.as_str())).collect();
    assert!(unknown.is_empty(), "non-Anthropic fields {unknown:?} in {message}");
}

/// An Anthropic `message` as [`Said`], checking its envelope.
fn said_anthropic_json(v: &Value, alias: &str) -> Said {
    assert_anthropic_fields(v);
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["role"], "assistant", "{v}");
    assert_eq!(v["model"], alias, "{v}");
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("msg_")), "id: {v}");
    let mut text = String::new();
    let mut tools = Vec::new();
    let blocks = v["content"].as_array().expect("content blocks");
    // An answer without content is one empty text block, as clients index content[0] (the
    // stream, built block by block, has none).
    let blocks = if blocks == &[json!({"type": "text", "text": ""})] { &[][..] } else { blocks.as_slice() };
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => {
                assert!(block["text"].as_str().is_some_and(|t| !t.is_empty()), "an empty text block: {v}");
                text.push_str(block["text"].as_str().unwrap());
            }
            Some("tool_use") => {
                assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()), "a tool_use without an id: {v}");
                assert!(block["input"].is_object(), "tool_use input is an object: {v}");
                tools.push((block["name"].as_str().expect("a name").to_owned(), block["input"].clone()));
            }
            other => panic!("unexpected block {other:?}: {v}"),
        }
    }
    assert!(v.get("stop_sequence").is_some_and(Value::is_null), "stop_sequence: {v}");
    let u = &v["usage"];
    let usage = (u["input_tokens"].as_u64().expect("input_tokens"), u["output_tokens"].as_u64().expect("output_tokens"));
    Said { text, tools, finish: v["stop_reason"].as_str().expect("a stop_reason").to_owned(), usage: Some(usage) }
}

/// One SSE event: its `event:` name and parsed `data:`.
fn named_events(body: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(body).expect("UTF-8 event stream");
    assert!(text.is_empty() || text.ends_with("\n\n"), "the stream ends mid-event: {text:?}");
    text.split_terminator("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = Vec::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_owned());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            let name = name.unwrap_or_else(|| panic!("an event without a name: {e:?}"));
            let data: Value = serde_json::from_str(&data.join("\n")).unwrap_or_else(|err| panic!("event data is not JSON ({err}): {e:?}"));
            assert_eq!(data["type"], name.as_str(), "the event name and the data's type differ: {e:?}");
            (name, data)
        })
        .collect()
}

/// Anthropic's event sequence as [`Said`], checking the grammar: `message_start`, then each
/// content block as start / deltas / stop with consecutive indices, then `message_delta` and
/// `message_stop` (or an `error` event ending the stream); `ping`s anywhere.
fn said_anthropic_stream(r: &Resp, alias: &str) -> (Said, StreamFacts) {
    let events: Vec<(String, Value)> = named_events(&r.body).into_iter().filter(|(n, _)| n != "ping").collect();
    let mut facts = StreamFacts::default();
    let mut it = events.iter().peekable();
    let (name, start) = it.next().expect("an event");
    assert_eq!(name, "message_start", "the first event: {events:?}");
    let message = &start["message"];
    assert_anthropic_fields(message);
    assert_eq!(message["model"], alias, "{start}");
    assert_eq!(message["role"], "assistant", "{start}");
    assert_eq!(message["content"], json!([]), "{start}");
    assert!(message["id"].as_str().is_some_and(|id| id.starts_with("msg_")), "{start}");
    let input_tokens = message["usage"]["input_tokens"].as_u64();
    let mut text = String::new();
    let mut tools = Vec::new();
    let mut index = 0;
    let mut finish = String::new();
    let mut output_tokens = None;
    let mut delta_input_tokens = None;
    let mut stopped = false;
    while let Some((name, data)) = it.next() {
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(data["index"], index, "block indices run 0, 1, ...: {events:?}");
                let block = &data["content_block"];
                let mut fragments = 0;
                let mut arguments = String::new();
                let kind = block["type"].as_str().expect("a block type").to_owned();
                let mut block_text = block["text"].as_str().unwrap_or_default().to_owned();
                loop {
                    let (name, data) = it.next().unwrap_or_else(|| panic!("block {index} never stopped: {events:?}"));
                    match name.as_str() {
                        "content_block_delta" => {
                            assert_eq!(data["index"], index, "{data}");
                            let delta = &data["delta"];
                            match (kind.as_str(), delta["type"].as_str()) {
                                ("text", Some("text_delta")) => block_text.push_str(delta["text"].as_str().expect("text")),
                                ("tool_use", Some("input_json_delta")) => {
                                    let f = delta["partial_json"].as_str().expect("partial_json");
                                    fragments += usize::from(!f.is_empty());
                                    arguments.push_str(f);
                                }
                                other => panic!("a {other:?} delta in a {kind} block: {data}"),
                            }
                        }
                        "content_block_stop" => {
                            assert_eq!(data["index"], index, "{data}");
                            break;
                        }
                        "error" => {
                            facts.error = Some(data.clone());
                            break;
                        }
                        other => panic!("{other} inside block {index}: {events:?}"),
                    }
                }
                match kind.as_str() {
                    "text" => {
                        assert!(!block_text.is_empty() || facts.error.is_some(), "an empty text block: {events:?}");
                        text.push_str(&block_text);
                    }
                    "tool_use" => {
                        assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()), "a tool_use block without an id: {block}");
                        assert_eq!(block["input"], json!({}), "tool input arrives in deltas: {block}");
                        let input = if arguments.is_empty() { json!({}) } else {
                            serde_json::from_str(&arguments).unwrap_or_else(|e| panic!("streamed input is not whole JSON ({e}): {arguments}"))
                        };
                        facts.fragments.push(fragments);
                        tools.push((block["name"].as_str().expect("a name").to_owned(), input));
                    }
                    other => panic!("unexpected block type {other}"),
                }
                if facts.error.is_some() {
                    break;
                }
                index += 1;
            }
            "message_delta" => {
                finish = data["delta"]["stop_reason"].as_str().expect("a stop_reason").to_owned();
                assert!(data["delta"].get("stop_sequence").is_some_and(Value::is_null), "{data}");
                output_tokens = data["usage"]["output_tokens"].as_u64();
                delta_input_tokens = data["usage"]["input_tokens"].as_u64();
                let (next, _) = it.next().unwrap_or_else(|| panic!("no message_stop: {events:?}"));
                assert_eq!(next, "message_stop", "{events:?}");
                stopped = true;
                break;
            }
            "error" => {
                facts.error = Some(data.clone());
                break;
            }
            other => panic!("unexpected {other} between blocks: {events:?}"),
        }
    }
    assert!(it.next().is_none(), "events after the end: {events:?}");
    assert!(stopped || facts.error.is_some(), "the stream ended without message_stop or an error: {events:?}");
    // message_delta's counts are cumulative and win over message_start's.
    let usage = match (delta_input_tokens.or(input_tokens), output_tokens) {
        (Some(i), Some(o)) => Some((i, o)),
        _ => None,
    };
    (Said { text, tools, finish, usage }, facts)
}

// ---------------------------------------------------------------------------------------------
// The cells
// ---------------------------------------------------------------------------------------------

struct Env {
    egress: Egress,
    fake: Fake,
    gw: TestGateway,
}

async fn env(egress: Egress) -> Arc<Env> {
    let fake = Fake::start(egress).await;
    let model = egress.model();
    let toml = format!(
        r#"{provider}
[providers.backup]
kind = "mock"
reply = "{BACKUP_REPLY}"

[models.solo]
targets = ["up/{model}"]

[models.chain]
targets = ["up/{model}", "backup/mock-1"]

[retry]
attempts_per_target = 1
backoff_initial = "1ms"
backoff_max = "2ms"

[breaker]
failures = 1000000
min_requests = 1000000

[timeouts]
connect = "500ms"
first_byte = "5s"
idle = "5s"
total = "10s"
"#,
        provider = fake.provider(egress)
    );
    let gw = start(&toml).await;
    Arc::new(Env { egress, fake, gw })
}

async fn send(env: &Env, ingress: Ingress, body: &Value) -> Resp {
    match ingress {
        Ingress::OpenAi => env.gw.chat(body).await,
        Ingress::Anthropic => {
            let headers = [("x-api-key", "unused"), ("anthropic-version", "2023-06-01")];
            env.gw.send(env.gw.post_request("/v1/messages", bytes::Bytes::from(body.to_string()), &headers)).await
        }
    }
}

/// The finish value each ingress uses for a case.
fn finish(ingress: Ingress, case: Case) -> &'static str {
    match (ingress, case) {
        (Ingress::OpenAi, Case::ToolCall) => "tool_calls",
        (Ingress::OpenAi, Case::Length) => "length",
        (Ingress::OpenAi, Case::ContentFilter) => "content_filter",
        (Ingress::OpenAi, _) => "stop",
        (Ingress::Anthropic, Case::ToolCall) => "tool_use",
        (Ingress::Anthropic, Case::Length) => "max_tokens",
        (Ingress::Anthropic, Case::ContentFilter) => "refusal",
        (Ingress::Anthropic, _) => "end_turn",
    }
}

async fn run_cell(env: &Env, ingress: Ingress, mode: Mode, case: Case) {
    let before = env.fake.requests();
    if case.error_status().is_some() {
        return error_cell(env, ingress, mode, case, before).await;
    }
    env.fake.push(case);
    let body = request(ingress, mode, case, "solo");
    let r = send(env, ingress, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(env.fake.requests(), before + 1, "one upstream request");
    assert_eq!(r.header("x-switchyard-provider"), "up");
    assert_no_keys(&r.text());
    if case == Case::Image {
        assert_image_upstream(env.egress, ingress, &env.fake.last_body());
    }
    let (said, facts) = match (ingress, mode) {
        (Ingress::OpenAi, Mode::Json) => (said_openai_json(&r.json(), "solo"), StreamFacts::default()),
        (Ingress::Anthropic, Mode::Json) => (said_anthropic_json(&r.json(), "solo"), StreamFacts::default()),
        (Ingress::OpenAi, Mode::Stream) => said_openai_stream(&r, "solo", case == Case::Usage),
        (Ingress::Anthropic, Mode::Stream) => said_anthropic_stream(&r, "solo"),
    };
    if mode == Mode::Stream {
        let content_type = r.header("content-type");
        assert!(content_type.starts_with("text/event-stream"), "content-type {content_type}");
    }

    if case == Case::MidStream {
        let error = facts.error.unwrap_or_else(|| panic!("no error event ended the broken stream: {}", r.text()));
        assert_eq!(said.text, text_before_error(env.egress), "the content before the error reached the client");
        assert!(said.finish.is_empty(), "a broken stream has no finish: {said:?}");
        match ingress {
            Ingress::OpenAi => {
                assert_eq!(error["error"]["type"], "server_error", "{error}");
                assert_eq!(error["error"]["code"], "upstream_stream_error", "{error}");
                assert!(!r.text().contains("[DONE]"), "no [DONE] after an error");
            }
            Ingress::Anthropic => {
                assert_eq!(error["type"], "error", "{error}");
                let kind = error["error"]["type"].as_str().expect("an error type");
                // Anthropic's own overloaded_error is relayed as such; others are api_error.
                let want = if env.egress == Egress::Anthropic { "overloaded_error" } else { "api_error" };
                assert_eq!(kind, want, "{error}");
                assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
                assert!(!r.text().contains("message_stop"), "no message_stop after an error");
            }
        }
        return;
    }
    assert!(facts.error.is_none(), "an error event: {:?}", facts.error);

    let want_text = match (env.egress, case) {
        (_, Case::ToolCall) => "",
        (Egress::Gemini, Case::ContentFilter) => "",
        _ => REPLY,
    };
    let want_tools = if case == Case::ToolCall { vec![("get_weather".to_owned(), args())] } else { Vec::new() };
    // Usage reaches the client in every answer but an OpenAI-ingress stream that did not ask.
    let want_usage = match (ingress, mode, case) {
        (Ingress::OpenAi, Mode::Stream, c) if c != Case::Usage => None,
        _ => Some(expected_usage(env.egress, case)),
    };
    let want = Said { text: want_text.to_owned(), tools: want_tools, finish: finish(ingress, case).to_owned(), usage: want_usage };
    assert_eq!(said, want);
    if mode == Mode::Stream && case == Case::ToolCall {
        assert_eq!(facts.fragments, vec![upstream_fragments(env.egress)], "argument fragments forwarded one for one");
    }
}

/// An error class: through the one-target alias the client gets the ingress's error JSON with
/// the gateway's status for it; through the two-target alias a caller's 400 comes back at once
/// (no failover), every other class fails over to the backup.
async fn error_cell(env: &Env, ingress: Ingress, mode: Mode, case: Case, before: usize) {
    let status = case.error_status().expect("an error case");
    env.fake.push(case);
    let r = send(env, ingress, &request(ingress, mode, case, "solo")).await;
    assert_eq!(env.fake.requests(), before + 1, "one upstream request, no retry");
    assert_no_keys(&r.text());
    let (want_status, openai_type, openai_code) = match status {
        400 => (400, "invalid_request_error", None),
        429 => (429, "rate_limit_error", Some("rate_limit_exceeded")),
        503 | 529 => (503, "server_error", Some("upstream_unavailable")),
        _ => (502, "server_error", Some("upstream_error")),
    };
    // Overload reaches Anthropic clients as Anthropic reports it, 529 `overloaded_error`, so
    // the Anthropic SDKs raise their OverloadedError.
    let want_status = if ingress == Ingress::Anthropic && want_status == 503 { 529 } else { want_status };
    assert_eq!(r.status.as_u16(), want_status, "{}", r.text());
    assert!(r.header("content-type").starts_with("application/json"));
    let message = match ingress {
        Ingress::OpenAi => {
            let e = r.error();
            assert_eq!(e["type"], openai_type, "{e}");
            if status != 400 {
                assert_eq!(e["code"], json!(openai_code), "{e}");
            }
            e["message"].as_str().expect("a message").to_owned()
        }
        Ingress::Anthropic => {
            let v = r.json();
            assert_eq!(v["type"], "error", "{v}");
            let want_type = match want_status {
                400 => "invalid_request_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            assert_eq!(v["error"]["type"], want_type, "{v}");
            v["error"]["message"].as_str().expect("a message").to_owned()
        }
    };
    if status == 400 {
        let upstream = upstream_400_message(env.egress);
        assert!(message.contains(upstream), "the upstream's message reaches the caller: {message:?} lacks {upstream:?}");
    }
    let got_retry_after = r.headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let want_retry_after = if status == 429 { retry_after(env.egress) } else { None };
    assert_eq!(got_retry_after.as_deref(), want_retry_after, "Retry-After");

    // The same failure on a two-target chain.
    env.fake.push(case);
    let r = send(env, ingress, &request(ingress, mode, case, "chain")).await;
    assert_eq!(env.fake.requests(), before + 2, "one more upstream request");
    if status == 400 {
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "a caller's error is not failed over: {}", r.text());
        assert_eq!(r.attempts(), 1);
    } else {
        assert_eq!(r.status, StatusCode::OK, "failed over: {}", r.text());
        assert_eq!(r.header("x-switchyard-provider"), "backup");
        assert_eq!(r.attempts(), 2);
        let text = match (ingress, mode) {
            (Ingress::OpenAi, Mode::Json) => said_openai_json(&r.json(), "chain").text,
            (Ingress::Anthropic, Mode::Json) => said_anthropic_json(&r.json(), "chain").text,
            (Ingress::OpenAi, Mode::Stream) => said_openai_stream(&r, "chain", false).0.text,
            (Ingress::Anthropic, Mode::Stream) => said_anthropic_stream(&r, "chain").0.text,
        };
        assert_eq!(text, BACKUP_REPLY);
    }
}

/// The image reached the provider as its own image part.
fn assert_image_upstream(egress: Egress, ingress: Ingress, body: &Value) {
    let data_url = format!("data:image/png;base64,{PNG_B64}");
    match egress {
        Egress::OpenAi | Egress::Groq | Egress::Azure => {
            let user = &body["messages"][1];
            assert_eq!(user["role"], "user", "{body}");
            let parts = user["content"].as_array().unwrap_or_else(|| panic!("content parts: {body}"));
            assert_eq!(parts.len(), 2, "{body}");
            assert_eq!(parts[0]["type"], "text");
            assert_eq!(parts[0]["text"], IMAGE_PROMPT);
            assert_eq!(parts[1]["type"], "image_url", "{body}");
            assert_eq!(parts[1]["image_url"]["url"], data_url.as_str(), "{body}");
            if ingress == Ingress::OpenAi {
                assert_eq!(parts[1], json!({"type": "image_url", "image_url": {"url": data_url}}), "passed through untouched");
            }
        }
        Egress::Anthropic => {
            let user = &body["messages"][0];
            assert_eq!(user["role"], "user", "{body}");
            assert_eq!(body["system"].as_str().map(str::to_owned).unwrap_or_else(|| body["system"][0]["text"].as_str().unwrap_or_default().to_owned()), SYSTEM, "{body}");
            assert_eq!(
                user["content"],
                json!([{"type": "text", "text": IMAGE_PROMPT}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}]),
                "{body}"
            );
        }
        Egress::Gemini => {
            let contents = body["contents"].as_array().expect("contents");
            assert_eq!(contents.len(), 1, "{body}");
            assert_eq!(contents[0]["role"], "user");
            assert_eq!(contents[0]["parts"], json!([{"text": IMAGE_PROMPT}, {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]), "{body}");
        }
        Egress::Ollama => {
            let user = &body["messages"][1];
            assert_eq!(user["role"], "user", "{body}");
            assert_eq!(user["content"], IMAGE_PROMPT, "{body}");
            assert_eq!(user["images"], json!([PNG_B64]), "{body}");
        }
        Egress::Bedrock => {
            let user = &body["messages"][0];
            assert_eq!(user["role"], "user", "{body}");
            assert_eq!(user["content"], json!([{"text": IMAGE_PROMPT}, {"image": {"format": "png", "source": {"bytes": PNG_B64}}}]), "{body}");
        }
    }
}

/// Runs every cell of one egress, then fails listing each failing cell by name.
async fn run_egress(egress: Egress) {
    let env = env(egress).await;
    let (mut ran, mut not_run, mut failed) = (0, 0, Vec::new());
    for ingress in INGRESSES {
        for mode in MODES {
            for case in CASES {
                let name = format!("{}/{}/{}/{}", ingress.name(), egress.name(), mode.name(), case.name());
                if not_applicable(egress, mode, case).is_some() {
                    not_run += 1;
                    continue;
                }
                let env = env.clone();
                match tokio::spawn(async move { run_cell(&env, ingress, mode, case).await }).await {
                    Ok(()) => ran += 1,
                    Err(e) => {
                        let message = match e.try_into_panic() {
                            Ok(p) => p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned())).unwrap_or_default(),
                            Err(e) => e.to_string(),
                        };
                        failed.push(format!("{name}: {message}"));
                    }
                }
            }
        }
    }
    eprintln!("matrix {}: {ran} cells passed, {} failed, {not_run} not applicable", egress.name(), failed.len());
    assert!(failed.is_empty(), "{} of {} cells failed:\n{}", failed.len(), ran + failed.len(), failed.join("\n"));
}

macro_rules! egress_tests {
    ($($name:ident => $egress:expr),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                run_egress($egress).await;
            }
        )*
    };
}

egress_tests! {
    egress_openai => Egress::OpenAi,
    egress_groq => Egress::Groq,
    egress_azure => Egress::Azure,
    egress_anthropic => Egress::Anthropic,
    egress_gemini => Egress::Gemini,
    egress_ollama => Egress::Ollama,
    egress_bedrock => Egress::Bedrock,
}

/// The matrix's size, and every not-applicable cell listed in the README with its reason.
#[test]
fn readme_lists_every_not_applicable_cell() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README.md");
    let mut declared = 0;
    let mut missing = Vec::new();
    for egress in EGRESSES {
        for mode in MODES {
            for case in CASES {
                if let Some(reason) = not_applicable(egress, mode, case) {
                    declared += INGRESSES.len();
                    if !readme.contains(reason) {
                        missing.push(format!("{}/{}/{}: {reason}", egress.name(), mode.name(), case.name()));
                    }
                }
            }
        }
    }
    let total = INGRESSES.len() * EGRESSES.len() * MODES.len() * CASES.len();
    assert_eq!((total, declared), (392, 46), "the matrix changed size: update the README's counts");
    assert!(readme.contains("392 cells") && readme.contains("346 run") && readme.contains("46 not applicable"), "the README states the matrix's size");
    missing.dedup();
    assert!(missing.is_empty(), "not-applicable reasons missing from the README:\n{}", missing.join("\n"));
}
