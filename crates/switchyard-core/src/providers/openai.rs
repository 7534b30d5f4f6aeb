//! `kind = "openai"`: any OpenAI-compatible chat-completions server (OpenAI, Groq, Together,
//! OpenRouter, Mistral, DeepSeek, Fireworks, vLLM, LM Studio, llama.cpp server, Ollama's `/v1`).
//!
//! Requests pass through as raw bytes with only `model` rewritten. Answers are normalized:
//! non-standard top-level fields (Groq's `x_groq`, OpenRouter's `provider`, ...) are dropped and
//! finish reasons are mapped to OpenAI's set, so callers cannot tell providers apart.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::Full;
use hyper::body::Body;
use super::http::UpstreamBody;
use serde::Deserialize;

use super::http::{FixedPost, HttpClient, MAX_BODY, client, extra_headers, get_request, post_checked, probe_get, read_body, send_checked, upstream_status};
use super::{Call, Chunk, Completion, EmbedCall, Embeddings, Kind, OptionError, ProbeCall, Provider, ProviderError, Reply, Spec, completion_probe, options};
use crate::config::ProbeKind;
use crate::wire::openai::embeddings::{EmbedNormalizeError, normalize_list};
use crate::wire::openai::features::RequestFeatures;
use crate::wire::openai::{ChunkPrefix, NormalizeError, normalize_completion, normalize_stream_chunk};
use crate::wire::sse::{SseEvent, SseParser};

pub const KIND: Kind = Kind { name: "openai", build };

/// Options of `kind = "openai"` and of its presets (`groq`, `openrouter`, ...).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// e.g. `https://api.openai.com/v1`; `/chat/completions` is appended. Presets have a default.
    #[serde(default)]
    base_url: Option<String>,
    /// Sent as `Authorization: Bearer <key>`; omit for local servers.
    #[serde(default)]
    api_key: Option<String>,
    /// Extra request headers (e.g. OpenRouter's `HTTP-Referer` / `X-Title`).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Whether the server accepts `stream_options.include_usage`: the gateway then asks for
    /// usage on every stream; otherwise it never sends `stream_options` and estimates usage.
    #[serde(default)]
    stream_usage: Option<bool>,
}

/// What differs between OpenAI-compatible services.
pub struct Flavor {
    pub kind: &'static str,
    pub default_base_url: Option<&'static str>,
    pub stream_usage: bool,
    /// Headers sent unless the config sets the same name.
    pub default_headers: &'static [(&'static str, &'static str)],
}

const OPENAI: Flavor = Flavor { kind: "openai", default_base_url: None, stream_usage: true, default_headers: &[] };

/// How the request URL is built.
pub enum Endpoint {
    /// One URL for every model.
    Fixed(Uri),
    /// `{prefix}{model}{suffix}`, e.g. Azure's per-deployment URLs.
    PerModel { prefix: String, suffix: String },
}

pub struct OpenAi {
    kind: &'static str,
    base_url: String,
    endpoint: Endpoint,
    /// The same endpoint for `/embeddings`.
    embed_endpoint: Endpoint,
    /// The unbilled model listing the health checks probe: `{base}/models` (Azure:
    /// `{base}/openai/models?api-version=...`).
    models_url: Uri,
    auth: Option<(HeaderName, HeaderValue)>,
    secret: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    stream_usage: bool,
    /// The chat endpoint when its URL is the same for every model: `[answer, stream]`.
    chat_posts: Option<[FixedPost; 2]>,
    client: HttpClient,
}

fn build(spec: &Spec<'_>) -> Result<Arc<dyn Provider>, OptionError> {
    build_flavor(spec, &OPENAI)
}

