//! The OpenAI chat-completions wire format: reading just enough of a request to route it,
//! rewriting its `model` without touching the rest, and normalizing answers from
//! OpenAI-compatible providers so that every provider looks the same to the caller.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

pub mod embeddings;
pub mod features;
pub mod types;

use super::chunk::{EVENT_END, EVENT_START};
use super::json::{as_str, write_key, write_str};
use super::scan;

/// Token usage as reported by the upstream (or counted by a provider adapter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// An incoming chat request: the raw body plus the few fields routing needs.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    pub body: Bytes,
    /// The alias the caller asked for.
    pub model: String,
    /// Byte range of the `model` value (including its quotes) within `body`.
    model_span: Range<usize>,
    pub stream: bool,
    /// `stream_options.include_usage` was set.
    pub include_usage: bool,
    /// The caller sent a `stream_options` object.
    pub has_stream_options: bool,
    /// The caller's original body when the request arrived in another wire format (boxed: the
    /// OpenAI path never sets it and keeps a small request).
    native: Option<Box<NativeBody>>,
}

/// A request body in another wire format than OpenAI's, kept beside its OpenAI translation so
/// that a provider speaking that format natively can send it as the caller wrote it.
#[derive(Clone, Debug)]
pub struct NativeBody {
    pub format: super::Format,
    pub body: Bytes,
    /// Byte range of the `model` value (including its quotes) within `body`.
    model_span: Range<usize>,
}

impl NativeBody {
    /// Checks a native body that, like Anthropic's Messages request, has top-level `model` and
    /// `messages` as OpenAI's has (so the same single-pass peek validates it and finds `model`).
    pub fn parse(format: super::Format, body: Bytes) -> Result<NativeBody, RequestError> {
        let peeked = ChatRequest::parse(body)?;
        Ok(NativeBody { format, body: peeked.body, model_span: peeked.model_span })
    }

    /// The body with `model` replaced by `upstream_model`; every other byte is unchanged.
    pub fn body_with_model(&self, upstream_model: &str) -> Bytes {
        splice_model(&self.body, self.model_span.clone(), upstream_model, b"")
    }
}

/// Why a request body was rejected (an HTTP 400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    pub message: String,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl RequestError {
    fn new(message: impl Into<String>, param: Option<&'static str>, code: Option<&'static str>) -> Self {
        RequestError { message: message.into(), param, code }
    }
}

enum Field {
    Model,
    Messages,
    Stream,
    StreamOptions,
    Other,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "model" => Field::Model,
                    "messages" => Field::Messages,
                    "stream" => Field::Stream,
                    "stream_options" => Field::StreamOptions,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Default)]
struct Peek<'a> {
    model: Option<&'a RawValue>,
    messages: Option<&'a RawValue>,
    stream: Option<bool>,
    include_usage: bool,
    has_stream_options: bool,
}

impl<'de> Visitor<'de> for Peek<'de> {
    type Value = Peek<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Model => self.model = Some(map.next_value()?),
                Field::Messages => self.messages = Some(map.next_value()?),
                Field::Stream => self.stream = map.next_value::<Option<bool>>()?,
                Field::StreamOptions => {
                    let opts: Option<StreamOptions> = map.next_value()?;
                    self.has_stream_options = opts.is_some();
                    self.include_usage = opts.and_then(|o| o.include_usage).unwrap_or(false);
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(self)
    }
}

