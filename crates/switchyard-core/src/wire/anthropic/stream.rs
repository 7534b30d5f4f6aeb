//! Streams in both directions: Anthropic's event sequence as OpenAI chunks ([`ToOpenAi`], for
//! the `anthropic` provider) and OpenAI chunks as Anthropic's event sequence ([`ToAnthropic`],
//! for the `/v1/messages` ingress). Both are pure state machines fed one event or chunk at a
//! time; the callers own the I/O.
//!
//! Streamed tool-call arguments are the part other gateways lose (LiteLLM #36262): every
//! `input_json_delta` fragment becomes one `tool_calls[].function.arguments` fragment and back,
//! in order, so the fragments joined are always the whole arguments JSON.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::response::{finish_from_stop_reason, message_id, stop_reason_from_finish, usage_to_openai};
use super::types::{
    BlockDelta, ContentBlock, DeltaUsage, ErrorBody, Message, MessageDeltaBody, StreamEvent, TextBlock, ToolUseBlock, Usage,
};
use crate::wire::chunk::Chunk;
use crate::wire::json::{Str, StringSlot, learn_shape, shaped_str};
use crate::wire::scan::TextShape;
use crate::wire::openai::Usage as UsageSummary;
use crate::wire::openai::types::{ChatCompletionChunk, ChunkChoice, Delta, FunctionCall, ToolCall, UsageDetail};

/// Anthropic's stream events → OpenAI chunks labelled with an alias.
pub struct ToOpenAi {
    alias: String,
    include_usage: bool,
    id: String,
    created: u64,
    usage: Usage,
    /// Tool-use blocks seen so far, in order: (Anthropic block index, arguments sent).
    tools: Vec<(u32, bool)>,
    finished: bool,
    /// A text chunk's JSON before and after its content string, made at `message_start` for
    /// [`ToOpenAi::text_delta`].
    text_template: Option<StringSlot>,
    /// The bytes around the text of the last text delta event parsed whole: the next events of
    /// the same bytes around another text are text deltas of that text (see [`TextShape`]).
    text_shape: TextShape,
}

/// The members of a `content_block_delta` event that a text delta needs, borrowed from its JSON.
#[derive(serde::Deserialize)]
struct TextDeltaEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    delta: TextDeltaBody<'a>,
}

#[derive(serde::Deserialize)]
struct TextDeltaBody<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
}

impl ToOpenAi {
    /// `include_usage`: the caller asked for `stream_options.include_usage`, so the stream ends
    /// with a usage chunk (otherwise the usage rides on the finish chunk for the gateway only).
    pub fn new(alias: &str, include_usage: bool, created: u64) -> ToOpenAi {
        ToOpenAi {
            alias: alias.to_owned(),
            include_usage,
            id: String::new(),
            created,
            usage: Usage::default(),
            tools: Vec::new(),
            finished: false,
            text_template: None,
            text_shape: TextShape::default(),
        }
    }

    /// Translates the event `data` if it is a `content_block_delta` carrying a `text_delta`,
    /// by far the commonest event of a stream, without parsing it whole: its text is read in
    /// place and written into the chunk made at `message_start` (what [`ToOpenAi::on_event`]
    /// would give, byte for byte, at a fraction of the cost: no `StreamEvent` built through
    /// serde's buffering of internally tagged enums, no `ChatCompletionChunk` to serialize).
    /// `None` for any other event, or before `message_start`: pass it to `on_event`.
    /// `Some(None)`: a text delta with nothing to send (empty text).
    ///
    /// An event of the same bytes as the last one parsed, around another text, is not parsed
    /// at all (every text delta of a content block is, but for its text).
    pub fn text_delta(&mut self, data: &[u8]) -> Option<Option<Chunk>> {
        let template = self.text_template.as_ref()?;
        let text = match shaped_str(&self.text_shape, data) {
            Some(text) => text,
            None => {
                let event: TextDeltaEvent<'_> = crate::wire::json::from_slice(data).ok()?;
                if event.kind != "content_block_delta" || event.delta.kind != "text_delta" {
                    return None;
                }
                let Str(text) = event.delta.text?;
                learn_shape(&mut self.text_shape, data, &text);
                text
            }
        };
        if text.is_empty() {
            return Some(None);
        }
        Some(Some(Chunk::text(template, &text)))
    }

