//! A fake AWS Bedrock runtime: `POST /model/{modelId}/converse` (JSON) and
//! `POST /model/{modelId}/converse-stream` (the AWS event-stream binary framing, written by this
//! module's own encoder with real prelude and message CRCs), and Bedrock's error responses
//! (`{"message"}` with the error name in `x-amzn-errortype`).
//!
//! Every request must carry a SigV4 `Authorization` header of the right shape
//! (`AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/bedrock/aws4_request, SignedHeaders=...,
//! Signature=<64 hex>`) for the expected key id and region, an `x-amz-date` of the same day, and
//! an `x-amz-security-token` exactly when a session token is expected; otherwise it is answered
//! 403 as AWS does. The signature itself is not recomputed. Shapes follow the Amazon Bedrock API
//! reference; see `fixtures/bedrock/README.md`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use crate::Recorded;
use crate::server::{Exchange, FakeResponse, ScriptedServer, StreamEnd, full, streamed};

const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// What the fake does with one POST.
#[derive(Clone, Debug)]
pub enum BedrockStep {
    /// Answer with this text (streamed one word per `contentBlockDelta`).
    Text(String),
    /// Answer this text and stop with this `stopReason` (`max_tokens`, `guardrail_intervened`, ...).
    Stop { text: String, reason: String },
    /// A text block (if any) then a `toolUse` block; streamed, the input JSON is split into
    /// several `delta.toolUse.input` fragments.
    ToolUse { text: Option<String>, name: String, input: Value },
    /// Answer this text with prompt-cache counts in the usage.
    Cached { text: String, read: u64, write: u64 },
    /// An HTTP error: status, error name (`ThrottlingException`, ...) and message.
    Status { status: u16, error_type: String, message: String },
    /// Stream `after` words, then an exception frame (`throttlingException`, ...). Without
    /// streaming, the HTTP error of the same name.
    Exception { after: usize, exception_type: String, message: String },
    /// Stream `after` words, then break the connection.
    DropAfter(usize),
    /// Wait, then do the inner step.
    Delay(Duration, Box<BedrockStep>),
}

impl BedrockStep {
    pub fn text(t: &str) -> BedrockStep {
        BedrockStep::Text(t.to_owned())
    }

    /// HTTP 429 `ThrottlingException`, as Bedrock sends it.
    pub fn throttled() -> BedrockStep {
        BedrockStep::Status { status: 429, error_type: "ThrottlingException".into(), message: "Too many requests, please wait before trying again.".into() }
    }
}

/// The credentials the fake expects to see used.
#[derive(Clone, Debug)]
pub struct Expect {
    pub access_key_id: String,
    pub region: String,
    pub session_token: Option<String>,
}

impl Default for Expect {
    fn default() -> Self {
        Expect { access_key_id: "AKIDEXAMPLE".into(), region: "us-east-1".into(), session_token: None }
    }
}

/// A running fake Bedrock runtime.
pub struct FakeBedrock {
    server: ScriptedServer<BedrockStep>,
}

impl FakeBedrock {
    /// Starts with `steps` queued (later requests answer "Hello from the fake Bedrock."),
    /// expecting key id `AKIDEXAMPLE` in `us-east-1` and no session token.
    pub async fn start(steps: Vec<BedrockStep>) -> FakeBedrock {
        Self::start_expecting(steps, Expect::default()).await
    }

    pub async fn start_expecting(steps: Vec<BedrockStep>, expect: Expect) -> FakeBedrock {
        let server = ScriptedServer::start(steps, BedrockStep::text("Hello from the fake Bedrock."), move |step, ex| {
            let expect = expect.clone();
            async move { handle(step, ex, &expect).await }
        })
        .await;
        FakeBedrock { server }
    }

    /// `http://127.0.0.1:PORT` (the provider's `base_url`).
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

    pub fn push(&self, step: BedrockStep) {
        self.server.push(step);
    }
}

/// Encodes one event-stream message with string headers.
pub fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7); // string
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = (12 + h.len() + payload.len() + 4) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    out
}

