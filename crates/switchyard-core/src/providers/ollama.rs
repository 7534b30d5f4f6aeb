//! `kind = "ollama"`: Ollama's native `/api/chat` (NDJSON streaming), so local models keep
//! Ollama's own options (`num_predict`, `keep_alive`, ...) and report real token counts.
//!
//! OpenAI request → Ollama: system/developer → `system` messages, image parts (base64 `data:`
//! URLs only: Ollama cannot fetch URLs) → `images`, assistant `tool_calls` → `tool_calls` with
//! object arguments, `tool` messages → `tool` with `tool_name`, sampling parameters → `options`,
//! `response_format` → `format`. Answers come back as OpenAI shapes; `done_reason` and the eval
//! counts become `finish_reason` and `usage`. Ollama sends no tool-call ids: `call_<n>` is used.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Uri};
use hyper::body::Body;
use super::http::UpstreamBody;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::http::{FixedPost, HttpClient, MAX_BODY, client, extra_headers, get_request, post_checked, probe_get, read_body, upstream_status};
use super::openai::{parse_url, secret_header};
use super::{
    Call, Chunk, Completion, EmbedCall, Embeddings, Kind, OptionError, ProbeCall, Provider, ProviderError, Reply, Spec, UpstreamStatus,
    Usage, completion_probe, options,
};
use crate::config::ProbeKind;
use crate::wire::openai::embeddings::{EmbedInput, EmbeddingFields, list_body};
use crate::wire::json::StringSlot;
use crate::wire::ndjson::NdjsonParser;
use crate::wire::openai::types::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice, ChunkChoice, Content, ContentPart, Delta,
    FunctionCall, Message, Stop, ToolCall, ToolChoice, UsageDetail,
};

pub const KIND: Kind = Kind { name: "ollama", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Default `http://127.0.0.1:11434`.
    #[serde(default)]
    base_url: Option<String>,
    /// Optional bearer token, for an Ollama behind an authenticating proxy.
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// How long Ollama keeps the model loaded after a request, e.g. "5m" (Ollama's own syntax).
    #[serde(default)]
    keep_alive: Option<String>,
    /// Extra Ollama `options` sent with every request (e.g. `num_ctx = 8192`).
    #[serde(default)]
    model_options: toml::Table,
}

pub struct Ollama {
    base_url: String,
    /// `POST /api/chat` and `POST /api/embed` with the auth and extra headers.
    chat: FixedPost,
    embed: FixedPost,
    /// `GET /api/tags`, the local models, for the health checks.
    tags_url: Uri,
    auth: Option<HeaderValue>,
    secret: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    keep_alive: Option<String>,
    model_options: Map<String, Value>,
    client: HttpClient,
}

fn build(spec: &Spec<'_>) -> Result<Arc<dyn Provider>, OptionError> {
    let o: Options = options(spec.options)?;
    let base = o.base_url.as_deref().unwrap_or("http://127.0.0.1:11434").trim_end_matches('/').to_owned();
    let chat_url = parse_url(&format!("{base}/api/chat"), &base)?;
    let embed_url = parse_url(&format!("{base}/api/embed"), &base)?;
    let tags_url = parse_url(&format!("{base}/api/tags"), &base)?;
    let secret = o.api_key.filter(|k| !k.is_empty());
    let auth = secret.as_deref().map(|k| secret_header(&format!("Bearer {k}"))).transpose()?;
    let model_options = match serde_json::to_value(&o.model_options) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let headers = extra_headers(&o.headers)?;
    let mut post_headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    post_headers.extend(auth.clone().map(|a| (AUTHORIZATION, a)));
    post_headers.extend(headers.iter().cloned());
    Ok(Arc::new(Ollama {
        base_url: base,
        chat: FixedPost::new(chat_url, post_headers.clone()),
        embed: FixedPost::new(embed_url, post_headers),
        tags_url,
        auth,
        secret,
        headers,
        keep_alive: o.keep_alive,
        model_options,
        client: client(spec.connect_timeout),
    }))
}

