//! `kind = "mock"`: a built-in provider for demos and tests. It answers in-process with a fixed
//! or echoed reply after a configurable latency, streams like a real provider (a role preamble,
//! one chunk per word, a finish chunk, a usage chunk when asked), and fails at a configurable
//! rate in a configurable way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;

use super::{Call, Chunk, Completion, Kind, OptionError, Provider, ProviderError, Reply, Spec, UpstreamStatus, Usage, options};
use crate::config::Dur;

pub const KIND: Kind = Kind { name: "mock", build };

/// How a failing mock request fails.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// HTTP 429 with `Retry-After`.
    RateLimit,
    /// HTTP 500.
    #[default]
    ServerError,
    /// HTTP 503.
    Unavailable,
    /// Never answers, so the caller's timeout fires.
    Timeout,
    /// The connection is reset before an answer.
    Reset,
    /// Streams half the answer, then the connection drops (non-streaming: a reset).
    MidStreamDrop,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Delay before the answer (or the failure).
    #[serde(default)]
    latency: Dur,
    /// Fraction of requests that fail, 0.0 to 1.0.
    #[serde(default)]
    failure_rate: f64,
    #[serde(default)]
    failure: Failure,
    /// `Retry-After` sent with `failure = "rate_limit"`.
    #[serde(default = "one_second")]
    retry_after: Dur,
    /// The answer: any text, or `"echo"` to repeat the last user message.
    #[serde(default)]
    reply: Option<String>,
    /// Delay between stream chunks.
    #[serde(default)]
    chunk_delay: Dur,
    /// Seed for the failure dice, for reproducible runs.
    #[serde(default)]
    seed: Option<u64>,
}

fn one_second() -> Dur {
    Dur::secs(1)
}

pub const DEFAULT_REPLY: &str = "Hello from Switchyard's mock provider.";

pub struct Mock {
    latency: Duration,
    failure_rate: f64,
    failure: Failure,
    retry_after: Duration,
    reply: Option<String>,
    chunk_delay: Duration,
    rng: Mutex<fastrand::Rng>,
    served: AtomicU64,
}

