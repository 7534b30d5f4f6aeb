//! The Gemini API wire format (`generateContent`, `streamGenerateContent?alt=sse`) and its
//! translation to and from Switchyard's canonical OpenAI chat shapes. Pure: no I/O.
//!
//! Request: OpenAI messages become `contents` (roles `user` / `model`, consecutive turns of one
//! role merged, as Gemini expects alternating turns), system and developer messages the
//! `systemInstruction`, tool calls and tool results `functionCall` / `functionResponse` parts,
//! `tools` one `functionDeclarations` tool whose JSON schemas are cleaned of what Gemini rejects
//! ([`schema`]), and the sampling settings `generationConfig`.
//!
//! Response: candidates become choices and `functionCall` parts tool calls. A function call's
//! `thoughtSignature` rides along in the tool call's `extra_content.google.thought_signature`
//! (the shape Google's own OpenAI layer uses), so that the caller sends it back with the next turn
//! and Gemini 3 does not reject that turn (LESSONS #11). Streams are translated by [`stream`].

pub mod schema;
pub mod stream;

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::openai::types::{
    ChatCompletion, ChatCompletionRequest, Choice, CompletionTokensDetails, Content as OaContent, ContentPart, FunctionCall as OaFunctionCall,
    ImageUrl, Message, PromptTokensDetails, Stop, ToolCall, ToolChoice, UsageDetail,
};
use super::de::object_with_extra;
use super::openai::{NormalizeError, Usage};

/// The `thoughtSignature` Google documents for function calls Gemini did not generate (a history
/// that came from another provider, or one whose signature was lost): Gemini 3 then skips the
/// signature check instead of rejecting the whole turn with a 400.
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

// ---------------------------------------------------------------------------------------------
// Wire types. Parts and tools keep members Switchyard does not model (`executableCode`,
// `googleSearch`, ...) in `extra`; response fields it does not use are ignored.
// ---------------------------------------------------------------------------------------------

/// `POST models/{model}:generateContent` request body.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    pub contents: Vec<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<GenerationConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safety_settings: Vec<Value>,
}

/// One turn: a role (`user` or `model`; none in `systemInstruction`) and its parts.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// A content part. Gemini's `Part` is a union, but `thought` and `thoughtSignature` sit beside
/// whichever member is set, so a struct of options models it more faithfully than an enum.
/// Read in one pass ([`object_with_extra`]): every part of every stream event is one.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse>,
    /// A summary of the model's reasoning, not part of its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<String>,
    /// `executableCode`, `codeExecutionResult`, `videoMetadata`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(Part {
    required: ;
    optional: text, inline_data = "inlineData", file_data = "fileData", function_call = "functionCall",
        function_response = "functionResponse", thought, thought_signature = "thoughtSignature";
});

impl Part {
    pub fn text(text: impl Into<String>) -> Part {
        Part { text: Some(text.into()), ..Part::default() }
    }

    fn inline(mime_type: &str, data: &str) -> Part {
        Part { inline_data: Some(Blob { mime_type: mime_type.to_owned(), data: data.to_owned() }), ..Part::default() }
    }

    fn file(mime_type: &str, file_uri: &str) -> Part {
        Part { file_data: Some(FileData { mime_type: Some(mime_type.to_owned()), file_uri: file_uri.to_owned() }), ..Part::default() }
    }

    fn is_thought(&self) -> bool {
        self.thought == Some(true)
    }
}

/// Inline bytes, base64-encoded.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    pub mime_type: String,
    pub data: String,
}

/// A file referenced by URI.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    pub file_uri: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FunctionCall {
    /// Set by some Gemini deployments; Switchyard generates OpenAI ids when it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FunctionResponse {
    pub name: String,
    /// Always a JSON object (a protobuf `Struct`).
    pub response: Value,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub function_declarations: Vec<FunctionDeclaration>,
    /// `googleSearch`, `codeExecution`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FunctionDeclaration {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Gemini's OpenAPI-subset `Schema`; absent for a function without parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    pub function_calling_config: FunctionCallingConfig,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig {
    /// `AUTO`, `ANY` or `NONE`.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_function_names: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<ThinkingConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<i64>,
}

/// A `generateContent` response, or one chunk of a stream.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub index: u32,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    /// `SAFETY`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `OTHER`, ...: the prompt was refused and
    /// there are no candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_reason: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct UsageMetadata {
    pub prompt_token_count: u64,
    pub candidates_token_count: u64,
    pub total_token_count: u64,
    pub thoughts_token_count: u64,
    pub cached_content_token_count: u64,
    /// Tokens of tool results the model read (e.g. search), billed as input.
    pub tool_use_prompt_token_count: u64,
}