    /// A `message_delta` with the stop reason has been translated: the answer is complete.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Translates one event. An `error` event is returned as the error it carries.
    pub fn on_event(&mut self, event: StreamEvent) -> Result<Vec<Chunk>, ErrorBody> {
        Ok(match event {
            StreamEvent::MessageStart { message } => self.on_start(message),
            StreamEvent::ContentBlockStart { index, content_block } => self.on_block_start(index, content_block),
            StreamEvent::ContentBlockDelta { index, delta } => self.on_delta(index, delta),
            StreamEvent::ContentBlockStop { index } => self.on_block_stop(index),
            StreamEvent::MessageDelta { delta, usage } => self.on_message_delta(delta, usage),
            StreamEvent::Error { error } => return Err(error),
            StreamEvent::MessageStop | StreamEvent::Ping | StreamEvent::Other(_) => Vec::new(),
        })
    }

    fn on_start(&mut self, message: Message) -> Vec<Chunk> {
        self.id = message.id;
        self.usage = message.usage;
        self.text_template = StringSlot::at_last(&self.text(String::new()).data, "content");
        let delta = Delta { role: Some("assistant".into()), content: Some(String::new()), ..Default::default() };
        vec![self.chunk(delta, None, false)]
    }

    fn on_block_start(&mut self, index: u32, block: ContentBlock) -> Vec<Chunk> {
        match block {
            ContentBlock::Text(t) if !t.text.is_empty() => vec![self.text(t.text)],
            ContentBlock::Thinking(t) if !t.thinking.is_empty() => vec![self.reasoning(t.thinking)],
            ContentBlock::ToolUse(u) => self.on_tool_start(index, u),
            _ => Vec::new(),
        }
    }

    /// The first delta of a tool call carries its index, id and name (and empty arguments).
    fn on_tool_start(&mut self, index: u32, u: ToolUseBlock) -> Vec<Chunk> {
        let position = self.tools.len() as u32;
        self.tools.push((index, false));
        let call = ToolCall {
            index: Some(position),
            id: Some(u.id),
            kind: Some("function".into()),
            function: FunctionCall { name: Some(u.name), arguments: Some(String::new()) },
            extra_content: None,
        };
        let mut out = vec![self.chunk(Delta { tool_calls: Some(vec![call]), ..Default::default() }, None, true)];
        // A non-streamed input (rare in streams, but allowed) goes out as one fragment.
        if u.input.as_object().is_some_and(|o| !o.is_empty()) {
            out.extend(self.arguments(index, u.input.to_string()));
        }
        out
    }

