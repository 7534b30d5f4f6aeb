//! A committed stream on its way to the caller ([`LiveStream`]), shared by the ingresses: the
//! held chunks, then each upstream chunk within the idle timeout and the call's deadline. When
//! the upstream breaks after the commit (an error event, a dropped connection, an idle
//! timeout), the failure is recorded on the target's breaker and, with
//! `[models.ALIAS.stream] recover = true`, the answer continues on the next targets of the plan:
//! the conversation plus the partial answer as the last assistant message (providers that
//! continue an assistant prefill, i.e. Anthropic, get it as is, without trailing whitespace;
//! the others get a user message after it asking to continue), run like any call (breakers,
//! retries, the attempt budget and the deadline). The continuation is spliced into the same
//! stream: its role preamble dropped, its chunks relabelled with the original `id`, `model` and
//! `created`, its usage summed with an estimate of the broken part's (prompt and completion
//! tokens counted with tiktoken, as a broken stream reports none), and its finish and usage
//! chunks marked `"switchyard": {"recovered": true, "from": "prov/model", "to": "prov/model"}`.
//!
//! Only text is recovered: a stream that carried a tool call or several choices, or no text
//! yet, fails as without recovery (a half-streamed tool call cannot be continued). Streams
//! relayed in a native format (Anthropic's events to `/v1/messages`) are not recovered either.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use smallvec::SmallVec;
use tokio::time::Instant;

use super::chain::{self, Answer, AttemptRecord, CommittedStream, Outcome, Served, Trace};
use super::plan::Plan;
use super::{Alias, Target};
use crate::providers::{Chunk, ProviderError, Usage, answer_format};
use crate::telemetry::request_log::RequestLog;
use crate::wire::Format;
use crate::wire::openai::ChatRequest;
use crate::wire::openai::features::RequestFeatures;

/// The user message that follows the partial answer for providers without assistant prefill.
pub const CONTINUE_INSTRUCTION: &str =
    "Continue exactly where your previous message stops. Do not repeat any of it and do not add any preface: your reply is appended to it as is.";

/// A committed stream, recovered on other targets when it breaks (if the alias asks for it).
pub struct LiveStream {
    current: CommittedStream,
    /// Chunks ready to go out (the held ones, or a continuation's first ones), already spliced.
    pending: VecDeque<Chunk>,
    /// When the current target's attempt started, for its trace record.
    since: Instant,
    finished: bool,
    ended: bool,
    recovery: Option<Box<Recovery>>,
    /// Attempts after the commit: failures of the committed targets, recovery attempts.
    trace: Trace,
    /// `(provider, model)` of the target answering now, once recovery moved the stream.
    answered_by: Option<(Arc<str>, Arc<str>)>,
}

/// Where a recovery may go and what it must send.
struct Recovery {
    alias: Arc<Alias>,
    /// The targets after the one answering, in plan order, as positions in the alias's pools.
    remaining: Vec<(usize, usize)>,
    /// The caller's request in OpenAI's shape (without a native body).
    request: ChatRequest,
    /// Upstream requests sent before the commit.
    sent_before: u32,
    /// The body the current stream answers and its target's model, for the usage estimate.
    segment_body: Bytes,
    segment_model: Arc<str>,
    /// Where the current stream's text starts in `splicer.text`.
    segment_start: usize,
    splicer: Splicer,
}

impl LiveStream {
    /// The stream `s` committed by `served` for `request` (planned as `plan` for `alias`),
    /// after `sent` upstream requests; `started` is when the call began.
    pub fn new(s: CommittedStream, alias: &Arc<Alias>, plan: &Plan<'_>, served: &Target, request: &ChatRequest, sent: u32, started: Instant) -> LiveStream {
        let recovery = recovery(alias, plan, served, request, sent).map(Box::new);
        let mut live = LiveStream {
            pending: VecDeque::with_capacity(s.preamble.len() + 1),
            since: started,
            finished: false,
            ended: false,
            recovery,
            trace: Trace::default(),
            answered_by: None,
            current: s,
        };
        for chunk in std::mem::take(&mut live.current.preamble) {
            live.queue(chunk);
        }
        let first = std::mem::take(&mut live.current.first);
        live.queue(first);
        live
    }

    /// Chunks are ready: [`LiveStream::next`] returns without waiting for the upstream.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The answer has finished (a chunk carried a `finish_reason`).
    pub fn finished(&self) -> bool {
        self.finished
    }

    fn queue(&mut self, chunk: Chunk) {
        let chunk = match self.recovery.as_mut() {
            Some(r) => r.splicer.pass(chunk),
            None => Some(chunk),
        };
        if let Some(c) = chunk.filter(|c| !c.data.is_empty() || c.usage.is_some()) {
            self.pending.push_back(c);
        }
    }