/// Google's error body: `{"error": {"code", "message", "status", "details"}}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// Usually the HTTP status as a number.
    #[serde(default)]
    pub code: Option<Value>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: Option<String>,
}

/// A response body or stream event that may be an error instead (Gemini sends errors in-band in
/// a stream that has already started).
///
/// The response's members are spelled out rather than `#[serde(flatten)]`ed: a flattened struct
/// makes serde buffer the whole body into a generic tree before reading it, which cost more
/// than the rest of a stream event's translation.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    error: Option<ErrorBody>,
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    response_id: Option<String>,
}

/// Parses a response body or stream event; an in-band `{"error": ...}` is an
/// [`NormalizeError::Upstream`].
pub fn parse_response(bytes: &[u8]) -> Result<GenerateContentResponse, NormalizeError> {
    let envelope: Envelope = crate::wire::json::from_slice(bytes).map_err(|e| NormalizeError::Invalid(format!("not a Gemini response: {e}")))?;
    let Envelope { error, candidates, prompt_feedback, usage_metadata, model_version, response_id } = envelope;
    match error {
        Some(e) => Err(NormalizeError::Upstream(error_summary(&e))),
        None => Ok(GenerateContentResponse { candidates, prompt_feedback, usage_metadata, model_version, response_id }),
    }
}

/// `STATUS (code): message`, for logs and error events.
fn error_summary(e: &ErrorBody) -> String {
    let status = e.status.as_deref().unwrap_or("error");
    match &e.code {
        Some(Value::Number(code)) => format!("{status} ({code}): {}", e.message),
        _ => format!("{status}: {}", e.message),
    }
}

// ---------------------------------------------------------------------------------------------
// Request: OpenAI → Gemini
// ---------------------------------------------------------------------------------------------

/// Why a request cannot be translated. The message says why and quotes nothing but the
/// caller's own request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TranslateError {
    /// The request is malformed (a tool result for an unknown call, an unknown role, ...): the
    /// caller's fault, whatever the target.
    Invalid(String),
    /// The request is valid but uses something Gemini cannot take (an OpenAI file id, a custom
    /// tool, ...): another target may serve it.
    Unsupported(String),
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TranslateError::Invalid(m) | TranslateError::Unsupported(m) => f.write_str(m),
        }
    }
}

fn invalid(message: String) -> TranslateError {
    TranslateError::Invalid(message)
}

fn unsupported(message: String) -> TranslateError {
    TranslateError::Unsupported(message)
}

/// Provider settings that shape every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSettings<'a> {
    /// `safetySettings` passed through as configured.
    pub safety_settings: &'a [Value],
}

/// Translates an OpenAI chat request into a Gemini `GenerateContentRequest`.
pub fn to_gemini_request(req: &ChatCompletionRequest, settings: RequestSettings<'_>) -> Result<GenerateContentRequest, TranslateError> {
    let mut turns = Turns::default();
    let mut system = Vec::new();
    // tool_call_id → function name, from the assistant messages seen so far: Gemini's
    // functionResponse names the function, OpenAI's tool message only the call id.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (at, m) in req.messages.iter().enumerate() {
        match m.role.as_str() {
            "system" | "developer" => system.extend(text_parts(m.content.as_ref())),
            "user" => turns.push("user", user_parts(m.content.as_ref(), at)?),
            "assistant" => turns.push("model", assistant_parts(m, &mut call_names, at)?),
            "tool" => turns.push("user", vec![tool_result_part(m, &call_names, at)?]),
            "function" => turns.push("user", vec![legacy_function_result_part(m, at)?]),
            other => return Err(invalid(format!("messages[{at}]: unsupported role \"{other}\""))),
        }
    }
    let mut contents = turns.0;
    add_missing_signatures(&mut contents);
    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content { role: None, parts: system }),
        tools: tools(req)?,
        tool_config: tool_config(req.tool_choice.as_ref())?,
        generation_config: generation_config(req),
        safety_settings: settings.safety_settings.to_vec(),
    })
}

/// Turns in order, merging consecutive turns of one role (e.g. several tool results, or tool
/// results followed by the user's next message) into one.
#[derive(Default)]
struct Turns(Vec<Content>);

