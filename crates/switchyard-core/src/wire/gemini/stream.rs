//! Gemini's `streamGenerateContent?alt=sse` stream → OpenAI `chat.completion.chunk`s.
//!
//! Each SSE `data:` is a whole `GenerateContentResponse` holding the next piece of each
//! candidate. Gemini has no role preamble, no `[DONE]` and no separate usage event: the
//! translation emits OpenAI's role preamble when a candidate first appears, a content delta per
//! text piece, one tool-call delta per `functionCall` (Gemini sends each call whole, so the delta
//! carries its id, name and complete arguments), a finish chunk per candidate, and, once every
//! candidate has finished, the usage (a usage chunk when the caller asked for
//! `stream_options.include_usage`, and always as [`Chunk::usage`] on the last chunk,
//! so the gateway learns it either way). A stream that ends before a `finishReason` is a failure.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{AnswerMeta, Candidate, NormalizeError, Usage, UsageMetadata, answer_parts, blocked, finish_reason, parse_response, usage};
use crate::wire::chunk::Chunk;
use crate::wire::json::{self, Str, StringSlot};
use crate::wire::openai::types::{ChatCompletionChunk, ChunkChoice, Delta, UsageDetail};
use crate::wire::sse::SseParser;

/// Why a stream failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// Gemini sent an error event.
    Upstream(String),
    /// An event is not a Gemini response.
    Invalid(String),
    /// The stream ended before every candidate finished.
    Incomplete,
    /// An event exceeded the SSE parser's limit.
    TooLarge,
}

/// Per-candidate progress.
#[derive(Default)]
struct CandidateState {
    tool_calls: u32,
    finished: bool,
}

/// What [`StreamTranslator::text_event`] reads of an event, borrowed from its JSON: enough to
/// tell an event that only continues a candidate's text (one candidate, one part, text that
/// is not a thought, no finish reason, no prompt feedback, no error) from any other.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TextEventPeek<'a> {
    #[serde(borrow)]
    candidates: (CandidatePeek<'a>,),
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    prompt_feedback: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CandidatePeek<'a> {
    #[serde(borrow)]
    content: ContentPeek<'a>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
    #[serde(default)]
    index: u32,
}