impl ChatRequest {
    /// Reads `model`, `messages`, `stream` and `stream_options` from a request body and checks
    /// that it is one well-formed JSON object; every other field is left as raw bytes.
    pub fn parse(body: Bytes) -> Result<ChatRequest, RequestError> {
        let text = std::str::from_utf8(&body)
            .map_err(|_| RequestError::new("the request body is not valid UTF-8", None, None))?;
        let mut de = serde_json::Deserializer::from_str(text);
        let peek = de
            .deserialize_map(Peek::default())
            .and_then(|p| de.end().map(|_| p))
            .map_err(|e| {
                RequestError::new(
                    format!("We could not parse the JSON body of your request. ({e})"),
                    None,
                    Some("invalid_json"),
                )
            })?;
        let raw_model = peek.model.filter(|m| m.get() != "null").ok_or_else(|| {
            RequestError::new("you must provide a model parameter", Some("model"), Some("missing_required_parameter"))
        })?;
        let model = as_str(raw_model)
            .ok_or_else(|| RequestError::new("'model' must be a string", Some("model"), Some("invalid_type")))?
            .into_owned();
        match peek.messages {
            None => {
                return Err(RequestError::new(
                    "Missing required parameter: 'messages'.",
                    Some("messages"),
                    Some("missing_required_parameter"),
                ));
            }
            Some(m) if !m.get().starts_with('[') => {
                return Err(RequestError::new("'messages' must be an array", Some("messages"), Some("invalid_type")));
            }
            Some(_) => {}
        }
        let start = raw_model.get().as_ptr() as usize - text.as_ptr() as usize;
        let model_span = start..start + raw_model.get().len();
        Ok(ChatRequest {
            stream: peek.stream.unwrap_or(false),
            include_usage: peek.include_usage,
            has_stream_options: peek.has_stream_options,
            model,
            model_span,
            body,
            native: None,
        })
    }

    /// Attaches the caller's original body (this request being its OpenAI translation).
    pub fn with_native(mut self, native: NativeBody) -> ChatRequest {
        self.native = Some(Box::new(native));
        self
    }

    /// The caller's original body if it is in `format`.
    pub fn native_in(&self, format: super::Format) -> Option<&NativeBody> {
        self.native.as_deref().filter(|n| n.format == format)
    }

    /// The body with `model` replaced by `upstream_model`; every other byte is unchanged.
    pub fn body_with_model(&self, upstream_model: &str) -> Bytes {
        splice_model(&self.body, self.model_span.clone(), upstream_model, b"")
    }

    /// The body to send upstream: `model` replaced and, when `ask_usage` is set on a stream
    /// whose caller sent no `stream_options`, `"stream_options":{"include_usage":true}` added so
    /// the gateway learns the usage (the caller's stream then gets no usage chunk it did not ask
    /// for: see [`normalize_chunk`]). Every other byte is unchanged.
    pub fn upstream_body(&self, upstream_model: &str, ask_usage: bool) -> Bytes {
        if !(ask_usage && self.stream && !self.has_stream_options) {
            return self.body_with_model(upstream_model);
        }
        const INJECT: &[u8] = br#""stream_options":{"include_usage":true},"#;
        splice_model(&self.body, self.model_span.clone(), upstream_model, INJECT)
    }

    /// The body with `model` replaced and `stream_options` removed, for upstreams that reject
    /// it. Re-serializes the top level (a rare, slower path).
    pub fn body_without_stream_options(&self, upstream_model: &str) -> Bytes {
        let Ok(mut map) = crate::wire::json::from_slice::<serde_json::Map<String, serde_json::Value>>(&self.body) else {
            return self.body_with_model(upstream_model);
        };
        map.remove("stream_options");
        map.insert("model".into(), serde_json::Value::String(upstream_model.into()));
        Bytes::from(serde_json::to_vec(&map).unwrap_or_default())
    }

    /// The text of the last user message (string content, or its text parts joined).
    pub fn last_user_text(&self) -> String {
        #[derive(Deserialize)]
        struct Msg {
            role: String,
            #[serde(default)]
            content: serde_json::Value,
        }
        #[derive(Deserialize)]
        struct Req {
            #[serde(default)]
            messages: Vec<Msg>,
        }
        let Ok(req) = crate::wire::json::from_slice::<Req>(&self.body) else { return String::new() };
        let Some(msg) = req.messages.iter().rev().find(|m| m.role == "user") else { return String::new() };
        match &msg.content {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        }
    }
}

