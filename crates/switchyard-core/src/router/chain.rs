//! Running a call along its [`Plan`]: breaker check, attempt, classify, back off or fail
//! over, within the attempt budget and the call's deadline ([`run_with`], shared by chat
//! completions and embeddings), or with hedging, several targets racing ([`run_hedged`]).
//! For streams, an attempt succeeds only when the first chunk with real content arrives (or,
//! with a commit threshold, the first N), so a failure before that (including after a
//! role-only preamble) still fails over invisibly to the caller; an alias with
//! `[stream] commit = "head"` trades that for time to first chunk and commits on the upstream's
//! response head. When every target failed, a
//! refusal that was passed over is answered after all, else the alias's static answer.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use memchr::memmem;
use tokio::time::{Instant, timeout_at};

use super::plan::Plan;
use super::retry::{Disposition, backoff, classify};
use super::stats::{InFlight, TargetStats};
use super::{Alias, Breaker, Target};
use crate::config::{HedgeDelay, HedgeSettings};
use crate::providers::{
    answer_format, Call, Chunk, ChunkStream, Completion, EmbedCall, Embeddings, ProviderError, Reply, TimeoutKind, UpstreamStatus,
};
use crate::wire::Format;
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
    /// Not sent: the target cannot serve this request (capability filters).
    Filtered(String),
    /// Sent, then cancelled: another target (hedging) answered first.
    Cancelled,
    Failed(ProviderError),
}

impl fmt::Display for AttemptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Ok => write!(f, "{}: ok ({}ms)", self.target, self.duration.as_millis()),
            Outcome::Skipped => write!(f, "{}: skipped, circuit breaker open", self.target),
            Outcome::Filtered(why) => write!(f, "{}: skipped, {why}", self.target),
            Outcome::Cancelled => write!(f, "{}: cancelled, another target answered first ({}ms)", self.target, self.duration.as_millis()),
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
                Outcome::Filtered(why) => {
                    out.extend_from_slice(b": skipped, ");
                    out.extend_from_slice(why.as_bytes());
                }
                Outcome::Cancelled => {
                    out.extend_from_slice(b": cancelled, another target answered first (");
                    crate::telemetry::request_log::push_u64(out, a.duration.as_millis() as u64);
                    out.extend_from_slice(b"ms)");
                }
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
    /// The target's `provider/model`, for the trace and the recovery marker.
    pub target: Arc<str>,
    /// The target's breaker, to record a failure that happens after the commit.
    pub breaker: Arc<Breaker>,
    /// The target's stats; the stream counts as in flight until this drops.
    pub in_flight: InFlight,
    /// The timer of [`CommittedStream::next_chunk`], kept from one chunk to the next.
    limit: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// A stream committed on its head: its target's stats and when the attempt began, for the
    /// latency to record at the first content chunk ([`CommittedStream::first_token`]).
    first_token: Option<(Arc<TargetStats>, Instant)>,
}