impl Provider for Ollama {
    fn chat<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            let req: ChatCompletionRequest = crate::wire::json::from_slice(&call.request.body)
                .map_err(|e| ProviderError::Unsupported(format!("the request does not fit the chat schema: {e}")))?;
            let body = to_ollama(&req, call.upstream_model, self.keep_alive.as_deref(), &self.model_options)?;
            let secrets: Vec<&str> = self.secret.as_deref().into_iter().collect();
            let (_, body) = post_checked(&self.client, &self.chat, Bytes::from(body.to_string()), call.timeouts.idle, |status, headers, bytes| upstream_status(status, headers, bytes, &secrets)).await?;
            let meta = Meta::new(call.alias);
            if call.request.stream {
                let translate = StreamTranslator::with_meta(meta, call.request.include_usage);
                return Ok(Reply::Stream(Box::pin(NdjsonChunks::new(body, translate))));
            }
            let bytes = read_body(body, call.timeouts.idle, MAX_BODY).await?;
            let answer: Answer = crate::wire::json::from_slice(&bytes).map_err(|e| ProviderError::Protocol(format!("not an Ollama chat answer: {e}")))?;
            if let Some(e) = answer.error {
                return Err(ProviderError::Stream(e));
            }
            let (completion, usage) = completion(&meta, answer);
            Ok(Reply::Complete(Completion { body: Bytes::from(serde_json::to_vec(&completion).unwrap_or_default()), usage: Some(usage) }))
        })
    }

    /// `POST /api/embed`: see [`to_ollama_embed`] and [`from_ollama_embed`].
    fn embed<'a>(&'a self, call: EmbedCall<'a>) -> BoxFuture<'a, Result<Embeddings, ProviderError>> {
        Box::pin(async move {
            let fields = call.request.fields().map_err(|e| caller_error(e.message))?;
            let body = to_ollama_embed(&fields, call.upstream_model, self.keep_alive.as_deref(), &self.model_options)?;
            let secrets: Vec<&str> = self.secret.as_deref().into_iter().collect();
            let (_, body) = post_checked(&self.client, &self.embed, Bytes::from(body.to_string()), call.timeouts.idle, |status, headers, bytes| upstream_status(status, headers, bytes, &secrets)).await?;
            let bytes = read_body(body, call.timeouts.idle, MAX_BODY).await?;
            from_ollama_embed(&bytes, call.alias, &fields)
        })
    }

    /// `models`: `GET /api/tags`, healthy when the target's model is among the pulled models
    /// (a missing model fails like Ollama's own 404 for it).
    fn probe<'a>(&'a self, probe: ProbeCall<'a>) -> BoxFuture<'a, Result<(), ProviderError>> {
        match probe.kind {
            ProbeKind::Completion => completion_probe(self, probe),
            ProbeKind::Models => Box::pin(async move {
                let auth = self.auth.as_ref().map(|v| (&AUTHORIZATION, v));
                let req = get_request(self.tags_url.clone(), auth.into_iter().chain(self.headers.iter().map(|(k, v)| (k, v))))?;
                let secrets: Vec<&str> = self.secret.as_deref().into_iter().collect();
                let bytes = probe_get(&self.client, req, probe.timeout, &secrets).await?;
                if tags_list(&bytes, probe.model)? {
                    return Ok(());
                }
                Err(ProviderError::Status(UpstreamStatus {
                    status: 404,
                    message: format!("model \"{}\" is not among the server's models (GET /api/tags); pull it with `ollama pull`", probe.model),
                    code: Some("model_not_found".into()),
                    ..Default::default()
                }))
            }),
        }
    }

    fn describe(&self) -> String {
        let key = if self.secret.is_some() { " api_key=<redacted>" } else { "" };
        format!("kind=ollama base_url={}{key}", self.base_url)
    }
}

/// A request the adapter rejects as the caller's fault: an HTTP 400.
fn caller_error(message: String) -> ProviderError {
    ProviderError::Status(UpstreamStatus { status: 400, message, error_type: Some("invalid_request_error".into()), ..Default::default() })
}