/// `body` with the JSON string at `span` (its quotes included) replaced by `model`, and
/// `inject` written right after the opening brace; every other byte as it was. Sized exactly
/// when `model` needs no escapes, as model names do: `Bytes::from` a `Vec` with room to spare
/// allocates a header to remember its capacity, one allocation (and free) more per request.
fn splice_model(body: &[u8], span: std::ops::Range<usize>, model: &str, inject: &[u8]) -> Bytes {
    let open = if inject.is_empty() { 0 } else { body.iter().position(|&b| b == b'{').map_or(0, |at| at + 1) };
    let mut out = Vec::with_capacity(body.len() - span.len() + model.len() + 2 + inject.len());
    out.extend_from_slice(&body[..open]);
    out.extend_from_slice(inject);
    out.extend_from_slice(&body[open..span.start]);
    write_str(&mut out, model);
    out.extend_from_slice(&body[span.end..]);
    Bytes::from(out)
}

/// Maps a provider's finish reason onto OpenAI's set
/// (`stop`, `length`, `tool_calls`, `content_filter`, `function_call`).
pub fn map_finish_reason(reason: &str) -> &'static str {
    match reason {
        "stop" | "eos" | "eos_token" | "end_turn" | "stop_sequence" | "end" | "complete" | "finished" => "stop",
        "length" | "max_tokens" | "model_length" | "max_length" | "max_output_tokens" | "token_limit" => "length",
        "tool_calls" | "tool_call" | "tool_use" | "function_calls" | "tools" => "tool_calls",
        "function_call" => "function_call",
        "content_filter" | "content_filtered" | "safety" | "recitation" | "blocklist" | "prohibited_content"
        | "spii" | "refusal" | "guardrail_intervened" => "content_filter",
        _ => "stop",
    }
}

/// A response or chunk that cannot be normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NormalizeError {
    /// Not the expected JSON.
    Invalid(String),
    /// The upstream sent an error object (`{"error": ...}`) instead.
    Upstream(String),
}

/// A normalized chunk and what the router needs to know about it.
#[derive(Clone, Debug)]
pub struct NormalizedChunk {
    /// Empty when there is nothing to send to the caller.
    pub data: Bytes,
    /// A chunk's `data` as an SSE event, `data` being the bytes inside (see
    /// [`crate::providers::Chunk::framed`]); empty for a completion.
    pub framed: Bytes,
    pub content: bool,
    pub finish: bool,
    pub usage: Option<Usage>,
    /// Number of choices in the chunk.
    pub choices: usize,
}

/// Normalizes a `chat.completion` body from an OpenAI-compatible provider: `model` becomes the
/// alias, non-standard top-level and per-choice fields are dropped, finish reasons are mapped,
/// `usage` is kept as sent.
pub fn normalize_completion(body: &[u8], alias: &str) -> Result<(Bytes, Option<Usage>), NormalizeError> {
    let n = normalize(body, alias, ChoiceKind::Message, true, None)?;
    Ok((n.data, n.usage))
}

/// Normalizes one `chat.completion.chunk` (the JSON of an SSE `data:` line). With
/// `keep_usage` false (the caller did not ask for usage, the gateway did), the `usage` key is
/// left out of the output, and a usage-only chunk comes back with empty `data` (not to be sent);
/// either way the usage is returned for the gateway.
pub fn normalize_chunk(data: &[u8], alias: &str, keep_usage: bool) -> Result<NormalizedChunk, NormalizeError> {
    normalize_stream_chunk(data, alias, keep_usage, &mut ChunkPrefix::default())
}

