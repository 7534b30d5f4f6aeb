//! Egress: one adapter per upstream wire format behind the [`Provider`] trait.
//!
//! Adapters translate the caller's request (OpenAI chat format, kept as raw bytes) into their
//! provider's request and the provider's answer back into OpenAI-shaped JSON and stream chunks.
//! Adding a provider kind is one new file plus one line in [`KINDS`].

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod gemini;
pub mod http;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod pool;
pub mod presets;
#[cfg(test)]
mod probe_tests;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;

use crate::config::{ProbeKind, ProviderConfig, TimeoutSettings};
use crate::wire::Format;
use crate::wire::openai::ChatRequest;
use crate::wire::openai::embeddings::EmbedRequest;
pub use crate::wire::openai::Usage;

/// A provider adapter.
pub trait Provider: Send + Sync + 'static {
    /// Sends one chat request upstream. For a streaming request, resolves once the upstream has
    /// accepted it (response headers), yielding the chunk stream; otherwise once the whole answer
    /// is in. Dropping the future or the stream cancels the upstream request.
    fn chat<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>>;

    /// A one-line description for `switchyard check`, with secrets redacted.
    fn describe(&self) -> String;

    /// The wire format this provider speaks natively, if not OpenAI's. A provider that returns
    /// `Some(f)` promises: when the request carries a native body in `f`
    /// ([`ChatRequest::native_in`]), it sends that body upstream with only `model` rewritten and
    /// answers in `f` (completion body and stream chunk data), not in OpenAI's shape.
    fn native_format(&self) -> Option<Format> {
        None
    }

    /// Whether the provider continues a conversation's final assistant message (assistant
    /// prefill, as Anthropic's Messages API does) instead of answering it. Mid-stream recovery
    /// sends such providers the partial answer as that final message; the others get it followed
    /// by a user message asking to continue.
    fn prefills_assistant(&self) -> bool {
        false
    }

    /// Sends one embeddings request upstream and answers with an OpenAI-shaped
    /// `{"object": "list", ...}` body labelled with the alias. Kinds without an embeddings API
    /// keep this default, so the chain moves on to a target that has one.
    fn embed<'a>(&'a self, call: EmbedCall<'a>) -> BoxFuture<'a, Result<Embeddings, ProviderError>> {
        let _ = call;
        Box::pin(std::future::ready(Err(ProviderError::Unsupported("embeddings".into()))))
    }

    /// One active health check of `probe.model` (see [`crate::router::health`]). A
    /// [`ProbeKind::Models`] probe asks the provider's unbilled model listing; a
    /// [`ProbeKind::Completion`] probe sends a minimal chat through [`Provider::chat`]
    /// ([`completion_probe`]). `Err(ProviderError::Unsupported)` means this kind of probe does
    /// not exist for this provider (the target is then left to passive health). This default
    /// has only the completion probe.
    fn probe<'a>(&'a self, probe: ProbeCall<'a>) -> BoxFuture<'a, Result<(), ProviderError>> {
        match probe.kind {
            ProbeKind::Completion => completion_probe(self, probe),
            ProbeKind::Models => Box::pin(std::future::ready(Err(ProviderError::Unsupported("no unbilled health probe".into())))),
        }
    }
}

/// One health probe of a target.
#[derive(Clone, Copy, Debug)]
pub struct ProbeCall<'a> {
    pub kind: ProbeKind,
    pub model: &'a str,
    /// Longest the probe may take (also its body reads' idle limit).
    pub timeout: Duration,
    /// Output tokens a completion probe asks for.
    pub max_tokens: u32,
}

/// The alias a completion probe's answer is labelled with (never seen by a client).
pub const PROBE_ALIAS: &str = "switchyard-health-check";

/// Whether `model` is an OpenAI reasoning model (o1, o3, o4-mini, gpt-5, ...) that takes
/// `max_completion_tokens` and rejects `max_tokens`.
pub fn is_reasoning_model(model: &str) -> bool {
    let name = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    let o_series = name.len() >= 2 && name.starts_with('o') && name.as_bytes()[1].is_ascii_digit();
    o_series || name.starts_with("gpt-5")
}

