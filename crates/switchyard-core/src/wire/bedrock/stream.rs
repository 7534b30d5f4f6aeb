//! ConverseStream events (decoded from the event-stream framing) as OpenAI chunks.
//!
//! `messageStart` → the role preamble; `contentBlockDelta` text → content deltas, reasoning →
//! `reasoning_content` deltas; `contentBlockStart` with a `toolUse` → a `tool_calls` delta with
//! id and name, then each `delta.toolUse.input` fragment → an argument fragment of that call,
//! one for one; `messageStop` → the finish chunk; `metadata` → the usage (a usage chunk for
//! callers who asked; always the last chunk's [`Chunk::usage`]). An exception frame is an
//! error.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::eventstream::{EventStreamDecoder, Frame, FrameError};
use super::{AnswerMeta, TokenUsage, finish_reason, usage_to_openai};
use crate::wire::chunk::Chunk;
use crate::wire::json::{Str, StringSlot};
use crate::wire::openai::types::{ChatCompletionChunk, ChunkChoice, Delta, FunctionCall, ToolCall, UsageDetail};

/// Why a stream failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// An exception frame: its `:exception-type` (or `:error-code`) and message.
    Exception { kind: String, message: String },
    /// Framing or an event payload that does not parse.
    Invalid(String),
    /// The stream ended before `messageStop`.
    Incomplete,
}

impl From<FrameError> for StreamError {
    fn from(e: FrameError) -> Self {
        StreamError::Invalid(e.to_string())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    start: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    delta: Value,
}

/// The text of a `contentBlockDelta` that carries text (nearly every event of a stream), read
/// without building the delta as a `Value`; `None` for any other delta.
#[derive(Deserialize)]
struct TextDelta<'a> {
    #[serde(borrow)]
    delta: TextOnly<'a>,
}

#[derive(Deserialize)]
struct TextOnly<'a> {
    #[serde(borrow, default)]
    text: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct ExceptionBody {
    #[serde(default, alias = "Message")]
    message: Option<String>,
}

/// Bytes in, chunks out.
pub struct StreamTranslator {
    decoder: EventStreamDecoder,
    meta: AnswerMeta,
    include_usage: bool,
    sent_role: bool,
    /// Content (text, reasoning or a tool call) went out.
    content_sent: bool,
    /// contentBlockIndex → OpenAI tool-call index.
    tools: HashMap<u64, u32>,
    finished: bool,
    done: bool,
    /// A content chunk with its text left open, made at the first text delta: every text
    /// chunk of the stream is the same but for the text ([`StreamTranslator::text_chunk`]).
    text_template: Option<StringSlot>,
}

impl StreamTranslator {
    pub fn new(meta: AnswerMeta, include_usage: bool) -> Self {
        StreamTranslator {
            decoder: EventStreamDecoder::new(),
            meta,
            include_usage,
            sent_role: false,
            content_sent: false,
            tools: HashMap::new(),
            finished: false,
            done: false,
            text_template: None,
        }
    }

    /// `messageStop` arrived: nothing of the answer is lost if the connection ends now.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The usage arrived: the stream is complete.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Content reached the caller (an error now can no longer be hidden by a failover).
    pub fn content_sent(&self) -> bool {
        self.content_sent
    }

