//! Requests in both directions: an OpenAI chat request as an Anthropic Messages request (for the
//! `anthropic` provider) and an Anthropic Messages request as an OpenAI chat request (for the
//! `/v1/messages` ingress routed to any provider).

use serde_json::{Map, Value, json};

use super::TranslateError;
use super::types::{
    ContentBlock, DocumentBlock, ImageBlock, InputMessage, MessageContent, MessagesRequest, Metadata, Source, System,
    TextBlock, Tool, ToolChoice, ToolResultBlock, ToolUseBlock,
};
use crate::wire::openai::types::{
    ChatCompletionRequest, Content, ContentPart, FunctionCall, FunctionDef, ImageUrl, Message, NamedFunction,
    NamedToolChoice, Stop, StreamOptions, Tool as OpenAiTool, ToolCall, ToolChoice as OpenAiToolChoice,
};

// ---------------------------------------------------------------------------------------------
// OpenAI → Anthropic

/// Translates an OpenAI chat request for an Anthropic upstream serving `model`. Anthropic needs
/// `max_tokens`; `default_max_tokens` applies when the caller set neither `max_tokens` nor
/// `max_completion_tokens`. Fields Anthropic has no equivalent for (`seed`, the penalties,
/// `logprobs`, `response_format`, `reasoning_effort`) are not sent.
pub fn to_anthropic(req: &ChatCompletionRequest, model: &str, default_max_tokens: u64) -> Result<MessagesRequest, TranslateError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::new("Anthropic models return one choice: `n` must be 1"));
    }
    let (system, messages) = to_anthropic_messages(&req.messages)?;
    let parallel_off = req.parallel_tool_calls == Some(false);
    Ok(MessagesRequest {
        model: model.to_owned(),
        messages,
        system,
        max_tokens: Some(req.max_output_tokens().unwrap_or(default_max_tokens)),
        metadata: req.user.clone().map(|u| Metadata { user_id: Some(u), extra: Map::new() }),
        stop_sequences: req.stop.as_ref().map(Stop::to_vec).filter(|s| !s.is_empty()),
        stream: req.stream.filter(|s| *s),
        // OpenAI's range is 0-2, Anthropic's 0-1: clamp rather than fail a valid OpenAI request.
        temperature: req.temperature.map(|t| t.clamp(0.0, 1.0)),
        top_p: req.top_p,
        top_k: None,
        tools: req.tools.as_ref().map(|t| t.iter().map(to_anthropic_tool).collect()).transpose()?,
        tool_choice: to_anthropic_tool_choice(req.tool_choice.as_ref(), parallel_off)?,
        extra: Map::new(),
    })
}

/// System and developer messages become `system`; the rest become alternating turns, with tool
/// results in user turns and consecutive same-role messages merged, as Anthropic requires.
fn to_anthropic_messages(msgs: &[Message]) -> Result<(Option<System>, Vec<InputMessage>), TranslateError> {
    let mut system: Vec<String> = Vec::new();
    let mut out: Vec<InputMessage> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        match m.role.as_str() {
            "system" | "developer" => system.extend(m.content.as_ref().map(|c| c.text("\n")).filter(|t| !t.is_empty())),
            "user" => push_turn(&mut out, "user", user_blocks(m, i)?),
            "assistant" => push_turn(&mut out, "assistant", assistant_blocks(m, i)?),
            "tool" | "function" => push_turn(&mut out, "user", vec![tool_result_block(m, i)?]),
            other => return Err(TranslateError::new(format!("messages[{i}]: role `{other}` has no Anthropic equivalent"))),
        }
    }
    for m in &mut out {
        collapse_plain_text(&mut m.content);
    }
    let system = match system.len() {
        0 => None,
        1 => system.pop().map(System::Text),
        _ => Some(System::Blocks(system.into_iter().map(ContentBlock::text).collect())),
    };
    Ok((system, out))
}