#[derive(Deserialize)]
struct ContentPeek<'a> {
    #[serde(borrow)]
    parts: (PartPeek<'a>,),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartPeek<'a> {
    #[serde(borrow)]
    text: Str<'a>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default)]
    function_call: Option<IgnoredAny>,
}

/// Translates the events of one stream, in order.
pub struct StreamTranslator {
    meta: AnswerMeta,
    include_usage: bool,
    /// Set from the first event's `responseId`.
    id: Option<String>,
    candidates: BTreeMap<u32, CandidateState>,
    usage: Option<UsageMetadata>,
    done: bool,
    /// A text chunk's JSON before and after its content string, and the candidate it was made
    /// for ([`StreamTranslator::text_chunk`]).
    text_template: Option<(u32, StringSlot)>,
}

impl StreamTranslator {
    pub fn new(meta: AnswerMeta, include_usage: bool) -> Self {
        StreamTranslator { meta, include_usage, id: None, candidates: BTreeMap::new(), usage: None, done: false, text_template: None }
    }

    /// Every candidate has finished and the usage has been emitted.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Translates one event's data. Events after the end are ignored.
    pub fn on_event(&mut self, data: &[u8]) -> Result<Vec<Chunk>, StreamError> {
        let mut out = Vec::new();
        self.translate(data, &mut out)?;
        Ok(out)
    }

    /// [`StreamTranslator::on_event`], appending to `out`.
    fn translate(&mut self, data: &[u8], out: &mut Vec<Chunk>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        if let Some(chunk) = self.text_event(data) {
            out.push(chunk);
            return Ok(());
        }
        self.translate_whole(data, out)
    }

    /// [`StreamTranslator::translate`] of any event: parsed whole.
    fn translate_whole(&mut self, data: &[u8], out: &mut Vec<Chunk>) -> Result<(), StreamError> {
        let response = parse_response(data).map_err(|e| match e {
            NormalizeError::Upstream(m) => StreamError::Upstream(m),
            NormalizeError::Invalid(m) => StreamError::Invalid(m),
        })?;
        if self.id.is_none() {
            self.id = Some(self.meta.id_for(response.response_id.as_deref()));
        }
        if let Some(u) = response.usage_metadata {
            self.usage = Some(u);
        }
        for candidate in &response.candidates {
            self.on_candidate(candidate, out);
        }
        if response.candidates.is_empty() && blocked(&response).is_some() {
            self.on_prompt_blocked(out);
        }
        self.finish_if_all_done(out);
        Ok(())
    }

    /// The chunk for an event that only continues the text of a candidate already under way
    /// (by far the commonest event of a stream), made without parsing the event whole: its
    /// text is read in place and written into the candidate's text chunk
    /// ([`StreamTranslator::text_chunk`]), and its usage, if any, kept. What the full
    /// translation would give, byte for byte. `None` for any other event (the first, one with
    /// several candidates or parts, a thought, a function call, a finish reason, an error, an
    /// empty text, invalid JSON): translate it whole.
    fn text_event(&mut self, data: &[u8]) -> Option<Chunk> {
        self.id.as_ref()?;
        let peek: TextEventPeek<'_> = json::from_slice(data).ok()?;
        let (candidate,) = &peek.candidates;
        let (part,) = &candidate.content.parts;
        let text = part.text.0.as_ref();
        let ongoing = self.candidates.get(&candidate.index).is_some_and(|c| !c.finished);
        if !ongoing
            || text.is_empty()
            || part.thought == Some(true)
            || part.function_call.is_some()
            || candidate.finish_reason.is_some()
            || peek.prompt_feedback.is_some()
            || peek.error.is_some()
        {
            return None;
        }
        if let Some(u) = peek.usage_metadata {
            self.usage = Some(u);
        }
        Some(self.text_chunk(candidate.index, text))
    }

    /// At the end of the upstream stream: an error unless every candidate finished.
    pub fn on_end(&mut self) -> Result<(), StreamError> {
        if self.done { Ok(()) } else { Err(StreamError::Incomplete) }
    }

    fn on_candidate(&mut self, candidate: &Candidate, out: &mut Vec<Chunk>) {
        let index = candidate.index;
        self.preamble_once(index, out);
        let (text, mut calls) = answer_parts(candidate.content.as_ref(), &mut self.meta.call_ids);
        if !text.is_empty() {
            out.push(self.text_chunk(index, &text));
        }
        for call in &mut calls {
            let state = self.candidates.entry(index).or_default();
            call.index = Some(state.tool_calls);
            state.tool_calls += 1;
        }
        for call in calls {
            let delta = Delta { tool_calls: Some(vec![call]), ..Delta::default() };
            out.push(self.chunk(index, delta, None, true));
        }
        if let Some(reason) = candidate.finish_reason.as_deref() {
            let state = self.candidates.entry(index).or_default();
            if !state.finished {
                state.finished = true;
                let finish = finish_reason(Some(reason), state.tool_calls > 0);
                out.push(self.chunk(index, Delta::default(), Some(finish), false));
            }
        }
    }

    /// No candidates and a `promptFeedback.blockReason`: the prompt was refused.
    fn on_prompt_blocked(&mut self, out: &mut Vec<Chunk>) {
        self.preamble_once(0, out);
        let state = self.candidates.entry(0).or_default();
        if !state.finished {
            state.finished = true;
            out.push(self.chunk(0, Delta::default(), Some("content_filter"), false));
        }
    }

    /// OpenAI's role-only first chunk, once per candidate.
    fn preamble_once(&mut self, index: u32, out: &mut Vec<Chunk>) {
        if self.candidates.contains_key(&index) {
            return;
        }
        self.candidates.insert(index, CandidateState::default());
        let delta = Delta { role: Some("assistant".into()), content: Some(String::new()), ..Delta::default() };
        out.push(self.chunk(index, delta, None, false));
    }

    /// Once every candidate seen has finished: the usage, on a chunk of its own when the caller
    /// asked for it, and for the gateway on the last chunk either way.
    fn finish_if_all_done(&mut self, out: &mut Vec<Chunk>) {
        if self.candidates.is_empty() || !self.candidates.values().all(|c| c.finished) {
            return;
        }
        self.done = true;
        let detail = self.usage.as_ref().map(usage);
        if self.include_usage {
            out.push(self.encode(Vec::new(), Some(detail), false, false, detail.map(|d| d.summary())));
        } else if let Some(last) = out.last_mut() {
            last.usage = detail.map(|d| d.summary());
        }
    }

    /// What `chunk` gives for a text delta, written into the chunk made once per candidate
    /// with empty content (split at its last `"content":`: the alias and id before it are
    /// escaped, so they cannot end the search early) rather than built and serialized anew.
    fn text_chunk(&mut self, index: u32, text: &str) -> Chunk {
        if self.text_template.as_ref().is_none_or(|(made_for, _)| *made_for != index) {
            let empty = self.chunk(index, Delta { content: Some(String::new()), ..Delta::default() }, None, true).data;
            match StringSlot::at_last(&empty, "content") {
                Some(slot) => self.text_template = Some((index, slot)),
                None => return self.chunk(index, Delta { content: Some(text.to_owned()), ..Delta::default() }, None, true),
            }
        }
        let (_, template) = self.text_template.as_ref().expect("made above");
        Chunk::text(template, text)
    }

    fn chunk(&self, index: u32, delta: Delta, finish: Option<&str>, content: bool) -> Chunk {
        let choice = ChunkChoice { index, delta, logprobs: None, finish_reason: finish.map(str::to_owned) };
        let usage = self.include_usage.then_some(None);
        self.encode(vec![choice], usage, content, finish.is_some(), None)
    }

    fn encode(&self, choices: Vec<ChunkChoice>, usage: Option<Option<UsageDetail>>, content: bool, finish: bool, summary: Option<Usage>) -> Chunk {
        let chunk = ChatCompletionChunk {
            id: self.id.clone().unwrap_or_else(|| self.meta.id.clone()),
            object: "chat.completion.chunk".into(),
            created: self.meta.created,
            model: self.meta.alias.clone(),
            choices,
            usage,
            switchyard: None,
        };
        Chunk::serialized(&chunk, content, finish, summary)
    }
}

/// SSE bytes in, OpenAI chunks out: [`SseParser`] feeding a [`StreamTranslator`].
pub struct SseTranslator {
    parser: SseParser,
    translator: StreamTranslator,
}

impl SseTranslator {
    pub fn new(meta: AnswerMeta, include_usage: bool) -> Self {
        SseTranslator { parser: SseParser::new(), translator: StreamTranslator::new(meta, include_usage) }
    }

    /// Every candidate has finished.
    pub fn is_done(&self) -> bool {
        self.translator.is_done()
    }

    /// Translates what `bytes` completes.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Chunk>, StreamError> {
        self.parser.push(bytes);
        let mut out = Vec::new();
        while let Some(event) = self.parser.next_event().map_err(|_| StreamError::TooLarge)? {
            self.translator.translate(&event.data, &mut out)?;
        }
        Ok(out)
    }

    /// At the end of the body: a last event without its blank line, then the completeness check.
    pub fn end(&mut self) -> Result<Vec<Chunk>, StreamError> {
        let out = match self.parser.finish() {
            Some(event) => self.translator.on_event(&event.data)?,
            None => Vec::new(),
        };
        self.translator.on_end()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::gemini::CallIds;

    #[test]
    fn text_events_read_in_place_translate_as_parsed_whole() {
        let part = |p: &str| format!(r#"{{"candidates":[{{"content":{{"parts":[{p}],"role":"model"}},"index":0}}],"usageMetadata":{{"promptTokenCount":3,"candidatesTokenCount":1,"totalTokenCount":4}},"responseId":"r1"}}"#);
        let events = [
            (part(r#"{"text":"Hello"}"#), false), // the first: preamble and id
            (part(r#"{"text":" world"}"#), true),
            (part(r#"{"text":" \"quoted\" \u00e9\n \\ ü"}"#), true),
            (part(r#"{"text":" signed","thoughtSignature":"c2ln"}"#), true),
            (part(r#"{"text":" plain","thought":false}"#), true),
            (r#"{"candidates":[{"content":{"parts":[{"text":" no usage"}]},"index":0,"safetyRatings":[]}]}"#.to_owned(), true),
            (part(r#"{"text":"thinking","thought":true}"#), false),
            (part(r#"{"text":""}"#), false),
            (part(r#"{"text":"a"},{"text":"b"}"#), false),
            (part(r#"{"functionCall":{"name":"f","args":{}}}"#), false),
            (r#"{"candidates":[{"content":{"parts":[{"text":" one"}]},"index":1}]}"#.to_owned(), false), // a new candidate
            (r#"{"candidates":[{"content":{"parts":[{"text":" two"}]},"index":1}]}"#.to_owned(), true),
            (r#"{"candidates":[{"content":{"parts":[{"text":" x"}]},"index":0}],"promptFeedback":{"blockReason":"OTHER"}}"#.to_owned(), false),
            (r#"{"candidates":[{"content":{"parts":[{"text":" end"}]},"finishReason":"STOP","index":0}]}"#.to_owned(), false),
            (r#"{"candidates":[{"content":{"parts":[{"text":" end"}]},"finishReason":"MAX_TOKENS","index":1}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":9,"totalTokenCount":12}}"#.to_owned(), false),
        ];
        for include_usage in [false, true] {
            let meta = || AnswerMeta { alias: "chat".into(), id: "chatcmpl-x".into(), created: 7, call_ids: CallIds::new("") };
            let (mut peeking, mut whole) = (StreamTranslator::new(meta(), include_usage), StreamTranslator::new(meta(), include_usage));
            for (event, in_place) in &events {
                let took_peek = peeking.id.is_some() && peeking.clone_probe(event.as_bytes());
                assert_eq!(took_peek, *in_place, "{event}");
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let ra = peeking.translate(event.as_bytes(), &mut a);
                let rb = whole.translate_whole(event.as_bytes(), &mut b);
                assert_eq!((ra, a), (rb, b), "{event}");
            }
            assert!(peeking.is_done() && whole.is_done());
            assert_eq!(peeking.usage, whole.usage);
        }
    }

    impl StreamTranslator {
        /// Whether `data` would be read in place, without changing this translator.
        fn clone_probe(&self, data: &[u8]) -> bool {
            let mut probe = StreamTranslator {
                meta: AnswerMeta { alias: self.meta.alias.clone(), id: self.meta.id.clone(), created: self.meta.created, call_ids: CallIds::new("") },
                include_usage: self.include_usage,
                id: self.id.clone(),
                candidates: self.candidates.iter().map(|(i, c)| (*i, CandidateState { tool_calls: c.tool_calls, finished: c.finished })).collect(),
                usage: self.usage,
                done: self.done,
                text_template: None,
            };
            probe.text_event(data).is_some()
        }
    }

    #[test]
    fn a_text_chunk_from_the_template_is_the_chunk_built_whole() {
        for include_usage in [false, true] {
            let meta = AnswerMeta { alias: r#"chat "content":"" \ alias"#.into(), id: "chatcmpl-x".into(), created: 7, call_ids: CallIds::new("") };
            let mut t = StreamTranslator::new(meta, include_usage);
            t.id = Some(r#"chatcmpl-"content":""#.into());
            for index in [0, 1, 0] {
                for text in ["Hello", " \"quoted\" \\ back/slash", "line\nbreak\ttab", "\u{1}\u{7f} control", "Zürich 🌤", "\u{2028}"] {
                    let whole = t.chunk(index, Delta { content: Some(text.to_owned()), ..Delta::default() }, None, true);
                    assert_eq!(t.text_chunk(index, text), whole, "candidate {index}, {text:?}");
                }
            }
        }
    }
}