/// An OpenAI embeddings request as an Ollama `/api/embed` body: `input` (a string or an array
/// of strings) as is, `dimensions`, the provider's `keep_alive` and `model_options` (as
/// `options`), and a non-standard `truncate` if the caller sent one. Token-id inputs cannot be
/// sent (Ollama takes text only): the chain moves on.
pub fn to_ollama_embed(
    fields: &EmbeddingFields,
    model: &str,
    keep_alive: Option<&str>,
    base_options: &Map<String, Value>,
) -> Result<Value, ProviderError> {
    let input = match &fields.input {
        EmbedInput::Text(t) => Value::from(t.as_str()),
        EmbedInput::Texts(ts) => Value::from(ts.clone()),
        EmbedInput::Tokens(_) | EmbedInput::TokenBatches(_) => {
            return Err(ProviderError::Unsupported("token-id inputs (Ollama embeds text only)".into()));
        }
    };
    let mut body = json!({"model": model, "input": input});
    if let Some(t) = fields.truncate {
        body["truncate"] = Value::from(t);
    }
    if let Some(d) = fields.dimensions {
        body["dimensions"] = Value::from(d);
    }
    if !base_options.is_empty() {
        body["options"] = Value::Object(base_options.clone());
    }
    if let Some(k) = keep_alive {
        body["keep_alive"] = Value::from(k);
    }
    Ok(body)
}

/// Ollama's `/api/embed` answer as OpenAI's list: `embeddings[i]` → `data[i]`, usage from
/// `prompt_eval_count` (estimated from the input when absent).
pub fn from_ollama_embed(bytes: &[u8], alias: &str, fields: &EmbeddingFields) -> Result<Embeddings, ProviderError> {
    #[derive(Deserialize)]
    struct EmbedAnswer {
        #[serde(default)]
        embeddings: Option<Vec<Vec<f32>>>,
        #[serde(default)]
        prompt_eval_count: Option<u64>,
        #[serde(default)]
        error: Option<String>,
    }
    let a: EmbedAnswer = crate::wire::json::from_slice(bytes).map_err(|e| ProviderError::Protocol(format!("not an Ollama embed answer: {e}")))?;
    if let Some(e) = a.error {
        return Err(ProviderError::Protocol(format!("upstream error in a 200 response: {e}")));
    }
    let vectors = a.embeddings.ok_or_else(|| ProviderError::Protocol("no `embeddings` in the Ollama answer".into()))?;
    let expected = fields.input.items().len();
    if vectors.len() != expected {
        return Err(ProviderError::Protocol(format!("Ollama returned {} embeddings for {expected} inputs", vectors.len())));
    }
    let prompt = a.prompt_eval_count.unwrap_or_else(|| fields.input.count_tokens());
    let usage = Usage { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt };
    Ok(Embeddings { body: list_body(alias, &vectors, fields.base64(), usage), usage: Some(usage) })
}

/// Whether an `/api/tags` answer (`{"models": [{"name": "llama3.2:latest", "model": ...}]}`)
/// lists `model`; a model named without a tag matches its `:latest`.
pub fn tags_list(body: &[u8], model: &str) -> Result<bool, ProviderError> {
    #[derive(Deserialize)]
    struct Tags {
        #[serde(default)]
        models: Vec<Tag>,
    }
    #[derive(Deserialize)]
    struct Tag {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        model: Option<String>,
    }
    let tags: Tags = crate::wire::json::from_slice(body).map_err(|e| ProviderError::Protocol(format!("not an Ollama /api/tags answer: {e}")))?;
    let matches = |n: &str| n == model || (!model.contains(':') && n.strip_suffix(":latest") == Some(model));
    Ok(tags.models.iter().any(|t| t.name.as_deref().is_some_and(matches) || t.model.as_deref().is_some_and(matches)))
}

/// Translates an OpenAI chat request into an Ollama `/api/chat` body.
pub fn to_ollama(req: &ChatCompletionRequest, model: &str, keep_alive: Option<&str>, base_options: &Map<String, Value>) -> Result<Value, ProviderError> {
    let mut tool_names: HashMap<&str, &str> = HashMap::new();
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        messages.push(message(m, &mut tool_names)?);
    }
    let mut body = json!({"model": model, "messages": messages, "stream": req.stream.unwrap_or(false)});
    let tools_off = matches!(&req.tool_choice, Some(ToolChoice::Mode(m)) if m == "none");
    if let Some(tools) = req.tools.as_ref().filter(|t| !t.is_empty() && !tools_off) {
        body["tools"] = serde_json::to_value(tools).unwrap_or(Value::Null);
    }
    let mut opts = base_options.clone();
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            opts.insert(k.to_owned(), v);
        }
    };
    set("temperature", req.temperature.map(Value::from));
    set("top_p", req.top_p.map(Value::from));
    set("num_predict", req.max_output_tokens().map(Value::from));
    set("stop", req.stop.as_ref().map(|s| Value::from(Stop::to_vec(s))));
    set("seed", req.seed.map(Value::from));
    set("presence_penalty", req.presence_penalty.map(Value::from));
    set("frequency_penalty", req.frequency_penalty.map(Value::from));
    if !opts.is_empty() {
        body["options"] = Value::Object(opts);
    }
    if let Some(format) = req.response_format.as_ref().and_then(format) {
        body["format"] = format;
    }
    if let Some(k) = keep_alive {
        body["keep_alive"] = Value::from(k);
    }
    Ok(body)
}