    fn on_delta(&mut self, index: u32, delta: BlockDelta) -> Vec<Chunk> {
        match delta {
            BlockDelta::TextDelta { text } if !text.is_empty() => vec![self.text(text)],
            BlockDelta::ThinkingDelta { thinking } if !thinking.is_empty() => vec![self.reasoning(thinking)],
            BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => self.arguments(index, partial_json).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// A tool call whose input streamed no fragment at all still gets `{}`, so a client always
    /// receives parseable arguments.
    fn on_block_stop(&mut self, index: u32) -> Vec<Chunk> {
        match self.tools.iter().find(|(block, _)| *block == index) {
            Some((_, false)) => self.arguments(index, "{}".into()).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// One fragment of a tool call's arguments, addressed by the call's OpenAI index.
    fn arguments(&mut self, block: u32, fragment: String) -> Option<Chunk> {
        let position = self.tools.iter().position(|(b, _)| *b == block)?;
        self.tools[position].1 = true;
        let call = ToolCall {
            index: Some(position as u32),
            function: FunctionCall { name: None, arguments: Some(fragment) },
            ..Default::default()
        };
        Some(self.chunk(Delta { tool_calls: Some(vec![call]), ..Default::default() }, None, true))
    }

    /// The stop reason and final usage: a finish chunk, then (if asked) a usage chunk. The last
    /// chunk always carries the usage for the gateway.
    fn on_message_delta(&mut self, delta: MessageDeltaBody, usage: DeltaUsage) -> Vec<Chunk> {
        merge_usage(&mut self.usage, usage);
        self.finished = true;
        let finish = delta.stop_reason.as_deref().map(finish_from_stop_reason).unwrap_or("stop");
        let detail = usage_to_openai(&self.usage);
        let mut finish_chunk = self.chunk(Delta::default(), Some(finish), false);
        if !self.include_usage {
            finish_chunk.usage = Some(detail.summary());
            return vec![finish_chunk];
        }
        let usage_chunk = ChatCompletionChunk { choices: Vec::new(), usage: Some(Some(detail)), ..self.envelope() };
        let usage_chunk = Chunk::serialized(&usage_chunk, false, false, Some(detail.summary()));
        vec![finish_chunk, usage_chunk]
    }

    fn text(&self, text: String) -> Chunk {
        self.chunk(Delta { content: Some(text), ..Default::default() }, None, true)
    }

    fn reasoning(&self, text: String) -> Chunk {
        let mut extra = Map::new();
        extra.insert("reasoning_content".into(), Value::String(text));
        self.chunk(Delta { extra, ..Default::default() }, None, true)
    }

    fn envelope(&self) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.alias.clone(),
            choices: Vec::new(),
            // OpenAI sends `"usage": null` on every chunk but the last when usage was asked for.
            usage: self.include_usage.then_some(None),
            switchyard: None,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&str>, content: bool) -> Chunk {
        let choice = ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish.map(str::to_owned) };
        let chunk = ChatCompletionChunk { choices: vec![choice], ..self.envelope() };
        Chunk::serialized(&chunk, content, finish.is_some(), None)
    }
}

/// Folds a `message_delta`'s cumulative counts into the usage from `message_start`.
pub fn merge_usage(usage: &mut Usage, delta: DeltaUsage) {
    if let Some(n) = delta.input_tokens {
        usage.input_tokens = n;
    }
    if let Some(n) = delta.output_tokens {
        usage.output_tokens = n;
    }
    if delta.cache_creation_input_tokens.is_some() {
        usage.cache_creation_input_tokens = delta.cache_creation_input_tokens;
    }
    if delta.cache_read_input_tokens.is_some() {
        usage.cache_read_input_tokens = delta.cache_read_input_tokens;
    }
}

/// The kind of the content block currently open in a [`ToAnthropic`] stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Text(u32),
    Tool(u32),
}

/// OpenAI chunks → Anthropic's event sequence for the model name the caller asked for:
/// `message_start`, then per content block `content_block_start` / `_delta`s / `_stop`, then
/// (from [`ToAnthropic::finish`]) `message_delta` with the stop reason and usage, and
/// `message_stop`.
pub struct ToAnthropic {
    model: String,
    started: bool,
    next_block: u32,
    open: Option<Open>,
    /// OpenAI tool-call index → (Anthropic block index, the call's id).
    tool_blocks: Vec<(u32, u32, Option<String>)>,
    stop_reason: Option<&'static str>,
    usage: Option<UsageDetail>,
    /// The recovery marker of the chunks (`"switchyard"`), passed on in `message_delta`.
    marker: Option<Value>,
    /// A text delta's SSE frame before and after its text, and the block index it was made
    /// for ([`ToAnthropic::text_chunk`]).
    text_template: Option<(u32, StringSlot)>,
    /// The bytes around the text of the last text chunk parsed whole (see [`TextShape`]).
    text_shape: TextShape,
}

/// What [`ToAnthropic::text_chunk`] reads of an OpenAI chunk, borrowed from its JSON: enough
/// to tell a chunk that only continues the text (one choice, index 0, non-empty `content`,
/// no refusal, tool call, finish reason, usage or recovery marker) from any other.
#[derive(serde::Deserialize)]
struct TextChunkPeek<'a> {
    #[serde(borrow)]
    choices: (ChoicePeek<'a>,),
    #[serde(default)]
    usage: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    switchyard: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct ChoicePeek<'a> {
    index: u32,
    #[serde(borrow)]
    delta: DeltaPeek<'a>,
    #[serde(default)]
    finish_reason: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct DeltaPeek<'a> {
    #[serde(default, borrow)]
    content: Option<Str<'a>>,
    #[serde(default)]
    refusal: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    tool_calls: Option<serde::de::IgnoredAny>,
}

impl ToAnthropic {
    pub fn new(model: &str) -> ToAnthropic {
        ToAnthropic {
            model: model.to_owned(),
            started: false,
            next_block: 0,
            open: None,
            tool_blocks: Vec::new(),
            stop_reason: None,
            usage: None,
            marker: None,
            text_template: None,
            text_shape: TextShape::default(),
        }
    }