impl Turns {
    fn push(&mut self, role: &str, parts: Vec<Part>) {
        if parts.is_empty() {
            return; // Gemini rejects a turn without parts
        }
        match self.0.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => self.0.push(Content { role: Some(role.to_owned()), parts }),
        }
    }
}

/// The text of a system-like message, one part per text part.
fn text_parts(content: Option<&OaContent>) -> Vec<Part> {
    let Some(content) = content else { return Vec::new() };
    content
        .parts()
        .into_iter()
        .filter_map(|p| match p {
            ContentPart::Text { text } if !text.is_empty() => Some(Part::text(text)),
            _ => None,
        })
        .collect()
}

fn user_parts(content: Option<&OaContent>, at: usize) -> Result<Vec<Part>, TranslateError> {
    let Some(content) = content else { return Ok(Vec::new()) };
    let mut parts = Vec::new();
    for part in content.parts() {
        match part {
            ContentPart::Text { text } if text.is_empty() => {}
            ContentPart::Text { text } => parts.push(Part::text(text)),
            ContentPart::ImageUrl { image_url } => parts.push(image_part(&image_url, at)?),
            ContentPart::InputAudio { input_audio } => parts.push(audio_part(&input_audio, at)?),
            ContentPart::File { file } => parts.push(file_part(&file, at)?),
            ContentPart::Other(v) => {
                let kind = v.get("type").and_then(Value::as_str).unwrap_or("(none)");
                return Err(unsupported(format!("messages[{at}]: content part type \"{kind}\" cannot be sent to Gemini")));
            }
        }
    }
    Ok(parts)
}

/// A `data:` URL becomes inline data; an http(s) or `gs://` URL a file reference.
fn image_part(image: &ImageUrl, at: usize) -> Result<Part, TranslateError> {
    if let Some((mime, data)) = image.data_url() {
        return Ok(Part::inline(mime, data));
    }
    let url = image.url.as_str();
    if ["https://", "http://", "gs://"].iter().any(|p| url.starts_with(p)) {
        return Ok(Part::file(mime_from_path(url, "image/jpeg"), url));
    }
    Err(unsupported(format!("messages[{at}]: image_url must be a base64 data: URL or an http(s) URL")))
}

/// `input_audio: {data, format}` (`wav`, `mp3`, ...) becomes inline `audio/<format>` data.
fn audio_part(audio: &Value, at: usize) -> Result<Part, TranslateError> {
    let data = audio.get("data").and_then(Value::as_str);
    let format = audio.get("format").and_then(Value::as_str);
    match (data, format) {
        (Some(data), Some(format)) => Ok(Part::inline(&format!("audio/{format}"), data)),
        _ => Err(invalid(format!("messages[{at}]: input_audio needs `data` and `format`"))),
    }
}

/// `file: {file_data, filename}` becomes inline data; a `file_id` (OpenAI's Files API) cannot
/// be resolved for Gemini.
fn file_part(file: &Value, at: usize) -> Result<Part, TranslateError> {
    let Some(data) = file.get("file_data").and_then(Value::as_str) else {
        return Err(unsupported(format!("messages[{at}]: files must be sent inline as `file_data`; a `file_id` cannot be sent to Gemini")));
    };
    let as_url = ImageUrl { url: data.to_owned(), detail: None };
    if let Some((mime, data)) = as_url.data_url() {
        return Ok(Part::inline(mime, data));
    }
    let filename = file.get("filename").and_then(Value::as_str).unwrap_or("");
    Ok(Part::inline(mime_from_path(filename, "application/pdf"), data))
}

/// A MIME type guessed from a URL's or file name's extension.
fn mime_from_path(path: &str, default: &'static str) -> &'static str {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => default,
    }
}

fn assistant_parts(m: &Message, call_names: &mut HashMap<String, String>, at: usize) -> Result<Vec<Part>, TranslateError> {
    let mut parts = Vec::new();
    if let Some(content) = &m.content {
        let text = content.text("");
        if !text.is_empty() {
            parts.push(Part::text(text));
        }
    }
    for call in m.tool_calls.iter().flatten() {
        parts.push(function_call_part(call, call_names, at)?);
    }
    if let Some(legacy) = m.extra.get("function_call").filter(|v| v.is_object()) {
        let call: OaFunctionCall = serde_json::from_value(legacy.clone())
            .map_err(|e| invalid(format!("messages[{at}].function_call: {e}")))?;
        let tool_call = ToolCall { function: call, ..ToolCall::default() };
        parts.push(function_call_part(&tool_call, call_names, at)?);
    }
    Ok(parts)
}

