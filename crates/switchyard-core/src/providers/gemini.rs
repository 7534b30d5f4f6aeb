//! `kind = "gemini"`: Google's Gemini API (`generateContent`, `streamGenerateContent?alt=sse`).
//!
//! The caller's OpenAI chat request is translated into a `GenerateContentRequest` and the answer
//! back into OpenAI's JSON and stream chunks ([`crate::wire::gemini`]). The API key travels in
//! the `x-goog-api-key` header, never as the `?key=` query parameter Google also accepts, so it
//! cannot end up in a logged URL.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Body;
use super::http::UpstreamBody;
use serde::{Deserialize, Serialize};

use super::http::{HttpClient, MAX_BODY, client, extra_headers, get_request, read_body, send_checked, redact, upstream_status};
use super::{
    Call, Chunk, Completion, EmbedCall, Embeddings, Kind, OptionError, ProbeCall, Provider, ProviderError, Reply, Spec, UpstreamStatus,
    Usage, completion_probe, options,
};
use crate::config::ProbeKind;
use crate::wire::openai::embeddings::{EmbedInput, EmbeddingFields, list_body};
use crate::wire::gemini::stream::{SseTranslator, StreamError};
use crate::wire::gemini::{AnswerMeta, CallIds, RequestSettings, TranslateError, completion_body, to_gemini_request};
use crate::wire::openai::types::ChatCompletionRequest;
use crate::wire::openai::NormalizeError;

pub const KIND: Kind = Kind { name: "gemini", build };

const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
const X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// e.g. `https://generativelanguage.googleapis.com/v1beta`; `/models/{model}:...` is appended.
    #[serde(default = "default_base_url")]
    base_url: String,
    /// Sent as `x-goog-api-key`; may be omitted behind a proxy that adds it.
    #[serde(default)]
    api_key: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Passed through as the request's `safetySettings`.
    #[serde(default)]
    safety_settings: Vec<SafetySetting>,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

/// One `safetySettings` entry, e.g. `{ category = "HARM_CATEGORY_HARASSMENT", threshold = "BLOCK_ONLY_HIGH" }`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SafetySetting {
    category: String,
    threshold: String,
}

pub struct Gemini {
    base_url: String,
    key: Option<HeaderValue>,
    secret: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    safety_settings: Vec<serde_json::Value>,
    client: HttpClient,
}

fn build(spec: &Spec<'_>) -> Result<Arc<dyn Provider>, OptionError> {
    let o: Options = options(spec.options)?;
    let base = o.base_url.trim_end_matches('/').to_owned();
    let valid = base.parse::<Uri>().ok().is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !valid {
        return Err((
            "base_url".to_owned(),
            format!("\"{}\" is not an http(s) URL", o.base_url),
            format!("write it like \"{DEFAULT_BASE_URL}\""),
        ));
    }
    let secret = o.api_key.filter(|k| !k.is_empty());
    let key = match &secret {
        Some(k) => {
            let mut v = HeaderValue::from_str(k).map_err(|_| {
                ("api_key".to_owned(), "contains characters not allowed in a header".to_owned(), "check the key for stray whitespace or quotes".to_owned())
            })?;
            v.set_sensitive(true);
            Some(v)
        }
        None => None,
    };
    let safety_settings = o.safety_settings.iter().map(|s| serde_json::to_value(s).expect("plain strings serialize")).collect();
    Ok(Arc::new(Gemini { base_url: base, key, secret, headers: extra_headers(&o.headers)?, safety_settings, client: client(spec.connect_timeout) }))
}