fn format(rf: &Value) -> Option<Value> {
    match rf["type"].as_str()? {
        "json_object" => Some(Value::from("json")),
        "json_schema" => rf["json_schema"].get("schema").cloned(),
        _ => None,
    }
}

fn message<'a>(m: &'a Message, tool_names: &mut HashMap<&'a str, &'a str>) -> Result<Value, ProviderError> {
    let text = m.content.as_ref().map(|c| c.text("\n")).unwrap_or_default();
    match m.role.as_str() {
        "system" | "developer" => Ok(json!({"role": "system", "content": text})),
        "assistant" => {
            let mut out = json!({"role": "assistant", "content": text});
            if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| {
                        if let (Some(id), Some(name)) = (c.id.as_deref(), c.function.name.as_deref()) {
                            tool_names.insert(id, name);
                        }
                        let args = c.function.arguments.as_deref().unwrap_or("{}");
                        let args: Value = serde_json::from_str(args).unwrap_or_else(|_| Value::from(args));
                        json!({"function": {"name": c.function.name, "arguments": args}})
                    })
                    .collect();
                out["tool_calls"] = Value::Array(calls);
            }
            Ok(out)
        }
        "tool" | "function" => {
            let name = m.tool_call_id.as_deref().and_then(|id| tool_names.get(id).copied()).or(m.name.as_deref());
            let mut out = json!({"role": "tool", "content": text});
            if let Some(n) = name {
                out["tool_name"] = Value::from(n);
            }
            Ok(out)
        }
        _ => {
            let mut out = json!({"role": "user", "content": text});
            let images = images(m.content.as_ref())?;
            if !images.is_empty() {
                out["images"] = Value::from(images);
            }
            Ok(out)
        }
    }
}

fn images(content: Option<&Content>) -> Result<Vec<String>, ProviderError> {
    let Some(Content::Parts(parts)) = content else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for p in parts {
        if let ContentPart::ImageUrl { image_url } = p {
            let (_, data) = image_url
                .data_url()
                .ok_or_else(|| ProviderError::Unsupported("Ollama takes images only as base64 data: URLs, not links".into()))?;
            out.push(data.to_owned());
        }
    }
    Ok(out)
}

/// One line of an Ollama answer (a whole non-streaming answer, or a stream line).
#[derive(Deserialize, Default)]
struct Answer {
    #[serde(default)]
    message: Option<AnswerMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct AnswerMessage {
    #[serde(default)]
    content: String,
    #[serde(default)]
    tool_calls: Vec<OllamaToolCall>,
}

#[derive(Deserialize)]
struct OllamaToolCall {
    function: OllamaFunction,
}

#[derive(Deserialize)]
struct OllamaFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

/// Labels for the answer: an id, a timestamp and the alias.
struct Meta {
    id: String,
    created: u64,
    alias: String,
}

impl Meta {
    fn new(alias: &str) -> Self {
        Meta {
            id: format!("chatcmpl-ollama{:016x}", fastrand::u64(..)),
            created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            alias: alias.to_owned(),
        }
    }
}

fn tool_calls(calls: Vec<OllamaToolCall>, first_index: usize, streamed: bool) -> Vec<ToolCall> {
    calls
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let arguments = match c.function.arguments {
                Value::String(s) => s,
                other => other.to_string(),
            };
            ToolCall {
                index: streamed.then_some((first_index + i) as u32),
                id: Some(format!("call_{}", first_index + i)),
                kind: Some("function".into()),
                function: FunctionCall { name: Some(c.function.name), arguments: Some(arguments) },
                extra_content: None,
            }
        })
        .collect()
}

fn finish_reason(done_reason: Option<&str>, had_tool_calls: bool) -> String {
    match done_reason {
        Some("length") => "length".into(),
        _ if had_tool_calls => "tool_calls".into(),
        _ => "stop".into(),
    }
}

