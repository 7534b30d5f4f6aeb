//! Typed OpenAI chat-completions shapes, for adapters that translate to and from another wire
//! format. (The OpenAI passthrough path never builds these: it keeps the raw bytes.) Every
//! struct keeps unknown fields in `extra` so that nothing a caller sent is silently lost.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Usage;
use crate::wire::de::{StringOrSeq, Tagged, object_with_extra, tag_first};

/// `POST /v1/chat/completions` request body.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Everything else the caller sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(ChatCompletionRequest {
    required: model, messages;
    optional: stream, stream_options, tools, tool_choice, parallel_tool_calls, temperature, top_p, max_tokens,
        max_completion_tokens, stop, n, seed, presence_penalty, frequency_penalty, response_format, user, metadata,
        reasoning_effort;
});

impl ChatCompletionRequest {
    /// The output token limit, whichever field the caller used.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(StreamOptions {
    required: ;
    optional: include_usage;
});

/// `stop`: one string or several.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant`, `tool` (or the legacy `function`).
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(Message {
    required: role;
    optional: content, name, tool_calls, tool_call_id, refusal;
});

/// Message content: a string, or an array of parts.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match StringOrSeq::deserialize(d, "a string or an array of content parts")? {
            StringOrSeq::String(text) => Content::Text(text),
            StringOrSeq::Seq(parts) => Content::Parts(parts),
        })
    }
}