impl Provider for Gemini {
    fn chat<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            let stream = call.request.stream;
            let body = self.translate(&call)?;
            let req = self.request(call.upstream_model, stream, body)?;
            let (parts, body) = send_checked(&self.client, req, call.timeouts.idle, |status, headers, bytes| self.error_status(status, headers, bytes)).await?;
            let meta = answer_meta(call.alias);
            if stream {
                if is_json(&parts.headers) {
                    let bytes = read_body(body, call.timeouts.idle, MAX_BODY).await?;
                    let start: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
                    return Err(ProviderError::Protocol(format!("expected an event stream, got JSON: {}", redact(&start, &self.secrets()))));
                }
                return Ok(Reply::Stream(Box::pin(GeminiStream::new(body, meta, call.request.include_usage))));
            }
            let bytes = read_body(body, call.timeouts.idle, MAX_BODY).await?;
            let mut meta = meta;
            let (body, usage) = completion_body(&bytes, &mut meta).map_err(|e| match e {
                NormalizeError::Invalid(m) => ProviderError::Protocol(m),
                NormalizeError::Upstream(m) => ProviderError::Protocol(format!("upstream error in a 200 response: {}", redact(&m, &self.secrets()))),
            })?;
            Ok(Reply::Complete(Completion { body, usage }))
        })
    }

    /// `models/{m}:embedContent` for one input, `:batchEmbedContents` for several (see
    /// [`to_gemini_embed`], [`from_gemini_embed`]).
    fn embed<'a>(&'a self, call: EmbedCall<'a>) -> BoxFuture<'a, Result<Embeddings, ProviderError>> {
        Box::pin(async move {
            let fields = call.request.fields().map_err(|e| caller_error(e.message))?;
            let (batch, body) = to_gemini_embed(&fields, call.upstream_model)?;
            let uri = embed_url(&self.base_url, call.upstream_model, batch)?;
            let mut req = Request::post(uri)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(ACCEPT, HeaderValue::from_static("application/json"));
            if let Some(key) = &self.key {
                req = req.header(X_GOOG_API_KEY, key.clone());
            }
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            let req = req
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| ProviderError::Protocol(format!("building the request: {e}")))?;
            let (_, body) = send_checked(&self.client, req, call.timeouts.idle, |status, headers, bytes| self.error_status(status, headers, bytes)).await?;
            let bytes = read_body(body, call.timeouts.idle, MAX_BODY).await?;
            from_gemini_embed(&bytes, call.alias, &fields, batch)
        })
    }

    /// `models`: `GET {base}/models/{model}` with the key in `x-goog-api-key`; a 404 means the
    /// model name is wrong.
    fn probe<'a>(&'a self, probe: ProbeCall<'a>) -> BoxFuture<'a, Result<(), ProviderError>> {
        match probe.kind {
            ProbeKind::Completion => completion_probe(self, probe),
            ProbeKind::Models => Box::pin(async move {
                let key_name = X_GOOG_API_KEY;
                let key = self.key.as_ref().map(|v| (&key_name, v));
                let req = get_request(model_url(&self.base_url, probe.model)?, key.into_iter().chain(self.headers.iter().map(|(k, v)| (k, v))))?;
                let (_, body) = send_checked(&self.client, req, probe.timeout, |status, headers, bytes| self.error_status(status, headers, bytes)).await?;
                read_body(body, probe.timeout, MAX_BODY).await.map(drop)
            }),
        }
    }

    fn describe(&self) -> String {
        let key = if self.secret.is_some() { "api_key=<redacted>" } else { "api_key=none" };
        let mut out = format!("kind=gemini base_url={} {key}", self.base_url);
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
            out.push_str(&format!(" headers=[{}]", names.join(", ")));
        }
        if !self.safety_settings.is_empty() {
            out.push_str(&format!(" safety_settings={}", self.safety_settings.len()));
        }
        out
    }
}

impl Gemini {
    fn secrets(&self) -> Vec<&str> {
        self.secret.as_deref().into_iter().collect()
    }

    /// The caller's OpenAI request as a Gemini request body.
    fn translate(&self, call: &Call<'_>) -> Result<Bytes, ProviderError> {
        let req: ChatCompletionRequest = crate::wire::json::from_slice(&call.request.body)
            .map_err(|e| ProviderError::Unsupported(format!("the request does not fit the chat schema: {e}")))?;
        let settings = RequestSettings { safety_settings: &self.safety_settings };
        let body = to_gemini_request(&req, settings).map_err(|e| match e {
            TranslateError::Invalid(m) => caller_error(m),
            TranslateError::Unsupported(m) => ProviderError::Unsupported(m),
        })?;
        Ok(Bytes::from(serde_json::to_vec(&body).expect("serializing a request to memory cannot fail")))
    }