    /// The next chunk (OpenAI's chunk JSON, or the native format's event when the stream is
    /// relayed natively); `None` at the clean end; an error once the stream broke and could
    /// not be recovered (the failure is already recorded). An upstream failure after the
    /// answer finished ends the stream cleanly: it is complete.
    pub async fn next(&mut self) -> Option<Result<Chunk, ProviderError>> {
        loop {
            if let Some(c) = self.pending.pop_front() {
                self.finished |= c.finish;
                return Some(Ok(c));
            }
            if self.ended {
                return None;
            }
            // One idle timer for the whole stream (see CommittedStream::next_chunk).
            let error = match self.current.next_chunk().await {
                Ok(Some(Ok(chunk))) => {
                    self.current.first_token(&chunk);
                    self.queue(chunk);
                    continue;
                }
                Ok(None) => {
                    self.ended = true;
                    return None;
                }
                Ok(Some(Err(e))) => e,
                Err(kind) => ProviderError::Timeout(kind),
            };
            if self.finished {
                self.ended = true;
                return None;
            }
            self.broke(&error);
            if self.recover().await {
                continue;
            }
            self.ended = true;
            return Some(Err(error));
        }
    }

    /// Records a failure of the target answering now, after its stream was committed.
    pub fn broke(&mut self, e: &ProviderError) {
        self.current.breaker.record_failure();
        self.trace.attempts.push(AttemptRecord { target: self.current.target.clone(), outcome: Outcome::Failed(e.clone()), duration: self.since.elapsed() });
    }

    /// Adds what happened after the commit to the request's log: the attempts, and the target
    /// that answered last when recovery moved the stream.
    pub fn settle(&mut self, log: &mut RequestLog) {
        let trace = std::mem::take(&mut self.trace);
        log.trace.attempts.extend(trace.attempts);
        log.trace.sent += trace.sent;
        if let Some((provider, model)) = self.answered_by.take() {
            log.provider = Some(provider);
            log.upstream_model = Some(model);
        }
    }

    /// Continues the broken answer on the next targets; true when one took over.
    async fn recover(&mut self) -> bool {
        let Some(r) = self.recovery.as_deref_mut() else { return false };
        let Some(partial) = r.splicer.recoverable().map(str::to_owned) else { return false };
        let partial = partial.as_str();
        let (plain, prefill) = if partial.is_empty() {
            // Committed on the head (`commit = "head"`) and broken before any output: the
            // caller has nothing to continue, so the next target answers the request itself.
            let Ok(request) = ChatRequest::parse(r.request.body.clone()) else { return false };
            let Ok(same) = ChatRequest::parse(r.request.body.clone()) else { return false };
            (request, same)
        } else {
            // The broken part's usage, estimated: it never reported its own.
            let segment = &partial[r.segment_start.min(partial.len())..];
            let prompt = RequestFeatures::parse(&r.segment_body).prompt_tokens(&r.segment_model);
            let completion = crate::tokens::count(&r.segment_model, segment);
            r.splicer.carried = add(r.splicer.carried, Usage { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });
            let Some(plain) = continuation(&r.request, partial, false) else { return false };
            let Some(prefill) = continuation(&r.request, partial, true) else { return false };
            (plain, prefill)
        };
        let text_len = partial.len();
        let alias = r.alias.clone();
        let targets: SmallVec<[&Target; 8]> = r.remaining.iter().filter_map(|p| resolve(&alias, *p)).collect();
        let plan = Plan { targets, filtered: Vec::new(), strategy: alias.routing.strategy, prompt_tokens: None };
        let mut trace = Trace { attempts: Vec::new(), sent: r.sent_before + self.trace.sent };
        let before = trace.sent;
        let deadline = self.current.deadline;
        let refused = std::sync::Mutex::new(None);
        let started = Instant::now();
        let result = chain::run_with(&alias, &plan, deadline, &mut trace, |t| {
            let request = if t.provider.prefills_assistant() { &prefill } else { &plain };
            chain::attempt(&alias, t, request, deadline, &refused)
        })
        .await;
        self.trace.sent += trace.sent.saturating_sub(before);
        self.trace.attempts.extend(trace.attempts);
        let Ok(Served { target, answer: Answer::Stream(mut s) }) = result else { return false };
        let position = plan.targets.iter().position(|t| std::ptr::eq(*t, target)).unwrap_or(0);
        r.remaining.drain(..=position.min(r.remaining.len().saturating_sub(1)));
        let prefilled = target.provider.prefills_assistant();
        r.segment_body = if prefilled { prefill.body.clone() } else { plain.body.clone() };
        r.segment_model = target.model.clone();
        r.segment_start = text_len;
        let from = r.splicer.active.as_ref().map_or_else(|| self.current.target.clone(), |a| a.from.clone());
        let keep_role = r.splicer.envelope.is_none();
        r.splicer.active = Some(Active { from, to: target.label.clone(), strip_leading_space: prefilled && partial_trimmed(&r.splicer.text), keep_role });
        self.answered_by = Some((target.provider_name.clone(), target.model.clone()));
        self.since = started;
        let held: Vec<Chunk> = s.preamble.drain(..).chain(std::iter::once(s.first.clone())).collect();
        self.current = s;
        for chunk in held {
            self.queue(chunk);
        }
        true
    }
}