impl CommittedStream {
    /// Called with each chunk relayed: at the first with content, records the attempt's
    /// latency (time to first token) if the commit came before it.
    #[inline]
    pub fn first_token(&mut self, chunk: &Chunk) {
        if chunk.content {
            if let Some((stats, started)) = self.first_token.take() {
                stats.record_latency(started.elapsed());
            }
        }
    }

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

/// An attempt's answer as the chain records it: its latency (to the answer, or to a stream's
/// first token) is known when it arrives, unless the stream was committed on its head.
pub trait Attempted {
    /// The latency is recorded later, by the answer itself.
    fn latency_later(&self) -> bool {
        false
    }
}

impl Attempted for Answer {
    fn latency_later(&self) -> bool {
        matches!(self, Answer::Stream(s) if s.first_token.is_some())
    }
}

impl Attempted for Embeddings {}

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

/// A chat answer held back while the chain looks for a target that does not refuse.
pub(super) type Refusal<'a> = std::sync::Mutex<Option<Served<'a>>>;

/// Runs a chat `request` along `plan` until one target answers. With `refusal_fallback`, a
/// refusal moves on, but is the answer if no other target gives one; when every target
/// failed, the alias's static answer (if it has one) is the answer.
pub async fn run<'a>(alias: &'a Alias, plan: &Plan<'a>, request: &ChatRequest, deadline: Instant, trace: &mut Trace) -> Result<Served<'a>, ChainError> {
    let refused: Refusal<'a> = std::sync::Mutex::new(None);
    let result = run_with(alias, plan, deadline, trace, |target| attempt(alias, target, request, deadline, &refused)).await;
    match result {
        Err(ChainError::Exhausted { last, retry_at }) => {
            if let Some(served) = refused.into_inner().ok().flatten() {
                return Ok(served);
            }
            let Some(catch_all) = &alias.catch_all else { return Err(ChainError::Exhausted { last, retry_at }) };
            let started = Instant::now();
            let answer = attempt(alias, catch_all, request, Instant::now() + Duration::from_secs(5), &std::sync::Mutex::new(None)).await;
            let answer = answer.map_err(|e| ChainError::Exhausted { last: Some(e), retry_at })?;
            trace.attempts.push(AttemptRecord { target: catch_all.label.clone(), outcome: Outcome::Ok, duration: started.elapsed() });
            Ok(Served { target: catch_all, answer })
        }
        other => other,
    }
}

/// Runs an embeddings `request` along `plan` until one target answers. Targets whose
/// provider has no embeddings API fail with `Unsupported` and are passed over.
pub async fn run_embed<'a>(
    alias: &'a Alias,
    plan: &Plan<'a>,
    request: &EmbedRequest,
    deadline: Instant,
    trace: &mut Trace,
) -> Result<Served<'a, Embeddings>, ChainError> {
    run_with(alias, plan, deadline, trace, |target| attempt_embed(alias, target, request, deadline)).await
}

/// Records a finished attempt in the target's stats (`Ok(true)`: a success whose latency is
/// recorded later, see [`Attempted`]).
fn observe(stats: &TargetStats, result: &Result<bool, &ProviderError>, duration: Duration) {
    match result {
        Ok(true) => stats.record_answered(),
        Ok(false) => stats.record_success(duration),
        Err(ProviderError::Unsupported(_) | ProviderError::Refused(_)) => {}
        Err(e) => {
            if e.status() == Some(429) {
                stats.rate_limited(e.retry_after());
            }
            stats.record_failure_after(e, duration);
        }
    }
}

/// What the loop does after a failed attempt, given the alias's settings.
fn disposition(alias: &Alias, error: &ProviderError) -> Disposition {
    match classify(error) {
        Disposition::Fail if alias.routing.refusal_fallback && error.is_refusal() => Disposition::NextTarget { counts: false },
        d => d,
    }
}

/// Settles a failed attempt's breaker permit: a provider's fault counts against its breaker
/// (a 429 with the hint of its `Retry-After`), a caller's fault or a target that cannot serve
/// the request does not.
fn charge(permit: super::breaker::Permit<'_>, d: Disposition, error: &ProviderError) {
    match d {
        Disposition::Fail | Disposition::NextTarget { counts: false } => drop(permit),
        Disposition::NextTarget { counts: true } => permit.failure(),
        Disposition::Retry => permit.failure_with_hint(error.retry_after().filter(|_| error.status() == Some(429))),
    }
}

/// The caller's own error (answered at once), or a failure that ends the call.
fn caller_error(error: ProviderError) -> ChainError {
    match error {
        ProviderError::Status(s) => ChainError::Caller(s),
        other => ChainError::Exhausted { last: Some(other), retry_at: None },
    }
}