    /// Feeds bytes; returns the chunks of every frame they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Chunk>, StreamError> {
        self.decoder.push(bytes);
        let mut out = Vec::new();
        while let Some(frame) = self.decoder.next_frame()? {
            self.on_frame(frame, &mut out)?;
        }
        Ok(out)
    }

    /// The body ended: an error unless the answer finished.
    pub fn end(&mut self) -> Result<(), StreamError> {
        // After messageStop, a torn or missing metadata frame loses only the usage.
        if self.finished { Ok(()) } else { Err(StreamError::Incomplete) }
    }

    fn chunk(&self, delta: Delta, finish: Option<String>, content: bool) -> Chunk {
        let c = ChatCompletionChunk {
            id: self.meta.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.meta.created,
            model: self.meta.alias.clone(),
            choices: vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish }],
            usage: if self.include_usage { Some(None) } else { None },
            switchyard: None,
        };
        let finish = c.choices[0].finish_reason.is_some();
        Chunk::serialized(&c, content, finish, None)
    }

    fn role(&mut self, out: &mut Vec<Chunk>) {
        if !self.sent_role {
            self.sent_role = true;
            let delta = Delta { role: Some("assistant".into()), content: Some(String::new()), ..Default::default() };
            out.push(self.chunk(delta, None, false));
        }
    }

    fn content(&mut self, delta: Delta, out: &mut Vec<Chunk>) {
        self.content_sent = true;
        out.push(self.chunk(delta, None, true));
    }

    /// The content chunk of a non-empty text delta: the stream's template with `text` in it,
    /// the bytes [`Self::content`] would build.
    fn text_chunk(&mut self, text: &str, out: &mut Vec<Chunk>) {
        if self.text_template.is_none() {
            let empty = self.chunk(Delta { content: Some(String::new()), ..Default::default() }, None, true);
            self.text_template = StringSlot::at_last(&empty.data, "content");
        }
        let chunk = match &self.text_template {
            Some(slot) => Chunk::text(slot, text),
            None => self.chunk(Delta { content: Some(text.to_owned()), ..Default::default() }, None, true),
        };
        self.content_sent = true;
        out.push(chunk);
    }

    fn on_frame(&mut self, frame: Frame, out: &mut Vec<Chunk>) -> Result<(), StreamError> {
        match frame.header(":message-type").unwrap_or("event") {
            "event" => {}
            "exception" => {
                let kind = frame.header(":exception-type").unwrap_or("exception").to_owned();
                let message = crate::wire::json::from_slice::<ExceptionBody>(&frame.payload)
                    .ok()
                    .and_then(|b| b.message)
                    .unwrap_or_else(|| String::from_utf8_lossy(&frame.payload).into_owned());
                return Err(StreamError::Exception { kind, message });
            }
            _ => {
                let kind = frame.header(":error-code").unwrap_or("error").to_owned();
                let message = frame.header(":error-message").unwrap_or("").to_owned();
                return Err(StreamError::Exception { kind, message });
            }
        }
        let kind = frame.header(":event-type").unwrap_or("");
        let parse_err = |e: serde_json::Error| StreamError::Invalid(format!("bad `{kind}` event: {e}"));
        match kind {
            "messageStart" => self.role(out),
            "contentBlockStart" => {
                self.role(out);
                let s: BlockStart = crate::wire::json::from_slice(&frame.payload).map_err(parse_err)?;
                if let Some(tu) = s.start.get("toolUse") {
                    let index = self.tool_index(s.content_block_index);
                    let call = ToolCall {
                        index: Some(index),
                        id: tu.get("toolUseId").and_then(Value::as_str).map(str::to_owned),
                        kind: Some("function".into()),
                        function: FunctionCall {
                            name: tu.get("name").and_then(Value::as_str).map(str::to_owned),
                            arguments: Some(String::new()),
                        },
                        extra_content: None,
                    };
                    self.content(Delta { tool_calls: Some(vec![call]), ..Default::default() }, out);
                }
            }
            "contentBlockDelta" => {
                self.role(out);
                if let Ok(TextDelta { delta: TextOnly { text: Some(Str(text)) } }) = crate::wire::json::from_slice(&frame.payload) {
                    if !text.is_empty() {
                        self.text_chunk(&text, out);
                    }
                    return Ok(());
                }
                let d: BlockDelta = crate::wire::json::from_slice(&frame.payload).map_err(parse_err)?;
                if let Some(t) = d.delta.get("text").and_then(Value::as_str) {
                    if !t.is_empty() {
                        self.text_chunk(t, out);
                    }
                } else if let Some(tu) = d.delta.get("toolUse") {
                    let fragment = tu.get("input").and_then(Value::as_str).unwrap_or("");
                    let index = self.tool_index(d.content_block_index);
                    let call = ToolCall {
                        index: Some(index),
                        function: FunctionCall { name: None, arguments: Some(fragment.to_owned()) },
                        ..Default::default()
                    };
                    self.content(Delta { tool_calls: Some(vec![call]), ..Default::default() }, out);
                } else if let Some(r) = d.delta.get("reasoningContent") {
                    if let Some(t) = r.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                        let mut delta = Delta::default();
                        delta.extra.insert("reasoning_content".into(), t.into());
                        self.content(delta, out);
                    }
                }
            }
            "contentBlockStop" => {}
            "messageStop" => {
                self.role(out);
                let s: MessageStop = crate::wire::json::from_slice(&frame.payload).map_err(parse_err)?;
                let reason = s.stop_reason.as_deref().unwrap_or("end_turn");
                let mut finish = finish_reason(reason);
                // Some models stop with end_turn after a tool call.
                if finish == "stop" && !self.tools.is_empty() {
                    finish = "tool_calls";
                }
                self.finished = true;
                out.push(self.chunk(Delta::default(), Some(finish.into()), false));
            }
            "metadata" => {
                let m: Metadata = crate::wire::json::from_slice(&frame.payload).map_err(parse_err)?;
                if let Some(u) = m.usage {
                    let usage = usage_to_openai(&u);
                    out.push(self.usage_chunk(usage));
                }
                self.done = true;
            }
            // Unknown events (newer API versions) are skipped.
            _ => {}
        }
        Ok(())
    }

    fn usage_chunk(&self, usage: UsageDetail) -> Chunk {
        if self.include_usage {
            let c = ChatCompletionChunk {
                id: self.meta.id.clone(),
                object: "chat.completion.chunk".into(),
                created: self.meta.created,
                model: self.meta.alias.clone(),
                choices: Vec::new(),
                usage: Some(Some(usage)),
                switchyard: None,
            };
            Chunk::serialized(&c, false, false, Some(usage.summary()))
        } else {
            Chunk::new(Bytes::new(), false, false, Some(usage.summary()))
        }
    }

    fn tool_index(&mut self, block: u64) -> u32 {
        let next = self.tools.len() as u32;
        *self.tools.entry(block).or_insert(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_chunk_from_the_template_is_the_chunk_built_whole() {
        for include_usage in [false, true] {
            let meta = AnswerMeta { id: r#"chatcmpl-"content":"""#.into(), created: 7, alias: r#"chat "content":"" \ alias"#.into() };
            let mut t = StreamTranslator::new(meta, include_usage);
            for text in ["Hello", " \"quoted\" \\ back/slash", "line\nbreak\ttab", "\u{1}\u{7f} control", "Zürich 🌤", "\u{2028}"] {
                let (mut fast, mut whole) = (Vec::new(), Vec::new());
                t.text_chunk(text, &mut fast);
                t.content(Delta { content: Some(text.to_owned()), ..Delta::default() }, &mut whole);
                assert_eq!(fast, whole, "{text:?}");
            }
        }
    }

    #[test]
    fn only_a_text_delta_takes_the_text_path() {
        let frame = |payload: &str| {
            super::super::eventstream::encode(&[(":event-type", "contentBlockDelta"), (":content-type", "application/json"), (":message-type", "event")], payload.as_bytes())
        };
        let meta = AnswerMeta { id: "chatcmpl-x".into(), created: 7, alias: "chat".into() };
        let mut t = StreamTranslator::new(meta, false);
        let texts = |t: &mut StreamTranslator, payload: &str| -> Vec<Value> {
            t.push(&frame(payload)).unwrap().iter().filter(|c| c.content).map(|c| serde_json::from_slice::<Value>(&c.data).unwrap()["choices"][0]["delta"].clone()).collect()
        };
        assert_eq!(texts(&mut t, r#"{"contentBlockIndex":0,"delta":{"text":"a\"b\u00e9"},"p":"abc"}"#), [serde_json::json!({"content": "a\"bé"})]);
        assert!(texts(&mut t, r#"{"contentBlockIndex":0,"delta":{"text":""}}"#).is_empty());
        assert_eq!(
            texts(&mut t, r#"{"contentBlockIndex":1,"delta":{"reasoningContent":{"text":"hmm"}}}"#),
            [serde_json::json!({"reasoning_content": "hmm"})]
        );
        assert_eq!(
            texts(&mut t, r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"q\""}}}"#),
            [serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\""}}]})]
        );
    }
}
