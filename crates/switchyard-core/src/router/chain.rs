//! Running a call along an alias's chain: breaker check, attempt, classify, back off or fail
//! over, within the attempt budget and the call's deadline ([`run_with`], shared by chat
//! completions and embeddings). For streams, an attempt succeeds only
//! when the first chunk with real content arrives, so a failure before that (including after a
//! role-only preamble) still fails over invisibly to the caller.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{Instant, timeout_at};

use super::retry::{Disposition, backoff, classify};
use super::{Alias, Breaker, Target};
use crate::providers::{
    Call, Chunk, ChunkStream, Completion, EmbedCall, Embeddings, ProviderError, Reply, TimeoutKind, UpstreamStatus,
};
use crate::wire::openai::ChatRequest;
use crate::wire::openai::embeddings::EmbedRequest;

/// Preamble chunks buffered before the stream is committed anyway.
const MAX_PREAMBLE: usize = 256;

/// What happened to one target during a call.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub target: Arc<str>,
    pub outcome: Outcome,
    pub duration: Duration,
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Ok,
    /// Not sent: the target's breaker is open.
    Skipped,
    Failed(ProviderError),
}

impl fmt::Display for AttemptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Ok => write!(f, "{}: ok ({}ms)", self.target, self.duration.as_millis()),
            Outcome::Skipped => write!(f, "{}: skipped, circuit breaker open", self.target),
            Outcome::Failed(e) => write!(f, "{}: {e} ({}ms)", self.target, self.duration.as_millis()),
        }
    }
}

/// The attempts of one call.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub attempts: Vec<AttemptRecord>,
    /// Upstream requests actually sent.
    pub sent: u32,
}

impl Trace {
    /// `a; b; c` — every attempt, for error messages and logs.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        self.write_summary(&mut out);
        out
    }

    /// Appends the summary to `out` as bytes, without `core::fmt` for the common outcomes
    /// (the per-request log line calls this).
    pub fn push_summary(&self, out: &mut Vec<u8>) {
        for (i, a) in self.attempts.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(a.target.as_bytes());
            match &a.outcome {
                Outcome::Ok => {
                    out.extend_from_slice(b": ok (");
                    crate::telemetry::request_log::push_u64(out, a.duration.as_millis() as u64);
                    out.extend_from_slice(b"ms)");
                }
                Outcome::Skipped => out.extend_from_slice(b": skipped, circuit breaker open"),
                Outcome::Failed(e) => {
                    use std::io::Write as _;
                    let _ = write!(out, ": {e} ({}ms)", a.duration.as_millis());
                }
            }
        }
    }

    /// Appends the summary to `out`.
    pub fn write_summary(&self, out: &mut String) {
        use std::fmt::Write as _;
        for (i, a) in self.attempts.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            let _ = write!(out, "{a}");
        }
    }
}

/// A stream committed to the caller: what was held back, the first content chunk, and the rest.
pub struct CommittedStream {
    pub preamble: Vec<Chunk>,
    pub first: Chunk,
    pub rest: ChunkStream,
    pub idle: Duration,
    pub deadline: Instant,
    /// The target's breaker, to record a failure that happens after the commit.
    pub breaker: Arc<Breaker>,
    /// The timer of [`CommittedStream::next_chunk`], kept from one chunk to the next.
    limit: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl CommittedStream {
    /// The next chunk, unless `idle` passes first (or the call's deadline, if sooner): what
    /// `timeout_at(limit, rest.next())` gives, with one timer for the whole stream. A timer
    /// re-registered for every chunk cost more than relaying the chunk; this one is moved only
    /// when it fires and chunks have come since it was set (at most once per `idle`).
    pub async fn next_chunk(&mut self) -> Result<Option<Result<Chunk, ProviderError>>, TimeoutKind> {
        let idle_at = Instant::now() + self.idle;
        let (at, kind) = if idle_at < self.deadline { (idle_at, TimeoutKind::Idle) } else { (self.deadline, TimeoutKind::Total) };
        let this = &mut *self;
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(item) = this.rest.poll_next_unpin(cx) {
                return std::task::Poll::Ready(Ok(item));
            }
            let timer = this.limit.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            loop {
                if timer.deadline() > at {
                    timer.as_mut().reset(at);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return std::task::Poll::Pending;
                }
                if timer.deadline() >= at {
                    return std::task::Poll::Ready(Err(kind));
                }
                timer.as_mut().reset(at); // set for an earlier chunk: the limit has moved on
            }
        })
        .await
    }
}