/// The recovery of a stream `served` committed, if the alias asks for it, the stream is in
/// OpenAI's chunk format and targets follow `served` in the plan.
fn recovery(alias: &Arc<Alias>, plan: &Plan<'_>, served: &Target, request: &ChatRequest, sent: u32) -> Option<Recovery> {
    if !alias.routing.stream.recover || answer_format(served.provider.as_ref(), request) != Format::OpenAiChat {
        return None;
    }
    let at = plan.targets.iter().position(|t| std::ptr::eq(*t, served))?;
    let remaining: Vec<(usize, usize)> = plan.targets[at + 1..].iter().filter_map(|t| path_of(alias, t)).collect();
    if remaining.is_empty() {
        return None;
    }
    Some(Recovery {
        alias: alias.clone(),
        remaining,
        request: ChatRequest::parse(request.body.clone()).ok()?,
        sent_before: sent,
        segment_body: request.body.clone(),
        segment_model: served.model.clone(),
        segment_start: 0,
        splicer: Splicer::default(),
    })
}

/// The aliases whose targets a plan may hold: `root` and its fallbacks, then its
/// `context_fallback` and that one's fallbacks.
fn pools(root: &Alias) -> impl Iterator<Item = &Alias> {
    fn chain(a: Option<&Alias>) -> impl Iterator<Item = &Alias> {
        std::iter::successors(a, |a| a.fallback.as_deref())
    }
    chain(Some(root)).chain(chain(root.context_fallback.as_deref()))
}

/// Where `target` is among `root`'s pools: a position that outlives the plan's borrows.
fn path_of(root: &Alias, target: &Target) -> Option<(usize, usize)> {
    pools(root).enumerate().find_map(|(i, a)| a.targets.iter().position(|t| std::ptr::eq(t, target)).map(|j| (i, j)))
}

fn resolve(root: &Alias, (pool, index): (usize, usize)) -> Option<&Target> {
    pools(root).nth(pool)?.targets.get(index)
}

fn add(a: Usage, b: Usage) -> Usage {
    Usage {
        prompt_tokens: a.prompt_tokens + b.prompt_tokens,
        completion_tokens: a.completion_tokens + b.completion_tokens,
        total_tokens: a.total_tokens + b.total_tokens,
    }
}

/// The prefill sent to a prefilling provider lost trailing whitespace.
fn partial_trimmed(text: &str) -> bool {
    text.trim_end().len() != text.len()
}

/// `request` continued: its messages plus `partial` as the last assistant message (without
/// trailing whitespace for a `prefill`, which Anthropic rejects), else followed by
/// [`CONTINUE_INSTRUCTION`]; `max_tokens` / `max_completion_tokens` lowered by the tokens
/// already streamed. The result has no native body, so every provider translates it.
pub fn continuation(request: &ChatRequest, partial: &str, prefill: bool) -> Option<ChatRequest> {
    let mut body: Map<String, Value> = crate::wire::json::from_slice(&request.body).ok()?;
    let messages = body.get_mut("messages")?.as_array_mut()?;
    let prefix = if prefill { partial.trim_end() } else { partial };
    messages.push(json!({"role": "assistant", "content": prefix}));
    if !prefill {
        messages.push(json!({"role": "user", "content": CONTINUE_INSTRUCTION}));
    }
    let spent = crate::tokens::count(&request.model, partial);
    for key in ["max_tokens", "max_completion_tokens"] {
        if let Some(n) = body.get(key).and_then(Value::as_u64) {
            body.insert(key.into(), json!(n.saturating_sub(spent).max(1)));
        }
    }
    ChatRequest::parse(Bytes::from(serde_json::to_vec(&body).ok()?)).ok()
}

/// What the stream has said so far, and once recovered, how a continuation's chunks are
/// rewritten to read as the same stream.
#[derive(Default)]
pub struct Splicer {
    /// `id`, `model` and `created` of the first chunk.
    envelope: Option<[Value; 3]>,
    /// The text streamed so far (choice 0's `content`).
    text: String,
    /// A tool call, a function call or a second choice was streamed.
    unrecoverable: bool,
    /// Estimated usage of the broken parts.
    carried: Usage,
    /// Set once the stream was recovered.
    active: Option<Active>,
}