fn function_call_part(call: &ToolCall, call_names: &mut HashMap<String, String>, at: usize) -> Result<Part, TranslateError> {
    let name = call
        .function
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid(format!("messages[{at}]: a tool call has no function name")))?;
    if let Some(id) = &call.id {
        call_names.insert(id.clone(), name.clone());
    }
    let signature = call
        .extra_content
        .as_ref()
        .and_then(|e| e.pointer("/google/thought_signature"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Part {
        function_call: Some(FunctionCall { id: None, name, args: Some(arguments_object(call.function.arguments.as_deref())) }),
        thought_signature: signature,
        ..Part::default()
    })
}

/// Gemini's `args` is an object. OpenAI's `arguments` is JSON text that another provider may
/// have produced invalid or non-object; rather than reject the caller's history, such values
/// are wrapped.
fn arguments_object(arguments: Option<&str>) -> Value {
    let text = arguments.unwrap_or("").trim();
    if text.is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => json!({ "value": other }),
        Err(_) => json!({ "arguments": text }),
    }
}

fn tool_result_part(m: &Message, call_names: &HashMap<String, String>, at: usize) -> Result<Part, TranslateError> {
    let id = m
        .tool_call_id
        .as_deref()
        .ok_or_else(|| invalid(format!("messages[{at}]: a tool message needs `tool_call_id`")))?;
    let name = call_names.get(id).cloned().or_else(|| m.name.clone()).ok_or_else(|| {
        invalid(format!("messages[{at}]: tool_call_id \"{id}\" does not match a tool call of an earlier assistant message"))
    })?;
    Ok(function_response_part(name, m.content.as_ref()))
}

/// The legacy `role: "function"` result, named by the message's `name`.
fn legacy_function_result_part(m: &Message, at: usize) -> Result<Part, TranslateError> {
    let name = m.name.clone().ok_or_else(|| invalid(format!("messages[{at}]: a function message needs `name`")))?;
    Ok(function_response_part(name, m.content.as_ref()))
}

/// A tool result: its JSON object as is, any other JSON or plain text wrapped as `{"content": ...}`
/// (Gemini's `response` must be an object).
fn function_response_part(name: String, content: Option<&OaContent>) -> Part {
    let text = content.map(|c| c.text("")).unwrap_or_default();
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => json!({ "content": other }),
        Err(_) => json!({ "content": text }),
    };
    Part { function_response: Some(FunctionResponse { name, response }), ..Part::default() }
}

/// Gives the first function call of each model turn that carries no signature at all the
/// documented [`SKIP_SIGNATURE`], so that a history from another provider (a failover from an
/// OpenAI-compatible target, say) does not make Gemini 3 reject the request. Real signatures are
/// never touched.
fn add_missing_signatures(contents: &mut [Content]) {
    for content in contents.iter_mut().filter(|c| c.role.as_deref() == Some("model")) {
        let calls = || content.parts.iter().filter(|p| p.function_call.is_some());
        if calls().any(|p| p.thought_signature.is_some()) {
            continue;
        }
        if let Some(first) = content.parts.iter_mut().find(|p| p.function_call.is_some()) {
            first.thought_signature = Some(SKIP_SIGNATURE.to_owned());
        }
    }
}

fn tools(req: &ChatCompletionRequest) -> Result<Vec<Tool>, TranslateError> {
    let Some(tools) = req.tools.as_ref().filter(|t| !t.is_empty()) else { return Ok(Vec::new()) };
    let mut declarations = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind != "function" {
            return Err(unsupported(format!("tools[{i}]: tool type \"{}\" cannot be sent to Gemini", tool.kind)));
        }
        declarations.push(FunctionDeclaration {
            name: tool.function.name.clone(),
            description: tool.function.description.clone(),
            parameters: tool.function.parameters.as_ref().and_then(schema::function_parameters),
        });
    }
    Ok(vec![Tool { function_declarations: declarations, extra: Map::new() }])
}

/// `tool_choice` → `functionCallingConfig`: auto → AUTO, none → NONE, required → ANY, a named
/// function → ANY restricted to it.
fn tool_config(choice: Option<&ToolChoice>) -> Result<Option<ToolConfig>, TranslateError> {
    let (mode, allowed) = match choice {
        None => return Ok(None),
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => ("AUTO", None),
            "none" => ("NONE", None),
            "required" => ("ANY", None),
            other => return Err(invalid(format!("tool_choice \"{other}\" is not one of none, auto, required"))),
        },
        Some(ToolChoice::Named(named)) => ("ANY", Some(vec![named.function.name.clone()])),
    };
    Ok(Some(ToolConfig { function_calling_config: FunctionCallingConfig { mode: mode.to_owned(), allowed_function_names: allowed } }))
}