pub enum Answer {
    Complete(Completion),
    Stream(CommittedStream),
}

/// A successful call: the target that answered and its answer (a chat [`Answer`] unless the
/// call was another kind, e.g. embeddings).
pub struct Served<'a, A = Answer> {
    pub target: &'a Target,
    pub answer: A,
}

pub enum ChainError {
    /// The caller's request was rejected upstream (400/422 ...): no retry, no failover.
    Caller(UpstreamStatus),
    /// Every target failed or was skipped. `last` is the last failure of an attempt that was
    /// sent; `retry_at` is when the first open breaker lets a probe through.
    Exhausted { last: Option<ProviderError>, retry_at: Option<Instant> },
}

/// Runs a chat `request` along `alias`'s chain until one target answers.
pub async fn run<'a>(alias: &'a Alias, request: &ChatRequest, deadline: Instant, trace: &mut Trace) -> Result<Served<'a>, ChainError> {
    run_with(alias, deadline, trace, |target| attempt(alias, target, request, deadline)).await
}

/// Runs an embeddings `request` along `alias`'s chain until one target answers. Targets whose
/// provider has no embeddings API fail with `Unsupported` and are passed over.
pub async fn run_embed<'a>(
    alias: &'a Alias,
    request: &EmbedRequest,
    deadline: Instant,
    trace: &mut Trace,
) -> Result<Served<'a, Embeddings>, ChainError> {
    run_with(alias, deadline, trace, |target| attempt_embed(alias, target, request, deadline)).await
}