    fn request(&self, model: &str, stream: bool, body: Bytes) -> Result<Request<Full<Bytes>>, ProviderError> {
        let uri = method_url(&self.base_url, model, stream)?;
        let mut req = Request::post(uri)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static(if stream { "text/event-stream" } else { "application/json" }));
        if let Some(key) = &self.key {
            req = req.header(X_GOOG_API_KEY, key.clone());
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req.body(Full::new(body)).map_err(|e| ProviderError::Protocol(format!("building the request: {e}")))
    }

    /// Google's error body as an [`UpstreamStatus`], with the statuses Gemini gets "wrong" for a
    /// gateway corrected: an invalid API key is a 400 (`API_KEY_INVALID`) and an unserved region
    /// or tier a 400 `FAILED_PRECONDITION`, but neither is the caller's fault, so both become
    /// 401 / 403 and the chain moves to its next target instead of failing the call.
    fn error_status(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> UpstreamStatus {
        let body = unwrap_array(body);
        let mut s = upstream_status(status, headers, body, &self.secrets());
        if status == StatusCode::BAD_REQUEST {
            let text = String::from_utf8_lossy(body);
            if text.contains("API_KEY_INVALID") {
                s.status = 401;
            } else if s.code.as_deref() == Some("FAILED_PRECONDITION") {
                s.status = 403;
            }
        }
        s
    }
}

/// A request the adapter cannot express: the caller's fault, an HTTP 400.
fn caller_error(message: String) -> ProviderError {
    ProviderError::Status(UpstreamStatus { status: 400, message, error_type: Some("invalid_request_error".into()), ..Default::default() })
}

/// Gemini sometimes wraps an error body in a one-element JSON array (`[{"error": ...}]`).
fn unwrap_array(body: &[u8]) -> &[u8] {
    let trimmed = body.trim_ascii();
    if trimmed.first() == Some(&b'[') && trimmed.last() == Some(&b']') {
        let inner = trimmed[1..trimmed.len() - 1].trim_ascii();
        if inner.first() == Some(&b'{') && crate::wire::json::from_slice::<serde_json::Value>(inner).is_ok() {
            return inner;
        }
    }
    body
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"))
}

/// `{base}/models/{model}:generateContent` or `...:streamGenerateContent?alt=sse`. A model
/// already named `models/...` or `tunedModels/...` is used as is; anything outside the URL-safe
/// set is percent-encoded so that no model name can alter the path.
fn method_url(base: &str, model: &str, stream: bool) -> Result<Uri, ProviderError> {
    let name = if model.starts_with("models/") || model.starts_with("tunedModels/") { model.to_owned() } else { format!("models/{model}") };
    let method = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
    format!("{base}/{}:{method}", encode_path(&name))
        .parse()
        .map_err(|_| ProviderError::Unsupported(format!("the model name \"{model}\" does not fit in a URL")))
}

/// `{base}/models/{model}:embedContent` or `...:batchEmbedContents`.
fn embed_url(base: &str, model: &str, batch: bool) -> Result<Uri, ProviderError> {
    let method = if batch { "batchEmbedContents" } else { "embedContent" };
    format!("{base}/{}:{method}", encode_path(&model_name(model)))
        .parse()
        .map_err(|_| ProviderError::Unsupported(format!("the model name \"{model}\" does not fit in a URL")))
}

/// `{base}/models/{model}` (a model's metadata, unbilled), which the `models` health probe asks.
fn model_url(base: &str, model: &str) -> Result<Uri, ProviderError> {
    format!("{base}/{}", encode_path(&model_name(model)))
        .parse()
        .map_err(|_| ProviderError::Unsupported(format!("the model name \"{model}\" does not fit in a URL")))
}

/// `models/{model}`, unless the model is already a resource name.
fn model_name(model: &str) -> String {
    if model.starts_with("models/") || model.starts_with("tunedModels/") { model.to_owned() } else { format!("models/{model}") }
}

/// An OpenAI embeddings request as Gemini's: one `EmbedContentRequest`
/// (`{model, content: {parts: [{text}]}, outputDimensionality}`) for one input, or
/// `{requests: [...]}` of them for `batchEmbedContents` when the input is an array (even of
/// one: the answer's shape follows the request's). Returns (batch, body). Token-id inputs
/// cannot be sent (Gemini embeds text only): the chain moves on.
pub fn to_gemini_embed(fields: &EmbeddingFields, model: &str) -> Result<(bool, serde_json::Value), ProviderError> {
    let texts = fields.input.texts().ok_or_else(|| ProviderError::Unsupported("token-id inputs (Gemini embeds text only)".into()))?;
    let name = model_name(model);
    let one = |text: &str| {
        let mut r = serde_json::json!({"model": name, "content": {"parts": [{"text": text}]}});
        if let Some(d) = fields.dimensions {
            r["outputDimensionality"] = serde_json::Value::from(d);
        }
        r
    };
    Ok(match &fields.input {
        EmbedInput::Text(t) => (false, one(t)),
        _ => (true, serde_json::json!({"requests": texts.iter().map(|t| one(t)).collect::<Vec<_>>()})),
    })
}

/// Gemini's `{"embedding": {"values"}}` / `{"embeddings": [{"values"}]}` as OpenAI's list.
///
/// Gemini reports no token usage for embeddings, so the usage in the answer (and the request
/// log) is an estimate: a token per four bytes of input text, as for streams whose upstream
/// reports no usage.
pub fn from_gemini_embed(bytes: &[u8], alias: &str, fields: &EmbeddingFields, batch: bool) -> Result<Embeddings, ProviderError> {
    #[derive(Deserialize)]
    struct Values {
        #[serde(default)]
        values: Vec<f32>,
    }
    #[derive(Deserialize)]
    struct Answer {
        embedding: Option<Values>,
        embeddings: Option<Vec<Values>>,
    }
    let a: Answer = crate::wire::json::from_slice(bytes).map_err(|e| ProviderError::Protocol(format!("not a Gemini embeddings answer: {e}")))?;
    let vectors: Vec<Vec<f32>> = match (batch, a.embedding, a.embeddings) {
        (false, Some(e), _) => vec![e.values],
        (true, _, Some(es)) => es.into_iter().map(|e| e.values).collect(),
        _ => return Err(ProviderError::Protocol("no `embedding` / `embeddings` in the Gemini answer".into())),
    };
    let expected = fields.input.items().len();
    if vectors.len() != expected {
        return Err(ProviderError::Protocol(format!("Gemini returned {} embeddings for {expected} inputs", vectors.len())));
    }
    let prompt = fields.input.count_tokens();
    let usage = Usage { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt };
    Ok(Embeddings { body: list_body(alias, &vectors, fields.base64(), usage), usage: Some(usage) })
}

fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Labels for one answer: the alias, a fallback id, and a random prefix that keeps generated
/// tool-call ids unique across answers.
fn answer_meta(alias: &str) -> AnswerMeta {
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let random = |n: usize| -> String { std::iter::repeat_with(fastrand::alphanumeric).take(n).collect() };
    AnswerMeta { alias: alias.to_owned(), id: format!("chatcmpl-{}", random(29)), created, call_ids: CallIds::new(random(12)) }
}

/// A Gemini SSE body turned into OpenAI chunks.
struct GeminiStream {
    body: UpstreamBody,
    sse: SseTranslator,
    pending: VecDeque<Chunk>,
    done: bool,
}

impl GeminiStream {
    fn new(body: UpstreamBody, meta: AnswerMeta, include_usage: bool) -> Self {
        GeminiStream { body, sse: SseTranslator::new(meta, include_usage), pending: VecDeque::new(), done: false }
    }