impl Content {
    /// The text of the content, parts joined with `sep` (non-text parts are skipped).
    pub fn text(&self, sep: &str) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(sep),
        }
    }

    /// The parts, a string being one text part.
    pub fn parts(&self) -> Vec<ContentPart> {
        match self {
            Content::Text(t) => vec![ContentPart::Text { text: t.clone() }],
            Content::Parts(p) => p.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    InputAudio { input_audio: Value },
    File { file: Value },
    #[serde(untagged)]
    Other(Value),
}

impl Tagged for ContentPart {
    const TAGS: &'static [&'static str] = &["text", "image_url", "input_audio", "file"];
    fn variant<'de, D: serde::Deserializer<'de>>(tag: &str, rest: D) -> Result<Self, D::Error> {
        // The variants' members; others are ignored, as the derive ignores them.
        #[derive(Deserialize)]
        struct Text {
            text: String,
        }
        #[derive(Deserialize)]
        struct Image {
            image_url: ImageUrl,
        }
        #[derive(Deserialize)]
        struct Audio {
            input_audio: Value,
        }
        #[derive(Deserialize)]
        struct File {
            file: Value,
        }
        match tag {
            "text" => Text::deserialize(rest).map(|p| ContentPart::Text { text: p.text }),
            "image_url" => Image::deserialize(rest).map(|p| ContentPart::ImageUrl { image_url: p.image_url }),
            "input_audio" => Audio::deserialize(rest).map(|p| ContentPart::InputAudio { input_audio: p.input_audio }),
            "file" => File::deserialize(rest).map(|p| ContentPart::File { file: p.file }),
            other => Err(serde::de::Error::unknown_variant(other, Self::TAGS)),
        }
    }
    fn other(value: Value) -> Self {
        ContentPart::Other(value)
    }
}

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tag_first(d)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ImageUrl {
    /// An `https://` URL or a `data:<mime>;base64,<data>` URL.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ImageUrl {
    /// `(mime type, base64 data)` of a `data:` URL.
    pub fn data_url(&self) -> Option<(&str, &str)> {
        let rest = self.url.strip_prefix("data:")?;
        let (meta, data) = rest.split_once(',')?;
        let mime = meta.strip_suffix(";base64")?;
        Some((mime, data))
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Tool {
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionDef,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: `"none"`, `"auto"`, `"required"`, or a named function.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Named(NamedToolChoice),
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct NamedToolChoice {
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: NamedFunction,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct NamedFunction {
    pub name: String,
}

/// A tool call in an assistant message (or, with `index`, a streamed tool-call delta).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub function: FunctionCall,
    /// Provider-specific data that must survive the round trip, e.g. Gemini's
    /// `{"google": {"thought_signature": "..."}}` (the shape Google's own OpenAI layer uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_content: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// JSON text (for streamed deltas, a fragment of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// A `chat.completion` response.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageDetail>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Choice {
    pub index: u32,
    pub message: Message,
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// A `chat.completion.chunk`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// `null` on every chunk but the last when the caller asked for usage (as OpenAI sends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<UsageDetail>>,
    /// Switchyard's marker on the last chunks of a recovered stream (see `router::recover`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchyard: Option<Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[serde(default)]
    pub logprobs: Option<Value>,
    pub finish_reason: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(Delta {
    required: ;
    optional: role, content, tool_calls, refusal;
});

impl Delta {
    /// Carries model output (anything beyond a role or empty strings).
    pub fn has_content(&self) -> bool {
        self.content.as_deref().is_some_and(|c| !c.is_empty())
            || self.tool_calls.as_ref().is_some_and(|t| !t.is_empty())
            || self.refusal.as_deref().is_some_and(|r| !r.is_empty())
            || self.extra.values().any(|v| !v.is_null())
    }
}

/// OpenAI's usage object with the details other providers map into.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct UsageDetail {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

impl UsageDetail {
    pub fn summary(&self) -> Usage {
        Usage { prompt_tokens: self.prompt_tokens, completion_tokens: self.completion_tokens, total_tokens: self.total_tokens }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
    /// Tokens written to a prompt cache (Anthropic's `cache_creation_input_tokens`); not an
    /// OpenAI field, omitted when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_creation_tokens: u64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct CompletionTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_request_round_trips_without_loss() {
        let v = json!({
            "model": "chat", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "low"}}]},
                {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "look", "arguments": "{\"q\":1}"},
                    "extra_content": {"google": {"thought_signature": "sig"}}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
            ],
            "tools": [{"type": "function", "function": {"name": "look", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "look"}},
            "temperature": 0.5, "max_completion_tokens": 100, "stop": ["\n\n"], "seed": 7,
            "response_format": {"type": "json_object"}, "user": "u1", "custom_field": {"kept": true}
        });
        let r: ChatCompletionRequest = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(r.max_output_tokens(), Some(100));
        assert_eq!(r.messages[1].content.as_ref().unwrap().text(" "), "what is this?");
        let ContentPart::ImageUrl { image_url } = &r.messages[1].content.as_ref().unwrap().parts()[1] else { panic!() };
        assert_eq!(image_url.data_url(), Some(("image/png", "iVBOR")));
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
    }

    #[test]
    fn content_parts_read_in_any_member_order() {
        let parts: Vec<ContentPart> = serde_json::from_str(
            r#"[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}}, {"text":"b","type":"text"},
                {"image_url":{"url":"u"},"type":"image_url"}, {"type":"input_audio","input_audio":{"data":"AA==","format":"wav"}},
                {"type":"refusal","refusal":"no"}, {"text":5,"type":"text"}]"#,
        )
        .unwrap();
        assert_eq!(
            parts,
            [
                ContentPart::Text { text: "a".into() },
                ContentPart::Text { text: "b".into() },
                ContentPart::ImageUrl { image_url: ImageUrl { url: "u".into(), detail: None } },
                ContentPart::InputAudio { input_audio: json!({"data": "AA==", "format": "wav"}) },
                ContentPart::Other(json!({"type": "refusal", "refusal": "no"})),
                ContentPart::Other(json!({"text": 5, "type": "text"})),
            ]
        );
    }

    #[test]
    fn tool_choice_modes_and_stop_forms() {
        let r: ChatCompletionRequest = serde_json::from_value(json!({"model": "m", "messages": [], "tool_choice": "required", "stop": "END"})).unwrap();
        assert_eq!(r.tool_choice, Some(ToolChoice::Mode("required".into())));
        assert_eq!(r.stop.unwrap().to_vec(), ["END"]);
    }

    #[test]
    fn delta_content_detection() {
        let d: Delta = serde_json::from_value(json!({"role": "assistant", "content": ""})).unwrap();
        assert!(!d.has_content());
        let d: Delta = serde_json::from_value(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]})).unwrap();
        assert!(d.has_content());
        let d: Delta = serde_json::from_value(json!({"reasoning_content": "hmm"})).unwrap();
        assert!(d.has_content());
    }
}