/// Appends blocks as a turn of `role`, merging into the previous turn when it has the same role.
fn push_turn(out: &mut Vec<InputMessage>, role: &str, blocks: Vec<ContentBlock>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = out.last_mut().filter(|m| m.role == role) {
        if let MessageContent::Blocks(existing) = &mut last.content {
            existing.extend(blocks);
        }
        return;
    }
    out.push(InputMessage { role: role.to_owned(), content: MessageContent::Blocks(blocks) });
}

/// A turn of one plain text block is sent as a string, as a caller would write it.
fn collapse_plain_text(content: &mut MessageContent) {
    if let MessageContent::Blocks(blocks) = content {
        if let [ContentBlock::Text(TextBlock { text, extra })] = blocks.as_mut_slice() {
            if extra.is_empty() {
                *content = MessageContent::Text(std::mem::take(text));
            }
        }
    }
}

fn user_blocks(m: &Message, i: usize) -> Result<Vec<ContentBlock>, TranslateError> {
    let Some(content) = &m.content else { return Ok(Vec::new()) };
    content.parts().iter().filter_map(|p| part_to_block(p, i).transpose()).collect()
}

/// One OpenAI content part as an Anthropic block (`None` for an empty text part, which
/// Anthropic rejects).
fn part_to_block(part: &ContentPart, i: usize) -> Result<Option<ContentBlock>, TranslateError> {
    Ok(Some(match part {
        ContentPart::Text { text } if text.is_empty() => return Ok(None),
        ContentPart::Text { text } => ContentBlock::text(text.clone()),
        ContentPart::ImageUrl { image_url } => ContentBlock::Image(ImageBlock { source: image_source(image_url, i)?, extra: Map::new() }),
        ContentPart::File { file } => {
            let mut extra = Map::new();
            if let Some(name) = file.get("filename").and_then(Value::as_str) {
                extra.insert("title".into(), Value::String(name.to_owned()));
            }
            ContentBlock::Document(DocumentBlock { source: file_source(file, i)?, extra })
        }
        ContentPart::InputAudio { .. } => {
            return Err(TranslateError::new(format!("messages[{i}]: audio input cannot be sent to an Anthropic model")));
        }
        ContentPart::Other(v) => {
            let kind = v.get("type").and_then(Value::as_str).unwrap_or("unknown");
            if kind == "refusal" {
                let text = v.get("refusal").and_then(Value::as_str).unwrap_or_default();
                return Ok((!text.is_empty()).then(|| ContentBlock::text(text)));
            }
            return Err(TranslateError::new(format!("messages[{i}]: content part `{kind}` cannot be sent to an Anthropic model")));
        }
    }))
}

/// `data:` URLs become base64 sources; `http(s)` URLs become URL sources.
fn image_source(image: &ImageUrl, i: usize) -> Result<Source, TranslateError> {
    if let Some((media_type, data)) = image.data_url() {
        return Ok(Source::Base64 { media_type: media_type.to_owned(), data: data.to_owned() });
    }
    if image.url.starts_with("https://") || image.url.starts_with("http://") {
        return Ok(Source::Url { url: image.url.clone() });
    }
    Err(TranslateError::new(format!("messages[{i}]: an image must be an http(s) URL or a base64 data: URL")))
}

/// An OpenAI `file` part with inline `file_data` (a base64 `data:` URL, e.g. a PDF).
fn file_source(file: &Value, i: usize) -> Result<Source, TranslateError> {
    let data_url = file.get("file_data").and_then(Value::as_str).unwrap_or_default();
    let parsed = ImageUrl { url: data_url.to_owned(), detail: None };
    match parsed.data_url() {
        Some((media_type, data)) => Ok(Source::Base64 { media_type: media_type.to_owned(), data: data.to_owned() }),
        None => Err(TranslateError::new(format!(
            "messages[{i}]: only files given inline as base64 `file_data` can be sent to an Anthropic model"
        ))),
    }
}

fn assistant_blocks(m: &Message, i: usize) -> Result<Vec<ContentBlock>, TranslateError> {
    let mut blocks = user_blocks(m, i)?;
    if let Some(refusal) = m.refusal.as_deref().filter(|r| !r.is_empty()) {
        blocks.push(ContentBlock::text(refusal));
    }
    for call in m.tool_calls.iter().flatten() {
        blocks.push(ContentBlock::ToolUse(tool_use_block(call, i)?));
    }
    Ok(blocks)
}