fn generation_config(req: &ChatCompletionRequest) -> Option<GenerationConfig> {
    let (response_mime_type, response_schema) = response_format(req.response_format.as_ref());
    let config = GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        // Not an OpenAI field, but callers of OpenAI-compatible servers commonly send it.
        top_k: req.extra.get("top_k").and_then(Value::as_u64),
        max_output_tokens: req.max_output_tokens(),
        stop_sequences: req.stop.as_ref().map(Stop::to_vec).filter(|s| !s.is_empty()),
        candidate_count: req.n,
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        response_mime_type,
        response_schema,
        thinking_config: req.reasoning_effort.as_deref().and_then(thinking_config),
    };
    (config != GenerationConfig::default()).then_some(config)
}

/// `json_object` → JSON output; `json_schema` → JSON output constrained by the cleaned schema.
fn response_format(format: Option<&Value>) -> (Option<String>, Option<Value>) {
    let Some(format) = format else { return (None, None) };
    match format.get("type").and_then(Value::as_str) {
        Some("json_object") => (Some("application/json".to_owned()), None),
        Some("json_schema") => {
            (Some("application/json".to_owned()), format.pointer("/json_schema/schema").and_then(schema::response_schema))
        }
        _ => (None, None),
    }
}

/// `reasoning_effort` → a thinking budget, as Google's OpenAI compatibility layer maps it.
fn thinking_config(effort: &str) -> Option<ThinkingConfig> {
    let budget = match effort {
        "none" => 0,
        "minimal" | "low" => 1024,
        "medium" => 8192,
        "high" => 24576,
        _ => return None,
    };
    Some(ThinkingConfig { thinking_budget: Some(budget) })
}

// ---------------------------------------------------------------------------------------------
// Response: Gemini → OpenAI
// ---------------------------------------------------------------------------------------------

/// Generates OpenAI tool-call ids, `call_<prefix><n>`: Gemini's function calls have none (or
/// ids only some deployments set).
#[derive(Clone, Debug)]
pub struct CallIds {
    prefix: String,
    next: u32,
}

impl CallIds {
    /// `prefix` makes ids unique across answers; tests pass `""` to get `call_0`, `call_1`, ...
    pub fn new(prefix: impl Into<String>) -> Self {
        CallIds { prefix: prefix.into(), next: 0 }
    }

    fn next(&mut self) -> String {
        let id = format!("call_{}{}", self.prefix, self.next);
        self.next += 1;
        id
    }
}

/// What labels a translated answer.
#[derive(Clone, Debug)]
pub struct AnswerMeta {
    /// The caller's alias, reported as `model`.
    pub alias: String,
    /// The id used when Gemini sends no `responseId`.
    pub id: String,
    pub created: u64,
    pub call_ids: CallIds,
}

impl AnswerMeta {
    /// `chatcmpl-<responseId>` when Gemini sent one (so logs on both sides correlate).
    fn id_for(&self, response_id: Option<&str>) -> String {
        match response_id {
            Some(r) if !r.is_empty() => format!("chatcmpl-{r}"),
            _ => self.id.clone(),
        }
    }
}

/// Translates a `generateContent` body into an OpenAI `chat.completion` body and its usage.
pub fn completion_body(body: &[u8], meta: &mut AnswerMeta) -> Result<(Bytes, Option<Usage>), NormalizeError> {
    let response = parse_response(body)?;
    let completion = to_completion(&response, meta)?;
    let usage = completion.usage.map(|u| u.summary());
    let mut value = serde_json::to_value(&completion).map_err(|e| NormalizeError::Invalid(e.to_string()))?;
    // OpenAI sends `"content": null` rather than omitting it.
    for choice in value["choices"].as_array_mut().into_iter().flatten() {
        if let Some(message) = choice.get_mut("message").and_then(Value::as_object_mut) {
            message.entry("content").or_insert(Value::Null);
        }
    }
    Ok((Bytes::from(value.to_string()), usage))
}