    fn queue(&mut self, result: Result<Vec<Chunk>, StreamError>) -> Option<ProviderError> {
        match result {
            Ok(chunks) => {
                self.pending.extend(chunks);
                None
            }
            Err(e) => {
                self.done = true;
                Some(stream_error(e))
            }
        }
    }
}

fn stream_error(e: StreamError) -> ProviderError {
    match e {
        StreamError::Upstream(m) => ProviderError::Stream(format!("upstream error event: {m}")),
        StreamError::Invalid(m) => ProviderError::Protocol(format!("bad stream event: {m}")),
        StreamError::Incomplete => ProviderError::Stream("the upstream closed the stream before a finishReason".into()),
        StreamError::TooLarge => ProviderError::Protocol("a stream event exceeded 16 MiB".into()),
    }
}

impl Stream for GeminiStream {
    type Item = Result<Chunk, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(chunk) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let result = this.sse.push(data);
                        if let Some(e) = this.queue(result) {
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                // After every candidate finished, a broken connection loses nothing.
                Some(Err(_)) if this.sse.is_done() => this.done = true,
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(ProviderError::Stream(format!("connection lost mid-stream: {e}")))));
                }
                None => {
                    let result = this.sse.end();
                    this.done = true;
                    if let Some(e) = this.queue(result) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_options(toml_text: &str) -> toml::Table {
        toml_text.parse().unwrap()
    }

    fn build_with(toml_text: &str) -> Result<Arc<dyn Provider>, OptionError> {
        let options = spec_options(toml_text);
        build(&Spec { name: "g", options: &options, connect_timeout: std::time::Duration::from_secs(1) })
    }

    #[test]
    fn urls_keep_the_key_out_and_the_model_contained() {
        let u = method_url(DEFAULT_BASE_URL, "gemini-2.5-flash", false).unwrap();
        assert_eq!(u.to_string(), "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent");
        let u = method_url("http://127.0.0.1:9/v1beta", "models/gemini-2.5-pro", true).unwrap();
        assert_eq!(u.to_string(), "http://127.0.0.1:9/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse");
        let u = method_url("http://h/v1beta", "evil?key=x#frag", false).unwrap();
        assert_eq!(u.path(), "/v1beta/models/evil%3Fkey%3Dx%23frag:generateContent");
        assert_eq!(u.query(), None);
        assert_eq!(method_url("http://h/v1", "tunedModels/mine-1", false).unwrap().path(), "/v1/tunedModels/mine-1:generateContent");
    }

    #[test]
    fn options_are_checked_and_described_without_the_key() {
        let p = build_with("api_key = \"AIzaSyTESTKEY0123456789abcdefghijklmno\"\nsafety_settings = [{ category = \"HARM_CATEGORY_HARASSMENT\", threshold = \"BLOCK_NONE\" }]\nheaders = { \"x-extra\" = \"1\" }").unwrap();
        let d = p.describe();
        assert_eq!(d, "kind=gemini base_url=https://generativelanguage.googleapis.com/v1beta api_key=<redacted> headers=[x-extra] safety_settings=1");
        let e = build_with("base_url = \"ftp://x\"").err().unwrap();
        assert_eq!(e.0, "base_url");
        let e = build_with("safety_settings = [{ category = \"C\" }]").err().unwrap();
        assert!(e.0.starts_with("safety_settings"), "{e:?}");
        assert!(e.1.contains("threshold"), "{e:?}");
        let e = build_with("apikey = \"k\"").err().unwrap();
        assert_eq!(e.0, "apikey");
    }

    #[test]
    fn errors_that_are_not_the_callers_move_on() {
        let g = Gemini { base_url: String::new(), key: None, secret: Some("AIzaSecretSecret".into()), headers: Vec::new(), safety_settings: Vec::new(), client: client(std::time::Duration::from_secs(1)) };
        let bad_key = br#"[{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}]"#;
        let s = g.error_status(StatusCode::BAD_REQUEST, &HeaderMap::new(), bad_key);
        assert_eq!((s.status, s.code.as_deref()), (401, Some("INVALID_ARGUMENT")));
        assert_eq!(s.message, "API key not valid. Please pass a valid API key.");
        let region = br#"{"error":{"code":400,"message":"User location is not supported for the API use.","status":"FAILED_PRECONDITION"}}"#;
        assert_eq!(g.error_status(StatusCode::BAD_REQUEST, &HeaderMap::new(), region).status, 403);
        let caller = br#"{"error":{"code":400,"message":"Function call is missing a thought_signature in functionCall parts.","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(g.error_status(StatusCode::BAD_REQUEST, &HeaderMap::new(), caller).status, 400);
        let leaky = br#"{"error":{"code":403,"message":"key AIzaSecretSecret is disabled","status":"PERMISSION_DENIED"}}"#;
        assert!(!g.error_status(StatusCode::FORBIDDEN, &HeaderMap::new(), leaky).message.contains("AIzaSecretSecret"));
    }
}

