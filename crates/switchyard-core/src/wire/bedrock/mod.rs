//! AWS Bedrock's Converse API, translated to and from OpenAI's chat shapes.
//!
//! Requests: system/developer messages → `system`; user and assistant turns → `messages` with
//! content blocks (`text`, `image` from base64 `data:` URLs, `document` from inline files,
//! `toolUse` from `tool_calls`); `tool` messages → user turns with `toolResult` blocks;
//! consecutive same-role turns merged (Bedrock requires user/assistant alternation); `tools` →
//! `toolConfig.tools[].toolSpec`, `tool_choice` → `toolChoice`; sampling → `inferenceConfig`.
//! Answers: `output.message.content` → content, `tool_calls` and `reasoning_content`;
//! `stopReason` → `finish_reason`; `usage` → OpenAI usage. Streams: see [`stream`].

pub mod eventstream;
pub mod stream;
#[cfg(test)]
mod tests;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::openai::types::{
    ChatCompletion, ChatCompletionRequest, Choice, Content, ContentPart, FunctionCall, Message, PromptTokensDetails, ToolCall,
    ToolChoice, UsageDetail,
};

/// Why a request cannot be sent to Bedrock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TranslateError {
    /// Bedrock cannot take it (an image link, audio, ...): another target may.
    Unsupported(String),
    /// The request itself is malformed: the caller's fault.
    Invalid(String),
}

fn unsupported<T>(m: impl Into<String>) -> Result<T, TranslateError> {
    Err(TranslateError::Unsupported(m.into()))
}

/// Translates an OpenAI chat request into a Converse / ConverseStream body (the model goes in
/// the URL, not the body).
pub fn to_converse(req: &ChatCompletionRequest) -> Result<Value, TranslateError> {
    if req.n.is_some_and(|n| n > 1) {
        return unsupported("Bedrock returns one choice per request (n > 1)");
    }
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut has_tool_blocks = false;
    for m in &req.messages {
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                let text = m.content.as_ref().map(|c| c.text("\n")).unwrap_or_default();
                if !text.is_empty() {
                    system.push(json!({"text": text}));
                }
                continue;
            }
            "assistant" => ("assistant", assistant_blocks(m)?),
            "tool" | "function" => {
                has_tool_blocks = true;
                ("user", vec![tool_result(m)?])
            }
            "user" => ("user", user_blocks(m.content.as_ref())?),
            other => return Err(TranslateError::Invalid(format!("unknown message role \"{other}\""))),
        };
        has_tool_blocks |= blocks.iter().any(|b| b.get("toolUse").is_some());
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, prev)) if *last == role => prev.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    let mut body = json!({"messages": messages});
    if !system.is_empty() {
        body["system"] = Value::Array(system);
    }
    if let Some(tc) = tool_config(req, has_tool_blocks)? {
        body["toolConfig"] = tc;
    }
    let mut inference = Map::new();
    if let Some(n) = req.max_output_tokens() {
        inference.insert("maxTokens".into(), n.into());
    }
    if let Some(t) = req.temperature {
        inference.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        inference.insert("topP".into(), p.into());
    }
    if let Some(stop) = &req.stop {
        let stop = stop.to_vec();
        if !stop.is_empty() {
            inference.insert("stopSequences".into(), stop.into());
        }
    }
    if !inference.is_empty() {
        body["inferenceConfig"] = Value::Object(inference);
    }
    Ok(body)
}

/// `toolConfig`, or none. `tool_choice: "none"` has no Bedrock equivalent: the tools are left
/// out, unless the conversation already holds tool blocks (Bedrock then requires a
/// `toolConfig`), in which case they are sent without a `toolChoice`.
fn tool_config(req: &ChatCompletionRequest, has_tool_blocks: bool) -> Result<Option<Value>, TranslateError> {
    let Some(tools) = req.tools.as_ref().filter(|t| !t.is_empty()) else { return Ok(None) };
    let none = matches!(&req.tool_choice, Some(ToolChoice::Mode(m)) if m == "none");
    if none && !has_tool_blocks {
        return Ok(None);
    }
    let mut specs = Vec::with_capacity(tools.len());
    for t in tools {
        if t.kind != "function" {
            return unsupported(format!("Bedrock takes only function tools, not \"{}\"", t.kind));
        }
        let mut spec = json!({
            "name": t.function.name,
            "inputSchema": {"json": t.function.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}}))},
        });
        if let Some(d) = t.function.description.as_deref().filter(|d| !d.is_empty()) {
            spec["description"] = d.into();
        }
        specs.push(json!({"toolSpec": spec}));
    }
    let mut config = json!({"tools": specs});
    let choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Mode(m)) => match m.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "required" => Some(json!({"any": {}})),
            "none" => None,
            other => return Err(TranslateError::Invalid(format!("unknown tool_choice \"{other}\""))),
        },
        Some(ToolChoice::Named(n)) => Some(json!({"tool": {"name": n.function.name}})),
    };
    if let Some(c) = choice {
        config["toolChoice"] = c;
    }
    Ok(Some(config))
}

