//! Complete answers in both directions, and the usage and stop-reason mappings the streams share.

use serde_json::{Map, Value, json};

use super::types::{ContentBlock, Message, ToolUseBlock, Usage};
use crate::wire::openai::map_finish_reason;
use crate::wire::openai::types::{
    ChatCompletion, Choice, Content, FunctionCall, Message as OpenAiMessage, PromptTokensDetails, ToolCall, UsageDetail,
};

/// Anthropic's usage in OpenAI's terms. Anthropic's `input_tokens` excludes the tokens read from
/// and written to the prompt cache, OpenAI's `prompt_tokens` includes them: the cache counts go to
/// `prompt_tokens_details` and are added to `prompt_tokens`.
pub fn usage_to_openai(u: &Usage) -> UsageDetail {
    let cache_read = u.cache_read_input_tokens.unwrap_or(0);
    let cache_creation = u.cache_creation_input_tokens.unwrap_or(0);
    let prompt = u.input_tokens + cache_read + cache_creation;
    let reported_cache = u.cache_read_input_tokens.is_some() || u.cache_creation_input_tokens.is_some();
    UsageDetail {
        prompt_tokens: prompt,
        completion_tokens: u.output_tokens,
        total_tokens: prompt + u.output_tokens,
        prompt_tokens_details: reported_cache
            .then_some(PromptTokensDetails { cached_tokens: cache_read, cache_creation_tokens: cache_creation }),
        completion_tokens_details: None,
    }
}

/// OpenAI's usage in Anthropic's terms (the inverse of [`usage_to_openai`]).
pub fn usage_from_openai(u: &UsageDetail) -> Usage {
    let details = u.prompt_tokens_details.unwrap_or_default();
    Usage {
        input_tokens: u.prompt_tokens.saturating_sub(details.cached_tokens + details.cache_creation_tokens),
        cache_creation_input_tokens: Some(details.cache_creation_tokens),
        cache_read_input_tokens: Some(details.cached_tokens),
        output_tokens: u.completion_tokens,
        extra: Map::new(),
    }
}

/// An OpenAI `finish_reason` as Anthropic's `stop_reason`.
pub fn stop_reason_from_finish(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// An Anthropic `stop_reason` as OpenAI's `finish_reason` (`end_turn`, `stop_sequence`,
/// `pause_turn` → `stop`; `max_tokens` → `length`; `tool_use` → `tool_calls`; `refusal` →
/// `content_filter`).
pub fn finish_from_stop_reason(stop_reason: &str) -> &'static str {
    map_finish_reason(stop_reason)
}

/// Tool-call arguments for an Anthropic `input`: the JSON object they encode, or, when a model
/// produced something else, the text kept under `"arguments"` so nothing is lost.
pub fn arguments_to_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "arguments": arguments }),
    }
}

/// An Anthropic message as an OpenAI `chat.completion` labelled `alias`. Text blocks are joined
/// into `content`, `tool_use` blocks become `tool_calls`, thinking becomes `reasoning_content`.
pub fn completion_from_message(msg: &Message, alias: &str, created: u64) -> ChatCompletion {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in &msg.content {
        match block {
            ContentBlock::Text(t) => text.push_str(&t.text),
            ContentBlock::Thinking(t) => reasoning.push_str(&t.thinking),
            ContentBlock::ToolUse(u) => calls.push(tool_call(u)),
            _ => {}
        }
    }
    let mut extra = Map::new();
    if !reasoning.is_empty() {
        extra.insert("reasoning_content".into(), Value::String(reasoning));
    }
    let message = OpenAiMessage {
        role: "assistant".into(),
        content: (!text.is_empty() || calls.is_empty()).then_some(Content::Text(text)),
        tool_calls: (!calls.is_empty()).then_some(calls),
        extra,
        ..Default::default()
    };
    let finish = msg.stop_reason.as_deref().map(finish_from_stop_reason).unwrap_or("stop");
    ChatCompletion {
        id: msg.id.clone(),
        object: "chat.completion".into(),
        created,
        model: alias.to_owned(),
        choices: vec![Choice { index: 0, message, finish_reason: Some(finish.into()), logprobs: None }],
        usage: Some(usage_to_openai(&msg.usage)),
    }
}

fn tool_call(u: &ToolUseBlock) -> ToolCall {
    ToolCall {
        index: None,
        id: Some(u.id.clone()),
        kind: Some("function".into()),
        function: FunctionCall { name: Some(u.name.clone()), arguments: Some(u.input.to_string()) },
        extra_content: None,
    }
}

/// An OpenAI `chat.completion` as an Anthropic message for `model` (the alias the caller asked
/// for). The first choice is the answer.
pub fn message_from_completion(c: &ChatCompletion, model: &str) -> Message {
    let choice = c.choices.first();
    let mut content = Vec::new();
    if let Some(m) = choice.map(|c| &c.message) {
        let text = m.content.as_ref().map(|c| c.text("")).unwrap_or_default();
        let refusal = m.refusal.clone().unwrap_or_default();
        for t in [text, refusal] {
            if !t.is_empty() {
                content.push(ContentBlock::text(t));
            }
        }
        for call in m.tool_calls.iter().flatten() {
            content.push(ContentBlock::ToolUse(tool_use_from_call(call, content.len())));
        }
    }
    if content.is_empty() {
        content.push(ContentBlock::text(""));
    }
    let finish = choice.and_then(|c| c.finish_reason.as_deref()).unwrap_or("stop");
    Message {
        id: message_id(&c.id),
        kind: "message".into(),
        role: "assistant".into(),
        content,
        model: model.to_owned(),
        stop_reason: Some(stop_reason_from_finish(finish).into()),
        stop_sequence: None,
        usage: c.usage.as_ref().map(usage_from_openai).unwrap_or_default(),
    }
}

/// A `tool_use` block from an OpenAI tool call (an id is made up if the upstream gave none).
pub fn tool_use_from_call(call: &ToolCall, position: usize) -> ToolUseBlock {
    ToolUseBlock {
        id: call.id.clone().unwrap_or_else(|| format!("toolu_{position}")),
        name: call.function.name.clone().unwrap_or_default(),
        input: arguments_to_input(call.function.arguments.as_deref().unwrap_or("")),
        extra: Map::new(),
    }
}

/// Anthropic ids start with `msg_`; an OpenAI id is kept recognisable behind that prefix.
pub fn message_id(openai_id: &str) -> String {
    if openai_id.starts_with("msg_") { openai_id.to_owned() } else { format!("msg_{openai_id}") }
}
