//! `kind = "mock"`: a built-in provider for demos and tests. It answers in-process with a fixed
//! or echoed reply after a configurable latency, streams like a real provider (a role preamble,
//! one chunk per word, a finish chunk, a usage chunk when asked), and fails at a configurable
//! rate in a configurable way. A `schedule` of time windows (measured from start) scripts
//! outages and slow periods, for chaos drills and simulations:
//! `schedule = [{ from = "6h", to = "8h", failure = "unavailable" }, { from = "12h", to = "13h", latency = "3s" }]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;

use super::{
    Call, Chunk, Completion, EmbedCall, Embeddings, Kind, OptionError, ProbeCall, Provider, ProviderError, Reply, Spec, UpstreamStatus,
    Usage, completion_probe, options,
};
use crate::config::ProbeKind;
use crate::wire::openai::embeddings::list_body;
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
    /// Time windows (from start) with another behaviour.
    #[serde(default)]
    schedule: Vec<Window>,
}

/// A window of the schedule: inside it every request fails with `failure` (when set) and
/// answers after `latency` (when set).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Window {
    from: Dur,
    to: Dur,
    #[serde(default)]
    failure: Option<Failure>,
    #[serde(default)]
    latency: Option<Dur>,
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
    schedule: Vec<Window>,
    started: tokio::time::Instant,
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
    if let Some((i, _)) = o.schedule.iter().enumerate().find(|(_, w)| w.to.0 <= w.from.0) {
        return Err((format!("schedule[{i}].to"), "the window ends before it starts".into(), "make `to` later than `from`".into()));
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
        schedule: o.schedule,
        started: tokio::time::Instant::now(),
    }))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

impl Mock {
    /// The schedule's window now, if any.
    fn window(&self) -> Option<&Window> {
        if self.schedule.is_empty() {
            return None;
        }
        let at = self.started.elapsed();
        self.schedule.iter().find(|w| w.from.0 <= at && at < w.to.0)
    }