/// [`normalize_chunk`] for the chunks of one stream, in order (one `alias` throughout):
/// `prefix` remembers what the members before `choices` of a chunk normalized to, and a chunk
/// that starts with the same bytes (every OpenAI-compatible server repeats `id`, `object`, `created`, `model` and the
/// fingerprint unchanged in each chunk of a stream) takes that output instead of scanning them
/// again: about half of a typical chunk's bytes, and of its cost.
pub fn normalize_stream_chunk(data: &[u8], alias: &str, keep_usage: bool, prefix: &mut ChunkPrefix) -> Result<NormalizedChunk, NormalizeError> {
    let mut n = normalize(data, alias, ChoiceKind::Delta, keep_usage, Some(prefix))?;
    if !keep_usage && n.usage.is_some() && !n.content && !n.finish && n.choices == 0 {
        n.data = Bytes::new();
        n.framed = Bytes::new();
    }
    Ok(n)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ChoiceKind {
    Message,
    Delta,
}

const TOP_LEVEL_KEPT: &[&[u8]] = &[b"id", b"object", b"created", b"system_fingerprint", b"service_tier"];

/// Appends `,` unless `out` is at the start of an object or array.
fn sep(out: &mut Vec<u8>) {
    if !matches!(out.last(), Some(b'{' | b'[')) {
        out.push(b',');
    }
}

/// Appends `"key":` for a key known to need no escaping.
fn raw_key(out: &mut Vec<u8>, key: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
}

/// One pass over the response: members are kept, dropped or replaced by splicing byte ranges
/// found by [`scan`]; values are never decoded except `usage` and `finish_reason`. The scanner
/// descends into `choices` (and each delta) instead of skipping it first, so every byte is
/// read about once.
///
/// With `prefix` (the chunks of one stream), the members before `choices` are copied from the
/// previous chunk's output when their bytes are the same (see [`ChunkPrefix`]).
fn normalize(input: &[u8], alias: &str, kind: ChoiceKind, keep_usage: bool, prefix: Option<&mut ChunkPrefix>) -> Result<NormalizedChunk, NormalizeError> {
    // A chunk is written as the SSE event it will be sent as, `data: {chunk}\n\n`.
    let event = kind == ChoiceKind::Delta;
    let base = if event { EVENT_START.len() } else { 0 };
    let mut out = Vec::with_capacity(input.len() + alias.len() + if event { 8 } else { 0 });
    out.extend_from_slice(&EVENT_START[..base]);
    let mut content = false;
    let mut finish = false;
    let mut usage = None;
    let mut saw_choices = false;
    let mut choices = 0;
    let mut error = None;
    // Where `choices` started in the input and the output, when everything before it can be
    // reused for the next chunk (no usage, no error: the only state the members before leave).
    let mut mark = None;
    // Split into what the members before `choices` left and the shape of the last choice.
    let (prefix, mut shape) = match prefix {
        Some(p) => (Some(&mut p.head), Some(&mut p.choice)),
        None => (None, None),
    };
    let seen = prefix.as_deref().and_then(|p| p.matches(input));
    match seen {
        Some((_, out_prefix)) => out.extend_from_slice(out_prefix),
        None => out.push(b'{'),
    }
    // The remembered input ends at `"choices":`; this chunk may put spaces before the value.
    let seen = seen.map(|(in_at, _)| in_at + input[in_at..].iter().take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')).count());
    let mut member = |m: scan::MemberAt<'_>| {
        if m.key_escaped {
            return scan::skip(input, m.start, m.depth); // no standard key needs escapes
        }
        if m.key == b"choices" {
            if !saw_choices && usage.is_none() && error.is_none() {
                mark = Some((m.start, out.len()));
            }
            saw_choices = true;
            sep(&mut out);
            raw_key(&mut out, b"choices");
            if let Some((end, c, f)) = shape.as_deref().and_then(|s| s.matches(input, m.start)) {
                out.extend_from_slice(&input[m.start..end]);
                choices += 1;
                content |= c;
                finish |= f;
                return Ok(end);
            }
            let out_at = out.len();
            let (mut here, mut text, mut last_finish) = (0, None, false);
            out.push(b'[');
            let end = scan::elements_at(input, m.start, m.depth, &mut |start, depth| {
                sep(&mut out);
                here += 1;
                let (end, c, f, t) = normalize_choice(input, start, depth, kind, &mut out)?;
                content |= c;
                finish |= f;
                (text, last_finish) = (t, f);
                Ok(end)
            })?;
            out.push(b']');
            choices += here;
            if let (Some(s), 1, Some(t)) = (shape.as_deref_mut(), here, text) {
                // Output the same bytes as the input: the next chunks that differ only in
                // this text take the same way (see `ChoiceShape`).
                if out[out_at..] == input[m.start..end] {
                    s.shape.learn(input, m.start, t.start + 1..t.end - 1, end);
                    s.finish = last_finish;
                }
            }
            return Ok(end);
        }
        if m.key == b"usage" {
            let (end, u) = usage_at(input, m.start, m.depth)?;
            usage = u;
            if keep_usage {
                sep(&mut out);
                raw_key(&mut out, b"usage");
                out.extend_from_slice(&input[m.start..end]);
            }
            return Ok(end);
        }
        let end = scan::skip(input, m.start, m.depth)?;
        let value = m.start..end;
        let raw = &input[value.clone()];
        match m.key {
            b"model" => {
                sep(&mut out);
                write_key(&mut out, "model");
                write_str(&mut out, alias);
            }
            b"error" if !saw_choices => error = Some(value),
            k if TOP_LEVEL_KEPT.contains(&k) => {
                sep(&mut out);
                raw_key(&mut out, k);
                out.extend_from_slice(raw);
            }
            _ => {}
        }
        Ok(end)
    };
    let resumed = seen.is_some();
    let walked = match seen {
        Some(in_at) => member(scan::MemberAt { key: b"choices", key_escaped: false, start: in_at, depth: 1 })
            .and_then(|end| scan::members_walk_after(input, end, &mut member)),
        None => scan::members_walk(input, 0..input.len(), &mut member),
    };
    walked.map_err(|e| NormalizeError::Invalid(e.to_string()))?;
    if let (Some(p), false, Some((in_at, out_at))) = (prefix, resumed, mark) {
        p.remember(&input[..in_at], &out[base..out_at]);
    }
    if let Some(r) = error {
        let message = std::str::from_utf8(&input[r])
            .ok()
            .and_then(|t| serde_json::from_str::<&RawValue>(t).ok())
            .map(upstream_error_message)
            .unwrap_or_else(|| "upstream error".to_owned());
        return Err(NormalizeError::Upstream(message));
    }
    if !saw_choices {
        if usage.is_none() {
            return Err(NormalizeError::Invalid("no `choices` in the response".into()));
        }
        // A usage-only chunk from a provider that omits the empty `choices`.
        out.extend_from_slice(b",\"choices\":[]");
    }
    out.push(b'}');
    if !event {
        return Ok(NormalizedChunk { data: Bytes::from(out), framed: Bytes::new(), content, finish, usage, choices });
    }
    out.extend_from_slice(EVENT_END);
    let framed = Bytes::from(out);
    let data = framed.slice(base..framed.len() - EVENT_END.len());
    Ok(NormalizedChunk { data, framed, content, finish, usage, choices })
}

/// What a stream's chunks so far leave for the next ones to reuse (see [`normalize_stream_chunk`]):
/// the members before `choices` and the shape of the `choices` value.
#[derive(Default)]
pub struct ChunkPrefix {
    head: ChunkHead,
    choice: ChoiceShape,
}

impl ChunkPrefix {
    #[cfg(test)]
    fn matches(&self, input: &[u8]) -> Option<(usize, &[u8])> {
        self.head.matches(input)
    }
}

/// The members before `choices` of the last chunk of a stream that had them (input bytes up to
/// the `choices` value) and what they normalized to (output up to, not including, `choices`).
#[derive(Default)]
struct ChunkHead {
    input: Vec<u8>,
    output: Vec<u8>,
}

/// The `choices` value of the last chunk of a stream that had one choice whose delta is one
/// string member (the text of a content delta: `[{"index":0,"delta":{"content":"`, the text,
/// `"},"logprobs":null,"finish_reason":null}]`) and that normalized to itself. A `choices`
/// value made of the same bytes around another string normalizes to itself too (nothing in a
/// string's bytes but its end is read), and carries content when the string is not empty:
/// it is copied after one comparison of each side and one scan for the string's end, instead
/// of being walked member by member. Anything else (another text member, a finish reason,
/// logprobs, a second choice) differs in those bytes and takes the walk.
#[derive(Default)]
struct ChoiceShape {
    /// From the `[` of `choices` to the `]`, around the text.
    shape: scan::TextShape,
    finish: bool,
}

impl ChoiceShape {
    /// For a `choices` value at `at` of this shape: (its end, carries content, carries a finish reason).
    fn matches(&self, input: &[u8], at: usize) -> Option<(usize, bool, bool)> {
        let m = self.shape.matches_at(input, at)?;
        Some((m.end, !m.text.is_empty(), self.finish))
    }
}

impl ChunkHead {
    /// Where `choices` starts in `input` and the output to start from, when `input` begins
    /// with the remembered bytes.
    fn matches(&self, input: &[u8]) -> Option<(usize, &[u8])> {
        (!self.input.is_empty() && input.starts_with(&self.input)).then_some((self.input.len(), &self.output[..]))
    }

    fn remember(&mut self, input: &[u8], output: &[u8]) {
        self.input.clear();
        self.input.extend_from_slice(input);
        self.output.clear();
        self.output.extend_from_slice(output);
    }
}

/// The three token counts of a `usage` object (`None` for `null`). Scanning stops once all
/// three are found (they come first in every provider's usage), so the detail objects that
/// follow are not even read.
fn read_usage(input: &[u8], range: std::ops::Range<usize>) -> Option<Usage> {
    if input[range.clone()].starts_with(b"null") {
        return None;
    }
    const FOUND_ALL: scan::ScanError = scan::ScanError(0, "found all");
    let mut u = Usage::default();
    let mut found = 0u8;
    let scanned = scan::members(input, range.clone(), &mut |m| {
        let (slot, bit) = match m.key {
            b"prompt_tokens" => (&mut u.prompt_tokens, 1),
            b"completion_tokens" => (&mut u.completion_tokens, 2),
            b"total_tokens" => (&mut u.total_tokens, 4),
            _ => return Ok(()),
        };
        *slot = parse_u64(&input[m.value])?;
        found |= bit;
        if found == 7 { Err(FOUND_ALL) } else { Ok(()) }
    });
    match scanned {
        Ok(()) | Err(FOUND_ALL) => Some(u),
        Err(_) => crate::wire::json::from_slice::<Option<Usage>>(&input[range]).ok().flatten(),
    }
}

/// Reads the `usage` value starting at `start` as [`read_usage`] does, in the same pass that
/// finds its end; returns (its end, the usage).
fn usage_at(input: &[u8], start: usize, depth: usize) -> scan::Result<(usize, Option<Usage>)> {
    if input.get(start) != Some(&b'{') {
        let end = scan::skip(input, start, depth)?;
        return Ok((end, read_usage(input, start..end)));
    }
    let mut u = Usage::default();
    let mut found = 0u8;
    let mut unusual = false;
    let end = scan::members_at(input, start, depth, &mut |m| {
        let end = scan::skip(input, m.start, m.depth)?;
        if found == 7 || unusual {
            return Ok(end);
        }
        let (slot, bit) = match m.key {
            b"prompt_tokens" => (&mut u.prompt_tokens, 1),
            b"completion_tokens" => (&mut u.completion_tokens, 2),
            b"total_tokens" => (&mut u.total_tokens, 4),
            _ => return Ok(end),
        };
        match parse_u64(&input[m.start..end]) {
            Ok(n) => {
                *slot = n;
                found |= bit;
            }
            Err(_) => unusual = true,
        }
        Ok(end)
    })?;
    if unusual {
        return Ok((end, crate::wire::json::from_slice::<Option<Usage>>(&input[start..end]).ok().flatten()));
    }
    Ok((end, Some(u)))
}

fn parse_u64(digits: &[u8]) -> scan::Result<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(scan::ScanError(0, "not a token count"));
    }
    Ok(digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Writes one normalized choice, the object starting at `start`; returns (its end, carries
/// content, carries a finish reason, where its text is when its delta is one string member
/// other than `role`).
///
/// A choice that normalizes to itself (only standard members, a finish reason already in
/// OpenAI's set: the usual case) is copied in one piece at its end; members are written one by
/// one only from the first that changes.
fn normalize_choice(input: &[u8], start: usize, depth: usize, kind: ChoiceKind, out: &mut Vec<u8>) -> scan::Result<(usize, bool, bool, Option<Range<usize>>)> {
    let body_key: &[u8] = match kind {
        ChoiceKind::Message => b"message",
        ChoiceKind::Delta => b"delta",
    };
    let mut content = false;
    let mut finish = false;
    let mut text = None;
    // While every member so far is kept as it is: where the last one ends (nothing written yet).
    let mut verbatim = Some(start + 1);
    let end = scan::members_at(input, start, depth, &mut |m| {
        let key = m.key;
        if m.key_escaped || !(key == b"index" || key == b"logprobs" || key == body_key || key == b"finish_reason") {
            let end = scan::skip(input, m.start, m.depth)?;
            if let Some(upto) = verbatim.take() {
                out.extend_from_slice(&input[start..upto]);
            }
            return Ok(end);
        }
        let (end, c) = if key == body_key && kind == ChoiceKind::Delta {
            let (end, c, t) = delta_has_content(input, m.start, m.depth)?;
            text = t;
            (end, c)
        } else {
            (scan::skip(input, m.start, m.depth)?, key == body_key) // a message is content
        };
        content |= c;
        let raw = &input[m.start..end];
        let mapped = if key == b"finish_reason" {
            let reason = match scan::plain_str(raw) {
                Some(r) => Some(std::borrow::Cow::Borrowed(r)),
                None => crate::wire::json::from_slice::<Option<String>>(raw).ok().flatten().map(std::borrow::Cow::Owned),
            };
            finish |= reason.is_some();
            let mapped = reason.map(|r| map_finish_reason(&r));
            match (mapped, scan::plain_str(raw)) {
                (None, _) if raw == b"null" => None,
                (Some(to), Some(from)) if to == from => None,
                (to, _) => Some(to),
            }
        } else {
            None
        };
        if let (Some(_), None) = (verbatim, mapped) {
            verbatim = Some(end);
            return Ok(end);
        }
        if let Some(upto) = verbatim.take() {
            out.extend_from_slice(&input[start..upto]);
        }
        sep(out);
        raw_key(out, key);
        match mapped {
            Some(Some(reason)) => write_str(out, reason),
            Some(None) => out.extend_from_slice(b"null"),
            None => out.extend_from_slice(raw),
        }
        Ok(end)
    })?;
    match verbatim {
        Some(_) => out.extend_from_slice(&input[start..end]),
        None => out.push(b'}'),
    }
    Ok((end, content, finish, text))
}

/// Reads the delta object starting at `start`; returns (its end, whether any field but `role`
/// has a non-empty value, i.e. it carries content, and where the value is when the delta is
/// one string member other than `role`: a text delta).
fn delta_has_content(input: &[u8], start: usize, depth: usize) -> scan::Result<(usize, bool, Option<Range<usize>>)> {
    let mut content = false;
    let mut members = 0;
    let mut text = None;
    let end = scan::members_at(input, start, depth, &mut |m| {
        let end = scan::skip(input, m.start, m.depth)?;
        content |= m.key != b"role" && !scan::is_empty(&input[m.start..end]);
        members += 1;
        if input[m.start] == b'"' && m.key != b"role" && !m.key_escaped {
            text = Some(m.start..end);
        }
        Ok(end)
    })?;
    Ok((end, content, if members == 1 { text } else { None }))
}

/// The message of an upstream `{"error": ...}` object (a string, or an object with `message`).
pub fn upstream_error_message(raw: &RawValue) -> String {
    if let Some(s) = as_str(raw) {
        return s.into_owned();
    }
    #[derive(Deserialize)]
    struct E {
        message: Option<String>,
    }
    serde_json::from_str::<E>(raw.get()).ok().and_then(|e| e.message).unwrap_or_else(|| raw.get().chars().take(300).collect())
}

#[cfg(test)]
mod tests;