/// One ConverseStream event, with the random-looking padding field Bedrock adds.
pub fn event(kind: &str, mut payload: Value) -> Vec<u8> {
    let pad = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP";
    payload["p"] = Value::from(&pad[..(kind.len() * 3) % pad.len()]);
    encode_frame(&[(":event-type", kind), (":content-type", "application/json"), (":message-type", "event")], payload.to_string().as_bytes())
}

/// An exception frame (`:message-type: exception`).
pub fn exception(kind: &str, message: &str) -> Vec<u8> {
    encode_frame(
        &[(":exception-type", kind), (":content-type", "application/json"), (":message-type", "exception")],
        json!({"message": message}).to_string().as_bytes(),
    )
}

fn error(status: u16, error_type: &str, message: &str) -> FakeResponse {
    let mut resp = full(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "application/json", json!({"message": message}).to_string());
    let kind = format!("{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/");
    resp.headers_mut().insert("x-amzn-errortype", HeaderValue::from_str(&kind).unwrap_or(HeaderValue::from_static("UnknownError")));
    resp.headers_mut().insert("x-amzn-requestid", HeaderValue::from_static("5e3c8b35-0ab5-4a4e-9b8e-2f3c4c1f7a10"));
    resp
}

/// Checks the SigV4 headers; the error AWS would give (its name and message) if they are wrong.
fn check_signature(headers: &HeaderMap, expect: &Expect) -> Result<(), (&'static str, &'static str)> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let deny = |kind: &'static str, m: &'static str| Err((kind, m));
    let Some(date) = get("x-amz-date") else { return deny("IncompleteSignatureException", "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.") };
    if date.len() != 16 || date.as_bytes()[8] != b'T' || !date.ends_with('Z') {
        return deny("IncompleteSignatureException", "X-Amz-Date must be in the ISO8601 Long Format");
    }
    let Some(auth) = get("authorization") else { return deny("MissingAuthenticationTokenException", "Missing Authentication Token") };
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else { return deny("IncompleteSignatureException", "Unsupported authorization type") };
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(", ") {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return deny("IncompleteSignatureException", "Authorization header is malformed"),
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return deny("IncompleteSignatureException", "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'");
    };
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" || scope[3] != "bedrock" {
        return deny("IncompleteSignatureException", "Credential scope must be KEY/DATE/REGION/bedrock/aws4_request");
    }
    if scope[0] != expect.access_key_id {
        return deny("UnrecognizedClientException", "The security token included in the request is invalid.");
    }
    if scope[1] != &date[..8] || scope[2] != expect.region {
        return deny("InvalidSignatureException", "Credential should be scoped to a valid region and to the request date.");
    }
    let signed: Vec<&str> = signed.split(';').collect();
    if !signed.contains(&"host") || !signed.contains(&"x-amz-date") || !signed.windows(2).all(|w| w[0] < w[1]) {
        return deny("InvalidSignatureException", "SignedHeaders must list host and x-amz-date in order.");
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return deny("InvalidSignatureException", "The request signature we calculated does not match the signature you provided.");
    }
    match (&expect.session_token, get("x-amz-security-token")) {
        (None, None) => Ok(()),
        (Some(want), Some(got)) if want == got && signed.contains(&"x-amz-security-token") => Ok(()),
        _ => deny("UnrecognizedClientException", "The security token included in the request is invalid."),
    }
}

async fn handle(step: Option<BedrockStep>, ex: Exchange, expect: &Expect) -> Option<FakeResponse> {
    let path = ex.uri.path().to_owned();
    let op = path.strip_prefix("/model/").and_then(|r| r.rsplit_once('/')).filter(|(model, _)| !model.is_empty() && !model.contains('/'));
    let (Some((model, op)), Some(step), &Method::POST) = (op, step, &ex.method) else {
        return Some(error(404, "UnknownOperationException", "Unknown operation"));
    };
    let stream = match op {
        "converse" => false,
        "converse-stream" => true,
        _ => return Some(error(404, "UnknownOperationException", "Unknown operation")),
    };
    if let Err((kind, message)) = check_signature(&ex.headers, expect) {
        return Some(error(403, kind, message));
    }
    if !ex.json["messages"].is_array() {
        return Some(error(400, "ValidationException", "Malformed input request: #: required key [messages] not found, please reformat your input and try again."));
    }
    let _ = model;
    Some(answer(step, &ex.json, stream).await)
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

fn input_tokens(req: &Value) -> u64 {
    let mut n = 0;
    for m in req["messages"].as_array().into_iter().flatten() {
        for b in m["content"].as_array().into_iter().flatten() {
            n += b["text"].as_str().map_or(1, words);
        }
    }
    for s in req["system"].as_array().into_iter().flatten() {
        n += s["text"].as_str().map_or(0, words);
    }
    n.max(1)
}

fn usage(input: u64, output: u64, read: u64, write: u64) -> Value {
    let mut u = json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output + read + write});
    if read > 0 || write > 0 {
        u["cacheReadInputTokens"] = read.into();
        u["cacheWriteInputTokens"] = write.into();
    }
    u
}