fn usage_of(a: &Answer) -> UsageDetail {
    let prompt = a.prompt_eval_count.unwrap_or(0);
    let completion = a.eval_count.unwrap_or(0);
    UsageDetail { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, ..Default::default() }
}

fn completion(meta: &Meta, a: Answer) -> (ChatCompletion, Usage) {
    let usage = usage_of(&a);
    let msg = a.message.unwrap_or_default();
    let calls = tool_calls(msg.tool_calls, 0, false);
    let finish = finish_reason(a.done_reason.as_deref(), !calls.is_empty());
    let message = Message {
        role: "assistant".into(),
        content: if msg.content.is_empty() && !calls.is_empty() { None } else { Some(Content::Text(msg.content)) },
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..Default::default()
    };
    let completion = ChatCompletion {
        id: meta.id.clone(),
        object: "chat.completion".into(),
        created: meta.created,
        model: meta.alias.clone(),
        choices: vec![Choice { index: 0, message, finish_reason: Some(finish), logprobs: None }],
        usage: Some(usage),
    };
    (completion, usage.summary())
}

/// Ollama's NDJSON stream lines as OpenAI chunks, one line at a time (the I/O is
/// [`NdjsonChunks`]'s).
pub struct StreamTranslator {
    meta: Meta,
    include_usage: bool,
    sent_role: bool,
    tool_calls: usize,
    finished: bool,
    /// A content chunk with its text left open, made at the first text: every text chunk of
    /// the stream is the same but for the text.
    text_template: Option<StringSlot>,
}

impl StreamTranslator {
    /// `alias` is reported as the chunks' `model`; `include_usage`: the caller asked for a
    /// usage chunk.
    pub fn new(alias: &str, include_usage: bool) -> Self {
        Self::with_meta(Meta::new(alias), include_usage)
    }

    fn with_meta(meta: Meta, include_usage: bool) -> Self {
        StreamTranslator { meta, include_usage, sent_role: false, tool_calls: 0, finished: false, text_template: None }
    }

    /// The last line (`"done": true`) has been translated.
    pub fn finished(&self) -> bool {
        self.finished
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

    /// The content chunk of `text`: the stream's template with the text in it, the bytes
    /// [`Self::chunk`] would build.
    fn text_chunk(&mut self, text: &str) -> Chunk {
        if self.text_template.is_none() {
            let empty = self.chunk(Delta { content: Some(String::new()), ..Default::default() }, None, true);
            self.text_template = StringSlot::at_last(&empty.data, "content");
        }
        match &self.text_template {
            Some(slot) => Chunk::text(slot, text),
            None => self.chunk(Delta { content: Some(text.to_owned()), ..Default::default() }, None, true),
        }
    }

    /// Translates one stream line, appending its chunks to `out`.
    pub fn on_line(&mut self, line: &[u8], out: &mut VecDeque<Chunk>) -> Result<(), ProviderError> {
        let a: Answer = crate::wire::json::from_slice(line).map_err(|e| ProviderError::Protocol(format!("bad stream line: {e}")))?;
        if let Some(e) = a.error {
            return Err(ProviderError::Stream(e));
        }
        if !self.sent_role {
            self.sent_role = true;
            let delta = Delta { role: Some("assistant".into()), content: Some(String::new()), ..Default::default() };
            out.push_back(self.chunk(delta, None, false));
        }
        let done = a.done;
        let usage = usage_of(&a);
        let done_reason = a.done_reason.clone();
        let msg = a.message.unwrap_or_default();
        if !msg.content.is_empty() {
            let chunk = self.text_chunk(&msg.content);
            out.push_back(chunk);
        }
        if !msg.tool_calls.is_empty() {
            let calls = tool_calls(msg.tool_calls, self.tool_calls, true);
            self.tool_calls += calls.len();
            out.push_back(self.chunk(Delta { tool_calls: Some(calls), ..Default::default() }, None, true));
        }
        if done {
            self.finished = true;
            let finish = finish_reason(done_reason.as_deref(), self.tool_calls > 0);
            out.push_back(self.chunk(Delta::default(), Some(finish), false));
            // The usage: a chunk of its own for callers who asked, else known to the gateway only.
            out.push_back(if self.include_usage {
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
            });
        }
        Ok(())
    }
}

/// Ollama's NDJSON stream as OpenAI chunks: the body read line by line into a [`StreamTranslator`].
struct NdjsonChunks {
    body: UpstreamBody,
    parser: NdjsonParser,
    translate: StreamTranslator,
    /// Chunks produced by one line, waiting to be yielded.
    pending: VecDeque<Chunk>,
    done: bool,
}

impl NdjsonChunks {
    fn new(body: UpstreamBody, translate: StreamTranslator) -> Self {
        NdjsonChunks { body, parser: NdjsonParser::new(), translate, pending: VecDeque::new(), done: false }
    }