fn tool_use_block(call: &ToolCall, i: usize) -> Result<ToolUseBlock, TranslateError> {
    let id = call.id.clone().ok_or_else(|| TranslateError::new(format!("messages[{i}]: a tool call has no `id`")))?;
    let name = call.function.name.clone().ok_or_else(|| TranslateError::new(format!("messages[{i}]: a tool call has no function name")))?;
    let input = parse_arguments(call.function.arguments.as_deref().unwrap_or(""))
        .ok_or_else(|| TranslateError::new(format!("messages[{i}]: the arguments of tool call `{id}` are not a JSON object")))?;
    Ok(ToolUseBlock { id, name, input, extra: Map::new() })
}

/// Tool-call arguments (JSON text) as the object Anthropic wants; empty text is `{}`.
fn parse_arguments(arguments: &str) -> Option<Value> {
    if arguments.trim().is_empty() {
        return Some(json!({}));
    }
    serde_json::from_str::<Value>(arguments).ok().filter(Value::is_object)
}

fn tool_result_block(m: &Message, i: usize) -> Result<ContentBlock, TranslateError> {
    let tool_use_id = m
        .tool_call_id
        .clone()
        .or_else(|| m.name.clone())
        .ok_or_else(|| TranslateError::new(format!("messages[{i}]: a tool message has no `tool_call_id`")))?;
    let content = match &m.content {
        None => None,
        Some(Content::Text(t)) => Some(MessageContent::Text(t.clone())),
        Some(Content::Parts(parts)) => {
            let blocks = parts.iter().filter_map(|p| part_to_block(p, i).transpose()).collect::<Result<Vec<_>, _>>()?;
            Some(MessageContent::Blocks(blocks))
        }
    };
    Ok(ContentBlock::ToolResult(ToolResultBlock { tool_use_id, content, is_error: None, extra: Map::new() }))
}

fn to_anthropic_tool(tool: &OpenAiTool) -> Result<Tool, TranslateError> {
    if tool.kind != "function" {
        return Err(TranslateError::new(format!("tools: type `{}` cannot be sent to an Anthropic model", tool.kind)));
    }
    let f = &tool.function;
    Ok(Tool {
        kind: None,
        name: f.name.clone(),
        description: f.description.clone(),
        input_schema: Some(f.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}}))),
        extra: Map::new(),
    })
}

/// `auto` / `required` / `none` / a named function → `auto` / `any` / `none` / `tool`;
/// `parallel_tool_calls: false` → `disable_parallel_tool_use` (which `none` does not take).
fn to_anthropic_tool_choice(choice: Option<&OpenAiToolChoice>, parallel_off: bool) -> Result<Option<ToolChoice>, TranslateError> {
    let (kind, name) = match choice {
        None if !parallel_off => return Ok(None),
        None => ("auto", None),
        Some(OpenAiToolChoice::Mode(m)) => match m.as_str() {
            "auto" => ("auto", None),
            "required" => ("any", None),
            "none" => ("none", None),
            other => return Err(TranslateError::new(format!("tool_choice: `{other}` is not one of auto, required, none"))),
        },
        Some(OpenAiToolChoice::Named(n)) => ("tool", Some(n.function.name.clone())),
    };
    let disable = (parallel_off && kind != "none").then_some(true);
    Ok(Some(ToolChoice { kind: kind.to_owned(), name, disable_parallel_tool_use: disable }))
}

// ---------------------------------------------------------------------------------------------
// Anthropic → OpenAI