fn exception_status(kind: &str) -> (u16, String) {
    let mut name = kind.to_owned();
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let status = match kind.to_ascii_lowercase().as_str() {
        "throttlingexception" => 429,
        "serviceunavailableexception" => 503,
        "validationexception" => 400,
        "modelstreamerrorexception" => 424,
        _ => 500,
    };
    (status, name)
}

fn answer(step: BedrockStep, req: &Value, stream: bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = FakeResponse> + Send + '_>> {
    Box::pin(async move {
        let input = input_tokens(req);
        match step {
            BedrockStep::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                answer(*inner, req, stream).await
            }
            BedrockStep::Status { status, error_type, message } => error(status, &error_type, &message),
            BedrockStep::Exception { exception_type, message, .. } if !stream => {
                let (status, name) = exception_status(&exception_type);
                error(status, &name, &message)
            }
            BedrockStep::Text(text) => reply(stream, input, Some(&text), None, "end_turn", (0, 0), None),
            BedrockStep::Stop { text, reason } => reply(stream, input, Some(&text), None, &reason, (0, 0), None),
            BedrockStep::Cached { text, read, write } => reply(stream, input, Some(&text), None, "end_turn", (read, write), None),
            BedrockStep::ToolUse { text, name, input: args } => reply(stream, input, text.as_deref(), Some((&name, &args)), "tool_use", (0, 0), None),
            BedrockStep::Exception { after, exception_type, message } => {
                reply(stream, input, Some("one two three four five six seven eight"), None, "end_turn", (0, 0), Some((after, Some((exception_type, message)))))
            }
            BedrockStep::DropAfter(after) => {
                reply(stream, input, Some("one two three four five six seven eight"), None, "end_turn", (0, 0), Some((after, None)))
            }
        }
    })
}

const TOOL_USE_ID: &str = "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q";

/// A whole answer (JSON) or its event stream. `cut`: stop after that many words, then send an
/// exception frame (`Some`) or break the connection (`None`).
#[allow(clippy::too_many_arguments)]
fn reply(
    stream: bool,
    input: u64,
    text: Option<&str>,
    tool: Option<(&str, &Value)>,
    stop_reason: &str,
    (read, write): (u64, u64),
    cut: Option<(usize, Option<(String, String)>)>,
) -> FakeResponse {
    let output = text.map_or(0, words) + if tool.is_some() { 20 } else { 0 };
    if !stream {
        let mut content = Vec::new();
        if let Some(t) = text {
            content.push(json!({"text": t}));
        }
        if let Some((name, args)) = tool {
            content.push(json!({"toolUse": {"toolUseId": TOOL_USE_ID, "name": name, "input": args}}));
        }
        let body = json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": usage(input, output, read, write),
            "metrics": {"latencyMs": 312}
        });
        return full(StatusCode::OK, "application/json", body.to_string());
    }
    let mut frames: Vec<Vec<u8>> = vec![event("messageStart", json!({"role": "assistant"}))];
    let mut block = 0;
    if let Some(t) = text {
        let limit = cut.as_ref().map_or(usize::MAX, |(after, _)| *after);
        for w in t.split_inclusive(' ').take(limit) {
            frames.push(event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": w}})));
        }
        if let Some((_, end)) = cut {
            let pieces = split_frames(frames);
            return match end {
                Some((kind, message)) => {
                    let mut pieces = pieces;
                    pieces.push((Duration::ZERO, Bytes::from(exception(&kind, &message))));
                    streamed(StatusCode::OK, EVENT_STREAM, pieces, StreamEnd::Clean)
                }
                None => streamed(StatusCode::OK, EVENT_STREAM, pieces, StreamEnd::Abort),
            };
        }
        frames.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
        block = 1;
    }
    if let Some((name, args)) = tool {
        frames.push(event("contentBlockStart", json!({"contentBlockIndex": block, "start": {"toolUse": {"toolUseId": TOOL_USE_ID, "name": name}}})));
        let json_text = args.to_string();
        // Split the input JSON into about four fragments at char boundaries.
        let chars: Vec<char> = json_text.chars().collect();
        let step = chars.len().div_ceil(4).max(1);
        for piece in chars.chunks(step) {
            let fragment: String = piece.iter().collect();
            frames.push(event("contentBlockDelta", json!({"contentBlockIndex": block, "delta": {"toolUse": {"input": fragment}}})));
        }
        frames.push(event("contentBlockStop", json!({"contentBlockIndex": block})));
    }
    frames.push(event("messageStop", json!({"stopReason": stop_reason})));
    frames.push(event("metadata", json!({"usage": usage(input, output, read, write), "metrics": {"latencyMs": 287}})));
    streamed(StatusCode::OK, EVENT_STREAM, split_frames(frames), StreamEnd::Clean)
}