    fn on_line(&mut self, line: &[u8]) -> Result<(), ProviderError> {
        self.translate.on_line(line, &mut self.pending)?;
        self.done = self.translate.finished();
        Ok(())
    }
}

impl Stream for NdjsonChunks {
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(c) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(c)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.parser.next_line() {
                Ok(Some(line)) => {
                    if let Err(e) = this.on_line(&line) {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    continue;
                }
                Ok(None) => {}
                Err(_) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(ProviderError::Protocol("a stream line exceeded 16 MiB".into()))));
                }
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        this.parser.push(d);
                    }
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(ProviderError::Stream(format!("connection lost mid-stream: {e}")))));
                }
                None => {
                    if let Some(line) = this.parser.finish() {
                        if let Err(e) = this.on_line(&line) {
                            this.done = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                        continue;
                    }
                    this.done = true;
                    if !this.translate.finished() {
                        return Poll::Ready(Some(Err(ProviderError::Stream("the upstream closed the stream before it finished".into()))));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn requests_translate_to_ollamas_shape() {
        let r = req(json!({
            "model": "local", "stream": true, "temperature": 0.2, "max_tokens": 64, "stop": "END", "seed": 3,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_9", "type": "function",
                    "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}}]},
                {"role": "tool", "tool_call_id": "call_9", "content": "a cat"}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
        }));
        let mut base = Map::new();
        base.insert("num_ctx".into(), json!(8192));
        let out = to_ollama(&r, "llama3.2", Some("5m"), &base).unwrap();
        assert_eq!(
            out,
            json!({
                "model": "llama3.2", "stream": true, "keep_alive": "5m", "format": "json",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "what is this?", "images": ["iVBORw0K"]},
                    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "lookup", "arguments": {"q": "cat"}}}]},
                    {"role": "tool", "content": "a cat", "tool_name": "lookup"}
                ],
                "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
                "options": {"num_ctx": 8192, "temperature": 0.2, "num_predict": 64, "stop": ["END"], "seed": 3}
            })
        );
    }

    #[test]
    fn image_links_are_unsupported_so_the_chain_moves_on() {
        let r = req(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}));
        assert!(matches!(to_ollama(&r, "m", None, &Map::new()), Err(ProviderError::Unsupported(_))));
    }

    #[test]
    fn a_text_chunk_from_the_template_is_the_chunk_built_whole() {
        for include_usage in [false, true] {
            let meta = Meta { id: r#"chatcmpl-"content":"""#.into(), created: 7, alias: r#"chat "content":"" \ alias"#.into() };
            let mut t = StreamTranslator::with_meta(meta, include_usage);
            for text in ["Hello", " \"quoted\" \\ back/slash", "line\nbreak\ttab", "\u{1}\u{7f} control", "Zürich 🌤", "\u{2028}"] {
                let whole = t.chunk(Delta { content: Some(text.to_owned()), ..Delta::default() }, None, true);
                let fast = t.text_chunk(text);
                assert_eq!(fast, whole, "{text:?}");
                assert_eq!(fast.into_sse_event(), whole.into_sse_event(), "{text:?}");
            }
        }
    }

    #[test]
    fn stream_lines_translate_to_chunks() {
        let mut t = StreamTranslator::new("chat", true);
        let mut out = VecDeque::new();
        t.on_line(br#"{"model":"llama3.2","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":"Hi \"there\""},"done":false}"#, &mut out).unwrap();
        assert!(!t.finished());
        t.on_line(br#"{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":2}"#, &mut out).unwrap();
        assert!(t.finished());
        let chunks: Vec<Value> = out.iter().map(|c| serde_json::from_slice(&c.data).unwrap()).collect();
        let deltas: Vec<&Value> = chunks.iter().take(3).map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(deltas, [&json!({"role": "assistant", "content": ""}), &json!({"content": "Hi \"there\""}), &json!({})]);
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["usage"], json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}));
        assert!(chunks.iter().all(|c| c["model"] == "chat" && c["id"] == chunks[0]["id"]));
        assert_eq!(out.iter().map(|c| (c.content, c.finish)).collect::<Vec<_>>(), [(false, false), (true, false), (false, true), (false, false)]);
    }

    #[test]
    fn answers_translate_back() {
        let fixture = include_str!("../../../switchyard-fakes/fixtures/ollama/chat-tools.json");
        let (c, usage) = completion(&Meta::new("chat"), serde_json::from_str(fixture).unwrap());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["model"], "chat");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["id"], "call_0");
        assert_eq!(call["function"]["name"], "get_current_weather");
        let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"format": "celsius", "location": "Paris, FR"}));
        assert_eq!(usage, Usage { prompt_tokens: 122, completion_tokens: 33, total_tokens: 155 });

        let fixture = include_str!("../../../switchyard-fakes/fixtures/ollama/chat.json");
        let (c, _) = completion(&Meta::new("chat"), serde_json::from_str(fixture).unwrap());
        assert_eq!(c.choices[0].message.content, Some(Content::Text("Hello! How are you today?".into())));
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("stop"));
        let a: Answer = serde_json::from_value(json!({"message": {"content": "cut"}, "done": true, "done_reason": "length"})).unwrap();
        assert_eq!(completion(&Meta::new("chat"), a).0.choices[0].finish_reason.as_deref(), Some("length"));
    }
}