#[cfg(test)]
mod embed_tests {
    use bytes::Bytes;
    use serde_json::{Value, json};

    use super::{embed_url, from_gemini_embed, to_gemini_embed};
    use crate::providers::ProviderError;
    use crate::wire::openai::embeddings::EmbedRequest;

    fn fields(v: Value) -> crate::wire::openai::embeddings::EmbeddingFields {
        EmbedRequest::parse(Bytes::from(v.to_string())).unwrap().fields().unwrap()
    }

    #[test]
    fn one_input_is_an_embed_content_request() {
        let (batch, body) = to_gemini_embed(&fields(json!({"model": "e", "input": "hi", "dimensions": 256})), "gemini-embedding-001").unwrap();
        assert!(!batch);
        assert_eq!(
            body,
            json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 256})
        );
        assert_eq!(
            embed_url("https://generativelanguage.googleapis.com/v1beta", "gemini-embedding-001", false).unwrap().to_string(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:embedContent"
        );
    }

    #[test]
    fn arrays_are_batch_embed_contents_requests() {
        let (batch, body) = to_gemini_embed(&fields(json!({"model": "e", "input": ["a", "b"]})), "models/text-embedding-004").unwrap();
        assert!(batch);
        assert_eq!(
            body,
            json!({"requests": [
                {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
                {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}}]})
        );
        assert!(embed_url("http://h/v1beta", "m", true).unwrap().to_string().ends_with("/models/m:batchEmbedContents"));
        let tokens = fields(json!({"model": "e", "input": [[1, 2]]}));
        assert!(matches!(to_gemini_embed(&tokens, "m"), Err(ProviderError::Unsupported(_))));
    }

    #[test]
    fn answers_translate_back_with_estimated_usage() {
        let f = fields(json!({"model": "e", "input": "sixteen bytes!!!"}));
        let e = from_gemini_embed(br#"{"embedding": {"values": [0.5, -1.0]}}"#, "emb", &f, false).unwrap();
        let v: Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(
            v,
            json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}],
                   "model": "emb", "usage": {"prompt_tokens": 4, "total_tokens": 4}})
        );
        let f = fields(json!({"model": "e", "input": ["a", "b"], "encoding_format": "base64"}));
        let e = from_gemini_embed(br#"{"embeddings": [{"values": [1.0]}, {"values": [2.0]}]}"#, "emb", &f, true).unwrap();
        let v: Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!((v["data"][0]["embedding"].as_str(), v["data"][1]["embedding"].as_str()), (Some("AACAPw=="), Some("AAAAQA==")));
        assert!(matches!(from_gemini_embed(br#"{"embeddings": [{"values": [1.0]}]}"#, "emb", &f, true), Err(ProviderError::Protocol(_))));
        assert!(matches!(from_gemini_embed(br#"{"embedding": {"values": []}}"#, "emb", &f, true), Err(ProviderError::Protocol(_))));
    }
}