/// Translates an Anthropic Messages request into OpenAI's chat request, for any provider. Tool
/// results become `tool` messages right after the assistant turn that called them, images
/// become `image_url` parts, documents `file` parts. Not carried: `cache_control`, thinking
/// blocks and `thinking`, `top_k`, `is_error` (OpenAI has no place for them); server tools and
/// Files-API sources are refused, as only an Anthropic upstream could serve them. Streams ask
/// for usage, which the caller's `message_delta` needs.
pub fn to_openai(req: &MessagesRequest) -> Result<ChatCompletionRequest, TranslateError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        messages.push(openai_message("system", Some(system_content(system)?)));
    }
    for (i, m) in req.messages.iter().enumerate() {
        match m.role.as_str() {
            "user" => messages.extend(from_user_turn(&m.content, i)?),
            "assistant" => messages.push(from_assistant_turn(&m.content, i)?),
            other => return Err(TranslateError::new(format!("messages.{i}.role: `{other}` is not `user` or `assistant`"))),
        }
    }
    let stream = req.stream.unwrap_or(false);
    let choice = req.tool_choice.as_ref();
    Ok(ChatCompletionRequest {
        model: req.model.clone(),
        messages,
        stream: stream.then_some(true),
        stream_options: stream.then(|| StreamOptions { include_usage: Some(true), extra: Map::new() }),
        tools: req.tools.as_ref().map(|t| t.iter().map(to_openai_tool).collect()).transpose()?,
        tool_choice: choice.map(to_openai_tool_choice).transpose()?,
        parallel_tool_calls: choice.and_then(|c| c.disable_parallel_tool_use).filter(|d| *d).map(|_| false),
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: req.max_tokens,
        stop: req.stop_sequences.clone().filter(|s| !s.is_empty()).map(Stop::Many),
        user: req.metadata.as_ref().and_then(|m| m.user_id.clone()),
        ..Default::default()
    })
}

fn openai_message(role: &str, content: Option<Content>) -> Message {
    Message { role: role.to_owned(), content, ..Default::default() }
}

fn system_content(system: &System) -> Result<Content, TranslateError> {
    match system {
        System::Text(t) => Ok(Content::Text(t.clone())),
        System::Blocks(blocks) => {
            let parts = blocks.iter().map(|b| block_to_part(b, "system")).collect::<Result<Vec<_>, _>>()?;
            Ok(simplify(parts))
        }
    }
}

/// One text part is sent as a string.
fn simplify(mut parts: Vec<ContentPart>) -> Content {
    if let [ContentPart::Text { text }] = parts.as_mut_slice() {
        return Content::Text(std::mem::take(text));
    }
    Content::Parts(parts)
}

/// A user turn: its tool results first, each a `tool` message, then the rest as a user message.
fn from_user_turn(content: &MessageContent, i: usize) -> Result<Vec<Message>, TranslateError> {
    let blocks = match content {
        MessageContent::Text(t) => return Ok(vec![openai_message("user", Some(Content::Text(t.clone())))]),
        MessageContent::Blocks(b) => b,
    };
    let mut out = Vec::new();
    let mut parts = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::ToolResult(r) => out.push(tool_message(r, i)?),
            other => parts.push(block_to_part(other, &format!("messages.{i}"))?),
        }
    }
    if !parts.is_empty() {
        out.push(openai_message("user", Some(simplify(parts))));
    }
    Ok(out)
}

fn tool_message(r: &ToolResultBlock, i: usize) -> Result<Message, TranslateError> {
    let content = match &r.content {
        None => Content::Text(String::new()),
        Some(MessageContent::Text(t)) => Content::Text(t.clone()),
        Some(MessageContent::Blocks(blocks)) => {
            let parts = blocks.iter().map(|b| block_to_part(b, &format!("messages.{i}.tool_result"))).collect::<Result<Vec<_>, _>>()?;
            simplify(parts)
        }
    };
    Ok(Message { tool_call_id: Some(r.tool_use_id.clone()), ..openai_message("tool", Some(content)) })
}