fn user_blocks(content: Option<&Content>) -> Result<Vec<Value>, TranslateError> {
    let Some(content) = content else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for part in content.parts() {
        match part {
            ContentPart::Text { text } => {
                // Bedrock rejects blank text blocks.
                if !text.trim().is_empty() {
                    out.push(json!({"text": text}));
                }
            }
            ContentPart::ImageUrl { image_url } => out.push(image_block(&image_url.url, image_url.data_url())?),
            ContentPart::File { file } => out.push(document_block(&file)?),
            ContentPart::InputAudio { .. } => return unsupported("Bedrock's Converse API takes no audio input"),
            ContentPart::Other(v) => {
                return unsupported(format!("content part type {} cannot be sent to Bedrock", v.get("type").unwrap_or(&Value::Null)));
            }
        }
    }
    Ok(out)
}

fn image_block(url: &str, data: Option<(&str, &str)>) -> Result<Value, TranslateError> {
    let Some((mime, b64)) = data else {
        let scheme = url.split(':').next().unwrap_or("");
        return unsupported(format!("Bedrock takes images only as base64 data: URLs, not {scheme}: links"));
    };
    let format = match mime.to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => return unsupported(format!("Bedrock takes png, jpeg, gif and webp images, not {other}")),
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": b64}}}))
}

/// An inline OpenAI `file` part (`file_data` as a `data:` URL) as a `document` block.
fn document_block(file: &Value) -> Result<Value, TranslateError> {
    let Some(data) = file.get("file_data").and_then(Value::as_str) else {
        return unsupported("Bedrock cannot fetch OpenAI file_ids: send the file inline as file_data");
    };
    let (mime, b64) = data
        .strip_prefix("data:")
        .and_then(|r| r.split_once(','))
        .and_then(|(meta, d)| Some((meta.strip_suffix(";base64")?, d)))
        .ok_or_else(|| TranslateError::Unsupported("file_data must be a base64 data: URL".into()))?;
    let format = match mime {
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "text/html" => "html",
        "text/plain" => "txt",
        "text/markdown" => "md",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        other => return unsupported(format!("Bedrock takes no {other} documents")),
    };
    // Document names may hold letters, digits, single spaces, hyphens, parentheses and brackets.
    let raw = file.get("filename").and_then(Value::as_str).unwrap_or("document");
    let stem = raw.rsplit_once('.').map_or(raw, |(s, _)| s);
    let mut name = String::new();
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || "-()[]".contains(c) { c } else { ' ' };
        if !(c == ' ' && (name.is_empty() || name.ends_with(' '))) {
            name.push(c);
        }
    }
    let name = name.trim_end();
    let name = if name.is_empty() { "document" } else { name };
    Ok(json!({"document": {"format": format, "name": name, "source": {"bytes": b64}}}))
}

fn assistant_blocks(m: &Message) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::new();
    if let Some(c) = &m.content {
        let text = c.text("");
        if !text.trim().is_empty() {
            out.push(json!({"text": text}));
        }
    }
    for call in m.tool_calls.iter().flatten() {
        let id = call.id.as_deref().ok_or_else(|| TranslateError::Invalid("an assistant tool call has no id".into()))?;
        let name = call.function.name.as_deref().ok_or_else(|| TranslateError::Invalid("an assistant tool call has no name".into()))?;
        let args = call.function.arguments.as_deref().filter(|a| !a.trim().is_empty()).unwrap_or("{}");
        let input: Value = serde_json::from_str(args)
            .map_err(|e| TranslateError::Invalid(format!("the arguments of tool call {id} are not JSON: {e}")))?;
        out.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
    }
    Ok(out)
}