/// The recovery in effect.
struct Active {
    from: Arc<str>,
    to: Arc<str>,
    /// The prefill lost trailing whitespace the caller already has: drop the continuation's
    /// leading whitespace.
    strip_leading_space: bool,
    /// The caller has had no chunk yet (a stream committed on its head broke before its
    /// preamble): the continuation's `role` is the answer's first.
    keep_role: bool,
}

impl Splicer {
    /// The partial answer, when the stream can be continued from it: some text, or none at
    /// all (nothing to continue: the request starts over), but not only whitespace.
    fn recoverable(&self) -> Option<&str> {
        (!self.unrecoverable && (self.text.is_empty() || !self.text.trim().is_empty())).then_some(self.text.as_str())
    }

    /// Reads one chunk; once recovered, rewrites it. `None`: the chunk is dropped (a
    /// continuation's role preamble).
    fn pass(&mut self, mut chunk: Chunk) -> Option<Chunk> {
        if chunk.data.is_empty() {
            if let (Some(u), Some(_)) = (chunk.usage.as_mut(), &self.active) {
                *u = add(*u, self.carried);
            }
            return Some(chunk);
        }
        let Ok(Value::Object(mut obj)) = crate::wire::json::from_slice::<Value>(&chunk.data) else { return Some(chunk) };
        let output = self.read(&mut obj);
        let first = self.envelope.is_none();
        if first {
            let field = |k: &str| obj.get(k).cloned().unwrap_or(Value::Null);
            self.envelope = Some([field("id"), field("model"), field("created")]);
        }
        let Some(active) = &mut self.active else { return Some(chunk) };
        // The caller's first chunk (`keep_role`) goes out even without output.
        let keep = std::mem::take(&mut active.keep_role) && first;
        let usage_object = obj.get("usage").is_some_and(Value::is_object);
        if !output && !keep && !chunk.finish && !usage_object && chunk.usage.is_none() {
            return None;
        }
        if let Some(envelope) = &self.envelope {
            for (key, value) in ["id", "model", "created"].into_iter().zip(envelope) {
                if !value.is_null() {
                    obj.insert(key.into(), value.clone());
                }
            }
        }
        if let Some(Value::Object(usage)) = obj.get_mut("usage") {
            let carried = self.carried;
            for (key, extra) in [("prompt_tokens", carried.prompt_tokens), ("completion_tokens", carried.completion_tokens), ("total_tokens", carried.total_tokens)] {
                let n = usage.get(key).and_then(Value::as_u64).unwrap_or(0);
                usage.insert(key.into(), json!(n + extra));
            }
        }
        if let Some(u) = chunk.usage.as_mut() {
            *u = add(*u, self.carried);
        }
        if chunk.finish || usage_object || chunk.usage.is_some() {
            obj.insert("switchyard".into(), json!({"recovered": true, "from": &*active.from, "to": &*active.to}));
        }
        chunk.content = output;
        chunk.data = Bytes::from(serde_json::to_vec(&obj).expect("serializing JSON values cannot fail"));
        Some(chunk)
    }

    /// Notes the chunk's text and anything that rules recovery out; once recovered, drops its
    /// deltas' `role` and the leading whitespace owed. True when the chunk carries output.
    fn read(&mut self, obj: &mut Map<String, Value>) -> bool {
        let Some(Value::Array(choices)) = obj.get_mut("choices") else { return false };
        let mut output = false;
        for choice in choices {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                self.unrecoverable = true;
            }
            let Some(Value::Object(delta)) = choice.get_mut("delta") else { continue };
            if let Some(active) = self.active.as_mut() {
                if !active.keep_role {
                    delta.remove("role");
                }
                if let Some(Value::String(text)) = delta.get_mut("content") {
                    if active.strip_leading_space {
                        let kept = text.trim_start();
                        active.strip_leading_space = kept.is_empty();
                        *text = kept.to_owned();
                    }
                }
            }
            for (key, value) in delta.iter() {
                let present = match value {
                    Value::Null => false,
                    Value::String(s) => !s.is_empty(),
                    Value::Array(a) => !a.is_empty(),
                    _ => true,
                };
                if !present || key == "role" {
                    continue;
                }
                output = true;
                match key.as_str() {
                    "content" => self.text.push_str(value.as_str().unwrap_or_default()),
                    "tool_calls" | "function_call" => self.unrecoverable = true,
                    _ => {}
                }
            }
        }
        output
    }
}

#[cfg(test)]
mod tests;