/// A text, image or document block as an OpenAI content part.
fn block_to_part(block: &ContentBlock, at: &str) -> Result<ContentPart, TranslateError> {
    match block {
        ContentBlock::Text(t) => Ok(ContentPart::Text { text: t.text.clone() }),
        ContentBlock::Image(img) => match &img.source {
            Source::Base64 { media_type, data } => Ok(image_part(format!("data:{media_type};base64,{data}"))),
            Source::Url { url } => Ok(image_part(url.clone())),
            Source::Other(_) => Err(TranslateError::new(format!("{at}: this image source can only be sent to an Anthropic model"))),
        },
        ContentBlock::Document(doc) => match &doc.source {
            Source::Base64 { media_type, data } => {
                let mut file = json!({"file_data": format!("data:{media_type};base64,{data}")});
                if let Some(title) = doc.extra.get("title").and_then(Value::as_str) {
                    file["filename"] = Value::String(title.to_owned());
                }
                Ok(ContentPart::File { file })
            }
            _ => Err(TranslateError::new(format!("{at}: only base64 documents can be sent to a non-Anthropic model"))),
        },
        other => Err(TranslateError::new(format!("{at}: a `{}` block cannot be sent to a non-Anthropic model", block_kind(other)))),
    }
}

fn image_part(url: String) -> ContentPart {
    ContentPart::ImageUrl { image_url: ImageUrl { url, detail: None } }
}

/// The `type` of a block, for messages.
pub(super) fn block_kind(block: &ContentBlock) -> &str {
    match block {
        ContentBlock::Text(_) => "text",
        ContentBlock::Image(_) => "image",
        ContentBlock::Document(_) => "document",
        ContentBlock::ToolUse(_) => "tool_use",
        ContentBlock::ToolResult(_) => "tool_result",
        ContentBlock::Thinking(_) => "thinking",
        ContentBlock::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or("unknown"),
    }
}

/// An assistant turn: text joined into `content`, `tool_use` blocks as `tool_calls`. Thinking
/// blocks are dropped (an OpenAI-compatible upstream cannot take them back).
fn from_assistant_turn(content: &MessageContent, i: usize) -> Result<Message, TranslateError> {
    let blocks = match content {
        MessageContent::Text(t) => return Ok(openai_message("assistant", Some(Content::Text(t.clone())))),
        MessageContent::Blocks(b) => b,
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::Text(t) => text.push_str(&t.text),
            ContentBlock::ToolUse(u) => calls.push(ToolCall {
                id: Some(u.id.clone()),
                kind: Some("function".into()),
                function: FunctionCall { name: Some(u.name.clone()), arguments: Some(u.input.to_string()) },
                ..Default::default()
            }),
            ContentBlock::Thinking(_) => {}
            ContentBlock::Other(v) if v.get("type").and_then(Value::as_str) == Some("redacted_thinking") => {}
            other => {
                return Err(TranslateError::new(format!(
                    "messages.{i}: an assistant `{}` block cannot be sent to a non-Anthropic model",
                    block_kind(other)
                )));
            }
        }
    }
    let content = (!text.is_empty() || calls.is_empty()).then_some(Content::Text(text));
    Ok(Message { tool_calls: (!calls.is_empty()).then_some(calls), ..openai_message("assistant", content) })
}

fn to_openai_tool(tool: &Tool) -> Result<OpenAiTool, TranslateError> {
    if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
        return Err(TranslateError::new(format!(
            "tools: the server tool `{kind}` can only be served by an Anthropic model"
        )));
    }
    Ok(OpenAiTool {
        kind: "function".into(),
        function: FunctionDef {
            name: tool.name.clone(),
            description: tool.description.clone(),
            parameters: tool.input_schema.clone(),
            strict: None,
        },
    })
}

fn to_openai_tool_choice(choice: &ToolChoice) -> Result<OpenAiToolChoice, TranslateError> {
    Ok(match choice.kind.as_str() {
        "auto" => OpenAiToolChoice::Mode("auto".into()),
        "any" => OpenAiToolChoice::Mode("required".into()),
        "none" => OpenAiToolChoice::Mode("none".into()),
        "tool" => {
            let name = choice.name.clone().ok_or_else(|| TranslateError::new("tool_choice.name: required with type `tool`"))?;
            OpenAiToolChoice::Named(NamedToolChoice { kind: "function".into(), function: NamedFunction { name } })
        }
        other => return Err(TranslateError::new(format!("tool_choice.type: `{other}` is not auto, any, none or tool"))),
    })
}