/// Builds an OpenAI-compatible provider of the given flavor from its options.
pub fn build_flavor(spec: &Spec<'_>, flavor: &Flavor) -> Result<Arc<dyn Provider>, OptionError> {
    let o: Options = options(spec.options)?;
    let base = o.base_url.as_deref().or(flavor.default_base_url).ok_or_else(|| {
        ("base_url".to_owned(), "missing field `base_url`".to_owned(), "add base_url = \"https://.../v1\"".to_owned())
    })?;
    let base = base.trim_end_matches('/').to_owned();
    let url = parse_url(&format!("{base}/chat/completions"), &base)?;
    let mut headers = o.headers;
    for (k, v) in flavor.default_headers {
        if !headers.keys().any(|h| h.eq_ignore_ascii_case(k)) {
            headers.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    let secret = o.api_key.filter(|k| !k.is_empty());
    let auth = secret.as_deref().map(bearer).transpose()?;
    let models_url = parse_url(&format!("{base}/models"), &base)?;
    Ok(Arc::new(OpenAi::custom(
        flavor.kind,
        base,
        Endpoint::Fixed(url),
        models_url,
        auth,
        secret,
        extra_headers(&headers)?,
        o.stream_usage.unwrap_or(flavor.stream_usage),
        spec.connect_timeout,
    )))
}

impl OpenAi {
    /// An OpenAI-compatible provider with a custom endpoint, model listing and auth header
    /// (e.g. Azure).
    #[allow(clippy::too_many_arguments)]
    pub fn custom(
        kind: &'static str,
        base_url: String,
        endpoint: Endpoint,
        models_url: Uri,
        auth: Option<(HeaderName, HeaderValue)>,
        secret: Option<String>,
        headers: Vec<(HeaderName, HeaderValue)>,
        stream_usage: bool,
        connect_timeout: std::time::Duration,
    ) -> OpenAi {
        let embed_endpoint = endpoint.sibling("embeddings");
        let mut p = OpenAi { kind, base_url, endpoint, embed_endpoint, models_url, auth, secret, headers, stream_usage, chat_posts: None, client: client(connect_timeout) };
        if let Endpoint::Fixed(url) = &p.endpoint {
            p.chat_posts = Some([false, true].map(|stream| FixedPost::new(url.clone(), p.chat_headers(stream))));
        }
        p
    }

    /// The headers of a chat request: content type, what it accepts, auth, extra headers.
    fn chat_headers(&self, stream: bool) -> Vec<(HeaderName, HeaderValue)> {
        let accept = HeaderValue::from_static(if stream { "text/event-stream" } else { "application/json" });
        let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/json")), (ACCEPT, accept)];
        headers.extend(self.auth.clone());
        headers.extend(self.headers.iter().cloned());
        headers
    }

    /// The URL a `models` health probe asks.
    pub fn models_url(&self) -> &Uri {
        &self.models_url
    }

    fn url(&self, model: &str) -> Result<Uri, ProviderError> {
        Self::endpoint_url(&self.endpoint, model)
    }

    fn endpoint_url(endpoint: &Endpoint, model: &str) -> Result<Uri, ProviderError> {
        match endpoint {
            Endpoint::Fixed(u) => Ok(u.clone()),
            Endpoint::PerModel { prefix, suffix } => format!("{prefix}{model}{suffix}")
                .parse()
                .map_err(|_| ProviderError::Protocol(format!("model \"{model}\" does not make a valid URL"))),
        }
    }
}

impl Endpoint {
    /// The same endpoint with its final `chat/completions` path replaced by `path` (e.g.
    /// `embeddings`), query kept.
    pub fn sibling(&self, path: &str) -> Endpoint {
        fn swap(url: &str, path: &str) -> String {
            let (head, query) = url.split_once('?').map_or((url, None), |(h, q)| (h, Some(q)));
            let head = head.strip_suffix("chat/completions").map_or_else(|| format!("{}/{path}", head.trim_end_matches('/')), |h| format!("{h}{path}"));
            match query {
                Some(q) => format!("{head}?{q}"),
                None => head,
            }
        }
        match self {
            Endpoint::Fixed(u) => swap(&u.to_string(), path).parse().map_or_else(|_| Endpoint::Fixed(u.clone()), Endpoint::Fixed),
            Endpoint::PerModel { prefix, suffix } => {
                // The model sits between prefix and suffix: `.../deployments/{d}/chat/completions?...`.
                let swapped = swap(&format!("x{suffix}"), path);
                Endpoint::PerModel { prefix: prefix.clone(), suffix: swapped[1..].to_owned() }
            }
        }
    }
}

/// Parses an http(s) URL, naming `base_url` on failure.
pub fn parse_url(url: &str, shown: &str) -> Result<Uri, OptionError> {
    url.parse()
        .ok()
        .filter(|u: &Uri| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
        .ok_or_else(|| {
            (
                "base_url".to_owned(),
                format!("\"{shown}\" is not an http(s) URL"),
                "write it like \"https://api.openai.com/v1\"".to_owned(),
            )
        })
}

/// A sensitive header value carrying a secret.
pub fn secret_header(value: &str) -> Result<HeaderValue, OptionError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        ("api_key".to_owned(), "contains characters not allowed in a header".to_owned(), "check the key for stray whitespace or quotes".to_owned())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn bearer(key: &str) -> Result<(HeaderName, HeaderValue), OptionError> {
    Ok((AUTHORIZATION, secret_header(&format!("Bearer {key}"))?))
}

impl Provider for OpenAi {
    fn chat<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            let stream = call.request.stream;
            let body = if self.stream_usage {
                call.request.upstream_body(call.upstream_model, true)
            } else if call.request.has_stream_options {
                call.request.body_without_stream_options(call.upstream_model)
            } else {
                call.request.body_with_model(call.upstream_model)
            };
            let per_model;
            let post = match &self.chat_posts {
                Some(posts) => &posts[usize::from(stream)],
                None => {
                    per_model = FixedPost::new(self.url(call.upstream_model)?, self.chat_headers(stream));
                    &per_model
                }
            };
            let secret: &[String] = self.secret.as_slice();
            let (parts, body) = post_checked(&self.client, post, body, call.timeouts.idle, |status, headers, bytes| {
                let secrets: Vec<&str> = secret.iter().map(String::as_str).collect();
                upstream_status(status, headers, bytes, &secrets)
            })
            .await?;
            if stream {
                let is_json = parts
                    .headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                if is_json {
                    let bytes = read_body(body, call.timeouts.idle, MAX_BODY).await?;
                    let text = String::from_utf8_lossy(&bytes);
                    return Err(ProviderError::Protocol(format!(
                        "expected an event stream, got JSON: {}",
                        super::http::redact(&text.chars().take(200).collect::<String>(), &[])
                    )));
                }
                let estimate = (!self.stream_usage).then(|| Counting {
                    prompt: RequestFeatures::parse(&call.request.body).prompt_tokens(call.upstream_model),
                    model: call.upstream_model.into(),
                    text: String::new(),
                });
                return Ok(Reply::Stream(Box::pin(SseChunks::new(body, call.alias, call.request.include_usage, estimate))));
            }
            let bytes = read_body(body, call.timeouts.idle, MAX_BODY).await?;
            let (body, usage) = normalize_completion(&bytes, call.alias).map_err(|e| match e {
                NormalizeError::Invalid(m) => ProviderError::Protocol(m),
                NormalizeError::Upstream(m) => ProviderError::Protocol(format!("upstream error in a 200 response: {m}")),
            })?;
            Ok(Reply::Complete(Completion { body, usage }))
        })
    }

    /// Passthrough to `{base}/embeddings` (Azure: `.../deployments/{d}/embeddings?api-version=`):
    /// the body as the caller wrote it (`encoding_format`, `dimensions`, `user` included) with
    /// only `model` rewritten; the answer relabelled with the alias, base64 embeddings as sent.
    fn embed<'a>(&'a self, call: EmbedCall<'a>) -> BoxFuture<'a, Result<Embeddings, ProviderError>> {
        Box::pin(async move {
            let body = call.request.body_with_model(call.upstream_model);
            let mut req = Request::post(Self::endpoint_url(&self.embed_endpoint, call.upstream_model)?)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(ACCEPT, HeaderValue::from_static("application/json"));
            if let Some((name, value)) = &self.auth {
                req = req.header(name, value.clone());
            }
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            let req = req.body(Full::new(body)).map_err(|e| ProviderError::Protocol(format!("building the request: {e}")))?;
            let secrets: Vec<&str> = self.secret.as_deref().into_iter().collect();
            let (_, body) = send_checked(&self.client, req, call.timeouts.idle, |status, headers, bytes| upstream_status(status, headers, bytes, &secrets)).await?;
            let bytes = read_body(body, call.timeouts.idle, MAX_BODY).await?;
            let (body, usage) = normalize_list(&bytes, call.alias, call.request.body.len()).map_err(|e| match e {
                EmbedNormalizeError::Invalid(m) => ProviderError::Protocol(m),
                EmbedNormalizeError::Upstream(m) => {
                    ProviderError::Protocol(format!("upstream error in a 200 response: {}", super::http::redact(&m, &secrets)))
                }
            })?;
            Ok(Embeddings { body, usage: Some(usage) })
        })
    }

    /// `models`: `GET {base}/models` (Azure: `{base}/openai/models?api-version=...`) with the
    /// provider's auth and headers; any 2xx answer is healthy.
    fn probe<'a>(&'a self, probe: ProbeCall<'a>) -> BoxFuture<'a, Result<(), ProviderError>> {
        match probe.kind {
            ProbeKind::Completion => completion_probe(self, probe),
            ProbeKind::Models => Box::pin(async move {
                let auth = self.auth.as_ref().map(|(k, v)| (k, v));
                let req = get_request(self.models_url.clone(), auth.into_iter().chain(self.headers.iter().map(|(k, v)| (k, v))))?;
                let secrets: Vec<&str> = self.secret.as_deref().into_iter().collect();
                probe_get(&self.client, req, probe.timeout, &secrets).await.map(drop)
            }),
        }
    }

    fn describe(&self) -> String {
        let key = if self.secret.is_some() { "api_key=<redacted>" } else { "api_key=none" };
        let extra = if self.headers.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
            format!(" headers=[{}]", names.join(", "))
        };
        let usage = if self.stream_usage { "" } else { " stream_usage=false" };
        format!("kind={} base_url={} {key}{extra}{usage}", self.kind, self.base_url)
    }
}