/// The body of a completion probe: one short user message and an output limit, as
/// `max_completion_tokens` for reasoning models and `max_tokens` for the rest (every adapter
/// translates either).
pub fn completion_probe_body(model: &str, max_tokens: u32) -> Bytes {
    let limit = if is_reasoning_model(model) { "max_completion_tokens" } else { "max_tokens" };
    let mut body = serde_json::json!({
        "model": PROBE_ALIAS,
        "messages": [{"role": "user", "content": "ping"}],
        "stream": false,
    });
    body[limit] = serde_json::json!(max_tokens);
    Bytes::from(body.to_string())
}

/// A completion probe: [`completion_probe_body`] sent through the provider's normal
/// [`Provider::chat`] path, non-streaming, every time limit set to the probe's timeout. Any
/// complete answer is a success.
pub fn completion_probe<'a, P: Provider + ?Sized>(provider: &'a P, probe: ProbeCall<'a>) -> BoxFuture<'a, Result<(), ProviderError>> {
    Box::pin(async move {
        let request = ChatRequest::parse(completion_probe_body(probe.model, probe.max_tokens))
            .map_err(|e| ProviderError::Protocol(format!("building the probe: {}", e.message)))?;
        let t = probe.timeout;
        let timeouts = TimeoutSettings { connect: t, first_byte: t, idle: t, total: t };
        let call = Call { request: &request, upstream_model: probe.model, alias: PROBE_ALIAS, timeouts: &timeouts };
        match provider.chat(call).await? {
            Reply::Complete(_) | Reply::Stream(_) => Ok(()),
        }
    })
}

/// One upstream embeddings call (see [`Call`]).
#[derive(Clone, Copy)]
pub struct EmbedCall<'a> {
    pub request: &'a EmbedRequest,
    pub upstream_model: &'a str,
    pub alias: &'a str,
    pub timeouts: &'a TimeoutSettings,
}

/// An embeddings answer: the OpenAI-shaped body and its usage.
pub struct Embeddings {
    pub body: Bytes,
    pub usage: Option<Usage>,
}

/// The wire format of `provider`'s answers to `request`: the caller's own format when the
/// provider takes the caller's native body, else OpenAI's.
pub fn answer_format(provider: &dyn Provider, request: &ChatRequest) -> Format {
    match provider.native_format() {
        Some(f) if request.native_in(f).is_some() => f,
        _ => Format::OpenAiChat,
    }
}

/// One upstream call: the request, the model to ask for, and the limits that apply.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub request: &'a ChatRequest,
    /// The model name the provider expects.
    pub upstream_model: &'a str,
    /// The alias the caller asked for; answers are labelled with it.
    pub alias: &'a str,
    pub timeouts: &'a TimeoutSettings,
}

/// What a provider answers.
pub enum Reply {
    /// A complete, OpenAI-shaped `chat.completion` body.
    Complete(Completion),
    /// A stream of OpenAI-shaped `chat.completion.chunk`s. It ends (`None`) after the upstream's
    /// clean end of stream; an upstream failure is an `Err` item.
    Stream(ChunkStream),
}

pub struct Completion {
    pub body: Bytes,
    pub usage: Option<Usage>,
}

/// One stream chunk, already in OpenAI's chunk JSON.
pub use crate::wire::chunk::Chunk;

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, ProviderError>> + Send>>;