/// A `tool` message as a `toolResult` block: text parts as `{text}`, a JSON object answer as
/// `{json}`, images as `{image}`.
fn tool_result(m: &Message) -> Result<Value, TranslateError> {
    let id = m
        .tool_call_id
        .as_deref()
        .or(m.name.as_deref())
        .ok_or_else(|| TranslateError::Invalid("a tool message has no tool_call_id".into()))?;
    let mut content = Vec::new();
    match &m.content {
        Some(Content::Text(t)) => match serde_json::from_str::<Value>(t) {
            Ok(v @ Value::Object(_)) => content.push(json!({"json": v})),
            _ => content.push(json!({"text": t})),
        },
        Some(Content::Parts(parts)) => {
            for p in parts {
                match p {
                    ContentPart::Text { text } => content.push(json!({"text": text})),
                    ContentPart::ImageUrl { image_url } => content.push(image_block(&image_url.url, image_url.data_url())?),
                    _ => return unsupported("tool results sent to Bedrock may hold only text and images"),
                }
            }
        }
        None => {}
    }
    if content.is_empty() {
        content.push(json!({"text": ""}));
    }
    Ok(json!({"toolResult": {"toolUseId": id, "content": content}}))
}

/// Bedrock's `stopReason` as an OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Bedrock's `usage` (TokenUsage).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_write_input_tokens: u64,
}

/// As OpenAI usage: Bedrock counts cache reads and writes apart from `inputTokens`, OpenAI's
/// `prompt_tokens` includes them (`cached_tokens` / `cache_creation_tokens` say how many).
pub fn usage_to_openai(u: &TokenUsage) -> UsageDetail {
    let prompt = u.input_tokens + u.cache_read_input_tokens + u.cache_write_input_tokens;
    let cached = u.cache_read_input_tokens > 0 || u.cache_write_input_tokens > 0;
    UsageDetail {
        prompt_tokens: prompt,
        completion_tokens: u.output_tokens,
        total_tokens: (prompt + u.output_tokens).max(u.total_tokens),
        prompt_tokens_details: cached.then_some(PromptTokensDetails {
            cached_tokens: u.cache_read_input_tokens,
            cache_creation_tokens: u.cache_write_input_tokens,
        }),
        completion_tokens_details: None,
    }
}

/// A Converse response.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    pub output: Option<ConverseOutput>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
pub struct ConverseOutput {
    pub message: Option<OutputMessage>,
}

#[derive(Deserialize)]
pub struct OutputMessage {
    #[serde(default)]
    pub content: Vec<Value>,
}

/// Labels for one answer.
#[derive(Clone, Debug)]
pub struct AnswerMeta {
    pub id: String,
    pub created: u64,
    pub alias: String,
}

/// A Converse response body as an OpenAI `chat.completion`, with its usage.
pub fn completion(body: &[u8], meta: &AnswerMeta) -> Result<(ChatCompletion, UsageDetail), String> {
    let r: ConverseResponse = serde_json::from_slice(body).map_err(|e| format!("not a Converse response: {e}"))?;
    let blocks = r.output.and_then(|o| o.message).map(|m| m.content).unwrap_or_default();
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for b in &blocks {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(u) = b.get("toolUse") {
            let input = u.get("input").cloned().unwrap_or_else(|| json!({}));
            calls.push(ToolCall {
                index: None,
                id: u.get("toolUseId").and_then(Value::as_str).map(str::to_owned),
                kind: Some("function".into()),
                function: FunctionCall { name: u.get("name").and_then(Value::as_str).map(str::to_owned), arguments: Some(input.to_string()) },
                extra_content: None,
            });
        } else if let Some(t) = b.pointer("/reasoningContent/reasoningText/text").and_then(Value::as_str) {
            reasoning.push_str(t);
        }
    }
    let usage = usage_to_openai(&r.usage.unwrap_or_default());
    let finish = finish_reason(r.stop_reason.as_deref().unwrap_or("end_turn"));
    let mut message = Message {
        role: "assistant".into(),
        content: if text.is_empty() && !calls.is_empty() { None } else { Some(Content::Text(text)) },
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..Default::default()
    };
    if !reasoning.is_empty() {
        message.extra.insert("reasoning_content".into(), reasoning.into());
    }
    let completion = ChatCompletion {
        id: meta.id.clone(),
        object: "chat.completion".into(),
        created: meta.created,
        model: meta.alias.clone(),
        choices: vec![Choice { index: 0, message, finish_reason: Some(finish.into()), logprobs: None }],
        usage: Some(usage),
    };
    Ok((completion, usage))
}