fn build(spec: &Spec<'_>) -> Result<Arc<dyn Provider>, OptionError> {
    let o: Options = options(spec.options)?;
    if !(0.0..=1.0).contains(&o.failure_rate) {
        return Err((
            "failure_rate".into(),
            format!("{} is not between 0.0 and 1.0", o.failure_rate),
            "use a fraction, e.g. 0.3 for 30% of requests".into(),
        ));
    }
    let rng = match o.seed {
        Some(seed) => fastrand::Rng::with_seed(seed),
        None => fastrand::Rng::new(),
    };
    Ok(Arc::new(Mock {
        latency: o.latency.0,
        failure_rate: o.failure_rate,
        failure: o.failure,
        retry_after: o.retry_after.0,
        reply: o.reply,
        chunk_delay: o.chunk_delay.0,
        rng: Mutex::new(rng),
        served: AtomicU64::new(0),
    }))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

impl Mock {
    fn roll(&self) -> bool {
        self.failure_rate > 0.0 && self.rng.lock().map_or(false, |mut r| r.f64() < self.failure_rate)
    }

    fn status(&self, status: u16, message: &str, error_type: &str, retry_after: Option<Duration>) -> ProviderError {
        ProviderError::Status(UpstreamStatus {
            status,
            retry_after,
            message: message.into(),
            error_type: Some(error_type.into()),
            ..Default::default()
        })
    }

    fn reply_text(&self, call: &Call<'_>) -> String {
        match self.reply.as_deref() {
            Some("echo") => {
                let t = call.request.last_user_text();
                if t.is_empty() { "(empty message)".to_owned() } else { t }
            }
            Some(text) => text.to_owned(),
            None => DEFAULT_REPLY.to_owned(),
        }
    }
}

impl Provider for Mock {
    fn chat<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            let fail = self.roll();
            if fail {
                match self.failure {
                    Failure::RateLimit => {
                        return Err(self.status(429, "mock: rate limit reached", "rate_limit_error", Some(self.retry_after)));
                    }
                    Failure::ServerError => return Err(self.status(500, "mock: internal server error", "server_error", None)),
                    Failure::Unavailable => return Err(self.status(503, "mock: service unavailable", "server_error", None)),
                    Failure::Timeout => std::future::pending::<()>().await,
                    Failure::Reset => return Err(ProviderError::Connect("mock: connection reset by peer".into())),
                    Failure::MidStreamDrop if !call.request.stream => {
                        return Err(ProviderError::Connect("mock: connection closed before the response completed".into()));
                    }
                    Failure::MidStreamDrop => {}
                }
            }
            let n = self.served.fetch_add(1, Ordering::Relaxed);
            let id = format!("chatcmpl-mock{n:08x}{:08x}", fastrand::u32(..));
            let text = self.reply_text(&call);
            let prompt_tokens = words(&String::from_utf8_lossy(&call.request.body));
            let usage = Usage { prompt_tokens, completion_tokens: words(&text), total_tokens: prompt_tokens + words(&text) };
            let created = now_secs();
            if !call.request.stream {
                let body = json!({
                    "id": id, "object": "chat.completion", "created": created, "model": call.alias,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                                 "logprobs": null, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                              "total_tokens": usage.total_tokens},
                });
                return Ok(Reply::Complete(Completion { body: Bytes::from(body.to_string()), usage: Some(usage) }));
            }
            let chunk = |delta: serde_json::Value, finish: Option<&str>| {
                let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": call.alias,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
                if call.request.include_usage {
                    v["usage"] = serde_json::Value::Null;
                }
                Bytes::from(v.to_string())
            };
            let mut items: Vec<Result<Chunk, ProviderError>> = Vec::new();
            items.push(Ok(Chunk { data: chunk(json!({"role": "assistant", "content": ""}), None), content: false, finish: false, usage: None }));
            let pieces: Vec<String> = {
                let ws: Vec<&str> = text.split_inclusive(' ').collect();
                if ws.is_empty() { vec![text.clone()] } else { ws.into_iter().map(str::to_owned).collect() }
            };
            let drop_at = (fail && self.failure == Failure::MidStreamDrop).then(|| pieces.len().div_ceil(2));
            for (i, piece) in pieces.iter().enumerate() {
                if drop_at == Some(i) {
                    break;
                }
                items.push(Ok(Chunk { data: chunk(json!({"content": piece}), None), content: true, finish: false, usage: None }));
            }
            if drop_at.is_some() {
                items.push(Err(ProviderError::Stream("mock: connection dropped mid-stream".into())));
            } else {
                items.push(Ok(Chunk { data: chunk(json!({}), Some("stop")), content: false, finish: true, usage: None }));
                if call.request.include_usage {
                    let v = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": call.alias,
                        "choices": [], "usage": {"prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens, "total_tokens": usage.total_tokens}});
                    items.push(Ok(Chunk { data: Bytes::from(v.to_string()), content: false, finish: false, usage: Some(usage) }));
                }
            }
            let delay = self.chunk_delay;
            let s = stream::unfold((items.into_iter(), true), move |(mut it, first)| async move {
                let item = it.next()?;
                if !first && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Some((item, (it, false)))
            });
            Ok(Reply::Stream(Box::pin(s)))
        })
    }

    fn describe(&self) -> String {
        let reply = match self.reply.as_deref() {
            Some("echo") => "echo".to_owned(),
            Some(_) => "fixed".to_owned(),
            None => "default".to_owned(),
        };
        format!(
            "kind=mock latency={} failure_rate={} failure={:?} reply={reply}",
            crate::config::duration::format_duration(self.latency),
            self.failure_rate,
            self.failure
        )
    }
}