/// Translates a `generateContent` response into a `chat.completion`. A prompt blocked by
/// `promptFeedback` is an answer with `finish_reason: "content_filter"`, not an error, as OpenAI
/// reports its own filter.
pub fn to_completion(response: &GenerateContentResponse, meta: &mut AnswerMeta) -> Result<ChatCompletion, NormalizeError> {
    let mut choices: Vec<Choice> = response.candidates.iter().map(|c| choice(c, &mut meta.call_ids)).collect();
    if choices.is_empty() {
        if blocked(response).is_none() {
            return Err(NormalizeError::Invalid("the response has no candidates and no promptFeedback.blockReason".into()));
        }
        choices.push(Choice {
            index: 0,
            message: assistant(None, Vec::new()),
            finish_reason: Some("content_filter".into()),
            logprobs: None,
        });
    }
    Ok(ChatCompletion {
        id: meta.id_for(response.response_id.as_deref()),
        object: "chat.completion".into(),
        created: meta.created,
        model: meta.alias.clone(),
        choices,
        usage: response.usage_metadata.as_ref().map(usage),
    })
}

/// The prompt's block reason, when Gemini refused it outright.
fn blocked(response: &GenerateContentResponse) -> Option<&str> {
    response.prompt_feedback.as_ref()?.block_reason.as_deref()
}

fn choice(candidate: &Candidate, ids: &mut CallIds) -> Choice {
    let (text, calls) = answer_parts(candidate.content.as_ref(), ids);
    let finish = finish_reason(candidate.finish_reason.as_deref(), !calls.is_empty());
    let content = if text.is_empty() && (!calls.is_empty() || finish == "content_filter") { None } else { Some(text) };
    Choice { index: candidate.index, message: assistant(content, calls), finish_reason: Some(finish.to_owned()), logprobs: None }
}

fn assistant(content: Option<String>, calls: Vec<ToolCall>) -> Message {
    Message {
        role: "assistant".into(),
        content: content.map(OaContent::Text),
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..Message::default()
    }
}

/// The visible text (thought summaries skipped) and the tool calls of a candidate's content.
fn answer_parts(content: Option<&Content>, ids: &mut CallIds) -> (String, Vec<ToolCall>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in content.map(|c| c.parts.as_slice()).unwrap_or_default() {
        if part.is_thought() {
            continue;
        }
        if let Some(t) = &part.text {
            text.push_str(t);
        }
        if let Some(call) = &part.function_call {
            calls.push(tool_call(call, part.thought_signature.as_deref(), ids));
        }
    }
    (text, calls)
}

/// A Gemini function call as an OpenAI tool call, its signature kept in `extra_content`.
fn tool_call(call: &FunctionCall, signature: Option<&str>, ids: &mut CallIds) -> ToolCall {
    let arguments = call.args.as_ref().map_or_else(|| "{}".to_owned(), Value::to_string);
    ToolCall {
        index: None,
        id: Some(call.id.clone().filter(|id| !id.is_empty()).unwrap_or_else(|| ids.next())),
        kind: Some("function".into()),
        function: OaFunctionCall { name: Some(call.name.clone()), arguments: Some(arguments) },
        extra_content: signature.map(|s| json!({ "google": { "thought_signature": s } })),
    }
}

/// Gemini's `finishReason` → OpenAI's: STOP → stop (tool_calls when the model called
/// functions), MAX_TOKENS → length, the safety family → content_filter, anything else → stop.
pub fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(r) if is_filtered(r) => "content_filter",
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII and their image variants.
fn is_filtered(reason: &str) -> bool {
    matches!(reason, "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII")
        || reason.starts_with("IMAGE_") && reason != "IMAGE_OTHER"
}

/// Gemini's usage → OpenAI's. Thinking tokens are billed as output, so they count in
/// `completion_tokens` and are detailed as `reasoning_tokens`; cached prompt tokens are
/// `cached_tokens`.
pub fn usage(u: &UsageMetadata) -> UsageDetail {
    let prompt_tokens = u.prompt_token_count + u.tool_use_prompt_token_count;
    let completion_tokens = u.candidates_token_count + u.thoughts_token_count;
    let total_tokens = if u.total_token_count > 0 { u.total_token_count } else { prompt_tokens + completion_tokens };
    UsageDetail {
        prompt_tokens,
        completion_tokens,
        total_tokens,
        prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: u.cached_content_token_count, cache_creation_tokens: 0 }),
        completion_tokens_details: Some(CompletionTokensDetails { reasoning_tokens: u.thoughts_token_count }),
    }
}

#[cfg(test)]
mod tests;