    /// The SSE frame for the OpenAI chunk `data` if it only continues the text block already
    /// open (by far the commonest chunk of a stream), made without parsing the chunk whole: its
    /// text is read in place and written into a frame made once per block. What
    /// [`ToAnthropic::on_chunk`] would give, byte for byte, once framed. `None` for any other
    /// chunk: parse it and pass it to `on_chunk`.
    ///
    /// A chunk of the same bytes as the last one parsed, around another text, is not parsed
    /// at all (every text chunk of a stream is, but for its text).
    pub fn text_chunk(&mut self, data: &[u8]) -> Option<Bytes> {
        let Some(Open::Text(index)) = self.open else { return None };
        let text = match shaped_str(&self.text_shape, data) {
            Some(text) => text,
            None => {
                let peek: TextChunkPeek<'_> = crate::wire::json::from_slice(data).ok()?;
                let (choice,) = peek.choices;
                let delta = choice.delta;
                if choice.index != 0 || choice.finish_reason.is_some() || delta.refusal.is_some() || delta.tool_calls.is_some() || peek.usage.is_some() || peek.switchyard.is_some() {
                    return None;
                }
                let Str(text) = delta.content?;
                learn_shape(&mut self.text_shape, data, &text);
                text
            }
        };
        if text.is_empty() {
            return None;
        }
        if self.text_template.as_ref().is_none_or(|(made_for, _)| *made_for != index) {
            let empty = StreamEvent::ContentBlockDelta { index, delta: BlockDelta::TextDelta { text: String::new() } }.to_sse();
            self.text_template = Some((index, StringSlot::at_last(&empty, "text")?));
        }
        let (_, template) = self.text_template.as_ref()?;
        Some(template.fill(&text))
    }

    /// Usage learned outside the chunks' JSON (e.g. by the gateway for itself), used when no
    /// chunk carries any.
    pub fn fallback_usage(&mut self, usage: UsageSummary) {
        if self.usage.is_none() {
            self.usage = Some(UsageDetail {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.total_tokens,
                ..Default::default()
            });
        }
    }

    /// Translates one OpenAI chunk.
    pub fn on_chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        self.start(&chunk.id, &mut out);
        if let Some(Some(usage)) = &chunk.usage {
            self.usage = Some(*usage);
        }
        if let Some(marker) = &chunk.switchyard {
            self.marker = Some(marker.clone());
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            self.on_delta(&choice.delta, &mut out);
            if let Some(reason) = &choice.finish_reason {
                self.stop_reason = Some(stop_reason_from_finish(reason));
                self.close(&mut out);
            }
        }
        out
    }