/// Usage counted by the gateway for an upstream that reports none on streams: the prompt's
/// tokens, and the streamed text and tool-call arguments, counted at the end.
struct Counting {
    prompt: u64,
    model: Box<str>,
    text: String,
}

impl Counting {
    /// Adds a content chunk's text.
    fn add(&mut self, data: &[u8]) {
        let Ok(chunk) = crate::wire::json::from_slice::<crate::wire::openai::types::ChatCompletionChunk>(data) else { return };
        for choice in chunk.choices {
            let d = choice.delta;
            for t in [d.content, d.refusal].into_iter().flatten() {
                self.text.push_str(&t);
            }
            for call in d.tool_calls.into_iter().flatten() {
                self.text.push_str(call.function.name.as_deref().unwrap_or(""));
                self.text.push_str(call.function.arguments.as_deref().unwrap_or(""));
            }
        }
    }
}

/// An OpenAI SSE body turned into normalized chunks.
struct SseChunks {
    body: UpstreamBody,
    parser: SseParser,
    alias: Box<str>,
    /// The repeated start of this stream's chunks, normalized once.
    prefix: ChunkPrefix,
    /// The caller asked for a usage chunk.
    keep_usage: bool,
    /// For upstreams that report no stream usage: the counted prompt and the streamed text.
    estimate: Option<Counting>,
    usage_seen: bool,
    /// An id/created pair to label a synthesized usage chunk.
    last_id: Option<Bytes>,
    finished: bool,
    done: bool,
}