/// Why an upstream call failed.
#[derive(Clone, Debug)]
pub enum ProviderError {
    /// No usable connection: refused, reset, closed before an answer, DNS, TLS.
    Connect(String),
    /// A time limit ran out.
    Timeout(TimeoutKind),
    /// The upstream answered with an error status.
    Status(UpstreamStatus),
    /// The upstream answered something that is not its wire format.
    Protocol(String),
    /// A stream broke: an error event, or the connection ended before the stream finished.
    Stream(String),
    /// This provider cannot serve this request (e.g. an input it does not accept); another
    /// target may. Adapters return it before sending anything, so it is not counted as an
    /// upstream attempt.
    Unsupported(String),
    /// The provider refused to answer (a content-filter finish or a content-policy error);
    /// with `refusal_fallback` the chain moves on.
    Refused(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    FirstByte,
    Idle,
    Total,
}

/// An upstream error status, with what could be safely taken from its body.
#[derive(Clone, Debug, Default)]
pub struct UpstreamStatus {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The upstream's error message, secrets redacted and length bounded.
    pub message: String,
    pub error_type: Option<String>,
    pub code: Option<String>,
    pub param: Option<String>,
    /// The request is too long for this target's context window.
    pub context_length: bool,
}

impl ProviderError {
    /// The upstream's `Retry-After`, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Status(s) => s.retry_after,
            _ => None,
        }
    }

    /// A content-policy refusal: [`ProviderError::Refused`], or an error status whose code
    /// says the content was filtered (OpenAI's and Azure's `content_policy_violation` /
    /// `content_filter`).
    pub fn is_refusal(&self) -> bool {
        match self {
            ProviderError::Refused(_) => true,
            ProviderError::Status(s) => {
                matches!(s.code.as_deref(), Some("content_policy_violation" | "content_filter" | "content_filtered"))
                    || matches!(s.error_type.as_deref(), Some("content_policy_violation"))
            }
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Status(s) => Some(s.status),
            _ => None,
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderError::Connect(m) => write!(f, "connection failed: {m}"),
            ProviderError::Timeout(TimeoutKind::FirstByte) => f.write_str("timed out waiting for the first byte"),
            ProviderError::Timeout(TimeoutKind::Idle) => f.write_str("timed out: the stream went idle"),
            ProviderError::Timeout(TimeoutKind::Total) => f.write_str("the request deadline ran out"),
            ProviderError::Status(s) => {
                write!(f, "HTTP {}", s.status)?;
                if !s.message.is_empty() {
                    write!(f, ": {}", s.message)?;
                }
                Ok(())
            }
            ProviderError::Protocol(m) => write!(f, "invalid upstream response: {m}"),
            ProviderError::Stream(m) => write!(f, "stream failed: {m}"),
            ProviderError::Unsupported(m) => write!(f, "cannot serve this request: {m}"),
            ProviderError::Refused(m) => write!(f, "refused: {m}"),
        }
    }
}

/// What a provider kind's constructor gets.
pub struct Spec<'a> {
    pub name: &'a str,
    pub options: &'a toml::Table,
    /// Connect timeout of this provider (from `[timeouts]` and `[providers.NAME.timeouts]`).
    pub connect_timeout: Duration,
}

/// (key within the provider table, message, fix)
pub type OptionError = (String, String, String);

/// A provider kind: its `kind = "..."` name and its constructor.
pub struct Kind {
    pub name: &'static str,
    pub build: fn(&Spec<'_>) -> Result<Arc<dyn Provider>, OptionError>,
}

/// The registry of provider kinds.
pub static KINDS: &[Kind] = &[
    openai::KIND,
    anthropic::KIND,
    azure::KIND,
    bedrock::KIND,
    gemini::KIND,
    mock::KIND,
    ollama::KIND,
    presets::GROQ,
    presets::TOGETHER,
    presets::OPENROUTER,
    presets::MISTRAL,
    presets::DEEPSEEK,
    presets::FIREWORKS,
    presets::XAI,
    presets::VLLM,
];

pub fn kind_names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name).collect()
}

/// Builds the adapter for a configured provider.
pub fn build(config: &ProviderConfig, connect_timeout: Duration) -> Result<Arc<dyn Provider>, OptionError> {
    let kind = KINDS.iter().find(|k| k.name == config.kind).ok_or_else(|| {
        (
            "kind".to_owned(),
            format!("unknown provider kind \"{}\"", config.kind),
            format!("use one of: {}", kind_names().join(", ")),
        )
    })?;
    (kind.build)(&Spec { name: &config.name, options: &config.options, connect_timeout })
}

/// Checks a provider's kind and kind-specific keys (by building it; that opens no connection).
pub fn validate(config: &ProviderConfig) -> Result<(), OptionError> {
    build(config, Duration::from_secs(1)).map(|_| ())
}

/// Deserializes a kind's option table into its typed options, naming the offending key.
pub fn options<T: for<'de> serde::Deserialize<'de>>(options: &toml::Table) -> Result<T, OptionError> {
    crate::config::deserialize_table("", toml::Value::Table(options.clone()))
}