    /// The end of the OpenAI stream: close the open block, then `message_delta` and `message_stop`.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        self.start("", &mut out);
        self.close(&mut out);
        let usage = self.usage.map(|u| super::response::usage_from_openai(&u)).unwrap_or_default();
        let mut extra = Map::new();
        if let Some(marker) = self.marker.take() {
            extra.insert("switchyard".into(), marker);
        }
        out.push(StreamEvent::MessageDelta {
            delta: MessageDeltaBody { stop_reason: Some(self.stop_reason.unwrap_or("end_turn").into()), stop_sequence: None, extra },
            usage: DeltaUsage {
                input_tokens: Some(usage.input_tokens),
                cache_creation_input_tokens: usage.cache_creation_input_tokens,
                cache_read_input_tokens: usage.cache_read_input_tokens,
                output_tokens: Some(usage.output_tokens),
                extra: Map::new(),
            },
        });
        out.push(StreamEvent::MessageStop);
        out
    }

    fn start(&mut self, openai_id: &str, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = if openai_id.is_empty() { "msg_switchyard".to_owned() } else { message_id(openai_id) };
        let message = Message {
            id,
            kind: "message".into(),
            role: "assistant".into(),
            content: Vec::new(),
            model: self.model.clone(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage { input_tokens: 0, output_tokens: 0, ..Default::default() },
        };
        out.push(StreamEvent::MessageStart { message });
    }

    fn on_delta(&mut self, delta: &Delta, out: &mut Vec<StreamEvent>) {
        for text in [&delta.content, &delta.refusal].into_iter().flatten().filter(|t| !t.is_empty()) {
            let index = self.text_block(out);
            out.push(StreamEvent::ContentBlockDelta { index, delta: BlockDelta::TextDelta { text: text.clone() } });
        }
        for call in delta.tool_calls.iter().flatten() {
            self.on_tool_call(call, out);
        }
    }

    /// A tool-call delta: the first for an index opens a `tool_use` block, argument fragments
    /// become `input_json_delta`s of that block.
    fn on_tool_call(&mut self, call: &ToolCall, out: &mut Vec<StreamEvent>) {
        let openai_index = call.index.unwrap_or(0);
        // Some servers repeat the id on every delta of a call: only a new index or id opens a block.
        let known = self.tool_blocks.iter().find(|(i, _, id)| *i == openai_index && (call.id.is_none() || call.id == *id));
        let block = match known {
            Some((_, block, _)) => *block,
            None => self.open_tool(openai_index, call, out),
        };
        if let Some(fragment) = call.function.arguments.as_deref().filter(|a| !a.is_empty()) {
            let delta = BlockDelta::InputJsonDelta { partial_json: fragment.to_owned() };
            out.push(StreamEvent::ContentBlockDelta { index: block, delta });
        }
    }

    fn open_tool(&mut self, openai_index: u32, call: &ToolCall, out: &mut Vec<StreamEvent>) -> u32 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some(Open::Tool(index));
        self.tool_blocks.retain(|(i, _, _)| *i != openai_index);
        self.tool_blocks.push((openai_index, index, call.id.clone()));
        let block = ToolUseBlock {
            id: call.id.clone().unwrap_or_else(|| format!("toolu_{index}")),
            name: call.function.name.clone().unwrap_or_default(),
            input: json!({}),
            extra: Map::new(),
        };
        out.push(StreamEvent::ContentBlockStart { index, content_block: ContentBlock::ToolUse(block) });
        index
    }

    /// The index of the open text block, opening one (and closing any other) if needed.
    fn text_block(&mut self, out: &mut Vec<StreamEvent>) -> u32 {
        if let Some(Open::Text(index)) = self.open {
            return index;
        }
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some(Open::Text(index));
        let block = ContentBlock::Text(TextBlock { text: String::new(), extra: Map::new() });
        out.push(StreamEvent::ContentBlockStart { index, content_block: block });
        index
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some(Open::Text(index) | Open::Tool(index)) = self.open.take() {
            out.push(StreamEvent::ContentBlockStop { index });
        }
    }
}