impl SseChunks {
    fn new(body: UpstreamBody, alias: &str, keep_usage: bool, estimate: Option<Counting>) -> Self {
        SseChunks {
            body,
            parser: SseParser::new(),
            alias: alias.into(),
            prefix: ChunkPrefix::default(),
            keep_usage,
            estimate,
            usage_seen: false,
            last_id: None,
            finished: false,
            done: false,
        }
    }

    /// At a clean end: for an upstream that reported no usage, a usage chunk with an estimate
    /// (sent to the caller only if it asked for usage).
    fn synthesized_usage(&mut self) -> Option<Result<Chunk, ProviderError>> {
        let counted = self.estimate.take()?;
        if self.usage_seen {
            return None;
        }
        let prompt = counted.prompt;
        let completion = crate::tokens::count(&counted.model, &counted.text);
        let usage = crate::wire::openai::Usage { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
        let data = if self.keep_usage {
            let chunk = crate::wire::openai::types::ChatCompletionChunk {
                id: self.last_id.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default(),
                object: "chat.completion.chunk".into(),
                created: 0,
                model: self.alias.to_string(),
                choices: Vec::new(),
                usage: Some(Some(crate::wire::openai::types::UsageDetail {
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                    total_tokens: prompt + completion,
                    ..Default::default()
                })),
                switchyard: None,
            };
            Bytes::from(serde_json::to_vec(&chunk).unwrap_or_default())
        } else {
            Bytes::new()
        };
        Some(Ok(Chunk::new(data, false, false, Some(usage))))
    }

    /// Turns one event into a stream item; `None` for `[DONE]` (the end).
    fn on_event(&mut self, ev: SseEvent) -> Option<Result<Chunk, ProviderError>> {
        if ev.data.as_ref() == b"[DONE]" {
            self.done = true;
            return self.synthesized_usage();
        }
        if ev.event.as_deref() == Some(b"error") {
            self.done = true;
            let msg = crate::wire::json::from_slice::<&serde_json::value::RawValue>(&ev.data)
                .ok()
                .and_then(|raw| crate::wire::json::entries(raw.get()).ok().and_then(|e| {
                    e.iter().find(|(k, _)| k == "error").map(|(_, v)| crate::wire::openai::upstream_error_message(v))
                }))
                .unwrap_or_else(|| String::from_utf8_lossy(&ev.data).chars().take(300).collect());
            return Some(Err(ProviderError::Stream(msg)));
        }
        match normalize_stream_chunk(&ev.data, &self.alias, self.keep_usage, &mut self.prefix) {
            Ok(c) => {
                self.finished |= c.finish;
                self.usage_seen |= c.usage.is_some();
                if let Some(counting) = &mut self.estimate {
                    if c.content {
                        counting.add(&ev.data);
                    }
                    if self.last_id.is_none() {
                        self.last_id = chunk_id(&ev.data);
                    }
                }
                Some(Ok(Chunk { data: c.data, content: c.content, finish: c.finish, usage: c.usage, framed: c.framed }))
            }
            Err(NormalizeError::Upstream(m)) => {
                self.done = true;
                Some(Err(ProviderError::Stream(m)))
            }
            Err(NormalizeError::Invalid(m)) => {
                self.done = true;
                Some(Err(ProviderError::Protocol(format!("bad stream chunk: {m}"))))
            }
        }
    }

    fn at_end(&mut self) -> Option<Result<Chunk, ProviderError>> {
        self.done = true;
        if self.finished {
            self.synthesized_usage()
        } else {
            Some(Err(ProviderError::Stream("the upstream closed the stream before it finished".into())))
        }
    }
}

/// The `id` of a chunk, for labelling a synthesized one.
fn chunk_id(data: &[u8]) -> Option<Bytes> {
    #[derive(Deserialize)]
    struct Id {
        id: Option<String>,
    }
    crate::wire::json::from_slice::<Id>(data).ok()?.id.map(Bytes::from)
}

impl Stream for SseChunks {
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.parser.next_event() {
                Ok(Some(ev)) => return Poll::Ready(this.on_event(ev)),
                Ok(None) => {}
                Err(_) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(ProviderError::Protocol("a stream event exceeded 16 MiB".into()))));
                }
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.parser.push(data);
                    }
                }
                Some(Err(e)) => {
                    if this.finished {
                        this.done = true;
                        return Poll::Ready(this.synthesized_usage());
                    }
                    this.done = true;
                    return Poll::Ready(Some(Err(ProviderError::Stream(format!("connection lost mid-stream: {e}")))));
                }
                None => {
                    if let Some(ev) = this.parser.finish() {
                        if let Some(item) = this.on_event(ev) {
                            return Poll::Ready(Some(item));
                        }
                        return Poll::Ready(this.synthesized_usage());
                    }
                    return Poll::Ready(this.at_end());
                }
            }
        }
    }
}


#[cfg(test)]
mod embed_tests {
    use super::*;

    #[test]
    fn embeddings_urls_sit_beside_chat_completions() {
        let fixed = Endpoint::Fixed("https://api.openai.com/v1/chat/completions".parse().unwrap());
        match fixed.sibling("embeddings") {
            Endpoint::Fixed(u) => assert_eq!(u.to_string(), "https://api.openai.com/v1/embeddings"),
            Endpoint::PerModel { .. } => panic!("fixed stays fixed"),
        }
        let azure = Endpoint::PerModel {
            prefix: "https://r.openai.azure.com/openai/deployments/".into(),
            suffix: "/chat/completions?api-version=2024-10-21".into(),
        };
        let url = OpenAi::endpoint_url(&azure.sibling("embeddings"), "emb-deploy").unwrap();
        assert_eq!(url.to_string(), "https://r.openai.azure.com/openai/deployments/emb-deploy/embeddings?api-version=2024-10-21");
    }
}
