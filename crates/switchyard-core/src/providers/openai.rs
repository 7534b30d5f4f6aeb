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

use futures_util::Stream;
use futures_util::future::BoxFuture;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use serde::Deserialize;

use super::http::{HttpClient, MAX_BODY, client, client_error, extra_headers, read_body, upstream_status};
use super::{Call, Chunk, Completion, Kind, OptionError, Provider, ProviderError, Reply, Spec, options};
use crate::wire::openai::{NormalizeError, normalize_chunk, normalize_completion};
use crate::wire::sse::{SseEvent, SseParser};

pub const KIND: Kind = Kind { name: "openai", build };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    base_url: String,
    /// Sent as `Authorization: Bearer <key>`; omit for local servers.
    #[serde(default)]
    api_key: Option<String>,
    /// Extra request headers (e.g. OpenRouter's `HTTP-Referer` / `X-Title`).
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

pub struct OpenAi {
    base_url: String,
    chat_url: Uri,
    auth: Option<HeaderValue>,
    secret: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: HttpClient,
}

fn build(spec: &Spec<'_>) -> Result<Arc<dyn Provider>, OptionError> {
    let o: Options = options(spec.options)?;
    let base = o.base_url.trim_end_matches('/').to_owned();
    let chat_url: Uri = format!("{base}/chat/completions").parse().ok().filter(|u: &Uri| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
    }).ok_or_else(|| {
        (
            "base_url".to_owned(),
            format!("\"{}\" is not an http(s) URL", o.base_url),
            "write it like \"https://api.openai.com/v1\"".to_owned(),
        )
    })?;
    let secret = o.api_key.filter(|k| !k.is_empty());
    let auth = match &secret {
        Some(key) => {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                ("api_key".to_owned(), "contains characters not allowed in a header".to_owned(), "check the key for stray whitespace or quotes".to_owned())
            })?;
            v.set_sensitive(true);
            Some(v)
        }
        None => None,
    };
    Ok(Arc::new(OpenAi {
        base_url: base,
        chat_url,
        auth,
        secret,
        headers: extra_headers(&o.headers)?,
        client: client(spec.connect_timeout),
    }))
}

impl Provider for OpenAi {
    fn chat<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            let stream = call.request.stream;
            let mut req = Request::post(self.chat_url.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(ACCEPT, HeaderValue::from_static(if stream { "text/event-stream" } else { "application/json" }));
            if let Some(auth) = &self.auth {
                req = req.header(AUTHORIZATION, auth.clone());
            }
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            let req = req
                .body(Full::new(call.request.body_with_model(call.upstream_model)))
                .map_err(|e| ProviderError::Protocol(format!("building the request: {e}")))?;
            let resp = self.client.request(req).await.map_err(client_error)?;
            let (parts, body) = resp.into_parts();
            if !parts.status.is_success() {
                let bytes = read_body(body, call.timeouts.idle, 1024 * 1024).await.unwrap_or_default();
                let secrets: Vec<&str> = self.secret.as_deref().into_iter().collect();
                return Err(ProviderError::Status(upstream_status(parts.status, &parts.headers, &bytes, &secrets)));
            }
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
                return Ok(Reply::Stream(Box::pin(SseChunks::new(body, call.alias))));
            }
            let bytes = read_body(body, call.timeouts.idle, MAX_BODY).await?;
            let (body, usage) = normalize_completion(&bytes, call.alias).map_err(|e| match e {
                NormalizeError::Invalid(m) => ProviderError::Protocol(m),
                NormalizeError::Upstream(m) => ProviderError::Protocol(format!("upstream error in a 200 response: {m}")),
            })?;
            Ok(Reply::Complete(Completion { body, usage }))
        })
    }

    fn describe(&self) -> String {
        let key = if self.secret.is_some() { "api_key=<redacted>" } else { "api_key=none" };
        let extra = if self.headers.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
            format!(" headers=[{}]", names.join(", "))
        };
        format!("kind=openai base_url={} {key}{extra}", self.base_url)
    }
}

/// An OpenAI SSE body turned into normalized chunks.
struct SseChunks {
    body: Incoming,
    parser: SseParser,
    alias: Box<str>,
    finished: bool,
    done: bool,
}

impl SseChunks {
    fn new(body: Incoming, alias: &str) -> Self {
        SseChunks { body, parser: SseParser::new(), alias: alias.into(), finished: false, done: false }
    }

    /// Turns one event into a stream item; `None` for `[DONE]` (the end).
    fn on_event(&mut self, ev: SseEvent) -> Option<Result<Chunk, ProviderError>> {
        if ev.data.as_ref() == b"[DONE]" {
            self.done = true;
            return None;
        }
        if ev.event.as_deref() == Some("error") {
            self.done = true;
            let msg = serde_json::from_slice::<&serde_json::value::RawValue>(&ev.data)
                .ok()
                .and_then(|raw| crate::wire::json::entries(raw.get()).ok().and_then(|e| {
                    e.iter().find(|(k, _)| k == "error").map(|(_, v)| crate::wire::openai::upstream_error_message(v))
                }))
                .unwrap_or_else(|| String::from_utf8_lossy(&ev.data).chars().take(300).collect());
            return Some(Err(ProviderError::Stream(msg)));
        }
        match normalize_chunk(&ev.data, &self.alias) {
            Ok(c) => {
                self.finished |= c.finish;
                Some(Ok(Chunk { data: c.data, content: c.content, finish: c.finish, usage: c.usage }))
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
            None
        } else {
            Some(Err(ProviderError::Stream("the upstream closed the stream before it finished".into())))
        }
    }
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
                        return Poll::Ready(None);
                    }
                    this.done = true;
                    return Poll::Ready(Some(Err(ProviderError::Stream(format!("connection lost mid-stream: {e}")))));
                }
                None => {
                    if let Some(ev) = this.parser.finish() {
                        if let Some(item) = this.on_event(ev) {
                            return Poll::Ready(Some(item));
                        }
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(this.at_end());
                }
            }
        }
    }
}