    /// Whether this request fails, and how.
    fn roll(&self, window: Option<&Window>) -> Option<Failure> {
        if let Some(f) = window.and_then(|w| w.failure) {
            return Some(f);
        }
        (self.failure_rate > 0.0 && self.rng.lock().is_ok_and(|mut r| r.f64() < self.failure_rate)).then_some(self.failure)
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

impl Mock {
    /// The configured failure as an error, for a request that rolled one (`None`: the failure
    /// shows mid-stream). A `timeout` never resolves.
    /// What every request goes through first: the latency (the schedule window's, if one is
    /// on), then the failure dice. A failure that happens before an answer is the `Err`; a
    /// mid-stream drop comes back as `Ok(Some(..))` for the stream to act on.
    async fn prelude(&self, stream: bool) -> Result<Option<Failure>, ProviderError> {
        let window = self.window();
        let latency = window.and_then(|w| w.latency).map_or(self.latency, |d| d.0);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let failure = self.roll(window);
        if let Some(f) = failure {
            if let Some(e) = self.failure_error(f, stream).await {
                return Err(e);
            }
        }
        Ok(failure)
    }

    async fn failure_error(&self, failure: Failure, stream: bool) -> Option<ProviderError> {
        Some(match failure {
            Failure::RateLimit => self.status(429, "mock: rate limit reached", "rate_limit_error", Some(self.retry_after)),
            Failure::ServerError => self.status(500, "mock: internal server error", "server_error", None),
            Failure::Unavailable => self.status(503, "mock: service unavailable", "server_error", None),
            Failure::Timeout => std::future::pending().await,
            Failure::Reset => ProviderError::Connect("mock: connection reset by peer".into()),
            Failure::MidStreamDrop if !stream => ProviderError::Connect("mock: connection closed before the response completed".into()),
            Failure::MidStreamDrop => return None,
        })
    }
}

/// A deterministic unit vector of `dims` dimensions for `text`: the same text always gets the
/// same vector, different texts (almost surely) different ones.
pub fn mock_vector(text: &str, dims: usize) -> Vec<f32> {
    // FNV-1a of the text, then SplitMix64 per dimension.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims as u64)
        .map(|i| {
            let mut z = h.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Dimensions of the mock's embeddings unless the caller asks for `dimensions`.
pub const MOCK_DIMENSIONS: usize = 8;

impl Provider for Mock {
    /// Deterministic vectors ([`mock_vector`], [`MOCK_DIMENSIONS`] or the caller's
    /// `dimensions`), after the configured latency and subject to the failure settings.
    fn embed<'a>(&'a self, call: EmbedCall<'a>) -> BoxFuture<'a, Result<Embeddings, ProviderError>> {
        Box::pin(async move {
            self.prelude(false).await?;
            let fields = call.request.fields().map_err(|e| {
                ProviderError::Status(UpstreamStatus {
                    status: 400,
                    message: e.message,
                    error_type: Some("invalid_request_error".into()),
                    param: e.param.map(str::to_owned),
                    code: e.code.map(str::to_owned),
                    ..Default::default()
                })
            })?;
            let dims = fields.dimensions.map_or(MOCK_DIMENSIONS, |d| d as usize);
            let items = fields.input.items();
            let vectors: Vec<Vec<f32>> = items.iter().map(|t| mock_vector(t, dims)).collect();
            let prompt: u64 = items.iter().map(|t| words(t)).sum();
            let usage = Usage { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt };
            self.served.fetch_add(1, Ordering::Relaxed);
            Ok(Embeddings { body: list_body(call.alias, &vectors, fields.base64(), usage), usage: Some(usage) })
        })
    }

    fn chat<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(async move {
            let failure = self.prelude(call.request.stream).await?;
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
            items.push(Ok(Chunk::new(chunk(json!({"role": "assistant", "content": ""}), None), false, false, None)));
            let pieces: Vec<String> = {
                let ws: Vec<&str> = text.split_inclusive(' ').collect();
                if ws.is_empty() { vec![text.clone()] } else { ws.into_iter().map(str::to_owned).collect() }
            };
            let drop_at = (failure == Some(Failure::MidStreamDrop)).then(|| pieces.len().div_ceil(2));
            for (i, piece) in pieces.iter().enumerate() {
                if drop_at == Some(i) {
                    break;
                }
                items.push(Ok(Chunk::new(chunk(json!({"content": piece}), None), true, false, None)));
            }
            if drop_at.is_some() {
                items.push(Err(ProviderError::Stream("mock: connection dropped mid-stream".into())));
            } else {
                items.push(Ok(Chunk::new(chunk(json!({}), Some("stop")), false, true, None)));
                if call.request.include_usage {
                    let v = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": call.alias,
                        "choices": [], "usage": {"prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens, "total_tokens": usage.total_tokens}});
                    items.push(Ok(Chunk::new(Bytes::from(v.to_string()), false, false, Some(usage))));
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

    /// `models`: answers after `latency`, failing as often and as the failure settings say
    /// (a `timeout` never answers, so the probe's timeout fails it).
    fn probe<'a>(&'a self, probe: ProbeCall<'a>) -> BoxFuture<'a, Result<(), ProviderError>> {
        match probe.kind {
            ProbeKind::Completion => completion_probe(self, probe),
            ProbeKind::Models => Box::pin(async move {
                self.prelude(false).await.map(|_| ())
            }),
        }
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

#[cfg(test)]
mod embed_tests {
    use bytes::Bytes;
    use serde_json::{Value, json};

    use super::*;
    use crate::config::TimeoutSettings;
    use crate::wire::openai::embeddings::EmbedRequest;

    fn mock(toml: &str) -> Arc<dyn Provider> {
        let options: toml::Table = toml::from_str(toml).unwrap();
        match build(&Spec { name: "m", options: &options, connect_timeout: Duration::from_secs(1) }) {
            Ok(p) => p,
            Err(e) => panic!("{e:?}"),
        }
    }

    async fn embed(p: &dyn Provider, body: Value) -> Result<Value, ProviderError> {
        let request = EmbedRequest::parse(Bytes::from(body.to_string())).unwrap();
        let timeouts = TimeoutSettings::default();
        let call = EmbedCall { request: &request, upstream_model: "m", alias: "emb", timeouts: &timeouts };
        p.embed(call).await.map(|e| serde_json::from_slice(&e.body).unwrap())
    }

    #[tokio::test]
    async fn vectors_are_deterministic_and_sized() {
        let p = mock("");
        let v = embed(&*p, json!({"model": "emb", "input": ["a", "b", "a"]})).await.unwrap();
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        assert_eq!(data[0]["embedding"].as_array().unwrap().len(), MOCK_DIMENSIONS);
        assert_eq!(data[0]["embedding"], data[2]["embedding"]);
        assert_ne!(data[0]["embedding"], data[1]["embedding"]);
        assert_eq!(v["model"], "emb");
        let v = embed(&*p, json!({"model": "emb", "input": "a", "dimensions": 3, "encoding_format": "base64"})).await.unwrap();
        let expected = crate::wire::openai::embeddings::base64_f32(&mock_vector("a", 3));
        assert_eq!(v["data"][0]["embedding"], expected.as_str());
        let norm: f32 = mock_vector("x", 64).iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[tokio::test]
    async fn failure_settings_apply() {
        let p = mock("failure_rate = 1.0\nfailure = \"rate_limit\"\nretry_after = \"2s\"");
        let e = embed(&*p, json!({"model": "emb", "input": "a"})).await.unwrap_err();
        assert_eq!((e.status(), e.retry_after()), (Some(429), Some(Duration::from_secs(2))));
        let p = mock("failure_rate = 1.0\nfailure = \"mid_stream_drop\"");
        assert!(matches!(embed(&*p, json!({"model": "emb", "input": "a"})).await, Err(ProviderError::Connect(_))));
    }
}