/// The fallback loop every kind of call shares: for each target of `plan` in order, skip it
/// while its breaker is open, else send one attempt (`attempt(target)`), and on failure
/// classify: retry the same target (backoff, or its `Retry-After` up to the cap), move to the
/// next, or give the caller the error; all within the alias's attempt budget and `deadline`.
/// `attempt` resolves to the answer once the target has committed to one. With hedging on,
/// [`run_hedged`] runs instead.
pub async fn run_with<'a, A: Attempted, F, Fut>(alias: &'a Alias, plan: &Plan<'a>, deadline: Instant, trace: &mut Trace, mut attempt: F) -> Result<Served<'a, A>, ChainError>
where
    F: FnMut(&'a Target) -> Fut,
    Fut: Future<Output = Result<A, ProviderError>>,
{
    for f in &plan.filtered {
        trace.attempts.push(AttemptRecord { target: f.target.label.clone(), outcome: Outcome::Filtered(f.reason.clone()), duration: Duration::ZERO });
    }
    if let Some(hedge) = &alias.routing.hedge {
        return run_hedged(alias, plan, hedge, deadline, trace, attempt).await;
    }
    let mut last: Option<ProviderError> = None;
    let mut retry_at: Option<Instant> = None;
    let mut rng: Option<fastrand::Rng> = None;
    'targets: for &target in &plan.targets {
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
            observe(&target.stats, &result.as_ref().map(Attempted::latency_later), duration);
            let error = match result {
                Ok(answer) => {
                    permit.success();
                    trace.attempts.push(AttemptRecord { target: target.label.clone(), outcome: Outcome::Ok, duration });
                    return Ok(Served { target, answer });
                }
                Err(e) => e,
            };
            trace.attempts.push(AttemptRecord { target: target.label.clone(), outcome: Outcome::Failed(error.clone()), duration });
            let d = disposition(alias, &error);
            charge(permit, d, &error);
            match d {
                Disposition::Fail => return Err(caller_error(error)),
                Disposition::NextTarget { .. } => {
                    if matches!(error, ProviderError::Unsupported(_)) {
                        // Raised before anything is sent (the adapter's contract): not an attempt.
                        trace.sent -= 1;
                    }
                    last = Some(error);
                    continue 'targets;
                }
                Disposition::Retry => {
                    let retry_after = error.retry_after();
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

/// How long to wait for `target` before hedging.
fn hedge_delay(hedge: &HedgeSettings, target: &Target) -> Duration {
    match hedge.after {
        HedgeDelay::Fixed(d) => d,
        HedgeDelay::P95 { fallback } => target.stats.quantile(0.95, 20).unwrap_or(fallback),
    }
}

/// The hedged loop: send to the first target; if it has not answered (or, for a stream, sent
/// its first token) after the hedge delay, send to the next one too, up to `hedge.max` extra
/// requests at once. The first success wins and the others are cancelled (dropping their
/// futures cancels their upstream requests). A failure moves on to the next target at once;
/// hedged calls do not retry a target.
async fn run_hedged<'a, A: Attempted, F, Fut>(
    alias: &'a Alias,
    plan: &Plan<'a>,
    hedge: &HedgeSettings,
    deadline: Instant,
    trace: &mut Trace,
    mut attempt: F,
) -> Result<Served<'a, A>, ChainError>
where
    F: FnMut(&'a Target) -> Fut,
    Fut: Future<Output = Result<A, ProviderError>>,
{
    async fn tagged<Fut: Future>(slot: usize, fut: Fut) -> (usize, Fut::Output) {
        (slot, fut.await)
    }
    struct Running<'a, 'b> {
        target: &'a Target,
        permit: Option<super::breaker::Permit<'b>>,
        started: Instant,
        hedge: bool,
    }
    let mut running: Vec<Option<Running<'a, 'a>>> = Vec::new();
    let mut racing = FuturesUnordered::new();
    let mut next = 0usize;
    let mut extra = 0u32;
    let mut last: Option<ProviderError> = None;
    let mut retry_at: Option<Instant> = None;
    let mut last_start = Instant::now();
    loop {
        // Start a target when none is running, or when the hedge delay of the latest one ran out.
        let in_race = racing.len();
        let hedge_at = running.iter().rev().flatten().next().map(|r| r.started + hedge_delay(hedge, r.target));
        let may_hedge = in_race > 0 && extra < hedge.max && next < plan.targets.len();
        if in_race == 0 || (may_hedge && hedge_at.is_some_and(|at| Instant::now() >= at)) {
            let mut started_one = false;
            while next < plan.targets.len() && trace.sent < alias.max_attempts && Instant::now() < deadline {
                let target = plan.targets[next];
                next += 1;
                match target.breaker.try_acquire() {
                    Err(until) => {
                        retry_at = Some(retry_at.map_or(until, |r| r.min(until)));
                        trace.attempts.push(AttemptRecord { target: target.label.clone(), outcome: Outcome::Skipped, duration: Duration::ZERO });
                    }
                    Ok(permit) => {
                        trace.sent += 1;
                        let is_hedge = in_race > 0;
                        if is_hedge {
                            extra += 1;
                            target.stats.record_hedge();
                        }
                        last_start = Instant::now();
                        running.push(Some(Running { target, permit: Some(permit), started: last_start, hedge: is_hedge }));
                        racing.push(tagged(running.len() - 1, attempt(target)));
                        started_one = true;
                        break;
                    }
                }
            }
            if !started_one && racing.is_empty() {
                if Instant::now() >= deadline {
                    last = Some(ProviderError::Timeout(TimeoutKind::Total));
                }
                return Err(ChainError::Exhausted { last, retry_at });
            }
            continue;
        }
        let wake = if may_hedge { hedge_at.unwrap_or(deadline).min(deadline) } else { deadline };
        let _ = last_start;
        tokio::select! {
            done = racing.next() => {
                let Some((slot, result)) = done else { continue };
                let Some(mut r) = running[slot].take() else { continue };
                let duration = r.started.elapsed();
                observe(&r.target.stats, &result.as_ref().map(Attempted::latency_later), duration);
                let permit = r.permit.take();
                match result {
                    Ok(answer) => {
                        if let Some(p) = permit {
                            p.success();
                        }
                        if r.hedge {
                            r.target.stats.record_hedge_win();
                        }
                        trace.attempts.push(AttemptRecord { target: r.target.label.clone(), outcome: Outcome::Ok, duration });
                        for loser in running.iter().flatten() {
                            trace.attempts.push(AttemptRecord { target: loser.target.label.clone(), outcome: Outcome::Cancelled, duration: loser.started.elapsed() });
                            if let (Some(tokens), Some(price)) = (plan.prompt_tokens, loser.target.routing.price) {
                                loser.target.stats.add_hedge_spend(tokens as f64 * price.input / 1e6);
                            }
                        }
                        return Ok(Served { target: r.target, answer });
                    }
                    Err(error) => {
                        trace.attempts.push(AttemptRecord { target: r.target.label.clone(), outcome: Outcome::Failed(error.clone()), duration });
                        let d = disposition(alias, &error);
                        if let Some(p) = permit {
                            charge(p, d, &error);
                        }
                        if d == Disposition::Fail {
                            return Err(caller_error(error));
                        }
                        if matches!(error, ProviderError::Unsupported(_)) {
                            trace.sent -= 1;
                        }
                        last = Some(error);
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    for r in running.iter().flatten() {
                        trace.attempts.push(AttemptRecord { target: r.target.label.clone(), outcome: Outcome::Failed(ProviderError::Timeout(TimeoutKind::Total)), duration: r.started.elapsed() });
                    }
                    return Err(ChainError::Exhausted { last: Some(ProviderError::Timeout(TimeoutKind::Total)), retry_at });
                }
            }
        }
    }
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
    let _in_flight = target.stats.begin();
    let (at, kind) = first_byte_limit(target, deadline);
    let call = EmbedCall { request, upstream_model: &target.model, alias: &alias.name, timeouts: &target.timeouts };
    timeout_at(at, super::stats::observing(&target.stats, target.provider.embed(call))).await.map_err(|_| ProviderError::Timeout(kind))?
}

fn stash<'a>(refused: &Refusal<'a>, served: Served<'a>) {
    if let Ok(mut r) = refused.lock() {
        *r = Some(served);
    }
}

/// A refusal: a `content_filter` finish reason in an OpenAI-shaped body or chunk.
fn is_refusal(data: &[u8]) -> bool {
    memmem::find(data, br#""finish_reason":"content_filter""#).is_some()
}

/// One upstream request. For streams, waits (within `first_byte`) for the first chunk with
/// content, buffering any preamble, and with a commit threshold (`[stream] commit_chunks`)
/// for that many content chunks or until `commit_within` has passed since the first; with
/// `[stream] commit = "head"`, commits as soon as the upstream answered. With
/// `refusal_fallback`, a refusal is held in `refused` and reported as a failure.
pub(super) async fn attempt<'a>(alias: &Alias, target: &'a Target, request: &ChatRequest, deadline: Instant, refused: &Refusal<'a>) -> Result<Answer, ProviderError> {
    let in_flight = target.stats.begin();
    let started = Instant::now();
    let (first_byte_at, timeout_kind) = first_byte_limit(target, deadline);
    let call = Call { request, upstream_model: &target.model, alias: &alias.name, timeouts: &target.timeouts };
    let reply = timeout_at(first_byte_at, super::stats::observing(&target.stats, target.provider.chat(call)))
        .await
        .map_err(|_| ProviderError::Timeout(timeout_kind))??;
    let check_refusal = alias.routing.refusal_fallback && answer_format(target.provider.as_ref(), request) == Format::OpenAiChat;
    let mut stream = match reply {
        Reply::Complete(c) => {
            if check_refusal && is_refusal(&c.body) {
                stash(refused, Served { target, answer: Answer::Complete(c) });
                return Err(ProviderError::Refused("the answer was filtered (content_filter)".into()));
            }
            return Ok(Answer::Complete(c));
        }
        Reply::Stream(s) => s,
    };
    let policy = &alias.routing.stream;
    // Content chunks to hold before committing (1: commit on the first).
    let need = policy.commit_chunks.max(1);
    // The relay's idle timer, registered now rather than when the first content chunk arrives:
    // registering a timer that is due before the runtime's next wake-up wakes its driver (an
    // eventfd write), which would otherwise sit between the first chunk and its write to the
    // caller.
    let mut relay_timer = Box::pin(tokio::time::sleep_until((Instant::now() + target.timeouts.idle).min(deadline)));
    std::future::poll_fn(|cx| {
        let _ = relay_timer.as_mut().poll(cx); // a Sleep registers when first polled
        std::task::Poll::Ready(())
    })
    .await;
    let commit = |preamble: Vec<Chunk>, first: Chunk, rest: ChunkStream, in_flight: InFlight, limit| {
        CommittedStream { preamble, first, rest, idle: target.timeouts.idle, deadline, target: target.label.clone(), breaker: target.breaker.clone(), in_flight, limit, first_token: None }
    };
    if policy.commit_on_head {
        // `[stream] commit = "head"`: the upstream answered 200; its chunks go out as they come,
        // and the attempt's latency is taken at the first token, as for a held stream.
        let mut s = commit(Vec::new(), Chunk::default(), stream, in_flight, Some(relay_timer));
        s.first_token = Some((target.stats.clone(), started));
        return Ok(Answer::Stream(s));
    }
    let mut relay_timer = Some(relay_timer);
    let mut preamble = Vec::new();
    let mut content_chunks = 0u32;
    let mut hold_until: Option<Instant> = None;
    loop {
        // While holding, a gap longer than `idle` is a stalled upstream, which fails over like
        // any failure before the commit (nothing has reached the caller yet).
        let (limit, stalled) = match hold_until {
            Some(at) => {
                let window = at.min(deadline);
                let idle_at = Instant::now() + target.timeouts.idle;
                if idle_at < window { (idle_at, true) } else { (window, false) }
            }
            None => (first_byte_at, false),
        };
        let next = match timeout_at(limit, stream.next()).await {
            Err(_) if stalled => return Err(ProviderError::Timeout(TimeoutKind::Idle)),
            Err(_) if hold_until.is_some() => None, // the commit window ran out: commit what we have
            Err(_) => return Err(ProviderError::Timeout(timeout_kind)),
            Ok(None) if content_chunks > 0 => {
                // A short answer ended inside the threshold: relay it whole, and never poll the
                // finished stream again (a stream polled after its end may panic).
                stream = Box::pin(futures_util::stream::empty());
                None
            }
            Ok(None) => return Err(ProviderError::Stream("the stream ended before any content".into())),
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(chunk))) => Some(chunk),
        };
        let Some(chunk) = next else {
            // Commit the held chunks: the last one is the "first" to relay after the others.
            let first = preamble.pop().unwrap_or_default();
            return Ok(Answer::Stream(commit(preamble, first, stream, in_flight, relay_timer.take())));
        };
        if chunk.finish && !chunk.content && content_chunks == 0 && check_refusal && is_refusal(&chunk.data) {
            stash(refused, Served { target, answer: Answer::Stream(commit(preamble, chunk, stream, in_flight, relay_timer.take())) });
            return Err(ProviderError::Refused("the stream was filtered (content_filter)".into()));
        }
        if chunk.content {
            content_chunks += 1;
        }
        if chunk.finish || (chunk.content && content_chunks >= need) || (content_chunks == 0 && preamble.len() >= MAX_PREAMBLE) {
            return Ok(Answer::Stream(commit(preamble, chunk, stream, in_flight, relay_timer.take())));
        }
        if chunk.content && hold_until.is_none() {
            hold_until = Some(Instant::now() + policy.commit_within.unwrap_or(target.timeouts.first_byte));
        }
        preamble.push(chunk);
    }
}