#[cfg(test)]
mod embed_tests {
    use bytes::Bytes;
    use serde_json::{Map, Value, json};

    use super::{from_ollama_embed, to_ollama_embed};
    use crate::providers::ProviderError;
    use crate::wire::openai::embeddings::EmbedRequest;

    fn fields(v: Value) -> crate::wire::openai::embeddings::EmbeddingFields {
        EmbedRequest::parse(Bytes::from(v.to_string())).unwrap().fields().unwrap()
    }

    #[test]
    fn embed_requests_translate_to_api_embed() {
        let mut opts = Map::new();
        opts.insert("num_ctx".into(), json!(2048));
        let f = fields(json!({"model": "e", "input": ["a", "b"], "dimensions": 4, "truncate": false, "user": "u"}));
        assert_eq!(
            to_ollama_embed(&f, "nomic-embed-text", Some("5m"), &opts).unwrap(),
            json!({"model": "nomic-embed-text", "input": ["a", "b"], "dimensions": 4, "truncate": false,
                   "options": {"num_ctx": 2048}, "keep_alive": "5m"})
        );
        let f = fields(json!({"model": "e", "input": "one"}));
        assert_eq!(to_ollama_embed(&f, "m", None, &Map::new()).unwrap(), json!({"model": "m", "input": "one"}));
        let f = fields(json!({"model": "e", "input": [1, 2]}));
        assert!(matches!(to_ollama_embed(&f, "m", None, &Map::new()), Err(ProviderError::Unsupported(_))));
    }

    #[test]
    fn embed_answers_translate_back() {
        let answer = br#"{"model":"nomic-embed-text","embeddings":[[0.5,-0.25],[1.0,0.0]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}"#;
        let f = fields(json!({"model": "e", "input": ["a", "b"]}));
        let e = from_ollama_embed(answer, "emb", &f).unwrap();
        let v: Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(
            v,
            json!({"object": "list", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}],
                "model": "emb", "usage": {"prompt_tokens": 8, "total_tokens": 8}})
        );
        let f = fields(json!({"model": "e", "input": ["a", "b"], "encoding_format": "base64"}));
        let v: Value = serde_json::from_slice(&from_ollama_embed(answer, "emb", &f).unwrap().body).unwrap();
        assert_eq!(v["data"][1]["embedding"], "AACAPwAAAAA=");
        // A count that does not match the input, or an error body, is a protocol failure.
        let f = fields(json!({"model": "e", "input": "a"}));
        assert!(matches!(from_ollama_embed(answer, "emb", &f), Err(ProviderError::Protocol(_))));
        assert!(matches!(from_ollama_embed(br#"{"error":"boom"}"#, "emb", &f), Err(ProviderError::Protocol(_))));
    }
}
