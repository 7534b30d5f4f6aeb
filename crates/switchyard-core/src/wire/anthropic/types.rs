//! Typed Anthropic Messages API shapes (`POST /v1/messages`): the request, the message it
//! answers with, the stream events and the error body. Every struct keeps unknown fields in
//! `extra` (and every tagged enum has an `Other` catch-all) so that a passthrough or a newer API
//! version loses nothing on the way through.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::wire::de::{StringOrSeq, Tagged, object_with_extra, tag_first};

/// `POST /v1/messages` request body.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<InputMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    /// Required by Anthropic; optional here so a translated request can fall back to a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Everything else the caller sent (`thinking`, `service_tier`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(MessagesRequest {
    required: model, messages;
    optional: system, max_tokens, metadata, stop_sequences, stream, temperature, top_p, top_k, tools, tool_choice;
});

/// `system`: a string, or an array of text blocks.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum System {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

impl<'de> Deserialize<'de> for System {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match StringOrSeq::deserialize(d, "a string or an array of text blocks")? {
            StringOrSeq::String(text) => System::Text(text),
            StringOrSeq::Seq(blocks) => System::Blocks(blocks),
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(Metadata {
    required: ;
    optional: user_id;
});

/// One turn of the conversation: `user` or `assistant`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct InputMessage {
    pub role: String,
    pub content: MessageContent,
}

/// Message content: a string, or an array of content blocks.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match StringOrSeq::deserialize(d, "a string or an array of content blocks")? {
            StringOrSeq::String(text) => MessageContent::Text(text),
            StringOrSeq::Seq(blocks) => MessageContent::Blocks(blocks),
        })
    }
}

impl MessageContent {
    /// The blocks, a string being one text block.
    pub fn into_blocks(self) -> Vec<ContentBlock> {
        match self {
            MessageContent::Text(text) => vec![ContentBlock::text(text)],
            MessageContent::Blocks(blocks) => blocks,
        }
    }
}

/// A content block, in a request or an answer.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text(TextBlock),
    Image(ImageBlock),
    Document(DocumentBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    Thinking(ThinkingBlock),
    /// Server tools, citations-only blocks, newer block kinds: carried as they are.
    #[serde(untagged)]
    Other(Value),
}

impl Tagged for ContentBlock {
    const TAGS: &'static [&'static str] = &["text", "image", "document", "tool_use", "tool_result", "thinking"];
    fn variant<'de, D: serde::Deserializer<'de>>(tag: &str, rest: D) -> Result<Self, D::Error> {
        match tag {
            "text" => TextBlock::deserialize(rest).map(ContentBlock::Text),
            "image" => ImageBlock::deserialize(rest).map(ContentBlock::Image),
            "document" => DocumentBlock::deserialize(rest).map(ContentBlock::Document),
            "tool_use" => ToolUseBlock::deserialize(rest).map(ContentBlock::ToolUse),
            "tool_result" => ToolResultBlock::deserialize(rest).map(ContentBlock::ToolResult),
            "thinking" => ThinkingBlock::deserialize(rest).map(ContentBlock::Thinking),
            other => Err(serde::de::Error::unknown_variant(other, Self::TAGS)),
        }
    }
    fn other(value: Value) -> Self {
        ContentBlock::Other(value)
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tag_first(d)
    }
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> ContentBlock {
        ContentBlock::Text(TextBlock { text: text.into(), extra: Map::new() })
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TextBlock {
    pub text: String,
    /// `cache_control`, `citations`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(TextBlock {
    required: text;
    optional: ;
});

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ImageBlock {
    pub source: Source,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(ImageBlock {
    required: source;
    optional: ;
});

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DocumentBlock {
    pub source: Source,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(DocumentBlock {
    required: source;
    optional: ;
});

/// Where an image's or a document's bytes come from.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    Base64 { media_type: String, data: String },
    Url { url: String },
    /// `file` (Files API), `text`, `content`: only an Anthropic upstream can take these.
    #[serde(untagged)]
    Other(Value),
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ToolUseBlock {
    pub id: String,
    pub name: String,
    /// The arguments, a JSON object.
    #[serde(default)]
    pub input: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(ToolUseBlock {
    required: id, name;
    optional: input;
});

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(ToolResultBlock {
    required: tool_use_id;
    optional: content, is_error;
});

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ThinkingBlock {
    #[serde(default)]
    pub thinking: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(ThinkingBlock {
    required: ;
    optional: thinking, signature;
});

/// A tool definition. Client tools have no `type` (or `"custom"`); server tools
/// (`web_search_20250305`, ...) have a versioned `type` and no `input_schema`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Tool {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(Tool {
    required: name;
    optional: kind = "type", description, input_schema;
});

/// `tool_choice`: `{"type": "auto" | "any" | "none" | "tool", "name"?, "disable_parallel_tool_use"?}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

/// The answer: a `message` object (also the `message` of a stream's `message_start`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Message {
    pub id: String,
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    #[serde(default = "assistant_role")]
    pub role: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
}

fn message_type() -> String {
    "message".into()
}

fn assistant_role() -> String {
    "assistant".into()
}

/// Token usage. `input_tokens` excludes the tokens read from or written to the prompt cache.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: u64,
    /// `cache_creation` breakdown, `service_tier`, `server_tool_use`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(Usage {
    required: ;
    optional: input_tokens, cache_creation_input_tokens, cache_read_input_tokens, output_tokens;
});

/// The usage of a `message_delta` event: cumulative counts, any of which may be absent.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DeltaUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(DeltaUsage {
    required: ;
    optional: input_tokens, cache_creation_input_tokens, cache_read_input_tokens, output_tokens;
});

/// One event of a streamed answer. The SSE `event:` name equals the JSON `type`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart { message: Message },
    ContentBlockStart { index: u32, content_block: ContentBlock },
    ContentBlockDelta { index: u32, delta: BlockDelta },
    ContentBlockStop { index: u32 },
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: DeltaUsage,
    },
    MessageStop,
    Ping,
    Error { error: ErrorBody },
    /// An event type this version does not know; Anthropic asks clients to ignore those.
    #[serde(untagged)]
    Other(Value),
}

impl StreamEvent {
    /// The SSE `event:` name.
    pub fn name(&self) -> &str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Ping => "ping",
            StreamEvent::Error { .. } => "error",
            StreamEvent::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or("unknown"),
        }
    }

    /// `event: NAME\ndata: JSON\n\n`, as Anthropic frames it.
    pub fn to_sse(&self) -> Bytes {
        let json = serde_json::to_vec(self).expect("serializing a stream event cannot fail");
        sse_frame(self.name(), &json)
    }
}

/// Frames one event's JSON as Anthropic does: a named SSE event.
pub fn sse_frame(name: &str, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + name.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The delta of a `content_block_delta` event.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    TextDelta { text: String },
    /// A fragment of a tool call's `input` JSON; the fragments joined are the whole object.
    InputJsonDelta { partial_json: String },
    ThinkingDelta { thinking: String },
    SignatureDelta { signature: String },
    #[serde(untagged)]
    Other(Value),
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MessageDeltaBody {
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

object_with_extra!(MessageDeltaBody {
    required: ;
    optional: stop_reason, stop_sequence;
});

/// `{"type": "overloaded_error", "message": "Overloaded"}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

/// An error response body: `{"type": "error", "error": {...}}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct ErrorResponse {
    #[serde(rename = "type")]
    pub kind: String,
    pub error: ErrorBody,
}

impl ErrorResponse {
    pub fn new(kind: &str, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse { kind: "error".into(), error: ErrorBody { kind: kind.into(), message: message.into() } }
    }
}