/// Sends each frame in two writes split mid-frame, so readers see frames torn across reads.
fn split_frames(frames: Vec<Vec<u8>>) -> Vec<(Duration, Bytes)> {
    let mut out = Vec::with_capacity(frames.len() * 2);
    for f in frames {
        let cut = (f.len() / 3).max(1);
        out.push((Duration::ZERO, Bytes::copy_from_slice(&f[..cut])));
        out.push((Duration::from_millis(1), Bytes::copy_from_slice(&f[cut..])));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_the_aws_empty_message_vector() {
        // The "empty message" vector of the AWS event-stream test suite.
        assert_eq!(encode_frame(&[], b""), [0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff]);
    }

    #[test]
    fn signature_shapes_are_checked() {
        let expect = Expect { session_token: Some("TOKEN".into()), ..Expect::default() };
        let mut h = HeaderMap::new();
        h.insert("x-amz-date", HeaderValue::from_static("20250102T030405Z"));
        h.insert("x-amz-security-token", HeaderValue::from_static("TOKEN"));
        let sig = "a".repeat(64);
        let auth = |cred: &str, signed: &str| {
            HeaderValue::from_str(&format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders={signed}, Signature={sig}")).unwrap()
        };
        h.insert("authorization", auth("AKIDEXAMPLE/20250102/us-east-1/bedrock/aws4_request", "content-type;host;x-amz-date;x-amz-security-token"));
        assert!(check_signature(&h, &expect).is_ok());
        for (cred, signed) in [
            ("AKIDOTHER/20250102/us-east-1/bedrock/aws4_request", "host;x-amz-date;x-amz-security-token"),
            ("AKIDEXAMPLE/20250101/us-east-1/bedrock/aws4_request", "host;x-amz-date;x-amz-security-token"),
            ("AKIDEXAMPLE/20250102/eu-west-1/bedrock/aws4_request", "host;x-amz-date;x-amz-security-token"),
            ("AKIDEXAMPLE/20250102/us-east-1/s3/aws4_request", "host;x-amz-date;x-amz-security-token"),
            ("AKIDEXAMPLE/20250102/us-east-1/bedrock/aws4_request", "host;x-amz-date"),
        ] {
            h.insert("authorization", auth(cred, signed));
            assert!(check_signature(&h, &expect).is_err(), "{cred} {signed}");
        }
        h.remove("x-amz-security-token");
        h.insert("authorization", auth("AKIDEXAMPLE/20250102/us-east-1/bedrock/aws4_request", "host;x-amz-date"));
        assert!(check_signature(&h, &Expect::default()).is_ok());
        assert!(check_signature(&h, &expect).is_err(), "the expected session token is missing");
    }
}