/// The fallback loop every kind of call shares: for each target of `alias` in order, skip it
/// while its breaker is open, else send one attempt (`attempt(target)`), and on failure
/// classify: retry the same target (backoff, or its `Retry-After` up to the cap), move to the
/// next, or give the caller the error; all within the alias's attempt budget and `deadline`.
/// `attempt` resolves to the answer once the target has committed to one.
pub async fn run_with<'a, A, F, Fut>(alias: &'a Alias, deadline: Instant, trace: &mut Trace, mut attempt: F) -> Result<Served<'a, A>, ChainError>
where
    F: FnMut(&'a Target) -> Fut,
    Fut: Future<Output = Result<A, ProviderError>>,
{
    let mut last: Option<ProviderError> = None;
    let mut retry_at: Option<Instant> = None;
    let mut rng: Option<fastrand::Rng> = None;
    'targets: for target in &alias.targets {
        let mut tries = 0u32;
        loop {
            if trace.sent >= alias.max_attempts {
                break 'targets;
            }
            if Instant::now() >= deadline {
                last = Some(ProviderError::Timeout(TimeoutKind::Total));
                break 'targets;
            }
            let permit = match target.breaker.try_acquire() {
                Ok(p) => p,
                Err(until) => {
                    retry_at = Some(retry_at.map_or(until, |r| r.min(until)));
                    trace.attempts.push(AttemptRecord { target: target.label.clone(), outcome: Outcome::Skipped, duration: Duration::ZERO });
                    continue 'targets;
                }
            };
            trace.sent += 1;
            tries += 1;
            let started = Instant::now();
            let result = attempt(target).await;
            let duration = started.elapsed();
            let error = match result {
                Ok(answer) => {
                    permit.success();
                    trace.attempts.push(AttemptRecord { target: target.label.clone(), outcome: Outcome::Ok, duration });
                    return Ok(Served { target, answer });
                }
                Err(e) => e,
            };
            trace.attempts.push(AttemptRecord { target: target.label.clone(), outcome: Outcome::Failed(error.clone()), duration });
            match classify(&error) {
                Disposition::Fail => {
                    drop(permit);
                    return Err(match error {
                        ProviderError::Status(s) => ChainError::Caller(s),
                        other => ChainError::Exhausted { last: Some(other), retry_at: None },
                    });
                }
                Disposition::NextTarget { counts } => {
                    if matches!(error, ProviderError::Unsupported(_)) {
                        // Raised before anything is sent (the adapter's contract): not an attempt.
                        trace.sent -= 1;
                    }
                    if counts {
                        permit.failure();
                    } else {
                        drop(permit);
                    }
                    last = Some(error);
                    continue 'targets;
                }
                Disposition::Retry => {
                    let retry_after = error.retry_after();
                    permit.failure_with_hint(retry_after.filter(|_| error.status() == Some(429)));
                    last = Some(error);
                    if tries >= target.retry.attempts_per_target {
                        continue 'targets;
                    }
                    let delay = match retry_after {
                        Some(ra) if ra > target.retry.retry_after_cap => continue 'targets,
                        Some(ra) => ra,
                        None => backoff(&target.retry, tries, rng.get_or_insert_with(fastrand::Rng::new)),
                    };
                    if Instant::now() + delay >= deadline {
                        continue 'targets;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
    Err(ChainError::Exhausted { last, retry_at })
}

/// The first-byte limit of one attempt: `first_byte` from now, or the call's deadline if that
/// comes first (and which of the two it is).
fn first_byte_limit(target: &Target, deadline: Instant) -> (Instant, TimeoutKind) {
    let at = (Instant::now() + target.timeouts.first_byte).min(deadline);
    (at, if at == deadline { TimeoutKind::Total } else { TimeoutKind::FirstByte })
}

/// One upstream embeddings request, within `first_byte` (the whole answer: embeddings are not
/// streamed).
async fn attempt_embed(alias: &Alias, target: &Target, request: &EmbedRequest, deadline: Instant) -> Result<Embeddings, ProviderError> {
    let (at, kind) = first_byte_limit(target, deadline);
    let call = EmbedCall { request, upstream_model: &target.model, alias: &alias.name, timeouts: &target.timeouts };
    timeout_at(at, target.provider.embed(call)).await.map_err(|_| ProviderError::Timeout(kind))?
}

/// One upstream request. For streams, waits (within `first_byte`) for the first chunk with
/// content, buffering any preamble.
async fn attempt(alias: &Alias, target: &Target, request: &ChatRequest, deadline: Instant) -> Result<Answer, ProviderError> {
    let (first_byte_at, timeout_kind) = first_byte_limit(target, deadline);
    let call = Call { request, upstream_model: &target.model, alias: &alias.name, timeouts: &target.timeouts };
    let reply = timeout_at(first_byte_at, target.provider.chat(call))
        .await
        .map_err(|_| ProviderError::Timeout(timeout_kind))??;
    let mut stream = match reply {
        Reply::Complete(c) => return Ok(Answer::Complete(c)),
        Reply::Stream(s) => s,
    };
    // The relay's idle timer, registered now rather than when the first content chunk arrives:
    // registering a timer that is due before the runtime's next wake-up wakes its driver (an
    // eventfd write), which would otherwise sit between the first chunk and its write to the
    // caller.
    let mut limit = Box::pin(tokio::time::sleep_until((Instant::now() + target.timeouts.idle).min(deadline)));
    std::future::poll_fn(|cx| {
        let _ = limit.as_mut().poll(cx); // a Sleep registers when first polled
        std::task::Poll::Ready(())
    })
    .await;
    let limit = Some(limit);
    let mut preamble = Vec::new();
    loop {
        match timeout_at(first_byte_at, stream.next()).await {
            Err(_) => return Err(ProviderError::Timeout(timeout_kind)),
            Ok(None) => return Err(ProviderError::Stream("the stream ended before any content".into())),
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(chunk))) => {
                if chunk.content || chunk.finish || preamble.len() >= MAX_PREAMBLE {
                    return Ok(Answer::Stream(CommittedStream {
                        preamble,
                        first: chunk,
                        rest: stream,
                        idle: target.timeouts.idle,
                        deadline,
                        breaker: target.breaker.clone(),
                        limit,
                    }));
                }
                preamble.push(chunk);
            }
        }
    }
}
